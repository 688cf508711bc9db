#!/usr/bin/env python3
"""Reproduce one zoocompat cell's problem on a small ONNX model (see README.md beside this file).

Needs only numpy and onnxruntime, plus onnxruntime-qnn for the QNN EP: run it with
the python of the SDK release the README names. Reads ``repro.json`` (what to run
and what counts as reproduced), ``model.onnx``, ``inputs.npz`` and ``expected.npz``.

    python repro.py              # on the cell's execution provider; exit 0 = reproduced, 1 = not
    python repro.py --ep cpu     # on the CPU EP (default graph optimizations: fused integer kernels)
    python repro.py --reference  # the CPU EP with graph optimizations off: how expected.npz was computed

This file is copied unchanged into every repro folder by ``zoocompat repro``.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CONFIG = json.loads((HERE / "repro.json").read_text())


def _session(ep: str, optimize: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if ep == "qnn":
        for key, value in CONFIG.get("session_config", {}).items():
            options.add_session_config_entry(key, str(value))
        import onnxruntime_qnn

        ort.register_execution_provider_library("QNNExecutionProvider", onnxruntime_qnn.get_library_path())
        devices = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
        provider_options = {k: str(v) for k, v in CONFIG.get("provider_options", {}).items()}
        provider_options.setdefault("backend_path", onnxruntime_qnn.get_qnn_htp_path())
        library = Path(provider_options["backend_path"]).read_bytes()
        found = re.search(rb"AISW_VERSION: (\d+\.\d+\.\d+)", library)
        print(f"QNN core {found.group(1).decode() if found else '?'} from {provider_options['backend_path']}")
        print(f"provider options: {provider_options}")
        options.add_provider_for_devices(devices, provider_options)
        session = ort.InferenceSession(str(HERE / "model.onnx"), sess_options=options)
        if session.get_providers()[0] != "QNNExecutionProvider":
            raise SystemExit(f"QNN was requested but the session runs on {session.get_providers()}")
        return session
    return ort.InferenceSession(str(HERE / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"])


def _run(ep: str, optimize: bool = True) -> dict[str, np.ndarray]:
    """Run every sample of ``inputs.npz`` (sample axis first) one call at a time.

    The batch convention of zoocompat (``zoocompat/api/samples.py``), written out here because this script
    needs nothing of zoocompat: an input whose array has the model input's rank (a batch dim of 1) takes
    ``array[i : i + 1]``, any other (a scalar, an unbatched state tensor) takes ``array[i, ...]``. onnxruntime
    reports a graph input declared without a shape as ``[]`` too; one whose array has two or more dims is
    fed batched. An output whose first dim is 1 in every call is concatenated along it, any other stacked.
    """
    session = _session(ep, optimize)
    with np.load(HERE / "inputs.npz", allow_pickle=False) as data:
        inputs = {k: data[k] for k in data.files}
    ranks = {i.name: len(i.shape) for i in session.get_inputs()}
    for name, rank in ranks.items():
        if rank == 0 and name in inputs and inputs[name].ndim > 1:
            ranks[name] = inputs[name].ndim
    names = [o.name for o in session.get_outputs()]
    count = len(next(iter(inputs.values())))
    calls = []
    for i in range(count):
        feed = {k: v[i : i + 1] if v.ndim == ranks[k] else v[i, ...] for k, v in inputs.items() if k in ranks}
        calls.append(session.run(names, feed))
    outs = {}
    for j, name in enumerate(names):
        values = [call[j] for call in calls]
        batched = all(np.ndim(v) >= 1 and np.shape(v)[0] == 1 for v in values)
        outs[name] = np.concatenate(values) if batched else np.stack(values)
    return outs


def _sqnr(reference: np.ndarray, test: np.ndarray) -> float:
    ref = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((ref - np.asarray(test, dtype=np.float64)) ** 2))
    signal = float(np.sum(ref**2))
    return math.inf if noise == 0.0 or signal == 0.0 else 10.0 * math.log10(signal / noise)


def main(argv: list[str]) -> int:
    ep = argv[argv.index("--ep") + 1] if "--ep" in argv else CONFIG["ep"]
    optimize = CONFIG.get("optimize", True) and "--reference" not in argv
    ep = "cpu" if "--reference" in argv else ep
    check = CONFIG["check"]
    print(f"{CONFIG['cell']}: {CONFIG['observed']}")
    if check == "crash" and "--child" not in argv:
        done = subprocess.run([sys.executable, __file__, "--child", "--ep", ep])
        reproduced = done.returncode != 0
        print(("REPRODUCED" if reproduced else "NOT REPRODUCED") + f": the run exited with {done.returncode}")
        return 0 if reproduced else 1
    try:
        outputs = _run(ep, optimize)
    except Exception as error:  # the session or the run failed
        print(f"the {ep} run failed: {type(error).__name__}: {error}")
        if check == "fallback" and ep == "qnn" and "fallback" in str(error).lower():
            print("REPRODUCED: the QNN EP does not take the whole graph (CPU fallback disabled)")
            return 0
        raise
    if check == "fallback":
        print("NOT REPRODUCED: the QNN EP took every node")
        return 1
    if check == "crash":  # the child run of a crash repro: it finished
        print(f"the {ep} run finished: outputs {', '.join(f'{k} {list(v.shape)}' for k, v in outputs.items())}")
        return 0
    with np.load(HERE / "expected.npz", allow_pickle=False) as data:
        expected = {k: data[k] for k in data.files}
    worst = math.inf
    for name, reference in expected.items():
        value = _sqnr(reference, outputs[name])
        worst = min(worst, value)
        diff = np.abs(outputs[name].astype(np.float64) - reference)
        print(f"{name}: SQNR vs {CONFIG['expected']} {value:.2f} dB, max |diff| {diff.max():.4g}, "
              f"elements off by more than 1e-3: {int((diff > 1e-3).sum())} of {diff.size}")  # fmt: skip
    threshold = CONFIG["threshold_db"]
    if worst < threshold:
        print(f"REPRODUCED: {worst:.2f} dB < {threshold} dB")
        return 0
    print(f"NOT REPRODUCED: {worst:.2f} dB >= {threshold} dB")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
