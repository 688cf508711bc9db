"""The conformance matrix: one test per cell (model x backend x precision x quant).

Run ``pytest -n auto conformance/``; select with ``--zoo-models``, ``--backends``,
``--precisions``, ``--quant`` or markers (``-m "htp and w8a8"``, ``-m smoke``).
Each cell's record lands in ``reports/latest/cells/`` as it finishes, and the
session writes ``reports/latest/results.json`` and ``support.md``.

The test itself ships with the package (:mod:`zoocompat.pytest_plugin.matrix`), so an
installed zoocompat runs the same matrix without this checkout: ``pytest -p zoocompat --zoo DIR``.
"""

from zoocompat.pytest_plugin.matrix import test_cell

__all__ = ["test_cell"]
