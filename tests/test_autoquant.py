"""AutoQuant: the ladder's order and stop rule with a fake evaluator, and one real climb on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tests.corpus.digits_linear import build_onnx, card, fit_weights
from zoocompat.api.errors import CellError
from zoocompat.run.autoquant import Skip, Trial, climb


def _fake(scores: dict[tuple[str, str], float | Exception]):
    """An evaluator answering from ``scores`` and recording the order it was asked in."""
    asked: list[tuple[str, str]] = []

    def evaluate(technique: str, precision: str) -> Trial:
        asked.append((technique, precision))
        value = scores[(technique, precision)]
        if isinstance(value, Exception):
            raise value
        return Trial(value, Path(f"{technique}-{precision}.onnx"), Path(f"{technique}-{precision}.encodings"))

    return evaluate, asked


def test_stops_at_the_first_step_within_the_allowed_drop():
    evaluate, asked = _fake({("ptq", "w8a8"): 0.95, ("cle", "w8a8"): 0.975, ("adaround", "w8a8"): 0.99})
    result = climb(evaluate, fp32=0.98, allowed_drop=0.01)
    assert asked == [("ptq", "w8a8"), ("cle", "w8a8")]
    assert result.met and result.chosen.technique == "cle" and result.accuracy == 0.975
    assert [s.status for s in result.steps] == ["below", "met"]
    assert result.steps[0].drop == pytest.approx(0.03) and result.encodings == Path("cle-w8a8.encodings")


def test_full_ladder_order_when_nothing_is_good_enough():
    evaluate, asked = _fake(
        {
            ("ptq", "w8a8"): 0.90,
            ("cle", "w8a8"): 0.92,
            ("cle+adaround", "w8a8"): 0.93,
            ("cle", "w8a16"): 0.91,
            ("qat", "w8a8"): Skip("no training data"),
        }
    )
    seen = []
    result = climb(evaluate, fp32=0.98, allowed_drop=0.01, progress=seen.append)
    assert asked == [("ptq", "w8a8"), ("cle", "w8a8"), ("cle+adaround", "w8a8"), ("cle", "w8a16"), ("qat", "w8a8")]
    assert [s.technique for s in result.steps] == ["ptq", "cle", "cle+adaround", "cle", "qat"]
    qat = result.steps[-1]
    assert qat.status == "skipped" and qat.note == "no training data" and qat.accuracy is None
    assert not result.met and result.chosen.technique == "cle+adaround"  # the best step is kept
    assert seen == result.steps
    data = result.to_json()
    assert set(data) >= {"accuracy", "fp32", "encodings", "steps"}
    assert all(set(s) >= {"technique", "precision", "accuracy", "seconds"} for s in data["steps"])


def test_adaround_without_cle_when_cle_did_not_help_and_w8a16_with_ptq():
    evaluate, asked = _fake(
        {("ptq", "w8a8"): 0.95, ("cle", "w8a8"): 0.94, ("adaround", "w8a8"): 0.95, ("ptq", "w8a16"): 0.975}
    )
    result = climb(evaluate, fp32=0.98, allowed_drop=0.01)
    assert asked[2:] == [("adaround", "w8a8"), ("ptq", "w8a16")]
    assert result.met and result.chosen.precision == "w8a16"


def test_fixed_precision_skips_w8a16_honestly():
    evaluate, asked = _fake(
        {("ptq", "w8a8"): 0.9, ("cle", "w8a8"): 0.9, ("adaround", "w8a8"): 0.9, ("qat", "w8a8"): 0.975}
    )
    result = climb(evaluate, fp32=0.98, allow_higher_precision=False)
    assert ("ptq", "w8a16") not in asked
    wide = result.steps[3]
    assert wide.precision == "w8a16" and wide.status == "skipped" and "fixed at w8a8" in wide.note
    assert asked[-1] == ("qat", "w8a8")  # QAT is the last rung, at the cell's precision
    assert result.met and result.chosen.technique == "qat" and result.encodings == Path("qat-w8a8.encodings")


def test_errors_and_skips_are_recorded_and_the_climb_goes_on():
    evaluate, asked = _fake(
        {
            ("ptq", "w8a8"): 0.9,
            ("cle", "w8a8"): CellError("quantize_error", "cle broke"),
            ("adaround", "w8a8"): Skip("quantizer ort does not offer adaround"),
            ("ptq", "w8a16"): 0.975,
        }
    )
    result = climb(evaluate, fp32=0.98)
    assert [s.status for s in result.steps] == ["below", "error", "skipped", "met"]
    assert "cle broke" in result.steps[1].note and "does not offer" in result.steps[2].note


def test_lower_is_better_metrics_and_exact_threshold():
    evaluate, _ = _fake({("ptq", "w8a8"): 0.11})
    result = climb(evaluate, fp32=0.10, allowed_drop=0.01, higher_is_better=False)
    assert result.met and result.steps[0].drop == pytest.approx(0.01)


def test_real_climb_on_the_linear_digits_model(tmp_path, monkeypatch):
    """Real aimet-onnx + CPU scoring: a loose allowed drop stops after PTQ; the CLI prints the step and JSON."""
    pytest.importorskip("aimet_onnx")
    from zoocompat.cli import main

    monkeypatch.setenv("ZOOCOMPAT_CACHE", str(tmp_path / "cache"))
    build_onnx(tmp_path / "model.onnx", *fit_weights())
    card_path = tmp_path / "digits_linear_aq.yaml"
    card_path.write_text(yaml.safe_dump(card("digits_linear_aq")))
    out = tmp_path / "aq"
    result = CliRunner().invoke(
        main, ["autoquant", str(card_path), "--allowed-drop", "0.05", "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{") :])
    assert data["met"] and [s["technique"] for s in data["steps"]] == ["ptq"]
    assert data["fp32"] - data["accuracy"] <= 0.05 and Path(data["encodings"]).is_file()
    assert Path(data["encodings"]) == out / "model.encodings" and (out / "autoquant.json").is_file()
    assert "ptq" in result.output.split("{")[0]  # the step was printed as it finished


def test_matrix_auto_cell_runs_the_ladder_result_on_the_backend(tmp_path, monkeypatch):
    """Quant mode ``auto``: the cell's QDQ model is the ladder's choice, at the cell's precision."""
    pytest.importorskip("aimet_onnx")
    from zoocompat.api.cache import ArtifactCache
    from zoocompat.api.registry import registry
    from zoocompat.model.cards import load_card
    from zoocompat.report.results import ReportDir
    from zoocompat.run.matrix import Cell
    from zoocompat.run.pipeline import CellRunner

    build_onnx(tmp_path / "model.onnx", *fit_weights())
    card_path = tmp_path / "digits_linear_auto.yaml"
    card_path.write_text(yaml.safe_dump(card("digits_linear_auto")))
    loaded = load_card(card_path)
    runner = CellRunner(registry(), {loaded.name: loaded}, ArtifactCache(tmp_path / "cache"), ReportDir(tmp_path / "r"))
    assert "auto" in registry().get("quantizer", "aimet_onnx").modes
    record = runner.run_cell(Cell(loaded.name, "onnx", "cpu", "w8a8", "auto"))
    assert record.status == "pass", record.reason
    quantized = runner.quantized(loaded, "w8a8", "auto")
    assert quantized.report["technique"] == "auto -> ptq" and quantized.report["autoquant"]["met"]
    assert record.quantization["technique"] == "auto -> ptq"  # the record names the ladder's choice
    assert [s["technique"] for s in record.quantization["autoquant"]["steps"]] == ["ptq"]
    assert json.loads((quantized.qdq_onnx.parent / "autoquant.json").read_text())["steps"][0]["precision"] == "w8a8"
    assert not (quantized.qdq_onnx.parent / "ladder").exists()
