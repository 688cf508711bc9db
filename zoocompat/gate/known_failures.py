"""Known, accepted failures: ``conformance/known_failures.yaml``.

Each entry names cells by fnmatch globs over model, backend, precision,
quantization mode and SDK id, and says which results category the failure has
and why it is accepted (with an optional link to the issue that tracks it)::

    known_failures:
      - model: resnet_mnist
        backend: htp
        precision: w8a8
        sdk: qnn-2.51
        category: accuracy
        reason: QNN 2.51 AveragePool with ceil_mode=1 zeroes the last output row
        link: https://example.invalid/issues/12

Omitted patterns match everything (``"*"``). In the conformance matrix a
matching cell is a *strict* expected failure: when it fails with the expected
category its record says ``xfail``; when it passes it says ``xpass`` and its
test fails with "fixed: remove this entry"; when it fails some other way it
fails as usual. The first matching entry wins.

Every value is checked against what exists: a model pattern must match a model
of the discovered zoo, a backend / precision / quant pattern one of the names in
:mod:`zoocompat.model.cards`, an SDK pattern an SDK id (``qnn-<major.minor>``,
``snpe-<version>``), so a typo is an error that names the file, the entry and the field.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from zoocompat.api.errors import CATEGORIES, ZoocompatError
from zoocompat.model.cards import BACKENDS, PRECISIONS, QUANT_MODES
from zoocompat.report.results import CellRecord

DEFAULT_PATH = Path("conformance") / "known_failures.yaml"
SDK_PATTERN = re.compile(r"^(qnn-\d+\.\d+|snpe-[\w.]+)$")
GLOB_CHARS = set("*?[")
PATTERN_FIELDS = ("model", "backend", "precision", "quant", "sdk")

__all__ = [
    "DEFAULT_PATH",
    "KnownFailure",
    "KnownFailures",
    "KnownFailuresError",
    "Match",
    "dump_known_failures",
    "load_known_failures",
    "parse_known_failures",
]


class KnownFailuresError(ZoocompatError):
    """A known-failures file is unreadable or invalid; the message names the file, entry and field."""


class KnownFailure(BaseModel):
    """One accepted failure: which cells (globs) fail how (category) and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, description="model name or glob")
    backend: str = Field("*", min_length=1)
    precision: str = Field("*", min_length=1)
    quant: str = Field("*", min_length=1)
    sdk: str = Field("*", min_length=1, description="SDK id or glob, e.g. qnn-2.51 or qnn-2.*")
    category: str = Field(description="the results category the failure is expected to have")
    reason: str = Field(min_length=1, description="why it fails and why that is accepted")
    link: str | None = None

    @field_validator("category")
    @classmethod
    def _category(cls, value: str) -> str:
        if value not in CATEGORIES:
            raise ValueError(f"{value!r} is not a results category; expected one of {', '.join(CATEGORIES)}")
        return value

    def matches(self, model: str, backend: str, precision: str, quant: str, sdk: str | None) -> bool:
        """Whether this entry's globs all match the cell's axis values (a cell without SDK id matches ``*`` only)."""
        values = (model, backend, precision, quant, sdk or "")
        patterns = (self.model, self.backend, self.precision, self.quant, self.sdk)
        return all(
            pattern == "*" or fnmatch.fnmatchcase(v, pattern) for v, pattern in zip(values, patterns, strict=True)
        )

    def describe(self) -> str:
        """The entry's patterns in one line, for messages."""
        return " ".join(f"{name}={getattr(self, name)}" for name in PATTERN_FIELDS if getattr(self, name) != "*")


class KnownFailures(BaseModel):
    """The whole file: ``known_failures: [entries]``."""

    model_config = ConfigDict(extra="forbid")

    known_failures: list[KnownFailure] = Field(default_factory=list)

    def match(self, cell: CellRecord, sdk: str | None = None) -> Match | None:
        """The first entry matching ``cell`` (``sdk`` overrides the record's, e.g. the backend's own SDK id)."""
        effective = sdk or cell.sdk
        for index, entry in enumerate(self.known_failures, start=1):
            if entry.matches(cell.model, cell.backend, cell.precision, cell.quant, effective):
                return Match(index, entry)
        return None


