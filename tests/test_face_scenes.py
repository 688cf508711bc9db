"""The face_scenes dataset: boxes known by construction, inside the canvas, never overlapping, splits apart."""

from __future__ import annotations

import numpy as np

from zoocompat.api.registry import registry


def _load(split: str, **params):
    return registry().get("dataset", "face_scenes").load(split, 0, params)


def test_boxes_are_the_pasted_faces():
    pool = _load("test", count=40, max_faces=3)
    assert pool.samples.shape == (40, 128, 128, 3) and pool.samples.dtype == np.uint8
    assert pool.labels.shape == (40, 3, 5)
    for image, rows in zip(pool.samples, pool.labels, strict=True):
        boxes = rows[rows[:, 4] >= 0]
        assert 1 <= len(boxes) <= 3 and (boxes[:, 4] == 0).all()
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:4] <= 128).all()
        sides = boxes[:, 2] - boxes[:, 0]
        assert ((sides >= 32) & (sides <= 72)).all() and (sides == boxes[:, 3] - boxes[:, 1]).all()
        for a in range(len(boxes)):
            for b in range(a + 1, len(boxes)):
                x1, y1, x2, y2 = (
                    np.maximum(boxes[a, :2], boxes[b, :2]).tolist() + np.minimum(boxes[a, 2:4], boxes[b, 2:4]).tolist()
                )
                assert x2 <= x1 or y2 <= y1, "faces never overlap"
        x1, y1, x2, y2 = boxes[0, :4].astype(int)
        assert image[y1:y2, x1:x2].std() > 0  # a pasted face, not an empty box


def test_deterministic_and_splits_apart():
    a, b = _load("test", count=5), _load("test", count=5)
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.labels, b.labels)
    train = _load("train", count=5)
    assert not np.array_equal(train.samples, a.samples)
