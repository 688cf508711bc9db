"""Multi-host: the matrix on xdist workers reached over ssh (execnet gateways), here over loopback.

A test starts OpenSSH's ``sshd`` on 127.0.0.1 only, on a free port, with a host
key and a client key generated for the test (no password login, nothing
outside the test's folder), and runs a tiny cpu-only matrix on two workers
started through ``--tx 2*ssh=root@127.0.0.1//python=...//chdir=...``. xdist
always rsyncs pytest itself into a non-popen worker's ``chdir``, so the
workers get a scratch folder (never the checkout) and ``--rsyncdir`` sends
``conformance/`` and the suite's packages (``zoocompat``, ``plugins``,
``zoo``), which the workers import from there, ahead of the installed
environment: they run the controller's code, as a runner's own checkout would. See
docs/performance.md for running on a fleet of runners or devices.

Skips, saying why, when ``sshd`` / ``ssh`` / ``ssh-keygen`` are not installed
(Debian: ``apt-get install openssh-server``) or sshd cannot start here.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.corpus.digits_linear import build_onnx, card, fit_weights

pytestmark = pytest.mark.multihost
ROOT = Path(__file__).parent.parent
SSHD = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if Path(p).exists()), None)
MODELS = ("digits_a", "digits_b")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def loopback_sshd(tmp_path_factory):
    """``(ssh_config path, user)`` of an sshd on 127.0.0.1 that accepts only a key made for this test."""
    missing = [
        tool
        for tool, path in (("sshd", SSHD), ("ssh", shutil.which("ssh")), ("ssh-keygen", shutil.which("ssh-keygen")))
        if not path
    ]  # noqa: E501
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian: apt-get install openssh-server openssh-client)")
    root = tmp_path_factory.mktemp("sshd")
    root.chmod(0o700)
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)], check=True)
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    (root / "authorized_keys").chmod(0o600)
    user = getpass.getuser()
    port = _free_port()
    (root / "sshd_config").write_text(
        "\n".join(
            [
                "ListenAddress 127.0.0.1",
                f"Port {port}",
                f"HostKey {root / 'host_key'}",
                f"AuthorizedKeysFile {root / 'authorized_keys'}",
                f"PidFile {root / 'sshd.pid'}",
                f"AllowUsers {user}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "X11Forwarding no",
                "PermitUserEnvironment no",
                "",
            ]
        )
    )
    (root / "ssh_config").write_text(
        "\n".join(
            [
                "Host 127.0.0.1",
                f"  Port {port}",
                f"  IdentityFile {root / 'client_key'}",
                "  IdentitiesOnly yes",
                "  StrictHostKeyChecking no",
                "  UserKnownHostsFile /dev/null",
                "  LogLevel ERROR",
                "  BatchMode yes",
                "",
            ]
        )
    )
    privsep = Path("/run/sshd")  # Debian's sshd insists on its privilege-separation folder
    if not privsep.is_dir():
        try:
            privsep.mkdir(mode=0o755, parents=True)
        except OSError as error:
            pytest.skip(f"sshd needs {privsep}, which cannot be created here ({error.strerror})")
    log = open(root / "sshd.log", "wb")  # noqa: SIM115  # closed below, after sshd ends
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], stdout=log, stderr=log)
    try:
        if not _wait_for_port(port, process):
            pytest.skip(f"sshd did not start on 127.0.0.1:{port}: {(root / 'sshd.log').read_text()[-500:]}")
        yield root / "ssh_config", user
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_ssh_reaches_the_loopback_host(loopback_sshd):
    config, user = loopback_sshd
    done = subprocess.run(
        ["ssh", "-F", str(config), f"{user}@127.0.0.1", sys.executable, "-c", "'import sys; print(sys.prefix)'"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == sys.prefix


def test_matrix_runs_on_ssh_workers(loopback_sshd, tmp_path):
    config, user = loopback_sshd
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    weights, bias = fit_weights()
    for name in MODELS:
        build_onnx(zoo / f"{name}.onnx", weights, bias)
        (zoo / f"{name}.yaml").write_text(yaml.safe_dump(card(name, f"{name}.onnx")))
    report = tmp_path / "report"
    cache = tmp_path / "cache"
    remote = tmp_path / "remote"  # the workers' folder: xdist rsyncs pytest itself and --rsyncdir there
    remote.mkdir()
    # ssh passes no environment: what a worker needs goes into the spec (env:NAME=value, set once the
    # worker's python runs, so not PYTHONPATH); the suite's packages are rsynced into the workers' folder,
    # which comes first on their sys.path, so they run this checkout's code as the controller does
    spec = (
        f"2*ssh={user}@127.0.0.1//ssh_config={config}//python={sys.executable}//chdir={remote}"
        f"//env:ZOOCOMPAT_CACHE={cache}"
    )
    rsync = [f"--rsyncdir={ROOT / folder}" for folder in ("conformance", "zoocompat", "plugins", "zoo")]
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]  # the plugin: its pytest11 entry point
    command += [str(ROOT / "conformance"), "--tx", spec, *rsync, "--dist", "loadgroup"]
    # xdist rewrites every argument that is an existing path relative to an rsync root: path options take "="
    command += [f"--zoo={zoo}", f"--zoo-report={report}", "--backends", "cpu"]
    command += ["--zoo-models", ",".join(MODELS), "--precisions", "fp32,w8a8"]
    env = dict(os.environ, ZOOCOMPAT_CACHE=str(cache))
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "4 passed" in done.stdout
    for folder in ("conformance", "zoocompat", "plugins"):  # what the workers ran: the rsynced copies
        assert (remote / folder / "__init__.py").is_file() or (remote / folder / "test_matrix.py").is_file()
    results = json.loads((report / "results.json").read_text())
    assert sorted(c["id"] for c in results["cells"]) == sorted(
        f"{m}-onnx-cpu-{p}" for m in MODELS for p in ("fp32-none", "w8a8-ptq")
    )
    assert all(c["status"] == "pass" for c in results["cells"])
    assert any((cache / "convert").iterdir())  # the workers used the cache named in the spec
