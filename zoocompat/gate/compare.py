"""The SDK-upgrade gate: compare two results.json files cell by cell.

``zoocompat gate BASELINE CANDIDATE`` answers "did anything get worse when the
SDK (or the zoo, or a plugin) changed?". Cells are paired by their *key*: the
cell id without the SDK suffix, ``<model>-<frontend>-<backend>-<precision>-<quant>``,
built from the record's fields. So ``resnet_mnist-pytorch-htp-w8a8-ptq-qnn-2.47``
in a QNN 2.47 run pairs with ``resnet_mnist-pytorch-htp-w8a8-ptq-qnn-2.51`` in a
QNN 2.51 run, and with ``resnet_mnist-pytorch-htp-w8a8-ptq`` in a run made with
the installed SDK. A file that holds the same key twice (a merge of several SDK
runs) cannot be paired and is a usage error.

Findings, each naming the cell and what changed:

- model changed: the two records' model sha256 (FP32 ONNX, QDQ model,
  encodings) differ, so they ran different models; such a pair is reported with
  the command that reruns that one model, and never as a regression;
- regressions (exit 1): a new failure (a cell that becomes ``fail`` / ``error``
  from whatever it was, or a failing cell whose failure category changed), a
  fidelity regression (the SQNR against the CPU run of the same model crosses
  its threshold), an SQNR drop beyond the margin, an accuracy regression (the
  drop grew by more than ``threshold`` points), a coverage regression (more
  nodes left on the CPU, or an op type that newly fell back), a slowdown of at
  least ``max_slowdown`` measured on a device (emulator time only when asked);
- improvements: fixed cells (failing -> pass or no longer failing, fidelity back
  above its threshold), new passes (skip / inconclusive -> pass), SQNR,
  accuracy and coverage gains;
- latency: every per-cell change of at least 1.1x, bucketed both ways, emulator
  time marked as such;
- accepted: a pass that became a known failure (``xfail``) in the candidate;
- inconclusive: changes the gate cannot judge (a cell now skipped or
  inconclusive, a metric missing on one side);
- cells present in one run only.

The module is pure logic on :mod:`zoocompat.report.results` records: no ML import.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zoocompat.api.errors import ZoocompatError
from zoocompat.report.columns import sdk_backend
from zoocompat.report.results import CellRecord, MetricResult, Results, load_results
from zoocompat.verdict.fidelity import THRESHOLD_DB, fidelity_problem

#: Default accuracy threshold in metric points (0.5 = half a percentage point of top-1).
DEFAULT_THRESHOLD_PT = 0.5
#: Latency change buckets (factor, either direction); a change below the first is noise.
LATENCY_BUCKETS: tuple[float, ...] = (1.1, 1.2, 1.5, 2.0, 5.0, 10.0, math.inf)
#: Default slowdown factor from which a latency change is a regression, not only reported.
DEFAULT_MAX_SLOWDOWN = 2.0
#: Default SQNR margin (dB): a change of the SQNR against the CPU run beyond it is a regression or an improvement.
DEFAULT_SQNR_MARGIN_DB = 3.0
#: Standard errors of the per-sample SQNR's spread that widen the margin when records hold the spread.
SQNR_SPREAD_Z = 3.0

PASSING = ("pass", "xpass")
FAILING = ("fail", "error", "xfail")
NOT_JUDGED = ("skip", "inconclusive")

__all__ = [
    "DEFAULT_MAX_SLOWDOWN",
    "DEFAULT_SQNR_MARGIN_DB",
    "DEFAULT_THRESHOLD_PT",
    "LATENCY_BUCKETS",
    "Finding",
    "GateError",
    "GateReport",
    "LatencyChange",
    "ReleaseBisect",
    "bisect_regressions",
    "first_changed_release",
    "releases_between",
    "bucket_label",
    "cell_key",
    "compare",
    "gate_files",
    "latency_bucket",
    "on_emulator",
    "render_markdown",
    "rerun_command",
    "sqnr_margin_db",
]


class GateError(ZoocompatError):
    """The gate's inputs cannot be compared (exit 2)."""


@dataclass
class Finding:
    """One change of one cell: ``kind`` says what, ``message`` says it in words."""

    cell: str
    kind: str
    message: str
    baseline: dict[str, Any] = field(default_factory=dict)
    candidate: dict[str, Any] = field(default_factory=dict)


@dataclass
class LatencyChange:
    """A cell that got faster or slower by at least the first bucket."""

    cell: str
    direction: str  # "slower" | "faster"
    bucket: str  # ">=1.1x" ... ">=10x", "infinite"
    factor: float  # >= 1, in the direction; math.inf when one side took no measurable time
    measure: str  # "per_sample_ms" | "run_s"
    baseline: float
    candidate: float
    emulator: bool = False  # either side timed on an emulator (the HTP off-device), not on a device


@dataclass
class ReleaseBisect:
    """Which SDK release first changed a regressed cell (``zoocompat gate --bisect``).

    ``tested`` maps each release the cell was rerun on to what it showed against
    the baseline; ``first_changed`` is the earliest release that shows the
    regression (the candidate's when no release in between does), ``None`` with a
    ``note`` when nothing could be bisected.
    """

    cell: str
    kinds: list[str]
    baseline_sdk: str | None
    candidate_sdk: str | None
    first_changed: str | None = None
    last_unchanged: str | None = None
    tested: dict[str, str] = field(default_factory=dict)
    note: str = ""


