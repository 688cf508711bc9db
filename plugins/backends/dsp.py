"""``dsp``: the legacy Hexagon DSP contract, run on QNN HTP in strict mode.

SNPE's DSP runtime runs integer models only and has no float fallback: a
network either runs whole on the DSP or does not load. This backend holds a
model to that contract on the same QNN HTP library as ``htp``: 8-bit QDQ
models only (``w8a8``; no float precision is declared, so the matrix makes no
float ``dsp`` cells), and the session is created with
``session.disable_cpu_ep_fallback=1``, so a graph with a node the HTP rejects
fails the cell as ``unsupported_op`` with the vendor's reason instead of
running partly on the CPU. In this mode the QNN EP also takes the graph-input
quantize and graph-output dequantize nodes that ``htp`` leaves to the CPU, so
a passing ``dsp`` cell has every node of the QDQ graph on the accelerator.

With ``--sdk snpe-<version>`` the same contract runs on SNPE's DSP runtime
(``snpe-net-run --use_dsp``, no CPU fallback; :mod:`zoocompat_plugins.backends.snpe`),
and with ``--device adb:SERIAL`` on a phone, like ``htp``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoocompat_plugins.backends.htp import STRICT_NPU, HtpBackend
from zoocompat_plugins.backends.ort_session import RunnerModel
from zoocompat_plugins.backends.snpe import is_snpe

import zoocompat
from zoocompat.api.errors import CellError


class DspBackend(HtpBackend):
    """QNN HTP under the DSP contract: integer only, whole graph on the accelerator or fail."""

    name = "dsp"
    order = 30
    cost = {"*": 1.0}  # the HTP emulator at w8a8
    precisions = ("w8a8",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.strict_npu = True  # the contract: never any CPU fallback

    def configure(self, strict_npu: bool = False, device: str | None = None) -> None:
        """Like ``htp``, but always strict."""
        super().configure(True, device)

    def describe(self, sdk: str | None) -> dict[str, Any]:
        """The HTP description plus the contract this backend enforces."""
        info = super().describe(sdk)
        if not is_snpe(sdk):
            info["runtime"] = "QNN HTP as the Hexagon DSP contract (integer only, no CPU fallback)"
        info["strict"] = True
        return info

    def compile(self, onnx_path: Path, precision: str, sdk: str | None, workdir: Path) -> RunnerModel:
        """Prepare a strict QNN HTP session for an 8-bit QDQ model."""
        if precision not in self.precisions:
            raise CellError(
                "unsupported_op",
                f"dsp runs integer models only ({', '.join(self.precisions)}), not {precision}: "
                f"the Hexagon DSP contract has no float path",
            )
        if is_snpe(sdk) or self.device:
            return super().compile(onnx_path, precision, sdk, workdir)  # SNPE / device flows, strict
        return self.runner(onnx_path, precision, sdk, workdir, session_config=dict(STRICT_NPU))


@zoocompat.hookimpl
def zoocompat_backends() -> list[DspBackend]:
    """Register the DSP backend."""
    return [DspBackend()]
