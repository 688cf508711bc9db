"""Results records: one JSON file per finished cell, merged into results.json.

Each cell's record is written atomically (temp file, fsync, rename) into
``<report>/cells/`` the moment the cell finishes, by whichever xdist worker ran
it. The controller merges them into ``<report>/results.json`` at the end of the
session. The shapes follow ARCHITECTURE.md's results contract.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zoocompat.api.errors import CATEGORIES, ZoocompatError

STATUSES = ("pass", "fail", "inconclusive", "xfail", "xpass", "skip", "error")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LookResult(_Model):
    """One look of a cell's sequential evaluation (:mod:`zoocompat.verdict.sequential`): the paired drop over
    the first ``samples`` samples, its ``1 - alpha`` interval, and what that look decided.
    """

    samples: int
    drop: float
    interval: tuple[float, float]
    alpha: float
    verdict: Literal["pass", "fail", "inconclusive"]


class MetricResult(_Model):
    """FP32 vs this cell's metric on the same evaluation samples.

    ``interval`` is the interval of ``value`` over ``samples`` (Wilson for
    accuracies, a bootstrap for other scores) and ``drop_interval`` the interval
    of the drop measured pair by pair on the same samples (``drop_method`` says
    how), both at the last look's level (95% for a cell with one planned look;
    ``1 - 0.05 / K`` for one of ``K`` looks). ``looks`` lists every look,
    ``planned`` the sample sizes planned, ``stopped`` why the cell stopped
    (``decided``; or, still open, ``pool`` exhausted, ``max_evaluation`` reached,
    ``budget`` of seconds spent), ``pool`` the evaluation samples the data holds,
    and ``samples_needed`` about how many would resolve an ``inconclusive`` verdict.
    """

    name: str
    fp32: float | None = None
    value: float | None = None
    drop: float | None = None
    tolerance: float | None = None
    samples: int | None = None
    interval: tuple[float, float] | None = None
    drop_interval: tuple[float, float] | None = None
    drop_method: str | None = None
    samples_needed: int | None = None
    native_fp32: float | None = None
    #: how the drop reads: ``points`` (a 0..1 score, shown x100) or ``value`` (an error such as NME or MAE, or a
    #: score in its own units, shown as it is); ``None`` in results written before it: points
    drop_unit: Literal["points", "value"] | None = None
    looks: list[LookResult] | None = None
    planned: list[int] | None = None
    stopped: Literal["decided", "pool", "max_evaluation", "budget"] | None = None
    pool: int | None = None

    def drop_shown(self, with_interval: bool) -> str:
        """The drop as a table cell shows it: with its interval when asked (an open cell), and the samples it
        rests on, ``Δ +0.2 pt, n=433`` or ``Δ +0.0 pt, -1.7…+1.7, n=160``.
        """
        interval = self.drop_interval if with_interval else None
        shown = self.drop_text(*interval) if interval else self.drop_text()
        return f"{shown}, n={self.samples}" if self.samples else shown

    def drop_text(self, low: float | None = None, high: float | None = None) -> str:
        """The drop as a table shows it, ``Δ +1.2 pt`` or ``Δ +0.0031``, with its interval when given."""
        if self.drop_unit == "value":
            shown = f"Δ {self.drop:+.3g}"
            return shown if low is None else f"{shown}, {low:+.3g}…{high:+.3g}"
        shown = f"Δ {self.drop * 100:+.1f} pt"
        return shown if low is None else f"{shown}, {low * 100:+.1f}…{high * 100:+.1f}"


class Coverage(_Model):
    """Nodes on the target runtime vs all nodes, and what fell back and why."""

    target: str
    target_nodes: int
    total_nodes: int
    fallback_ops: dict[str, int] = Field(default_factory=dict)
    reasons: list[str] = Field(default_factory=list)
    partitions: int = 1
    io_nodes: int = 0


class Fidelity(_Model):
    """Output agreement in dB (higher is closer; ``None`` = identical outputs).

    ``reference_vs_fp32_db`` is the cpu reference run's own SQNR against FP32 and
    ``threshold_db`` the fidelity threshold applied (see :mod:`zoocompat.verdict.fidelity`).
    """

    sqnr_vs_fp32_db: float | None = None
    sqnr_vs_cpu_db: float | None = None
    reference_vs_fp32_db: float | None = None
    threshold_db: float | None = None
    cosine_vs_fp32: float | None = None
    #: the spread (standard deviation, dB) of the per-sample SQNR against the cpu run, over ``samples``
    #: samples (identical ones left out); ``None`` in results written before it
    sqnr_vs_cpu_spread_db: float | None = None
    samples: int | None = None


class ModelDigests(_Model):
    """sha256 of the model files a cell ran: the FP32 ONNX, and for integer cells the QDQ model and its
    encodings (``None`` where the cell has no such file). Two records whose digests differ ran different
    models, whatever their ids say.
    """

    fp32_onnx: str | None = None
    qdq_onnx: str | None = None
    encodings: str | None = None


class Timing(_Model):
    """Seconds per stage; a cached stage reports the time it took when built."""

    convert_s: float | None = None
    quantize_s: float | None = None
    compile_s: float | None = None
    run_s: float | None = None
    per_sample_ms: float | None = None


class LayerSqnr(_Model):
    """SQNR (dB) of one layer's output tensor between two runs (``None`` = identical)."""

    layer: str
    op_type: str
    tensor: str
    sqnr_db: float | None = None


