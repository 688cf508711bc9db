"""First-bad-layer diagnostics and repro folders on a tiny hand-built model with one broken layer."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from zoocompat.diagnose.first_bad import diagnose_failure
from zoocompat.diagnose.layers import bisect_first_bad, first_below, should_diagnose, summarize
from zoocompat.report.results import CellRecord, Diagnosis, LayerFinding, LayerSqnr, MetricResult
from zoocompat.run.matrix import Cell

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from zoocompat.diagnose.first_bad import (  # noqa: E402
    activation_pairs,
    backend_vs_cpu,
    fp32_vs_qdq,
    node_model,
    prefix_model,
    run_cpu,
)
from zoocompat.diagnose.repro import ReproCase, write_repro  # noqa: E402

LAYERS = [
    ("mm1", "MatMul", "w1"),
    ("relu1", "Relu", None),
    ("mm2", "MatMul", "w2"),
    ("tanh2", "Tanh", None),
    ("mm3", "MatMul", "w3"),
]
BROKEN = "tanh2"


def _fp32_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weights = {"w1": rng.normal(size=(4, 8)), "w2": rng.normal(size=(8, 8)) / 3, "w3": rng.normal(size=(8, 3))}
    nodes, previous = [], "x"
    for name, op, weight in LAYERS:
        inputs = [previous, weight] if weight else [previous]
        nodes.append(helper.make_node(op, inputs, [f"{name}_out"], name=name))
        previous = f"{name}_out"
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(w.astype(np.float32), k) for k, w in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _qdq_model(fp32: onnx.ModelProto, batch: dict[str, np.ndarray], broken: str | None = BROKEN) -> onnx.ModelProto:
    """Q/DQ (uint8, min-max) on the input and every layer output; ``broken``'s scale 40x too small (clipping)."""
    names = ["x"] + [f"{n}_out" for n, _, _ in LAYERS]
    ranges = {"x": batch["x"]}
    exposed = onnx.ModelProto()
    exposed.CopyFrom(fp32)
    for name in names[1:-1]:
        exposed.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    ranges.update(run_cpu(exposed, batch))
    nodes, initializers, renamed = [], list(fp32.graph.initializer), {}
    for tensor in names:
        low, high = min(0.0, float(ranges[tensor].min())), max(0.0, float(ranges[tensor].max()))
        scale = (high - low) / 255
        zero_point = round(-low / scale)
        scale /= 40 if tensor == f"{broken}_out" else 1
        initializers += [
            numpy_helper.from_array(np.array(scale, np.float32), f"{tensor}_scale"),
            numpy_helper.from_array(np.array(zero_point, np.uint8), f"{tensor}_zp"),
        ]
        last = tensor == names[-1]
        source = f"{tensor}_float" if last else tensor
        out = tensor if last else f"{tensor}_qdq"
        nodes.append(
            helper.make_node(
                "QuantizeLinear", [source, f"{tensor}_scale", f"{tensor}_zp"], [f"{tensor}_q"], name=f"{tensor}_q"
            )
        )
        nodes.append(
            helper.make_node(
                "DequantizeLinear", [f"{tensor}_q", f"{tensor}_scale", f"{tensor}_zp"], [out], name=f"{tensor}_dq"
            )
        )
        renamed[tensor] = out
    body = []
    for node in fp32.graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[0] = renamed[node.input[0]]
        if node.output[0] == names[-1]:
            copy.output[0] = f"{names[-1]}_float"
        body.append(copy)
    order = []  # input Q/DQ, then each layer followed by its output's Q/DQ
    order += nodes[0:2]
    for i, node in enumerate(body):
        order += [node, *nodes[2 * (i + 1) : 2 * (i + 2)]]
    graph = helper.make_graph(order, "tiny_qdq", list(fp32.graph.input), list(fp32.graph.output), initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    batch = {"x": np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)}
    fp32 = _fp32_model()
    qdq = _qdq_model(fp32, batch)
    onnx.save(fp32, str(folder / "fp32.onnx"))
    onnx.save(qdq, str(folder / "qdq.onnx"))
    return folder, batch


