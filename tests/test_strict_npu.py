"""``--strict-npu``: htp cells without CPU fallback, for a "fully on the NPU" verdict (real QNN HTP emulator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from zoocompat_plugins.backends.htp import STRICT_NPU, HtpBackend

from zoocompat.api.errors import CellError

needs_htp = pytest.mark.skipif(HtpBackend().available(None) is not None, reason="onnxruntime-qnn not installed")


def _conv_erf(path: Path) -> Path:
    """Conv -> Erf: QNN HTP takes the Conv; Erf falls back to the CPU (QNN 2.51: not supported by QNN EP)."""
    from onnx import TensorProto, helper, save

    weight = helper.make_tensor(
        "w", TensorProto.FLOAT, [2, 1, 3, 3], np.random.default_rng(0).standard_normal(18).astype(np.float32)
    )
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Erf", ["c"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
        [weight],
    )
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_strict_mode_is_opt_in_and_recorded():
    backend = HtpBackend()
    assert backend.describe(None)["strict"] is False
    backend.configure(strict_npu=True)
    assert backend.describe(None)["strict"] is True
    assert STRICT_NPU == {"session.disable_cpu_ep_fallback": "1"}


@needs_htp
def test_strict_htp_fails_a_graph_that_falls_back_with_the_vendors_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOCOMPAT_HTP_CONTEXT_CACHE", "0")
    model = _conv_erf(tmp_path / "erf.onnx")
    x = np.random.default_rng(1).standard_normal((1, 1, 4, 4)).astype(np.float32)
    lenient = HtpBackend().compile(model, "fp16", None, tmp_path / "lenient").run({"x": x})
    assert lenient.placement.fallback_ops == {"Erf": 1}  # default htp: Erf on the CPU, the cell still runs
    strict = HtpBackend()
    strict.configure(strict_npu=True)
    with pytest.raises(CellError) as error:
        strict.compile(model, "fp16", None, tmp_path / "strict").run({"x": x})
    assert error.value.category == "unsupported_op"
    assert "fallback to CPU EP has been explicitly disabled" in error.value.message
    assert "Erf" in error.value.message and "not supported by QNN EP" in error.value.message
