"""The stages of a cell: data, convert, quantize, run, verdict.

Data, convert and quantize are per model (and per precision), so they are
cached in the artifact cache: the cells of one model, whatever worker runs
them, convert and calibrate once. Run and verdict are the cell itself.
Every stage's failure becomes a :class:`CellError` with a category; the cell's
record says which stage and why, and the session goes on.
"""

from __future__ import annotations

import errno
import json
import shutil
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoocompat.api import QuantizeResult, TrainingJob
from zoocompat.api.cache import ArtifactCache, key_of
from zoocompat.api.errors import CellError, PluginError
from zoocompat.api.protocols import optional
from zoocompat.api.registry import Registry
from zoocompat.diagnose.first_bad import diagnose_failure
from zoocompat.model.cards import Card
from zoocompat.model.check import model_mismatch
from zoocompat.model.data import CardData, build_card_data, training_inputs
from zoocompat.model.datasources import source_digest
from zoocompat.model.measured import convert_key
from zoocompat.model.sources import resolve_source
from zoocompat.report.results import CellRecord, Coverage, Fidelity, MetricResult, ReportDir, Timing
from zoocompat.run import reuse
from zoocompat.run.autoquant import auto_quant_cell
from zoocompat.run.matrix import Cell
from zoocompat.run.scoring import per_sample
from zoocompat.verdict.fidelity import THRESHOLD_DB, fidelity_problem
from zoocompat.verdict.stats import PairedDrop, cosine_similarity, mean_interval, paired_drop, sqnr_db

MAX_FP32_METRIC_GAP = 0.001  # native vs ONNX metric, absolute (0.1 points)
MAX_FP32_RELATIVE_ERROR = 1e-3  # native vs ONNX outputs, max |diff| / max |native|


@dataclass
class Converted:
    """The canonical FP32 ONNX of a model and what its conversion measured."""

    onnx: Path
    fp32_outputs: dict[str, np.ndarray]
    report: dict[str, Any]


@dataclass
class Quantized:
    """A QDQ ONNX with its encodings, and its outputs on the CPU EP."""

    qdq_onnx: Path
    encodings: Path
    cpu_outputs: dict[str, np.ndarray]
    report: dict[str, Any]


def _check_finite(outputs: dict[str, np.ndarray], who: str, category: str, hint: str) -> None:
    """Refuse outputs with NaN or Inf: every metric computed on them would be meaningless."""
    for name, array in outputs.items():
        values = np.asarray(array)
        if values.dtype.kind != "f":
            continue
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1) if values.ndim else ~np.isfinite(values)
        if bad.any():
            kinds = " and ".join(k for k, f in (("NaN", np.isnan), ("Inf", np.isinf)) if f(values).any())
            raise CellError(
                category,
                f"{who} produces {kinds} in output {name!r} on {int(bad.sum())} of {bad.size} samples; {hint}",
            )


@contextmanager
def _stage_errors(category: str, where: str) -> Iterator[None]:
    """Turn a plugin's unexpected exception into a CellError of the stage's category."""
    try:
        yield
    except CellError:
        raise
    except Exception as error:  # plugins wrap what they expect; this catches what they did not
        raise CellError(category, f"{where}: {type(error).__name__}: {error}") from error


