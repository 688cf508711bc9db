"""What the support tables (Markdown, HTML) and the gate share: columns in axis order, which cells are the
reference backend's, and which backend's description names the run's SDK.

Results files may name backends and precisions that no plugin installed here registers (a run made
elsewhere, a third-party plugin): those sort after the registered ones, by name, and never raise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zoocompat.api.registry import Registry
from zoocompat.api.registry import registry as _registry
from zoocompat.report.results import CellRecord, Results, RunInfo

#: backend, precision, quant, sdk ("" = the installed one)
Column = tuple[str, str, str, str]

__all__ = ["Column", "cell_index", "column_sdk", "columns", "is_reference", "is_reference_run", "sdk_backend"]


def columns(results: Results, registry: Registry | None = None) -> list[Column]:
    """(backend, precision, quant, sdk) of the run's cells in the declared order of each axis (names registered
    nowhere here last); a run over several SDKs gets a column per SDK.
    """
    reg = registry or _registry()
    backend, precision, quant = reg.sort_key("backend"), reg.sort_key("precision"), reg.sort_key("quant")
    sdk_of = column_sdk(results)
    seen = {(c.backend, c.precision, c.quant, sdk_of(c)) for c in results.cells}
    return sorted(seen, key=lambda k: (backend(k[0]), precision(k[1]), quant(k[2]), k[3]))


def column_sdk(results: Results) -> Callable[[CellRecord], str]:
    """The SDK part of a cell's column in ``results``: its ``--sdk`` value, "" for the installed release.

    In a file that also holds ``--sdk`` cells of the same backend (a default run merged with an older
    release's columns), a cell run without ``--sdk`` is named by the release its backend reported, so the
    columns read ``htp w8a8 qnn-2.47`` beside ``htp w8a8 qnn-2.51``, not beside a bare ``htp w8a8``.
    """
    explicit = {c.backend for c in results.cells if c.sdk}
    return lambda c: c.sdk or ((c.release or "") if c.backend in explicit else "")


def cell_index(results: Results) -> dict[tuple[str, str, str, str, str], CellRecord]:
    """The cells of ``results`` by ``(model, *column)``, the key the tables look a cell up by."""
    sdk_of = column_sdk(results)
    return {(c.model, c.backend, c.precision, c.quant, sdk_of(c)): c for c in results.cells}


def is_reference(cell: CellRecord, registry: Registry | None = None) -> bool:
    """Whether ``cell`` ran on a backend that declares ``reference = True`` (the host runtime, not an accelerator:
    its cells have no accelerator coverage to show). A backend registered nowhere here is not the reference.
    """
    return cell.backend in (registry or _registry()).reference_backends()


def is_reference_run(column: Column, registry: Registry | None = None) -> bool:
    """Whether ``column`` holds the reference run itself: the reference backend at a float (unquantized)
    precision, whose drop against FP32 is zero by construction. Unregistered names are never the reference.
    """
    reg = registry or _registry()
    backend, precision = column[0], column[1]
    if backend not in reg.reference_backends() or precision not in reg.axis("precision"):
        return False
    return not reg.precision(precision).quantized


def sdk_backend(run: RunInfo, registry: Registry | None = None) -> tuple[str, dict[str, Any]]:
    """``(name, description)`` of the first backend of the run, in axis order, whose description names a QNN
    core version or an SDK id (the runtime the SDK under test drives); ``("", {})`` when none does.
    """
    key = (registry or _registry()).sort_key("backend")
    for name in sorted(run.backends, key=key):
        info = run.backends[name]
        if isinstance(info, dict) and (info.get("qnn_core_version") or info.get("sdk")):
            return name, info
    return "", {}
