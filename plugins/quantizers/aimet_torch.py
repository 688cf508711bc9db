"""Quantization-aware training with aimet-torch: QuantizationSimModel, fine-tuned with a torch optimizer.

The model: a PyTorch card's own ``nn.Module`` (the frontend's ``load``); any
other card's canonical ONNX through ``onnx2torch``. Then, once for every model:

1. ``aimet_torch.model_preparer.prepare_model`` (torch.fx): functionals such
   as ``x + y`` become modules that QuantSim can quantize. timm's custom
   layers (``timm.layers.linear.Linear`` and the like) are traced through,
   which is what makes QuantSim accept them (without it: ``UnknownModuleError``).
   timm's fused attention (``fused_attn``) is switched to its unfused path first:
   aimet-torch has no quantized scaled-dot-product-attention module.
2. BatchNorm folded into the preceding Conv/Linear (as the ONNX PTQ path does,
   and as the HTP wants: an unfolded BN leaves per-channel DQ nodes the QNN EP
   rejects).
3. ``QuantizationSimModel`` at the precision's bitwidths (AIMET's default
   config: per-channel weights, min-max "tf" scheme), encodings computed on the
   card's calibration split.
4. Fine-tuning of the simulated model: Adam, ``lr``, ``epochs`` over
   ``samples`` inputs of the dataset's ``train`` split (the card's calibration
   split when the dataset has none), loss = distillation from the FP32 model
   (mean squared error of every output, each scaled by the FP32 output's
   variance). Distillation needs no labels, so detection maps, CTC sequences
   and classifiers train the same way, and it never sees the evaluation split.
5. ``sim.export``: the fine-tuned float ONNX and the AIMET encodings, then the
   project's one encodings -> QDQ function (``aimet_onnx.encodings_to_onnx_qdq``)
   makes the QDQ model every backend runs.

Any failure, e.g. an onnx2torch module AIMET has no quantized definition
for, is ``CellError("quantize_error")`` naming the stage and the module types:
a model QAT cannot handle fails its cell, never silently skips it.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from zoocompat_plugins.quantizers.aimet_onnx import write_qdq

import zoocompat
from zoocompat.api import QuantizeResult, TrainingJob
from zoocompat.api.encodings import count_encodings, load_encodings
from zoocompat.api.errors import CellError

_BITWIDTHS = {"w8a8": (8, 8), "w8a16": (8, 16), "w4a8": (4, 8)}
QDQ_NAME = "model_qdq.onnx"
ENCODINGS_NAME = "model.encodings"
OPSET = 17


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """AIMET logs every prepared node and quantizer at INFO; keep warnings and errors only."""
    import logging

    loggers = [logging.getLogger(name) for name in ("AimetLogger", "ModelPreparer", "Quant", "Utils", "ConnectedGraph")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _outputs(value: Any) -> list[Any]:
    return list(value) if isinstance(value, tuple | list) else [value]


def _batch_ok(model: Any, probe: Any) -> bool:
    """Whether ``model`` on the batch ``probe`` gives what it gives one sample at a time (a canonical ONNX
    keeps static batch-1 shapes; through onnx2torch such a model takes one sample at a time).
    """
    import torch

    try:
        with torch.no_grad():
            together, alone = _call(model, probe, True), _call(model, probe, False)
    except Exception:
        return False
    return len(together) == len(alone) and all(
        a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(together, alone, strict=True)
    )


def _free_batch(model: Any) -> int:
    """Let the batch through ``model``'s Reshapes: a constant target shape that starts with the static batch 1
    gets 0 there ("copy this dim from the input"). Edits ``model`` in place; returns how many changed.
    """
    from onnx import numpy_helper

    constants = {init.name: init for init in model.graph.initializer}
    changed = 0
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in constants:
            continue
        if any(a.name == "allowzero" and a.i == 1 for a in node.attribute):
            continue
        shape = numpy_helper.to_array(constants[node.input[1]]).copy()
        if shape.ndim == 1 and len(shape) > 1 and shape[0] == 1:
            shape[0] = 0
            constants[node.input[1]].CopyFrom(numpy_helper.from_array(shape, node.input[1]))
            changed += 1
    return changed


class Samples:
    """A card's inputs for torch: one tensor per input, sample axis first (the batch convention of
    :mod:`zoocompat.api.samples`: a batched input's tensor is ``[N, *shape[1:]]``, any other ``[N, *shape]``).

    Indexing (an int, a slice or an index tensor) takes samples of every input alike.
    """

    def __init__(self, tensors: tuple[Any, ...], batched: tuple[bool, ...]) -> None:
        self.tensors, self.batched = tensors, batched

    @classmethod
    def of(cls, card: Any, batches: list[dict[str, np.ndarray]] | dict[str, np.ndarray]) -> Samples:
        """From a batch dict, or from single-sample feeds (one model call each, as calibration is given)."""
        import torch

        flags = tuple(spec.batched for spec in card.inputs)
        if isinstance(batches, dict):
            arrays = [batches[spec.name] for spec in card.inputs]
        else:
            stack = {True: np.concatenate, False: np.stack}  # along a batch dim of 1, or a new sample axis
            arrays = [stack[spec.batched]([b[spec.name] for b in batches]) for spec in card.inputs]
        return cls(tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays), flags)

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, index: Any) -> Samples:
        return Samples(tuple(t[index] for t in self.tensors), self.batched)

    def call(self, index: int) -> tuple[Any, ...]:
        """Sample ``index`` as one model call's arguments."""
        return tuple(t[index : index + 1] if b else t[index] for t, b in zip(self.tensors, self.batched, strict=True))

    def zeros(self) -> tuple[Any, ...]:
        """One call's arguments of zeros (a dummy input for tracing and export)."""
        return tuple(x.zero_() for x in (arg.clone() for arg in self.call(0)))


