"""Proof by an out-of-tree plugin: a separate distribution adds a backend, a precision and a metric.

``tests/oot_plugin/`` is its own distribution (``pyproject.toml``, one module,
one ``zoocompat`` entry point) with the ``npu9000`` backend (onnxruntime's CPU
EP with its own settings, run through :class:`zoocompat.api.runner.Runner`),
the ``w4a16`` precision (quantized by the built-in ``aimet_onnx``) and the
``top2`` metric. It is installed into a temporary folder (never into the
suite's environment, whose plugin listing other tests check) and put on
``PYTHONPATH`` of subprocesses: ``zoocompat plugins``, the conformance matrix,
``table``, ``gate``, known failures and ``repro`` all take its names.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.corpus.digits_linear import build_onnx, card, fit_weights

ROOT = Path(__file__).parent.parent
PLUGIN = Path(__file__).parent / "oot_plugin"
ZOOCOMPAT = [sys.executable, "-m", "zoocompat"]
# one default-zoo model (the backend and precision) and one card of the test's own (the metric)
MODELS = ("mtcnn_onet", "oot_digits")
ONET_NPU = ("mtcnn_onet-pytorch-npu9000-fp32-none", "mtcnn_onet-pytorch-npu9000-w4a16-ptq")
DIGITS_NPU = ("oot_digits-onnx-npu9000-fp32-none", "oot_digits-onnx-npu9000-w4a16-ptq")
VERDICTS = {"pass", "fail", "inconclusive"}


def _digits_card(folder: Path) -> None:
    """An ONNX card scored with the plugin's ``top2``: the corpus's linear digits classifier beside its card."""
    build_onnx(folder / "oot_digits.onnx", *fit_weights())
    data = card("oot_digits", "oot_digits.onnx")
    data["metric"].update(name="top2", fp32_reference=0.9)
    data["dataset"]["evaluation"] = 200
    (folder / "oot_digits.yaml").write_text(yaml.safe_dump(data))


@pytest.fixture(scope="module")
def oot(tmp_path_factory) -> dict:
    """The plugin installed into a temporary folder, a card folder, and one matrix run with the plugin's names."""
    tmp = tmp_path_factory.mktemp("oot")
    source, target = tmp / "source", tmp / "site"
    shutil.copytree(PLUGIN, source)  # build from a copy: setuptools writes build/ and *.egg-info beside the source
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-compile", "-q"]
    done = subprocess.run([*install, "--target", str(target), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (target / "zoocompat_npu9000.py").is_file()
    cards = tmp / "cards"
    cards.mkdir()
    _digits_card(cards)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))}
    report = tmp / "report"
    selection = ["--zoo", str(cards), "--zoo-models", ",".join(MODELS), "--backends", "cpu,npu9000"]
    selection += ["--precisions", "fp32,w4a16"]
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "conformance/", *selection]
    run = subprocess.run(
        [*command, "--zoo-report", str(report)], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600
    )
    return {"env": env, "tmp": tmp, "cards": cards, "report": report, "run": run, "selection": selection}


def _cli(oot: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*ZOOCOMPAT, *args], cwd=oot["tmp"], capture_output=True, text=True, env=oot["env"])


def _cells(report: Path) -> dict[str, dict]:
    return {cell["id"]: cell for cell in json.loads((report / "results.json").read_text())["cells"]}


def test_plugins_lists_the_out_of_tree_backend_precision_and_metric(oot):
    done = _cli(oot, "plugins")
    assert done.returncode == 0, done.stderr
    rows = {tuple(line.split()[:2]): line for line in done.stdout.splitlines() if "zoocompat-npu9000" in line}
    assert set(rows) == {("backend", "npu9000"), ("precision", "w4a16"), ("metric", "top2")}, done.stdout


