"""Quantization-aware training (aimet-torch): a real fine-tune recovers part of a w4a8 drop; errors are cells.

The model is the least-squares digits classifier of the bad-input corpus, an
ONNX card, so it also takes the onnx2torch route that ONNX and TensorFlow
cards take. At w4a8 min-max PTQ loses tens of points on it, enough that a
QAT that does nothing would fail the comparison below.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
import yaml

from tests.corpus.digits_linear import build_onnx, card, fit_weights
from zoocompat.api.cache import ArtifactCache
from zoocompat.api.registry import registry
from zoocompat.model.cards import load_card
from zoocompat.report.results import ReportDir
from zoocompat.run.matrix import Cell, Selection, build_cells
from zoocompat.run.pipeline import CellRunner

pytest.importorskip("aimet_torch")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("qat")
    build_onnx(root / "model.onnx", *fit_weights())

    def runner(name: str = "digits_qat", **changes) -> tuple[CellRunner, object]:
        data = card(name)
        data.update(changes)
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        loaded = load_card(path)
        run = CellRunner(registry(), {loaded.name: loaded}, ArtifactCache(root / "cache"), ReportDir(root / name))
        return run, loaded

    return runner


def test_qat_recovers_part_of_the_w4a8_drop(digits):
    runner, loaded = digits()
    ptq = runner.run_cell(Cell(loaded.name, "onnx", "cpu", "w4a8", "ptq"))
    qat = runner.run_cell(Cell(loaded.name, "onnx", "cpu", "w4a8", "qat"))
    assert ptq.metric.drop > 0.10, ptq.reason  # a real w4a8 drop to recover from
    assert qat.metric.value > ptq.metric.value + 0.03, (ptq.metric, qat.metric)
    assert qat.quantization["quantizer"] == "aimet_torch" and qat.quantization["technique"] == "qat"
    assert qat.quantization["training"]["split"] == "train" and qat.quantization["training"]["final_loss"] >= 0
    model = onnx.load(qat.artifacts["qdq_onnx"])
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}
    assert [i.name for i in model.graph.input] == ["input"] and [o.name for o in model.graph.output] == ["probs"]
    assert Path(qat.artifacts["encodings"]).is_file()


def test_qat_quantizer_that_does_not_train_fails_the_cell_clearly(digits):
    runner, loaded = digits("digits_qat_ort", qat_quantizer="ort")
    record = runner.run_cell(Cell(loaded.name, "onnx", "cpu", "w8a8", "qat"))
    assert (record.status, record.category) == ("fail", "quantize_error")
    assert "qat_quantizer 'ort' does not train" in record.reason and "aimet_torch" in record.reason


def test_every_card_gets_qat_cells_unless_it_opts_out(digits):
    _, default = digits("digits_qat_cells")
    _, opted_out = digits("digits_no_qat", qat_quantizer=None)
    reg = registry()
    modes = {name: reg.get("quantizer", name).modes for name in reg.names("quantizer")}
    cells = build_cells([default, opted_out], {"cpu": ("fp32", "w8a8")}, modes, Selection(quant={"none", "qat"}))
    assert {(c.model, c.precision, c.quant) for c in cells} == {
        ("digits_qat_cells", "fp32", "none"),
        ("digits_qat_cells", "w8a8", "qat"),
        ("digits_no_qat", "fp32", "none"),
    }
