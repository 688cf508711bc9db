"""Progress lines of long steps, and the per-cell verdict lines of a matrix run."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from zoocompat.api import progress

ROOT = Path(__file__).parent.parent


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Collect progress lines instead of printing them."""
    seen: list[str] = []
    progress.set_sink(seen.append)
    monkeypatch.setenv("ZOOCOMPAT_PROGRESS_EVERY", "0.05")
    yield seen
    progress.set_sink(None)


def test_a_long_step_says_start_heartbeats_and_end(lines: list[str]) -> None:
    with progress.step("training recipe demo") as current:
        current.update("epoch 2/3")
        time.sleep(0.3)
    assert lines[0] == "zoocompat: training recipe demo: started"
    beats = [line for line in lines if "still running" in line]
    assert beats and all("epoch 2/3" in line for line in beats)
    assert lines[-1].startswith("zoocompat: training recipe demo: done in ")


def test_a_failing_step_says_it_failed_and_raises(lines: list[str]) -> None:
    with pytest.raises(RuntimeError), progress.step("sdk install demo"):
        raise RuntimeError("pip failed")
    assert lines[-1].startswith("zoocompat: sdk install demo: failed after") and "RuntimeError" in lines[-1]


def test_progress_can_be_silenced(lines: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOOCOMPAT_PROGRESS", "0")
    with progress.step("quiet"):
        pass
    assert lines == []


def test_matrix_prints_a_verdict_line_per_cell_without_verbose(tmp_path: Path) -> None:
    """Under xdist, each finished cell's verdict reaches the controller's terminal, without -v."""
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "2", "conformance/",
        "--zoo-models", "mtcnn_onet", "--backends", "cpu", "--precisions", "fp32,w8a8",
        "--zoo-report", str(tmp_path / "report"),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    verdicts = [line for line in done.stdout.splitlines() if line.startswith("zoocompat [")]
    assert len(verdicts) == 2, done.stdout[-3000:]
    assert any("mtcnn_onet-pytorch-cpu-fp32-none" in line and "✅" in line for line in verdicts)
    assert any("mtcnn_onet-pytorch-cpu-w8a8-ptq" in line for line in verdicts)
