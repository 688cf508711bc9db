"""SDK releases: the registry, isolated environments, `zoocompat sdk`, and cells on another release.

Everything but the last test runs against a temporary cache with fake
environments (a file holding an ``AISW_VERSION`` string stands in for
``libQnnHtp.so``). The last test runs the real HTP runner under an installed
release's own environment; CI starts with an empty cache, so there it is
skipped with the install command as the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from zoocompat_plugins.backends.htp import HtpBackend

from tests.conftest import ZOO
from tests.test_backends import _conv_relu_det
from zoocompat.api.cache import ArtifactCache
from zoocompat.api.registry import registry
from zoocompat.cli import main
from zoocompat.model.cards import discover
from zoocompat.report.results import ReportDir
from zoocompat.run.matrix import Cell, Selection, build_cells
from zoocompat.run.pipeline import CellRunner
from zoocompat.sdk import releases as sdks


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty artifact cache for the test (``$ZOOCOMPAT_CACHE``)."""
    root = tmp_path / "cache"
    monkeypatch.setenv("ZOOCOMPAT_CACHE", str(root))
    return root


def _fake_env(root: Path, sdk: str, core: str, manifest: bool = True) -> Path:
    """A stand-in SDK environment: bin/python, onnxruntime_qnn/libQnnHtp.so with ``core``, the manifest."""
    env = root / "sdks" / sdk
    lib = env / "lib" / "python3.11" / "site-packages" / "onnxruntime_qnn"
    lib.mkdir(parents=True)
    (lib / "libQnnHtp.so").write_bytes(b"\x7fELF padding AISW_VERSION: " + core.encode() + b"\x00 more")
    (env / "bin").mkdir()
    os.symlink(sys.executable, env / "bin" / "python")
    if manifest:
        (env / sdks.MANIFEST).write_text(json.dumps({"id": sdk, "onnxruntime_qnn": "2.x", "onnxruntime": "1.x"}))
    return env


def test_registry_covers_qnn_2_47_to_2_51_with_pins():
    assert list(sdks.RELEASES) == ["qnn-2.47", "qnn-2.48", "qnn-2.49", "qnn-2.50", "qnn-2.51"]
    assert sdks.release("qnn-2.47").requirements() == [
        "onnxruntime-qnn==2.3.0",
        "onnxruntime==1.24.2",
        f"numpy=={sdks.NUMPY_VERSION}",
    ]
    assert sdks.release("qnn-2.51").onnxruntime_qnn == "2.7.0"
    with pytest.raises(sdks.SdkError, match=r"unknown SDK 'qnn-9.9'; known: qnn-2.47, .*qnn-2.51"):
        sdks.release("qnn-9.9")
    with pytest.raises(sdks.SdkError, match="ids look like qnn-2.51"):
        sdks.release("2.51")


def test_core_version_is_read_from_the_library(tmp_path):
    lib = tmp_path / "libQnnHtp.so"
    lib.write_bytes(b"junk AISW_VERSION: 2.49.40\x00junk")
    assert sdks.qnn_core_version(lib) == "2.49.40" and sdks.sdk_id("2.49.40") == "qnn-2.49"
    lib.write_bytes(b"no version here, and a longer file so the size changes")
    assert sdks.qnn_core_version(lib) is None  # re-read after the file changed, not served from the cache
    assert sdks.sdk_id(None) is None