@dataclass
class GateReport:
    """Everything the gate found; :meth:`to_json` is the ``--json`` shape."""

    baseline: dict[str, Any]
    candidate: dict[str, Any]
    threshold_pt: float
    max_slowdown: float
    sqnr_margin_db: float = DEFAULT_SQNR_MARGIN_DB
    gate_emulator_latency: bool = False
    regressions: list[Finding] = field(default_factory=list)
    improvements: list[Finding] = field(default_factory=list)
    accepted: list[Finding] = field(default_factory=list)
    inconclusive: list[Finding] = field(default_factory=list)
    model_changed: list[Finding] = field(default_factory=list)
    latency: list[LatencyChange] = field(default_factory=list)
    only_in_baseline: list[str] = field(default_factory=list)
    only_in_candidate: list[str] = field(default_factory=list)
    compared: int = 0
    bisect: list[ReleaseBisect] | None = None  # filled by --bisect

    @property
    def verdict(self) -> str:
        """``regression`` when anything regressed, else ``pass``."""
        return "regression" if self.regressions else "pass"

    @property
    def exit_code(self) -> int:
        """0 pass, 1 regression."""
        return 1 if self.regressions else 0

    def to_json(self) -> dict[str, Any]:
        """``{verdict, regressions, improvements, ...}`` (ARCHITECTURE's gate shape plus detail)."""

        def number(value: float) -> float | str:
            return "inf" if math.isinf(value) else value

        latency = []
        for change in self.latency:
            item = asdict(change)
            item["factor"] = number(change.factor)
            latency.append(item)
        return {
            "verdict": self.verdict,
            "regressions": [asdict(f) for f in self.regressions],
            "improvements": [asdict(f) for f in self.improvements],
            "accepted": [asdict(f) for f in self.accepted],
            "inconclusive": [asdict(f) for f in self.inconclusive],
            "model_changed": [asdict(f) for f in self.model_changed],
            "latency": latency,
            "only_in_baseline": self.only_in_baseline,
            "only_in_candidate": self.only_in_candidate,
            "compared": self.compared,
            "threshold_pt": self.threshold_pt,
            "max_slowdown": number(self.max_slowdown),
            "sqnr_margin_db": self.sqnr_margin_db,
            "gate_emulator_latency": self.gate_emulator_latency,
            "baseline": self.baseline,
            "candidate": self.candidate,
            **({"bisect": [asdict(b) for b in self.bisect]} if self.bisect is not None else {}),
        }


# -- pairing -------------------------------------------------------------------


def cell_key(cell: CellRecord) -> str:
    """The id of ``cell`` without its SDK suffix: what pairs cells across SDK runs."""
    return "-".join((cell.model, cell.frontend, cell.backend, cell.precision, cell.quant))


def _index(results: Results, path: Path) -> dict[str, CellRecord]:
    cells: dict[str, CellRecord] = {}
    for cell in results.cells:
        key = cell_key(cell)
        if key in cells:
            raise GateError(
                f"{path}: cells {cells[key].id!r} and {cell.id!r} are the same cell on different SDKs; "
                "the gate compares one run against another: split the file by SDK first"
            )
        cells[key] = cell
    return cells


def run_info(results: Results, path: Path) -> dict[str, Any]:
    """What ran: the file, SDK, QNN core version, tool versions, when, how many cells."""
    run = results.run
    _, sdk_info = sdk_backend(run)  # the backend the SDK under test drives, whatever its name
    cell_sdks = sorted({c.sdk for c in results.cells if c.sdk})
    sdk = run.sdk or (cell_sdks[0] if len(cell_sdks) == 1 else None) or sdk_info.get("sdk")
    return {
        "path": str(path),
        "sdk": sdk,
        "qnn_core_version": sdk_info.get("qnn_core_version"),
        # the SDK release's own runtime (its isolated environment), not the suite's installed one
        "sdk_onnxruntime_qnn": sdk_info.get("onnxruntime_qnn"),
        "sdk_onnxruntime": sdk_info.get("onnxruntime"),
        "tools": {k: v for k, v in run.tools.items() if v},
        "started": run.started,
        "finished": run.finished,
        "command": run.command,
        "cells": len(results.cells),
    }


# -- latency -------------------------------------------------------------------


def latency_bucket(factor: float) -> str | None:
    """The bucket of a change by ``factor`` (>= 1): ``">=1.1x"`` ... ``">=10x"``, ``"infinite"``;
    ``None`` below 1.1x. A factor exactly on an edge belongs to that edge's bucket.
    """
    label = None
    for edge in LATENCY_BUCKETS:
        if factor >= edge:
            label = bucket_label(edge)
    return label


def bucket_label(edge: float) -> str:
    """Text of a bucket edge: ``">=1.5x"``, ``">=2x"``, ``"infinite"``."""
    return "infinite" if math.isinf(edge) else f">={edge:g}x"


