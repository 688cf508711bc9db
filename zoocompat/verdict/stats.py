"""Numeric helpers for verdicts (numpy only)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float | None:
    """Signal-to-quantization-noise ratio of ``test`` against ``reference`` in dB.

    ``None`` when the two are identical (infinite SQNR) or the reference is all zero.
    """
    ref = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((ref - np.asarray(test, dtype=np.float64)) ** 2))
    signal = float(np.sum(ref**2))
    if noise == 0.0 or signal == 0.0:
        return None
    return 10.0 * math.log10(signal / noise)


def wilson_interval(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``successes / n`` (``(0, 1)`` when ``n`` is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


#: Resamples of the paired bootstrap; fixed with its seed so a verdict never changes between runs.
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class PairedDrop:
    """The drop from a reference to a candidate, measured sample by sample on the same samples.

    ``drop`` is ``mean(reference - candidate)`` (for a higher-is-better metric;
    the other way round otherwise), ``interval`` its 95% interval and
    ``method`` how that interval was computed.
    """

    drop: float
    interval: tuple[float, float]
    method: str
    samples: int

    def verdict(self, tolerance: float) -> str:
        """``fail`` when the whole interval lies above ``tolerance``, ``pass`` when it lies at
        or below it, ``inconclusive`` when it straddles it.
        """
        low, high = self.interval
        if low > tolerance:
            return "fail"
        if high <= tolerance:
            return "pass"
        return "inconclusive"

    def samples_needed(self, tolerance: float) -> int | None:
        """About how many samples would shrink the interval clear of ``tolerance``.

        The half-width shrinks as ``1 / sqrt(n)``; ``None`` when the drop equals
        the tolerance, which no sample count resolves.
        """
        gap = abs(self.drop - tolerance)
        half = (self.interval[1] - self.interval[0]) / 2
        if gap == 0.0:
            return None
        return max(self.samples + 1, math.ceil(self.samples * (half / gap) ** 2))


def paired_drop(reference: np.ndarray, candidate: np.ndarray, higher_is_better: bool = True) -> PairedDrop:
    """Paired drop of per-sample scores ``candidate`` against ``reference`` with a 95% interval.

    0/1 scores (accuracy-like metrics) use the Bonett-Price adjusted Wald interval for a
    difference of paired proportions, which depends only on the discordant pairs and stays
    honest when there are few or none. Other scores use a seeded paired bootstrap
    (percentile interval of the mean difference).
    """
    ref = np.asarray(reference, dtype=np.float64).ravel()
    cand = np.asarray(candidate, dtype=np.float64).ravel()
    if ref.shape != cand.shape or ref.size == 0:
        raise ValueError(f"paired scores need the same non-zero number of samples, got {ref.size} and {cand.size}")
    diff = ref - cand if higher_is_better else cand - ref
    n = diff.size
    drop = float(diff.mean())
    if _is_binary(ref) and _is_binary(cand):
        worse = float(np.count_nonzero(diff > 0))  # right in the reference, wrong in the candidate
        better = float(np.count_nonzero(diff < 0))
        p_worse, p_better = (worse + 1) / (n + 2), (better + 1) / (n + 2)
        centre = p_worse - p_better
        half = 1.959964 * math.sqrt(max(p_worse + p_better - centre**2, 0.0) / (n + 2))
        low, high = max(-1.0, centre - half), min(1.0, centre + half)
        return PairedDrop(drop, (low, high), "bonett-price paired proportions", n)
    return PairedDrop(drop, _bootstrap_mean(diff), f"paired bootstrap ({BOOTSTRAP_RESAMPLES} resamples)", n)


def _is_binary(scores: np.ndarray) -> bool:
    return bool(np.all((scores == 0) | (scores == 1)))


def mean_interval(scores: np.ndarray) -> tuple[float, float]:
    """95% interval of the mean of per-sample ``scores``: Wilson for 0/1 scores, else a seeded bootstrap."""
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0:
        return 0.0, 1.0
    if _is_binary(values):
        return wilson_interval(float(values.sum()), values.size)
    return _bootstrap_mean(values)


def _bootstrap_mean(values: np.ndarray) -> tuple[float, float]:
    """Seeded percentile-bootstrap 95% interval of ``mean(values)``."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    means = np.empty(BOOTSTRAP_RESAMPLES)
    for start in range(0, BOOTSTRAP_RESAMPLES, 250):  # bounded memory on large evaluation sets
        count = min(250, BOOTSTRAP_RESAMPLES - start)
        means[start : start + count] = values[rng.integers(0, values.size, size=(count, values.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def cosine_similarity(reference: np.ndarray, test: np.ndarray) -> float | None:
    """Cosine similarity of ``test`` to ``reference`` over all elements (``None`` when either is all zero)."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    out = np.asarray(test, dtype=np.float64).ravel()
    norms = float(np.linalg.norm(ref) * np.linalg.norm(out))
    return float(ref @ out) / norms if norms else None
