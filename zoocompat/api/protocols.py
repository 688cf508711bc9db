"""The objects plugins hand to the core, as typed protocols and plain records.

Arrays are numpy arrays; no ML framework type crosses this boundary. A batch
of inputs is a ``dict`` from the ONNX input name to an array whose first axis
is the sample axis; outputs are a ``dict`` from ONNX output name to an array
with the same sample axis.

Each protocol lists its *required* members first, then its *optional* ones
under "Optional members". An optional attribute's value in the protocol body
is its default; an optional method's default is "not offered" (the core does
without it, as its docstring says). The core reads every optional member
through :func:`optional`, so a plugin may leave any of them out, and a class
that subclasses a protocol explicitly and keeps its stub counts as leaving it
out. :data:`OPTIONAL_MEMBERS` names them per protocol.

``isinstance(obj, Backend)`` (the protocols are runtime-checkable) asks for
every member, optional ones included; :func:`missing_members` asks for the
required ones only, which is what the core needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from zoocompat.model.cards import Card

__all__ = [
    "OPTIONAL_MEMBERS",
    "Backend",
    "Batch",
    "CompiledModel",
    "Dataset",
    "Frontend",
    "LabeledPool",
    "Metric",
    "Placement",
    "Precision",
    "QuantMode",
    "QuantizeResult",
    "Quantizer",
    "RunResult",
    "TrainingJob",
    "missing_members",
    "optional",
]

Batch = dict[str, "np.ndarray"]


@dataclass
class LabeledPool:
    """Deterministic labeled samples of one dataset split, before preprocessing.

    ``samples`` is an array ``N x H x W x C`` (uint8 or float32 images, which
    feed a card's one input through its image preprocessing), or a ``dict``
    from input name to model-ready tensors ``[N, *sample_shape]`` (a text or
    audio dataset feeding several inputs; cast to each input's dtype, never
    image-preprocessed). ``labels`` holds one label per sample, sample axis
    first: an int class index, a string (text recognition), or an array
    (boxes ``[M, 5]``, a mask ``[H, W]``, landmarks ``[K, 2]``).
    """

    samples: np.ndarray | dict[str, np.ndarray]
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

    # Optional members -------------------------------------------------------

    #: Optional. What ``score`` compares an output with: ``"labels"`` (default), the dataset's labels, or
    #: ``"fp32"``, the FP32 model's output on the same samples (a fidelity metric: SQNR, cosine, agreement,
    #: which needs no labels). The core passes that in the ``labels`` argument.
    compared_with: str = "labels"
    #: Optional. ``False`` (default): a card's tolerance is the largest allowed drop from FP32's score.
    #: ``True``: it is the lowest allowed mean score, in the metric's own units (SQNR in dB), judged on the
    #: mean's 95% interval.
    floor: bool = False

    def configure(self, params: dict[str, Any]) -> Metric:
        """Optional. Return a metric configured with a card's ``metric.params`` (a copy; the registered
        object stays unconfigured, since many cards share it).

        Called by the core before scoring any card that names this metric, with ``{}`` when the card gives
        no params. Default (not offered): the registered object scores as it is, and a card that gives
        ``metric.params`` fails as ``bad_input``.
        """


@runtime_checkable
class Frontend(Protocol):
    """Loads a card's model in its framework and exports canonical ONNX."""

    name: str

    # Optional attributes (methods below) -------------------------------------

    #: Optional. Where this frontend's rows and ``--frontends`` names sort: ascending, ties by name (default
    #: ``100``, after the built-ins ``pytorch`` 10, ``tensorflow`` 20, ``onnx`` 30).
    order: int = 100
    #: Optional. The framework of the native model ``load`` returns (default ``""``: none named). ``"torch"``
    #: says it is a ``torch.nn.Module``, which a QAT quantizer fine-tunes directly (``TrainingJob.framework_model``)
    #: instead of converting the ONNX back to torch.
    framework: str = ""

    def check_card(self, card: Card) -> list[str]:
        """Optional. Problems with the fields this frontend needs in ``card``, as ``"field: problem"`` lines.

        Called when a card is loaded (``zoocompat zoo check``, discovery, the matrix), before anything runs;
        ``[]`` when the card is fine. Not offered: no frontend-specific checks.
        """

    def check_model(self, card: Card, source_path: Path) -> list[str]:
        """Optional. Problems between ``card`` and the model file at ``source_path`` (input names, count,
        rank and dtype against the graph's inputs; the outputs), as ``"field: problem"`` lines, all at once.

        Called by ``zoocompat zoo check`` before anything runs; ``[]`` when they agree. Not offered: the
        card is checked against the model only when the cell converts it.
        """

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


