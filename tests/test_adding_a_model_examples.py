"""Every worked card of ``docs/adding-a-model.md``, run as written.

The doc's cards are its ```yaml blocks whose first line is ``# my_cards/<file>.yaml``.
Each one with its own data (``dataset.source``) gets, in a temp ``my_cards/``
folder, a small ONNX model built from the card's own inputs and outputs and
the data files it names (images, a labels CSV, an ``.npz``, an SNPE input list,
wav files, a ``tokenizer.json``; nothing for ``synthetic``); then
``zoocompat zoo check`` must pass it and its data must build into calibration
and evaluation splits of the declared shapes and dtypes. The cards that name a
registered dataset or a PyTorch / TensorFlow model must load. The ``arrays``
card also runs through the real cpu fp32 and w8a8 cells.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from zoocompat.api.registry import registry
from zoocompat.cli import main
from zoocompat.model.cards import Card, InputSpec, load_card
from zoocompat.model.data import build_card_data
from zoocompat.model.input_list import write_input_list

ROOT = Path(__file__).parent.parent
DOC = ROOT / "docs" / "adding-a-model.md"
#: One worked card per kind of ``dataset.source``.
SOURCE_KINDS = ("image_folder", "images", "arrays", "input_list", "audio", "text", "synthetic")
#: The doc's older worked cards (a registered dataset, a TensorFlow model): they are only loaded.
KEPT = ("my_orientation.yaml", "my_digits.yaml")
#: Samples written beyond calibration + evaluation (left over, as in a user's folder).
SPARE = 4
VERDICTS = {"pass", "fail", "inconclusive"}

_YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.DOTALL | re.MULTILINE)
_CARD_LINE = re.compile(r"^# my_cards/(\S+\.yaml)\s*$")


def doc_examples() -> dict[str, str]:
    """The doc's worked cards: ``{file name: card text}`` for every ```yaml block that starts with
    ``# my_cards/<file>.yaml``.
    """
    examples: dict[str, str] = {}
    for block in _YAML_BLOCK.findall(DOC.read_text(encoding="utf-8")):
        match = _CARD_LINE.match(block.splitlines()[0]) if block.strip() else None
        if match:
            assert match.group(1) not in examples, f"two worked cards are called {match.group(1)}"
            examples[match.group(1)] = block
    return examples


EXAMPLES = doc_examples()


def _kind(text: str) -> str | None:
    """The ``dataset.source.kind`` of a card's text (``None`` for a registered dataset)."""
    source = yaml.safe_load(text)["dataset"].get("source")
    return source["kind"] if source else None


# --- the model ----------------------------------------------------------------------------------------------------


def _classes(card: Card) -> list[str]:
    return list(getattr(card.dataset.source, "classes", None) or [])


def output_shapes(card: Card) -> dict[str, list[int]]:
    """Each card output's shape: ``<input>_out`` mirrors that input (a recurrent state), any other is
    ``[1, classes]`` (the source's classes, else 4 scores).
    """
    specs = {spec.name: spec for spec in card.inputs}
    width = len(_classes(card)) or 4
    shapes = {}
    for name in card.outputs:
        state = specs.get(name.removesuffix("_out")) if name.endswith("_out") else None
        shapes[name] = list(state.shape) if state is not None and state.shape else [1, width]
    return shapes


