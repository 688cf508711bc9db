"""The bad-input corpus: each broken model, card or data fails its own cell, clearly, and the run goes on.

Every case starts from a real, working model (a least-squares digits classifier,
see ``tests/corpus/digits_linear.py``) and breaks one thing. It asserts the
cell's status and category, the key words of the message (what, where, what
to do), that the record was written, and that a healthy cell run right after
it in the same process still passes.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.corpus.digits_linear import build_onnx, card, fit_weights
from zoocompat.api.cache import ArtifactCache
from zoocompat.api.errors import CardError
from zoocompat.api.registry import registry
from zoocompat.model.cards import load_card
from zoocompat.report.results import CellRecord, ReportDir
from zoocompat.run.matrix import Cell
from zoocompat.run.pipeline import CellRunner

pytestmark = pytest.mark.bad_input
ROOT = Path(__file__).parent.parent


class Corpus:
    """A scratch zoo, cache and report shared by the cases of one worker."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = ArtifactCache(root / "cache")
        self.report = ReportDir(root / "report")
        self.weights, self.bias = fit_weights()
        self.registry = registry()

    def folder(self, name: str) -> Path:
        """A fresh card folder holding a copy of the working model as ``model.onnx``."""
        folder = self.root / "cards" / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        build_onnx(folder / "model.onnx", self.weights, self.bias)
        return folder

    def write_card(self, folder: Path, data: dict[str, Any] | str) -> Path:
        """Write ``data`` as the folder's card."""
        path = folder / "card.yaml"
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return path

    def run(
        self, path: Path, backend: str = "cpu", precision: str = "fp32", quant: str = "none", sdk: str | None = None
    ) -> CellRecord:
        """Run one cell of the card at ``path`` in this process."""
        loaded = load_card(path)
        runner = CellRunner(self.registry, {loaded.name: loaded}, self.cache, self.report)
        return runner.run_cell(Cell(loaded.name, loaded.frontend, backend, precision, quant, sdk))

    def healthy(self) -> CellRecord:
        """The unbroken model's cpu w8a8 cell (cached after its first run)."""
        folder = self.root / "cards" / "healthy"
        if not folder.exists():
            folder = self.folder("healthy")
            self.write_card(folder, card("healthy"))
        return self.run(folder / "card.yaml", precision="w8a8", quant="ptq")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    """One corpus per worker; the healthy cell runs first so every case can compare with it."""
    corpus = Corpus(tmp_path_factory.mktemp("corpus"))
    assert corpus.healthy().status == "pass"
    return corpus


# ---------------------------------------------------------------------------
# Cards that do not load: a clear CardError naming the file and the field
# ---------------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def mutate(data: dict) -> None:
        *parents, leaf = path.split(".")
        target = data
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if value is _DELETE:
            del target[leaf]
        elif isinstance(target, list):
            target[int(leaf)] = value
        else:
            target[leaf] = value

    return mutate


_DELETE = object()

CARD_CASES = [
    ("unknown-field", _set("colour", "red"), ["colour", "Extra inputs are not permitted"]),
    ("wrong-type", _set("dataset.evaluation", "many"), ["dataset.evaluation", "integer"]),
    ("unknown-dtype", _set("inputs.0.dtype", "float64"), ["inputs.0.dtype", "float32", "int64"]),
    ("rank-over-8", _set("inputs.0.shape", [1] * 9), ["inputs.0.shape", "at most 8"]),
    ("zero-dim", _set("inputs.0.shape", [1, 0, 8, 1]), ["inputs.0.shape", "greater than 0"]),
    ("unknown-frontend", _set("frontend", "caffe"), ["frontend", "pytorch", "tensorflow", "onnx"]),
    ("negative-evaluation", _set("dataset.evaluation", -5), ["dataset.evaluation", "greater than 0"]),
    ("bad-name", _set("name", "My Model"), ["name", "pattern"]),
    ("two-data-origins", _set("dataset.source", {"kind": "synthetic"}), ["dataset", "either name", "source"]),
    ("unknown-metric", _set("metric.name", "f1_macro"), ["metric.name", "f1_macro", "top1"]),
    ("unknown-dataset", _set("dataset.name", "imagenet"), ["dataset.name", "imagenet", "dataset.source"]),
    ("bad-sha256", _set("source.sha256", "abc"), ["source.file.sha256", "pattern"]),
    ("bad-recipe", _set("source", {"kind": "recipe", "recipe": "no colon"}), ["source.recipe.recipe", "pattern"]),
    ("unknown-source-kind", _set("source", {"kind": "http", "url": "x"}), ["source", "http"]),
    ("bad-smoke", _set("smoke", ["npu-int8"]), ["smoke entry 'npu-int8'"]),
    ("bad-tolerance-key", _set("tolerance", {"int8": 0.01}), ["tolerance key 'int8'"]),
    ("metric-output-unknown", _set("metric.output", "logits"), ["metric.output 'logits'", "outputs"]),
    ("pytorch-without-architecture", _set("frontend", "pytorch"), ["architecture", "module:Class"]),
    ("bad-layout", _set("inputs.0.layout", "NWHC"), ["inputs.0.layout", "NCHW"]),
    ("bad-dtype", _set("inputs.0.dtype", "int8"), ["inputs.0.dtype", "float32"]),
]