def test_matrix_collects_and_runs_the_plugins_cells(oot):
    run, cells = oot["run"], _cells(oot["report"])
    output = run.stdout[-3000:] + run.stderr[-2000:]
    expected = {
        "mtcnn_onet-pytorch-cpu-fp32-none",
        *ONET_NPU,
        "oot_digits-onnx-cpu-fp32-none",
        *DIGITS_NPU,
    }
    assert set(cells) == expected, output
    for cell_id, cell in cells.items():
        assert cell["status"] in VERDICTS, f"{cell_id}: {cell['status']} {cell.get('reason')}\n{output}"
    for cell_id in (*ONET_NPU, *DIGITS_NPU):  # every node ran on the plugin's runtime
        coverage = cells[cell_id]["coverage"]
        assert coverage["target"] == "npu9000" and coverage["target_nodes"] == coverage["total_nodes"] > 0
    digits = cells[DIGITS_NPU[0]]
    assert digits["status"] == "pass" and digits["metric"]["name"] == "top2"
    assert digits["metric"]["value"] >= 0.9  # top2 of the centroid classifier on 200 held-out digits
    # the w4a16 cells ran real quantized models (aimet_onnx, 4-bit weights): not bit-identical to fp32
    for cell_id in (ONET_NPU[1], DIGITS_NPU[1]):
        assert cells[cell_id]["timing"]["quantize_s"] is not None
        fidelity = cells[cell_id]["fidelity"]
        assert fidelity["sqnr_vs_fp32_db"] < 60, fidelity
        # the same QDQ model on the cpu reference agrees: above 40 dB, or bit-identical (None = identical outputs)
        assert fidelity["sqnr_vs_cpu_db"] is None or fidelity["sqnr_vs_cpu_db"] > 40, fidelity
    assert run.returncode == (0 if all(c["status"] != "fail" for c in cells.values()) else 1), output


def test_table_shows_the_plugins_backend_and_precision(oot):
    done = _cli(oot, "table", str(oot["report"] / "results.json"), "--format", "csv")
    assert done.returncode == 0, done.stderr
    assert "npu9000" in done.stdout and "w4a16" in done.stdout, done.stdout
    markdown = _cli(oot, "table", str(oot["report"] / "results.json"))
    assert markdown.returncode == 0 and "npu9000" in markdown.stdout, markdown.stdout + markdown.stderr


def test_gate_compares_the_plugins_cells(oot):
    results = oot["report"] / "results.json"
    same = _cli(oot, "gate", str(results), str(results), "--json")
    assert same.returncode == 0, same.stdout + same.stderr
    assert json.loads(same.stdout)["verdict"] == "pass"
    # the candidate loses the npu9000 fp32 cell's pass: a regression the gate must name
    candidate = json.loads(results.read_text())
    for cell in candidate["cells"]:
        if cell["id"] == DIGITS_NPU[0]:
            cell.update(status="fail", category="accuracy", reason="made worse by this test")
    worse = oot["tmp"] / "worse.json"
    worse.write_text(json.dumps(candidate))
    gated = _cli(oot, "gate", str(results), str(worse), "--json")
    assert gated.returncode == 1, gated.stdout + gated.stderr
    assert DIGITS_NPU[0] in json.dumps(json.loads(gated.stdout)["regressions"])


def _run_with_known_failures(oot: dict, backend: str, *extra: str) -> tuple[subprocess.CompletedProcess, Path]:
    known = oot["tmp"] / f"known-{backend}.yaml"
    entry = {"model": "oot_digits", "backend": backend, "precision": "fp32", "category": "accuracy", "reason": "test"}
    known.write_text(yaml.safe_dump({"known_failures": [entry]}))
    report = oot["tmp"] / f"report-known-{backend}"
    selection = ["--zoo", str(oot["cards"]), "--zoo-models", "oot_digits", "--backends", "npu9000"]
    selection += ["--precisions", "fp32"]
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "conformance/", *selection, *extra]
    command += ["--known-failures", str(known), "--zoo-report", str(report)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=oot["env"], timeout=600), report


def test_known_failures_name_the_plugins_backend(oot):
    # an entry naming npu9000 is accepted and matched: the cell passes (outputs identical to fp32's), so it is an
    # xpass, and its test fails with "fixed: remove this entry"
    done, report = _run_with_known_failures(oot, "npu9000")
    output = done.stdout[-3000:] + done.stderr[-2000:]
    assert done.returncode == 1, output
    assert "fixed" in done.stdout, output
    assert _cells(report)[DIGITS_NPU[0]]["status"] == "xpass", output
    # a backend no plugin registers is a usage error that names it
    typo, _ = _run_with_known_failures(oot, "npu9001", "--collect-only")
    assert typo.returncode == 4 and "npu9001" in typo.stdout + typo.stderr, typo.stdout + typo.stderr


def test_repro_writes_a_folder_for_the_plugins_cell(oot):
    out = oot["tmp"] / "repro"
    results = str(oot["report"] / "results.json")
    options = ["--results", results, "--out", str(out), "--problem", "crash", "--no-verify"]
    done = _cli(oot, "repro", ONET_NPU[1], *options)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "repro.py").is_file() and (out / "model.onnx").is_file(), sorted(p.name for p in out.iterdir())
    assert ONET_NPU[1] in (out / "README.md").read_text()
