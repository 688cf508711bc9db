"""Post-training quantization of an FP32 ONNX model with aimet-onnx.

Steps: load a copy of the model, fold BatchNorm into the preceding Conv/Gemm,
build a ``QuantizationSimModel``, calibrate it with min-max ("tf") statistics on
the calibration samples, export AIMET encodings, and turn model plus encodings
into a QDQ ONNX with ``aimet_onnx.encodings_to_onnx_qdq``.

aimet-onnx, onnx and onnxruntime are imported inside the methods so that the
CLI can import this plugin without loading the ML stack.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

import zoocompat
from plugins.quantizers.encodings import count_encodings, load_encodings
from zoocompat.api import QuantizeResult
from zoocompat.errors import CellError

# precision -> (param bitwidth, activation bitwidth)
_BITWIDTHS = {"w8a8": (8, 8), "w8a16": (8, 16), "w4a8": (4, 8)}
# technique -> aimet-onnx quant scheme
_SCHEMES = {"ptq": "tf"}
QDQ_NAME = "model_qdq.onnx"
ENCODINGS_NAME = "model.encodings"


@contextlib.contextmanager
def _quiet_aimet() -> Iterator[None]:
    """Raise AIMET's area loggers (INFO to stdout by default) to WARNING and mute a torch warning."""
    from aimet_onnx.common.utils import AimetLogger

    loggers = [logging.getLogger(area.value) for area in AimetLogger.LogAreas]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.level, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _graph_inputs(model: Any) -> dict[str, tuple[np.dtype, list[int | None]]]:
    """Real graph inputs (initializers excluded): name -> (numpy dtype, dims; None when symbolic)."""
    from onnx import helper

    initializers = {init.name for init in model.graph.initializer}
    inputs = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        dims = [d.dim_value if d.dim_value > 0 else None for d in tensor_type.shape.dim]
        inputs[value.name] = (np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)), dims)
    return inputs


def _check_calibration(model: Any, calibration: list[dict[str, np.ndarray]], where: str) -> None:
    """Raise ``quantize_error`` when a sample does not fit the model's inputs or holds NaN/Inf."""
    if not calibration:
        raise CellError(
            "quantize_error",
            f"{where}: the calibration list is empty; PTQ needs samples from the card's calibration split",
        )
    inputs = _graph_inputs(model)
    for index, sample in enumerate(calibration):
        if not isinstance(sample, dict) or set(sample) != set(inputs):
            got = sorted(sample) if isinstance(sample, dict) else type(sample).__name__
            raise CellError(
                "quantize_error",
                f"{where}: calibration sample {index} has inputs {got}, the model has {sorted(inputs)}",
            )
        for name, (dtype, dims) in inputs.items():
            array = sample[name]
            if not isinstance(array, np.ndarray) or array.dtype != dtype:
                got = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
                raise CellError(
                    "quantize_error",
                    f"{where}: calibration sample {index} input {name!r} is {got}, the model wants {dtype}; "
                    "fix the preprocessing",
                )
            fits = array.ndim == len(dims) and all(d in (None, s) for d, s in zip(dims, array.shape, strict=True))
            if not fits:
                raise CellError(
                    "quantize_error",
                    f"{where}: calibration sample {index} input {name!r} has shape {list(array.shape)}, "
                    f"the model wants {['?' if d is None else d for d in dims]} (one sample, batch dim 1)",
                )
            if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
                raise CellError(
                    "quantize_error", f"{where}: calibration sample {index} input {name!r} contains NaN or Inf"
                )


def _tidy(out_dir: Path, before: set[Path], keep: set[Path]) -> None:
    """Delete what appeared in ``out_dir`` since ``before``, except ``keep``."""
    for path in set(out_dir.iterdir()) - before - keep:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


