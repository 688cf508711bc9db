"""Cells through the whole pipeline on the real QNN HTP (x86-64 emulator): convert, quantize, run, verdict.

The least-squares digits model of ``tests/corpus`` (a Gemm and a Softmax, real
data: scikit-learn's digits) at fp16 and at w8a8 (AIMET PTQ), each a real cell
of :class:`~zoocompat.run.pipeline.CellRunner` on the ``htp`` backend, with
their records read back: every node on the HTP, SQNR against the CPU run of the
same model above the fidelity threshold, and a pass on accuracy.
"""

from __future__ import annotations

import json

import pytest

from tests.corpus.digits_linear import card, digits_runner
from zoocompat.run.matrix import Cell
from zoocompat.sdk.releases import current_env


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return digits_runner(tmp_path_factory.mktemp("htp_pipeline"), card("digits_htp"))[0]


@pytest.mark.parametrize(("precision", "quant"), [("fp16", "none"), ("w8a8", "ptq")])
def test_a_cell_runs_wholly_on_the_htp_with_its_verdicts(runner, precision, quant):
    record = runner.run_cell(Cell("digits_htp", "onnx", "htp", precision, quant))
    assert record.status == "pass", record.reason
    kept = json.loads((runner.report.root / "cells" / f"{record.id}.json").read_text())
    assert kept["status"] == "pass" and kept["backend_info"]["loaded"]  # what the runner process really loaded
    coverage = record.coverage
    assert coverage.target == "htp" and coverage.target_nodes == coverage.total_nodes > 0, coverage
    assert not coverage.fallback_ops and record.reason.startswith(f"{coverage.total_nodes}/{coverage.total_nodes}")
    fidelity = record.fidelity
    assert fidelity.threshold_db is not None and fidelity.sqnr_vs_cpu_db > fidelity.threshold_db, fidelity
    metric = record.metric
    assert metric.name == "top1" and metric.fp32 > 0.8 and metric.drop_interval[1] <= metric.tolerance
    assert record.backend_info["qnn_core_version"] == current_env().qnn_core_version  # the installed release
