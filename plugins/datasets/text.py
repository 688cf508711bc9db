"""Rendered text: line crops for OCR direction classifiers and recognizers, pages for detectors.

Each sample is what an OCR pipeline hands its line models after detection:
one line of black text on white, cut with a small margin, scaled to the model
height and padded on the right to the model width. Lines are rendered here at
the model size directly, so the card needs no resize: its preprocessing is
only the normalisation. The padding is mid-grey (128) because the PP-OCR
pipelines (rapidocr's ``resize_norm_img``) pad with 0 *after* normalising
``(x / 255 - 0.5) / 0.5``, which is mid-grey in pixel terms; the models were
trained on such padding and read white padding less reliably. Pages are
white squares of left-aligned lines, labelled with a mask of each line's box.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import zoocompat
from zoocompat.api import LabeledPool
from zoocompat.api.errors import CellError

from .params import bool_param, check_params, check_seed, check_split, int_param

#: Common English words; lines mix them with digit groups and case variants.
_WORDS = """
the of and to in is you that it was for on are as with his they at be this have from or one had by word
but not what all were we when your can said there use each which she do how their if will up other about
out many then them these so some her would make like him into time has look two more write go see number
no way could people my than first water been call who oil its now find long down day did get come made
may part over new sound take only little work know place year live me back give most very after thing our
just name good sentence man think say great where help through much before line right too mean old any
same tell boy follow came want show also around form three small set put end does another well large
must big even such because turn here why ask went men read need land different home move try kind hand
picture again change off play spell air away animal house point page letter mother answer found study
still learn should world high every near add food between own below country plant last school father
keep tree never start city earth eye light thought head under story saw left few while along might close
""".split()
#: Pixel value of the padding right of the text (see the module docstring).
PAD_VALUE = 128
#: Font size as a share of the line height; 48 px lines get 28..34 px text.
_FONT_SCALE = (0.58, 0.71)
_MARGIN = (3, 9)  # px of white around the text, left and right
_ROTATE_CLASSES = ["0", "180"]
#: Font size of page lines as a share of the page side; 256 px pages get 8..24 px text.
_PAGE_FONT_SCALE = (0.031, 0.094)
_MAX_DRAWS = 1000  # lines drawn before giving up on fitting one into the width


@functools.cache
def _font(px: int) -> ImageFont.FreeTypeFont:
    """Pillow's built-in scalable font (the same on every machine) at ``px`` pixels."""
    return ImageFont.load_default(size=px)


def _token(rng: np.random.Generator) -> str:
    """One word: a common word (sometimes Capitalised or UPPER) or a group of digits."""
    roll = rng.random()
    if roll < 0.2:
        return str(rng.integers(0, 10 ** int(rng.integers(1, 6))))
    word = str(_WORDS[rng.integers(len(_WORDS))])
    if roll < 0.35:
        return word.capitalize()
    return word.upper() if roll < 0.40 else word


def _render_line(rng: np.random.Generator, height: int, width: int, words: tuple[int, int]) -> tuple[Image.Image, str]:
    """A crop of ``words[0]..words[1]`` words, white with black text, at most ``width`` wide."""
    for _ in range(_MAX_DRAWS):  # draw again until the line fits
        text = " ".join(_token(rng) for _ in range(int(rng.integers(words[0], words[1] + 1))))
        font = _font(max(6, round(height * rng.uniform(*_FONT_SCALE))))
        margin = int(rng.integers(*_MARGIN))
        left, _, right, _ = font.getbbox(text)
        crop_w = right - left + 2 * margin
        if crop_w <= width:
            break
    else:
        raise CellError(
            "bad_input",
            f"dataset 'text_lines': {words[0]}..{words[1]} words at {height} px rarely fit {width} px "
            f"(no fit in {_MAX_DRAWS} draws); lower dataset.params.min_words or raise width",
        )
    ascent, descent = font.getmetrics()
    top = (height - ascent - descent) // 2 + int(rng.integers(-2, 3))
    crop = Image.new("L", (crop_w, height), 255)
    ImageDraw.Draw(crop).text((margin - left, top), text, fill=0, font=font)
    return crop, text