def test_activation_pairs_map_dq_outputs_to_fp32_tensors(tiny):
    folder, _ = tiny
    pairs = activation_pairs(onnx.load(str(folder / "qdq.onnx")), {"x"} | {f"{n}_out" for n, _, _ in LAYERS})
    assert [(p.layer, p.fp32, p.qdq) for p in pairs if p.quantized] == [
        ("x", "x", "x_qdq"),
        ("mm1", "mm1_out", "mm1_out_qdq"),
        ("relu1", "relu1_out", "relu1_out_qdq"),
        ("mm2", "mm2_out", "mm2_out_qdq"),
        ("tanh2", "tanh2_out", "tanh2_out_qdq"),
        ("mm3", "mm3_out", "mm3_out"),  # at a graph output the DQ output keeps the FP32 name
    ]


def test_fp32_vs_qdq_names_the_broken_layer(tiny):
    folder, batch = tiny
    finding = fp32_vs_qdq(folder / "fp32.onnx", folder / "qdq.onnx", batch, 20.0)
    assert finding.first_bad_layer == BROKEN and finding.first_bad_op == "Tanh"
    assert finding.sqnr_db < 20.0 <= finding.previous_sqnr_db
    assert finding.layers_checked == 6 and finding.samples == 8
    healthy = fp32_vs_qdq(folder / "fp32.onnx", _qdq_model(_fp32_model(), batch, broken=None), batch, 20.0)
    assert healthy.first_bad_layer is None
    assert all(layer.sqnr_db is None or layer.sqnr_db > 30 for layer in healthy.layers)


def test_bisect_finds_the_first_bad_prefix_in_log_probes():
    calls = []

    def probe(k):
        calls.append(k)
        return 40.0 - k / 10 if k < 37 else 3.0

    found = bisect_first_bad(100, probe, 20.0)
    assert found.index == 37 and found.probes[37] == 3.0 and found.probes[36] == pytest.approx(36.4)
    assert len(calls) <= math.ceil(math.log2(100)) + 1
    assert len(set(calls)) == len(calls)  # no prefix measured twice
    gradual = bisect_first_bad(100, lambda k: 45.0 - k, 20.0)  # SQNR falling layer by layer
    assert gradual.index == 26 and gradual.probes[26] == 19.0 and gradual.probes[25] == 20.0


def test_bisect_uses_a_known_full_graph_value_and_stops_when_it_is_good():
    assert bisect_first_bad(10, lambda k: pytest.fail("no probe when the full graph is good"), 20.0, 35.0).index is None
    assert bisect_first_bad(10, lambda k: pytest.fail("identical"), 20.0, None).index is None
    found = bisect_first_bad(8, lambda k: 2.0, 20.0, 1.0)
    assert found.index == 0 and 7 not in found.probes  # the full graph's value was not measured again


def test_bisect_reports_a_failing_probe_instead_of_raising():
    def probe(k):
        raise RuntimeError("compile failed")

    found = bisect_first_bad(16, probe, 20.0, 1.0)
    assert found.index is None and "compile failed" in found.error


class _BreaksAfter:
    """A fake backend: runs on the CPU EP, but any graph holding ``node`` gets its output scrambled."""

    def __init__(self, node: str) -> None:
        self.node, self.compiles = node, 0

    def compile(self, path, precision, sdk, workdir):
        self.compiles += 1
        backend = self

        class Compiled:
            def run(self, batch):
                model = onnx.load(str(path))
                outputs = run_cpu(model, batch)
                if any(n.name == backend.node for n in model.graph.node):
                    outputs = {k: v[..., ::-1] * 0.1 for k, v in outputs.items()}

                class Result:
                    pass

                result = Result()
                result.outputs = outputs
                return result

        return Compiled()


def test_backend_bisect_names_the_layer_where_the_backend_departs(tiny, tmp_path):
    folder, batch = tiny
    backend = _BreaksAfter("mm2")
    finding = backend_vs_cpu(folder / "qdq.onnx", batch, backend, "w8a8", None, tmp_path, 20.0, output="mm3_out")
    assert finding.first_bad_layer == "mm2" and finding.first_bad_tensor == "mm2_out_qdq"
    assert finding.runs == backend.compiles <= math.ceil(math.log2(finding.layers_checked)) + 1
    assert finding.previous_sqnr_db is None  # relu1's prefix is identical on both


