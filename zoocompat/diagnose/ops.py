"""Per-op support tables: single-op probes run on a backend, like SNPE's "Supported Network Layers".

For every probe (``plugins/op_probes.py``: one ONNX op with real attributes
and static shapes) and every precision, the probe is built, quantized to QDQ
for the integer precisions, compiled and run by the backend plugin in its
runner process (a vendor crash or hang marks that probe only), and judged:

- ``supported``: every node of the probe was placed on the target and it ran;
  the output's SQNR against onnxruntime CPU running the same model is recorded;
- ``unsupported``: some node fell back to the CPU; the vendor's reasons are kept;
- ``error``: quantizing, compiling or running failed; the message is kept.

Each result is cached per (probe definition hash, precision, backend, SDK,
backend settings such as ``htp_arch``) in the artifact cache, so a re-run only
probes what changed. Rendering (Markdown) and comparing two tables (an SDK
upgrade) are plain Python over the JSON. This module imports no ML framework
at import time; probing imports ``zoocompat.diagnose.op_probes`` (onnx, onnxruntime) when called.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from zoocompat.api import Placement
from zoocompat.api.cache import ArtifactCache, key_of
from zoocompat.api.errors import CellError
from zoocompat.api.protocols import optional
from zoocompat.diagnose import op_probes
from zoocompat.verdict.stats import sqnr_db

__all__ = [
    "VERDICTS",
    "classify",
    "diff_tables",
    "probe_once",
    "render_diff_markdown",
    "render_markdown",
    "run_ops",
]

VERDICTS = ("supported", "unsupported", "error")
QUANTIZED = ("w8a8", "w8a16")
CACHE_STAGE = "op_probes"
RESULT_NAME = "result.json"
PROBE_TIMEOUT_S = 180.0
#: a supported probe whose output is further than this from the CPU run of the same model gets a note
MISMATCH_DB = 20.0
#: a diff lists a probe supported in both tables whose SQNR moved by this much
FIDELITY_SHIFT_DB = 10.0
EVAL_SAMPLES = 1
_FORMAT = 3  # bump when a cached result's meaning changes (3: outputs without a batch dim of 1 compared)
_LOG_PATH = re.compile(r";? log: \S+$")
_MARK = {
    "supported": "✅",
    "unsupported": "❌",
    "error": "⚠️ error",
    # the corpus's verdicts (zoocompat/diagnose/corpus.py)
    "on_target": "✅",
    "fallback": "❌",
    "wrong_output": "⚠️ wrong",
    "unsupported_dtype": "🚫 dtype",
}
#: how bad a verdict is, for diffs: a move to a higher rank is a regression, to a lower one an improvement
RANK = {
    "supported": 0,
    "on_target": 0,
    "unsupported": 1,
    "fallback": 1,
    "wrong_output": 2,
    "unsupported_dtype": 3,
    "error": 3,
}


def classify(placement: Placement) -> tuple[str, list[str]]:
    """Verdict and reasons of a probe that compiled and ran, from its node placement.

    Any node left on the CPU (graph-input Q / graph-output DQ excepted: they
    are the runtime's I/O conversion) makes the probe ``unsupported``; a probe
    with no node on the target at all is ``unsupported`` too, even when the
    log names no reason.
    """
    if placement.fallback_ops:
        return "unsupported", list(placement.reasons)
    if placement.target_nodes == 0:
        return "unsupported", [f"no node was placed on {placement.target}"]
    return "supported", []


def _compare(reference: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    """SQNR (float outputs, worst one) and exact agreement (integer/bool outputs) against the CPU run."""
    import numpy as np

    worst: float | None = None
    agreement: float | None = None
    notes = []
    identical = True
    for name, ref in reference.items():
        got = outputs.get(name)
        if got is None or got.shape != ref.shape:
            notes.append(f"output {name} has shape {None if got is None else list(got.shape)}, CPU {list(ref.shape)}")
            identical = False
            continue
        if not np.array_equal(ref, got):
            identical = False
        if np.issubdtype(ref.dtype, np.floating):
            if not np.isfinite(got).all():
                notes.append(f"output {name} holds NaN/Inf")
            value = sqnr_db(ref, got)
            if value is not None:
                worst = value if worst is None else min(worst, value)
        else:
            share = float(np.mean(ref == got)) if ref.size else 1.0
            agreement = share if agreement is None else min(agreement, share)
    return {
        "sqnr_db": None if worst is None else round(worst, 2),
        "agreement": agreement,
        "identical": identical,
        "notes": notes,
    }


def _count_quantize_nodes(path: Path) -> int:
    import onnx

    return sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(path)).graph.node)


def probe_once(probe: Any, precision: str, backend: Any, sdk: str | None, workdir: Path) -> dict[str, Any]:
    """Build, quantize (integer precisions), compile and run one probe; return its result record.

    Never raises for a probe's own failure: quantize, compile and run errors
    become an ``error`` record with the message. ``workdir`` keeps the models
    and the runner log.
    """
    start = time.perf_counter()
    record: dict[str, Any] = {"probe": probe.name, "op": probe.op, "opset": probe.opset, "precision": precision}
    workdir.mkdir(parents=True, exist_ok=True)
    model_path = workdir / "model.onnx"
    model_path.write_bytes(op_probes.build_model(probe).SerializeToString())
    inputs = op_probes.make_inputs(probe, EVAL_SAMPLES)
    notes: list[str] = []
    stage = "quantize"
    try:
        if precision in QUANTIZED:
            model_path = op_probes.quantize_probe(
                model_path, precision, op_probes.calibration_samples(probe), workdir / "model_qdq.onnx"
            )
            record["quantize_nodes"] = _count_quantize_nodes(model_path)
            if not record["quantize_nodes"]:
                notes.append("no float tensor to quantize: the QDQ model is the float model")
        elif precision not in ("fp32", "fp16"):
            raise ValueError(f"op probes have no recipe for precision {precision!r}")
        stage = "reference"
        reference = op_probes.cpu_reference(model_path, inputs)
        stage = "compile"
        compiled = compile_capped(backend, model_path, precision, sdk, workdir)
        stage = "run"
        result = compiled.run(inputs)
    except Exception as error:  # a backend's CellError, or the quantizer or CPU reference failing on this op
        record.update(failure(stage, error))
    else:
        verdict, reasons = classify(result.placement)
        comparison = _compare(reference, result.outputs)
        record.update(
            verdict=verdict,
            reasons=reasons + comparison.pop("notes") + notes,
            target_nodes=result.placement.target_nodes,
            total_nodes=result.placement.total_nodes,
            fallback_ops=result.placement.fallback_ops,
            compile_s=round(result.compile_s, 3),
            **comparison,
        )
    return finish(record, workdir, start)


def compile_capped(backend: Any, model_path: Path, precision: str, sdk: str | None, workdir: Path) -> Any:
    """``backend.compile`` of a probe or corpus case into ``workdir/run``, its run capped at
    :data:`PROBE_TIMEOUT_S` (a model without a limit the core can change runs as it is).
    """
    compiled = backend.compile(model_path, precision, sdk, workdir / "run")
    limit = optional(compiled, "timeout_s")
    if limit is not None:
        compiled.timeout_s = min(limit, PROBE_TIMEOUT_S)
    return compiled


def finish(record: dict[str, Any], workdir: Path, start: float) -> dict[str, Any]:
    """``record`` with its time since ``start``, the bulky sample files of ``workdir`` removed."""
    for bulky in workdir.rglob("*.npz"):
        bulky.unlink()
    record["seconds"] = round(time.perf_counter() - start, 3)
    return record


def failure(stage: str, error: Exception) -> dict[str, Any]:
    """The ``error`` verdict of a probe or case that failed at ``stage``, with its one-line reason."""
    if isinstance(error, CellError):
        message = _LOG_PATH.sub("", error.message)  # the runner log is kept in the cache entry as run/runner.log
        return {"verdict": "error", "category": error.category, "reasons": [_short(message)]}
    return {"verdict": "error", "category": stage, "reasons": [f"{stage}: {type(error).__name__}: {_short(error)}"]}


#: what makes two messages of the same failure differ: scratch folders and random tensor names
_NOISE = (
    (re.compile(r"/tmp/[\w.\-]+/"), ""),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<tensor>"),
)


def _short(message: Any, limit: int = 600) -> str:
    text = " ".join(str(message).split())
    for pattern, replacement in _NOISE:
        text = pattern.sub(replacement, text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Uncached(Exception):
    """A result not worth caching (a timeout may pass on a quieter machine)."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(record.get("verdict"))
        self.record = record


def run_one(
    cache: ArtifactCache,
    definition: str,
    label: str,
    precision: str,
    backend: Any,
    identity: dict[str, Any],
    once: Callable[[Path], dict[str, Any]],
    use_cache: bool,
    version: int = _FORMAT,
) -> tuple[dict[str, Any], bool]:
    """``once(workdir)`` (one probe or corpus case at ``precision``) through the cache, and whether it hit.

    The key holds the record format ``version``, the subject's ``definition`` hash, the precision, the
    backend and ``identity`` (SDK id, backend settings). A timeout is returned but not cached: it may pass
    on a quieter machine. Without ``use_cache`` it runs afresh in a scratch folder named after ``label``.
    """
    if not use_cache:
        scratch = cache.root / CACHE_STAGE / ".scratch" / key_of(label, precision)
        shutil.rmtree(scratch, ignore_errors=True)
        return once(scratch), False
    key = key_of(CACHE_STAGE, version, definition, precision, backend.name, identity)
    done = cache.root / CACHE_STAGE / key / RESULT_NAME
    if done.is_file():
        try:
            return json.loads(done.read_text()), True
        except ValueError:
            pass  # a damaged entry: the cache rebuilds it below

    def build(tmp: Path) -> None:
        record = once(tmp)
        if record.get("category") == "timeout":
            raise _Uncached(record)
        (tmp / RESULT_NAME).write_text(json.dumps(record, indent=1))

    try:
        folder = cache.entry(CACHE_STAGE, key, build)
    except _Uncached as uncached:
        return uncached.record, False
    return json.loads((folder / RESULT_NAME).read_text()), False


def new_table(backend: Any, sdk: str | None, precisions: list[str], verdicts: tuple[str, ...]) -> dict[str, Any]:
    """An empty table: ``ops`` (row -> precision -> verdict) and its side grids, for ``verdicts``."""
    return {
        "ops": {},
        "backend": backend.name,
        "sdk": sdk,
        "reasons": {},
        "sqnr_db": {},
        "agreement": {},
        "probes": {},
        "summary": {p: dict.fromkeys(verdicts, 0) for p in precisions},
    }


def add_record(table: dict[str, Any], row: str, precision: str, record: dict[str, Any], good: str) -> None:
    """Enter one result into ``table``: its verdict, reasons and (for the ``good`` verdict) its fidelity."""
    verdict = record["verdict"]
    table["ops"].setdefault(row, {})[precision] = verdict
    table["summary"][precision][verdict] += 1
    reasons = list(record.get("reasons") or []) + _mismatch(record)
    if reasons:
        table["reasons"].setdefault(row, {})[precision] = reasons
    if verdict == good:
        table["sqnr_db"].setdefault(row, {})[precision] = "exact" if record.get("identical") else record.get("sqnr_db")
        if record.get("agreement") is not None:
            table["agreement"].setdefault(row, {})[precision] = record["agreement"]


def run_facts(
    info: dict[str, Any], precisions: list[str], rows: int, hits: int, started: float, seconds: float
) -> dict[str, Any]:
    """The table's ``run`` block: what ran where, how much came from the cache, how long it took."""
    return {
        "backend_info": info,
        "precisions": precisions,
        "probes": rows,
        "results": rows * len(precisions),
        "cached": hits,
        "seconds": round(time.time() - started, 1),
        "probe_seconds": round(seconds, 1),
        "quantizer": op_probes.QUANTIZER,
        "eval_samples": EVAL_SAMPLES,
        "host": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
    }


def identity_of(backend: Any, sdk: str | None) -> tuple[dict[str, Any], str | None, dict[str, Any]]:
    """``(backend info, SDK id, cache identity)`` of ``backend`` under ``sdk``."""
    info = backend.describe(sdk)
    sdk_id = sdk or info.get("sdk")
    return info, sdk_id, {"sdk": sdk_id, **{k: v for k, v in info.items() if k != "runtime"}}


def run_ops(
    backend: Any,
    sdk: str | None,
    precisions: Iterable[str],
    probe_names: list[str] | None = None,
    cache: ArtifactCache | None = None,
    progress: Callable[[str], None] | None = None,
    use_cache: bool = True,
) -> dict[str, Any]:
    """Probe every (probe, precision) on ``backend`` and return the ops table as JSON-ready data.

    ``{"ops": {probe: {precision: verdict}}, "backend", "sdk", "reasons":
    {probe: {precision: [...]}}, "sqnr_db": {probe: {precision: dB or "exact"}},
    "agreement": {probe: {precision: share of equal elements}} (integer/bool outputs), "probes":
    {probe: {op, opset}}, "summary": {precision: {verdict: count}}, "run": {...}}``.
    Raises ``KeyError`` for an unknown probe name.
    """
    probes = op_probes.by_name(probe_names)
    precisions = list(precisions)
    cache = cache or ArtifactCache()
    info, sdk_id, identity = identity_of(backend, sdk)
    started = time.time()
    table = new_table(backend, sdk_id, precisions, VERDICTS)
    hits = 0
    probe_seconds = 0.0
    total = len(probes) * len(precisions)
    for probe in probes:
        table["probes"][probe.name] = {"op": probe.op, "opset": probe.opset}
        if len(probe.nodes) > 1:  # a pattern: every op it holds, for holding model findings against it
            table["probes"][probe.name]["ops"] = sorted({node.op for node in probe.nodes})
        definition = op_probes.definition_hash(probe)
        for precision in precisions:
            record, hit = run_one(
                cache,
                definition,
                probe.name,
                precision,
                backend,
                identity,
                lambda workdir, probe=probe, precision=precision: probe_once(probe, precision, backend, sdk, workdir),
                use_cache,
            )
            hits += hit
            probe_seconds += float(record.get("seconds") or 0.0)
            add_record(table, probe.name, precision, record, "supported")
            if progress:
                done = sum(len(v) for v in table["ops"].values())
                cached = " (cached)" if hit else f" ({record['seconds']:.1f} s)"
                progress(f"[{done:>3}/{total}] {probe.name} {precision}: {record['verdict']}{cached}")
    table["run"] = run_facts(info, precisions, len(probes), hits, started, probe_seconds)
    return table


def _escape(text: str) -> str:
    """Text safe inside a Markdown table cell or footnote."""
    return text.replace("|", "\\|")


def _host(host: dict[str, Any]) -> str | None:
    if not host.get("platform"):
        return None
    return f"{host['platform']}, {host.get('cpus')} CPUs visible, Python {host.get('python')}"


def _timing(run: dict[str, Any]) -> str:
    text = f"{run['seconds']} s for {run.get('results')} probe runs ({run.get('cached')} from the cache)"
    if run.get("cached") and run.get("probe_seconds"):
        text += f"; probing them took {run['probe_seconds']} s in all (sum of the per-probe times, build to verdict)"
    return text


def _mismatch(record: dict[str, Any]) -> list[str]:
    """A note for a probe that runs on the target but computes something else than the CPU."""
    sqnr, agreement = record.get("sqnr_db"), record.get("agreement")
    if record.get("verdict") != "supported":
        return []
    if sqnr is not None and sqnr < MISMATCH_DB:
        return [f"runs, but the output disagrees with onnxruntime CPU on the same model: SQNR {sqnr:.1f} dB"]
    if agreement is not None and agreement < 0.99:
        return [f"runs, but only {agreement:.1%} of the output elements equal onnxruntime CPU's"]
    return []


def _cell(table: dict[str, Any], probe: str, precision: str, notes: dict[str, int]) -> str:
    verdict = table["ops"].get(probe, {}).get(precision)
    if verdict is None:
        return "–"
    text = _MARK[verdict]
    if verdict == "supported":
        sqnr = table.get("sqnr_db", {}).get(probe, {}).get(precision)
        agreement = table.get("agreement", {}).get(probe, {}).get(precision)
        if isinstance(sqnr, (int, float)):
            text += f" {sqnr:.0f} dB" if sqnr >= MISMATCH_DB else f" ⚠️ {sqnr:.0f} dB"
        elif sqnr == "exact":
            text += " exact"
        elif agreement is not None:
            text += f" {agreement:.1%} equal"
    return text + footnotes(table, probe, precision, notes)


def footnotes(table: dict[str, Any], row: str, precision: str, notes: dict[str, int]) -> str:
    """`` [^1][^2]`` for the reasons of one cell, numbering new reasons in ``notes``."""
    reasons = table.get("reasons", {}).get(row, {}).get(precision, [])
    refs = [notes.setdefault(reason, len(notes) + 1) for reason in reasons]
    return " " + "".join(f"[^{n}]" for n in refs) if refs else ""


def fact_lines(table: dict[str, Any], command: str | None = None) -> list[str]:
    """The bullet list heading a table: backend, SDK, runtime versions, host, time and command."""
    run = table.get("run", {})
    info = run.get("backend_info", {})
    facts = [
        ("backend", table["backend"]),
        ("SDK", table.get("sdk")),
        ("runtime", info.get("runtime")),
        ("QNN core", info.get("qnn_core_version")),
        ("onnxruntime-qnn", info.get("onnxruntime_qnn")),
        ("onnxruntime", info.get("onnxruntime")),
        ("htp_arch / soc_model", f"{info['htp_arch']} / {info.get('soc_model')}" if info.get("htp_arch") else None),
        ("quantization (w8a8, w8a16)", run.get("quantizer")),
        ("host", _host(run.get("host") or {})),
        ("started", run.get("started")),
        ("time", _timing(run)) if "seconds" in run else None,
        ("command", f"`{command}`" if command else None),
    ]
    return [f"- {name}: {value}" for item in facts if item for name, value in [item] if value]


def summary_lines(table: dict[str, Any], precisions: list[str], verdicts: Iterable[str]) -> list[str]:
    """The verdict counts per precision as a small Markdown table (nothing when the table has none)."""
    summary = table.get("summary") or {}
    if not summary:
        return []
    lines = ["| | " + " | ".join(precisions) + " |", "|---|" + "---|" * len(precisions)]
    for verdict in verdicts:
        lines.append(f"| {verdict} | " + " | ".join(str(summary.get(p, {}).get(verdict, 0)) for p in precisions) + " |")
    return lines + [""]


def note_lines(notes: dict[str, int]) -> list[str]:
    """The footnotes collected while rendering cells."""
    if not notes:
        return []
    return [""] + [f"[^{number}]: {_escape(reason)}" for reason, number in notes.items()]


def render_markdown(table: dict[str, Any], title: str | None = None, command: str | None = None) -> str:
    """The ops table as Markdown: one row per probe, one column per precision, reasons as footnotes."""
    run = table.get("run", {})
    precisions = run.get("precisions") or sorted({p for row in table["ops"].values() for p in row})
    lines = [f"# {title or 'Op support: ' + table['backend'] + ' on ' + str(table.get('sdk'))}", ""]
    lines += fact_lines(table, command)
    lines += [
        "",
        "✅ every node on the target and it ran (dB: output SQNR against onnxruntime CPU running the same model, "
        "the same QDQ model for quantized precisions; `exact`: bit-identical; `% equal`: integer or boolean "
        f"outputs; ⚠️ before the dB: below {MISMATCH_DB:.0f} dB, the op computes something else) · ❌ falls back to "
        "the CPU (vendor's reason in the note) · ⚠️ error: quantize, compile or run failed (message in the note).",
        "",
    ]
    lines += summary_lines(table, precisions, VERDICTS)
    lines += [
        "| probe | ONNX op | opset | " + " | ".join(precisions) + " |",
        "|---|---|---|" + "---|" * len(precisions),
    ]
    notes: dict[str, int] = {}
    for probe in table["ops"]:
        meta = table.get("probes", {}).get(probe, {})
        cells = " | ".join(_cell(table, probe, p, notes) for p in precisions)
        lines.append(f"| {probe} | {meta.get('op', '')} | {meta.get('opset', '')} | {cells} |")
    lines += note_lines(notes)
    return "\n".join(lines) + "\n"


def diff_tables(
    before: dict[str, Any], after: dict[str, Any], models: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """What changed between two ops tables (e.g. two SDK releases) per (probe, precision).

    Returns ``{"before", "after", "regressions", "improvements", "changed", "added",
    "removed", "fidelity", "unchanged"}``. A regression is a verdict that got worse
    (by :data:`RANK`: supported, then unsupported, then error), an improvement one that
    got better, a change one of the same rank (an error that became an unsupported dtype);
    each carries both tables' reasons. ``fidelity`` lists probes
    supported in both whose output SQNR moved by ``FIDELITY_SHIFT_DB`` or more.

    ``models``: the gate's coverage regressions of whole models between the same two releases, each with
    the probe rows that explain it (``zoocompat.gate.agreement.explain``); they are kept as ``models``, and
    those no probe explains are the diff's ``seen only in models``.
    """
    result: dict[str, Any] = {
        "before": {"backend": before.get("backend"), "sdk": before.get("sdk")},
        "after": {"backend": after.get("backend"), "sdk": after.get("sdk")},
        "regressions": [],
        "improvements": [],
        "changed": [],
        "added": [],
        "removed": [],
        "fidelity": [],
        "unchanged": 0,
    }
    if models is not None:
        result["models"] = models
    a_ops, b_ops = before.get("ops", {}), after.get("ops", {})
    for probe in list(a_ops) + [p for p in b_ops if p not in a_ops]:
        a_row, b_row = a_ops.get(probe, {}), b_ops.get(probe, {})
        for precision in list(a_row) + [p for p in b_row if p not in a_row]:
            old, new = a_row.get(precision), b_row.get(precision)
            entry = {"probe": probe, "precision": precision, "before": old, "after": new}
            if old is None:
                result["added"].append(entry)
            elif new is None:
                result["removed"].append(entry)
            elif old == new:
                result["unchanged"] += 1
                shift = _sqnr_shift(before, after, probe, precision)
                if shift:
                    result["fidelity"].append({**entry, **shift})
            else:
                entry["reasons_before"] = before.get("reasons", {}).get(probe, {}).get(precision, [])
                entry["reasons_after"] = after.get("reasons", {}).get(probe, {}).get(precision, [])
                worse = RANK.get(new, 9) - RANK.get(old, 9)
                key = "regressions" if worse > 0 else "improvements" if worse < 0 else "changed"
                result[key].append(entry)
    return result


def _sqnr_shift(before: dict[str, Any], after: dict[str, Any], probe: str, precision: str) -> dict[str, Any]:
    """SQNRs of a probe supported in both tables when they moved by ``FIDELITY_SHIFT_DB`` or more."""
    a = before.get("sqnr_db", {}).get(probe, {}).get(precision)
    b = after.get("sqnr_db", {}).get(probe, {}).get(precision)
    if a is None or b is None or a == b:
        return {}
    level = {"exact": 200.0}
    if abs(level.get(a, a) - level.get(b, b)) < FIDELITY_SHIFT_DB:
        return {}
    return {"sqnr_before": a, "sqnr_after": b}


def render_diff_markdown(diff: dict[str, Any], title: str | None = None, row: str = "probe") -> str:
    """A diff of two ops (or corpus) tables as Markdown; ``row`` names what a row is (a probe, a case)."""
    a = f"{diff['before']['backend']} {diff['before']['sdk']}"
    b = f"{diff['after']['backend']} {diff['after']['sdk']}"
    lines = [
        f"# {title or 'Op support changes'}: {a} → {b}",
        "",
        f"{len(diff['regressions'])} regressions, {len(diff['improvements'])} improvements, "
        + (f"{len(diff['changed'])} changed to another verdict as bad, " if diff.get("changed") else "")
        + f"{diff['unchanged']} unchanged ({len(diff.get('fidelity', []))} of them with an output SQNR shift of "
        f"{FIDELITY_SHIFT_DB:.0f} dB or more), {len(diff['added'])} added, {len(diff['removed'])} removed.",
    ]
    for key, title in (("regressions", "Regressions"), ("improvements", "Improvements"), ("changed", "Changed")):
        if not diff.get(key):
            continue
        lines += ["", f"## {title}", "", f"| {row} | precision | {a} | {b} | reason on the worse side |"]
        lines.append("|---|---|---|---|---|")
        for e in diff[key]:
            sides = [e.get("reasons_after"), e.get("reasons_before")]
            reason = "; ".join((sides[::-1] if key == "improvements" else sides)[0] or [])
            lines.append(f"| {e['probe']} | {e['precision']} | {e['before']} | {e['after']} | {_escape(reason)} |")
    if diff.get("fidelity"):
        lines += ["", "## Output SQNR shifts (supported in both)", "", f"| {row} | precision | {a} | {b} |"]
        lines.append("|---|---|---|---|")
        for e in diff["fidelity"]:
            shown = [v if v == "exact" else f"{v} dB" for v in (e["sqnr_before"], e["sqnr_after"])]
            lines.append(f"| {e['probe']} | {e['precision']} | {shown[0]} | {shown[1]} |")
    if "models" in diff:
        lines += _model_lines(diff["models"])
    for key, title in (("added", "Only in the second table"), ("removed", "Only in the first table")):
        if diff[key]:
            lines += ["", f"## {title}", ""] + [f"- {e['probe']} {e['precision']}" for e in diff[key]]
    return "\n".join(lines) + "\n"


def _model_lines(models: list[dict[str, Any]]) -> list[str]:
    """The diff's sections on whole models: their coverage regressions, explained by probes or seen only there."""
    alone = [m for m in models if not m.get("explained_by")]
    lines = ["", "## Seen only in models", ""]
    if alone:
        lines += [
            "Coverage regressions the gate found in cells of the zoo that no probe regression explains:",
            "",
            "| cell | precision | ops newly on the CPU |",
            "|---|---|---|",
        ]
        lines += [f"| `{m['cell']}` | {m['precision']} | {', '.join(m['ops'])} |" for m in alone]
    else:
        lines.append(
            f"None: each of the {len(models)} coverage regressions the gate found in the zoo's cells is a "
            "regression of a probe (table below)."
            if models
            else "None: the gate found no coverage regression in the zoo's cells."
        )
    explained = [m for m in models if m.get("explained_by")]
    if explained:
        lines += ["", "| cell | precision | ops newly on the CPU | probe regressions that show it |"]
        lines.append("|---|---|---|---|")
        lines += [
            f"| `{m['cell']}` | {m['precision']} | {', '.join(m['ops'])} | {', '.join(m['explained_by'])} |"
            for m in explained
        ]
    return lines
