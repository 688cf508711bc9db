"""Every worked card of ``docs/adding-a-model.md``, run as written.

The doc's cards are its ```yaml blocks whose first line is ``# my_cards/<file>.yaml``; a block in
another language that starts the same way (``# my_cards/my_net.py``) is a file that sits beside a
card. Each card with a model of its own gets, in a temp ``my_cards/`` folder, a small model built
from the card's own inputs and outputs in the format its source names (ONNX, ONNX with external
data, TorchScript, a ``torch.export`` program, a ``.safetensors`` state dict with its ``.py``
architecture, a Keras ``.h5``), and the data files it names (images, a labels CSV, an ``.npz``
with class, box, mask or landmark labels, an SNPE input list, wav files, a ``tokenizer.json``,
JSONL; nothing for ``synthetic``). The ``.tflite`` card uses the real pinned MediaPipe file and
its registered dataset. Then ``zoocompat zoo check`` must pass the card, its data must build into
calibration and evaluation splits of the declared shapes and dtypes, and the FP32 outputs of the
model on that data must score through the card's metric configured with the card's
``metric.params``: the detection, segmentation and landmark models are built so that those
params, read as documented, give a near-perfect score. The cards that name a registered dataset
with no model file here (``KEPT``) must load. The ``arrays`` card also runs through the real cpu
fp32 and w8a8 cells.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from zoocompat.api.cache import ArtifactCache
from zoocompat.api.protocols import optional
from zoocompat.api.registry import registry
from zoocompat.cli import main
from zoocompat.model.cards import Card, InputSpec, load_card
from zoocompat.model.data import CardData, build_card_data
from zoocompat.model.input_list import write_input_list
from zoocompat.model.sources import resolve_source
from zoocompat.run.scoring import per_sample

ROOT = Path(__file__).parent.parent
DOC = ROOT / "docs" / "adding-a-model.md"
#: The doc's sections (``## `` headings) that hold worked cards besides the first ones.
SOURCES_SECTION, OTHER_SECTION = "Your own data, no Python", "Models of other kinds"
#: One worked card per kind of ``dataset.source``, in :data:`SOURCES_SECTION`.
SOURCE_KINDS = ("image_folder", "images", "arrays", "input_list", "audio", "text", "synthetic")
#: One worked card per kind of model (and model format), in :data:`OTHER_SECTION`.
OTHER_KINDS = {
    "audio": "my_voice_activity.yaml",
    "text": "my_intents.yaml",
    "detector": "my_parcels.yaml",
    "segmentation": "my_cracks.yaml",
    "landmarks": "my_face_landmarks.yaml",
    "tflite": "my_blazeface.yaml",
    "torchscript": "my_scripted.yaml",
    "torch_export": "my_exported.yaml",
    "safetensors": "my_crops.yaml",
    "keras_h5": "my_legacy.yaml",
    "onnx_external_data": "my_embedder.yaml",
}
#: The doc's older worked cards (a registered dataset, a TensorFlow model): they are only loaded.
KEPT = ("my_orientation.yaml", "my_digits.yaml")
#: Samples written beyond calibration + evaluation (left over, as in a user's folder).
SPARE = 4
VERDICTS = {"pass", "fail", "inconclusive"}
#: The range each metric's mean must fall in for the FP32 outputs of the models built here.
FP32_RANGES = {
    "top1": (0.0, 1.0),
    "agreement": (1.0, 1.0),  # FP32 against itself
    "cosine": (0.9999, 1.0001),
    "sqnr": (100.0, 200.0),  # 150 dB when identical
    "map50": (0.5, 1.0),  # the built detector's top boxes are the ground truth
    "miou": (0.99, 1.0),  # the built segmenter's argmax is the mask
    "nme": (0.0, 0.05),  # the built landmark model outputs the labels' template
}

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
_HEADING = re.compile(r"^## (.+?)\s*$", re.MULTILINE)
_CARD_LINE = re.compile(r"^# my_cards/(\S+)\s*$")
_SHAPE = re.compile(r"\[(\d+(?:,\s*\d+)*)\]")


def doc_files() -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """The doc's files: ``({card file: card text}, {card file: its ``## `` section}, {other file: text})``
    for every fenced block whose first line is ``# my_cards/<file>`` (a ```yaml block is a card).
    """
    text = DOC.read_text(encoding="utf-8")
    headings = [(match.start(), match.group(1)) for match in _HEADING.finditer(text)]
    cards: dict[str, str] = {}
    sections: dict[str, str] = {}
    others: dict[str, str] = {}
    for fence in _FENCE.finditer(text):
        language, block = fence.groups()
        match = _CARD_LINE.match(block.splitlines()[0]) if block.strip() else None
        if not match:
            continue
        file = match.group(1)
        assert file not in cards and file not in others, f"two worked files are called {file}"
        if language == "yaml" and file.endswith(".yaml"):
            cards[file] = block
            sections[file] = next((title for start, title in reversed(headings) if start < fence.start()), "")
        else:
            others[file] = block
    return cards, sections, others


EXAMPLES, SECTIONS, SIDE_FILES = doc_files()


def _kind(text: str) -> str | None:
    """The ``dataset.source.kind`` of a card's text (``None`` for a registered dataset)."""
    source = yaml.safe_load(text)["dataset"].get("source")
    return source["kind"] if source else None


