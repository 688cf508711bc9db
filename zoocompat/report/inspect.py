"""``zoocompat inspect``: a per-layer listing of an ONNX model with its encodings (the role of snpe-dlc-info).

For an FP32 or QDQ ONNX file (and an AIMET encodings JSON next to it, when there
is one) it lists every compute layer: name, op type, input and output shapes,
parameter count and the encoding of each tensor the layer reads or writes
(bitwidth, scale, offset, min, max, symmetric, per-channel), then totals: ops
by type, parameters, and the size of the parameters in FP32 vs quantized.

QuantizeLinear / DequantizeLinear pairs are not layers: a layer's inputs are
traced back through them to the tensor they quantize, and their scale and zero
point are that tensor's encoding when the encodings JSON does not give one.
``onnx`` is imported inside the functions, never when the CLI starts.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zoocompat.api.errors import ZoocompatError

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
ENCODINGS_SUFFIXES = (".encodings", ".encodings.json")

__all__ = ["InspectError", "Encoding", "Layer", "ModelListing", "find_encodings", "inspect_onnx", "render_text"]


class InspectError(ZoocompatError):
    """The artifact cannot be inspected (missing, not ONNX, bad encodings)."""


@dataclass
class Encoding:
    """One tensor's quantization encoding (``per_channel``: number of channels, 0 when per tensor)."""

    tensor: str
    bitwidth: int | None
    scale: float | None
    offset: float | None
    min: float | None
    max: float | None
    symmetric: bool | None
    per_channel: int = 0
    source: str = "encodings"  # "encodings" (the JSON) or "qdq" (the model's Q/DQ nodes)


@dataclass
class Layer:
    """One compute node of the graph."""

    index: int
    name: str
    op_type: str
    inputs: list[str]
    outputs: list[str]
    input_shapes: list[list[int | str] | None]
    output_shapes: list[list[int | str] | None]
    params: int
    encodings: list[Encoding] = field(default_factory=list)


@dataclass
class ModelListing:
    """The whole listing; :meth:`to_json` is ``inspect --json``."""

    path: str
    encodings_path: str | None
    opset: int | None
    producer: str
    layers: list[Layer]
    ops_by_type: dict[str, int]
    params: int
    size_fp32_bytes: int
    size_quantized_bytes: int
    quantized: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def find_encodings(model: Path) -> Path | None:
    """The encodings JSON beside ``model``: ``<stem>.encodings``, else ``model.encodings``, else the only one there."""
    for suffix in ENCODINGS_SUFFIXES:
        candidate = model.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    candidate = model.parent / "model.encodings"
    if candidate.is_file():
        return candidate
    found = [p for s in ENCODINGS_SUFFIXES for p in model.parent.glob(f"*{s}")]
    return found[0] if len(found) == 1 else None


def _first(value: Any) -> tuple[float | None, int]:
    """A scalar and the channel count of a scalar-or-list field."""
    if isinstance(value, list):
        numbers = [v for v in value if isinstance(v, int | float)]
        return (float(numbers[0]) if numbers else None), (len(numbers) if len(numbers) > 1 else 0)
    return (float(value) if isinstance(value, int | float) else None), 0


def _encoding_from_entry(name: str, entries: list[dict[str, Any]]) -> Encoding:
    entry = entries[0]
    bitwidth = entry.get("bitwidth", entry.get("bw"))
    if bitwidth is None and str(entry.get("output_dtype", "")).lstrip("u").startswith("int"):
        bitwidth = int(str(entry["output_dtype"]).lstrip("u").removeprefix("int") or 8)
    scale, channels = _first(entry.get("scale", entry.get("y_scale")))
    offset, _ = _first(entry.get("offset", entry.get("y_zero_point")))
    channels = max(channels, len(entries) if len(entries) > 1 else 0)
    if entry.get("enc_type") == "PER_CHANNEL" and not channels:
        channels = 1
    symmetric = entry.get("is_symmetric", entry.get("is_sym"))
    if isinstance(symmetric, str):
        symmetric = symmetric.lower() == "true"
    low, _ = _first(entry.get("min"))
    high, _ = _first(entry.get("max"))
    if low is None and scale is not None and offset is not None and bitwidth:
        low, high = scale * offset, scale * (offset + 2 ** int(bitwidth) - 1)
    return Encoding(name, bitwidth, scale, offset, low, high, symmetric, channels, "encodings")


