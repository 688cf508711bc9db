"""Errors that fail one cell with a category, never the session."""

from __future__ import annotations

from pathlib import Path

CATEGORIES = (
    "convert_error",
    "quantize_error",
    "unsupported_op",
    "accuracy",
    "fidelity",
    "crash",
    "timeout",
    "bad_input",
    "resource",
)


class ZoocompatError(Exception):
    """Base of every error zoocompat raises on purpose."""


class CellError(ZoocompatError):
    """A cell cannot go on: carries the results category and a message that
    says what was wrong, where, and what to do.
    """

    def __init__(self, category: str, message: str) -> None:
        if category not in CATEGORIES:
            raise ValueError(f"unknown failure category {category!r}; expected one of {CATEGORIES}")
        super().__init__(message)
        self.category = category
        self.message = message


class CardError(CellError):
    """A model card is invalid: names the file and the field."""

    def __init__(self, message: str, path: Path | str | None = None) -> None:
        super().__init__("bad_input", message)
        #: the card file, when known (results keep a card that does not load under it)
        self.path = str(path) if path is not None else None


class PluginError(ZoocompatError):
    """A plugin is missing, broken or registered twice."""
