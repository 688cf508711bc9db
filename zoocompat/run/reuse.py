"""Reuse of backend outputs across runs: the same model bytes, inputs and runtime give the same outputs.

A backend run is the costly part of a warm matrix (the HTP emulator spends
tens of milliseconds per sample), and it is a pure function of what goes in:
the model file's bytes, the evaluation inputs, the runtime that runs them
(the backend's :meth:`describe`: SDK id, QNN core version, onnxruntime
versions, ``htp_arch``, ``soc_model``, strict mode, device) and the code that
drives it (the backend's module, its package, its ``code_modules``). The first
run keeps its outputs, placement, timings and runner log in the cache stage
``outputs/`` under a key of all of those; a later cell with the same key reads them back instead of
running the backend again. Metrics, tolerances and verdicts are always
computed afresh from the outputs, so a change to a card's tolerance, a metric
or the known failures shows on the next warm run.

What changes the key (and so runs the backend again): any byte of the model
(a new conversion or quantization), the inputs (dataset or preprocessing), an
SDK release or onnxruntime version, the arch / SoC / strict / device
settings, the backend plugin's source (:func:`code_files`). Only successful runs are kept: a crash
or timeout runs again next time.

The record says which happened in ``backend_info.outputs`` (``measured`` or
``reused``, with the key and the entry); timings of a reused run are those
measured when it was kept. ``ZOOCOMPAT_REUSE_OUTPUTS=0`` or the pytest
option ``--rerun-backends`` runs every backend again.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zoocompat.api import Placement, RunResult
from zoocompat.api.cache import ArtifactCache, key_of, sha256_file
from zoocompat.api.protocols import optional

__all__ = ["OUTPUTS_STAGE", "code_digest", "code_files", "enabled", "inputs_digest", "run_or_reuse"]

OUTPUTS_STAGE = "outputs"
FORMAT = 1
_OUTPUTS, _RESULT, _LOG = "outputs.npz", "result.json", "runner.log"


def enabled() -> bool:
    """Whether backend outputs may be reused (``ZOOCOMPAT_REUSE_OUTPUTS`` is not ``0``)."""
    return os.environ.get("ZOOCOMPAT_REUSE_OUTPUTS", "1") != "0"


def inputs_digest(inputs: dict[str, np.ndarray]) -> str:
    """sha256 over every input's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name in sorted(inputs):
        array = np.ascontiguousarray(inputs[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


@functools.cache
def _sources_digest(files: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.encode())
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def code_files(backend: Any) -> list[Path]:
    """The source files whose code drives ``backend``, sorted.

    The file of the module that defines the backend's class; when that module
    lives in a package (an ``__init__.py`` beside it), every ``.py`` of that
    package folder too (the built-ins share their runner code that way); and
    the modules the backend names in ``code_modules`` (e.g. the gpu
    reference's graph folding). A one-file plugin installed in site-packages
    is hashed alone, never with its neighbours.
    """
    own = Path(sys.modules[type(backend).__module__].__file__).resolve()
    files = {own}
    if (own.parent / "__init__.py").is_file():
        files.update(path.resolve() for path in own.parent.glob("*.py"))
    for name in optional(backend, "code_modules"):
        files.add(Path(importlib.import_module(name).__file__).resolve())
    return sorted(files)


def plugin_digest(plugin: Any) -> str | None:
    """sha256 of the one file that defines ``plugin``'s class (a dataset's generator: edited code, new data);
    ``None`` when it has no file.
    """
    module = sys.modules.get(type(plugin).__module__)
    path = getattr(module, "__file__", None)
    return _sources_digest((str(Path(path).resolve()),)) if path and Path(path).is_file() else None


def code_digest(backend: Any) -> str:
    """sha256 of :func:`code_files` of ``backend``: their paths and bytes."""
    return _sources_digest(tuple(str(path) for path in code_files(backend)))


def key(backend: Any, runtime: dict[str, Any], precision: str, sdk: str | None, model: Path, inputs: str) -> str:
    """The outputs entry key: backend, precision, SDK, ``runtime`` (describe), model bytes, inputs, code."""
    return key_of(
        OUTPUTS_STAGE, FORMAT, backend.name, precision, sdk, runtime, sha256_file(model), inputs, code_digest(backend)
    )


def _save(folder: Path, result: RunResult, log: Path) -> None:
    np.savez(folder / _OUTPUTS, **result.outputs)
    kept = {
        "placement": dataclasses.asdict(result.placement),
        "compile_s": result.compile_s,
        "run_s": result.run_s,
        "info": result.info,
    }
    (folder / _RESULT).write_text(json.dumps(kept, indent=1, default=str))
    if log.is_file():
        shutil.copyfile(log, folder / _LOG)


def _load(folder: Path) -> RunResult:
    kept = json.loads((folder / _RESULT).read_text())
    with np.load(folder / _OUTPUTS, allow_pickle=False) as data:
        outputs = {name: data[name] for name in data.files}
    return RunResult(
        outputs=outputs,
        placement=Placement(**kept["placement"]),
        compile_s=float(kept["compile_s"]),
        run_s=float(kept["run_s"]),
        info=kept["info"],
    )


def run_or_reuse(
    cache: ArtifactCache, entry_key: str, run: Callable[[], RunResult], log: Path
) -> tuple[RunResult, dict[str, Any]]:
    """``run()`` and keep what it gave under ``entry_key``, or read back what an earlier run kept.

    Returns the result and the note for ``backend_info.outputs``: ``state``
    (``measured`` / ``reused``), ``key``, ``entry`` and, when reused, ``log``
    (the kept runner log). ``run``'s errors propagate and keep nothing.
    """
    fresh: dict[str, RunResult] = {}

    def build(folder: Path) -> None:
        fresh["result"] = run()
        _save(folder, fresh["result"], log)

    entry = cache.entry(OUTPUTS_STAGE, entry_key, build)
    if "result" in fresh:
        return fresh["result"], {"state": "measured", "key": entry_key, "entry": str(entry)}
    note = {"state": "reused", "key": entry_key, "entry": str(entry)}
    if (entry / _LOG).is_file():
        note["log"] = str(entry / _LOG)
    return _load(entry), note
