"""QNN SDK releases side by side: the registry, isolated environments, and their real versions.

A QNN release here is an ``onnxruntime-qnn`` wheel: it carries Qualcomm's
``libQnnHtp.so`` (the x86-64 HTP emulator off-device) of one QNN core release.
Releases cannot share an environment, so ``zoocompat sdk install qnn-2.47``
builds a plain, isolated venv under ``$ZOOCOMPAT_CACHE/sdks/qnn-2.47/`` that
holds only numpy, onnxruntime and onnxruntime-qnn at pinned versions: what the
runner process (``plugins/backends/ort_runner.py``) needs, nothing of the
suite's own stack. The venv is built in a temporary folder under a file lock
and renamed into place with its manifest, so a reader sees a whole
environment or none.

A release's QNN core version is always read from its ``libQnnHtp.so``
(the ``AISW_VERSION`` string Qualcomm compiles in), never guessed from the pip
version. The suite's own environment counts as an installed SDK too: its
``onnxruntime-qnn`` gives the id of the release it holds.

A user's own SDK counts as well ("local" SDKs): with ``QNN_SDK_ROOT`` set and
``$QNN_SDK_ROOT/lib/x86_64-linux-clang/libQnnHtp.so`` (or the
``aarch64-android`` one, for devices) present, ``qnn-<major.minor>`` read from
that library is an installed SDK whose cells run the suite's own
onnxruntime-qnn with that library as ``backend_path``; with ``SNPE_ROOT`` set,
``snpe-<major.minor>`` names the SNPE SDK there (see
:mod:`zoocompat_plugins.backends.snpe`). Neither is listed when its variable is unset.

This module imports no ML framework; it starts ``python`` and ``pip`` with
argument lists, never shell strings.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from filelock import FileLock

from zoocompat.api import progress
from zoocompat.api.cache import default_root
from zoocompat.api.errors import ZoocompatError

__all__ = [
    "RELEASES",
    "Release",
    "SdkEnv",
    "SdkError",
    "current_env",
    "find",
    "install",
    "listing",
    "local_qnn",
    "local_snpe",
    "qnn_core_version",
    "release",
    "sdk_id",
    "sdks_root",
    "LocalSnpe",
]

MANIFEST = "sdk.json"
#: numpy for every SDK environment: the suite's own pin, so inputs and outputs round-trip identically.
NUMPY_VERSION = "2.4.6"
_CORE_VERSION = re.compile(rb"AISW_VERSION: (\d+\.\d+\.\d+)")
_ID = re.compile(r"^(qnn|snpe)-\d+\.\d+$")
_VERSION_IN_NAME = re.compile(r"(\d+\.\d+\.\d+)")
#: where a QNN / SNPE SDK keeps its host and device libraries
HOST_LIB = "lib/x86_64-linux-clang"
DEVICE_LIB = "lib/aarch64-android"


class SdkError(ZoocompatError):
    """An SDK id is unknown, not installed, or its install failed; the message says what to do."""


@dataclass(frozen=True)
class Release:
    """A QNN release as pip installs it: the onnxruntime-qnn wheel and the onnxruntime it runs with.

    ``verified`` marks a pairing that a real HTP run in its own environment has
    confirmed (see docs/sdks.md); the others pair by release date.
    """

    id: str
    onnxruntime_qnn: str
    onnxruntime: str
    verified: bool = False

    def requirements(self) -> list[str]:
        """The pins pip installs into the release's environment."""
        return [
            f"onnxruntime-qnn=={self.onnxruntime_qnn}",
            f"onnxruntime=={self.onnxruntime}",
            f"numpy=={NUMPY_VERSION}",
        ]


#: Known releases. onnxruntime-qnn 2.3.0 ... 2.7.0 carry QNN 2.47 ... 2.51 (read from each libQnnHtp.so).
#: 2.3.0 pairs with the oldest onnxruntime every release declares (>=1.24.2), which its QNN CPU
#: backend needs; 2.4.0-2.6.0 with the onnxruntime released closest before them; 2.7.0 with the
#: suite's own onnxruntime.
RELEASES: dict[str, Release] = {
    r.id: r
    for r in (
        Release("qnn-2.47", "2.3.0", "1.24.2", verified=True),
        Release("qnn-2.48", "2.4.0", "1.28.0"),
        Release("qnn-2.49", "2.5.0", "1.29.0", verified=True),
        Release("qnn-2.50", "2.6.0", "1.30.0"),
        Release("qnn-2.51", "2.7.0", "1.32.0", verified=True),
    )
}