def test_prefix_and_node_models_keep_attributes_and_qdq(tiny):
    folder, _ = tiny
    qdq = onnx.load(str(folder / "qdq.onnx"))
    prefix = prefix_model(qdq, ["relu1_out_qdq"])
    assert [n.op_type for n in prefix.graph.node] == [
        "QuantizeLinear",
        "DequantizeLinear",
        "MatMul",
        "QuantizeLinear",
        "DequantizeLinear",
        "Relu",
        "QuantizeLinear",
        "DequantizeLinear",
    ]
    assert {i.name for i in prefix.graph.initializer} >= {"w1", "x_scale", "relu1_out_zp"}
    onnx.checker.check_model(prefix)
    index = next(i for i, n in enumerate(qdq.graph.node) if n.name == BROKEN)
    alone, feeds = node_model(qdq, index)
    assert feeds == ["mm2_out"]
    assert [n.op_type for n in alone.graph.node] == [
        "QuantizeLinear",
        "DequantizeLinear",
        "Tanh",
        "QuantizeLinear",
        "DequantizeLinear",
    ]
    assert [o.name for o in alone.graph.output] == ["tanh2_out_qdq"]
    onnx.checker.check_model(alone)


def test_repro_folder_holds_everything_and_its_script_reproduces_on_cpu(tiny, tmp_path):
    folder, batch = tiny
    qdq, fp32 = onnx.load(str(folder / "qdq.onnx")), onnx.load(str(folder / "fp32.onnx"))
    sub = prefix_model(qdq, ["tanh2_out_qdq"])
    exposed = prefix_model(fp32, ["tanh2_out"])
    expected = {"tanh2_out_qdq": run_cpu(exposed, batch)["tanh2_out"]}
    case = ReproCase(
        cell="tiny-onnx-cpu-w8a8-ptq",
        kind="quantization",
        model=sub,
        inputs=batch,
        expected=expected,
        ep="cpu",
        check="sqnr_below",
        threshold_db=20.0,
        observed="tanh2 loses the signal",
        expected_from="fp32",
        what="the QDQ graph up to tanh2",
        details=["measured 2 dB"],
    )
    out = write_repro(case, tmp_path / "repro")
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert names >= {
        "model.onnx",
        "inputs.npz",
        "expected.npz",
        "repro.json",
        "repro.py",
        "README.md",
        "raw/input_list.txt",
        "raw/00000.raw",
        "raw/00007.raw",
    }
    assert (out / "raw" / "00000.raw").stat().st_size == 4 * 4
    readme = (out / "README.md").read_text()
    assert "python repro.py" in readme and "tanh2 loses the signal" in readme
    done = subprocess.run([sys.executable, str(out / "repro.py")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "REPRODUCED" in done.stdout
    healthy = ReproCase(**{**case.__dict__, "expected": {"tanh2_out_qdq": run_cpu(sub, batch)["tanh2_out_qdq"]}})
    write_repro(healthy, tmp_path / "same")
    done = subprocess.run([sys.executable, str(tmp_path / "same" / "repro.py")], capture_output=True, text=True)
    assert done.returncode == 1 and "NOT REPRODUCED" in done.stdout


def _record(**fields) -> CellRecord:
    base = dict(
        id="m-onnx-htp-w8a8-ptq",
        model="m",
        frontend="onnx",
        backend="htp",
        precision="w8a8",
        quant="ptq",
        status="fail",
        category="accuracy",
        metric=MetricResult(name="top1"),
    )
    return CellRecord(**{**base, **fields})


def test_which_failures_get_a_diagnosis():
    cell = Cell("m", "onnx", "htp", "w8a8", "ptq")
    assert should_diagnose(cell, _record())
    assert should_diagnose(cell, _record(category="fidelity"))
    assert not should_diagnose(cell, _record(category="unsupported_op"))
    assert not should_diagnose(cell, _record(metric=None))  # failed before its run
    assert not should_diagnose(Cell("m", "onnx", "cpu", "fp32", "none"), _record(backend="cpu", precision="fp32"))


def test_a_diagnosis_that_fails_is_recorded_and_never_raises():
    class Broken:
        cards: dict = {}

    diagnosis = diagnose_failure(Broken(), Cell("m", "onnx", "htp", "w8a8", "ptq"), _record(), samples=2)
    assert diagnosis.error and "KeyError" in diagnosis.error and diagnosis.summary.startswith("diagnosis incomplete")
    assert diagnose_failure(Broken(), Cell("m", "onnx", "htp", "w8a8", "ptq"), _record(), samples=0) is None


def test_summary_and_first_below():
    layers = [LayerSqnr(layer=f"l{i}", op_type="Conv", tensor=f"t{i}", sqnr_db=v) for i, v in enumerate([None, 30, 12])]
    assert first_below(layers, 20.0) == 2 and first_below(layers, 5.0) is None
    finding = LayerFinding(
        method="backend_vs_cpu",
        threshold_db=20.0,
        first_bad_layer="pool",
        first_bad_op="AveragePool",
        sqnr_db=4.5,
        previous_sqnr_db=38.0,
    )
    text = summarize(Diagnosis(backend=finding), "htp")
    assert (
        "htp vs the QDQ reference (cpu, unfused)" in text and "AveragePool 'pool' (4.5 dB, 38.0 dB before it)" in text
    )


def test_results_schema_carries_the_diagnosis(tmp_path: Path):
    record = _record(diagnosis=Diagnosis(summary="x", backend=LayerFinding(method="backend_vs_cpu", threshold_db=20)))
    again = CellRecord.model_validate_json(record.model_dump_json())
    assert again.diagnosis.backend.threshold_db == 20


def test_reports_show_the_diagnosis():
    from zoocompat.report.html import render_html
    from zoocompat.report.results import Results, RunInfo
    from zoocompat.report.table import render_markdown

    layers = [LayerSqnr(layer="pool", op_type="AveragePool", tensor="p", sqnr_db=4.5)]
    finding = LayerFinding(
        method="backend_vs_cpu",
        threshold_db=20.0,
        first_bad_layer="pool",
        first_bad_op="AveragePool",
        sqnr_db=4.5,
        runs=5,
        layers_checked=30,
        samples=8,
        layers=layers,
    )
    diagnosis = Diagnosis(backend=finding)
    diagnosis.summary = summarize(diagnosis, "htp")
    results = Results(run=RunInfo(), cells=[_record(diagnosis=diagnosis, reason="top1 dropped")])
    markdown = render_markdown(results)
    assert (
        "first bad layer: htp vs the QDQ reference (cpu, unfused): first layer below 20 dB is AveragePool 'pool'"
        in markdown
    )
    assert "backend_vs_cpu (5 backend runs over 30 layers, 8 samples), dB: AveragePool 4.5" in markdown
    assert "first layer below 20 dB is AveragePool &#39;pool&#39;" in render_html(results)


def test_repro_picks_the_problem_and_finds_the_cell():
    from zoocompat.diagnose.repro import ReproError, find_cell
    from zoocompat.diagnose.repro_plan import problem_kind as _kind
    from zoocompat.report.results import Coverage, Results, RunInfo

    fallback = _record(
        category=None,
        status="pass",
        coverage=Coverage(target="htp", target_nodes=3, total_nodes=4, fallback_ops={"Erf": 1}),
    )
    assert _kind(fallback) == "fallback" and _kind(_record()) == "numerics"
    assert _kind(_record(category="timeout", status="fail")) == "crash"
    with pytest.raises(ReproError, match="nothing to reproduce"):
        _kind(_record(category=None, status="pass"))
    results = Results(run=RunInfo(), cells=[_record(), _record(id="m-onnx-htp-w8a8-ptq-qnn-2.47")])
    assert find_cell(results, "m-onnx-htp-w8a8-ptq").id == "m-onnx-htp-w8a8-ptq"
    assert find_cell(results, "m-onnx-htp-w8a8-ptq-qnn").id.endswith("qnn-2.47")
    with pytest.raises(ReproError, match="no cell 'x'"):
        find_cell(results, "x")
