"""Which worker runs which cell: xdist's load scheduling, with model affinity.

Cells of one model share their conversion and calibration (built once, under
the cache's lock) and the worker's loaded frameworks and datasets. xdist's
``--dist load`` hands out cells in collection order, so two workers start on
the first model's cells and one of them waits on the other's conversion lock;
``--dist loadgroup`` keeps a model on one worker but cannot split it when it is
the longest, and pytest-xdist 3.8.0 hangs the session when a worker crashes
under it (issues #1323 / #1327).

:class:`ModelAffinityScheduling` keeps xdist's :class:`LoadScheduling` (its
chunking, its crash handling: a dead worker's cell is reported as crashed and
its other cells go back to the queue) and changes only *which* pending cells a
worker is sent. In order of preference:

1. cells of a group (a model, by default) the worker was already given;
2. cells of a group no worker was given yet, one group at a time;
3. cells of a group another worker holds, from the group with most cells left
   (so the last, longest model is still shared out instead of leaving a
   worker idle).

Within each of those, the longest cells (and the model with most work) go
first, so that the run does not end on one worker grinding through a long HTP
cell that started last. How long a cell takes comes from the previous run's
timings (the report folder's ``results.json``, or ``--shard-durations``); cells
without one get a prior: evaluation samples x input size x a per-backend and
precision weight (the HTP emulator is slow, fp16 and 16-bit activations slower
still), scaled to seconds by the cells that have a timing.

A worker holds at most two cells at a time (the one it runs and the next:
``--maxschedchunk 1`` unless given), and the second cell sent with a worker's
first is the cheapest of its model, so that no long cell waits behind another
on a busy worker while the other worker is free.

The group of a test comes from its cell id (``--zoo-group-by``); a test that
is not a matrix cell is a group of its own.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping

import pytest
from xdist.scheduler import LoadScheduling
from xdist.workermanage import WorkerController

from zoocompat.api.protocols import optional
from zoocompat.api.registry import registry
from zoocompat.model.cards import Card
from zoocompat.run.matrix import Cell

#: quant modes that train or search before the cell runs: about this many extra samples through the model
TRAINING_SAMPLES = {"qat": 1024 * 3, "auto": 1024 * 3}


def backend_cost(backend: str, precision: str) -> float:
    """The backend's declared relative cost per sample element at ``precision`` (1.0 when it declares none)."""
    reg = registry()
    if backend not in reg.names("backend"):
        return 1.0
    cost = optional(reg.get("backend", backend), "cost")
    return float(cost.get(precision, cost.get("*", 1.0)))


def prior_cost(cell: Cell, card: Card) -> float:
    """A cell's relative cost before any timing of it exists (see the module docstring)."""
    elements = sum(math.prod(spec.shape) for spec in card.inputs)
    weight = backend_cost(cell.backend, cell.precision)
    training = TRAINING_SAMPLES.get(cell.quant, 0) * backend_cost(registry().reference_backend(), "fp32")
    return elements * (card.dataset.evaluation * weight + training)


def expected_seconds(
    cells: Iterable[Cell], cards: Mapping[str, Card], timings: Mapping[str, float]
) -> dict[str, float]:
    """Seconds each cell is expected to take: its previous timing, else its prior scaled to seconds by the
    median timing/prior ratio of the cells that have both (1.0 when none has: only the order matters then).
    """
    priors = {cell.id: prior_cost(cell, cards[cell.model]) for cell in cells if cell.model in cards}
    ratios = [timings[i] / p for i, p in priors.items() if p > 0 and timings.get(i, 0) > 0]
    scale = statistics.median(ratios) if ratios else 1.0
    return {i: timings[i] if timings.get(i, 0) > 0 else p * scale for i, p in priors.items()}


def cell_id_of(nodeid: str) -> str | None:
    """The parametrize id of a ``test_cell[...]`` node id (``None`` for any other test)."""
    if not nodeid.endswith("]") or "[" not in nodeid:
        return None
    return nodeid[nodeid.index("[") + 1 : -1]


class ModelAffinityScheduling(LoadScheduling):
    """:class:`LoadScheduling` that sends a worker the cells of the groups it already holds first,
    longest first (see the module docstring).
    """

    def __init__(
        self,
        config: pytest.Config,
        log,
        groups: Mapping[str, str | None],
        seconds: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(config, log)
        if self.maxschedchunk is None:
            self.maxschedchunk = 1  # a worker holds the cell it runs and the next one, no more
        self._groups_by_cell = dict(groups)
        self._seconds_by_cell = dict(seconds or {})
        self._index_group: list[str] = []
        self._index_seconds: list[float] = []
        self._held: dict[WorkerController, set[str]] = {}

    def _index(self) -> None:
        assert self.collection is not None
        for nodeid in self.collection:
            cell = cell_id_of(nodeid) or ""
            self._index_group.append(self._groups_by_cell.get(cell) or nodeid)
            self._index_seconds.append(self._seconds_by_cell.get(cell, 1.0))  # unknown: every cell alike

    def _group(self, index: int) -> str:
        if not self._index_group:
            self._index()
        return self._index_group[index]

    def _seconds(self, index: int) -> float:
        if not self._index_seconds:
            self._index()
        return self._index_seconds[index]

    def pick(self, node: WorkerController, num: int) -> list[int]:
        """Up to ``num`` pending indices for ``node``, in the order of preference of the module docstring."""
        own = self._held.get(node, set())
        others = set().union(*(held for n, held in self._held.items() if n is not node))
        left: dict[str, float] = defaultdict(float)
        for i in self.pending:
            left[self._group(i)] += self._seconds(i)
        first_seen = {group: k for k, group in enumerate(dict.fromkeys(self._group(i) for i in self.pending))}

        def rank(position: int) -> tuple:
            index = self.pending[position]
            group = self._group(index)
            kind = 0 if group in own else 1 if group not in others else 2
            return (kind, -left[group], first_seen[group], -self._seconds(index), position)

        ordered = [self.pending[k] for k in sorted(range(len(self.pending)), key=rank)]
        chosen = ordered[:num]
        if num >= 2 and not self.node2pending.get(node):  # a worker's first cells: the longest, then the cheapest
            group = self._group(ordered[0])
            same = [i for i in ordered[1:] if self._group(i) == group]
            rest = [i for i in ordered[1:] if self._group(i) != group]
            chosen = [ordered[0], *(sorted(same, key=self._seconds) + rest)[: num - 1]]
        return chosen

    def _send_tests(self, node: WorkerController, num: int) -> None:
        chosen = self.pick(node, num)
        if not chosen:
            return
        taken = set(chosen)
        self.pending[:] = [i for i in self.pending if i not in taken]
        self.node2pending[node].extend(chosen)
        self._held.setdefault(node, set()).update(self._group(i) for i in chosen)
        node.send_runtest_some(chosen)

    def remove_node(self, node: WorkerController) -> str | None:
        """Forget what the node held, then let xdist requeue its cells (and name the one it crashed in)."""
        self._held.pop(node, None)
        return super().remove_node(node)
