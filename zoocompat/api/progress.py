"""Progress lines for long steps: training recipes, SDK installs, first-time downloads.

A long step is wrapped in :func:`step`; it prints one line when it starts, a
heartbeat line every :data:`HEARTBEAT_S` seconds while it runs, and one line
when it ends::

    with progress.step("training recipe zoocompat_zoo.recipes.keras_digits:train_cnn"):
        train()

    zoocompat: training recipe ...: started
    zoocompat: training recipe ...: still running (30 s)
    zoocompat: training recipe ...: done in 41 s

A step that reports its own position calls :meth:`Step.update` (for example
``step.update("epoch 3/10, loss 0.12")``); the next heartbeat shows it.

Lines go to the *sink*, standard error by default. The pytest plugin sets a
sink that writes past pytest's output capture, so the lines show under
``pytest -n auto`` too (an xdist worker's standard error is the controller's
terminal). ``ZOOCOMPAT_PROGRESS=0`` silences them.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["HEARTBEAT_S", "Step", "set_sink", "step"]

#: Seconds between heartbeat lines of a running step (``ZOOCOMPAT_PROGRESS_EVERY`` overrides).
HEARTBEAT_S = 30.0

Sink = Callable[[str], None]


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


_sink: Sink = _stderr


def set_sink(sink: Sink | None) -> None:
    """Send progress lines to ``sink`` (a function taking one line); ``None`` restores standard error."""
    global _sink
    _sink = sink or _stderr


def _emit(line: str) -> None:
    if os.environ.get("ZOOCOMPAT_PROGRESS", "1") == "0":
        return
    try:
        _sink(f"zoocompat: {line}")
    except Exception:  # noqa: BLE001 - progress must never fail the step it reports on
        pass


class Step:
    """One running long step: its name, start time and latest position."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.started = time.monotonic()
        self.detail = ""
        self._done = threading.Event()

    def elapsed(self) -> float:
        """Seconds since the step started."""
        return time.monotonic() - self.started

    def update(self, detail: str) -> None:
        """Record where the step is (shown by the next heartbeat line)."""
        self.detail = detail

    def _heartbeat(self, every: float) -> None:
        while not self._done.wait(every):
            where = f", {self.detail}" if self.detail else ""
            _emit(f"{self.what}: still running ({self.elapsed():.0f} s{where})")


@contextmanager
def step(what: str) -> Iterator[Step]:
    """Report a long step: a start line, heartbeats while it runs, and how it ended."""
    every = float(os.environ.get("ZOOCOMPAT_PROGRESS_EVERY", HEARTBEAT_S))
    current = Step(what)
    _emit(f"{what}: started")
    beat = threading.Thread(target=current._heartbeat, args=(every,), daemon=True, name="zoocompat-progress")
    beat.start()
    try:
        yield current
    except BaseException as error:
        current._done.set()
        _emit(f"{what}: failed after {current.elapsed():.0f} s ({type(error).__name__})")
        raise
    else:
        current._done.set()
        _emit(f"{what}: done in {current.elapsed():.0f} s")
    finally:
        beat.join(timeout=1.0)