def _load_encodings(path: Path) -> dict[str, Encoding]:
    from zoocompat.api.encodings import iter_encodings  # standard library only; reads all AIMET layouts

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InspectError(f"{path}: not an encodings JSON ({error})") from None
    if not isinstance(data, dict):
        raise InspectError(f"{path}: not an encodings JSON (top level is {type(data).__name__}, not an object)")
    grouped: dict[str, list[dict[str, Any]]] = {}
    for _kind, name, entry in iter_encodings(data):
        if isinstance(entry, dict):
            grouped.setdefault(name, []).append(entry)
    return {name: _encoding_from_entry(name, entries) for name, entries in grouped.items()}


def _shape(value_info: Any) -> list[int | str] | None:
    tensor = value_info.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]


def _bits(dtype: int) -> int:
    import onnx

    return 8 * onnx.helper.tensor_dtype_to_np_dtype(dtype).itemsize


def inspect_onnx(path: Path, encodings: Path | None = None) -> ModelListing:
    """List ``path``'s layers with shapes, parameters and encodings (``encodings``: default :func:`find_encodings`)."""
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    if not path.is_file():
        raise InspectError(f"{path}: no such file")
    try:
        model = onnx.load(str(path))
    except Exception as error:  # onnx raises DecodeError and friends for a file that is not ONNX
        raise InspectError(f"{path}: not an ONNX model ({type(error).__name__}: {error})") from None
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: S110 - shapes are a convenience; the listing works without the inferred ones
        pass
    encodings = encodings if encodings is not None else find_encodings(path)
    table = _load_encodings(encodings) if encodings else {}
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    shapes = {vi.name: _shape(vi) for vi in [*graph.input, *graph.value_info, *graph.output]}
    for name, tensor in inits.items():
        shapes.setdefault(name, list(tensor.dims))
    producer = {out: node for node in graph.node for out in node.output}

    def origin(name: str) -> str:
        """The tensor a Q/DQ chain quantizes (``name`` itself when it is no Q/DQ output)."""
        seen = 0
        while name in producer and producer[name].op_type in QDQ_OPS and seen < 4:
            name = producer[name].input[0]
            seen += 1
        return name

    def qdq_encoding(name: str) -> Encoding | None:
        node = producer.get(name)
        if node is None or node.op_type not in QDQ_OPS or len(node.input) < 2 or node.input[1] not in inits:
            return None
        scale = numpy_helper.to_array(inits[node.input[1]]).ravel()
        zero = (
            numpy_helper.to_array(inits[node.input[2]]).ravel()
            if len(node.input) > 2 and node.input[2] in inits
            else None
        )
        dtype = inits[node.input[2]].data_type if zero is not None else onnx.TensorProto.UINT8
        bits = _bits(dtype)
        offset = -float(zero[0]) if zero is not None and zero.size else 0.0
        signed = onnx.helper.tensor_dtype_to_np_dtype(dtype).kind == "i"
        low_q = -(2 ** (bits - 1)) if signed else 0
        s = float(scale[0])
        return Encoding(
            origin(name),
            bits,
            s,
            offset,
            s * (low_q + offset),
            s * (low_q + 2**bits - 1 + offset),
            bool(signed and (zero is None or not zero.any())),
            int(scale.size) if scale.size > 1 else 0,
            "qdq",
        )

    layers: list[Layer] = []
    ops: dict[str, int] = {}
    params = 0
    size_fp32 = 0
    size_quant = 0
    counted: set[str] = set()
    quantized = bool(table) or any(n.op_type in QDQ_OPS for n in graph.node)
    for node in graph.node:
        if node.op_type in QDQ_OPS:
            continue
        inputs = [origin(i) for i in node.input if i]
        layer_params = 0
        encs: list[Encoding] = []
        for raw, name in zip([i for i in node.input if i], inputs, strict=True):
            enc = table.get(name) or qdq_encoding(raw)
            if enc is not None:
                encs.append(enc)
            if name in inits and name not in counted:
                tensor = inits[name]
                count = math.prod(tensor.dims) if tensor.dims else 1
                if tensor.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16) or enc is not None:
                    layer_params += count
                    counted.add(name)
                    size_fp32 += 4 * count
                    bits = enc.bitwidth if enc is not None and enc.bitwidth else _bits(tensor.data_type)
                    size_quant += math.ceil(count * bits / 8)
        for out in node.output:
            enc = table.get(out)
            if enc is None:  # a QDQ model quantizes a layer's output through the Q node that reads it
                consumers = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input and n.input[0] == out]
                enc = qdq_encoding(consumers[0].output[0]) if consumers else None
            if enc is not None:
                encs.append(enc)
        params += layer_params
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
        layers.append(
            Layer(
                index=len(layers),
                name=node.name or f"{node.op_type}_{len(layers)}",
                op_type=node.op_type,
                inputs=inputs,
                outputs=list(node.output),
                input_shapes=[shapes.get(i) for i in inputs],
                output_shapes=[shapes.get(o) for o in node.output],
                params=layer_params,
                encodings=encs,
            )
        )
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return ModelListing(
        path=str(path),
        encodings_path=str(encodings) if encodings else None,
        opset=opset,
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        layers=layers,
        ops_by_type=dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        params=params,
        size_fp32_bytes=size_fp32,
        size_quantized_bytes=size_quant if quantized else size_fp32,
        quantized=quantized,
    )


