"""Landmark metrics: the distance of each predicted point to its ground-truth point, normalized.

Labels are ``[N, K, 2]`` float ``(x, y)`` per landmark, in label pixels. The output
(``metric.output``, one output) is read by ``metric.params``::

    metric:
      name: nme            # or pck
      output: landmarks
      params:
        layout: flat       # flat: [N, K*dims] (x0, y0[, z0], x1, ...); NKD: [N, K, D]
        dims: 3            # flat only: values per landmark (2 or 3; default: size / K)
        scale: 192.0       # output * scale = label pixels; a number, or [sx, sy] (default 1)
        norm: [33, 263]    # two landmark indices (inter-ocular distance), bbox_diagonal, or a number
        threshold: 0.1     # pck only: the largest normalized distance that counts as correct

Only ``x`` and ``y`` of each output landmark are read (``z`` is dropped). Leading
singleton axes after the sample axis (``[N, 1, 1, K*D]``) are ignored. Without
``layout`` the output is read as ``[N, K, D]`` when it has that shape, else flat.

The normalizer is per sample, from the ground truth: the distance between two
landmarks (``norm: [i, j]``, e.g. the outer eye corners: inter-ocular NME), the
diagonal of the bounding box of the sample's landmarks (``norm: bbox_diagonal``,
the default), or one fixed number in label pixels (``norm: 1`` gives plain pixel
error). A sample whose normalizer is 0 is refused.

- ``nme``: per sample, the mean over landmarks of ``|pred - gt| / norm`` (lower is better).
- ``pck``: per sample, the share of landmarks with ``|pred - gt| <= threshold * norm``
  (default threshold 0.1; higher is better).

Only numpy is imported here.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from zoocompat_plugins.metrics.params import one_output, require_labels

import zoocompat
from zoocompat.api.errors import CellError

__all__ = ["Nme", "Pck"]

LAYOUTS = ("flat", "NKD")


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and bool(np.isfinite(value))


class _Landmarks:
    """Shared parsing of the landmark metrics; subclasses turn normalized distances into scores."""

    name = ""
    higher_is_better = True
    params: tuple[str, ...] = ("layout", "dims", "scale", "norm")

    def __init__(self) -> None:
        self.layout: str | None = None
        self.dims: int | None = None
        self.scale = np.ones(2)
        self.norm: str | float | tuple[int, int] = "bbox_diagonal"
        self.threshold = 0.1

    def _bad(self, key: str, problem: str) -> CellError:
        return CellError(
            "bad_input", f"metric {self.name!r}: metric.params.{key} {problem}; fix metric.params.{key} in the card"
        )

    def configure(self, params: dict[str, Any]) -> _Landmarks:
        """A copy configured from a card's ``metric.params`` (see the module's documentation)."""
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise CellError(
                "bad_input",
                f"metric {self.name!r}: unknown metric.params.{unknown[0]} (all unknown: {unknown}); "
                f"allowed: {list(self.params)}",
            )
        configured = copy.copy(self)
        layout = params.get("layout")
        if layout is not None and layout not in LAYOUTS:
            raise self._bad("layout", f"must be one of {list(LAYOUTS)}, got {layout!r}")
        configured.layout = layout
        dims = params.get("dims")
        if dims is not None and (isinstance(dims, bool) or dims not in (2, 3)):
            raise self._bad("dims", f"must be 2 or 3 (values per landmark), got {dims!r}")
        if dims is not None and layout == "NKD":
            raise self._bad("dims", "is read for layout: flat only (NKD outputs carry D in their shape)")
        configured.dims = dims
        scale = params.get("scale", 1.0)
        if _number(scale):
            scale = [scale, scale]
        if not isinstance(scale, list | tuple) or len(scale) != 2 or not all(_number(v) and v != 0 for v in scale):
            raise self._bad(
                "scale", f"must be a non-zero number or [sx, sy] (output * scale = label pixels), got {scale!r}"
            )
        configured.scale = np.asarray(scale, dtype=np.float64)
        norm = params.get("norm", "bbox_diagonal")
        if _number(norm):
            if norm <= 0:
                raise self._bad("norm", f"as a fixed normalizer must be > 0 (label pixels), got {norm!r}")
            norm = float(norm)
        elif isinstance(norm, list | tuple):
            if len(norm) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in norm):
                raise self._bad("norm", f"as landmark indices must be two whole numbers >= 0, got {norm!r}")
            if norm[0] == norm[1]:
                raise self._bad("norm", f"names landmark {norm[0]} twice; give two different landmarks (the eyes)")
            norm = (norm[0], norm[1])
        elif norm != "bbox_diagonal":
            raise self._bad(
                "norm", f"must be [i, j] (two landmark indices), 'bbox_diagonal' or a number > 0, got {norm!r}"
            )
        configured.norm = norm
        if "threshold" in params:
            threshold = params["threshold"]
            if not _number(threshold) or threshold <= 0:
                raise self._bad("threshold", f"must be a number > 0 (times the normalizer), got {threshold!r}")
            configured.threshold = float(threshold)
        return configured

    def _points(self, output: np.ndarray, count: int, landmarks: int) -> np.ndarray:
        """The output's ``(x, y)`` per landmark, ``[N, K, 2]`` in label pixels."""
        shape = list(output.shape)
        per_sample = list(output.shape[1:])
        while len(per_sample) > 2 and per_sample[0] == 1:
            per_sample.pop(0)
        layout = self.layout or ("NKD" if len(per_sample) == 2 and per_sample[0] == landmarks else "flat")
        if layout == "NKD":
            if len(per_sample) != 2 or per_sample[0] != landmarks or per_sample[1] < 2:
                raise self._bad(
                    "layout",
                    f"is NKD but the output has shape {shape}; NKD needs [N, {landmarks}, D >= 2] for the labels' "
                    f"{landmarks} landmarks (use layout: flat for [N, K*D])",
                )
            points = output.reshape(count, landmarks, per_sample[1])
        else:
            size = int(np.prod(per_sample))
            dims = self.dims
            if dims is None:
                dims = size // landmarks if size % landmarks == 0 else 0
            if dims not in (2, 3) or size != landmarks * dims:
                raise self._bad(
                    "dims" if self.dims else "layout",
                    f"does not fit: the output of shape {shape} holds {size} values per sample, not "
                    f"{landmarks} landmarks x {self.dims or '2 or 3'} values (flat layout: x0, y0[, z0], x1, ...)",
                )
            points = output.reshape(count, landmarks, dims)
        return points[:, :, :2].astype(np.float64) * self.scale

    def distances(self, output: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``|pred - gt| / norm`` per landmark, ``[N, K]``."""
        one_output(self.name, output, "the landmarks")
        require_labels(self.name, labels, "give [N, K, 2] landmark coordinates per sample")
        output, labels = np.asarray(output), np.asarray(labels)
        if labels.ndim != 3 or labels.shape[2] != 2 or labels.dtype.kind not in "iuf":
            raise CellError(
                "bad_input",
                f"metric {self.name!r}: labels of shape {list(labels.shape)} (dtype {labels.dtype}); landmark "
                "labels are numbers [N, K, 2], (x, y) per landmark",
            )
        count, landmarks = labels.shape[:2]
        if output.ndim < 2 or len(output) != count:
            raise CellError(
                "bad_input",
                f"metric {self.name!r}: output of shape {list(output.shape)} for {count} labeled samples; "
                "the output needs the sample axis first (check metric.output)",
            )
        truth = labels.astype(np.float64)
        points = self._points(output, count, landmarks)
        if isinstance(self.norm, tuple):
            if max(self.norm) >= landmarks:
                raise self._bad("norm", f"names landmark {max(self.norm)}, but the labels have {landmarks} (0..)")
            norms = np.linalg.norm(truth[:, self.norm[0]] - truth[:, self.norm[1]], axis=1)
        elif self.norm == "bbox_diagonal":
            norms = np.linalg.norm(truth.max(axis=1) - truth.min(axis=1), axis=1)
        else:
            norms = np.full(count, float(self.norm))
        if (norms <= 0).any():
            at = int(np.flatnonzero(norms <= 0)[0])
            raise self._bad(
                "norm",
                f"gives 0 for sample {at} (its landmarks coincide); give other landmark indices or a fixed number",
            )
        return np.linalg.norm(points - truth, axis=2) / norms[:, None]


class Nme(_Landmarks):
    """Normalized mean error: the mean over landmarks of the distance to the truth over the normalizer."""

    name = "nme"
    higher_is_better = False

    def score(self, output: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Per sample, the mean normalized landmark distance (0 is perfect)."""
        return np.mean(self.distances(output, labels), axis=1)


class Pck(_Landmarks):
    """Percentage of correct keypoints: the share of landmarks within ``threshold`` times the normalizer."""

    name = "pck"
    higher_is_better = True
    params = (*_Landmarks.params, "threshold")

    def score(self, output: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Per sample, the share (0..1) of landmarks at most ``threshold`` normalized units from the truth."""
        return np.mean(self.distances(output, labels) <= self.threshold, axis=1).astype(np.float64)


@zoocompat.hookimpl
def zoocompat_metrics() -> list:
    """The landmark metrics of this module."""
    return [Nme(), Pck()]
