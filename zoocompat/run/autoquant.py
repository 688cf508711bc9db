"""AutoQuant: climb a ladder of quantization techniques, cheapest first, until the accuracy drop is allowed.

The ladder (AIMET's AutoQuant order; aimet 2.42 ships no ``auto_quant`` module, so
this is the project's own):

1. ``ptq``: min-max PTQ at the base precision; BatchNorm fold is part of it.
2. ``cle``: cross-layer equalization (BN fold, cross-layer scaling, high-bias fold).
3. AdaRound: on top of CLE when CLE beat plain PTQ (``cle+adaround``), else ``adaround``.
4. 16-bit activations (``w8a16``) with the better of PTQ / CLE, when the caller allows
   a higher precision than the one asked for.
5. ``qat``: quantization-aware training at the base precision (the card's
   ``qat_quantizer``, aimet-torch by default: QuantizationSimModel fine-tuned by
   distillation from the FP32 model, see ``plugins/quantizers/aimet_torch.py``).

It stops at the first step whose drop (FP32 metric minus quantized metric, in
metric units; 0.01 = one point of top-1) is within the allowed drop. When none
is, the result is the step with the best metric and ``met`` is false.

:func:`climb` is the pure ladder logic: it takes an ``evaluate(technique,
precision)`` function, so tests can drive it with a fake. :func:`auto_quant`
wires it to a card: quantize with the card's quantizer, score the QDQ model on
the CPU backend over the card's evaluation split.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoocompat.api import QuantizeResult
from zoocompat.api.errors import CellError
from zoocompat.api.protocols import optional
from zoocompat.model.cards import Card
from zoocompat.run.scoring import fp32_value, score

if TYPE_CHECKING:  # the pipeline runs the ladder for ``auto`` cells: it imports this module, not the reverse
    from zoocompat.run.pipeline import CellRunner

__all__ = ["AutoQuantResult", "Skip", "Step", "Trial", "auto_quant", "auto_quant_cell", "climb"]


class Skip(Exception):
    """Raised by an evaluator for a step it cannot run; the message is the reason."""


@dataclass
class Trial:
    """What an evaluator returns for one (technique, precision)."""

    accuracy: float
    qdq_onnx: Path | None = None
    encodings: Path | None = None
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class Step:
    """One rung tried: ``status`` is ``met``, ``below`` (drop too large), ``skipped`` or ``error``."""

    technique: str
    precision: str
    status: str
    accuracy: float | None = None
    drop: float | None = None
    seconds: float = 0.0
    note: str = ""
    qdq_onnx: Path | None = None
    encodings: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``steps`` entry of ``zoocompat autoquant --json``."""
        data = asdict(self)
        data.update(
            qdq_onnx=str(self.qdq_onnx) if self.qdq_onnx else None,
            encodings=str(self.encodings) if self.encodings else None,
            seconds=round(self.seconds, 3),
        )
        return data


@dataclass
class AutoQuantResult:
    """The ladder's outcome: the chosen step's model and encodings, and every step tried."""

    fp32: float
    allowed_drop: float
    met: bool
    chosen: Step | None
    steps: list[Step]
    metric: str = ""
    qdq_onnx: Path | None = None  # the chosen step's files (copied beside the steps by auto_quant)
    encodings: Path | None = None

    @property
    def accuracy(self) -> float | None:
        """The chosen step's metric (``None`` when no step produced a model)."""
        return self.chosen.accuracy if self.chosen else None

    def to_json(self) -> dict[str, Any]:
        """``{accuracy, fp32, encodings, steps: [...]}`` plus the chosen model, technique and whether it met."""
        chosen = self.chosen
        return {
            "accuracy": self.accuracy,
            "fp32": self.fp32,
            "drop": chosen.drop if chosen else None,
            "allowed_drop": self.allowed_drop,
            "met": self.met,
            "metric": self.metric,
            "technique": chosen.technique if chosen else None,
            "precision": chosen.precision if chosen else None,
            "qdq_onnx": str(self.qdq_onnx) if self.qdq_onnx else None,
            "encodings": str(self.encodings) if self.encodings else None,
            "steps": [s.to_json() for s in self.steps],
        }


Evaluate = Callable[[str, str], Trial]


def _drop(fp32: float, accuracy: float, higher_is_better: bool) -> float:
    return fp32 - accuracy if higher_is_better else accuracy - fp32


