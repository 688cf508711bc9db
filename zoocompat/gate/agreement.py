"""The op table and the gate, held against each other for the same two releases.

The gate finds coverage regressions in whole models (a cell whose ops newly fall
back to the CPU); the op diff finds them in probes (single ops and the patterns the
exporters emit). A model's regression that no probe regression explains is something
the probes miss, and the op diff lists it as "seen only in models", naming the cell,
so a reader of the op table before an upgrade is not told "nothing changed" while a
model of the zoo loses ops to the CPU.
"""

from __future__ import annotations

from typing import Any

from zoocompat.gate.compare import cell_key, compare
from zoocompat.report.results import Results

__all__ = ["coverage_regressions", "explain"]


def coverage_regressions(baseline: Results, candidate: Results) -> list[dict[str, Any]]:
    """The gate's coverage regressions as ``{"cell", "backend", "precision", "ops"}`` (ops newly on the CPU)."""
    report = compare(baseline, candidate)
    cells = {cell_key(c): c for c in candidate.cells}
    found = []
    for finding in report.regressions:
        if finding.kind != "coverage":
            continue
        cell = cells[finding.cell]
        before = set(finding.baseline.get("fallback_ops") or {})
        after = finding.candidate.get("fallback_ops") or {}
        ops = sorted(set(after) - before) or sorted(after)
        found.append({"cell": cell.id, "backend": cell.backend, "precision": cell.precision, "ops": ops})
    return found


def explain(diff: dict[str, Any], findings: list[dict[str, Any]], probes: dict[str, Any]) -> list[dict[str, Any]]:
    """Each finding with the probe regressions that explain it (``explained_by``; empty: seen only in models).

    A probe regression at the finding's precision explains an op that fell back when the probe's ONNX op is
    that op, or the op is one of the probe's nodes (a pattern). ``probes`` is the op table's ``probes`` block.
    """
    out = []
    for finding in findings:
        by = []
        for entry in diff.get("regressions", []):
            if entry["precision"] != finding["precision"] or entry.get("after") == "error":
                continue
            meta = probes.get(entry["probe"], {})
            covers = {meta.get("op")} | set(meta.get("ops", []))
            if covers & set(finding["ops"]):
                by.append(entry["probe"])
        out.append({**finding, "explained_by": by})
    return out
