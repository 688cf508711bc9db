"""Sequential evaluation: a cell looks at its drop at growing sample sizes and stops once it is decided.

A fixed evaluation size either wastes samples (a collapse is obvious after a
hundred) or leaves the verdict open (a drop near the tolerance needs a
thousand). A cell therefore evaluates in *looks*: the card's
``dataset.evaluation`` is the first, each later one grows the sample
geometrically up to the most the cell may use (``dataset.max_evaluation``,
the pool, the command line), and the cell stops at the first look whose
interval lies wholly on one side of the tolerance.

Looking again and again at a growing sample inflates the error rate if each
look uses a 95% interval. The error budget ``ALPHA`` (5%) is therefore
*spent* across the looks planned before any sample is seen: look ``k`` of
``K`` is judged with a ``1 - ALPHA / K`` interval of the same paired method as
a single look (Bonett-Price for 0/1 scores, the seeded paired bootstrap
otherwise). By the union bound, the chance that *any* look's interval misses
the true drop is at most ``ALPHA``, whatever the correlation between looks,
so a wrong pass (or a wrong fail) stays within its nominal rate however many
looks a cell takes. It is the Bonferroni form of group-sequential alpha
spending: a little conservative next to Pocock's exact boundaries, and valid
without assuming anything about the joint distribution of the looks.

The schedule is fixed by the first and the most samples alone (never by the
scores), which is what the union bound needs. A cell with no room to grow
(``most <= first``) has one look at the full 5%: exactly the single-look
verdict of a fixed evaluation size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from zoocompat.verdict.stats import ALPHA, PairedDrop, paired_drop

__all__ = ["ALPHA", "MAX_LOOKS", "Look", "SequentialTest", "schedule"]

#: Most looks a cell takes; more looks would spend the error budget thinner on each.
MAX_LOOKS = 4
#: Why a cell stopped looking.
STOPS = ("decided", "pool", "max_evaluation", "budget")


def schedule(first: int, most: int, max_looks: int = MAX_LOOKS) -> tuple[int, ...]:
    """The sample sizes a cell looks at: ``first``, then growing geometrically (at least doubling while
    ``max_looks`` allows) up to ``most``; ``(first,)`` when there is no room to grow.
    """
    if first <= 0:
        raise ValueError(f"the first look needs at least one sample, got {first}")
    if most <= first:
        return (first,)
    looks = min(max_looks, 1 + math.ceil(math.log2(most / first) - 1e-9))
    if looks < 2:
        return (first, most)
    ratio = (most / first) ** (1 / (looks - 1))
    sizes = [first, *(round(first * ratio**k) for k in range(1, looks - 1)), most]
    return tuple(sorted(set(sizes)))


@dataclass(frozen=True)
class Look:
    """One look: the paired drop over the first ``samples`` samples at the look's ``1 - alpha`` level."""

    samples: int
    drop: float
    interval: tuple[float, float]
    alpha: float
    verdict: str


@dataclass
class SequentialTest:
    """The looks of one cell at the sizes of ``sizes`` (see :func:`schedule`).

    Call :meth:`look` with the reference's and the candidate's per-sample
    scores over the first ``next_size`` samples; it returns the look and
    records it. ``floor`` judges the candidate's mean against ``tolerance`` as
    the lowest allowed value (a fidelity floor such as SQNR in dB) instead of
    the paired drop against the reference.
    """

    sizes: tuple[int, ...]
    tolerance: float
    higher_is_better: bool = True
    floor: bool = False
    alpha: float = ALPHA
    looks: list[Look] = field(default_factory=list)
    paired: PairedDrop | None = None

    @property
    def look_alpha(self) -> float:
        """The error budget each look spends: ``alpha`` split evenly over the planned looks."""
        return self.alpha / len(self.sizes)

    @property
    def verdict(self) -> str:
        """``pass`` / ``fail`` once a look decided, else ``inconclusive``."""
        return self.looks[-1].verdict if self.looks else "inconclusive"

    @property
    def decided(self) -> bool:
        """Whether the last look decided the cell."""
        return self.verdict != "inconclusive"

    @property
    def next_size(self) -> int | None:
        """How many samples the next look needs; ``None`` once decided or when every planned look is taken."""
        if self.decided or len(self.looks) >= len(self.sizes):
            return None
        return self.sizes[len(self.looks)]

    def look(self, reference: np.ndarray | None, candidate: np.ndarray, identical: bool = False) -> Look:
        """Judge the drop over the samples seen so far.

        ``reference`` is unused for a ``floor``; ``identical`` says the candidate's outputs are the
        reference's own (no drop to bound: the cell passes at this look).
        """
        expected = self.next_size
        if expected is None:
            raise ValueError("no look left: the cell is decided or every planned look is taken")
        candidate = np.asarray(candidate, dtype=np.float64).ravel()
        if candidate.size != expected:
            raise ValueError(f"look {len(self.looks) + 1} is planned at {expected} samples, got {candidate.size}")
        alpha = self.look_alpha
        if self.floor:
            self.paired = paired_drop(np.full(candidate.size, self.tolerance), candidate, True, alpha)
            bound = 0.0
        elif identical:
            self.paired = PairedDrop(0.0, (0.0, 0.0), "identical outputs", candidate.size)
            bound = self.tolerance
        else:
            self.paired = paired_drop(reference, candidate, self.higher_is_better, alpha)
            bound = self.tolerance
        look = Look(candidate.size, self.paired.drop, self.paired.interval, alpha, self.paired.verdict(bound))
        self.looks.append(look)
        return look

    def samples_needed(self) -> int | None:
        """About how many samples would resolve the cell from its last look (``None`` when decided, or when
        the drop sits exactly on the limit).
        """
        if self.decided or self.paired is None:
            return None
        return self.paired.samples_needed(0.0 if self.floor else self.tolerance)
