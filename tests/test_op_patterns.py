"""Pattern probes: each is node for node what an exporter emits, and the GELU(erf) pattern separates QNN 2.47 / 2.51.

The exporters run as the frontends run them: ``torch.onnx.export`` at the pytorch frontend's opset with
``dynamo=False`` (its route for eager modules), tf2onnx ``from_function`` at the tensorflow frontend's opset,
then the onnxruntime basic-level fold every frontend ends with (``finalize_onnx`` -> ``ort_basic_fold``).
The exported graph and the probe's graph are compared in a canonical form: op types in order, attributes,
the wiring (graph input k, or output j of node i), small constants by value and weights by shape.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zoocompat.diagnose import op_probes

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

#: attributes an exporter writes with ONNX's default value; a probe may leave them out
_DEFAULTS = {
    "allowzero": 0,
    "exclude_outside": 0,
    "extrapolation_value": 0.0,
    "cubic_coeff_a": -0.75,
    "transA": 0,
    "transB": 0,
    "epsilon": 1e-5,  # LayerNormalization, InstanceNormalization
}
_OP_DEFAULTS = {"Gemm": {"alpha": 1.0, "beta": 1.0}, "HardSigmoid": {"alpha": 0.2, "beta": 0.5}}


def _attrs(node: Any) -> dict[str, Any]:
    values = {}
    for attribute in node.attribute:
        value = onnx.helper.get_attribute_value(attribute)
        values[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return values


def _significant(node: Any) -> dict[str, Any]:
    """The node's attributes less those at ONNX's default (``nearest_mode`` counts only for nearest resizes)."""
    defaults = {**_DEFAULTS, **_OP_DEFAULTS.get(node.op_type, {})}
    attrs = _attrs(node)
    kept = {k: v for k, v in attrs.items() if not (k in defaults and np.isclose(v, defaults[k]))}
    if node.op_type == "Resize" and attrs.get("mode") != "nearest":
        kept.pop("nearest_mode", None)
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in kept.items()}


def canonical(model: Any) -> dict[str, Any]:
    """The graph as comparable data: inputs' shapes, and per node its op, attributes and where each input comes from."""
    from onnx import numpy_helper

    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    source: dict[str, Any] = {}
    inputs = [value for value in model.graph.input if value.name not in constants]
    for k, value in enumerate(inputs):
        source[value.name] = ("input", k)
    nodes = []
    for i, node in enumerate(model.graph.node):
        wired = []
        for name in node.input:
            if not name:
                wired.append(None)
            elif name in constants:
                value = constants[name]
                small = value.size <= 8
                shown = [round(float(v), 6) for v in value.ravel()] if small else None
                wired.append(("const", tuple(value.shape), str(value.dtype), shown))
            else:
                wired.append(source[name])
        for j, name in enumerate(node.output):
            source[name] = ("node", i, j)
        nodes.append((node.op_type, _significant(node), wired))
    shapes = [[d.dim_value for d in v.type.tensor_type.shape.dim] for v in inputs]
    return {"inputs": shapes, "nodes": nodes}


def _fold(path: Path) -> Any:
    from zoocompat.model.onnx_fold import ort_basic_fold

    folded = path.with_name(path.stem + "_folded.onnx")
    ort_basic_fold(path, folded)
    return onnx.load(str(folded))


def _assert_same(probe_name: str, exported: Any) -> None:
    (probe,) = [p for p in op_probes.PROBES if p.name == probe_name]
    want, got = canonical(op_probes.build_model(probe)), canonical(exported)
    assert got["inputs"] == want["inputs"], probe_name
    got_ops, want_ops = [n[0] for n in got["nodes"]], [n[0] for n in want["nodes"]]
    assert got_ops == want_ops, f"{probe_name}: exporter emits {got_ops}"
    for k, (mine, theirs) in enumerate(zip(want["nodes"], got["nodes"], strict=True)):
        assert mine == theirs, f"{probe_name} node {k}: probe {mine} != exported {theirs}"


