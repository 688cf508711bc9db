"""CPU, QNN HTP, DSP (strict) and GPU (fp16 reference) backends on small real graphs; runner fault containment."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from zoocompat_plugins.backends.cpu import CpuBackend
from zoocompat_plugins.backends.dsp import DspBackend
from zoocompat_plugins.backends.gpu import REFERENCE_LABEL, GpuBackend, cuda_present
from zoocompat_plugins.backends.htp import HtpBackend, sdk_id
from zoocompat_plugins.backends.ort_session import RunnerModel, parse_placement

from zoocompat.api.errors import CellError


def _conv_relu_det(path: Path, with_det: bool) -> Path:
    """Conv -> Relu (-> Det on a 2-D slice when ``with_det``): HTP takes Conv/Relu, not Det."""
    from onnx import TensorProto, helper, save

    rng = np.random.default_rng(0)
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 1, 3, 3], rng.standard_normal(36).astype(np.float32))
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])
    if with_det:
        nodes += [helper.make_node("Det", ["y"], ["d"])]
        output = helper.make_tensor_value_info("d", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])], [output], [weight]
    )
    # IR 8, as the frontends export: an older SDK release's onnxruntime reads it too
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def _qdq(path: Path, float_model: Path) -> Path:
    """8-bit QDQ of ``float_model`` (onnxruntime's static quantizer, Conv / Relu only)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(2)
            self.samples = iter([{"x": rng.standard_normal((1, 1, 4, 4)).astype(np.float32)} for _ in range(4)])

        def get_next(self):
            return next(self.samples, None)

    quantize_static(
        str(float_model),
        str(path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QUInt8,
        op_types_to_quantize=["Conv", "Relu"],
    )
    return path


def test_cpu_runs_and_counts_nodes(tmp_path):
    model = _conv_relu_det(tmp_path / "m.onnx", with_det=False)
    x = np.random.default_rng(1).standard_normal((3, 1, 4, 4)).astype(np.float32)
    result = CpuBackend().compile(model, "fp32", None, tmp_path / "w").run({"x": x})
    assert result.outputs["y"].shape == (3, 4, 4, 4)
    assert result.placement.target_nodes == result.placement.total_nodes >= 1
    assert result.info["providers"][0] == "CPUExecutionProvider"


@pytest.mark.skipif(HtpBackend().available(None) is not None, reason="onnxruntime-qnn not installed")
def test_htp_fp16_runs_on_qnn_and_reports_fallback(tmp_path):
    x = np.random.default_rng(1).standard_normal((2, 1, 4, 4)).astype(np.float32)
    clean = _conv_relu_det(tmp_path / "clean.onnx", with_det=False)
    cpu = CpuBackend().compile(clean, "fp32", None, tmp_path / "c").run({"x": x})
    htp = HtpBackend().compile(clean, "fp16", None, tmp_path / "h").run({"x": x})
    assert htp.info["providers"][0] == "QNNExecutionProvider"
    assert htp.placement.fallback_ops == {} and htp.placement.target_nodes == htp.placement.total_nodes
    np.testing.assert_allclose(htp.outputs["y"], cpu.outputs["y"], atol=2e-2)
    det = _conv_relu_det(tmp_path / "det.onnx", with_det=True)
    htp = HtpBackend().compile(det, "fp16", None, tmp_path / "d").run({"x": x})
    assert htp.placement.fallback_ops == {"Det": 1}
    assert any("not supported by QNN EP" in r for r in htp.placement.reasons)


def test_htp_describes_the_real_library():
    info = HtpBackend().describe(None)
    if info["qnn_core_version"] is None:
        pytest.skip("onnxruntime-qnn not installed")
    assert info["sdk"] == sdk_id(info["qnn_core_version"]) and info["sdk"].startswith("qnn-2.")
    assert "unknown SDK 'qnn-1.0'" in HtpBackend().available("qnn-1.0")


needs_htp = pytest.mark.skipif(HtpBackend().available(None) is not None, reason="onnxruntime-qnn not installed")


@needs_htp
def test_dsp_runs_an_integer_graph_whole_and_fails_one_that_would_fall_back(tmp_path):
    x = np.random.default_rng(1).standard_normal((2, 1, 4, 4)).astype(np.float32)
    clean = _qdq(tmp_path / "clean_qdq.onnx", _conv_relu_det(tmp_path / "clean.onnx", with_det=False))
    result = DspBackend().compile(clean, "w8a8", None, tmp_path / "c").run({"x": x})
    assert result.placement.fallback_ops == {} and result.placement.target == "dsp"
    det = _qdq(tmp_path / "det_qdq.onnx", _conv_relu_det(tmp_path / "det.onnx", with_det=True))
    with pytest.raises(CellError) as info:  # htp would run this with Det on the CPU; the DSP contract refuses
        DspBackend().compile(det, "w8a8", None, tmp_path / "d").run({"x": x})
    assert info.value.category == "unsupported_op"
    assert "fallback to CPU EP has been explicitly disabled" in info.value.message
    assert "Det" in info.value.message and "not supported by QNN EP" in info.value.message  # the vendor's reason


def test_dsp_declares_integer_precisions_only():
    assert DspBackend.precisions == ("w8a8",)
    with pytest.raises(CellError) as info:
        DspBackend().compile(Path("m.onnx"), "fp16", None, Path("unused"))
    assert info.value.category == "unsupported_op" and "no float path" in info.value.message
    assert DspBackend().describe(None)["strict"] is True


def test_gpu_fp16_reference_rounds_every_tensor_to_fp16(tmp_path):
    model = _conv_relu_det(tmp_path / "m.onnx", with_det=False)
    x = np.random.default_rng(1).standard_normal((3, 1, 4, 4)).astype(np.float32)
    fp32 = CpuBackend().compile(model, "fp32", None, tmp_path / "c").run({"x": x}).outputs["y"]
    backend = GpuBackend()
    if cuda_present():
        pytest.skip("a CUDA GPU is present: the gpu backend runs there, not as the fp16 reference")
    assert backend.describe(None)["runtime"] == REFERENCE_LABEL and "Adreno" in backend.describe(None)["qnn_gpu"]
    result = backend.compile(model, "fp16", None, tmp_path / "g").run({"x": x})
    y = result.outputs["y"]
    assert y.dtype == np.float32  # I/O stays float32
    np.testing.assert_array_equal(y, y.astype(np.float16).astype(np.float32))  # values are fp16-representable
    assert not np.array_equal(y, fp32)
    np.testing.assert_allclose(y, fp32, atol=2e-2)
    assert result.placement.target == REFERENCE_LABEL
    assert result.placement.target_nodes == result.placement.total_nodes == 2  # the model's nodes, not the casts


def _fake_python(tmp_path: Path, body: str) -> str:
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@pytest.mark.fault
def test_runner_killed_by_signal_is_a_crash(tmp_path):
    crashing = _fake_python(tmp_path, "kill -SEGV $$")
    model = RunnerModel(tmp_path / "m.onnx", "qnn", "htp", tmp_path / "w", python=crashing)
    with pytest.raises(CellError) as info:
        model.run({"x": np.zeros((1, 1), np.float32)})
    assert info.value.category == "crash" and "SIGSEGV" in info.value.message


@pytest.mark.fault
def test_runner_hang_is_a_timeout(tmp_path):
    model = RunnerModel(
        tmp_path / "m.onnx", "qnn", "htp", tmp_path / "w", python=_fake_python(tmp_path, "sleep 30"), timeout_s=1
    )
    with pytest.raises(CellError) as info:
        model.run({"x": np.zeros((1, 1), np.float32)})
    assert info.value.category == "timeout" and "ZOOCOMPAT_CELL_TIMEOUT" in info.value.message


def test_runner_reports_a_broken_model(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    with pytest.raises(CellError) as info:
        CpuBackend().compile(broken, "fp32", None, tmp_path / "w").run({"x": np.zeros((1, 1), np.float32)})
    assert info.value.category == "bad_input" and "at compile" in info.value.message
    assert "broken.onnx" in info.value.message
    assert os.path.exists(tmp_path / "w" / "runner.log")


def _validation(verdict: str, op: str, indices: list[int], reason: str | None = None) -> str:
    lines = [
        f"[V:onnxruntime:, qnn_execution_provider.cc:1150 LogNodeSupport] Validation {verdict} for "
        f"{len(indices)} nodes in OrtNodeUnit ({op}) :"
    ]
    lines += [f"\tOperator type: {op} Node name: n{i} Node index: {i}" for i in indices]
    if reason:
        lines.append(f"\tREASON : {reason}")
    return "\n".join(lines) + "\n\n"


def test_placement_counts_the_first_pass_of_a_release_that_does_not_mark_passes():
    """onnxruntime-qnn before 2.7 logs two GetCapability passes without a 'GetCapability pass' marker."""
    one_pass = (
        _validation(
            "FAILED", "QuantizeLinear", [0], "QNN EP is configured to not take Q nodes that consume a graph input."
        )
        + _validation("PASSED", "Conv", [1, 2, 3])
        + _validation("FAILED", "Det", [4], "Operators of type `Det` are not supported by QNN EP.")
    )
    log = one_pass + "Backend setup already!\n" + one_pass  # the second pass lists the same node indices again
    placement = parse_placement(log, "QNNExecutionProvider", "htp")
    assert (placement.target_nodes, placement.total_nodes, placement.io_nodes) == (3, 4, 1)
    assert placement.fallback_ops == {"Det": 1}
