"""Score a card's models on the reference backend over the card's evaluation split.

The one measurement ``zoocompat quantize``, the autoquant ladder and the
technique benchmark share: the card's metric of a QDQ model (or of the
canonical FP32 ONNX) run on the reference backend (the built-in ``cpu``). ``runner`` is a
:class:`~zoocompat.run.pipeline.CellRunner`; it is passed in, not imported,
so the pipeline can use the ladder that uses these functions.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from zoocompat.api.errors import CellError
from zoocompat.api.protocols import optional
from zoocompat.model.cards import Card

__all__ = ["fp32_value", "per_sample", "score"]


def per_sample(
    metric: Any,
    card: Card,
    outputs: dict[str, np.ndarray],
    fp32_outputs: dict[str, np.ndarray] | None,
    labels: Any,
) -> np.ndarray:
    """``metric``'s per-sample scores of a run's ``outputs``: of the card's primary metric output against
    FP32's for a fidelity metric (``compared_with = "fp32"``), else of the output(s) the metric reads
    (one array, or ``{name: array}`` when the card names several) against ``labels``, which the card's
    data must have.
    """
    names = card.metric_outputs
    if optional(metric, "compared_with") == "fp32":
        return metric.score(outputs[names[0]], fp32_outputs[names[0]])
    read = outputs[names[0]] if isinstance(card.metric.output, str) else {name: outputs[name] for name in names}
    if labels is None:
        raise CellError(
            "bad_input",
            f"{card.path or card.name}: metric {metric.name!r} scores against labels and the card's data has none; "
            "name a fidelity metric (sqnr, cosine, agreement: no labels needed) or give the data labels",
        )
    return metric.score(read, labels)


def _scores(runner: Any, card: Card, outputs: dict[str, np.ndarray]) -> np.ndarray:
    _, labels, fp32 = runner.evaluation_set(card)
    return per_sample(runner._metric(card), card, outputs, fp32, labels)


def fp32_value(runner: Any, card: Card) -> float:
    """The card's metric of its canonical FP32 ONNX on the reference backend, over every evaluation sample its
    cells may look at (cached with the conversion and the looks).
    """
    return float(np.mean(_scores(runner, card, runner.evaluation_set(card)[2])))


def score(runner: Any, card: Card, qdq_onnx: Path, precision: str, workdir: Path) -> float:
    """The card's metric of ``qdq_onnx`` on the reference backend over every evaluation sample its cells may
    look at (:meth:`~zoocompat.run.pipeline.CellRunner.evaluation_set`: all the planned looks; the CPU runs
    are cheap, and the autoquant ladder's choices deserve the most evidence the card allows).
    """
    reference = runner.registry.get("backend", runner.registry.reference_backend())
    try:
        compiled = reference.compile(Path(qdq_onnx), precision, None, Path(workdir))
        result = compiled.run(runner.evaluation_set(card)[0])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return float(np.mean(_scores(runner, card, result.outputs)))
