"""Long-lived runner processes (zoocompat.api.runner.RunnerPool, runner_child.py --serve ort_runner.py).

Runs in one shared process must give what a process per run gives (outputs,
placement, each run's own session log), and isolation must hold: a run the
shared process dies on is run again in a fresh process (a runner that always
crashes stays the cell's crash: tests/test_backends.py), and a hang kills it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from zoocompat_plugins.backends.cpu import CpuBackend
from zoocompat_plugins.backends.htp import HtpBackend
from zoocompat_plugins.backends.ort_session import RunnerModel

from tests.test_backends import _conv_relu_det, _fake_python, _qdq
from zoocompat.api.errors import CellError
from zoocompat.api.runner import RUNNERS

needs_htp = pytest.mark.skipif(HtpBackend().available(None) is not None, reason="onnxruntime-qnn not installed")


def _inputs(seed: int = 3) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((3, 1, 4, 4)).astype(np.float32)}


def _pids() -> set[int]:
    return {server.process.pid for server in RUNNERS._servers.values()}


@needs_htp
def test_runs_in_the_shared_process_match_a_process_per_run(tmp_path, monkeypatch):
    float_model = _conv_relu_det(tmp_path / "float.onnx", with_det=True)
    qdq_model = _qdq(tmp_path / "qdq.onnx", _conv_relu_det(tmp_path / "plain.onnx", with_det=False))
    runs = [
        (CpuBackend(), float_model, "fp32"),
        (HtpBackend(), qdq_model, "w8a8"),
        (HtpBackend(), float_model, "fp16"),  # CPU fallback for Det: placement differs from the run before
    ]

    def each(folder: str):
        return [
            backend.compile(model, precision, None, tmp_path / folder / str(i)).run(_inputs(i))
            for i, (backend, model, precision) in enumerate(runs)
        ]

    RUNNERS.close()
    shared = each("shared")
    assert len(_pids()) == 1  # one process served all three
    monkeypatch.setenv("ZOOCOMPAT_RUNNER_REUSE", "0")
    fresh = each("fresh")
    for i, (one, other) in enumerate(zip(shared, fresh, strict=True)):
        assert one.outputs.keys() == other.outputs.keys()
        for name in one.outputs:
            assert np.array_equal(one.outputs[name], other.outputs[name]), (i, name)
        assert one.placement == other.placement, i
    assert shared[2].placement.fallback_ops == {"Det": 1} and not shared[1].placement.fallback_ops
    for i in range(len(runs)):  # each run's session log went to its own folder
        log = (tmp_path / "shared" / str(i) / "runner.log").read_text()
        assert "Validation" in log if i else "CPUExecutionProvider" in log
    assert "Det" not in (tmp_path / "shared" / "1" / "runner.log").read_text()


def _wrapper(tmp_path: Path, serve: str) -> str:
    """A ``python`` that does ``serve`` when asked for ``--serve`` and is the real interpreter otherwise."""
    return _fake_python(tmp_path, f'for a; do [ "$a" = --serve ] && {{ {serve}; }}; done\nexec {sys.executable} "$@"')


@pytest.mark.fault
def test_a_run_the_shared_process_dies_on_runs_again_in_a_fresh_one(tmp_path):
    model = _conv_relu_det(tmp_path / "m.onnx", with_det=False)
    python = _wrapper(tmp_path, "kill -SEGV $$")  # the shared process dies; a process of its own is fine
    result = RunnerModel(model, "cpu", "cpu", tmp_path / "w", python=python).run(_inputs())
    expected = CpuBackend().compile(model, "fp32", None, tmp_path / "c").run(_inputs()).outputs
    assert np.array_equal(result.outputs["y"], expected["y"])
    log = (tmp_path / "w" / "runner.log").read_text()
    assert log.startswith("# zoocompat: the shared runner process died with SIGSEGV on this run")


@pytest.mark.fault
def test_a_hung_shared_process_is_killed_and_not_used_again(tmp_path):
    model = _conv_relu_det(tmp_path / "m.onnx", with_det=False)
    python = _wrapper(tmp_path, "sleep 60")
    RUNNERS.close()
    with pytest.raises(CellError) as info:
        RunnerModel(model, "cpu", "cpu", tmp_path / "w", python=python, timeout_s=2).run(_inputs())
    assert info.value.category == "timeout"
    assert not _pids()  # the hung one is gone; the next run starts another


def test_a_changed_environment_gets_its_own_process(tmp_path, monkeypatch):
    model = _conv_relu_det(tmp_path / "m.onnx", with_det=False)
    RUNNERS.close()
    CpuBackend().compile(model, "fp32", None, tmp_path / "a").run(_inputs())
    CpuBackend().compile(model, "fp32", None, tmp_path / "b").run(_inputs())
    assert len(_pids()) == 1
    other = "2" if os.environ.get("ZOOCOMPAT_THREADS") == "1" else "1"
    monkeypatch.setenv("ZOOCOMPAT_THREADS", other)  # read by the runner when it makes a session
    CpuBackend().compile(model, "fp32", None, tmp_path / "c").run(_inputs())
    assert len(_pids()) == 2
