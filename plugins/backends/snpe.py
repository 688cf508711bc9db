"""SNPE's own tools behind the ``htp`` and ``dsp`` backends: cells with ``--sdk snpe-<version>``.

SNPE ids name a user's local SNPE SDK (``$SNPE_ROOT``; no SNPE SDK can be
installed from a package index). The backend names stay those of the matrix:
an ``htp`` or ``dsp`` cell whose SDK is ``snpe-2.22`` runs the SNPE flow
instead of onnxruntime-qnn, so its row sits next to the QNN releases in every
table and gate:

1. ``snpe-onnx-to-dlc --input_network model.onnx --output_path model.dlc``
   (``--input_dim NAME d1,d2,..`` per input: the card's static dims;
   ``--quantization_overrides model.encodings`` for a quantized cell, the
   AIMET encodings every backend applies; the QDQ nodes fold into the DLC's
   encodings);
2. quantized cells: ``snpe-dlc-quantize --input_dlc model.dlc --input_list
   input_list.txt --output_dlc model_q.dlc --override_params`` (``--act_bitwidth 16``
   for ``w8a16``);
3. ``snpe-dlc-info -i model.dlc``: the per-layer ``Runtimes`` column gives the
   coverage (layers the runtime supports / all layers, the others by type);
4. ``snpe-net-run --container model.dlc --input_list input_list.txt --output_dir
   output`` plus the runtime flag, on the host or, with ``--device adb:SERIAL``,
   on a phone (:mod:`zoocompat.sdk.device`); ``output/Result_N/<name>.raw`` are read
   back with the model's output shapes (:mod:`zoocompat.sdk.snpe_io`).

Runtimes and precisions: ``htp`` -> ``--use_dsp`` (the DSP runtime runs on the
HTP of V68+ SoCs), ``w8a8`` / ``w8a16``, with ``--enable_cpu_fallback`` unless
the session is strict (``--strict-npu``); ``dsp`` -> ``--use_dsp``, ``w8a8``, no
fallback. SNPE's CPU (fp32, the default runtime) and GPU (``--use_gpu``, fp16
storage) runtimes are in :data:`RUNTIME_FLAGS` / :data:`PRECISIONS` for the
command builders, but get no matrix cells: ``cpu`` and ``gpu`` carry no SDK axis.

Every tool runs with an argument list and a timeout, never a shell string. The
flag names follow SNPE 2.x's ``--help`` as documented; check them against your
SDK's ``--help`` when a tool rejects one (the tool's own message is the cell's
reason). Nothing of SNPE runs on a host without ``$SNPE_ROOT``: there every
such cell is skipped with the reason, and the plumbing is unit-tested
(tests/test_snpe.py).
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoocompat.api import Placement, RunResult
from zoocompat.api.errors import CellError
from zoocompat.sdk import device as adb_device
from zoocompat.sdk import releases as sdks
from zoocompat.sdk import snpe_io

__all__ = [
    "PRECISIONS",
    "RUNTIME_FLAGS",
    "TOOLS",
    "SnpeModel",
    "SnpeRoute",
    "convert_command",
    "dlc_info_command",
    "is_snpe",
    "net_run_command",
    "parse_dlc_info",
    "quantize_command",
]

HOST_BIN = "bin/x86_64-linux-clang"
TOOLS = ("snpe-onnx-to-dlc", "snpe-dlc-quantize", "snpe-net-run", "snpe-dlc-info")
#: precisions per backend name on SNPE
PRECISIONS: dict[str, tuple[str, ...]] = {
    "cpu": ("fp32",),
    "gpu": ("fp16",),
    "dsp": ("w8a8",),
    "htp": ("w8a8", "w8a16"),
}
#: ``snpe-net-run`` runtime flags per backend name (CPU is the tool's default runtime)
RUNTIME_FLAGS: dict[str, list[str]] = {"cpu": [], "gpu": ["--use_gpu"], "dsp": ["--use_dsp"], "htp": ["--use_dsp"]}
#: the letter of each backend's runtime in ``snpe-dlc-info``'s Runtimes column (A=AIP, D=DSP, G=GPU, C=CPU)
RUNTIME_LETTER = {"cpu": "C", "gpu": "G", "dsp": "D", "htp": "D"}
ACT_BITWIDTH = {"w8a8": 8, "w8a16": 16}
TOOL_TIMEOUT_S = 900.0


def is_snpe(sdk: str | None) -> bool:
    """Whether ``sdk`` names an SNPE SDK (``snpe-<version>``)."""
    return bool(sdk) and sdk.startswith("snpe-")


# -- command building ------------------------------------------------------


def convert_command(
    bin_dir: Path, onnx: Path, dlc: Path, input_dims: dict[str, tuple[int, ...]], overrides: Path | None = None
) -> list[str]:
    """``snpe-onnx-to-dlc`` for ``onnx`` -> ``dlc`` with each input's static dims (and AIMET encodings)."""
    argv = [str(Path(bin_dir) / "snpe-onnx-to-dlc"), "--input_network", str(onnx), "--output_path", str(dlc)]
    for name, dims in input_dims.items():
        argv += ["--input_dim", name, ",".join(str(int(d)) for d in dims)]
    if overrides is not None:
        argv += ["--quantization_overrides", str(overrides)]
    return argv