class TextLinesDataset:
    """Synthetic text-line crops: strings for recognition, or 0/180 degrees for direction."""

    name = "text_lines"
    description = (
        "rendered English words/digits (Pillow built-in font), one line per RGB uint8 crop, "
        "padded right with grey to the model size; labels are the strings, or with rotate180 "
        "the classes 0/180 (every second line turned); params: count (256), height (48), "
        "width (192), min_words (1), max_words (3), rotate180 (false)"
    )
    DEFAULTS: dict[str, Any] = {
        "count": 256,
        "height": 48,
        "width": 192,
        "min_words": 1,
        "max_words": 3,
        "rotate180": False,
    }
    #: train and test draw from different random streams of the same seed.
    _STREAMS = {"train": 1, "test": 2}

    def load(self, split: str, seed: int, params: dict[str, Any]) -> LabeledPool:
        """Render ``count`` lines of ``height`` x ``width`` pixels for ``split``.

        Without ``rotate180`` the labels are the rendered strings (words joined by
        one space). With it, line ``i`` is turned by 180 degrees when ``i`` is odd
        and labelled ``i % 2`` (classes ``["0", "180"]``); the grey padding stays
        on the right, as a pipeline pads a crop after turning it.
        """
        check_split(self.name, split)
        check_params(self.name, params, list(self.DEFAULTS))
        check_seed(self.name, seed)
        count = int_param(self.name, params, "count", self.DEFAULTS["count"], 1)
        height = int_param(self.name, params, "height", self.DEFAULTS["height"], 16)
        width = int_param(self.name, params, "width", self.DEFAULTS["width"], 4 * height)
        min_words = int_param(self.name, params, "min_words", self.DEFAULTS["min_words"], 1)
        max_words = int_param(self.name, params, "max_words", self.DEFAULTS["max_words"], min_words)
        rotate = bool_param(self.name, params, "rotate180", self.DEFAULTS["rotate180"])

        rng = np.random.default_rng([seed, self._STREAMS[split]])
        samples = np.empty((count, height, width, 3), np.uint8)
        texts: list[str] = []
        for index in range(count):
            crop, text = _render_line(rng, height, width, (min_words, max_words))
            if rotate and index % 2:
                crop = crop.transpose(Image.Transpose.ROTATE_180)
            line = Image.new("L", (width, height), PAD_VALUE)
            line.paste(crop, (0, 0))
            samples[index] = np.asarray(line)[..., None]
            texts.append(text)
        if rotate:
            return LabeledPool(samples, np.arange(count, dtype=np.int64) % 2, list(_ROTATE_CLASSES))
        return LabeledPool(samples, np.asarray(texts, dtype=str), [])


def _render_page(rng: np.random.Generator, size: int) -> tuple[Image.Image, np.ndarray]:
    """A ``size`` x ``size`` white page of left-aligned lines in assorted sizes, and its
    line-id mask: pixel value ``k`` inside the ink box of line ``k`` (1, 2, ...), 0 elsewhere.
    """
    page = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(page)
    ids = np.zeros((size, size), np.uint8)
    y, line = int(rng.integers(4, 16)), 0
    while line < 255:
        font = _font(max(6, round(size * rng.uniform(*_PAGE_FONT_SCALE))))
        ascent, descent = font.getmetrics()
        if y + ascent + descent > size - 4:
            break
        x = int(rng.integers(4, size // 3))
        words: list[str] = []
        while not words or rng.random() > 0.25:  # 1 word or more, until the line is full
            word = _token(rng)
            if font.getlength(" ".join([*words, word])) > size - 4 - x:
                break
            words.append(word)
        if words:
            text = " ".join(words)
            left, top, right, bottom = font.getbbox(text)
            draw.text((x, y), text, fill=0, font=font)
            line += 1
            ids[y + top : y + bottom, x + left : x + right] = line
        y += round((ascent + descent) * rng.uniform(1.3, 2.2))
    return page, ids


class TextPagesDataset:
    """Synthetic pages of text lines, labelled with a mask of each line's box (text detection)."""

    name = "text_pages"
    description = (
        "rendered pages of English words/digits in 8..24 px lines (Pillow built-in font), RGB uint8 "
        "squares; labels are uint8 masks, k inside the ink box of line k, 0 elsewhere; "
        "params: count (128), size (256)"
    )
    DEFAULTS: dict[str, Any] = {"count": 128, "size": 256}
    _STREAMS = {"train": 1, "test": 2}

    def load(self, split: str, seed: int, params: dict[str, Any]) -> LabeledPool:
        """Render ``count`` pages of ``size`` x ``size`` pixels with their line masks."""
        check_split(self.name, split)
        check_params(self.name, params, list(self.DEFAULTS))
        check_seed(self.name, seed)
        count = int_param(self.name, params, "count", self.DEFAULTS["count"], 1)
        size = int_param(self.name, params, "size", self.DEFAULTS["size"], 128)
        rng = np.random.default_rng([seed, self._STREAMS[split]])
        samples = np.empty((count, size, size, 3), np.uint8)
        masks = np.empty((count, size, size), np.uint8)
        for index in range(count):
            page, masks[index] = _render_page(rng, size)
            samples[index] = np.asarray(page)[..., None]
        return LabeledPool(samples, masks, [])


@zoocompat.hookimpl
def zoocompat_datasets() -> list[Any]:
    """The text datasets of this module."""
    return [TextLinesDataset(), TextPagesDataset()]
