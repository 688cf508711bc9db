"""Calibration and evaluation data for a card: split, preprocess, cache.

A registered dataset plugin yields a deterministic labeled pool (its test
split), a card's own ``dataset.source`` a pool of the user's data
(:mod:`zoocompat.model.datasources`); this module takes a seeded permutation
of the pool, gives the first ``calibration`` samples to calibration and the
next ``evaluation`` samples to evaluation (so the two never overlap), and
makes each input model-ready: images through the card's preprocessing, laid
out and cast to the input's dtype; tensors as the source gives them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from zoocompat.api import Dataset
from zoocompat.api import samples as batching
from zoocompat.api.cache import ArtifactCache
from zoocompat.api.errors import CellError
from zoocompat.model.cards import Card, InputSpec, Preprocess
from zoocompat.model.datasources import SamplePool, load_source

#: The ``.npz`` key prefixes of :meth:`CardData.save` (one key per input: ``calibration.<index>``).
_CALIBRATION, _EVALUATION = "calibration", "evaluation"


@dataclass
class CardData:
    """Model-ready tensors for one card: each input's calibration and evaluation samples, and the labels.

    ``calibration`` and ``evaluation`` map every card input's name to an array
    with the sample axis first (:mod:`zoocompat.api.samples`); ``labels`` holds
    one label per evaluation sample, or is ``None`` when the data has none (the
    card is judged on fidelity to FP32).
    """

    calibration: dict[str, np.ndarray]
    evaluation: dict[str, np.ndarray]
    labels: np.ndarray | None
    #: whether each input's first dim is the batch dim (:attr:`InputSpec.batched`)
    batched: dict[str, bool]
    #: how many evaluation samples the pool holds after calibration (what later looks may grow to);
    #: ``None`` when not known (data cached before it was recorded)
    pool: int | None = None

    @property
    def samples(self) -> int:
        """How many evaluation samples there are."""
        return batching.count(self.evaluation)

    def save(self, path: Path) -> None:
        """Write as an uncompressed npz (no pickles); inputs are keyed by position, so any name is safe."""
        arrays = {}
        for index, name in enumerate(self.evaluation):
            arrays[f"{_CALIBRATION}.{index}"] = self.calibration[name]
            arrays[f"{_EVALUATION}.{index}"] = self.evaluation[name]
        if self.labels is not None:
            arrays["labels"] = self.labels
        if self.pool is not None:
            arrays["pool"] = np.asarray(self.pool, dtype=np.int64)
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path, inputs: list[InputSpec]) -> CardData:
        """Read what :meth:`save` wrote for ``inputs`` (the card's, in order)."""
        with np.load(path, allow_pickle=False) as data:
            return cls(
                {spec.name: data[f"{_CALIBRATION}.{i}"] for i, spec in enumerate(inputs)},
                {spec.name: data[f"{_EVALUATION}.{i}"] for i, spec in enumerate(inputs)},
                data["labels"] if "labels" in data.files else None,
                {spec.name: spec.batched for spec in inputs},
                int(data["pool"]) if "pool" in data.files else None,
            )

    def eval_batch(self) -> dict[str, np.ndarray]:
        """The evaluation inputs as a batch dict."""
        return dict(self.evaluation)

    def calibration_batches(self) -> list[dict[str, np.ndarray]]:
        """One model call's feed per calibration sample (each input at its full static shape)."""
        ranks = {name: array.ndim - (0 if self.batched[name] else 1) for name, array in self.calibration.items()}
        return [batching.sample(self.calibration, i, ranks) for i in range(batching.count(self.calibration))]


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an ``H x W x C`` image: uint8 grey or RGB through Pillow's own modes, anything else
    (float images, other channel counts) one channel at a time in Pillow's float mode ``F``.
    """
    if image.dtype == np.uint8 and image.shape[2] in (1, 3):
        array = image[..., 0] if image.shape[2] == 1 else image
        out = np.asarray(Image.fromarray(array).resize((width, height), Image.Resampling.BILINEAR))
        return out[..., None] if out.ndim == 2 else out
    planes = [
        np.asarray(
            Image.fromarray(image[..., c].astype(np.float32), mode="F").resize(
                (width, height), Image.Resampling.BILINEAR
            )
        )
        for c in range(image.shape[2])
    ]
    return np.stack(planes, axis=2)


def _per_channel(values: list[float] | None, channels: int, field: str) -> np.ndarray | None:
    """``mean`` / ``std`` as an array that applies per channel: one value, or one per channel."""
    if values is None:
        return None
    if len(values) not in (1, channels):
        raise CellError(
            "bad_input",
            f"inputs.preprocess.{field}: {len(values)} values for images of {channels} channel(s) after "
            f"preprocess.channels; give one value or one per channel",
        )
    return np.asarray(values, dtype=np.float32)


def preprocess_image(image: np.ndarray, spec: Preprocess) -> np.ndarray:
    """One ``H x W x C`` image (RGB or gray) through the card's preprocessing, as float32 HWC."""
    if image.ndim == 2:
        image = image[..., None]
    if spec.channels == 3 and image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if spec.channel_order == "BGR" and image.shape[2] == 3:
        image = image[..., ::-1]
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
    mean = _per_channel(spec.mean, out.shape[2], "mean")
    std = _per_channel(spec.std, out.shape[2], "std")
    if mean is not None:
        out = out - mean
    if std is not None:
        out = out / std
    return out


def cast(values: np.ndarray, dtype: str) -> np.ndarray:
    """``values`` as ``dtype``: floats rounded and clipped into an integer dtype's range, 0/1 for bool."""
    target = np.dtype(dtype)
    if values.dtype == target:
        return values
    if target.kind in "iu" and values.dtype.kind == "f":
        info = np.iinfo(target)
        values = np.clip(np.rint(values), info.min, info.max)
    return values.astype(target)


def to_model_input(images: list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Stack images into the input's layout and dtype, image-preprocessed unless the input is ``raw``,
    and check they give the input's sample shape.
    """
    preprocess = spec.image_preprocess
    if preprocess is None:
        prepared = [np.asarray(image)[..., None] if np.ndim(image) == 2 else np.asarray(image) for image in images]
    else:
        prepared = [preprocess_image(image, preprocess) for image in images]
    shapes = {p.shape for p in prepared}
    if len(shapes) > 1:
        raise CellError(
            "bad_input",
            f"input {spec.name!r}: images come in {len(shapes)} sizes ({sorted(shapes)[:3]}...) after "
            "preprocessing; add inputs.preprocess.resize (or center_crop) so every sample has the input's size",
        )
    batch = np.stack(prepared)
    if spec.layout == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)
    expected = spec.sample_shape
    if batch.shape[1:] != expected:
        raise CellError(
            "bad_input",
            f"input {spec.name!r}: preprocessing gives samples of shape {batch.shape[1:]}, "
            f"the card declares {expected} per sample (shape {spec.shape}, {spec.layout}); "
            "fix inputs.preprocess or inputs.shape",
        )
    return np.ascontiguousarray(cast(batch, spec.dtype))


def _image_inputs(card: Card) -> InputSpec:
    """The one input a registered (image or text-line) dataset feeds."""
    if len(card.inputs) != 1:
        raise CellError(
            "bad_input",
            f"{card.path}: dataset {card.dataset.name!r} yields one image per sample, the card has "
            f"{len(card.inputs)} inputs; name your own data for each input with dataset.source (arrays, input_list, "
            "text, synthetic)",
        )
    return card.inputs[0]


def _pool(card: Card, dataset: Dataset | None, cache: ArtifactCache | None) -> SamplePool:
    """The card's samples before per-input processing, from its registered dataset or its own source."""
    if card.dataset.source is not None:
        return load_source(card, cache)
    assert dataset is not None, "a card with dataset.name needs its registered dataset"
    spec = card.dataset
    pool = dataset.load("test", spec.seed, dict(spec.params))
    if isinstance(pool.samples, dict):  # model-ready tensors per input (a text or audio dataset)
        tensors = _checked_tensors(card, pool.samples)
        return SamplePool(tensors, frozenset(), np.asarray(pool.labels), list(pool.classes))
    name = _image_inputs(card).name
    return SamplePool({name: pool.samples}, frozenset({name}), np.asarray(pool.labels), list(pool.classes))


def _checked_tensors(card: Card, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A registered dataset's per-input tensors, each at the card input's sample shape and dtype."""
    out = {}
    for spec in card.inputs:
        if spec.name not in tensors:
            raise CellError(
                "bad_input",
                f"{card.path}: dataset {card.dataset.name!r} yields inputs {sorted(tensors)}, the card's input "
                f"{spec.name!r} is not among them; name the card's inputs as the dataset does (inputs.name)",
            )
        values = np.asarray(tensors[spec.name])
        if values.shape[1:] != spec.sample_shape:
            raise CellError(
                "bad_input",
                f"{card.path}: dataset {card.dataset.name!r} yields {spec.name!r} samples of shape "
                f"{values.shape[1:]}, the card's input takes {spec.sample_shape} (inputs.shape {spec.shape}); "
                "fix inputs.shape or the dataset's params",
            )
        out[spec.name] = cast(values, spec.dtype)
    return out


def _model_inputs(card: Card, pool: SamplePool, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Each card input's samples at ``indices``: images through preprocessing, tensors as they come."""
    missing = [spec.name for spec in card.inputs if spec.name not in pool.inputs]
    if missing:
        fed = ", ".join(sorted(pool.inputs)) or "none"
        raise CellError(
            "bad_input",
            f"{card.path}: dataset.source ({card.dataset.source.kind if card.dataset.source else card.dataset.name}) "
            f"feeds inputs {fed}, and the card's inputs {missing} get no data; use a source that feeds every input "
            "(arrays, input_list, synthetic)",
        )
    out = {}
    for spec in card.inputs:
        values = pool.inputs[spec.name]
        if spec.name in pool.images:
            out[spec.name] = to_model_input([values[i] for i in indices], spec)
        else:
            out[spec.name] = np.ascontiguousarray(np.asarray(values)[indices])
    return out


def _checked_pool(card: Card, dataset: Dataset | None, cache: ArtifactCache | None) -> SamplePool:
    """The card's pool, with at least its calibration and first-look samples and one label per sample."""
    spec = card.dataset
    pool = _pool(card, dataset, cache)
    need = spec.calibration + spec.evaluation
    if len(pool) < need:
        raise CellError(
            "bad_input",
            f"{card.path}: {_origin(card)} has {len(pool)} samples, the card asks for "
            f"calibration {spec.calibration} + evaluation {spec.evaluation} = {need}; lower them or add data",
        )
    if pool.labels is not None and len(pool.labels) != len(pool):
        raise CellError(
            "bad_input",
            f"{card.path}: dataset.source.labels: {len(pool.labels)} labels for {len(pool)} samples; "
            "give one label per sample",
        )
    return pool


def _order(card: Card, count: int) -> np.ndarray:
    """The card's seeded permutation of ``count`` samples: calibration first, then evaluation look by look, then
    what is left (QAT's training samples of the card's own data).
    """
    return np.random.default_rng(card.dataset.seed).permutation(count)


def _origin(card: Card) -> str:
    spec = card.dataset
    return f"dataset {spec.name!r}" if spec.name else f"dataset.source ({spec.source.kind})"


def build_card_data(card: Card, dataset: Dataset | None, cache: ArtifactCache | None = None) -> CardData:
    """Draw the calibration and evaluation splits of ``card`` from its registered ``dataset`` (``dataset.name``)
    or its own data (``dataset.source``): a seeded permutation, calibration first, then evaluation, so the
    two never overlap. The evaluation split is the first look's ``dataset.evaluation`` samples; later looks
    take the next ones of the same permutation (:func:`build_evaluation`).
    """
    spec = card.dataset
    pool = _checked_pool(card, dataset, cache)
    order = _order(card, len(pool))
    cal_idx, eval_idx = order[: spec.calibration], order[spec.calibration : spec.calibration + spec.evaluation]
    return CardData(
        calibration=_model_inputs(card, pool, cal_idx),
        evaluation=_model_inputs(card, pool, eval_idx),
        labels=None if pool.labels is None else np.asarray(pool.labels)[eval_idx],
        batched={i.name: i.batched for i in card.inputs},
        pool=len(pool) - spec.calibration,
    )


def pool_size(card: Card, dataset: Dataset | None, cache: ArtifactCache | None = None) -> int:
    """How many evaluation samples ``card``'s pool holds after calibration."""
    return len(_checked_pool(card, dataset, cache)) - card.dataset.calibration


def build_evaluation(
    card: Card, dataset: Dataset | None, start: int, stop: int, cache: ArtifactCache | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Evaluation samples ``start`` to ``stop`` (counted from the first look's first sample) and their labels:
    the next draws of the permutation :func:`build_card_data` takes, so a later look extends the first.
    """
    spec = card.dataset
    pool = _checked_pool(card, dataset, cache)
    if spec.calibration + stop > len(pool):
        raise CellError(
            "bad_input",
            f"{card.path}: {_origin(card)} holds {len(pool) - spec.calibration} evaluation samples after "
            f"calibration {spec.calibration}, a look asks for {stop}; lower dataset.max_evaluation",
        )
    order = _order(card, len(pool))
    index = order[spec.calibration + start : spec.calibration + stop]
    labels = None if pool.labels is None else np.asarray(pool.labels)[index]
    return _model_inputs(card, pool, index), labels


def training_inputs(
    card: Card, dataset: Dataset | None, limit: int, cache: ArtifactCache | None = None
) -> dict[str, np.ndarray] | None:
    """Up to ``limit`` samples for fine-tuning (QAT), as a batch dict, never among the evaluation samples:
    a seeded draw of a registered dataset's ``train`` split, or of the own data left after calibration and
    evaluation. ``None`` when there are none.
    """
    if card.dataset.source is not None:
        pool = load_source(card, cache)
        spare = _order(card, len(pool))[card.dataset.calibration + card.dataset.reserved_for_evaluation :]
        return _model_inputs(card, pool, spare[:limit]) if len(spare) else None
    assert dataset is not None, "a card with dataset.name needs its registered dataset"
    pool = dataset.load("train", card.dataset.seed, dict(card.dataset.params))
    if isinstance(pool.samples, dict):
        tensors = _checked_tensors(card, pool.samples)
        count = len(next(iter(tensors.values()))) if tensors else 0
        order = _order(card, count)[:limit]
        return {name: values[order] for name, values in tensors.items()} if count else None
    if not len(pool.samples):
        return None
    order = _order(card, len(pool.samples))[:limit]
    return {_image_inputs(card).name: to_model_input([pool.samples[i] for i in order], card.inputs[0])}