@dataclass(frozen=True)
class Precision:
    """A value of the matrix's precision axis.

    Registered by :func:`zoocompat.api.hookspecs.zoocompat_precisions`.

    ``quantized`` says whether a cell at this precision needs a quantizer and runs a QDQ model
    (``w8a8``, ``w8a16``, ...) or runs the FP32 ONNX as it is (``fp32``, ``fp16``: the backend casts).
    ``order`` sorts columns, cells and option listings (ascending, ties by name). ``default`` says whether
    the matrix runs it when ``--precisions`` is not given; ``False`` makes it opt-in (the built-in
    ``w4a8``: a quantization study, not the gate).
    """

    name: str
    quantized: bool
    order: int
    description: str = ""
    default: bool = True


@dataclass(frozen=True)
class QuantMode:
    """A value of the matrix's quantization-mode axis.

    Registered by :func:`zoocompat.api.hookspecs.zoocompat_quant_modes`.

    The core gives ``none`` (the mode of unquantized cells) and ``qat`` (served by a card's
    ``qat_quantizer``) their meaning; a quantizer serves the others it lists in ``modes``. ``order`` sorts
    them (ascending, ties by name); ``default`` says whether the matrix runs them when ``--quant`` is not
    given.
    """

    name: str
    order: int
    description: str = ""
    default: bool = True


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
    calibration samples (single-sample dicts) and the training samples as a batch dict (input name to array,
    sample axis first: the dataset's ``train`` split, or the card's own data left after calibration and
    evaluation; ``None`` when there are none), preprocessed like every other input of the card.
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
    #: the matrix's quantization modes this quantizer serves (``ptq``, ``auto``; ``qat`` with :meth:`train_quantize`)
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

        ``technique`` is one of :attr:`techniques` or a ``+``-joined
        combination of them (``cle+adaround``). ``zoocompat quantize`` may
        also pass the keywords ``per_channel: bool`` and ``encodings_override:
        Path``; a quantizer that does not take them fails that command with a
        clear message, and the matrix never passes them.
        """

    # Optional members -------------------------------------------------------

    #: Optional. Techniques ``quantize`` accepts, alone or ``+``-joined; autoquant's ladder skips the others.
    techniques: tuple[str, ...] = ("ptq",)
    #: Optional. Training samples a QAT quantizer asks for (the dataset's ``train`` split, cut to this many);
    #: read only when :meth:`train_quantize` is offered.
    samples: int = 1024

    def train_quantize(self, job: TrainingJob, precision: str, out_dir: Path) -> QuantizeResult:
        """Optional. Quantization-aware training: train ``job``'s model at ``precision`` and write
        ``model_qdq.onnx`` and ``model.encodings`` into ``out_dir``.

        Called for ``qat`` cells, ``zoocompat quantize --technique qat`` and autoquant's QAT step, on the
        quantizer a card names as ``qat_quantizer``. Default (not offered): the quantizer cannot be a card's
        ``qat_quantizer``; naming it there fails those cells as ``quantize_error``.
        """

    def settings(self) -> dict[str, Any]:
        """Optional. What shapes a result besides the model, data, precision and technique (QAT's epochs,
        learning rate and :attr:`samples`; how biases are exported); part of the quantize cache key, so
        changing one re-quantizes (or retrains). Default: ``{}``.
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
        """Run every sample of ``inputs`` and return outputs, placement and timings.

        Raise :class:`zoocompat.api.CellError` for a failure that is the
        cell's verdict (``crash``, ``timeout``, ``unsupported_op``, ...);
        :class:`zoocompat.api.runner.Runner` does that classification for a
        runner process.
        """

    # Optional members -------------------------------------------------------

    #: Optional, settable. Seconds one :meth:`run` may take before it fails as ``timeout``; ``None`` (the
    #: default) says the model has no limit the core can change. The op-support table lowers it for its probes.
    timeout_s: float | None = None