def climb(
    evaluate: Evaluate,
    fp32: float,
    allowed_drop: float = 0.01,
    *,
    precision: str = "w8a8",
    allow_higher_precision: bool = True,
    higher_is_better: bool = True,
    progress: Callable[[Step], None] | None = None,
) -> AutoQuantResult:
    """Try the ladder's steps in order; stop at the first whose drop is <= ``allowed_drop``.

    ``evaluate(technique, precision)`` quantizes and scores; it may raise
    :class:`Skip` (the step is recorded as skipped with the reason) or
    :class:`CellError` (recorded as an error; the ladder goes on). ``progress``
    is called with each finished step.
    """
    steps: list[Step] = []
    tried: dict[str, Step] = {}

    def better(a: str, b: str) -> bool:
        """Whether step ``a`` scored strictly better than step ``b`` (both ran)."""
        sa, sb = tried.get(a), tried.get(b)
        if not (sa and sb and sa.accuracy is not None and sb.accuracy is not None):
            return False
        return sa.accuracy > sb.accuracy if higher_is_better else sa.accuracy < sb.accuracy

    def run(key: str, technique: str, step_precision: str, note: str = "") -> bool:
        began = time.perf_counter()
        try:
            trial = evaluate(technique, step_precision)
        except Skip as why:
            step = Step(technique, step_precision, "skipped", note=str(why))
        except CellError as error:
            step = Step(technique, step_precision, "error", note=f"{error.category}: {error.message}")
        else:
            drop = _drop(fp32, trial.accuracy, higher_is_better)
            met = drop <= allowed_drop + 1e-12
            step = Step(
                technique,
                step_precision,
                "met" if met else "below",
                trial.accuracy,
                drop,
                note=note,
                qdq_onnx=trial.qdq_onnx,
                encodings=trial.encodings,
            )
        step.seconds = time.perf_counter() - began
        steps.append(step)
        tried[key] = step
        if progress:
            progress(step)
        return step.status == "met"

    done = run("ptq", "ptq", precision, "min-max PTQ; BatchNorm folded first")
    if not done:
        done = run("cle", "cle", precision, "cross-layer equalization + high-bias fold, then min-max")
    if not done:
        on_cle = better("cle", "ptq")
        technique = "cle+adaround" if on_cle else "adaround"
        done = run("adaround", technique, precision, "on top of CLE (it helped)" if on_cle else "CLE did not help")
    if not done:
        wide = "w8a16"
        if not allow_higher_precision or precision == wide:
            steps.append(
                Step(
                    "cle" if better("cle", "ptq") else "ptq",
                    wide,
                    "skipped",
                    note=f"the cell's precision is fixed at {precision}"
                    if precision != wide
                    else "already at 16-bit activations",
                )
            )
            if progress:
                progress(steps[-1])
        else:
            done = run("w8a16", "cle" if better("cle", "ptq") else "ptq", wide, "16-bit activations")
    if not done:
        run("qat", "qat", precision, "quantization-aware training (fine-tuned QuantizationSimModel)")

    ran = [s for s in steps if s.accuracy is not None]
    met = bool(steps) and any(s.status == "met" for s in steps)
    if met:
        chosen = next(s for s in steps if s.status == "met")
    elif ran:
        chosen = max(ran, key=lambda s: s.accuracy if higher_is_better else -s.accuracy)
    else:
        chosen = None
    return AutoQuantResult(
        fp32=fp32,
        allowed_drop=allowed_drop,
        met=met,
        chosen=chosen,
        steps=steps,
        qdq_onnx=chosen.qdq_onnx if chosen else None,
        encodings=chosen.encodings if chosen else None,
    )


def _check_precision(quantizer: Any, precision: str) -> None:
    """Skip a rung at a precision its quantizer does not declare."""
    if precision not in quantizer.precisions:
        raise Skip(f"quantizer {quantizer.name} has no precision {precision}")


def _offers(quantizer: Any, technique: str) -> bool:
    offered = optional(quantizer, "techniques")
    return all(part in offered for part in technique.split("+"))


