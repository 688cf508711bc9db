"""The child side of a runner process: a generic serve loop around a backend's runner script.

This file is run as a script, never imported by the child: the child runs
under another Python (an SDK release's own environment, see
:mod:`zoocompat.sdk.releases`) in isolated mode (``-I``), where zoocompat is
not installed and neither this file's folder nor the handler's is on
``sys.path``. So it uses the standard library only, and it loads the
backend's *runner script* (the handler) by its path.

The handler is a Python file that defines one function::

    def run_request(request: dict, report: dict) -> None:
        ...

``request`` is the JSON object the parent wrote (the backend's own keys plus
``log`` and ``report``, the files this run's output and report go to).
``run_request`` fills ``report`` as it goes (stages, versions, timings) and
writes any bulky results to files the request names. Returning is success
(exit code ``0``); an exception is a failure it met: its type and message are
added to the report (``error``, ``error_type``) and the exit code is
:data:`EXIT_FAILED`. Either way the report is written as JSON to
``request["report"]``. A crash of a native library kills the process; the
parent records that (:mod:`zoocompat.api.runner`).

Usage (the parent builds these argument lists)::

    python -I runner_child.py HANDLER.py REQUEST.json   # one request, exit with its code
    python -I runner_child.py --serve HANDLER.py        # one request file's path per stdin line

With ``--serve`` the process stays up and runs one request after another: it
sends each request's output (Python's and the native libraries', file
descriptors 1 and 2) to the request's ``log`` file, and answers each request
with its exit code on a line of its own on stdout; it ends when stdin closes.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

#: the exit code (and ``--serve`` answer) of a request whose handler raised: the failure is in its report
EXIT_FAILED = 3
#: the function every runner script defines
HANDLER_FUNCTION = "run_request"


def load_handler(path: str) -> ModuleType:
    """Import the runner script at ``path`` as a module (it is not on ``sys.path`` under ``-I``)."""
    spec = importlib.util.spec_from_file_location("zoocompat_runner_handler", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"runner_child: {path} is not a Python file a runner can load")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, HANDLER_FUNCTION, None)):
        raise SystemExit(f"runner_child: {path} defines no {HANDLER_FUNCTION}(request, report) function")
    return module


def run_one(handler: ModuleType, request: dict[str, Any]) -> int:
    """Run ``request`` with ``handler``, write its report; ``0`` or :data:`EXIT_FAILED`."""
    report: dict[str, Any] = {}
    try:
        getattr(handler, HANDLER_FUNCTION)(request, report)
        code = 0
    except Exception as error:  # reported to the parent, which fails the cell with it
        report["error"] = f"{type(error).__name__}: {error}"
        report["error_type"] = type(error).__name__
        code = EXIT_FAILED
    Path(request["report"]).write_text(json.dumps(report, default=str))
    return code


def _flush_all() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    ctypes.CDLL(None).fflush(None)  # the C streams too: native libraries write through them


@contextlib.contextmanager
def output_to(path: str) -> Iterator[None]:
    """Send file descriptors 1 and 2 (Python's and the native libraries' output) to ``path`` for a while."""
    _flush_all()
    saved = os.dup(1), os.dup(2)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    try:
        yield
    finally:
        _flush_all()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def serve(handler: ModuleType) -> int:
    """Answer requests (a request file's path per line on stdin) with their exit codes until stdin closes."""
    control = os.fdopen(os.dup(1), "w", buffering=1)
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)  # nothing but answers may reach the parent's pipe
    os.close(quiet)
    for line in sys.stdin:
        path = line.strip()
        if not path:
            continue
        request = json.loads(Path(path).read_text())
        with output_to(request["log"]):
            code = run_one(handler, request)
        control.write(f"{code}\n")
    return 0


def main(argv: list[str]) -> int:
    """``HANDLER.py REQUEST.json``: run it and exit with its code; ``--serve HANDLER.py``: run requests from stdin."""
    if len(argv) == 3 and argv[1] == "--serve":
        return serve(load_handler(argv[2]))
    if len(argv) == 3:
        return run_one(load_handler(argv[1]), json.loads(Path(argv[2]).read_text()))
    print(f"usage: {argv[0]} HANDLER.py REQUEST.json | {argv[0]} --serve HANDLER.py", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