def _dims(shape: list[int | str] | None) -> str:
    return "?" if shape is None else "x".join(str(d) for d in shape) or "scalar"


def _enc_text(enc: Encoding) -> str:
    bits = f"{enc.bitwidth}b" if enc.bitwidth else "?b"
    parts = [f"{enc.tensor}: {bits}"]
    if enc.scale is not None:
        parts.append(f"scale {enc.scale:.4g}")
    if enc.offset is not None:
        parts.append(f"offset {enc.offset:g}")
    if enc.min is not None and enc.max is not None:
        parts.append(f"[{enc.min:.4g}, {enc.max:.4g}]")
    if enc.symmetric:
        parts.append("sym")
    if enc.per_channel:
        parts.append(f"per-channel x{enc.per_channel}")
    return " ".join(parts)


def render_text(listing: ModelListing) -> str:
    """The listing as text: one line per layer, its encodings indented under it, then totals."""
    lines = [
        f"{listing.path}" + (f"  (encodings: {listing.encodings_path})" if listing.encodings_path else ""),
        f"opset {listing.opset}, producer {listing.producer or '?'}, {len(listing.layers)} layers",
        "",
        f"{'#':>4}  {'name':<40} {'op':<18} {'inputs':<28} {'outputs':<20} {'params':>9}",
    ]
    for layer in listing.layers:
        ins = ",".join(_dims(s) for s in layer.input_shapes)
        outs = ",".join(_dims(s) for s in layer.output_shapes)
        lines.append(
            f"{layer.index:>4}  {layer.name[:40]:<40} {layer.op_type:<18} {ins:<28} {outs:<20} {layer.params:>9}"
        )
        for enc in layer.encodings:
            lines.append(f"{'':>6}enc {_enc_text(enc)}")
    lines += ["", "ops by type: " + ", ".join(f"{op} {n}" for op, n in listing.ops_by_type.items())]
    lines.append(f"parameters: {listing.params}")
    lines.append(
        f"size: {listing.size_fp32_bytes / 1024:.1f} KiB in FP32, {listing.size_quantized_bytes / 1024:.1f} KiB "
        + ("quantized" if listing.quantized else "(not quantized)")
    )
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("index", "name", "op_type", "input_shapes", "output_shapes", "params", "encodings")


def render_csv(listing: ModelListing) -> str:
    """One CSV row per layer; encodings joined with ``; ``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for layer in listing.layers:
        writer.writerow(
            {
                "index": layer.index,
                "name": layer.name,
                "op_type": layer.op_type,
                "input_shapes": " ".join(_dims(s) for s in layer.input_shapes),
                "output_shapes": " ".join(_dims(s) for s in layer.output_shapes),
                "params": layer.params,
                "encodings": "; ".join(_enc_text(e) for e in layer.encodings),
            }
        )
    return buffer.getvalue()
