"""First-bad-layer diagnostics for a cell that fails accuracy or fidelity: the pure logic.

Two questions, two measurements (the ONNX work, and :func:`~zoocompat.diagnose.first_bad.diagnose_failure`
that the pipeline calls, live in :mod:`zoocompat.diagnose.first_bad`):

1. **Where does quantization lose the signal?** (``fp32_vs_qdq``) The FP32 model
   and the QDQ model run on the CPU EP over a few evaluation samples with every
   intermediate tensor exposed as a graph output. A QDQ tensor maps back to the
   FP32 tensor it quantizes: the output of the DequantizeLinear that follows the
   QuantizeLinear of FP32 tensor ``t`` *is* ``t`` in the QDQ model (the way
   onnxruntime's ``qdq_loss_debug`` pairs them). Each pair gets an SQNR; the
   first layer whose SQNR falls below :data:`QDQ_THRESHOLD_DB` is named. The
   error accumulates along the graph, so this is the layer where the
   accumulated error first becomes too large, usually the one to keep at higher
   precision or to recalibrate.

2. **Where does the backend part from the model it was given?** (``backend_vs_cpu``)
   Prefix graphs of the QDQ (or, for fp16, the FP32) model, cut after the k-th
   quantized tensor, run on the backend and on the CPU EP with graph
   optimizations off (every Q and DQ computed as written: the QDQ model's exact
   semantics); a binary search over k finds a layer whose prefix is below
   :data:`BACKEND_THRESHOLD_DB` while the prefix before it is not, in about
   ``1 + log2(layers)`` backend compiles (the full graph first: a backend that
   agrees there needs no more). A ``cpu`` QDQ cell is bisected the same way:
   its "backend" is the CPU EP with its default optimizations, which fuse
   Q/DQ into integer kernels (QLinearConv, ...), not the same arithmetic.

Thresholds, chosen from what healthy cells measure (docs/gate.md has the numbers):
a healthy w8a8 model keeps each layer 20-45 dB from FP32, w8a16 / fp16 above 40 dB;
a healthy HTP layer agrees with the CPU run of the same QDQ layer at 25 dB and
more (the two round differently, 1 LSB here and there), while a broken kernel
measures a few dB.

Nothing here imports an ML framework; a diagnosis never changes a cell's verdict.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from zoocompat.api.registry import registry
from zoocompat.report.results import CellRecord, Diagnosis, LayerFinding, LayerSqnr

if TYPE_CHECKING:  # annotations only: the run stage calls the diagnosis, not the reverse
    from zoocompat.run.matrix import Cell

__all__ = [
    "BACKEND_THRESHOLD_DB",
    "DEFAULT_SAMPLES",
    "QDQ_THRESHOLD_DB",
    "BisectResult",
    "bisect_first_bad",
    "diagnosis_samples",
    "first_below",
    "should_diagnose",
    "summarize",
    "trim_layers",
]

#: FP32 vs QDQ on the CPU: the lowest per-layer SQNR (dB) a healthy model keeps at each precision.
QDQ_THRESHOLD_DB = {"w8a8": 20.0, "w8a16": 30.0, "w4a8": 10.0, "fp16": 30.0}
#: Backend vs the CPU run of the same model: the lowest per-layer SQNR (dB) of a faithful kernel.
BACKEND_THRESHOLD_DB = {"w8a8": 20.0, "w8a16": 30.0, "w4a8": 15.0, "fp16": 30.0, "fp32": 40.0}
#: Evaluation samples a diagnosis uses (``$ZOOCOMPAT_DIAGNOSE_SAMPLES``; 0 turns diagnostics off).
DEFAULT_SAMPLES = 8
#: Layers kept on each side of the first bad layer in a finding's ``layers`` list.
KEEP_AROUND = 4
DIAGNOSED_CATEGORIES = ("accuracy", "fidelity")


def diagnosis_samples() -> int:
    """How many evaluation samples a diagnosis uses: ``$ZOOCOMPAT_DIAGNOSE_SAMPLES`` or :data:`DEFAULT_SAMPLES`."""
    try:
        return max(0, int(os.environ.get("ZOOCOMPAT_DIAGNOSE_SAMPLES", DEFAULT_SAMPLES)))
    except ValueError:
        return DEFAULT_SAMPLES


def _db(value: float | None) -> float:
    """An SQNR for comparisons: ``None`` (identical outputs) is infinitely good."""
    return math.inf if value is None else value


def first_below(layers: Sequence[LayerSqnr], threshold_db: float) -> int | None:
    """Index of the first layer whose SQNR is below ``threshold_db``, or ``None``."""
    for i, layer in enumerate(layers):
        if _db(layer.sqnr_db) < threshold_db:
            return i
    return None


def trim_layers(layers: Sequence[LayerSqnr], index: int | None, keep: int = KEEP_AROUND) -> list[LayerSqnr]:
    """The layers around ``index`` (``keep`` each side); the last ``2 * keep + 1`` when there is none."""
    if index is None:
        return list(layers[-(2 * keep + 1) :])
    return list(layers[max(0, index - keep) : index + keep + 1])


@dataclass
class BisectResult:
    """Outcome of :func:`bisect_first_bad`: the first bad index (``None`` = none) and every probe made."""

    index: int | None
    probes: dict[int, float | None] = field(default_factory=dict)
    error: str | None = None


def bisect_first_bad(
    count: int,
    probe: Callable[[int], float | None],
    threshold_db: float,
    last_db: float | None | bool = False,
) -> BisectResult:
    """Binary search for the first of ``count`` prefixes whose SQNR is below ``threshold_db``.

    ``probe(k)`` measures prefix ``k`` (0-based, in graph order) and returns its
    SQNR in dB (``None`` = identical). The empty prefix (the inputs) counts as
    good. ``last_db`` is the full graph's SQNR when already known (``False``:
    unknown, so it is probed). When the full graph is good there is nothing to
    find. The search returns a ``k`` with prefix ``k`` bad and prefix ``k - 1``
    good (or ``k == 0``), in about ``log2(count)`` probes; when the SQNR is not
    monotonic along the graph that is *a* place where it crosses, the first one
    on the path the search takes. A probe that raises stops the search and the
    error is returned with the probes made so far.
    """
    result = BisectResult(None)
    if count <= 0:
        return result

    def bad(k: int) -> bool:
        if k not in result.probes:
            result.probes[k] = probe(k)
        return _db(result.probes[k]) < threshold_db

    try:
        last_bad = bad(count - 1) if last_db is False else _db(last_db) < threshold_db  # type: ignore[arg-type]
        if not last_bad:
            return result
        good, worst = -1, count - 1  # invariant: prefix `good` is good (-1: the inputs), prefix `worst` is bad
        while worst - good > 1:
            middle = (good + worst) // 2
            if bad(middle):
                worst = middle
            else:
                good = middle
        result.index = worst
    except Exception as error:  # noqa: BLE001 - a probe is a backend run; report, never raise
        result.error = f"{type(error).__name__}: {error}"
    return result


def should_diagnose(cell: Cell, record: CellRecord) -> bool:
    """Whether a failed cell gets diagnostics: accuracy or fidelity, and something to compare."""
    if record.category not in DIAGNOSED_CATEGORIES or record.status not in ("fail", "xfail"):
        return False
    if record.metric is None:  # failed before its run (e.g. the FP32 model below its reference)
        return False
    return not (cell.backend in registry().reference_backends() and not cell.quantized)  # the FP32 reference


def _layer_words(finding: LayerFinding, what: str) -> str:
    if finding.first_bad_layer is None:
        return f"{what}: every layer measured stays at or above {finding.threshold_db:.0f} dB"
    before = "" if finding.previous_sqnr_db is None else f", {finding.previous_sqnr_db:.1f} dB before it"
    lowest = (
        f"; lowest {finding.lowest_layer} {finding.lowest_sqnr_db:.1f} dB"
        if finding.lowest_sqnr_db is not None and finding.lowest_sqnr_db != finding.sqnr_db
        else ""
    )
    return (
        f"{what}: first layer below {finding.threshold_db:.0f} dB is {finding.first_bad_op} "
        f"{finding.first_bad_layer!r} ({_fmt(finding.sqnr_db)}{before}){lowest}"
    )


def _fmt(value: float | None) -> str:
    return "identical" if value is None else f"{value:.1f} dB"


def summarize(diagnosis: Diagnosis, backend: str = "backend") -> str:
    """One line naming the first bad layer of each measurement (or why there is none)."""
    parts = []
    if diagnosis.backend is not None:
        parts.append(_layer_words(diagnosis.backend, f"{backend} vs the QDQ reference (cpu, unfused)"))
    if diagnosis.quantization is not None:
        parts.append(_layer_words(diagnosis.quantization, "qdq vs fp32 (cpu)"))
    if diagnosis.error:
        parts.append(f"diagnosis incomplete: {diagnosis.error}")
    return "; ".join(parts)
