"""ONNX's backend test corpus as a second opinion: the cases, the judging, real runs on cpu and htp, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from zoocompat_plugins.backends.cpu import CpuBackend
from zoocompat_plugins.backends.htp import HtpBackend

from zoocompat.api.cache import ArtifactCache
from zoocompat.cli import main
from zoocompat.diagnose import corpus, op_probes
from zoocompat.diagnose import ops as ops_table

pytest.importorskip("onnxruntime")


def test_the_corpus_holds_117_operator_and_module_cases_and_nine_light_models():
    found = corpus.cases()
    kinds = [c.kind for c in found]
    assert (kinds.count("light"), kinds.count("pytorch-operator"), kinds.count("pytorch-converted")) == (9, 35, 82)
    assert len({c.name for c in found}) == 126


def test_selection_is_a_glob_or_a_substring_and_an_empty_one_says_why():
    assert [c.name for c in corpus.cases(select=["test_Conv2d_d*"])] == [
        "test_Conv2d_depthwise",
        "test_Conv2d_depthwise_padded",
        "test_Conv2d_depthwise_strided",
        "test_Conv2d_depthwise_with_multiplier",
        "test_Conv2d_dilated",
    ]
    picked = corpus.cases(kinds=["light"], select=["net"], exclude=["resnet"])
    assert [c.name for c in picked] == [
        "light_bvlc_alexnet",
        "light_densenet121",
        "light_shufflenet",
        "light_squeezenet",
        "light_zfnet512",
    ]
    with pytest.raises(ValueError, match="no onnx corpus case"):
        corpus.cases(select=["no_such_case"])
    with pytest.raises(ValueError, match="no corpus kind"):
        corpus.cases(kinds=["heavy"])


@pytest.mark.parametrize("name", ["light_squeezenet", "test_operator_add_broadcast", "test_PReLU_2d", "test_Embedding"])
def test_each_case_as_run_reproduces_the_corpus_expected_outputs_on_the_cpu(tmp_path, name):
    """The cases are fed and read the way ONNX's runner does: light weights folded, opset 6 upgraded to 17."""
    (case,) = corpus.cases(select=[name])
    path = tmp_path / "model.onnx"
    path.write_bytes(case.model.SerializeToString())
    (outputs,) = op_probes.cpu_runs(path, [case.inputs])
    verdict = corpus.judge(case.expected, outputs)
    assert verdict["notes"] == [] and verdict["equal"] in (None, True)
    assert verdict["identical"] or verdict["sqnr_db"] > 100
    if case.kind == "light":
        assert "ConstantOfShape" not in case.op_types and case.run_opset == case.opset == 9
    else:
        assert (case.opset, case.run_opset) == (6, 17)


def test_float64_models_are_told_apart():
    (double,) = corpus.cases(select=["test_operator_add_broadcast"])
    (single,) = corpus.cases(select=["test_Conv2d_strided"])
    assert double.float64 and not single.float64


def test_judging_never_reports_minus_infinity():
    ref = {"y": np.array([1.0, 2.0, np.nan], np.float32), "i": np.array([1, 2, 3]), "z": np.zeros(3, np.float32)}
    same = corpus.judge(ref, {k: v.copy() for k, v in ref.items()})
    assert same == {"sqnr_db": None, "equal": True, "identical": True, "notes": []}
    got = {"y": np.array([1.0, 2.1, np.nan], np.float32), "i": np.array([1, 2, 4]), "z": np.full(3, 0.5, np.float32)}
    off = corpus.judge(ref, got)
    assert 20 < off["sqnr_db"] < 40 and off["equal"] is False and not off["identical"]
    assert off["notes"] == [
        "output i is not equal to the reference (66.7% of its elements are)",
        "output z is not equal to the reference (0.0% of its elements are)",
    ]
    nan = corpus.judge(ref, {**ref, "y": np.array([np.nan, 2.0, 3.0], np.float32)})
    assert nan["sqnr_db"] is None and nan["notes"] == ["output y holds 1 NaN/Inf elements where the reference holds 1"]
    shape = corpus.judge({"y": np.ones((2, 3))}, {"y": np.ones(6)})
    assert shape["notes"] == ["output y has shape [6], expected [2, 3]"] and shape["sqnr_db"] is None


def test_calibration_draws_over_the_test_input_range_never_the_test_input():
    (case,) = corpus.cases(select=["test_Conv2d_strided"])
    feeds = case.calibration()
    (name, test), *_ = case.inputs.items()
    assert len(feeds) == corpus.CALIBRATION_SAMPLES and all(f[name].shape == test.shape for f in feeds)
    assert all(not np.array_equal(f[name], test) for f in feeds)
    assert min(f[name].min() for f in feeds) >= test.min() and max(f[name].max() for f in feeds) <= test.max()
    assert np.array_equal(feeds[0][name], case.calibration()[0][name])  # seeded


