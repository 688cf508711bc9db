"""TensorFlow then PyTorch in one worker process must not crash it (Triton is loaded first)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_tensorflow_then_torchvision_in_one_process():
    code = "import plugins, tensorflow, torchvision.ops, triton; print('both loaded')"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"rc {done.returncode}: {done.stderr[-1500:]}"
    assert "both loaded" in done.stdout


def test_the_guard_imports_nothing_until_tensorflow_is_imported():
    code = "import sys, plugins; print('triton' in sys.modules, 'tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr[-1500:]
