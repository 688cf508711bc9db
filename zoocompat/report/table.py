"""Support tables from a results record: one row per model, one column per backend x precision."""

from __future__ import annotations

import csv
import io
from datetime import datetime

from zoocompat.api.registry import Registry
from zoocompat.report.columns import Column, cell_index, columns, is_reference, sdk_backend
from zoocompat.report.results import CellRecord, Results

SYMBOL = {"pass": "✅", "fail": "❌", "error": "💥", "skip": "➖", "inconclusive": "❔", "xfail": "🟡", "xpass": "🟢"}
#: A word after the metric for statuses whose symbol alone is easy to misread.
STATUS_WORD = {"xfail": "known", "xpass": "fixed?", "inconclusive": "inconclusive"}
LEGEND = (
    "✅ pass · ⚠️ pass with CPU fallback · ❌ fail · 💥 error · ❔ inconclusive (the drop's interval straddles "
    "the tolerance when the cell stopped) · n = evaluation samples the verdict rests on · "
    "🟡 known failure (xfail) · 🟢 known failure that passed (xpass: remove its entry) · "
    "➖ not run here."
)


def is_partial(cell: CellRecord, registry: Registry | None = None) -> bool:
    """An accelerator cell (not the reference backend's) with nodes left on the CPU."""
    cov = cell.coverage
    if not (cov and cov.total_nodes and cov.target_nodes < cov.total_nodes):
        return False
    return not is_reference(cell, registry)


def coverage_pct(cell: CellRecord) -> str:
    """Share of nodes on the target, as text."""
    cov = cell.coverage
    if not cov or not cov.total_nodes:
        return ""
    return f"{100 * cov.target_nodes / cov.total_nodes:.0f}%"


def chosen_technique(cell: CellRecord) -> str | None:
    """For a quant ``auto`` cell, the technique the AutoQuant ladder chose (``cle``, ``qat``, ...)."""
    technique = (cell.quantization or {}).get("technique") or ""
    return technique.split("->", 1)[1].strip() if cell.quant == "auto" and "->" in technique else None


def cell_text(cell: CellRecord, registry: Registry | None = None) -> str:
    """Short text answering 'runs on NPU? how much accuracy lost?'."""
    symbol = "⚠️" if cell.status == "pass" and is_partial(cell, registry) else SYMBOL.get(cell.status, "?")
    if cell.status == "skip":
        return f"{symbol} n/a"
    parts = [symbol]
    if chosen_technique(cell):
        parts.append(f"[{chosen_technique(cell)}]")
    m = cell.metric
    if m and m.value is not None:
        parts.append(f"{m.value:.3f}")
        if m.drop is not None and cell.precision != "fp32":
            parts.append(f"({m.drop_shown(cell.status == 'inconclusive')})")
    if cell.status in STATUS_WORD:
        parts.append(STATUS_WORD[cell.status])
    if cell.category and cell.status not in ("pass", "xpass"):
        parts.append(cell.category)
    if cell.coverage and not is_reference(cell, registry):
        parts.append(f"· NPU {coverage_pct(cell)}")
    return " ".join(parts)


def _label(col: Column, results: Results) -> str:
    backend, precision, quant, sdk = col
    # a backend that runs a stand-in says so in its cells' runtime, e.g. "gpu (fp16 reference, no GPU)"
    runtimes = {c.backend_info.get("runtime") for c in results.cells if c.backend == backend}
    name = (
        runtimes.pop() if len(runtimes) == 1 and str(next(iter(runtimes), "")).startswith(f"{backend} (") else backend
    )
    return f"{name} {precision}" + (f" {quant}" if quant not in ("none", "ptq") else "") + (f" {sdk}" if sdk else "")


def diagnosis_lines(cell: CellRecord) -> list[str]:
    """Markdown bullets for a cell's first-bad-layer diagnosis (none when it has none)."""
    d = cell.diagnosis
    if d is None:
        return []
    lines = [f"  - first bad layer: {d.summary or d.error or 'no finding'}"]
    for finding in (d.backend, d.quantization):
        if finding is None or finding.first_bad_layer is None:
            continue
        shown = ", ".join(
            f"{layer.op_type} {'identical' if layer.sqnr_db is None else f'{layer.sqnr_db:.1f}'}"
            for layer in finding.layers
        )
        how = (
            f"{finding.runs} backend runs over {finding.layers_checked} layers"
            if finding.method == "backend_vs_cpu"
            else f"{finding.layers_checked} layers"
        )
        lines.append(f"  - {finding.method} ({how}, {finding.samples} samples), dB: {shown}")
    return lines


