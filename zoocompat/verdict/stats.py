"""Numeric helpers for verdicts (numpy only)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

#: The chance, over all of a cell's looks, that its interval misses the true value (95% intervals).
ALPHA = 0.05


def z_value(alpha: float = ALPHA) -> float:
    """The two-sided normal quantile of a ``1 - alpha`` interval (1.96 for 0.05)."""
    return NormalDist().inv_cdf(1 - alpha / 2)


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


def sqnr_spread_db(reference: np.ndarray, test: np.ndarray) -> tuple[float | None, int]:
    """The spread (sample standard deviation, dB) of the per-sample SQNR of ``test`` against ``reference``
    along the first (sample) axis, and how many samples it rests on.

    Samples whose outputs are identical (infinite SQNR) or whose reference is all zero are left out; the
    spread is ``None`` with fewer than two samples left.
    """
    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(test, dtype=np.float64)
    if ref.ndim == 0 or ref.shape != out.shape:
        return None, 0
    ref, out = ref.reshape(len(ref), -1), out.reshape(len(out), -1)
    signal = np.sum(ref**2, axis=1)
    noise = np.sum((ref - out) ** 2, axis=1)
    kept = (signal > 0) & (noise > 0)
    values = 10.0 * np.log10(signal[kept] / noise[kept])
    if len(values) < 2:
        return None, int(len(values))
    return float(np.std(values, ddof=1)), int(len(values))


def wilson_interval(successes: float, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """``1 - alpha`` Wilson score interval of a proportion ``successes / n`` (``(0, 1)`` when ``n`` is 0)."""
    if n <= 0:
        return 0.0, 1.0
    z = z_value(alpha)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


#: Resamples of the paired bootstrap; fixed with its seed so a verdict never changes between runs.
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
#: Resamples beyond each tail of a percentile interval: a narrower ``alpha`` gets more resamples.
_TAIL_RESAMPLES = 25


def bootstrap_resamples(alpha: float = ALPHA) -> int:
    """Resamples for a ``1 - alpha`` percentile interval: 2000, or enough to leave 25 in each tail."""
    return max(BOOTSTRAP_RESAMPLES, math.ceil(2 * _TAIL_RESAMPLES / alpha))


@dataclass(frozen=True)
class PairedDrop:
    """The drop from a reference to a candidate, measured sample by sample on the same samples.

    ``drop`` is ``mean(reference - candidate)`` (for a higher-is-better metric;
    the other way round otherwise), ``interval`` its ``1 - alpha`` interval
    (95% unless a sequential look spends less) and ``method`` how that
    interval was computed.
    """

    drop: float
    interval: tuple[float, float]
    method: str
    samples: int
    #: 0/1 scores: the pairs the candidate got wrong and right against the reference, and the level
    discordant: tuple[int, int] | None = None
    alpha: float = ALPHA

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
        if self.discordant is None:
            return max(self.samples + 1, math.ceil(self.samples * (half / gap) ** 2))
        # 0/1 scores: grow the discordant counts in proportion and find where Bonett-Price's interval clears
        worse, better = (count / self.samples for count in self.discordant)
        low, high = self.samples + 1, max(2 * self.samples, 2)
        while _bonett_price(worse * high, better * high, high, self.alpha).verdict(tolerance) == "inconclusive":
            low, high = high, high * 2
            if high > 1 << 40:
                return None
        while low < high:
            middle = (low + high) // 2
            if _bonett_price(worse * middle, better * middle, middle, self.alpha).verdict(tolerance) == "inconclusive":
                low = middle + 1
            else:
                high = middle
        return high


def paired_drop(
    reference: np.ndarray, candidate: np.ndarray, higher_is_better: bool = True, alpha: float = ALPHA
) -> PairedDrop:
    """Paired drop of per-sample scores ``candidate`` against ``reference`` with a ``1 - alpha`` interval.

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
        worse = int(np.count_nonzero(diff > 0))  # right in the reference, wrong in the candidate
        better = int(np.count_nonzero(diff < 0))
        return _bonett_price(worse, better, n, alpha, drop)
    resamples = bootstrap_resamples(alpha)
    return PairedDrop(drop, _bootstrap_mean(diff, alpha), f"paired bootstrap ({resamples} resamples)", n, None, alpha)


def _bonett_price(worse: float, better: float, n: int, alpha: float, drop: float | None = None) -> PairedDrop:
    """Bonett-Price adjusted Wald interval of a paired difference of proportions from its discordant counts."""
    p_worse, p_better = (worse + 1) / (n + 2), (better + 1) / (n + 2)
    centre = p_worse - p_better
    half = z_value(alpha) * math.sqrt(max(p_worse + p_better - centre**2, 0.0) / (n + 2))
    low, high = max(-1.0, centre - half), min(1.0, centre + half)
    measured = (worse - better) / n if drop is None else drop
    counts = (round(worse), round(better))
    return PairedDrop(measured, (low, high), "bonett-price paired proportions", n, counts, alpha)


def _is_binary(scores: np.ndarray) -> bool:
    return bool(np.all((scores == 0) | (scores == 1)))


def mean_interval(scores: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """``1 - alpha`` interval of the mean of per-sample ``scores``: Wilson for 0/1 scores, else a seeded
    bootstrap.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0:
        return 0.0, 1.0
    if _is_binary(values):
        return wilson_interval(float(values.sum()), values.size, alpha)
    return _bootstrap_mean(values, alpha)


def _bootstrap_mean(values: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """Seeded percentile-bootstrap ``1 - alpha`` interval of ``mean(values)``."""
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    resamples = bootstrap_resamples(alpha)
    means = np.empty(resamples)
    for start in range(0, resamples, 250):  # bounded memory on large evaluation sets
        count = min(250, resamples - start)
        means[start : start + count] = values[rng.integers(0, values.size, size=(count, values.size))].mean(axis=1)
    low, high = np.percentile(means, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def cosine_similarity(reference: np.ndarray, test: np.ndarray) -> float | None:
    """Cosine similarity of ``test`` to ``reference`` over all elements (``None`` when either is all zero)."""
    ref = np.asarray(reference, dtype=np.float64).ravel()
    out = np.asarray(test, dtype=np.float64).ravel()
    norms = float(np.linalg.norm(ref) * np.linalg.norm(out))
    return float(ref @ out) / norms if norms else None
