"""Per-op probes: the models, the verdicts read from real logs, a real HTP run, the diff, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from zoocompat_plugins.backends.htp import HtpBackend
from zoocompat_plugins.backends.ort_session import parse_placement

from tests.conftest import DATA
from zoocompat.api.cache import ArtifactCache
from zoocompat.api.errors import CellError
from zoocompat.cli import main
from zoocompat.diagnose import op_probes
from zoocompat.diagnose import ops as ops_table

ort = pytest.importorskip("onnxruntime")


def test_catalog_covers_sixty_onnx_ops_with_unique_names():
    ops = {p.op for p in op_probes.PROBES}
    assert len(ops) >= 60, sorted(ops)
    assert {"Conv", "ConvTranspose", "LSTM", "GRU", "Einsum", "Resize", "NonZero", "Gelu"} <= ops
    assert len({p.name for p in op_probes.PROBES}) == len(op_probes.PROBES)
    assert {p.opset for p in op_probes.PROBES} <= {17, 18, 20, 21}


def test_every_probe_passes_the_checker_and_runs_on_cpu():
    for probe in op_probes.PROBES:
        model = op_probes.build_model(probe)  # onnx.checker full_check inside
        assert all(d.dim_value > 0 for i in model.graph.input for d in i.type.tensor_type.shape.dim), probe.name
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        outputs = session.run(None, op_probes.make_inputs(probe, 1))
        assert len(outputs) == len(probe.outputs), probe.name


def test_inputs_are_seeded_and_in_range():
    (log,) = op_probes.by_name(["Log"])
    first, again = op_probes.make_inputs(log, 2), op_probes.make_inputs(log, 2)
    np.testing.assert_array_equal(first["x"], again["x"])
    assert first["x"].shape == (2, 8, 16, 16) and first["x"].min() > 0
    (where,) = op_probes.by_name(["Where"])
    assert op_probes.make_inputs(where, 1)["cond"].dtype == bool
    assert op_probes.definition_hash(log) == op_probes.definition_hash(log)
    assert op_probes.definition_hash(log) != op_probes.definition_hash(where)


def test_by_name_takes_probe_names_or_op_types():
    assert [p.name for p in op_probes.by_name(["AveragePool"])] == ["AveragePool", "AveragePool(ceil_mode=1)"]
    assert [p.name for p in op_probes.by_name(["Clip(ReLU6)"])] == ["Clip(ReLU6)"]
    with pytest.raises(KeyError, match="Nope"):
        op_probes.by_name(["Relu", "Nope"])


@pytest.mark.parametrize("name, precision", [("Relu", "w8a8"), ("Clip(ReLU6)", "w8a16"), ("Conv", "w8a8")])
def test_quantized_probe_has_qdq_around_the_op(tmp_path, name, precision):
    probe = op_probes.by_name([name])[0]
    float_path = tmp_path / "model.onnx"
    float_path.write_bytes(op_probes.build_model(probe).SerializeToString())
    qdq = op_probes.quantize_probe(float_path, precision, op_probes.calibration_samples(probe), tmp_path / "q.onnx")
    import onnx

    model = onnx.load(str(qdq))
    producer = {out: n.op_type for n in model.graph.node for out in n.output}
    (node,) = [n for n in model.graph.node if n.op_type == probe.op]
    assert producer[node.input[0]] == "DequantizeLinear"
    assert any(node.output[0] in n.input for n in model.graph.node if n.op_type == "QuantizeLinear")
    reference = op_probes.cpu_reference(float_path, op_probes.make_inputs(probe, 1))["y"]
    quantized = op_probes.cpu_reference(qdq, op_probes.make_inputs(probe, 1))["y"]
    assert ops_table._compare({"y": reference}, {"y": quantized})["sqnr_db"] > 20


# --- verdicts from real onnxruntime-qnn logs (trimmed captures in tests/data)


@pytest.mark.parametrize(
    "log, verdict, reason",
    [
        ("qnn_all_on_htp.log", "supported", None),
        ("qnn_qdq_io_boundary.log", "supported", None),  # graph-input Q / output DQ are I/O, not fallback
        ("qnn_det_fallback.log", "unsupported", "Det: Operators of type `Det` are not supported by QNN EP."),
        ("qnn_nonzero_fallback.log", "unsupported", "NonZero: NonZero output shape must be static."),
    ],
)
def test_verdict_from_real_log(log, verdict, reason):
    placement = parse_placement((DATA / log).read_text(), "QNNExecutionProvider", "htp")
    got, reasons = ops_table.classify(placement)
    assert got == verdict
    assert (reasons[0].startswith(reason)) if reason else reasons == []


def test_qdq_unit_reason_after_its_node_list_is_read(tmp_path):
    """Real QDQ Erf log: the REASON follows the unit's three node lines."""
    log = DATA / "qnn_qdq_erf_fallback.log"
    placement = parse_placement(log.read_text(), "QNNExecutionProvider", "htp")
    verdict, reasons = ops_table.classify(placement)
    assert verdict == "unsupported" and placement.io_nodes == 2
    assert reasons == [
        "Erf: Operators of type `Erf` are not supported by QNN EP.Erf node `Erf_0` will not be assigned to QNN EP."
    ]


