"""Single-op and pattern ONNX probes: the model side of ``zoocompat ops``.

Each :class:`Probe` is one ONNX op (or one small, named pattern) with the
attributes a real exporter writes, static input shapes of a realistic small
size, constant operands (weights, indices, shapes, axes) as initializers the
way exported models carry them, and an input generator with a sensible range
(positive for ``Log``/``Sqrt``, integer-valued floats for ``Equal``, ...).
Probes use opset 17, the opset the pytorch and tensorflow frontends export,
unless the op needs a later one (``Gelu`` 20, ``Mish`` 18,
``GroupNormalization`` 21); the row's opset is recorded with its result.

This module also quantizes a probe to a QDQ model for the integer precisions,
with onnxruntime's ``quantize_static`` and its QNN configuration
(``get_qnn_qdq_config``: uint8 or uint16 activations, uint8 weights, MinMax on
a few seeded random samples). That route is used rather than the aimet-onnx
quantizer because it takes any single-op graph as it is: it needs no BatchNorm
folding, quantizes ops AIMET's config leaves float, and keeps standalone
activations (``keep_removable_activations``) that a Conv-less graph would
otherwise lose to its input Q node.

Pattern probes (:func:`pattern`, rows ``"<layer> pattern [torch 17]"`` / ``"[tf2onnx 17]"``) are the
subgraphs the frontends emit for common layers (exact GELU as Div-Erf-Add-Mul-Mul, decomposed norms,
attention, ...), because the QNN EP fuses such patterns and supports them, or stops supporting them, as a
whole: the standalone ``Erf`` row is refused on every QNN release, while the quantized exact-GELU pattern
ran on the HTP under QNN 2.47 (fused into QNN's Gelu) and loses its Erf to the CPU from 2.49 on. Measured
on the Linear+GELU pattern: the same verdicts whether it is quantized by this module's quantizer (uint8
constants behind a DequantizeLinear) or by the matrix's aimet-onnx quantizer (float constants behind a
Quantize/DequantizeLinear pair), at w8a8 and w8a16.

onnx and onnxruntime are imported inside the functions, so the catalog can be
listed without the ML stack.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "PROBES",
    "QUANTIZER",
    "In",
    "Node",
    "Probe",
    "build_model",
    "by_name",
    "definition_hash",
    "make_inputs",
    "quantize_probe",
]

BASE_OPSET = 17  # plugins/frontends/pytorch.py and tensorflow.py export opset 17
QUANTIZER = "onnxruntime quantize_static + get_qnn_qdq_config (MinMax, uint8 weights)"
_ACTIVATION_TYPE = {"w8a8": "QUInt8", "w8a16": "QUInt16"}
_CALIBRATION_SAMPLES = 8


@dataclass(frozen=True)
class In:
    """A graph input: name, static shape, element type and value range.

    Floats are uniform in ``[low, high)`` (rounded when ``integers``); int64
    inputs are integers in ``[low, high)``; bool inputs are fair coin flips.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    low: float = -1.0
    high: float = 1.0
    integers: bool = False


@dataclass(frozen=True)
class Rand:
    """A random float initializer (weights), drawn with the probe's seed."""

    shape: tuple[int, ...]
    low: float = -0.5
    high: float = 0.5


@dataclass(frozen=True)
class Node:
    """One ONNX node of a probe."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...] = ("y",)
    attrs: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass
class Probe:
    """One row of the op table: an op with its attributes, operands and inputs."""

    name: str  # row label, e.g. "AveragePool(ceil_mode=1)"
    op: str  # the ONNX op type under test
    inputs: tuple[In, ...]
    nodes: tuple[Node, ...]
    consts: dict[str, Any] = field(default_factory=dict)  # name -> numpy array or Rand
    outputs: tuple[str, ...] = ("y",)
    opset: int = BASE_OPSET
    # output name -> (dtype, shape), only where onnx shape inference cannot tell (function ops)
    output_types: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)

    @property
    def seed(self) -> int:
        """Seed of this probe's weights and inputs (stable across runs and machines)."""
        return zlib.crc32(self.name.encode())


def _i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def _scalar(value: float | int, dtype=np.float32) -> np.ndarray:
    return np.array(value, dtype=dtype)


X4 = (1, 8, 16, 16)  # the default NCHW activation


def unary(op: str, low: float = -3.0, high: float = 3.0, shape=X4, name: str | None = None, opset=BASE_OPSET, **attrs):
    """``y = op(x)``."""
    return Probe(name or op, op, (In("x", shape, low=low, high=high),), (Node(op, ("x",), attrs=attrs),), opset=opset)


def binary(op: str, low=-2.0, high=2.0, low2=None, high2=None, shape=X4, shape2=None, integers=False, name=None):
    """``y = op(a, b)`` on two activations."""
    a = In("a", shape, low=low, high=high, integers=integers)
    b = In(
        "b",
        shape2 or shape,
        low=low if low2 is None else low2,
        high=high if high2 is None else high2,
        integers=integers,
    )
    return Probe(name or op, op, (a, b), (Node(op, ("a", "b")),))


def with_consts(op: str, shape, consts: dict[str, Any], name=None, low=-2.0, high=2.0, opset=BASE_OPSET, **attrs):
    """``y = op(x, *consts)``: one activation plus initializer operands (in the given order; "" skips one)."""
    names = tuple(consts)
    real = {k: v for k, v in consts.items() if k}
    return Probe(
        name or op,
        op,
        (In("x", shape, low=low, high=high),),
        (Node(op, ("x", *names), attrs=attrs),),
        consts=real,
        opset=opset,
    )


def _lstm_like(op: str, gates: int, **attrs) -> Probe:
    """A one-layer recurrent op over 8 steps, fed batch-first through a Transpose as torch exports it."""
    seq, size, hidden = 8, 16, 32
    consts = {
        "W": Rand((1, gates * hidden, size), -0.3, 0.3),
        "R": Rand((1, gates * hidden, hidden), -0.3, 0.3),
        "B": Rand((1, 2 * gates * hidden), -0.1, 0.1),
    }
    nodes = (
        Node("Transpose", ("x",), ("x_seq",), {"perm": [1, 0, 2]}),
        Node(op, ("x_seq", "W", "R", "B"), attrs={"hidden_size": hidden, **attrs}),
    )
    return Probe(op, op, (In("x", (1, seq, size)),), nodes, consts=consts)