@pytest.mark.parametrize(("case", "mutate", "words"), CARD_CASES, ids=[c[0] for c in CARD_CASES])
def test_invalid_card_names_file_and_field(corpus, case, mutate, words):
    folder = corpus.folder(f"card-{case}")
    data = card(f"card_{case.replace('-', '_')}")
    mutate(data)
    path = corpus.write_card(folder, data)
    with pytest.raises(CardError) as error:
        load_card(path)
    message = str(error.value)
    assert str(path) in message
    for word in words:
        assert word in message, message
    assert corpus.healthy().status == "pass"


@pytest.mark.parametrize(
    ("case", "text", "words"),
    [
        ("python-tag", "name: !!python/object/apply:os.system ['true']\n", ["safe subset only", "python/object"]),
        ("not-a-mapping", "- just\n- a list\n", ["mapping"]),
        ("empty-file", "", ["mapping"]),
        ("yaml-syntax", "name: [unclosed\n", ["YAML"]),
    ],
)
def test_unreadable_card_text(corpus, case, text, words):
    path = corpus.write_card(corpus.folder(f"text-{case}"), text)
    with pytest.raises(CardError) as error:
        load_card(path)
    assert str(path) in str(error.value)
    for word in words:
        assert word.lower() in str(error.value).lower(), str(error.value)
    assert corpus.healthy().status == "pass"


# ---------------------------------------------------------------------------
# Cells that fail on their own: status, category, message, record, run goes on
# ---------------------------------------------------------------------------


@dataclass
class CellCase:
    """Break something in a working card folder, then expect this cell outcome."""

    name: str
    breaks: Callable[[Corpus, Path, dict], None]
    status: str
    category: str | None
    words: list[str]
    cell: tuple[str, str, str] = ("cpu", "fp32", "none")
    sdk: str | None = None


def _replace_model(write: Callable[[Path], Any]) -> Callable[[Corpus, Path, dict], None]:
    def breaks(corpus: Corpus, folder: Path, data: dict) -> None:
        write(folder / "model.onnx")

    return breaks


def _truncate(path: Path) -> None:
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def _edit_graph(edit: Callable[[Any], None]) -> Callable[[Corpus, Path, dict], None]:
    def breaks(corpus: Corpus, folder: Path, data: dict) -> None:
        import onnx

        model = onnx.load(str(folder / "model.onnx"))
        edit(model)
        onnx.save(model, str(folder / "model.onnx"))

    return breaks


def _custom_op(model) -> None:
    from onnx import helper

    graph = model.graph
    softmax = graph.node[-1]
    softmax.input[0] = "scrambled"
    graph.node.insert(2, helper.make_node("Scramble", ["logits"], ["scrambled"], domain="com.example.vendor"))
    model.opset_import.append(helper.make_opsetid("com.example.vendor", 1))


def _poison_bias(value: float) -> Callable[[Any], None]:
    def edit(model) -> None:
        from onnx import numpy_helper

        for index, init in enumerate(model.graph.initializer):
            if init.name == "B":
                bias = numpy_helper.to_array(init).copy()
                bias[3] = value
                model.graph.initializer[index].CopyFrom(numpy_helper.from_array(bias, "B"))

    return edit


