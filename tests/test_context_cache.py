"""The HTP compile cache: QNN context binaries kept in the artifact cache and reused.

A cold run compiles the graph and keeps its EPContext model; a warm run loads
it, compiles nothing, and must give bit-identical outputs and the same node
placement. Keys separate everything that shapes the compiled binary. No timed
assertions: cold vs warm shows in the record's state, not in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from zoocompat_plugins.backends.htp import HtpBackend
from zoocompat_plugins.backends.ort_session import CONTEXT_STAGE

from tests.test_backends import _conv_relu_det, _qdq
from zoocompat.sdk import releases as sdks

needs_htp = pytest.mark.skipif(HtpBackend().available(None) is not None, reason="onnxruntime-qnn not installed")
OTHER_SDK = "qnn-2.47"


def _inputs() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(3).standard_normal((3, 1, 4, 4)).astype(np.float32)}


def _state(result) -> str:
    return result.info["runtime"]["htp_context"]["state"]


def _cold_then_warm(backend: HtpBackend, model: Path, precision: str, sdk: str | None, work: Path):
    cold = backend.compile(model, precision, sdk, work / "cold").run(_inputs())
    warm = backend.compile(model, precision, sdk, work / "warm").run(_inputs())
    return cold, warm


@needs_htp
@pytest.mark.parametrize(("precision", "with_det"), [("w8a8", False), ("fp16", True)])
def test_warm_run_reuses_the_context_and_gives_bit_identical_outputs(tmp_path, precision, with_det):
    model = _conv_relu_det(tmp_path / "float.onnx", with_det=with_det)
    if precision == "w8a8":
        model = _qdq(tmp_path / "qdq.onnx", model)
    backend = HtpBackend(context_root=tmp_path / "cache")
    cold, warm = _cold_then_warm(backend, model, precision, None, tmp_path)
    assert (_state(cold), _state(warm)) == ("cold", "warm")
    assert cold.outputs.keys() == warm.outputs.keys()
    for name in cold.outputs:
        assert np.array_equal(cold.outputs[name], warm.outputs[name]), name
    assert warm.placement == cold.placement  # read from the cold compile's log, kept in the entry
    assert warm.info["providers"][0] == "QNNExecutionProvider"
    if with_det:
        assert warm.placement.fallback_ops == {"Det": 1}
    entries = [p for p in (tmp_path / "cache" / CONTEXT_STAGE).iterdir() if p.is_dir()]
    assert len(entries) == 1
    files = {p.name for p in entries[0].iterdir()}
    assert {"model_ctx.onnx", "compile.log", "context.json", "manifest.json"} <= files
    assert any(name.endswith("_qnn.bin") for name in files)  # the QNN context binary beside its EPContext model
    request = json.loads((tmp_path / "warm" / "runner_request.json").read_text())
    assert request["model"] == str(entries[0] / "model_ctx.onnx") and "context_dump" not in request


@needs_htp
def test_key_separates_what_shapes_the_binary(tmp_path):
    model = _conv_relu_det(tmp_path / "m.onnx", with_det=False)
    other = _conv_relu_det(tmp_path / "det.onnx", with_det=True)
    base = HtpBackend(context_root=tmp_path)
    key = base.context_cache("fp16", None).key(model)
    assert key == HtpBackend(context_root=tmp_path / "elsewhere").context_cache("fp16", None).key(model)
    different = {
        base.context_cache("w8a8", None).key(model),
        HtpBackend(htp_arch="68", context_root=tmp_path).context_cache("fp16", None).key(model),
        HtpBackend(soc_model="60", context_root=tmp_path).context_cache("fp16", None).key(model),
        base.context_cache("fp16", None).key(other),
        base.context_cache("fp16", None).key(model, {"session.disable_cpu_ep_fallback": "1"}),
    }
    assert key not in different and len(different) == 5
    parts = base.context_cache("fp16", None).parts
    assert parts["qnn_core_version"] and parts["sdk"].startswith("qnn-")
    assert parts["provider_options"]["enable_htp_fp16_precision"] == "1"


def test_cache_can_be_switched_off(monkeypatch, tmp_path):
    monkeypatch.setenv("ZOOCOMPAT_HTP_CONTEXT_CACHE", "0")
    assert HtpBackend(context_root=tmp_path).context_cache("w8a8", None) is None


@needs_htp
def test_a_context_that_no_longer_loads_is_compiled_again_not_trusted(tmp_path):
    model = _qdq(tmp_path / "qdq.onnx", _conv_relu_det(tmp_path / "f.onnx", with_det=False))
    backend = HtpBackend(context_root=tmp_path / "cache")
    cold = backend.compile(model, "w8a8", None, tmp_path / "cold").run(_inputs())
    entry = Path(cold.info["runtime"]["htp_context"]["entry"])
    binary = next(entry.glob("*_qnn.bin"))
    binary.write_bytes(b"not a QNN context")
    # the manifest now disagrees with the files: the cache rebuilds the entry (a cold compile)
    again = backend.compile(model, "w8a8", None, tmp_path / "again").run(_inputs())
    assert _state(again) == "cold"
    assert np.array_equal(again.outputs["y"], cold.outputs["y"])
    # a context that matches its manifest but does not load (say, a QNN library swapped in place)
    binary = next(entry.glob("*_qnn.bin"))
    binary.write_bytes(b"not a QNN context")
    from zoocompat.api.cache import MANIFEST, _manifest

    (entry / MANIFEST).write_text(json.dumps(_manifest(entry), indent=1))
    fallback = backend.compile(model, "w8a8", None, tmp_path / "fallback").run(_inputs())
    assert _state(fallback).startswith("warm failed, compiled")
    assert np.array_equal(fallback.outputs["y"], cold.outputs["y"])


@needs_htp
def test_context_cache_under_another_sdk_release(tmp_path):
    """The runner is a plain script in the release's own environment; its contexts key by its core version."""
    env = sdks.find(OTHER_SDK)
    if env is None:
        pytest.skip(f"{OTHER_SDK} is not installed (zoocompat sdk install {OTHER_SDK})")
    model = _qdq(tmp_path / "qdq.onnx", _conv_relu_det(tmp_path / "f.onnx", with_det=False))
    backend = HtpBackend(context_root=tmp_path / "cache")
    cold, warm = _cold_then_warm(backend, model, "w8a8", OTHER_SDK, tmp_path)
    assert (_state(cold), _state(warm)) == ("cold", "warm")
    assert warm.info["runtime"]["qnn_core_version"] == env.qnn_core_version
    assert np.array_equal(cold.outputs["y"], warm.outputs["y"])
    own = backend.compile(model, "w8a8", None, tmp_path / "own").run(_inputs())
    assert _state(own) == "cold"  # another release's context is never loaded by this one
    assert own.info["runtime"]["htp_context"]["key"] != warm.info["runtime"]["htp_context"]["key"]
