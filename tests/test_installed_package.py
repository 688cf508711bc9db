"""Packaging: an installed zoocompat runs the matrix without this checkout; pins live in constraints.txt.

The slow test builds and installs this repository (``pip install .``, not
editable) into a fresh virtual environment and runs ``pytest -p zoocompat --zoo
DIR`` from a folder with no conftest and no ``conformance/``. The ML stack is
not installed again: a ``.pth`` file makes the suite's site-packages visible to
the fresh environment. A folder a ``.pth`` file adds does not run its own
``.pth`` files, so the suite's editable install is not loaded there and the
fresh copy is the zoocompat that runs (checked).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

from tests.corpus.digits_linear import build_onnx, card, fit_weights

ROOT = Path(__file__).parent.parent
# what the copy of the repository leaves out: environments, caches, reports, build output
_NOT_SHIPPED = (".git", ".venv", ".tox", "reports", "build", "*.egg-info", "__pycache__", ".*cache*", ".hypothesis")


def _pins() -> dict[str, str]:
    """constraints.txt as ``{normalized name: version}``."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def test_core_dependencies_are_ranges_and_constraints_pin_every_requirement():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = [Requirement(r) for r in project["dependencies"]]
    assert {"pytest", "pytest-xdist", "pluggy"} <= {r.name for r in core}  # the core imports them
    exact = [str(r) for r in core if any(spec.operator == "==" for spec in r.specifier)]
    assert not exact, f"core dependencies take ranges; exact pins belong in constraints.txt: {exact}"
    assert {"stack", "dev"} <= set(project["optional-dependencies"])
    pins = _pins()
    every = core + [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    for requirement in every:
        version = pins.get(re.sub(r"[-_.]+", "-", requirement.name).lower())
        assert version is not None, f"constraints.txt does not pin {requirement.name}"
        assert requirement.specifier.contains(version), f"constraints.txt pins {requirement.name}=={version}"


def _fresh_venv(tmp: Path) -> Path:
    """A venv without pip (pip runs from the suite's environment with ``--python``) that sees the suite's
    site-packages through a ``.pth`` file; returns its python.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp / "venv")], check=True)
    python = tmp / "venv" / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "zoocompat_suite_stack.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_pip_installed_package_runs_a_cards_cpu_cells_outside_the_checkout(tmp_path):
    python = _fresh_venv(tmp_path)
    source = tmp_path / "source"  # build from a copy: setuptools writes build/ and *.egg-info into the source
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*_NOT_SHIPPED))
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-build-isolation"]
    done = subprocess.run([*install, "-q", str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    shutil.rmtree(source)  # nothing of a checkout is left to run from
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS", "VIRTUAL_ENV")}
    where = subprocess.run(
        [str(python), "-c", "import zoocompat, zoocompat_plugins, zoocompat_zoo; print(zoocompat.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(tmp_path / "venv"), where.stdout  # the fresh copy, not ROOT

    cards, work = tmp_path / "my_cards", tmp_path / "work"
    cards.mkdir()
    work.mkdir()
    build_onnx(cards / "my_digits.onnx", *fit_weights())
    (cards / "my_digits.yaml").write_text(yaml.safe_dump(card("my_digits", "my_digits.onnx")))
    command = [str(python), "-m", "pytest", "-p", "zoocompat", "-p", "no:cacheprovider", "-q"]
    command += ["--zoo", str(cards), "--zoo-models", "my_digits", "--backends", "cpu", "--precisions", "fp32,w8a8"]
    run = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env, timeout=300)
    output = run.stdout[-3000:] + run.stderr[-2000:]
    assert run.returncode == 0, output
    results = json.loads((work / "reports" / "latest" / "results.json").read_text())
    cells = {cell["id"]: cell for cell in results["cells"]}
    assert set(cells) == {"my_digits-onnx-cpu-fp32-none", "my_digits-onnx-cpu-w8a8-ptq"}, output
    assert cells["my_digits-onnx-cpu-fp32-none"]["status"] == "pass", output
    assert all(cell["status"] in ("pass", "inconclusive") for cell in cells.values()), output
    assert cells["my_digits-onnx-cpu-fp32-none"]["metric"]["value"] >= 0.8
    assert "my_digits" in (work / "reports" / "latest" / "support.md").read_text()
