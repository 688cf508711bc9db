"""Detection metrics: COCO average precision of each image on its own, computed by pycocotools.

- ``map50``: AP at IoU 0.5.
- ``map50_95``: AP averaged over IoU 0.50, 0.55, ..., 0.95 (COCO's primary metric).

**Per image.** A sample's score is what pycocotools' ``COCOeval`` reports as AP
(``stats[1]`` / ``stats[0]``, area range "all", at most ``max_detections``
detections) when it evaluates that image alone (``params.imgIds = [i]``): the
101-point interpolated precision averaged over the classes in the image's
ground truth. So a detection of a class the image has no ground truth of
does not lower that image's AP (COCO leaves such a class out of the mean),
while a false positive of a labeled class does. Two cases COCO leaves
undefined are fixed here: an image with no ground truth scores 1.0 when
nothing is detected in it and 0.0 when anything is. The mean of the
per-image scores is not the dataset mAP (which pools detections over images
before ranking them), but it is an average two runs compare image by image.

**Labels** are ``[N, M, 5]`` floats, a row ``(x1, y1, x2, y2, class)`` per
ground-truth box in label pixels, padded with rows of ``-1`` (a row whose class
is negative is padding). Classes are whole numbers >= 0.

**Outputs** are read by ``metric.params``. With one output (``metric.output:
name``), it holds ``[N, D, 4 + ...]`` rows, the box first and then a score
column (and optionally a class column); ``scores`` and ``classes`` are then
column indices (default: score in column 4, one class 0)::

    metric:
      name: map50
      output: detections            # [N, D, 6]: x1, y1, x2, y2, score, class
      params: {scores: 4, classes: 5, score_threshold: 0.001}

With several outputs (``metric.output: [a, b, ...]``) the params name them::

    metric:
      name: map50_95
      output: [detection_boxes, detection_scores, detection_classes, num_detections]
      params:
        boxes: detection_boxes      # [N, D, 4]
        scores: detection_scores    # [N, D] (or [N, D, C] class scores: the best class is taken)
        classes: detection_classes  # [N, D] (optional: single-class detectors are class 0)
        count: num_detections       # [N] (optional: only the first count rows are detections)
        box_format: yxyx            # xyxy (default) | xywh | cxcywh | yxyx
        normalized: true            # coordinates in 0..1: scaled by image_size
        image_size: [640, 640]      # [height, width] of the labels' pixels
        class_offset: -1            # added to the predicted class (1-based outputs, 0-based labels)
        score_threshold: 0.05       # detections scoring lower are dropped (default: none dropped)
        max_detections: 100         # the best ones kept per image (default 100, as COCO)

A detection with a non-finite box or score, or a class below 0 (after
``class_offset``), is dropped. A detector that pads its rows with zeros needs
``score_threshold`` (or ``count``) to drop the padding: a kept padding row is a
detection, which makes an image without ground truth score 0. Boxes go to
``xyxy`` label pixels before pycocotools sees them (as ``x, y, w, h``).

**Raw SSD outputs** (``decode: {kind: ssd_anchors, ...}``), for detectors such as
MediaPipe's BlazeFace face detector that output one box regressor per anchor
(``boxes: [N, A, 4 + 2 * keypoints]``) and one logit per anchor (``scores: [N, A, 1]``):
the anchors are generated as MediaPipe's SSD anchor calculator describes them, the
boxes decoded against them, the logits turned into scores by a sigmoid, and
overlapping boxes suppressed. The decoded boxes are normalized; ``image_size``
(default: the decoder's ``input_size``) brings them to label pixels. The decoder's
parameters, with the BlazeFace short-range (front camera, 128 x 128) defaults:

=================================== ======================== =====================================
``decode.`` key                     default                  meaning
=================================== ======================== =====================================
``input_size``                      ``[128, 128]``           the model input ``[height, width]``
``num_layers``                      4                        feature maps anchors are laid on
``strides``                         ``[8, 16, 16, 16]``      stride of each layer (one per layer)
``min_scale`` / ``max_scale``       0.1484375 / 0.75         anchor scales, linear over the layers
``anchor_offset``                   0.5                      cell centre offset (a number or [x, y])
``aspect_ratios``                   ``[1.0]``                anchor aspect ratios of each layer
``interpolated_scale_aspect_ratio`` 1.0                      one more anchor per layer (0: none)
``reduce_boxes_in_lowest_layer``    false                    layer 0: 3 fixed anchors instead
``fixed_anchor_size``               true                     anchor width and height are 1
``x_scale`` ... ``h_scale``         128                      regressor units per anchor size
``box_order``                       ``xywh``                 regressor order (``yxhw``: y first)
``sigmoid``                         true                     scores = sigmoid(logits)
``score_clipping``                  100                      logits clipped to +-this first (0: no)
``min_score``                       0.5                      anchors scoring lower are dropped
``nms``                             ``hard``                 ``hard`` or ``weighted`` (MediaPipe's graph)
``nms_iou``                         0.3                      overlap (IoU) that suppresses a box
=================================== ======================== =====================================

Anchors: consecutive layers with the same stride share one feature map of
``ceil(input / stride)`` cells; each layer adds an anchor per aspect ratio at its
scale ``min_scale + (max_scale - min_scale) * layer / (num_layers - 1)``, plus,
with ``interpolated_scale_aspect_ratio``, one at ``sqrt(scale * next scale)``
(next scale 1.0 after the last layer). Anchor centres are ``((x + offset) / cells_w,
(y + offset) / cells_h)``, row by row, the anchors of a cell together. For BlazeFace
that is 16 x 16 x 2 + 8 x 8 x 6 = 896 anchors. Decoding: ``cx = dx / x_scale * aw +
ax``, ``cy = dy / y_scale * ah + ay``, ``w = dw / w_scale * aw``, ``h = dh / h_scale * ah``
(values past the box, such as keypoints, are not read).
Suppression is class-agnostic: ``hard`` keeps the best box and drops the ones
overlapping it by more than ``nms_iou``; ``weighted`` (what MediaPipe's face graph
runs) replaces the best box by the score-weighted mean of it and the boxes it
drops. With several logits per anchor (``[N, A, C]``) the best class is taken.

pycocotools is imported when a detection metric first scores.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

import zoocompat
from zoocompat.api.errors import CellError

__all__ = ["DecodeSettings", "MeanAp50", "MeanAp50to95", "decode_ssd", "nms", "ssd_anchors"]

PARAMS = (
    "boxes",
    "scores",
    "classes",
    "count",
    "box_format",
    "normalized",
    "image_size",
    "class_offset",
    "score_threshold",
    "max_detections",
    "decode",
)
BOX_FORMATS = ("xyxy", "xywh", "cxcywh", "yxyx")
#: COCO's "all" area range
_ALL_AREAS = [0.0, 1e5**2]


def _bad(metric: str, key: str, problem: str) -> CellError:
    return CellError(
        "bad_input", f"metric {metric!r}: metric.params.{key} {problem}; fix metric.params.{key} in the card"
    )


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _is_whole(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int)


# --- the SSD anchor decoder --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodeSettings:
    """The ``decode: {kind: ssd_anchors, ...}`` parameters (defaults: MediaPipe BlazeFace short range)."""

    input_size: tuple[int, int] = (128, 128)
    num_layers: int = 4
    strides: tuple[int, ...] = (8, 16, 16, 16)
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    anchor_offset: tuple[float, float] = (0.5, 0.5)
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = False
    fixed_anchor_size: bool = True
    x_scale: float = 128.0
    y_scale: float = 128.0
    w_scale: float = 128.0
    h_scale: float = 128.0
    box_order: str = "xywh"
    sigmoid: bool = True
    score_clipping: float = 100.0
    min_score: float = 0.5
    nms: str = "hard"
    nms_iou: float = 0.3


_DECODE_KEYS = ("kind", *DecodeSettings.__dataclass_fields__)


def _decode_settings(metric: str, raw: Any) -> DecodeSettings:
    """:class:`DecodeSettings` from a card's ``metric.params.decode`` mapping, checked."""
    if not isinstance(raw, dict) or raw.get("kind") != "ssd_anchors":
        raise _bad(metric, "decode", f"must be a mapping with kind: ssd_anchors, got {raw!r}")
    unknown = sorted(set(raw) - set(_DECODE_KEYS))
    if unknown:
        raise _bad(
            metric, f"decode.{unknown[0]}", f"is unknown (all unknown: {unknown}); allowed: {list(_DECODE_KEYS)}"
        )
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"decode.{key}"
        if key == "kind":
            continue
        if key == "input_size":
            if not isinstance(value, list | tuple) or len(value) != 2 or not all(_is_whole(v) and v > 0 for v in value):
                raise _bad(metric, where, f"must be [height, width] in pixels, got {value!r}")
            value = tuple(value)
        elif key == "num_layers":
            if not _is_whole(value) or value < 1:
                raise _bad(metric, where, f"must be a whole number >= 1, got {value!r}")
        elif key == "strides":
            if not isinstance(value, list | tuple) or not value or not all(_is_whole(v) and v > 0 for v in value):
                raise _bad(metric, where, f"must be a list of whole numbers > 0, got {value!r}")
            value = tuple(value)
        elif key == "anchor_offset":
            pair = [value, value] if _is_number(value) else value
            if not isinstance(pair, list | tuple) or len(pair) != 2 or not all(_is_number(v) for v in pair):
                raise _bad(metric, where, f"must be a number or [x, y], got {value!r}")
            value = (float(pair[0]), float(pair[1]))
        elif key == "aspect_ratios":
            if not isinstance(value, list | tuple) or not value or not all(_is_number(v) and v > 0 for v in value):
                raise _bad(metric, where, f"must be a list of numbers > 0, got {value!r}")
            value = tuple(float(v) for v in value)
        elif key in ("reduce_boxes_in_lowest_layer", "fixed_anchor_size", "sigmoid"):
            if not isinstance(value, bool):
                raise _bad(metric, where, f"must be true or false, got {value!r}")
        elif key == "box_order":
            if value not in ("xywh", "yxhw"):
                raise _bad(metric, where, f"must be xywh or yxhw, got {value!r}")
        elif key == "nms":
            if value not in ("hard", "weighted"):
                raise _bad(metric, where, f"must be hard or weighted, got {value!r}")
        else:  # the numbers
            positive = key in ("x_scale", "y_scale", "w_scale", "h_scale", "max_scale")
            if not _is_number(value) or value < 0 or (positive and value == 0):
                raise _bad(metric, where, f"must be a number {'> 0' if positive else '>= 0'}, got {value!r}")
            value = float(value)
        values[key] = value
    settings = replace(DecodeSettings(), **values)
    if len(settings.strides) != settings.num_layers:
        raise _bad(
            metric,
            "decode.strides",
            f"gives {len(settings.strides)} strides for num_layers {settings.num_layers}; give one stride per layer",
        )
    if settings.min_scale > settings.max_scale:
        raise _bad(metric, "decode.min_scale", f"({settings.min_scale}) is above max_scale ({settings.max_scale})")
    if settings.nms_iou > 1:
        raise _bad(metric, "decode.nms_iou", f"is an IoU, 0..1; got {settings.nms_iou}")
    return settings


