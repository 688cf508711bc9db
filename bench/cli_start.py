"""Start-up cost of the ``zoocompat`` CLI, which must not import an ML framework.

Prints one JSON object: median wall seconds of ``zoocompat --help`` and
``zoocompat plugins`` over N runs, and the ratio of ``plugins`` to a bare
``python -c pass`` (the interpreter's own start-up), measured side by side.

Usage: python bench/cli_start.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time


def _median_seconds(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Measure and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "zoocompat.cli"]
    bare = _median_seconds([sys.executable, "-c", "pass"], args.runs)
    help_s = _median_seconds([*cli, "--help"], args.runs)
    plugins_s = _median_seconds([*cli, "plugins"], args.runs)
    print(
        json.dumps(
            {
                "runs": args.runs,
                "python_bare_s": round(bare, 4),
                "cli_help_s": round(help_s, 4),
                "cli_plugins_s": round(plugins_s, 4),
                "plugins_vs_bare_ratio": round(plugins_s / bare, 2),
                "machine": {"platform": platform.platform(), "cpus": __import__("os").cpu_count()},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