def _sdk_line(run_backends: tuple[str, dict]) -> list[str]:
    """The header line naming the SDK-driven backend's QNN core, runtime and target (none without one)."""
    name, info = run_backends
    if not name:
        return []
    facts = [f"QNN core {info.get('qnn_core_version')}"]
    if info.get("onnxruntime_qnn"):
        facts[0] += f" (onnxruntime-qnn {info['onnxruntime_qnn']})"
    facts += [f"{key} {info[key]}" for key in ("htp_arch", "soc_model") if info.get(key)]
    return [f"{name}: " + ", ".join(facts) + (f"; {info['runtime']}." if info.get("runtime") else ".")]


def _minutes(started: str | None, finished: str | None) -> str:
    """``started`` to ``finished`` (ISO 8601) as ``37 min``, or ``?`` when either is missing."""
    if not (started and finished):
        return "?"
    seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def run_parts(results: Results) -> list[dict]:
    """The command(s) that made ``results``, each as ``{command, cells, took}``.

    A merged file (``zoocompat merge``) has one per part; a single run its own.
    """
    run = results.run
    parts = run.host.get("parts") or [
        {"command": run.command, "started": run.started, "finished": run.finished, "cells": len(results.cells)}
    ]
    return [
        {
            "command": part.get("command") or "?",
            "cells": part.get("cells", "?"),
            "took": _minutes(part.get("started"), part.get("finished")),
        }
        for part in parts
    ]


def made_by(results: Results) -> list[str]:
    """Markdown lines naming the command(s) that made ``results``, with cell counts and wall times."""
    cpus = results.run.host.get("cpus")
    on = f" on {cpus} CPUs" if cpus else ""
    return ["Made by:"] + [f"- `{p['command']}`: {p['cells']} cells, {p['took']}{on}" for p in run_parts(results)]


def render_markdown(results: Results, title: str = "zoocompat support table", registry: Registry | None = None) -> str:
    """Markdown support table, tool versions and the details of every non-clean cell.

    ``registry`` (default: the process-wide one) orders the columns and names the reference backend.
    """
    cols = columns(results, registry)
    models = sorted({(c.model, c.frontend) for c in results.cells})
    index = cell_index(results)
    run = results.run
    tools = ", ".join(f"{k} {v}" for k, v in run.tools.items() if v)
    lines = [f"# {title}", ""]
    lines += _sdk_line(sdk_backend(run, registry))
    lines += [f"Tools: {tools}.", f"Run: {run.started} → {run.finished} on {run.host.get('platform', '?')}."]
    lines += made_by(results)
    lines.append("")
    lines.append("Cells: metric value on the evaluation set, Δ = FP32 minus this cell in points, NPU = share of")
    lines.append("graph nodes the accelerator took.")
    lines.append(LEGEND)
    lines.append("")
    lines.append("| model | frontend | metric | " + " | ".join(_label(c, results) for c in cols) + " |")
    lines.append("|---|---|---|" + "---|" * len(cols))
    for model, frontend in models:
        row = [model, frontend]
        metric = next((c.metric.name for c in results.cells if c.model == model and c.metric), "")
        row.append(metric)
        for col in cols:
            cell = index.get((model, *col))
            row.append(cell_text(cell, registry) if cell else "")
        lines.append("| " + " | ".join(row) + " |")
    if results.card_errors:
        lines += ["", "## Cards that do not load (no cells run)", ""]
        for refused in results.card_errors:
            first, *rest = refused.error.splitlines()
            lines.append(f"- `{refused.card}`: {first}")
            lines += [f"  {line.strip()}" for line in rest]
    details = [c for c in results.cells if c.status != "pass" or is_partial(c, registry)]
    if details:
        lines += ["", "## Failures, fallbacks and cells not run", ""]
        for c in details:
            status = {"xfail": "xfail (known failure)", "xpass": "xpass (known failure passed)"}.get(c.status, c.status)
            lines.append(f"- `{c.id}` **{status}**{f' ({c.category})' if c.category else ''}: {c.reason}")
            if c.coverage and c.coverage.fallback_ops:
                lines.append(f"  - fell back to CPU: {c.coverage.fallback_ops}")
                for reason in c.coverage.reasons[:5]:
                    lines.append(f"  - vendor: {reason}")
            lines += diagnosis_lines(c)
    return "\n".join(lines) + "\n"


CSV_FIELDS = (
    "id", "model", "frontend", "backend", "precision", "quant", "sdk", "status", "category",
    "metric", "fp32", "value", "drop", "tolerance", "samples", "target_nodes", "total_nodes",
    "fallback_ops", "sqnr_vs_fp32_db", "sqnr_vs_cpu_db", "compile_s", "run_s", "reason",
)  # fmt: skip


