"""Which graph a repro shows, and measuring it: the planning half of ``zoocompat repro`` (writing: :mod:`.repro`).

- an op that fell back to the CPU: that op alone with its Q/DQ, run with CPU
  fallback disabled (the session fails to create = reproduced);
- a backend that computes something else (accuracy / fidelity, first bad layer
  from the cell's diagnosis): that layer alone with its Q/DQ, fed the values the
  full model gives it; when the layer alone agrees with the CPU, the prefix graph
  up to that layer;
- a quantization loss (the QDQ model far from FP32 on the CPU too): the QDQ prefix
  up to the first layer below the threshold, expected = the FP32 prefix's output;
- a crash or timeout: the whole model on one sample.

The graphs are cut with :mod:`zoocompat.diagnose.first_bad`. ``runner`` is a
:class:`~zoocompat.run.pipeline.CellRunner` and ``cell`` the
:class:`~zoocompat.run.matrix.Cell` of the record: the command that asks for a
repro builds both (the run stage sits above this one). onnx is imported inside
the functions.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoocompat.api.registry import registry
from zoocompat.api.samples import collect
from zoocompat.diagnose.first_bad import (
    activation_pairs,
    cpu_calls,
    declare_input_shapes,
    diagnose_failure,
    float_tensors,
    no_context_cache,
    prefix_model,
    region_model,
    run_cpu,
    with_outputs,
)
from zoocompat.diagnose.repro import DEFAULT_SAMPLES, ReproCase, ReproError
from zoocompat.report.results import CellRecord, LayerFinding
from zoocompat.verdict.stats import sqnr_db

__all__ = ["cut_and_feed", "feed_values", "plan_repro", "problem_kind"]

Graph = tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray]]  # (onnx.ModelProto, inputs, expected outputs)


def problem_kind(record: CellRecord) -> str:
    """Which repro a record calls for by default: ``crash``, ``fallback`` or ``numerics``.

    Raises :class:`ReproError` for a cell with nothing to reproduce.
    """
    if record.category in ("crash", "timeout"):
        return "crash"
    if record.category == "unsupported_op" or (record.coverage and record.coverage.fallback_ops):
        if record.category not in ("accuracy", "fidelity") or not record.diagnosis:
            return "fallback"
    if record.category in ("accuracy", "fidelity"):
        return "numerics"
    raise ReproError(
        f"{record.id} is {record.status}{f' ({record.category})' if record.category else ''}: it neither "
        "falls back, nor fails accuracy or fidelity, nor crashes; there is nothing to reproduce"
    )


def plan_repro(
    runner: Any,
    cell: Any,
    record: CellRecord,
    samples: int = DEFAULT_SAMPLES,
    workdir: Path | None = None,
    problem: str | None = None,
) -> ReproCase:
    """Work out the smallest graph that shows ``record``'s problem and measure it (backend runs included).

    ``cell`` is the record's :class:`~zoocompat.run.matrix.Cell`. ``problem``
    picks which of a cell's problems to show when it has several (``fallback``,
    ``numerics`` or ``crash``); by default it follows the cell's category
    (:func:`problem_kind`).
    """
    if cell.model not in runner.cards:
        raise ReproError(f"{record.id}: model {cell.model!r} is not in the zoo here; pass --zoo with its card folder")
    kind = problem or problem_kind(record)
    if kind == "numerics" and record.diagnosis is None and record.category not in ("accuracy", "fidelity"):
        raise ReproError(f"{record.id} has no diagnosis and did not fail accuracy or fidelity: no numerics repro")
    work = Path(workdir or tempfile.mkdtemp(prefix="zoocompat-repro-"))
    return _plan_case(runner, cell, record, kind, samples, work)


def feed_values(
    model: Any, feeds: list[str], batch: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]] | None = None
) -> dict[str, np.ndarray]:
    """Values of tensors ``feeds`` of ``model`` on ``batch`` (graph inputs straight from the batch), with the
    sample axis first as :func:`~zoocompat.api.samples.collect` merges them. ``shapes``, when given, is
    filled with each inner tensor's shape in one call (one sample), for :func:`cut_and_feed`.

    Raises :class:`ReproError` when a tensor's shape differs from sample to sample (one repro graph
    cannot be fed it; ``--samples 1`` can).
    """
    inner = [f for f in feeds if f not in batch]
    values: dict[str, np.ndarray] = {}
    if inner:
        names, calls = cpu_calls(with_outputs(model, inner), batch, optimize=False)
        for k, name in enumerate(names):
            seen = sorted({tuple(np.shape(call[k])) for call in calls})
            if len(seen) > 1:
                raise ReproError(
                    f"tensor {name!r} has a different shape per sample ({', '.join(map(str, seen[:4]))}): a cut "
                    "graph fed from the full model needs one shape; run repro with --samples 1"
                )
            if shapes is not None and seen:
                shapes[name] = seen[0]
        values = dict(zip(names, collect(calls), strict=True))
    return {f: (batch[f] if f in batch else values[f]) for f in feeds}


def cut_and_feed(model: Any, node_indices: Iterable[int], batch: dict[str, np.ndarray]) -> tuple[Any, dict]:
    """Nodes ``node_indices`` of ``model`` with their Q/DQ (:func:`~zoocompat.diagnose.first_bad.region_model`)
    and the values the full model feeds them on ``batch``; each input is declared with the shape it has in one
    call, so the cut model, the CPU run of it and the repro folder's script split the batch by its true rank
    (an intermediate tensor's first dim need not be a batch dim of 1: ViT's ``[16, C]`` tokens).
    """
    sub, feeds = region_model(model, node_indices)
    shapes: dict[str, tuple[int, ...]] = {}
    inputs = feed_values(model, feeds, batch, shapes)
    declare_input_shapes(sub, shapes)
    return sub, inputs


def _node_alone(model: Any, index: int, batch: dict[str, np.ndarray], path: Path) -> Graph:
    """Node ``index`` alone with its Q/DQ, fed what the full model gives it on ``batch``; saved to ``path``."""
    import onnx

    sub, inputs = cut_and_feed(model, [index], batch)
    onnx.save(sub, str(path))
    return sub, inputs, run_cpu(sub, inputs, optimize=False)


def _prefix(model: Any, tensor: str, batch: dict[str, np.ndarray], path: Path) -> Graph:
    """The graph up to ``tensor``, fed ``batch``, expected = its CPU run as written; saved to ``path``."""
    import onnx

    sub = prefix_model(model, [tensor])
    inputs = {i.name: batch[i.name] for i in sub.graph.input}
    onnx.save(sub, str(path))
    return sub, inputs, run_cpu(sub, inputs, optimize=False)


def _backend_sqnr(
    backend: Any,
    cell: Any,
    path: Path,
    inputs: dict[str, np.ndarray],
    expected: dict[str, np.ndarray],
    session_config: dict[str, str] | None = None,
) -> float:
    """Run ``path`` on the cell's backend and return its worst output SQNR against ``expected``."""
    with no_context_cache():
        compiled = backend.compile(Path(path), cell.precision, cell.sdk, Path(path).with_suffix(""))
        if session_config is not None:
            compiled.session_config = session_config
        outputs = compiled.run(inputs).outputs
    values = [sqnr_db(ref, outputs[name]) for name, ref in expected.items()]
    return min(float("inf") if v is None else v for v in values)


