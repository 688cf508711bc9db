"""The public process-isolated runner (zoocompat.api.runner) with a third-party runner script.

The runner script here imports nothing but the standard library and is loaded
by path under ``python -I``, as a runner script is in an SDK release's own
environment, where zoocompat is not installed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from zoocompat_plugins.backends.ort_session import RUNNER_SCRIPT as ORT_SCRIPT

from tests.test_backends import _fake_python
from zoocompat.api.errors import CellError
from zoocompat.api.runner import CHILD_SCRIPT, EXIT_FAILED, RUNNERS, Runner

SCRIPT = """
import os, sys, time

def run_request(request, report):
    report["python"] = sys.executable
    report["isolated"] = sys.flags.isolated
    report["pid"] = os.getpid()
    action = request.get("action")
    print("native output of", action, flush=True)
    if action == "fail":
        raise ValueError("the model has an op npu9000 lacks")
    if action == "segv":
        os.kill(os.getpid(), 11)
    if action == "hang":
        time.sleep(60)
    with open(request["out"], "w") as out:
        out.write(str(request["x"] * 2))
"""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "npu9000_runner.py"
    path.write_text(SCRIPT)
    return path


def _run(script: Path, workdir: Path, action: str = "ok", **runner: object):
    request = {"action": action, "x": 21, "out": str(workdir / "out.txt")}
    return Runner(script, label="npu9000", **runner).run(request, workdir, subject="m.onnx")


def test_a_run_returns_the_report_log_and_files(script, tmp_path):
    RUNNERS.close()
    first = _run(script, tmp_path / "a")
    assert first.ok and (tmp_path / "a" / "out.txt").read_text() == "42"
    assert first.report["isolated"] == 1  # python -I: no script folder, user site or PYTHON* variables
    assert "native output of ok" in first.log_text()
    second = _run(script, tmp_path / "b")
    assert second.report["pid"] == first.report["pid"]  # the same long-lived process served both


def test_a_failure_the_script_raises_is_reported_not_a_crash(script, tmp_path):
    finished = _run(script, tmp_path / "w", "fail")
    assert finished.code == EXIT_FAILED and not finished.ok
    assert finished.report["error_type"] == "ValueError" and "npu9000 lacks" in finished.report["error"]


@pytest.mark.fault
def test_a_signal_is_a_crash_and_a_hang_a_timeout(script, tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOCOMPAT_RUNNER_REUSE", "0")
    with pytest.raises(CellError) as crash:
        _run(script, tmp_path / "c", "segv")
    assert crash.value.category == "crash" and "SIGSEGV" in crash.value.message and "m.onnx" in crash.value.message
    with pytest.raises(CellError) as hang:
        _run(script, tmp_path / "h", "hang", timeout_s=1)
    assert hang.value.category == "timeout" and "npu9000 runner" in hang.value.message


@pytest.mark.fault
def test_a_run_the_shared_process_dies_on_runs_again_fresh(script, tmp_path):
    serve_dies = _fake_python(
        tmp_path, f'for a; do [ "$a" = --serve ] && kill -SEGV $$; done\nexec {sys.executable} "$@"'
    )
    finished = _run(script, tmp_path / "w", python=serve_dies)
    assert finished.ok and (tmp_path / "w" / "out.txt").read_text() == "42"
    assert finished.log_text().startswith("# zoocompat: the shared runner process died with SIGSEGV")


def test_the_child_runs_alone_as_a_script(script, tmp_path):
    """``python -I runner_child.py SCRIPT REQUEST.json`` by hand: what a repro or a maintainer runs."""
    (tmp_path / "request.json").write_text(
        f'{{"x": 4, "out": "{tmp_path / "o.txt"}", "log": "-", "report": "{tmp_path / "r.json"}"}}'
    )
    done = subprocess.run([sys.executable, "-I", str(CHILD_SCRIPT), str(script), str(tmp_path / "request.json")])
    assert done.returncode == 0 and (tmp_path / "o.txt").read_text() == "8"
    bad = subprocess.run([sys.executable, "-I", str(CHILD_SCRIPT), str(tmp_path / "request.json")], capture_output=True)
    assert bad.returncode == 2 and b"usage" in bad.stderr


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_child_side_needs_nothing_of_zoocompat():
    """An SDK release's environment has no zoocompat: the child is stdlib only, ort_runner.py adds the runtime."""
    assert _imported_roots(CHILD_SCRIPT) <= set(sys.stdlib_module_names)
    ort_runner = Path(ORT_SCRIPT)
    extra = _imported_roots(ort_runner) - set(sys.stdlib_module_names)
    assert extra <= {"numpy", "onnxruntime", "onnxruntime_qnn"}, extra
