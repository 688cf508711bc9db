"""Read and check AIMET-format encodings files, for every quantizer plugin.

aimet-onnx 2.42 writes three layouts, told apart by the file's ``"version"``:

* ``0.6.1``: ``param_encodings`` / ``activation_encodings`` map a tensor name to a
  list of per-channel dicts ``{bitwidth, dtype, is_symmetric, min, max, offset, scale}``.
* ``1.0.0`` (the default export): the same two sections as lists of
  ``{name, bw, dtype, enc_type, is_sym, offset[], scale[]}``.
* ``2.0.0`` / ``2.1.0``: one flat ``encodings`` list of QDQ-style
  ``{name, output_dtype, y_scale, y_zero_point, axis, ...}`` with no split
  between parameters and activations.

Only the standard library is imported here, so the CLI can import it cheaply.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from zoocompat.api.errors import CellError

__all__ = [
    "EXPORT_VERSIONS",
    "SUPPORTED_VERSIONS",
    "apply_overrides",
    "convert_encodings",
    "count_encodings",
    "iter_encodings",
    "load_encodings",
]

SUPPORTED_VERSIONS = ("0.6.1", "1.0.0", "2.0.0", "2.1.0")
# Layouts :func:`convert_encodings` writes (the two with a param / activation split).
EXPORT_VERSIONS = ("0.6.1", "1.0.0")

# Fields holding float scales (must be > 0 and finite) and zero points (must be finite).
_SCALE_FIELDS = ("scale", "y_scale", "per_channel_float_scale")
_INT_SCALE_FIELDS = ("per_block_int_scale",)
_OFFSET_FIELDS = ("offset", "y_zero_point")
_DTYPE_BITS = re.compile(r"^u?int(\d+)$|^b?float(\d+)")


def _version_of(enc: dict[str, Any]) -> str:
    """The layout version of a parsed encodings file, inferred when it is not stated."""
    version = enc.get("version")
    if version is not None:
        return str(version)
    if "encodings" in enc:
        return "2.0.0"
    sections = [enc.get("param_encodings"), enc.get("activation_encodings")]
    return "0.6.1" if any(isinstance(s, dict) for s in sections) else "1.0.0"


def _entry_name(entry: Any, index: int) -> str:
    """The tensor name of a list-layout entry, or its position when it has none."""
    if isinstance(entry, dict) and "name" in entry:
        return str(entry["name"])
    return f"<entry {index}>"


def iter_encodings(enc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yield ``(kind, tensor_name, entry)`` for every encoding entry of ``enc``.

    ``kind`` is ``"param"``, ``"activation"`` or, for the 2.x layouts, which do
    not record it, ``"tensor"``. A 0.6.1 per-channel list yields one entry per channel.
    """
    version = _version_of(enc)
    if version.startswith("2."):
        for index, entry in enumerate(enc.get("encodings", [])):
            yield "tensor", _entry_name(entry, index), entry
        return
    for kind, section in (("param", "param_encodings"), ("activation", "activation_encodings")):
        entries = enc.get(section) or ([] if version != "0.6.1" else {})
        if isinstance(entries, dict):
            for name, per_channel in entries.items():
                for entry in per_channel if isinstance(per_channel, list) else [per_channel]:
                    yield kind, str(name), entry
        else:
            for index, entry in enumerate(entries):
                yield kind, _entry_name(entry, index), entry


def _bitwidth(entry: dict[str, Any]) -> int | None:
    """The bitwidth an entry declares (``bitwidth``, ``bw`` or from ``output_dtype``)."""
    for field in ("bitwidth", "bw"):
        if field in entry:
            return entry[field]
    match = _DTYPE_BITS.match(str(entry.get("output_dtype", "")))
    if match:
        return int(match.group(1) or match.group(2))
    return None


