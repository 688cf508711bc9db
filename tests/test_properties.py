"""Property-based tests: arbitrary YAML / JSON never crashes the card, encodings or results loaders.

Each loader either returns a valid object or raises its own clear error type
naming the file; any other exception (KeyError, TypeError, RecursionError...)
is a bug these tests would find.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoocompat.api.encodings import load_encodings
from zoocompat.api.errors import CardError, CellError
from zoocompat.model.cards import load_card, parse_card
from zoocompat.report.results import ResultsError, load_results

pytestmark = pytest.mark.bad_input
ROOT = Path(__file__).parent.parent
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=25,
)


def _with_some_valid_keys(valid: dict) -> st.SearchStrategy:
    """Mappings that start from a valid document and replace, drop or add fields at random."""
    keys = sorted(valid)

    @st.composite
    def build(draw):
        doc = dict(valid)
        for key in draw(st.lists(st.sampled_from(keys), max_size=4, unique=True)):
            if draw(st.booleans()):
                doc.pop(key)
            else:
                doc[key] = draw(json_values)
        for key, value in draw(st.dictionaries(st.text(max_size=8), json_values, max_size=2)).items():
            doc[key] = value
        return doc

    return build()


VALID_CARD = yaml.safe_load((ROOT / "zoo" / "cards" / "mtcnn_onet.yaml").read_text())


@SETTINGS
@given(data=json_values | _with_some_valid_keys(VALID_CARD))
def test_card_schema_never_crashes(data):
    path = Path("fuzz/card.yaml")
    try:
        card = parse_card(data, path)
    except CardError as error:
        assert "card.yaml" in str(error)
    else:
        assert card.name == data["name"]


@SETTINGS
@given(blob=st.text(max_size=300).map(str.encode) | st.binary(max_size=100))
def test_card_text_never_crashes(tmp_path, blob):
    path = tmp_path / "card.yaml"
    path.write_bytes(blob)
    try:
        load_card(path)
    except CardError as error:
        assert str(path) in str(error)


VALID_ENCODINGS = {
    "version": "0.6.1",
    "activation_encodings": {"x": [{"bitwidth": 8, "scale": 0.1, "offset": -128, "min": -12.8, "max": 12.7}]},
    "param_encodings": {"w": [{"bitwidth": 8, "scale": 0.01, "offset": -127, "is_symmetric": "True"}]},
}


@SETTINGS
@given(data=json_values | _with_some_valid_keys(VALID_ENCODINGS))
def test_encodings_loader_never_crashes(tmp_path, data):
    path = tmp_path / "model.encodings"
    path.write_text(json.dumps(data))
    try:
        load_encodings(path)
    except CellError as error:
        assert error.category == "bad_input" and str(path) in str(error)


@SETTINGS
@given(
    entry=st.fixed_dictionaries(
        {"bitwidth": st.integers(-4, 40) | st.floats() | st.text(max_size=3), "scale": st.floats() | st.integers()},
        optional={"offset": st.floats() | st.integers()},
    )
)
def test_bad_scales_name_the_tensor(tmp_path, entry):
    path = tmp_path / "model.encodings"
    path.write_text(json.dumps({"version": "0.6.1", "activation_encodings": {"conv1_out": [entry]}}))
    try:
        load_encodings(path)
    except CellError as error:
        assert "conv1_out" in str(error)
    else:
        scale = entry["scale"]
        assert isinstance(entry["bitwidth"], int) and 1 <= entry["bitwidth"] <= 32
        assert scale > 0 and scale == scale and scale != float("inf")


VALID_RESULTS = json.loads((ROOT / "tests" / "data" / "results-slice.json").read_text())


@SETTINGS
@given(data=json_values | _with_some_valid_keys(VALID_RESULTS))
def test_results_loader_never_crashes(tmp_path, data):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    try:
        load_results(path)
    except ResultsError as error:
        assert str(path) in str(error)


@SETTINGS
@given(blob=st.binary(max_size=200))
def test_results_loader_survives_arbitrary_bytes(tmp_path, blob):
    path = tmp_path / "results.json"
    path.write_bytes(blob)
    try:
        load_results(path)
    except ResultsError as error:
        assert str(path) in str(error)