def _torch_modules():
    import torch
    from torch import nn
    from torch.nn import functional as F

    class Interpolate(nn.Module):
        def __init__(self, **options):
            super().__init__()
            self.options = options

        def forward(self, x):
            return F.interpolate(x, **self.options)

    class LinearGelu(nn.Module):  # a ViT MLP's first half
        def __init__(self):
            super().__init__()
            self.fc1, self.act = nn.Linear(64, 128), nn.GELU()

        def forward(self, x):
            return self.act(self.fc1(x))

    class ChannelsFirstLayerNorm(nn.Module):  # ConvNeXt's LayerNorm(data_format="channels_first")
        def __init__(self, channels=32, eps=1e-6):
            super().__init__()
            self.weight, self.bias, self.eps = (
                nn.Parameter(torch.ones(channels)),
                nn.Parameter(torch.zeros(channels)),
                eps,
            )

        def forward(self, x):
            u = x.mean(1, keepdim=True)
            s = (x - u).pow(2).mean(1, keepdim=True)
            x = (x - u) / torch.sqrt(s + self.eps)
            return self.weight[:, None, None] * x + self.bias[:, None, None]

    class RMSNorm(nn.Module):  # as LLaMA-style code writes it (nn.RMSNorm does not export at opset 17)
        def __init__(self, width=64, eps=1e-6):
            super().__init__()
            self.weight, self.eps = nn.Parameter(torch.ones(width)), eps

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    class Attention(nn.Module):  # timm's Attention core on q, k, v of 4 heads x 16 tokens x 16
        def forward(self, q, k, v):
            return ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(-1) @ v

    class Sdpa(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)

    tokens, image, heads = (1, 16, 64), (1, 8, 16, 16), [(1, 4, 16, 16)] * 3
    return [
        ("GELU(erf) pattern [torch 17]", nn.GELU(), [tokens]),
        ("Linear+GELU(erf) (ViT MLP) pattern [torch 17]", LinearGelu(), [tokens]),
        ("GELU(tanh) pattern [torch 17]", nn.GELU(approximate="tanh"), [tokens]),
        ("LayerNormalization", nn.LayerNorm(64), [tokens]),
        ("LayerNorm(decomposed, channels-first) pattern [torch 17]", ChannelsFirstLayerNorm(), [(1, 32, 16, 16)]),
        ("RMSNorm(decomposed) pattern [torch 17]", RMSNorm(), [tokens]),
        ("GroupNorm pattern [torch 17]", nn.GroupNorm(4, 16), [(1, 16, 16, 16)]),
        ("SiLU pattern [torch 17]", nn.SiLU(), [image]),
        ("HardSwish pattern [torch 17]", nn.Hardswish(), [image]),
        ("HardSigmoid", nn.Hardsigmoid(), [image]),
        ("Attention(MatMul-scale-Softmax-MatMul) pattern [torch 17]", Attention(), heads),
        ("scaled_dot_product_attention pattern [torch 17]", Sdpa(), heads),
        ("DepthToSpace(CRD)", nn.PixelShuffle(2), [(1, 16, 8, 8)]),
        ("PixelUnshuffle pattern [torch 17]", nn.PixelUnshuffle(2), [(1, 4, 16, 16)]),
        ("Resize(nearest)", Interpolate(scale_factor=2, mode="nearest"), [image]),
        ("Resize(linear)", Interpolate(scale_factor=2, mode="bilinear", align_corners=False), [image]),
        ("Resize(linear,align_corners)", Interpolate(scale_factor=2, mode="bilinear", align_corners=True), [image]),
        ("Resize(cubic) pattern [torch 17]", Interpolate(scale_factor=2, mode="bicubic", align_corners=False), [image]),
        ("Resize(nearest, sizes) pattern [torch 17]", Interpolate(size=(24, 24), mode="nearest"), [image]),
    ]


def test_torch_patterns_are_what_torch_onnx_exports(tmp_path):
    """Every torch pattern row (and the single-op rows torch layers export to) against torch.onnx.export + fold."""
    torch = pytest.importorskip("torch")
    from zoocompat_plugins.frontends.pytorch import OPSET

    assert OPSET == op_probes.BASE_OPSET
    torch.manual_seed(0)
    cases = _torch_modules()
    covered = {name for name, _, _ in cases}
    torch_rows = {p.name for p in op_probes.PROBES if p.name.endswith("[torch 17]")}
    assert torch_rows <= covered, sorted(torch_rows - covered)
    for k, (name, module, shapes) in enumerate(cases):
        path = tmp_path / f"torch_{k}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            example = tuple(torch.randn(*shape) for shape in shapes)
            torch.onnx.export(module.eval(), example, str(path), opset_version=OPSET, dynamo=False)
        _assert_same(name, _fold(path))


