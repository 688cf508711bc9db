"""``plan_repro`` on a real failing cell: the linear digits model at w4a8 on the cpu backend.

At w4a8 the model loses about a third of its top-1 on the CPU, so its cell fails
accuracy with a diagnosis naming the Gemm; each kind of repro cuts its graph
from the cell's real QDQ model and measures it on the real CPU EP.
"""

from __future__ import annotations

import json

import numpy as np
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


def _token_mlp(path, tokens: int = 16, width: int = 8, out: int = 12, shaped: bool = True):
    """ViT's token MLP as onnxruntime's MatMul+Add fusion leaves it: ``[1, T, C]`` -> Reshape ``[T, C]`` -> Gemm
    -> Reshape ``[1, T, D]``. ``shaped=False`` computes the reshape target at run time (Shape -> Gather ->
    Concat) so shape inference cannot type the Gemm's input.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, tokens, width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, tokens, out])
    inits = [
        numpy_helper.from_array(rng.standard_normal((width, out)).astype(np.float32) / 3, "W"),
        numpy_helper.from_array(rng.standard_normal(out).astype(np.float32), "B"),
        numpy_helper.from_array(np.array([1, tokens, out], np.int64), "back"),
        numpy_helper.from_array(np.array([tokens, width], np.int64), "flat"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus_one"),
    ]
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="act")]
    if shaped:
        nodes.append(helper.make_node("Reshape", ["r", "flat"], ["gemm_input_reshape_arg"], name="flatten"))
    else:  # [tokens, -1] from the input's own shape: its value is unknown until run time
        nodes += [
            helper.make_node("Shape", ["r"], ["r_shape"], name="shape"),
            helper.make_node("Gather", ["r_shape", "one"], ["t"], name="tokens", axis=0),
            helper.make_node("Concat", ["t", "minus_one"], ["target"], name="target", axis=0),
            helper.make_node("Reshape", ["r", "target"], ["gemm_input_reshape_arg"], name="flatten"),
        ]
    nodes += [
        helper.make_node("Gemm", ["gemm_input_reshape_arg", "W", "B"], ["g"], name="MatMulAddFusion"),
        helper.make_node("Reshape", ["g", "back"], ["y"], name="unflatten"),
    ]
    graph = helper.make_graph(nodes, "token_mlp", [x], [y], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize("shaped", [True, False], ids=["inferred-shape", "shape-unknown-until-run"])
def test_a_node_after_a_token_reshape_is_cut_and_fed_per_sample(tmp_path, shaped):
    """Issue 20: the Gemm after a ``[16, C]`` Reshape, cut alone with its Q/DQ from a real QDQ model (onnxruntime
    quantize_static, 16-bit activations), is fed its tokens per sample (not a batch of 1) and on the CPU EP
    gives what the full model computes there.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from zoocompat.diagnose.first_bad import run_cpu, with_outputs
    from zoocompat.diagnose.repro_plan import _node_alone

    fp32, qdq = tmp_path / "mlp.onnx", tmp_path / "mlp_qdq.onnx"
    _token_mlp(fp32, shaped=shaped)
    batch = {"x": np.random.default_rng(1).standard_normal((4, 16, 8)).astype(np.float32)}  # 4 samples

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.samples = iter([{"x": batch["x"][i : i + 1]} for i in range(4)])

        def get_next(self):
            return next(self.samples, None)

    quantize_static(
        str(fp32),
        str(qdq),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt16,
        weight_type=QuantType.QUInt8,
    )
    import onnx

    model = onnx.load(str(qdq))
    index = next(i for i, n in enumerate(model.graph.node) if n.op_type == "Gemm")
    sub, inputs, expected = _node_alone(model, index, batch, tmp_path / "gemm_alone.onnx")
    assert [n.op_type for n in sub.graph.node].count("Gemm") == 1 and "Reshape" not in {
        n.op_type for n in sub.graph.node
    }
    assert {name: value.shape for name, value in inputs.items()} == {"gemm_input_reshape_arg": (4, 16, 8)}
    (declared,) = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in sub.graph.input]
    assert declared == [16, 8]  # one sample's tokens: the CPU run and repro.py split the batch by this rank
    gemm_out = sub.graph.output[0].name
    full = run_cpu(with_outputs(model, [gemm_out]), batch, optimize=False)[gemm_out]
    assert expected[gemm_out].shape == full.shape == (4, 16, 12)
    np.testing.assert_allclose(expected[gemm_out], full, rtol=0, atol=1e-6)
    # the saved cut model runs alone on the CPU EP, sample by sample, as the repro folder's script feeds it
    again = run_cpu(str(tmp_path / "gemm_alone.onnx"), inputs, optimize=False)[gemm_out]
    np.testing.assert_array_equal(again, expected[gemm_out])
