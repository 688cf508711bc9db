"""Records are written atomically, merged, validated on load, and tabulated."""

from __future__ import annotations

import json

import pytest

from zoocompat.report.results import (
    CellRecord,
    Coverage,
    Diagnosis,
    MetricResult,
    ReportDir,
    ResultsError,
    RunInfo,
    load_results,
)
from zoocompat.report.table import render_csv, render_markdown, run_summary, summary_line


def _record(**overrides) -> CellRecord:
    base = dict(
        id="m-onnx-htp-w8a8-ptq",
        model="m",
        frontend="onnx",
        backend="htp",
        precision="w8a8",
        quant="ptq",
        status="pass",
        metric=MetricResult(name="top1", fp32=0.95, value=0.94, drop=0.01, tolerance=0.01, samples=100),
        coverage=Coverage(target="htp", target_nodes=9, total_nodes=10, fallback_ops={"Det": 1}, reasons=["Det: no"]),
    )
    base.update(overrides)
    return CellRecord(**base)


def test_write_merge_and_load(tmp_path):
    report = ReportDir(tmp_path / "r")
    report.write_run(RunInfo(tools={"onnx": "1"}))
    report.write_cell(_record())
    report.write_cell(_record(id="m-onnx-cpu-fp32-none", backend="cpu", precision="fp32", quant="none"))
    results = report.merge()
    assert [c.id for c in results.cells] == ["m-onnx-cpu-fp32-none", "m-onnx-htp-w8a8-ptq"]
    loaded = load_results(tmp_path / "r" / "results.json")
    assert loaded.run.finished is not None and len(loaded.cells) == 2
    assert not list((tmp_path / "r" / "cells").glob(".*"))  # no temp files left behind
    report.reset()
    assert report.records() == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("not json", ["not a zoocompat results file"]),
        (json.dumps({"run": {}, "cells": [{"id": 1}]}), ["not a zoocompat results file"]),
        (json.dumps([1, 2]), ["not a zoocompat results file"]),
    ],
)
def test_bad_results_files(tmp_path, text, words):
    path = tmp_path / "results.json"
    path.write_text(text)
    with pytest.raises(ResultsError) as info:
        load_results(path)
    assert str(path) in str(info.value)
    for word in words:
        assert word in str(info.value)


def test_missing_results_file(tmp_path):
    with pytest.raises(ResultsError, match="cannot read"):
        load_results(tmp_path / "nope.json")


def test_markdown_table_shows_fallback_and_drop(tmp_path):
    report = ReportDir(tmp_path)
    report.write_run(RunInfo(backends={"htp": {"qnn_core_version": "2.51.0"}}))
    report.write_cell(_record())
    report.write_cell(
        _record(
            id="m-onnx-cpu-w8a8-ptq",
            backend="cpu",
            status="fail",
            category="accuracy",
            reason="dropped",
            coverage=None,
        )
    )
    results = report.merge()
    text = render_markdown(results)
    assert "| m | onnx | top1 |" in text
    assert "⚠️ 0.940 (Δ +1.0 pt, n=100) · NPU 90%" in text
    assert "❌" in text and "accuracy" in text
    assert "fell back to CPU: {'Det': 1}" in text
    assert "QNN core 2.51.0" in text
    assert render_csv(results).count("\n") == 3
    assert summary_line(results) == "2 cells: 1 fail, 1 pass; 1 passed with CPU fallback"


def test_run_summary_keeps_new_failures_apart_from_known_ones():
    """The end of a matrix run: NEW failures (fail, error) with their reason and first bad layer, then known
    ones (xfail), fixed ones (xpass), inconclusive and passed cells, and what the exit status means.
    """
    from zoocompat.report.results import Results

    cells = [
        _record(),
        _record(id="a-onnx-htp-w8a16-ptq", model="a", precision="w8a16", status="fail", category="accuracy",
                reason="top1 dropped 21.0 points", diagnosis=Diagnosis(summary="Gemm 'qkv' at -1.0 dB")),
        _record(id="b-onnx-htp-w8a8-ptq", model="b", status="error", category="crash", reason="segfault"),
        _record(id="c-onnx-htp-w8a8-ptq", model="c", status="xfail", category="accuracy", reason="known"),
        _record(id="d-onnx-htp-w8a8-ptq", model="d", status="xpass", reason="fixed: remove this entry"),
        _record(id="e-onnx-htp-w8a8-ptq", model="e", status="inconclusive", reason="straddles"),
    ]  # fmt: skip
    lines = run_summary(Results(run=RunInfo(), cells=cells), known_file="zoo/known_failures.yaml", exitstatus=1)
    text = "\n".join(lines)
    assert lines[0] == summary_line(Results(run=RunInfo(), cells=cells))
    assert "NEW failures: 2 (not accepted in `zoo/known_failures.yaml`" in text
    assert "a-onnx-htp-w8a16-ptq: top1 dropped 21.0 points\n      first bad layer: Gemm 'qkv' at -1.0 dB" in text
    assert "b-onnx-htp-w8a8-ptq: segfault" in text
    assert "known failures: 1 (xfail" in text and "🟡 c-onnx-htp-w8a8-ptq [accuracy]" in text
    assert "known failures that passed: 1 (xpass: remove their entries" in text
    assert "inconclusive: 1 (" in text and "passed: 1 (1 with CPU fallback)" in text
    assert lines[-1].startswith("exit status 1: new failures")
    clean = run_summary(Results(run=RunInfo(), cells=[cells[0], cells[3]]), exitstatus=0)
    assert "NEW failures: none" in clean and "known failures: 1 (xfail: failed as an entry of the known-failures" in (
        "\n".join(clean)
    )
    assert clean[-1].startswith("exit status 0: no new failures")


