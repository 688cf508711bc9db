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
from zoocompat.api.cache import ArtifactCache, key_of, sha256_file
from zoocompat.api.environment import memory_limit_text
from zoocompat.api.errors import CellError, PluginError
from zoocompat.api.protocols import optional
from zoocompat.api.registry import Registry
from zoocompat.diagnose.first_bad import diagnose_failure
from zoocompat.model.budgets import Limits, budget_problems, evaluation_samples_within, limits_for
from zoocompat.model.cards import Card
from zoocompat.model.check import model_mismatch
from zoocompat.model.data import CardData, build_card_data, build_evaluation, pool_size, training_inputs
from zoocompat.model.datasources import source_digest
from zoocompat.model.measured import convert_key
from zoocompat.model.sources import resolve_source
from zoocompat.report.results import (
    CellRecord,
    Coverage,
    Fidelity,
    LookResult,
    MetricResult,
    ModelDigests,
    ReportDir,
    Timing,
)
from zoocompat.run import reuse
from zoocompat.run.autoquant import auto_quant_cell
from zoocompat.run.matrix import Cell
from zoocompat.run.scoring import per_sample
from zoocompat.verdict.fidelity import THRESHOLD_DB, fidelity_problem
from zoocompat.verdict.sequential import SequentialTest, schedule
from zoocompat.verdict.stats import cosine_similarity, mean_interval, sqnr_db, sqnr_spread_db

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


def _memory_error(error: BaseException) -> MemoryError | None:
    """The ``MemoryError`` behind ``error`` (its cause or context chain), if there is one."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, MemoryError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


@contextmanager
def _stage_errors(category: str, where: str) -> Iterator[None]:
    """Turn a plugin's unexpected exception into a CellError of the stage's category."""
    try:
        yield
    except (CellError, MemoryError):  # a MemoryError is the worker's limit: run_cell records it as resource
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


def _level(alpha: float) -> str:
    """A ``1 - alpha`` interval's level in words: ``95%``, ``98.75%``."""
    return f"{100 * (1 - alpha):.4g}%"


def _measured(
    name: str,
    higher_is_better: bool,
    test: SequentialTest,
    fp32: float | None,
    value: float,
    interval: tuple[float, float],
) -> tuple[str, str]:
    """What a cell's metric measured at its last look, and the limit it is judged against, in words."""
    look, tolerance = test.looks[-1], test.tolerance
    level = _level(look.alpha)
    where = f"{look.samples} samples" + (
        f", look {len(test.looks)} of {len(test.sizes)}" if len(test.sizes) > 1 else ""
    )
    if test.floor:
        low, high = interval
        return (
            f"{name} {value:.2f} (mean over {where} vs FP32; {level} interval {low:.2f} .. {high:.2f})",
            f"the floor {tolerance:.2f}",
        )
    low, high = look.interval
    if not higher_is_better or not 0.0 <= fp32 <= 1.0:  # an error (NME, MAE) or a score in its own units
        return (
            f"{name} {'rose' if not higher_is_better else 'dropped'} by {look.drop:.4g} ({fp32:.4g} -> {value:.4g} "
            f"on {where}; {level} interval of the paired change {low:.4g} .. {high:.4g})",
            f"the tolerance {tolerance:.4g}",
        )
    return (
        f"{name} dropped {look.drop * 100:.2f} points ({fp32:.4f} -> {value:.4f} on {where}; "
        f"{level} interval of the paired drop {low * 100:.2f} .. {high * 100:.2f})",
        f"the tolerance {tolerance * 100:.2f}",
    )


@dataclass
class Evaluated:
    """What a cell's looks have run so far: the evaluation inputs' outputs on the backend, on the reference
    runs (FP32, and the QDQ model on the CPU), and the labels; extended look by look, never recomputed.
    """

    outputs: dict[str, np.ndarray]
    fp32: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]
    labels: np.ndarray | None
    #: the last look's per-sample scores of the backend's outputs and of FP32's (``None`` for a floor metric);
    #: scored afresh over all samples at each look, since a metric may score a sample against the others
    #: (recall@k searches the whole evaluation set)
    scores: np.ndarray | None = None
    fp32_scores: np.ndarray | None = None

    def extend(self, outputs: dict, fp32: dict, reference: dict, labels: np.ndarray | None) -> None:
        """Append a later look's new samples (the sample axis is first on every output)."""
        self.outputs = _concat(self.outputs, outputs)
        self.fp32 = _concat(self.fp32, fp32)
        self.reference = _concat(self.reference, reference)
        if self.labels is not None:
            self.labels = np.concatenate([self.labels, labels])


