"""The conformance matrix: one test per cell (model x backend x precision x quant).

Run ``pytest -n auto conformance/``; select with ``--zoo-models``, ``--backends``,
``--precisions``, ``--quant`` or markers (``-m "htp and w8a8"``, ``-m smoke``).
Each cell's record lands in ``reports/latest/cells/`` as it finishes, and the
session writes ``reports/latest/results.json`` and ``support.md``.
"""

from zoocompat.pytest_plugin.plugin import run_cell_test


def test_cell(zoo_cell, zoo_runner, zoo_known_failures):
    """Convert, quantize, run and judge one cell (a known failure is a strict xfail)."""
    run_cell_test(zoo_cell, zoo_runner, zoo_known_failures)