def _who(cell: Any) -> str:
    if cell.backend in registry().reference_backends():
        return "the CPU EP with its default optimizations (fused integer kernels)"
    return f"{cell.backend} ({cell.sdk or 'installed SDK'})"


def _db_words(found: LayerFinding) -> str:
    def db(value: float | None) -> str:
        return "identical" if value is None else f"{value:.2f} dB"

    return f"{db(found.sqnr_db)}; the layer before it: {db(found.previous_sqnr_db)}"


@dataclass
class Setup:
    """What every repro of a cell starts from: its model as it ran, an evaluation batch, its backend."""

    model: Any  # onnx.ModelProto: the QDQ model for a quantized cell, else the FP32 one
    model_path: Path
    fp32_path: Path
    batch: dict[str, np.ndarray]
    backend: Any
    ep: str
    common: dict[str, Any]  # the ReproCase fields every kind shares (cell, provider options, SDK, details)


def setup(runner: Any, cell: Any, record: CellRecord, samples: int, work: Path) -> Setup:
    """Load ``record``'s model (the files it ran when still there, else rebuilt) and its backend's settings."""
    import onnx

    card = runner.cards[cell.model]
    batch = {k: v[:samples] for k, v in runner.card_data(card).eval_batch().items()}
    # the files the cell ran when they are still there (the same bytes), else rebuilt through the pipeline
    recorded = {k: Path(v) for k, v in record.artifacts.items() if k in ("fp32_onnx", "qdq_onnx") and Path(v).is_file()}
    fp32_path = recorded.get("fp32_onnx") or runner.converted(card).onnx
    model_path = fp32_path
    if cell.quantized:
        model_path = recorded.get("qdq_onnx") or runner.quantized(card, cell.precision, cell.quant).qdq_onnx
    backend = runner.registry.get("backend", cell.backend)
    work.mkdir(parents=True, exist_ok=True)
    compiled = backend.compile(Path(model_path), cell.precision, cell.sdk, work / "runs")
    info = backend.describe(cell.sdk)  # a required member (zoocompat.api.Backend)
    options = getattr(compiled, "provider_options", {})
    common = dict(
        cell=record.id,
        provider_options={k: str(v) for k, v in options.items() if k != "backend_path"},
        session_config={k: str(v) for k, v in getattr(compiled, "session_config", {}).items()},
        sdk=cell.sdk or info.get("sdk"),
        qnn_core_version=info.get("qnn_core_version"),
        details=[f"cell status {record.status} ({record.category}): {record.reason[:400]}"],  # grows as it measures
    )
    model = onnx.load(str(model_path))
    return Setup(model, Path(model_path), Path(fp32_path), batch, backend, getattr(compiled, "ep", "cpu"), common)