def _numbers(value: Any) -> Iterable[Any]:
    """Flatten a scalar or (nested) list into its scalars."""
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _numbers(item)
    else:
        yield value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_entry(path: Path, kind: str, name: str, entry: Any) -> None:
    """Raise ``CellError("bad_input")`` naming ``name`` when ``entry`` is not a sane encoding."""
    label = "" if kind == "tensor" else f"{kind} "
    where = f"{path}: {label}encoding of tensor {name!r}"
    if not isinstance(entry, dict):
        raise CellError("bad_input", f"{where} is a {type(entry).__name__}, expected a JSON object; re-export it")
    bits = _bitwidth(entry)
    if not (isinstance(bits, int) and not isinstance(bits, bool) and 1 <= bits <= 32):
        raise CellError("bad_input", f"{where} has bitwidth {bits!r}, expected an integer in 1..32")
    for field in _SCALE_FIELDS:
        for value in _numbers(entry.get(field, [])):
            if not (_is_number(value) and math.isfinite(value) and value > 0):
                raise CellError(
                    "bad_input",
                    f"{where} has {field} {value!r}; every scale must be finite and > 0 "
                    "(a NaN/Inf or zero scale usually means NaN/Inf or empty calibration data)",
                )
    for field in _INT_SCALE_FIELDS:
        for value in _numbers(entry.get(field, [])):
            if not (_is_number(value) and math.isfinite(value) and value > 0):
                raise CellError("bad_input", f"{where} has {field} {value!r}; block scales must be finite and > 0")
    for field in _OFFSET_FIELDS:
        for value in _numbers(entry.get(field, [])):
            if not (_is_number(value) and math.isfinite(value)):
                raise CellError("bad_input", f"{where} has {field} {value!r}; offsets must be finite numbers")


def load_encodings(path: Path | str) -> dict[str, Any]:
    """Load an AIMET encodings JSON file and check every entry.

    Accepts the layouts in :data:`SUPPORTED_VERSIONS`. Every scale must be
    finite and > 0, every offset / zero point finite, every bitwidth in 1..32.
    Returns the parsed JSON unchanged; raises ``CellError("bad_input")`` naming
    the file (and the tensor, for a bad entry) otherwise.
    """
    path = Path(path)
    try:
        enc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CellError("bad_input", f"cannot read encodings file {path}: {exc}") from exc
    if not isinstance(enc, dict):
        raise CellError("bad_input", f"{path}: encodings must be a JSON object, got {type(enc).__name__}")
    version = _version_of(enc)
    if version not in SUPPORTED_VERSIONS:
        raise CellError(
            "bad_input", f"{path}: encodings version {version!r} is not one of {SUPPORTED_VERSIONS}; re-export it"
        )
    sections = ("encodings",) if version.startswith("2.") else ("param_encodings", "activation_encodings")
    expected = dict if version == "0.6.1" else list
    for section in sections:
        if not isinstance(enc.get(section, expected()), expected):
            raise CellError(
                "bad_input", f"{path}: section {section!r} must be a JSON {expected.__name__} in version {version}"
            )
    for kind, name, entry in iter_encodings(enc):
        _check_entry(path, kind, name, entry)
    return enc


def count_encodings(enc: dict[str, Any]) -> dict[str, Any]:
    """Count the tensors that carry an encoding.

    Returns ``{"version", "param", "activation", "total"}``. The 2.x layouts do not
    say which tensors are parameters, so there ``param`` and ``activation`` are
    ``None`` and only ``total`` is known.
    """
    names: dict[str, set[str]] = {"param": set(), "activation": set(), "tensor": set()}
    for kind, name, _entry in iter_encodings(enc):
        names[kind].add(name)
    version = _version_of(enc)
    if version.startswith("2."):
        return {"version": version, "param": None, "activation": None, "total": len(names["tensor"])}
    return {
        "version": version,
        "param": len(names["param"]),
        "activation": len(names["activation"]),
        "total": len(names["param"] | names["activation"]),
    }


# -------------------------------------------------------------------------
# Converting between the legacy layouts, and user overrides
# -------------------------------------------------------------------------


def _legacy_to_v1(name: str, channels: list[dict[str, Any]]) -> dict[str, Any]:
    """One tensor's 0.6.1 per-channel list as a 1.0.0 entry.

    An entry that gives only ``bitwidth`` / ``min`` / ``max`` (as SNPE-style
    quantization overrides often do) gets its scale and offset computed from them.
    """
    first = channels[0]
    bits = int(first.get("bitwidth", 8))
    entry: dict[str, Any] = {
        "name": name,
        "bw": bits,
        "dtype": str(first.get("dtype", "int")).upper(),
        "enc_type": "PER_TENSOR" if len(channels) == 1 else "PER_CHANNEL",
        "is_sym": str(first.get("is_symmetric", "False")) == "True",
    }
    if entry["dtype"] == "FLOAT":
        return entry
    scales, offsets = [], []
    for channel in channels:
        if "scale" in channel and "offset" in channel:
            scales.append(float(channel["scale"]))
            offsets.append(float(channel["offset"]))
        else:
            low, high = float(channel["min"]), float(channel["max"])
            scale = (high - low) / (2**bits - 1)
            scales.append(scale)
            offsets.append(float(round(low / scale)) if scale > 0 else 0.0)
    entry.update(offset=offsets, scale=scales)
    return entry


