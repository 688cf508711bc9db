"""The SNPE route of the htp / dsp backends (``--sdk snpe-<version>``): command building, raw-file I/O,
``Result_N`` reading, ``snpe-dlc-info`` parsing and the reasons a cell is unavailable.

No SNPE SDK exists on this machine, so nothing here runs SNPE: the tools' argument lists are checked
as built, and the one end-to-end test drives :class:`SnpeModel` with a stand-in for ``subprocess.run``
that writes what the documented tools write (a ``.dlc`` file, ``output/Result_N/<name>.raw``).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from zoocompat_plugins.backends import snpe
from zoocompat_plugins.backends.dsp import DspBackend
from zoocompat_plugins.backends.htp import HtpBackend

from tests.test_backends import _conv_relu_det
from zoocompat.api.errors import CellError
from zoocompat.sdk import releases as sdks
from zoocompat.sdk import snpe_io

TOOLS_DIR = "bin/x86_64-linux-clang"

# The layer table in the format SNPE's documentation shows for `snpe-dlc-info` (columns Id, Name, Type,
# Inputs, Outputs, Out Dims, Runtimes, Parameters; Runtimes letters A=AIP D=DSP G=GPU C=CPU; a parameter
# that needs more lines continues on rows with an empty Id). Written from that format for this test;
# it is not a capture from a real SDK.
DLC_INFO = """\
DLC info for: /tmp/model.dlc
Model Version: N/A
Model Copyright:N/A
-----------------------------------------------------------------------------------------------------
| Id | Name   | Type          | Inputs | Outputs | Out Dims  | Runtimes | Parameters               |
-----------------------------------------------------------------------------------------------------
| 0  | x      | data          | x      | x       | 1x4x4x1   | A D G C  | input preprocessing: ... |
| 1  | conv_0 | convolutional | x      | c       | 1x4x4x4   | A D G C  | padding x: 1             |
|    |        |               |        |         |           |          | bias encoding: ...       |
| 2  | relu_0 | neuron        | c      | y       | 1x4x4x4   | A D G C  | a: 0                     |
| 3  | erf_0  | erf           | y      | e       | 1x4x4x4   | G C      |                          |
| 4  | det_0  | det           | e      | d       | 1x4       | C        |                          |
-----------------------------------------------------------------------------------------------------
Note: The supported runtimes column assumes a processor target of Snapdragon 835 (8998)
Total parameters: 40 (0 MB assuming single precision float)
"""


def _fake_snpe(root: Path, version: bytes = b"2.22.0", tools=snpe.TOOLS) -> Path:
    """A stand-in SNPE_ROOT layout: files with the tools' names, libSNPE.so holding an AISW_VERSION string."""
    (root / TOOLS_DIR).mkdir(parents=True)
    for tool in tools:
        (root / TOOLS_DIR / tool).write_text("#!/bin/false\n")
    (root / sdks.HOST_LIB).mkdir(parents=True)
    (root / sdks.HOST_LIB / "libSNPE.so").write_bytes(b"\x7fELF AISW_VERSION: " + version + b"\x00")
    return root


def test_convert_quantize_run_and_info_commands_are_argument_lists():
    bin_dir = Path("/sdk/bin/x86_64-linux-clang")
    assert snpe.convert_command(bin_dir, Path("m.onnx"), Path("m.dlc"), {"x": (1, 3, 224, 224)}) == [
        "/sdk/bin/x86_64-linux-clang/snpe-onnx-to-dlc",
        "--input_network",
        "m.onnx",
        "--output_path",
        "m.dlc",
        "--input_dim",
        "x",
        "1,3,224,224",
    ]
    with_overrides = snpe.convert_command(bin_dir, Path("m.onnx"), Path("m.dlc"), {}, Path("model.encodings"))
    assert with_overrides[-2:] == ["--quantization_overrides", "model.encodings"]
    q8 = snpe.quantize_command(bin_dir, Path("m.dlc"), Path("list.txt"), Path("q.dlc"), "w8a8")
    assert q8 == [
        "/sdk/bin/x86_64-linux-clang/snpe-dlc-quantize",
        "--input_dlc",
        "m.dlc",
        "--input_list",
        "list.txt",
        "--output_dlc",
        "q.dlc",
        "--override_params",
    ]
    q16 = snpe.quantize_command(bin_dir, Path("m.dlc"), Path("list.txt"), Path("q.dlc"), "w8a16", override=False)
    assert q16[-2:] == ["--act_bitwidth", "16"] and "--override_params" not in q16
    with pytest.raises(ValueError, match="no integer precision 'fp16'"):
        snpe.quantize_command(bin_dir, Path("m.dlc"), Path("l"), Path("q"), "fp16")
    run = snpe.net_run_command("snpe-net-run", "m.dlc", "list.txt", "out", "htp", cpu_fallback=True)
    assert run == [
        "snpe-net-run",
        "--container",
        "m.dlc",
        "--input_list",
        "list.txt",
        "--output_dir",
        "out",
        "--use_dsp",
        "--enable_cpu_fallback",
    ]
    assert snpe.net_run_command("n", "m", "l", "o", "dsp")[-1] == "--use_dsp"
    assert snpe.net_run_command("n", "m", "l", "o", "gpu")[-1] == "--use_gpu"
    assert snpe.net_run_command("n", "m", "l", "o", "cpu", cpu_fallback=True)[-1] == "o"  # CPU: the default runtime
    assert snpe.dlc_info_command(bin_dir, Path("m.dlc"))[1:] == ["-i", "m.dlc"]
    assert snpe.PRECISIONS == {"cpu": ("fp32",), "gpu": ("fp16",), "dsp": ("w8a8",), "htp": ("w8a8", "w8a16")}