def auto_quant(
    card: Card,
    allowed_accuracy_drop: float = 0.01,
    *,
    runner: CellRunner,
    out_dir: Path | None = None,
    precision: str = "w8a8",
    allow_higher_precision: bool = True,
    calibration: list[dict] | None = None,
    progress: Callable[[Step], None] | None = None,
) -> AutoQuantResult:
    """Run the ladder for ``card`` with ``runner`` (a :class:`~zoocompat.run.pipeline.CellRunner` over its zoo).

    Each step quantizes the card's canonical ONNX with the card's quantizer into
    ``out_dir/<precision>-<technique>/`` and scores the QDQ model on the CPU
    backend over the card's evaluation split (:mod:`zoocompat.run.scoring`);
    the QAT step trains through :meth:`~zoocompat.run.pipeline.CellRunner.train_quantize`.
    ``calibration`` replaces the card's calibration split (an input list's
    samples). Returns the :class:`AutoQuantResult`; the chosen step's files are
    also copied to ``out_dir/model_qdq.onnx`` and ``out_dir/model.encodings``,
    with ``out_dir/autoquant.json``. A command that starts from a model name
    resolves it first (:func:`zoocompat.run.quantize.find_card`).
    """
    out_dir = Path(out_dir) if out_dir else Path("quantized") / f"{card.name}-autoquant"
    quantizer = runner.registry.get("quantizer", card.quantizer)
    converted = runner.converted(card)
    samples = calibration if calibration is not None else runner.card_data(card).calibration_batches()
    metric = runner._metric(card)
    fp32 = fp32_value(runner, card)
    if optional(metric, "floor"):  # the tolerance is the lowest allowed score (SQNR in dB): met at or above it
        fp32, allowed_accuracy_drop = allowed_accuracy_drop, 0.0

    def evaluate(technique: str, step_precision: str) -> Trial:
        folder = out_dir / f"{step_precision}-{technique.replace('+', '_')}"
        if technique == "qat":
            if not card.qat_quantizer:
                raise Skip("the card sets qat_quantizer: null")
            trainer = runner.qat_quantizer(card)
            _check_precision(trainer, step_precision)
            result = runner.train_quantize(card, step_precision, folder, calibration=calibration, trainer=trainer)
        else:
            _check_precision(quantizer, step_precision)
            if not _offers(quantizer, technique):
                raise Skip(f"quantizer {quantizer.name} does not offer {technique}")
            result = quantizer.quantize(converted.onnx, samples, step_precision, technique, folder)
        (folder / "quantize.json").write_text(json.dumps(result.report, indent=1, default=str))
        value = score(runner, card, result.qdq_onnx, step_precision, folder / "work")
        return Trial(value, result.qdq_onnx, result.encodings, result.report)

    outcome = climb(
        evaluate,
        fp32,
        allowed_accuracy_drop,
        precision=precision,
        allow_higher_precision=allow_higher_precision,
        higher_is_better=metric.higher_is_better,
        progress=progress,
    )
    outcome.metric = metric.name
    chosen = outcome.chosen
    if chosen and chosen.qdq_onnx and chosen.encodings:
        shutil.copyfile(chosen.qdq_onnx, out_dir / "model_qdq.onnx")
        shutil.copyfile(chosen.encodings, out_dir / "model.encodings")
        outcome.qdq_onnx, outcome.encodings = out_dir / "model_qdq.onnx", out_dir / "model.encodings"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "autoquant.json").write_text(json.dumps(outcome.to_json(), indent=1))
    return outcome


def auto_quant_cell(runner: CellRunner, card: Card, precision: str, out: Path) -> QuantizeResult:
    """The matrix's ``auto`` quant mode: climb at the cell's own precision, keep the chosen model in ``out``.

    The allowed drop is the card's tolerance for ``precision``; the w8a16 rung is
    skipped (the cell's precision is fixed). Writes ``out/model_qdq.onnx``,
    ``out/model.encodings`` and ``out/autoquant.json`` and returns a
    :class:`~zoocompat.api.QuantizeResult` whose report names the chosen
    technique and every step. Raises ``CellError("quantize_error")`` when no
    step produced a model.
    """
    out = Path(out)
    ladder = out / "ladder"
    outcome = auto_quant(
        card,
        card.tolerance_for(precision),
        runner=runner,
        out_dir=ladder,
        precision=precision,
        allow_higher_precision=False,
    )
    if outcome.chosen is None or outcome.qdq_onnx is None or outcome.encodings is None:
        notes = "; ".join(f"{s.technique} {s.status}: {s.note}" for s in outcome.steps)
        raise CellError("quantize_error", f"{card.name} {precision} auto: no ladder step produced a model ({notes})")
    shutil.copyfile(outcome.qdq_onnx, out / "model_qdq.onnx")
    shutil.copyfile(outcome.encodings, out / "model.encodings")
    summary = outcome.to_json()
    summary.update(qdq_onnx=str(out / "model_qdq.onnx"), encodings=str(out / "model.encodings"))
    for step in summary["steps"]:  # the ladder's own files are deleted below
        step.update(qdq_onnx=None, encodings=None)
    (out / "autoquant.json").write_text(json.dumps(summary, indent=1))
    shutil.rmtree(ladder, ignore_errors=True)  # the other steps' models are not kept in the cache
    report = {
        "quantizer": card.quantizer,
        "technique": f"auto -> {outcome.chosen.technique}",
        "precision": precision,
        "autoquant": {k: summary[k] for k in ("met", "allowed_drop", "accuracy", "fp32", "technique", "steps")},
    }
    return QuantizeResult(qdq_onnx=out / "model_qdq.onnx", encodings=out / "model.encodings", report=report)
