"""A card's own data (dataset.source): every kind of source read into a SamplePool, and the bad values refused
with errors that name the card, the field and the fix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoocompat.api.errors import CellError
from zoocompat.model.cards import parse_card
from zoocompat.model.datasources import (
    SamplePool,
    load_source,
    resolve_data_path,
    source_digest,
    source_problems,
)
from zoocompat.model.input_list import read_input_list, write_input_list


def make_card(folder: Path, source: dict, inputs: list[dict] | None = None, calibration: int = 2, evaluation: int = 4):
    """A minimal card in ``folder`` (its model file need not exist) with ``source`` as its data."""
    data = {
        "name": "m",
        "frontend": "onnx",
        "source": {"kind": "file", "path": "m.onnx"},
        "inputs": inputs or [{"name": "x", "shape": [1, 3, 8, 8]}],
        "outputs": ["y"],
        "metric": {"name": "top1", "output": "y"},
        "dataset": {"source": source, "calibration": calibration, "evaluation": evaluation},
    }
    folder.mkdir(parents=True, exist_ok=True)
    return parse_card(data, folder / "card.yaml")


def refused(card, field: str, *fragments: str, call=load_source) -> str:
    """Run ``call(card)``, expect a bad_input CellError naming the card and ``field``; return the message."""
    with pytest.raises(CellError) as info:
        call(card)
    message = info.value.message
    assert info.value.category == "bad_input"
    assert str(card.path) in message, message
    assert field in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def write_image(path: Path, mode: str = "RGB", size: tuple[int, int] = (6, 5), value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = (np.arange(size[0] * size[1] * 4).reshape(size[1], size[0], 4) * 7 + value) % 256
    image = Image.fromarray(array.astype(np.uint8), "RGBA")
    if mode == "P":
        image = image.convert("RGB").convert("P")
    elif mode != "RGBA":
        image = image.convert(mode)
    image.save(path)


# --- image_folder -------------------------------------------------------------------------------------------------


def _image_folder(root: Path) -> None:
    write_image(root / "data" / "cat" / "b.png", "RGB")
    write_image(root / "data" / "cat" / "a.PNG", "L", value=3)
    write_image(root / "data" / "dog" / "c.jpg", "RGB", value=5)
    write_image(root / "data" / "dog" / "d.gif", "P", value=9)
    write_image(root / "data" / "emu" / "e.webp", "RGBA", value=11)
    (root / "data" / "dog" / "notes.txt").write_text("not an image")
    (root / "data" / "README.md").write_text("not an image either")


def test_image_folder_classes_from_sorted_sub_folders(tmp_path):
    _image_folder(tmp_path)
    card = make_card(tmp_path, {"kind": "image_folder", "path": "data"})
    pool = load_source(card)
    assert isinstance(pool, SamplePool) and len(pool) == 5
    assert pool.images == frozenset({"x"}) and pool.classes == ["cat", "dog", "emu"]
    assert pool.labels.dtype == np.int64 and pool.labels.tolist() == [0, 0, 1, 1, 2]
    images = pool.inputs["x"]
    assert [image.shape for image in images] == [(5, 6, 1), (5, 6, 3), (5, 6, 3), (5, 6, 3), (5, 6, 3)]
    assert all(image.dtype == np.uint8 for image in images)  # gray: one channel; RGBA and palette: RGB
    again = load_source(card)
    assert all(np.array_equal(a, b) for a, b in zip(images, again.inputs["x"], strict=True))


def test_image_folder_classes_given_set_the_indices(tmp_path):
    _image_folder(tmp_path)
    card = make_card(tmp_path, {"kind": "image_folder", "path": "data", "classes": ["emu", "dog", "cat", "yak"]})
    pool = load_source(card)
    assert pool.labels.tolist() == [2, 2, 1, 1, 0] and pool.classes == ["emu", "dog", "cat", "yak"]
    card = make_card(tmp_path, {"kind": "image_folder", "path": "data", "classes": ["cat", "dog"]})
    refused(card, "dataset.source.classes", "'emu'")


def test_image_folder_on_a_multi_input_card_needs_input(tmp_path):
    _image_folder(tmp_path)
    inputs = [{"name": "x", "shape": [1, 3, 8, 8]}, {"name": "scale", "shape": [1]}]
    card = make_card(tmp_path, {"kind": "image_folder", "path": "data"}, inputs)
    refused(card, "dataset.source.input", "'x'", "'scale'")
    card = make_card(tmp_path, {"kind": "image_folder", "path": "data", "input": "x"}, inputs)
    assert load_source(card).images == frozenset({"x"})


def test_image_folder_refuses_a_flat_folder_and_unreadable_images(tmp_path):
    write_image(tmp_path / "flat" / "a.png")
    refused(make_card(tmp_path, {"kind": "image_folder", "path": "flat"}), "dataset.source.path", "kind: images")
    write_image(tmp_path / "data" / "cat" / "a.png")
    (tmp_path / "data" / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    refused(make_card(tmp_path, {"kind": "image_folder", "path": "data"}), "dataset.source.path", "broken.jpg")


# --- images -------------------------------------------------------------------------------------------------------


def _images(root: Path) -> None:
    for name in ("b.png", "a.png", "c.bmp"):
        write_image(root / "imgs" / name)


def test_images_with_csv_labels_mapped_through_classes(tmp_path):
    _images(tmp_path)
    (tmp_path / "labels.csv").write_text("file,label\nc.bmp,dog\na.png,cat\nb.png,dog\n")
    card = make_card(tmp_path, {"kind": "images", "path": "imgs", "labels": "labels.csv", "classes": ["cat", "dog"]})
    pool = load_source(card)
    assert len(pool) == 3 and pool.labels.tolist() == [0, 1, 1]  # sorted files: a, b, c
    assert pool.classes == ["cat", "dog"] and pool.inputs["x"][0].shape == (5, 6, 3)


def test_images_labels_as_strings_integers_or_none(tmp_path):
    _images(tmp_path)
    (tmp_path / "labels.jsonl").write_text(
        "\n".join(json.dumps({"file": f, "label": lab}) for f, lab in [("a.png", "x"), ("b.png", "y"), ("c.bmp", "x")])
    )
    pool = load_source(make_card(tmp_path, {"kind": "images", "path": "imgs", "labels": "labels.jsonl"}))
    assert pool.labels.tolist() == ["x", "y", "x"] and pool.classes == []
    (tmp_path / "ints.csv").write_text("file,label\na.png,3\nb.png,1\nc.bmp,0\n")
    pool = load_source(make_card(tmp_path, {"kind": "images", "path": "imgs", "labels": "ints.csv"}))
    assert pool.labels.dtype == np.int64 and pool.labels.tolist() == [3, 1, 0]
    pool = load_source(make_card(tmp_path, {"kind": "images", "path": "imgs"}))
    assert pool.labels is None and len(pool) == 3


def test_images_every_image_needs_a_label_and_every_label_an_image(tmp_path):
    _images(tmp_path)
    (tmp_path / "labels.csv").write_text("file,label\na.png,0\nb.png,1\n")
    card = make_card(tmp_path, {"kind": "images", "path": "imgs", "labels": "labels.csv"})
    refused(card, "dataset.source.labels", "'c.bmp'", "no label")
    (tmp_path / "labels.csv").write_text("file,label\na.png,0\nb.png,1\nc.bmp,0\nzz.png,1\n")
    refused(card, "dataset.source.labels", "labels.csv:5", "'zz.png'")
    (tmp_path / "labels.csv").write_text("name,class\na.png,0\n")
    refused(card, "dataset.source.labels", "header")
    (tmp_path / "labels.csv").write_text("file,label\na.png,cat\nb.png,dog\nc.bmp,emu\n")
    card = make_card(tmp_path, {"kind": "images", "path": "imgs", "labels": "labels.csv", "classes": ["cat", "dog"]})
    refused(card, "dataset.source.labels", "labels.csv:4", "'emu'")


# --- arrays -------------------------------------------------------------------------------------------------------

ARRAY_INPUTS = [
    {"name": "x", "shape": [1, 3], "dtype": "float32"},
    {"name": "ids", "shape": [1, 4], "dtype": "int64"},
    {"name": "state", "shape": [2, 2], "dtype": "float16"},
]


def _arrays(n: int = 6) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "x": rng.standard_normal((n, 1, 3)),  # [N, *shape]: the batch dim is dropped
        "ids": rng.integers(0, 9, (n, 4)).astype(np.float64),  # whole floats: fine for an int64 input
        "state": rng.standard_normal((n, 2, 2)).astype(np.float32),
    }


def test_arrays_npz_with_labels_key(tmp_path):
    arrays = _arrays()
    np.savez(tmp_path / "data.npz", **arrays, y=np.arange(6) % 2, extra=np.zeros(1))
    card = make_card(tmp_path, {"kind": "arrays", "path": "data.npz", "labels": "y"}, ARRAY_INPUTS)
    pool = load_source(card)
    assert len(pool) == 6 and pool.images == frozenset() and pool.classes == []
    assert pool.inputs["x"].shape == (6, 3) and pool.inputs["x"].dtype == np.float32
    assert pool.inputs["ids"].shape == (6, 4) and pool.inputs["ids"].dtype == np.int64
    assert pool.inputs["state"].shape == (6, 2, 2) and pool.inputs["state"].dtype == np.float16
    np.testing.assert_array_equal(pool.inputs["ids"], arrays["ids"].astype(np.int64))
    assert pool.labels.dtype == np.int64 and pool.labels.tolist() == [0, 1, 0, 1, 0, 1]


def test_arrays_npy_files_with_label_files(tmp_path):
    for name, array in _arrays().items():
        np.save(tmp_path / f"{name}.npy", array)
    files = {name: f"{name}.npy" for name in ("x", "ids", "state")}
    np.save(tmp_path / "labels.npy", np.array(["a", "b", "a", "b", "a", "b"]))
    card = make_card(tmp_path, {"kind": "arrays", "files": files, "labels": "labels.npy"}, ARRAY_INPUTS)
    assert load_source(card).labels.tolist() == ["a", "b"] * 3
    (tmp_path / "labels.txt").write_text("1\n2\n3\n4\n5\n6\n\n")
    card = make_card(tmp_path, {"kind": "arrays", "files": files, "labels": "labels.txt"}, ARRAY_INPUTS)
    assert load_source(card).labels.tolist() == [1, 2, 3, 4, 5, 6]


def test_arrays_bad_values_are_refused(tmp_path):
    def check(field: str, *fragments: str, labels: str | None = None, **changes) -> None:
        arrays = {**_arrays(), **changes}
        np.savez(tmp_path / "data.npz", **{k: v for k, v in arrays.items() if v is not None}, y=np.arange(5))
        source = {"kind": "arrays", "path": "data.npz", **({"labels": labels} if labels else {})}
        refused(make_card(tmp_path, source, ARRAY_INPUTS), field, *fragments)

    check("dataset.source.path", "'state'", "'x'", "'ids'", state=None)  # missing key: lists the keys present
    check("dataset.source.path", "[6, 4]", "[3]", x=np.zeros((6, 4)))  # wrong sample shape
    check("dataset.source.path", "0.5", "whole number", "int64", ids=np.full((6, 4), 0.5))
    check("dataset.source.path", "nan", "NaN", x=np.full((6, 3), np.nan))
    check("dataset.source.path", "1e+20", "float16", state=np.full((6, 2, 2), 1e20))
    check("dataset.source.path", "different numbers of samples", ids=np.zeros((5, 4)))
    check("dataset.source.labels", "5 labels for 6 samples", labels="y")
    check("dataset.source.labels", "'nope'", "keys", labels="nope")


def test_arrays_range_of_uint8_and_bool(tmp_path):
    inputs = [{"name": "u", "shape": [2], "dtype": "uint8"}, {"name": "b", "shape": [2], "dtype": "bool"}]
    np.savez(tmp_path / "ok.npz", u=np.array([[0, 255]] * 3), b=np.array([[0, 1]] * 3))
    pool = load_source(make_card(tmp_path, {"kind": "arrays", "path": "ok.npz"}, inputs))
    assert pool.inputs["u"].dtype == np.uint8 and pool.inputs["b"].dtype == np.bool_
    np.savez(tmp_path / "bad.npz", u=np.array([[0, 256]] * 3), b=np.array([[0, 1]] * 3))
    refused(make_card(tmp_path, {"kind": "arrays", "path": "bad.npz"}, inputs), "dataset.source.path", "0..255")
    np.savez(tmp_path / "bad.npz", u=np.array([[0, 1]] * 3), b=np.array([[0, 2]] * 3))
    refused(make_card(tmp_path, {"kind": "arrays", "path": "bad.npz"}, inputs), "dataset.source.path", "0..1")


# --- input_list ---------------------------------------------------------------------------------------------------


def test_input_list_in_the_inputs_dtypes(tmp_path):
    inputs = [{"name": "x", "shape": [1, 2, 2], "dtype": "float32"}, {"name": "ids", "shape": [1, 3], "dtype": "int64"}]
    rng = np.random.default_rng(0)
    samples = [
        {"x": rng.standard_normal((1, 2, 2)).astype(np.float32), "ids": np.array([[i, 2**40, -i]])} for i in range(5)
    ]
    listing = write_input_list(samples, tmp_path / "raw", dtypes={"ids": "int64"})
    assert (tmp_path / "raw" / "00000_ids.raw").stat().st_size == 3 * 8
    (tmp_path / "labels.txt").write_text("\n".join("ab"[i % 2] for i in range(5)) + "\n")
    source = {"kind": "input_list", "path": "raw/input_list.txt", "labels": "labels.txt"}
    pool = load_source(make_card(tmp_path, source, inputs))
    assert pool.inputs["x"].shape == (5, 2, 2) and pool.inputs["x"].dtype == np.float32
    assert pool.inputs["ids"].dtype == np.int64 and pool.inputs["ids"][3].tolist() == [3, 2**40, -3]
    assert pool.labels.tolist() == ["a", "b", "a", "b", "a"]
    back = read_input_list(listing, {"x": (1, 2, 2), "ids": (1, 3)}, {"ids": np.int64})
    assert back[4]["ids"].dtype == np.int64 and back[4]["x"].dtype == np.float32
    (tmp_path / "labels.txt").write_text("a\nb\n")
    refused(make_card(tmp_path, source, inputs), "dataset.source.labels", "2 labels for 5 samples")


def test_input_list_bool_bytes_and_files_outside(tmp_path):
    inputs = [{"name": "m", "shape": [4], "dtype": "bool"}]
    write_input_list([{"m": np.array([True, False, True, True])}], tmp_path / "raw", dtypes={"m": "bool"})
    pool = load_source(make_card(tmp_path, {"kind": "input_list", "path": "raw/input_list.txt"}, inputs))
    assert pool.inputs["m"].tolist() == [[True, False, True, True]]
    (tmp_path / "raw" / "00000.raw").write_bytes(bytes([0, 1, 7, 0]))
    refused(make_card(tmp_path, {"kind": "input_list", "path": "raw/input_list.txt"}, inputs), "path", "byte 7")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.raw"
    outside.write_bytes(bytes(4))
    (tmp_path / "raw" / "input_list.txt").write_text(f"{outside}\n")
    card = make_card(tmp_path, {"kind": "input_list", "path": "raw/input_list.txt"}, inputs)
    refused(card, "dataset.source.path", "outside")
    assert "outside" in " ".join(source_problems(card))


# --- audio --------------------------------------------------------------------------------------------------------


def test_audio_is_mixed_resampled_and_cut_or_padded(tmp_path):
    import soundfile

    t = np.arange(8000) / 8000
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    soundfile.write(_mk(tmp_path / "sounds/yes/a.wav"), np.stack([tone, tone], 1), 8000)  # stereo: mixed to mono
    soundfile.write(_mk(tmp_path / "sounds/no/b.flac"), np.concatenate([tone, tone]), 8000, subtype="PCM_16")
    card = make_card(
        tmp_path, {"kind": "audio", "path": "sounds", "sample_rate": 16000}, [{"name": "wave", "shape": [1, 24000]}]
    )
    pool = load_source(card)
    assert pool.classes == ["no", "yes"] and pool.labels.tolist() == [0, 1] and pool.images == frozenset()
    waves = pool.inputs["wave"]
    assert waves.shape == (2, 24000) and waves.dtype == np.float32
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)  # 1 s at 8 kHz is 16000 samples at 16 kHz
    np.testing.assert_allclose(waves[1, 1000:15000], expected[1000:15000], atol=0.02)
    assert np.all(waves[1, 16000:] == 0)  # zero-padded to the input's length
    assert np.abs(waves[0, 20000:]).max() > 0.4  # 2 s of flac: cut at 1.5 s, nothing padded
    np.testing.assert_array_equal(load_source(card).inputs["wave"], waves)


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_audio_flat_folder_has_no_labels_unless_a_labels_file(tmp_path):
    import soundfile

    for name in ("b.wav", "a.flac"):
        soundfile.write(_mk(tmp_path / "clips" / name), np.zeros(400), 8000)
    inputs = [{"name": "wave", "shape": [100], "dtype": "float32"}]
    pool = load_source(make_card(tmp_path, {"kind": "audio", "path": "clips", "sample_rate": 8000}, inputs))
    assert pool.labels is None and pool.inputs["wave"].shape == (2, 100)
    (tmp_path / "labels.csv").write_text("file,label\na.flac,go\nb.wav,stop\n")
    source = {"kind": "audio", "path": "clips", "sample_rate": 8000, "labels": "labels.csv", "classes": ["stop", "go"]}
    assert load_source(make_card(tmp_path, source, inputs)).labels.tolist() == [1, 0]


# --- text ---------------------------------------------------------------------------------------------------------


def _tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    vocab = {"[PAD]": 0, "[UNK]": 1, "hello": 2, "world": 3, "good": 4, "bad": 5, "day": 6}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.save(str(path))


TEXT_INPUTS = [
    {"name": "input_ids", "shape": [1, 4], "dtype": "int64"},
    {"name": "mask", "shape": [1, 4], "dtype": "int32"},
]


def test_text_lines_are_tokenized_padded_and_truncated(tmp_path):
    _tokenizer(tmp_path / "tokenizer.json")
    (tmp_path / "lines.txt").write_text("hello world\n\ngood day zebra\nhello good bad day world\n")
    source = {"kind": "text", "path": "lines.txt", "tokenizer": "tokenizer.json", "inputs": {"attention_mask": "mask"}}
    card = make_card(tmp_path, source, TEXT_INPUTS)
    pool = load_source(card)
    assert len(pool) == 3 and pool.labels is None
    assert pool.inputs["input_ids"].dtype == np.int64 and pool.inputs["mask"].dtype == np.int32
    assert pool.inputs["input_ids"].tolist() == [[2, 3, 0, 0], [4, 6, 1, 0], [2, 4, 5, 6]]
    assert pool.inputs["mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]
    np.testing.assert_array_equal(load_source(card).inputs["input_ids"], pool.inputs["input_ids"])


def test_text_jsonl_with_labels(tmp_path):
    _tokenizer(tmp_path / "tokenizer.json")
    records = [{"text": "good day", "sentiment": "pos"}, {"text": "bad day", "sentiment": "neg"}]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    source = {
        "kind": "text",
        "path": "data.jsonl",
        "tokenizer": "tokenizer.json",
        "label_field": "sentiment",
        "classes": ["neg", "pos"],
    }
    pool = load_source(make_card(tmp_path, source, [{"name": "input_ids", "shape": [3], "dtype": "int32"}]))
    assert pool.inputs["input_ids"].tolist() == [[4, 6, 0], [5, 6, 0]] and pool.labels.tolist() == [1, 0]
    (tmp_path / "data.jsonl").write_text('{"body": "good"}\n')
    card = make_card(tmp_path, source, [{"name": "input_ids", "shape": [3], "dtype": "int32"}])
    refused(card, "dataset.source.text_field", "data.jsonl:1")
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "data.jsonl").write_text('{"text": "good", "sentiment": "pos"}\n')
    refused(card, "dataset.source.tokenizer", "tokenizer.json")


# --- synthetic ----------------------------------------------------------------------------------------------------


def test_synthetic_is_seeded_and_in_range(tmp_path):
    inputs = [
        {"name": "x", "shape": [1, 50]},
        {"name": "y", "shape": [40], "dtype": "float16"},
        {"name": "ids", "shape": [1, 30], "dtype": "int64"},
        {"name": "flag", "shape": [], "dtype": "bool"},
    ]
    source = {"kind": "synthetic", "ranges": {"y": [-2, 2], "ids": [3, 5]}}
    card = make_card(tmp_path, source, inputs, calibration=3, evaluation=7)
    pool = load_source(card)
    assert len(pool) == 10 and pool.labels is None and pool.classes == [] and pool.images == frozenset()
    x, y, ids, flag = (pool.inputs[name] for name in ("x", "y", "ids", "flag"))
    assert x.shape == (10, 50) and x.dtype == np.float32 and 0 <= x.min() and x.max() < 1
    assert y.shape == (10, 40) and y.dtype == np.float16 and -2 <= y.min() and y.max() < 2
    assert ids.dtype == np.int64 and set(np.unique(ids)) == {3, 4, 5}  # both ends included
    assert flag.shape == (10,) and flag.dtype == np.bool_
    again = load_source(card)
    assert all(np.array_equal(pool.inputs[k], again.inputs[k]) for k in pool.inputs)
    other = parse_card(
        {**card.model_dump(mode="json", exclude={"path"}), "dataset": {**card.dataset.model_dump(), "seed": 1}},
        card.path,
    )
    assert not np.array_equal(load_source(other).inputs["x"], x)


def test_synthetic_int_input_needs_a_range(tmp_path):
    inputs = [{"name": "ids", "shape": [1, 3], "dtype": "int32"}]
    refused(make_card(tmp_path, {"kind": "synthetic"}, inputs), "dataset.source.ranges.ids", "[0, 100]")
    card = make_card(tmp_path, {"kind": "synthetic", "ranges": {"ids": [0.5, 3]}}, inputs)
    refused(card, "dataset.source.ranges.ids", "whole numbers")


# --- paths, digest, check -----------------------------------------------------------------------------------------


def test_paths_may_not_leave_the_card_folder(tmp_path):
    zoo, elsewhere = tmp_path / "zoo", tmp_path / "elsewhere"
    np.savez(_mk(elsewhere / "data.npz"), x=np.zeros((6, 3, 8, 8)))
    inputs = [{"name": "x", "shape": [1, 3, 8, 8]}]
    for path in ("../elsewhere/data.npz", str(elsewhere / "data.npz")):
        card = make_card(zoo, {"kind": "arrays", "path": path}, inputs)
        refused(card, "dataset.source.path", "outside the card's folder")
        assert source_problems(card)[0].startswith("dataset.source.path: ")
    os.symlink(elsewhere / "data.npz", zoo / "link.npz")
    refused(make_card(zoo, {"kind": "arrays", "path": "link.npz"}, inputs), "dataset.source.path", "outside")
    with pytest.raises(CellError, match="dataset.source.path"):
        resolve_data_path(card, "link.npz", "dataset.source.path")
    _image_folder(zoo)
    os.symlink(elsewhere / "data.npz", zoo / "data" / "cat" / "z.png")  # a link inside the data folder
    refused(make_card(zoo, {"kind": "image_folder", "path": "data"}, inputs), "dataset.source.path", "z.png")


def test_missing_files_are_named(tmp_path):
    card = make_card(tmp_path, {"kind": "images", "path": "imgs", "labels": "labels.csv"})
    refused(card, "dataset.source.path", "no such file")
    problems = source_problems(card)  # every missing path at once
    assert [line.split(":")[0] for line in problems] == ["dataset.source.path", "dataset.source.labels"]
    files = {"x": "x.npy", "ids": "ids.npy", "state": "state.npy"}
    assert len(source_problems(make_card(tmp_path, {"kind": "arrays", "files": files}, ARRAY_INPUTS))) == 3


def test_source_problems_reports_a_read_error_as_one_line(tmp_path):
    np.savez(tmp_path / "data.npz", x=np.zeros((6, 2)))
    card = make_card(tmp_path, {"kind": "arrays", "path": "data.npz"}, [{"name": "x", "shape": [1, 3]}])
    problems = source_problems(card)
    assert len(problems) == 1 and problems[0].startswith("dataset.source.path: ") and "[3]" in problems[0]
    (tmp_path / "data.npz").write_bytes(b"garbage")
    assert source_problems(card)[0].startswith("dataset.source.path: cannot read")
    np.savez(tmp_path / "data.npz", x=np.zeros((6, 3)))
    assert source_problems(card) == []


def test_digest_follows_the_data_and_the_spec(tmp_path):
    _images(tmp_path)
    (tmp_path / "labels.csv").write_text("file,label\na.png,0\nb.png,1\nc.bmp,0\n")
    card = make_card(tmp_path, {"kind": "images", "path": "imgs", "labels": "labels.csv"})
    first = source_digest(card)
    assert len(first) == 64 and source_digest(card) == first
    (tmp_path / "labels.csv").write_text("file,label\na.png,1\nb.png,1\nc.bmp,0\n")
    second = source_digest(card)
    assert second != first
    write_image(tmp_path / "imgs" / "a.png", value=1)
    assert source_digest(card) != second
    synthetic = make_card(tmp_path, {"kind": "synthetic"}, [{"name": "x", "shape": [1, 3]}])
    ranged = make_card(tmp_path, {"kind": "synthetic", "ranges": {"x": [0, 2]}}, [{"name": "x", "shape": [1, 3]}])
    assert source_digest(synthetic) == source_digest(synthetic) != source_digest(ranged)
    refused(make_card(tmp_path, {"kind": "images", "path": "nope"}), "dataset.source.path", call=source_digest)