@cache
def _core_version(path: str, size: int, mtime_ns: int) -> str | None:
    match = _CORE_VERSION.search(Path(path).read_bytes())
    return match.group(1).decode() if match else None


def qnn_core_version(library: Path) -> str | None:
    """The QNN core version compiled into a QNN library such as ``libQnnHtp.so`` (e.g. ``2.51.0``).

    Read from the ``AISW_VERSION`` string in the binary; ``None`` when it has none.
    Cached per file (path, size, mtime), so a reinstalled library is read again.
    """
    stat = Path(library).stat()
    return _core_version(str(library), stat.st_size, stat.st_mtime_ns)


def sdk_id(core_version: str | None) -> str | None:
    """``qnn-<major.minor>`` for a core version (``2.47.0`` -> ``qnn-2.47``)."""
    return "qnn-" + ".".join(core_version.split(".")[:2]) if core_version else None


def sdks_root(cache_root: Path | None = None) -> Path:
    """Folder that holds the SDK environments: ``$ZOOCOMPAT_CACHE/sdks``."""
    return Path(cache_root or default_root()) / "sdks"


def release(sdk: str) -> Release:
    """The known release ``sdk`` or an :class:`SdkError` that lists the known ids."""
    if sdk not in RELEASES:
        shape = "" if _ID.match(sdk) else " (SDK ids look like qnn-2.51)"
        raise SdkError(f"unknown SDK {sdk!r}{shape}; known: {', '.join(RELEASES)}")
    return RELEASES[sdk]


@dataclass
class SdkEnv:
    """An installed SDK: the python that runs its runner and the QNN libraries it loads."""

    id: str
    python: str
    qnn_lib_dir: str
    qnn_core_version: str | None
    onnxruntime_version: str | None
    onnxruntime_qnn_version: str | None
    root: str  # the environment's folder (sys.prefix of ``python``); a local SDK's root
    source: str  # "cache" (zoocompat sdk install), "environment" (the suite's own) or "local" (QNN_SDK_ROOT)
    #: a local SDK's folder (``$QNN_SDK_ROOT``); its device libraries are under ``lib/aarch64-android``
    sdk_root: str | None = None
    #: whether the host (x86-64) HTP library is there; a device-only local SDK has only the aarch64 one
    host: bool = True

    @property
    def htp_library(self) -> Path:
        """Path of this release's ``libQnnHtp.so``."""
        return Path(self.qnn_lib_dir) / "libQnnHtp.so"


def _dist_version(site_packages: Path, name: str) -> str | None:
    for info in site_packages.glob(f"{name.replace('-', '_')}-*.dist-info"):
        return info.name[len(name) + 1 : -len(".dist-info")]
    return None


def current_env() -> SdkEnv | None:
    """The SDK of the suite's own environment, or ``None`` when it has no onnxruntime-qnn.

    Found without importing onnxruntime-qnn; the id comes from its library's core version.
    """
    spec = importlib.util.find_spec("onnxruntime_qnn")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    library = folder / "libQnnHtp.so"
    if not library.is_file():
        return None
    core = qnn_core_version(library)
    return SdkEnv(
        id=sdk_id(core) or "qnn-unknown",
        python=sys.executable,
        qnn_lib_dir=str(folder),
        qnn_core_version=core,
        onnxruntime_version=_dist_version(folder.parent, "onnxruntime"),
        onnxruntime_qnn_version=_dist_version(folder.parent, "onnxruntime-qnn"),
        root=sys.prefix,
        source="environment",
    )