def _catalog() -> list[Probe]:
    conv_w = Rand((16, 8, 3, 3), -0.2, 0.2)
    probes = [
        # --- convolution
        with_consts("Conv", (1, 8, 32, 32), {"W": conv_w, "B": Rand((16,))}, pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        with_consts(
            "Conv",
            (1, 8, 32, 32),
            {"W": Rand((8, 1, 3, 3), -0.3, 0.3), "B": Rand((8,))},
            name="Conv(depthwise)",
            group=8,
            pads=[1, 1, 1, 1],
            kernel_shape=[3, 3],
        ),
        with_consts(
            "Conv",
            (1, 8, 32, 32),
            {"W": conv_w, "B": Rand((16,))},
            name="Conv(stride=2,dilation=2)",
            strides=[2, 2],
            dilations=[2, 2],
            pads=[2, 2, 2, 2],
            kernel_shape=[3, 3],
        ),
        with_consts(
            "Conv", (1, 8, 64), {"W": Rand((16, 8, 3), -0.2, 0.2), "B": Rand((16,))}, name="Conv(1d)", pads=[1, 1]
        ),
        with_consts(
            "ConvTranspose",
            (1, 8, 16, 16),
            {"W": Rand((8, 4, 4, 4), -0.2, 0.2), "B": Rand((4,))},
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            kernel_shape=[4, 4],
        ),
        # --- pooling
        unary("MaxPool", shape=(1, 8, 32, 32), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        unary("AveragePool", shape=(1, 8, 32, 32), kernel_shape=[2, 2], strides=[2, 2]),
        unary(
            "AveragePool",
            shape=(1, 8, 15, 15),
            name="AveragePool(ceil_mode=1)",
            kernel_shape=[3, 3],
            strides=[2, 2],
            ceil_mode=1,
        ),
        unary("GlobalAveragePool"),
        unary("GlobalMaxPool"),
        unary("LpPool", shape=(1, 8, 32, 32), kernel_shape=[2, 2], strides=[2, 2], p=2),
        # --- activations
        unary("Relu"),
        with_consts("Clip", X4, {"lo": _scalar(0.0), "hi": _scalar(6.0)}, name="Clip(ReLU6)", low=-3.0, high=9.0),
        unary("Sigmoid", -6.0, 6.0),
        unary("Tanh", -4.0, 4.0),
        unary("HardSigmoid", -6.0, 6.0, alpha=1.0 / 6.0, beta=0.5),
        unary("HardSwish", -6.0, 6.0),
        unary("LeakyRelu", alpha=0.1),
        with_consts("PRelu", X4, {"slope": Rand((8, 1, 1), 0.05, 0.3)}, low=-3.0, high=3.0),
        unary("Elu", alpha=1.0),
        unary("Selu"),
        unary("Softplus", -4.0, 4.0),
        unary("Softsign", -4.0, 4.0),
        unary("Gelu", -4.0, 4.0, opset=20),
        unary("Gelu", -4.0, 4.0, name="Gelu(tanh)", opset=20, approximate="tanh"),
        unary("Erf", -2.0, 2.0),
        unary("Mish", -4.0, 4.0, opset=18),
        unary("Softmax", -4.0, 4.0, shape=(1, 4, 32, 32), axis=-1),
        unary("LogSoftmax", -4.0, 4.0, shape=(1, 10), axis=-1),
        # --- normalization
        with_consts(
            "BatchNormalization",
            X4,
            {
                "scale": Rand((8,), 0.5, 1.5),
                "bias": Rand((8,)),
                "mean": Rand((8,), -0.5, 0.5),
                "var": Rand((8,), 0.5, 2.0),
            },
            epsilon=1e-5,
        ),
        with_consts("InstanceNormalization", X4, {"scale": Rand((8,), 0.5, 1.5), "bias": Rand((8,))}, epsilon=1e-5),
        with_consts("LayerNormalization", (1, 16, 64), {"scale": Rand((64,), 0.5, 1.5), "bias": Rand((64,))}, axis=-1),
        replace(
            with_consts(
                "GroupNormalization",
                X4,
                {"scale": Rand((8,), 0.5, 1.5), "bias": Rand((8,))},
                opset=21,
                num_groups=4,
                epsilon=1e-5,
            ),
            output_types={"y": ("float32", X4)},  # a function op: onnx infers no output type
        ),
        unary("LpNormalization", shape=(1, 128), axis=-1, p=2),
        unary("LRN", size=5, alpha=1e-4, beta=0.75, bias=1.0),
        # --- elementwise
        binary("Add"),
        binary("Add", shape2=(1, 8, 1, 1), name="Add(broadcast)"),
        binary("Sub"),
        binary("Mul"),
        binary("Div", low2=0.5, high2=2.0),
        with_consts("Pow", X4, {"e": _scalar(2.0)}, name="Pow(x,2)", low=-2.0, high=2.0),
        binary("Pow", low=0.1, high=2.0, low2=0.5, high2=2.0),
        unary("Sqrt", 0.01, 4.0),
        unary("Exp", -2.0, 2.0),
        unary("Log", 0.1, 4.0),
        unary("Abs"),
        unary("Neg"),
        binary("Max"),
        binary("Min"),
        unary("Reciprocal", 0.5, 2.0),
        unary("Floor", -4.0, 4.0),
        unary("Ceil", -4.0, 4.0),
        unary("Round", -4.0, 4.0),
        unary("Sign"),
        unary("Sin", -3.0, 3.0),
        unary("Cos", -3.0, 3.0),
        Probe(
            "Where",
            "Where",
            (In("cond", X4, "bool"), In("a", X4), In("b", X4)),
            (Node("Where", ("cond", "a", "b")),),
        ),
        binary("Equal", -2.0, 3.0, integers=True),
        binary("Greater"),
        binary("Less"),
        Probe("And", "And", (In("a", X4, "bool"), In("b", X4, "bool")), (Node("And", ("a", "b")),)),
        Probe("Not", "Not", (In("x", X4, "bool"),), (Node("Not", ("x",)),)),
        unary("Cast", -100.0, 100.0, name="Cast(float->int32)", to=6),
        # --- reductions
        unary("ReduceMean", axes=[2, 3], keepdims=1),
        with_consts("ReduceSum", X4, {"axes": _i64(-1)}, keepdims=1),
        unary("ReduceMax", axes=[1], keepdims=1),
        unary("ReduceMin", axes=[1], keepdims=1),
        unary("ReduceProd", 0.8, 1.25, axes=[3], keepdims=1),
        unary("ReduceL2", axes=[1], keepdims=1),
        unary("ArgMax", axis=1, keepdims=1),
        unary("ArgMin", axis=1, keepdims=1),
        Probe(
            "TopK",
            "TopK",
            (In("x", (1, 100)),),
            (Node("TopK", ("x", "k"), ("values", "indices"), {"axis": -1}),),
            consts={"k": _i64(5)},
            outputs=("values", "indices"),
        ),
        # --- shape and data movement
        with_consts("Reshape", X4, {"shape": _i64(1, 8, 256)}),
        unary("Transpose", perm=[0, 2, 3, 1]),
        unary("Flatten", axis=1),
        with_consts("Squeeze", (1, 8, 1, 16), {"axes": _i64(2)}),
        with_consts("Unsqueeze", (1, 8, 16), {"axes": _i64(1)}),
        Probe("Concat", "Concat", (In("a", X4), In("b", X4)), (Node("Concat", ("a", "b"), attrs={"axis": 1}),)),
        Probe(
            "Split",
            "Split",
            (In("x", (1, 16, 8, 8)),),
            (Node("Split", ("x", "split"), ("y0", "y1"), {"axis": 1}),),
            consts={"split": _i64(8, 8)},
            outputs=("y0", "y1"),
        ),
        with_consts(
            "Slice",
            (1, 8, 32, 32),
            {"starts": _i64(2, 2), "ends": _i64(30, 30), "axes": _i64(2, 3), "steps": _i64(1, 1)},
        ),
        with_consts(
            "Slice",
            (1, 8, 32, 32),
            {"starts": _i64(0, 0), "ends": _i64(32, 32), "axes": _i64(2, 3), "steps": _i64(2, 2)},
            name="Slice(step=2)",
        ),
        with_consts("Gather", (1, 16, 32), {"indices": _i64(0, 3, 7, 15)}, axis=1),
        with_consts(
            "GatherElements",
            (1, 8, 16),
            {"indices": np.random.default_rng(7).integers(0, 16, (1, 8, 4)).astype(np.int64)},
            axis=2,
        ),
        with_consts("GatherND", (1, 8, 16), {"indices": np.array([[[0, 1], [0, 3], [0, 4], [0, 7]]], np.int64)}),
        Probe(
            "ScatterND",
            "ScatterND",
            (In("data", (1, 8, 16)), In("updates", (1, 4, 16))),
            (Node("ScatterND", ("data", "indices", "updates")),),
            consts={"indices": np.array([[[0, 1], [0, 3], [0, 4], [0, 7]]], np.int64)},
        ),
        with_consts("Tile", (1, 8, 4, 4), {"repeats": _i64(1, 1, 2, 2)}),
        with_consts("Expand", (1, 8, 1, 1), {"shape": _i64(1, 8, 16, 16)}),
        with_consts("Pad", X4, {"pads": _i64(0, 0, 1, 1, 0, 0, 1, 1)}, mode="constant"),
        with_consts("Pad", X4, {"pads": _i64(0, 0, 2, 2, 0, 0, 2, 2)}, name="Pad(reflect)", mode="reflect"),
        unary("DepthToSpace", shape=(1, 16, 8, 8), name="DepthToSpace(DCR)", blocksize=2, mode="DCR"),
        unary("DepthToSpace", shape=(1, 16, 8, 8), name="DepthToSpace(CRD)", blocksize=2, mode="CRD"),
        unary("SpaceToDepth", shape=(1, 4, 16, 16), blocksize=2),
        with_consts(
            "Resize",
            X4,
            {"": None, "scales": _f32(1, 1, 2, 2)},
            name="Resize(nearest)",
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        ),
        with_consts(
            "Resize",
            X4,
            {"": None, "scales": _f32(1, 1, 2, 2)},
            name="Resize(linear)",
            mode="linear",
            coordinate_transformation_mode="half_pixel",
        ),
        with_consts(
            "Resize",
            X4,
            {"": None, "scales": _f32(1, 1, 2, 2)},
            name="Resize(linear,align_corners)",
            mode="linear",
            coordinate_transformation_mode="align_corners",
        ),
        # --- linear algebra
        with_consts("MatMul", (1, 16, 64), {"W": Rand((64, 32), -0.2, 0.2)}),
        binary("MatMul", shape=(1, 4, 16, 32), shape2=(1, 4, 32, 16), name="MatMul(activations)"),
        with_consts("Gemm", (1, 64), {"W": Rand((32, 64), -0.2, 0.2), "B": Rand((32,))}, transB=1),
        Probe(
            "Einsum",
            "Einsum",
            (In("a", (1, 4, 16, 32)), In("b", (1, 4, 16, 32))),
            (Node("Einsum", ("a", "b"), attrs={"equation": "bhid,bhjd->bhij"}),),
        ),
        # --- recurrent
        _lstm_like("LSTM", 4),
        _lstm_like("GRU", 3, linear_before_reset=1),
        # --- attention building block: softmax(q k^T * scale) v
        Probe(
            "Attention(MatMul-Softmax-MatMul)",
            "MatMul",
            (In("q", (1, 4, 16, 32)), In("kt", (1, 4, 32, 16)), In("v", (1, 4, 16, 32))),
            (
                Node("MatMul", ("q", "kt"), ("scores",)),
                Node("Mul", ("scores", "scale"), ("scaled",)),
                Node("Softmax", ("scaled",), ("weights",), {"axis": -1}),
                Node("MatMul", ("weights", "v")),
            ),
            consts={"scale": _scalar(32**-0.5)},
        ),
        # --- misc
        with_consts("CumSum", (1, 8, 16), {"axis": _scalar(2, np.int64)}),
        Probe(
            "NonZero(dynamic output)",
            "NonZero",
            (In("x", (1, 8, 16), low=-1.0, high=2.0, integers=True),),
            (Node("NonZero", ("x",)),),
        ),
    ]
    probes += _patterns()
    names = [p.name for p in probes]
    assert len(names) == len(set(names)), "probe names must be unique"
    assert all(i.shape[0] == 1 for p in probes for i in p.inputs), "inputs carry batch dim 1 (the runner's sample axis)"
    return probes


TOKENS = (1, 16, 64)  # transformer activations: 16 tokens of width 64
TORCH, TF = "torch 17", "tf2onnx 17"  # the exporters (and opset) of plugins/frontends/pytorch.py and tensorflow.py
TFLITE = "tflite 17"  # a .tflite file: tf2onnx from_tflite (plugins/frontends/tflite.py), where it differs from TF


def pattern(name: str, source: str, op: str, inputs, nodes, consts=None) -> Probe:
    """A probe of a subgraph as an exporter emits it: row ``"<name> pattern [<source>]"``, ``op`` its key op.

    The graphs are what the frontends hand to the quantizer: ``torch.onnx.export`` (opset 17,
    ``dynamo=False``), tf2onnx (opset 17) from TensorFlow, or tf2onnx's TFLite route for a
    ``.tflite`` file (rows only where it differs), then the frontends' onnxruntime basic-level fold
    (``zoocompat.model.onnx_fold``), which turns constants into initializers, folds shape
    arithmetic, fuses MatMul+Add into Reshape-Gemm-Reshape and inlines HardSwish.
    tests/test_op_patterns.py exports the module each pattern stands for and checks the graph
    node for node (op types, attributes, wiring, scalar constants).
    """
    made = tuple(n if isinstance(n, Node) else Node(*n) for n in nodes)
    return Probe(f"{name} pattern [{source}]", op, tuple(inputs), made, consts=consts or {})


def _gelu_erf(x: str, y: str = "y") -> list[Node]:
    """torch's exact GELU, ``x * (1 + erf(x / sqrt 2)) * 0.5``, as torch.onnx 17 writes it."""
    return [
        Node("Div", (x, "sqrt2"), ("g_div",)),
        Node("Erf", ("g_div",), ("g_erf",)),
        Node("Add", ("g_erf", "one"), ("g_add",)),
        Node("Mul", (x, "g_add"), ("g_mul",)),
        Node("Mul", ("g_mul", "half"), (y,)),
    ]


def _keras_layer_norm() -> list[tuple]:
    """keras LayerNormalization as tf2onnx writes it, up to ``xs = x * scale`` and ``shift = -mean * scale``:
    moments as GlobalAveragePool over the last axis, ``scale = gamma / sqrt(var + eps)``.
    """
    return [
        ("GlobalAveragePool", ("x",), ("mean",)),
        ("Sub", ("x", "mean"), ("d",)),
        ("Mul", ("d", "d"), ("d2",)),
        ("GlobalAveragePool", ("d2",), ("var",)),
        ("Add", ("var", "eps"), ("ve",)),
        ("Sqrt", ("ve",), ("std",)),
        ("Reciprocal", ("std",), ("inv",)),
        ("Mul", ("inv", "gamma"), ("scale",)),
        ("Mul", ("x", "scale"), ("xs",)),
        ("Neg", ("mean",), ("neg",)),
        ("Mul", ("neg", "scale"), ("shift",)),
    ]


_GELU_ERF_CONSTS = {"sqrt2": _scalar(2**0.5), "one": _scalar(1.0), "half": _scalar(0.5)}
_GELU_TANH_CONSTS = {
    "c": _scalar(0.044715),
    "k": _scalar((2 / np.pi) ** 0.5),
    "one": _scalar(1.0),
    "half": _scalar(0.5),
}


def _patterns() -> list[Probe]:
    """Subgraphs the exporters emit for common layers (see :func:`pattern`); the single-op rows cover the layers
    they export as one op (nn.LayerNorm -> LayerNormalization, nn.PixelShuffle -> DepthToSpace(CRD),
    nn.Hardsigmoid -> HardSigmoid, F.interpolate nearest/bilinear -> the Resize rows).

    Not here: exact GELU from TensorFlow (``tf.nn.gelu(approximate=False)``, ``keras.activations.gelu``), which
    tf2onnx 1.17 cannot convert (TensorFlow's ``Erfc`` has no ONNX mapping), and ``nn.RMSNorm``, which the
    TorchScript exporter cannot export at opset 17 (``aten::rms_norm``); the RMSNorm row is the hand-written
    form transformer code carries.
    """
    tokens = In("x", TOKENS, low=-4.0, high=4.0)
    image = In("x", X4, low=-6.0, high=6.0)
    nhwc = In("x", (1, 16, 16, 8))
    qkv = tuple(In(n, (1, 4, 16, 16), low=-2.0, high=2.0) for n in "qkv")
    return [
        # --- GELU: nn.GELU() / nn.GELU(approximate="tanh"), tf.nn.gelu(approximate=True)
        pattern("GELU(erf)", TORCH, "Erf", (tokens,), _gelu_erf("x"), _GELU_ERF_CONSTS),
        pattern(
            "Linear+GELU(erf) (ViT MLP)",
            TORCH,
            "Erf",
            (In("x", TOKENS, low=-2.0, high=2.0),),
            [
                Node("Reshape", ("x", "rows"), ("x2",)),
                Node("Gemm", ("x2", "W", "B"), ("h2",)),
                Node("Reshape", ("h2", "tokens"), ("h",)),
                *_gelu_erf("h"),
            ],
            {
                "rows": _i64(16, 64),
                "W": Rand((64, 128), -0.125, 0.125),  # nn.Linear's init range, 1/sqrt(fan_in)
                "B": Rand((128,), -0.125, 0.125),
                "tokens": _i64(1, 16, 128),
                **_GELU_ERF_CONSTS,
            },
        ),
        pattern(
            "GELU(tanh)",
            TORCH,
            "Tanh",
            (tokens,),
            [
                ("Mul", ("x", "x"), ("x2",)),
                ("Mul", ("x", "x2"), ("x3",)),
                ("Mul", ("c", "x3"), ("cx3",)),
                ("Add", ("x", "cx3"), ("inner",)),
                ("Mul", ("k", "inner"), ("arg",)),
                ("Tanh", ("arg",), ("t",)),
                ("Add", ("one", "t"), ("t1",)),
                ("Mul", ("x", "t1"), ("xt",)),
                ("Mul", ("half", "xt")),
            ],
            _GELU_TANH_CONSTS,
        ),
        pattern(
            "GELU(tanh)",
            TF,
            "Tanh",
            (tokens,),
            [
                ("Mul", ("half", "x"), ("hx",)),
                ("Pow", ("x", "three"), ("x3",)),
                ("Mul", ("c", "x3"), ("cx3",)),
                ("Add", ("x", "cx3"), ("inner",)),
                ("Mul", ("k", "inner"), ("arg",)),
                ("Tanh", ("arg",), ("t",)),
                ("Add", ("one", "t"), ("t1",)),
                ("Mul", ("hx", "t1")),
            ],
            {**_GELU_TANH_CONSTS, "three": _scalar(3.0)},
        ),
        # --- normalization written out
        pattern(
            "LayerNorm(decomposed, channels-first)",  # ConvNeXt-style LayerNorm over C of an NCHW map
            TORCH,
            "ReduceMean",
            (In("x", (1, 32, 16, 16), low=-2.0, high=2.0),),
            [
                ("ReduceMean", ("x",), ("mean",), {"axes": [1], "keepdims": 1}),
                ("Sub", ("x", "mean"), ("d",)),
                ("Pow", ("d", "two"), ("d2",)),
                ("ReduceMean", ("d2",), ("var",), {"axes": [1], "keepdims": 1}),
                ("Add", ("var", "eps"), ("ve",)),
                ("Sqrt", ("ve",), ("std",)),
                ("Div", ("d", "std"), ("n",)),
                ("Mul", ("gamma", "n"), ("g",)),
                ("Add", ("g", "beta")),
            ],
            {
                "two": _scalar(2.0),
                "eps": _scalar(1e-6),
                "gamma": Rand((32, 1, 1), 0.5, 1.5),
                "beta": Rand((32, 1, 1), -0.5, 0.5),
            },
        ),
        pattern(
            "LayerNorm",  # keras.layers.LayerNormalization: moments as GlobalAveragePool over the last axis
            TF,
            "GlobalAveragePool",
            (In("x", TOKENS, low=-2.0, high=2.0),),
            [*_keras_layer_norm(), ("Add", ("shift", "beta"), ("offset",)), ("Add", ("xs", "offset"))],
            {"eps": _scalar(1e-5), "gamma": Rand((1, 1, 64), 0.5, 1.5), "beta": Rand((1, 1, 64), -0.5, 0.5)},
        ),
        pattern(
            "RMSNorm(decomposed)",  # x * rsqrt(mean(x^2) + eps) * w, as LLaMA-style code writes it
            TORCH,
            "ReduceMean",
            (In("x", TOKENS, low=-2.0, high=2.0),),
            [
                ("Pow", ("x", "two"), ("x2",)),
                ("ReduceMean", ("x2",), ("ms",), {"axes": [-1], "keepdims": 1}),
                ("Add", ("ms", "eps"), ("mse",)),
                ("Sqrt", ("mse",), ("rms",)),
                ("Div", ("x", "rms"), ("n",)),
                ("Mul", ("n", "w")),
            ],
            {"two": _scalar(2.0), "eps": _scalar(1e-6), "w": Rand((64,), 0.5, 1.5)},
        ),
        pattern(
            "GroupNorm",  # nn.GroupNorm(4, 16): InstanceNormalization over 4 groups, then the affine
            TORCH,
            "InstanceNormalization",
            (In("x", (1, 16, 16, 16), low=-2.0, high=2.0),),
            [
                ("Reshape", ("x", "groups"), ("xg",)),
                ("InstanceNormalization", ("xg", "ones", "zeros"), ("ng",), {"epsilon": 1e-5}),
                ("Reshape", ("ng", "shape"), ("n",)),
                ("Mul", ("n", "gamma"), ("g",)),
                ("Add", ("g", "beta")),
            ],
            {
                "groups": _i64(0, 4, -1),
                "ones": _f32(1, 1, 1, 1),
                "zeros": _f32(0, 0, 0, 0),
                "shape": _i64(1, 16, 16, 16),
                "gamma": Rand((16, 1, 1), 0.5, 1.5),
                "beta": Rand((16, 1, 1), -0.5, 0.5),
            },
        ),
        # --- activations written out
        pattern("SiLU", TORCH, "Sigmoid", (image,), [("Sigmoid", ("x",), ("s",)), ("Mul", ("x", "s"))]),
        pattern(
            "SiLU/Swish",  # tf.nn.silu / keras.activations.silu: x * sigmoid(beta * x), beta = 1
            TF,
            "Sigmoid",
            (image,),
            [("Mul", ("beta", "x"), ("bx",)), ("Sigmoid", ("bx",), ("s",)), ("Mul", ("x", "s"))],
            {"beta": _scalar(1.0)},
        ),
        pattern(
            "HardSwish",  # nn.Hardswish exports HardSwish; the frontends' fold inlines it into these two
            TORCH,
            "HardSigmoid",
            (image,),
            [("HardSigmoid", ("x",), ("h",), {"alpha": 1.0 / 6.0, "beta": 0.5}), ("Mul", ("x", "h"))],
        ),
        pattern(
            "HardSwish",  # keras.activations.hard_swish: x * relu6(x + 3) / 6
            TF,
            "Clip",
            (image,),
            [
                ("Add", ("x", "three"), ("a",)),
                ("Clip", ("a", "zero", "six"), ("c",)),
                ("Mul", ("c", "sixth"), ("h",)),
                ("Mul", ("x", "h")),
            ],
            {"three": _scalar(3.0), "zero": _scalar(0.0), "six": _scalar(6.0), "sixth": _scalar(1.0 / 6.0)},
        ),
        pattern(
            "HardSigmoid",  # keras.activations.hard_sigmoid: relu6(x + 3) / 6
            TF,
            "Clip",
            (image,),
            [("Add", ("x", "three"), ("a",)), ("Clip", ("a", "zero", "six"), ("c",)), ("Mul", ("c", "sixth"))],
            {"three": _scalar(3.0), "zero": _scalar(0.0), "six": _scalar(6.0), "sixth": _scalar(1.0 / 6.0)},
        ),
        # --- attention: softmax(q k^T * scale) v over 4 heads of 16 tokens x 16
        pattern(
            "Attention(MatMul-scale-Softmax-MatMul)",  # (q @ k.transpose(-2, -1)) * d**-0.5, softmax, @ v
            TORCH,
            "Softmax",
            qkv,
            [
                ("Transpose", ("k",), ("kt",), {"perm": [0, 1, 3, 2]}),
                ("MatMul", ("q", "kt"), ("s",)),
                ("Mul", ("s", "scale"), ("ss",)),
                ("Softmax", ("ss",), ("w",), {"axis": -1}),
                ("MatMul", ("w", "v")),
            ],
            {"scale": _scalar(0.25)},
        ),
        pattern(
            "scaled_dot_product_attention",  # F.scaled_dot_product_attention: sqrt(scale) on q and on k^T
            TORCH,
            "Softmax",
            qkv,
            [
                ("Transpose", ("k",), ("kt",), {"perm": [0, 1, 3, 2]}),
                ("Mul", ("kt", "root"), ("kts",)),
                ("Mul", ("q", "root"), ("qs",)),
                ("MatMul", ("qs", "kts"), ("s",)),
                ("Softmax", ("s",), ("w",), {"axis": -1}),
                ("MatMul", ("w", "v")),
            ],
            {"root": _f32(0.5)},
        ),
        # --- depth-to-space and pixel shuffle (nn.PixelShuffle is the DepthToSpace(CRD) row)
        pattern(
            "PixelUnshuffle",  # nn.PixelUnshuffle(2): a rank-6 Transpose between two Reshapes
            TORCH,
            "Transpose",
            (In("x", (1, 4, 16, 16)),),
            [
                ("Reshape", ("x", "split"), ("r",)),
                ("Transpose", ("r",), ("t",), {"perm": [0, 1, 3, 5, 2, 4]}),
                ("Reshape", ("t", "merged")),
            ],
            {"split": _i64(-1, 4, 8, 2, 8, 2), "merged": _i64(-1, 16, 8, 8)},
        ),
        pattern(
            "DepthToSpace",  # tf.nn.depth_to_space on NHWC: DCR between layout Transposes
            TF,
            "DepthToSpace",
            (In("x", (1, 8, 8, 16)),),
            [
                ("Transpose", ("x",), ("nchw",), {"perm": [0, 3, 1, 2]}),
                ("DepthToSpace", ("nchw",), ("d",), {"blocksize": 2}),
                ("Transpose", ("d",), ("y",), {"perm": [0, 2, 3, 1]}),
            ],
        ),
        # --- resize (torch's nearest/bilinear/align_corners scales are the Resize rows)
        pattern(
            "Resize(cubic)",  # F.interpolate(scale_factor=2, mode="bicubic")
            TORCH,
            "Resize",
            (image,),
            [
                (
                    "Resize",
                    ("x", "", "scales"),
                    ("y",),
                    {
                        "coordinate_transformation_mode": "half_pixel",
                        "cubic_coeff_a": -0.75,
                        "mode": "cubic",
                        "nearest_mode": "floor",
                    },
                )
            ],
            {"scales": _f32(1, 1, 2, 2)},
        ),
        pattern(
            "Resize(nearest, sizes)",  # F.interpolate(size=(24, 24)): a 1.5x nearest resize by output size
            TORCH,
            "Resize",
            (image,),
            [
                (
                    "Resize",
                    ("x", "", "", "sizes"),
                    ("y",),
                    {
                        "coordinate_transformation_mode": "asymmetric",
                        "cubic_coeff_a": -0.75,
                        "mode": "nearest",
                        "nearest_mode": "floor",
                    },
                )
            ],
            {"sizes": _i64(1, 8, 24, 24)},
        ),
        pattern(
            "Resize(nearest)",  # tf.image.resize(method="nearest") on NHWC
            TF,
            "Resize",
            (nhwc,),
            [
                ("Transpose", ("x",), ("nchw",), {"perm": [0, 3, 1, 2]}),
                (
                    "Resize",
                    ("nchw", "roi", "scales"),
                    ("r",),
                    {
                        "coordinate_transformation_mode": "tf_half_pixel_for_nn",
                        "mode": "nearest",
                        "nearest_mode": "floor",
                    },
                ),
                ("Transpose", ("r",), ("y",), {"perm": [0, 2, 3, 1]}),
            ],
            {"roi": np.zeros(0, np.float32), "scales": _f32(1, 1, 2, 2)},
        ),
        pattern(
            "Resize(bilinear)",  # tf.image.resize(method="bilinear") / UpSampling2D(interpolation="bilinear")
            TF,
            "Resize",
            (nhwc,),
            [
                ("Transpose", ("x",), ("nchw",), {"perm": [0, 3, 1, 2]}),
                (
                    "Resize",
                    ("nchw", "roi", "scales"),
                    ("r",),
                    {"coordinate_transformation_mode": "half_pixel", "mode": "linear", "nearest_mode": "floor"},
                ),
                ("Transpose", ("r",), ("y",), {"perm": [0, 2, 3, 1]}),
            ],
            {"roi": np.zeros(0, np.float32), "scales": _f32(1, 1, 2, 2)},
        ),
        pattern(
            "UpSampling2D(nearest)",  # keras.layers.UpSampling2D(2): repeat rows, then columns, with Tile
            TF,
            "Tile",
            (nhwc,),
            [
                ("Unsqueeze", ("x", "axis2"), ("u",)),
                ("Tile", ("u", "rows"), ("tr",)),
                ("Reshape", ("tr", "shape_rows"), ("r",)),
                ("Tile", ("r", "cols"), ("tc",)),
                ("Reshape", ("tc", "shape_out")),
            ],
            {
                "axis2": _i64(2),
                "rows": _i64(1, 1, 2, 1, 1),
                "shape_rows": _i64(1, 32, 16, 1, 8),
                "cols": _i64(1, 1, 1, 2, 1),
                "shape_out": _i64(1, 32, 32, 8),
            },
        ),
        # --- .tflite files (bring your own zoo): where tf2onnx's TFLite route emits another graph than from TF
        pattern(
            "LayerNorm",  # keras.layers.LayerNormalization in a .tflite (beta 0 folded away by the TFLite converter)
            TFLITE,
            "GlobalAveragePool",
            (In("x", TOKENS, low=-2.0, high=2.0),),
            [*_keras_layer_norm(), ("Add", ("xs", "shift"))],
            {"eps": _scalar(1e-5), "gamma": Rand((1, 1, 64), 0.5, 1.5)},
        ),
        pattern(
            "UpSampling2D(nearest)",  # keras.layers.UpSampling2D(2) in a .tflite: Reshape-Tile twice
            TFLITE,
            "Tile",
            (nhwc,),
            [
                ("Reshape", ("x", "shape_in"), ("u",)),
                ("Tile", ("u", "rows"), ("tr",)),
                ("Reshape", ("tr", "shape_rows"), ("r",)),
                ("Tile", ("r", "cols"), ("tc",)),
                ("Reshape", ("tc", "shape_out")),
            ],
            {
                "shape_in": _i64(1, 16, 1, 16, 8),
                "rows": _i64(1, 1, 2, 1, 1),
                "shape_rows": _i64(1, 32, 16, 1, 8),
                "cols": _i64(1, 1, 1, 2, 1),
                "shape_out": _i64(1, 32, 32, 8),
            },
        ),
    ]


PROBES: list[Probe] = _catalog()


def by_name(names: list[str] | None = None) -> list[Probe]:
    """The probes called ``names`` (a row label, or an ONNX op type selecting all its rows), or all.

    Raises ``KeyError`` naming the unknown ones.
    """
    if not names:
        return list(PROBES)
    chosen, unknown = [], []
    for name in names:
        hits = [p for p in PROBES if name in (p.name, p.op)]
        if not hits:
            unknown.append(name)
        chosen.extend(p for p in hits if p not in chosen)
    if unknown:
        raise KeyError(", ".join(unknown))
    return chosen


def _const(value: Any, rng: np.random.Generator) -> np.ndarray:
    if isinstance(value, Rand):
        return rng.uniform(value.low, value.high, value.shape).astype(np.float32)
    return np.asarray(value)


def build_model(probe: Probe):
    """The probe as an ``onnx.ModelProto`` with static, inferred output shapes, checked."""
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(probe.seed)
    initializers = [numpy_helper.from_array(_const(v, rng), name) for name, v in probe.consts.items()]
    inputs = [
        helper.make_tensor_value_info(i.name, helper.np_dtype_to_tensor_dtype(np.dtype(i.dtype)), list(i.shape))
        for i in probe.inputs
    ]
    nodes = [
        helper.make_node(n.op, list(n.inputs), list(n.outputs), name=f"{n.op}_{k}", **n.attrs)
        for k, n in enumerate(probe.nodes)
    ]
    outputs = [
        helper.make_tensor_value_info(
            name,
            helper.np_dtype_to_tensor_dtype(np.dtype(probe.output_types[name][0])),
            list(probe.output_types[name][1]),
        )
        if name in probe.output_types
        else helper.make_empty_tensor_value_info(name)
        for name in probe.outputs
    ]
    graph = helper.make_graph(nodes, probe.name, inputs, outputs, initializer=initializers)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", probe.opset)], producer_name="zoocompat-op-probe"
    )
    model.ir_version = min(model.ir_version, 10)  # what onnxruntime 1.2x loads
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def make_inputs(probe: Probe, samples: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``samples`` input sets for ``probe``, sample axis first (the batch dim is 1)."""
    rng = np.random.default_rng([probe.seed, seed])
    batch = {}
    for spec in probe.inputs:
        shape = (samples, *spec.shape[1:])  # every probe input has batch dim 1
        if spec.dtype == "bool":
            value = rng.random(shape) < 0.5
        elif spec.dtype.startswith("int"):
            value = rng.integers(int(spec.low), int(spec.high), shape).astype(spec.dtype)
        else:
            value = rng.uniform(spec.low, spec.high, shape).astype(spec.dtype)
            if spec.integers:
                value = np.floor(value).astype(spec.dtype)
        batch[spec.name] = value
    return batch


def definition_hash(probe: Probe) -> str:
    """Hash of what decides a probe's result: the serialized model, the inputs, the quantizer."""
    model = build_model(probe).SerializeToString(deterministic=True)
    spec = json.dumps([asdict(i) for i in probe.inputs], sort_keys=True)
    blob = model + spec.encode() + QUANTIZER.encode() + str(_CALIBRATION_SAMPLES).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


class _Reader:
    """onnxruntime ``CalibrationDataReader`` over a list of input dicts."""

    def __init__(self, samples: list[dict[str, np.ndarray]]) -> None:
        self._samples = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._samples, None)


def quantize_probe(model_path: Path, precision: str, calibration: list[dict[str, np.ndarray]], out: Path) -> Path:
    """Write the QDQ model of ``model_path`` for ``w8a8`` / ``w8a16`` to ``out`` and return it.

    onnxruntime's QNN QDQ config with ``ForceQuantizeNoInputCheck`` (so that
    data-movement ops such as MaxPool or Transpose are quantized even when
    their input comes straight from the graph input). Relu and Clip are left
    float by that quantizer when nothing upstream is quantized, and Cast's
    input is never quantized; :func:`_qdq_graph_boundary` then adds the Q/DQ
    pairs a real quantized model would carry around them.
    """
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    if precision not in _ACTIVATION_TYPE:
        raise ValueError(f"no QDQ precision {precision!r}; expected one of {sorted(_ACTIVATION_TYPE)}")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer's "consider pre-processing" / opset-upgrade notices
    try:
        config = get_qnn_qdq_config(
            str(model_path),
            _Reader(calibration),
            activation_type=getattr(QuantType, _ACTIVATION_TYPE[precision]),
            weight_type=QuantType.QUInt8,
            keep_removable_activations=True,
        )
        config.extra_options["ForceQuantizeNoInputCheck"] = True
        quantize(str(model_path), str(out), config)
    finally:
        root.setLevel(level)
    model = onnx.load(str(out))
    if _qdq_graph_boundary(model, model_path, calibration, precision):
        onnx.checker.check_model(model)
        onnx.save(model, str(out))
    return out


def _qparams(low: float, high: float, precision: str) -> tuple[np.ndarray, np.ndarray]:
    """Asymmetric min-max scale and zero point (range widened to hold 0)."""
    qmax = 255 if precision == "w8a8" else 65535
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / qmax if high > low else 1.0
    zero = int(round(-low / scale))
    dtype = np.uint8 if precision == "w8a8" else np.uint16
    return np.array(scale, np.float32), np.array(min(max(zero, 0), qmax), dtype)


def _qdq_graph_boundary(model, float_path: Path, calibration: list[dict[str, np.ndarray]], precision: str) -> int:
    """Put a Q/DQ pair on every float graph input and output that the quantizer left float.

    Ranges are min-max over the calibration samples (the float model run on
    the CPU for outputs). Edits ``model`` in place; returns the pairs added.
    """
    from onnx import helper, numpy_helper

    initializers = {i.name for i in model.graph.initializer}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    float_type = 1  # TensorProto.FLOAT
    inputs = [
        v.name
        for v in model.graph.input
        if v.name not in initializers
        and v.type.tensor_type.elem_type == float_type
        and any(n.op_type != "QuantizeLinear" for n in consumers.get(v.name, []))
    ]
    producer = {o: n for n in model.graph.node for o in n.output}
    outputs = [
        v.name
        for v in model.graph.output
        if v.type.tensor_type.elem_type == float_type
        and producer.get(v.name) is not None
        and producer[v.name].op_type != "DequantizeLinear"
    ]
    if not inputs and not outputs:
        return 0
    values: dict[str, list[np.ndarray]] = {name: [s[name] for s in calibration] for name in inputs}
    if outputs:
        for run in cpu_runs(float_path, calibration):
            for name, value in run.items():
                values.setdefault(name, []).append(value)
    added = []
    for name in inputs + outputs:
        low = float(min(v.min() for v in values[name]))
        high = float(max(v.max() for v in values[name]))
        scale, zero = _qparams(low, high, precision)
        model.graph.initializer.extend(
            [numpy_helper.from_array(scale, f"{name}_qscale"), numpy_helper.from_array(zero, f"{name}_qzero")]
        )
        if name in inputs:
            source, target = name, f"{name}_qdq"
            for node in consumers[name]:
                node.input[:] = [target if i == name else i for i in node.input]
        else:
            source, target = f"{name}_float", name
            node = producer[name]
            node.output[:] = [source if o == name else o for o in node.output]
        q = helper.make_node("QuantizeLinear", [source, f"{name}_qscale", f"{name}_qzero"], [f"{name}_q"])
        dq = helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_qscale", f"{name}_qzero"], [target])
        added += [q, dq]
    nodes = list(model.graph.node)
    del model.graph.node[:]
    pre = [n for k, n in enumerate(added) if (k // 2) < len(inputs)]
    post = [n for k, n in enumerate(added) if (k // 2) >= len(inputs)]
    model.graph.node.extend(pre + nodes + post)
    return len(added) // 2


def calibration_samples(probe: Probe) -> list[dict[str, np.ndarray]]:
    """Seeded single-sample input dicts for calibration (disjoint seed from the evaluation inputs)."""
    batch = make_inputs(probe, _CALIBRATION_SAMPLES, seed=1)
    return [{k: v[i : i + 1] for k, v in batch.items()} for i in range(_CALIBRATION_SAMPLES)]


def cpu_reference(model_path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs of ``model_path`` on onnxruntime's CPU EP, one sample at a time and merged as the runner does.

    Runs in this process: the CPU EP on a checked single-op model is not the
    code under test, so it needs no runner isolation.
    """
    from zoocompat.api.samples import collect

    count = len(next(iter(inputs.values())))
    runs = cpu_runs(model_path, [{k: v[i : i + 1] for k, v in inputs.items()} for i in range(count)])
    names = list(runs[0])
    # the runner's rule for the sample axis (an output without a batch dim of 1 gets one stacked on)
    return dict(zip(names, collect([[run[name] for name in names] for run in runs]), strict=True))


def cpu_runs(model_path: Path, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """``model_path`` on onnxruntime's CPU EP, once per feed (each fed as it is): the outputs by name."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return [dict(zip(names, session.run(names, feed), strict=True)) for feed in feeds]
