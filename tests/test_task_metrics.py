"""Task metrics (detection, segmentation, landmarks, embedding, regression): one score per sample, configured
from a card's metric.params, checked against reference implementations or hand-computed cases.
"""

from __future__ import annotations

import contextlib
import io
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from zoocompat_plugins.metrics import detection, embedding, landmarks, regression, segmentation
from zoocompat_plugins.metrics.detection import (
    DecodeSettings,
    MeanAp50,
    MeanAp50to95,
    decode_ssd,
    nms,
    ssd_anchors,
)
from zoocompat_plugins.metrics.embedding import RecallAtK
from zoocompat_plugins.metrics.landmarks import Nme, Pck
from zoocompat_plugins.metrics.regression import Mae, Rmse
from zoocompat_plugins.metrics.segmentation import MeanIou

from zoocompat.api.errors import CellError
from zoocompat.api.protocols import Metric, missing_members, optional
from zoocompat.api.registry import build_registry
from zoocompat.model.cards import parse_card
from zoocompat.model.datasources import load_source

ROOT = Path(__file__).parent.parent
PAD = [-1.0] * 5
MODULES = (detection, segmentation, landmarks, embedding, regression)
ALL = (MeanAp50(), MeanAp50to95(), MeanIou(), Nme(), Pck(), RecallAtK(), Mae(), Rmse())


def _padded(images: list[list[list[float]]], width: int) -> np.ndarray:
    """Rows of each image padded with -1 to the same count: ``[N, M, width]``."""
    rows = max(1, max(len(image) for image in images))
    return np.array([image + [[-1.0] * width] * (rows - len(image)) for image in images], dtype=np.float64)


