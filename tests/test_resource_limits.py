"""Resource budgets: sample and split sizes checked from a card's shapes, and the workers' memory limit.

The budgets are checked before any data is built, so a card whose shapes would
take the worker down is refused in its own cell, naming the field and the
limit. A cell that still allocates past the worker's limit (``RLIMIT_AS``)
gets ``MemoryError``, recorded as ``error / resource``, and the run goes on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tests.corpus.digits_linear import build_onnx, card, digits_runner, fit_weights
from zoocompat.cli import main
from zoocompat.model.budgets import DEFAULT_SPLIT_MB, budget_problems, limits_for
from zoocompat.run.matrix import Cell

pytestmark = pytest.mark.bad_input
ROOT = Path(__file__).parent.parent


def _huge(name: str = "huge", **dataset) -> dict:
    """The digits card with a symbolic-dims-sized input of 8192 x 8192 (256 MiB a sample, float32)."""
    data = card(name)
    data["inputs"][0].update(shape=[1, 8192, 8192, 1])
    data["inputs"][0]["preprocess"]["resize"] = [8192, 8192]
    data["dataset"].update(evaluation=100, **dataset)
    return data


def _load(tmp_path: Path, data: dict) -> object:
    return digits_runner(tmp_path, data)[1]


def _matrix(
    tmp_path: Path, zoo: dict[str, dict], *extra: str, workers: str
) -> tuple[subprocess.CompletedProcess, dict]:
    """The digits model and the cards ``zoo`` (name: card) in a folder, and ``pytest conformance/`` on their cpu
    fp32 cells in a subprocess; returns the run and its results.
    """
    folder = tmp_path / "zoo"
    folder.mkdir()
    build_onnx(folder / "model.onnx", *fit_weights())
    for name, data in zoo.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(data))
    report = tmp_path / "report"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "conformance/", "-n", workers]
    command += ["--zoo", str(folder), "--zoo-report", str(report), "--backends", "cpu", "--precisions", "fp32"]
    command += ["--zoo-models", ",".join(zoo), *extra]
    env = dict(os.environ, ZOOCOMPAT_CACHE=str(tmp_path / "cache"))
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, env=env)
    return done, json.loads((report / "results.json").read_text())


def test_split_and_sample_sizes_are_checked_from_the_shapes(tmp_path):
    loaded = _load(tmp_path, _huge())
    [problem] = budget_problems(loaded, limits_for(loaded))
    assert problem.startswith("dataset.evaluation: 100 samples of 256.0 MiB take 25.0 GiB")
    assert f"over the limit of {DEFAULT_SPLIT_MB:g} MiB per split (the default)" in problem
    assert budget_problems(loaded, limits_for(loaded, split_mb=30_000)) == []  # the command line raises it
    [sample] = budget_problems(loaded, limits_for(loaded, sample_mb=100))
    assert sample.startswith("inputs: one sample takes 256.0 MiB ('input' (8192, 8192, 1) float32 = 256.0 MiB)")
    assert "(--max-sample-mb)" in sample
    own = _load(tmp_path, _huge("own", max_split_mb=20))
    [calibration, evaluation] = budget_problems(own, limits_for(own))
    assert calibration.startswith("dataset.calibration: 20 samples") and "(dataset.max_split_mb)" in calibration
    assert evaluation.startswith("dataset.evaluation: 100 samples")


def test_zoo_check_refuses_the_card_before_building_any_data(tmp_path):
    _load(tmp_path, _huge())
    done = CliRunner().invoke(main, ["zoo", "check", str(tmp_path / "huge.yaml")])
    assert done.exit_code != 0 and "dataset.evaluation: 100 samples of 256.0 MiB take 25.0 GiB" in done.output


def test_a_cell_over_its_budget_fails_alone_before_any_data(tmp_path):
    runner, loaded = digits_runner(tmp_path, _huge())
    record = runner.run_cell(Cell(loaded.name, "onnx", "cpu", "fp32", "none"))
    assert record.status == "fail" and record.category == "bad_input", record.reason
    assert "huge.yaml: the card's data would not fit" in record.reason and "25.0 GiB" in record.reason
    assert not (tmp_path / "cache" / "data").exists()  # refused from the shapes: nothing was built
    assert (tmp_path / "r" / "cells" / f"{record.id}.json").is_file()


def test_a_cell_over_the_workers_memory_limit_is_a_resource_error_and_the_run_goes_on(tmp_path):
    hog = card("memory_hog", "model.onnx")  # a pytorch card: the architecture asks for 6 GiB before reading it
    hog.update(frontend="pytorch", architecture="tests.corpus.memory_hog:MemoryHog")
    zoo = {"digits_ok": card("digits_ok"), "memory_hog": hog}
    done, results = _matrix(tmp_path, zoo, "--worker-memory-gb", "4", workers="1")
    cells = {c["id"]: c for c in results["cells"]}
    assert cells["digits_ok-onnx-cpu-fp32-none"]["status"] == "pass", done.stdout[-2000:]
    hogged = cells["memory_hog-pytorch-cpu-fp32-none"]
    assert hogged["status"] == "error" and hogged["category"] == "resource", hogged["reason"]
    assert "a limit of 4.0 GiB of address space, --worker-memory-gb" in hogged["reason"]
    assert "Traceback" not in hogged["reason"] and "6.00 GiB" in hogged["reason"]


def test_zoo_models_naming_an_invalid_card_shows_its_error_and_runs_the_rest(tmp_path):
    broken = card("mymodel")
    broken["tolerance"] = {"default": -5}
    done, results = _matrix(tmp_path, {"mymodel": broken, "digits_ok": card("digits_ok")}, workers="0")
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-1000:]  # the card error fails; not a usage error
    assert "unknown mymodel" not in done.stdout + done.stderr
    assert "tolerance.default" in done.stdout  # the real validation error is shown
    assert [c["id"] for c in results["cells"]] == ["digits_ok-onnx-cpu-fp32-none"]
    assert results["cells"][0]["status"] == "pass"
    assert [Path(e["card"]).name for e in results["card_errors"]] == ["mymodel.yaml"]


def test_an_unexpected_exception_is_a_one_line_reason_with_the_traceback_kept_aside(tmp_path, monkeypatch):
    """A bug inside a cell (here a TypeError from the data stage) is recorded as error / crash whose reason
    names the exception and where it was raised, never a Python traceback; the traceback is in a file.
    """
    runner, loaded = digits_runner(tmp_path, card("digits_bug"))

    def broken(card):
        raise TypeError("Cannot handle this data type: (1, 1, 3), <f4")

    monkeypatch.setattr(runner, "card_data", broken)
    record = runner.run_cell(Cell(loaded.name, "onnx", "cpu", "fp32", "none"))
    assert record.status == "error" and record.category == "crash"
    assert record.reason.startswith("unexpected TypeError in test_resource_limits.py:")
    assert "Traceback" not in record.reason and "\n" not in record.reason and 'File "' not in record.reason
    assert "Traceback (most recent call last)" in Path(record.artifacts["traceback"]).read_text()