def test_json_schema_in_docs_is_current():
    """docs/results.schema.json is generated from the pydantic models; regenerate it when they change."""
    from pathlib import Path

    from zoocompat.report.results import Results

    path = Path(__file__).parent.parent / "docs" / "results.schema.json"
    assert json.loads(path.read_text()) == Results.model_json_schema()


def test_wilson_interval_and_sqnr():
    from zoocompat.verdict.stats import sqnr_db, wilson_interval

    low, high = wilson_interval(160, 160)
    assert high == 1.0 and 0.97 < low < 0.98  # all right on 160 samples: at least ~97.7%
    low, high = wilson_interval(50, 100)
    assert abs((low + high) / 2 - 0.5) < 1e-9 and 0.40 < low < 0.41
    assert wilson_interval(0, 0) == (0.0, 1.0)
    import numpy as np

    ref = np.ones(100)
    assert abs(sqnr_db(ref, ref * 1.01) - 40.0) < 1e-6
    assert sqnr_db(ref, ref) is None


def test_per_sample_sqnr_spread():
    import numpy as np

    from zoocompat.verdict.stats import sqnr_spread_db

    ref = np.ones((4, 10))
    noisy = ref * np.array([1.01, 1.001, 1.01, 1.0])[:, None]  # 40, 60, 40 dB; the last sample is identical
    spread, samples = sqnr_spread_db(ref, noisy)
    assert samples == 3 and spread == pytest.approx(np.std([40.0, 60.0, 40.0], ddof=1))
    assert sqnr_spread_db(ref, ref) == (None, 0)
    assert sqnr_spread_db(ref[:1], noisy[:1]) == (None, 1)  # one sample has no spread


def test_auto_and_qat_cells_show_the_technique(tmp_path):
    report = ReportDir(tmp_path)
    report.write_run(RunInfo())
    report.write_cell(
        _record(
            id="m-onnx-cpu-w8a8-auto",
            backend="cpu",
            quant="auto",
            coverage=None,
            quantization={"quantizer": "aimet_onnx", "technique": "auto -> cle"},
        )
    )
    report.write_cell(_record(id="m-onnx-cpu-w8a8-qat", backend="cpu", quant="qat", coverage=None))
    text = render_markdown(report.merge())
    assert "| cpu w8a8 qat | cpu w8a8 auto |" in text  # a column per quant mode beyond ptq, in their declared order
    assert "✅ [cle] 0.940 (Δ +1.0 pt, n=100)" in text


def test_a_default_run_merged_with_an_older_releases_columns_names_both_releases():
    """A run without --sdk merged with --sdk qnn-2.47 cells: the installed release's cells are labelled by the
    release their backend reported (qnn-2.51), beside the older release's; a single run keeps bare columns.
    """
    from tests.conftest import DATA
    from zoocompat.report.columns import column_sdk, columns

    single = load_results(DATA / "results-slice.json")
    htp = next(c for c in single.cells if c.backend == "htp" and c.precision == "w8a8")
    assert htp.sdk is None and htp.release == "qnn-2.51"
    assert all(col[3] == "" for col in columns(single)), "one run without --sdk: no SDK in any column"
    older = htp.model_copy(update={"id": f"{htp.id}-qnn-2.47", "sdk": "qnn-2.47"})
    merged = single.model_copy(update={"cells": [*single.cells, older]})
    sdk_of = column_sdk(merged)
    assert sdk_of(htp) == "qnn-2.51" and sdk_of(older) == "qnn-2.47"
    assert sdk_of(next(c for c in merged.cells if c.backend == "cpu")) == ""
    header = next(line for line in render_markdown(merged).splitlines() if line.startswith("| model"))
    assert "htp w8a8 qnn-2.47 | htp w8a8 qnn-2.51" in header and "htp fp16 qnn-2.51" in header
