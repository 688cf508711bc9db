"""The conformance matrix: one test per cell (model x frontend x backend x precision x quant [x SDK]).

Shipped with the package, so an installed zoocompat runs the matrix without
this repository: ``pytest -p zoocompat --zoo DIR`` collects this module when no
test path is given (:mod:`zoocompat.pytest_plugin.collect`). The repository's
``conformance/test_matrix.py`` re-exports the same test. Select cells with
``--zoo-models``, ``--backends``, ``--precisions``, ``--quant`` or markers
(``-m "htp and w8a8"``, ``-m smoke``); each cell's record lands in the
``--zoo-report`` folder as it finishes.
"""

from __future__ import annotations

from pathlib import Path

from zoocompat.api.errors import CardError
from zoocompat.gate.known_failures import KnownFailures
from zoocompat.pytest_plugin.plugin import run_cell_test
from zoocompat.run.matrix import Cell

__all__ = ["test_cell"]


def test_cell(zoo_cell: Cell | CardError, zoo_runner, zoo_known_failures: tuple[Path | None, KnownFailures]) -> None:
    """Convert, quantize, run and judge one cell (a known failure is a strict xfail)."""
    run_cell_test(zoo_cell, zoo_runner, zoo_known_failures)
