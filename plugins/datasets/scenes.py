"""``face_scenes``: face-detection scenes whose ground-truth boxes are known by construction.

Each scene is a background (one of scikit-image's LFW non-face crops, scaled
up to the canvas) with one to ``max_faces`` LFW face crops pasted at seeded
sizes and places that never overlap. A face crop is a tight crop of a real
face, so the rectangle it was pasted into is the face's box: the labels are
honest without anyone drawing a box.

Labels are ``[N, max_faces, 5]`` float32 rows ``(x1, y1, x2, y2, class)`` in
canvas pixels, class 0 (face), padded with rows of -1: the layout the
detection metrics (``map50``, ``map50_95``) read.

Faces and backgrounds are split once, independently of any seed: the test
split uses the first 70 faces and 70 backgrounds, the train split the other
30 of each, so a train scene never shows a test face.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image
from zoocompat_plugins.datasets.params import check_params, check_seed, check_split, int_param

import zoocompat
from zoocompat.api import LabeledPool
from zoocompat.api.errors import CellError

_TEST_FACES, _TEST_BACKGROUNDS = range(0, 70), range(100, 170)
_TRAIN_FACES, _TRAIN_BACKGROUNDS = range(70, 100), range(170, 200)
_PARAMS = ("count", "size", "max_faces", "min_face", "max_face")


def _crops() -> np.ndarray:
    """scikit-image's lfw_subset as uint8 (the first 100 are faces, the last 100 are not)."""
    from skimage.data import lfw_subset

    crops = lfw_subset()
    return crops if crops.dtype == np.uint8 else np.round(crops * 255).clip(0, 255).astype(np.uint8)


def _place(rng: np.random.Generator, size: int, side: int, boxes: list[tuple[int, int, int, int]]) -> tuple | None:
    """A free ``side`` x ``side`` square on the canvas that overlaps none of ``boxes`` (``None`` after 50 tries)."""
    for _ in range(50):
        x, y = (int(v) for v in rng.integers(0, size - side + 1, 2))
        if all(x + side <= bx1 or bx2 <= x or y + side <= by1 or by2 <= y for bx1, by1, bx2, by2 in boxes):
            return x, y, x + side, y + side
    return None


class FaceScenesDataset:
    """Scenes of pasted LFW faces on LFW backgrounds, with the paste rectangles as ground-truth boxes."""

    name = "face_scenes"
    description = (
        "1-3 LFW face crops pasted on an LFW background (RGB, 128x128 by default); labels [N, max_faces, 5] "
        "boxes (x1, y1, x2, y2, class 0) known by construction, padded with -1"
    )

    def load(self, split: str, seed: int, params: dict[str, Any]) -> LabeledPool:
        """``count`` scenes of ``split`` (default 300 test, 100 train), deterministic for ``seed``.

        ``params``: ``count``, ``size`` (canvas side, default 128), ``max_faces`` (default 2),
        ``min_face`` / ``max_face`` (pasted face side in pixels, default 32 / 72).
        """
        check_split(self.name, split)
        check_params(self.name, params, _PARAMS)
        check_seed(self.name, seed)
        count = int_param(self.name, params, "count", 300 if split == "test" else 100, 1)
        size = int_param(self.name, params, "size", 128, 32)
        max_faces = int_param(self.name, params, "max_faces", 2, 1)
        min_face = int_param(self.name, params, "min_face", 32, 8)
        max_face = int_param(self.name, params, "max_face", 72, min_face)
        if max_face > size:
            raise CellError(
                "bad_input", f"dataset {self.name!r}: dataset.params.max_face {max_face} exceeds size {size}"
            )
        faces, backgrounds = (_TEST_FACES, _TEST_BACKGROUNDS) if split == "test" else (_TRAIN_FACES, _TRAIN_BACKGROUNDS)
        crops = _crops()
        # one generator per split, so the test scenes never depend on how many train scenes were drawn
        rng = np.random.default_rng([seed, 0 if split == "test" else 1])
        images = np.zeros((count, size, size, 3), np.uint8)
        labels = np.full((count, max_faces, 5), -1.0, np.float32)
        for index in range(count):
            background = crops[backgrounds[int(rng.integers(len(backgrounds)))]]
            canvas = np.asarray(Image.fromarray(background).resize((size, size), Image.Resampling.BILINEAR))
            canvas = np.repeat(canvas[..., None], 3, axis=2).copy()
            boxes: list[tuple[int, int, int, int]] = []
            for _ in range(int(rng.integers(1, max_faces + 1))):
                side = int(rng.integers(min_face, max_face + 1))
                box = _place(rng, size, side, boxes)
                if box is None:
                    continue
                face = crops[faces[int(rng.integers(len(faces)))]]
                pasted = np.asarray(Image.fromarray(face).resize((side, side), Image.Resampling.BILINEAR))
                x1, y1, x2, y2 = box
                canvas[y1:y2, x1:x2] = pasted[..., None]
                labels[index, len(boxes)] = (x1, y1, x2, y2, 0)
                boxes.append(box)
            images[index] = canvas
        return LabeledPool(images, labels, ["face"])


@zoocompat.hookimpl
def zoocompat_datasets() -> list[Any]:
    """The scene datasets of this module."""
    return [FaceScenesDataset()]
