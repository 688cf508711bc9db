"""The support table as one self-contained HTML page.

Rendered with the Jinja2 template ``zoocompat/report/templates/support.html.j2``: inline
CSS, no script, and the two plots (accuracy drop per model and backend, NPU
coverage heatmap) drawn with matplotlib's Agg canvas and embedded as base64
PNG, so the file can be mailed, attached to a CI run or opened offline.
matplotlib is imported only when a page is rendered, never by the CLI's start-up; a plot whose
numbers an earlier page already drew is read back from the cache (stage ``plots/``).
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoocompat.api.cache import ArtifactCache, key_of
from zoocompat.api.registry import Registry
from zoocompat.api.registry import registry as _registry
from zoocompat.report.columns import Column, cell_index, columns, is_reference, is_reference_run, sdk_backend
from zoocompat.report.results import CellRecord, Results
from zoocompat.report.table import chosen_technique, coverage_pct, is_partial, run_parts

TEMPLATE = "support.html.j2"
STATUS_LABEL = {
    "pass": "pass",
    "partial": "partial",
    "fail": "fail",
    "error": "error",
    "inconclusive": "inconclusive",
    "xfail": "xfail",
    "xpass": "xpass",
    "skip": "not run",
}

__all__ = ["render_html", "accuracy_drop_plot", "coverage_heatmap"]


def _label(col: Column) -> str:
    backend, precision, quant, sdk = col
    return f"{backend} {precision}" + (f" {quant}" if quant not in ("none", "ptq") else "") + (f" {sdk}" if sdk else "")


@dataclass
class HtmlCell:
    """What one table cell shows."""

    state: str  # a key of STATUS_LABEL, also the CSS class
    metric: str = ""
    drop: str = ""
    npu: str = ""
    category: str = ""
    title: str = ""


@dataclass
class HtmlRow:
    """One model's row."""

    model: str
    frontend: str
    metric: str
    cells: list[HtmlCell | None] = field(default_factory=list)


def _state(cell: CellRecord, registry: Registry | None = None) -> str:
    if cell.status == "pass" and is_partial(cell, registry):
        return "partial"
    return cell.status


def _html_cell(cell: CellRecord, registry: Registry | None = None) -> HtmlCell:
    out = HtmlCell(
        state=_state(cell, registry), title=f"{cell.id}: {cell.status}" + (f" — {cell.reason}" if cell.reason else "")
    )
    m = cell.metric
    if m and m.value is not None:
        out.metric = f"{m.value:.3f}"
        if m.drop is not None and cell.precision != "fp32":
            out.drop = m.drop_shown(cell.status == "inconclusive")
    if chosen_technique(cell):
        out.metric = f"[{chosen_technique(cell)}] {out.metric}".strip()
    if cell.coverage and cell.coverage.total_nodes and not is_reference(cell, registry):
        out.npu = f"NPU {coverage_pct(cell)}"
    if cell.category and cell.status not in ("pass", "xpass"):
        out.category = cell.category
    return out