class LayerFinding(_Model):
    """Where two runs of a model part ways: the first layer whose output SQNR falls below ``threshold_db``.

    ``method`` is ``fp32_vs_qdq`` (the FP32 and the QDQ model on the CPU EP, every
    intermediate tensor at once) or ``backend_vs_cpu`` (prefix graphs of the QDQ
    model on the backend and on the CPU EP, bisected; ``runs`` counts the backend
    compiles). ``layers`` holds the measured layers in graph order (trimmed around
    the first bad one); ``first_bad_*`` are ``None`` when every layer measured is
    above the threshold; ``lowest_*`` name the measured layer furthest apart.
    See :mod:`zoocompat.diagnose.layers`.
    """

    method: Literal["fp32_vs_qdq", "backend_vs_cpu"]
    threshold_db: float
    first_bad_layer: str | None = None
    first_bad_op: str | None = None
    first_bad_tensor: str | None = None
    sqnr_db: float | None = None
    previous_sqnr_db: float | None = None
    lowest_layer: str | None = None
    lowest_sqnr_db: float | None = None
    samples: int = 0
    layers_checked: int = 0
    runs: int = 0
    layers: list[LayerSqnr] = Field(default_factory=list)


class Diagnosis(_Model):
    """First-bad-layer diagnostics of a cell that failed accuracy or fidelity (see :mod:`zoocompat.diagnose.layers`).

    ``quantization`` compares the FP32 and the QDQ model layer by layer on the CPU;
    ``backend`` compares the backend with the CPU run of the same QDQ model.
    ``summary`` says it in one line; ``error`` says why diagnostics could not
    finish (a diagnosis never changes the cell's verdict).
    """

    summary: str = ""
    quantization: LayerFinding | None = None
    backend: LayerFinding | None = None
    seconds: float | None = None
    error: str | None = None


class CellRecord(_Model):
    """The record of one matrix cell."""

    id: str
    model: str
    frontend: str
    backend: str
    precision: str
    quant: str
    sdk: str | None = None
    status: Literal["pass", "fail", "inconclusive", "xfail", "xpass", "skip", "error"]
    category: Literal[CATEGORIES] | None = None  # type: ignore[valid-type]  # the categories CellError takes
    reason: str = ""
    metric: MetricResult | None = None
    coverage: Coverage | None = None
    fidelity: Fidelity | None = None
    timing: Timing = Field(default_factory=Timing)
    artifacts: dict[str, Any] = Field(default_factory=dict)
    model_sha256: ModelDigests | None = Field(
        None, description="sha256 of the model files the cell ran; absent in results written before it"
    )
    backend_info: dict[str, Any] = Field(default_factory=dict)
    diagnosis: Diagnosis | None = None
    quantization: dict[str, Any] | None = Field(
        None,
        description="integer cells: the quantizer, the technique the QDQ model came from (for quant auto, the "
        "ladder's choice and every step tried with its metric and seconds) and the training split for qat",
    )

    @property
    def release(self) -> str | None:
        """The SDK release the cell ran under: its ``--sdk`` value (``sdk``), else the one its backend reported
        (``backend_info["sdk"]``, the installed release of a run without ``--sdk``); ``None`` for a backend that
        runs in no SDK.
        """
        return self.sdk or self.backend_info.get("sdk")


