"""An out-of-tree zoocompat plugin: the ``npu9000`` backend, the ``w4a16`` precision and the ``top2`` metric.

One module, one entry point (``[project.entry-points.zoocompat] npu9000 =
"zoocompat_npu9000"``), nothing of the core changed: what a third party writes.

- ``npu9000`` really runs the models: onnxruntime's CPU execution provider with
  its own settings (basic graph optimizations, one thread, sequential
  execution), in a child process through the public runner
  :class:`zoocompat.api.runner.Runner` (timeout and crash isolation). This
  module is also the runner script: the child (the suite's Python, ``-I``)
  loads it by path and calls :func:`run_request` (numpy, onnx, onnxruntime).
- ``w4a16`` is a quantized precision (4-bit weights, 16-bit activations) that
  the built-in ``aimet_onnx`` quantizer produces from its name and the CPU EP
  runs as a QDQ model (int4 / uint16 Q-DQ, opset 21).
- ``top2`` scores 1.0 where the label is among the two highest class scores.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

import zoocompat
from zoocompat.api import Placement, Precision, RunResult
from zoocompat.api.errors import CellError
from zoocompat.api.runner import Runner

NAME = "npu9000"
#: the backend's own onnxruntime settings, sent with every request and recorded with every cell
SETTINGS = {"graph_optimization_level": "ORT_ENABLE_BASIC", "intra_op_num_threads": 1, "execution_mode": "sequential"}


class Npu9000Model:
    """A model compiled for npu9000: its ONNX file, run in the runner process on :meth:`run`."""

    def __init__(self, onnx_path: Path, workdir: Path) -> None:
        self.onnx_path = onnx_path
        self.workdir = workdir
        self.timeout_s: float | None = None

    def run(self, inputs: dict[str, np.ndarray]) -> RunResult:
        """Run every sample (sample axis first) in a child process; outputs, placement and timings."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        inputs_path, outputs_path = self.workdir / "inputs.npz", self.workdir / "outputs.npz"
        np.savez(inputs_path, **inputs)
        runner = Runner(Path(__file__), label=NAME)
        if self.timeout_s is not None:
            runner.timeout_s = self.timeout_s
        request = {"model": str(self.onnx_path), "inputs": str(inputs_path), "outputs": str(outputs_path), **SETTINGS}
        finished = runner.run(request, self.workdir, subject=self.onnx_path.name)
        if not finished.ok:
            error = finished.report.get("error") or f"exit code {finished.code}"
            where = f"{NAME} could not run {self.onnx_path.name}"
            raise CellError("unsupported_op", f"{where}: {error}; log: {finished.log}")
        with np.load(outputs_path, allow_pickle=False) as data:
            outputs = {name: data[name] for name in data.files}
        nodes = int(finished.report["nodes"])
        return RunResult(
            outputs=outputs,
            placement=Placement(target=NAME, target_nodes=nodes, total_nodes=nodes),
            compile_s=float(finished.report["compile_s"]),
            run_s=float(finished.report["run_s"]),
            info={"runtime": f"{NAME} (onnxruntime CPU EP)", "onnxruntime": finished.report.get("onnxruntime")},
        )


class Npu9000Backend:
    """The npu9000 backend: fp32 and the integer precisions' QDQ models on its own onnxruntime settings."""

    name = NAME
    precisions = ("fp32", "w8a8", "w4a16")
    order = 90  # after the built-ins (cpu 10 ... htp 40)

    def available(self, sdk: str | None) -> str | None:
        """npu9000 needs onnxruntime in the suite's Python."""
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed (pip install onnxruntime)"
        return None

    def describe(self, sdk: str | None) -> dict[str, Any]:
        """The runtime and the backend's own settings."""
        import onnxruntime

        return {"runtime": f"{NAME} (onnxruntime CPU EP)", "onnxruntime": onnxruntime.__version__, **SETTINGS}

    def compile(self, onnx_path: Path, precision: str, sdk: str | None, workdir: Path) -> Npu9000Model:
        """Prepare ``onnx_path`` (FP32, or the QDQ model of an integer precision); the session is made in the
        runner process.
        """
        if precision not in self.precisions:
            raise CellError("unsupported_op", f"{NAME} runs {', '.join(self.precisions)}, not {precision}")
        return Npu9000Model(Path(onnx_path), Path(workdir))


class Top2:
    """Top-2 accuracy: 1.0 where the label's class has one of the two highest scores, else 0.0."""

    name = "top2"
    higher_is_better = True

    def score(self, output: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Score each sample of ``output`` (``N x classes``, singleton axes allowed) against integer ``labels``."""
        labels = np.asarray(labels)
        if labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
            raise CellError("bad_input", f"metric 'top2': labels must be class indices, got {labels.dtype}")
        scores = np.asarray(output).reshape(len(output), -1)
        if len(scores) != labels.size or scores.shape[1] < 2:
            raise CellError(
                "bad_input",
                f"metric 'top2': output of shape {np.shape(output)} for {labels.size} labels; expected N x classes "
                "scores with at least two classes (check metric.output)",
            )
        best_two = np.argsort(scores, axis=1)[:, -2:]
        return (best_two == labels.reshape(-1, 1)).any(axis=1).astype(np.float64)


@zoocompat.hookimpl
def zoocompat_backends() -> list[Npu9000Backend]:
    """Register npu9000."""
    return [Npu9000Backend()]


@zoocompat.hookimpl
def zoocompat_precisions() -> list[Precision]:
    """Register w4a16 (opt-in: ``--precisions w4a16``)."""
    description = "4-bit weights, 16-bit activations (QDQ)"
    return [Precision("w4a16", quantized=True, order=60, description=description, default=False)]


@zoocompat.hookimpl
def zoocompat_metrics() -> list[Top2]:
    """Register top2."""
    return [Top2()]


def run_request(request: dict[str, Any], report: dict[str, Any]) -> None:
    """The runner script's side (in the child process): one onnxruntime session with npu9000's
    settings, every sample of the request's inputs, outputs to the request's ``outputs`` file.
    """
    import onnxruntime as ort

    report["onnxruntime"] = ort.__version__
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, request["graph_optimization_level"])
    options.intra_op_num_threads = int(request["intra_op_num_threads"])
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    start = time.perf_counter()
    session = ort.InferenceSession(request["model"], options, providers=["CPUExecutionProvider"])
    report["compile_s"] = time.perf_counter() - start
    with np.load(request["inputs"], allow_pickle=False) as data:
        inputs = {name: data[name] for name in data.files}
    count = len(next(iter(inputs.values())))
    start = time.perf_counter()
    runs = [session.run(None, {name: value[i : i + 1] for name, value in inputs.items()}) for i in range(count)]
    report["run_s"] = time.perf_counter() - start
    names = [output.name for output in session.get_outputs()]
    np.savez(request["outputs"], **{name: np.concatenate([run[k] for run in runs]) for k, name in enumerate(names)})
    import onnx

    report["nodes"] = len(onnx.load(request["model"], load_external_data=False).graph.node)
    report["samples"] = count