def test_listing_reads_installed_envs_and_counts_the_suites_own(cache):
    _fake_env(cache, "qnn-2.48", "2.48.40")
    _fake_env(cache, "qnn-2.50", "2.50.40", manifest=False)  # no manifest: a half-built env is not installed
    entries = {e["id"]: e for e in sdks.listing()}
    assert set(sdks.RELEASES) <= set(entries)
    for entry in entries.values():
        assert {"id", "installed", "qnn_core_version", "onnxruntime_version", "path"} <= set(entry)
    assert entries["qnn-2.48"]["installed"] and entries["qnn-2.48"]["qnn_core_version"] == "2.48.40"
    assert entries["qnn-2.48"]["path"] == str(cache / "sdks" / "qnn-2.48")
    assert not entries["qnn-2.50"]["installed"] and entries["qnn-2.50"]["qnn_core_version"] is None
    own = sdks.current_env()
    if own is not None:  # the suite's own onnxruntime-qnn is an installed SDK, named by its library
        assert entries[own.id]["installed"] and entries[own.id]["source"] == "environment"
        assert sdks.find(own.id).python == sys.executable


def test_install_builds_atomically_and_checks_the_core_version(cache, monkeypatch):
    commands: list[list[str]] = []
    core = {"value": "2.48.40"}

    def fake_run(command: list[str], what: str, log: Path) -> None:
        commands.append(command)
        if command[1:3] == ["-m", "venv"]:
            env = Path(command[3])
            (env / "bin").mkdir(parents=True)
            os.symlink(sys.executable, env / "bin" / "python")
        else:
            env = Path(command[0]).parent.parent
            lib = env / "lib" / "python3.11" / "site-packages" / "onnxruntime_qnn"
            lib.mkdir(parents=True)
            (lib / "libQnnHtp.so").write_bytes(b"AISW_VERSION: " + core["value"].encode())

    monkeypatch.setattr(sdks, "_run", fake_run)
    env = sdks.install("qnn-2.48")
    assert all(isinstance(c, list) for c in commands)  # argument lists, never shell strings
    assert commands[1][-3:] == sdks.release("qnn-2.48").requirements()
    assert env.qnn_core_version == "2.48.40" and env.source == "cache"
    manifest = json.loads((cache / "sdks" / "qnn-2.48" / sdks.MANIFEST).read_text())
    assert manifest["qnn_core_version"] == "2.48.40" and manifest["onnxruntime_qnn"] == "2.4.0"
    assert sdks.install("qnn-2.48") == env and len(commands) == 2  # installed: nothing runs again
    core["value"] = "2.51.0"  # a wheel that holds another release than the table says
    with pytest.raises(sdks.SdkError, match=r"holds QNN core 2.51.0 \(qnn-2.51\), not qnn-2.49"):
        sdks.install("qnn-2.49")
    assert not (cache / "sdks" / "qnn-2.49").exists()
    assert not [p for p in (cache / "sdks").iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_cli_sdk_list_and_path(cache):
    _fake_env(cache, "qnn-2.47", "2.47.0")
    runner = CliRunner()
    listed = runner.invoke(main, ["sdk", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    entries = {e["id"]: e for e in json.loads(listed.output)["sdks"]}
    assert entries["qnn-2.47"]["installed"] and entries["qnn-2.47"]["qnn_core_version"] == "2.47.0"
    text = runner.invoke(main, ["sdk", "list"])
    assert "qnn-2.47   installed  QNN core 2.47.0" in text.output
    path = runner.invoke(main, ["sdk", "path", "qnn-2.47"])
    python, lib_dir = path.output.splitlines()
    assert python == str(cache / "sdks" / "qnn-2.47" / "bin" / "python") and lib_dir.endswith("onnxruntime_qnn")
    missing = runner.invoke(main, ["sdk", "path", "qnn-2.48"])
    assert missing.exit_code == 1
    assert "SDK qnn-2.48 is not installed (run: zoocompat sdk install qnn-2.48)" in missing.output
    assert sdks.not_installed_reason("qnn-9.99").startswith("SDK qnn-9.99 is not a release this suite knows (qnn-2.47")
    unknown = runner.invoke(main, ["sdk", "path", "qnn-7.0"])
    assert unknown.exit_code == 2 and "unknown SDK" in unknown.output


def test_a_cell_on_an_uninstalled_sdk_is_skipped_with_the_install_command(cache, tmp_path):
    cards, _ = discover([ZOO])
    runner = CellRunner(registry(), cards, ArtifactCache(cache), ReportDir(tmp_path / "report"))
    name = sorted(cards)[0]
    cell = Cell(name, cards[name].frontend, "htp", "w8a8", "ptq", "qnn-2.47")
    record = runner.run_cell(cell)
    assert record.status == "skip" and record.sdk == "qnn-2.47" and record.id.endswith("-qnn-2.47")
    assert record.reason == "unavailable: SDK qnn-2.47 is not installed (run: zoocompat sdk install qnn-2.47)"
    assert HtpBackend().describe("qnn-2.47")["qnn_core_version"] is None


def test_several_sdks_side_by_side_only_on_sdk_bound_backends():
    cards, _ = discover([ZOO])
    selection = Selection(models={"mtcnn_onet"}, precisions={"w8a8"}, sdk="qnn-2.47, qnn-2.51")
    backends = {"cpu": ("fp32", "w8a8"), "htp": ("fp16", "w8a8")}
    cells = build_cells(cards.values(), backends, {"aimet_onnx": ("ptq",)}, selection, sdk_backends=["htp"])
    assert [c.id for c in cells] == [
        "mtcnn_onet-pytorch-cpu-w8a8-ptq",
        "mtcnn_onet-pytorch-htp-w8a8-ptq-qnn-2.47",
        "mtcnn_onet-pytorch-htp-w8a8-ptq-qnn-2.51",
    ]
    assert Selection().sdk_ids() == [None]


def test_the_runner_loads_the_chosen_releases_library(tmp_path):
    """The real HTP runner under qnn-2.47's own environment (.ci/run installs it; skipped elsewhere when it is not)."""
    env = sdks.find("qnn-2.47")
    if env is None or env.source != "cache":
        pytest.skip(sdks.not_installed_reason("qnn-2.47"))
    model = _conv_relu_det(tmp_path / "m.onnx", with_det=False)
    x = np.random.default_rng(1).standard_normal((2, 1, 4, 4)).astype(np.float32)
    backend = HtpBackend()
    assert backend.available("qnn-2.47") is None
    result = backend.compile(model, "fp16", "qnn-2.47", tmp_path / "w").run({"x": x})
    loaded = result.info["runtime"]
    assert loaded["qnn_core_version"] == env.qnn_core_version == "2.47.0"
    assert loaded["python"].startswith(env.root) and loaded["onnxruntime"] == env.onnxruntime_version
    assert result.info["providers"][0] == "QNNExecutionProvider" and result.placement.fallback_ops == {}
    assert backend.describe("qnn-2.47")["sdk"] == "qnn-2.47"


def test_a_local_qnn_sdk_is_listed_and_serves_its_library(cache, tmp_path, monkeypatch):
    """Listing plumbing only: a file holding an AISW_VERSION string stands in for the SDK's libQnnHtp.so."""
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    assert sdks.local_qnn() is None and "qnn-2.30" not in {e["id"] for e in sdks.listing()}
    root = tmp_path / "qairt" / "2.30.0.250109"
    (root / "lib" / "x86_64-linux-clang").mkdir(parents=True)
    library = root / "lib" / "x86_64-linux-clang" / "libQnnHtp.so"
    library.write_bytes(b"\x7fELF AISW_VERSION: 2.30.0\x00")
    monkeypatch.setenv("QNN_SDK_ROOT", str(root))
    entries = {e["id"]: e for e in sdks.listing()}
    assert entries["qnn-2.30"] == {
        "id": "qnn-2.30",
        "installed": True,
        "qnn_core_version": "2.30.0",
        "onnxruntime_version": entries["qnn-2.30"]["onnxruntime_version"],  # the suite's own onnxruntime
        "onnxruntime_qnn_version": entries["qnn-2.30"]["onnxruntime_qnn_version"],
        "path": str(root),
        "source": "local",
    }
    env = sdks.find("qnn-2.30")
    assert env.htp_library == library and env.python == sys.executable and env.host
    runner = HtpBackend().runner(Path("m.onnx"), "w8a8", "qnn-2.30", tmp_path / "w")
    assert runner.provider_options["backend_path"] == str(library) and runner.expected_core_version == "2.30.0"
    assert HtpBackend().describe("qnn-2.30")["sdk_source"] == "local"
    text = CliRunner().invoke(main, ["sdk", "list"]).output
    assert "qnn-2.30   installed  QNN core 2.30.0" in text and "(local)" in text
    library.unlink()  # a device-only SDK: listed from its aarch64 library, not runnable on the host
    (root / "lib" / "aarch64-android").mkdir(parents=True)
    (root / "lib" / "aarch64-android" / "libQnnHtp.so").write_bytes(b"AISW_VERSION: 2.30.0\x00")
    assert not sdks.find("qnn-2.30").host
    assert "device libraries only" in HtpBackend().available("qnn-2.30")


def test_a_local_snpe_sdk_is_listed_by_its_version(cache, tmp_path, monkeypatch):
    monkeypatch.delenv("SNPE_ROOT", raising=False)
    assert sdks.local_snpe() is None and not [e for e in sdks.listing() if e["id"].startswith("snpe-")]
    root = tmp_path / "snpe-sdk" / "2.22.0.240425"
    root.mkdir(parents=True)
    monkeypatch.setenv("SNPE_ROOT", str(root))
    assert sdks.local_snpe() == sdks.LocalSnpe("snpe-2.22", str(root), "2.22.0")  # from the folder's name
    (root / "lib" / "x86_64-linux-clang").mkdir(parents=True)
    (root / "lib" / "x86_64-linux-clang" / "libSNPE.so").write_bytes(b"AISW_VERSION: 2.23.0\x00")
    assert sdks.local_snpe().id == "snpe-2.23"  # the library's version wins over the folder's name
    entry = [e for e in sdks.listing() if e["id"] == "snpe-2.23"][0]
    assert entry["installed"] and entry["source"] == "local" and entry["path"] == str(root)
    assert "snpe-2.23  installed  SNPE 2.23.0" in CliRunner().invoke(main, ["sdk", "list"]).output


def test_sdk_install_of_a_real_release_gives_its_own_working_environment():
    """``zoocompat sdk install qnn-2.47`` for real (.ci/run installs it from the wheel store; here it is verified):
    the release's own python, onnxruntime-qnn and libQnnHtp.so, whose embedded core version is the release's, and
    a second install is a no-op that says so.
    """
    env = sdks.find("qnn-2.47")
    if env is None or env.source != "cache":
        pytest.skip(sdks.not_installed_reason("qnn-2.47"))
    done = CliRunner().invoke(main, ["sdk", "install", "qnn-2.47"])
    assert done.exit_code == 0, done.output
    assert "QNN core 2.47.0 (read from" in done.output and "started" not in done.output  # nothing installed again
    listed = json.loads(CliRunner().invoke(main, ["sdk", "list", "--json"]).output)
    entry = next(s for s in listed["sdks"] if s["id"] == "qnn-2.47")
    assert entry["installed"] and entry["qnn_core_version"] == "2.47.0" and entry["onnxruntime_qnn_version"] == "2.3.0"
    python = Path(entry["path"]) / "bin" / "python"
    probe = "import onnxruntime, onnxruntime_qnn; print(onnxruntime.__version__, onnxruntime.__file__)"
    ran = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
    version, where = ran.stdout.split()
    assert version == "1.24.2" and where.startswith(entry["path"])  # its own onnxruntime, not this environment's
    libraries = list(Path(entry["path"]).glob("lib/python3.11/site-packages/onnxruntime_qnn/libQnnHtp.so"))
    assert len(libraries) == 1 and sdks.qnn_core_version(libraries[0]) == "2.47.0"
