"""``htp``: Qualcomm's QNN HTP (Hexagon NPU) through onnxruntime-qnn.

On x86-64 the same QNN HTP library runs as Qualcomm's HTP emulator; on a
Snapdragon device the same code path runs on the NPU. Float models run with
``enable_htp_fp16_precision`` (a device never runs fp32 on HTP); quantized
models are the QDQ ONNX every backend shares. Nodes the HTP rejects fall back
to the CPU EP, and the placement record says which and why.

The SDK release is a cell axis: without ``--sdk`` the runner uses the suite's
own onnxruntime-qnn; with ``--sdk qnn-2.47`` it runs under that release's
isolated environment (``zoocompat sdk install qnn-2.47``), so that release's
``libQnnHtp.so`` is the one loaded, and the runner checks the core version it
loaded against the one the record names.

Compiled graphs are kept: the first run of a graph writes its QNN context
binary into the artifact cache (``$ZOOCOMPAT_CACHE/htp_context``), keyed by
the model's bytes and everything that shapes the binary (precision, SDK id and
QNN core version, onnxruntime versions, ``htp_arch``, ``soc_model``, the fp16
flag); later runs load it instead of compiling (see
:class:`zoocompat_plugins.backends.ort_session.ContextCache`).
``ZOOCOMPAT_HTP_CONTEXT_CACHE=0`` compiles every time.

Strict mode (``--strict-npu``, :meth:`HtpBackend.configure`) creates the session
with ``session.disable_cpu_ep_fallback=1``, as ``dsp`` always does: a graph the
HTP cannot take whole fails as ``unsupported_op`` with the vendor's reason,
so a passing cell is "fully on the NPU". Other SDKs: a local QNN SDK
(``$QNN_SDK_ROOT``, see :mod:`zoocompat.sdk.releases`) serves its ``libQnnHtp.so`` as
``backend_path``; ``--sdk snpe-<version>`` runs SNPE's tools instead
(:mod:`zoocompat_plugins.backends.snpe`); ``--device adb:SERIAL`` runs the compiled
context on a phone (:mod:`zoocompat_plugins.backends.qnn_device`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zoocompat_plugins.backends.ort_session import ContextCache, RunnerModel

import zoocompat
from zoocompat.api.cache import default_root
from zoocompat.sdk import releases as sdks
from zoocompat.sdk.releases import SdkEnv, SdkError, qnn_core_version, sdk_id

__all__ = ["HtpBackend", "qnn_core_version", "qnn_package_dir", "sdk_id"]

DEFAULT_HTP_ARCH = "75"
DEFAULT_SOC_MODEL = "57"
#: onnxruntime session option that turns any CPU fallback into a session error (``--strict-npu``; ``dsp`` always).
STRICT_NPU = {"session.disable_cpu_ep_fallback": "1"}


def qnn_package_dir() -> Path | None:
    """Folder of the suite's own ``onnxruntime_qnn`` package, found without importing it."""
    own = sdks.current_env()
    return Path(own.qnn_lib_dir) if own else None