def _coco_reference(labels: np.ndarray, rows: np.ndarray) -> tuple[float, float]:
    """Whole-dataset ``(AP@0.5, AP@[.5:.95])`` by pycocotools' own loadRes / evaluate / accumulate / summarize,
    from ``[N, M, 5]`` labels and ``[N, D, 6]`` (x1, y1, x2, y2, score, class) detections (class < 0: none).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    annotations, results, classes = [], [], set()
    for image, boxes in enumerate(labels):
        for x1, y1, x2, y2, cls in boxes:
            if cls >= 0:
                annotations.append(
                    {"id": len(annotations) + 1, "image_id": image, "category_id": int(cls), "iscrowd": 0,
                     "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)}
                )  # fmt: skip
                classes.add(int(cls))
        for x1, y1, x2, y2, score, cls in rows[image]:
            if cls >= 0:
                results.append(
                    {"image_id": image, "category_id": int(cls), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
                )
                classes.add(int(cls))
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {
            "images": [{"id": i} for i in range(len(labels))],
            "annotations": annotations,
            "categories": [{"id": c} for c in sorted(classes)],
        }
        truth.createIndex()
        evaluation = COCOeval(truth, truth.loadRes(results), iouType="bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return float(evaluation.stats[1]), float(evaluation.stats[0])


def _score_rows(metric, labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return metric.configure({"scores": 4, "classes": 5}).score(rows, labels)


GT = [0.0, 0.0, 10.0, 10.0, 0.0]
#: single-image cases: (labels, detections as x1, y1, x2, y2, score, class; AP@0.5 by hand; AP@[.5:.95] by hand)
SINGLE_IMAGE_CASES = {
    "perfect": ([GT, [20, 20, 40, 30, 1]], [[0, 0, 10, 10, 0.9, 0], [20, 20, 40, 30, 0.8, 1]], 1.0, 1.0),
    # class 0: both boxes found (AP 1); class 1: one of two found, the first ranked, so the precision is 1
    # up to recall 0.5: 51 of COCO's 101 recall points
    "one_miss": (
        [GT, [20, 20, 30, 30, 1], [50, 50, 60, 60, 1]],
        [[0, 0, 10, 10, 0.9, 0], [20, 20, 30, 30, 0.8, 1]],
        (1.0 + 51 / 101) / 2,
        (1.0 + 51 / 101) / 2,
    ),
    # a false positive ranked above the one true positive: precision 0.5 at recall 1, so AP 0.5
    "one_false_positive": ([GT], [[30, 30, 40, 40, 0.95, 0], [0, 0, 10, 10, 0.9, 0]], 0.5, 0.5),
    # a false positive ranked below: the precision envelope stays 1
    "false_positive_ranked_last": ([GT], [[0, 0, 10, 10, 0.9, 0], [30, 30, 40, 40, 0.1, 0]], 1.0, 1.0),
    # IoU 0.49 (width 4.9 of 10): no match at any threshold
    "iou_just_under_half": ([GT], [[0, 0, 4.9, 10, 0.9, 0]], 0.0, 0.0),
    # IoU 0.51: a match at 0.5 only, one of the ten thresholds of AP@[.5:.95]
    "iou_just_over_half": ([GT], [[0, 0, 5.1, 10, 0.9, 0]], 1.0, 0.1),
    # IoU 0.78: matches at 0.50 .. 0.75, six thresholds
    "iou_078": ([GT], [[0, 0, 7.8, 10, 0.9, 0]], 1.0, 0.6),
    # a detection of a class the image has no ground truth of: COCO leaves that class out of the image's mean
    "other_class_detected": ([GT], [[0, 0, 10, 10, 0.9, 0], [50, 50, 60, 60, 0.99, 3]], 1.0, 1.0),
    "nothing_detected": ([GT], [], 0.0, 0.0),
}


@pytest.mark.parametrize("case", SINGLE_IMAGE_CASES, ids=str)
def test_single_image_ap_matches_pycocotools_and_the_hand_value(case):
    truth, found, ap50, ap = SINGLE_IMAGE_CASES[case]
    labels, rows = _padded([truth], 5), _padded([found], 6)
    if found:  # pycocotools' loadRes takes no empty result list
        assert _coco_reference(labels, rows) == pytest.approx((ap50, ap), abs=1e-9)
    assert _score_rows(MeanAp50(), labels, rows) == pytest.approx([ap50], abs=1e-9)
    assert _score_rows(MeanAp50to95(), labels, rows) == pytest.approx([ap], abs=1e-9)


def test_each_image_scores_its_own_ap_and_a_whole_dataset_of_equal_images_agrees():
    cases = [SINGLE_IMAGE_CASES[name] for name in ("perfect", "one_false_positive", "iou_just_over_half", "one_miss")]
    labels = _padded([case[0] for case in cases], 5)
    rows = _padded([case[1] for case in cases], 6)
    assert _score_rows(MeanAp50(), labels, rows) == pytest.approx([case[2] for case in cases])
    assert _score_rows(MeanAp50to95(), labels, rows) == pytest.approx([case[3] for case in cases])
    # each image alone through pycocotools' whole-dataset evaluation gives the same
    for i in range(len(cases)):
        alone = _coco_reference(labels[i : i + 1], rows[i : i + 1])
        assert _score_rows(MeanAp50(), labels, rows)[i] == pytest.approx(alone[0])
    # images all perfectly detected: the dataset AP is 1, and so is every image's
    perfect = _padded([[GT], [[5, 5, 25, 15, 0]], [GT, [30, 30, 50, 60, 0]]], 5)
    found = _padded(
        [[[0, 0, 10, 10, 0.7, 0]], [[5, 5, 25, 15, 0.9, 0]], [[30, 30, 50, 60, 0.3, 0], GT[:4] + [0.6, 0]]], 6
    )
    assert _coco_reference(perfect, found) == pytest.approx((1.0, 1.0))
    assert _score_rows(MeanAp50to95(), perfect, found) == pytest.approx([1.0, 1.0, 1.0])


def test_random_images_match_pycocotools_image_by_image():
    rng = np.random.default_rng(3)
    labels, rows = [], []
    for _ in range(6):
        corners = rng.uniform(0, 80, (3, 2))
        truth = [[x, y, x + rng.uniform(5, 30), y + rng.uniform(5, 30), int(rng.integers(0, 2))] for x, y in corners]
        found = [[*(np.asarray(box[:4]) + rng.normal(0, 2.5, 4)), rng.uniform(), box[4]] for box in truth]
        found.append([*rng.uniform(0, 50, 2), 60.0, 60.0, rng.uniform(), int(rng.integers(0, 2))])
        labels.append(truth)
        rows.append(found)
    labels, rows = _padded(labels, 5), _padded(rows, 6)
    ours50, ours = _score_rows(MeanAp50(), labels, rows), _score_rows(MeanAp50to95(), labels, rows)
    for i in range(len(labels)):
        assert (ours50[i], ours[i]) == pytest.approx(_coco_reference(labels[i : i + 1], rows[i : i + 1]))


def test_images_without_ground_truth():
    labels = np.full((3, 2, 5), -1.0)
    labels[2, 0] = GT
    rows = _padded([[], [[0, 0, 5, 5, 0.9, 0]], [[0, 0, 10, 10, 0.8, 0]]], 6)
    assert _score_rows(MeanAp50(), labels, rows) == pytest.approx([1.0, 0.0, 1.0])
    # labels with no box at all ([N, 0, 5]) are fine too
    assert MeanAp50().configure({}).score(np.zeros((2, 0, 5)), np.zeros((2, 0, 5))) == pytest.approx([1.0, 1.0])


def test_several_outputs_yxyx_normalized_count_and_class_offset():
    """The TF object-detection API layout: normalized yxyx boxes, 1-based classes, num_detections."""
    labels = _padded([[[10, 20, 30, 60, 0], [40, 40, 80, 80, 1]]], 5)  # x1 y1 x2 y2 in a 100 (h) x 200 (w) image
    outputs = {
        "boxes": np.array([[[0.2, 0.05, 0.6, 0.15], [0.4, 0.2, 0.8, 0.4], [0, 0, 1, 1]]]),
        "scores": np.array([[0.9, 0.8, 0.95]]),
        "classes": np.array([[1.0, 2.0, 1.0]]),
        "count": np.array([2.0]),  # the third row is past num_detections
    }
    params = {"boxes": "boxes", "scores": "scores", "classes": "classes", "count": "count", "box_format": "yxyx"}
    params |= {"normalized": True, "image_size": [100, 200], "class_offset": -1}
    assert MeanAp50().configure(params).score(outputs, labels) == pytest.approx([1.0])
    without_count = {key: value for key, value in params.items() if key != "count"}
    # the third row is then a class-0 false positive ranked first: class 0 AP 0.5, class 1 AP 1
    assert MeanAp50().configure(without_count).score(outputs, labels) == pytest.approx([0.75])
    # class scores per detection ([N, D, C]): the best class is taken
    scores = np.array([[[0.1, 0.9, 0.0], [0.0, 0.1, 0.8], [0.9, 0.0, 0.0]]])
    per_class = {**without_count, "class_offset": -1, "max_detections": 2}
    del per_class["classes"]
    assert MeanAp50().configure(per_class).score({**outputs, "scores": scores}, labels) == pytest.approx([1.0])


@pytest.mark.parametrize(
    ("box_format", "box"),
    [("xyxy", [10, 20, 30, 60]), ("xywh", [10, 20, 20, 40]), ("cxcywh", [20, 40, 20, 40]), ("yxyx", [20, 10, 60, 30])],
)
def test_box_formats(box_format, box):
    labels = _padded([[[10, 20, 30, 60, 0]]], 5)
    rows = np.array([[box + [0.9]]], dtype=np.float64)  # one column past the box: the score
    assert MeanAp50to95().configure({"box_format": box_format}).score(rows, labels) == pytest.approx([1.0])


def test_threshold_and_max_detections():
    labels = _padded([[GT]], 5)
    rows = _padded([[[30, 30, 40, 40, 0.95, 0], [0, 0, 10, 10, 0.5, 0]]], 6)
    assert _score_rows(MeanAp50(), labels, rows) == pytest.approx([0.5])
    base = {"scores": 4, "classes": 5}
    assert MeanAp50().configure({**base, "max_detections": 1}).score(rows, labels) == pytest.approx([0.0])
    assert MeanAp50().configure({**base, "score_threshold": 0.96}).score(rows, labels) == pytest.approx([0.0])
    rows[0, 0, 4] = 0.4  # now the false positive ranks below the threshold
    assert MeanAp50().configure({**base, "score_threshold": 0.45}).score(rows, labels) == pytest.approx([1.0])
    rows[0, 1, :4] = np.nan  # a broken detection is no detection
    assert _score_rows(MeanAp50(), labels, rows) == pytest.approx([0.0])


# --- the SSD anchor decoder ----------------------------------------------------------------------------------------


def test_blazeface_anchors():
    anchors = ssd_anchors()
    assert anchors.shape == (896, 4)
    assert np.all(anchors[:, 2:] == 1.0)  # fixed anchor size
    # stride 8: 16 x 16 cells, two anchors each, row by row; then stride 16: 8 x 8 cells, six anchors each
    assert anchors[0, :2].tolist() == anchors[1, :2].tolist() == [0.5 / 16, 0.5 / 16]
    assert anchors[2, :2].tolist() == [1.5 / 16, 0.5 / 16]
    assert anchors[32, :2].tolist() == [0.5 / 16, 1.5 / 16]
    assert anchors[512:518, :2].tolist() == [[0.5 / 8, 0.5 / 8]] * 6
    assert anchors[-1, :2].tolist() == [7.5 / 8, 7.5 / 8]
    sized = ssd_anchors(DecodeSettings(fixed_anchor_size=False))
    scale0, scale1 = 0.1484375, 0.1484375 + (0.75 - 0.1484375) / 3
    assert sized[0, 2:] == pytest.approx([scale0, scale0])
    assert sized[1, 2:] == pytest.approx([math.sqrt(scale0 * scale1)] * 2)
    assert len(ssd_anchors(DecodeSettings(reduce_boxes_in_lowest_layer=True))) == 16 * 16 * 3 + 8 * 8 * 6
    assert len(ssd_anchors(DecodeSettings(interpolated_scale_aspect_ratio=0.0))) == 16 * 16 + 8 * 8 * 3


def _encode(anchor: np.ndarray, box_xyxy: np.ndarray, size: int = 128) -> np.ndarray:
    """The regressor row that decodes to ``box_xyxy`` (normalized) against ``anchor`` (the inverse, by hand)."""
    cx, cy = (box_xyxy[0] + box_xyxy[2]) / 2, (box_xyxy[1] + box_xyxy[3]) / 2
    w, h = box_xyxy[2] - box_xyxy[0], box_xyxy[3] - box_xyxy[1]
    return np.array([(cx - anchor[0]) * size / anchor[2], (cy - anchor[1]) * size / anchor[3], w * size, h * size])


def test_a_box_encoded_by_hand_decodes_back():
    anchors = ssd_anchors()
    box = np.array([0.30, 0.25, 0.55, 0.60])
    regressors = np.zeros((2, 896, 16))
    logits = np.full((2, 896, 1), -20.0)
    regressors[0, 300, :4] = _encode(anchors[300], box)
    logits[0, 300, 0] = 4.0
    regressors[1, 700, :4] = _encode(anchors[700], box)
    logits[1, 700, 0] = 200.0  # clipped to 100 before the sigmoid
    decoded = decode_ssd(regressors, logits, DecodeSettings())
    assert decoded[0][0] == pytest.approx(box[None, :])
    assert decoded[0][1] == pytest.approx([1 / (1 + math.exp(-4.0))]) and decoded[0][2].tolist() == [0]
    assert decoded[1][0] == pytest.approx(box[None, :]) and decoded[1][1] == pytest.approx([1.0])
    # through the metric: label pixels of a 128 x 128 input, and of a 256 x 512 (h x w) original
    labels = np.array([[[*(box * 128), 0.0]], [[0, 0, 5, 5, 0]]])
    params = {"boxes": "regressors", "scores": "classificators", "decode": {"kind": "ssd_anchors"}}
    outputs = {"regressors": regressors, "classificators": logits}
    assert MeanAp50to95().configure(params).score(outputs, labels) == pytest.approx([1.0, 0.0])
    labels[0, 0, :4] = box * [512, 256, 512, 256]
    scaled = MeanAp50to95().configure({**params, "image_size": [256, 512]})
    assert scaled.score(outputs, labels) == pytest.approx([1.0, 0.0])
    # min_score: an anchor below it is no detection
    strict = {**params, "decode": {"kind": "ssd_anchors", "min_score": 0.99}}
    assert MeanAp50().configure(strict).score(outputs, labels[:1].repeat(2, 0)) == pytest.approx([0.0, 0.0])


def test_nms_hard_and_weighted():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [0, 0, 10, 3]], dtype=np.float64)
    scores = np.array([0.6, 0.9, 0.5, 0.8])
    index, kept, kept_scores = nms(boxes, scores, 0.3)
    assert index.tolist() == [1, 3, 2]  # box 0 overlaps box 1 (IoU 9/11), box 3 overlaps it by 0.27 only
    assert kept.tolist() == boxes[[1, 3, 2]].tolist() and kept_scores.tolist() == [0.9, 0.8, 0.5]
    index, kept, _ = nms(boxes, scores, 0.3, weighted=True)
    assert kept[0] == pytest.approx((boxes[1] * 0.9 + boxes[0] * 0.6) / 1.5)
    assert kept[1:] == pytest.approx(boxes[[3, 2]])


# --- segmentation --------------------------------------------------------------------------------------------------


def test_miou_by_hand():
    truth = np.array([[[0, 0, 1], [0, 1, 1]], [[2, 2, 255], [2, 2, 255]], [[255, 255, 255], [255, 255, 255]]])
    predicted = np.array([[[0, 1, 1], [0, 1, 1]], [[2, 2, 0], [2, 0, 2]], [[0, 1, 2], [3, 4, 5]]])
    logits = np.eye(6)[predicted].transpose(0, 3, 1, 2)  # one-hot NCHW
    # image 0: class 0 IoU 2/3, class 1 IoU 3/4; image 1 (2 pixels ignored): class 2 IoU 3/4, class 0 (predicted,
    # absent from the truth) IoU 0; image 2: every pixel ignored
    expected = [(2 / 3 + 3 / 4) / 2, (3 / 4 + 0) / 2, 1.0]
    assert MeanIou().configure({}).score(logits, truth) == pytest.approx(expected)
    nhwc = MeanIou().configure({"layout": "NHWC", "num_classes": 6})
    assert nhwc.score(logits.transpose(0, 2, 3, 1), truth) == pytest.approx(expected)
    assert MeanIou().configure({"layout": "NHW"}).score(predicted.astype(np.float32), truth) == pytest.approx(expected)
    # no ignore index: 255 is a class (absent from predictions, so IoU 0 where it appears)
    assert MeanIou().configure({"layout": "NHW", "ignore_index": None}).score(predicted, truth)[2] == 0.0


def test_miou_binary_masks():
    truth = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]]])
    probabilities = np.array([[[0.9, 0.4], [0.2, 0.1]], [[0.1, 0.2], [0.3, 0.6]]])
    # image 0: class 1 IoU 1/2, class 0 IoU 2/3; image 1: class 0 IoU 3/4, class 1 (predicted) IoU 0
    expected = [(1 / 2 + 2 / 3) / 2, 3 / 8]
    for output in (probabilities, probabilities[:, None], probabilities[..., None]):
        assert MeanIou().configure({"binary": True}).score(output, truth) == pytest.approx(expected)
    logits = np.log(probabilities / (1 - probabilities))
    sigmoid = MeanIou().configure({"binary": True, "sigmoid": True, "threshold": 0.5})
    assert sigmoid.score(logits[:, None], truth[:, None]) == pytest.approx(expected)
    assert MeanIou().configure({"binary": True, "threshold": 0.95}).score(probabilities, truth)[1] == 1.0


def test_miou_refuses_mismatches():
    with pytest.raises(CellError, match=r"same N, H and W"):
        MeanIou().configure({}).score(np.zeros((1, 3, 4, 4)), np.zeros((1, 2, 2), dtype=np.int64))
    with pytest.raises(CellError, match=r"metric.params.num_classes"):
        MeanIou().configure({"num_classes": 4}).score(np.zeros((1, 3, 2, 2)), np.zeros((1, 2, 2), dtype=np.int64))
    with pytest.raises(CellError, match=r"label 7 .* metric.params.num_classes"):
        MeanIou().configure({"num_classes": 3}).score(np.zeros((1, 3, 1, 1)), np.full((1, 1, 1), 7))


# --- landmarks -----------------------------------------------------------------------------------------------------


def test_nme_and_pck_by_hand():
    truth = np.array([[[0, 0], [10, 0], [10, 20]], [[0, 0], [4, 0], [4, 3]]], dtype=np.float64)
    predicted = truth + np.array([[[0, 1], [3, 4], [0, 0]], [[0.5, 0], [0, 0], [0, 0]]])
    # distances: [1, 5, 0] and [0.5, 0, 0]; inter-ocular (landmarks 0 and 1): 10 and 4; bbox diagonals: sqrt(500), 5
    flat = predicted.reshape(2, -1)
    eyes = Nme().configure({"norm": [0, 1]})
    assert eyes.score(flat, truth) == pytest.approx([6 / 3 / 10, 0.5 / 3 / 4])
    assert Nme().configure({}).score(predicted, truth) == pytest.approx([6 / 3 / math.sqrt(500), 0.5 / 3 / 5])
    assert Nme().configure({"norm": 1}).score(predicted, truth) == pytest.approx([2.0, 0.5 / 3])
    pck = Pck().configure({"norm": [0, 1], "threshold": 0.2})  # within 2 and 0.8 pixels
    assert pck.score(predicted, truth) == pytest.approx([2 / 3, 1.0])
    assert Pck().configure({"norm": 1, "threshold": 1}).score(predicted, truth) == pytest.approx([2 / 3, 1.0])


def test_landmark_layouts_and_scale():
    truth = np.array([[[10, 20], [30, 40]]], dtype=np.float64)
    xyz = np.array([[[0.1, 0.2, 5.0], [0.3, 0.4, -5.0]]])  # z is dropped; scale 100 brings x, y to pixels
    for output, params in [
        (xyz.reshape(1, 1, 1, 6), {"layout": "flat", "dims": 3}),
        (xyz.reshape(1, 6), {}),  # dims inferred: 6 values for 2 landmarks
        (xyz, {"layout": "NKD"}),
        (xyz, {}),
    ]:
        assert Nme().configure({**params, "scale": 100, "norm": 1}).score(output, truth) == pytest.approx([0.0])
    assert Nme().configure({"scale": [100, 200], "norm": 1}).score(xyz, truth) == pytest.approx([(20 + 40) / 2])
    with pytest.raises(CellError, match=r"metric.params.dims"):
        Nme().configure({"layout": "flat", "dims": 2}).score(xyz.reshape(1, 6), truth)
    with pytest.raises(CellError, match=r"metric.params.norm"):
        Nme().configure({"norm": [0, 5]}).score(xyz, truth)
    with pytest.raises(CellError, match=r"metric.params.norm"):
        Nme().configure({"norm": [0, 1]}).score(xyz, np.zeros((1, 2, 2)))  # the two landmarks coincide


# --- embedding -----------------------------------------------------------------------------------------------------


def test_recall_at_k_by_hand():
    angles = np.radians([0, 10, 50, 60, 200, 95])
    embeddings = np.stack([np.cos(angles), np.sin(angles)], axis=1) * np.array([[1], [3], [2], [1], [5], [1]])
    identities = np.array([0, 0, 1, 1, 2, 0])
    # nearest others by angle: 0 -> 1 (same), 1 -> 0 (same), 2 -> 3 (same), 3 -> 2 (same),
    # 4 -> farthest from all, its identity has no other sample; 5 (95 deg) -> 3 (60), 2 (50), then 1 (10)
    assert RecallAtK().configure({}).score(embeddings, identities).tolist() == [1, 1, 1, 1, 0, 0]
    assert RecallAtK().configure({"k": 2}).score(embeddings, identities).tolist() == [1, 1, 1, 1, 0, 0]
    assert RecallAtK().configure({"k": 3}).score(embeddings, identities).tolist() == [1, 1, 1, 1, 0, 1]
    broken = embeddings.copy()
    broken[1] = np.nan  # sample 1 scores 0 and is nobody's neighbour: 0 finds 5 (95 deg) at rank 3
    assert RecallAtK().configure({"k": 3}).score(broken, identities).tolist() == [1, 0, 1, 1, 0, 1]
    labels = np.array(["a", "a", "b", "b", "c", "a"])  # string identities work the same
    assert RecallAtK().configure({"k": 3}).score(embeddings[:, None, :], labels).tolist() == [1, 1, 1, 1, 0, 1]


def test_recall_at_k_ties_count_for_the_query():
    embeddings = np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    # 0 and 2 each have a same-identity and an other-identity sample at the same similarity; 1 has no match
    assert RecallAtK().configure({}).score(embeddings, np.array([0, 1, 0])).tolist() == [1.0, 0.0, 1.0]


# --- regression ----------------------------------------------------------------------------------------------------


def test_mae_and_rmse_against_numpy():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(7, 3))
    output = rng.normal(size=(7, 1, 3))
    errors = output.reshape(7, 3) - truth
    assert Mae().configure({}).score(output, truth) == pytest.approx(np.abs(errors).mean(axis=1))
    assert Rmse().configure({}).score(output, truth) == pytest.approx(np.sqrt((errors**2).mean(axis=1)))
    scaled = (output.reshape(7, 3) * 2.0 + 1.0) - truth
    assert Rmse().configure({"scale": 2, "offset": 1}).score(output, truth) == pytest.approx(
        np.sqrt((scaled**2).mean(axis=1))
    )
    one = rng.normal(size=5)
    assert Rmse().configure({}).score(one[:, None], np.zeros(5)) == pytest.approx(np.abs(one))
    assert Mae().configure({}).score(one, np.arange(5)) == pytest.approx(np.abs(one - np.arange(5)))
    with pytest.raises(CellError, match="does not match"):
        Mae().configure({}).score(np.zeros((5, 2)), np.zeros(5))


# --- every metric --------------------------------------------------------------------------------------------------

BAD_PARAMS = [
    (MeanAp50(), {"box_format": "ltrb"}, "box_format"),
    (MeanAp50(), {"normalized": True}, "image_size"),
    (MeanAp50(), {"image_size": [640]}, "image_size"),
    (MeanAp50(), {"max_detections": 0}, "max_detections"),
    (MeanAp50(), {"score_threshold": "low"}, "score_threshold"),
    (MeanAp50(), {"scores": -1}, "scores"),
    (MeanAp50(), {"class_offset": 0.5}, "class_offset"),
    (MeanAp50(), {"anchors": 3}, "anchors"),
    (MeanAp50to95(), {"decode": {"kind": "yolo"}}, "decode"),
    (MeanAp50to95(), {"decode": {"kind": "ssd_anchors"}}, "boxes"),
    (
        MeanAp50to95(),
        {"boxes": "r", "scores": "s", "decode": {"kind": "ssd_anchors", "strides": [8]}},
        "decode.strides",
    ),
    (MeanAp50to95(), {"boxes": "r", "scores": "s", "decode": {"kind": "ssd_anchors", "nms": "soft"}}, "decode.nms"),
    (MeanAp50to95(), {"boxes": "r", "scores": "s", "decode": {"kind": "ssd_anchors", "x_scal": 1}}, "decode.x_scal"),
    (
        MeanAp50to95(),
        {"boxes": "r", "scores": "s", "box_format": "xywh", "decode": {"kind": "ssd_anchors"}},
        "box_format",
    ),
    (MeanIou(), {"layout": "CHW"}, "layout"),
    (MeanIou(), {"threshold": 0.3}, "threshold"),
    (MeanIou(), {"binary": "yes"}, "binary"),
    (MeanIou(), {"num_classes": 1}, "num_classes"),
    (MeanIou(), {"ignore_index": "void"}, "ignore_index"),
    (Nme(), {"norm": "eyes"}, "norm"),
    (Nme(), {"norm": [3, 3]}, "norm"),
    (Nme(), {"threshold": 0.1}, "threshold"),
    (Nme(), {"dims": 4}, "dims"),
    (Nme(), {"scale": [1, 0]}, "scale"),
    (Pck(), {"threshold": 0}, "threshold"),
    (Pck(), {"layout": "KND"}, "layout"),
    (RecallAtK(), {"k": 0}, "k"),
    (RecallAtK(), {"top": 1}, "top"),
    (Mae(), {"scale": "x"}, "scale"),
    (Rmse(), {"offset": float("nan")}, "offset"),
]


@pytest.mark.parametrize(("metric", "params", "key"), BAD_PARAMS, ids=lambda v: v.name if hasattr(v, "name") else None)
def test_bad_params_name_the_key(metric, params, key):
    with pytest.raises(CellError) as info:
        metric.configure(params)
    assert info.value.category == "bad_input"
    assert f"metric.params.{key}" in info.value.message, info.value.message


def test_output_errors_name_the_key():
    labels = _padded([[GT]], 5)
    with pytest.raises(CellError, match=r"metric.params.boxes"):
        MeanAp50().configure({"scores": "s"}).score({"b": np.zeros((1, 2, 4)), "s": np.zeros((1, 2))}, labels)
    with pytest.raises(CellError, match=r"metric.params.scores.*one output"):
        MeanAp50().configure({"scores": "s"}).score(np.zeros((1, 2, 5)), labels)
    with pytest.raises(CellError, match=r"metric.params.decode.*896 anchors"):
        params = {"boxes": "r", "scores": "s", "decode": {"kind": "ssd_anchors"}}
        MeanAp50().configure(params).score({"r": np.zeros((1, 100, 16)), "s": np.zeros((1, 100, 1))}, labels)
    with pytest.raises(CellError, match=r"\[N, M, 5\]"):
        MeanAp50().configure({}).score(np.zeros((1, 2, 5)), np.zeros((1, 5)))


def test_configure_returns_a_copy_and_the_defaults_score():
    for metric in ALL:
        configured = metric.configure({})
        assert configured is not metric and type(configured) is type(metric)
    metric = MeanAp50()
    metric.configure({"scores": 4, "max_detections": 3})
    assert metric.config.max_detections == 100


@pytest.mark.parametrize("metric", ALL, ids=lambda m: m.name)
def test_protocol_members(metric):
    assert missing_members(metric, Metric) == []
    assert optional(metric, "compared_with") == "labels"
    assert optional(metric, "floor") is False
    assert callable(optional(metric, "configure"))
    assert metric.higher_is_better is (metric.name not in ("nme", "mae", "rmse"))


def test_registered_through_entry_points():
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["zoocompat"]
    for module in MODULES:
        short = module.__name__.rsplit(".", 1)[1]
        assert entry_points[f"metrics_{short}"] == module.__name__
    names = {metric.name for metric in ALL}
    registry = build_registry()
    if not names <= set(registry.names("metric")):  # an install older than the entry points
        registry = build_registry(extra=list(MODULES))
    assert names <= set(registry.names("metric"))
    assert "cosine" in registry.names("metric")  # the embedding's fidelity to FP32 is fidelity's cosine


# --- labels of a card's own data -----------------------------------------------------------------------------------


def _card(folder: Path, labels: np.ndarray):
    np.savez(folder / "data.npz", x=np.zeros((len(labels), 3), dtype=np.float32), y=labels)
    data = {
        "name": "m",
        "frontend": "onnx",
        "source": {"kind": "file", "path": "m.onnx"},
        "inputs": [{"name": "x", "shape": [3]}],
        "outputs": ["out"],
        "metric": {"name": "map50", "output": "out"},
        "dataset": {"source": {"kind": "arrays", "path": "data.npz", "labels": "y"}, "calibration": 1, "evaluation": 2},
    }
    return parse_card(data, folder / "card.yaml")


def test_arrays_sources_take_numeric_labels_of_any_shape(tmp_path):
    boxes = _padded([[GT], [GT, [1, 2, 3, 4, 1]], []], 5).astype(np.float32)
    pool = load_source(_card(tmp_path, boxes))
    assert pool.labels.dtype == np.float32 and pool.labels.shape == (3, 2, 5)
    np.testing.assert_array_equal(pool.labels, boxes)
    masks = np.zeros((3, 4, 4), dtype=np.uint8)
    masks[0, 0, 0] = 255
    assert load_source(_card(tmp_path, masks)).labels.dtype == np.uint8
    assert load_source(_card(tmp_path, np.array([0.5, 1.5, 2.0]))).labels.dtype == np.float64  # regression targets
    assert load_source(_card(tmp_path, np.array([1.0, 0.0, 2.0]))).labels.dtype == np.int64  # class indices
    assert load_source(_card(tmp_path, np.array([[0.5], [1.0], [2.0]]))).labels.shape == (3,)
    assert load_source(_card(tmp_path, np.zeros((3, 2), dtype=bool))).labels.dtype == np.uint8
    boxes[1, 1, 2] = np.inf
    with pytest.raises(CellError, match=r"dataset.source.labels.*inf.*\[1, 1, 2\]"):
        load_source(_card(tmp_path, boxes))
    with pytest.raises(CellError, match=r"dataset.source.labels.*numbers"):
        load_source(_card(tmp_path, np.array([["a", "b"]] * 3)))


def test_regression_against_fp32_needs_no_labels():
    from zoocompat_plugins.metrics.regression import Mae

    metric = Mae().configure({"against": "fp32", "scale": 100.0})
    assert metric.compared_with == "fp32" and Mae().compared_with == "labels"  # the registered one unchanged
    fp32 = np.array([[0.10], [0.90]])
    assert metric.score(fp32, fp32) == pytest.approx([0.0, 0.0])
    assert metric.score(np.array([[0.12], [0.85]]), fp32) == pytest.approx([2.0, 5.0])  # points of probability
    with pytest.raises(CellError, match=r"metric.params.against"):
        Mae().configure({"against": "teacher"})
