"""``shape_keypoints``: one filled quadrilateral per image, its four corners known by construction.

Each sample is a 64x64 grey uint8 image: a noisy background with a soft
brightness gradient, one elliptic distractor blob, and one filled
quadrilateral drawn on top: a unit square scaled (side 18..40 px, aspect
0.8..1.25), sheared (up to 0.35), rotated by any angle and moved, kept at least
:data:`MARGIN` pixels inside the frame. The corners are the square's corners
under that affine map, so the labels are exact, not drawn by anyone; the image
is rendered from the same map with 4x4 supersampling (anti-aliased edges).

Labels are ``[N, 4, 2]`` float32 ``(x, y)`` in pixels, with ``(0, 0)`` the
top-left corner of the image (pixel ``(col, row)`` covers ``[col, col + 1) x
[row, row + 1)``; its centre is ``(col + 0.5, row + 0.5)``). The corners come in
a canonical order: the top-most corner first (smallest ``y``), then clockwise as
seen on the screen (top, right, bottom, left for a diamond). So that the first
corner is never a coin toss, a shape whose two top-most corners are less than
:data:`MIN_TOP_GAP` pixels apart in ``y`` is never drawn.

The quadrilateral's grey level differs from the background's by at least 60
and from the blob's by at least 50, so its outline stays visible where it
covers the blob. Sample ``i`` of a split comes from its own generator, seeded
with ``(seed, split, i)``: the same whatever ``count`` is, and the train and
test splits draw from different streams, so they never share a sample.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from zoocompat_plugins.datasets.params import check_params, check_seed, check_split, int_param

import zoocompat
from zoocompat.api import LabeledPool

#: Image side in pixels.
SIZE = 64
#: Least distance (pixels) of every corner to the image border.
MARGIN = 2.0
#: Least ``y`` gap (pixels) between the top-most and the second top-most corner.
MIN_TOP_GAP = 3.0
#: Subsamples per pixel side when rendering coverage.
SUPERSAMPLE = 4
#: Images rendered at once (bounds the supersampled buffers to a few tens of MB).
CHUNK = 128
_SPLIT_STREAM = {"test": 0, "train": 1}
_PARAMS = ("count",)


def canonical_order(corners: np.ndarray) -> np.ndarray:
    """``corners`` ``[4, 2]`` of a convex quadrilateral, reordered: top-most first, then clockwise on screen.

    With ``y`` growing downwards, a growing ``atan2(y - cy, x - cx)`` around the centroid turns clockwise
    on the screen; ties for the top-most corner go to the smaller ``x``.
    """
    centre = corners.mean(axis=0)
    angles = np.arctan2(corners[:, 1] - centre[1], corners[:, 0] - centre[0])
    ordered = corners[np.argsort(angles, kind="stable")]
    top = min(range(4), key=lambda i: (ordered[i, 1], ordered[i, 0]))
    return np.roll(ordered, -top, axis=0)


def _draw_quad(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A seeded affine map ``(matrix [2, 2], offset [2])`` taking the square ``[-1, 1]^2`` inside the frame."""
    while True:
        half = rng.uniform(9.0, 20.0)
        aspect = rng.uniform(0.8, 1.25)
        shear = rng.uniform(-0.35, 0.35)
        angle = rng.uniform(0.0, 2 * np.pi)
        cos, sin = np.cos(angle), np.sin(angle)
        matrix = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, shear], [0.0, 1.0]])
        matrix = matrix @ np.diag([half * aspect, half / aspect])
        extent = np.abs(matrix).sum(axis=1)  # the farthest a corner gets from the centre, per axis
        low, high = MARGIN + extent, SIZE - MARGIN - extent
        if (low >= high).any():
            continue
        offset = rng.uniform(low, high)
        corners = _corners(matrix, offset)
        top_two = np.sort(corners[:, 1])[:2]
        if top_two[1] - top_two[0] >= MIN_TOP_GAP:
            return matrix, offset


def _corners(matrix: np.ndarray, offset: np.ndarray) -> np.ndarray:
    square = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    return square @ matrix.T + offset


def _levels(rng: np.random.Generator) -> tuple[float, float, float]:
    """Grey levels ``(background, quadrilateral, blob)`` with the contrasts the module promises."""
    while True:
        background, quad, blob = rng.uniform(20.0, 235.0, 3)
        if abs(quad - background) >= 60 and abs(blob - quad) >= 50 and abs(blob - background) >= 30:
            return background, quad, blob