class AimetOnnxQuantizer:
    """PTQ with aimet-onnx: BN fold, min-max calibration, AIMET encodings and a QDQ ONNX."""

    name = "aimet_onnx"
    modes = ("ptq",)
    precisions = ("w8a8", "w8a16", "w4a8")
    # aimet-onnx quantsim config: "default" is per-channel symmetric for Conv/Gemm/MatMul weights.
    config_file = "default"

    def quantize(
        self,
        onnx_path: Path,
        calibration: list[dict[str, np.ndarray]],
        precision: str,
        technique: str,
        out_dir: Path,
    ) -> QuantizeResult:
        """Quantize ``onnx_path`` and write ``model_qdq.onnx`` and ``model.encodings`` into ``out_dir``.

        ``calibration`` holds single-sample input dicts (batch dim 1). The input
        file is never modified. Any failure raises ``CellError("quantize_error")``.
        """
        start = time.perf_counter()
        onnx_path, out_dir = Path(onnx_path), Path(out_dir)
        where = f"aimet_onnx {precision}/{technique} on {onnx_path.name}"
        if precision not in _BITWIDTHS:
            raise CellError("quantize_error", f"{where}: unknown precision; expected one of {self.precisions}")
        if technique not in _SCHEMES:
            raise CellError("quantize_error", f"{where}: unknown technique; expected one of {tuple(_SCHEMES)}")
        param_bw, act_bw = _BITWIDTHS[precision]

        try:
            import aimet_onnx
            import onnx
        except Exception as exc:  # ImportError, or RuntimeError for a bad AIMET_ENCODING_VERSION
            raise CellError(
                "quantize_error", f"{where}: cannot import aimet-onnx/onnx ({exc}); install zoocompat[stack]"
            ) from exc
        try:
            model = onnx.load(str(onnx_path))  # an in-memory copy; the file stays as it is
        except Exception as exc:
            raise CellError("quantize_error", f"{where}: cannot load the FP32 model: {exc}") from exc
        _check_calibration(model, calibration, where)

        out_dir.mkdir(parents=True, exist_ok=True)
        qdq_path, enc_path = out_dir / QDQ_NAME, out_dir / ENCODINGS_NAME
        for stale in (qdq_path, enc_path):
            stale.unlink(missing_ok=True)
        before = set(out_dir.iterdir())
        try:
            with tempfile.TemporaryDirectory(prefix="zoocompat-aimet-") as tmp, _quiet_aimet():
                report = self._run_aimet(model, calibration, param_bw, act_bw, _SCHEMES[technique], Path(tmp), where)
                shutil.move(str(Path(tmp) / ENCODINGS_NAME), enc_path)
                shutil.move(str(Path(tmp) / QDQ_NAME), qdq_path)
        finally:
            _tidy(out_dir, before, {qdq_path, enc_path})

        report = {
            "quantizer": self.name,
            "aimet_onnx": aimet_onnx.__version__,
            "technique": technique,
            "precision": precision,
            "param_bitwidth": param_bw,
            "activation_bitwidth": act_bw,
            "quant_scheme": _SCHEMES[technique],
            "config_file": self.config_file,
            **report,
            "calibration_samples": len(calibration),
            "seconds": round(time.perf_counter() - start, 3),
        }
        return QuantizeResult(qdq_onnx=qdq_path, encodings=enc_path, report=report)

    def _run_aimet(
        self,
        model: Any,
        calibration: list[dict[str, np.ndarray]],
        param_bw: int,
        act_bw: int,
        scheme: str,
        tmp: Path,
        where: str,
    ) -> dict[str, Any]:
        """Fold BN, calibrate, export and convert to QDQ inside ``tmp``; return report fields."""
        import onnx
        from aimet_onnx import QuantizationSimModel, encodings_to_onnx_qdq
        from aimet_onnx.batch_norm_fold import fold_all_batch_norms_to_weight

        stage = "folding BatchNorm"
        try:
            conv_bns, bn_convs = fold_all_batch_norms_to_weight(model)  # edits `model` in place
            left_bn = sum(node.op_type == "BatchNormalization" for node in model.graph.node)
            stage = "building the QuantizationSimModel"
            sim = QuantizationSimModel(
                model,
                param_type=f"int{param_bw}",
                activation_type=f"int{act_bw}",
                quant_scheme=scheme,
                config_file=self.config_file,
                path=str(tmp / "sim"),
            )
            stage = "computing encodings on the calibration samples"
            sim.compute_encodings(calibration)
            stage = "exporting the encodings"
            (tmp / "export").mkdir()
            sim.export(str(tmp / "export"), "model")
        except Exception as exc:
            raise CellError(
                "quantize_error",
                f"{where}: aimet-onnx failed while {stage}: {type(exc).__name__}: {str(exc).rstrip('. ')}. "
                "Check that the model runs on onnxruntime CPU with static input shapes.",
            ) from exc

        exported = tmp / "export" / "model.encodings"
        try:
            encodings = load_encodings(exported)
        except CellError as exc:
            raise CellError(
                "quantize_error",
                f"{where}: calibration gave an unusable encoding "
                f"({exc.message.replace(str(exported), 'model.encodings')}). "
                "Check the calibration samples (NaN/Inf, all-constant or mis-scaled inputs).",
            ) from exc
        counts = count_encodings(encodings)

        stage = "converting model and encodings to QDQ ONNX"
        try:
            qdq = encodings_to_onnx_qdq(str(tmp / "export" / "model.onnx"), encodings)
            stage = "checking and saving the QDQ ONNX"
            onnx.checker.check_model(qdq)
            onnx.save(qdq, str(tmp / QDQ_NAME))
        except Exception as exc:
            raise CellError(
                "quantize_error", f"{where}: aimet-onnx failed while {stage}: {type(exc).__name__}: {exc}"
            ) from exc
        shutil.copyfile(exported, tmp / ENCODINGS_NAME)

        qdq_ops = [node.op_type for node in qdq.graph.node]
        return {
            "encodings_format": counts["version"],
            "bn_folded": len(conv_bns) + len(bn_convs),
            "bn_unfolded": left_bn,
            "param_encodings": counts["param"],
            "activation_encodings": counts["activation"],
            "qdq_nodes": qdq_ops.count("QuantizeLinear") + qdq_ops.count("DequantizeLinear"),
            "qdq_opset": next(op.version for op in qdq.opset_import if op.domain in ("", "ai.onnx")),
        }


@zoocompat.hookimpl
def zoocompat_quantizers() -> list[AimetOnnxQuantizer]:
    """Register the aimet-onnx quantizer."""
    return [AimetOnnxQuantizer()]