def _dynamic_rank(model) -> None:
    from onnx import TensorProto, helper

    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 64]))


def _fixed_other_dims(model) -> None:
    from onnx import TensorProto, helper

    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4, 16, 1]))


def _card(**changes: Any) -> Callable[[Corpus, Path, dict], None]:
    def breaks(corpus: Corpus, folder: Path, data: dict) -> None:
        for path, value in changes.items():
            _set(path.replace("__", "."), value)(data)

    return breaks


def _wrong_sha(corpus: Corpus, folder: Path, data: dict) -> None:
    data["source"]["sha256"] = hashlib.sha256(b"some other file").hexdigest()


def _escape(corpus: Corpus, folder: Path, data: dict) -> None:
    outside = corpus.root / "outside.onnx"
    build_onnx(outside, corpus.weights, corpus.bias)
    data["source"]["path"] = "../../outside.onnx"


def _symlink_out(corpus: Corpus, folder: Path, data: dict) -> None:
    outside = corpus.root / "outside-link-target.onnx"
    build_onnx(outside, corpus.weights, corpus.bias)
    (folder / "model.onnx").unlink()
    os.symlink(outside, folder / "model.onnx")


def _torch_card(weights: Callable[[Path], None], architecture: str = "zoocompat_zoo.models.mtcnn:ONet"):
    def breaks(corpus: Corpus, folder: Path, data: dict) -> None:
        weights(folder / "weights.pt")
        onet = yaml.safe_load((ROOT / "zoo" / "cards" / "mtcnn_onet.yaml").read_text())
        data.update({key: onet[key] for key in ("inputs", "outputs", "dataset", "metric")})
        data.update(frontend="pytorch", architecture=architecture, source={"kind": "file", "path": "weights.pt"})

    return breaks


