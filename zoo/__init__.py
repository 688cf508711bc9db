"""The default zoo (import name ``zoocompat_zoo``): model cards, small model factories, training recipes.

It is a plugin like any other: the ``zoocompat`` entry point ``zoo_default``
names this module, whose hooks tell the core where the cards are and which of
their failures are known and accepted.
"""

from __future__ import annotations

from pathlib import Path

import zoocompat

CARDS = Path(__file__).parent / "cards"
KNOWN_FAILURES = Path(__file__).parent / "known_failures.yaml"


@zoocompat.hookimpl
def zoocompat_zoo_dirs() -> list[Path]:
    """The folder of the default zoo's cards."""
    return [CARDS]


@zoocompat.hookimpl
def zoocompat_known_failures() -> list[Path]:
    """The default zoo's accepted failures (strict xfails of the conformance matrix)."""
    return [KNOWN_FAILURES]
