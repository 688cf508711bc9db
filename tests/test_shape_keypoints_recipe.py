"""The shape_keypoints dataset and the keypoints recipe's helpers (no training here: the matrix trains once)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from zoocompat_plugins.datasets.shape_keypoints import MARGIN, MIN_TOP_GAP, SIZE, canonical_order
from zoocompat_zoo.models.keypoint_net import KeypointNet
from zoocompat_zoo.recipes import keypoints

from zoocompat.api.errors import CellError
from zoocompat.api.registry import registry


def _load(split: str, seed: int = 0, **params):
    return registry().get("dataset", "shape_keypoints").load(split, seed, params)


def _signed_area(corners: np.ndarray) -> np.ndarray:
    """Shoelace area of ``[..., 4, 2]`` corners: > 0 when they turn clockwise on the screen (``y`` down)."""
    x, y = corners[..., 0], corners[..., 1]
    return 0.5 * (x * np.roll(y, -1, axis=-1) - np.roll(x, -1, axis=-1) * y).sum(axis=-1)


def _inside(corners: np.ndarray) -> np.ndarray:
    """Which pixel centres of the frame lie inside the convex polygon ``corners`` (clockwise on the screen)."""
    centres = np.stack(np.meshgrid(np.arange(SIZE) + 0.5, np.arange(SIZE) + 0.5), axis=-1)
    inside = np.ones((SIZE, SIZE), bool)
    for a, b in zip(corners, np.roll(corners, -1, axis=0), strict=True):
        edge, offset = b - a, centres - a
        inside &= edge[0] * offset[..., 1] - edge[1] * offset[..., 0] >= 0
    return inside


def test_images_and_labels_have_the_promised_layout():
    pool = _load("test", count=64)
    assert pool.samples.shape == (64, SIZE, SIZE, 1) and pool.samples.dtype == np.uint8
    assert pool.labels.shape == (64, 4, 2) and pool.labels.dtype == np.float32
    assert (pool.labels >= MARGIN - 1e-4).all() and (pool.labels <= SIZE - MARGIN + 1e-4).all()


def test_labels_are_the_drawn_quadrilateral_in_canonical_order():
    pool = _load("test", count=64)
    corners = pool.labels.astype(np.float64)
    # an affine image of a square is a parallelogram: its diagonals share their midpoint
    np.testing.assert_allclose(corners[:, 0] + corners[:, 2], corners[:, 1] + corners[:, 3], atol=1e-3)
    # top-most corner first, by a clear margin; then clockwise on the screen
    ys = corners[..., 1]
    assert (ys[:, 0] == ys.min(axis=1)).all()
    assert (np.sort(ys, axis=1)[:, 1] - ys[:, 0] >= MIN_TOP_GAP - 1e-3).all()
    assert (_signed_area(corners) > 0).all()
    sides = np.linalg.norm(corners - np.roll(corners, -1, axis=1), axis=2)
    assert (sides > 10).all(), "a real quadrilateral, not a sliver"


def _fits(image: np.ndarray, corners: np.ndarray) -> bool:
    """Whether ``image`` shows a flat quadrilateral at ``corners``: pixels well inside them are one grey level
    (plus noise), far from the ring of pixels just outside them.
    """
    centre = corners.mean(axis=0)
    core = _inside(centre + 0.8 * (corners - centre))
    ring = _inside(centre + 1.35 * (corners - centre)) & ~_inside(centre + 1.1 * (corners - centre))
    assert core.sum() > 20 and ring.sum() > 20
    return bool(image[core].std() < 15 and abs(np.median(image[core]) - np.median(image[ring])) > 35)


def test_the_labeled_quadrilateral_is_what_the_image_shows():
    pool = _load("test", count=48)
    images, corners = pool.samples[..., 0].astype(np.float64), pool.labels.astype(np.float64)
    assert all(_fits(image, points) for image, points in zip(images, corners, strict=True))
    # the check has teeth: another sample's corners do not fit an image
    wrong = [_fits(image, points) for image, points in zip(images, np.roll(corners, 1, axis=0), strict=True)]
    assert sum(wrong) < len(wrong) // 4


def test_deterministic_and_independent_of_count():
    a, b = _load("test", count=6), _load("test", count=6)
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.labels, b.labels)
    first = _load("test", count=3)
    np.testing.assert_array_equal(first.samples, a.samples[:3])
    np.testing.assert_array_equal(first.labels, a.labels[:3])
    other_seed = _load("test", seed=1, count=6)
    assert not np.array_equal(other_seed.labels, a.labels)


def test_train_and_test_never_share_a_sample():
    test, train = _load("test", count=100), _load("train", count=100)
    test_images = {image.tobytes() for image in test.samples}
    assert not test_images & {image.tobytes() for image in train.samples}
    distances = np.abs(test.labels[:, None] - train.labels[None]).max(axis=(2, 3))
    assert distances.min() > 1e-3


def test_bad_split_and_params_are_refused():
    with pytest.raises(CellError, match="unknown split"):
        _load("validation")
    with pytest.raises(CellError, match="unknown dataset.params"):
        _load("test", size=32)
    with pytest.raises(CellError, match="count"):
        _load("test", count=0)


def test_canonical_order_of_a_diamond():
    diamond = np.array([[10.0, 20.0], [30.0, 40.0], [50.0, 20.0], [30.0, 0.0]])  # left, bottom, right, top
    np.testing.assert_array_equal(canonical_order(diamond), [[30, 0], [50, 20], [30, 40], [10, 20]])


def test_recipe_mirroring_keeps_targets_canonical():
    images, targets = keypoints.keypoint_tensors("test", 0, count=16)
    assert images.shape == (16, 1, SIZE, SIZE) and targets.shape == (16, 8)
    np.testing.assert_allclose(targets.numpy().reshape(16, 4, 2) * SIZE, _load("test", count=16).labels, atol=1e-4)
    flipped, mirrored = keypoints._flip(images, targets, torch.Generator().manual_seed(0))
    changed = (mirrored != targets).any(dim=1).numpy()
    assert changed.any() and not changed.all()
    corners = mirrored.numpy().reshape(16, 4, 2).astype(np.float64) * SIZE
    for row in corners:
        np.testing.assert_allclose(canonical_order(row), row, atol=1e-4)
    torch.testing.assert_close(flipped[changed], images[changed].flip(-1))


def test_network_maps_a_card_input_to_eight_values():
    with torch.no_grad():
        out = KeypointNet().eval()(torch.zeros(1, 1, SIZE, SIZE))
    assert out.shape == (1, 8)
