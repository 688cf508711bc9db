"""Quantize one zoo model outside the matrix: what ``zoocompat quantize`` and ``zoocompat autoquant`` run.

The commands' logic, kept out of :mod:`zoocompat.cli` so that it is importable
and testable without click: :func:`make_runner` (a runner over the registered
zoo), :func:`find_card` (a model name or card file), :func:`calibration_samples`
(the card's split or an input list) and :func:`quantize_card`. Conversion goes
through the artifact cache (the same canonical ONNX the matrix uses);
quantization writes into the chosen folder, not the cache, because its inputs
(an input list, an override file) may be the user's own. The QDQ model is
scored on the reference backend over the card's evaluation split
(:mod:`zoocompat.run.scoring`).

Nothing in the pipeline imports this module: QAT goes through
:meth:`CellRunner.train_quantize <zoocompat.run.pipeline.CellRunner.train_quantize>`
and the ladder through :mod:`zoocompat.run.autoquant`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from zoocompat.api.cache import ArtifactCache
from zoocompat.api.encodings import convert_encodings, load_encodings
from zoocompat.api.errors import CellError
from zoocompat.api.protocols import optional
from zoocompat.api.registry import registry
from zoocompat.model.cards import Card, discover, load_card
from zoocompat.model.input_list import read_input_list
from zoocompat.report.results import ReportDir
from zoocompat.run.pipeline import CellRunner
from zoocompat.run.scoring import fp32_value, score

__all__ = ["calibration_samples", "find_card", "make_runner", "quantize_card"]


def make_runner(cache_root: Path | None = None, extra_zoo: tuple[Path, ...] = ()) -> CellRunner:
    """A :class:`~zoocompat.run.pipeline.CellRunner` over the registered zoo (plus ``extra_zoo`` folders)."""
    reg = registry()
    cards, _errors = discover(list(reg.zoo_dirs) + [Path(d) for d in extra_zoo])
    report = ReportDir(Path(tempfile.gettempdir()) / "zoocompat-quantize")
    return CellRunner(reg, cards, ArtifactCache(cache_root), report)


def find_card(runner: CellRunner, model: Card | str | Path) -> Card:
    """The card for ``model``: a card object, a zoo model name, or the path of a card file."""
    if isinstance(model, Card):
        runner.cards.setdefault(model.name, model)
        return model
    if str(model) in runner.cards:
        return runner.cards[str(model)]
    path = Path(model)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        card = load_card(path)
        runner.cards[card.name] = card
        return card
    known = ", ".join(sorted(runner.cards)) or "none"
    raise CellError("bad_input", f"no model {str(model)!r} in the zoo (known: {known}) and no card file at that path")


def calibration_samples(runner: CellRunner, card: Card, input_list: Path | None) -> list[dict[str, np.ndarray]]:
    """The card's calibration split, or the samples of an SNPE-style input list when one is given."""
    if input_list is None:
        return runner.card_data(card).calibration_batches()
    shapes = {spec.name: spec.shape for spec in card.inputs}
    return read_input_list(input_list, shapes, {spec.name: spec.dtype for spec in card.inputs})


def quantize_card(
    model: Card | str | Path,
    precision: str,
    technique: str = "ptq",
    out_dir: Path | None = None,
    *,
    runner: CellRunner | None = None,
    quantizer: Any = None,
    input_list: Path | None = None,
    encodings_override: Path | None = None,
    encodings_format: str | None = None,
    per_channel: bool | None = None,
) -> dict[str, Any]:
    """Convert, quantize with ``technique`` at ``precision``, and score on CPU.

    ``quantizer`` is a plugin object or name (default: the card's). Returns
    ``{qdq_onnx, encodings, metric: {name, fp32, value, drop}, report}``; the
    report (technique steps and their seconds) is also written as
    ``out_dir/quantize.json``. ``encodings_format`` (``0.6.1`` or ``1.0.0``)
    rewrites ``model.encodings`` in that layout.
    """
    runner = runner or make_runner()
    card = find_card(runner, model)
    if quantizer is None or isinstance(quantizer, str):
        quantizer = runner.registry.get("quantizer", quantizer or card.quantizer)
    out_dir = Path(out_dir) if out_dir else Path("quantized") / f"{card.name}-{precision}-{technique.replace('+', '_')}"
    converted = runner.converted(card)
    samples = calibration_samples(runner, card, input_list)
    options: dict[str, Any] = {}
    if encodings_override is not None:
        options["encodings_override"] = Path(encodings_override)
    if per_channel is not None:
        options["per_channel"] = per_channel
    try:
        if technique == "qat":  # quantization-aware training: the named quantizer when it trains, else the card's
            if options:
                raise CellError("quantize_error", f"qat takes none of {sorted(options)}")
            trainer = quantizer if optional(quantizer, "train_quantize") else None
            result = runner.train_quantize(card, precision, out_dir, calibration=samples, trainer=trainer)
        else:
            result = quantizer.quantize(converted.onnx, samples, precision, technique, out_dir, **options)
    except TypeError as error:  # a third-party quantizer without the optional keywords
        if not options:
            raise
        raise CellError(
            "quantize_error", f"quantizer {quantizer.name} does not take {sorted(options)}: {error}"
        ) from error
    if encodings_format:
        converted_enc = convert_encodings(load_encodings(result.encodings), encodings_format)
        result.encodings.write_text(json.dumps(converted_enc, indent=1))
    value = score(runner, card, result.qdq_onnx, precision, out_dir / "work")
    fp32 = fp32_value(runner, card)
    metric = runner._metric(card)
    drop = fp32 - value if metric.higher_is_better else value - fp32
    report = dict(result.report, calibration_source=str(input_list) if input_list else "card calibration split")
    (out_dir / "quantize.json").write_text(json.dumps(report, indent=1, default=str))
    return {
        "qdq_onnx": str(result.qdq_onnx),
        "encodings": str(result.encodings),
        "metric": {"name": metric.name, "fp32": fp32, "value": value, "drop": drop},
        "report": report,
    }
