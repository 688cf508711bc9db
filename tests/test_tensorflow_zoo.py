"""The tensorflow zoo: its cards, model folders as sources, and the frontend's two loaders."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from zoocompat.api.cache import ArtifactCache, sha256_file
from zoocompat.api.errors import CellError
from zoocompat.model.cards import load_card, parse_card
from zoocompat.model.sources import resolve_source, sha256_folder, sha256_path

ZOO = Path(__file__).parent.parent / "zoo" / "cards"
TF_CARDS = ("keras_digits_cnn", "keras_mobilenetv2", "keras_savedmodel_mnist")


def _card(folder: Path, source: dict, **changes):
    data = {
        "name": "user_tf",
        "frontend": "tensorflow",
        "source": source,
        "inputs": [{"name": "pixels", "shape": [1, 8, 8, 1], "layout": "NHWC", "preprocess": {"scale": 0.0625}}],
        "outputs": ["probs"],
        "dataset": {"name": "digits", "calibration": 4, "evaluation": 8},
        "metric": {"name": "top1", "output": "probs"},
        **changes,
    }
    return parse_card(data, folder / "card.yaml")


def _folder(root: Path) -> Path:
    folder = root / "my_model"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"graph")
    (folder / "variables" / "variables.index").write_bytes(b"index")
    (folder / "fingerprint.pb").write_bytes(b"print")
    return folder


def test_zoo_has_three_tensorflow_models_with_honest_small_cards():
    cards = {name: load_card(ZOO / f"{name}.yaml") for name in TF_CARDS}
    for card in cards.values():
        assert card.frontend == "tensorflow" and card.source.kind == "recipe"
        assert card.tolerance_for("w8a8") == 0.01 and card.metric.fp32_reference is not None
        assert (
            card.dataset.evaluation >= 100 and card.dataset.max_evaluation == "pool"
        )  # looks grow to every test digit
        assert card.license != "unknown"
    assert cards["keras_mobilenetv2"].smoke == [] and cards["keras_savedmodel_mnist"].smoke == []
    assert cards["keras_mobilenetv2"].inputs[0].shape == [1, 32, 32, 3]


def test_sha256_folder_matches_the_documented_shell_pipeline(tmp_path):
    folder = _folder(tmp_path)
    shell = "find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum"
    done = subprocess.run(["bash", "-c", shell], cwd=folder, capture_output=True, text=True, check=True)
    assert sha256_folder(folder) == done.stdout.split()[0] == sha256_path(folder)
    assert sha256_path(folder / "saved_model.pb") == sha256_file(folder / "saved_model.pb")
    (folder / "variables" / "variables.index").write_bytes(b"changed")
    assert sha256_folder(folder) != done.stdout.split()[0]


def test_file_source_may_name_a_model_folder_pinned_by_its_folder_sha256(tmp_path):
    folder = _folder(tmp_path)
    cache = ArtifactCache(tmp_path / "cache")
    pinned = _card(tmp_path, {"kind": "file", "path": "my_model", "sha256": sha256_folder(folder)})
    assert resolve_source(pinned, cache) == folder.resolve()
    assert resolve_source(_card(tmp_path, {"kind": "file", "path": "my_model/"}), cache) == folder.resolve()
    (folder / "saved_model.pb").write_bytes(b"another graph")
    with pytest.raises(CellError, match="does not match the pinned") as error:
        resolve_source(pinned, cache)
    assert error.value.category == "bad_input"
    with pytest.raises(CellError, match="no such file or folder"):
        resolve_source(_card(tmp_path, {"kind": "file", "path": "missing_model"}), cache)


def test_recipe_may_produce_a_savedmodel_folder(tmp_path, monkeypatch):
    # A recipe that leaves one folder: the source is that folder (the frontend picks the SavedModel loader).
    module = tmp_path / "folder_recipe.py"
    module.write_text(
        textwrap.dedent(
            """
            from pathlib import Path

            def build(out_dir, tag="a"):
                folder = Path(out_dir) / "saved_model"
                (folder / "variables").mkdir(parents=True)
                (folder / "saved_model.pb").write_text(tag)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    card = _card(tmp_path, {"kind": "recipe", "recipe": "folder_recipe:build", "params": {"tag": "b"}})
    path = resolve_source(card, ArtifactCache(tmp_path / "cache"))
    assert path.name == "saved_model" and path.is_dir() and (path / "saved_model.pb").read_text() == "b"


def test_frontend_loads_keras_file_and_savedmodel_folder_to_the_same_outputs(tmp_path):
    keras = pytest.importorskip("keras")
    from zoocompat_plugins.frontends.tensorflow import TensorflowFrontend

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(8, 8, 1), name="pixels"),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.save(tmp_path / "m.keras")
    model.export(str(tmp_path / "m_savedmodel"), format="tf_saved_model", verbose=False)
    frontend = TensorflowFrontend()
    card = _card(tmp_path, {"kind": "file", "path": "m.keras"})
    batch = {"pixels": np.random.default_rng(0).random((3, 8, 8, 1), dtype=np.float32)}
    from_keras = frontend.load(card, tmp_path / "m.keras")
    from_saved = frontend.load(card, tmp_path / "m_savedmodel")
    assert (from_keras.kind, from_saved.kind) == ("keras", "saved_model")
    outputs = [frontend.native_forward(m, card, batch)["probs"] for m in (from_keras, from_saved)]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)
    with pytest.raises(CellError, match="neither a .keras file nor a SavedModel folder"):
        frontend.load(card, _folder(tmp_path).parent)