def _latency_of(cell: CellRecord) -> tuple[str, float] | None:
    if cell.status == "skip":
        return None
    per_sample = getattr(cell.timing, "per_sample_ms", None)
    if per_sample is not None:
        return "per_sample_ms", float(per_sample)
    if cell.timing.run_s is not None:
        return "run_s", float(cell.timing.run_s)
    return None


def on_emulator(cell: CellRecord) -> bool:
    """Whether ``cell`` was timed on an emulator rather than a device.

    A backend may say so itself in ``backend_info.emulator``. Otherwise a cell with a ``device`` ran on
    one, and a cell whose runtime is described as emulated (the htp backend's "x86-64 HTP emulator
    off-device", the gpu backend's fp16 reference "emulated on the CPU EP") or that loaded a QNN library
    on the host (the dsp contract runs the same emulator) did not.
    """
    info = cell.backend_info
    if "emulator" in info:
        return bool(info["emulator"])
    if info.get("device"):
        return False
    described = f"{info.get('runtime', '')} {info.get('reference', '')}".lower()
    return "emulat" in described or bool(info.get("qnn_core_version"))


def _latency_change(key: str, base: CellRecord, cand: CellRecord) -> LatencyChange | None:
    b, c = _latency_of(base), _latency_of(cand)
    if b is None or c is None:
        return None
    if b[0] != c[0]:  # one side measured per sample, the other only the whole run: use run_s on both
        if base.timing.run_s is None or cand.timing.run_s is None:
            return None
        b, c = ("run_s", float(base.timing.run_s)), ("run_s", float(cand.timing.run_s))
    measure, before, after = b[0], b[1], c[1]
    if before <= 0 and after <= 0:
        return None
    if after >= before:
        direction, factor = "slower", (math.inf if before <= 0 else after / before)
    else:
        direction, factor = "faster", (math.inf if after <= 0 else before / after)
    bucket = latency_bucket(factor)
    if bucket is None:
        return None
    emulator = on_emulator(base) or on_emulator(cand)
    return LatencyChange(key, direction, bucket, factor, measure, before, after, emulator)


# -- comparison ----------------------------------------------------------------


def _summary(cell: CellRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"id": cell.id, "status": cell.status}
    if cell.category:
        out["category"] = cell.category
    if cell.metric and cell.metric.value is not None:
        out["metric"] = cell.metric.name
        out["value"] = cell.metric.value
        out["drop"] = cell.metric.drop
    if cell.fidelity and cell.fidelity.threshold_db is not None:
        out["sqnr_vs_cpu_db"] = cell.fidelity.sqnr_vs_cpu_db
        out["fidelity_threshold_db"] = cell.fidelity.threshold_db
    if cell.model_sha256:
        out["model_sha256"] = cell.model_sha256.model_dump()
    if cell.coverage:
        out["target_nodes"] = cell.coverage.target_nodes
        out["total_nodes"] = cell.coverage.total_nodes
        if cell.coverage.fallback_ops:
            out["fallback_ops"] = dict(cell.coverage.fallback_ops)
    return out


def _state(cell: CellRecord) -> str:
    return cell.status + (f" ({cell.category})" if cell.category else "")


def _finding(key: str, kind: str, message: str, base: CellRecord, cand: CellRecord) -> Finding:
    return Finding(key, kind, message, _summary(base), _summary(cand))


def _compare_status(key: str, base: CellRecord, cand: CellRecord, report: GateReport) -> None:
    b, c = base.status, cand.status
    if b not in FAILING and c in ("fail", "error"):  # whatever it was (pass, inconclusive, skip), it now fails
        reason = f": {cand.reason}" if cand.reason else ""
        report.regressions.append(_finding(key, "new_failure", f"{_state(base)} -> {_state(cand)}{reason}", base, cand))
    elif b in PASSING and c == "xfail":
        message = f"{_state(base)} -> {_state(cand)}, a known failure: {cand.reason}"
        report.accepted.append(_finding(key, "known_failure", message, base, cand))
    elif b in FAILING and c in FAILING and base.category != cand.category:
        message = f"still failing, new category: {_state(base)} -> {_state(cand)}: {cand.reason}"
        report.regressions.append(_finding(key, "new_failure_category", message, base, cand))
    elif b in FAILING and c in PASSING:
        report.improvements.append(_finding(key, "fixed", f"{_state(base)} -> {_state(cand)}", base, cand))
    elif b in FAILING and c == "inconclusive":  # no longer fails; its accuracy is still to be decided
        message = f"{_state(base)} -> {_state(cand)}: no longer fails; not yet a pass"
        report.improvements.append(_finding(key, "fixed", message, base, cand))
    elif b in NOT_JUDGED and c in PASSING:
        report.improvements.append(_finding(key, "new_pass", f"{_state(base)} -> {_state(cand)}", base, cand))
    elif b != c and (b in NOT_JUDGED or c in NOT_JUDGED):
        reason = f": {cand.reason}" if cand.reason and c in NOT_JUDGED else ""
        report.inconclusive.append(_finding(key, "status", f"{_state(base)} -> {_state(cand)}{reason}", base, cand))