def _call(model: Any, inputs: Samples, batched: bool) -> list[Any]:
    """``model``'s outputs on ``inputs``: one call, or one call per sample (concatenated along a batch dim of 1,
    stacked otherwise).
    """
    import torch

    if batched:
        return _outputs(model(*inputs.tensors))
    per_sample = [_outputs(model(*inputs.call(i))) for i in range(len(inputs))]
    return [
        torch.cat(parts) if all(p.dim() >= 1 and p.shape[0] == 1 for p in parts) else torch.stack(parts)
        for parts in zip(*per_sample, strict=True)
    ]


class AimetTorchQatQuantizer:
    """aimet-torch QuantizationSimModel + fine-tuning (QAT) for every frontend, through torch."""

    name = "aimet_torch"
    modes = ("qat",)
    precisions = tuple(_BITWIDTHS)
    techniques = ("qat",)
    #: fine-tuning budget: AIMET's examples train for epochs on full datasets; this is sized for 2 CPU cores
    samples = 1024
    epochs = 1
    batch_size = 32
    lr = 1e-5

    def settings(self) -> dict[str, Any]:
        """What shapes the result besides the model, data and precision (part of the quantize cache key)."""
        return {"samples": self.samples, "epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr}

    def train_quantize(self, job: TrainingJob, precision: str, out_dir: Path) -> QuantizeResult:
        """QAT ``job``'s model at ``precision``; write ``model_qdq.onnx`` and ``model.encodings`` in ``out_dir``."""
        start = time.perf_counter()
        card = job.card
        where = f"aimet_torch {precision}/qat on {card.name}"
        if precision not in _BITWIDTHS:
            raise CellError("quantize_error", f"{where}: unknown precision; expected one of {self.precisions}")
        try:
            import aimet_torch
            import torch
        except Exception as exc:
            raise CellError(
                "quantize_error", f"{where}: cannot import aimet-torch/torch ({exc}); install zoocompat[stack]"
            ) from exc
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        steps: list[dict[str, Any]] = []

        def timed(step: str, action: Any, **info: Any) -> Any:
            began = time.perf_counter()
            value = action()
            steps.append({"step": step, **info, "seconds": round(time.perf_counter() - began, 3)})
            return value

        torch.manual_seed(0)
        untraced: str | None = None  # why torch.fx could not trace the model, when it could not
        stage = "building the torch model" + ("" if job.framework_model is not None else " (onnx2torch)")
        try:
            with _quiet(), tempfile.TemporaryDirectory(prefix="zoocompat-qat-") as tmp:
                calibration = Samples.of(card, job.calibration)
                candidates = timed(
                    "torch_model", lambda: self._torch_models(job, calibration[:2]), source=self._source(job)
                )
                stage = "preparing the model (aimet_torch.model_preparer)"
                for teacher, batched in candidates:  # noqa: B007  (the batch-free variant first, if it traces)
                    student, unfused, untraced = timed("prepare", lambda: self._prepare(teacher))  # noqa: B023
                    if untraced is None:
                        break
                steps[-1].update(batched=batched, attention_unfused=unfused)
                if untraced:
                    steps[-1]["not_traced"] = untraced
                stage = "folding BatchNorm"
                dummy = calibration.zeros()
                dummy = dummy[0] if len(dummy) == 1 else dummy  # one input: a tensor, as AIMET's examples pass it
                folded = timed("bn_fold", lambda: self._fold(student, dummy), did="BatchNorm folded into Conv/Linear")
                steps[-1]["bn_folded"] = folded
                stage = "building the QuantizationSimModel"
                param_bw, act_bw = _BITWIDTHS[precision]
                sim = timed(
                    "quantsim",
                    lambda: aimet_torch.QuantizationSimModel(
                        student, dummy, quant_scheme="tf", default_param_bw=param_bw, default_output_bw=act_bw
                    ),
                    did=f"int{param_bw} weights (per-channel), int{act_bw} activations",
                )
                stage = "computing encodings on the calibration samples"
                timed(
                    "calibrate",
                    lambda: sim.compute_encodings(lambda model, _: self._forward(model, calibration, batched), None),
                    did="min-max statistics",
                    samples=len(calibration),
                )
                stage = "fine-tuning the quantized model"
                inputs, split = self._training_inputs(job)
                loss = timed(
                    "train", lambda: self._train(sim.model, teacher, inputs, batched), **self.settings(), split=split
                )
                steps[-1]["final_loss"] = loss
                stage = "exporting the model and encodings"
                export = Path(tmp) / "export"
                export.mkdir()
                names = {
                    "input_names": [spec.name for spec in card.inputs],
                    "output_names": list(card.outputs),
                    "opset_version": OPSET,
                }
                timed("export", lambda: sim.export(str(export), "model", dummy, onnx_export_args=names))
                stage = "converting model and encodings to QDQ ONNX"
                report = timed("qdq", lambda: self._qdq(export, Path(tmp)))
                shutil.move(str(Path(tmp) / ENCODINGS_NAME), out_dir / ENCODINGS_NAME)
                shutil.move(str(Path(tmp) / QDQ_NAME), out_dir / QDQ_NAME)
        except CellError:
            raise
        except Exception as exc:
            message = " ".join(str(exc).split())
            after = f" (after torch.fx could not trace it: {untraced})" if untraced else ""
            raise CellError(
                "quantize_error",
                f"{where}: aimet-torch failed while {stage}{after}: {type(exc).__name__}: {message[:600]}",
            ) from exc
        return QuantizeResult(
            qdq_onnx=out_dir / QDQ_NAME,
            encodings=out_dir / ENCODINGS_NAME,
            report={
                "quantizer": self.name,
                "aimet_torch": aimet_torch.__version__,
                "technique": "qat",
                "precision": precision,
                "param_bitwidth": _BITWIDTHS[precision][0],
                "activation_bitwidth": _BITWIDTHS[precision][1],
                "quant_scheme": "tf",
                "weights": "per-channel",
                **report,
                "steps": steps,
                "calibration_samples": len(job.calibration),
                "seconds": round(time.perf_counter() - start, 3),
            },
        )

    # -- stages ----------------------------------------------------------------

    @staticmethod
    def _source(job: TrainingJob) -> str:
        if job.framework_model is not None:
            return f"the {job.card.frontend} model itself"
        return "the canonical ONNX through onnx2torch"

    @staticmethod
    def _torch_models(job: TrainingJob, probe: Any) -> list[tuple[Any, bool]]:
        """The FP32 torch model (eval mode) to try, each with whether it takes batches (checked on ``probe``).

        A PyTorch card: its own module. Otherwise the canonical ONNX through onnx2torch, first with the
        static batch-1 Reshapes freed (batched training, if its outputs match the per-sample ones), then
        as it is (one sample at a time), for when torch.fx cannot trace the freed one.
        """
        import torch

        if isinstance(job.framework_model, torch.nn.Module) and not isinstance(
            job.framework_model, torch.jit.ScriptModule
        ):  # a TorchScript model cannot be traced by torch.fx: it goes through its canonical ONNX like the rest
            model = copy.deepcopy(job.framework_model).eval()
            return [(model, _batch_ok(model, probe))]
        import onnx
        from onnx2torch import convert

        candidates = []
        relaxed = onnx.load(str(job.onnx))
        if _free_batch(relaxed):
            model = convert(relaxed).eval()
            if _batch_ok(model, probe):
                candidates.append((model, True))
        model = convert(onnx.load(str(job.onnx))).eval()
        return [*candidates, (model, _batch_ok(model, probe))]

    @staticmethod
    def _prepare(teacher: Any) -> tuple[Any, int, str | None]:
        """A traced copy AIMET can quantize, how many fused attention blocks were unfused in it, and ``None``;
        or, when torch.fx cannot trace it, the untraced copy and why.
        """
        from aimet_torch.model_preparer import prepare_model

        student = copy.deepcopy(teacher)  # prepare_model shares modules with its input: keep the teacher intact
        # timm's attention calls F.scaled_dot_product_attention when `fused_attn` is set; the preparer turns
        # that into a module aimet-torch 2.42 has no quantized definition for (UnknownModuleError), and one
        # fused op would hide the q.k^T, softmax and attn.v tensors the HTP quantizes. The unfused path
        # computes the same attention as plain matmul / softmax modules.
        unfused = 0
        for module in student.modules():
            if getattr(module, "fused_attn", False) is True:
                module.fused_attn = False
                unfused += 1
        try:
            return prepare_model(student), unfused, None
        except Exception as exc:  # e.g. onnx2torch modules with data-dependent control flow: torch.fx cannot trace
            # QuantSim on the modules as they are; it names any it cannot quantize
            return student, unfused, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"

    @staticmethod
    def _fold(model: Any, dummy: Any) -> int:
        import torch
        from aimet_torch.batch_norm_fold import fold_all_batch_norms

        if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            return 0  # nothing to fold (and AIMET's graph walk needs a float input to start from)
        if not isinstance(dummy, tuple):
            return len(fold_all_batch_norms(model, tuple(dummy.shape)))
        return len(fold_all_batch_norms(model, [tuple(arg.shape) for arg in dummy], dummy_input=dummy))

    @staticmethod
    def _forward(model: Any, inputs: Any, batched: bool, batch: int = 64) -> None:
        import torch

        with torch.no_grad():
            for start in range(0, len(inputs), batch):
                _call(model, inputs[start : start + batch], batched)

    def _training_inputs(self, job: TrainingJob) -> tuple[Any, str]:
        if job.training is not None and len(next(iter(job.training.values()))):
            return Samples.of(job.card, job.training)[: self.samples], "train"
        return Samples.of(job.card, job.calibration), "calibration (the dataset has no train split)"

    def _train(self, student: Any, teacher: Any, inputs: Any, batched: bool) -> float:
        """Distillation: the quantized student's outputs towards the FP32 teacher's, Adam, fixed seed."""
        import torch

        generator = torch.Generator().manual_seed(0)
        optimizer = torch.optim.Adam(student.parameters(), lr=self.lr)
        scales: list[Any] | None = None
        student.train()
        loss = torch.zeros(())
        for _ in range(self.epochs):
            for batch in torch.randperm(len(inputs), generator=generator).split(self.batch_size):
                with torch.no_grad():
                    targets = [t.float() for t in _call(teacher, inputs[batch], batched)]
                if scales is None:  # each output's variance on the first batch: outputs of any scale weigh alike
                    scales = [t.var().clamp_min(1e-8) for t in targets]
                outputs = _call(student, inputs[batch], batched)
                loss = sum(
                    torch.nn.functional.mse_loss(o.float(), t) / s
                    for o, t, s in zip(outputs, targets, scales, strict=True)
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        student.eval()
        return round(float(loss), 6)

    @staticmethod
    def _qdq(export: Path, tmp: Path) -> dict[str, Any]:
        encodings = load_encodings(export / "model.encodings")
        written = write_qdq(export / "model.onnx", encodings, tmp / QDQ_NAME)
        (tmp / ENCODINGS_NAME).write_text(json.dumps(encodings, indent=1))
        counts = count_encodings(encodings)
        return {
            "encodings_format": counts["version"],
            "param_encodings": counts["param"],
            "activation_encodings": counts["activation"],
            **written,
        }


@zoocompat.hookimpl
def zoocompat_quantizers() -> list[AimetTorchQatQuantizer]:
    """Register the aimet-torch QAT quantizer."""
    return [AimetTorchQatQuantizer()]