def test_raw_inputs_round_trip_as_float32_little_endian(tmp_path):
    from zoocompat.model.input_list import read_input_list

    rng = np.random.default_rng(0)
    batch = {"x": rng.standard_normal((3, 1, 4, 4)).astype(np.float64), "y.in": np.arange(6.0).reshape(3, 2)}
    listing = snpe_io.write_inputs(batch, tmp_path / "in")
    lines = listing.read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("x:=/") and " y.in:=/" in lines[0]
    first = tmp_path / "in" / "00000_x.raw"
    assert first.stat().st_size == 16 * 4  # float32, one sample with its batch dim of 1
    assert (tmp_path / "in" / "00001_y_in.raw").read_bytes() == np.array([2.0, 3.0], dtype="<f4").tobytes()
    back = read_input_list(listing, {"x": (1, 1, 4, 4), "y.in": (1, 2)})
    np.testing.assert_array_equal(np.concatenate([s["x"] for s in back]), batch["x"].astype(np.float32))
    single = snpe_io.write_inputs({"x": batch["x"]}, tmp_path / "dev", list_prefix="inputs/")
    assert single.read_text().splitlines() == ["inputs/00000.raw", "inputs/00001.raw", "inputs/00002.raw"]


def test_result_folders_are_read_back_with_the_models_shapes(tmp_path):
    out = tmp_path / "output"
    for n in (0, 1, 10):  # Result_10 after Result_1: ordered by number, not by name
        (out / f"Result_{n}").mkdir(parents=True)
        np.full((1, 4), n, dtype="<f4").tofile(out / f"Result_{n}" / "prob.raw")
        np.full((1, 2, 2), -n, dtype="<f4").tofile(out / f"Result_{n}" / "_1_out.raw")  # QNN's sanitized "1/out"
    assert [p.name for p in snpe_io.result_dirs(out)] == ["Result_0", "Result_1", "Result_10"]
    with pytest.raises(CellError, match=r"no Result_N folder for samples \[2, 3"):
        snpe_io.read_outputs(out, {"prob": (1, 4)}, 11)
    for n in range(2, 10):
        (out / f"Result_{n}").mkdir()
        np.full((1, 4), n, dtype="<f4").tofile(out / f"Result_{n}" / "prob.raw")
        np.full((1, 2, 2), -n, dtype="<f4").tofile(out / f"Result_{n}" / "_1_out.raw")
    outputs = snpe_io.read_outputs(out, {"prob": (1, 4), "1/out": (1, 2, 2)}, 11)
    assert outputs["prob"].shape == (11, 4) and outputs["prob"].dtype == np.float32
    assert outputs["prob"][:, 0].tolist() == list(range(11)) and outputs["1/out"][3, 1, 1] == -3
    np.zeros(3, dtype="<f4").tofile(out / "Result_0" / "prob.raw")
    with pytest.raises(CellError, match=r"12 bytes, expected 16 \(float32 little-endian, shape \[1, 4\]\)"):
        snpe_io.read_outputs(out, {"prob": (1, 4)}, 1)
    with pytest.raises(CellError, match=r"no other\.raw .* found \["):
        snpe_io.read_outputs(out, {"other": (1,)}, 1)


def test_dlc_info_gives_coverage_per_runtime():
    layers = snpe.dlc_layers(DLC_INFO)
    assert [layer.name for layer in layers] == ["x", "conv_0", "relu_0", "erf_0", "det_0"]
    dsp = snpe.parse_dlc_info(DLC_INFO, "htp")
    assert (dsp.target_nodes, dsp.total_nodes, dsp.fallback_ops) == (3, 5, {"erf": 1, "det": 1})
    assert dsp.reasons[0] == "erf (erf_0): not supported on the D runtime (dlc-info: C G)"
    gpu = snpe.parse_dlc_info(DLC_INFO, "gpu")
    assert (gpu.target_nodes, gpu.fallback_ops) == (4, {"det": 1})
    with pytest.raises(CellError, match="no layer table"):
        snpe.parse_dlc_info("DLC info for: x.dlc\n", "htp")