def _sqnr(cell: CellRecord) -> float | None:
    """The cell's SQNR against the CPU run (``inf``: identical outputs); ``None`` when it has none to judge
    (the reference backend itself, a cell that did not run).
    """
    fidelity = cell.fidelity
    if fidelity is None or (fidelity.threshold_db is None and fidelity.sqnr_vs_cpu_db is None):
        return None  # results written before the threshold was recorded still hold the SQNR itself
    return math.inf if fidelity.sqnr_vs_cpu_db is None else fidelity.sqnr_vs_cpu_db


def _unfaithful(cell: CellRecord) -> str | None:
    """Why the cell's fidelity is below its threshold (the verdict's own rule), ``None`` when it is not."""
    f = cell.fidelity
    if _sqnr(cell) is None or f is None:
        return None
    return fidelity_problem(cell.precision, f.sqnr_vs_cpu_db, f.sqnr_vs_fp32_db, f.reference_vs_fp32_db)


def sqnr_margin_db(base: CellRecord, cand: CellRecord, margin_db: float = DEFAULT_SQNR_MARGIN_DB) -> float:
    """The SQNR change (dB) beyond which the pair's SQNR moved: ``margin_db``, widened to
    :data:`SQNR_SPREAD_Z` standard errors of the difference of the per-sample SQNR means when the records
    hold their per-sample spread (``sqnr_vs_cpu_spread_db`` over ``samples``).
    """
    variance = 0.0
    for cell in (base, cand):
        f = cell.fidelity
        if f is not None and f.sqnr_vs_cpu_spread_db is not None and f.samples:
            variance += f.sqnr_vs_cpu_spread_db**2 / f.samples
    return max(margin_db, SQNR_SPREAD_Z * math.sqrt(variance))


def _inf(value: float | None) -> float:
    return math.inf if value is None else value


def _db(value: float) -> str:
    return "identical" if math.isinf(value) else f"{value:.1f} dB"


def _compare_fidelity(key: str, base: CellRecord, cand: CellRecord, report: GateReport) -> None:
    """Fidelity crossing its threshold either way, else an SQNR change beyond the margin."""
    before, after = _sqnr(base), _sqnr(cand)
    if before is None or after is None:
        return
    threshold = (cand.fidelity.threshold_db if cand.fidelity else None) or THRESHOLD_DB.get(cand.precision)
    change = f"SQNR vs the CPU run {_db(before)} -> {_db(after)}"
    limit = f"threshold {threshold:g} dB for {cand.precision}" if threshold is not None else "threshold"
    was_bad, is_bad = _unfaithful(base), _unfaithful(cand)
    if is_bad and not was_bad:
        f = cand.fidelity
        apart = (
            f"; further from FP32 ({_db(_inf(f.sqnr_vs_fp32_db))}) than the CPU reference "
            f"({_db(_inf(f.reference_vs_fp32_db))}): the backend computes something else"
            if f is not None
            else ""
        )
        message = f"fidelity below its threshold: {change} ({limit}){apart}"
        report.regressions.append(_finding(key, "fidelity", message, base, cand))
        return
    if was_bad and not is_bad:
        message = f"fidelity fixed: {change}, back above the {limit}"
        report.improvements.append(_finding(key, "fidelity_fixed", message, base, cand))
        return
    if math.isinf(before) and math.isinf(after):
        return
    margin = sqnr_margin_db(base, cand, report.sqnr_margin_db)
    delta = after - before
    if abs(delta) <= margin:
        return
    moved = "identical outputs no longer" if math.isinf(before) else f"{delta:+.1f} dB"
    message = f"{change} ({moved}; margin {margin:.1f} dB)"
    (report.regressions if delta < 0 else report.improvements).append(_finding(key, "sqnr", message, base, cand))


def _model_change(key: str, base: CellRecord, cand: CellRecord) -> Finding | None:
    """A finding when the two records name different model files (by sha256), else ``None``.

    Records without digests (written before they existed) cannot be told apart and pair as before.
    """
    b, c = base.model_sha256, cand.model_sha256
    if b is None or c is None:
        return None
    changed = [
        name
        for name in ("fp32_onnx", "qdq_onnx", "encodings")
        if getattr(b, name) is not None and getattr(c, name) is not None and getattr(b, name) != getattr(c, name)
    ]
    if not changed:
        return None
    what = ", ".join(f"{name} {getattr(b, name)[:12]} -> {getattr(c, name)[:12]}" for name in changed)
    message = (
        f"the two runs ran different models ({what}): not an SDK change; rerun both sides on one model with "
        f"{rerun_command(base, cand)}"
    )
    return _finding(key, "model_changed", message, base, cand)


