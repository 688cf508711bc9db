"""Card validation: good cards load, bad ones name the file and the field."""

from __future__ import annotations

import pytest

from tests.conftest import ZOO
from zoocompat.api.errors import CardError
from zoocompat.model.cards import discover, load_card


def test_default_zoo_cards_are_valid():
    cards, errors = discover([ZOO])
    assert errors == []
    assert {c.frontend for c in cards.values()} == {"pytorch", "onnx", "tensorflow"}


def test_card_round_trip(card_dict, write_card):
    card = load_card(write_card(card_dict))
    assert card.name == "mtcnn_onet"
    assert card.tolerance_for("w8a8") == 0.01
    assert card.inputs[0].shape == [1, 3, 48, 48]


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda d: d.update(frontend="caffe"), ["frontend", "pytorch"]),
        (lambda d: d.update(colour="red"), ["colour", "Extra inputs"]),
        (lambda d: d["inputs"][0].update(shape=[1, 0, 48, 48]), ["inputs.0.shape.1", "greater than 0"]),
        (lambda d: d["inputs"][0].update(dtype="float64"), ["inputs.0.dtype", "int64"]),
        (lambda d: d["inputs"][0].update(shape=[1] * 9), ["inputs.0.shape", "at most 8"]),
        (lambda d: d["dataset"].update(name="imagenet"), ["dataset.name", "imagenet", "dataset.source"]),
        (lambda d: d["metric"].update(name="bleu"), ["metric.name", "bleu", "top1"]),
        (lambda d: d["dataset"].update(source={"kind": "synthetic"}), ["dataset", "either name", "source"]),
        (lambda d: d["dataset"].update(name=None, source={"kind": "webcam"}), ["dataset.source", "webcam"]),
        (lambda d: d["metric"].update(output="nope"), ["metric.output", "nope"]),
        (lambda d: d.pop("architecture"), ["architecture", "module:Class"]),
        (lambda d: d["source"].update(sha256="abc"), ["sha256", "pattern"]),
        (lambda d: d.update(name="Bad-Name"), ["name", "pattern"]),
        (lambda d: d.update(smoke=["htp"]), ["smoke", "<backend>-<precision>"]),
        (lambda d: d.update(tolerance={"w9a9": 0.1}), ["tolerance", "w9a9"]),
    ],
)
def test_bad_card_names_field(card_dict, write_card, mutate, words):
    mutate(card_dict)
    path = write_card(card_dict)
    with pytest.raises(CardError) as info:
        load_card(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message
    assert info.value.category == "bad_input"


def test_python_tags_are_refused(write_card):
    path = write_card("name: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(CardError, match="not valid YAML"):
        load_card(path)


def test_non_mapping_and_missing_file(write_card, tmp_path):
    with pytest.raises(CardError, match="YAML mapping"):
        load_card(write_card("- a\n- b\n"))
    with pytest.raises(CardError, match="cannot read"):
        load_card(tmp_path / "missing.yaml")


def test_discover_reports_bad_and_duplicate_cards(card_dict, write_card, tmp_path):
    write_card(card_dict, "a.yaml")
    write_card(card_dict, "b.yaml")
    write_card("frontend: [", "c.yaml")
    cards, errors = discover([tmp_path])
    assert list(cards) == ["mtcnn_onet"]
    assert len(errors) == 2
    assert any("already used" in str(e) for e in errors)
    assert any("c.yaml" in str(e) for e in errors)
