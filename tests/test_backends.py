"""CPU and QNN HTP backends on a small real graph, and runner fault containment."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from plugins.backends.cpu import CpuBackend
from plugins.backends.htp import HtpBackend, sdk_id
from plugins.backends.ort_session import RunnerModel
from zoocompat.errors import CellError


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
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
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
    assert "not installed here" in HtpBackend().available("qnn-1.0")


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