def rerun_command(base: CellRecord, cand: CellRecord, report_dir: str = "reports/rerun") -> str:
    """The commands that rerun the pair's one cell on both records' SDK releases on this machine (one
    artifact cache, so both sides run the same model files) and gate the two runs.
    """
    select = (
        f"pytest -n 1 conformance/ --zoo-models {cand.model} --frontends {cand.frontend} "
        f"--backends {cand.backend} --precisions {cand.precision} --quant {cand.quant}"
    )
    sdks = [base.release, cand.release]
    folders = ["baseline", "candidate"] if sdks[0] == sdks[1] else [sdk or "installed" for sdk in sdks]
    runs = [
        f"{select}{f' --sdk {sdk}' if sdk else ''} --zoo-report {report_dir}/{folder}"
        for sdk, folder in zip(sdks, folders, strict=True)
    ]
    gate = f"zoocompat gate {report_dir}/{folders[0]}/results.json {report_dir}/{folders[1]}/results.json"
    return "`" + " && ".join([*runs, gate]) + "`"


def _compare_accuracy(key: str, base: CellRecord, cand: CellRecord, report: GateReport) -> None:
    bm, cm = base.metric, cand.metric
    b_drop = bm.drop if bm else None
    c_drop = cm.drop if cm else None
    if b_drop is None and c_drop is None:
        return
    if b_drop is None or c_drop is None:
        if cand.status != "skip" and base.status != "skip":
            side = "baseline" if b_drop is None else "candidate"
            message = f"accuracy not comparable: no metric in the {side}"
            report.inconclusive.append(_finding(key, "metric_missing", message, base, cand))
        return
    if bm.name != cm.name:
        message = f"accuracy not comparable: metric {bm.name} in the baseline, {cm.name} in the candidate"
        report.inconclusive.append(_finding(key, "metric_changed", message, base, cand))
        return
    b_drop, c_drop, on = _same_samples(bm, cm)
    grew = (c_drop - b_drop) * 100
    message = (
        f"{cm.name} drop {b_drop * 100:+.2f} -> {c_drop * 100:+.2f} pt "
        f"({grew:+.2f} pt; {bm.value:.4f} -> {cm.value:.4f})"
        if bm.value is not None and cm.value is not None and not on
        else f"{cm.name} drop {b_drop * 100:+.2f} -> {c_drop * 100:+.2f} pt ({grew:+.2f} pt)"
    ) + on
    if grew > report.threshold_pt:
        report.regressions.append(_finding(key, "accuracy", message, base, cand))
    elif -grew > report.threshold_pt:
        report.improvements.append(_finding(key, "accuracy", message, base, cand))


def _same_samples(base: MetricResult, cand: MetricResult) -> tuple[float, float, str]:
    """The two drops to compare, and how they were matched (``""``: the records' own drops).

    Sequential evaluation (:mod:`zoocompat.verdict.sequential`) stops a cell at the look that decides it, so
    two runs of one cell may rest on different numbers of samples. Each look's samples are the first ones of
    the card's seeded permutation, so when the sizes differ the drops are taken at the largest look both runs
    made: the same samples on both sides, and sampling noise is not reported as a change.
    """
    if base.samples == cand.samples or not base.looks or not cand.looks:
        return base.drop, cand.drop, ""
    b_looks = {look.samples: look.drop for look in base.looks}
    shared = [look.samples for look in cand.looks if look.samples in b_looks]
    if not shared:
        return base.drop, cand.drop, f" (on {base.samples} and {cand.samples} samples: no look in common)"
    n = max(shared)
    c_drop = next(look.drop for look in cand.looks if look.samples == n)
    return b_looks[n], c_drop, f" (at the {n}-sample look both made; they stopped at {base.samples} and {cand.samples})"


def _compare_coverage(key: str, base: CellRecord, cand: CellRecord, report: GateReport) -> None:
    bc, cc = base.coverage, cand.coverage
    if bc is None or cc is None:
        return
    new_ops = sorted(set(cc.fallback_ops) - set(bc.fallback_ops))
    gone_ops = sorted(set(bc.fallback_ops) - set(cc.fallback_ops))
    nodes = (
        f"{bc.target_nodes}/{bc.total_nodes} -> {cc.target_nodes}/{cc.total_nodes} nodes on {cc.target or cand.backend}"
    )
    worse, better = [], []
    # nodes left on the CPU, not nodes on the target: a runtime that fuses the graph into fewer nodes
    # (another onnxruntime under another SDK release) has fewer target nodes without losing any coverage
    base_off, cand_off = bc.total_nodes - bc.target_nodes, cc.total_nodes - cc.target_nodes
    if cand_off > base_off:
        worse.append(nodes)
    elif cand_off < base_off:
        better.append(nodes)
    elif cc.total_nodes != bc.total_nodes:
        report.inconclusive.append(
            _finding(
                key,
                "graph_changed",
                f"{nodes}: the runtime's graph changed size, none of it off the target",
                base,
                cand,
            )
        )
    if new_ops:
        fell = ", ".join(f"{op} x{cc.fallback_ops[op]}" for op in new_ops)
        reasons = [r for r in cc.reasons if any(op in r for op in new_ops)][:2]
        worse.append(f"new fallback op types {fell}" + (f" ({'; '.join(reasons)})" if reasons else ""))
    if gone_ops:
        better.append(f"no longer fall back: {', '.join(gone_ops)}")
    if worse:
        report.regressions.append(_finding(key, "coverage", "; ".join(worse), base, cand))
    if better and not worse:
        report.improvements.append(_finding(key, "coverage", "; ".join(better), base, cand))


