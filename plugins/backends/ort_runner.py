"""The runner process: one onnxruntime session, a batch of samples, outputs back.

It plays the part of ``snpe-net-run --input_list`` / ``qnn-net-run``: the parent
hands it a model, an execution provider and an ``.npz`` of inputs; it compiles
the session, runs the samples one at a time (the graph's batch dim is static),
and writes the outputs and a JSON report. The session's verbose log goes to
stderr, which the parent keeps and reads node placement from.

Running in its own process means a vendor library that segfaults, aborts or
hangs takes down this process only; the parent records the cell as ``crash``
or ``timeout`` and the session goes on. It also lets a runner use another
Python environment (another SDK release) than the parent's.

It imports nothing of the suite (only numpy and onnxruntime), so it runs as a
plain script under an SDK release's own isolated environment
(``zoocompat sdk install``), where the QNN libraries of that release are the
ones loaded; the report names them and the core version read from them.

With ``context_dump`` in the request (QNN only), the session also writes its
compiled QNN context as an EPContext model there (``ep.context_enable``,
``ep.context_file_path``, ``ep.context_embed_mode=0``: the ONNX beside a
``_qnn.bin`` context binary), which a later request loads as its ``model``
without compiling the graph again (see :mod:`zoocompat_plugins.backends.ort_session`).

It is a runner script of :mod:`zoocompat.api.runner`: the generic child
(``zoocompat/api/runner_child.py``, standard library only) loads it by path and
calls :func:`run_request`; that child also keeps it in a long-lived process
(``--serve``) and sends each request's session log to the request's ``log``
file. The parent side is :class:`zoocompat_plugins.backends.ort_session.RunnerModel`.

Usage: ``python -I path/to/zoocompat/api/runner_child.py path/to/ort_runner.py REQUEST.json``
"""

from __future__ import annotations

import os
import re
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

_CORE_VERSION = re.compile(rb"AISW_VERSION: (\d+\.\d+\.\d+)")


@cache
def _qnn_library_report(backend_path: str) -> dict[str, Any]:
    """Which QNN library this process loads, the core version compiled into it, and the wheel's version."""
    import onnxruntime_qnn

    match = _CORE_VERSION.search(Path(backend_path).read_bytes())
    return {
        "qnn_library": backend_path,
        "qnn_core_version": match.group(1).decode() if match else None,
        "onnxruntime_qnn": getattr(onnxruntime_qnn, "__version__", None),
    }


def _context_config(path: str) -> dict[str, str]:
    """Session config entries that make the EP write its compiled context as an EPContext model at ``path``."""
    return {"ep.context_enable": "1", "ep.context_file_path": path, "ep.context_embed_mode": "0"}


def _session(request: dict[str, Any], report: dict[str, Any]):
    """The session; with ``context_dump`` it also writes the compiled QNN context, and when the dump itself
    is what fails, the session is made again without it (the cell's verdict never depends on the cache).
    """
    dump = request.get("context_dump") if request["ep"] == "qnn" else None
    if not dump:
        return _make_session(request, report, {})
    try:
        session = _make_session(request, report, _context_config(dump))
    except Exception as error:
        if "context" not in str(error).lower():
            raise
        report["context_error"] = f"{type(error).__name__}: {error}"
        return _make_session(request, report, {})
    report["context_dumped"] = Path(dump).is_file()
    return session


@cache
def _register_qnn(library: str) -> None:
    """Register the QNN EP's plugin library with onnxruntime, once per process."""
    import onnxruntime as ort

    ort.register_execution_provider_library("QNNExecutionProvider", library)