class RunInfo(_Model):
    """Who ran what, where, with which tool versions."""

    tools: dict[str, str | None] = Field(default_factory=dict)
    sdk: str | None = None
    backends: dict[str, Any] = Field(default_factory=dict)
    host: dict[str, Any] = Field(default_factory=dict)
    command: str = ""
    started: str | None = None
    finished: str | None = None


class CardErrorRecord(_Model):
    """A card the matrix could not run at all (it does not load): the file and everything wrong with it.

    Its model has no cells (the card does not say which, validly); the error is
    kept here so the results, the table and the gate still show it.
    """

    card: str
    error: str


class Results(_Model):
    """A whole results.json."""

    run: RunInfo
    cells: list[CellRecord]
    card_errors: list[CardErrorRecord] = Field(default_factory=list)


class ResultsError(ZoocompatError):
    """A results file cannot be read or does not match the schema."""


def now() -> str:
    """UTC timestamp, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ReportDir:
    """A report folder: ``cells/*.json`` as cells finish, ``results.json`` at the end."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / "cells"
        self.card_errors_dir = self.root / "card_errors"

    def reset(self) -> None:
        """Forget the cell records of a previous run in this folder."""
        for folder in (self.cells_dir, self.card_errors_dir):
            for old in folder.glob("*.json") if folder.is_dir() else ():
                old.unlink()
        for name in ("results.json", "run.json"):
            (self.root / name).unlink(missing_ok=True)

    def write_cell(self, record: CellRecord) -> Path:
        """Persist one finished cell's record now."""
        path = self.cells_dir / f"{record.id}.json"
        write_atomic(path, record.model_dump_json(indent=1))
        return path

    def write_card_error(self, card: str, error: str) -> Path:
        """Persist a card that does not load (one file per card path, so workers never collide)."""
        digest = hashlib.sha256(card.encode()).hexdigest()[:16]
        path = self.card_errors_dir / f"{digest}.json"
        write_atomic(path, CardErrorRecord(card=card, error=error).model_dump_json(indent=1))
        return path

    def card_errors(self) -> list[CardErrorRecord]:
        """Every card error written so far, sorted by card path."""
        found = [
            CardErrorRecord.model_validate_json(path.read_text(encoding="utf-8"))
            for path in (self.card_errors_dir.glob("*.json") if self.card_errors_dir.is_dir() else ())
        ]
        return sorted(found, key=lambda record: record.card)

    def write_run(self, run: RunInfo) -> None:
        """Persist the run header (read back by :meth:`merge`)."""
        write_atomic(self.root / "run.json", run.model_dump_json(indent=1))

    def records(self) -> list[CellRecord]:
        """Every cell record written so far, sorted by id."""
        records = []
        for path in sorted(self.cells_dir.glob("*.json")):
            records.append(CellRecord.model_validate_json(path.read_text(encoding="utf-8")))
        return records

    def merge(self, finished: bool = True) -> Results:
        """Join the run header and all cell records into ``results.json``."""
        run_path = self.root / "run.json"
        run = RunInfo.model_validate_json(run_path.read_text()) if run_path.exists() else RunInfo()
        if finished:
            run.finished = now()
        results = Results(run=run, cells=self.records(), card_errors=self.card_errors())
        write_atomic(self.root / "results.json", results.model_dump_json(indent=1))
        return results


def load_results(path: Path) -> Results:
    """Read and validate a results.json, with a clear error when it is not one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ResultsError(f"{path}: cannot read results ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise ResultsError(f"{path}: not a zoocompat results file: not UTF-8 text ({error.reason})") from None
    try:
        return Results.model_validate(json.loads(text))
    except (ValueError, ValidationError) as error:
        first = str(error).splitlines()[:6]
        raise ResultsError(f"{path}: not a zoocompat results file: {' '.join(first)}") from None
