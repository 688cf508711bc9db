"""SNPE-style input lists: round trip, multi-input lines, and errors that name the line and file."""

from __future__ import annotations

import numpy as np
import pytest

from zoocompat.api.errors import CellError
from zoocompat.model.input_list import read_input_list, write_input_list

SHAPE = [1, 1, 4, 4]


def _samples(n: int, names=("input",)) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [{name: rng.standard_normal(SHAPE).astype(np.float32) for name in names} for _ in range(n)]


def test_single_input_round_trip(tmp_path):
    samples = _samples(3)
    listing = write_input_list(samples, tmp_path)
    lines = listing.read_text().splitlines()
    assert lines == ["00000.raw", "00001.raw", "00002.raw"]
    assert (tmp_path / "00000.raw").stat().st_size == 16 * 4
    back = read_input_list(listing, {"input": SHAPE})
    assert len(back) == 3
    for a, b in zip(samples, back, strict=True):
        np.testing.assert_array_equal(a["input"], b["input"])
        assert b["input"].dtype == np.float32


def test_multi_input_pairs_in_any_order_and_comments(tmp_path):
    samples = _samples(2, names=("a", "b"))
    listing = write_input_list(samples, tmp_path)
    assert listing.read_text().splitlines()[0] == "a:=00000_a.raw b:=00000_b.raw"
    listing.write_text("#out\n\nb:=00000_b.raw a:=00000_a.raw\n" + listing.read_text().splitlines()[1] + "\n")
    back = read_input_list(listing, {"a": SHAPE, "b": SHAPE})
    np.testing.assert_array_equal(back[0]["b"], samples[0]["b"])
    np.testing.assert_array_equal(back[1]["a"], samples[1]["a"])


def test_absolute_paths_and_little_endian_bytes(tmp_path):
    raw = tmp_path / "x.raw"
    np.arange(16, dtype="<f4").tofile(raw)
    listing = tmp_path / "sub" / "list.txt"
    listing.parent.mkdir()
    listing.write_text(f"{raw}\n")
    assert read_input_list(listing, {"input": SHAPE})[0]["input"].ravel()[3] == 3.0


def test_missing_file_names_line_and_file(tmp_path):
    write_input_list(_samples(2), tmp_path)
    (tmp_path / "00001.raw").unlink()
    with pytest.raises(CellError) as info:
        read_input_list(tmp_path / "input_list.txt", {"input": SHAPE})
    assert info.value.category == "bad_input"
    assert "input_list.txt:2" in info.value.message and "00001.raw does not exist" in info.value.message


def test_wrong_size_says_expected_and_actual_bytes(tmp_path):
    listing = write_input_list(_samples(1), tmp_path)
    np.zeros(15, np.float32).tofile(tmp_path / "00000.raw")
    with pytest.raises(CellError) as info:
        read_input_list(listing, {"input": SHAPE})
    message = info.value.message
    assert "input_list.txt:1" in message and "00000.raw" in message
    assert "has 60 bytes, expected 64" in message and "[1, 1, 4, 4]" in message


def test_wrong_input_names_and_empty_list(tmp_path):
    listing = write_input_list(_samples(1, names=("a", "b")), tmp_path)
    with pytest.raises(CellError, match=r"unknown: \['b'\].*missing: \['c'\]"):
        read_input_list(listing, {"a": SHAPE, "c": SHAPE})
    with pytest.raises(CellError, match="2 'name:=path' pairs"):
        (tmp_path / "bare.txt").write_text("00000_a.raw\n")
        read_input_list(tmp_path / "bare.txt", {"a": SHAPE, "b": SHAPE})
    (tmp_path / "empty.txt").write_text("# only a comment\n\n")
    with pytest.raises(CellError, match="names no samples"):
        read_input_list(tmp_path / "empty.txt", {"a": SHAPE})
    with pytest.raises(CellError, match="cannot read input list"):
        read_input_list(tmp_path / "nope.txt", {"a": SHAPE})
