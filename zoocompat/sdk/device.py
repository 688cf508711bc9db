"""Run a cell's net-run tool on a phone or board over adb: ``--device adb:SERIAL``.

The same flow as the vendor SDK's own Android tutorial: push the runtime
libraries, the HTP stub and skel libraries for the chosen ``htp_arch``, the
net-run binary, the model (a DLC for SNPE, a QNN context binary for QNN), the
``.raw`` inputs and their input list; run the tool in ``adb shell`` with
``LD_LIBRARY_PATH`` and ``ADSP_LIBRARY_PATH`` set; pull the output folder;
remove the cell's folder on the device.

:func:`plan` builds that flow as a list of :class:`Step` s, each an ``adb``
argument list (never a host shell string; the one command line ``adb shell``
runs on the device is built with :func:`shlex.quote`), so it is unit-tested
without a device. :func:`execute` runs the steps with a timeout each.
:func:`unavailable` says why a device cannot be used (no ``adb``, the serial
not listed by ``adb devices`` or not in the ``device`` state).

SDK layout used (QNN / SNPE 2.x, ``<root>`` = ``$QNN_SDK_ROOT`` / ``$SNPE_ROOT``):

- ``<root>/bin/aarch64-android/qnn-net-run`` | ``snpe-net-run``
- ``<root>/lib/aarch64-android/``: ``libQnnHtp.so libQnnHtpV<arch>Stub.so libQnnHtpPrepare.so
  libQnnSystem.so`` | ``libSNPE.so libSnpeHtpV<arch>Stub.so libSnpeHtpPrepare.so``
- ``<root>/lib/hexagon-v<arch>/unsigned/``: ``libQnnHtpV<arch>Skel.so`` | ``libSnpeHtpV<arch>Skel.so``
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from zoocompat.api.errors import CellError

__all__ = [
    "REMOTE_ROOT",
    "DeviceSdk",
    "Step",
    "execute",
    "parse_device",
    "plan",
    "unavailable",
]

REMOTE_ROOT = "/data/local/tmp/zoocompat"
#: the system folders the DSP loader searches after the pushed skel libraries
SYSTEM_DSP_PATHS = ("/vendor/lib/rfsa/adsp", "/vendor/dsp/cdsp", "/system/lib/rfsa/adsp", "/dsp")
PUSH_TIMEOUT_S = 300.0
SHELL_TIMEOUT_S = 60.0


def parse_device(spec: str | None) -> str | None:
    """The adb serial of ``--device adb:SERIAL`` (``None`` for no device); a ``ValueError`` for another form."""
    if not spec:
        return None
    kind, _, serial = spec.partition(":")
    if kind != "adb" or not serial.strip():
        raise ValueError(f"--device {spec!r}: expected adb:SERIAL (a serial that `adb devices` lists)")
    return serial.strip()


def device_for_worker(spec: str | None, worker: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The ``--device`` value this process uses: one device per xdist worker.

    ``spec`` may list several devices (``adb:A,adb:B``): worker ``gwN`` takes the
    ``N``-th (modulo their count), a run without workers the first. A worker's own
    ``ZOOCOMPAT_DEVICE`` (``--tx ...//env:ZOOCOMPAT_DEVICE=adb:X`` for a worker on
    the host a device hangs off) wins over both. Returns one ``adb:SERIAL`` or ``None``.
    """
    own = (environ if environ is not None else os.environ).get("ZOOCOMPAT_DEVICE", "").strip()
    if own:
        return own
    devices = [d.strip() for d in (spec or "").split(",") if d.strip()]
    if not devices:
        return None
    index = int(worker[2:]) if worker and worker.startswith("gw") and worker[2:].isdigit() else 0
    return devices[index % len(devices)]


@dataclass(frozen=True)
class DeviceSdk:
    """The device side of an SDK: which runtime libraries, skel libraries and net-run binary to push."""

    kind: str  # "qnn" or "snpe"
    root: Path
    htp_arch: str = "75"

    @property
    def net_run(self) -> Path:
        """The aarch64 Android net-run binary."""
        return self.root / "bin" / "aarch64-android" / ("qnn-net-run" if self.kind == "qnn" else "snpe-net-run")

    @property
    def libraries(self) -> list[Path]:
        """Runtime libraries loaded on the application processor (the HTP stub of ``htp_arch`` included)."""
        lib = self.root / "lib" / "aarch64-android"
        v = self.htp_arch
        if self.kind == "qnn":
            names = ["libQnnHtp.so", f"libQnnHtpV{v}Stub.so", "libQnnHtpPrepare.so", "libQnnSystem.so"]
        else:
            names = ["libSNPE.so", f"libSnpeHtpV{v}Stub.so", "libSnpeHtpPrepare.so"]
        return [lib / name for name in names]

    @property
    def skels(self) -> list[Path]:
        """The HTP skel library of ``htp_arch``, loaded by the DSP (unsigned protection domain)."""
        name = f"libQnnHtpV{self.htp_arch}Skel.so" if self.kind == "qnn" else f"libSnpeHtpV{self.htp_arch}Skel.so"
        return [self.root / "lib" / f"hexagon-v{self.htp_arch}" / "unsigned" / name]

    def missing(self) -> list[Path]:
        """The files of the device flow that the SDK folder does not have."""
        return [p for p in (self.net_run, *self.libraries, *self.skels) if not p.is_file()]


@dataclass(frozen=True)
class Step:
    """One host command of the device flow."""

    what: str
    argv: list[str]
    timeout_s: float = SHELL_TIMEOUT_S


