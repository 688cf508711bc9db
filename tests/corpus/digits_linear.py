"""A small real model for the bad-input corpus: a linear digits classifier, fitted in closed form.

Least squares on one-hot labels of scikit-learn's digits training split (the
same fixed split the ``digits`` dataset plugin serves), so the model is
trained, deterministic and built in milliseconds. The corpus breaks copies of
it, its card and its data on purpose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def fit_weights() -> tuple[np.ndarray, np.ndarray]:
    """``(64 x 10 weights, 10 biases)`` fitted on the digits training split, inputs scaled to 0..1."""
    from zoocompat_plugins.datasets.images import DigitsDataset

    pool = DigitsDataset().load("train", 0, {})
    x = pool.samples.reshape(len(pool.samples), -1).astype(np.float64) / 16.0
    x1 = np.hstack([x, np.ones((len(x), 1))])
    onehot = np.eye(10)[pool.labels]
    solution, *_ = np.linalg.lstsq(x1.T @ x1 + 1e-2 * np.eye(65), x1.T @ onehot, rcond=None)
    return solution[:64].astype(np.float32), solution[64].astype(np.float32)


def build_onnx(path: Path, weights: np.ndarray, bias: np.ndarray, *, batch: int | str = 1) -> Path:
    """Write ``Reshape -> Gemm -> Softmax`` taking ``batch x 8 x 8 x 1`` (NHWC) to ``path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["input", "shape"], ["flat"]),
            helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ],
        "digits_linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 8, 8, 1])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [batch, 10])],
        [
            numpy_helper.from_array(np.asarray([-1, 64], np.int64), "shape"),
            numpy_helper.from_array(weights, "W"),
            numpy_helper.from_array(bias, "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def card(name: str, model_file: str = "model.onnx") -> dict[str, Any]:
    """A valid card for the linear digits model stored as ``model_file`` beside it."""
    return {
        "name": name,
        "frontend": "onnx",
        "description": "linear digits classifier (bad-input corpus)",
        "license": "BSD-3-Clause (scikit-learn digits)",
        "source": {"kind": "file", "path": model_file},
        "inputs": [{"name": "input", "shape": [1, 8, 8, 1], "layout": "NHWC", "preprocess": {"scale": 0.0625}}],
        "outputs": ["probs"],
        "dataset": {"name": "digits", "calibration": 20, "evaluation": 300, "seed": 0},
        "metric": {"name": "top1", "output": "probs", "fp32_reference": 0.8},
        "tolerance": {"default": 0.05},
        "smoke": [],
    }


def digits_cells(root: Path, name: str) -> tuple[Any, Path, np.ndarray, np.ndarray, Any]:
    """The linear digits model under card ``name`` in ``root/cards/name``, and ``run(precision="w8a8",
    reuse_outputs=None, report="r1")``, which runs its cpu cell through a fresh
    :class:`~zoocompat.run.pipeline.CellRunner` over one artifact cache (``root/cache``), reporting into
    ``root/<report>``. Returns ``(run, folder, weights, bias, cache)``; rewrite ``folder/model.onnx`` to change
    the model under the same card.
    """
    import yaml

    from zoocompat.api.cache import ArtifactCache
    from zoocompat.api.registry import registry
    from zoocompat.model.cards import load_card
    from zoocompat.report.results import ReportDir
    from zoocompat.run.matrix import Cell
    from zoocompat.run.pipeline import CellRunner

    weights, bias = fit_weights()
    folder = root / "cards" / name
    folder.mkdir(parents=True)
    build_onnx(folder / "model.onnx", weights, bias)
    (folder / "card.yaml").write_text(yaml.safe_dump(card(name), sort_keys=False))
    cache = ArtifactCache(root / "cache")

    def run(precision: str = "w8a8", reuse_outputs: bool | None = None, report: str = "r1"):
        loaded = load_card(folder / "card.yaml")
        runner = CellRunner(
            registry(), {loaded.name: loaded}, cache, ReportDir(root / report), reuse_outputs=reuse_outputs
        )
        quant = "none" if precision == "fp32" else "ptq"
        return runner.run_cell(Cell(loaded.name, loaded.frontend, "cpu", precision, quant, None))

    return run, folder, weights, bias, cache


def digits_runner(folder: Path, data: dict[str, Any], build: Any = None) -> tuple[Any, Any]:
    """The linear digits model (or ``build(path)``'s) and the card ``data`` written in ``folder``
    (``<name>.yaml``, ``model.onnx``), and a :class:`~zoocompat.run.pipeline.CellRunner` over that one card with
    its own cache and report there. Returns the runner and the loaded card.
    """
    import yaml

    from zoocompat.api.cache import ArtifactCache
    from zoocompat.api.registry import registry
    from zoocompat.model.cards import load_card
    from zoocompat.report.results import ReportDir
    from zoocompat.run.pipeline import CellRunner

    if build is None:
        build_onnx(folder / "model.onnx", *fit_weights())
    else:
        build(folder / "model.onnx")
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    loaded = load_card(path)
    return CellRunner(
        registry(), {loaded.name: loaded}, ArtifactCache(folder / "cache"), ReportDir(folder / "r")
    ), loaded


def build_gelu_onnx(path: Path, hidden: int = 96, seed: int = 0) -> Path:
    """A digits classifier with one exact-GELU hidden layer, as torch.onnx writes ``nn.GELU()`` at opset 17.

    ``Reshape -> Gemm -> Div -> Erf -> Add -> Mul -> Mul -> Gemm -> Softmax``: the first layer is seeded random
    features (``N(0, 1/64)``), the second is fitted by least squares on their GELU on the digits training split
    (a random-features classifier: trained, deterministic, built in milliseconds; about 0.95 top-1).
    """
    import math

    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from zoocompat_plugins.datasets.images import DigitsDataset

    rng = np.random.default_rng(seed)
    w1 = rng.normal(0.0, 1.0 / 8.0, (64, hidden)).astype(np.float64) * 4.0
    b1 = rng.normal(0.0, 0.5, hidden)
    pool = DigitsDataset().load("train", 0, {})
    x = pool.samples.reshape(len(pool.samples), -1).astype(np.float64) / 16.0
    pre = x @ w1 + b1
    h = 0.5 * pre * (1.0 + np.vectorize(math.erf)(pre / math.sqrt(2.0)))
    h1 = np.hstack([h, np.ones((len(h), 1))])
    onehot = np.eye(10)[pool.labels]
    w2, *_ = np.linalg.lstsq(h1.T @ h1 + 1e-2 * np.eye(hidden + 1), h1.T @ onehot, rcond=None)
    consts = {
        "shape": np.asarray([-1, 64], np.int64),
        "W1": w1.astype(np.float32),
        "B1": b1.astype(np.float32),
        "sqrt2": np.asarray(math.sqrt(2.0), np.float32),
        "one": np.asarray(1.0, np.float32),
        "half": np.asarray(0.5, np.float32),
        "W2": w2[:hidden].astype(np.float32),
        "B2": w2[hidden].astype(np.float32),
    }
    nodes = [
        helper.make_node("Reshape", ["input", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "W1", "B1"], ["pre"]),
        helper.make_node("Div", ["pre", "sqrt2"], ["scaled"]),
        helper.make_node("Erf", ["scaled"], ["erf"]),
        helper.make_node("Add", ["erf", "one"], ["erf1"]),
        helper.make_node("Mul", ["pre", "erf1"], ["gated"]),
        helper.make_node("Mul", ["gated", "half"], ["hidden"]),
        helper.make_node("Gemm", ["hidden", "W2", "B2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_gelu",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8, 8, 1])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(value, name) for name, value in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