def local_qnn() -> SdkEnv | None:
    """The user's own QNN SDK at ``$QNN_SDK_ROOT``, or ``None`` when unset or holding no ``libQnnHtp.so``.

    The id is ``qnn-<major.minor>`` of the core version read from the library
    (the host one under ``lib/x86_64-linux-clang``, else the device one under
    ``lib/aarch64-android``). Host cells run the suite's own python and
    onnxruntime-qnn with that library as ``backend_path``.
    """
    root = os.environ.get("QNN_SDK_ROOT")
    if not root:
        return None
    host, device = Path(root) / HOST_LIB / "libQnnHtp.so", Path(root) / DEVICE_LIB / "libQnnHtp.so"
    library = host if host.is_file() else device if device.is_file() else None
    if library is None:
        return None
    core = qnn_core_version(library)
    own = current_env()
    return SdkEnv(
        id=sdk_id(core) or "qnn-unknown",
        python=sys.executable,
        qnn_lib_dir=str(library.parent),
        qnn_core_version=core,
        onnxruntime_version=own.onnxruntime_version if own else None,
        onnxruntime_qnn_version=own.onnxruntime_qnn_version if own else None,
        root=str(root),
        source="local",
        sdk_root=str(root),
        host=library == host,
    )


@dataclass(frozen=True)
class LocalSnpe:
    """The user's own SNPE SDK at ``$SNPE_ROOT``: its id, folder and version."""

    id: str
    root: str
    version: str | None


def local_snpe() -> LocalSnpe | None:
    """The SNPE SDK at ``$SNPE_ROOT`` (``snpe-<major.minor>``), or ``None`` when the variable is unset.

    The version is the ``AISW_VERSION`` compiled into ``libSNPE.so`` (host
    library first, then the device one), else the first ``X.Y.Z`` in the
    folder's name (SDK archives unpack to e.g. ``2.22.0.240425``); without
    either the id is ``snpe-unknown``.
    """
    root = os.environ.get("SNPE_ROOT")
    if not root:
        return None
    version = None
    for lib in (HOST_LIB, DEVICE_LIB):
        library = Path(root) / lib / "libSNPE.so"
        if library.is_file() and (version := qnn_core_version(library)):
            break
    if version is None and (match := _VERSION_IN_NAME.search(Path(root).resolve().name)):
        version = match.group(1)
    short = ".".join(version.split(".")[:2]) if version else "unknown"
    return LocalSnpe(id=f"snpe-{short}", root=str(root), version=version)


def _cached_env(sdk: str, cache_root: Path | None) -> SdkEnv | None:
    root = sdks_root(cache_root) / sdk
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    python = root / "bin" / "python"
    libs = sorted(root.glob("lib/python*/site-packages/onnxruntime_qnn"))
    if not python.exists() or not libs or not (libs[0] / "libQnnHtp.so").is_file():
        return None  # removed or broken by hand: reported as not installed, `install` rebuilds it
    return SdkEnv(
        id=sdk,
        python=str(python),
        qnn_lib_dir=str(libs[0]),
        qnn_core_version=qnn_core_version(libs[0] / "libQnnHtp.so"),
        onnxruntime_version=manifest.get("onnxruntime"),
        onnxruntime_qnn_version=manifest.get("onnxruntime_qnn"),
        root=str(root),
        source="cache",
    )


def find(sdk: str, cache_root: Path | None = None) -> SdkEnv | None:
    """The installed environment of ``sdk``: its cached venv, else a local SDK (``$QNN_SDK_ROOT``) of that
    release, else the suite's own if it holds that release.
    """
    cached = _cached_env(sdk, cache_root)
    if cached is not None:
        return cached
    local = local_qnn()
    if local is not None and local.id == sdk:
        return local
    own = current_env()
    return own if own is not None and own.id == sdk else None


def not_installed_reason(sdk: str) -> str:
    """The words a cell and the CLI use for a release that is not installed (or that no one knows)."""
    if sdk not in RELEASES:
        return f"SDK {sdk} is not a release this suite knows ({', '.join(RELEASES)}; `zoocompat sdk list`)"
    return f"SDK {sdk} is not installed (run: zoocompat sdk install {sdk})"