# --- the model ----------------------------------------------------------------------------------------------------


def _classes(card: Card) -> list[str]:
    return list(getattr(card.dataset.source, "classes", None) or [])


def declared_shapes(text: str) -> list[list[int]] | None:
    """The output shapes the card's ``outputs:`` line gives in its comment (``# [1, 100, 4], [1, 100]``), when it
    gives one per output.
    """
    line = next((line for line in text.splitlines() if line.startswith("outputs:")), "")
    _, _, comment = line.partition("#")
    shapes = [[int(dim) for dim in match.split(",")] for match in _SHAPE.findall(comment)]
    outputs = yaml.safe_load(line)["outputs"] if line else []
    return shapes if shapes and len(shapes) == len(outputs) else None


def output_shapes(card: Card, text: str = "") -> dict[str, list[int]]:
    """Each card output's shape: as the card's ``outputs:`` comment declares them, else ``<input>_out`` mirrors
    that input (a recurrent state) and any other is ``[1, classes]`` (the source's classes, else 4 scores).
    """
    declared = declared_shapes(text) if text else None
    if declared:
        return dict(zip(card.outputs, declared, strict=True))
    specs = {spec.name: spec for spec in card.inputs}
    width = len(_classes(card)) or 4
    shapes = {}
    for name in card.outputs:
        state = specs.get(name.removesuffix("_out")) if name.endswith("_out") else None
        shapes[name] = list(state.shape) if state is not None and state.shape else [1, width]
    return shapes


_ELEM = {"float32": 1, "uint8": 2, "int32": 6, "int64": 7, "bool": 9, "float16": 10}  # onnx.TensorProto values


def _finish_onnx(card: Card, nodes: list, weights: dict[str, np.ndarray], shapes: dict[str, list[int]]) -> Any:
    """A checked opset-17 model of ``nodes`` with the card's inputs, ``weights`` as initializers and the card's
    outputs at ``shapes``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        card.name,
        [helper.make_tensor_value_info(spec.name, _ELEM[spec.dtype], spec.shape) for spec in card.inputs],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shapes[name]) for name in card.outputs],
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def generic_onnx(card: Card, shapes: dict[str, list[int]]) -> Any:
    """A small seeded ONNX graph with the card's inputs (names, shapes, dtypes, in order) and outputs at ``shapes``.

    Every input becomes float (integers and bools as ``log(1 + |x|)``, so ids and sample rates stay small),
    is flattened to ``[1, -1]`` (a batched input one sample, any other the whole tensor) and concatenated;
    a MatMul + Tanh gives a hidden vector, and a MatMul + Sigmoid per output its values.
    """
    from onnx import TensorProto, helper

    rng = np.random.default_rng(11)
    hidden = 16
    weights = {"_flat": np.array([1, -1], dtype=np.int64), "_one": np.array(1.0, dtype=np.float32)}
    nodes, flat = [], []
    for index, spec in enumerate(card.inputs):
        value = spec.name
        if spec.dtype != "float32":
            nodes.append(helper.make_node("Cast", [value], [f"_f{index}"], to=TensorProto.FLOAT))
            value = f"_f{index}"
        if spec.dtype not in ("float32", "float16"):
            nodes += [
                helper.make_node("Abs", [value], [f"_a{index}"]),
                helper.make_node("Add", [f"_a{index}", "_one"], [f"_p{index}"]),
                helper.make_node("Log", [f"_p{index}"], [f"_l{index}"]),
            ]
            value = f"_l{index}"
        nodes.append(helper.make_node("Reshape", [value, "_flat"], [f"_x{index}"]))
        flat.append(f"_x{index}")
    features = sum(math.prod(spec.shape) for spec in card.inputs)
    weights["_w"] = rng.normal(0, 1 / math.sqrt(features), (features, hidden)).astype(np.float32)
    nodes += [
        helper.make_node("Concat", flat, ["_features"], axis=1),
        helper.make_node("MatMul", ["_features", "_w"], ["_h0"]),
        helper.make_node("Tanh", ["_h0"], ["_h"]),
    ]
    for index, name in enumerate(card.outputs):
        shape = shapes[name]
        weights[f"_w{index}"] = rng.normal(0, 1 / math.sqrt(hidden), (hidden, math.prod(shape))).astype(np.float32)
        weights[f"_shape{index}"] = np.array(shape, dtype=np.int64)
        nodes += [
            helper.make_node("MatMul", ["_h", f"_w{index}"], [f"_o{index}"]),
            helper.make_node("Sigmoid", [f"_o{index}"], [f"_s{index}"]),
            helper.make_node("Reshape", [f"_s{index}", f"_shape{index}"], [name]),
        ]
    return _finish_onnx(card, nodes, weights, shapes)


# detector: fixed detections, the first TRUE_BOXES of which are every image's ground truth


TRUE_BOXES = 5


def detector_plan(count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` fixed detections: normalized ``xyxy`` boxes ``[D, 4]``, logits ``[D]`` and 0-based classes ``[D]``.

    The first :data:`TRUE_BOXES` score high (they are the ground truth), the next 15 score low (wrong boxes,
    above a 0.05 threshold), the rest are zero boxes with scores of ~0 (the padding a detector with NMS in its
    graph writes).
    """
    rng = np.random.default_rng(21)
    corner = rng.uniform(0.0, 0.7, (count, 2))
    size = rng.uniform(0.1, 0.3, (count, 2))
    boxes = np.concatenate([corner, corner + size], axis=1)
    logits = np.full(count, -30.0)
    logits[:TRUE_BOXES] = 4.0 - 0.3 * np.arange(TRUE_BOXES)
    logits[TRUE_BOXES : TRUE_BOXES + 15] = -1.5
    boxes[TRUE_BOXES + 15 :] = 0.0
    classes = np.arange(count) % 3
    return boxes, logits, classes


