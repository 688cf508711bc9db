"""The matrix: which cells exist for a zoo and a set of plugins.

A cell is model x backend x precision x quantization mode (x SDK). The values
of each axis are what plugins register (:mod:`zoocompat.api.registry`), in the
order they declare. Only pairs a backend declares are generated; float
precisions (``Precision.quantized`` false) run unquantized (``none``), quantized
ones with a quantization mode their model's quantizer has.
The SDK axis applies to the backends that run inside an SDK release: with
``--sdk qnn-2.47,qnn-2.51`` each of their cells exists once per release, side
by side, with the release as the id's last part.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from zoocompat.api.errors import PluginError
from zoocompat.api.protocols import optional
from zoocompat.api.registry import Registry
from zoocompat.api.registry import registry as _registry
from zoocompat.model.cards import Card
from zoocompat.report.results import CellRecord

#: The quantization mode of every cell at a float precision: no quantizer, the FP32 ONNX as it is.
UNQUANTIZED = "none"
#: The quantization mode a card's ``qat_quantizer`` serves (its ``quantizer`` serves the others).
QAT = "qat"


@dataclass(frozen=True)
class Cell:
    """One point of the matrix."""

    model: str
    frontend: str
    backend: str
    precision: str
    quant: str
    sdk: str | None = None

    @property
    def id(self) -> str:
        """``<model>-<frontend>-<backend>-<precision>-<quant>[-<sdk>]``."""
        parts = [self.model, self.frontend, self.backend, self.precision, self.quant]
        if self.sdk:
            parts.append(self.sdk)
        return "-".join(parts)

    @property
    def quantized(self) -> bool:
        """Whether the cell runs a QDQ model (every mode but ``none`` quantizes; see :func:`build_cells`)."""
        return self.quant != UNQUANTIZED

    def record(self, status: str, **fields: Any) -> CellRecord:
        """A fresh results record for this cell."""
        return CellRecord(
            id=self.id,
            model=self.model,
            frontend=self.frontend,
            backend=self.backend,
            precision=self.precision,
            quant=self.quant,
            sdk=self.sdk,
            status=status,
            **fields,
        )

    def axis_values(self) -> list[str]:
        """Marker names for this cell: one per axis value."""
        values = [self.model, self.frontend, self.backend, self.precision, self.quant]
        return values + ([self.sdk] if self.sdk else [])

    def is_smoke(self, card: Card) -> bool:
        """Whether the card puts this backend-precision pair in the smoke slice."""
        return f"{self.backend}-{self.precision}" in card.smoke


@dataclass
class Selection:
    """User filters (pytest options); ``None`` means no filter on that axis."""

    models: set[str] | None = None
    frontends: set[str] | None = None
    backends: set[str] | None = None
    precisions: set[str] | None = None
    quant: set[str] | None = None
    sdk: str | None = None  # one SDK id or several, comma-separated

    def sdk_ids(self) -> list[str | None]:
        """The requested SDK ids in order, or ``[None]`` (the installed SDK) when none is given."""
        ids = [s.strip() for s in (self.sdk or "").split(",") if s.strip()]
        return list(dict.fromkeys(ids)) or [None]


def _keep(value: str, allowed: set[str] | None) -> bool:
    return allowed is None or value in allowed


def _quantized(reg: Registry, backend: str, precision: str) -> bool:
    """Whether ``precision`` (declared by ``backend``) is a quantized one, or a clear error when unregistered."""
    if precision not in reg.axis("precision"):
        raise PluginError(
            f"backend {backend!r} declares precision {precision!r}, which no plugin registers "
            f"(registered: {', '.join(reg.axis('precision'))}); register it with the zoocompat_precisions hook"
        )
    return reg.precision(precision).quantized


def build_cells(
    cards: Iterable[Card],
    backends: dict[str, tuple[str, ...]],
    quantizer_modes: dict[str, tuple[str, ...]],
    selection: Selection,
    sdk_backends: Iterable[str] | None = None,
    registry: Registry | None = None,
) -> list[Cell]:
    """All cells for ``cards`` on ``backends`` (name -> precisions) after ``selection``.

    ``quantizer_modes`` maps a quantizer name to the modes it offers; a card's
    quantized cells use its own quantizer's modes, plus ``qat`` when its
    ``qat_quantizer`` offers it. ``sdk_backends`` names the
    backends whose cells run inside an SDK release (one cell per requested
    SDK); the others get no SDK. ``None`` puts the SDK on every backend.
    ``registry`` (default: the process-wide one) orders the backends and
    precisions, says which precisions are quantized, and which precisions and
    modes run when ``selection`` names none (each one's ``default``).
    """
    reg = registry or _registry()
    sdk_ids = selection.sdk_ids()
    bound = set(backends) if sdk_backends is None else set(sdk_backends)
    precisions_wanted = selection.precisions or set(reg.defaults("precision"))
    modes_wanted = selection.quant or set(reg.defaults("quant"))
    cells: list[Cell] = []
    for card in sorted(cards, key=lambda c: c.name):
        if not (_keep(card.name, selection.models) and _keep(card.frontend, selection.frontends)):
            continue
        for backend in sorted(backends, key=reg.sort_key("backend")):
            if not _keep(backend, selection.backends):
                continue
            for precision in sorted(backends[backend], key=reg.sort_key("precision")):
                quantized = _quantized(reg, backend, precision)  # an unregistered one is an error, selected or not
                if precision not in precisions_wanted:
                    continue
                if not quantized:
                    modes = [UNQUANTIZED]
                else:
                    modes = [m for m in quantizer_modes.get(card.quantizer, ()) if m not in (UNQUANTIZED, QAT)]
                    if card.qat_quantizer and QAT in quantizer_modes.get(card.qat_quantizer, ()):
                        modes.append(QAT)
                for quant in modes:
                    if quant not in modes_wanted:
                        continue
                    for sdk in sdk_ids if backend in bound else [None]:
                        cells.append(Cell(card.name, card.frontend, backend, precision, quant, sdk))
    return cells


def matrix_cells(cards: Iterable[Card], selection: Selection, registry: Registry | None = None) -> list[Cell]:
    """The matrix ``pytest conformance/`` runs for ``cards`` under ``selection``.

    Every registered backend with the precisions it declares, every quantizer
    with its modes, and the SDK axis on the backends that declare one
    (``sdk_axis``). With an empty :class:`Selection` this is the default matrix,
    the one ``./run.sh matrix`` runs and ``docs/results-latest.json`` publishes.
    """
    reg = registry or _registry()
    backends = {name: reg.get("backend", name).precisions for name in reg.names("backend")}
    modes = {name: reg.get("quantizer", name).modes for name in reg.names("quantizer")}
    return build_cells(cards, backends, modes, selection, sdk_backends(reg), registry=reg)


def sdk_backends(registry: Registry | None = None) -> list[str]:
    """The registered backends that run inside an SDK release (``sdk_axis``), in registry order."""
    reg = registry or _registry()
    return [name for name in reg.names("backend") if optional(reg.get("backend", name), "sdk_axis")]
