"""Shards of the matrix: a deterministic split of the selected cells, and the join of their results.

``pytest conformance/ --shard K/N`` runs the K-th of N parts of the selected
cells, so N machines (CI runners, hosts with a device each) can share a matrix
without talking to each other; ``zoocompat merge`` joins their results files
into one whose support table is the unsharded run's.

The split is a greedy longest-first assignment (LPT): units sorted by expected
seconds (then by id, so every shard computes the same split), each given to the
shard with the least load so far (ties to the lowest shard). A unit is a model
by default: the cells of one model share its conversion and calibration, which
a shard on another machine would otherwise repeat; ``--shard-by cell`` splits
finer when there are few models. Expected seconds come from a previous run's
``results.json`` (``--shard-durations``); without one, or for cells it does not
list, every cell counts the same, so the split balances cell counts.

This module imports no ML framework and no pytest.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from zoocompat.api.errors import ZoocompatError

__all__ = [
    "ShardError",
    "ShardSpec",
    "assign",
    "cell_seconds",
    "load_durations",
    "merge_results",
    "parse_shard",
    "select",
]

T = TypeVar("T")
SHARD_BY = ("model", "cell")


class ShardError(ZoocompatError):
    """A ``--shard`` value or a durations file is not usable; the message says why."""


@dataclass(frozen=True)
class ShardSpec:
    """The ``index``-th (1-based) of ``count`` shards."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> ShardSpec:
    """``"K/N"`` -> :class:`ShardSpec`, with ``1 <= K <= N``."""
    head, sep, tail = str(text).partition("/")
    try:
        index, count = int(head), int(tail)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count:
        raise ShardError(f"--shard {text!r}: expected K/N with 1 <= K <= N, e.g. --shard 1/4")
    return ShardSpec(index, count)


def cell_seconds(cell: dict[str, Any]) -> float:
    """Expected seconds of a cell from its record's timing: the stages it ran (cached stages count
    the time they took when built, so a cell is costed as on a cold cache).
    """
    timing = cell.get("timing") or {}
    return float(sum(timing.get(stage) or 0.0 for stage in ("convert_s", "quantize_s", "compile_s", "run_s")))


def load_durations(path: Path) -> dict[str, float]:
    """Expected seconds per cell id, from a ``results.json`` (each cell's timing) or a ``{cell_id: seconds}``
    JSON object (for instance written by hand or by another tool).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ShardError(f"--shard-durations {path}: cannot read a JSON file ({error})") from None
    if isinstance(data, dict) and isinstance(data.get("cells"), list):
        return {str(c["id"]): cell_seconds(c) for c in data["cells"] if isinstance(c, dict) and "id" in c}
    if isinstance(data, dict) and all(isinstance(v, int | float) for v in data.values()):
        return {str(k): float(v) for k, v in data.items()}
    raise ShardError(
        f"--shard-durations {path}: neither a zoocompat results.json (with 'cells') nor a {{cell_id: seconds}} object"
    )


def assign(units: dict[str, float], count: int) -> dict[str, int]:
    """Greedy longest-first: unit name -> shard index (1-based), deterministic for the same input."""
    loads = [0.0] * count
    placed: dict[str, int] = {}
    for name, seconds in sorted(units.items(), key=lambda kv: (-kv[1], kv[0])):
        shard = min(range(count), key=lambda i: (loads[i], i))
        loads[shard] += seconds
        placed[name] = shard + 1
    return placed


def select(
    items: Sequence[T],
    spec: ShardSpec,
    cell_id: Callable[[T], str | None],
    model_of: Callable[[T], str | None],
    durations: dict[str, float] | None = None,
    by: str = "model",
) -> tuple[list[T], list[T]]:
    """Split ``items`` into ``(this shard's, the others')``.

    ``cell_id`` / ``model_of`` name an item's cell and model (``None`` for an
    item that is not a cell, such as a bad card's test: those go to shard 1).
    Cells without a duration cost the median of the known ones (1 s when none
    is known). With ``by="model"`` and fewer models than shards, cells are
    split one by one instead.
    """
    if by not in SHARD_BY:
        raise ShardError(f"--shard-by {by!r}: expected one of {', '.join(SHARD_BY)}")
    durations = durations or {}
    ids = [cell_id(item) for item in items]
    known = [durations[i] for i in ids if i is not None and i in durations]
    default = statistics.median(known) if known else 1.0
    unit_of: dict[str, str] = {}
    units: dict[str, float] = {}
    models = {model_of(item) for item in items if cell_id(item) is not None}
    per_model = by == "model" and len(models) >= spec.count
    for item, cid in zip(items, ids, strict=True):
        if cid is None:
            continue
        unit = f"model:{model_of(item)}" if per_model else f"cell:{cid}"
        unit_of[cid] = unit
        units[unit] = units.get(unit, 0.0) + durations.get(cid, default)
    placed = assign(units, spec.count)
    mine, others = [], []
    for item, cid in zip(items, ids, strict=True):
        shard = 1 if cid is None else placed[unit_of[cid]]
        (mine if shard == spec.index else others).append(item)
    return mine, others


def merge_results(parts: Iterable[Any], sources: Sequence[str] | None = None) -> tuple[Any, list[str]]:
    """Join :class:`zoocompat.report.results.Results` of shards (or several runs) into one; returns ``(merged,
    warnings)``.

    Cells join by id; a later file's record replaces an earlier one's, with a
    warning when they disagree on the verdict. The run header is the first
    file's, with the earliest start and the latest finish, and ``host.parts``
    lists every file's host, command and times. A warning names tool versions
    or backend descriptions that differ between files (the merged table would
    mix runtimes).
    """
    from zoocompat.report.results import Results

    parts = list(parts)
    if not parts:
        raise ShardError("nothing to merge")
    sources = list(sources or [f"part {i + 1}" for i in range(len(parts))])
    warnings: list[str] = []
    cells: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, part in zip(sources, parts, strict=True):
        for cell in part.cells:
            previous = cells.get(cell.id)
            if previous is not None and (previous.status, previous.category) != (cell.status, cell.category):
                warnings.append(
                    f"{cell.id}: {origin[cell.id]} says {previous.status}, {source} says {cell.status}; "
                    f"keeping {source}"
                )
            cells[cell.id] = cell
            origin[cell.id] = source
    first = parts[0].run
    for source, part in zip(sources[1:], parts[1:], strict=True):
        for field in ("tools", "backends"):
            if getattr(part.run, field) != getattr(first, field):
                warnings.append(f"{source}: {field} differ from {sources[0]}'s; the merged header keeps {sources[0]}'s")
    run = first.model_copy(deep=True)
    starts = [p.run.started for p in parts if p.run.started]
    ends = [p.run.finished for p in parts if p.run.finished]
    run.started = min(starts) if starts else None
    run.finished = max(ends) if ends else None
    run.host = dict(
        first.host,
        parts=[
            {
                "source": source,
                "hostname": part.run.host.get("hostname"),
                "command": part.run.command,
                "started": part.run.started,
                "finished": part.run.finished,
                "cells": len(part.cells),
            }
            for source, part in zip(sources, parts, strict=True)
        ],
    )
    merged = Results(run=run, cells=sorted(cells.values(), key=lambda c: c.id))
    return merged, warnings
