"""Segmentation metrics: per-image mean IoU of a predicted class map against the labeled one.

Labels are ``[N, H, W]`` integer class maps (``[N, 1, H, W]`` and ``[N, H, W, 1]``
are read too); pixels labeled ``ignore_index`` (default 255) count nowhere. The
output (``metric.output``, one output) is read by ``metric.params``::

    metric:
      name: miou
      output: logits
      params:
        layout: NCHW        # NCHW / NHWC: class scores (argmax over classes); NHW: a class map already
        num_classes: 21     # optional: checks the output's class axis and the labels' values
        ignore_index: 255   # default 255; null: no pixel is ignored

or, for a one-channel mask (``[N, 1, H, W]``, ``[N, H, W, 1]`` or ``[N, H, W]``)::

      params: {binary: true, threshold: 0.5, sigmoid: false}

where a pixel is class 1 when its value (after a sigmoid, with ``sigmoid: true``
for logits) is above ``threshold`` (default 0.5), else class 0.

``miou`` per image is the mean, over the classes present in that image's ground
truth or prediction (at the pixels not ignored), of ``|pred & truth| / |pred | truth|``.
A class absent from both does not count, so an image is not rewarded for classes
it never shows; a class predicted but absent from the truth counts with IoU 0.
An image whose pixels are all ignored scores 1.0 (nothing to get wrong). The
prediction must have the labels' height and width (save labels at the output's
resolution).

Only numpy is imported here.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from zoocompat_plugins.metrics.params import one_output, require_labels

import zoocompat
from zoocompat.api.errors import CellError

__all__ = ["MeanIou"]

PARAMS = ("layout", "binary", "threshold", "sigmoid", "num_classes", "ignore_index")
LAYOUTS = ("NCHW", "NHWC", "NHW")


def _bad(key: str, problem: str) -> CellError:
    return CellError("bad_input", f"metric 'miou': metric.params.{key} {problem}; fix metric.params.{key} in the card")


class MeanIou:
    """Mean IoU per image over the classes in its ground truth or prediction (higher is better)."""

    name = "miou"
    higher_is_better = True

    def __init__(self) -> None:
        self.layout: str | None = None
        self.binary = False
        self.threshold = 0.5
        self.sigmoid = False
        self.num_classes: int | None = None
        self.ignore_index: int | None = 255

    def configure(self, params: dict[str, Any]) -> MeanIou:
        """A copy configured from a card's ``metric.params`` (see the module's documentation)."""
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            raise CellError(
                "bad_input",
                f"metric 'miou': unknown metric.params.{unknown[0]} (all unknown: {unknown}); allowed: {list(PARAMS)}",
            )
        configured = copy.copy(self)
        layout = params.get("layout")
        if layout is not None and layout not in LAYOUTS:
            raise _bad("layout", f"must be one of {list(LAYOUTS)}, got {layout!r}")
        configured.layout = layout
        for key in ("binary", "sigmoid"):
            value = params.get(key, False)
            if not isinstance(value, bool):
                raise _bad(key, f"must be true or false, got {value!r}")
            setattr(configured, key, value)
        if not configured.binary:
            for key in ("threshold", "sigmoid"):
                if key in params:
                    raise _bad(key, "is read for one-channel masks only; add binary: true, or drop it")
        threshold = params.get("threshold", 0.5)
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not np.isfinite(threshold):
            raise _bad("threshold", f"must be a number (a pixel above it is class 1), got {threshold!r}")
        configured.threshold = float(threshold)
        num_classes = params.get("num_classes")
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)):
            raise _bad("num_classes", f"must be a whole number >= 2, got {num_classes!r}")
        if num_classes is not None and (num_classes < 2 or (configured.binary and num_classes != 2)):
            raise _bad("num_classes", f"must be >= 2 (2 for binary: true), got {num_classes!r}")
        configured.num_classes = 2 if configured.binary else num_classes
        ignore = params.get("ignore_index", 255)
        if ignore is not None and (isinstance(ignore, bool) or not isinstance(ignore, int)):
            raise _bad("ignore_index", f"must be a whole number or null, got {ignore!r}")
        configured.ignore_index = ignore
        return configured

    def _predicted(self, output: np.ndarray) -> np.ndarray:
        """The output as an ``[N, H, W]`` int64 class map."""
        shape = list(output.shape)
        if self.binary:
            layout = self.layout
            if layout is None:
                layout = "NHW" if output.ndim == 3 else ("NCHW" if output.ndim == 4 and shape[1] == 1 else "NHWC")
            if layout == "NHW" and output.ndim == 3:
                mask = output
            elif output.ndim == 4 and layout == "NCHW" and shape[1] == 1:
                mask = output[:, 0]
            elif output.ndim == 4 and layout == "NHWC" and shape[3] == 1:
                mask = output[..., 0]
            else:
                raise _bad(
                    "layout",
                    f"({layout}) does not fit a one-channel mask of shape {shape}; binary: true reads [N, H, W], "
                    "[N, 1, H, W] (NCHW) or [N, H, W, 1] (NHWC)",
                )
            values = mask.astype(np.float64)
            if self.sigmoid:
                values = 1.0 / (1.0 + np.exp(-np.clip(values, -500.0, 500.0)))
            return (values > self.threshold).astype(np.int64)
        layout = self.layout or "NCHW"
        if layout == "NHW":
            if output.ndim != 3:
                raise _bad("layout", f"is NHW (a class map) but the output has shape {shape}; expected [N, H, W]")
            values = output.astype(np.float64)
            if not np.all(values == np.round(values)) or values.min(initial=0) < 0:
                raise _bad("layout", "is NHW (a class map) but the output holds values that are no class indices")
            return values.astype(np.int64)
        if output.ndim != 4:
            raise _bad("layout", f"is {layout} but the output has shape {shape}; expected 4 axes ([N, C, H, W] etc.)")
        axis = 1 if layout == "NCHW" else 3
        classes = shape[axis]
        if classes < 2:
            raise _bad(
                "layout",
                f"({layout}) reads {classes} class(es) from the output of shape {shape}; for a one-channel mask set "
                "binary: true, else check the layout",
            )
        if self.num_classes is not None and classes != self.num_classes:
            raise _bad("num_classes", f"is {self.num_classes} but the output of shape {shape} ({layout}) has {classes}")
        return np.argmax(output, axis=axis).astype(np.int64)

    def score(self, output: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Per image, the mean IoU over the classes present in its ground truth or prediction."""
        one_output(self.name, output, "the mask")
        require_labels(self.name, labels, "give an [N, H, W] class map per sample")
        output, labels = np.asarray(output), np.asarray(labels)
        if labels.ndim == 4 and 1 in (labels.shape[1], labels.shape[3]):
            labels = labels[:, 0] if labels.shape[1] == 1 else labels[..., 0]
        whole = labels.dtype.kind in "iu" or (labels.dtype.kind == "f" and np.all(labels == np.round(labels)))
        if labels.ndim != 3 or not whole:
            raise CellError(
                "bad_input",
                f"metric 'miou': labels of shape {list(labels.shape)} (dtype {labels.dtype}); segmentation labels "
                "are [N, H, W] class indices",
            )
        truth = labels.astype(np.int64)
        predicted = self._predicted(output)
        if predicted.shape != truth.shape:
            raise CellError(
                "bad_input",
                f"metric 'miou': the predicted class map has shape {list(predicted.shape)} (from output "
                f"{list(output.shape)}), the labels {list(truth.shape)}; they need the same N, H and W (save the "
                "labels at the output's resolution, and check metric.params.layout)",
            )
        valid = truth != self.ignore_index if self.ignore_index is not None else np.ones(truth.shape, dtype=bool)
        bad = valid & ((truth < 0) | (truth >= self.num_classes if self.num_classes else False))
        if bad.any():
            at = tuple(int(i) for i in np.argwhere(bad)[0])
            raise CellError(
                "bad_input",
                f"metric 'miou': label {truth[at]} at sample {at[0]}, pixel {list(at[1:])} is no class of "
                f"0..{(self.num_classes or 1) - 1} nor the ignore_index {self.ignore_index}; fix the labels or "
                "metric.params.num_classes / metric.params.ignore_index",
            )
        classes = int(max(truth[valid].max(initial=0), predicted.max(initial=0))) + 1
        scores = np.ones(len(truth))
        for i in range(len(truth)):
            pixels = valid[i]
            pairs = truth[i][pixels] * classes + predicted[i][pixels]
            confusion = np.bincount(pairs, minlength=classes * classes).reshape(classes, classes)
            inter = np.diag(confusion).astype(np.float64)
            union = confusion.sum(axis=0) + confusion.sum(axis=1) - inter
            present = union > 0
            if present.any():
                scores[i] = float(np.mean(inter[present] / union[present]))
        return scores


@zoocompat.hookimpl
def zoocompat_metrics() -> list:
    """The segmentation metrics of this module."""
    return [MeanIou()]