@dataclass
class DevicePlan:
    """The ordered steps of one cell on a device, and where its outputs land on the host."""

    serial: str
    remote_dir: str
    steps: list[Step] = field(default_factory=list)
    local_output: Path = Path()


def plan(
    serial: str,
    cell: str,
    sdk: DeviceSdk,
    sdk_id: str,
    model_files: list[Path],
    inputs_dir: Path,
    run_args: list[str],
    local_dir: Path,
) -> DevicePlan:
    """The device flow of one cell as adb argument lists, in order.

    ``model_files`` are pushed into the cell's folder (``<REMOTE_ROOT>/<cell>``),
    ``inputs_dir`` (the ``.raw`` files and ``input_list.txt``, whose paths are
    relative to the cell's folder: ``inputs/...``) into ``<cell>/inputs``.
    The SDK's libraries, skel libraries and binary go to ``<REMOTE_ROOT>/<sdk_id>``
    with ``push --sync`` (copied only when changed). ``run_args`` are the
    net-run tool's arguments, relative to the cell's folder; its output folder
    must be ``output``, which is pulled into ``local_dir/output``.
    """
    adb = ["adb", "-s", serial]
    shared = f"{REMOTE_ROOT}/{sdk_id}"
    cell_dir = f"{REMOTE_ROOT}/{cell}"
    binary = f"{shared}/bin/{sdk.net_run.name}"
    steps = [
        Step(
            "make the folders",
            [*adb, "shell", "mkdir", "-p", f"{shared}/lib", f"{shared}/dsp", f"{shared}/bin", cell_dir],
        ),
        *(
            Step(f"push {p.name}", [*adb, "push", "--sync", str(p), f"{shared}/lib/"], PUSH_TIMEOUT_S)
            for p in sdk.libraries
        ),
        *(
            Step(f"push {p.name}", [*adb, "push", "--sync", str(p), f"{shared}/dsp/"], PUSH_TIMEOUT_S)
            for p in sdk.skels
        ),
        Step(f"push {sdk.net_run.name}", [*adb, "push", "--sync", str(sdk.net_run), f"{shared}/bin/"], PUSH_TIMEOUT_S),
        Step("make it executable", [*adb, "shell", "chmod", "755", binary]),
        *(Step(f"push {p.name}", [*adb, "push", str(p), f"{cell_dir}/"], PUSH_TIMEOUT_S) for p in model_files),
        Step("push the inputs", [*adb, "push", str(inputs_dir), f"{cell_dir}/inputs"], PUSH_TIMEOUT_S),
    ]
    adsp = ";".join([f"{shared}/dsp", *SYSTEM_DSP_PATHS])
    command = (
        f"cd {shlex.quote(cell_dir)} && "
        f"LD_LIBRARY_PATH={shlex.quote(shared + '/lib')} ADSP_LIBRARY_PATH={shlex.quote(adsp)} "
        + " ".join(shlex.quote(a) for a in [binary, *run_args])
    )
    steps += [
        Step(f"run {sdk.net_run.name}", [*adb, "shell", command], PUSH_TIMEOUT_S),
        Step("pull the outputs", [*adb, "pull", f"{cell_dir}/output", str(local_dir)], PUSH_TIMEOUT_S),
        Step("clean up", [*adb, "shell", "rm", "-rf", cell_dir]),
    ]
    return DevicePlan(serial, cell_dir, steps, Path(local_dir) / "output")


def unavailable(serial: str, adb: str | None = None) -> str | None:
    """Why the device ``serial`` cannot be used now, or ``None`` when ``adb devices`` lists it as ``device``."""
    adb = adb or shutil.which("adb")
    if adb is None:
        return f"adb is not installed (needed for --device adb:{serial}; Android platform-tools)"
    try:
        listed = subprocess.run([adb, "devices"], capture_output=True, text=True, timeout=SHELL_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"`adb devices` failed: {error}"
    states = {}
    for line in listed.stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2:
            states[parts[0]] = parts[1]
    if serial not in states:
        shown = ", ".join(f"{s} ({st})" for s, st in states.items()) or "none"
        return f"device {serial} is not listed by `adb devices` (listed: {shown})"
    if states[serial] != "device":
        return f"device {serial} is {states[serial]!r} in `adb devices`, not 'device' (authorize it or reconnect)"
    return None


def execute(device_plan: DevicePlan, run=subprocess.run) -> list[str]:
    """Run the plan's steps in order; return each step's output. A failed step raises ``CellError``
    (``timeout`` when it ran out of time, else ``crash``) naming the step and its last output; the
    cell's folder on the device is removed either way.
    """
    logs: list[str] = []
    cleanup = device_plan.steps[-1]
    try:
        for step in device_plan.steps:
            try:
                done = run(step.argv, capture_output=True, text=True, timeout=step.timeout_s)
            except subprocess.TimeoutExpired:
                raise CellError(
                    "timeout", f"device {device_plan.serial}: {step.what} did not finish in {step.timeout_s:.0f} s"
                ) from None
            output = (done.stdout or "") + (done.stderr or "")
            logs.append(f"$ {shlex.join(step.argv)}\n{output}")
            if done.returncode != 0:
                tail = " | ".join(output.strip().splitlines()[-3:]) or "no output"
                raise CellError(
                    "crash", f"device {device_plan.serial}: {step.what} failed (exit {done.returncode}): {tail}"
                )
    except CellError:
        if step is not cleanup:
            try:
                run(cleanup.argv, capture_output=True, text=True, timeout=cleanup.timeout_s)
            except (OSError, subprocess.TimeoutExpired):
                pass
        raise
    return logs