def listing(cache_root: Path | None = None) -> list[dict]:
    """Every known release plus any installed one, for ``zoocompat sdk list``.

    Each entry is ``{id, installed, qnn_core_version, onnxruntime_version, path}``
    (and ``onnxruntime_qnn_version``, ``source``); versions are those of the
    installed environment (the core version read from its library), ``None``
    where the release is not installed. A local QNN SDK (``$QNN_SDK_ROOT``) is
    listed with source ``local``; a local SNPE SDK (``$SNPE_ROOT``) as
    ``snpe-<major.minor>`` with source ``local`` and its version in
    ``qnn_core_version`` (SNPE and QNN share the AISW version).
    """
    ids = list(RELEASES)
    for env in (current_env(), local_qnn()):
        if env is not None and env.id not in ids:
            ids.append(env.id)
    folder = sdks_root(cache_root)
    if folder.is_dir():
        ids += sorted(p.name for p in folder.iterdir() if (p / MANIFEST).is_file() and p.name not in ids)
    entries = []
    for sdk in sorted(ids, key=lambda s: [int(x) if x.isdigit() else x for x in re.split(r"[.-]", s)]):
        env = find(sdk, cache_root)
        entries.append(
            {
                "id": sdk,
                "installed": env is not None,
                "qnn_core_version": env.qnn_core_version if env else None,
                "onnxruntime_version": env.onnxruntime_version if env else None,
                "onnxruntime_qnn_version": env.onnxruntime_qnn_version if env else None,
                "path": env.root if env else None,
                "source": env.source if env else None,
            }
        )
    snpe = local_snpe()
    if snpe is not None:
        entries.append(
            {
                "id": snpe.id,
                "installed": True,
                "qnn_core_version": snpe.version,
                "onnxruntime_version": None,
                "onnxruntime_qnn_version": None,
                "path": snpe.root,
                "source": "local",
            }
        )
    return entries


def _run(command: list[str], what: str, log: Path) -> None:
    with open(log, "ab") as out, progress.step(f"{what} (log: {log})"):
        out.write(f"$ {' '.join(command)}\n".encode())
        out.flush()
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise SdkError(f"{what} failed (exit {done.returncode}): {' | '.join(tail)}; full log: {log}")


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def install(sdk: str, cache_root: Path | None = None, force: bool = False) -> SdkEnv:
    """Build the isolated environment of release ``sdk`` (a no-op when it is there already).

    Runs ``python -m venv`` (no system site-packages) and ``pip install`` of the
    release's pins into a temporary folder under a file lock, checks that the
    installed ``libQnnHtp.so`` reports the release's core version, writes the
    manifest and renames the folder into place. Raises :class:`SdkError` with
    pip's last lines and the log path when a step fails.
    """
    pinned = release(sdk)
    existing = None if force else find(sdk, cache_root)
    if existing is not None:
        return existing
    parent = sdks_root(cache_root)
    parent.mkdir(parents=True, exist_ok=True)
    final = parent / sdk
    with FileLock(str(final) + ".lock"):
        if not force and (env := _cached_env(sdk, cache_root)) is not None:
            return env  # another process built it while this one waited
        tmp = Path(tempfile.mkdtemp(prefix=f".{sdk}.", dir=parent))
        log = parent / f"{sdk}.install.log"
        log.write_text("")
        start = time.perf_counter()
        try:
            base = getattr(sys, "_base_executable", None) or sys.executable
            _run([base, "-m", "venv", str(tmp)], f"creating the {sdk} venv", log)
            python = tmp / "bin" / "python"
            pip = [str(python), "-m", "pip", "install", "--no-input", "--disable-pip-version-check"]
            _run([*pip, *pinned.requirements()], f"pip install {' '.join(pinned.requirements())}", log)
            libs = sorted(tmp.glob("lib/python*/site-packages/onnxruntime_qnn/libQnnHtp.so"))
            if not libs:
                raise SdkError(f"{sdk}: onnxruntime-qnn {pinned.onnxruntime_qnn} installed no libQnnHtp.so; log: {log}")
            core = qnn_core_version(libs[0])
            if sdk_id(core) != sdk:
                raise SdkError(
                    f"{sdk}: onnxruntime-qnn {pinned.onnxruntime_qnn} holds QNN core {core} ({sdk_id(core)}), "
                    f"not {sdk}: the release table in zoocompat/sdks.py is wrong"
                )
            manifest = dict(
                asdict(pinned),
                numpy=NUMPY_VERSION,
                qnn_core_version=core,
                python=".".join(map(str, sys.version_info[:3])),
                install_s=round(time.perf_counter() - start, 1),
                size_bytes=_folder_size(tmp),
                installed=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            )
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    env = _cached_env(sdk, cache_root)
    if env is None:
        raise SdkError(f"{sdk}: the environment at {final} is incomplete after install; log: {log}")
    return env
