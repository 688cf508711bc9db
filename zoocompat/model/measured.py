"""What the cache already knows about a card, read without building anything."""

from __future__ import annotations

import json

from zoocompat.api.cache import ArtifactCache, key_of, sha256_file
from zoocompat.api.environment import tool_versions
from zoocompat.api.errors import CellError
from zoocompat.model.cards import Card, LocalFileSource, RecipeSource
from zoocompat.model.datasources import source_digest
from zoocompat.model.sources import recipe_key, sha256_path


def architecture_digest(card: Card) -> str | None:
    """sha256 of the Python file a card's ``architecture`` names (``my_net.py:MyNet``, relative to the card's
    folder); ``None`` for a ``module:Class`` architecture, none at all, or a file that is not there (the
    frontend refuses that itself).
    """
    target = (card.architecture or "").rpartition(":")[0].strip()
    if not target.lower().endswith(".py"):
        return None
    path = card.folder / target
    return sha256_file(path) if path.is_file() else None


def convert_key(card: Card) -> str:
    """Cache key of a card's convert stage: the card's content, the tool versions, for a local model file
    or folder its own bytes (a card may leave it unpinned), for the card's own data its files' bytes
    (the stage keeps the FP32 outputs on the evaluation samples, which every later stage compares with),
    and for an architecture given as a ``.py`` file beside the card that file's bytes (an edited network
    is converted again).
    """
    content = None
    if isinstance(card.source, LocalFileSource):
        path = card.folder / card.source.path
        content = sha256_path(path) if path.exists() else None  # a file, or a SavedModel folder
    if isinstance(card.source, RecipeSource):  # the trained file changes with the recipe's code
        content = recipe_key(card, card.source)
    data = None
    if card.dataset.source is not None:
        try:
            data = source_digest(card)
        except CellError:  # unreadable data fails the data stage itself, with its own message
            data = None
    parts = ["convert", card.digest(), tool_versions(), content, data]
    architecture = architecture_digest(card)
    if architecture is not None:  # only then: every other card keeps the key it had
        parts.append({"architecture_sha256": architecture})
    return key_of(*parts)


def measured_fp32(card: Card, cache: ArtifactCache | None = None) -> float | None:
    """The FP32 metric measured through ONNX on the CPU, if the model was converted already."""
    report = (cache or ArtifactCache()).root / "convert" / convert_key(card) / "convert.json"
    try:
        return float(json.loads(report.read_text())["onnx_metric"])
    except (OSError, ValueError, KeyError, TypeError):  # TypeError: a fidelity-only card has no FP32 metric
        return None
