"""Resource budgets of a card, checked from its shapes before any data is built.

A card's input shapes say how much memory its samples take: ``[1, 1, 8192,
8192]`` float32 is 256 MiB a sample, and a split of 100 of them 25 GiB, which
would take the worker down long before a cell could say why. The sizes are
known before a single file is read, so they are checked first: per sample
(every input of one sample together) and per split (calibration; evaluation
up to the most its looks may take). A card over a limit is refused naming the
card, the inputs and the limit, and how to raise it.

Limits are generous by default. The command line sets them for a run
(``--max-sample-mb``, ``--max-split-mb``), a card for itself
(``dataset.max_sample_mb``, ``dataset.max_split_mb``); the command line's
value wins, since it speaks for the machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from zoocompat.model.cards import MAX_SAMPLES, Card

__all__ = ["DEFAULT_SAMPLE_MB", "DEFAULT_SPLIT_MB", "Limits", "budget_problems", "limits_for"]

#: Default most MiB one sample (all inputs) may take: 64 float32 images of 1024 x 1024 x 3.
DEFAULT_SAMPLE_MB = 768.0
#: Default most MiB one split (calibration, or evaluation) may take.
DEFAULT_SPLIT_MB = 6144.0
_MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Most MiB per sample and per split, and where each came from (for the message)."""

    sample_mb: float = DEFAULT_SAMPLE_MB
    split_mb: float = DEFAULT_SPLIT_MB
    sample_from: str = "the default"
    split_from: str = "the default"


def limits_for(card: Card, sample_mb: float | None = None, split_mb: float | None = None) -> Limits:
    """The limits for ``card``: the command line's (``sample_mb``, ``split_mb``), else the card's, else defaults."""
    spec = card.dataset
    sample, sample_from = _first((sample_mb, "--max-sample-mb"), (spec.max_sample_mb, "dataset.max_sample_mb"))
    split, split_from = _first((split_mb, "--max-split-mb"), (spec.max_split_mb, "dataset.max_split_mb"))
    return Limits(sample or DEFAULT_SAMPLE_MB, split or DEFAULT_SPLIT_MB, sample_from, split_from)


def _first(*given: tuple[float | None, str]) -> tuple[float | None, str]:
    """The first value that is set, with where it came from; ``(None, "the default")`` when none is."""
    return next(((value, where) for value, where in given if value), (None, "the default"))


def _sample_bytes(card: Card) -> list[tuple[str, int]]:
    """Each input's bytes per sample, from its declared shape and dtype."""
    return [(spec.name, math.prod(spec.sample_shape) * np.dtype(spec.dtype).itemsize) for spec in card.inputs]


def _mb(count: float) -> str:
    return f"{count / _MIB:,.1f} MiB" if count < 1024 * _MIB else f"{count / (1024 * _MIB):,.1f} GiB"


def budget_problems(card: Card, limits: Limits) -> list[str]:
    """``"field: problem"`` lines for the sample and split sizes of ``card`` over ``limits`` (``[]`` when within)."""
    sizes = _sample_bytes(card)
    sample = sum(size for _, size in sizes)
    if sample > limits.sample_mb * _MIB:  # the splits are over too: one message says it
        parts = ", ".join(
            f"{name!r} {spec.sample_shape} {spec.dtype} = {_mb(size)}"
            for (name, size), spec in zip(sizes, card.inputs, strict=True)
        )
        return [
            f"inputs: one sample takes {_mb(sample)} ({parts}), over the limit of {limits.sample_mb:g} MiB per "
            f"sample ({limits.sample_from}); use smaller inputs.shape / preprocess.resize, or raise the limit "
            "with dataset.max_sample_mb or --max-sample-mb"
        ]
    spec = card.dataset
    # evaluation up to its most: a number of samples when the card gives one ("pool" is capped at run time)
    evaluation = (
        ("dataset.max_evaluation", spec.max_evaluation)
        if isinstance(spec.max_evaluation, int)
        else ("dataset.evaluation", spec.evaluation)
    )
    return [
        f"{field}: {count} samples of {_mb(sample)} take {_mb(count * sample)}, over the limit of "
        f"{limits.split_mb:g} MiB per split ({limits.split_from}); take fewer samples, or raise the "
        "limit with dataset.max_split_mb or --max-split-mb"
        for field, count in (("dataset.calibration", spec.calibration), evaluation)
        if count * sample > limits.split_mb * _MIB
    ]


def evaluation_samples_within(card: Card, limits: Limits, most: int) -> int:
    """The most evaluation samples the split limit allows (at least the first look's; at most ``most``)."""
    sample = max(1, sum(size for _, size in _sample_bytes(card)))
    fits = int(limits.split_mb * _MIB // sample)
    return max(card.dataset.evaluation, min(most, fits, MAX_SAMPLES))