class _Crashing:
    """A backend whose runner dies, as a vendor library segfault reports it."""

    name = "fake"
    precisions = ("fp32",)

    def compile(self, onnx_path, precision, sdk, workdir):
        class _Model:
            def run(self, inputs):
                raise CellError("crash", "fake runner died with SIGSEGV on model.onnx (vendor library crash)")

        return _Model()


def test_runner_crash_and_unknown_precision_are_error_records(tmp_path):
    (relu,) = op_probes.by_name(["Relu"])
    record = ops_table.probe_once(relu, "fp32", _Crashing(), None, tmp_path / "a")
    assert record["verdict"] == "error" and "SIGSEGV" in record["reasons"][0]
    record = ops_table.probe_once(relu, "w4a8", _Crashing(), None, tmp_path / "b")
    assert record["verdict"] == "error" and "w4a8" in record["reasons"][0]


def test_htp_probes_real_supported_and_fallback(tmp_path):
    """Real QNN HTP (emulator): Relu runs on HTP, NonZero falls back with the vendor's reason; re-run is cached."""
    backend = HtpBackend()
    if backend.available(None):
        pytest.skip(backend.available(None))
    cache = ArtifactCache(tmp_path / "cache")
    table = ops_table.run_ops(backend, None, ["fp16", "w8a8"], ["Relu", "NonZero"], cache=cache)
    assert table["ops"]["Relu"] == {"fp16": "supported", "w8a8": "supported"}
    assert table["ops"]["NonZero(dynamic output)"] == {"fp16": "unsupported", "w8a8": "unsupported"}
    assert "output shape must be static" in table["reasons"]["NonZero(dynamic output)"]["fp16"][0]
    assert table["sqnr_db"]["Relu"]["fp16"] == "exact" or table["sqnr_db"]["Relu"]["fp16"] > 40
    assert table["sdk"].startswith("qnn-") and table["summary"]["w8a8"]["supported"] == 1
    again = ops_table.run_ops(backend, None, ["fp16", "w8a8"], ["Relu", "NonZero"], cache=cache)
    assert again["ops"] == table["ops"] and again["run"]["cached"] == 4  # every probe read back, none run


# --- diff, rendering, CLI


def _table(sdk: str, ops: dict, reasons: dict | None = None) -> dict:
    return {"ops": ops, "backend": "htp", "sdk": sdk, "reasons": reasons or {}}