@dataclass(frozen=True)
class Match:
    """A cell's known-failure entry (``index`` counts from 1, as the file reads)."""

    index: int
    entry: KnownFailure

    def label(self, path: Path | str = DEFAULT_PATH) -> str:
        """``conformance/known_failures.yaml entry 2: model=... (category): reason``."""
        return f"{path} entry {self.index}: {self.entry.describe()} ({self.entry.category}): {self.entry.reason}"

    def apply(self, record: CellRecord, path: Path | str = DEFAULT_PATH) -> str | None:
        """Turn a finished cell's record into a strict expected failure; returns the test message.

        - failed with the expected category: status ``xfail`` (category, reason and metric kept);
        - passed: status ``xpass``, reason "fixed: remove this entry ...";
        - failed otherwise: record unchanged, the message says what was expected instead;
        - skipped or inconclusive: unchanged, ``None``.
        """
        if record.status in ("fail", "error"):
            if record.category == self.entry.category:
                record.status = "xfail"
                return f"known failure ({path} entry {self.index}): {record.reason}"
            return (
                f"[{record.category}] {record.reason} (a known failure, {path} entry {self.index}, "
                f"expects category {self.entry.category}: {self.entry.reason})"
            )
        if record.status == "pass":
            record.status = "xpass"
            message = f"fixed: remove this entry from {path} (entry {self.index}: {self.entry.describe()}"
            message += f" ({self.entry.category}): {self.entry.reason})"
            record.reason = f"{message}; {record.reason}" if record.reason else message
            return message
        return None


# -- checks against the zoo and the axis names -----------------------------------


def _check_pattern(field: str, pattern: str, known: Iterable[str]) -> str | None:
    """Why ``pattern`` names nothing of ``known``, or ``None`` when it names something."""
    known = sorted(known)
    if pattern == "*" or any(fnmatch.fnmatchcase(value, pattern) for value in known):
        return None
    what = "glob matches no" if GLOB_CHARS & set(pattern) else "is not a known"
    return f"{pattern!r} {what} {field} (known: {', '.join(known)})"


def _check_sdk(pattern: str) -> str | None:
    if pattern == "*":
        return None
    if GLOB_CHARS & set(pattern):
        if pattern.startswith(("qnn-", "snpe-")):
            return None
        return f"{pattern!r} is not an SDK id glob: SDK ids look like qnn-2.51 or snpe-2.26.0 (glob: qnn-2.*)"
    if SDK_PATTERN.match(pattern):
        return None
    return f"{pattern!r} is not an SDK id: expected qnn-<major.minor> (qnn-2.51) or snpe-<version>"


def check_entries(known: KnownFailures, path: Path | str, models: Iterable[str] | None) -> None:
    """Check every pattern names something real; raise :class:`KnownFailuresError` for the first that does not.

    ``models`` are the discovered zoo's model names (``None`` skips the model check).
    """
    axes = {"backend": BACKENDS, "precision": PRECISIONS, "quant": QUANT_MODES}
    for index, entry in enumerate(known.known_failures, start=1):
        problems = []
        if models is not None:
            problems.append(("model", _check_pattern("model", entry.model, models)))
        for field, names in axes.items():
            problems.append((field, _check_pattern(field, getattr(entry, field), names)))
        problems.append(("sdk", _check_sdk(entry.sdk)))
        for field, problem in problems:
            if problem:
                raise KnownFailuresError(f"{path}: entry {index}, field {field!r}: {problem}")


def _validation_message(path: Path | str, error: ValidationError) -> str:
    lines = []
    for item in error.errors()[:5]:
        loc = list(item["loc"])
        if loc[:1] == ["known_failures"] and len(loc) >= 2 and isinstance(loc[1], int):
            where = f"entry {loc[1] + 1}"
            if len(loc) > 2:
                where += f", field {loc[2]!r}"
        else:
            where = "field " + ".".join(str(part) for part in loc) if loc else "top level"
        if item["type"] == "extra_forbidden":
            allowed = ", ".join(KnownFailure.model_fields) if "entry" in where else "known_failures"
            message = f"unknown field (allowed: {allowed})"
        elif item["type"] == "missing":
            message = "required field is missing"
        else:
            message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {message}")
    return f"{path}: " + "; ".join(lines)


def parse_known_failures(text: str, path: Path | str = DEFAULT_PATH, models: Iterable[str] | None = None):
    """Parse and validate a known-failures document (``models``: the zoo's names, to check model patterns)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise KnownFailuresError(f"{path}: not valid YAML: {error}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise KnownFailuresError(f"{path}: expected a mapping with a 'known_failures' list, got {type(data).__name__}")
    if data.get("known_failures") is None:
        data = {**data, "known_failures": []}
    try:
        known = KnownFailures.model_validate(data)
    except ValidationError as error:
        raise KnownFailuresError(_validation_message(path, error)) from None
    check_entries(known, path, models)
    return known


def load_known_failures(path: Path, models: Iterable[str] | None = None) -> KnownFailures:
    """Read and validate ``path``; errors name the file, the entry (from 1) and the field."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise KnownFailuresError(f"{path}: cannot read known failures ({error.strerror or error})") from None
    return parse_known_failures(text, path, models)


def dump_known_failures(known: KnownFailures) -> str:
    """YAML text of ``known`` (patterns left at ``*`` omitted); loading it gives ``known`` back."""
    entries = [entry.model_dump(exclude_defaults=True) for entry in known.known_failures]
    return yaml.safe_dump({"known_failures": entries}, sort_keys=False, allow_unicode=True, width=100)