def _detector_pixels(card: Card) -> tuple[int, int]:
    """``(height, width)`` of the labels' pixels: ``image_size``, else the image input's."""
    params = card.metric.params
    if params.get("image_size"):
        return tuple(params["image_size"])
    spec = card.inputs[0]
    return tuple(spec.shape[1:3] if spec.layout == "NHWC" else spec.shape[2:4])


def _boxes_as(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """``xyxy`` boxes in ``box_format`` (the metric's formats)."""
    x1, y1, x2, y2 = boxes.T
    return {
        "xyxy": boxes,
        "yxyx": np.stack([y1, x1, y2, x2], axis=1),
        "xywh": np.stack([x1, y1, x2 - x1, y2 - y1], axis=1),
        "cxcywh": np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1),
    }[box_format]


def detector_onnx(card: Card, shapes: dict[str, list[int]]) -> Any:
    """A detector that outputs :func:`detector_plan`'s detections as the card's ``metric.params`` say the metric
    reads them (box format, normalized or in pixels, class offset), each moved by a tiny amount computed from the
    input's mean: boxes ``[1, D, 4]``, scores ``[1, D]`` (sigmoid of the logits), classes ``[1, D]``.
    """
    from onnx import TensorProto, helper

    params = card.metric.params
    names = {key: params[key] for key in ("boxes", "scores", "classes")}
    count = shapes[names["boxes"]][1]
    boxes, logits, classes = detector_plan(count)
    if not params.get("normalized"):
        height, width = _detector_pixels(card)
        boxes = boxes * np.array([width, height, width, height])
    spec = card.inputs[0]
    weights = {
        "_boxes_fixed": _boxes_as(boxes, params.get("box_format", "xyxy"))[None].astype(np.float32),
        "_logits_fixed": logits[None].astype(np.float32),
        "_classes_fixed": (classes - params.get("class_offset", 0))[None].astype(np.float32),
        "_tiny": np.array(1e-6, dtype=np.float32),
        "_zero": np.array(0.0, dtype=np.float32),
    }
    nodes = [
        helper.make_node("Cast", [spec.name], ["_pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["_pixels"], ["_level"], keepdims=0),
        helper.make_node("Mul", ["_level", "_tiny"], ["_nudge"]),
        helper.make_node("Add", ["_boxes_fixed", "_nudge"], [names["boxes"]]),
        helper.make_node("Add", ["_logits_fixed", "_nudge"], ["_logits"]),
        helper.make_node("Sigmoid", ["_logits"], [names["scores"]]),
        helper.make_node("Mul", ["_level", "_zero"], ["_none"]),
        helper.make_node("Add", ["_classes_fixed", "_none"], [names["classes"]]),
    ]
    return _finish_onnx(card, nodes, weights, shapes)


def detector_labels(card: Card, count: int, shapes: dict[str, list[int]]) -> np.ndarray:
    """``[count, TRUE_BOXES + 1, 5]`` ground truth in label pixels: :func:`detector_plan`'s true boxes, one of them
    left out of every sixth image (its detection is then a false positive), padded with a row of -1.
    """
    boxes, _, classes = detector_plan(shapes[card.metric.params["boxes"]][1])
    boxes, classes = boxes[:TRUE_BOXES], classes[:TRUE_BOXES]
    height, width = _detector_pixels(card)
    rows = np.concatenate([boxes * np.array([width, height, width, height]), classes[:, None]], axis=1)
    labels = np.full((count, TRUE_BOXES + 1, 5), -1.0, dtype=np.float32)
    for index in range(count):
        kept = [row for box, row in enumerate(rows) if box != index % 6]
        labels[index, : len(kept)] = kept
    return labels


# segmentation: the class map is the argmax of the input's channels


def segmentation_onnx(card: Card, shapes: dict[str, list[int]]) -> Any:
    """A 1x1 Conv from the input's channels to ``[1, classes, H, W]`` logits: class ``c`` scores channel ``c``."""
    from onnx import helper

    spec, (name, shape) = card.inputs[0], next(iter(shapes.items()))
    weight = np.zeros((shape[1], spec.shape[1], 1, 1), dtype=np.float32)
    for klass in range(shape[1]):
        weight[klass, klass % spec.shape[1]] = 1.0
    nodes = [helper.make_node("Conv", [spec.name, "_weight"], [name], kernel_shape=[1, 1])]
    return _finish_onnx(card, nodes, {"_weight": weight}, shapes)


def segmentation_labels(card: Card, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """``[N, H, W]`` uint8 masks: each pixel's class is its argmax channel; 5% of the pixels are ignored (255)."""
    masks = np.argmax(inputs[card.inputs[0].name], axis=1).astype(np.uint8)
    ignore = card.metric.params.get("ignore_index", 255)
    if ignore is not None:
        masks[np.random.default_rng(8).random(masks.shape) < 0.05] = ignore
    return masks


# landmarks: the model outputs a fixed template, the labels are that template (in pixels) plus noise


def landmark_template(values: int) -> np.ndarray:
    """``values`` fixed coordinates in 0.2 .. 0.8 (``x0, y0, x1, ...``)."""
    return np.random.default_rng(23).uniform(0.2, 0.8, values)


def _landmark_scale(card: Card) -> np.ndarray:
    scale = card.metric.params.get("scale", 1.0)
    return np.asarray(scale if isinstance(scale, list) else [scale, scale], dtype=np.float64)


def landmark_onnx(card: Card, shapes: dict[str, list[int]]) -> Any:
    """GlobalAveragePool + Flatten + Gemm to ``[1, K * 2]``: the template plus a tiny input-dependent term."""
    from onnx import helper

    spec, (name, shape) = card.inputs[0], next(iter(shapes.items()))
    values = math.prod(shape[1:])
    rng = np.random.default_rng(24)
    weights = {
        "_b": rng.normal(0, 1e-3, (spec.shape[1], values)).astype(np.float32),
        "_c": landmark_template(values).astype(np.float32),
    }
    nodes = [
        helper.make_node("GlobalAveragePool", [spec.name], ["_pooled"]),
        helper.make_node("Flatten", ["_pooled"], ["_flat"]),
        helper.make_node("Gemm", ["_flat", "_b", "_c"], [name]),
    ]
    return _finish_onnx(card, nodes, weights, shapes)


def landmark_labels(card: Card, count: int, shapes: dict[str, list[int]]) -> np.ndarray:
    """``[count, K, 2]`` float32 (x, y) in label pixels: the model's template times ``scale``, plus noise."""
    values = math.prod(next(iter(shapes.values()))[1:])
    dims = card.metric.params.get("dims", 2)
    points = landmark_template(values).reshape(-1, dims)[:, :2] * _landmark_scale(card)
    noise = np.random.default_rng(9).normal(0, 0.3, (count, *points.shape))
    return (points[None] + noise).astype(np.float32)


#: The ONNX graph of a card whose metric reads more than class scores.
ONNX_BUILDERS = {"map50": detector_onnx, "miou": segmentation_onnx, "nme": landmark_onnx}


# the other formats: a tiny torch module or Keras model with the card's one input and outputs


def tiny_torch(card: Card, shapes: dict[str, list[int]]) -> Any:
    """A seeded torch module: the flattened input through one Linear + Sigmoid per output, at ``shapes``."""
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            features = math.prod(card.inputs[0].shape)
            self.shapes = [tuple(shape) for shape in shapes.values()]
            self.heads = torch.nn.ModuleList(torch.nn.Linear(features, math.prod(s)) for s in self.shapes)

        def forward(self, x: torch.Tensor) -> Any:
            flat = x.reshape(1, -1)
            pairs = zip(self.heads, self.shapes, strict=True)
            outputs = tuple(torch.sigmoid(head(flat)).reshape(shape) for head, shape in pairs)
            return outputs[0] if len(outputs) == 1 else outputs

    torch.manual_seed(0)
    return Tiny().eval()


def _example(card: Card) -> Any:
    import torch

    return torch.from_numpy(np.random.default_rng(3).normal(0, 1, card.inputs[0].shape).astype(np.float32))


def save_torchscript(card: Card, path: Path, shapes: dict[str, list[int]]) -> None:
    """:func:`tiny_torch` traced with ``torch.jit.trace`` and saved."""
    import torch

    torch.jit.trace(tiny_torch(card, shapes), (_example(card),)).save(str(path))


def save_exported(card: Card, path: Path, shapes: dict[str, list[int]]) -> None:
    """:func:`tiny_torch` through ``torch.export.export``, saved with ``torch.export.save``."""
    import torch

    torch.export.save(torch.export.export(tiny_torch(card, shapes), (_example(card),)), str(path))


def save_safetensors(card: Card, path: Path, shapes: dict[str, list[int]]) -> None:
    """The doc's own architecture file written beside the card, its class's seeded state dict as ``.safetensors``."""
    import torch
    from safetensors.torch import save_file

    file, _, class_name = (card.architecture or "").rpartition(":")
    assert file in SIDE_FILES, f"the doc shows no {file} for architecture {card.architecture!r}"
    (card.folder / file).write_text(SIDE_FILES[file], encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"doc_{Path(file).stem}", card.folder / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    save_file(getattr(module, class_name)().state_dict(), str(path))


def save_h5(card: Card, path: Path, shapes: dict[str, list[int]]) -> None:
    """A tiny ``keras.Sequential`` (Flatten + Dense softmax) saved as a legacy ``.h5`` file."""
    import keras

    (shape,) = shapes.values()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=card.inputs[0].sample_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(math.prod(shape[1:]), activation="softmax"),
        ]
    )
    model.save(str(path))


#: The model file of a card in a format other than ONNX, by its suffix.
SAVERS = {
    ".torchscript": save_torchscript,
    ".jit": save_torchscript,
    ".pt2": save_exported,
    ".safetensors": save_safetensors,
    ".h5": save_h5,
}


def build_model(card: Card, text: str, path: Path) -> None:
    """The model file at ``path`` for the card: in the format its suffix names, with the card's inputs and its
    outputs at :func:`output_shapes`; an ONNX graph with its weights in ``model.data`` for the external-data card.
    """
    import onnx

    shapes = output_shapes(card, text)
    if path.suffix in SAVERS:
        SAVERS[path.suffix](card, path, shapes)
        return
    model = ONNX_BUILDERS.get(card.metric.name, generic_onnx)(card, shapes)
    if card.path.name != OTHER_KINDS["onnx_external_data"]:
        onnx.save(model, str(path))
        return
    onnx.save(model, str(path), save_as_external_data=True, location="model.data")  # tensors over 1 KiB
    assert (path.parent / "model.data").is_file()
    stored = onnx.load(str(path), load_external_data=False)
    assert any(init.data_location == onnx.TensorProto.EXTERNAL for init in stored.graph.initializer)


# --- the data -----------------------------------------------------------------------------------------------------


def tensor_samples(spec: InputSpec, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` samples ``[count, *sample_shape]`` in the input's dtype."""
    size = (count, *spec.sample_shape)
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "f":
        return rng.normal(0, 0.5, size).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size).astype(bool)
    return rng.integers(0, 100, size).astype(dtype)


def _image_size(spec: InputSpec) -> tuple[int, int, int]:
    """``(height, width, channels)`` of the files to write: the input's own size for a ``raw`` input, else
    another (a user's photos come in their own size: the card's preprocessing must make them fit).
    """
    channels_first = spec.layout == "NCHW"
    sample = spec.sample_shape
    channels = sample[0] if channels_first else sample[-1]
    height, width = sample[1:] if channels_first else sample[:2]
    if spec.image_preprocess is not None:
        height, width = height * 5 // 4 + 3, width * 5 // 4 + 7
    return height, width, channels


def _write_image(path: Path, spec: InputSpec, index: int) -> None:
    height, width, channels = _image_size(spec)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([(x * (3 + index + c) + y * (1 + c)) % 256 for c in range(channels)], axis=-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = pixels.astype(np.uint8)
    Image.fromarray(image[..., 0] if channels == 1 else image).save(path)


def _target(card: Card) -> InputSpec:
    chosen = getattr(card.dataset.source, "input", None)
    return next(spec for spec in card.inputs if spec.name == chosen) if chosen else card.inputs[0]


def _label(classes: list[str], index: int) -> str:
    return classes[index % len(classes)] if classes else str(index % 3)


def write_image_folder(card: Card, count: int, text: str) -> None:
    """``count`` images spread over one sub-folder per class."""
    source, spec = card.dataset.source, _target(card)
    classes = _classes(card) or ["a", "b"]
    for index in range(count):
        _write_image(card.folder / source.path / classes[index % len(classes)] / f"{index:04d}.png", spec, index)


def write_images(card: Card, count: int, text: str) -> None:
    """``count`` images in two nested folders, and the labels CSV when the card names one."""
    source, spec = card.dataset.source, _target(card)
    rows = ["file,label"]
    for index in range(count):
        relative = f"field_{'ab'[index % 2]}/img_{index:03d}.png"
        _write_image(card.folder / source.path / relative, spec, index)
        rows.append(f"{relative},{_label(_classes(card), index)}")
    if source.labels is not None:
        (card.folder / source.labels).write_text("\n".join(rows) + "\n", encoding="utf-8")


def array_labels(card: Card, count: int, inputs: dict[str, np.ndarray], text: str) -> np.ndarray:
    """The labels an ``arrays`` card's metric reads: boxes, masks or landmarks for those metrics (fitting the
    models built for them), else a class index per sample.
    """
    if card.metric.name == "map50":
        return detector_labels(card, count, output_shapes(card, text))
    if card.metric.name == "miou":
        return segmentation_labels(card, inputs)
    if card.metric.name == "nme":
        return landmark_labels(card, count, output_shapes(card, text))
    return np.arange(count, dtype=np.int64) % 3


def write_arrays(card: Card, count: int, text: str) -> None:
    """One ``.npz`` (or one ``.npy`` per input) of ``count`` samples per input, labels beside them if named."""
    source, rng = card.dataset.source, np.random.default_rng(5)
    arrays = {spec.name: tensor_samples(spec, count, rng) for spec in card.inputs}
    labels = array_labels(card, count, arrays, text)
    if source.path is not None:
        extra = {source.labels: labels} if source.labels else {}
        np.savez(card.folder / source.path, **arrays, **extra)
    else:
        for name, file in source.files.items():
            np.save(card.folder / file, arrays[name])
        if source.labels:
            np.save(card.folder / source.labels, labels)


def write_input_list_data(card: Card, count: int, text: str) -> None:
    """An SNPE input list of ``count`` samples, each ``.raw`` in its input's dtype at the full shape."""
    source, rng = card.dataset.source, np.random.default_rng(6)
    arrays = {spec.name: tensor_samples(spec, count, rng) for spec in card.inputs}
    samples = [{spec.name: arrays[spec.name][i].reshape(spec.shape) for spec in card.inputs} for i in range(count)]
    listed = card.folder / source.path
    write_input_list(samples, listed.parent, listed.name, dtypes={spec.name: spec.dtype for spec in card.inputs})
    if source.labels is not None:
        (card.folder / source.labels).write_text("".join(f"{i % 3}\n" for i in range(count)), encoding="utf-8")


def write_audio(card: Card, count: int, text: str) -> None:
    """``count`` tone clips in class sub-folders (or flat, labeled by a CSV when named): mono and stereo, at the
    card's rate and at half of it (resampled when read).
    """
    import soundfile

    source, spec = card.dataset.source, _target(card)
    length = math.prod(spec.sample_shape)
    classes = _classes(card)
    rows = ["file,label"]
    for index in range(count):
        rate = source.sample_rate if index % 3 else source.sample_rate // 2
        t = np.arange(int(length * rate / source.sample_rate)) / rate
        wave = 0.3 * np.sin(2 * np.pi * (200 + 40 * index) * t)
        data = np.stack([wave, 0.5 * wave], axis=1) if index % 3 == 1 else wave
        label = _label(classes, index)
        relative = f"{label}/{index:04d}.wav" if classes and source.labels is None else f"{index:04d}.wav"
        rows.append(f"{relative},{label}")
        (card.folder / source.path / relative).parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(str(card.folder / source.path / relative), data.astype(np.float32), rate)
    if source.labels is not None:
        (card.folder / source.labels).write_text("\n".join(rows) + "\n", encoding="utf-8")


def write_text(card: Card, count: int, text: str) -> None:
    """``count`` sentences (``.txt`` lines or ``.jsonl`` records) and a WordLevel ``tokenizer.json`` for them."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    source = card.dataset.source
    words = "the a quick small model runs on every phone and board with its own data today".split()
    rng = np.random.default_rng(7)
    texts = [" ".join(rng.choice(words, size=int(rng.integers(3, 40)))) for _ in range(count)]
    path = card.folder / source.path
    if path.suffix == ".jsonl":
        records = [{source.text_field: sentence} for sentence in texts]
        if source.label_field:
            for index, record in enumerate(records):
                record[source.label_field] = _label(_classes(card), index)
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    else:
        path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    vocab = {"[PAD]": 0, "[UNK]": 1, **{word: i + 2 for i, word in enumerate(dict.fromkeys(words))}}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(card.folder / source.tokenizer))


WRITERS = {
    "image_folder": write_image_folder,
    "images": write_images,
    "arrays": write_arrays,
    "input_list": write_input_list_data,
    "audio": write_audio,
    "text": write_text,
    "synthetic": lambda card, count, text: None,  # nothing: seeded random values from the card alone
}


def prepare(file: str, tmp_path: Path) -> tuple[Path, Card]:
    """Write the doc's card ``file`` into ``tmp_path/my_cards``; unless it is one of :data:`KEPT`, also the model
    file a local source names and the data files its own data names. The card's path and the loaded card.
    """
    folder = tmp_path / "my_cards"
    folder.mkdir()
    path = folder / file
    text = EXAMPLES[file]
    path.write_text(text, encoding="utf-8")
    card = load_card(path)
    if file in KEPT:
        return path, card
    if card.source.kind == "file":
        build_model(card, text, folder / card.source.path)
    if card.dataset.source is not None:
        WRITERS[card.dataset.source.kind](card, card.dataset.calibration + card.dataset.evaluation + SPARE, text)
    return path, card


def card_data(card: Card) -> CardData:
    """The card's calibration and evaluation data as a cell builds it (a registered dataset's through the
    registry).
    """
    dataset = registry().get("dataset", card.dataset.name) if card.dataset.name else None
    return build_card_data(card, dataset)


def fp32_scores(card: Card, data: CardData) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The FP32 outputs of the card's model (its frontend's native run) on the evaluation split, and their
    per-sample scores by the card's metric configured with ``metric.params``, read as a cell reads them.
    """
    reg = registry()
    frontend = reg.get("frontend", card.frontend)
    model = frontend.load(card, resolve_source(card, ArtifactCache()))
    outputs = frontend.native_forward(model, card, data.eval_batch())
    metric = reg.get("metric", card.metric.name)
    configure = optional(metric, "configure")
    if configure is not None:
        metric = configure(dict(card.metric.params))
    else:
        assert not card.metric.params, f"metric {card.metric.name} takes no params"
    return outputs, per_sample(metric, card, outputs, outputs, data.labels)


# --- tests --------------------------------------------------------------------------------------------------------


def test_the_doc_has_one_worked_card_per_source_kind_and_per_model_kind_and_keeps_the_old_ones():
    assert len(EXAMPLES) == len(SOURCE_KINDS) + len(OTHER_KINDS) + len(KEPT), sorted(EXAMPLES)
    by_source = [file for file, section in SECTIONS.items() if section == SOURCES_SECTION]
    assert sorted(_kind(EXAMPLES[file]) for file in by_source) == sorted(SOURCE_KINDS)
    assert sorted(file for file, section in SECTIONS.items() if section == OTHER_SECTION) == sorted(
        OTHER_KINDS.values()
    )
    assert all(file in EXAMPLES and _kind(EXAMPLES[file]) is None for file in KEPT)


def _zoo_card(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "zoo" / "cards" / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize("kind", sorted(OTHER_KINDS))
def test_each_model_kind_card_is_of_its_kind(kind):
    data = yaml.safe_load(EXAMPLES[OTHER_KINDS[kind]])
    source, dataset, metric = data["source"], data["dataset"], data.get("metric", {})
    suffix = Path(source["path"]).suffix
    data_kind = (dataset.get("source") or {}).get("kind")
    labels = (dataset.get("source") or {}).get("labels")
    architecture = data.get("architecture")
    checks = {
        "audio": lambda: data_kind == "audio" and data["frontend"] == "onnx",
        "text": lambda: (
            data_kind == "text"
            and metric["name"] == "top1"
            and dataset["source"]["path"].endswith(".jsonl")
            and bool(dataset["source"]["label_field"])
            and [(i["name"], i["dtype"]) for i in data["inputs"]]
            == [("input_ids", "int64"), ("attention_mask", "int64")]
        ),
        "detector": lambda: (
            metric["name"] == "map50"
            and metric["output"] == ["boxes", "scores", "classes"]
            and data_kind == "arrays"
            and dataset["source"]["path"].endswith(".npz")
            and bool(labels)
        ),
        "segmentation": lambda: metric["name"] == "miou" and metric["params"]["layout"] == "NCHW" and bool(labels),
        "landmarks": lambda: metric["name"] == "nme" and data_kind == "arrays" and bool(labels),
        # the zoo's BlazeFace card's source, sha256 included, and its decode
        "tflite": lambda: (
            data["frontend"] == "tensorflow"
            and suffix == ".tflite"
            and source == _zoo_card("blazeface_short.yaml")["source"]
            and metric["params"]["decode"]["kind"] == "ssd_anchors"
        ),
        "torchscript": lambda: (
            data["frontend"] == "pytorch" and suffix in (".torchscript", ".jit") and not architecture
        ),
        "torch_export": lambda: data["frontend"] == "pytorch" and suffix == ".pt2" and not architecture,
        "safetensors": lambda: (
            data["frontend"] == "pytorch"
            and suffix == ".safetensors"
            and str(architecture).partition(":")[0] in SIDE_FILES
        ),
        "keras_h5": lambda: data["frontend"] == "tensorflow" and suffix == ".h5",
        "onnx_external_data": lambda: data["frontend"] == "onnx" and source["path"] == "model.onnx",
    }
    assert checks[kind](), (kind, data)


@pytest.mark.parametrize("file", sorted(EXAMPLES))
def test_worked_card_checks_its_data_builds_and_its_fp32_outputs_score(file, tmp_path):
    path, card = prepare(file, tmp_path)
    assert card.name == Path(file).stem
    if file in KEPT:  # a registered dataset / a TensorFlow model: the card loads, nothing more
        return
    result = CliRunner().invoke(main, ["zoo", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: ok ({card.name}, {card.frontend}, inputs " in result.output

    data = card_data(card)
    splits = {"calibration": data.calibration, "evaluation": data.evaluation}
    counts = {"calibration": card.dataset.calibration, "evaluation": card.dataset.evaluation}
    for split, arrays in splits.items():
        assert set(arrays) == {spec.name for spec in card.inputs}, split
        for spec in card.inputs:
            array = arrays[spec.name]
            assert array.shape == (counts[split], *spec.sample_shape), (split, spec.name, array.shape)
            assert array.dtype == np.dtype(spec.dtype), (split, spec.name, array.dtype)
    labeled = getattr(registry().get("metric", card.metric.name), "compared_with", None) != "fp32"
    if labeled:
        assert data.labels is not None and len(data.labels) == card.dataset.evaluation
        if data.labels.ndim == 1 and card.dataset.source is not None:  # class indices
            assert set(np.unique(data.labels)) <= set(range(len(_classes(card)) or 3))

    outputs, scores = fp32_scores(card, data)
    shapes = declared_shapes(EXAMPLES[file])
    for name, shape in zip(card.outputs, shapes or [], strict=False):  # the doc's shapes are the model's
        assert outputs[name].shape == (card.dataset.evaluation, *shape[1:]), (name, outputs[name].shape, shape)
    assert scores.shape == (card.dataset.evaluation,) and np.isfinite(scores).all(), scores
    low, high = FP32_RANGES[card.metric.name]
    assert low <= float(np.mean(scores)) <= high, (card.metric.name, float(np.mean(scores)))
    if card.source.kind == "pypi_file" and card.metric.fp32_reference is not None:  # a real model: its reference
        value = float(np.mean(scores))
        registered = registry().get("metric", card.metric.name)
        if registered.higher_is_better:
            assert value >= card.metric.fp32_reference, value
        else:
            assert value <= card.metric.fp32_reference, value


def test_arrays_worked_card_runs_through_cpu_fp32_and_w8a8(tmp_path):
    file = next(f for f, text in EXAMPLES.items() if SECTIONS[f] == SOURCES_SECTION and _kind(text) == "arrays")
    path, card = prepare(file, tmp_path)
    report = tmp_path / "report"
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "conformance/",
        "--zoo", str(path.parent), "--zoo-models", card.name, "--backends", "cpu", "--precisions", "fp32,w8a8",
        "--quant", "none,ptq", "--zoo-report", str(report),
    ]  # fmt: skip
    env = {**os.environ, "ZOOCOMPAT_CACHE": str(tmp_path / "cache")}  # a fresh cache: converted and run for real
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    results = report / "results.json"
    assert results.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    cells = {c["id"]: c for c in json.loads(results.read_text())["cells"] if c["model"] == card.name}
    assert set(cells) == {f"{card.name}-onnx-cpu-fp32-none", f"{card.name}-onnx-cpu-w8a8-ptq"}, sorted(cells)
    for cell in cells.values():
        assert cell["status"] in VERDICTS, (cell["id"], cell["status"], cell["reason"])
        assert cell["metric"]["name"] == card.metric.name and cell["metric"]["value"] is not None, cell["id"]
        assert cell["metric"]["samples"] == card.dataset.evaluation, cell["id"]
        assert cell["metric"]["tolerance"] == card.tolerance_for(cell["precision"]), cell["id"]
    fp32 = cells[f"{card.name}-onnx-cpu-fp32-none"]
    assert fp32["status"] == "pass", fp32["reason"]
    w8a8 = cells[f"{card.name}-onnx-cpu-w8a8-ptq"]
    assert w8a8["metric"]["value"] < fp32["metric"]["value"]  # quantized: real noise, measured per sample
