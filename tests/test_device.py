"""``--device adb:SERIAL``: the adb plan (exact argument lists for an SDK layout), its execution and the
reasons a device is unavailable. No device is attached here: ``adb`` is a stand-in script or a fake runner.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from zoocompat_plugins.backends.htp import HtpBackend
from zoocompat_plugins.backends.qnn_device import net_run_args

from zoocompat.api.errors import CellError
from zoocompat.sdk import device

R = device.REMOTE_ROOT


def test_parse_device():
    assert device.parse_device("adb:R58M123") == "R58M123" and device.parse_device(None) is None
    with pytest.raises(ValueError, match="expected adb:SERIAL"):
        device.parse_device("usb:1")


def test_device_files_follow_the_htp_arch():
    qnn = device.DeviceSdk("qnn", Path("/qnn"), "75")
    assert [p.name for p in qnn.libraries] == [
        "libQnnHtp.so",
        "libQnnHtpV75Stub.so",
        "libQnnHtpPrepare.so",
        "libQnnSystem.so",
    ]
    assert qnn.skels == [Path("/qnn/lib/hexagon-v75/unsigned/libQnnHtpV75Skel.so")]
    assert qnn.net_run == Path("/qnn/bin/aarch64-android/qnn-net-run")
    snpe = device.DeviceSdk("snpe", Path("/snpe"), "73")
    assert [p.name for p in snpe.libraries] == ["libSNPE.so", "libSnpeHtpV73Stub.so", "libSnpeHtpPrepare.so"]
    assert snpe.skels == [Path("/snpe/lib/hexagon-v73/unsigned/libSnpeHtpV73Skel.so")]
    assert snpe.net_run.name == "snpe-net-run" and len(snpe.missing()) == 5


def test_the_plan_is_the_sdks_android_flow_as_adb_argument_lists(tmp_path):
    sdk = device.DeviceSdk("qnn", Path("/qnn"), "75")
    plan = device.plan(
        "SER1",
        "cellA",
        sdk,
        "qnn-2.51",
        [tmp_path / "model_qnn.bin"],
        tmp_path / "inputs",
        net_run_args("model_qnn.bin"),
        tmp_path,
    )
    adb = ["adb", "-s", "SER1"]
    shared, cell = f"{R}/qnn-2.51", f"{R}/cellA"
    lib = "/qnn/lib/aarch64-android"
    assert [s.argv for s in plan.steps] == [
        [*adb, "shell", "mkdir", "-p", f"{shared}/lib", f"{shared}/dsp", f"{shared}/bin", cell],
        [*adb, "push", "--sync", f"{lib}/libQnnHtp.so", f"{shared}/lib/"],
        [*adb, "push", "--sync", f"{lib}/libQnnHtpV75Stub.so", f"{shared}/lib/"],
        [*adb, "push", "--sync", f"{lib}/libQnnHtpPrepare.so", f"{shared}/lib/"],
        [*adb, "push", "--sync", f"{lib}/libQnnSystem.so", f"{shared}/lib/"],
        [*adb, "push", "--sync", "/qnn/lib/hexagon-v75/unsigned/libQnnHtpV75Skel.so", f"{shared}/dsp/"],
        [*adb, "push", "--sync", "/qnn/bin/aarch64-android/qnn-net-run", f"{shared}/bin/"],
        [*adb, "shell", "chmod", "755", f"{shared}/bin/qnn-net-run"],
        [*adb, "push", str(tmp_path / "model_qnn.bin"), f"{cell}/"],
        [*adb, "push", str(tmp_path / "inputs"), f"{cell}/inputs"],
        [
            *adb,
            "shell",
            f"cd {cell} && LD_LIBRARY_PATH={shared}/lib "
            f"ADSP_LIBRARY_PATH='{shared}/dsp;/vendor/lib/rfsa/adsp;/vendor/dsp/cdsp;/system/lib/rfsa/adsp;/dsp' "
            f"{shared}/bin/qnn-net-run --backend libQnnHtp.so --retrieve_context model_qnn.bin "
            "--input_list inputs/input_list.txt --output_dir output",
        ],
        [*adb, "pull", f"{cell}/output", str(tmp_path)],
        [*adb, "shell", "rm", "-rf", cell],
    ]
    assert plan.local_output == tmp_path / "output" and all(s.timeout_s > 0 for s in plan.steps)


def test_execute_stops_at_a_failed_step_and_still_cleans_up(tmp_path):
    sdk = device.DeviceSdk("snpe", Path("/snpe"), "75")
    plan = device.plan("S", "c", sdk, "snpe-2.22", [], tmp_path, ["--container", "m.dlc"], tmp_path)
    ran: list[list[str]] = []

    def fake(argv, capture_output, text, timeout):
        ran.append(argv)
        failing = argv[3:4] == ["shell"] and argv[-1].startswith("cd ")
        return subprocess.CompletedProcess(
            argv, 1 if failing else 0, "", "error: libSNPE.so not found" if failing else ""
        )

    with pytest.raises(CellError, match=r"device S: run snpe-net-run failed \(exit 1\): error: libSNPE.so not found"):
        device.execute(plan, run=fake)
    assert ran[-1] == ["adb", "-s", "S", "shell", "rm", "-rf", f"{R}/c"]  # cleaned up after the failure
    assert not any(a[3] == "pull" for a in ran)
    ran.clear()
    assert len(device.execute(plan, run=lambda argv, **kw: subprocess.CompletedProcess(argv, 0, "", ""))) == len(
        plan.steps
    )


def _fake_adb(tmp_path: Path, listing: str) -> str:
    adb = tmp_path / "adb"
    adb.write_text(f"#!{sys.executable}\nprint({listing!r})\n")
    adb.chmod(0o755)
    return str(adb)


def test_a_device_that_is_not_there_is_unavailable_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert device.unavailable("SER1") == "adb is not installed (needed for --device adb:SER1; Android platform-tools)"
    adb = _fake_adb(tmp_path, "List of devices attached\nOTHER\tdevice\nSER2\tunauthorized\n")
    assert device.unavailable("SER1", adb) == (
        "device SER1 is not listed by `adb devices` (listed: OTHER (device), SER2 (unauthorized))"
    )
    assert "is 'unauthorized' in `adb devices`" in device.unavailable("SER2", adb)
    assert device.unavailable("OTHER", adb) is None


def test_htp_with_a_device_needs_a_local_qnn_sdk_and_says_so(monkeypatch, tmp_path):
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    backend = HtpBackend()
    backend.configure(device="adb:SER1")
    assert backend.describe(None)["device"] == "SER1"
    reason = backend.available(None)
    if reason is not None and "onnxruntime-qnn" in reason:
        pytest.skip("onnxruntime-qnn not installed")
    assert reason.startswith("--device needs a local QNN SDK ($QNN_SDK_ROOT with lib/aarch64-android")
    root = tmp_path / "qnn"
    for sub in ("lib/x86_64-linux-clang", "lib/aarch64-android"):
        (root / sub).mkdir(parents=True)
        (root / sub / "libQnnHtp.so").write_bytes(b"AISW_VERSION: 2.30.0\x00")
    monkeypatch.setenv("QNN_SDK_ROOT", str(root))
    assert "has no device files for htp_arch 75" in backend.available("qnn-2.30")
    files = device.DeviceSdk("qnn", root, "75")
    for path in (files.net_run, *files.libraries, *files.skels):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path / "nothing")]))
    assert (
        backend.available("qnn-2.30") == "adb is not installed (needed for --device adb:SER1; Android platform-tools)"
    )
    backend.configure()
    assert backend.device is None and backend.strict_npu is False


def test_one_device_per_xdist_worker():
    devices = "adb:PHONE_A, adb:PHONE_B"
    assert device.device_for_worker(devices, None, {}) == "adb:PHONE_A"  # no workers: the first
    assert device.device_for_worker(devices, "gw0", {}) == "adb:PHONE_A"
    assert device.device_for_worker(devices, "gw1", {}) == "adb:PHONE_B"
    assert device.device_for_worker(devices, "gw2", {}) == "adb:PHONE_A"  # more workers than devices: they share
    assert device.device_for_worker(None, "gw1", {}) is None
    # a worker started on the host its device hangs off (--tx ...//env:ZOOCOMPAT_DEVICE=adb:X) keeps its own
    assert device.device_for_worker(devices, "gw1", {"ZOOCOMPAT_DEVICE": "adb:BOARD_7"}) == "adb:BOARD_7"


def test_each_worker_configures_its_own_device(monkeypatch):
    """The pytest plugin hands worker gw1 the second device: the htp backend's description names it."""
    from zoocompat.api.registry import registry
    from zoocompat.pytest_plugin import plugin as pytest_plugin

    class WorkerConfig:
        workerinput = {"workerid": "gw1"}

        def getoption(self, name):
            return {"strict_npu": False, "device": "adb:PHONE_A,adb:PHONE_B"}[name]

    monkeypatch.delenv("ZOOCOMPAT_DEVICE", raising=False)
    htp = registry().get("backend", "htp")
    try:
        pytest_plugin._configure_backends(WorkerConfig())
        assert htp.describe(None)["device"] == "PHONE_B"
    finally:
        htp.configure(strict_npu=False, device=None)
