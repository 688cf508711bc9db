"""Keep torch's Triton loaded before TensorFlow in any process that may load both.

Measured with the pinned stack (tensorflow 2.21, torch 2.14 with triton): importing
``triton`` after ``tensorflow`` segfaults inside Triton's C extension, which takes
down an xdist worker that ran a TensorFlow cell and then a PyTorch one
(``torchvision.ops`` imports Triton). Importing Triton first is fine. This finder
sees the first ``import tensorflow`` anywhere (frontend, recipe, tf2onnx) and loads
Triton just before it; nothing is imported until then.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib.abc import MetaPathFinder


class _TritonBeforeTensorflow(MetaPathFinder):
    """On the first ``import tensorflow``, import ``triton`` first (when it is installed)."""

    done = False

    def find_spec(self, name, path=None, target=None):  # noqa: D102 - MetaPathFinder protocol
        if name != "tensorflow" or self.done:
            return None
        self.done = True  # stays in sys.meta_path: removing it mid-lookup would skip the next finder
        if "triton" not in sys.modules and importlib.util.find_spec("triton") is not None:
            import triton  # noqa: F401
        return None  # let the normal finders import tensorflow


def install() -> None:
    """Install the finder once per process, unless tensorflow is already imported."""
    if "tensorflow" in sys.modules or any(isinstance(f, _TritonBeforeTensorflow) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TritonBeforeTensorflow())
