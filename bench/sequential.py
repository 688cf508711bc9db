"""Benchmark of sequential evaluation: the default matrix before and after, cold, side by side in one run.

Prints one JSON object. "Before" is the code and the zoo at ``--baseline`` (by
default the commit before sequential evaluation landed): a git worktree run
with this checkout's environment (its packages come first on ``PYTHONPATH``,
so the baseline's own ``zoocompat``, plugins and cards run). "After" is this
checkout. Each run is a real ``pytest -n 2 conformance/`` (what ``./run.sh
matrix`` runs) on its own empty ``ZOOCOMPAT_CACHE``, seeded only with the
matrix's inputs (pinned model files and trained recipe weights, as
``bench/matrix.py`` does), one after the other after a warm-up import.

For each run:

- ``wall_s``: the cold wall time; ``ratio_wall`` = after / before;
- ``cells``, ``statuses``;
- ``verdict_cells``: cells with an accuracy verdict (a measured metric and a
  status of pass, fail, inconclusive, xfail or xpass);
- ``inconclusive`` and ``inconclusive_share`` (of the verdict cells), and
  after, ``inconclusive_by_stop``: why the open ones stopped (``pool``
  exhausted, ``max_evaluation``, ``budget``);
- ``evaluation_samples``: the evaluation samples the verdict cells rest on,
  summed (the samples each backend ran), and ``looks``: cells by number of looks.

Usage: python bench/sequential.py [--baseline REF] [--models a,b] [--backends ...] [--precisions ...]
[--skip-before] [--keep DIR]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(BENCH))

from matrix import _seed_cache  # noqa: E402  (bench/ is not a package)

VERDICTS = ("pass", "fail", "inconclusive", "xfail", "xpass")
#: this checkout's import names and the folders they map to (pyproject's package-dir)
PACKAGES = {"zoocompat": "zoocompat", "zoocompat_plugins": "plugins", "zoocompat_zoo": "zoo"}


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def default_baseline() -> str:
    """The commit before sequential evaluation (the first commit that added zoocompat/verdict/sequential.py)."""
    added = _git("log", "--diff-filter=A", "--format=%H", "--", "zoocompat/verdict/sequential.py").split()
    return f"{added[-1]}^" if added else "HEAD"


def _baseline_tree(ref: str, work: Path) -> tuple[Path, Path]:
    """A worktree of ``ref`` and a folder of links that makes its packages importable first."""
    tree, links = work / "baseline", work / "baseline-path"
    _git("worktree", "add", "--detach", "-f", str(tree), ref)
    links.mkdir()
    for name, folder in PACKAGES.items():
        (links / name).symlink_to(tree / folder)
    return tree, links


def run(cwd: Path, cache: Path, report: Path, selection: list[str], pythonpath: list[Path]) -> dict[str, Any]:
    """One cold ``pytest -n 2 conformance/`` in ``cwd``; wall seconds, exit code, and the results."""
    cache.mkdir(parents=True)
    _seed_cache(cache)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "2", "conformance/"]
    command += ["--zoo-report", str(report), *selection]
    extra = [str(p) for p in pythonpath] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    env = dict(os.environ, ZOOCOMPAT_CACHE=str(cache), PYTHONPATH=os.pathsep.join(extra))
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    path = report / "results.json"
    results = json.loads(path.read_text()) if path.exists() else {"cells": []}
    return {
        "wall_s": round(wall, 1),
        "exit": done.returncode,
        "tail": (done.stdout + done.stderr)[-800:],
        **summary(results),
    }


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """Statuses, verdict cells, the inconclusive share, evaluation samples and looks of one run's results."""
    cells = results.get("cells", [])
    judged = [c for c in cells if c["status"] in VERDICTS and (c.get("metric") or {}).get("value") is not None]
    open_cells = [c for c in judged if c["status"] == "inconclusive"]
    stops = collections.Counter((c["metric"].get("stopped") or "fixed size") for c in open_cells)
    looks = collections.Counter(len(c["metric"].get("looks") or [None]) for c in judged)
    return {
        "cells": len(cells),
        "statuses": dict(collections.Counter(c["status"] for c in cells)),
        "verdict_cells": len(judged),
        "inconclusive": len(open_cells),
        "inconclusive_share": round(len(open_cells) / len(judged), 4) if judged else None,
        "inconclusive_by_stop": dict(stops),
        "inconclusive_cells": sorted(c["id"] for c in open_cells),
        "evaluation_samples": sum(c["metric"]["samples"] or 0 for c in judged),
        "looks": {str(k): v for k, v in sorted(looks.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=None, help="git ref of 'before' (default: before sequential evaluation)")
    parser.add_argument("--models", default=None, help="comma-separated models (default: the whole default zoo)")
    parser.add_argument("--backends", default=None)
    parser.add_argument("--precisions", default=None)
    parser.add_argument("--skip-before", action="store_true", help="run only this checkout")
    parser.add_argument("--keep", default=None, help="keep caches and reports under this folder")
    args = parser.parse_args()
    selection = []
    for option, value in (
        ("--zoo-models", args.models),
        ("--backends", args.backends),
        ("--precisions", args.precisions),
    ):
        if value:
            selection += [option, value]
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="zoocompat-bench-seq-"))
    work.mkdir(parents=True, exist_ok=True)
    baseline = args.baseline or default_baseline()
    out: dict[str, Any] = {
        "baseline": _git("rev-parse", "--short", baseline),
        "head": _git("rev-parse", "--short", "HEAD"),
    }
    out["selection"] = " ".join(selection) or "the default matrix"
    subprocess.run([sys.executable, "-c", "import torch, onnxruntime, tensorflow"], capture_output=True, check=False)
    tree = None
    try:
        if not args.skip_before:
            tree, links = _baseline_tree(baseline, work)
            out["before"] = run(tree, work / "cache-before", work / "report-before", selection, [links])
        out["after"] = run(ROOT, work / "cache-after", work / "report-after", selection, [])
        if "before" in out:
            before, after = out["before"], out["after"]
            out["ratio_wall"] = round(after["wall_s"] / before["wall_s"], 3)
            out["ratio_evaluation_samples"] = round(after["evaluation_samples"] / before["evaluation_samples"], 3)
    finally:
        if tree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