def test_a_case_disagreeing_with_the_op_probe_of_its_op_is_named():
    corpus_table = {
        "ops": {"a": {"fp16": "on_target"}, "b": {"fp16": "fallback"}, "c": {"fp16": "fallback"}},
        "probes": {"a": {"ops": ["Erf"]}, "b": {"ops": ["Conv", "Relu"]}, "c": {"ops": ["Erf"]}},
        "reasons": {"b": {"fp16": ["Relu: not supported"]}, "c": {"fp16": ["Erf: not supported"]}},
    }
    probe_table = {
        "ops": {"Erf": {"fp16": "unsupported"}, "Relu": {"fp16": "supported"}},
        "probes": {"Erf": {"op": "Erf"}, "Relu": {"op": "Relu"}},
    }
    found = corpus.disagreements(corpus_table, probe_table)
    assert found == {
        "a": {"fp16": "runs Erf on the target, but its probe Erf (unsupported)"},
        "b": {"fp16": "Relu falls back here, but its probe(s) Relu run on the target"},
    }


def test_a_change_between_two_bad_verdicts_of_the_same_rank_is_neither_a_regression_nor_a_fix():
    before = {"ops": {"x": {"fp16": "error"}, "y": {"fp16": "fallback"}}, "backend": "htp", "sdk": "qnn-2.47"}
    after = {"ops": {"x": {"fp16": "unsupported_dtype"}, "y": {"fp16": "wrong_output"}}, "backend": "htp"}
    diff = ops_table.diff_tables(before, after | {"sdk": "qnn-2.51"})
    assert [e["probe"] for e in diff["changed"]] == ["x"] and [e["probe"] for e in diff["regressions"]] == ["y"]
    text = ops_table.render_diff_markdown(diff, "ONNX corpus changes")
    assert text.startswith("# ONNX corpus changes: htp qnn-2.47 → htp qnn-2.51") and "## Changed" in text


# --- real runs


HANDFUL = ["test_Conv2d_strided", "test_operator_add_broadcast", "test_Embedding", "light_squeezenet"]


def test_a_handful_of_cases_end_to_end_on_the_cpu(tmp_path):
    table = corpus.run_corpus(
        CpuBackend(), None, ["fp32", "w8a8"], corpus.cases(select=HANDFUL), cache=ArtifactCache(tmp_path / "c")
    )
    # float64 is the CPU's own type: the float64 model runs there (the quantizer leaves float64 tensors float)
    assert table["ops"]["test_operator_add_broadcast"] == {"fp32": "on_target", "w8a8": "on_target"}
    for name in ("test_Conv2d_strided", "test_Embedding", "light_squeezenet"):
        assert table["ops"][name] == {"fp32": "on_target", "w8a8": "on_target"}
        assert table["sqnr_db"][name]["fp32"] == "exact"  # the CPU backend is the reference runtime
    assert isinstance(table["expected_sqnr_db"]["test_Conv2d_strided"]["w8a8"], float)


def test_a_handful_of_cases_end_to_end_on_the_htp_and_cached(tmp_path):
    backend = HtpBackend()
    if backend.available(None):
        pytest.skip(backend.available(None))
    cache = ArtifactCache(tmp_path / "c")
    chosen = corpus.cases(select=HANDFUL)
    table = corpus.run_corpus(backend, None, ["fp16", "w8a8"], chosen, cache=cache)
    assert table["ops"]["test_Conv2d_strided"] == {"fp16": "on_target", "w8a8": "on_target"}
    assert table["sqnr_db"]["test_Conv2d_strided"]["fp16"] > 40  # fp16 against the float CPU run
    assert table["expected_sqnr_db"]["test_Conv2d_strided"]["fp16"] > 40  # and against the corpus's outputs
    assert table["ops"]["test_operator_add_broadcast"]["fp16"] == "unsupported_dtype"
    assert table["ops"]["light_squeezenet"]["fp16"] == "on_target"
    assert table["summary"]["fp16"]["on_target"] + table["summary"]["fp16"]["unsupported_dtype"] >= 3
    again = corpus.run_corpus(backend, None, ["fp16", "w8a8"], chosen, cache=cache)
    assert again["ops"] == table["ops"] and again["run"]["cached"] == 8
    text = corpus.render_markdown(table)
    assert "| test_Conv2d_strided | pytorch-converted | 6→17 | Conv | ✅ " in text and "🚫 dtype" in text


def test_cli_runs_the_corpus_and_diffs_two_tables(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOCOMPAT_CACHE", str(tmp_path / "cache"))
    runner = CliRunner()
    result = runner.invoke(main, ["ops", "--corpus", "onnx", "--backend", "cpu", "-k", "test_Conv2d_strided", "--json"])
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)
    assert table["corpus"] == "onnx" and table["ops"]["test_Conv2d_strided"]["fp32"] == "on_target"
    assert list(table["ops"]["test_Conv2d_strided"]) == ["fp32", "w8a8", "w8a16"]  # w4a8 has no corpus recipe
    (tmp_path / "a.json").write_text(json.dumps(table))
    result = runner.invoke(main, ["ops", "--diff", str(tmp_path / "a.json"), str(tmp_path / "a.json")])
    assert result.exit_code == 0 and result.stdout.startswith("# ONNX corpus changes: cpu")
    bad = runner.invoke(main, ["ops", "--corpus", "onnx", "--backend", "cpu", "-k", "nothing_like_this"])
    assert bad.exit_code == 2 and "no onnx corpus case" in bad.output
    (tmp_path / "junk.json").write_text("{not json")
    junk = ["ops", "--corpus", "onnx", "--backend", "cpu", "-k", "test_Conv2d_strided", "--probes"]
    bad = runner.invoke(main, [*junk, str(tmp_path / "junk.json")])
    assert bad.exit_code == 2 and "--probes:" in bad.output and "is not an `ops --json` table" in bad.output
