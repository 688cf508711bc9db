"""Process-isolated runs for any backend: a runner script in a child process, with timeout and crash isolation.

A backend whose vendor library may segfault, abort or hang runs it in a child
process, so that only the cell fails (``crash`` or ``timeout``) and the
session goes on. The child may also run under another Python (an SDK
release's own environment) than the suite's. A backend writes a *runner
script* (see :mod:`zoocompat.api.runner_child` for its one function,
``run_request(request, report)``) and runs it with a :class:`Runner`::

    RUNNER_SCRIPT = Path(__file__).with_name("my_runner.py")

    finished = Runner(RUNNER_SCRIPT, python=env_python, label="npu9000").run(
        {"model": str(onnx_path), "inputs": str(inputs_npz), "outputs": str(outputs_npz)},
        workdir,
        subject=onnx_path.name,
    )
    if not finished.ok:
        raise CellError("unsupported_op", f"npu9000 failed: {finished.report.get('error')}; log: {finished.log}")

What happens on :meth:`Runner.run`:

- the request (the backend's keys plus ``log`` and ``report``) is written to
  ``workdir/runner_request.json``; the child's output goes to
  ``workdir/runner.log`` and its report to ``workdir/runner_report.json``;
- the child is ``python -I runner_child.py ...``: an argument list, never a
  shell string, in isolated mode, so nothing of the parent's environment but
  its variables leaks in;
- a run that takes longer than :attr:`Runner.timeout_s` (``$ZOOCOMPAT_CELL_TIMEOUT``,
  900 s by default) is killed and raises ``CellError("timeout")``; a child
  killed by a signal raises ``CellError("crash")`` naming the signal; both
  messages point at the log;
- by default the run goes to a long-lived process of the :class:`RunnerPool`
  (one per Python, runner script and environment), so a cell does not pay
  for starting Python and loading the vendor libraries again. Isolation
  stays: a run that kills the shared process runs once more in a fresh
  process, whose outcome is the cell's, and the log says so.
  ``ZOOCOMPAT_RUNNER_REUSE=0`` gives every run a fresh process.

The built-in onnxruntime backends use it through
``zoocompat_plugins.backends.ort_session`` (runner script ``ort_runner.py``).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoocompat.api.errors import CellError
from zoocompat.api.runner_child import EXIT_FAILED

__all__ = [
    "CHILD_SCRIPT",
    "DEFAULT_TIMEOUT_S",
    "EXIT_FAILED",
    "RUNNERS",
    "Finished",
    "Runner",
    "RunnerPool",
    "cell_timeout",
    "reuse_runners",
]

DEFAULT_TIMEOUT_S = 900.0
#: the generic child (serve loop, request protocol) every runner process runs as its script
CHILD_SCRIPT = Path(__file__).with_name("runner_child.py")
REQUEST_FILE, LOG_FILE, REPORT_FILE = "runner_request.json", "runner.log", "runner_report.json"
#: environment variables that change between runs but mean nothing to a runner (pytest sets this one per test)
_VOLATILE_ENV = frozenset({"PYTEST_CURRENT_TEST"})


def cell_timeout() -> float:
    """Per-run limit in seconds: ``$ZOOCOMPAT_CELL_TIMEOUT`` or 900."""
    return float(os.environ.get("ZOOCOMPAT_CELL_TIMEOUT", DEFAULT_TIMEOUT_S))


def reuse_runners() -> bool:
    """Whether runs go to a long-lived runner process (default) or each to its own (``ZOOCOMPAT_RUNNER_REUSE=0``)."""
    return os.environ.get("ZOOCOMPAT_RUNNER_REUSE", "1") != "0"


class _Server:
    """One ``runner_child.py --serve SCRIPT`` process: a request file's path in, its exit code out."""

    def __init__(self, python: str, script: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [python, "-I", str(CHILD_SCRIPT), "--serve", str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
            bufsize=1,
        )
        self.served = 0

    def request(self, request_path: Path, timeout_s: float) -> int:
        """The request's exit code (0 or :data:`EXIT_FAILED`), or the process's (negative for a signal) when it
        died on it; :class:`subprocess.TimeoutExpired` (the process killed) when no answer came in time.
        """
        assert self.process.stdin is not None and self.process.stdout is not None
        self.served += 1
        try:
            self.process.stdin.write(f"{request_path}\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return self.process.wait()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        if not ready:
            self.close(kill=True)
            raise subprocess.TimeoutExpired(self.process.args, timeout_s)
        answer = self.process.stdout.readline()
        if not answer.strip().lstrip("-").isdigit():
            code = self.process.wait()
            return code if code != 0 else 1  # ended without answering: never a success
        return int(answer)

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def close(self, kill: bool = False) -> None:
        """End the process: close its input (it ends at end of input), or kill it."""
        if self.alive():
            if kill:
                self.process.kill()
            else:
                self.process.stdin.close()  # type: ignore[union-attr]
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class RunnerPool:
    """Long-lived runner processes, one per Python interpreter, runner script and environment, used one run at
    a time.

    A process is started on first use with the environment of that moment (the key includes it, so a
    changed ``ZOOCOMPAT_THREADS`` or library path gets its own), restarted after :attr:`max_requests` runs
    (no state builds up for long), and dropped when it dies or hangs. At most :attr:`size` are kept.
    """

    size = 4
    max_requests = 64

    def __init__(self) -> None:
        self._servers: OrderedDict[str, _Server] = OrderedDict()
        self._lock = threading.Lock()
        atexit.register(self.close)

    def run(self, python: str, script: Path, request_path: Path, timeout_s: float) -> int:
        """Run one request in the process for ``python`` and ``script``: its exit code (0 or
        :data:`EXIT_FAILED`), or the process's when it died on it; a dead or hung process is not used again.
        """
        env = {name: value for name, value in os.environ.items() if name not in _VOLATILE_ENV}
        key = hashlib.sha256(json.dumps([python, str(script), sorted(env.items())]).encode()).hexdigest()
        with self._lock:
            server = self._servers.pop(key, None)
            if server is None or not server.alive() or server.served >= self.max_requests:
                if server is not None:
                    server.close()
                server = _Server(python, script, env)
            while len(self._servers) >= self.size:
                self._servers.popitem(last=False)[1].close()
            code = server.request(request_path, timeout_s)  # a hang: killed, TimeoutExpired, not kept
            if server.alive() and code in (0, EXIT_FAILED):
                self._servers[key] = server
            else:
                server.close(kill=True)
            return code

    def close(self) -> None:
        """End every kept process."""
        with self._lock:
            while self._servers:
                self._servers.popitem()[1].close()


#: the process-wide pool every :class:`Runner` uses
RUNNERS = RunnerPool()


@dataclass(frozen=True)
class Finished:
    """How a runner process ended on one request.

    ``code`` is ``0`` (the handler returned), :data:`EXIT_FAILED` (it raised: ``report`` has ``error`` and
    ``error_type``), another positive exit code (the child itself failed, e.g. the script did not load: see
    the log), or negative: killed by that signal. ``report`` is what the handler wrote (``{}`` when none).
    """

    code: int
    log: Path
    report: dict[str, Any]

    @property
    def ok(self) -> bool:
        """Whether the handler returned (exit code 0)."""
        return self.code == 0

    def log_text(self) -> str:
        """The run's log (the child's output), ``""`` when there is none."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Runner:
    """Runs requests of one runner script in child processes under ``python``, with a timeout.

    ``script`` is the backend's runner script (``run_request(request, report)``, see
    :mod:`zoocompat.api.runner_child`); ``python`` the interpreter that runs it (an SDK release's, or the
    suite's own by default); ``label`` names the runner in messages (the backend's name).
    """

    script: Path
    python: str = sys.executable
    timeout_s: float = field(default_factory=cell_timeout)
    label: str = "backend"

    def command(self, request_path: Path) -> list[str]:
        """The argument list of a fresh process for one request."""
        return [self.python, "-I", str(CHILD_SCRIPT), str(self.script), str(request_path)]

    def run(self, request: dict[str, Any], workdir: Path, subject: str) -> Finished:
        """Run ``request`` in a child process; raise ``CellError`` ``timeout`` for a hang and ``crash`` for a
        child killed by a signal; else return how it ended (:attr:`Finished.ok`, its report and log).
        ``subject`` (the model file's name) goes into the messages.
        """
        finished = self.execute(request, workdir, subject)
        self.check_signal(finished, subject)
        return finished

    def execute(self, request: dict[str, Any], workdir: Path, subject: str) -> Finished:
        """Like :meth:`run`, but a child killed by a signal is returned (negative ``code``), not raised, so the
        caller may amend the log first; then :meth:`check_signal`.
        """
        workdir.mkdir(parents=True, exist_ok=True)
        log_path, report_path = workdir / LOG_FILE, workdir / REPORT_FILE
        request = {**request, "log": str(log_path), "report": str(report_path)}
        request_path = workdir / REQUEST_FILE
        request_path.write_text(json.dumps(request, indent=1))
        report_path.unlink(missing_ok=True)
        try:
            code = self._execute(request_path, log_path)
        except subprocess.TimeoutExpired:
            raise CellError(
                "timeout",
                f"{self.label} runner did not finish within {self.timeout_s:.0f} s on {subject} "
                f"(killed); raise ZOOCOMPAT_CELL_TIMEOUT if the model is just slow; log: {log_path}",
            ) from None
        died = code < 0  # a killed child's report, if any, may be half written
        report = json.loads(report_path.read_text()) if report_path.exists() and not died else {}
        return Finished(code, log_path, report)

    def check_signal(self, finished: Finished, subject: str) -> None:
        """Raise ``CellError("crash")`` when the child was killed by a signal."""
        if finished.code < 0:
            name = signal.Signals(-finished.code).name
            raise CellError(
                "crash",
                f"{self.label} runner died with {name} on {subject} (vendor library crash); "
                f"the other cells are unaffected; log: {finished.log}",
            )

    def _execute(self, request_path: Path, log_path: Path) -> int:
        """Run the request in the worker's long-lived runner, or a fresh one; the exit code.

        A long-lived runner that dies on the request may have been damaged by an earlier run, so the
        request runs again in a fresh process and that run decides; its log says so.
        """
        if not reuse_runners():
            return self._fresh(request_path, log_path)
        shared = RUNNERS.run(self.python, self.script, request_path, self.timeout_s)
        if shared in (0, EXIT_FAILED):
            return shared
        first = log_path.read_text(errors="replace") if log_path.exists() else ""
        returncode = self._fresh(request_path, log_path)
        ended = f"died with {signal.Signals(-shared).name}" if shared < 0 else f"exited with {shared}"
        log_path.write_text(
            f"# zoocompat: the shared runner process {ended} on this run, so it ran again in a fresh "
            f"process (exit {returncode}); the first try's log, then the fresh one's\n{first}\n"
            + log_path.read_text(errors="replace")
        )
        return returncode

    def _fresh(self, request_path: Path, log_path: Path) -> int:
        """The request in a runner process of its own; :class:`subprocess.TimeoutExpired` on a hang."""
        with open(log_path, "wb") as log:
            done = subprocess.run(
                self.command(request_path), stdout=log, stderr=subprocess.STDOUT, timeout=self.timeout_s
            )
        return done.returncode