def quantize_command(
    bin_dir: Path, dlc: Path, input_list: Path, out_dlc: Path, precision: str, override: bool = True
) -> list[str]:
    """``snpe-dlc-quantize`` of ``dlc`` at ``precision`` (``--act_bitwidth 16`` for w8a16), keeping the
    converter's overrides (``--override_params``) when ``override``.
    """
    if precision not in ACT_BITWIDTH:
        raise ValueError(f"snpe-dlc-quantize: no integer precision {precision!r} (known: {', '.join(ACT_BITWIDTH)})")
    argv = [
        str(Path(bin_dir) / "snpe-dlc-quantize"),
        "--input_dlc",
        str(dlc),
        "--input_list",
        str(input_list),
        "--output_dlc",
        str(out_dlc),
    ]
    if ACT_BITWIDTH[precision] != 8:
        argv += ["--act_bitwidth", str(ACT_BITWIDTH[precision])]
    if override:
        argv.append("--override_params")
    return argv


def net_run_command(
    net_run: str, dlc: str, input_list: str, output_dir: str, backend: str, cpu_fallback: bool = False
) -> list[str]:
    """``snpe-net-run`` of ``dlc`` on ``backend``'s runtime (``--enable_cpu_fallback`` when allowed)."""
    if backend not in RUNTIME_FLAGS:
        raise ValueError(f"snpe-net-run: no SNPE runtime for backend {backend!r}")
    argv = [net_run, "--container", dlc, "--input_list", input_list, "--output_dir", output_dir]
    argv += RUNTIME_FLAGS[backend]
    if cpu_fallback and backend != "cpu":
        argv.append("--enable_cpu_fallback")
    return argv


def dlc_info_command(bin_dir: Path, dlc: Path) -> list[str]:
    """``snpe-dlc-info -i dlc``."""
    return [str(Path(bin_dir) / "snpe-dlc-info"), "-i", str(dlc)]


# -- snpe-dlc-info ----------------------------------------------------------


@dataclass
class DlcLayer:
    """One row of ``snpe-dlc-info``'s layer table."""

    id: int
    name: str
    type: str
    runtimes: set[str] = field(default_factory=set)


def dlc_layers(text: str) -> list[DlcLayer]:
    """The layers of ``snpe-dlc-info``'s table: the ``| Id | Name | Type | ... | Runtimes | ... |`` header
    locates the columns; rows with an integer Id are layers, rows with an empty Id continue the one above.
    """
    columns: dict[str, int] | None = None
    layers: list[DlcLayer] = []
    for line in text.splitlines():
        if not line.strip().startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if columns is None:
            lowered = [c.lower() for c in cells]
            if "id" in lowered and "runtimes" in lowered:
                columns = {name: i for i, name in enumerate(lowered)}
            continue
        if len(cells) <= columns["runtimes"] or not cells[columns["id"]].isdigit():
            continue
        layers.append(
            DlcLayer(
                int(cells[columns["id"]]),
                cells[columns.get("name", 1)],
                cells[columns.get("type", 2)],
                set(cells[columns["runtimes"]].split()),
            )
        )
    return layers


def parse_dlc_info(text: str, backend: str) -> Placement:
    """Coverage of ``backend``'s SNPE runtime from ``snpe-dlc-info`` output: layers whose Runtimes column
    has the runtime's letter are on the target, the rest are counted by type with a reason each.
    """
    layers = dlc_layers(text)
    if not layers:
        raise CellError("crash", "snpe-dlc-info printed no layer table (no '| Id | ... | Runtimes |' header)")
    letter = RUNTIME_LETTER[backend]
    fallback: dict[str, int] = {}
    reasons = []
    for layer in layers:
        if letter in layer.runtimes:
            continue
        fallback[layer.type] = fallback.get(layer.type, 0) + 1
        supported = " ".join(sorted(layer.runtimes)) or "none"
        reasons.append(f"{layer.type} ({layer.name}): not supported on the {letter} runtime (dlc-info: {supported})")
    on_target = len(layers) - sum(fallback.values())
    return Placement(f"{backend} (SNPE)", on_target, len(layers), fallback, reasons, 1 if on_target else 0)


