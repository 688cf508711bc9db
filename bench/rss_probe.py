"""A pytest plugin the matrix benchmark loads (``-p rss_probe``): each process writes its peak memory at the end.

Every xdist worker (and the controller) writes ``<pid>.json`` into
``$ZOOCOMPAT_BENCH_RSS`` with its own peak resident set size and that of its
finished children (the runner processes), from ``resource.getrusage``.
"""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path


def pytest_sessionfinish(session, exitstatus) -> None:
    """Write this process's peak RSS (KiB on Linux) and its children's."""
    folder = os.environ.get("ZOOCOMPAT_BENCH_RSS")
    if not folder:
        return
    worker = getattr(session.config, "workerinput", {}).get("workerid", "controller")
    record = {
        "worker": worker,
        "pid": os.getpid(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"{os.getpid()}.json").write_text(json.dumps(record))
