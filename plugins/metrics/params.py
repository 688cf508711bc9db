"""Checks several metrics apply to what they are given: one output, labels present, a ``k`` parameter."""

from __future__ import annotations

from typing import Any

import numpy as np

from zoocompat.api.errors import CellError


def one_output(metric: str, output: Any, what: str) -> None:
    """Refuse ``{name: array}`` (a card listing several outputs) for a metric that reads one; ``what`` names
    the output to point ``metric.output`` at (``"the mask"``).
    """
    if isinstance(output, dict):
        raise CellError(
            "bad_input", f"metric {metric!r} reads one output; metric.output lists {sorted(output)}, name {what}"
        )


def require_labels(metric: str, labels: Any, hint: str) -> None:
    """Refuse missing or empty labels; ``hint`` says what the card's data must give."""
    if labels is None or np.size(labels) == 0:
        raise CellError("bad_input", f"metric {metric!r}: no labels; {hint}")


def positive_k(metric: str, params: dict[str, Any], meaning: str) -> int:
    """``metric.params.k`` (default 1) as a whole number >= 1; ``meaning`` says what it counts."""
    k = params.get("k", 1)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise CellError(
            "bad_input",
            f"metric {metric!r}: metric.params.k must be a whole number >= 1 ({meaning}), got {k!r}; "
            "fix metric.params.k in the card",
        )
    return int(k)
