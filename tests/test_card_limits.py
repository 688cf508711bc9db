"""Card limits: every numeric field is checked for meaning, card files for size and YAML aliases.

Each refusal is a ``CardError`` (category ``bad_input``) that names the card file and the
field, raised by ``load_card`` before any cell could run.
"""

from __future__ import annotations

import math
import tracemalloc
import typing
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from zoocompat.api.errors import CardError
from zoocompat.model.cards import (
    DEFAULT_MAX_CARD_BYTES,
    MAX_CARD_BYTES_ENV,
    MAX_DIM,
    MAX_SAMPLES,
    MAX_SEED,
    Card,
    load_card,
)

pytestmark = pytest.mark.bad_input

NAN, INF = math.nan, math.inf


def _preprocess(data: dict) -> dict:
    return data["inputs"][0].setdefault("preprocess", {})


def _put(path: str, around: list | None = None) -> Callable[[dict, Any], None]:
    """Set the card's dotted ``path`` to the value (or to ``around``, the value in place of its None)."""
    *parents, leaf = path.split(".")

    def put(data: dict, value: Any) -> None:
        target = data
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target.setdefault(key, {})
        target[leaf] = value if around is None else [value if item is None else item for item in around]

    return put


def _recipe(data: dict, value: Any) -> None:
    data["source"] = {"kind": "recipe", "recipe": "zoocompat_zoo.recipes:train", "params": {"lr": value}}


def _source(kind: str, field: str, around: list | None = None, **fields: Any) -> Callable[[dict, Any], None]:
    """Name the card's own data (``dataset.source`` of ``kind``) with ``field`` set to the value."""

    def put(data: dict, value: Any) -> None:
        data["dataset"].pop("name", None)
        data["dataset"].pop("params", None)
        leaf = value if around is None else [value if item is None else item for item in around]
        data["dataset"]["source"] = {"kind": kind, **fields, field: leaf}

    return put


def _range(data: dict, value: Any) -> None:
    _source("synthetic", "ranges")(data, {"input": [0.0, value]})


PRE = "inputs.0.preprocess"
# (schema field, field path the error must name, put a value in the card, out-of-range values)
NUMERIC_FIELDS: list[tuple[str, str, Callable[[dict, Any], None], list[Any]]] = [
    ("tolerance", "tolerance.default", _put("tolerance.default"), [-5, -0.001]),
    ("tolerance", "tolerance.w8a8", _put("tolerance.w8a8"), [-1]),
    ("metric.fp32_reference", "metric.fp32_reference", _put("metric.fp32_reference"), []),
    ("metric.params", "metric.params", _put("metric.params.k", [1, None]), []),
    ("dataset.calibration", "dataset.calibration", _put("dataset.calibration"), [0, -3, 2.5, MAX_SAMPLES + 1]),
    ("dataset.evaluation", "dataset.evaluation", _put("dataset.evaluation"), [0, -5, 1.5, MAX_SAMPLES + 1]),
    (
        "dataset.max_evaluation",
        "dataset.max_evaluation",
        _put("dataset.max_evaluation"),
        [0, -5, 1.5, 1, MAX_SAMPLES + 1],  # 1: below evaluation, the first look
    ),
    ("dataset.budget_s", "dataset.budget_s", _put("dataset.budget_s"), [0, -1.0, 86_400 * 2]),
    ("dataset.max_sample_mb", "dataset.max_sample_mb", _put("dataset.max_sample_mb"), [0, -1.0, 2.0**21]),
    ("dataset.max_split_mb", "dataset.max_split_mb", _put("dataset.max_split_mb"), [0, -64, 2.0**21]),
    ("dataset.seed", "dataset.seed", _put("dataset.seed"), [-1, 0.5, MAX_SEED + 1]),
    ("dataset.params", "dataset.params", _put("dataset.params.noise"), []),
    ("source.params", "source.recipe.params", _recipe, []),
    ("inputs.shape", "inputs.0.shape.2", _put("inputs.0.shape", [1, 3, None, 48]), [0, -1, MAX_DIM + 1]),
    ("inputs.preprocess.resize", f"{PRE}.resize.1", _put(f"{PRE}.resize", [48, None]), [0, -48, MAX_DIM + 1]),
    ("inputs.preprocess.resize_short", f"{PRE}.resize_short", _put(f"{PRE}.resize_short"), [0, MAX_DIM + 1]),
    ("inputs.preprocess.center_crop", f"{PRE}.center_crop.0", _put(f"{PRE}.center_crop", [None, 48]), [0, -2]),
    ("inputs.preprocess.scale", f"{PRE}.scale", _put(f"{PRE}.scale"), [0, 0.0]),
    ("inputs.preprocess.mean", f"{PRE}.mean.1", _put(f"{PRE}.mean", [127.5, None, 127.5]), []),
    ("inputs.preprocess.std", f"{PRE}.std.2", _put(f"{PRE}.std", [128.0, 128.0, None]), [0, 0.0]),
    ("dataset.source.ranges", "dataset.source.synthetic.ranges.input.1", _range, []),
    (
        "dataset.source.sample_rate",
        "dataset.source.audio.sample_rate",
        _source("audio", "sample_rate", path="clips"),
        [0, -16000, 1.5, 10**7],
    ),
]