def compare(
    baseline: Results,
    candidate: Results,
    threshold_pt: float = DEFAULT_THRESHOLD_PT,
    max_slowdown: float = DEFAULT_MAX_SLOWDOWN,
    baseline_path: Path | str = "baseline",
    candidate_path: Path | str = "candidate",
    sqnr_margin_db: float = DEFAULT_SQNR_MARGIN_DB,
    gate_emulator_latency: bool = False,
) -> GateReport:
    """Compare two loaded results cell by cell (see the module docstring for the rules).

    ``threshold_pt`` is in metric points (a drop is stored as a fraction, 0.01 =
    1 point); a slowdown of at least ``max_slowdown`` (a bucket factor, ``inf``
    never) is a regression when timed on a device, or on an emulator with
    ``gate_emulator_latency``; every change of at least 1.1x is reported. An SQNR
    change beyond ``sqnr_margin_db`` (see :func:`sqnr_margin_db`) is a finding.
    """
    if threshold_pt < 0:
        raise GateError(f"--threshold must be >= 0 points, got {threshold_pt}")
    if max_slowdown < 1:
        raise GateError(f"--max-slowdown must be a factor >= 1, got {max_slowdown}")
    if sqnr_margin_db < 0:
        raise GateError(f"--sqnr-margin must be >= 0 dB, got {sqnr_margin_db}")
    base_cells = _index(baseline, Path(baseline_path))
    cand_cells = _index(candidate, Path(candidate_path))
    report = GateReport(
        baseline=run_info(baseline, Path(baseline_path)),
        candidate=run_info(candidate, Path(candidate_path)),
        threshold_pt=threshold_pt,
        max_slowdown=max_slowdown,
        sqnr_margin_db=sqnr_margin_db,
        gate_emulator_latency=gate_emulator_latency,
    )
    report.only_in_baseline = sorted(base_cells[k].id for k in set(base_cells) - set(cand_cells))
    report.only_in_candidate = sorted(cand_cells[k].id for k in set(cand_cells) - set(base_cells))
    for key in sorted(set(base_cells) & set(cand_cells)):
        base, cand = base_cells[key], cand_cells[key]
        report.compared += 1
        changed_model = _model_change(key, base, cand)
        if changed_model is not None:  # different models: nothing here says anything about the SDK
            report.model_changed.append(changed_model)
            continue
        _compare_status(key, base, cand, report)
        _compare_fidelity(key, base, cand, report)
        _compare_accuracy(key, base, cand, report)
        _compare_coverage(key, base, cand, report)
        change = _latency_change(key, base, cand)
        if change is not None:
            report.latency.append(change)
            gated = gate_emulator_latency or not change.emulator
            if change.direction == "slower" and change.factor >= max_slowdown and gated:
                timed_on = "emulator time" if change.emulator else "device time"
                message = (
                    f"{change.factor:.2f}x slower ({change.bucket}, {timed_on}): {change.measure} "
                    f"{change.baseline:.4g} -> {change.candidate:.4g}"
                )
                report.regressions.append(_finding(key, "latency", message, base, cand))
    return report


def gate_files(
    baseline: Path,
    candidate: Path,
    threshold_pt: float = DEFAULT_THRESHOLD_PT,
    max_slowdown: float = DEFAULT_MAX_SLOWDOWN,
    sqnr_margin_db: float = DEFAULT_SQNR_MARGIN_DB,
    gate_emulator_latency: bool = False,
) -> GateReport:
    """Load two results files (clear :class:`~zoocompat.report.results.ResultsError` when either is bad) and compare."""
    return compare(
        load_results(baseline),
        load_results(candidate),
        threshold_pt,
        max_slowdown,
        baseline_path=baseline,
        candidate_path=candidate,
        sqnr_margin_db=sqnr_margin_db,
        gate_emulator_latency=gate_emulator_latency,
    )


# -- bisect over releases (--bisect) --------------------------------------------


def _release_order(sdk: str) -> tuple[int, ...] | None:
    """``qnn-2.49`` -> ``(2, 49)``; ``None`` for an id that is not a numbered QNN release."""
    parts = sdk.removeprefix("qnn-").split(".")
    return tuple(int(p) for p in parts) if sdk.startswith("qnn-") and all(p.isdigit() for p in parts) else None


def releases_between(baseline_sdk: str, candidate_sdk: str, releases: Iterable[str]) -> list[str]:
    """The ``releases`` strictly between the two, oldest first (either direction of the upgrade)."""
    low, high = sorted((_release_order(baseline_sdk) or (), _release_order(candidate_sdk) or ()))
    inside = [r for r in set(releases) if (order := _release_order(r)) is not None and low < order < high]
    inside.sort(key=lambda r: _release_order(r) or ())
    return inside if (_release_order(baseline_sdk) or ()) <= (_release_order(candidate_sdk) or ()) else inside[::-1]


