"""``plan_repro`` on a real failing cell: the linear digits model at w4a8 on the cpu backend.

At w4a8 the model loses about a third of its top-1 on the CPU, so its cell fails
accuracy with a diagnosis naming the Gemm; each kind of repro cuts its graph
from the cell's real QDQ model and measures it on the real CPU EP.
"""

from __future__ import annotations

import json

import pytest

from tests.corpus.digits_linear import card, digits_runner
from zoocompat.diagnose.first_bad import activation_pairs
from zoocompat.diagnose.repro import ReproError, write_repro
from zoocompat.diagnose.repro_plan import plan_repro
from zoocompat.report.results import Coverage, LayerFinding
from zoocompat.run.matrix import Cell

pytest.importorskip("onnxruntime")
pytest.importorskip("aimet_onnx")


@pytest.fixture(scope="module")
def failed(tmp_path_factory):
    root = tmp_path_factory.mktemp("repro_plan")
    runner, loaded = digits_runner(root, card("digits_repro"))
    cell = Cell(loaded.name, "onnx", "cpu", "w4a8", "ptq")
    record = runner.run_cell(cell)
    assert record.status == "fail" and record.category == "accuracy", record.reason
    assert record.diagnosis and record.diagnosis.quantization.first_bad_op == "Gemm", record.diagnosis
    return runner, cell, record, root


def test_a_quantization_loss_gives_the_qdq_prefix_against_fp32(failed):
    runner, cell, record, root = failed
    case = plan_repro(runner, cell, record, 4, root / "work-q")
    assert case.kind == "quantization" and case.expected_from == "fp32" and case.ep == "cpu"
    assert "Gemm" in case.observed and len(case.model.graph.node) < 13
    assert "on the CPU EP vs FP32" in case.details[-1]
    out = write_repro(case, root / "repro-q")
    assert (out / "model.onnx").is_file() and (out / "expected.npz").is_file()


def test_a_backend_finding_gives_the_layer_or_its_prefix(failed):
    runner, cell, record, root = failed
    bad = record.diagnosis.quantization
    backend = LayerFinding(
        method="backend_vs_cpu",
        threshold_db=60.0,  # above anything the fused kernels keep: the layer alone does not show it
        first_bad_layer=bad.first_bad_layer,
        first_bad_op=bad.first_bad_op,
        first_bad_tensor=next(p for p in _pairs(runner, cell) if p.layer == bad.first_bad_layer).qdq,
    )
    changed = record.model_copy(update={"diagnosis": record.diagnosis.model_copy(update={"backend": backend})})
    case = plan_repro(runner, cell, changed, 4, root / "work-b")
    assert case.kind == "backend" and case.check == "sqnr_below" and case.threshold_db == 60.0
    assert any("alone with its Q/DQ" in d for d in case.details), case.details
    assert case.what.startswith(("the Gemm node", "the graph up to Gemm")), case.what


def test_a_fallback_gives_the_op_alone_and_a_cell_without_one_is_refused(failed):
    runner, cell, record, root = failed
    with pytest.raises(ReproError, match="no node of the fallen-back op types"):
        plan_repro(runner, cell, record, 4, root / "work-none", "fallback")
    coverage = Coverage(target="cpu", target_nodes=12, total_nodes=13, fallback_ops={"Gemm": 1})
    fell = record.model_copy(update={"coverage": coverage})
    case = plan_repro(runner, cell, fell, 4, root / "work-f", "fallback")
    assert case.kind == "fallback" and case.check == "fallback" and case.observed.startswith("Gemm fell back")
    assert [n.op_type for n in case.model.graph.node].count("Gemm") == 1
    assert case.session_config["session.disable_cpu_ep_fallback"] == "1"
    crash = plan_repro(runner, cell, record, 4, root / "work-c", "crash")
    assert crash.kind == "crash" and len(next(iter(crash.inputs.values()))) == 1


def _pairs(runner, cell):
    return activation_pairs(str(runner.quantized(runner.cards[cell.model], cell.precision, cell.quant).qdq_onnx))


def test_plan_repro_needs_the_model_in_the_zoo(failed):
    runner, cell, record, root = failed
    other = Cell("not_here", "onnx", "cpu", "w4a8", "ptq")
    with pytest.raises(ReproError, match="not in the zoo here"):
        plan_repro(runner, other, record, 4, root / "work-x")


def test_repro_cli_writes_a_folder_that_reproduces_the_cell(failed, tmp_path):
    """``zoocompat repro CELL --results R --zoo DIR``: the folder is written and its script, run by the CLI,
    reproduces the accuracy loss on the CPU EP.
    """
    from click.testing import CliRunner

    from zoocompat.cli import main

    runner, cell, record, root = failed
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"run": {}, "cells": [json.loads(record.model_dump_json())], "card_errors": []}))
    out = tmp_path / "repro"
    args = ["repro", record.id, "--results", str(results), "--zoo", str(root), "--out", str(out)]
    done = CliRunner().invoke(main, args, env={"ZOOCOMPAT_CACHE": str(root / "cache")})
    assert done.exit_code == 0, done.output
    assert f"wrote {out}" in done.output and (out / "model.onnx").is_file() and (out / "repro.py").is_file()
    assert "REPRODUCED" in done.output and "NOT REPRODUCED" not in done.output  # the CLI ran the folder's script
    missing = CliRunner().invoke(main, ["repro", "nope-onnx-cpu-w4a8-ptq", "--results", str(results)])
    assert missing.exit_code == 1 and "Traceback" not in missing.output and "nope" in missing.output
