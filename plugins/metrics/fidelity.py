"""Fidelity metrics: how close a run's output is to the FP32 model's output on the same samples.

They need no labels (``compared_with = "fp32"``): the core passes the FP32
output as ``labels``. Both arrays have the sample axis first and any shape per
sample; each sample is compared as a whole (flattened), except by
``agreement``, which reads one class-score vector per sample.

- ``sqnr``: signal-to-quantization-noise ratio in dB, ``10 log10(sum ref^2 /
  sum (ref - out)^2)``, capped at :data:`MAX_SQNR_DB` (an identical sample);
  the card's tolerance is the lowest allowed mean SQNR (``floor = True``).
- ``cosine``: cosine similarity; the tolerance is the allowed drop from 1.0.
- ``agreement``: 1.0 where FP32's top-1 class is among the output's top-k
  (``metric.params: {k: 2}``; default k=1); the tolerance is the allowed drop.

Only numpy is imported here.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from zoocompat_plugins.metrics.params import positive_k

import zoocompat
from zoocompat.api.errors import CellError

__all__ = ["MAX_SQNR_DB", "Agreement", "Cosine", "Sqnr"]

#: The SQNR of an identical sample (no noise), and the most any sample scores.
MAX_SQNR_DB = 150.0


def _pair(name: str, output: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(output, reference)`` as float64 arrays of one flattened row per sample, after checking they match."""
    if reference is None:
        raise CellError(
            "bad_input",
            f"metric {name!r} compares with the FP32 output of the same samples and got none; "
            "it is a fidelity metric: the core passes the FP32 output, so score it through the core",
        )
    output, reference = np.asarray(output), np.asarray(reference)
    if output.shape != reference.shape or output.ndim < 1:
        raise CellError(
            "bad_input",
            f"metric {name!r}: output of shape {list(output.shape)} does not match the FP32 output of shape "
            f"{list(reference.shape)}; both need the sample axis first and the same shape per sample "
            "(point metric.output at an output the backend returns as the FP32 model does)",
        )
    count = len(output)
    return (
        output.astype(np.float64, copy=False).reshape(count, -1),
        reference.astype(np.float64, copy=False).reshape(count, -1),
    )


class Sqnr:
    """Per-sample SQNR in dB against the FP32 output; the card's tolerance is the lowest allowed mean."""

    name = "sqnr"
    higher_is_better = True
    compared_with = "fp32"
    floor = True

    def score(self, output: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """SQNR of each sample of ``output`` against the FP32 output ``labels``, in dB, at most
        :data:`MAX_SQNR_DB` (no noise); a sample whose reference is all zero scores the maximum when the
        output is all zero too, else 0.
        """
        out, ref = _pair(self.name, output, labels)
        signal = np.sum(ref**2, axis=1)
        noise = np.sum((ref - out) ** 2, axis=1)
        scores = np.full(len(ref), MAX_SQNR_DB)
        noisy = noise > 0.0
        measurable = noisy & (signal > 0.0)
        scores[noisy & ~measurable] = 0.0  # a silent reference and a non-silent output: no signal at all
        scores[measurable] = 10.0 * np.log10(signal[measurable] / noise[measurable])
        return np.minimum(scores, MAX_SQNR_DB)


class Cosine:
    """Per-sample cosine similarity against the FP32 output; the tolerance is the allowed drop from 1.0."""

    name = "cosine"
    higher_is_better = True
    compared_with = "fp32"
    floor = False

    def score(self, output: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Cosine similarity of each flattened sample of ``output`` with the FP32 output ``labels``:
        1.0 when both are all zero, 0.0 when exactly one is.
        """
        out, ref = _pair(self.name, output, labels)
        dot = np.sum(out * ref, axis=1)
        norms = np.sqrt(np.sum(out**2, axis=1)) * np.sqrt(np.sum(ref**2, axis=1))
        scores = np.zeros(len(ref))
        nonzero = norms > 0.0
        scores[nonzero] = np.clip(dot[nonzero] / norms[nonzero], -1.0, 1.0)
        scores[np.all(out == ref, axis=1)] = 1.0  # identical (all-zero ones included): exactly the perfect value
        return scores


class Agreement:
    """Top-k agreement with FP32 for classifiers: 1.0 where FP32's top-1 class is among the output's top k."""

    name = "agreement"
    higher_is_better = True
    compared_with = "fp32"
    floor = False

    def __init__(self, k: int = 1) -> None:
        self.k = k

    def configure(self, params: dict[str, Any]) -> Agreement:
        """A copy with ``k`` from a card's ``metric.params`` (``{"k": int >= 1}``; default 1)."""
        unknown = sorted(set(params) - {"k"})
        if unknown:
            raise CellError(
                "bad_input", f"metric 'agreement': unknown metric.params {unknown}; allowed: ['k'] (top-k, default 1)"
            )
        configured = copy.copy(self)
        configured.k = positive_k(self.name, params, "top-k classes")
        return configured

    def score(self, output: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """1.0 per sample where the FP32 output's ``labels`` top-1 class is among ``output``'s top-k classes
        (the class axis is the last; singleton axes between the sample and the class axis are allowed).
        """
        _pair(self.name, output, labels)
        output, reference = np.asarray(output), np.asarray(labels)
        if output.ndim < 2 or output.shape[-1] < 1:
            raise CellError(
                "bad_input",
                f"metric 'agreement': output of shape {list(output.shape)} has no class axis; expected N x classes "
                "scores (point metric.output at the class scores)",
            )
        classes = output.shape[-1]
        scores = output.reshape(len(output), -1, classes)
        if scores.shape[1] != 1:
            raise CellError(
                "bad_input",
                f"metric 'agreement': output of shape {list(output.shape)} holds {scores.shape[1]} score vectors "
                "per sample, expected one; point metric.output at the class scores",
            )
        scores = scores[:, 0, :]
        truth = np.argmax(reference.reshape(len(reference), classes), axis=1)
        k = min(self.k, classes)
        # a class is in the top k when fewer than k classes score strictly higher (ties count in its favour)
        above = np.sum(scores > scores[np.arange(len(scores)), truth][:, None], axis=1)
        return (above < k).astype(np.float64)


@zoocompat.hookimpl
def zoocompat_metrics() -> list:
    """The fidelity metrics of this module."""
    return [Sqnr(), Cosine(), Agreement()]
