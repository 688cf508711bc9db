"""The shape_masks dataset behind the shapes_unet card: deterministic, splits apart, class maps true by
construction. The model itself is trained once, by the conformance matrix, never here.
"""

from __future__ import annotations

import numpy as np
import pytest
from zoocompat_plugins.datasets import shape_masks
from zoocompat_plugins.datasets.shape_masks import CIRCLE, PIXEL_NOISE, Shape, sample_rng, scene

from zoocompat.api.errors import CellError
from zoocompat.api.registry import registry

#: Pixels closer than this to a shape's outline (in pixels) may fall either way when rasterised.
EDGE = 1.5


def _load(split: str, seed: int = 0, **params):
    return registry().get("dataset", "shape_masks").load(split, seed, params)


def _inside(shape: Shape, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Two ``size x size`` masks computed from the geometry alone: pixels surely inside, surely outside."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if shape.kind == CIRCLE:
        (x0, y0), (x1, y1) = shape.points
        distance = (x1 - x0) / 2 - np.hypot(xx - (x0 + x1) / 2, yy - (y0 + y1) / 2)
    else:
        # signed distance to the nearest edge of the convex polygon (positive inside)
        points = np.asarray(shape.points)
        centre = points.mean(axis=0)
        distance = np.full((size, size), np.inf)
        for a, b in zip(points, np.roll(points, -1, axis=0), strict=True):
            normal = np.array([b[1] - a[1], a[0] - b[0]]) / np.hypot(*(b - a))
            if np.dot(centre - a, normal) < 0:
                normal = -normal
            distance = np.minimum(distance, (xx - a[0]) * normal[0] + (yy - a[1]) * normal[1])
    return distance > EDGE, distance < -EDGE


def test_pool_layout():
    pool = _load("test", count=20)
    assert pool.samples.shape == (20, 64, 64, 3) and pool.samples.dtype == np.uint8
    assert pool.labels.shape == (20, 64, 64) and pool.labels.dtype == np.uint8
    assert pool.classes == ["background", "circle", "square", "triangle"]
    assert set(np.unique(pool.labels)) <= {0, 1, 2, 3}
    for labels in pool.labels:
        assert (labels == 0).any() and (labels > 0).any(), "every scene has background and at least one shape"
    assert {1, 2, 3} <= set(np.unique(pool.labels)), "all three shapes occur"


def test_deterministic_and_prefix_stable():
    a, b = _load("test", count=8), _load("test", count=8)
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.labels, b.labels)
    longer = _load("test", count=12)
    np.testing.assert_array_equal(longer.samples[:8], a.samples)
    np.testing.assert_array_equal(longer.labels[:8], a.labels)
    other_seed = _load("test", seed=1, count=8)
    assert not np.array_equal(other_seed.samples, a.samples)


def test_splits_never_share_a_scene():
    test, train = _load("test", count=150), _load("train", count=150)
    test_images = {image.tobytes() for image in test.samples}
    assert len(test_images) == 150
    assert not test_images & {image.tobytes() for image in train.samples}
    # another seed's train split is no copy of seed 0's test split either
    assert not test_images & {image.tobytes() for image in _load("train", seed=1, count=50).samples}


@pytest.mark.parametrize("split", ["test", "train"])
def test_labels_are_the_drawn_shapes(split):
    """Each pool sample is the scene of its own generator, and its class map agrees with the shapes'
    geometry (topmost shape wins) wherever a pixel is clearly inside or outside every outline (Pillow's
    rasterisation decides the pixels on an outline); there the image shows the topmost shape's colour (up to
    the pixel noise), and every pixel labeled with a shape class shows a shape of that class.
    """
    pool = _load(split, count=12)
    checked = 0
    for index in range(12):
        image, labels, shapes = scene(sample_rng(0, split, index))
        np.testing.assert_array_equal(image, pool.samples[index])
        np.testing.assert_array_equal(labels, pool.labels[index])
        assert 1 <= len(shapes) <= 3
        expected = np.zeros((64, 64), np.int64)
        top = np.full((64, 64), -1)
        clear = np.ones((64, 64), bool)
        for order, shape in enumerate(shapes):
            inside, outside = _inside(shape, 64)
            clear &= inside | outside
            expected[inside] = shape.kind
            top[inside] = order
        assert clear.mean() > 0.8
        np.testing.assert_array_equal(labels[clear], expected[clear])
        # every pixel labeled with a shape class shows the colour of a shape of that class
        colours = {kind: np.asarray([s.colour for s in shapes if s.kind == kind]) for kind in (1, 2, 3)}
        for kind, palette in colours.items():
            pixels = image[labels == kind].astype(np.int64)
            assert len(palette) or not len(pixels)
            if len(pixels):
                nearest = np.abs(pixels[:, None, :] - palette[None]).max(axis=2).min(axis=1)
                assert nearest.max() <= 6 * PIXEL_NOISE
        for order, shape in enumerate(shapes):
            pixels = clear & (top == order)
            if pixels.any():
                difference = np.abs(image[pixels].astype(np.int64) - np.asarray(shape.colour))
                assert difference.max() <= 6 * PIXEL_NOISE
                checked += 1
    assert checked >= 12


def test_visible_shapes_contrast_with_the_background():
    pool = _load("test", count=30)
    for image, labels in zip(pool.samples.astype(np.float64), pool.labels, strict=True):
        for kind in np.unique(labels[labels > 0]):
            shape_colour = image[labels == kind].mean(axis=0)
            background_colour = image[labels == 0].mean(axis=0)
            assert np.abs(shape_colour - background_colour).sum() > 40


def test_bad_params_are_refused():
    with pytest.raises(CellError, match="unknown dataset.params"):
        _load("test", colour=3)
    with pytest.raises(CellError, match="unknown split"):
        _load("validation")
    with pytest.raises(CellError, match="max_shapes"):
        _load("test", max_shapes=0)
    assert shape_masks.ShapeMasksDataset().load("test", 0, {"count": 2, "size": 32}).samples.shape == (2, 32, 32, 3)
