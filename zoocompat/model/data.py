"""Calibration and evaluation data for a card: split, preprocess, cache.

The dataset plugin yields a deterministic labeled pool; this module takes a
seeded permutation of the pool's test split, gives the first ``calibration``
samples to calibration and the next ``evaluation`` samples to evaluation (so
the two never overlap), and applies the card's preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from zoocompat.api import Dataset
from zoocompat.api.errors import CellError
from zoocompat.model.cards import Card, InputSpec, Preprocess


@dataclass
class CardData:
    """Model-ready tensors for one card (single-input models)."""

    input_name: str
    calibration: np.ndarray
    evaluation: np.ndarray
    labels: np.ndarray

    def save(self, path: Path) -> None:
        """Write as an uncompressed npz (no pickles)."""
        np.savez(path, calibration=self.calibration, evaluation=self.evaluation, labels=self.labels)

    @classmethod
    def load(cls, path: Path, input_name: str) -> CardData:
        """Read what :meth:`save` wrote."""
        with np.load(path, allow_pickle=False) as data:
            return cls(input_name, data["calibration"], data["evaluation"], data["labels"])

    def eval_batch(self) -> dict[str, np.ndarray]:
        """The evaluation inputs as a batch dict."""
        return {self.input_name: self.evaluation}

    def calibration_batches(self) -> list[dict[str, np.ndarray]]:
        """One single-sample batch per calibration sample (static batch dim 1)."""
        return [{self.input_name: self.calibration[i : i + 1]} for i in range(len(self.calibration))]


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    squeeze = image.ndim == 3 and image.shape[2] == 1
    array = image[..., 0] if squeeze else image
    mode = "F" if array.dtype != np.uint8 else None
    pil = Image.fromarray(array.astype(np.float32) if mode else array, mode=mode)
    out = np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR))
    return out[..., None] if squeeze or out.ndim == 2 else out


def preprocess_image(image: np.ndarray, spec: Preprocess) -> np.ndarray:
    """One ``H x W x C`` image through the card's preprocessing, as float32 HWC."""
    if image.ndim == 2:
        image = image[..., None]
    if spec.channels == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if spec.resize_short:
        h, w = image.shape[:2]
        factor = spec.resize_short / min(h, w)
        image = _resize(image, round(h * factor), round(w * factor))
    if spec.resize:
        image = _resize(image, *spec.resize)
    if spec.center_crop:
        ch, cw = spec.center_crop
        h, w = image.shape[:2]
        top, left = (h - ch) // 2, (w - cw) // 2
        image = image[top : top + ch, left : left + cw]
    out = image.astype(np.float32) * np.float32(spec.scale)
    if spec.mean is not None:
        out = out - np.asarray(spec.mean, dtype=np.float32)
    if spec.std is not None:
        out = out / np.asarray(spec.std, dtype=np.float32)
    return out


def to_model_input(images: list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Stack preprocessed HWC images into the card's layout and check the dims."""
    batch = np.stack([preprocess_image(img, spec.preprocess) for img in images]).astype(np.float32)
    if spec.layout == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)
    expected = tuple(spec.shape[1:])
    if batch.shape[1:] != expected:
        raise CellError(
            "bad_input",
            f"input {spec.name!r}: preprocessing gives samples of shape {batch.shape[1:]}, "
            f"the card declares {expected} ({spec.layout}); fix inputs.preprocess or inputs.shape",
        )
    return np.ascontiguousarray(batch)


def build_card_data(card: Card, dataset: Dataset) -> CardData:
    """Draw the calibration and evaluation splits of ``card`` from ``dataset``."""
    spec = card.dataset
    pool = dataset.load("test", spec.seed, dict(spec.params))
    need = spec.calibration + spec.evaluation
    if len(pool.samples) < need:
        raise CellError(
            "bad_input",
            f"{card.path}: dataset {spec.name!r} has {len(pool.samples)} test samples, the card asks for "
            f"calibration {spec.calibration} + evaluation {spec.evaluation} = {need}; lower them",
        )
    order = np.random.default_rng(spec.seed).permutation(len(pool.samples))
    cal_idx, eval_idx = order[: spec.calibration], order[spec.calibration : need]
    input_spec = card.inputs[0]
    return CardData(
        input_name=input_spec.name,
        calibration=to_model_input([pool.samples[i] for i in cal_idx], input_spec),
        evaluation=to_model_input([pool.samples[i] for i in eval_idx], input_spec),
        labels=np.asarray(pool.labels)[eval_idx],
    )


def training_inputs(card: Card, dataset: Dataset, limit: int) -> np.ndarray | None:
    """Up to ``limit`` preprocessed inputs of the dataset's ``train`` split (a seeded draw), for fine-tuning
    (QAT); ``None`` when the dataset has no train samples. The evaluation split is never among them.
    """
    pool = dataset.load("train", card.dataset.seed, dict(card.dataset.params))
    if not len(pool.samples):
        return None
    order = np.random.default_rng(card.dataset.seed).permutation(len(pool.samples))[:limit]
    return to_model_input([pool.samples[i] for i in order], card.inputs[0])
