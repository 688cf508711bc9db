"""``gpu``: fp16 on a GPU, or the fp16 numerics reference where there is none.

Qualcomm's QNN GPU backend (``libQnnGpu.so``, shipped in onnxruntime-qnn)
runs on an Adreno GPU only; it cannot load on an x86-64 host. So here:

- with onnxruntime's CUDA execution provider and an NVIDIA device, the FP32
  ONNX is converted to fp16 (``onnxruntime.transformers.float16``, inputs and
  outputs kept float32) and runs on the GPU;
- otherwise the cell runs the *fp16 numerics reference* on the CPU EP: the
  FP32 graph with every weight, input and intermediate float tensor rounded to
  fp16 (a ``Cast`` to float16 and back after each), computed in fp32. It shows
  what fp16 storage does to a model's accuracy, not GPU speed, and every such
  cell says so: its placement target and ``backend_info.runtime`` read
  ``gpu (fp16 reference, no GPU)``.

The GPU is not an SDK-release axis here (neither path loads a QNN library).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from zoocompat_plugins.backends.ort_session import RunnerModel

import zoocompat
from zoocompat.api import Batch, Placement, RunResult
from zoocompat.api.registry import distribution_version
from zoocompat.model.onnx_fold import ort_basic_fold

REFERENCE_LABEL = "gpu (fp16 reference, no GPU)"
ADRENO_NOTE = "QNN GPU (libQnnGpu.so) needs an Adreno GPU (Snapdragon device); not used on this host"
_FLOAT = 1  # onnx.TensorProto.FLOAT
_FLOAT16 = 10  # onnx.TensorProto.FLOAT16


def cuda_present() -> bool:
    """Whether onnxruntime's CUDA EP (onnxruntime-gpu) and an NVIDIA device are both here."""
    return distribution_version("onnxruntime-gpu") is not None and os.path.exists("/dev/nvidiactl")


FP16_MAX = float(np.finfo(np.float16).max)


def _deployment_folded(src: Path, dst: Path):
    """``src`` after the folding every deployment converter does before storing fp16.

    Constant subgraphs are folded and BatchNorm is fused into the preceding Conv
    (:func:`zoocompat.model.onnx_fold.ort_basic_fold`), so statistics such as a
    running variance of 1e8, which never exist as fp16 tensors on a device, are
    not rounded to infinity here either.
    """
    import onnx

    folded = dst.with_name(dst.stem + ".folded.onnx")
    ort_basic_fold(src, folded)
    try:
        return onnx.load(str(folded))
    finally:
        folded.unlink(missing_ok=True)


def fp16_reference_model(src: Path, dst: Path) -> int:
    """Write ``dst``: ``src`` with fp16 storage emulated in fp32; return the original node count.

    Float initializers are rounded to fp16; each float graph input and each
    float node output passes through ``Cast(float16) -> Cast(float)``, which
    onnxruntime keeps (it does not fold a lossy cast pair). Subgraphs of
    control-flow nodes are left as they are.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = _deployment_folded(src, dst)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.output)}
    types.update({v.name: v.type.tensor_type.elem_type for v in inferred.graph.input})
    graph = model.graph
    for init in graph.initializer:
        if init.data_type == _FLOAT:
            values = np.clip(numpy_helper.to_array(init), -FP16_MAX, FP16_MAX)  # saturate, as fp16 converters do
            rounded = values.astype(np.float16).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(rounded, init.name))
    original = list(graph.node)
    initializers = {i.name for i in graph.initializer}

    def rounding(name: str) -> tuple[list, str]:
        half, back = f"{name}__fp16", f"{name}__fp16_rounded"
        return [
            helper.make_node("Cast", [name], [half], to=_FLOAT16, name=f"{name}__to_fp16"),
            helper.make_node("Cast", [half], [back], to=_FLOAT, name=f"{name}__from_fp16"),
        ], back

    nodes: list = []
    renamed: dict[str, str] = {}
    for graph_input in graph.input:
        if graph_input.name not in initializers and types.get(graph_input.name) == _FLOAT:
            casts, renamed[graph_input.name] = rounding(graph_input.name)
            nodes += casts
    outputs = {o.name for o in graph.output}
    for node in original:
        for i, name in enumerate(node.input):
            node.input[i] = renamed.get(name, name)
        nodes.append(node)
        for name in node.output:
            if name and types.get(name) == _FLOAT and name not in outputs:
                casts, renamed[name] = rounding(name)
                nodes += casts
    for output in graph.output:  # round the graph outputs too, keeping their names
        if types.get(output.name) == _FLOAT:
            producer = next(n for n in nodes if output.name in n.output)
            inner = f"{output.name}__fp32"
            producer.output[list(producer.output).index(output.name)] = inner
            for n in nodes:
                for i, name in enumerate(n.input):
                    if name == output.name:
                        n.input[i] = inner
            nodes += [
                helper.make_node("Cast", [inner], [f"{inner}__fp16"], to=_FLOAT16, name=f"{inner}__to_fp16"),
                helper.make_node("Cast", [f"{inner}__fp16"], [output.name], to=_FLOAT, name=f"{inner}__from_fp16"),
            ]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return len(onnx.load(str(src), load_external_data=False).graph.node)


def fp16_model(src: Path, dst: Path) -> int:
    """Write ``dst``: ``src`` converted to fp16 with float32 inputs and outputs; return its node count."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return len(model.graph.node)