def render_csv(results: Results) -> str:
    """One CSV row per cell."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for c in results.cells:
        m, cov, fid = c.metric, c.coverage, c.fidelity
        writer.writerow(
            {
                "id": c.id, "model": c.model, "frontend": c.frontend, "backend": c.backend,
                "precision": c.precision, "quant": c.quant, "sdk": c.sdk or "", "status": c.status,
                "category": c.category or "", "metric": m.name if m else "", "fp32": m.fp32 if m else "",
                "value": m.value if m else "", "drop": m.drop if m else "", "tolerance": m.tolerance if m else "",
                "samples": m.samples if m else "", "target_nodes": cov.target_nodes if cov else "",
                "total_nodes": cov.total_nodes if cov else "", "fallback_ops": cov.fallback_ops if cov else "",
                "sqnr_vs_fp32_db": fid.sqnr_vs_fp32_db if fid else "",
                "sqnr_vs_cpu_db": fid.sqnr_vs_cpu_db if fid else "",
                "compile_s": c.timing.compile_s, "run_s": c.timing.run_s, "reason": c.reason,
            }
        )  # fmt: skip
    return buffer.getvalue()


def summary_line(results: Results, registry: Registry | None = None) -> str:
    """One line for the terminal: counts by status and how many fell back."""
    counts: dict[str, int] = {}
    for c in results.cells:
        counts[c.status] = counts.get(c.status, 0) + 1
    partial = sum(1 for c in results.cells if c.status == "pass" and is_partial(c, registry))
    parts = [f"{n} {status}" for status, n in sorted(counts.items())]
    return f"{len(results.cells)} cells: " + ", ".join(parts) + f"; {partial} passed with CPU fallback"


#: What each pytest exit status of a matrix run means (the summary's last line).
EXIT_MEANING = {
    0: "no new failures: every cell passed, failed as a known failure (xfail), was inconclusive or was not run",
    1: "new failures: a cell failed, errored or passed as a known failure (xpass), or a card did not load",
    2: "interrupted: the summary covers the cells that finished",
    3: "internal error in pytest or a plugin",
    4: "usage error (bad option or card selection): no cell ran",
    5: "no cells selected",
}


def _one_line(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def run_summary(
    results: Results,
    registry: Registry | None = None,
    known_file: str | None = None,
    exitstatus: int | None = None,
) -> list[str]:
    """The end of a matrix run for the terminal: the counts line (:func:`summary_line`), then NEW failures
    (fail / error: in no known-failures entry, or failing with another category than the entry's) apart
    from KNOWN ones (xfail), known failures that passed (xpass), inconclusive and passed cells, and what
    the exit status means.

    ``known_file`` names the known-failures file the session matched (None: several or none).
    """
    known = f"`{known_file}`" if known_file else "the known-failures files"
    by: dict[str, list[CellRecord]] = {}
    for c in results.cells:
        by.setdefault(c.status, []).append(c)
    new = by.get("fail", []) + by.get("error", [])
    lines = [summary_line(results, registry)]
    if new or results.card_errors:
        lines.append(f"NEW failures: {len(new)} (not accepted in {known}; each fails the run until fixed or diagnosed)")
        for c in sorted(new, key=lambda c: c.id):
            lines.append(f"  {cell_text(c, registry)}  {c.id}: {_one_line(c.reason)}")
            if c.diagnosis is not None and (c.diagnosis.summary or c.diagnosis.error):
                lines.append(f"      first bad layer: {_one_line(c.diagnosis.summary or c.diagnosis.error or '')}")
        for refused in results.card_errors:
            lines.append(f"  card that does not load: {refused.card}: {_one_line(refused.error)}")
    else:
        lines.append("NEW failures: none")
    xfail = by.get("xfail", [])
    lines.append(
        f"known failures: {len(xfail)} (xfail: failed as an entry of {known} expects; they do not fail the run)"
    )
    lines += [f"  {SYMBOL['xfail']} {c.id} [{c.category}]" for c in sorted(xfail, key=lambda c: c.id)]
    xpass = by.get("xpass", [])
    if xpass:
        lines.append(f"known failures that passed: {len(xpass)} (xpass: remove their entries from {known})")
        lines += [f"  {SYMBOL['xpass']} {c.id}" for c in sorted(xpass, key=lambda c: c.id)]
    open_ = by.get("inconclusive", [])
    lines.append(
        f"inconclusive: {len(open_)} (too few samples to tell pass from fail at the tolerance; they do not fail "
        "the run; a larger --max-evaluation or --evaluation-budget decides them)"
    )
    partial = sum(1 for c in by.get("pass", []) if is_partial(c, registry))
    lines.append(f"passed: {len(by.get('pass', []))} ({partial} with CPU fallback); not run: {len(by.get('skip', []))}")
    if exitstatus is not None:
        meaning = EXIT_MEANING.get(int(exitstatus), "see pytest's exit codes")
        lines.append(f"exit status {int(exitstatus)}: {meaning}")
    return lines
