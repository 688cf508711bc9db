"""The default zoo: the model cards shipped in ``zoo/cards``."""

from __future__ import annotations

from pathlib import Path

import zoo
import zoocompat


@zoocompat.hookimpl
def zoocompat_zoo_dirs() -> list[Path]:
    """The folder of the default zoo's cards."""
    return [Path(zoo.__file__).parent / "cards"]