# -- availability and the flow ----------------------------------------------


def unavailable_reason(sdk: str) -> str | None:
    """Why ``sdk`` (``snpe-<version>``) cannot run here, or ``None`` when ``$SNPE_ROOT`` has that SDK's tools."""
    local = sdks.local_snpe()
    if local is None:
        return f"SNPE_ROOT is not set (a local SNPE SDK is needed for {sdk} cells)"
    if local.id != sdk:
        return f"SNPE_ROOT ({local.root}) holds {local.id}, not {sdk}"
    bin_dir = Path(local.root) / HOST_BIN
    missing = [tool for tool in TOOLS if not (bin_dir / tool).is_file()]
    if missing:
        return f"tool {', '.join(missing)} not found under $SNPE_ROOT/{HOST_BIN} ({bin_dir})"
    return None


def _tool_env(root: Path) -> dict[str, str]:
    """The environment SNPE's envsetup.sh gives its tools: its host libraries, python modules and binaries."""
    env = dict(os.environ)

    def prepend(key: str, value: Path) -> None:
        env[key] = os.pathsep.join([str(value), *filter(None, [env.get(key)])])

    prepend("LD_LIBRARY_PATH", root / sdks.HOST_LIB)
    prepend("PYTHONPATH", root / "lib" / "python")
    prepend("PATH", root / HOST_BIN)
    env["SNPE_ROOT"] = str(root)
    return env