class HtpBackend:
    """QNN HTP via onnxruntime-qnn, in the suite's environment or an installed SDK release's."""

    name = "htp"
    order = 40
    #: the HTP emulator: fp16 and 16-bit activations cost more per sample than w8a8 (measured 5x and 2x)
    cost = {"*": 1.0, "fp16": 5.0, "w8a16": 2.0}
    precisions = ("fp16", "w8a8", "w8a16")
    #: cells of this backend run inside an SDK release: ``--sdk a,b`` makes one cell per release
    sdk_axis = True

    def __init__(
        self, htp_arch: str = DEFAULT_HTP_ARCH, soc_model: str = DEFAULT_SOC_MODEL, context_root: Path | None = None
    ) -> None:
        self.htp_arch = htp_arch
        self.soc_model = soc_model
        #: artifact cache that keeps compiled QNN contexts; ``None``: ``$ZOOCOMPAT_CACHE`` at compile time
        self.context_root = context_root
        #: ``--strict-npu``: no CPU fallback, the whole graph on the HTP or the cell fails
        self.strict_npu = False
        #: ``--device adb:SERIAL``: the adb serial the cells run on, ``None`` on the host
        self.device: str | None = None

    def configure(self, strict_npu: bool = False, device: str | None = None) -> None:
        """Session-wide settings from the pytest options ``--strict-npu`` and ``--device adb:SERIAL``."""
        from zoocompat.sdk.device import parse_device

        self.strict_npu = strict_npu
        self.device = parse_device(device)

    def _snpe(self):
        from zoocompat_plugins.backends.snpe import SnpeRoute

        return SnpeRoute(self.name, self.strict_npu, self.device, self.htp_arch)

    def _device_sdk(self, env: SdkEnv | None):
        """The device side of ``env`` (a local QNN SDK with aarch64 libraries), or a reason it has none."""
        from zoocompat.sdk.device import DeviceSdk

        if env is None or env.source != "local" or not env.sdk_root:
            return None, (
                f"--device needs a local QNN SDK ($QNN_SDK_ROOT with lib/aarch64-android and hexagon-v{self.htp_arch}"
                f"); {env.id if env else 'this SDK'} is {env.source if env else 'not installed'}: pass --sdk with the "
                "id `zoocompat sdk list` shows for QNN_SDK_ROOT"
            )
        if not env.host:
            return None, f"{env.id} at $QNN_SDK_ROOT has no lib/x86_64-linux-clang/libQnnHtp.so to compile the context"
        sdk = DeviceSdk("qnn", Path(env.sdk_root), self.htp_arch)
        missing = sdk.missing()
        if missing:
            return (
                None,
                f"$QNN_SDK_ROOT has no device files for htp_arch {self.htp_arch}: {', '.join(map(str, missing))}",
            )
        return sdk, None

    def _env(self, sdk: str | None) -> SdkEnv | None:
        return sdks.current_env() if sdk is None else sdks.find(sdk)

    def available(self, sdk: str | None) -> str | None:
        """Needs onnxruntime-qnn with its libQnnHtp.so: the suite's own, or the requested SDK release's
        (SNPE's tools for ``snpe-*`` ids; the SDK's device files and adb for ``--device``).
        """
        from zoocompat_plugins.backends.snpe import is_snpe

        if is_snpe(sdk):
            return self._snpe().available(sdk)
        if self.device:
            from zoocompat.sdk.device import unavailable

            env = self._env(sdk)
            _, reason = self._device_sdk(env)
            return reason or unavailable(self.device)
        if sdk is None:
            if sdks.current_env() is None:
                return "onnxruntime-qnn (Qualcomm's QNN HTP library) is not installed: pip install -e .[stack]"
            return None
        env = self._env(sdk)
        if env is not None:
            if not env.host:
                return f"{env.id} at $QNN_SDK_ROOT has device libraries only (lib/aarch64-android): use --device"
            return None
        try:
            sdks.release(sdk)
        except SdkError as error:
            return str(error)
        return sdks.not_installed_reason(sdk)

    def describe(self, sdk: str | None) -> dict[str, Any]:
        """SDK id, QNN core version read from that release's library, onnxruntime versions, arch, strict, device."""
        from zoocompat_plugins.backends.snpe import is_snpe

        if is_snpe(sdk):
            return self._snpe().describe(sdk)
        env = self._env(sdk)
        return {
            "runtime": "QNN HTP (onnxruntime-qnn; x86-64 HTP emulator off-device)",
            "onnxruntime_qnn": env.onnxruntime_qnn_version if env else None,
            "onnxruntime": env.onnxruntime_version if env else None,
            "qnn_core_version": env.qnn_core_version if env else None,
            "sdk": env.id if env else sdk,
            "sdk_env": env.root if env else None,
            "htp_arch": self.htp_arch,
            "soc_model": self.soc_model,
            "sdk_source": env.source if env else None,
            "strict": self.strict_npu,
            "device": self.device,
        }

    def provider_options(self, precision: str) -> dict[str, str]:
        """QNN EP options for ``precision``."""
        options = {"htp_arch": self.htp_arch, "soc_model": self.soc_model}
        if precision == "fp16":
            options["enable_htp_fp16_precision"] = "1"
        return options

    def runner(self, onnx_path: Path, precision: str, sdk: str | None, workdir: Path, **extra: Any) -> RunnerModel:
        """A runner for ``onnx_path`` under the python of ``sdk`` (the suite's own when ``None``)."""
        env = self._env(sdk)
        if env is None:
            raise SdkError(self.available(sdk) or f"SDK {sdk} is not installed")
        return RunnerModel(
            Path(onnx_path),
            ep="qnn",
            target=self.name,
            workdir=workdir,
            provider_options={**self.provider_options(precision), "backend_path": str(env.htp_library)},
            python=env.python,
            expected_core_version=env.qnn_core_version,
            **extra,
        )

    def context_cache(self, precision: str, sdk: str | None) -> ContextCache | None:
        """Where this backend keeps compiled QNN contexts for ``precision`` on ``sdk``, and the key parts
        besides the model's bytes; ``None`` when ``ZOOCOMPAT_HTP_CONTEXT_CACHE=0`` or the SDK is not installed.
        """
        env = self._env(sdk)
        if env is None or os.environ.get("ZOOCOMPAT_HTP_CONTEXT_CACHE", "1") == "0":
            return None
        parts = {
            "backend": self.name,
            "precision": precision,
            "sdk": env.id,
            "qnn_core_version": env.qnn_core_version,
            "onnxruntime": env.onnxruntime_version,
            "onnxruntime_qnn": env.onnxruntime_qnn_version,
            "provider_options": self.provider_options(precision),  # htp_arch, soc_model, fp16 flag
        }
        return ContextCache(Path(self.context_root or default_root()), parts)

    def compile(self, onnx_path: Path, precision: str, sdk: str | None, workdir: Path) -> RunnerModel:
        """Prepare a QNN HTP session (compiled inside the runner on ``run``, or loaded from the context cache);
        strict with ``--strict-npu``; SNPE's tools for ``snpe-*`` ids; on the device with ``--device``.
        """
        from zoocompat_plugins.backends.snpe import is_snpe

        if is_snpe(sdk):
            return self._snpe().compile(onnx_path, precision, sdk, workdir)
        strict = {"session_config": dict(STRICT_NPU)} if self.strict_npu else {}
        if self.device:
            return self._on_device(self.runner(onnx_path, precision, sdk, workdir, **strict), sdk)
        return self.runner(onnx_path, precision, sdk, workdir, context=self.context_cache(precision, sdk), **strict)

    def _on_device(self, host: RunnerModel, sdk: str | None):
        from zoocompat_plugins.backends.qnn_device import QnnDeviceModel

        env = self._env(sdk)
        device_sdk, reason = self._device_sdk(env)
        if device_sdk is None:
            raise SdkError(reason)
        return QnnDeviceModel(host, self.device, device_sdk, env.id)


@zoocompat.hookimpl
def zoocompat_backends() -> list[HtpBackend]:
    """Register the HTP backend."""
    return [HtpBackend()]
