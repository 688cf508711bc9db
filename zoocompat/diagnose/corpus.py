"""ONNX's own backend test corpus as a second opinion on the op table: ``zoocompat ops --corpus onnx``.

The ``onnx`` wheel ships the conformance data that ``onnx.backend.test.runner``
runs, written by others, with inputs and expected outputs
(``onnx/backend/test/data/``):

- ``light``: nine classic architectures (AlexNet ... ZFNet-512) whose weights
  are ``ConstantOfShape`` fills of shape initializers, with one expected
  output each; their input is the one ``onnx.backend.test.runner`` makes
  (``arange(n) / n`` in the input's shape);
- ``pytorch-operator`` (35) and ``pytorch-converted`` (82): one operator or
  module each, with a test input and its expected output. Nearly all are
  opset 6, older than any opset onnxruntime still implements (7 on): those
  are upgraded to opset 17 (the frontends' export opset) with
  ``onnx.version_converter``, and the table shows ``6→17``.

Every case runs like an op probe (``zoocompat/diagnose/ops.py``): built (the
light models' fills folded into initializers, as a converter does),
quantized to QDQ for ``w8a8`` / ``w8a16`` by the same quantizer as the
probes, compiled and run by the backend plugin in its runner process (a
vendor crash or hang marks that case only), cached per (case hash,
precision, backend, SDK, backend settings), and judged with one verdict:

- ``on_target``: every node on the target and the outputs agree;
- ``fallback``: some node fell back to the CPU (the vendor's reason kept);
- ``unsupported_dtype``: the model computes in float64, which the target has
  no type for, and it fell back or failed (what to do is in the reason);
- ``wrong_output``: it ran, but an output disagrees with onnxruntime CPU
  running the same model (the same QDQ model for the integer precisions):
  below :data:`WRONG_DB` SQNR, or, for outputs SQNR cannot judge (integer,
  boolean, all-zero), not equal;
- ``error``: quantizing, compiling or running failed (message kept).

Two fidelities are recorded: against the CPU run of the same model (the
backend's own error: the verdict) and against the corpus's expected outputs
(for the integer precisions that adds the quantizer's error). The corpus holds
one test input per case, so quantization calibrates on
:data:`CALIBRATION_SAMPLES` seeded inputs drawn uniformly over the range of
the test input, never on the test input itself.
"""

from __future__ import annotations

import fnmatch
import hashlib
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from zoocompat.api.cache import ArtifactCache
from zoocompat.diagnose import op_probes, ops
from zoocompat.verdict.stats import sqnr_db

__all__ = [
    "CORPORA",
    "KINDS",
    "VERDICTS",
    "Case",
    "cases",
    "disagreements",
    "render_markdown",
    "run_case",
    "run_corpus",
]

CORPORA = ("onnx",)
KINDS = ("light", "pytorch-operator", "pytorch-converted")
VERDICTS = ("on_target", "fallback", "unsupported_dtype", "wrong_output", "error")
#: below this SQNR against the CPU run of the same model, an output is wrong (the op probes' mismatch line)
WRONG_DB = ops.MISMATCH_DB
#: an all-zero float output counts as equal when every element is within this of zero
ZERO_ATOL = 1e-6
CALIBRATION_SAMPLES = 8
#: the format of a cached corpus record: bump when a cached result's meaning changes
FORMAT = 2
#: onnxruntime implements ai.onnx opsets from 7 on; older cases are upgraded with onnx.version_converter
OLDEST_OPSET = 7
_DOUBLE = 11  # onnx.TensorProto.DOUBLE
_FLOAT64_ADVICE = (
    "the model computes in float64, which the target has no type for; export it in float32 "
    "(torch: model.float() and float32 inputs before torch.onnx.export) and convert that"
)


def corpus_root() -> Path:
    """``onnx/backend/test/data`` of the installed onnx wheel."""
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data"