def _tf_functions():
    import keras
    import tensorflow as tf

    layer_norm = keras.layers.LayerNormalization(epsilon=1e-5)
    layer_norm.build((1, 16, 64))
    upsample = keras.layers.UpSampling2D(2)
    nhwc = (1, 16, 16, 8)
    return [
        ("GELU(tanh) pattern [tf2onnx 17]", lambda x: tf.nn.gelu(x, approximate=True), (1, 16, 64)),
        ("LayerNorm pattern [tf2onnx 17]", layer_norm, (1, 16, 64)),
        ("SiLU/Swish pattern [tf2onnx 17]", keras.activations.silu, (1, 8, 16, 16)),
        ("HardSwish pattern [tf2onnx 17]", keras.activations.hard_swish, (1, 8, 16, 16)),
        ("HardSigmoid pattern [tf2onnx 17]", keras.activations.hard_sigmoid, (1, 8, 16, 16)),
        ("DepthToSpace pattern [tf2onnx 17]", lambda x: tf.nn.depth_to_space(x, 2), (1, 8, 8, 16)),
        ("Resize(nearest) pattern [tf2onnx 17]", lambda x: tf.image.resize(x, (32, 32), method="nearest"), nhwc),
        ("Resize(bilinear) pattern [tf2onnx 17]", lambda x: tf.image.resize(x, (32, 32), method="bilinear"), nhwc),
        ("UpSampling2D(nearest) pattern [tf2onnx 17]", upsample, nhwc),
    ]


def test_tf_patterns_are_what_tf2onnx_converts(tmp_path):
    """Every tf2onnx pattern row against tf2onnx ``from_function`` (the tensorflow frontend's route) + fold."""
    tf = pytest.importorskip("tensorflow")
    tf2onnx = pytest.importorskip("tf2onnx")
    from zoocompat_plugins.frontends.tensorflow import OPSET

    assert OPSET == op_probes.BASE_OPSET
    cases = _tf_functions()
    tf_rows = {p.name for p in op_probes.PROBES if p.name.endswith("[tf2onnx 17]")}
    assert tf_rows == {name for name, _, _ in cases}
    for k, (name, function, shape) in enumerate(cases):
        signature = (tf.TensorSpec(shape, tf.float32, name="x"),)
        path = tmp_path / f"tf_{k}.onnx"
        forward = tf.function(lambda x, f=function: f(x), input_signature=signature)
        tf2onnx.convert.from_function(forward, input_signature=signature, opset=OPSET, output_path=str(path))
        _assert_same(name, _fold(path))


def _tflite(function, shape, path: Path) -> Any:
    """``function`` as a ``.tflite`` file (TFLiteConverter), then the tflite frontend's route: tf2onnx
    ``from_tflite`` at its opset and the fold.
    """
    import tensorflow as tf
    import tf2onnx
    from zoocompat_plugins.frontends.tensorflow import OPSET

    signature = (tf.TensorSpec(shape, tf.float32, name="x"),)
    forward = tf.function(lambda x, f=function: f(x), input_signature=signature)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([forward.get_concrete_function()], forward)
    path.with_suffix(".tflite").write_bytes(converter.convert())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        tf2onnx.convert.from_tflite(str(path.with_suffix(".tflite")), opset=OPSET, output_path=str(path))
    return _fold(path)


def test_tflite_files_give_the_tf_rows_or_their_own(tmp_path):
    """A ``.tflite`` file (the bring-your-own-zoo format) through tf2onnx's TFLite route: where it emits the same
    graph as another row, that row speaks for it; the two graphs it emits differently have rows of their own.
    """
    pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    tf_rows = {name: (function, shape) for name, function, shape in _tf_functions()}
    # the TF row whose function a .tflite file holds -> the row the TFLite route's graph must equal
    same_as = {
        "LayerNorm pattern [tf2onnx 17]": "LayerNorm pattern [tflite 17]",
        "UpSampling2D(nearest) pattern [tf2onnx 17]": "UpSampling2D(nearest) pattern [tflite 17]",
        "SiLU/Swish pattern [tf2onnx 17]": "SiLU pattern [torch 17]",
        "HardSwish pattern [tf2onnx 17]": "HardSwish pattern [torch 17]",
        "HardSigmoid pattern [tf2onnx 17]": "HardSigmoid pattern [tf2onnx 17]",
        "DepthToSpace pattern [tf2onnx 17]": "DepthToSpace pattern [tf2onnx 17]",
        "Resize(nearest) pattern [tf2onnx 17]": "Resize(nearest) pattern [tf2onnx 17]",
        "Resize(bilinear) pattern [tf2onnx 17]": "Resize(bilinear) pattern [tf2onnx 17]",
    }
    cases = [(row, *tf_rows[source]) for source, row in same_as.items()]
    assert {p.name for p in op_probes.PROBES if p.name.endswith("[tflite 17]")} <= {name for name, _, _ in cases}
    for k, (name, function, shape) in enumerate(cases):
        _assert_same(name, _tflite(function, shape, tmp_path / f"tflite_{k}.onnx"))


