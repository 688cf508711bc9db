"""A user architecture that asks for far more memory than a worker may take, as a runaway shape would.

Named by a card as ``tests.corpus.memory_hog:MemoryHog``; building it allocates
6 GiB, so under ``--worker-memory-gb 4`` the allocation fails at once with
``MemoryError`` (nothing is touched) and the cell must be recorded as
``error / resource`` while the run goes on.
"""

from __future__ import annotations

import numpy as np


class MemoryHog:
    """Allocates 6 GiB when built."""

    def __init__(self) -> None:
        self.weights = np.ones(6 << 30, np.uint8)