@runtime_checkable
class Backend(Protocol):
    """A runtime target: compiles an ONNX file for a precision and runs it."""

    name: str
    precisions: tuple[str, ...]

    # Optional attributes (methods below) -------------------------------------

    #: Optional. Whether the SDK release is an axis of this backend's cells: with ``--sdk a,b`` the matrix
    #: makes one cell per release (default ``False``: one cell, run with the first ``--sdk``).
    sdk_axis: bool = False
    #: Optional. Modules besides the backend's own code (see :func:`zoocompat.run.reuse.code_digest`) whose
    #: source shapes its outputs; a change to any of them runs the backend again instead of reusing outputs.
    code_modules: tuple[str, ...] = ()
    #: Optional. Where this backend's columns, cells and ``--backends`` names sort: ascending, ties by name
    #: (default ``100``, after the built-ins ``cpu`` 10, ``gpu`` 20, ``dsp`` 30, ``htp`` 40).
    order: int = 100
    #: Optional. Whether this is *the* reference backend (default ``False``): the host runtime that runs the
    #: FP32 ONNX (checked against the frontend's native run) and the QDQ model whose outputs every other
    #: backend's fidelity (``sqnr_vs_cpu_db``) and first-bad-layer diagnosis are measured against. Exactly one
    #: registered backend must set it (the built-in ``cpu`` does); its cells are not shown as accelerator cells.
    reference: bool = False
    #: Optional. Relative cost of one evaluation sample per input element, by precision (``"*"`` for the
    #: precisions not named): the scheduler's prior for ordering cells before any timing of them exists
    #: (``zoocompat.pytest_plugin.schedule``). Only ratios between backends matter; default ``{"*": 1.0}``.
    cost: Mapping[str, float] = MappingProxyType({"*": 1.0})

    def available(self, sdk: str | None) -> str | None:
        """Return ``None`` when this backend can run here, else the reason it cannot."""

    def describe(self, sdk: str | None) -> dict[str, Any]:
        """Versions and settings to record with each result (SDK, core version, arch)."""

    def compile(self, onnx_path: Path, precision: str, sdk: str | None, workdir: Path) -> CompiledModel:
        """Prepare ``onnx_path`` (FP32 for float precisions, QDQ for integer ones)."""

    def configure(self, strict_npu: bool = False, device: str | None = None) -> None:
        """Optional. Session-wide settings from the pytest options ``--strict-npu`` (no CPU fallback: the
        whole graph on the accelerator or the cell fails) and ``--device adb:SERIAL`` (the worker's device).

        Called once per pytest session (and per xdist worker) before any cell, with the defaults when the
        options are not given, so settings never carry over between sessions. Raise ``ValueError`` for a
        setting the backend cannot take; pytest shows it as a usage error. Default (not offered): the
        backend ignores both options.
        """


_ABSENT = object()

#: The optional members of each protocol, in the order its manual lists them. An attribute's default is its
#: value in the protocol body; an optional method's default is ``None`` (not offered).
OPTIONAL_MEMBERS: dict[type, tuple[str, ...]] = {
    Metric: ("compared_with", "floor", "configure"),
    Quantizer: ("techniques", "samples", "train_quantize", "settings"),
    CompiledModel: ("timeout_s",),
    Frontend: ("order", "framework", "check_card", "check_model"),
    Backend: ("sdk_axis", "code_modules", "order", "reference", "cost", "configure"),
}


def _declared(name: str) -> list[type]:
    """The protocols that declare ``name`` as optional, or a clear error for a name none does."""
    protocols = [protocol for protocol, names in OPTIONAL_MEMBERS.items() if name in names]
    if not protocols:
        known = sorted({member for names in OPTIONAL_MEMBERS.values() for member in names})
        raise KeyError(f"{name!r} is no optional member of a zoocompat protocol; optional members: {known}")
    return protocols


def _default(protocol: type, name: str) -> Any:
    """The documented default of ``protocol``'s optional member ``name``: its value, or ``None`` for a method."""
    value = protocol.__dict__[name]
    return None if callable(value) else value


def optional(plugin: object, name: str) -> Any:
    """``plugin``'s optional member ``name``, or the default its protocol documents.

    The one way the core reads an optional member (``optional(backend, "sdk_axis")``,
    ``optional(metric, "configure")``). A method the plugin inherits unchanged from a
    protocol it subclasses explicitly is its stub, so it counts as not offered. Raises
    :class:`KeyError` for a name no protocol declares optional (a typo in the core).
    """
    protocols = _declared(name)
    value = getattr(plugin, name, _ABSENT)
    stubs = [protocol.__dict__[name] for protocol in protocols]
    if value is _ABSENT or getattr(value, "__func__", None) in stubs:
        return _default(protocols[0], name)  # protocols that share a name share its default (tests/test_protocols.py)
    return value


def missing_members(plugin: object, protocol: type) -> list[str]:
    """The required members of ``protocol`` that ``plugin`` lacks (``[]`` when it has them all)."""
    optional_names = set(OPTIONAL_MEMBERS.get(protocol, ()))
    required = [name for name in _protocol_members(protocol) if name not in optional_names]
    return [name for name in required if not hasattr(plugin, name)]


def _protocol_members(protocol: type) -> list[str]:
    """Every member a protocol declares: annotated attributes and methods, in declaration order."""
    names = list(protocol.__dict__.get("__annotations__", {}))
    names += [name for name, value in protocol.__dict__.items() if callable(value) and not name.startswith("_")]
    return list(dict.fromkeys(names))