def _output_shapes(onnx_path: Path) -> dict[str, tuple[int, ...]]:
    """Per-sample output shapes (batch dim 1) of an ONNX model, from its graph outputs."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    shapes = {}
    for output in model.graph.output:
        dims = [d.dim_value if d.HasField("dim_value") else 1 for d in output.type.tensor_type.shape.dim]
        shapes[output.name] = (1, *dims[1:]) if dims else (1,)
    return shapes


@dataclass
class SnpeModel:
    """A model run through SNPE's tools on ``run``: convert, quantize, dlc-info, net-run."""

    onnx_path: Path
    backend: str
    precision: str
    root: Path
    workdir: Path
    strict: bool = False
    device: str | None = None
    sdk_id: str = "snpe"
    htp_arch: str = "75"
    timeout_s: float = TOOL_TIMEOUT_S
    run_tool: Any = subprocess.run

    def _tool(self, argv: list[str], category: str, what: str) -> str:
        log = self.workdir / "runner.log"
        try:
            done = self.run_tool(argv, capture_output=True, text=True, timeout=self.timeout_s, env=_tool_env(self.root))
        except subprocess.TimeoutExpired:
            raise CellError("timeout", f"{what} did not finish within {self.timeout_s:.0f} s; log: {log}") from None
        output = (done.stdout or "") + (done.stderr or "")
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"$ {' '.join(argv)}\n{output}\n")
        if done.returncode != 0:
            tail = " | ".join(output.strip().splitlines()[-3:]) or "no output"
            raise CellError(category, f"{what} failed (exit {done.returncode}): {tail}; log: {log}")
        return output

    def run(self, inputs: dict[str, np.ndarray]) -> RunResult:
        """Convert, quantize (integer precisions), read coverage, run every sample, read the outputs back."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "runner.log").write_text("")
        bin_dir = self.root / HOST_BIN
        host_inputs = snpe_io.write_inputs(inputs, self.workdir / "inputs_host")
        dlc = self.workdir / "model.dlc"
        dims = {name: (1, *array.shape[1:]) for name, array in inputs.items()}
        encodings = self.onnx_path.with_name("model.encodings")
        quantized = self.precision in ACT_BITWIDTH
        start = time.perf_counter()
        overrides = encodings if quantized and encodings.is_file() else None
        self._tool(convert_command(bin_dir, self.onnx_path, dlc, dims, overrides), "convert_error", "snpe-onnx-to-dlc")
        if quantized:
            out = self.workdir / "model_q.dlc"
            argv = quantize_command(bin_dir, dlc, host_inputs, out, self.precision, override=overrides is not None)
            self._tool(argv, "quantize_error", "snpe-dlc-quantize")
            dlc = out
        compile_s = time.perf_counter() - start
        placement = parse_dlc_info(self._tool(dlc_info_command(bin_dir, dlc), "crash", "snpe-dlc-info"), self.backend)
        fallback = not self.strict and self.backend == "htp"
        category = "unsupported_op" if placement.fallback_ops else "crash"
        count = len(next(iter(inputs.values())))
        start = time.perf_counter()
        if self.device:
            output_dir = self._run_on_device(dlc, inputs, fallback)
        else:
            output_dir = self.workdir / "output"
            argv = net_run_command(
                str(bin_dir / "snpe-net-run"), str(dlc), str(host_inputs), str(output_dir), self.backend, fallback
            )
            self._tool(argv, category, f"snpe-net-run ({' '.join(RUNTIME_FLAGS[self.backend]) or 'cpu'})")
        run_s = time.perf_counter() - start
        outputs = snpe_io.read_outputs(output_dir, _output_shapes(self.onnx_path), count)
        return RunResult(
            outputs,
            placement,
            compile_s,
            run_s,
            {
                "per_sample_ms": 1000 * run_s / max(count, 1),
                "runtime": {"snpe_root": str(self.root), "dlc": str(dlc), "device": self.device},
            },
        )

    def _run_on_device(self, dlc: Path, inputs: dict[str, np.ndarray], fallback: bool) -> Path:
        local = self.workdir / "device"
        inputs_dir = local / "inputs"
        snpe_io.write_inputs(inputs, inputs_dir, list_prefix="inputs/")
        argv = net_run_command("snpe-net-run", dlc.name, "inputs/input_list.txt", "output", self.backend, fallback)
        run_args = argv[1:]  # the binary's path on the device is the plan's
        steps = adb_device.plan(
            self.device,
            self.workdir.name,
            adb_device.DeviceSdk("snpe", self.root, self.htp_arch),
            self.sdk_id,
            [dlc],
            inputs_dir,
            run_args,
            local,
        )
        log = adb_device.execute(steps)
        with open(self.workdir / "runner.log", "a", encoding="utf-8") as out:
            out.write("\n".join(log))
        return steps.local_output


@dataclass
class SnpeRoute:
    """What an ``htp`` / ``dsp`` backend does for an ``snpe-<version>`` SDK id."""

    backend: str
    strict: bool = False
    device: str | None = None
    htp_arch: str = "75"

    def available(self, sdk: str) -> str | None:
        """Reason the SNPE flow cannot run (no ``$SNPE_ROOT``, another version, a tool missing, the device)."""
        reason = unavailable_reason(sdk)
        if reason or not self.device:
            return reason
        missing = adb_device.DeviceSdk("snpe", Path(sdks.local_snpe().root), self.htp_arch).missing()
        if missing:
            return f"the SNPE SDK has no device files for htp_arch {self.htp_arch}: {', '.join(map(str, missing))}"
        return adb_device.unavailable(self.device)

    def describe(self, sdk: str) -> dict[str, Any]:
        """The SDK and runtime a record names."""
        local = sdks.local_snpe()
        return {
            "runtime": f"SNPE {' '.join(RUNTIME_FLAGS[self.backend])} (snpe-net-run)",
            "sdk": sdk,
            "snpe_version": local.version if local and local.id == sdk else None,
            "sdk_env": local.root if local and local.id == sdk else None,
            "strict": self.strict or self.backend == "dsp",
            "device": self.device,
            "htp_arch": self.htp_arch,
        }

    def compile(self, onnx_path: Path, precision: str, sdk: str, workdir: Path) -> SnpeModel:
        """Prepare the SNPE flow for ``onnx_path`` (it runs on ``run``)."""
        if precision not in PRECISIONS[self.backend]:
            raise CellError(
                "unsupported_op",
                f"SNPE's {self.backend} runtime takes {', '.join(PRECISIONS[self.backend])}, not {precision}",
            )
        local = sdks.local_snpe()
        if local is None or local.id != sdk:
            raise CellError("crash", unavailable_reason(sdk) or f"{sdk} is not the SDK at $SNPE_ROOT")
        return SnpeModel(
            Path(onnx_path),
            self.backend,
            precision,
            Path(local.root),
            Path(workdir),
            strict=self.strict or self.backend == "dsp",
            device=self.device,
            sdk_id=sdk,
            htp_arch=self.htp_arch,
        )
