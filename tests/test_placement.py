"""Node placement is read from real onnxruntime-qnn verbose logs (trimmed captures in tests/data)."""

from __future__ import annotations

from zoocompat_plugins.backends.ort_session import parse_placement

from tests.conftest import DATA


def test_unsupported_op_falls_back_with_vendor_reason():
    log = (DATA / "qnn_det_fallback.log").read_text()
    placement = parse_placement(log, "QNNExecutionProvider", "htp")
    assert (placement.target_nodes, placement.total_nodes) == (3, 4)
    assert placement.fallback_ops == {"Det": 1}
    assert placement.reasons == [
        "Det: Operators of type `Det` are not supported by QNN EP.Det node `` will not be assigned to QNN EP."
    ]
    assert placement.partitions == 2


def test_whole_graph_on_htp_counts_first_pass_only():
    log = (DATA / "qnn_all_on_htp.log").read_text()
    placement = parse_placement(log, "QNNExecutionProvider", "htp")
    assert placement.fallback_ops == {}
    # 32 Conv, 28 HardSwish, ..., a 2-node Reshape+Gemm group; no layout Transposes
    assert placement.target_nodes == placement.total_nodes == 73
    assert placement.partitions == 1


def test_cpu_placement():
    log = "Node(s) placed on [CPUExecutionProvider]. Number of nodes: 26"
    placement = parse_placement(log, "CPUExecutionProvider", "cpu")
    assert (placement.target_nodes, placement.total_nodes, placement.fraction) == (26, 26, 1.0)


def test_graph_io_quantize_nodes_are_not_fallback():
    """Real log of a QDQ ONet on HTP: only the graph-input Q and graph-output DQs stay on CPU."""
    log = (DATA / "qnn_qdq_io_boundary.log").read_text()
    placement = parse_placement(log, "QNNExecutionProvider", "htp")
    assert placement.io_nodes == 4
    assert placement.fallback_ops == {}
    assert placement.target_nodes == placement.total_nodes > 0


def test_reason_found_after_a_quantized_node_unit():
    """A QDQ node unit lists DQ, op and Q before its REASON line; the reason must still be read."""
    log = (DATA / "qnn_qdq_erf_fallback.log").read_text()
    placement = parse_placement(log, "QNNExecutionProvider", "QNN HTP")
    assert placement.fallback_ops == {"Erf": 1}
    assert placement.reasons == [
        "Erf: Operators of type `Erf` are not supported by QNN EP.Erf node `Erf_0` will not be assigned to QNN EP."
    ]
    assert placement.io_nodes == 2
