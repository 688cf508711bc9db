"""zoocompat inspect: layers, shapes, parameters and encodings of FP32 and QDQ ONNX models."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from zoocompat.cli import main
from zoocompat.report.inspect import find_encodings, inspect_onnx

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _conv_model(path, qdq: bool) -> None:
    """Conv(1x3x8x8, 4x3x3x3 + bias) -> Relu; the QDQ variant quantizes input and weight, int8 per channel."""
    weight = np.linspace(-1, 1, 4 * 3 * 3 * 3, dtype=np.float32).reshape(4, 3, 3, 3)
    bias = np.zeros(4, dtype=np.float32)
    nodes, inits = [], [numpy_helper.from_array(bias, "b")]
    x, w = "x", "w"
    if qdq:
        scale = np.full(4, 1 / 127, dtype=np.float32)
        inits += [
            numpy_helper.from_array(np.round(weight * 127).astype(np.int8), "w_q"),
            numpy_helper.from_array(scale, "w_scale"),
            numpy_helper.from_array(np.zeros(4, dtype=np.int8), "w_zero"),
            numpy_helper.from_array(np.array(0.01, dtype=np.float32), "x_scale"),
            numpy_helper.from_array(np.array(128, dtype=np.uint8), "x_zero"),
        ]
        nodes += [
            helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w_dq"], axis=0),
            helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"]),
            helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"]),
        ]
        x, w = "x_dq", "w_dq"
    else:
        inits.append(numpy_helper.from_array(weight, "w"))
    nodes += [
        helper.make_node("Conv", [x, w, "b"], ["c"], name="conv1"),
        helper.make_node("Relu", ["c"], ["y"], name="relu1"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_fp32_listing(tmp_path):
    _conv_model(tmp_path / "model.onnx", qdq=False)
    listing = inspect_onnx(tmp_path / "model.onnx")
    assert [(layer.name, layer.op_type) for layer in listing.layers] == [("conv1", "Conv"), ("relu1", "Relu")]
    conv = listing.layers[0]
    assert conv.input_shapes == [[1, 3, 8, 8], [4, 3, 3, 3], [4]] and conv.output_shapes == [[1, 4, 6, 6]]
    assert conv.params == 4 * 27 + 4 and listing.params == 112
    assert listing.ops_by_type == {"Conv": 1, "Relu": 1} and not listing.quantized
    assert listing.size_fp32_bytes == listing.size_quantized_bytes == 112 * 4
    assert listing.encodings_path is None and conv.encodings == []


def test_qdq_listing_reads_encodings_from_the_graph(tmp_path):
    _conv_model(tmp_path / "model_qdq.onnx", qdq=True)
    listing = inspect_onnx(tmp_path / "model_qdq.onnx")
    assert [layer.op_type for layer in listing.layers] == ["Conv", "Relu"]  # Q/DQ nodes are not layers
    conv = listing.layers[0]
    assert conv.inputs == ["x", "w_q", "b"] and conv.params == 112
    by_tensor = {e.tensor: e for e in conv.encodings}
    weight = by_tensor["w_q"]
    assert weight.bitwidth == 8 and weight.per_channel == 4 and weight.symmetric and weight.source == "qdq"
    assert weight.min == pytest.approx(-128 / 127) and weight.max == pytest.approx(1.0)
    act = by_tensor["x"]
    assert act.bitwidth == 8 and act.offset == -128 and not act.symmetric
    assert act.min == pytest.approx(-1.28) and act.max == pytest.approx(1.27)
    assert listing.quantized and listing.size_quantized_bytes == 108 + 16  # int8 weight, fp32 bias


def test_encodings_json_beside_the_model_wins(tmp_path):
    _conv_model(tmp_path / "model_qdq.onnx", qdq=True)
    enc = {
        "version": "1.0.0",
        "activation_encodings": [
            {"name": "x", "bw": 16, "dtype": "INT", "enc_type": "PER_TENSOR", "is_sym": False,
             "offset": [-100.0], "scale": [0.001]},
            {"name": "y", "bw": 16, "dtype": "INT", "enc_type": "PER_TENSOR", "is_sym": False,
             "offset": [0.0], "scale": [0.002]},
        ],
        "param_encodings": [],
    }  # fmt: skip
    (tmp_path / "model.encodings").write_text(json.dumps(enc))
    assert find_encodings(tmp_path / "model_qdq.onnx") == tmp_path / "model.encodings"
    listing = inspect_onnx(tmp_path / "model_qdq.onnx")
    x = next(e for e in listing.layers[0].encodings if e.tensor == "x")
    assert (x.bitwidth, x.scale, x.offset, x.source) == (16, 0.001, -100.0, "encodings")
    assert x.min == pytest.approx(-0.1) and x.max == pytest.approx(0.001 * (65535 - 100))
    y = next(e for e in listing.layers[1].encodings if e.tensor == "y")
    assert y.bitwidth == 16


def test_cli_text_json_csv_and_errors(tmp_path):
    _conv_model(tmp_path / "model_qdq.onnx", qdq=True)
    runner = CliRunner()
    done = runner.invoke(main, ["inspect", str(tmp_path / "model_qdq.onnx")])
    assert done.exit_code == 0, done.output
    assert "conv1" in done.output and "enc w_q: 8b" in done.output and "per-channel x4" in done.output
    assert "ops by type: Conv 1, Relu 1" in done.output
    data = json.loads(runner.invoke(main, ["inspect", str(tmp_path / "model_qdq.onnx"), "--json"]).output)
    assert data["params"] == 112 and data["layers"][0]["op_type"] == "Conv"
    rows = runner.invoke(main, ["inspect", str(tmp_path / "model_qdq.onnx"), "--csv"]).output.splitlines()
    assert rows[0].startswith("index,name,op_type") and len(rows) == 3
    (tmp_path / "junk.onnx").write_bytes(b"\x00not onnx at all")
    done = runner.invoke(main, ["inspect", str(tmp_path / "junk.onnx")])
    assert done.exit_code == 2 and "junk.onnx: not an ONNX model" in done.output
    done = runner.invoke(main, ["inspect", str(tmp_path / "nope.onnx")])
    assert done.exit_code == 2 and "nope.onnx: no such file" in done.output
    (tmp_path / "model.encodings").write_text("[1]")
    done = runner.invoke(main, ["inspect", str(tmp_path / "model_qdq.onnx")])
    assert done.exit_code == 2 and "not an encodings JSON" in done.output


def test_cli_start_imports_no_onnx():
    code = "import sys, zoocompat.cli, zoocompat.report.inspect; print('onnx' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