def test_snpe_cells_are_unavailable_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.delenv("SNPE_ROOT", raising=False)
    reason = "SNPE_ROOT is not set (a local SNPE SDK is needed for snpe-2.22 cells)"
    assert HtpBackend().available("snpe-2.22") == reason and DspBackend().available("snpe-2.22") == reason
    root = _fake_snpe(tmp_path / "snpe", tools=("snpe-onnx-to-dlc", "snpe-net-run"))
    monkeypatch.setenv("SNPE_ROOT", str(root))
    assert HtpBackend().available("snpe-2.22") == (
        f"tool snpe-dlc-quantize, snpe-dlc-info not found under $SNPE_ROOT/{TOOLS_DIR} ({root / TOOLS_DIR})"
    )
    assert HtpBackend().available("snpe-2.21") == f"SNPE_ROOT ({root}) holds snpe-2.22, not snpe-2.21"
    for tool in ("snpe-dlc-quantize", "snpe-dlc-info"):
        (root / TOOLS_DIR / tool).write_text("")
    assert HtpBackend().available("snpe-2.22") is None
    info = HtpBackend().describe("snpe-2.22")
    assert info["sdk"] == "snpe-2.22" and info["snpe_version"] == "2.22.0" and "--use_dsp" in info["runtime"]
    assert DspBackend().describe("snpe-2.22")["strict"] is True
    with pytest.raises(CellError, match="SNPE's htp runtime takes w8a8, w8a16, not fp16") as error:
        HtpBackend().compile(Path("m.onnx"), "fp16", "snpe-2.22", tmp_path / "w")
    assert error.value.category == "unsupported_op"


def test_the_snpe_flow_runs_the_tools_in_order_and_reads_the_outputs(tmp_path, monkeypatch):
    """The whole flow against a stand-in for subprocess.run that writes what the tools write (no SNPE here)."""
    root = _fake_snpe(tmp_path / "snpe")
    monkeypatch.setenv("SNPE_ROOT", str(root))
    (tmp_path / "q").mkdir()
    model = _conv_relu_det(tmp_path / "q" / "model_qdq.onnx", with_det=False)
    (tmp_path / "q" / "model.encodings").write_text("{}")
    calls: list[list[str]] = []

    def fake_run(argv, capture_output, text, timeout, env):
        assert isinstance(argv, list) and timeout > 0 and str(root / sdks.HOST_LIB) in env["LD_LIBRARY_PATH"]
        calls.append(argv)
        tool = Path(argv[0]).name
        if tool in ("snpe-onnx-to-dlc", "snpe-dlc-quantize"):
            Path(argv[argv.index("--output_path" if tool == "snpe-onnx-to-dlc" else "--output_dlc") + 1]).write_text("")
        if tool == "snpe-dlc-info":
            return subprocess.CompletedProcess(argv, 0, DLC_INFO.replace("G C      |", "A D G C  |"), "")
        if tool == "snpe-net-run":
            listed = Path(argv[argv.index("--input_list") + 1]).read_text().split()
            for n, raw in enumerate(listed):  # the "runtime": y = 2 * mean(x), written as SNPE writes outputs
                result = Path(argv[argv.index("--output_dir") + 1]) / f"Result_{n}"
                result.mkdir(parents=True)
                np.full((1, 4, 4, 4), 2 * np.fromfile(raw, dtype="<f4").mean(), dtype="<f4").tofile(result / "y.raw")
        return subprocess.CompletedProcess(argv, 0, "ok", "")

    backend = HtpBackend()
    compiled = backend.compile(model, "w8a16", "snpe-2.22", tmp_path / "work")
    compiled.run_tool = fake_run
    x = np.random.default_rng(3).standard_normal((2, 1, 4, 4)).astype(np.float32)
    result = compiled.run({"x": x})
    assert [Path(c[0]).name for c in calls] == list(snpe.TOOLS[:2]) + ["snpe-dlc-info", "snpe-net-run"]
    assert calls[0][calls[0].index("--quantization_overrides") + 1] == str(tmp_path / "q" / "model.encodings")
    assert calls[1][-3:] == ["--act_bitwidth", "16", "--override_params"]
    assert calls[3][-2:] == ["--use_dsp", "--enable_cpu_fallback"]  # htp, not strict: fallback allowed
    assert result.outputs["y"].shape == (2, 4, 4, 4)
    np.testing.assert_allclose(result.outputs["y"][:, 0, 0, 0], 2 * x.reshape(2, -1).mean(axis=1), rtol=1e-5)
    assert result.placement.fallback_ops == {"det": 1} and result.placement.target == "htp (SNPE)"
    strict = DspBackend().compile(model, "w8a8", "snpe-2.22", tmp_path / "strict")
    calls.clear()
    strict.run_tool = fake_run
    strict.run({"x": x})
    assert calls[3][-1] == "--use_dsp" and "--act_bitwidth" not in calls[1]  # dsp: no fallback, 8-bit
