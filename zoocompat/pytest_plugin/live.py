"""What a matrix run shows while it runs: one verdict line per finished cell, and long steps' progress.

Without ``-v`` pytest prints a dot per test; a matrix cell takes seconds to
minutes, so the controller also prints a line per finished cell::

    zoocompat [  7 done,  3:41] mtcnn_onet-onnx-htp-w8a8-ptq  ✅ 0.969 (Δ +0.0 pt) pass · NPU 100% (28 s)

The worker that ran the cell puts that line on the test report's
``user_properties`` (xdist sends those to the controller); the controller
prints it as the report arrives.

Progress lines of long steps (:mod:`zoocompat.api.progress`: training
recipes, SDK installs, downloads) are written to the standard error that the
process had before pytest's output capture started, so they show while a
test runs, on a worker too (an xdist worker's standard error is the
controller's terminal).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import pytest

from zoocompat.api import progress
from zoocompat.report.results import CellRecord
from zoocompat.report.table import cell_text

PROPERTY = "zoocompat_verdict"

# The real standard error, saved when this module is imported: as a pytest11 plugin that is before
# pytest's capture replaces fd 2 (under the conftest fallback it may be too late: then None).
_REAL_STDERR: int | None = os.dup(2) if sys.stderr is sys.__stderr__ else None

_last: dict[str, CellRecord] = {}


def remember(record: CellRecord) -> None:
    """Keep the record of the cell this worker just ran, for its report's verdict line."""
    _last[record.id] = record


def _write_stderr(line: str) -> None:
    if _REAL_STDERR is not None:
        os.write(_REAL_STDERR, (line + "\n").encode("utf-8", "replace"))


class LiveReport:
    """The pytest hooks of the live view (registered by the zoocompat plugin at configure time)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.done = 0
        self.started = time.monotonic()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo) -> Any:
        """On the process that ran the cell: attach its verdict line to the call report."""
        report = yield
        callspec = getattr(item, "callspec", None)
        cell = callspec.params.get("zoo_cell") if callspec else None
        record = _last.pop(getattr(cell, "id", None), None) if report.when == "call" else None
        if record is not None:
            report.user_properties.append((PROPERTY, f"{record.id}  {cell_text(record)} ({report.duration:.0f} s)"))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """On the controller: print the verdict line of a finished cell."""
        if hasattr(self.config, "workerinput"):
            return
        line = dict(report.user_properties).get(PROPERTY) if report.when == "call" else None
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if line is None or terminal is None:
            return
        self.done += 1
        minutes, seconds = divmod(int(time.monotonic() - self.started), 60)
        if getattr(getattr(terminal, "_tw", None), "width_of_current_line", 0):
            terminal.write("\n")  # after pytest's progress dots
        terminal.write_line(f"zoocompat [{self.done:3d} done, {minutes:2d}:{seconds:02d}] {line}")


def configure(config: pytest.Config) -> None:
    """Register the live view and send progress lines past the output capture."""
    if config.pluginmanager.get_plugin("zoocompat-live") is None:
        config.pluginmanager.register(LiveReport(config), "zoocompat-live")
    if _REAL_STDERR is not None:
        progress.set_sink(_write_stderr)