def _quantization_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What the record keeps of a quantize report: quantizer, technique, bitwidths, the autoquant ladder,
    the QAT training split; the full report stays in the cache entry's ``quantize.json``.
    """
    keep = ("quantizer", "technique", "precision", "quant_scheme", "weights", "autoquant")
    summary = {k: report[k] for k in keep if k in report}
    train = next((s for s in report.get("steps", []) if s.get("step") == "train"), None)
    if train:
        summary["training"] = {k: v for k, v in train.items() if k != "step"}
    return summary


def _measured(
    name: str,
    higher_is_better: bool,
    floor: bool,
    paired: PairedDrop,
    fp32: float | None,
    value: float,
    interval: tuple[float, float],
    tolerance: float,
) -> tuple[str, str]:
    """What a cell's metric measured, and the limit it is judged against, in words for its reason."""
    if floor:
        low, high = interval
        return (
            f"{name} {value:.2f} (mean over {paired.samples} samples vs FP32; 95% interval {low:.2f} .. {high:.2f})",
            f"the floor {tolerance:.2f}",
        )
    low, high = paired.interval
    if not higher_is_better or not 0.0 <= fp32 <= 1.0:  # an error (NME, MAE) or a score in its own units
        return (
            f"{name} {'rose' if not higher_is_better else 'dropped'} by {paired.drop:.4g} ({fp32:.4g} -> {value:.4g} "
            f"on {paired.samples} samples; 95% interval of the paired change {low:.4g} .. {high:.4g})",
            f"the tolerance {tolerance:.4g}",
        )
    return (
        f"{name} dropped {paired.drop * 100:.2f} points ({fp32:.4f} -> {value:.4f} on {paired.samples} samples; "
        f"95% interval of the paired drop {low * 100:.2f} .. {high * 100:.2f})",
        f"the tolerance {tolerance * 100:.2f}",
    )


def _relative_error(native: np.ndarray, onnx: np.ndarray) -> float:
    """``max |native - onnx| / max |native|`` over an output of any dtype (0 for an empty output); infinite
    when the shapes differ.
    """
    native, onnx = np.asarray(native, dtype=np.float64), np.asarray(onnx, dtype=np.float64)
    if native.shape != onnx.shape:
        return float("inf")
    if not native.size:
        return 0.0
    return float(np.max(np.abs(native - onnx))) / (float(np.max(np.abs(native))) or 1.0)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