def _png(figure: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _plot(kind: str, data: dict[str, Any], draw: Callable[[dict[str, Any]], Any]) -> str:
    """``draw(data)``'s figure as base64 PNG, kept in the cache stage ``plots/`` by ``data``: a re-run whose
    numbers did not change (a warm matrix) reuses the picture instead of importing matplotlib and drawing it.
    """
    code = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    key = key_of("plot", kind, data, code)

    def build(folder: Path) -> None:
        (folder / "plot.b64").write_text(_png(draw(data)))

    return (ArtifactCache().entry("plots", key, build) / "plot.b64").read_text()


def accuracy_drop_plot(results: Results, registry: Registry | None = None) -> str | None:
    """Grouped bars: accuracy drop (points) per model, one bar per backend x precision; base64 PNG or ``None``.

    The reference backend's float columns get no bar: they are the FP32 reference run itself.
    """
    cols = [c for c in columns(results, registry) if not is_reference_run(c, registry)]
    models = sorted({c.model for c in results.cells})
    index = cell_index(results)
    series = []
    for col in cols:
        values = []
        for model in models:
            cell = index.get((model, *col))
            drop = cell.metric.drop if cell and cell.metric and cell.metric.drop is not None else None
            values.append(None if drop is None else drop * 100)
        if any(v is not None for v in values):
            series.append((_label(col), values))
    if not series:
        return None
    tolerances = {c.model: c.metric.tolerance for c in results.cells if c.metric and c.metric.tolerance is not None}
    return _plot("accuracy_drop", {"models": models, "series": series, "tolerances": tolerances}, _draw_drops)


def _draw_drops(data: dict[str, Any]) -> Any:
    from matplotlib.figure import Figure

    models, series, tolerances = data["models"], data["series"], data["tolerances"]
    figure = Figure(figsize=(max(6.0, 0.9 * len(models) + 2), 3.6))
    ax = figure.add_subplot()
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        xs = [m + (i - (len(series) - 1) / 2) * width for m in range(len(models))]
        ax.bar(xs, [v if v is not None else 0.0 for v in values], width, label=label)
    for m, model in enumerate(models):
        if model in tolerances:
            ax.hlines(tolerances[model] * 100, m - 0.45, m + 0.45, colors="black", linestyles="dashed", linewidth=1)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(models)), models, rotation=30, ha="right")
    ax.set_ylabel("accuracy drop vs FP32 (points)")
    ax.set_title("Accuracy drop per model and backend (dashed: the card's tolerance)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return figure


def coverage_heatmap(results: Results, registry: Registry | None = None) -> str | None:
    """Heatmap of the share of nodes on the accelerator per model x accelerator column (every backend but the
    reference); base64 PNG or ``None``.
    """
    references = set((registry or _registry()).reference_backends())
    cols = [c for c in columns(results, registry) if c[0] not in references]
    models = sorted({c.model for c in results.cells})
    index = cell_index(results)
    grid = []
    for model in models:
        row = []
        for col in cols:
            cell = index.get((model, *col))
            cov = cell.coverage if cell else None
            row.append(100 * cov.target_nodes / cov.total_nodes if cov and cov.total_nodes else None)
        grid.append(row)
    if not cols or all(v is None for row in grid for v in row):  # nothing measured on an accelerator
        return None
    return _plot("coverage", {"models": models, "columns": [_label(c) for c in cols], "grid": grid}, _draw_coverage)


def _draw_coverage(data: dict[str, Any]) -> Any:
    from matplotlib.figure import Figure

    models, columns = data["models"], data["columns"]
    grid = [[float("nan") if v is None else v for v in row] for row in data["grid"]]
    figure = Figure(figsize=(max(4.0, 1.3 * len(columns) + 3), max(2.5, 0.45 * len(models) + 1.2)))
    ax = figure.add_subplot()
    image = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    for r, row in enumerate(grid):
        for c, value in enumerate(row):
            ax.text(c, r, "—" if value != value else f"{value:.0f}%", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(columns)), columns, rotation=20, ha="right")
    ax.set_yticks(range(len(models)), models)
    ax.set_title("Nodes on the accelerator (NPU coverage)")
    figure.colorbar(image, ax=ax, label="% of graph nodes")
    return figure


def _run_info(results: Results, registry: Registry | None = None) -> dict[str, Any]:
    run = results.run
    _, sdk_info = sdk_backend(run, registry)
    cell_sdks = sorted({c.sdk for c in results.cells if c.sdk})
    return {
        "sdk": run.sdk or ", ".join(cell_sdks) or sdk_info.get("sdk") or "installed",
        "qnn_core_version": sdk_info.get("qnn_core_version"),
        "sdk_backend": sdk_info,
        "tools": {k: v for k, v in run.tools.items() if v},
        "backends": run.backends,
        "host": run.host,
        "made_by": run_parts(results),
        "started": run.started,
        "finished": run.finished,
    }


def render_html(results: Results, title: str = "zoocompat support table", registry: Registry | None = None) -> str:
    """The whole page: run info, support table, plots, failure reasons.

    ``registry`` (default: the process-wide one) orders the columns and names the reference backend.
    """
    import jinja2

    cols = columns(results, registry)
    index = cell_index(results)
    rows = []
    for model, frontend in sorted({(c.model, c.frontend) for c in results.cells}):
        metric = next((c.metric.name for c in results.cells if c.model == model and c.metric), "")
        row = HtmlRow(model, frontend, metric)
        for col in cols:
            cell = index.get((model, *col))
            row.cells.append(_html_cell(cell, registry) if cell else None)
        rows.append(row)
    counts: dict[str, int] = {}
    for cell in results.cells:
        state = _state(cell, registry)
        counts[state] = counts.get(state, 0) + 1
    details = [c for c in results.cells if c.status != "pass" or is_partial(c, registry)]
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("zoocompat.report", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    return env.get_template(TEMPLATE).render(
        title=title,
        columns=[_label(c) for c in cols],
        rows=rows,
        counts=counts,
        labels=STATUS_LABEL,
        details=details,
        run=_run_info(results, registry),
        drop_plot=accuracy_drop_plot(results, registry),
        coverage_plot=coverage_heatmap(results, registry),
        total=len(results.cells),
    )
