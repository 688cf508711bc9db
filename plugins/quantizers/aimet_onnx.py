"""Post-training quantization of an FP32 ONNX model with aimet-onnx, by technique.

Steps: load a copy of the model; fold BatchNorm into the preceding Conv/Gemm
(or, for ``cle``, cross-layer equalization, which folds BN itself); build a
``QuantizationSimModel``; optionally AdaRound or SeqMSE the weight encodings;
calibrate the rest on the calibration samples with the technique's scheme
(min-max "tf" for ``ptq``, ``tf_enhanced`` or ``percentile``); export AIMET
encodings, apply user overrides, and turn model plus encodings into a QDQ ONNX
with ``aimet_onnx.encodings_to_onnx_qdq``. Every step's time goes in the report.

aimet-onnx, onnx and onnxruntime are imported inside the methods so that the
CLI can import this plugin without loading the ML stack.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import zoocompat
from zoocompat.api import QuantizeResult
from zoocompat.api.encodings import apply_overrides, count_encodings, iter_encodings, load_encodings
from zoocompat.api.errors import CellError

# precision -> (param bitwidth, activation bitwidth): the built-ins by name, and any other registered integer
# precision spelled w<param bits>a<activation bits> with bitwidths AIMET and its QDQ export take (a plugin's w4a16)
_BITWIDTHS = {"w8a8": (8, 8), "w8a16": (8, 16), "w4a8": (4, 8)}
_WEIGHTS_ACTIVATIONS = re.compile(r"w(4|8|16)a(8|16)")


def bitwidths(precision: str) -> tuple[int, int] | None:
    """``(param bitwidth, activation bitwidth)`` of a precision name (``w4a16`` -> ``(4, 16)``), or ``None``."""
    if precision in _BITWIDTHS:
        return _BITWIDTHS[precision]
    match = _WEIGHTS_ACTIVATIONS.fullmatch(precision)
    return (int(match[1]), int(match[2])) if match else None


# calibration scheme name -> aimet-onnx quant scheme ("ptq" is plain min-max, AIMET's "tf")
_SCHEMES = {"ptq": "tf", "tf_enhanced": "tf_enhanced", "percentile": "percentile"}
# passes around calibration, in the order they run
_PASSES = ("cle", "adaround", "seqmse")
TECHNIQUES = (*_SCHEMES, *_PASSES)
# names users may expect that aimet-onnx 2.42 has no implementation of
_NOT_OFFERED = {
    "mse": "aimet-onnx 2.42 has no MSE calibration scheme (its schemes are min-max, tf_enhanced and percentile; "
    "seqmse picks weight encodings by output MSE)",
    "entropy": "aimet-onnx 2.42 has no entropy (KL) calibration scheme (its schemes are min-max, tf_enhanced "
    "and percentile)",
    "qat": "quantization-aware training needs the framework model; the aimet_onnx quantizer works on ONNX graphs "
    "and does not train",
}
ADAROUND_ITERATIONS = 300
SEQMSE_CANDIDATES = 20
#: Biases are exported int32-quantized at scale input_scale x weight_scale (AIMET's ``export_int32_bias``), as
#: QNN's own quantizer writes them, then kept int32 only in the ops of :data:`INT32_BIAS_OPS`.
BIAS = "int32"
#: The ops QNN takes an int32 bias in (inside their node unit); other ops' biases go back to float. Measured on
#: vit_mnist htp w8a16 (docs/known-failures.md): LayerNorm biases left float (AIMET's default below encodings
#: 2.0.0) take top-1 from 0.97 to 0.21 whether the Gemm biases are int32 or float; int32 LayerNorm biases
#: keep 0.96-0.97 either way.
INT32_BIAS_OPS = ("Conv", "ConvTranspose", "Gemm", "LayerNormalization")
QDQ_NAME = "model_qdq.onnx"
ENCODINGS_NAME = "model.encodings"


def _config_file(per_channel: bool) -> str:
    """aimet-onnx config: alias "default" is per-channel for Conv/Gemm/MatMul weights; else the per-tensor file."""
    if per_channel:
        return "default"
    from aimet_onnx.common.quantsim_config import quantsim_config

    return str(Path(quantsim_config.__file__).parent / "default_config.json")


@dataclass
class _Plan:
    """What one quantize call does."""

    scheme: str
    passes: tuple[str, ...]
    param_bw: int
    act_bw: int
    per_channel: bool
    overrides: dict[str, Any] | None
    override_source: str
    fp32_tensors: set[str]


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


def _keep_triton_out() -> bool:
    """Stop torch from importing triton in a process that has loaded TensorFlow; True when it did.

    AdaRound and SeqMSE build torch optimizers, and torch then probes for triton
    (``import triton``). With TensorFlow already loaded (a Keras model converted
    in the same process or xdist worker), that import dies with a segmentation
    fault (both bundle LLVM). On CPU triton is never used, so an import that
    fails with ImportError is harmless: torch treats triton as absent.
    """
    if "tensorflow" in sys.modules and "triton" not in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]
        return True
    return False


def _drop_stale_typed_data(model: Any) -> int:
    """Clear ``float_data`` where an initializer also has ``raw_data``; return how many were fixed.

    aimet-onnx 2.42's CLE writes the scaled weights into ``raw_data`` without
    clearing a ``float_data`` field the original tensor had (seen on PP-OCR's SE
    blocks), which ``onnx.checker`` rejects ("should contain one and only one
    value field"). ``raw_data`` holds the equalized values. AdaRound's export does the
    same on the same tensors (ppocr_textline_cls, after 459 s of AdaRound).
    """
    fixed = 0
    for init in model.graph.initializer:
        if init.raw_data and len(init.float_data):
            init.ClearField("float_data")
            fixed += 1
    return fixed


def write_qdq(model_path: Path, encodings: dict[str, Any], out: Path) -> dict[str, Any]:
    """The one encodings -> QDQ ONNX step every AIMET quantizer ends with.

    ``aimet_onnx.encodings_to_onnx_qdq`` on the float model at ``model_path``, stale
    typed tensor data cleared (aimet-onnx's CLE and AdaRound write ``raw_data`` beside
    an old ``float_data``), ``onnx.checker``, saved to ``out``. Returns the QDQ node
    count and opset, and how many stale tensors were fixed when there were any.
    """
    import onnx
    from aimet_onnx import encodings_to_onnx_qdq

    qdq = encodings_to_onnx_qdq(str(model_path), encodings)
    stale = _drop_stale_typed_data(qdq)
    floated = _float_biases_outside(qdq, INT32_BIAS_OPS)
    onnx.checker.check_model(qdq)
    onnx.save(qdq, str(out))
    ops = [node.op_type for node in qdq.graph.node]
    written: dict[str, Any] = {
        "qdq_nodes": ops.count("QuantizeLinear") + ops.count("DequantizeLinear"),
        "qdq_opset": next(op.version for op in qdq.opset_import if op.domain in ("", "ai.onnx")),
    }
    if stale:
        written["stale_tensors_fixed_in_qdq"] = stale
    if floated:
        written["int32_biases_kept_float"] = floated
    return written


def _float_biases_outside(model: Any, ops: tuple[str, ...]) -> list[str]:
    """Turn each int32 ``DequantizeLinear`` of a constant that feeds an op outside ``ops`` back into the float
    constant it stands for (in place); return the tensors so restored.

    QNN takes an int32 bias only inside a Conv / Gemm / LayerNorm node unit. An int32 bias of another op (an
    LSTM's ``B``) becomes a standalone Dequantize, which the HTP rejects (error 3110): silero_vad's LSTM fell
    back to the CPU at w8a8, and the dsp contract refused the model.
    """
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    constants = {init.name: init for init in graph.initializer}
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    restored, kept = [], []
    for node in graph.node:
        source = constants.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        users = consumers.get(node.output[0], [])
        if source is None or source.data_type != TensorProto.INT32 or all(op in ops for op in users):
            kept.append(node)
            continue
        value = numpy_helper.to_array(source).astype(np.float64)
        scale = numpy_helper.to_array(constants[node.input[1]]).astype(np.float64)
        zero = numpy_helper.to_array(constants[node.input[2]]).astype(np.float64) if len(node.input) > 2 else 0.0
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if np.ndim(scale) == 1 and np.size(scale) > 1:  # per-axis: along ``axis``
            shape = [1] * value.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), np.reshape(zero, shape) if np.ndim(zero) else zero
        graph.initializer.append(numpy_helper.from_array(((value - zero) * scale).astype(np.float32), node.output[0]))
        restored.append(node.output[0])
    if restored:
        del graph.node[:]
        graph.node.extend(kept)
        read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        live = [init for init in graph.initializer if init.name in read]
        del graph.initializer[:]
        graph.initializer.extend(live)
    return restored


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


def parse_technique(technique: str, where: str) -> tuple[str, tuple[str, ...]]:
    """Split ``technique`` (``+``-joined parts of :data:`TECHNIQUES`) into a calibration scheme and passes.

    ``"cle+adaround"`` -> ``("ptq", ("cle", "adaround"))``; ``"tf_enhanced"`` ->
    ``("tf_enhanced", ())``. Raises ``CellError("quantize_error")`` naming the
    allowed techniques for an unknown part or a combination that makes no sense.
    """
    parts = [p.strip() for p in str(technique).split("+")]
    allowed = f"allowed: {', '.join(TECHNIQUES)} (join with '+', e.g. cle+adaround)"
    for part in parts:
        if part in _NOT_OFFERED:
            raise CellError("quantize_error", f"{where}: technique {part!r}: {_NOT_OFFERED[part]}; {allowed}")
        if part not in TECHNIQUES:
            raise CellError("quantize_error", f"{where}: unknown technique {part!r}; {allowed}")
    if len(set(parts)) != len(parts):
        raise CellError("quantize_error", f"{where}: technique {technique!r} repeats a part; {allowed}")
    schemes = [p for p in parts if p in _SCHEMES]
    passes = tuple(p for p in _PASSES if p in parts)  # always in pipeline order
    if len(schemes) > 1:
        raise CellError("quantize_error", f"{where}: technique {technique!r} names two calibration schemes {schemes}")
    if "adaround" in passes and "seqmse" in passes:
        raise CellError(
            "quantize_error", f"{where}: adaround and seqmse both set the weight encodings; choose one of them"
        )
    return (schemes[0] if schemes else "ptq"), passes


def graph_tensor_names(model: Any) -> set[str]:
    """Every tensor name of an ONNX graph: inputs, initializers and node outputs."""
    names = {v.name for v in model.graph.input} | {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        names.update(n for n in node.output if n)
        names.update(n for n in node.input if n)
    return names


class AimetOnnxQuantizer:
    """aimet-onnx quantizer: BN fold or CLE, a calibration scheme, optional AdaRound / SeqMSE, QDQ ONNX."""

    name = "aimet_onnx"
    modes = ("ptq", "auto")
    precisions = ("w8a8", "w8a16", "w4a8")
    techniques = TECHNIQUES
    # AdaRound steps per layer: AIMET recommends 10k; a few hundred keep small models within a minute or two.
    adaround_iterations = ADAROUND_ITERATIONS
    seqmse_candidates = SEQMSE_CANDIDATES

    def settings(self) -> dict[str, Any]:
        """What shapes the result besides the model, data, precision and technique (part of the cache key)."""
        return {"bias": BIAS, "int32_bias_ops": list(INT32_BIAS_OPS), "shared_initializers": "duplicated"}

    def quantize(
        self,
        onnx_path: Path,
        calibration: list[dict[str, np.ndarray]],
        precision: str,
        technique: str,
        out_dir: Path,
        *,
        per_channel: bool = True,
        encodings_override: Path | None = None,
    ) -> QuantizeResult:
        """Quantize ``onnx_path`` and write ``model_qdq.onnx`` and ``model.encodings`` into ``out_dir``.

        ``technique`` is one of :data:`TECHNIQUES` or a ``+``-joined combination
        (``cle+adaround``). ``calibration`` holds single-sample input dicts (batch
        dim 1). ``per_channel`` quantizes Conv/Gemm/MatMul weights per output
        channel (AIMET's default config), else per tensor. ``encodings_override``
        is an AIMET encodings file (0.6.1 or 1.0.0) whose entries replace the
        computed ones for the tensors it names. The input file is never
        modified. Any failure raises ``CellError("quantize_error")``.
        """
        start = time.perf_counter()
        onnx_path, out_dir = Path(onnx_path), Path(out_dir)
        where = f"aimet_onnx {precision}/{technique} on {onnx_path.name}"
        bits = bitwidths(precision)
        if bits is None:
            raise CellError(
                "quantize_error",
                f"{where}: unknown precision; expected one of {', '.join(self.precisions)} or w<4|8|16>a<8|16>",
            )
        scheme, passes = parse_technique(technique, where)
        param_bw, act_bw = bits
        overrides = None
        if encodings_override is not None:
            try:
                overrides = load_encodings(encodings_override)
            except CellError as exc:
                raise CellError("quantize_error", f"{where}: encodings override: {exc.message}") from exc

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
        fp32_tensors = graph_tensor_names(model)
        unnamed = [node for node in model.graph.node if not node.name]
        for index, node in enumerate(unnamed):  # AIMET's BN fold and CLE silently skip nodes without names
            node.name = f"zoocompat_{node.op_type}_{index}"
        if BIAS == "int32":  # an int32 bias is scaled by its own layer's input and weight scales: one user each
            from aimet_onnx.utils import duplicate_shared_initializers

            duplicate_shared_initializers(model.graph)  # a folded TFLite model shares one bias among convs

        out_dir.mkdir(parents=True, exist_ok=True)
        qdq_path, enc_path = out_dir / QDQ_NAME, out_dir / ENCODINGS_NAME
        for stale in (qdq_path, enc_path):
            stale.unlink(missing_ok=True)
        before = set(out_dir.iterdir())
        plan = _Plan(scheme, passes, param_bw, act_bw, per_channel, overrides, str(encodings_override), fp32_tensors)
        try:
            with tempfile.TemporaryDirectory(prefix="zoocompat-aimet-") as tmp, _quiet_aimet():
                report = self._run_aimet(model, calibration, plan, Path(tmp), where)
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
            "quant_scheme": _SCHEMES[scheme],
            "weights": "per-channel" if per_channel else "per-tensor",
            "config_file": _config_file(per_channel),
            **report,
            "nodes_named": len(unnamed),
            "calibration_samples": len(calibration),
            "seconds": round(time.perf_counter() - start, 3),
        }
        return QuantizeResult(qdq_onnx=qdq_path, encodings=enc_path, report=report)

    def _run_aimet(
        self, model: Any, calibration: list[dict[str, np.ndarray]], plan: _Plan, tmp: Path, where: str
    ) -> dict[str, Any]:
        """Fold BN (or CLE), build the sim, run the passes, calibrate, export and convert to QDQ in ``tmp``."""
        import onnx
        from aimet_onnx import QuantizationSimModel, apply_adaround, apply_seq_mse
        from aimet_onnx.batch_norm_fold import fold_all_batch_norms_to_weight
        from aimet_onnx.cross_layer_equalization import equalize_model

        steps: list[dict[str, Any]] = []
        bn_before = sum(node.op_type == "BatchNormalization" for node in model.graph.node)

        def timed(step: str, action: Any, **info: Any) -> Any:
            began = time.perf_counter()
            value = action()
            steps.append({"step": step, **info, "seconds": round(time.perf_counter() - began, 3)})
            return value

        stage = "folding BatchNorm"
        try:
            if "cle" in plan.passes:
                stage = "cross-layer equalization"
                # equalize_model folds BN itself (it needs the BN statistics for high-bias fold), then scales
                # consecutive Conv/Gemm pairs and folds high biases; edits `model` in place.
                timed(
                    "cle",
                    lambda: equalize_model(model),
                    did="BN fold + cross-layer scaling + high-bias fold (aimet_onnx equalize_model)",
                )
                steps[-1]["stale_tensors_fixed"] = _drop_stale_typed_data(model)
            else:
                timed("bn_fold", lambda: fold_all_batch_norms_to_weight(model), did="BatchNorm folded into Conv/Gemm")
            left_bn = sum(node.op_type == "BatchNormalization" for node in model.graph.node)
            steps[-1]["bn_folded"] = bn_before - left_bn
            stage = "building the QuantizationSimModel"
            sim = timed(
                "quantsim",
                lambda: QuantizationSimModel(
                    model,
                    param_type=f"int{plan.param_bw}",
                    activation_type=f"int{plan.act_bw}",
                    quant_scheme=_SCHEMES[plan.scheme],
                    config_file=_config_file(plan.per_channel),
                    path=str(tmp / "sim"),
                ),
                did=f"int{plan.param_bw} weights ({'per-channel' if plan.per_channel else 'per-tensor'}), "
                f"int{plan.act_bw} activations",
            )
            if {"adaround", "seqmse"} & set(plan.passes) and _keep_triton_out():
                steps[-1]["triton_blocked"] = "TensorFlow is loaded in this process; see _keep_triton_out"
            if "adaround" in plan.passes:
                stage = "running AdaRound"
                timed(
                    "adaround",
                    lambda: apply_adaround(sim, calibration, num_iterations=self.adaround_iterations),
                    did="learned weight rounding per layer; weight encodings frozen",
                    iterations=self.adaround_iterations,
                )
            if "seqmse" in plan.passes:
                stage = "running sequential MSE"
                timed(
                    "seqmse",
                    lambda: apply_seq_mse(sim, calibration, num_candidates=self.seqmse_candidates),
                    did="weight encodings chosen per layer by output MSE; weight encodings frozen",
                    candidates=self.seqmse_candidates,
                )
            stage = "computing encodings on the calibration samples"
            timed(
                "calibrate",
                lambda: sim.compute_encodings(calibration),
                did=f"{_SCHEMES[plan.scheme]} statistics",
                samples=len(calibration),
            )
            stage = "exporting the encodings"
            (tmp / "export").mkdir()
            sim.export(str(tmp / "export"), "model", export_int32_bias=BIAS == "int32")
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
        extra: dict[str, Any] = {}
        if "seqmse" in plan.passes:
            extra["seqmse"] = self._seqmse_effect(model, calibration, plan, encodings, tmp)
        if plan.overrides is not None:
            graph = onnx.load(str(tmp / "export" / "model.onnx"))
            present = graph_tensor_names(graph)
            encodings, replaced = apply_overrides(
                encodings, plan.overrides, present, plan.override_source, plan.fp32_tensors - present
            )
            exported.write_text(json.dumps(encodings, indent=1))
            extra["overridden_tensors"] = replaced
        counts = count_encodings(encodings)

        try:
            written = write_qdq(tmp / "export" / "model.onnx", encodings, tmp / QDQ_NAME)
        except Exception as exc:
            raise CellError(
                "quantize_error",
                f"{where}: aimet-onnx failed while converting model and encodings to a checked QDQ ONNX: "
                f"{type(exc).__name__}: {exc}",
            ) from exc
        shutil.copyfile(exported, tmp / ENCODINGS_NAME)

        return {
            "encodings_format": counts["version"],
            "bn_folded": next((s["bn_folded"] for s in steps if "bn_folded" in s), 0),
            "bn_unfolded": left_bn,
            "param_encodings": counts["param"],
            "activation_encodings": counts["activation"],
            **written,
            "steps": steps,
            **extra,
        }

    def _seqmse_effect(
        self, model: Any, calibration: list[dict[str, np.ndarray]], plan: _Plan, encodings: dict, tmp: Path
    ) -> dict[str, Any]:
        """How many weight encodings SeqMSE changed against plain min-max ones, and a note for > 4-bit weights."""
        from aimet_onnx import QuantizationSimModel

        plain = QuantizationSimModel(
            model,
            param_type=f"int{plan.param_bw}",
            activation_type=f"int{plan.act_bw}",
            quant_scheme=_SCHEMES[plan.scheme],
            config_file=_config_file(plan.per_channel),
            path=str(tmp / "sim_plain"),
        )
        plain.compute_encodings(calibration[:1])  # weight encodings do not depend on the data
        (tmp / "plain").mkdir()
        plain.export(str(tmp / "plain"), "model", export_model=False, export_int32_bias=BIAS == "int32")
        reference = load_encodings(tmp / "plain" / "model.encodings")

        def params(enc: dict) -> dict[str, Any]:  # weights: the int32 biases follow from them
            return {
                name: entry.get("scale")
                for kind, name, entry in iter_encodings(enc)
                if kind == "param" and entry.get("bw", entry.get("bitwidth")) != 32
            }

        ours, theirs = params(encodings), params(reference)
        changed = sorted(n for n in ours if n in theirs and not np.allclose(ours[n], theirs[n], rtol=1e-6))
        effect: dict[str, Any] = {"weight_encodings_changed": len(changed), "weight_encodings": len(ours)}
        if plan.param_bw > 4:
            effect["note"] = f"AIMET recommends SeqMSE for <= 4-bit weights; at {plan.param_bw}-bit it changed " + (
                f"{len(changed)} of {len(ours)} weight encodings against min-max" if changed else "none of them"
            )
        return effect


@zoocompat.hookimpl
def zoocompat_quantizers() -> list[AimetOnnxQuantizer]:
    """Register the aimet-onnx quantizer."""
    return [AimetOnnxQuantizer()]