def first_changed_release(releases: list[str], changed: Callable[[str], bool]) -> tuple[int, dict[str, bool]]:
    """Binary search for the first release that shows a change.

    ``releases[0]`` is the baseline's (unchanged by definition) and
    ``releases[-1]`` the candidate's (changed by definition); only the ones in
    between are tested, about ``log2(len(releases) - 2)`` of them. Returns the
    index of the first changed release and what each tested release showed.
    """
    seen: dict[str, bool] = {}
    good, bad = 0, len(releases) - 1
    while bad - good > 1:
        middle = (good + bad) // 2
        seen[releases[middle]] = changed(releases[middle])
        if seen[releases[middle]]:
            bad = middle
        else:
            good = middle
    return bad, seen


def bisect_regressions(
    report: GateReport,
    baseline: Results,
    candidate: Results,
    installed: Iterable[str],
    run_cell: Callable[[CellRecord, str], CellRecord],
    known: Iterable[str] = (),
) -> list[ReleaseBisect]:
    """For each regressed cell, rerun it on the installed releases between baseline and candidate.

    ``run_cell(record, sdk)`` runs the cell of ``record`` on release ``sdk``
    (through the matrix pipeline) and returns the new record; a release "shows
    the change" when comparing the baseline record with that record gives a
    regression of a kind the candidate showed. ``known`` lists every release
    id (installed or not), to say which to install when none is in between.
    """
    installed = list(installed)
    base_cells = {cell_key(c): c for c in baseline.cells}
    cand_cells = {cell_key(c): c for c in candidate.cells}
    kinds: dict[str, list[str]] = {}
    for finding in report.regressions:
        kinds.setdefault(finding.cell, [])
        if finding.kind not in kinds[finding.cell]:
            kinds[finding.cell].append(finding.kind)
    found = []
    for key, cell_kinds in kinds.items():
        base, cand = base_cells[key], cand_cells[key]
        base_sdk, cand_sdk = base.release, cand.release
        result = ReleaseBisect(key, cell_kinds, base_sdk, cand_sdk)
        found.append(result)
        if not base_sdk or not cand_sdk or base_sdk == cand_sdk:
            result.note = "the two runs used the same SDK release: nothing to bisect over releases"
            continue
        between = releases_between(base_sdk, cand_sdk, installed)
        if not between:
            missing = releases_between(base_sdk, cand_sdk, known)
            result.first_changed, result.last_unchanged = cand_sdk, base_sdk
            result.note = "no installed release between them" + (
                f"; install {', '.join(missing)} (zoocompat sdk install ID) to narrow it down" if missing else ""
            )
            continue

        def changed(
            sdk: str, base: CellRecord = base, kinds_seen: list[str] = cell_kinds, result: ReleaseBisect = result
        ) -> bool:
            record = run_cell(base, sdk)
            one = compare(
                Results(run=baseline.run, cells=[base]),
                Results(run=baseline.run, cells=[record]),
                report.threshold_pt,
                report.max_slowdown,
                sqnr_margin_db=report.sqnr_margin_db,
                gate_emulator_latency=report.gate_emulator_latency,
            )
            hits = [f for f in one.regressions if f.kind in kinds_seen]
            if one.model_changed:  # this machine built another model than the baseline's: no verdict
                result.tested[sdk] = f"not comparable: {one.model_changed[0].message}"
                return False
            result.tested[sdk] = (
                "; ".join(f"{f.kind}: {f.message}" for f in hits)
                if hits
                else f"same as the baseline ({record.status}{f', {record.category}' if record.category else ''})"
            )
            return bool(hits)

        chain = [base_sdk, *between, cand_sdk]
        index, _ = first_changed_release(chain, changed)
        result.first_changed, result.last_unchanged = chain[index], chain[index - 1]
    return found


# -- Markdown ------------------------------------------------------------------

KIND_LABEL = {
    "new_failure": "new failure",
    "new_failure_category": "new failure category",
    "accuracy": "accuracy",
    "fidelity": "fidelity",
    "fidelity_fixed": "fidelity fixed",
    "sqnr": "SQNR",
    "model_changed": "model changed",
    "coverage": "NPU coverage",
    "latency": "latency",
    "fixed": "fixed",
    "new_pass": "new pass",
    "known_failure": "known failure",
    "status": "status",
    "metric_missing": "metric missing",
    "metric_changed": "metric changed",
    "graph_changed": "graph size changed",
}
MAX_ROWS = 50


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _findings_table(findings: list[Finding]) -> list[str]:
    lines = ["| cell | what | change |", "|---|---|---|"]
    for f in findings[:MAX_ROWS]:
        lines.append(f"| `{f.cell}` | {KIND_LABEL.get(f.kind, f.kind)} | {_escape(f.message)} |")
    if len(findings) > MAX_ROWS:
        lines.append(f"| … | | {len(findings) - MAX_ROWS} more (see `--json`) |")
    return lines


def _run_line(label: str, info: dict[str, Any]) -> str:
    tools = info.get("tools", {})
    parts = [f"SDK {info.get('sdk') or 'installed'}"]
    if info.get("qnn_core_version"):
        parts.append(f"QNN core {info['qnn_core_version']}")
    if info.get("sdk_onnxruntime_qnn"):
        parts.append(f"onnxruntime-qnn {info['sdk_onnxruntime_qnn']} / onnxruntime {info.get('sdk_onnxruntime')}")
    elif tools.get("onnxruntime-qnn"):
        parts.append(f"onnxruntime-qnn {tools['onnxruntime-qnn']}")
    if tools.get("aimet-onnx"):
        parts.append(f"AIMET {tools['aimet-onnx']}")
    parts.append(f"{info.get('cells', 0)} cells")
    started = f" ({info['started']})" if info.get("started") else ""
    return f"- **{label}** `{info.get('path')}`: " + ", ".join(parts) + started


