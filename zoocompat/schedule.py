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

The group of a test comes from its cell id (``--zoo-group-by``); a test that
is not a matrix cell is a group of its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import pytest
from xdist.scheduler import LoadScheduling
from xdist.workermanage import WorkerController


def cell_id_of(nodeid: str) -> str | None:
    """The parametrize id of a ``test_cell[...]`` node id (``None`` for any other test)."""
    if not nodeid.endswith("]") or "[" not in nodeid:
        return None
    return nodeid[nodeid.index("[") + 1 : -1]


class ModelAffinityScheduling(LoadScheduling):
    """:class:`LoadScheduling` that sends a worker the cells of the groups it already holds first."""

    def __init__(self, config: pytest.Config, log, groups: Mapping[str, str | None]) -> None:
        super().__init__(config, log)
        self._groups_by_cell = dict(groups)
        self._index_group: list[str] = []
        self._held: dict[WorkerController, set[str]] = {}

    def _group(self, index: int) -> str:
        if not self._index_group:
            assert self.collection is not None
            for nodeid in self.collection:
                cell = cell_id_of(nodeid)
                self._index_group.append(self._groups_by_cell.get(cell or "") or nodeid)
        return self._index_group[index]

    def pick(self, node: WorkerController, num: int) -> list[int]:
        """Up to ``num`` pending indices for ``node``, in the order of preference above."""
        own = self._held.get(node, set())
        others = set().union(*(held for n, held in self._held.items() if n is not node))
        left = Counter(self._group(i) for i in self.pending)
        rank: dict[str, tuple[int, int]] = {}
        fresh_order = 0
        for i in self.pending:  # first-seen order of the fresh groups = collection order
            group = self._group(i)
            if group in rank:
                continue
            if group in own:
                rank[group] = (0, 0)
            elif group not in others:
                rank[group] = (1, fresh_order)
                fresh_order += 1
            else:
                rank[group] = (2, -left[group])
        ordered = sorted(range(len(self.pending)), key=lambda k: (rank[self._group(self.pending[k])], k))
        return [self.pending[k] for k in ordered[:num]]

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