def _layer_scale(settings: DecodeSettings, layer: int) -> float:
    """The anchor scale of ``layer``: linear from ``min_scale`` to ``max_scale`` over the layers."""
    if settings.num_layers == 1:
        return (settings.min_scale + settings.max_scale) / 2.0
    return settings.min_scale + (settings.max_scale - settings.min_scale) * layer / (settings.num_layers - 1)


def ssd_anchors(settings: DecodeSettings | None = None) -> np.ndarray:
    """The SSD anchors of ``settings`` as ``[A, 4]`` float64 ``(cx, cy, w, h)``, normalized to 0..1.

    896 for the default (BlazeFace, 128 x 128) settings; see the module's documentation for the layout.
    """
    settings = settings or DecodeSettings()
    height, width = settings.input_size
    anchors: list[np.ndarray] = []
    layer = 0
    while layer < settings.num_layers:
        sizes: list[tuple[float, float]] = []  # (width, height) of each anchor of one cell
        last = layer
        while last < settings.num_layers and settings.strides[last] == settings.strides[layer]:
            scale = _layer_scale(settings, last)
            if last == 0 and settings.reduce_boxes_in_lowest_layer:
                shapes = [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
            else:
                shapes = [(scale, ratio) for ratio in settings.aspect_ratios]
                if settings.interpolated_scale_aspect_ratio > 0:
                    following = 1.0 if last == settings.num_layers - 1 else _layer_scale(settings, last + 1)
                    shapes.append((math.sqrt(scale * following), settings.interpolated_scale_aspect_ratio))
            sizes += [(s * math.sqrt(r), s / math.sqrt(r)) for s, r in shapes]
            last += 1
        stride = settings.strides[layer]
        rows, cols = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres_x = (xs.reshape(-1) + settings.anchor_offset[0]) / cols
        centres_y = (ys.reshape(-1) + settings.anchor_offset[1]) / rows
        shape = np.ones((len(sizes), 2)) if settings.fixed_anchor_size else np.asarray(sizes, dtype=np.float64)
        cells = len(centres_x)
        layer_anchors = np.empty((cells, len(sizes), 4))
        layer_anchors[:, :, 0] = centres_x[:, None]
        layer_anchors[:, :, 1] = centres_y[:, None]
        layer_anchors[:, :, 2:] = shape[None, :, :]
        anchors.append(layer_anchors.reshape(-1, 4))
        layer = last
    return np.concatenate(anchors) if anchors else np.zeros((0, 4))


def _iou_one(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one ``xyxy`` box with each row of ``others``."""
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0.0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0.0, None)
    inter = width * height
    area = max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)
    areas = np.clip(others[:, 2] - others[:, 0], 0.0, None) * np.clip(others[:, 3] - others[:, 1], 0.0, None)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(
    boxes: np.ndarray, scores: np.ndarray, iou: float, weighted: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class-agnostic non-maximum suppression of ``xyxy`` ``boxes``, best first: ``(indices, boxes, scores)``
    of the kept boxes (``indices`` into ``boxes``).

    The best box left is kept and every box overlapping it by more than ``iou`` dropped. ``weighted``: the
    kept box is the score-weighted mean of itself and the boxes it drops (its score stays its own).
    """
    remaining = np.argsort(-scores, kind="stable")
    kept, kept_boxes = [], []
    while len(remaining):
        best = remaining[0]
        cluster = remaining[_iou_one(boxes[best], boxes[remaining]) > iou]
        if best not in cluster:  # a degenerate (empty) box overlaps nothing, itself included
            cluster = np.concatenate([[best], cluster])
        weights = scores[cluster]
        if weighted and weights.sum() > 0:
            kept_boxes.append((boxes[cluster] * weights[:, None]).sum(axis=0) / weights.sum())
        else:
            kept_boxes.append(boxes[best])
        kept.append(best)
        remaining = remaining[~np.isin(remaining, cluster)]
    index = np.asarray(kept, dtype=np.int64)
    return index, np.asarray(kept_boxes, dtype=np.float64).reshape(-1, 4), scores[index].astype(np.float64)


def decode_ssd(
    regressors: np.ndarray, logits: np.ndarray, settings: DecodeSettings, anchors: np.ndarray | None = None
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Decode raw SSD outputs: per sample ``(boxes xyxy normalized 0..1, scores, classes)`` after suppression.

    ``regressors`` is ``[N, A, 4 + ...]`` (box first, in ``settings.box_order``), ``logits`` ``[N, A]``,
    ``[N, A, 1]`` or ``[N, A, C]`` (the best class is taken; suppression is across classes).
    """
    anchors = ssd_anchors(settings) if anchors is None else anchors
    raw = regressors.astype(np.float64)
    if settings.box_order == "yxhw":
        raw = raw[..., [1, 0, 3, 2]]
    scale = np.array([settings.x_scale, settings.y_scale, settings.w_scale, settings.h_scale])
    deltas = raw[..., :4] / scale
    cx = deltas[..., 0] * anchors[:, 2] + anchors[:, 0]
    cy = deltas[..., 1] * anchors[:, 3] + anchors[:, 1]
    half_w = deltas[..., 2] * anchors[:, 2] / 2.0
    half_h = deltas[..., 3] * anchors[:, 3] / 2.0
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)
    values = logits.astype(np.float64).reshape(len(raw), len(anchors), -1)
    if settings.score_clipping > 0:
        values = np.clip(values, -settings.score_clipping, settings.score_clipping)
    if settings.sigmoid:
        values = 1.0 / (1.0 + np.exp(-values))
    classes, scores = np.argmax(values, axis=-1), np.max(values, axis=-1)
    decoded = []
    for i in range(len(raw)):
        keep = (scores[i] >= settings.min_score) & np.isfinite(boxes[i]).all(axis=1) & np.isfinite(scores[i])
        index = np.flatnonzero(keep)
        kept, kept_boxes, kept_scores = nms(
            boxes[i][index], scores[i][index], settings.nms_iou, settings.nms == "weighted"
        )
        decoded.append((kept_boxes, kept_scores, classes[i][index[kept]]))
    return decoded


# --- reading the outputs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Config:
    boxes: str | int | None = None
    scores: str | int | None = None
    classes: str | int | None = None
    count: str | None = None
    box_format: str = "xyxy"
    normalized: bool = False
    image_size: tuple[float, float] | None = None
    class_offset: int = 0
    score_threshold: float | None = None
    max_detections: int = 100
    decode: DecodeSettings | None = None


def _config(metric: str, params: dict[str, Any]) -> _Config:
    """The checked :class:`_Config` of a card's ``metric.params``."""
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise CellError(
            "bad_input",
            f"metric {metric!r}: unknown metric.params.{unknown[0]} (all unknown: {unknown}); allowed: {list(PARAMS)}",
        )
    for key in ("boxes", "scores", "classes"):
        value = params.get(key)
        if value is not None and not (isinstance(value, str) and value) and not (_is_whole(value) and value >= 0):
            raise _bad(
                metric, key, f"must name an output (several outputs) or a column index >= 0 (one output), got {value!r}"
            )
    count = params.get("count")
    if count is not None and not (isinstance(count, str) and count):
        raise _bad(metric, "count", f"must name the output holding the number of detections, got {count!r}")
    box_format = params.get("box_format", "xyxy")
    if box_format not in BOX_FORMATS:
        raise _bad(metric, "box_format", f"must be one of {list(BOX_FORMATS)}, got {box_format!r}")
    normalized = params.get("normalized", False)
    if not isinstance(normalized, bool):
        raise _bad(metric, "normalized", f"must be true or false, got {normalized!r}")
    image_size = params.get("image_size")
    if image_size is not None:
        if (
            not isinstance(image_size, list | tuple)
            or len(image_size) != 2
            or not all(_is_number(v) and v > 0 for v in image_size)
        ):
            raise _bad(metric, "image_size", f"must be [height, width] of the labels' pixels, got {image_size!r}")
        image_size = (float(image_size[0]), float(image_size[1]))
    class_offset = params.get("class_offset", 0)
    if not _is_whole(class_offset):
        raise _bad(metric, "class_offset", f"must be a whole number (added to predicted classes), got {class_offset!r}")
    threshold = params.get("score_threshold")
    if threshold is not None and not _is_number(threshold):
        raise _bad(metric, "score_threshold", f"must be a number, got {threshold!r}")
    max_detections = params.get("max_detections", 100)
    if not _is_whole(max_detections) or max_detections < 1:
        raise _bad(metric, "max_detections", f"must be a whole number >= 1, got {max_detections!r}")
    decode = _decode_settings(metric, params["decode"]) if "decode" in params else None
    if decode is not None:
        for key in ("box_format", "normalized", "classes", "count"):
            if key in params:
                raise _bad(metric, key, "does not apply with decode (the decoder gives normalized boxes and classes)")
        for key in ("boxes", "scores"):
            if not isinstance(params.get(key), str):
                raise _bad(
                    metric,
                    key,
                    "must name an output when decode is given (boxes: the regressors, scores: the logits), "
                    f"got {params.get(key)!r}",
                )
        image_size = image_size or (float(decode.input_size[0]), float(decode.input_size[1]))
    elif normalized and image_size is None:
        raise _bad(metric, "image_size", "is needed with normalized: true ([height, width] of the labels' pixels)")
    elif not normalized and image_size is not None:
        raise _bad(metric, "image_size", "is read only with normalized: true or decode; drop it or set normalized")
    return _Config(
        boxes=params.get("boxes"),
        scores=params.get("scores"),
        classes=params.get("classes"),
        count=count,
        box_format=box_format,
        normalized=normalized,
        image_size=image_size,
        class_offset=class_offset,
        score_threshold=None if threshold is None else float(threshold),
        max_detections=max_detections,
        decode=decode,
    )


def _to_xyxy(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """``[..., 4]`` boxes in ``box_format`` as ``(x1, y1, x2, y2)``."""
    a, b, c, d = (boxes[..., i] for i in range(4))
    if box_format == "xywh":
        return np.stack([a, b, a + c, b + d], axis=-1)
    if box_format == "cxcywh":
        return np.stack([a - c / 2, b - d / 2, a + c / 2, b + d / 2], axis=-1)
    if box_format == "yxyx":
        return np.stack([b, a, d, c], axis=-1)
    return boxes


#: one image's detections: xyxy boxes in label pixels [D, 4], scores [D], int classes [D]
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]


class _MeanAp:
    """Per-image COCO AP (pycocotools); subclasses set the IoU thresholds."""

    name = ""
    higher_is_better = True
    iou_thresholds: np.ndarray = np.array([0.5])

    def __init__(self) -> None:
        self.config = _Config()

    def configure(self, params: dict[str, Any]) -> _MeanAp:
        """A copy configured from a card's ``metric.params`` (see the module's documentation)."""
        configured = copy.copy(self)
        configured.config = _config(self.name, params)
        return configured

    # reading ------------------------------------------------------------------------------------------------------

    def _named(self, outputs: dict[str, np.ndarray], key: str) -> np.ndarray:
        name = getattr(self.config, key)
        if not isinstance(name, str) or name not in outputs:
            problem = (
                "is missing" if name is None else f"is {name!r}, not an output name among metric.output {list(outputs)}"
            )
            raise _bad(self.name, key, f"{problem}; with several outputs, name the {key} output")
        return np.asarray(outputs[name])

    def _rows(self, array: np.ndarray, count: int, key: str, width: int | None = None) -> np.ndarray:
        """``array`` as ``[N, D]`` (``width`` None) or ``[N, D, width]``."""
        array = np.asarray(array)
        if width is None:
            if array.ndim >= 1 and len(array) == count:
                return array.reshape(count, -1)
        elif array.ndim >= 2 and len(array) == count and array.shape[-1] == width:
            return array.reshape(count, -1, width)
        wanted = "[N, D]" if width is None else f"[N, D, {width}]"
        raise _bad(self.name, key, f"names an output of shape {list(array.shape)}; expected {wanted} for N={count}")

    def _read(self, output: Any, count: int) -> list[Detections]:
        """Each image's detections from the metric's output(s), in label pixels."""
        cfg = self.config
        if cfg.decode is not None:
            if not isinstance(output, dict):
                raise _bad(
                    self.name,
                    "decode",
                    "needs two outputs (regressors and logits): list both under metric.output and name them as "
                    "metric.params.boxes and metric.params.scores",
                )
            regressors = self._named(output, "boxes")
            logits = self._named(output, "scores")
            anchors = ssd_anchors(cfg.decode)
            if regressors.ndim < 2 or len(regressors) != count or regressors.size // count % len(anchors):
                raise _bad(
                    self.name,
                    "decode",
                    f"makes {len(anchors)} anchors, but the regressors have shape {list(regressors.shape)}; "
                    "check decode.input_size / strides / num_layers / aspect_ratios against the model",
                )
            regressors = regressors.reshape(count, len(anchors), -1)
            if regressors.shape[2] < 4 or logits.size % (count * len(anchors)):
                raise _bad(
                    self.name,
                    "decode",
                    f"reads regressors {list(regressors.shape)} and logits {list(logits.shape)} for "
                    f"{len(anchors)} anchors; expected [N, {len(anchors)}, >= 4] and [N, {len(anchors)}, classes]",
                )
            height, width = cfg.image_size or cfg.decode.input_size
            scale = np.array([width, height, width, height], dtype=np.float64)
            decoded = decode_ssd(regressors, logits, cfg.decode, anchors)
            return [self._finish(boxes * scale, scores, classes) for boxes, scores, classes in decoded]
        if isinstance(output, dict):
            boxes = self._rows(self._named(output, "boxes"), count, "boxes", 4)
            detections = boxes.shape[1]
            scores = self._named(output, "scores")
            classes = None
            if cfg.classes is not None:
                classes = self._rows(self._named(output, "classes"), count, "classes")
            if scores.size == count * detections:
                scores = scores.reshape(count, detections)
            elif scores.ndim >= 2 and len(scores) == count and scores.size % (count * detections) == 0:
                per_class = scores.reshape(count, detections, -1)  # class scores: the best class is the detection's
                if classes is not None:
                    raise _bad(
                        self.name,
                        "classes",
                        f"is given, but the scores output of shape {list(scores.shape)} holds class scores per "
                        "detection, from which the class is taken; drop one or the other",
                    )
                classes, scores = np.argmax(per_class, axis=-1), np.max(per_class, axis=-1)
            else:
                raise _bad(
                    self.name,
                    "scores",
                    f"names an output of shape {list(scores.shape)}; expected one score per box ([N, {detections}])",
                )
            if classes is not None and classes.shape != scores.shape:
                raise _bad(
                    self.name, "classes", f"gives {list(classes.shape)} classes for {list(scores.shape)} detections"
                )
            valid = np.ones(scores.shape, dtype=bool)
            if cfg.count is not None:
                counts = self._rows(self._named(output, "count"), count, "count")
                if counts.shape[1] != 1:
                    raise _bad(self.name, "count", f"names an output of shape {list(counts.shape)}; expected [N]")
                valid = np.arange(detections)[None, :] < np.nan_to_num(counts, nan=0.0)
        else:
            for key in ("boxes", "scores", "classes", "count"):
                if isinstance(getattr(cfg, key), str):
                    raise _bad(
                        self.name,
                        key,
                        f"names an output ({getattr(cfg, key)!r}), but metric.output names one output; list the "
                        "outputs under metric.output, or give column indices for the one output's rows",
                    )
            rows = np.asarray(output)
            start = cfg.boxes or 0
            if rows.ndim < 2 or len(rows) != count or rows.shape[-1] < start + 4:
                raise CellError(
                    "bad_input",
                    f"metric {self.name!r}: output of shape {list(rows.shape)} for {count} images; expected "
                    f"[N, D, 4 + ...] rows with the box at columns {start}..{start + 3} (see metric.params.boxes)",
                )
            rows = rows.reshape(count, -1, rows.shape[-1])
            columns = rows.shape[-1]
            score_column = cfg.scores if cfg.scores is not None else 4
            for key, column in (("scores", score_column), ("classes", cfg.classes)):
                if column is not None and column >= columns:
                    raise _bad(self.name, key, f"is column {column}, but the output's rows have {columns} columns")
            boxes = rows[..., start : start + 4]
            scores = rows[..., score_column]
            classes = rows[..., cfg.classes] if cfg.classes is not None else None
            valid = np.ones(scores.shape, dtype=bool)
        boxes = _to_xyxy(boxes.astype(np.float64), cfg.box_format)
        if cfg.normalized:
            height, width = cfg.image_size
            boxes = boxes * np.array([width, height, width, height])
        scores = scores.astype(np.float64)
        if classes is None:
            classes = np.zeros(scores.shape, dtype=np.int64)
        classes = np.asarray(classes, dtype=np.float64)
        whole = np.isfinite(classes) & (np.round(classes) == classes)  # NaN / fractional classes: no detection
        classes = np.where(valid & whole, classes + cfg.class_offset, -1.0).astype(np.int64)
        return [self._finish(boxes[i][valid[i]], scores[i][valid[i]], classes[i][valid[i]]) for i in range(count)]

    def _finish(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> Detections:
        """Drop invalid and low-scoring detections, keep the ``max_detections`` best."""
        keep = np.isfinite(boxes).all(axis=1) & np.isfinite(scores) & (classes >= 0)
        if self.config.score_threshold is not None:
            keep &= scores >= self.config.score_threshold
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        order = np.argsort(-scores, kind="stable")[: self.config.max_detections]
        return boxes[order], scores[order], classes[order]

    def _truth(self, labels: Any, count: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each image's ground truth ``(xyxy boxes [M, 4], int classes [M])`` from ``[N, M, 5]`` labels."""
        if labels is None or np.size(labels) == 0 and np.ndim(labels) < 3:
            raise CellError(
                "bad_input",
                f"metric {self.name!r}: no labels; give [N, M, 5] boxes (x1, y1, x2, y2, class) per image, "
                "padded with rows of -1",
            )
        labels = np.asarray(labels)
        if labels.ndim != 3 or labels.shape[2] != 5 or labels.dtype.kind not in "iuf":
            raise CellError(
                "bad_input",
                f"metric {self.name!r}: labels of shape {list(labels.shape)} (dtype {labels.dtype}); detection "
                "labels are numbers [N, M, 5]: a row (x1, y1, x2, y2, class) per box, padded with rows of -1",
            )
        labels = labels.astype(np.float64)
        real = labels[..., 4] >= 0
        rows = labels[real]
        problems = (rows[:, 4] != np.round(rows[:, 4])) | (rows[:, 2] < rows[:, 0]) | (rows[:, 3] < rows[:, 1])
        if problems.any():
            image, box = (int(i) for i in np.argwhere(real)[int(np.flatnonzero(problems)[0])])
            raise CellError(
                "bad_input",
                f"metric {self.name!r}: label box {labels[image, box].tolist()} of image {image} (row {box}) is no "
                "(x1, y1, x2, y2, class) box: the class must be a whole number and x2 >= x1, y2 >= y1",
            )
        return [(labels[i][real[i], :4], labels[i][real[i], 4].astype(np.int64)) for i in range(len(labels))]

    # scoring ------------------------------------------------------------------------------------------------------

    def score(self, output: Any, labels: np.ndarray) -> np.ndarray:
        """Per image, its COCO AP over the metric's IoU thresholds (1.0 / 0.0 for an image without ground truth
        and without / with detections).
        """
        truth = self._truth(labels)
        detections = self._read(output, len(truth))
        return per_image_ap(truth, detections, self.iou_thresholds, self.config.max_detections)


def per_image_ap(
    truth: list[tuple[np.ndarray, np.ndarray]],
    detections: list[Detections],
    iou_thresholds: np.ndarray,
    max_detections: int = 100,
) -> np.ndarray:
    """Each image's AP as pycocotools' ``COCOeval`` gives it evaluating that image alone (bbox, area "all").

    ``truth`` holds per image ``(xyxy boxes, classes)``, ``detections`` ``(xyxy boxes, scores, classes)``.
    An image without ground truth scores 1.0 when it has no detections, else 0.0.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box: np.ndarray) -> list[float]:
        return [float(box[0]), float(box[1]), float(max(box[2] - box[0], 0.0)), float(max(box[3] - box[1], 0.0))]

    images, gt_annotations, dt_annotations, classes = [], [], [], set()
    for image, ((gt_boxes, gt_classes), (dt_boxes, dt_scores, dt_classes)) in enumerate(
        zip(truth, detections, strict=True)
    ):
        images.append({"id": image})
        for box, cls in zip(gt_boxes, gt_classes, strict=True):
            bbox = xywh(box)
            gt_annotations.append(
                {"id": len(gt_annotations) + 1, "image_id": image, "category_id": int(cls), "bbox": bbox,
                 "area": bbox[2] * bbox[3], "iscrowd": 0}
            )  # fmt: skip
        for box, score, cls in zip(dt_boxes, dt_scores, dt_classes, strict=True):
            bbox = xywh(box)
            dt_annotations.append(
                {"id": len(dt_annotations) + 1, "image_id": image, "category_id": int(cls), "bbox": bbox,
                 "area": bbox[2] * bbox[3], "iscrowd": 0, "score": float(score)}
            )  # fmt: skip
        classes.update(int(c) for c in gt_classes)
        classes.update(int(c) for c in dt_classes)
    categories = [{"id": c} for c in sorted(classes)]
    scores = np.array([0.0 if len(dt[0]) else 1.0 for dt in detections])
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco_truth, coco_detections = COCO(), COCO()
        coco_truth.dataset = {"images": images, "annotations": gt_annotations, "categories": categories}
        coco_detections.dataset = {"images": images, "annotations": dt_annotations, "categories": categories}
        coco_truth.createIndex()
        coco_detections.createIndex()
        evaluation = COCOeval(coco_truth, coco_detections, iouType="bbox")
        for image, (gt_boxes, gt_classes) in enumerate(truth):
            if not len(gt_boxes):
                continue
            params = evaluation.params
            params.imgIds = [image]
            params.catIds = sorted({int(c) for c in gt_classes} | {int(c) for c in detections[image][2]})
            params.iouThrs = np.asarray(iou_thresholds, dtype=np.float64)
            params.maxDets = [max_detections]
            params.areaRng, params.areaRngLbl = [list(_ALL_AREAS)], ["all"]
            evaluation.evaluate()
            evaluation.accumulate()
            precision = evaluation.eval["precision"][:, :, :, 0, 0]  # [IoU thresholds, recall points, classes]
            scores[image] = float(np.mean(precision[precision > -1]))
    return scores


class MeanAp50(_MeanAp):
    """COCO AP at IoU 0.5, per image (mAP@0.5)."""

    name = "map50"
    iou_thresholds = np.array([0.5])


class MeanAp50to95(_MeanAp):
    """COCO AP averaged over IoU 0.50:0.05:0.95, per image (mAP@[0.5:0.95])."""

    name = "map50_95"
    iou_thresholds = np.linspace(0.5, 0.95, 10)


@zoocompat.hookimpl
def zoocompat_metrics() -> list:
    """The detection metrics of this module."""
    return [MeanAp50(), MeanAp50to95()]