@dataclass(frozen=True)
class Case:
    """One corpus case: a model file, its test input and its expected outputs."""

    name: str  # e.g. "test_operator_add_broadcast", "light_resnet50"
    kind: str  # one of KINDS
    model_path: Path

    @cached_property
    def _shipped(self):
        """The model file as the corpus ships it (read once)."""
        import onnx

        return onnx.load(str(self.model_path))

    @cached_property
    def model(self):
        """The case's model as run: light models with their ``ConstantOfShape`` weights folded."""
        import onnx
        from onnx import version_converter

        model = onnx.ModelProto()
        model.CopyFrom(self._shipped)
        _constant_weights(model)
        if self.kind == "light":
            _fold_fills(model)
        if self.opset < OLDEST_OPSET:
            try:
                model = version_converter.convert_version(model, op_probes.BASE_OPSET)
            except Exception:  # noqa: BLE001 - the converter cannot take it: the case runs as shipped
                return model
        return model

    @property
    def opset(self) -> int:
        """The case's ``ai.onnx`` opset as shipped."""
        return _ai_onnx_opset(self._shipped)

    @property
    def run_opset(self) -> int:
        """The opset the case runs at: :data:`~zoocompat.diagnose.op_probes.BASE_OPSET` when upgraded."""
        return _ai_onnx_opset(self.model)

    @cached_property
    def graph_inputs(self) -> list[Any]:
        """The model's graph inputs that are fed (not initializers)."""
        fixed = {i.name for i in self.model.graph.initializer}
        return [v for v in self.model.graph.input if v.name not in fixed]

    @property
    def data_dir(self) -> Path:
        return self.model_path.parent / "test_data_set_0"

    @cached_property
    def inputs(self) -> dict[str, np.ndarray]:
        """The test input by name: the stored one, or for a light model the one ONNX's runner makes."""
        if self.kind == "light":
            return {v.name: _ramp(v) for v in self.graph_inputs}
        return {v.name: _read(self.data_dir / f"input_{k}.pb") for k, v in enumerate(self.graph_inputs)}

    @cached_property
    def expected(self) -> dict[str, np.ndarray]:
        """The corpus's expected outputs by name."""
        names = [o.name for o in self.model.graph.output]
        if self.kind == "light":
            stem = self.model_path.with_suffix("")
            return {name: _read(Path(f"{stem}_output_{k}.pb")) for k, name in enumerate(names)}
        return {name: _read(self.data_dir / f"output_{k}.pb") for k, name in enumerate(names)}

    @cached_property
    def op_types(self) -> list[str]:
        """The ONNX op types in the model, sorted."""
        return sorted({n.op_type for n in self.model.graph.node})

    @cached_property
    def float64(self) -> bool:
        """Whether any input, output, weight, value or Cast of the model is float64."""
        graph = self.model.graph
        values = list(graph.input) + list(graph.output) + list(graph.value_info)
        return (
            any(v.type.tensor_type.elem_type == _DOUBLE for v in values)
            or any(t.data_type == _DOUBLE for t in graph.initializer)
            or any(_casts_to_double(n) for n in graph.node)
        )

    def definition_hash(self) -> str:
        """Hash of what decides the case's result: the model as run, its input, the quantizer's recipe."""
        digest = hashlib.sha256(self.model.SerializeToString(deterministic=True))
        for name, value in sorted(self.inputs.items()):
            digest.update(name.encode() + str(value.dtype).encode() + str(value.shape).encode() + value.tobytes())
        digest.update(op_probes.QUANTIZER.encode() + str(CALIBRATION_SAMPLES).encode())
        return digest.hexdigest()[:20]

    def calibration(self) -> list[dict[str, np.ndarray]]:
        """Seeded calibration feeds: floats uniform over the test input's range, other inputs as in the test."""
        rng = np.random.default_rng(zlib.crc32(self.name.encode()))
        feeds = []
        for _ in range(CALIBRATION_SAMPLES):
            feed = {}
            for name, value in self.inputs.items():
                if np.issubdtype(value.dtype, np.floating) and value.size:
                    low, high = float(value.min()), float(value.max())
                    if high <= low:
                        low, high = low - 0.5 * abs(low) - 0.5, high + 0.5 * abs(high) + 0.5
                    feed[name] = rng.uniform(low, high, value.shape).astype(value.dtype)
                else:
                    feed[name] = value
            feeds.append(feed)
        return feeds