def test_diff_reports_regressions_improvements_and_new_rows():
    before = _table(
        "qnn-2.47",
        {"Conv": {"fp16": "supported", "w8a8": "supported"}, "Gelu": {"fp16": "unsupported"}, "Old": {"fp16": "error"}},
        {"Gelu": {"fp16": ["Gelu: not supported"]}},
    )
    after = _table(
        "qnn-2.51",
        {"Conv": {"fp16": "supported", "w8a8": "error"}, "Gelu": {"fp16": "supported"}, "New": {"fp16": "supported"}},
        {"Conv": {"w8a8": ["compile failed"]}},
    )
    before["sqnr_db"] = {"Conv": {"fp16": 44.9}}
    after["sqnr_db"] = {"Conv": {"fp16": "exact"}}
    diff = ops_table.diff_tables(before, after)
    assert diff["fidelity"] == [
        {"probe": "Conv", "precision": "fp16", "before": "supported", "after": "supported"}
        | {"sqnr_before": 44.9, "sqnr_after": "exact"}
    ]
    assert [(e["probe"], e["precision"], e["before"], e["after"]) for e in diff["regressions"]] == [
        ("Conv", "w8a8", "supported", "error")
    ]
    assert diff["regressions"][0]["reasons_after"] == ["compile failed"]
    assert [(e["probe"], e["after"]) for e in diff["improvements"]] == [("Gelu", "supported")]
    assert [e["probe"] for e in diff["added"]] == ["New"] and [e["probe"] for e in diff["removed"]] == ["Old"]
    assert diff["unchanged"] == 1
    text = ops_table.render_diff_markdown(diff)
    assert "qnn-2.47 → htp qnn-2.51" in text and "| Conv | w8a8 | supported | error | compile failed |" in text
    assert "| Conv | fp16 | 44.9 dB | exact |" in text


def test_markdown_marks_and_footnotes():
    table = _table(
        "qnn-2.51",
        {"Relu": {"fp16": "supported"}, "NonZero": {"fp16": "unsupported"}, "X": {"fp16": "error"}},
        {"NonZero": {"fp16": ["NonZero: shape | must be static"]}, "X": {"fp16": ["compile: boom"]}},
    )
    table["ops"]["Log"] = {"fp16": "supported"}
    table["sqnr_db"] = {"Relu": {"fp16": 61.4}, "Log": {"fp16": -9.8}}
    text = ops_table.render_markdown(table)
    assert "| Relu |  |  | ✅ 61 dB |" in text and "| Log |  |  | ✅ ⚠️ -10 dB |" in text
    assert "| NonZero |  |  | ❌ [^1] |" in text and "[^1]: NonZero: shape \\| must be static" in text
    assert "⚠️ error [^2]" in text


def test_supported_but_wrong_output_gets_a_note():
    record = {"verdict": "supported", "sqnr_db": -9.82, "agreement": None}
    assert "SQNR -9.8 dB" in ops_table._mismatch(record)[0]
    assert ops_table._mismatch({"verdict": "supported", "sqnr_db": 45.0, "agreement": None}) == []
    assert "95.0%" in ops_table._mismatch({"verdict": "supported", "sqnr_db": None, "agreement": 0.95})[0]


def test_cli_ops_json_shape_on_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOCOMPAT_CACHE", str(tmp_path / "cache"))
    # LogSoftmax: an op type with one row (Softmax also selects the attention pattern rows)
    md = tmp_path / "ops.md"
    result = CliRunner().invoke(
        main, ["ops", "--backend", "cpu", "--ops", "Relu,LogSoftmax", "--precisions", "fp32", "--json", "--md", str(md)]
    )
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)
    assert table["ops"] == {"Relu": {"fp32": "supported"}, "LogSoftmax": {"fp32": "supported"}}
    assert table["backend"] == "cpu" and "sdk" in table
    assert table["run"]["command"] == "zoocompat ops --backend cpu --precisions fp32 --ops Relu,LogSoftmax"
    assert "| Relu | Relu | 17 | ✅" in md.read_text()
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(result.stdout)
    b.write_text(json.dumps({**table, "ops": {"Relu": {"fp32": "unsupported"}}}))
    diff = CliRunner().invoke(main, ["ops", "--diff", str(a), str(b), "--json"])
    assert diff.exit_code == 0, diff.output
    changes = json.loads(diff.stdout)
    assert changes["regressions"][0]["probe"] == "Relu" and changes["removed"][0]["probe"] == "LogSoftmax"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ops", "NoSuchOp"], "no probe or ONNX op named NoSuchOp"),
        (["--backend", "cpu", "--precisions", "fp16"], "has no precision fp16"),
        (["--diff", "missing.json", "missing.json"], "--diff needs two files"),
    ],
)
def test_cli_ops_usage_errors_exit_2(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZOOCOMPAT_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(main, ["ops", *args])
    assert result.exit_code == 2 and message in result.output


def test_nonzero_fixture_is_a_real_capture():
    assert "Backend build version: v2.51.0" in Path(DATA / "qnn_nonzero_fallback.log").read_text()