def build_model(card: Card, path: Path) -> None:
    """A small seeded ONNX graph with the card's inputs (names, shapes, dtypes, in order) and outputs.

    Every input becomes float (integers and bools as ``log(1 + |x|)``, so ids and sample rates stay small),
    is flattened to ``[1, -1]`` (a batched input one sample, any other the whole tensor) and concatenated;
    a MatMul + Tanh gives a hidden vector, and a MatMul + Sigmoid per output its values
    (:func:`output_shapes`).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    elem = {
        "float32": TensorProto.FLOAT,
        "float16": TensorProto.FLOAT16,
        "int64": TensorProto.INT64,
        "int32": TensorProto.INT32,
        "uint8": TensorProto.UINT8,
        "bool": TensorProto.BOOL,
    }
    rng = np.random.default_rng(11)
    hidden = 16
    weights = {"flat": np.array([1, -1], dtype=np.int64), "one": np.array(1.0, dtype=np.float32)}
    nodes, flat = [], []
    for index, spec in enumerate(card.inputs):
        value = spec.name
        if spec.dtype != "float32":
            nodes.append(helper.make_node("Cast", [value], [f"f{index}"], to=TensorProto.FLOAT))
            value = f"f{index}"
        if spec.dtype not in ("float32", "float16"):
            nodes += [
                helper.make_node("Abs", [value], [f"a{index}"]),
                helper.make_node("Add", [f"a{index}", "one"], [f"p{index}"]),
                helper.make_node("Log", [f"p{index}"], [f"l{index}"]),
            ]
            value = f"l{index}"
        nodes.append(helper.make_node("Reshape", [value, "flat"], [f"x{index}"]))
        flat.append(f"x{index}")
    features = sum(math.prod(spec.shape) for spec in card.inputs)
    weights["w"] = rng.normal(0, 1 / math.sqrt(features), (features, hidden)).astype(np.float32)
    nodes += [
        helper.make_node("Concat", flat, ["features"], axis=1),
        helper.make_node("MatMul", ["features", "w"], ["h0"]),
        helper.make_node("Tanh", ["h0"], ["h"]),
    ]
    outputs = []
    for index, (name, shape) in enumerate(output_shapes(card).items()):
        weights[f"w{index}"] = rng.normal(0, 1 / math.sqrt(hidden), (hidden, math.prod(shape))).astype(np.float32)
        weights[f"shape{index}"] = np.array(shape, dtype=np.int64)
        nodes += [
            helper.make_node("MatMul", ["h", f"w{index}"], [f"o{index}"]),
            helper.make_node("Sigmoid", [f"o{index}"], [f"s{index}"]),
            helper.make_node("Reshape", [f"s{index}", f"shape{index}"], [name]),
        ]
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    graph = helper.make_graph(
        nodes,
        card.name,
        [helper.make_tensor_value_info(spec.name, elem[spec.dtype], spec.shape) for spec in card.inputs],
        outputs,
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


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


def write_image_folder(card: Card, count: int) -> None:
    """``count`` images spread over one sub-folder per class."""
    source, spec = card.dataset.source, _target(card)
    classes = _classes(card) or ["a", "b"]
    for index in range(count):
        _write_image(card.folder / source.path / classes[index % len(classes)] / f"{index:04d}.png", spec, index)


def write_images(card: Card, count: int) -> None:
    """``count`` images in two nested folders, and the labels CSV when the card names one."""
    source, spec = card.dataset.source, _target(card)
    rows = ["file,label"]
    for index in range(count):
        relative = f"field_{'ab'[index % 2]}/img_{index:03d}.png"
        _write_image(card.folder / source.path / relative, spec, index)
        rows.append(f"{relative},{_label(_classes(card), index)}")
    if source.labels is not None:
        (card.folder / source.labels).write_text("\n".join(rows) + "\n", encoding="utf-8")


def write_arrays(card: Card, count: int) -> None:
    """One ``.npz`` (or one ``.npy`` per input) of ``count`` samples per input, labels beside them if named."""
    source, rng = card.dataset.source, np.random.default_rng(5)
    arrays = {spec.name: tensor_samples(spec, count, rng) for spec in card.inputs}
    labels = np.arange(count, dtype=np.int64) % 3
    if source.path is not None:
        extra = {source.labels: labels} if source.labels else {}
        np.savez(card.folder / source.path, **arrays, **extra)
    else:
        for name, file in source.files.items():
            np.save(card.folder / file, arrays[name])
        if source.labels:
            np.save(card.folder / source.labels, labels)


def write_input_list_data(card: Card, count: int) -> None:
    """An SNPE input list of ``count`` samples, each ``.raw`` in its input's dtype at the full shape."""
    source, rng = card.dataset.source, np.random.default_rng(6)
    arrays = {spec.name: tensor_samples(spec, count, rng) for spec in card.inputs}
    samples = [{spec.name: arrays[spec.name][i].reshape(spec.shape) for spec in card.inputs} for i in range(count)]
    listed = card.folder / source.path
    write_input_list(samples, listed.parent, listed.name, dtypes={spec.name: spec.dtype for spec in card.inputs})
    if source.labels is not None:
        (card.folder / source.labels).write_text("".join(f"{i % 3}\n" for i in range(count)), encoding="utf-8")


def write_audio(card: Card, count: int) -> None:
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


def write_text(card: Card, count: int) -> None:
    """``count`` sentences (``.txt`` lines or ``.jsonl`` records) and a WordLevel ``tokenizer.json`` for them."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    source = card.dataset.source
    words = "the a quick small model runs on every phone and board with its own data today".split()
    rng = np.random.default_rng(7)
    texts = [" ".join(rng.choice(words, size=int(rng.integers(3, 40)))) for _ in range(count)]
    path = card.folder / source.path
    if path.suffix == ".jsonl":
        records = [{source.text_field: text} for text in texts]
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
    "synthetic": lambda card, count: None,  # nothing: seeded random values from the card alone
}


def prepare(file: str, tmp_path: Path) -> tuple[Path, Card]:
    """Write the doc's card ``file`` into ``tmp_path/my_cards``; for a card with its own data, also the model
    and the data files it names. The card's path and the loaded card.
    """
    folder = tmp_path / "my_cards"
    folder.mkdir()
    path = folder / file
    path.write_text(EXAMPLES[file], encoding="utf-8")
    card = load_card(path)
    if card.dataset.source is not None:
        build_model(card, folder / card.source.path)
        WRITERS[card.dataset.source.kind](card, card.dataset.calibration + card.dataset.evaluation + SPARE)
    return path, card


# --- tests --------------------------------------------------------------------------------------------------------


def test_the_doc_has_one_worked_card_per_source_kind_and_keeps_the_old_ones():
    kinds = [_kind(text) for text in EXAMPLES.values()]
    assert len(EXAMPLES) == len(SOURCE_KINDS) + len(KEPT), sorted(EXAMPLES)
    assert sorted(kind for kind in kinds if kind) == sorted(SOURCE_KINDS)
    assert all(file in EXAMPLES and _kind(EXAMPLES[file]) is None for file in KEPT)


@pytest.mark.parametrize("file", sorted(EXAMPLES))
def test_worked_card_checks_and_its_data_builds(file, tmp_path):
    path, card = prepare(file, tmp_path)
    assert card.name == Path(file).stem
    if card.dataset.source is None:  # a registered dataset / a TensorFlow model: the card loads, nothing more
        assert file in KEPT
        return
    result = CliRunner().invoke(main, ["zoo", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: ok ({card.name}, onnx, inputs " in result.output

    data = build_card_data(card, None)
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
        assert set(np.unique(data.labels)) <= set(range(len(_classes(card)) or 3))


def test_arrays_worked_card_runs_through_cpu_fp32_and_w8a8(tmp_path):
    file = next(file for file, text in EXAMPLES.items() if _kind(text) == "arrays")
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
