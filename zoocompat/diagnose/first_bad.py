"""The ONNX side of first-bad-layer diagnostics (the pure logic is in :mod:`zoocompat.diagnose.layers`).

- :func:`activation_pairs` maps the tensors of a QDQ model back to the FP32
  tensors they stand for: the output of the DequantizeLinear that follows the
  QuantizeLinear of tensor ``t`` is ``t`` in the QDQ model.
- :func:`fp32_vs_qdq` runs both models on the CPU EP with every paired tensor
  exposed as a graph output (graph optimizations off, so each tensor exists as
  named) and measures each pair's SQNR over a few samples.
- :func:`prefix_model` cuts a graph after a tensor (its backward slice, with the
  nodes' real attributes, initializers and Q/DQ); :func:`node_model` cuts one
  node out with the Q/DQ around it. :func:`backend_vs_cpu` bisects prefixes on
  a backend against the CPU EP.
- :func:`diagnose_failure` (what the pipeline calls for a failed cell) runs
  both measurements through :func:`diagnose_cell` and never raises.

onnx and onnxruntime are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoocompat.api.samples import collect, count, sample, session_ranks
from zoocompat.diagnose.layers import (
    BACKEND_THRESHOLD_DB,
    QDQ_THRESHOLD_DB,
    bisect_first_bad,
    diagnosis_samples,
    first_below,
    should_diagnose,
    summarize,
    trim_layers,
)
from zoocompat.report.results import CellRecord, Diagnosis, LayerFinding, LayerSqnr
from zoocompat.verdict.stats import sqnr_db

__all__ = [
    "TensorPair",
    "activation_pairs",
    "backend_vs_cpu",
    "cpu_calls",
    "declare_input_shapes",
    "diagnose_cell",
    "diagnose_failure",
    "float_tensors",
    "fp32_vs_qdq",
    "no_context_cache",
    "node_model",
    "prefix_model",
    "run_cpu",
    "with_outputs",
]

_FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


@dataclass
class TensorPair:
    """A tensor of the QDQ (or FP32) model and the FP32 tensor it stands for."""

    index: int  # index of the producing node in the graph (-1: a graph input)
    layer: str  # producing node's name (the graph input's name for an input)
    op_type: str
    qdq: str  # tensor name in the model being measured
    fp32: str | None  # tensor name in the FP32 model, None when it has no counterpart
    quantized: bool  # qdq is a DequantizeLinear output that follows a QuantizeLinear


def _load(model: Any) -> Any:
    import onnx

    return onnx.load(str(model)) if isinstance(model, str | Path) else model


def _types(model: Any) -> dict[str, int]:
    """Element type of every tensor whose type is known (inputs, outputs, value_info after shape inference)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - a model shape inference cannot handle still runs; types come from ORT
        inferred = model
    types = {}
    for info in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        if info.type.HasField("tensor_type"):
            types[info.name] = info.type.tensor_type.elem_type
    for init in model.graph.initializer:
        types[init.name] = init.data_type
    return types


def _value_infos(model: Any) -> dict[str, Any]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001
        inferred = model
    return {v.name: v for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]}


def float_tensors(model: Any) -> list[TensorPair]:
    """Every float tensor a node of ``model`` produces, in graph order, paired with itself (an FP32 model)."""
    model = _load(model)
    types = _types(model)
    pairs = []
    for i, node in enumerate(model.graph.node):
        for out in node.output:
            if out and types.get(out, 1) in _FLOAT_TYPES and node.op_type != "Constant":
                pairs.append(TensorPair(i, node.name or out, node.op_type, out, out, False))
    return pairs


