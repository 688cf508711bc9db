"""``shape_masks``: semantic segmentation of drawn shapes, class maps known by construction.

Each sample is a ``size`` x ``size`` RGB uint8 image (64x64 by default): a
noisy textured background (a base colour, a few random sinusoidal stripes, a
smooth blotch field and per-pixel noise) with one to ``max_shapes`` filled
shapes in random colours drawn on top, possibly overlapping (a later shape
covers an earlier one). The shapes are circles, squares and triangles (both
rotated by a random angle). Pillow's ``ImageDraw`` draws every shape on the
image and, with the same geometry, on a class map at the same time, so the
label of a pixel is the class of the topmost shape covering it:
``0`` background, ``1`` circle, ``2`` square, ``3`` triangle.

Labels are ``[N, size, size]`` uint8 class maps, the layout the ``miou``
metric reads. Every sample is drawn from its own generator, seeded with
``(seed, split, index)``: a split's first samples do not depend on ``count``,
and the train and test splits (split 1 and 0) never draw the same scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from zoocompat_plugins.datasets.params import check_params, check_seed, check_split, int_param

import zoocompat
from zoocompat.api import LabeledPool

CLASSES = ["background", "circle", "square", "triangle"]
BACKGROUND, CIRCLE, SQUARE, TRIANGLE = range(4)
_SPLIT_STREAMS = {"test": 0, "train": 1}
_PARAMS = ("count", "size", "max_shapes")
#: The background's texture, in 0..255 units: the largest amplitude of a stripe pattern (per channel), the
#: standard deviation of the smooth blotches and of the background's own per-pixel noise.
STRIPES, BLOTCHES, BACKGROUND_NOISE = 18.0, 14.0, 10.0
#: Per-pixel noise added to the whole image after drawing (standard deviation, in 0..255 units).
PIXEL_NOISE = 6.0
#: A shape's colour differs from the background's base colour and from the shapes under it by at
#: least this much (sum of absolute channel differences), so no shape is invisible.
MIN_CONTRAST = 150


@dataclass(frozen=True)
class Shape:
    """One drawn shape: its class, fill colour and outline (a circle's bounding box, else a polygon)."""

    kind: int
    colour: tuple[int, int, int]
    points: tuple[tuple[float, float], ...]


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured float background ``size x size x 3`` and its base colour."""
    base = rng.uniform(40, 215, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    image = np.broadcast_to(base, (size, size, 3)).copy()
    for _ in range(int(rng.integers(1, 4))):
        angle = rng.uniform(0, math.pi)
        frequency = rng.uniform(2, 9)
        phase = rng.uniform(0, 2 * math.pi)
        wave = np.sin(2 * math.pi * frequency * (xx * math.cos(angle) + yy * math.sin(angle)) + phase)
        image += wave[..., None] * rng.uniform(-STRIPES, STRIPES, 3)
    coarse = rng.normal(0, BLOTCHES, (5, 5, 3))
    blotches = np.asarray(
        [
            np.asarray(
                Image.fromarray(coarse[..., c].astype(np.float32)).resize((size, size), Image.Resampling.BICUBIC)
            )
            for c in range(3)
        ]
    )
    image += blotches.transpose(1, 2, 0)
    image += rng.normal(0, BACKGROUND_NOISE, (size, size, 3))
    return image, base


def _colour(rng: np.random.Generator, avoid: list[np.ndarray]) -> tuple[int, int, int]:
    """A random colour at least :data:`MIN_CONTRAST` away from every colour in ``avoid`` (best of 50 tries)."""
    best, best_distance = None, -1.0
    for _ in range(50):
        colour = rng.integers(0, 256, 3)
        distance = min(float(np.abs(colour - a).sum()) for a in avoid)
        if distance > best_distance:
            best, best_distance = colour, distance
        if distance >= MIN_CONTRAST:
            break
    return tuple(int(v) for v in best)


def _polygon(cx: float, cy: float, radius: float, corners: int, angle: float) -> tuple[tuple[float, float], ...]:
    """The corners of a regular polygon centred at ``(cx, cy)`` with circumradius ``radius``."""
    return tuple(
        (
            cx + radius * math.cos(angle + 2 * math.pi * k / corners),
            cy + radius * math.sin(angle + 2 * math.pi * k / corners),
        )
        for k in range(corners)
    )


def _shape(rng: np.random.Generator, size: int, colour: tuple[int, int, int]) -> Shape:
    """A random circle, square or triangle whose centre lies well inside the canvas."""
    kind = int(rng.integers(1, 4))
    scale = size / 64
    cx, cy = (float(v) for v in rng.uniform(0.2 * size, 0.8 * size, 2))
    angle = float(rng.uniform(0, 2 * math.pi))
    if kind == CIRCLE:
        r = float(rng.uniform(7, 15)) * scale
        return Shape(kind, colour, ((cx - r, cy - r), (cx + r, cy + r)))
    if kind == SQUARE:
        half_side = float(rng.uniform(7, 14)) * scale
        return Shape(kind, colour, _polygon(cx, cy, half_side * math.sqrt(2), 4, angle))
    return Shape(kind, colour, _polygon(cx, cy, float(rng.uniform(10, 19)) * scale, 3, angle))


def scene(rng: np.random.Generator, size: int = 64, max_shapes: int = 3) -> tuple[np.ndarray, np.ndarray, list[Shape]]:
    """One sample drawn from ``rng``: the ``size x size x 3`` uint8 image, its ``size x size`` uint8 class map,
    and the shapes in drawing order (the last is on top).
    """
    background, base = _background(rng, size)
    shapes: list[Shape] = []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        shapes.append(_shape(rng, size, _colour(rng, [base] + [np.asarray(s.colour) for s in shapes])))
    paint = Image.new("RGB", (size, size))
    mask = Image.new("L", (size, size), BACKGROUND)
    pen, label = ImageDraw.Draw(paint), ImageDraw.Draw(mask)
    for shape in shapes:
        # the same call with the same geometry on the picture and on the class map
        for draw, fill in ((pen, shape.colour), (label, shape.kind)):
            if shape.kind == CIRCLE:
                draw.ellipse(shape.points, fill=fill)
            else:
                draw.polygon(shape.points, fill=fill)
    classes = np.asarray(mask, dtype=np.uint8)
    image = np.where(classes[..., None] != BACKGROUND, np.asarray(paint, dtype=np.float64), background)
    image += rng.normal(0, PIXEL_NOISE, image.shape)
    return np.round(image).clip(0, 255).astype(np.uint8), classes, shapes


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator sample ``index`` of ``split`` is drawn from, for ``seed``."""
    return np.random.default_rng([seed, _SPLIT_STREAMS[split], index])


class ShapeMasksDataset:
    """Filled circles, squares and triangles on textured backgrounds, with their class maps as labels."""

    name = "shape_masks"
    description = (
        "1-3 filled circles / squares / triangles in random colours, possibly overlapping, on a noisy textured "
        "background (RGB uint8, 64x64 by default); labels [N, H, W] uint8 class maps (0 background, 1 circle, "
        "2 square, 3 triangle) drawn with the shapes, known by construction"
    )

    def load(self, split: str, seed: int, params: dict[str, Any]) -> LabeledPool:
        """``count`` scenes of ``split`` (default 600 test, 3000 train), deterministic for ``seed``.

        ``params``: ``count``, ``size`` (image side, default 64), ``max_shapes`` (default 3).
        """
        check_split(self.name, split)
        check_params(self.name, params, _PARAMS)
        check_seed(self.name, seed)
        count = int_param(self.name, params, "count", 600 if split == "test" else 3000, 1)
        size = int_param(self.name, params, "size", 64, 32)
        max_shapes = int_param(self.name, params, "max_shapes", 3, 1)
        images = np.zeros((count, size, size, 3), np.uint8)
        labels = np.zeros((count, size, size), np.uint8)
        for index in range(count):
            images[index], labels[index], _ = scene(sample_rng(seed, split, index), size, max_shapes)
        return LabeledPool(images, labels, list(CLASSES))


@zoocompat.hookimpl
def zoocompat_datasets() -> list[Any]:
    """The shape segmentation dataset of this module."""
    return [ShapeMasksDataset()]
