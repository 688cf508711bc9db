"""What the cache already knows about a card, read without building anything."""

from __future__ import annotations

import json

from zoocompat.api.cache import ArtifactCache, key_of
from zoocompat.api.environment import tool_versions
from zoocompat.api.errors import CellError
from zoocompat.model.cards import Card, LocalFileSource
from zoocompat.model.datasources import source_digest
from zoocompat.model.sources import sha256_path


def convert_key(card: Card) -> str:
    """Cache key of a card's convert stage: the card's content, the tool versions, for a local model file
    or folder its own bytes (a card may leave it unpinned), and for the card's own data its files' bytes
    (the stage keeps the FP32 outputs on the evaluation samples, which every later stage compares with).
    """
    content = None
    if isinstance(card.source, LocalFileSource):
        path = card.folder / card.source.path
        content = sha256_path(path) if path.exists() else None  # a file, or a SavedModel folder
    data = None
    if card.dataset.source is not None:
        try:
            data = source_digest(card)
        except CellError:  # unreadable data fails the data stage itself, with its own message
            data = None
    return key_of("convert", card.digest(), tool_versions(), content, data)


def measured_fp32(card: Card, cache: ArtifactCache | None = None) -> float | None:
    """The FP32 metric measured through ONNX on the CPU, if the model was converted already."""
    report = (cache or ArtifactCache()).root / "convert" / convert_key(card) / "convert.json"
    try:
        return float(json.loads(report.read_text())["onnx_metric"])
    except (OSError, ValueError, KeyError):
        return None
