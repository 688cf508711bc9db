"""``zoocompat zoo check``: a card against the plugins, the model file and the data, before anything runs.

Loading a card already checks its fields and the names it gives on the
matrix's axes (:func:`zoocompat.model.cards.check_names`). This goes on to the
files: the model file against the card's inputs and outputs (the frontend's
``check_model``: names, count, rank, dtype), and the card's own data (present,
inside the card's folder, readable; the splits built as a cell builds them)
and whether the metric has what it scores against. Every problem comes back at once, as
``"field: problem"`` lines; nothing is converted, quantized or run.
"""

from __future__ import annotations

from zoocompat.api.cache import ArtifactCache
from zoocompat.api.errors import CellError, PluginError
from zoocompat.api.protocols import optional
from zoocompat.api.registry import Registry
from zoocompat.model.budgets import budget_problems, limits_for
from zoocompat.model.cards import Card, RecipeSource
from zoocompat.model.data import build_card_data
from zoocompat.model.datasources import source_problems
from zoocompat.model.sources import resolve_source


def _plugin(registry: Registry, kind: str, name: str) -> object | None:
    try:
        return registry.get(kind, name)
    except PluginError:
        return None


def model_mismatch(card: Card, registry: Registry, cache: ArtifactCache) -> list[str]:
    """How the card disagrees with its model file (``[]`` when the frontend offers no ``check_model``, or the
    model is built by a training recipe: a recipe's network is the project's own and is checked when it runs).

    Raises the source's own :class:`CellError` (``bad_input``) when the file is missing, fails its sha256 or
    is not a model at all: a cell fails on that as it would converting.
    """
    frontend = _plugin(registry, "frontend", card.frontend)
    check_model = optional(frontend, "check_model") if frontend is not None else None
    if check_model is None or isinstance(card.source, RecipeSource):
        return []
    return list(check_model(card, resolve_source(card, cache)))


def model_problems(card: Card, registry: Registry, cache: ArtifactCache) -> list[str]:
    """:func:`model_mismatch`, with a source that cannot be read as one more ``source:`` line."""
    try:
        return model_mismatch(card, registry, cache)
    except CellError as error:
        return [f"source: {error.message}"]


def data_problems(card: Card, registry: Registry, cache: ArtifactCache) -> list[str]:
    """The card's own data (``dataset.source``): every file present, inside the card's folder and readable;
    then the splits built as a cell builds them (every input fed, at its shape and dtype; enough samples for
    calibration and evaluation; one label per sample), and whether the metric has what it scores against.
    """
    if card.dataset.source is None:
        return []
    problems = source_problems(card, cache)
    if problems:
        return problems
    try:
        data = build_card_data(card, None, cache)
    except CellError as error:
        return [f"dataset.source: {error.message}"]
    metric = _plugin(registry, "metric", card.metric.name)
    if metric is not None and optional(metric, "compared_with") != "fp32" and data.labels is None:
        problems.append(
            f"metric.name: {card.metric.name!r} scores against labels and dataset.source "
            f"({card.dataset.source.kind}) gives none; give labels or name a fidelity metric "
            "(sqnr, cosine, agreement)"
        )
    return problems


def card_problems(card: Card, registry: Registry, cache: ArtifactCache | None = None) -> list[str]:
    """Everything ``zoocompat zoo check`` finds wrong with a loaded card, as ``"field: problem"`` lines."""
    cache = cache or ArtifactCache()
    problems = []
    if card.quantizer not in registry.names("quantizer"):
        problems.append(
            f"quantizer: {card.quantizer!r} is not a registered quantizer "
            f"(registered: {', '.join(registry.names('quantizer'))})"
        )
    budget = budget_problems(card, limits_for(card))
    if budget:  # the data would not fit: say so instead of building it
        return problems + budget
    problems.extend(model_problems(card, registry, cache))
    problems.extend(data_problems(card, registry, cache))
    return problems