def _make_session(request: dict[str, Any], report: dict[str, Any], extra_config: dict[str, str]):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 0  # verbose: node placement and the EP's validation reasons
    threads = os.environ.get("ZOOCOMPAT_THREADS", "")
    if threads.isdigit() and int(threads) > 0:  # an xdist worker's share of the cores (zoocompat.pytest_plugin)
        options.intra_op_num_threads = int(threads)
    for key, value in {**request.get("session_config", {}), **extra_config}.items():
        options.add_session_config_entry(key, str(value))
    if request["ep"] == "qnn":
        import onnxruntime_qnn

        _register_qnn(onnxruntime_qnn.get_library_path())
        devices = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
        if not devices:
            raise RuntimeError("onnxruntime lists no QNNExecutionProvider device after registering the library")
        provider_options = dict(request.get("provider_options", {}))
        provider_options.setdefault("backend_path", onnxruntime_qnn.get_qnn_htp_path())
        report.update(_qnn_library_report(provider_options["backend_path"]))
        options.add_provider_for_devices(devices, {k: str(v) for k, v in provider_options.items()})
        session = ort.InferenceSession(request["model"], sess_options=options)
        if session.get_providers()[0] != "QNNExecutionProvider":
            raise RuntimeError(f"QNN was requested but the session runs on {session.get_providers()}")
        return session
    if request["ep"] == "cuda":
        session = ort.InferenceSession(request["model"], sess_options=options, providers=["CUDAExecutionProvider"])
        if session.get_providers()[0] != "CUDAExecutionProvider":
            raise RuntimeError(f"CUDA was requested but the session runs on {session.get_providers()}")
        return session
    return ort.InferenceSession(request["model"], sess_options=options, providers=["CPUExecutionProvider"])


def _feed_ranks(session, inputs: dict[str, Any]) -> dict[str, int]:
    """``{input name: rank}`` of the session's inputs, for :func:`_run_all`'s per-sample feeds.

    onnxruntime reports the shape ``[]`` both for a scalar input and for a graph input declared without a
    shape; a batch array of two or more dims cannot hold one scalar per sample, so such an input is fed
    batched (its rank taken as the array's), as every input was before models of any signature.
    """
    ranks = {}
    for arg in session.get_inputs():
        rank = len(arg.shape)
        value = inputs.get(arg.name)
        if rank == 0 and value is not None and value.ndim > 1:
            rank = value.ndim
        ranks[arg.name] = rank
    return ranks


def _merge(values: list[Any]) -> Any:
    """One output of every call with the sample axis first (the rule of ``zoocompat/api/samples.py``)."""
    import numpy as np

    if all(np.ndim(v) >= 1 and np.shape(v)[0] == 1 for v in values):
        return np.concatenate(values)  # a batch dim of 1: the samples line up along it
    return np.stack(values)  # a scalar or unbatched tensor: one per sample on a new axis


def _run_all(session, inputs: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Run every sample of ``inputs`` (sample axis first) one call at a time; outputs with the sample axis first.

    The batch convention of ``zoocompat/api/samples.py``, written out here because this script imports
    nothing of the suite: an input whose batch array has the model input's rank (a batch dim of 1) takes
    ``array[i : i + 1]``, any other (a scalar, an unbatched state tensor) takes ``array[i]`` (as an array,
    ``array[i, ...]``: onnxruntime refuses a numpy scalar); inputs the model does not take are left out.
    Outputs come back by :func:`_merge`.
    """
    names = [o.name for o in session.get_outputs()]
    ranks = _feed_ranks(session, inputs)
    count = len(next(iter(inputs.values())))
    calls = []
    start = time.perf_counter()
    for i in range(count):
        feed = {k: v[i : i + 1] if v.ndim == ranks[k] else v[i, ...] for k, v in inputs.items() if k in ranks}
        calls.append(session.run(names, feed))
    elapsed = time.perf_counter() - start
    return {name: _merge([call[j] for call in calls]) for j, name in enumerate(names)}, elapsed


def run_request(request: dict[str, Any], report: dict[str, Any]) -> None:
    """Compile the session and run every sample; ``report`` gets the stage reached, versions and timings.

    An exception is the run's failure: the generic child adds it to the report (``error``, ``error_type``)
    and answers with its failure code; the parent reads the ``stage`` it failed at.
    """
    import numpy as np
    import onnxruntime as ort

    report.update({"onnxruntime": ort.__version__, "python": sys.executable, "stage": "compile"})
    start = time.perf_counter()
    session = _session(request, report)
    report["compile_s"] = time.perf_counter() - start
    report["providers"] = session.get_providers()
    report["stage"] = "run"
    with np.load(request["inputs"], allow_pickle=False) as data:
        inputs = {key: data[key] for key in data.files}
    outputs, run_s = _run_all(session, inputs)
    del session
    report["run_s"] = run_s
    report["samples"] = len(next(iter(inputs.values())))
    np.savez(request["outputs"], **outputs)
    report["stage"] = "done"