def _torch_save(obj_factory: Callable[[], Any]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        import torch

        torch.save(obj_factory(), path)

    return write


class _NotAWeight:
    """A pickled object that ``weights_only`` loading must refuse to build."""

    def __reduce__(self):
        return (print, ("this code must never run",))


def _tf_card(make: Callable[[Path], str]) -> Callable[[Corpus, Path, dict], None]:
    def breaks(corpus: Corpus, folder: Path, data: dict) -> None:
        data.update(frontend="tensorflow", source={"kind": "file", "path": make(folder)})

    return breaks


def _bad_keras(folder: Path) -> str:
    (folder / "model.keras").write_bytes(b"PK\x03\x04 this is not a keras archive")
    return "model.keras"


def _empty_saved_model(folder: Path) -> str:
    (folder / "saved").mkdir()
    (folder / "saved" / "saved_model.pb").write_bytes(b"\x00\x01garbage")
    return "saved"


CELL_CASES = [
    CellCase(
        "missing-model-file", _replace_model(lambda p: p.unlink()), "fail", "bad_input", ["model.onnx", "no such file"]
    ),
    CellCase(
        "truncated-onnx", _replace_model(_truncate), "fail", "bad_input", ["model.onnx", "not a readable ONNX model"]
    ),
    CellCase(
        "garbage-onnx",
        _replace_model(lambda p: p.write_bytes(b"\x00garbage" * 10)),
        "fail",
        "bad_input",
        ["model.onnx"],
    ),
    CellCase("empty-onnx", _replace_model(lambda p: p.write_bytes(b"")), "fail", "bad_input", ["model.onnx"]),
    CellCase("sha256-mismatch", _wrong_sha, "fail", "bad_input", ["does not match the pinned"]),
    CellCase("path-escapes-folder", _escape, "fail", "bad_input", ["outside the card's folder"]),
    CellCase("symlink-out-of-folder", _symlink_out, "fail", "bad_input", ["outside the card's folder"]),
    CellCase("custom-domain-op", _edit_graph(_custom_op), "fail", "convert_error", ["Scramble", "com.example.vendor"]),
    CellCase("nan-output", _edit_graph(_poison_bias(math.nan)), "fail", "bad_input", ["NaN", "probs"]),
    CellCase("inf-output", _edit_graph(_poison_bias(math.inf)), "fail", "bad_input", ["probs"]),
    CellCase("rank-differs-from-card", _edit_graph(_dynamic_rank), "fail", "convert_error", ["rank 2", "inputs.shape"]),
    CellCase(
        "fixed-dims-differ-from-card",
        _edit_graph(_fixed_other_dims),
        "fail",
        "convert_error",
        ["[1, 4, 16, 1]", "inputs.shape"],
    ),
    CellCase(
        "outputs-miscounted", _card(outputs=["probs", "extra"]), "fail", "convert_error", ["outputs", "card declares"]
    ),
    CellCase(
        "unknown-dataset-param", _card(dataset__params={"colour": 1}), "fail", "bad_input", ["colour", "dataset.params"]
    ),
    CellCase(
        "evaluation-larger-than-data", _card(dataset__evaluation=5000), "fail", "bad_input", ["5000", "evaluation"]
    ),
    CellCase(
        "preprocess-channels-mismatch",
        _card(inputs__0__preprocess={"scale": 0.0625, "channels": 3}),
        "fail",
        "bad_input",
        ["input", "shape"],
    ),
    CellCase(
        "labels-do-not-fit-output",
        _card(dataset__name="lfw_faces", inputs__0__preprocess={"channels": 1, "resize": [8, 8], "scale": 0.0039}),
        "fail",
        "bad_input",
        ["label"],
    ),
    CellCase(
        "metric-params-not-taken",
        _card(metric__params={"k": 5}),
        "fail",
        "bad_input",
        ["takes no parameters", "metric.params"],
    ),
    CellCase(
        "fp32-below-reference", _card(metric__fp32_reference=0.999), "fail", "accuracy", ["below", "fp32_reference"]
    ),
    CellCase(
        "sdk-not-installed",
        lambda c, f, d: None,
        "skip",
        None,
        ["unavailable", "qnn-2.30"],
        cell=("htp", "w8a8", "ptq"),
        sdk="qnn-2.30",
    ),
    CellCase(
        "state-dict-garbage",
        _torch_card(lambda p: p.write_bytes(b"not a zip")),
        "fail",
        "bad_input",
        ["weights.pt", "not a loadable state dict"],
    ),
    CellCase(
        "state-dict-wrong-keys",
        _torch_card(_torch_save(lambda: __import__("torch").nn.Linear(2, 2).state_dict())),
        "fail",
        "bad_input",
        ["weights do not fit", "zoocompat_zoo.models.mtcnn:ONet"],
    ),
    CellCase(
        "state-dict-with-code",
        _torch_card(_torch_save(lambda: {"w": _NotAWeight()})),
        "fail",
        "bad_input",
        ["not a loadable state dict"],
    ),
    CellCase(
        "architecture-not-importable",
        _torch_card(_torch_save(dict), architecture="nowhere.models:Net"),
        "fail",
        "bad_input",
        ["nowhere.models"],
    ),
    CellCase("keras-file-corrupt", _tf_card(_bad_keras), "fail", "bad_input", ["model.keras"]),
    CellCase("saved-model-corrupt", _tf_card(_empty_saved_model), "fail", "bad_input", ["saved"]),
]


@pytest.mark.parametrize("case", CELL_CASES, ids=[c.name for c in CELL_CASES])
def test_bad_input_fails_only_its_cell(corpus, case):
    name = "cell_" + case.name.replace("-", "_")
    folder = corpus.folder(name)
    data = card(name)
    case.breaks(corpus, folder, data)
    path = corpus.write_card(folder, data)
    backend, precision, quant = case.cell
    record = corpus.run(path, backend, precision, quant, case.sdk)
    assert (record.status, record.category) == (case.status, case.category), f"{record.category}: {record.reason}"
    for word in case.words:
        assert word.lower() in (record.reason or "").lower(), record.reason
    assert (corpus.report.cells_dir / f"{record.id}.json").exists()
    assert corpus.healthy().status == "pass"


def test_corpus_size():
    """The issue asks for at least 40 cases across the categories."""
    assert len(CARD_CASES) + 4 + len(CELL_CASES) >= 40
    assert np.unique([c.category for c in CELL_CASES if c.category]).size >= 3