def _model_digests(artifacts: dict[str, Any]) -> ModelDigests:
    """sha256 of the FP32 ONNX, QDQ model and encodings named in a record's ``artifacts`` (``None`` for a file
    the cell has not, or a folder).
    """
    found = {}
    for name in ("fp32_onnx", "qdq_onnx", "encodings"):
        path = Path(artifacts[name]) if artifacts.get(name) else None
        found[name] = sha256_file(path) if path is not None and path.is_file() else None
    return ModelDigests(**found)


def _concat(head: dict[str, np.ndarray], tail: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each array of ``head`` followed by ``tail``'s of the same name, along the sample axis."""
    return {name: np.concatenate([values, tail[name]]) for name, values in head.items()}


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
        max_evaluation: int | None = None,
        budget_s: float | None = None,
        max_sample_mb: float | None = None,
        max_split_mb: float | None = None,
    ) -> None:
        self.registry = registry
        self.cards = cards
        self.cache = cache
        self.report = report
        #: reuse a backend's outputs for the same model bytes, inputs and runtime (zoocompat/reuse.py)
        self.reuse_outputs = reuse.enabled() if reuse_outputs is None else reuse_outputs
        #: the command line's limits on later looks: most evaluation samples and seconds per cell
        #: (``--max-evaluation``, ``--evaluation-budget``); they lower a card's own, never raise it
        self.max_evaluation = max_evaluation
        self.budget_s = budget_s
        #: the command line's memory limits per sample and per split (``--max-sample-mb``, ``--max-split-mb``)
        self.max_sample_mb = max_sample_mb
        self.max_split_mb = max_split_mb

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

    def limits(self, card: Card) -> Limits:
        """The memory limits per sample and per split for ``card`` (:mod:`zoocompat.model.budgets`)."""
        return limits_for(card, self.max_sample_mb, self.max_split_mb)

    def evaluation_chunk(self, card: Card, start: int, stop: int) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """A later look's new evaluation samples ``start`` to ``stop`` and their labels (cached)."""
        dataset = self._dataset(card)
        own = source_digest(card, self.cache) if card.dataset.source is not None else None
        code = reuse.plugin_digest(dataset) if dataset is not None else None
        key = key_of(
            "evaluation",
            card.dataset.model_dump(mode="json", exclude={"max_evaluation", "budget_s"}),
            [i.model_dump(mode="json") for i in card.inputs],
            own,
            code,
            start,
            stop,
        )

        def build(out: Path) -> None:
            inputs, labels = build_evaluation(card, dataset, start, stop, self.cache)
            arrays = {f"input.{i}": inputs[spec.name] for i, spec in enumerate(card.inputs)}
            np.savez(out / "evaluation.npz", **arrays, **({} if labels is None else {"labels": labels}))

        with np.load(self.cache.entry("data", key, build) / "evaluation.npz", allow_pickle=False) as data:
            inputs = {spec.name: data[f"input.{i}"] for i, spec in enumerate(card.inputs)}
            return inputs, data["labels"] if "labels" in data.files else None

    def evaluation_plan(self, card: Card, data: CardData) -> tuple[tuple[int, ...], str, float | None]:
        """The sample sizes of a card's looks, what limits the last (``pool`` / ``max_evaluation``), and the
        seconds later looks may spend (``None``: no limit).
        """
        if data.pool is None:  # data cached before the pool was recorded: count it (the record keeps it)
            data.pool = pool_size(card, self._dataset(card), self.cache)
        pool = data.pool
        most = card.dataset.most_evaluation(pool)
        if self.max_evaluation is not None:
            most = max(card.dataset.evaluation, min(most, self.max_evaluation))
        limit = "pool" if most >= pool else "max_evaluation"
        fits = evaluation_samples_within(card, self.limits(card), most)
        if fits < most:  # the looks' samples and outputs stay in memory: the split limit caps them
            most, limit = fits, "max_evaluation"
        budgets = [b for b in (card.dataset.budget_s, self.budget_s) if b is not None]
        return schedule(card.dataset.evaluation, most), limit, min(budgets) if budgets else None

    def evaluation_set(self, card: Card) -> tuple[dict[str, np.ndarray], np.ndarray | None, dict[str, np.ndarray]]:
        """Every evaluation sample a card's cells may look at (all its planned looks), their labels and their
        FP32 outputs: what ``zoocompat quantize`` and the autoquant ladder score on. The looks' own cache
        entries are read or made, so a matrix run and these commands share them.
        """
        data, converted = self.card_data(card), self.converted(card)
        sizes, _, _ = self.evaluation_plan(card, data)
        inputs, labels, fp32 = data.eval_batch(), data.labels, converted.fp32_outputs
        for have, want in zip(sizes, sizes[1:], strict=False):
            more, more_labels = self.evaluation_chunk(card, have, want)
            workdir = self.report.root / "work" / f"{card.name}-evaluation-{have}-{want}"
            more_fp32 = self._reference_outputs(converted.onnx, "fp32", more, workdir)
            inputs, fp32 = _concat(inputs, more), _concat(fp32, more_fp32)
            labels = None if labels is None else np.concatenate([labels, more_labels])
        return inputs, labels, fp32

    def _reference_outputs(self, model: Path, precision: str, inputs: dict[str, np.ndarray], workdir: Path) -> dict:
        """``model``'s outputs on the reference backend for a later look's inputs (kept in the cache)."""
        cpu = self.registry.get("backend", self.registry.reference_backend())
        key = reuse.key(cpu, cpu.describe(None), precision, None, model, reuse.inputs_digest(inputs))
        run = lambda: cpu.compile(model, precision, None, workdir).run(inputs)  # noqa: E731
        result, _ = reuse.run_or_reuse(self.cache, key, run, workdir / "runner.log")
        shutil.rmtree(workdir, ignore_errors=True)
        return result.outputs

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
        """The quantizer a technique uses, and its settings where it declares them (QAT's budget, how
        aimet_onnx exports biases): changing one re-quantizes.
        """
        if technique != "qat":
            settings = optional(self.registry.get("quantizer", card.quantizer), "settings")
            return (card.quantizer, settings()) if settings else (card.quantizer,)
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
            memory = _memory_error(error)
            if memory is not None:  # a plugin wrapped the worker's MemoryError: it is still a resource error
                return self._resource_error(record, memory)
            record.status = "fail"
            record.category = error.category
            record.reason = error.message
            record.diagnosis = diagnose_failure(self, cell, record)  # first bad layer; never raises
        except PluginError as error:  # the card names a plugin that is not installed
            record.status = "fail"
            record.category = "bad_input"
            record.reason = f"{self.cards[cell.model].path}: {error}"
        except MemoryError as error:  # over the worker's memory limit (--worker-memory-gb): this cell alone
            return self._resource_error(record, error)
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
                # a bug (ours or a plugin's): the reason says what and where, the traceback goes to a file
                frame = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
                where = f" in {Path(frame.filename).name}:{frame.lineno} ({frame.name})" if frame else ""
                log = self.report.root / "work" / cell.id / "traceback.txt"
                log.parent.mkdir(parents=True, exist_ok=True)
                log.write_text("".join(traceback.format_exception(error)))
                record.artifacts["traceback"] = str(log)
                message = " ".join(str(error).split())[:300]
                record.reason = (
                    f"unexpected {type(error).__name__}{where}: {message}; a bug in zoocompat or a plugin, not a "
                    f"verdict on the model: please report it with {log}"
                )
        self.report.write_cell(record)
        return record

    def _resource_error(self, record: CellRecord, error: MemoryError) -> CellRecord:
        """Record a cell that ran out of the memory its worker may take, and write it."""
        record.status = "error"
        record.category = "resource"
        record.reason = (
            f"the cell needed more memory than the worker may take ({memory_limit_text()}): "
            f"{error or 'an allocation failed'}; lower the card's sample counts or input sizes, or raise "
            "--worker-memory-gb"
        )
        self.report.write_cell(record)
        return record

    def _backend_run(
        self,
        backend: Any,
        cell: Cell,
        model_path: Path,
        inputs: dict[str, np.ndarray],
        workdir: Path,
        runtime: dict[str, Any],
    ) -> tuple[Any, dict[str, Any] | None]:
        """Compile and run ``model_path`` on the cell's backend, or reuse the outputs of an identical earlier run.

        Returns the result and the reuse note (``None`` when reuse is off); ``runtime`` is the backend's
        ``describe()`` for the cell's SDK.
        """
        run = lambda: backend.compile(model_path, cell.precision, cell.sdk, workdir).run(inputs)  # noqa: E731
        if not self.reuse_outputs:
            return run(), None
        key = reuse.key(backend, runtime, cell.precision, cell.sdk, model_path, reuse.inputs_digest(inputs))
        return reuse.run_or_reuse(self.cache, key, run, workdir / "runner.log")

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
        over = budget_problems(card, self.limits(card))  # from the shapes alone, before anything is built
        if over:
            raise CellError(
                "bad_input", f"{card.path}: the card's data would not fit:\n" + "\n".join(f"  - {p}" for p in over)
            )
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
        record.model_sha256 = _model_digests(record.artifacts)
        workdir = self.report.root / "work" / cell.id
        runtime = dict(record.backend_info)  # the backend's describe(): what the runner will load is set after
        record.artifacts["runner_log"] = str(workdir / "runner.log")
        result, note = self._backend_run(backend, cell, model_path, data.eval_batch(), workdir, runtime)
        if note is not None:
            record.backend_info["outputs"] = note
            if "log" in note:
                record.artifacts["runner_log"] = note["log"]
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
        tolerance = card.tolerance_for(cell.precision)
        floor = bool(optional(metric, "floor"))
        sizes, limit, budget_s = self.evaluation_plan(card, data)
        test = SequentialTest(sizes, tolerance, metric.higher_is_better, floor)
        seen = Evaluated(result.outputs, converted.fp32_outputs, reference, data.labels)
        identical = all(np.array_equal(converted.fp32_outputs[n], result.outputs[n]) for n in card.metric_outputs)
        later = {"seconds": 0.0, "notes": []}  # what the later looks spent, and their reuse notes
        stopped = self._look(card, metric, test, seen, identical)
        while test.next_size is not None:
            have, want = test.looks[-1].samples, test.next_size
            per_sample_s = (record.timing.run_s or 0.0) / have
            if budget_s is not None and later["seconds"] + per_sample_s * (want - have) > budget_s:
                stopped = "budget"
                break
            began = time.perf_counter()
            identical &= self._grow(card, cell, backend, runtime, model_path, seen, have, want, record, later)
            later["seconds"] += time.perf_counter() - began
            stopped = self._look(card, metric, test, seen, identical)
        if stopped is None:
            stopped = limit
        if later["notes"] and "outputs" in record.backend_info:
            record.backend_info["outputs"]["looks"] = later["notes"]
        scores, fp32_scores = seen.scores, seen.fp32_scores  # the last look's: the verdict's own
        value = float(np.mean(scores))
        last = test.looks[-1]
        fp32_value = None if fp32_scores is None else float(np.mean(fp32_scores))
        verdict = test.verdict
        record.metric = MetricResult(
            name=metric.name,
            fp32=fp32_value,
            value=value,
            drop=None if floor else last.drop,
            tolerance=tolerance,
            samples=len(scores),
            interval=mean_interval(scores, last.alpha),
            drop_interval=None if floor else last.interval,
            drop_method=f"floor: the mean's interval against the tolerance ({test.paired.method})"
            if floor
            else test.paired.method,
            samples_needed=test.samples_needed() if verdict == "inconclusive" else None,
            native_fp32=converted.report["native_metric"],
            drop_unit=None
            if floor
            else ("points" if metric.higher_is_better and 0.0 <= fp32_value <= 1.0 else "value"),
            looks=[LookResult(**vars(look)) for look in test.looks],
            planned=list(sizes),
            stopped=stopped,
            pool=data.pool,
        )
        same_as_reference = cell.backend == self.registry.reference_backend()
        spread, spread_samples = (
            (None, None) if same_as_reference else sqnr_spread_db(seen.reference[output], seen.outputs[output])
        )
        record.fidelity = Fidelity(
            sqnr_vs_fp32_db=sqnr_db(seen.fp32[output], seen.outputs[output]),
            sqnr_vs_cpu_db=None if same_as_reference else sqnr_db(seen.reference[output], seen.outputs[output]),
            reference_vs_fp32_db=None if same_as_reference else sqnr_db(seen.fp32[output], seen.reference[output]),
            threshold_db=None if same_as_reference else THRESHOLD_DB.get(cell.precision),
            cosine_vs_fp32=cosine_similarity(seen.fp32[output], seen.outputs[output]),
            sqnr_vs_cpu_spread_db=spread,
            samples=spread_samples,
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
        if fp32_scores is not None and reference_value is not None:
            # judged on FP32's interval, not its point value: a first look of 100 samples is noisy
            low, high = mean_interval(fp32_scores, last.alpha)
            if high < reference_value if metric.higher_is_better else low > reference_value:
                side = "below" if metric.higher_is_better else "above"  # the reference is a ceiling for an error
                raise CellError(
                    "accuracy",
                    f"{card.name}: FP32 {metric.name} measured {fp32_value:.4f} on {len(scores)} samples "
                    f"({_level(last.alpha)} interval {low:.4f} .. {high:.4f}) is {side} the card's fp32_reference "
                    f"{reference_value:.4f}: the model or its data is not what the card says",
                )
        measured, limit_text = _measured(
            metric.name, metric.higher_is_better, test, fp32_value, value, record.metric.interval
        )
        if verdict == "fail":
            raise CellError("accuracy", f"{measured}, {'below' if floor else 'more than'} {limit_text}")
        if unfaithful:
            raise CellError("fidelity", f"{cell.backend} {cell.precision} {output!r}: {unfaithful}; {measured}")
        if verdict == "inconclusive":
            record.status = "inconclusive"
            record.category = "accuracy"
            record.reason = f"{measured} straddles {limit_text}: " + _unresolved(
                card, record.metric, stopped, budget_s, self.max_evaluation
            )
            return
        record.status = "pass"
        on = f"{placement.target_nodes}/{placement.total_nodes} nodes on {placement.target}"
        record.reason = on if not placement.fallback_ops else f"{on}; fell back: {placement.fallback_ops}"

    def _look(self, card: Card, metric: Any, test: SequentialTest, seen: Evaluated, identical: bool) -> str | None:
        """Score everything evaluated so far (kept in ``seen``) and take the next look; ``decided`` when it settles
        the cell.
        """
        seen.scores = per_sample(metric, card, seen.outputs, seen.fp32, seen.labels)
        seen.fp32_scores = None if test.floor else per_sample(metric, card, seen.fp32, seen.fp32, seen.labels)
        test.look(seen.fp32_scores, seen.scores, identical=identical and not test.floor)
        return "decided" if test.decided else None

    def _grow(
        self,
        card: Card,
        cell: Cell,
        backend: Any,
        runtime: dict[str, Any],
        model_path: Path,
        seen: Evaluated,
        have: int,
        want: int,
        record: CellRecord,
        later: dict[str, Any],
    ) -> bool:
        """Run the next look's new samples ``have`` to ``want`` on the backend and the reference runs, and add
        them to ``seen``; ``True`` when the backend's outputs are the FP32 reference's own.
        """
        inputs, labels = self.evaluation_chunk(card, have, want)
        workdir = self.report.root / "work" / cell.id / f"look-{have}-{want}"
        converted = self.converted(card)
        fp32 = self._reference_outputs(converted.onnx, "fp32", inputs, workdir / "fp32")
        reference = fp32
        if cell.quantized:
            quantized = self.quantized(card, cell.precision, cell.quant)
            reference = self._reference_outputs(quantized.qdq_onnx, cell.precision, inputs, workdir / "reference")
        result, note = self._backend_run(backend, cell, model_path, inputs, workdir, runtime)
        for bulky in workdir.glob("*.npz"):
            bulky.unlink()
        _check_finite(
            result.outputs,
            f"{cell.id}: the {cell.backend} backend's {cell.precision} run (samples {have}..{want})",
            "fidelity",
            "the FP32 and CPU reference runs are finite, so this is the backend's numerics",
        )
        record.timing.run_s = (record.timing.run_s or 0.0) + result.run_s
        if note is not None:
            later["notes"].append({"samples": [have, want], "state": note["state"], "entry": note["entry"]})
        seen.extend(result.outputs, fp32, reference, labels)
        return all(np.array_equal(fp32[n], result.outputs[n]) for n in card.metric_outputs)


def _unresolved(card: Card, metric: MetricResult, stopped: str, budget_s: float | None, cli_max: int | None) -> str:
    """Why an inconclusive cell stopped, and what would resolve it."""
    needed = metric.samples_needed
    where = card.path.name if card.path else "the card"
    if needed is None:
        return (
            f"the {'mean equals the floor' if metric.drop is None else 'drop equals the tolerance'}, no sample "
            "count resolves it"
        )
    more = f"about {needed} evaluation samples would resolve it"
    if stopped == "pool":
        origin = f"dataset {card.dataset.name!r}" if card.dataset.name else "the card's own data"
        return (
            f"pool exhausted at {metric.samples} evaluation samples ({origin} holds no more after calibration); "
            f"{more}, with more data"
        )
    if stopped == "budget":
        return (
            f"the evaluation budget of {budget_s:g} s was spent at {metric.samples} samples; {more} "
            f"(raise dataset.budget_s in {where} or --evaluation-budget)"
        )
    pool = f" of the {metric.pool} the pool holds" if metric.pool else ""
    if cli_max is not None and metric.samples >= cli_max:
        return f"stopped at --max-evaluation {cli_max}{pool}; {more} (raise --max-evaluation)"
    return f"stopped at dataset.max_evaluation {metric.samples}{pool}; {more} (raise dataset.max_evaluation in {where})"