class _ReferenceRun:
    """Runs the fp16 reference model on the CPU EP and reports it as the whole graph on the label."""

    def __init__(self, runner: RunnerModel, nodes: int) -> None:
        self.runner = runner
        self.nodes = nodes

    def run(self, inputs: Batch) -> RunResult:
        result = self.runner.run(inputs)
        result.placement = Placement(REFERENCE_LABEL, self.nodes, self.nodes)
        result.info["reference"] = "fp16 storage emulated on the CPU EP (no GPU)"
        return result


class GpuBackend:
    """fp16 on onnxruntime's CUDA EP, or the fp16 numerics reference on the CPU EP."""

    name = "gpu"
    order = 20
    cost = {"*": 0.05}  # the fp16 reference on the CPU (or a real GPU): cheap next to the HTP emulator
    precisions = ("fp16",)
    #: modules besides this package whose code shapes the outputs (zoocompat/reuse.py keys on them)
    code_modules = ("zoocompat.model.onnx_fold",)

    def available(self, sdk: str | None) -> str | None:
        """Always runs: on a GPU when there is one, else as the fp16 reference."""
        if distribution_version("onnxruntime") is None and distribution_version("onnxruntime-gpu") is None:
            return "onnxruntime is not installed (pip install -e .[stack])"
        return None

    def describe(self, sdk: str | None) -> dict[str, Any]:
        """Which path the cells take, and why QNN GPU is not one of them here."""
        if cuda_present():
            return {
                "runtime": "onnxruntime CUDAExecutionProvider (fp16)",
                "onnxruntime_gpu": distribution_version("onnxruntime-gpu"),
                "qnn_gpu": ADRENO_NOTE,
            }
        return {
            "runtime": REFERENCE_LABEL,
            "reference": "fp16 storage emulated on the CPU EP: weights, inputs and activations rounded to fp16",
            "onnxruntime": distribution_version("onnxruntime"),
            "qnn_gpu": ADRENO_NOTE,
        }

    def compile(self, onnx_path: Path, precision: str, sdk: str | None, workdir: Path):
        """Convert the FP32 ONNX for fp16 and prepare its runner."""
        workdir.mkdir(parents=True, exist_ok=True)
        if cuda_present():
            fp16 = workdir / "model_fp16.onnx"
            fp16_model(Path(onnx_path), fp16)
            return RunnerModel(fp16, ep="cuda", target=self.name, workdir=workdir)
        reference = workdir / "model_fp16_reference.onnx"
        nodes = fp16_reference_model(Path(onnx_path), reference)
        return _ReferenceRun(RunnerModel(reference, ep="cpu", target=REFERENCE_LABEL, workdir=workdir), nodes)


@zoocompat.hookimpl
def zoocompat_backends() -> list[GpuBackend]:
    """Register the GPU backend."""
    return [GpuBackend()]
