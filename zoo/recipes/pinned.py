"""Recipes train in a fresh process with a pinned numeric environment, so the same seed trains the same bytes on
any x86-64 machine.

Seeds, deterministic algorithms and a fixed thread count make a run repeatable on one machine, but not across
machines: ATen, oneDNN (torch's and TensorFlow's convolutions) and MKL pick their kernels by the CPU's widest
instruction set, and an AVX-512 kernel sums in another order than an AVX2 one (measured here: the topic
encoder's weights differ after one epoch between ``ATEN_CPU_CAPABILITY=avx512`` and ``avx2``, the keypoint
network's between ``DNNL_MAX_CPU_ISA=AVX512_CORE`` and ``AVX2``). Those libraries read their choice from the
environment when they load, so :func:`pinned` runs the recipe in a new python whose environment fixes it to
AVX2 (what every x86-64 server and desktop of the last decade runs) and fixes the thread counts, whatever the
calling process had set.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Set in the recipe's own process: the environment is already pinned, train here.
MARKER = "ZOOCOMPAT_RECIPE_PINNED"

#: The kernels every recipe trains with (read by each library when it loads) and no GPU.
PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "CUDA_VISIBLE_DEVICES": "",
    "PYTHONHASHSEED": "0",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}

_CHILD = """
import importlib, json, sys
from pathlib import Path
module, name, out_dir, params = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
getattr(importlib.import_module(module), name)(Path(out_dir), **params)
"""


def environment(threads: int) -> dict[str, str]:
    """The environment of a recipe process: this one's, with :data:`PINNED_ENV` and ``threads`` threads."""
    count = str(threads)
    return {
        **os.environ,
        **PINNED_ENV,
        "OMP_NUM_THREADS": count,
        "MKL_NUM_THREADS": count,
        "OPENBLAS_NUM_THREADS": count,
        MARKER: "1",
    }


def pinned(threads: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Make a recipe ``f(out_dir, **params)`` train in a fresh process with :func:`environment` (``threads``).

    In that process (``MARKER`` set) the recipe runs as written; it still fixes its own seeds, deterministic
    algorithms and thread count. A failed training raises with the end of its output.
    """

    def wrap(recipe: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(recipe)
        def run(out_dir: Path, **params: Any) -> None:
            if os.environ.get(MARKER) == "1":
                recipe(out_dir, **params)
                return
            command = [sys.executable, "-c", _CHILD, recipe.__module__, recipe.__name__, str(out_dir)]
            done = subprocess.run(
                [*command, json.dumps(params)], env=environment(threads), capture_output=True, text=True
            )
            if done.returncode != 0:
                tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
                name = f"{recipe.__module__}:{recipe.__name__}"
                raise RuntimeError(f"recipe {name} failed (exit {done.returncode}):\n{tail}")

        return run

    return wrap
