"""The batch convention (zoocompat.api.samples) and the per-sample loops that follow it."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from zoocompat_plugins.backends.ort_runner import _run_all

from zoocompat.api.samples import collect, count, sample, session_ranks
from zoocompat.diagnose.first_bad import run_cpu
from zoocompat.sdk import snpe_io

N = 3


def _batch() -> dict[str, np.ndarray]:
    """``N`` samples of the three-input model: x batched [1, 4], state unbatched [2, 1, 3], k a scalar."""
    return {
        "x": np.arange(N * 4, dtype=np.float32).reshape(N, 4),
        "state": np.arange(N * 6, dtype=np.float32).reshape(N, 2, 1, 3),
        "k": np.arange(2, 2 + N, dtype=np.int64),
    }


def _model() -> onnx.ModelProto:
    """y = x * cast(k) ([1, 4]) and state_out = state + 1 ([2, 1, 3])."""
    nodes = [
        helper.make_node("Cast", ["k"], ["k_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x", "k_float"], ["y"]),
        helper.make_node("Add", ["state", "one"], ["state_out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "three_inputs",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, 1, 3]),
            helper.make_tensor_value_info("k", TensorProto.INT64, []),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [2, 1, 3]),
        ],
        [helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _check(outputs: dict[str, np.ndarray], batch: dict[str, np.ndarray]) -> None:
    assert outputs["y"].shape == (N, 4) and outputs["state_out"].shape == (N, 2, 1, 3)
    np.testing.assert_array_equal(outputs["y"], batch["x"] * batch["k"][:, None].astype(np.float32))
    np.testing.assert_array_equal(outputs["state_out"], batch["state"] + 1)


def test_sample_feeds_batched_scalar_and_unbatched_inputs():
    batch = _batch()
    ranks = {"x": 2, "state": 3, "k": 0}
    assert count(batch) == N and count({}) == 0
    feed = sample(batch, 1, ranks)
    assert list(feed) == ["x", "state", "k"]
    np.testing.assert_array_equal(feed["x"], batch["x"][1:2])
    assert feed["x"].shape == (1, 4)  # batched: the batch dim of 1 kept
    assert feed["state"].shape == (2, 1, 3)  # unbatched: one whole tensor per sample
    np.testing.assert_array_equal(feed["state"], batch["state"][1])
    assert feed["k"].shape == () and int(feed["k"]) == 3  # scalar
    assert list(sample(batch, 0, {"x": 2})) == ["x"]  # inputs the model does not take are left out


def test_sample_keeps_todays_single_image_input():
    images = {"image": np.zeros((5, 3, 8, 8), dtype=np.float32)}
    assert sample(images, 4, {"image": 4})["image"].shape == (1, 3, 8, 8)


def test_collect_concatenates_batch_one_and_stacks_the_rest():
    calls = [[np.full((1, 4), i, np.float32), np.full((2, 1, 3), i), np.float32(i), np.full((1,), i)] for i in range(N)]
    y, state, scalar, one = collect(calls)
    assert y.shape == (N, 4) and y[:, 0].tolist() == [0, 1, 2]
    assert state.shape == (N, 2, 1, 3) and state[:, 0, 0, 0].tolist() == [0, 1, 2]
    assert scalar.shape == (N,) and scalar.tolist() == [0, 1, 2]
    assert one.shape == (N,)  # a [1] output: concatenated along its batch dim of 1
    assert collect([]) == []
    images = collect([[np.zeros((1, 10))] for _ in range(5)])
    assert len(images) == 1 and images[0].shape == (5, 10)  # today's classifier outputs


def test_session_ranks_of_the_three_input_model():
    assert session_ranks(_session(_model())) == {"x": 2, "state": 3, "k": 0}


def test_sample_and_collect_round_trip_a_session():
    batch, session = _batch(), _session(_model())
    assert isinstance(sample(batch, 0, session_ranks(session))["k"], np.ndarray)
    ranks = session_ranks(session)
    names = ["y", "state_out"]
    calls = [session.run(names, sample(batch, i, ranks)) for i in range(N)]
    _check(dict(zip(names, collect(calls), strict=True)), batch)


def test_ort_runner_runs_a_model_with_scalar_and_unbatched_inputs():
    batch = _batch()
    outputs, elapsed = _run_all(_session(_model()), batch)
    assert list(outputs) == ["y", "state_out"] and elapsed >= 0.0
    _check(outputs, batch)


def test_first_bad_run_cpu_runs_a_model_with_scalar_and_unbatched_inputs():
    batch = _batch()
    _check(run_cpu(_model(), batch, optimize=False), batch)


def test_ort_runner_feeds_a_shapeless_input_batched():
    """onnxruntime reports ``[]`` for an input declared without a shape; a 4-d batch array is fed batched."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "shapeless",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    batch = {"x": np.random.default_rng(0).normal(size=(N, 3, 2, 2)).astype(np.float32)}
    outputs, _ = _run_all(_session(model), batch)
    np.testing.assert_array_equal(outputs["y"], np.maximum(batch["x"], 0))
    np.testing.assert_array_equal(run_cpu(model, batch)["y"], np.maximum(batch["x"], 0))


def test_snpe_read_outputs_stacks_unbatched_outputs(tmp_path):
    for n in range(N):
        folder = tmp_path / f"Result_{n}"
        folder.mkdir()
        np.full((1, 4), n, "<f4").tofile(folder / "y.raw")
        np.full((2, 1, 3), n, "<f4").tofile(folder / "state_out.raw")
    outputs = snpe_io.read_outputs(tmp_path, {"y": (1, 4), "state_out": (2, 1, 3)}, N)
    assert outputs["y"].shape == (N, 4) and outputs["state_out"].shape == (N, 2, 1, 3)
    assert outputs["state_out"][:, 1, 0, 2].tolist() == [0, 1, 2]


def test_repro_folder_of_a_model_with_scalar_and_unbatched_inputs(tmp_path):
    """write_repro's input list holds one tensor per input and sample, and its standalone repro.py runs them."""
    import importlib.util

    from zoocompat.diagnose.repro import ReproCase, write_repro

    batch = _batch()
    expected = run_cpu(_model(), batch)
    case = ReproCase(
        cell="c",
        kind="backend",
        model=_model(),
        inputs=batch,
        expected=expected,
        ep="cpu",
        check="sqnr_below",
        threshold_db=20.0,
        observed="nothing",
        expected_from="cpu",
        what="the whole graph",
    )
    out = write_repro(case, tmp_path / "repro")
    lines = (out / "raw" / "input_list.txt").read_text().split()
    assert len(lines) == N * 3 and lines[:3] == ["x:=00000_x.raw", "state:=00000_state.raw", "k:=00000_k.raw"]
    sizes = {name: (out / "raw" / f"00001_{name}.raw").stat().st_size for name in batch}
    assert sizes == {"x": 4 * 4, "state": 6 * 4, "k": 8}  # each .raw in its input's dtype: k is one int64
    np.testing.assert_array_equal(np.fromfile(out / "raw" / "00001_k.raw", "<i8"), [3])
    spec = importlib.util.spec_from_file_location("repro_under_test", out / "repro.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _check(module._run("cpu"), batch)
