"""The matrix: which cells exist for a zoo and a set of plugins.

A cell is model x backend x precision x quantization mode (x SDK). Only pairs a
backend declares are generated; float precisions run unquantized (``none``),
integer precisions run with a quantization mode their model's quantizer has.
The SDK axis applies to the backends that run inside an SDK release: with
``--sdk qnn-2.47,qnn-2.51`` each of their cells exists once per release, side
by side, with the release as the id's last part.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from zoocompat.model.cards import BACKENDS, PRECISIONS, Card
from zoocompat.report.results import CellRecord

FLOAT_PRECISIONS = ("fp32", "fp16")
DEFAULT_QUANT_MODES = ("none", "ptq")
#: precisions a backend runs but only on request (``--precisions w4a8``): the quantization study, not the gate
OPT_IN_PRECISIONS = ("w4a8",)


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
        """Whether the cell runs a QDQ model."""
        return self.precision not in FLOAT_PRECISIONS

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


def build_cells(
    cards: Iterable[Card],
    backends: dict[str, tuple[str, ...]],
    quantizer_modes: dict[str, tuple[str, ...]],
    selection: Selection,
    sdk_backends: Iterable[str] | None = None,
) -> list[Cell]:
    """All cells for ``cards`` on ``backends`` (name -> precisions) after ``selection``.

    ``quantizer_modes`` maps a quantizer name to the modes it offers; a card's
    integer cells use its own quantizer's modes, plus ``qat`` when its
    ``qat_quantizer`` offers it. ``sdk_backends`` names the
    backends whose cells run inside an SDK release (one cell per requested
    SDK); the others get no SDK. ``None`` puts the SDK on every backend.
    """
    sdk_ids = selection.sdk_ids()
    bound = set(backends) if sdk_backends is None else set(sdk_backends)
    modes_wanted = selection.quant or set(DEFAULT_QUANT_MODES)
    cells: list[Cell] = []
    for card in sorted(cards, key=lambda c: c.name):
        if not (_keep(card.name, selection.models) and _keep(card.frontend, selection.frontends)):
            continue
        for backend in sorted(backends, key=BACKENDS.index):
            if not _keep(backend, selection.backends):
                continue
            for precision in sorted(backends[backend], key=PRECISIONS.index):
                if not _keep(precision, selection.precisions):
                    continue
                if selection.precisions is None and precision in OPT_IN_PRECISIONS:
                    continue
                if precision in FLOAT_PRECISIONS:
                    modes = ["none"]
                else:
                    modes = [m for m in quantizer_modes.get(card.quantizer, ()) if m not in ("none", "qat")]
                    if card.qat_quantizer and "qat" in quantizer_modes.get(card.qat_quantizer, ()):
                        modes.append("qat")
                for quant in modes:
                    if quant not in modes_wanted:
                        continue
                    for sdk in sdk_ids if backend in bound else [None]:
                        cells.append(Cell(card.name, card.frontend, backend, precision, quant, sdk))
    return cells