def activation_pairs(qdq: Any, fp32_names: Iterable[str] | None = None) -> list[TensorPair]:
    """Activation tensors of a QDQ model in graph order, each mapped to its FP32 tensor name.

    A ``QuantizeLinear -> DequantizeLinear`` pair on tensor ``x`` (not a weight)
    gives the DQ output, standing for ``x`` (or, at a graph output, for the DQ
    output's own name, which the FP32 graph uses). Float node outputs that are
    not quantized (a Conv output before its fused Relu) stand for themselves.
    ``fp32_names`` limits the FP32 side to tensors that exist there.
    """
    qdq = _load(qdq)
    known = None if fp32_names is None else set(fp32_names)
    producers = {out: (i, node) for i, node in enumerate(qdq.graph.node) for out in node.output}
    initializers = {init.name for init in qdq.graph.initializer}
    inputs = {i.name for i in qdq.graph.input} - initializers
    quantized_sources: set[str] = set()
    pairs: list[TensorPair] = []
    for node in qdq.graph.node:
        if node.op_type != "DequantizeLinear":
            continue
        q = producers.get(node.input[0])
        if q is None or q[1].op_type != "QuantizeLinear":
            continue
        source = q[1].input[0]
        if source in initializers or (source not in producers and source not in inputs):
            continue  # a weight
        quantized_sources.add(source)
        out = node.output[0]
        fp32 = source if known is None or source in known else (out if out in known else None)
        if source in inputs:
            pairs.append(TensorPair(-1, source, "Input", out, fp32, True))
            continue
        index, producer = producers[source]
        pairs.append(TensorPair(index, producer.name or source, producer.op_type, out, fp32, True))
    types = _types(qdq)
    for i, node in enumerate(qdq.graph.node):
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Constant"):
            continue
        for out in node.output:
            if not out or out in quantized_sources or types.get(out, 1) not in _FLOAT_TYPES:
                continue
            if known is not None and out not in known:
                continue
            pairs.append(TensorPair(i, node.name or out, node.op_type, out, out, False))
    pairs.sort(key=lambda p: (p.index, not p.quantized))
    return pairs


def with_outputs(model: Any, names: Iterable[str]) -> Any:
    """A copy of ``model`` with ``names`` added as graph outputs (float, shape left to the runtime)."""
    from onnx import helper

    out = copy.deepcopy(model)
    types = _types(model)
    present = {o.name for o in out.graph.output}
    for name in names:
        if name not in present:
            out.graph.output.append(helper.make_tensor_value_info(name, types.get(name, 1), None))
            present.add(name)
    return out


def _session(model: Any, optimize: bool = True) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    payload = model.SerializeToString() if hasattr(model, "SerializeToString") else str(model)
    return ort.InferenceSession(payload, sess_options=options, providers=["CPUExecutionProvider"])


def _samples(batch: dict[str, np.ndarray]) -> int:
    return count(batch)


def _ranks(session: Any, batch: dict[str, np.ndarray]) -> dict[str, int]:
    """:func:`zoocompat.api.samples.session_ranks` for :func:`zoocompat.api.samples.sample`, except that an
    input onnxruntime reports as ``[]`` whose batch array has two or more dims is fed batched: ORT reports
    ``[]`` for a graph input declared without a shape too (a :func:`node_model` input shape inference could
    not type), and a scalar input's batch array is one value per sample.
    """
    ranks = session_ranks(session)
    for name, rank in ranks.items():
        if rank == 0 and name in batch and batch[name].ndim > 1:
            ranks[name] = batch[name].ndim
    return ranks


def _feed(batch: dict[str, np.ndarray], index: int, ranks: dict[str, int]) -> dict[str, np.ndarray]:
    """:func:`zoocompat.api.samples.sample` as arrays: onnxruntime refuses the numpy scalar that indexing a
    1-d batch array (a scalar input's) yields.
    """
    return {name: np.asarray(value) for name, value in sample(batch, index, ranks).items()}


def cpu_calls(model: Any, batch: dict[str, np.ndarray], optimize: bool = True) -> tuple[list[str], list[list[Any]]]:
    """Run ``model`` (path or ModelProto) on the CPU EP one sample at a time: its output names and, per
    sample, the outputs that call gave (before :func:`~zoocompat.api.samples.collect` merges them).
    """
    session = _session(model, optimize)
    ranks = _ranks(session, batch)
    names = [o.name for o in session.get_outputs()]
    return names, [session.run(names, _feed(batch, i, ranks)) for i in range(_samples(batch))]


def run_cpu(model: Any, batch: dict[str, np.ndarray], optimize: bool = True) -> dict[str, np.ndarray]:
    """Run ``model`` (path or ModelProto) on the CPU EP one sample at a time; outputs with the sample axis first
    (the batch convention of :mod:`zoocompat.api.samples`).
    """
    names, calls = cpu_calls(model, batch, optimize)
    return dict(zip(names, collect(calls), strict=True))