def _plan_case(runner: Any, cell: Any, record: CellRecord, kind: str, samples: int, work: Path) -> ReproCase:
    """The :class:`~zoocompat.diagnose.repro.ReproCase` for ``record`` (see :func:`plan_repro`)."""
    import onnx

    ctx = setup(runner, cell, record, samples, work)
    model, model_path, batch, backend, ep = ctx.model, ctx.model_path, ctx.batch, ctx.backend, ctx.ep
    common, details, session_config = ctx.common, ctx.common["details"], ctx.common["session_config"]
    sub_path = work / "candidate.onnx"
    fed = f"fed the values the full model gives it on {samples} evaluation samples"

    if kind == "crash":
        inputs = {k: v[:1] for k, v in batch.items()}
        return ReproCase(
            kind=kind,
            model=model,
            inputs=inputs,
            expected=run_cpu(model, inputs),
            ep=ep,
            check="crash",
            threshold_db=0.0,
            observed=record.reason[:300],
            expected_from="cpu",
            what=f"the whole model ({len(model.graph.node)} nodes) on one sample",
            **common,
        )

    if kind == "fallback":
        reasons = list(record.coverage.reasons) if record.coverage else []
        ops = list(record.coverage.fallback_ops) if record.coverage and record.coverage.fallback_ops else []
        ops += [r.split(":", 1)[0].strip() for r in reasons if ":" in r]
        index = next((i for op in ops for i, n in enumerate(model.graph.node) if n.op_type == op), None)
        if index is None:
            raise ReproError(
                f"{record.id}: no node of the fallen-back op types {ops or '(none recorded)'} in {model_path}"
            )
        node = model.graph.node[index]
        sub, inputs, expected = _node_alone(model, index, batch, sub_path)
        strict = dict(session_config, **{"session.disable_cpu_ep_fallback": "1"})
        try:
            _backend_sqnr(backend, cell, sub_path, inputs, expected, strict)
            details.append(f"{node.op_type} {node.name!r} alone: the backend took it whole; NOT reproduced")
        except Exception as error:  # noqa: BLE001 - the expected outcome: the session refuses the node
            details.append(f"{node.op_type} {node.name!r} alone, CPU fallback disabled: {str(error)[:300]}")
        common["session_config"] = strict
        vendor = next((r for r in reasons if r.startswith(node.op_type)), "")
        return ReproCase(
            kind=kind,
            model=sub,
            inputs=inputs,
            expected=expected,
            ep=ep,
            check="fallback",
            threshold_db=0.0,
            observed=f"{node.op_type} fell back to the CPU. {vendor}".strip(),
            expected_from="cpu",
            what=f"the {node.op_type} node {node.name!r} alone with its Q/DQ, {fed}",
            **common,
        )

    diagnosis = record.diagnosis or diagnose_failure(runner, cell, record, max(samples, 4))
    if diagnosis is None:
        raise ReproError(f"{record.id}: no diagnosis (set ZOOCOMPAT_DIAGNOSE_SAMPLES > 0)")
    found = diagnosis.backend if diagnosis.backend and diagnosis.backend.first_bad_tensor else None
    if found is not None:
        pairs = activation_pairs(model) if cell.quantized else float_tensors(model)
        pair = next(p for p in pairs if p.qdq == found.first_bad_tensor)
        threshold = found.threshold_db
        graph, what = None, ""
        if pair.index >= 0:  # the layer alone first: the smallest graph, when it shows the problem by itself
            graph = _node_alone(model, pair.index, batch, sub_path)
            alone = _backend_sqnr(backend, cell, sub_path, graph[1], graph[2])
            details.append(
                f"{pair.op_type} {pair.layer!r} alone with its Q/DQ on {_who(cell)}: {alone:.2f} dB vs the reference"
            )
            what = f"the {pair.op_type} node {pair.layer!r} alone with its Q/DQ, {fed}"
            graph = graph if alone < threshold else None
        if graph is None:  # else the prefix up to it: what the bisection measured
            graph = _prefix(model, pair.qdq, batch, sub_path)
            prefix_db = _backend_sqnr(backend, cell, sub_path, graph[1], graph[2])
            nodes = len(graph[0].graph.node)
            details.append(
                f"prefix up to {pair.layer!r} ({nodes} nodes) on {_who(cell)}: {prefix_db:.2f} dB vs the reference"
            )
            what = f"the graph up to {pair.op_type} {pair.layer!r} ({nodes} nodes)"
        sub, inputs, expected = graph
        return ReproCase(
            kind="backend",
            model=sub,
            inputs=inputs,
            expected=expected,
            ep=ep,
            check="sqnr_below",
            threshold_db=threshold,
            observed=f"{_who(cell)} vs the QDQ reference (CPU EP, graph optimizations off): first layer below "
            f"{threshold:.0f} dB is {pair.op_type} {pair.layer!r} ({_db_words(found)})",
            expected_from="cpu",
            what=what,
            **common,
        )

    found = diagnosis.quantization if diagnosis.quantization and diagnosis.quantization.first_bad_tensor else None
    if found is None:
        raise ReproError(f"{record.id}: the diagnosis names no layer below its threshold: {diagnosis.summary}")
    fp32 = onnx.load(str(ctx.fp32_path))
    pair = next(p for p in activation_pairs(model, [found.first_bad_tensor]) if p.fp32 == found.first_bad_tensor)
    sub, inputs, quantized = _prefix(model, pair.qdq, batch, sub_path)
    reference = run_cpu(with_outputs(fp32, [pair.fp32]), inputs, optimize=False)[pair.fp32]
    measured = sqnr_db(reference, quantized[pair.qdq])
    details.append(
        f"QDQ prefix up to {pair.layer!r} ({len(sub.graph.node)} nodes) on the CPU EP vs FP32: {measured} dB"
    )
    common.update(provider_options={}, session_config={}, optimize=False)
    return ReproCase(
        kind="quantization",
        model=sub,
        inputs=inputs,
        expected={pair.qdq: reference},
        ep="cpu",
        check="sqnr_below",
        threshold_db=found.threshold_db,
        observed=f"the QDQ model on the CPU EP vs FP32: first layer below {found.threshold_db:.0f} dB is "
        f"{pair.op_type} {pair.layer!r} ({_db_words(found)})",
        expected_from="fp32",
        what=f"the QDQ graph up to {pair.op_type} {pair.layer!r} ({len(sub.graph.node)} nodes); "
        "expected.npz holds the FP32 model's value of that tensor",
        **common,
    )
