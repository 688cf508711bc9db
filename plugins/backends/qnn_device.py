"""``htp`` / ``dsp`` cells on a phone or board: ``--device adb:SERIAL`` with a local QNN SDK.

The graph is compiled on the host by the same runner as every QNN cell, which
also writes the compiled QNN context (an EPContext model beside its
``*_qnn.bin`` context binary: ``ep.context_enable``, ``ep.context_embed_mode=0``).
That context binary is what the device runs: ``qnn-net-run --backend
libQnnHtp.so --retrieve_context model_qnn.bin --input_list ... --output_dir
output``, pushed and run by :mod:`zoocompat.sdk.device` with the aarch64 libraries
and the HTP skel of the cell's ``htp_arch`` from ``$QNN_SDK_ROOT`` (the
onnxruntime-qnn wheel ships none). qnn-net-run takes float32 inputs and writes
float32 outputs (it quantizes and dequantizes at the graph's boundary).

A context holds only the nodes the HTP took, so a device run needs the whole
graph in one context: a graph with CPU fallback or several partitions fails as
``unsupported_op`` with the vendor's reasons (use ``--strict-npu`` to see that
verdict on the host).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from zoocompat_plugins.backends.ort_session import RunnerModel

from zoocompat.api import RunResult
from zoocompat.api.errors import CellError
from zoocompat.sdk import device as adb_device
from zoocompat.sdk import snpe_io

__all__ = ["QnnDeviceModel", "context_config", "net_run_args"]


def context_config(path: Path) -> dict[str, str]:
    """Session config that makes the QNN EP write its compiled context as an EPContext model at ``path``."""
    return {"ep.context_enable": "1", "ep.context_file_path": str(path), "ep.context_embed_mode": "0"}


def net_run_args(context_bin: str, input_list: str = "inputs/input_list.txt") -> list[str]:
    """``qnn-net-run``'s arguments (after the binary) for a context binary, relative to the cell's folder."""
    return [
        "--backend",
        "libQnnHtp.so",
        "--retrieve_context",
        context_bin,
        "--input_list",
        input_list,
        "--output_dir",
        "output",
    ]


@dataclass
class QnnDeviceModel:
    """Compile on the host (keeping the context binary), run the binary on the device."""

    host: RunnerModel
    serial: str
    sdk: adb_device.DeviceSdk
    sdk_id: str

    def run(self, inputs: dict[str, np.ndarray]) -> RunResult:
        """Compile on the host with one sample, check the whole graph is in one context, run all samples on the
        device and read the outputs back.
        """
        from zoocompat_plugins.backends.snpe import _output_shapes

        workdir = self.host.workdir
        ctx = workdir / "context" / "model_ctx.onnx"
        ctx.parent.mkdir(parents=True, exist_ok=True)
        self.host.session_config = {**self.host.session_config, **context_config(ctx)}
        compiled = self.host.run({name: array[:1] for name, array in inputs.items()})
        placement = compiled.placement
        if placement.fallback_ops or placement.partitions > 1:
            raise CellError(
                "unsupported_op",
                f"a device run needs the whole graph in one QNN context; {placement.target_nodes}/"
                f"{placement.total_nodes} nodes on HTP in {placement.partitions} partition(s); vendor: "
                + "; ".join(placement.reasons[:5]),
            )
        binaries = sorted(ctx.parent.glob("*.bin"))
        if not binaries:
            raise CellError("crash", f"the host compile wrote no QNN context binary next to {ctx}")
        local = workdir / "device"
        snpe_io.write_inputs(inputs, local / "inputs", list_prefix="inputs/")
        steps = adb_device.plan(
            self.serial,
            workdir.name,
            self.sdk,
            self.sdk_id,
            [binaries[0]],
            local / "inputs",
            net_run_args(binaries[0].name),
            local,
        )
        start = time.perf_counter()
        log = adb_device.execute(steps)
        run_s = time.perf_counter() - start
        with open(workdir / "runner.log", "a", encoding="utf-8") as out:
            out.write("\n".join(log))
        count = len(next(iter(inputs.values())))
        outputs = snpe_io.read_outputs(steps.local_output, _output_shapes(self.host.onnx_path), count)
        runtime = dict(compiled.info.get("runtime") or {}, device=self.serial, context_binary=str(binaries[0]))
        return RunResult(
            outputs, placement, compiled.compile_s, run_s, {"per_sample_ms": 1000 * run_s / count, "runtime": runtime}
        )