CASES = [
    pytest.param(put, value, where, id=f"{where}={value}")
    for _, where, put, out_of_range in NUMERIC_FIELDS
    for value in [NAN, INF, -INF, *out_of_range]
]


def _refused(path) -> str:
    with pytest.raises(CardError) as info:
        load_card(path)
    assert info.value.category == "bad_input"
    message = str(info.value)
    assert str(path) in message, message
    return message


@pytest.mark.parametrize(("put", "value", "where"), CASES)
def test_numeric_field_refused(card_dict, write_card, put, value, where):
    put(card_dict, value)
    message = _refused(write_card(card_dict))
    assert f"- {where}:" in message, message


def test_valid_edge_values_still_load(card_dict, write_card):
    card_dict["tolerance"] = {"default": 0, "w8a8": 0.5}
    card_dict["dataset"].update(calibration=1, evaluation=MAX_SAMPLES, seed=MAX_SEED, params={"noise": 0.1})
    card_dict["metric"]["fp32_reference"] = 0.0
    _preprocess(card_dict).update(scale=-1.0, mean=[-1.0, 0.0, 1.0], std=[-1.0, 0.5, 2.0], resize_short=MAX_DIM)
    card = load_card(write_card(card_dict))
    assert card.tolerance_for("w8a8") == 0.5 and card.dataset.seed == MAX_SEED


def _numeric_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted names of the schema's fields whose type holds an int or a float (or free-form params)."""
    found = set()
    for name, field in model.model_fields.items():
        where = f"{prefix}{name}"
        stack = [field.annotation]
        while stack:
            kind = stack.pop()
            if kind in (int, float) or (name == "params" and typing.get_origin(kind) is dict):
                found.add(where)
            elif isinstance(kind, type) and issubclass(kind, BaseModel):
                found |= _numeric_fields(kind, f"{where}.")
            elif typing.get_origin(kind) is not typing.Literal:
                stack.extend(typing.get_args(kind))
    return found


def test_every_numeric_field_is_covered():
    fields = {field for field, *_ in NUMERIC_FIELDS}
    assert _numeric_fields(Card) == fields


# ---------------------------------------------------------------------------
# Card files: size limit and YAML aliases
# ---------------------------------------------------------------------------


def test_card_over_size_limit_refused_before_parsing(write_card, monkeypatch):
    monkeypatch.delenv(MAX_CARD_BYTES_ENV, raising=False)
    path = write_card("name: [" + "x" * DEFAULT_MAX_CARD_BYTES)  # not valid YAML either: never parsed
    message = _refused(path)
    assert f"size limit of {DEFAULT_MAX_CARD_BYTES} bytes" in message
    assert MAX_CARD_BYTES_ENV in message and "YAML" not in message


def test_card_size_limit_from_environment(card_dict, write_card, monkeypatch):
    path = write_card(card_dict)
    size = path.stat().st_size
    monkeypatch.setenv(MAX_CARD_BYTES_ENV, str(size))
    assert load_card(path).name == "mtcnn_onet"
    monkeypatch.setenv(MAX_CARD_BYTES_ENV, str(size - 1))
    assert f"size limit of {size - 1} bytes" in _refused(path)
    for bad in ("lots", "0", "-1"):
        monkeypatch.setenv(MAX_CARD_BYTES_ENV, bad)
        with pytest.raises(CardError, match=MAX_CARD_BYTES_ENV):
            load_card(path)


def _lol_bomb(levels: int = 9) -> str:
    lines = ['    lol0: &lol0 "lol"']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*lol{level - 1}"] * 10)
        lines.append(f"    lol{level}: &lol{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_nested_alias_bomb_refused_before_it_expands(card_dict, write_card):
    card_dict["dataset"]["params"] = {}
    text = write_card(card_dict).read_text().replace("  params: {}\n", "  params:\n" + _lol_bomb())
    path = write_card(text)
    tracemalloc.start()
    try:
        message = _refused(path)
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert "anchors and aliases are not allowed" in message and "write the values out" in message
    # Expanded, the bomb is 10**9 strings: refused at its first anchor, it costs next to nothing.
    assert peak < 20 * 2**20, peak


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("base: &b {x: 1}\nname: *b\n", ["anchor &b", "line 1"]),
        ("name: x\nother: *missing\n", ["alias *missing", "line 2"]),
    ],
    ids=["anchor", "alias"],
)
def test_anchors_and_aliases_refused(write_card, text, words):
    message = _refused(write_card(text))
    for word in words:
        assert word in message, message


def test_deeply_nested_yaml_refused(write_card):
    message = _refused(write_card("name: " + "[" * 100_000 + "]" * 100_000 + "\n"))
    assert "nested too deeply" in message or "YAML" in message