def _v1_to_legacy(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """One 1.0.0 entry as the 0.6.1 per-channel list (min / max recomputed from scale and offset)."""
    bits = int(entry["bw"])
    dtype = str(entry.get("dtype", "INT")).lower()
    symmetric = "True" if entry.get("is_sym") else "False"
    if dtype == "float":
        return [{"bitwidth": bits, "dtype": "float"}]
    channels = []
    for scale, offset in zip(entry.get("scale", []), entry.get("offset", []), strict=True):
        channels.append(
            {
                "bitwidth": bits,
                "dtype": dtype,
                "is_symmetric": symmetric,
                "max": scale * (2**bits - 1 + offset),
                "min": scale * offset,
                "offset": int(offset),
                "scale": scale,
            }
        )
    return channels


def _sections_v1(enc: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{"param_encodings": {name: 1.0.0 entry}, "activation_encodings": {...}}`` of a legacy file."""
    version = _version_of(enc)
    if version.startswith("2."):
        raise CellError(
            "bad_input",
            f"encodings version {version} has no param / activation split; export 0.6.1 or 1.0.0 to convert it",
        )
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for section in ("param_encodings", "activation_encodings"):
        entries = enc.get(section) or ({} if version == "0.6.1" else [])
        if version == "0.6.1":
            out[section] = {
                str(name): _legacy_to_v1(str(name), value if isinstance(value, list) else [value])
                for name, value in entries.items()
            }
        else:
            out[section] = {str(entry["name"]): dict(entry) for entry in entries}
    return out


def convert_encodings(enc: dict[str, Any], version: str) -> dict[str, Any]:
    """Return ``enc`` (0.6.1 or 1.0.0) in layout ``version`` (one of :data:`EXPORT_VERSIONS`).

    Other top-level fields (``producer``, ``quantizer_args``, ...) are kept.
    """
    if version not in EXPORT_VERSIONS:
        raise CellError("bad_input", f"cannot write encodings version {version!r}; choose one of {EXPORT_VERSIONS}")
    sections = _sections_v1(enc)
    out = {k: v for k, v in enc.items() if k not in ("param_encodings", "activation_encodings", "version")}
    for section, entries in sections.items():
        if version == "1.0.0":
            out[section] = list(entries.values())
        else:
            out[section] = {name: _v1_to_legacy(entry) for name, entry in entries.items()}
    out["version"] = version
    return out


def apply_overrides(
    computed: dict[str, Any],
    overrides: dict[str, Any],
    graph_tensors: set[str],
    source: str = "the override file",
    folded: set[str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Replace the computed encodings of the tensors ``overrides`` names (like SNPE's quantization overrides).

    ``computed`` and ``overrides`` are parsed 0.6.1 or 1.0.0 encodings (the
    overrides already checked by :func:`load_encodings`). Every tensor the
    overrides name must be in ``graph_tensors`` (the names of the graph being
    quantized); ``folded`` names tensors of the FP32 model that quantization
    folded away, for a clearer message. A tensor with no computed encoding is
    added in the section the override file puts it in.

    Returns the merged encodings in ``computed``'s layout and the overridden names.
    Raises ``CellError("quantize_error")`` naming the first unknown tensor.
    """
    merged = _sections_v1(computed)
    replaced: list[str] = []
    for section, entries in _sections_v1(overrides).items():
        for name, entry in entries.items():
            if name not in graph_tensors:
                why = (
                    "it was folded away before quantization (BatchNorm fold / CLE); override the folded tensors"
                    if folded and name in folded
                    else "no node, initializer or graph input has that name"
                )
                known = ", ".join(sorted(graph_tensors)[:12])
                raise CellError(
                    "quantize_error",
                    f"{source}: tensor {name!r} is not in the graph being quantized: {why} "
                    f"(some names it has: {known}{', ...' if len(graph_tensors) > 12 else ''}); "
                    "`zoocompat inspect` lists them all",
                )
            target = next((s for s in merged if name in merged[s]), section)
            merged[target][name] = entry
            replaced.append(name)
    as_v1 = {k: v for k, v in computed.items() if k not in ("param_encodings", "activation_encodings")}
    as_v1.update({section: list(entries.values()) for section, entries in merged.items()}, version="1.0.0")
    return convert_encodings(as_v1, _version_of(computed)), replaced