def _ai_onnx_opset(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _casts_to_double(node) -> bool:
    return node.op_type == "Cast" and any(a.name == "to" and a.i == _DOUBLE for a in node.attribute)


def _read(path: Path) -> np.ndarray:
    import onnx
    from onnx import numpy_helper

    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(tensor)


def _ramp(value_info) -> np.ndarray:
    """The input ``onnx.backend.test.runner`` feeds a light model: ``arange(n) / n`` (float32) in its shape."""
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in value_info.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return (np.arange(n).reshape(shape) / n).astype(np.float32)


def _constant_weights(model) -> None:
    """Weights as today's exporters write them (in place): initializers only, not also graph inputs (IR >= 4).

    The corpus's IR-3 models list every initializer as a graph input too, which IR 4 on reads as an input
    with a default value that a caller may override: not a constant, so quantizers and converters leave such
    weights alone (onnxruntime's quantizer then writes an invalid model).
    """
    weights = {t.name for t in model.graph.initializer}
    fed = [v for v in model.graph.input if v.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(fed)
    model.ir_version = max(model.ir_version, 4)


def _fold_fills(model) -> None:
    """Replace each ``ConstantOfShape`` of an initializer shape by the initializer it makes (in place)."""
    from onnx import helper, numpy_helper

    initial = {t.name: t for t in model.graph.initializer}
    kept = []
    for node in model.graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in initial:
            shape = numpy_helper.to_array(initial[node.input[0]]).astype(np.int64)
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            fill = numpy_helper.to_array(attrs["value"]) if "value" in attrs else np.zeros(1, np.float32)
            model.graph.initializer.append(numpy_helper.from_array(np.full(shape, fill.reshape(-1)[0]), node.output[0]))
        else:
            kept.append(node)
    used = {name for node in kept for name in node.input}
    outputs = {o.name for o in model.graph.output}
    del model.graph.node[:]
    model.graph.node.extend(kept)
    live = [t for t in model.graph.initializer if t.name in used or t.name in outputs]
    del model.graph.initializer[:]
    model.graph.initializer.extend(live)


def cases(
    corpus: str = "onnx",
    kinds: Iterable[str] = KINDS,
    select: list[str] | None = None,
    exclude: list[str] | None = None,
) -> list[Case]:
    """The corpus's cases of ``kinds``, those matching any ``select`` glob (or all) and no ``exclude`` glob.

    A case's full name selects that case alone, a glob by glob, anything else as a substring (like ``pytest
    -k``). Raises ``ValueError`` for an unknown corpus or kind, and when the selection is empty.
    """
    if corpus not in CORPORA:
        raise ValueError(f"no corpus {corpus!r}; known: {', '.join(CORPORA)}")
    kinds = list(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"no corpus kind {', '.join(unknown)}; known: {', '.join(KINDS)}")
    root = corpus_root()
    found = []
    for kind in kinds:
        if kind == "light":
            found += [Case(p.stem, kind, p) for p in sorted((root / kind).glob("*.onnx"))]
        else:
            found += [Case(p.parent.name, kind, p) for p in sorted((root / kind).glob("*/model.onnx"))]

    names = {c.name for c in found}

    def matches(name: str, patterns: list[str]) -> bool:
        def one(pattern: str) -> bool:
            if pattern in names:
                return name == pattern
            return fnmatch.fnmatchcase(name, pattern) if any(c in pattern for c in "*?[") else pattern in name

        return any(one(p) for p in patterns)

    chosen = [c for c in found if (not select or matches(c.name, select)) and not matches(c.name, exclude or [])]
    if not chosen:
        raise ValueError(
            f"no {corpus} corpus case of {', '.join(kinds)} matches --select {select} / --exclude {exclude}"
        )
    return chosen


def _one(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The backend's outputs of the one test sample, in the reference's shapes (the sample axis removed)."""
    shaped = {}
    for name, value in outputs.items():
        ref = reference.get(name)
        if ref is not None and value.shape != ref.shape and value.shape[1:] == ref.shape:
            value = value[0]
        shaped[name] = value
    return shaped


def judge(reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """How ``outputs`` agree with ``reference``: the worst float SQNR, and equality where SQNR cannot judge.

    ``{"sqnr_db": worst dB or None, "equal": False if an integer, boolean or all-zero output differs (True
    if all such agree, None if there are none), "identical", "notes"}``. Never -inf: NaN/Inf where the
    reference has none (or the other way round) or a wrong shape is a note; the reference's own NaN/Inf,
    when matched, leave the finite elements to judge; an output SQNR cannot judge is compared for equality.
    """
    sqnrs, equals, notes = [], [], []
    identical = True
    with np.errstate(over="ignore", invalid="ignore"):  # float32 overflow in the squares: an inf SQNR term
        for name, ref in reference.items():
            got = outputs.get(name)
            if got is None or got.shape != ref.shape:
                shape = None if got is None else list(got.shape)
                notes.append(f"output {name} has shape {shape}, expected {list(ref.shape)}")
                identical = False
                continue
            identical = identical and bool(np.array_equal(ref, got, equal_nan=True))
            note, sqnr, equal = _judge_output(ref, got)
            notes += [f"output {name} {note}"] if note else []
            sqnrs += [sqnr] if sqnr is not None else []
            equals += [equal] if equal is not None else []
    return {
        "sqnr_db": round(min(sqnrs), 2) if sqnrs else None,
        "equal": all(equals) if equals else None,
        "identical": identical,
        "notes": notes,
    }


def _judge_output(ref: np.ndarray, got: np.ndarray) -> tuple[str | None, float | None, bool | None]:
    """``(note, SQNR, equal)`` of one output of the reference's shape (see :func:`judge`)."""
    if np.issubdtype(ref.dtype, np.floating):
        finite = np.isfinite(ref)
        if not np.array_equal(np.isfinite(got), finite) or not np.array_equal(ref[~finite], got[~finite], True):
            odd = int(np.sum(~np.isfinite(got)))
            return f"holds {odd} NaN/Inf elements where the reference holds {int(np.sum(~finite))}", None, None
        ref, got = ref[finite], got[finite]
        if np.any(ref != 0):
            return None, sqnr_db(ref, got), None  # None: bit-identical
        same = bool(np.all(np.abs(got) <= ZERO_ATOL))
    else:
        same = bool(np.array_equal(ref, got))
    if same:
        return None, None, True
    share = float(np.mean(ref == got)) if ref.size else 1.0
    return f"is not equal to the reference ({share:.1%} of its elements are)", None, False


def run_case(case: Case, precision: str, backend: Any, sdk: str | None, workdir: Path) -> dict[str, Any]:
    """Build, quantize (integer precisions), compile, run and judge one case; return its record.

    Never raises for the case's own failure: it becomes an ``error`` (or ``unsupported_dtype``) record.
    """
    start = time.perf_counter()
    record: dict[str, Any] = {"case": case.name, "kind": case.kind, "ops": case.op_types, "precision": precision}
    workdir.mkdir(parents=True, exist_ok=True)
    model_path = workdir / "model.onnx"
    model_path.write_bytes(case.model.SerializeToString())
    stage = "quantize"
    try:
        if precision in ops.QUANTIZED:
            model_path = op_probes.quantize_probe(model_path, precision, case.calibration(), workdir / "model_qdq.onnx")
        elif precision not in ("fp32", "fp16"):
            raise ValueError(f"the corpus has no recipe for precision {precision!r}")
        stage = "reference"
        (reference,) = op_probes.cpu_runs(model_path, [case.inputs])
        stage = "compile"
        compiled = ops.compile_capped(backend, model_path, precision, sdk, workdir)
        stage = "run"
        result = compiled.run({k: v[None] for k, v in case.inputs.items()})
    except Exception as error:  # a backend's CellError, or the quantizer or CPU reference failing on this case
        record.update(ops.failure(stage, error))
    else:
        outputs = _one(result.outputs, reference)
        own, wanted = judge(reference, outputs), judge(case.expected, outputs)
        placement = result.placement
        verdict, reasons = ops.classify(placement)
        verdict = "on_target" if verdict == "supported" else "fallback"
        wrong = own["notes"] or own["equal"] is False or (own["sqnr_db"] is not None and own["sqnr_db"] < WRONG_DB)
        if verdict == "on_target" and wrong:
            verdict = "wrong_output"
            if own["sqnr_db"] is not None and own["sqnr_db"] < WRONG_DB:
                reasons.append(f"output SQNR {own['sqnr_db']:.1f} dB against onnxruntime CPU on the same model")
        record.update(
            verdict=verdict,
            reasons=reasons + own["notes"],
            target_nodes=placement.target_nodes,
            total_nodes=placement.total_nodes,
            fallback_ops=placement.fallback_ops,
            compile_s=round(result.compile_s, 3),
            sqnr_db=own["sqnr_db"],
            equal=own["equal"],
            identical=own["identical"],
            expected_sqnr_db="exact" if wanted["identical"] else wanted["sqnr_db"],
            expected_equal=wanted["equal"],
            expected_notes=wanted["notes"],
        )
    if case.float64 and record["verdict"] in ("fallback", "error"):
        record["reasons"] = [_FLOAT64_ADVICE] + record["reasons"]
        record["verdict"] = "unsupported_dtype"
    return ops.finish(record, workdir, start)


def run_corpus(
    backend: Any,
    sdk: str | None,
    precisions: Iterable[str],
    chosen: list[Case],
    cache: ArtifactCache | None = None,
    progress: Callable[[str], None] | None = None,
    use_cache: bool = True,
    corpus: str = "onnx",
) -> dict[str, Any]:
    """Every (case, precision) on ``backend``: the corpus table, in the op table's JSON form.

    ``ops`` maps case -> precision -> verdict (one of :data:`VERDICTS`); ``probes`` holds each case's kind
    and op types; ``sqnr_db`` the on-target cases' SQNR against the CPU run of the same model and
    ``expected_sqnr_db`` every run case's SQNR against the corpus's expected outputs; ``equal`` whether
    outputs SQNR cannot judge were equal. ``zoocompat ops --diff`` compares two such tables.
    """
    import onnx

    precisions = list(precisions)
    cache = cache or ArtifactCache()
    info, sdk_id, identity = ops.identity_of(backend, sdk)
    started = time.time()
    table = ops.new_table(backend, sdk_id, precisions, VERDICTS)
    table.update(corpus=corpus, corpus_version=f"onnx {onnx.__version__}", expected_sqnr_db={}, equal={})
    hits, seconds, total = 0, 0.0, len(chosen) * len(precisions)
    for case in chosen:
        table["probes"][case.name] = {
            "kind": case.kind,
            "ops": case.op_types,
            "float64": case.float64,
            "opset": case.opset,
            "run_opset": case.run_opset,
        }
        definition = case.definition_hash()
        for precision in precisions:
            record, hit = ops.run_one(
                cache,
                definition,
                case.name,
                precision,
                backend,
                identity,
                lambda workdir, case=case, precision=precision: run_case(case, precision, backend, sdk, workdir),
                use_cache,
                FORMAT,
            )
            hits += hit
            seconds += float(record.get("seconds") or 0.0)
            ops.add_record(table, case.name, precision, record, "on_target")
            if record.get("sqnr_db") is not None or record.get("identical"):
                own = "exact" if record.get("identical") else record["sqnr_db"]
                table["sqnr_db"].setdefault(case.name, {})[precision] = own
            for key in ("expected_sqnr_db", "equal"):
                if record.get(key) is not None:
                    table[key].setdefault(case.name, {})[precision] = record[key]
            if progress:
                done = sum(len(v) for v in table["ops"].values())
                cached = " (cached)" if hit else f" ({record['seconds']:.1f} s)"
                progress(f"[{done:>3}/{total}] {case.name} {precision}: {record['verdict']}{cached}")
    table["run"] = ops.run_facts(info, precisions, len(chosen), hits, started, seconds)
    table["run"]["calibration"] = (
        f"{CALIBRATION_SAMPLES} seeded inputs uniform over each float test input's range (never the test input)"
    )
    return table


def disagreements(corpus_table: dict[str, Any], probe_table: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Where a corpus case and the op probes of one of its ops disagree: ``{case: {precision: why}}``.

    A case on the target disagrees with an op of it whose probes all fail to run on the target (at that
    precision); a case that fell back disagrees with a fallen-back op whose probes all run on the target; a
    single-op case with a wrong output disagrees with probes of that op that agree with the CPU. Ops without
    a probe, and cases that errored, say nothing; pattern rows (several ops) are not an op's probe here.
    """
    by_op: dict[str, list[str]] = {}
    for probe, meta in probe_table.get("probes", {}).items():
        if "ops" not in meta:  # single-op probes only: a pattern row speaks for its whole subgraph
            by_op.setdefault(meta.get("op", ""), []).append(probe)
    found: dict[str, dict[str, str]] = {}
    for case, row in corpus_table.get("ops", {}).items():
        meta = corpus_table.get("probes", {}).get(case, {})
        for precision, verdict in row.items():
            computing = [op for op in meta.get("ops", []) if op != "Constant"]
            if verdict == "on_target":
                suspects = meta.get("ops", [])
            elif verdict == "fallback":
                suspects = list(_fallback_ops(corpus_table, case, precision, meta))
            elif verdict == "wrong_output" and len(computing) == 1:
                suspects = computing  # one op computes: the wrong output is that op's
            else:
                continue
            for op in suspects:
                probes = by_op.get(op, [])
                verdicts = [probe_table["ops"].get(p, {}).get(precision) for p in probes]
                if not probes or None in verdicts:
                    continue
                probe_ok = [v == "supported" for v in verdicts]
                if verdict == "on_target" and not any(probe_ok):
                    why = f"runs {op} on the target, but its probe{'s' if len(probes) > 1 else ''} " + ", ".join(
                        f"{p} ({v})" for p, v in zip(probes, verdicts, strict=True)
                    )
                elif verdict == "fallback" and all(probe_ok):
                    why = f"{op} falls back here, but its probe(s) {', '.join(probes)} run on the target"
                elif (
                    verdict == "wrong_output"
                    and all(probe_ok)
                    and all(_agrees(probe_table, p, precision) for p in probes)
                ):
                    why = f"{op} computes a wrong output here, but its probe(s) {', '.join(probes)} agree with the CPU"
                else:
                    continue
                found.setdefault(case, {})[precision] = why
                break
    return found


def _agrees(probe_table: dict[str, Any], probe: str, precision: str) -> bool:
    """Whether an op probe's output agrees with the CPU run (exact, or at least :data:`WRONG_DB`)."""
    value = probe_table.get("sqnr_db", {}).get(probe, {}).get(precision)
    return value == "exact" or (isinstance(value, (int, float)) and value >= WRONG_DB)


def _fallback_ops(table: dict[str, Any], case: str, precision: str, meta: dict[str, Any]) -> Iterable[str]:
    """The op types named in a fallen-back case's reasons (the vendor names the node's op type)."""
    reasons = " ".join(table.get("reasons", {}).get(case, {}).get(precision, []))
    return [op for op in meta.get("ops", []) if op in reasons]


def render_markdown(
    table: dict[str, Any],
    probe_table: dict[str, Any] | None = None,
    command: str | None = None,
) -> str:
    """The corpus table as Markdown: one row per case, one column per precision, reasons as footnotes."""
    run = table.get("run", {})
    precisions = run.get("precisions") or sorted({p for row in table["ops"].values() for p in row})
    title = f"ONNX backend test corpus: {table['backend']} on {table.get('sdk')}"
    lines = [f"# {title}", ""]
    lines += ops.fact_lines(table, command) + [f"- corpus: {table.get('corpus_version')} (`onnx/backend/test/data`)"]
    lines += [
        f"- calibration (w8a8, w8a16): {run.get('calibration')}",
        f"- op probes compared: {'the op table of the same backend and SDK' if probe_table else 'none given'}",
        "",
        "✅ every node on the target and the outputs agree (`A / B dB`: SQNR against onnxruntime CPU running "
        "the same model, the same QDQ model for w8a8/w8a16 / SQNR against the corpus's expected outputs; "
        "`=`: integer, boolean or all-zero outputs, compared for equality) · ❌ falls back to the CPU "
        "(vendor's reason in the note) · 🚫 dtype: the model computes in float64, which the target has no type "
        f"for · ⚠️ wrong: runs, but below {WRONG_DB:.0f} dB or unequal against the CPU on the same model · "
        "⚠️ error: quantize, compile or run failed · ≠ probe: the op probe of one of its ops disagrees (note).",
        "",
    ]
    lines += ops.summary_lines(table, precisions, VERDICTS)
    lines += [
        "| case | kind | opset | ops | " + " | ".join(precisions) + " |",
        "|---|---|---|---|" + "---|" * len(precisions),
    ]
    against = disagreements(table, probe_table) if probe_table else {}
    notes: dict[str, int] = {}
    for case, meta in table.get("probes", {}).items():
        cells = []
        for precision in precisions:
            text = _cell(table, case, precision) + ops.footnotes(table, case, precision, notes)
            why = against.get(case, {}).get(precision)
            if why:
                text += f" ≠ probe[^{notes.setdefault(why, len(notes) + 1)}]"
            cells.append(text)
        shown = meta.get("ops", [])
        op_list = ", ".join(shown[:5]) + (f" +{len(shown) - 5}" if len(shown) > 5 else "")
        opset = meta.get("opset", "")
        if meta.get("run_opset") not in (None, opset):
            opset = f"{opset}→{meta['run_opset']}"
        lines.append(f"| {case} | {meta.get('kind', '')} | {opset} | {op_list} | {' | '.join(cells)} |")
    if against:
        count = sum(len(v) for v in against.values())
        lines += ["", f"{count} cells where a corpus case and the op probe of one of its ops disagree (≠ probe)."]
    lines += ops.note_lines(notes)
    return "\n".join(lines) + "\n"


def _cell(table: dict[str, Any], case: str, precision: str) -> str:
    """Verdict mark, then ``own / expected dB`` (``exact`` when bit-identical) and ``=``/``≠`` for equality."""
    verdict = table["ops"].get(case, {}).get(precision)
    if verdict is None:
        return "–"
    text = ops._MARK[verdict]

    def get(key: str) -> Any:
        return table.get(key, {}).get(case, {}).get(precision)

    own, expected, equal = get("sqnr_db"), get("expected_sqnr_db"), get("equal")
    shown = []
    if own is not None or expected is not None:
        unit = " dB" if any(isinstance(v, (int, float)) for v in (own, expected)) else ""
        shown.append(f"{_db(own)} / {_db(expected)}{unit}")
    if equal is not None:
        shown.append("=" if equal else "≠")
    return text + (" " + ", ".join(shown) if shown else "")


def _db(value: Any) -> str:
    """An SQNR cell value: ``exact`` (bit-identical), whole dB, or ``–`` (none)."""
    return "exact" if value == "exact" else f"{value:.0f}" if isinstance(value, (int, float)) else "–"
