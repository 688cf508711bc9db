"""The differential repro's parts: regions cut with their Q/DQ, neighbourhoods, and the grow-then-shrink search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zoocompat.diagnose import op_probes
from zoocompat.diagnose.first_bad import region_model, run_cpu, with_outputs
from zoocompat.diagnose.repro_diff import Outcome, _Search, neighbours, separate

pytest.importorskip("onnxruntime")

#: exact GELU as torch.onnx writes it at opset 17, after a MatMul with real weights: the ViT MLP's shape
GELU = op_probes.Probe(
    "gelu-block",
    "Erf",
    (op_probes.In("x", (1, 16, 32), low=-2.0, high=2.0),),
    (
        op_probes.Node("MatMul", ("x", "w"), ("h",)),
        op_probes.Node("Div", ("h", "sqrt2"), ("d",)),
        op_probes.Node("Erf", ("d",), ("e",)),
        op_probes.Node("Add", ("e", "one"), ("a",)),
        op_probes.Node("Mul", ("h", "a"), ("m",)),
        op_probes.Node("Mul", ("m", "half"), ("y",)),
    ),
    consts={
        "w": op_probes.Rand((32, 32)),
        "sqrt2": np.array(1.4142135, np.float32),
        "one": np.array(1.0, np.float32),
        "half": np.array(0.5, np.float32),
    },
)


@pytest.fixture(scope="module")
def qdq(tmp_path_factory):
    import onnx

    root = tmp_path_factory.mktemp("gelu")
    float_path = root / "float.onnx"
    float_path.write_bytes(op_probes.build_model(GELU).SerializeToString())
    path = op_probes.quantize_probe(float_path, "w8a8", op_probes.calibration_samples(GELU), root / "qdq.onnx")
    return onnx.load(str(path))


def _index(model, op: str, nth: int = 0) -> int:
    return [i for i, n in enumerate(model.graph.node) if n.op_type == op][nth]


def test_neighbours_look_through_qdq_pairs(qdq):
    adjacent = neighbours(qdq)
    ops = {i: qdq.graph.node[i].op_type for i in adjacent}
    assert sorted(ops.values()) == ["Add", "Div", "Erf", "MatMul", "Mul", "Mul"]  # no Q/DQ among them
    erf = _index(qdq, "Erf")
    assert sorted(ops[j] for j in adjacent[erf]) == ["Add", "Div"]
    matmul = _index(qdq, "MatMul")
    assert sorted(ops[j] for j in adjacent[matmul]) == ["Div", "Mul"]  # the GELU's two readers of h


def test_a_region_keeps_its_inner_qdq_and_computes_what_the_full_model_does(qdq):
    region = {_index(qdq, "Div"), _index(qdq, "Erf"), _index(qdq, "Add")}
    sub, feeds = region_model(qdq, region)
    ops = [n.op_type for n in sub.graph.node]
    assert [op for op in ops if op not in ("QuantizeLinear", "DequantizeLinear")] == ["Div", "Erf", "Add"]
    assert ops.count("QuantizeLinear") >= 3  # the input's, and the pairs between Div, Erf and Add
    assert feeds == ["h"] and len(sub.graph.output) == 1
    x = op_probes.make_inputs(GELU, 2)
    full = run_cpu(with_outputs(qdq, ["h", sub.graph.output[0].name]), x, optimize=False)
    alone = run_cpu(sub, {"h": full["h"]}, optimize=False)
    name = sub.graph.output[0].name
    assert np.array_equal(alone[name], full[name])  # the same quantized values in, the same out


class _Scripted(_Search):
    """The search over a predicate of our own: the releases differ once both ``needed`` nodes are in."""

    def __init__(self, model, needed: set[int]) -> None:
        super().__init__(None, None, model, {}, "qnn-2.47", "qnn-2.51", "fallback", 0.0, Path("."))
        self.needed = needed

    def check(self, region):
        self.checks += 1
        bad = self.needed <= region
        outcomes = [Outcome("qnn-2.51", bad, "refused" if bad else "ran"), Outcome("qnn-2.47", False, "ran")]
        return bad, outcomes, (None, {}, {})


def test_the_search_grows_to_the_first_separating_region_then_drops_what_is_not_needed(qdq):
    erf, matmul, last = _index(qdq, "Erf"), _index(qdq, "MatMul"), _index(qdq, "Mul", 1)
    found = separate(_Scripted(qdq, {erf, matmul}), erf)
    assert found.region == {erf, matmul}  # grown two hops (Div, Add, then MatMul and Mul), shrunk back
    assert len(found.tried) == 3 and found.tried[0].startswith("1 compute node: Erf")
    none = separate(_Scripted(qdq, {erf, 10_000}), erf)  # a node that is not there: nothing separates
    assert none.region is None and none.largest == 6 and last in neighbours(qdq)
