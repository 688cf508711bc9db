"""Known, accepted failures: YAML files that plugins declare (the default zoo's ``known_failures.yaml``).

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

Plugins name their files with the ``zoocompat_known_failures`` hook; the
session applies the entries of all of them, in registration order
(:func:`load_known_failures_files`), and ``--known-failures FILE`` replaces them.

Every value is checked against what exists: a model pattern must match a model
of the discovered zoo, a backend / precision / quant pattern one of the names
plugins register (:mod:`zoocompat.api.registry`), an SDK pattern an SDK id
(``qnn-<major.minor>``, ``snpe-<version>``), so a typo is an error that names
the file, the entry and the field.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from zoocompat.api.errors import CATEGORIES, ZoocompatError
from zoocompat.api.registry import Registry
from zoocompat.api.registry import registry as _registry
from zoocompat.report.results import CellRecord

#: How messages name a file of entries when no path is known (an in-memory document).
UNNAMED = "known failures"
SDK_PATTERN = re.compile(r"^(qnn-\d+\.\d+|snpe-[\w.]+)$")
GLOB_CHARS = set("*?[")
PATTERN_FIELDS = ("model", "backend", "precision", "quant", "sdk")

__all__ = [
    "UNNAMED",
    "KnownFailure",
    "KnownFailures",
    "KnownFailuresError",
    "Match",
    "dump_known_failures",
    "load_known_failures",
    "load_known_failures_files",
    "merge_known_failures",
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
    #: (file, index in that file from 1) of each entry once files are merged; empty: one file, named by the caller
    _origins: list[tuple[str, int]] = PrivateAttr(default_factory=list)

    def match(self, cell: CellRecord, sdk: str | None = None) -> Match | None:
        """The first entry matching ``cell`` (``sdk`` overrides the record's, e.g. the backend's own SDK id)."""
        effective = sdk or cell.sdk
        for position, entry in enumerate(self.known_failures):
            if entry.matches(cell.model, cell.backend, cell.precision, cell.quant, effective):
                path, index = self._origins[position] if self._origins else (None, position + 1)
                return Match(index, entry, path)
        return None


@dataclass(frozen=True)
class Match:
    """A cell's known-failure entry (``index`` counts from 1, as its file ``path`` reads)."""

    index: int
    entry: KnownFailure
    path: str | None = None

    def label(self, path: Path | str | None = None) -> str:
        """``zoo/known_failures.yaml entry 2: model=... (category): reason`` (``path`` overrides the match's)."""
        path = path or self.path or UNNAMED
        return f"{path} entry {self.index}: {self.entry.describe()} ({self.entry.category}): {self.entry.reason}"

    def apply(self, record: CellRecord, path: Path | str | None = None) -> str | None:
        """Turn a finished cell's record into a strict expected failure; returns the test message.

        Messages name ``path``, else the file the entry came from.

        - failed with the expected category: status ``xfail`` (category, reason and metric kept);
        - passed: status ``xpass``, reason "fixed: remove this entry ...";
        - failed otherwise: record unchanged, the message says what was expected instead;
        - skipped or inconclusive: unchanged, ``None``.
        """
        path = path or self.path or UNNAMED
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


def check_entries(
    known: KnownFailures, path: Path | str, models: Iterable[str] | None, registry: Registry | None = None
) -> None:
    """Check every pattern names something real; raise :class:`KnownFailuresError` for the first that does not.

    ``models`` are the discovered zoo's model names (``None`` skips the model check); backend, precision and
    quant patterns must match names ``registry`` (default: the process-wide one) has on those axes.
    """
    reg = registry or _registry()
    axes = {axis: reg.axis(axis) for axis in ("backend", "precision", "quant")}
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


def parse_known_failures(
    text: str, path: Path | str = UNNAMED, models: Iterable[str] | None = None, registry: Registry | None = None
) -> KnownFailures:
    """Parse and validate a known-failures document (``models``: the zoo's names, to check model patterns;
    ``registry``: the axis names, default the process-wide registry's).
    """
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
    check_entries(known, path, models, registry)
    return known


def load_known_failures(
    path: Path, models: Iterable[str] | None = None, registry: Registry | None = None
) -> KnownFailures:
    """Read and validate ``path``; errors name the file, the entry (from 1) and the field."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise KnownFailuresError(f"{path}: cannot read known failures ({error.strerror or error})") from None
    return parse_known_failures(text, path, models, registry)


def merge_known_failures(parts: Iterable[tuple[Path | str, KnownFailures]]) -> KnownFailures:
    """One set of the entries of ``(file, entries)`` parts, in order (the first match still wins); a match
    names the file and the index its entry has there.
    """
    merged = KnownFailures()
    for path, part in parts:
        merged.known_failures.extend(part.known_failures)
        merged._origins.extend((str(path), index) for index in range(1, len(part.known_failures) + 1))
    return merged


def load_known_failures_files(
    paths: Iterable[Path], models: Iterable[str] | None = None, registry: Registry | None = None
) -> KnownFailures:
    """Read, validate and merge ``paths`` in order (a missing one is an error: pass only files that exist);
    matches name the file as given in ``paths``.
    """
    models = None if models is None else list(models)
    return merge_known_failures((path, load_known_failures(Path(path), models, registry)) for path in paths)


def dump_known_failures(known: KnownFailures) -> str:
    """YAML text of ``known`` (patterns left at ``*`` omitted); loading it gives ``known`` back."""
    entries = [entry.model_dump(exclude_defaults=True) for entry in known.known_failures]
    return yaml.safe_dump({"known_failures": entries}, sort_keys=False, allow_unicode=True, width=100)
