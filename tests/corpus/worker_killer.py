"""A user architecture that takes its worker process down, as a segfaulting custom op would.

Named by a card as ``tests.corpus.worker_killer:WorkerKiller``; building it
sends SIGKILL to the current process, so the fault tests can check that the
controller records the cell as a crash and the other cells run on.
"""

from __future__ import annotations

import os
import signal


class WorkerKiller:
    """Kills the process that builds it."""

    def __init__(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)
