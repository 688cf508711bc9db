"""OCR metrics and the rendered text datasets: decoding, scoring, determinism, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from zoocompat_plugins.datasets.text import TextLinesDataset, TextPagesDataset
from zoocompat_plugins.metrics.ocr import CharAccuracy, ExactMatch, TextRegionHmean, ctc_greedy_decode, edit_distance

from zoocompat.api.errors import CellError

TABLE = ("", "a", "b", "c", " ")


def one_hot(indices: list[list[int]], classes: int = len(TABLE)) -> np.ndarray:
    """``N x T x C`` scores whose argmax per step is ``indices``."""
    return np.eye(classes, dtype=np.float32)[np.asarray(indices)]


def test_ctc_greedy_decode_collapses_repeats_and_drops_blanks():
    scores = one_hot([[1, 1, 0, 1, 2, 2, 0, 0], [3, 0, 3, 4, 4, 2, 0, 0]])
    assert ctc_greedy_decode(scores, TABLE) == ["aab", "cc b"]


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [("", "", 0), ("abc", "abc", 0), ("abc", "", 3), ("", "ab", 2), ("kitten", "sitting", 3), ("ab", "ba", 2)],
)
def test_edit_distance(a, b, distance):
    assert edit_distance(a, b) == distance
    assert edit_distance(b, a) == distance


def test_char_accuracy_and_exact_match_score_per_sample():
    scores = one_hot([[1, 2, 3, 0], [1, 2, 0, 0], [4, 1, 4, 0]])  # "abc", "ab", " a " -> stripped "a"
    labels = np.asarray(["abc", "abc", "a"])
    assert CharAccuracy(TABLE).score(scores, labels).tolist() == pytest.approx([1.0, 2 / 3, 1.0])
    assert ExactMatch(TABLE).score(scores, labels).tolist() == [1.0, 0.0, 1.0]


def test_ctc_metric_errors_say_what_to_fix():
    with pytest.raises(CellError, match="metric.params.dictionary") as error:
        CharAccuracy().score(one_hot([[1]]), np.asarray(["a"]))
    assert error.value.category == "bad_input"
    with pytest.raises(CellError, match=r"N x T x 5 CTC scores.*got shape \(1, 2, 7\)"):
        CharAccuracy(TABLE).score(np.zeros((1, 2, 7)), np.asarray(["a"]))
    with pytest.raises(CellError, match="one string per sample"):
        ExactMatch(TABLE).score(one_hot([[1]]), np.asarray([3]))
    with pytest.raises(CellError, match=r"unknown metric.params \['dict'\]"):
        CharAccuracy().configure({"dict": "x"})
    with pytest.raises(CellError, match="pypi_file source"):
        CharAccuracy().configure({"dictionary": {"kind": "pypi_file", "package": "x"}})


def test_text_region_hmean_perfect_partial_and_empty():
    pages = TextPagesDataset().load("test", 0, {"count": 2, "size": 128})
    masks = pages.labels
    assert masks.max() >= 2  # at least two lines on each page
    metric = TextRegionHmean()
    perfect = (masks > 0).astype(np.float32)[:, None]
    assert metric.score(perfect, masks).tolist() == [1.0, 1.0]
    nothing = np.zeros_like(perfect)
    assert metric.score(nothing, masks).tolist() == [0.0, 0.0]
    half = perfect.copy()
    half[:, :, masks.shape[1] // 2 :] = 0  # lines in the lower half are missed
    assert 0.0 < metric.score(half, masks)[0] < 1.0
    with pytest.raises(CellError, match="do not match"):
        metric.score(perfect[:, :, :64], masks)


def test_text_lines_are_deterministic_split_disjoint_and_labelled():
    dataset = TextLinesDataset()
    params = {"count": 6, "width": 192}
    first, again = dataset.load("test", 0, params), dataset.load("test", 0, params)
    assert np.array_equal(first.samples, again.samples)
    assert list(first.labels) == list(again.labels)
    train = dataset.load("train", 0, params)
    assert not np.array_equal(train.samples, first.samples)
    assert first.samples.shape == (6, 48, 192, 3) and first.samples.dtype == np.uint8
    assert all(label.strip() for label in first.labels)
    rotated = dataset.load("test", 0, {**params, "rotate180": True})
    assert rotated.labels.tolist() == [0, 1, 0, 1, 0, 1] and rotated.classes == ["0", "180"]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"count": 0}, "count must be an integer >= 1"),
        ({"rotate180": "yes"}, "rotate180 must be true or false"),
        ({"colour": 1}, "unknown dataset.params ['colour']"),
        ({"width": 100}, "width must be an integer >= 192"),
    ],
)
def test_text_lines_bad_params(params, words):
    with pytest.raises(CellError) as error:
        TextLinesDataset().load("test", 0, params)
    assert error.value.category == "bad_input" and words in str(error.value)


def test_unknown_split_and_negative_seed():
    with pytest.raises(CellError, match="unknown split 'val'"):
        TextPagesDataset().load("val", 0, {})
    with pytest.raises(CellError, match="seed must be >= 0"):
        TextPagesDataset().load("test", -1, {})
