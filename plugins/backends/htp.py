"""``htp``: Qualcomm's QNN HTP (Hexagon NPU) through onnxruntime-qnn.

On x86-64 the same QNN HTP library runs as Qualcomm's HTP emulator; on a
Snapdragon device the same code path runs on the NPU. Float models run with
``enable_htp_fp16_precision`` (a device never runs fp32 on HTP); quantized
models are the QDQ ONNX every backend shares. Nodes the HTP rejects fall back
to the CPU EP, and the placement record says which and why.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from pathlib import Path
from typing import Any

import zoocompat
from plugins.backends.ort_session import RunnerModel
from zoocompat.plugins import distribution_version

DEFAULT_HTP_ARCH = "75"
DEFAULT_SOC_MODEL = "57"
_CORE_VERSION = re.compile(rb"AISW_VERSION: (\d+\.\d+\.\d+)")


def qnn_package_dir() -> Path | None:
    """Folder of the installed ``onnxruntime_qnn`` package, found without importing it."""
    spec = importlib.util.find_spec("onnxruntime_qnn")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def qnn_core_version(library: Path) -> str | None:
    """The QNN core version compiled into ``libQnnHtp.so`` (e.g. ``2.51.0``)."""
    match = _CORE_VERSION.search(library.read_bytes())
    return match.group(1).decode() if match else None


def sdk_id(core_version: str | None) -> str | None:
    """``qnn-<major.minor>`` for a core version."""
    return "qnn-" + ".".join(core_version.split(".")[:2]) if core_version else None


class HtpBackend:
    """QNN HTP via onnxruntime-qnn."""

    name = "htp"
    precisions = ("fp16", "w8a8", "w8a16")

    def __init__(self, htp_arch: str = DEFAULT_HTP_ARCH, soc_model: str = DEFAULT_SOC_MODEL) -> None:
        self.htp_arch = htp_arch
        self.soc_model = soc_model

    def _library(self) -> Path | None:
        folder = qnn_package_dir()
        library = folder / "libQnnHtp.so" if folder else None
        return library if library and library.is_file() else None

    def available(self, sdk: str | None) -> str | None:
        """Needs onnxruntime-qnn with its libQnnHtp.so, and the requested SDK release."""
        library = self._library()
        if library is None:
            return "onnxruntime-qnn (Qualcomm's QNN HTP library) is not installed: pip install -e .[stack]"
        installed = sdk_id(qnn_core_version(library))
        if sdk and sdk != installed:
            return f"SDK {sdk} is not installed here (this environment has {installed})"
        return None

    def describe(self, sdk: str | None) -> dict[str, Any]:
        """onnxruntime-qnn version, QNN core version read from the library, arch."""
        library = self._library()
        core = qnn_core_version(library) if library else None
        return {
            "runtime": "QNN HTP (onnxruntime-qnn; x86-64 HTP emulator off-device)",
            "onnxruntime_qnn": distribution_version("onnxruntime-qnn"),
            "qnn_core_version": core,
            "sdk": sdk_id(core),
            "htp_arch": self.htp_arch,
            "soc_model": self.soc_model,
        }

    def compile(self, onnx_path: Path, precision: str, sdk: str | None, workdir: Path) -> RunnerModel:
        """Prepare a QNN HTP session (compiled inside the runner on ``run``)."""
        options = {"htp_arch": self.htp_arch, "soc_model": self.soc_model}
        if precision == "fp16":
            options["enable_htp_fp16_precision"] = "1"
        return RunnerModel(Path(onnx_path), ep="qnn", target=self.name, workdir=workdir, provider_options=options)


@zoocompat.hookimpl
def zoocompat_backends() -> list[HtpBackend]:
    """Register the HTP backend."""
    return [HtpBackend()]