def _subpixels() -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` of every subsample centre, ``[SIZE * SUPERSAMPLE]`` each (rows and columns alike)."""
    steps = (np.arange(SIZE * SUPERSAMPLE) + 0.5) / SUPERSAMPLE
    return steps[None, :], steps[:, None]


def _coverage(inside: np.ndarray) -> np.ndarray:
    """Share of each pixel's subsamples that are inside: ``[n, S*s, S*s]`` bool -> ``[n, S, S]`` float."""
    n = len(inside)
    return inside.reshape(n, SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean(axis=(2, 4))


def _render(scenes: list[dict[str, Any]]) -> np.ndarray:
    """Render ``scenes`` (drawn parameters) into ``[n, SIZE, SIZE]`` uint8 images."""
    xs, ys = _subpixels()
    quads, blobs = [], []
    for scene in scenes:
        inverse = np.linalg.inv(scene["matrix"])
        u = inverse[0, 0] * (xs - scene["offset"][0]) + inverse[0, 1] * (ys - scene["offset"][1])
        v = inverse[1, 0] * (xs - scene["offset"][0]) + inverse[1, 1] * (ys - scene["offset"][1])
        quads.append((np.abs(u) <= 1) & (np.abs(v) <= 1))
        (cx, cy), (rx, ry), tilt = scene["blob"]
        dx, dy = xs - cx, ys - cy
        along, across = dx * np.cos(tilt) + dy * np.sin(tilt), -dx * np.sin(tilt) + dy * np.cos(tilt)
        blobs.append((along / rx) ** 2 + (across / ry) ** 2 <= 1)
    quad_cover, blob_cover = _coverage(np.stack(quads)), _coverage(np.stack(blobs))
    images = np.empty((len(scenes), SIZE, SIZE), np.uint8)
    grid = (np.arange(SIZE) + 0.5) / SIZE - 0.5
    for index, scene in enumerate(scenes):
        background, quad, blob = scene["levels"]
        gx, gy = scene["gradient"]
        canvas = background + gx * grid[None, :] + gy * grid[:, None]
        canvas = canvas + blob_cover[index] * (blob - canvas)
        canvas = canvas + quad_cover[index] * (quad - canvas)
        canvas = canvas + scene["noise"]
        images[index] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return images


def _scene(seed: int, stream: int, index: int) -> dict[str, Any]:
    """The drawn parameters of sample ``index`` of a split (its own generator)."""
    rng = np.random.default_rng([seed, stream, index])
    matrix, offset = _draw_quad(rng)
    levels = _levels(rng)
    blob = (rng.uniform(6.0, SIZE - 6.0, 2), rng.uniform(3.0, 9.0, 2), rng.uniform(0.0, np.pi))
    gradient = rng.uniform(-25.0, 25.0, 2)
    noise = rng.normal(0.0, rng.uniform(3.0, 10.0), (SIZE, SIZE))
    return {"matrix": matrix, "offset": offset, "levels": levels, "blob": blob, "gradient": gradient, "noise": noise}


class ShapeKeypointsDataset:
    """Noisy 64x64 grey images of one affine-warped square; labels: its 4 corners, top-most first, clockwise."""

    name = "shape_keypoints"
    description = (
        "64x64 grey uint8: one filled quadrilateral (a rotated, scaled, sheared square) and a distractor blob on "
        "a noisy background; labels [N, 4, 2] float32 corner (x, y) pixels, top-most first then clockwise, known "
        "by construction"
    )

    def load(self, split: str, seed: int, params: dict[str, Any]) -> LabeledPool:
        """``count`` samples of ``split`` (default 600 test, 4000 train), deterministic for ``seed``.

        ``params``: ``count``. Sample ``i`` does not depend on ``count``; the two splits never share a sample.
        """
        check_split(self.name, split)
        check_params(self.name, params, _PARAMS)
        check_seed(self.name, seed)
        count = int_param(self.name, params, "count", 600 if split == "test" else 4000, 1)
        stream = _SPLIT_STREAM[split]
        images = np.empty((count, SIZE, SIZE, 1), np.uint8)
        labels = np.empty((count, 4, 2), np.float32)
        for start in range(0, count, CHUNK):
            scenes = [_scene(seed, stream, i) for i in range(start, min(start + CHUNK, count))]
            images[start : start + len(scenes), ..., 0] = _render(scenes)
            for offset, scene in enumerate(scenes):
                labels[start + offset] = canonical_order(_corners(scene["matrix"], scene["offset"]))
        return LabeledPool(images, labels, [])


@zoocompat.hookimpl
def zoocompat_datasets() -> list[Any]:
    """The datasets of this module."""
    return [ShapeKeypointsDataset()]
