"""onnxruntime's basic graph optimizations as an ONNX-to-ONNX pass.

The basic level folds constants (including ``Shape`` chains once input dims are
static) and fuses BatchNorm into a preceding Conv, using standard ONNX ops only
(no contrib-domain fusions), so the result is still a plain ONNX graph.
"""

from __future__ import annotations

from pathlib import Path


def ort_basic_fold(src: Path, dst: Path) -> None:
    """Write ``src`` after onnxruntime's basic optimizations to ``dst``; onnxruntime's errors propagate."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