class CellRunner:
    """Runs cells for one session: the plugins, the zoo, the cache and the report folder."""

    def __init__(
        self,
        registry: Registry,
        cards: dict[str, Card],
        cache: ArtifactCache,
        report: ReportDir,
        *,
        reuse_outputs: bool | None = None,
    ) -> None:
        self.registry = registry
        self.cards = cards
        self.cache = cache
        self.report = report
        #: reuse a backend's outputs for the same model bytes, inputs and runtime (zoocompat/reuse.py)
        self.reuse_outputs = reuse.enabled() if reuse_outputs is None else reuse_outputs

    # -- per-model stages (cached) -------------------------------------------

    def card_data(self, card: Card) -> CardData:
        """Calibration / evaluation tensors and labels for ``card``."""
        dataset = self._dataset(card)
        own = source_digest(card, self.cache) if card.dataset.source is not None else None  # the user's files
        code = reuse.plugin_digest(dataset) if dataset is not None else None  # the dataset plugin's own code
        key = key_of(
            "data",
            card.dataset.model_dump(mode="json"),
            [i.model_dump(mode="json") for i in card.inputs],
            own,
            *([code] if code else []),
        )
        build = lambda out: build_card_data(card, dataset, self.cache).save(out / "data.npz")  # noqa: E731
        entry = self.cache.entry("data", key, build)
        return CardData.load(entry / "data.npz", card.inputs)

    def _dataset(self, card: Card) -> Any:
        """The card's registered dataset, or ``None`` when the card names its own data (``dataset.source``)."""
        return None if card.dataset.name is None else self.registry.get("dataset", card.dataset.name)

    def converted(self, card: Card) -> Converted:
        """Convert ``card``'s model to canonical ONNX and measure native vs ONNX FP32."""
        source = resolve_source(card, self.cache)  # fetches or verifies the pinned file on every use
        key = convert_key(card)
        entry = self.cache.entry("convert", key, lambda out: self._convert(card, source, out))
        return Converted(
            entry / "model.onnx",
            _load_npz(entry / "fp32_outputs.npz"),
            json.loads((entry / "convert.json").read_text()),
        )

    def _metric(self, card: Card) -> Any:
        """The card's metric, configured with ``metric.params`` when the card gives any."""
        metric = self.registry.get("metric", card.metric.name)
        configure = optional(metric, "configure")
        if configure is not None:
            return configure(dict(card.metric.params))
        if card.metric.params:
            raise CellError(
                "bad_input",
                f"{card.name}: metric {card.metric.name!r} takes no parameters, the card gives "
                f"metric.params {sorted(card.metric.params)}; remove them",
            )
        return metric

    def _convert(self, card: Card, source: Path, out: Path) -> None:
        frontend = self.registry.get("frontend", card.frontend)
        metric = self._metric(card)
        data = self.card_data(card)
        start = time.perf_counter()
        with _stage_errors("convert_error", f"{card.name} ({card.frontend})"):
            model = frontend.load(card, source)
            native = frontend.native_forward(model, card, data.eval_batch())
            frontend.export_onnx(model, card, out / "model.onnx")
        convert_s = time.perf_counter() - start
        _check_finite(
            native,
            f"{card.name}: the {card.frontend} model itself (FP32, before any conversion)",
            "bad_input",
            "check the weights and inputs.preprocess (scale, mean, std)",
        )
        cpu = self.registry.get("backend", self.registry.reference_backend())  # the host reference runtime
        result = cpu.compile(out / "model.onnx", "fp32", None, out / "work").run(data.eval_batch())
        shutil.rmtree(out / "work", ignore_errors=True)
        fidelity_only = optional(metric, "compared_with") == "fp32"  # scored against FP32: compare outputs only
        native_value = None if fidelity_only else float(np.mean(per_sample(metric, card, native, None, data.labels)))
        onnx_value = (
            None if fidelity_only else float(np.mean(per_sample(metric, card, result.outputs, None, data.labels)))
        )
        errors = {}
        for name in card.outputs:
            errors[name] = _relative_error(native[name], result.outputs[name])
        report = {
            "frontend": card.frontend,
            "source": str(source),
            "native_metric": native_value,
            "onnx_metric": onnx_value,
            "max_relative_error": errors,
            "convert_s": convert_s,
            "samples": data.samples,
        }
        np.savez(out / "fp32_outputs.npz", **result.outputs)
        (out / "convert.json").write_text(json.dumps(report, indent=1))
        gap = 0.0 if fidelity_only else abs(native_value - onnx_value)
        if gap > MAX_FP32_METRIC_GAP or max(errors.values()) > MAX_FP32_RELATIVE_ERROR:
            metrics = "" if fidelity_only else f"metric native {native_value:.4f} vs ONNX {onnx_value:.4f}, "
            raise CellError(
                "convert_error",
                f"{card.name}: the ONNX export disagrees with {card.frontend}: {metrics}max relative output error "
                f"{max(errors.values()):.2e} (limits {MAX_FP32_METRIC_GAP}, {MAX_FP32_RELATIVE_ERROR})",
            )

    def quantized(self, card: Card, precision: str, technique: str) -> Quantized:
        """Quantize ``card``'s canonical ONNX with its quantizer and run the QDQ model on the CPU EP."""
        converted = self.converted(card)
        key = key_of("quantize", convert_key(card), *self._quantizer_key(card, technique), precision, technique)
        build = lambda out: self._quantize(card, converted, precision, technique, out)  # noqa: E731
        entry = self.cache.entry("quantize", key, build)
        return Quantized(
            entry / "model_qdq.onnx",
            entry / "model.encodings",
            _load_npz(entry / "cpu_outputs.npz"),
            json.loads((entry / "quantize.json").read_text()),
        )

    def _quantizer_key(self, card: Card, technique: str) -> tuple[Any, ...]:
        """The quantizer a technique uses, and its settings where it declares them (QAT's budget)."""
        if technique != "qat":
            return (card.quantizer,)
        quantizer = self.qat_quantizer(card)
        settings = optional(quantizer, "settings")
        return (quantizer.name, settings() if settings else {})

    def qat_quantizer(self, card: Card) -> Any:
        """The card's quantization-aware-training quantizer (``qat_quantizer``, aimet_torch by default)."""
        if not card.qat_quantizer:
            raise CellError("quantize_error", f"{card.name}: the card sets qat_quantizer: null (no QAT for it)")
        quantizer = self.registry.get("quantizer", card.qat_quantizer)
        if optional(quantizer, "train_quantize") is None:
            raise CellError(
                "quantize_error",
                f"{card.path or card.name}: qat_quantizer {card.qat_quantizer!r} does not train (its modes: "
                f"{', '.join(quantizer.modes)}); name a QAT quantizer such as aimet_torch",
            )
        return quantizer

    def training_job(
        self,
        card: Card,
        calibration: list[dict[str, np.ndarray]] | None = None,
        trainer: Any = None,
    ) -> TrainingJob:
        """What QAT needs for ``card``: the canonical ONNX, the frontend's torch model (PyTorch cards), the
        calibration samples (the card's split unless ``calibration`` is given) and the preprocessed inputs of
        the dataset's ``train`` split, as many as ``trainer`` (default: the card's QAT quantizer) asks for.
        """
        converted = self.converted(card)
        framework_model = None
        frontend = self.registry.get("frontend", card.frontend)
        if optional(frontend, "framework") == "torch":
            framework_model = frontend.load(card, resolve_source(card, self.cache))
        trainer = trainer or self.qat_quantizer(card)
        training = training_inputs(card, self._dataset(card), optional(trainer, "samples"), self.cache)
        samples = calibration if calibration is not None else self.card_data(card).calibration_batches()
        return TrainingJob(card, converted.onnx, framework_model, samples, training)

    def train_quantize(
        self,
        card: Card,
        precision: str,
        out: Path,
        *,
        calibration: list[dict[str, np.ndarray]] | None = None,
        trainer: Any = None,
    ) -> QuantizeResult:
        """Quantization-aware training of ``card`` at ``precision`` into ``out``: the one QAT dispatch.

        The matrix's ``qat`` cells, ``zoocompat quantize --technique qat`` and the
        autoquant ladder's last rung all come here. ``trainer`` is a quantizer
        with ``train_quantize`` (default: the card's ``qat_quantizer``, checked by
        :meth:`qat_quantizer`); ``calibration`` replaces the card's calibration split.
        """
        trainer = trainer or self.qat_quantizer(card)
        job = self.training_job(card, calibration, trainer)
        return trainer.train_quantize(job, precision, Path(out))

    def _quantize(self, card: Card, converted: Converted, precision: str, technique: str, out: Path) -> None:
        quantizer = self.registry.get("quantizer", card.quantizer)
        data = self.card_data(card)
        start = time.perf_counter()
        with _stage_errors("quantize_error", f"{card.name} {precision} {technique}"):
            if technique == "auto":  # the autoquant ladder at the cell's precision (zoocompat/run/autoquant.py)
                result = auto_quant_cell(self, card, precision, out)
            elif technique == "qat":
                result = self.train_quantize(card, precision, out)
            else:
                result = quantizer.quantize(converted.onnx, data.calibration_batches(), precision, technique, out)
        quantize_s = time.perf_counter() - start
        cpu = self.registry.get("backend", self.registry.reference_backend())  # the host reference runtime
        run = cpu.compile(result.qdq_onnx, precision, None, out / "work").run(data.eval_batch())
        shutil.rmtree(out / "work", ignore_errors=True)
        np.savez(out / "cpu_outputs.npz", **run.outputs)
        report = dict(result.report, quantize_s=quantize_s)
        (out / "quantize.json").write_text(json.dumps(report, indent=1, default=str))

    # -- the cell ------------------------------------------------------------

    def run_cell(self, cell: Cell) -> CellRecord:
        """Run one cell end to end and write its record; never raises for a cell's own failure."""
        record = cell.record("error")
        try:
            self._run(cell, record)
        except CellError as error:
            record.status = "fail"
            record.category = error.category
            record.reason = error.message
            record.diagnosis = diagnose_failure(self, cell, record)  # first bad layer; never raises
        except PluginError as error:  # the card names a plugin that is not installed
            record.status = "fail"
            record.category = "bad_input"
            record.reason = f"{self.cards[cell.model].path}: {error}"
        except Exception as error:  # a bug or an unexpected library error: keep the cell, say where
            record.status = "error"
            record.category = "crash"
            if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
                record.reason = (
                    f"the disk is full: {error.strerror} (cache {self.cache.root}, report {self.report.root}); "
                    "free space or point ZOOCOMPAT_CACHE / --zoo-report at a larger disk, then run again "
                    "with --resume"
                )
            else:
                tail = "".join(traceback.format_exception(error)[-3:]).strip()
                record.reason = f"unexpected {type(error).__name__}: {error} | {tail[-600:]}"
        self.report.write_cell(record)
        return record

    def _backend_run(
        self,
        backend: Any,
        cell: Cell,
        model_path: Path,
        inputs: dict[str, np.ndarray],
        workdir: Path,
        record: CellRecord,
    ) -> Any:
        """Compile and run ``model_path`` on the cell's backend, or reuse the outputs of an identical earlier run."""
        log = workdir / "runner.log"
        record.artifacts["runner_log"] = str(log)
        run = lambda: backend.compile(model_path, cell.precision, cell.sdk, workdir).run(inputs)  # noqa: E731
        if not self.reuse_outputs:
            return run()
        runtime = dict(record.backend_info)  # the backend's describe(): what the runner will load is set after
        key = reuse.key(backend, runtime, cell.precision, cell.sdk, model_path, reuse.inputs_digest(inputs))
        result, note = reuse.run_or_reuse(self.cache, key, run, log)
        record.backend_info["outputs"] = note
        if "log" in note:
            record.artifacts["runner_log"] = note["log"]
        return result

    def _run(self, cell: Cell, record: CellRecord) -> None:
        card = self.cards[cell.model]
        backend = self.registry.get("backend", cell.backend)
        record.backend_info = backend.describe(cell.sdk)
        unavailable = backend.available(cell.sdk)
        if unavailable:
            record.status = "skip"
            record.reason = f"unavailable: {unavailable}"
            return
        metric = self._metric(card)
        mismatch = model_mismatch(card, self.registry, self.cache)  # before the data: the model says more
        if mismatch:
            raise CellError(
                "convert_error",
                f"{card.path}: the model does not match the card:\n" + "\n".join(f"  - {p}" for p in mismatch),
            )
        data = self.card_data(card)
        converted = self.converted(card)
        record.timing = Timing(convert_s=converted.report["convert_s"])
        record.artifacts["fp32_onnx"] = str(converted.onnx)
        reference = converted.fp32_outputs
        model_path = converted.onnx
        if cell.quantized:
            quantized = self.quantized(card, cell.precision, cell.quant)
            record.timing.quantize_s = quantized.report.get("quantize_s")
            record.artifacts.update(qdq_onnx=str(quantized.qdq_onnx), encodings=str(quantized.encodings))
            record.quantization = _quantization_summary(quantized.report)
            reference = quantized.cpu_outputs
            model_path = quantized.qdq_onnx
        workdir = self.report.root / "work" / cell.id
        result = self._backend_run(backend, cell, model_path, data.eval_batch(), workdir, record)
        for bulky in workdir.glob("*.npz"):
            bulky.unlink()
        _check_finite(
            result.outputs,
            f"{cell.id}: the {cell.backend} backend's {cell.precision} run",
            "fidelity",
            "the FP32 and CPU reference runs are finite, so this is the backend's numerics",
        )
        record.timing.compile_s = result.compile_s
        record.timing.run_s = result.run_s
        record.timing.per_sample_ms = result.info.get("per_sample_ms")
        record.backend_info["loaded"] = result.info.get("runtime") or {}  # what the runner process really loaded
        placement = result.placement
        record.coverage = Coverage(
            target=placement.target,
            target_nodes=placement.target_nodes,
            total_nodes=placement.total_nodes,
            fallback_ops=placement.fallback_ops,
            reasons=placement.reasons,
            partitions=placement.partitions,
            io_nodes=placement.io_nodes,
        )
        output = card.metric_outputs[0]  # fidelity to FP32 is measured on the primary metric output
        scores = per_sample(metric, card, result.outputs, converted.fp32_outputs, data.labels)
        value = float(np.mean(scores))
        tolerance = card.tolerance_for(cell.precision)
        floor = bool(optional(metric, "floor"))
        if floor:  # the tolerance is the lowest allowed mean score: the paired drop is the shortfall below it
            fp32_value = None
            paired = paired_drop(np.full(len(scores), tolerance), scores, higher_is_better=True)
            verdict, bound = paired.verdict(0.0), 0.0
        else:
            fp32_scores = per_sample(metric, card, converted.fp32_outputs, converted.fp32_outputs, data.labels)
            fp32_value = float(np.mean(fp32_scores))
            if all(np.array_equal(converted.fp32_outputs[n], result.outputs[n]) for n in card.metric_outputs):
                # bit-identical outputs (the cpu fp32 cell is the reference run itself): no drop to bound
                paired = PairedDrop(0.0, (0.0, 0.0), "identical outputs", len(scores))
            else:
                paired = paired_drop(fp32_scores, scores, metric.higher_is_better)
            verdict, bound = paired.verdict(tolerance), tolerance
        record.metric = MetricResult(
            name=metric.name,
            fp32=fp32_value,
            value=value,
            drop=None if floor else paired.drop,
            tolerance=tolerance,
            samples=len(scores),
            interval=mean_interval(scores),
            drop_interval=None if floor else paired.interval,
            drop_method=f"floor: the mean's 95% interval against the tolerance ({paired.method})"
            if floor
            else paired.method,
            samples_needed=paired.samples_needed(bound) if verdict == "inconclusive" else None,
            native_fp32=converted.report["native_metric"],
            drop_unit=None
            if floor
            else ("points" if metric.higher_is_better and 0.0 <= fp32_value <= 1.0 else "value"),
        )
        same_as_reference = cell.backend == self.registry.reference_backend()
        record.fidelity = Fidelity(
            sqnr_vs_fp32_db=sqnr_db(converted.fp32_outputs[output], result.outputs[output]),
            sqnr_vs_cpu_db=None if same_as_reference else sqnr_db(reference[output], result.outputs[output]),
            reference_vs_fp32_db=None
            if same_as_reference
            else sqnr_db(converted.fp32_outputs[output], reference[output]),
            threshold_db=None if same_as_reference else THRESHOLD_DB.get(cell.precision),
            cosine_vs_fp32=cosine_similarity(converted.fp32_outputs[output], result.outputs[output]),
        )
        unfaithful = (
            None
            if same_as_reference
            else fidelity_problem(
                cell.precision,
                record.fidelity.sqnr_vs_cpu_db,
                record.fidelity.sqnr_vs_fp32_db,
                record.fidelity.reference_vs_fp32_db,
            )
        )
        reference_value = card.metric.fp32_reference
        short = fp32_value is not None and reference_value is not None
        if short and (fp32_value < reference_value if metric.higher_is_better else fp32_value > reference_value):
            side = "below" if metric.higher_is_better else "above"  # the reference is a ceiling for an error
            raise CellError(
                "accuracy",
                f"{card.name}: FP32 {metric.name} measured {fp32_value:.4f} on {len(scores)} samples is {side} "
                f"the card's fp32_reference {reference_value:.4f}: the model or its data is not what the card says",
            )
        measured, limit = _measured(
            metric.name, metric.higher_is_better, floor, paired, fp32_value, value, record.metric.interval, tolerance
        )
        if verdict == "fail":
            raise CellError("accuracy", f"{measured}, {'below' if floor else 'more than'} {limit}")
        if unfaithful:
            raise CellError("fidelity", f"{cell.backend} {cell.precision} {output!r}: {unfaithful}; {measured}")
        if verdict == "inconclusive":
            record.status = "inconclusive"
            record.category = "accuracy"
            needed = record.metric.samples_needed
            record.reason = f"{measured} straddles {limit}: " + (
                f"about {needed} evaluation samples would resolve it (raise dataset.evaluation in "
                f"{card.path.name if card.path else 'the card'})"
                if needed
                else f"the {'mean equals the floor' if floor else 'drop equals the tolerance'}, "
                "no sample count resolves it"
            )
            return
        record.status = "pass"
        on = f"{placement.target_nodes}/{placement.total_nodes} nodes on {placement.target}"
        record.reason = on if not placement.fallback_ops else f"{on}; fell back: {placement.fallback_ops}"
