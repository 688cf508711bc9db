"""Fault injection on the whole matrix: a worker killed mid-cell, a resumed run, a corrupted cache entry.

Each test runs the real conformance matrix in a subprocess on a scratch zoo
(the least-squares digits model of ``tests/corpus``) and asserts that the run
completes, the damaged cell is recorded, and every other cell's record is intact.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.corpus.digits_linear import build_onnx, card, fit_weights

pytestmark = pytest.mark.fault
ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def scratch_zoo(tmp_path_factory) -> Path:
    """Two healthy digits models and one whose architecture kills its worker."""
    root = tmp_path_factory.mktemp("faults")
    zoo = root / "zoo"
    zoo.mkdir()
    weights, bias = fit_weights()
    for name in ("digits_a", "digits_b"):
        build_onnx(zoo / f"{name}.onnx", weights, bias)
        (zoo / f"{name}.yaml").write_text(yaml.safe_dump(card(name, f"{name}.onnx")))
    killer = card("worker_killer", "killer.pt")
    killer.update(frontend="pytorch", architecture="tests.corpus.worker_killer:WorkerKiller")
    (zoo / "killer.pt").write_bytes(b"never read: the architecture dies first")
    (zoo / "worker_killer.yaml").write_text(yaml.safe_dump(killer))
    return root


def _matrix(
    root: Path, report: Path, *extra: str, workers: str = "2", cache: str = "cache"
) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "conformance/", "-n", workers]
    command += ["--zoo", str(root / "zoo"), "--zoo-report", str(report), "--backends", "cpu"]
    command += ["--zoo-models", "digits_a,digits_b,worker_killer", "--precisions", "fp32,w8a8", *extra]
    env = dict(os.environ, ZOOCOMPAT_CACHE=str(root / cache))
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, env=env)


def _cells(report: Path) -> dict[str, dict]:
    return {cell["id"]: cell for cell in json.loads((report / "results.json").read_text())["cells"]}


def test_killed_worker_loses_only_its_cell_and_resume_runs_only_missing_cells(scratch_zoo):
    report = scratch_zoo / "report"
    done = _matrix(scratch_zoo, report, "--max-worker-restart", "4")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    cells = _cells(report)
    assert len(cells) == 6, sorted(cells)
    for precision in ("fp32", "w8a8"):
        killed = cells[f"worker_killer-pytorch-cpu-{precision}-{'none' if precision == 'fp32' else 'ptq'}"]
        assert (killed["status"], killed["category"]) == ("error", "crash")
        assert "died while running this cell" in killed["reason"]
    healthy = [c for c in cells.values() if c["model"] != "worker_killer"]
    assert [c["status"] for c in healthy] == ["pass"] * 4
    assert "crashed" in done.stdout

    # Lose one record on purpose, then resume: only that cell runs, every record ends up in results.json.
    lost = report / "cells" / "digits_b-onnx-cpu-w8a8-ptq.json"
    lost.unlink()
    again = _matrix(scratch_zoo, report, "--resume")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    assert "1 passed" in again.stdout, again.stdout[-1500:]  # the other five were deselected
    assert lost.exists()
    assert _cells(report) == {**cells, "digits_b-onnx-cpu-w8a8-ptq": _cells(report)["digits_b-onnx-cpu-w8a8-ptq"]}


def test_corrupted_cache_entry_is_rebuilt_not_used(scratch_zoo):
    report = scratch_zoo / "report-cache"
    first = _matrix(scratch_zoo, report, "--zoo-models", "digits_a", workers="0", cache="cache-corrupt")
    assert first.returncode == 0, first.stdout[-3000:]
    before = _cells(report)
    converted = sorted((scratch_zoo / "cache-corrupt" / "convert").glob("*/model.onnx"))
    assert converted
    for path in converted:
        path.write_bytes(path.read_bytes()[:100])  # truncated behind the cache's back
    second = _matrix(scratch_zoo, report, "--zoo-models", "digits_a", workers="0", cache="cache-corrupt")
    assert second.returncode == 0, second.stdout[-3000:]
    after = _cells(report)
    assert {k: v["status"] for k, v in after.items()} == {k: v["status"] for k, v in before.items()}
    assert (
        after["digits_a-onnx-cpu-w8a8-ptq"]["metric"]["value"]
        == before["digits_a-onnx-cpu-w8a8-ptq"]["metric"]["value"]
    )
    assert all(path.stat().st_size > 100 for path in converted)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 96 KiB tmpfs: the artifact cache on it fills up mid-run (needs root; skipped otherwise)."""
    mount = tmp_path / "tiny-disk"
    mount.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode(errors='replace').strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_full_disk_fails_cells_with_the_reason_and_keeps_every_record(scratch_zoo, tiny_disk):
    report = scratch_zoo / "report-full-disk"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "conformance/", "-n", "0"]
    command += ["--zoo", str(scratch_zoo / "zoo"), "--zoo-report", str(report), "--backends", "cpu"]
    command += ["--zoo-models", "digits_a,digits_b", "--precisions", "fp32,w8a8"]
    env = dict(os.environ, ZOOCOMPAT_CACHE=str(tiny_disk / "cache"))
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    cells = _cells(report)
    assert len(cells) == 4  # every cell recorded, none lost
    failed = [c for c in cells.values() if c["status"] != "pass"]
    assert failed
    for cell in failed:
        assert cell["reason"].startswith("the disk is full: No space left on device"), cell["reason"]
        assert "--resume" in cell["reason"]
