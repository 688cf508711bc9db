"""A recipe trains the same bytes whatever thread and kernel settings the calling process has.

Trains the cheapest recipe (the topic encoder, one epoch) from two fresh
processes that differ the way two machines do: thread counts (``OMP_NUM_THREADS``
and ``torch.set_num_threads``) and the widest CPU kernels ATen and oneDNN may
pick. The recipe pins its own (:mod:`zoocompat_zoo.recipes.pinned`), so the
weights' sha256 must be equal.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import torch
from zoocompat_zoo.recipes.pinned import MARKER

TRAIN = """
import sys
from pathlib import Path
import torch
torch.set_num_threads(int(sys.argv[2]))
from zoocompat_zoo.recipes.text_topics import train_topic_encoder
train_topic_encoder(Path(sys.argv[1]), epochs=1)
"""


def _weights_sha256(out: Path, threads: int, isa: str, *, pinned: bool = True) -> str:
    """Train from a new process with ``threads`` threads and ``isa`` kernels set before the recipe runs."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "ATEN_CPU_CAPABILITY": isa.lower(),
        "DNNL_MAX_CPU_ISA": "AVX2" if isa == "AVX2" else "AVX512_CORE",
    }
    env.pop(MARKER, None)
    if not pinned:
        env[MARKER] = "1"  # as if already in the recipe's process: trains with the caller's settings
    command = [sys.executable, "-c", TRAIN, str(out), str(threads)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return hashlib.sha256((out / "model.pt").read_bytes()).hexdigest()


def test_the_recipe_trains_bit_identical_weights_under_other_thread_and_kernel_settings(tmp_path: Path):
    one = _weights_sha256(tmp_path / "one", threads=1, isa="AVX2")
    two = _weights_sha256(tmp_path / "two", threads=2, isa="AVX512")
    assert one == two
    if torch.backends.cpu.get_cpu_capability() == "AVX512":
        # the control: without the pinned environment, the AVX-512 kernels train other bytes on this machine
        unpinned = _weights_sha256(tmp_path / "unpinned", threads=2, isa="AVX512", pinned=False)
        assert unpinned != one
