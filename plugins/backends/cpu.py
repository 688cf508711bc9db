"""``cpu``: onnxruntime's CPU execution provider.

Runs the FP32 ONNX (``fp32``) and the QDQ model (``w8a8``, ``w8a16``, ``w4a8``) as
SNPE's CPU runtime would: quantized tensors are dequantized, so the QDQ run is
the integer reference every accelerator backend is compared to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoocompat_plugins.backends.ort_session import RunnerModel

import zoocompat
from zoocompat.api.registry import distribution_version


class CpuBackend:
    """onnxruntime CPU EP."""

    name = "cpu"
    order = 10
    reference = True  # the host runtime of the FP32 and QDQ references every other backend is measured against
    #: the host CPU EP is cheap next to the HTP emulator (a prior for scheduling; timings replace it)
    cost = {"*": 0.02}
    precisions = ("fp32", "w8a8", "w8a16", "w4a8")  # w4a8: opt-in (its Precision's default=False)

    def available(self, sdk: str | None) -> str | None:
        """The CPU EP is always there when onnxruntime is installed."""
        if distribution_version("onnxruntime") is None:
            return "onnxruntime is not installed (pip install -e .[stack])"
        return None

    def describe(self, sdk: str | None) -> dict[str, Any]:
        """Runtime version."""
        return {"runtime": "onnxruntime CPUExecutionProvider", "onnxruntime": distribution_version("onnxruntime")}

    def compile(self, onnx_path: Path, precision: str, sdk: str | None, workdir: Path) -> RunnerModel:
        """Prepare a CPU session (compiled inside the runner on ``run``)."""
        return RunnerModel(Path(onnx_path), ep="cpu", target=self.name, workdir=workdir)


@zoocompat.hookimpl
def zoocompat_backends() -> list[CpuBackend]:
    """Register the CPU backend."""
    return [CpuBackend()]
