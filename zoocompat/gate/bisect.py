"""``zoocompat gate --bisect``: rerun regressed cells on the installed SDK releases in between.

The logic (which releases, binary search, what counts as "changed") is
:func:`zoocompat.gate.compare.bisect_regressions`; this module supplies the real cell
runner: the matrix pipeline (:class:`zoocompat.run.pipeline.CellRunner`, the same
stages and artifact cache as ``pytest conformance/ --sdk ID``) writing into a
scratch report folder, and the installed releases from :mod:`zoocompat.sdk.releases`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from zoocompat.gate.compare import GateReport, bisect_regressions
from zoocompat.report.results import CellRecord, load_results

__all__ = ["bisect_report", "pipeline_cell_runner"]


def pipeline_cell_runner(report_root: Path, progress: Callable[[str], None] = lambda _: None):
    """A ``run_cell(record, sdk)`` that runs ``record``'s cell on release ``sdk`` through the pipeline."""
    from zoocompat.api.cache import ArtifactCache
    from zoocompat.api.registry import registry
    from zoocompat.model.cards import discover
    from zoocompat.report.results import ReportDir
    from zoocompat.run.matrix import Cell
    from zoocompat.run.pipeline import CellRunner

    reg = registry()
    cards, _errors = discover(list(reg.zoo_dirs))
    runner = CellRunner(reg, cards, ArtifactCache(), ReportDir(report_root))

    def run_cell(record: CellRecord, sdk: str) -> CellRecord:
        cell = Cell(record.model, record.frontend, record.backend, record.precision, record.quant, sdk)
        progress(f"bisect: running {cell.id} ...")
        done = runner.run_cell(cell)
        progress(f"bisect: {cell.id}: {done.status}{f' ({done.category})' if done.category else ''}")
        return done

    return run_cell


def bisect_report(
    report: GateReport, baseline: Path, candidate: Path, progress: Callable[[str], None] = lambda _: None
) -> GateReport:
    """Fill ``report.bisect`` for its regressions, rerunning cells on installed releases between the two runs."""
    from zoocompat.sdk.releases import RELEASES, listing

    installed = [entry["id"] for entry in listing() if entry["installed"]]
    known = list(RELEASES)
    if not report.regressions:
        report.bisect = []
        return report
    with tempfile.TemporaryDirectory(prefix="zoocompat-bisect-") as scratch:
        report.bisect = bisect_regressions(
            report,
            load_results(baseline),
            load_results(candidate),
            installed,
            pipeline_cell_runner(Path(scratch), progress),
            known,
        )
    return report
