"""The default zoo (import name ``zoocompat_zoo``): model cards, small model factories, training recipes.

It is a plugin like any other: the ``zoocompat`` entry point ``zoo_default``
names this module, whose one hook tells the core where the cards are.
"""

from __future__ import annotations

from pathlib import Path

import zoocompat

CARDS = Path(__file__).parent / "cards"


@zoocompat.hookimpl
def zoocompat_zoo_dirs() -> list[Path]:
    """The folder of the default zoo's cards."""
    return [CARDS]