def declare_input_shapes(model: Any, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Declare graph inputs of ``model`` (in place) with the per-call shapes they are fed, where the model
    says otherwise or nothing (no shape, a symbolic or unknown dim). A cut model's inputs are tensors inside
    the full model; shape inference cannot always type them, and a batch is split by the model input's rank
    (:func:`zoocompat.api.samples.sample`): without the true rank, a ``[16, C]`` tensor (ViT's tokens after
    a flattening Reshape) would be fed as a batch of 1. Returns the names of the inputs it declared.
    """
    from onnx import helper

    changed = []
    for value in model.graph.input:
        shape = shapes.get(value.name)
        if shape is None or not value.type.HasField("tensor_type"):
            continue
        tensor = value.type.tensor_type
        declared = (
            tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
            if tensor.HasField("shape")
            else None
        )
        if declared == tuple(shape):
            continue
        value.CopyFrom(helper.make_tensor_value_info(value.name, tensor.elem_type, list(shape)))
        changed.append(value.name)
    return changed


def _sqnr(signal: float, noise: float) -> float | None:
    if noise == 0.0 or signal == 0.0:
        return None
    return round(10.0 * float(np.log10(signal / noise)), 2)


def fp32_vs_qdq(
    fp32_onnx: Any, qdq_onnx: Any, batch: dict[str, np.ndarray], threshold_db: float, keep: int | None = None
) -> LayerFinding:
    """Per-layer SQNR between the FP32 and the QDQ model on the CPU EP; names the first layer below the threshold."""
    fp32, qdq = _load(fp32_onnx), _load(qdq_onnx)
    fp32_names = {o for n in fp32.graph.node for o in n.output} | {i.name for i in fp32.graph.input}
    pairs = [p for p in activation_pairs(qdq, fp32_names) if p.fp32 is not None]
    if not pairs:
        raise ValueError("no tensor of the QDQ model maps to a tensor of the FP32 model")
    sessions = (
        _session(with_outputs(fp32, [p.fp32 for p in pairs]), optimize=False),
        _session(with_outputs(qdq, [p.qdq for p in pairs]), optimize=False),
    )
    signal = np.zeros(len(pairs))
    noise = np.zeros(len(pairs))
    ranks = [_ranks(session, batch) for session in sessions]
    for i in range(_samples(batch)):
        runs = []
        for session, names, feed_ranks in zip(
            sessions, ([p.fp32 for p in pairs], [p.qdq for p in pairs]), ranks, strict=True
        ):
            runs.append(session.run(names, _feed(batch, i, feed_ranks)))
        for j, (ref, test) in enumerate(zip(*runs, strict=True)):
            ref64 = np.asarray(ref, dtype=np.float64)
            signal[j] += float(np.sum(ref64**2))
            noise[j] += float(np.sum((ref64 - np.asarray(test, dtype=np.float64)) ** 2))
    layers = [
        LayerSqnr(layer=p.layer, op_type=p.op_type, tensor=p.fp32 or p.qdq, sqnr_db=_sqnr(signal[j], noise[j]))
        for j, p in enumerate(pairs)
    ]
    return _finding("fp32_vs_qdq", layers, first_below(layers, threshold_db), threshold_db, _samples(batch), keep)


def _finding(
    method: str,
    layers: list[LayerSqnr],
    index: int | None,
    threshold_db: float,
    samples: int,
    keep: int | None = None,
    runs: int = 0,
) -> LayerFinding:
    finding = LayerFinding(
        method=method,  # type: ignore[arg-type]
        threshold_db=threshold_db,
        samples=samples,
        layers_checked=len(layers),
        runs=runs,
        layers=layers if keep is None and method == "backend_vs_cpu" else trim_layers(layers, index, keep or 4),
    )
    if index is not None:
        bad = layers[index]
        finding.first_bad_layer, finding.first_bad_op, finding.first_bad_tensor = bad.layer, bad.op_type, bad.tensor
        finding.sqnr_db = bad.sqnr_db
        if index > 0:
            finding.previous_sqnr_db = layers[index - 1].sqnr_db
    _lowest(finding, layers)
    return finding


def _lowest(finding: LayerFinding, layers: list[LayerSqnr]) -> None:
    measured = [layer for layer in layers if layer.sqnr_db is not None]
    if measured:
        lowest = min(measured, key=lambda layer: layer.sqnr_db)
        finding.lowest_layer, finding.lowest_sqnr_db = f"{lowest.op_type} {lowest.layer}", lowest.sqnr_db


def _needed(model: Any, outputs: Iterable[str]) -> tuple[list[Any], set[str]]:
    """Nodes of the backward slice of ``outputs`` (in graph order) and every tensor they read."""
    needed = set(outputs)
    kept = []
    for node in reversed(model.graph.node):
        if not any(o in needed for o in node.output):
            continue
        kept.append(node)
        needed.update(i for i in node.input if i)
        needed.update(_subgraph_inputs(node))
    kept.reverse()
    return kept, needed


def _subgraph_inputs(node: Any) -> set[str]:
    """Outer-scope tensors the subgraphs of ``node`` (If / Loop / Scan) read."""
    from onnx import AttributeProto

    names: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == AttributeProto.GRAPH else list(attr.graphs)
        for graph in graphs:
            for inner in graph.node:
                names.update(i for i in inner.input if i)
                names.update(_subgraph_inputs(inner))
    return names


def _graph(model: Any, nodes: list[Any], inputs: list[Any], outputs: list[str], name: str) -> Any:
    """A model with ``nodes``, the initializers they read, ``inputs`` and typed ``outputs``."""
    from onnx import helper

    infos = _value_infos(model)
    read = {i for n in nodes for i in n.input if i} | {i for n in nodes for i in _subgraph_inputs(n)}
    initializers = [init for init in model.graph.initializer if init.name in read]
    types = _types(model)
    graph_outputs = [
        infos[o] if o in infos else helper.make_tensor_value_info(o, types.get(o, 1), None) for o in outputs
    ]
    produced = {o for n in nodes for o in n.output}
    value_info = [infos[t] for t in sorted(produced - set(outputs)) if t in infos]
    graph = helper.make_graph(nodes, name, inputs, graph_outputs, initializers, value_info=value_info)
    out = helper.make_model(graph, opset_imports=list(model.opset_import), producer_name="zoocompat")
    out.ir_version = model.ir_version
    return out


def prefix_model(model: Any, outputs: list[str]) -> Any:
    """The part of ``model`` that computes ``outputs``: their backward slice, real attributes and Q/DQ included."""
    model = _load(model)
    nodes, needed = _needed(model, outputs)
    inputs = [
        i for i in model.graph.input if i.name in needed and i.name not in {x.name for x in model.graph.initializer}
    ]
    return _graph(model, [copy.deepcopy(n) for n in nodes], inputs, outputs, f"{model.graph.name}_prefix")


def node_model(model: Any, node_index: int) -> tuple[Any, list[str]]:
    """One node of ``model`` with the QuantizeLinear / DequantizeLinear around it, as a model of its own.

    Each activation input that arrives through ``Q -> DQ`` becomes a float graph
    input feeding that pair (so the node sees the same quantized values); a
    weight's DQ and its initializers come along; when the output goes through
    ``Q -> DQ`` the model ends at the DQ output. Returns the model and the names
    of its graph inputs (tensors of the full model, to be fed with their values there).
    """
    return region_model(model, [node_index])


def region_model(model: Any, node_indices: Iterable[int]) -> tuple[Any, list[str]]:
    """Nodes ``node_indices`` of ``model``, each with its Q/DQ as :func:`node_model` takes them, as one model.

    An edge between two chosen nodes stays inside (with its ``Q -> DQ`` pair); every other activation the
    region reads becomes a float graph input, and every tensor it makes that no chosen node reads is an
    output. Returns the model and the names of its graph inputs (tensors of the full model).
    """
    model = _load(model)
    nodes = list(model.graph.node)
    producers = {out: n for n in nodes for out in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    initializers = {init.name for init in model.graph.initializer}
    targets = [nodes[i] for i in sorted(set(node_indices))]
    kept: list[Any] = []
    feeds: list[str] = []
    for target in targets:
        more, wanted = _around(target, producers, consumers, initializers)
        kept += more
        feeds += [f for f in wanted if f not in feeds]
    order = {id(n): i for i, n in enumerate(nodes)}
    kept = sorted({id(n): n for n in kept}.values(), key=lambda n: order[id(n)])
    made = {o for n in kept for o in n.output if o}
    read = {i for n in kept for i in n.input if i}
    feeds = [f for f in feeds if f not in made]
    graph_outputs = {o.name for o in model.graph.output}
    outputs = [o for n in kept for o in n.output if o and (o not in read or o in graph_outputs)]
    from onnx import helper

    infos = _value_infos(model)
    types = _types(model)
    inputs = [infos[f] if f in infos else helper.make_tensor_value_info(f, types.get(f, 1), None) for f in feeds]
    name = f"{targets[0].name or targets[0].op_type}_alone" if len(targets) == 1 else f"region_of_{len(targets)}"
    return _graph(model, [copy.deepcopy(n) for n in kept], inputs, outputs, name), feeds


def _around(
    target: Any, producers: dict[str, Any], consumers: dict[str, list[Any]], initializers: set[str]
) -> tuple[list[Any], list[str]]:
    """``target`` with its input DQs (and their Qs), its output ``Q -> DQ`` pairs, and the tensors it is fed."""
    kept: list[Any] = []
    feeds: list[str] = []
    for name in target.input:
        if not name or name in initializers:
            continue
        dq = producers.get(name)
        if dq is not None and dq.op_type == "DequantizeLinear":
            q = producers.get(dq.input[0])
            if dq.input[0] in initializers:  # a quantized weight stored as an integer initializer
                kept.append(dq)
                continue
            if q is not None and q.op_type == "QuantizeLinear":
                kept += [q, dq]
                if q.input[0] not in initializers:  # an activation (a float weight is quantized in the graph)
                    feeds.append(q.input[0])
                continue
        if dq is not None and dq.op_type == "Constant":
            kept.append(dq)
            continue
        feeds.append(name)
    kept.append(target)
    for out in target.output:
        if not out:
            continue
        q = next((c for c in consumers.get(out, []) if c.op_type == "QuantizeLinear"), None)
        dq = next((c for c in consumers.get(q.output[0], []) if c.op_type == "DequantizeLinear"), None) if q else None
        if q is not None and dq is not None:
            kept += [q, dq]
    return kept, feeds


def backend_vs_cpu(
    model_path: Path,
    batch: dict[str, np.ndarray],
    backend: Any,
    precision: str,
    sdk: str | None,
    workdir: Path,
    threshold_db: float,
    output: str | None = None,
    full_db: float | None | bool = False,
) -> LayerFinding:
    """Bisect prefix graphs of ``model_path`` on ``backend`` against the CPU reference: the first layer below threshold.

    The reference is the CPU EP with graph optimizations off: every Q and DQ
    runs as written, the exact semantics of the QDQ model. (With optimizations
    on, the CPU EP fuses Q/DQ into integer kernels, itself a "backend": a cpu
    QDQ cell is bisected the same way, its backend being the cpu plugin.)

    Candidates are the quantized activation tensors (a QDQ model) or every float
    tensor (a float model) in the backward slice of ``output`` (default: the
    first graph output), in graph order, ending with ``output``. ``full_db`` is
    the full graph's SQNR when the cell already measured it.
    """
    import onnx

    model = onnx.load(str(model_path))
    output = output or model.graph.output[0].name
    _, slice_tensors = _needed(model, [output])
    quantized = any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    pairs = activation_pairs(model) if quantized else float_tensors(model)
    candidates = [p for p in pairs if (p.quantized or not quantized) and p.qdq in slice_tensors and p.qdq != output]
    last = next((p for p in pairs if p.qdq == output), None)
    candidates.append(last or TensorPair(len(model.graph.node), output, "Output", output, output, True))
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    def probe(k: int) -> float | None:
        pair = candidates[k]
        path = workdir / f"prefix_{k:04d}.onnx"
        onnx.save(prefix_model(model, [pair.qdq]), str(path))
        cpu = run_cpu(path, batch, optimize=False)  # the QDQ semantics exactly: every Q / DQ in float
        with no_context_cache():
            result = backend.compile(path, precision, sdk, workdir / f"prefix_{k:04d}").run(batch)
        value = sqnr_db(cpu[pair.qdq], result.outputs[pair.qdq])
        return None if value is None else round(value, 2)

    found = bisect_first_bad(len(candidates), probe, threshold_db, full_db)
    layers = []
    for k in sorted(found.probes):
        pair = candidates[k]
        layers.append(LayerSqnr(layer=pair.layer, op_type=pair.op_type, tensor=pair.qdq, sqnr_db=found.probes[k]))
    finding = LayerFinding(
        method="backend_vs_cpu",
        threshold_db=threshold_db,
        samples=_samples(batch),
        layers_checked=len(candidates),
        runs=sum(1 for k in found.probes),
        layers=layers,
    )
    if found.index is not None:
        bad = candidates[found.index]
        finding.first_bad_layer, finding.first_bad_op, finding.first_bad_tensor = bad.layer, bad.op_type, bad.qdq
        finding.sqnr_db = found.probes.get(found.index, full_db if full_db is not False else None)  # type: ignore[arg-type]
        finding.previous_sqnr_db = found.probes.get(found.index - 1)
    _lowest(finding, layers)
    if found.error:
        raise RuntimeError(f"bisect stopped after {len(found.probes)} backend runs: {found.error}")
    return finding


def diagnose_cell(runner: Any, cell: Any, record: Any, samples: int) -> Diagnosis:
    """Both measurements for one failed cell, on its first ``samples`` evaluation samples."""
    card = runner.cards[cell.model]
    batch = {k: v[:samples] for k, v in runner.card_data(card).eval_batch().items()}
    converted = runner.converted(card)
    diagnosis = Diagnosis()
    model_path = converted.onnx
    if cell.quantized:
        quantized = runner.quantized(card, cell.precision, cell.quant)
        model_path = quantized.qdq_onnx
        diagnosis.quantization = fp32_vs_qdq(
            converted.onnx, quantized.qdq_onnx, batch, QDQ_THRESHOLD_DB.get(cell.precision, 20.0)
        )
    if cell.backend != runner.registry.reference_backend() or cell.quantized:  # a reference QDQ cell: fused kernels
        backend = runner.registry.get("backend", cell.backend)
        workdir = runner.report.root / "work" / cell.id / "diagnose"
        try:
            diagnosis.backend = backend_vs_cpu(
                Path(model_path),
                batch,
                backend,
                cell.precision,
                cell.sdk,
                workdir,
                BACKEND_THRESHOLD_DB.get(cell.precision, 20.0),
                output=card.metric_outputs[0],
            )
        finally:
            for bulky in workdir.glob("**/*.npz"):
                bulky.unlink()
    return diagnosis


def diagnose_failure(runner: Any, cell: Any, record: CellRecord, samples: int | None = None) -> Diagnosis | None:
    """The :class:`~zoocompat.report.results.Diagnosis` of a failed cell, or ``None`` when it gets none.

    What the pipeline calls for every failed cell (``runner`` is its
    :class:`~zoocompat.run.pipeline.CellRunner`, ``cell`` a
    :class:`~zoocompat.run.matrix.Cell`). Never raises: whatever goes wrong
    lands in ``Diagnosis.error``, and the cell's verdict is left as it is.
    """
    samples = diagnosis_samples() if samples is None else samples
    if samples <= 0 or not should_diagnose(cell, record):
        return None
    start = time.perf_counter()
    try:
        diagnosis = diagnose_cell(runner, cell, record, samples)
    except Exception as error:  # noqa: BLE001 - diagnostics are advice; the verdict stands without them
        diagnosis = Diagnosis(error=f"{type(error).__name__}: {error}")
    diagnosis.seconds = round(time.perf_counter() - start, 2)
    diagnosis.summary = summarize(diagnosis, cell.backend)
    return diagnosis


@contextlib.contextmanager
def no_context_cache() -> Iterator[None]:
    """Compile one-off graphs (prefixes, single nodes) without filling the backend's compiled-context cache."""
    previous = os.environ.get("ZOOCOMPAT_HTP_CONTEXT_CACHE")
    os.environ["ZOOCOMPAT_HTP_CONTEXT_CACHE"] = "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("ZOOCOMPAT_HTP_CONTEXT_CACHE", None)
        else:
            os.environ["ZOOCOMPAT_HTP_CONTEXT_CACHE"] = previous
