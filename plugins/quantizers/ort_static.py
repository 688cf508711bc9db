"""A light baseline quantizer: onnxruntime ``quantize_static`` with a QNN-compatible QDQ config.

No AIMET: ``onnxruntime.quantization.execution_providers.qnn.get_qnn_qdq_config``
chooses the QDQ settings the QNN execution provider accepts (uint8 / uint16
activations, uint8 weights, int32 bias, removable activations fused), min-max
calibration runs on the calibration samples, and ``quantize`` writes the QDQ
ONNX. AIMET-format encodings (version 1.0.0) are then read back from the QDQ
graph's scales and zero points, so the encodings contract holds: every
backend gets the same file an AIMET quantizer would write.

AIMET's offset convention: ``real = scale * (q + offset)`` with ``q`` on the
unsigned grid ``0 .. 2**bw - 1``. A QDQ zero point ``z`` of an unsigned type
gives ``offset = -z``; of a signed type ``offset = -(z + 2**(bw - 1))``.

onnx and onnxruntime are imported inside the methods so that the CLI can
import this plugin without loading the ML stack.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from zoocompat_plugins.quantizers.aimet_onnx import ENCODINGS_NAME, QDQ_NAME, _check_calibration, graph_tensor_names

import zoocompat
from zoocompat.api import QuantizeResult
from zoocompat.api.encodings import count_encodings, load_encodings
from zoocompat.api.errors import CellError

# precision -> (activation QuantType name, weight QuantType name)
_TYPES = {"w8a8": ("QUInt8", "QUInt8"), "w8a16": ("QUInt16", "QUInt8")}
_ACTIVATION_SUFFIXES = ("_QuantizeLinear_Input",)
_PARAM_SUFFIXES = ("_DequantizeLinear_Output",)
TECHNIQUES = ("ptq",)


def _strip(name: str, suffixes: tuple[str, ...]) -> str:
    for suffix in suffixes:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _entry(name: str, scale: np.ndarray, zero_point: np.ndarray) -> dict[str, Any]:
    """An AIMET 1.0.0 encoding entry from a QDQ scale / zero point pair."""
    dtype = np.dtype(zero_point.dtype)
    bits = dtype.itemsize * 8
    signed = dtype.kind == "i"
    scales = np.atleast_1d(scale).astype(np.float64)
    zeros = np.broadcast_to(np.atleast_1d(zero_point).astype(np.int64), scales.shape)
    offsets = -(zeros + (2 ** (bits - 1) if signed else 0))
    symmetric = bool(np.all(zeros == (0 if signed else 2 ** (bits - 1))))
    return {
        "name": name,
        "bw": bits,
        "dtype": "INT",
        "enc_type": "PER_TENSOR" if scales.size == 1 else "PER_CHANNEL",
        "is_sym": symmetric,
        "offset": [float(o) for o in offsets],
        "scale": [float(s) for s in scales],
    }


def encodings_from_qdq(qdq: Any, fp32_tensors: set[str]) -> tuple[dict[str, Any], list[str]]:
    """AIMET 1.0.0 encodings read from the Q/DQ nodes of ``qdq``.

    A ``QuantizeLinear`` of a computed tensor gives an activation encoding; a
    ``DequantizeLinear`` of an initializer (a stored quantized weight or bias)
    gives a param encoding, named after the FP32 tensor it replaces. Names that
    do not map back to a tensor of the FP32 graph (``fp32_tensors``) are
    returned as the second value and left out.
    """
    from onnx import numpy_helper

    initializers = {init.name: numpy_helper.to_array(init) for init in qdq.graph.initializer}
    params: dict[str, dict[str, Any]] = {}
    activations: dict[str, dict[str, Any]] = {}
    unmapped: list[str] = []
    for node in qdq.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(node.input) < 3:
            continue
        scale, zero = initializers.get(node.input[1]), initializers.get(node.input[2])
        if scale is None or zero is None:
            continue
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers:
            name, table = _strip(node.output[0], _PARAM_SUFFIXES), params
        elif node.op_type == "QuantizeLinear" and node.input[0] not in initializers:
            name, table = _strip(node.input[0], _ACTIVATION_SUFFIXES), activations
        else:
            continue
        if name not in fp32_tensors:
            unmapped.append(name)
            continue
        table.setdefault(name, _entry(name, scale, zero))  # the first Q of a tensor is its own encoding
    encodings = {
        "version": "1.0.0",
        "activation_encodings": list(activations.values()),
        "param_encodings": list(params.values()),
        "producer": {"package": "zoocompat ort quantizer (onnxruntime quantize_static)"},
    }
    return encodings, unmapped


class _Reader:
    """An onnxruntime CalibrationDataReader over single-sample input dicts."""

    def __init__(self, samples: list[dict[str, np.ndarray]]) -> None:
        self.samples = samples
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.samples):
            return None
        self.position += 1
        return self.samples[self.position - 1]

    def rewind(self) -> None:
        self.position = 0


class OrtStaticQuantizer:
    """onnxruntime static QDQ quantization with the QNN config; AIMET encodings derived from the QDQ graph."""

    name = "ort"
    modes = ("ptq",)
    precisions = tuple(_TYPES)
    techniques = TECHNIQUES

    def quantize(
        self,
        onnx_path: Path,
        calibration: list[dict[str, np.ndarray]],
        precision: str,
        technique: str,
        out_dir: Path,
        *,
        per_channel: bool = False,
        encodings_override: Path | None = None,
    ) -> QuantizeResult:
        """Quantize ``onnx_path`` into ``out_dir/model_qdq.onnx`` plus ``out_dir/model.encodings``.

        Only min-max PTQ (``technique="ptq"``); ``per_channel`` quantizes weights
        per output channel. Overrides are not supported here (the QDQ graph is
        written by onnxruntime); use the ``aimet_onnx`` quantizer for them.
        Any failure raises ``CellError("quantize_error")``.
        """
        start = time.perf_counter()
        onnx_path, out_dir = Path(onnx_path), Path(out_dir)
        where = f"ort {precision}/{technique} on {onnx_path.name}"
        if precision not in _TYPES:
            raise CellError("quantize_error", f"{where}: unknown precision; expected one of {self.precisions}")
        if technique not in TECHNIQUES:
            raise CellError(
                "quantize_error",
                f"{where}: unknown technique {technique!r}; the ort quantizer offers {', '.join(TECHNIQUES)} "
                "(the aimet_onnx quantizer has CLE, AdaRound and more)",
            )
        if encodings_override is not None:
            raise CellError(
                "quantize_error", f"{where}: the ort quantizer takes no encodings override; use quantizer aimet_onnx"
            )
        try:
            import onnx
            import onnxruntime
            from onnxruntime.quantization import QuantType, quantize
            from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config
        except Exception as exc:
            raise CellError("quantize_error", f"{where}: cannot import onnxruntime.quantization ({exc})") from exc
        try:
            model = onnx.load(str(onnx_path))
        except Exception as exc:
            raise CellError("quantize_error", f"{where}: cannot load the FP32 model: {exc}") from exc
        _check_calibration(model, calibration, where)
        activation_type, weight_type = (getattr(QuantType, t) for t in _TYPES[precision])

        out_dir.mkdir(parents=True, exist_ok=True)
        qdq_path, enc_path = out_dir / QDQ_NAME, out_dir / ENCODINGS_NAME
        for stale in (qdq_path, enc_path):
            stale.unlink(missing_ok=True)
        root = logging.getLogger()
        level = root.level
        root.setLevel(max(level, logging.ERROR))  # onnxruntime warns "consider pre-processing" on the root logger
        try:
            with tempfile.TemporaryDirectory(prefix="zoocompat-ort-") as tmp:
                stage = "building the QNN QDQ config"
                config = get_qnn_qdq_config(
                    model,
                    _Reader(calibration),
                    activation_type=activation_type,
                    weight_type=weight_type,
                    per_channel=per_channel,
                )
                stage = "calibrating and writing the QDQ model"
                began = time.perf_counter()
                quantize(model, str(Path(tmp) / QDQ_NAME), config)
                calibrate_s = time.perf_counter() - began
                qdq = onnx.load(str(Path(tmp) / QDQ_NAME))
                stage = "checking the QDQ model"
                onnx.checker.check_model(qdq)
                shutil.move(str(Path(tmp) / QDQ_NAME), qdq_path)
        except CellError:
            raise
        except Exception as exc:
            raise CellError(
                "quantize_error", f"{where}: onnxruntime failed while {stage}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            root.setLevel(level)

        encodings, unmapped = encodings_from_qdq(qdq, graph_tensor_names(model))
        enc_path.write_text(json.dumps(encodings, indent=1))
        try:
            load_encodings(enc_path)
        except CellError as exc:
            raise CellError(
                "quantize_error", f"{where}: the encodings read from the QDQ graph are unusable: {exc.message}"
            ) from exc
        counts = count_encodings(encodings)
        qdq_ops = [node.op_type for node in qdq.graph.node]
        report = {
            "quantizer": self.name,
            "onnxruntime": onnxruntime.__version__,
            "technique": technique,
            "precision": precision,
            "activation_type": _TYPES[precision][0],
            "weight_type": _TYPES[precision][1],
            "weights": "per-channel" if per_channel else "per-tensor",
            "quant_scheme": "min-max (onnxruntime MinMax calibrator)",
            "encodings_format": "1.0.0",
            "encodings_source": "derived from the QDQ graph's scales and zero points",
            "param_encodings": counts["param"],
            "activation_encodings": counts["activation"],
            "unmapped_qdq_tensors": unmapped,
            "qdq_nodes": qdq_ops.count("QuantizeLinear") + qdq_ops.count("DequantizeLinear"),
            "qdq_opset": next(op.version for op in qdq.opset_import if op.domain in ("", "ai.onnx")),
            "steps": [{"step": "calibrate", "did": "min-max statistics", "seconds": round(calibrate_s, 3)}],
            "calibration_samples": len(calibration),
            "seconds": round(time.perf_counter() - start, 3),
        }
        return QuantizeResult(qdq_onnx=qdq_path, encodings=enc_path, report=report)


@zoocompat.hookimpl
def zoocompat_quantizers() -> list[OrtStaticQuantizer]:
    """Register the onnxruntime static quantizer."""
    return [OrtStaticQuantizer()]