def render_markdown(report: GateReport) -> str:
    """A short summary for a CI comment: verdict, runs, regressions, improvements, latency, the rest folded."""
    if report.regressions:
        count = len(report.regressions)
        head = f"## ❌ zoocompat gate: {count} regression{'s' if count != 1 else ''}"
    else:
        head = "## ✅ zoocompat gate: no regression"
    lines = [head, ""]
    lines.append(_run_line("baseline", report.baseline))
    lines.append(_run_line("candidate", report.candidate))
    timed = "device and emulator time" if report.gate_emulator_latency else "device time only"
    lines.append(
        f"- {report.compared} cells compared (paired by id without the SDK suffix); accuracy threshold "
        f"{report.threshold_pt:g} pt, SQNR margin {report.sqnr_margin_db:g} dB, slowdown regression from "
        f"{bucket_label(report.max_slowdown).lstrip('>=')} ({timed})"
    )
    lines.append("")
    if report.model_changed:
        count = len(report.model_changed)
        lines += [
            f"### Model changed ({count}): not compared",
            "",
            "These pairs ran different model files (sha256 of the FP32 ONNX, QDQ model or encodings), so a "
            "difference says nothing about the SDK. Rerun both releases on the same machine and cache "
            "(one session, `--sdk BASELINE,CANDIDATE`), as each row says.",
            "",
            *_findings_table(report.model_changed),
            "",
        ]
    if report.regressions:
        lines += [f"### Regressions ({len(report.regressions)})", "", *_findings_table(report.regressions), ""]
    if report.improvements:
        lines += [f"### Improvements ({len(report.improvements)})", "", *_findings_table(report.improvements), ""]
    if report.latency:
        slower = [c for c in report.latency if c.direction == "slower"]
        faster = [c for c in report.latency if c.direction == "faster"]
        labels = [bucket_label(edge) for edge in LATENCY_BUCKETS]
        emulated = sum(1 for c in report.latency if c.emulator)
        lines += [f"### Latency ({len(slower)} slower, {len(faster)} faster)", ""]
        if emulated:
            policy = (
                "gated like device time (--gate-emulator-latency)"
                if report.gate_emulator_latency
                else "reported, not gated (--gate-emulator-latency gates it)"
            )
            lines += [f"Emulator time (the HTP emulator off-device, not a device), {emulated} of them: {policy}.", ""]
        lines += ["| bucket | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
        for name, group in (("slower", slower), ("faster", faster)):
            counts = [sum(1 for c in group if c.bucket == label) for label in labels]
            lines.append(f"| {name} | " + " | ".join(str(n) if n else "" for n in counts) + " |")
        lines += ["", "<details><summary>cells</summary>", ""]
        lines += ["| cell | change | measure | baseline | candidate |", "|---|---|---|---|---|"]
        ordered = sorted(report.latency, key=lambda c: (c.direction, -c.factor))
        for c in ordered[:MAX_ROWS]:
            factor = "∞" if math.isinf(c.factor) else f"{c.factor:.2f}x"
            measure = f"{c.measure} (emulator)" if c.emulator else c.measure
            values = f"{measure} | {c.baseline:.4g} | {c.candidate:.4g}"
            lines.append(f"| `{c.cell}` | {factor} {c.direction} | {values} |")
        lines += ["", "</details>", ""]
    folded = [
        ("Known failures now recorded", report.accepted),
        ("Inconclusive changes", report.inconclusive),
    ]
    for title, findings in folded:
        if findings:
            lines += [f"<details><summary>{title} ({len(findings)})</summary>", "", *_findings_table(findings)]
            lines += ["", "</details>", ""]
    if report.bisect is not None:
        lines += [f"### Bisect over SDK releases ({len(report.bisect)} regressed cells)", ""]
        if report.bisect:
            lines += ["| cell | first release with the change | last without | releases rerun | note |"]
            lines += ["|---|---|---|---|---|"]
        else:
            lines.append("No regressed cell: nothing to rerun.")
        for b in report.bisect:
            tested = "; ".join(f"{sdk}: {what}" for sdk, what in b.tested.items()) or "none"
            lines.append(
                f"| `{b.cell}` | {b.first_changed or '?'} | {b.last_unchanged or '?'} | {_escape(tested)} | "
                f"{_escape(b.note)} |"
            )
        lines.append("")
    one_side = (("Only in the baseline", report.only_in_baseline), ("Only in the candidate", report.only_in_candidate))
    for title, ids in one_side:
        if ids:
            shown = ", ".join(f"`{i}`" for i in ids[:MAX_ROWS]) + (" …" if len(ids) > MAX_ROWS else "")
            lines += [f"<details><summary>{title} ({len(ids)})</summary>", "", shown, "", "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"
