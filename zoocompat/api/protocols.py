"""The objects plugins hand to the core, as typed protocols and plain records.

Arrays are numpy arrays; no ML framework type crosses this boundary. A batch
of inputs is a ``dict`` from the ONNX input name to an array whose first axis
is the sample axis; outputs are a ``dict`` from ONNX output name to an array
with the same sample axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from zoocompat.model.cards import Card

__all__ = [
    "Backend",
    "CompiledModel",
    "Dataset",
    "Frontend",
    "LabeledPool",
    "Metric",
    "Placement",
    "QuantizeResult",
    "Quantizer",
    "RunResult",
]

Batch = dict[str, "np.ndarray"]


@dataclass
class LabeledPool:
    """Deterministic labeled samples of one dataset split, before preprocessing.

    ``samples`` is an array ``N x H x W x C`` (uint8 or float32 images) and
    ``labels`` holds one label per sample: an int class index, or a string
    for text-recognition datasets.
    """

    samples: np.ndarray
    labels: np.ndarray
    classes: list[str] = field(default_factory=list)


@runtime_checkable
class Dataset(Protocol):
    """A labeled dataset a card can name."""

    name: str
    description: str

    def load(self, split: str, seed: int, params: dict[str, Any]) -> LabeledPool:
        """Return the samples of ``split`` (``"train"`` or ``"test"``).

        Must be deterministic for a given ``seed`` and ``params``; the train
        and test splits must not share a sample.
        """


@runtime_checkable
class Metric(Protocol):
    """A per-sample metric; the value of a run is the mean of its scores."""

    name: str
    higher_is_better: bool

    def score(self, output: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Score each sample: ``output`` is the card's metric output with the
        sample axis first; return a float array with one score per sample.
        """


@runtime_checkable
class Frontend(Protocol):
    """Loads a card's model in its framework and exports canonical ONNX."""

    name: str

    def load(self, card: Card, source_path: Path | None) -> Any:
        """Return the native model with its real weights.

        ``source_path`` is the card's resolved weights or model file (fetched
        and sha256-checked by the core), or ``None`` when the card has none.
        """

    def native_forward(self, model: Any, card: Card, inputs: Batch) -> dict[str, np.ndarray]:
        """Run the native model in FP32 on a batch; keys are the card's output names."""

    def export_onnx(self, model: Any, card: Card, path: Path) -> None:
        """Write an ONNX file at ``path`` with the card's static input dims and
        output names, checked with ``onnx.checker``.
        """


@dataclass
class QuantizeResult:
    """What a quantizer wrote."""

    qdq_onnx: Path
    encodings: Path
    report: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingJob:
    """What a quantization-aware-training quantizer gets: the card, its canonical FP32 ONNX, the frontend's
    own model when it is a torch module (``None`` otherwise: the quantizer converts the ONNX), the
    calibration samples (single-sample dicts) and the inputs of the dataset's ``train`` split (``None``
    when the dataset has none), preprocessed like every other input of the card.
    """

    card: Any
    onnx: Path
    framework_model: Any | None
    calibration: list[dict[str, Any]]
    training: Any | None


@runtime_checkable
class Quantizer(Protocol):
    """Calibrates an FP32 ONNX into a QDQ ONNX plus AIMET-format encodings."""

    name: str
    modes: tuple[str, ...]
    precisions: tuple[str, ...]

    def quantize(
        self,
        onnx_path: Path,
        calibration: list[Batch],
        precision: str,
        technique: str,
        out_dir: Path,
    ) -> QuantizeResult:
        """Quantize ``onnx_path`` and write ``model_qdq.onnx`` and
        ``model.encodings`` into ``out_dir``.
        """


@dataclass
class Placement:
    """Where the nodes of a compiled model run.

    ``target_nodes`` counts graph nodes the target runtime took; ``total_nodes``
    counts all nodes of the graph the backend was given. ``fallback_ops`` maps
    op types left on the CPU to counts; ``reasons`` holds the vendor's own
    words for each rejection. ``io_nodes`` counts the quantize / dequantize
    nodes at the graph's inputs and outputs, which convert I/O rather than
    compute and which the runtime leaves on the CPU by design; they are in
    neither count.
    """

    target: str
    target_nodes: int
    total_nodes: int
    fallback_ops: dict[str, int] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)
    partitions: int = 1
    io_nodes: int = 0

    @property
    def fraction(self) -> float:
        """Share of nodes on the target, 0..1."""
        return self.target_nodes / self.total_nodes if self.total_nodes else 0.0


@dataclass
class RunResult:
    """Outputs of a backend run over a batch, with its placement and timings."""

    outputs: dict[str, np.ndarray]
    placement: Placement
    compile_s: float
    run_s: float
    info: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class CompiledModel(Protocol):
    """A model prepared for one backend at one precision."""

    def run(self, inputs: Batch) -> RunResult:
        """Run every sample of ``inputs`` and return outputs, placement and timings."""


@runtime_checkable
class Backend(Protocol):
    """A runtime target: compiles an ONNX file for a precision and runs it."""

    name: str
    precisions: tuple[str, ...]

    def available(self, sdk: str | None) -> str | None:
        """Return ``None`` when this backend can run here, else the reason it cannot."""

    def describe(self, sdk: str | None) -> dict[str, Any]:
        """Versions and settings to record with each result (SDK, core version, arch)."""

    def compile(self, onnx_path: Path, precision: str, sdk: str | None, workdir: Path) -> CompiledModel:
        """Prepare ``onnx_path`` (FP32 for float precisions, QDQ for integer ones)."""