def test_tf2onnx_cannot_convert_a_tflite_gelu(tmp_path):
    """Why no GELU row for ``.tflite``: the TFLite converter writes one ``GELU`` op, which tf2onnx 1.17 leaves
    unconverted, so a .tflite with a GELU (a ViT, a BERT) does not convert at all.
    """
    tf = pytest.importorskip("tensorflow")
    pytest.importorskip("tf2onnx")
    for approximate in (False, True):
        with pytest.raises(Exception, match="GELU"):
            gelu = lambda x, a=approximate: tf.nn.gelu(x, approximate=a)  # noqa: E731
            _tflite(gelu, (1, 16, 64), tmp_path / f"gelu_{approximate}.onnx")


def test_tf2onnx_cannot_convert_exact_gelu(tmp_path):
    """Why no exact-GELU row for TensorFlow: tf2onnx 1.17 keeps TensorFlow's ``Erfc``, which ONNX does not have."""
    tf = pytest.importorskip("tensorflow")
    tf2onnx = pytest.importorskip("tf2onnx")
    signature = (tf.TensorSpec((1, 16, 64), tf.float32, name="x"),)
    forward = tf.function(lambda x: tf.nn.gelu(x, approximate=False), input_signature=signature)
    path = tmp_path / "gelu.onnx"
    model, _ = tf2onnx.convert.from_function(forward, input_signature=signature, opset=17, output_path=str(path))
    assert "Erfc" in [node.op_type for node in model.graph.node]
    with pytest.raises(Exception, match="Erfc"):
        _fold(path)  # the frontends' finalize step: onnxruntime cannot load the graph


def test_gelu_erf_pattern_shows_the_qnn_2_49_regression_that_the_erf_row_cannot(tmp_path):
    """Real QNN HTP emulator, both releases: the quantized exact-GELU pattern runs whole on 2.47 and loses its Erf
    to the CPU on 2.51, as ViT's GELUs do; the standalone Erf row is refused on both; the op diff says so.
    """
    from zoocompat_plugins.backends.htp import HtpBackend

    from zoocompat.api.cache import ArtifactCache
    from zoocompat.diagnose import ops as ops_table

    backend = HtpBackend()
    for sdk in ("qnn-2.47", "qnn-2.51"):
        if backend.available(sdk):
            pytest.skip(f"{sdk}: {backend.available(sdk)}")
    cache = ArtifactCache(tmp_path / "cache")
    rows = ["Erf"]  # the op type selects the Erf row and both GELU(erf) pattern rows
    old, new = (
        ops_table.run_ops(backend, sdk, ["fp16", "w8a8"], rows, cache=cache) for sdk in ("qnn-2.47", "qnn-2.51")
    )
    patterns = ["GELU(erf) pattern [torch 17]", "Linear+GELU(erf) (ViT MLP) pattern [torch 17]"]
    assert old["ops"]["Erf"] == new["ops"]["Erf"] == {"fp16": "unsupported", "w8a8": "unsupported"}
    for pattern in patterns:
        assert old["ops"][pattern] == {"fp16": "supported", "w8a8": "supported"}, pattern
        assert new["ops"][pattern] == {"fp16": "supported", "w8a8": "unsupported"}, pattern
        assert "Operators of type `Erf` are not supported" in new["reasons"][pattern]["w8a8"][0]
    diff = ops_table.diff_tables(old, new)
    assert [(e["probe"], e["precision"]) for e in diff["regressions"]] == [(p, "w8a8") for p in patterns]
