"""Parent side of the runner process, shared by the onnxruntime-based backends.

:class:`RunnerModel` is a compiled model whose ``run`` sends a request to the
runner script ``ort_runner.py`` through :class:`zoocompat.api.runner.Runner`,
the public process-isolated runner (argument lists, isolated mode, timeout,
``crash`` for a signal and ``timeout`` for a hang, a pool of long-lived
processes per Python and environment with retry in a fresh process,
``ZOOCOMPAT_RUNNER_REUSE``). What is onnxruntime's stays here: the request's
session options and provider options, the failure categories read from the
runner's report, and node placement read from the session's verbose log.

The runner script imports nothing of the suite, so an SDK release's own
environment (see :mod:`zoocompat.sdk.releases`) runs it without the suite
installed, and nothing of the parent's environment leaks into it.

A :class:`ContextCache` on a QNN runner keeps the compiled QNN context of each
graph in the artifact cache (stage ``htp_context``), keyed by the model file's
sha256 and everything that shapes the compiled binary (precision, SDK id, QNN
core version, onnxruntime versions, ``htp_arch``, ``soc_model``, the fp16
flag, session config). The first (cold) run compiles the graph and writes the
EPContext model into the entry under the cache's lock; every later (warm) run
loads that model and compiles nothing. ``timing.compile_s`` is the session
creation time either way, so it shows cold vs warm; node placement of a warm
run is read from the cold run's log, kept in the entry.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoocompat.api import Placement, RunResult
from zoocompat.api.cache import ArtifactCache, key_of, sha256_file
from zoocompat.api.errors import CellError
from zoocompat.api.runner import LOG_FILE, Runner, cell_timeout

RUNNER_SCRIPT = Path(__file__).with_name("ort_runner.py")
_TARGET_EP = {"qnn": "QNNExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
#: What the runner reports about the runtime it loaded; kept with the cell's record.
RUNTIME_KEYS = ("python", "onnxruntime", "onnxruntime_qnn", "qnn_core_version", "qnn_library")
_PASS = re.compile(r"Validation (PASSED|FAILED) for (\d+) nodes in \w+ \((\w+)\)")
_PLACED = re.compile(r"(?:All nodes|Node\(s\)) placed on \[(\w+)\]\. Number of nodes: (\d+)")
_REASON = re.compile(r"REASON\s*:\s*(.+)")
_NODE_INDEX = re.compile(r"^\s*Operator type: .* Node index: (\d+)\s*$")
# onnxruntime's exception types for a file that is not a loadable model
_BAD_MODEL_ERRORS = {"InvalidProtobuf", "NoSuchFile", "InvalidGraph", "InvalidArgument"}
# an older runtime release (another SDK's onnxruntime) that cannot read a newer model file
_TOO_NEW = re.compile(r"Unsupported model IR version|opset \d+ is under development|Opset \d+ is not supported")
_IO_BOUNDARY = re.compile(r"not take (Q nodes that consume a graph input|DQ nodes that generate a graph output)")


def _first_capability_pass(log: str) -> str:
    """The part of the log with the QNN EP's first ``GetCapability`` pass.

    onnxruntime-qnn 2.7 (QNN 2.51) marks each pass (``GetCapability pass 1``);
    older releases do not, so there the first pass ends where a node index it
    already listed comes up again.
    """
    passes = log.split("GetCapability pass")
    if len(passes) > 2:
        return passes[1]
    seen: set[str] = set()
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if not _PASS.search(line):
            continue
        indices = set(_block_indices(lines, i))
        if seen & indices:
            return "\n".join(lines[:i])
        seen |= indices
    return log


def _block_indices(lines: list[str], start: int) -> list[str]:
    """Node indices listed under the Validation line at ``start``."""
    found = []
    for line in lines[start + 1 :]:
        match = _NODE_INDEX.search(line)
        if not match:
            break
        found.append(match.group(1))
    return found


def _reason_after(lines: list[str], start: int) -> str | None:
    """The REASON line of the FAILED entry at ``start``: after all of its listed nodes
    (a quantized node unit lists its DQ, op and Q first), before the next entry or blank line.
    """
    for line in lines[start + 1 :]:
        if not line.strip() or _PASS.search(line):
            return None
        match = _REASON.search(line)
        if match:
            return match.group(1).strip()
    return None


def parse_placement(log: str, target_ep: str, target: str) -> Placement:
    """Read node placement from an onnxruntime verbose session log.

    For a plugin EP (QNN) the first ``GetCapability`` pass lists each node unit
    of the graph as given (after onnxruntime's basic fusions) as PASSED or
    FAILED with the vendor's reason; later passes add the EP's own layout
    Transposes, so they are not counted. For the built-in EPs (CPU, CUDA) the
    nodes ``placed on [<EP>]`` are on the target, the rest fell back to the CPU.
    """
    placed = {ep: int(n) for ep, n in _PLACED.findall(log)}
    if target_ep != "QNNExecutionProvider":
        total = sum(placed.values())
        return Placement(target, placed.get(target_ep, 0), total, partitions=1 if total else 0)
    first_pass = _first_capability_pass(log)
    on_target = total = io_nodes = 0
    fallback: Counter[str] = Counter()
    reasons: list[str] = []
    lines = first_pass.splitlines()
    for i, line in enumerate(lines):
        match = _PASS.search(line)
        if not match:
            continue
        verdict, count, op = match.group(1), int(match.group(2)), match.group(3)
        if verdict == "PASSED":
            on_target += count
            total += count
            continue
        reason = _reason_after(lines, i)
        if reason and _IO_BOUNDARY.search(reason):
            io_nodes += count  # graph-input Q / graph-output DQ: the runtime's I/O conversion, not model ops
            continue
        total += count
        fallback[op] += 1
        text = f"{op}: {reason or 'rejected (no reason logged)'}"
        if text not in reasons:
            reasons.append(text)
    partitions = placed.get(target_ep, 0)
    return Placement(target, on_target, total, dict(fallback), reasons, partitions, io_nodes)


CONTEXT_STAGE = "htp_context"
#: bump when the entry's layout or the runner's dump options change
CONTEXT_FORMAT = 1
_CONTEXT_MODEL = "model_ctx.onnx"
_CONTEXT_LOG = "compile.log"
_CONTEXT_INFO = "context.json"


class _NotCached(Exception):
    """The cold run succeeded but left no context to keep (carries its result)."""

    def __init__(self, result: RunResult, why: str) -> None:
        super().__init__(why)
        self.result = result
        self.why = why


@dataclass(frozen=True)
class ContextCache:
    """Where compiled QNN contexts are kept, and what besides the model's bytes keys them.

    ``parts`` holds what shapes the compiled binary other than the graph: the
    precision, SDK id, QNN core version, onnxruntime and onnxruntime-qnn
    versions, ``htp_arch``, ``soc_model``, the fp16 flag, session config.
    """

    root: Path
    parts: dict[str, Any]

    def key(self, model: Path, session_config: dict[str, Any] | None = None) -> str:
        """The entry key for ``model``: its bytes' sha256, :attr:`parts` and the session config."""
        return key_of(CONTEXT_STAGE, CONTEXT_FORMAT, sha256_file(model), self.parts, session_config or {})


@dataclass
class RunnerModel:
    """A model compiled lazily in a runner process on ``run``."""

    onnx_path: Path
    ep: str  # "cpu", "qnn" or "cuda"
    target: str  # backend name, for the placement record
    workdir: Path
    provider_options: dict[str, Any] = field(default_factory=dict)
    session_config: dict[str, Any] = field(default_factory=dict)
    python: str = sys.executable
    timeout_s: float = field(default_factory=cell_timeout)
    #: QNN core version the runner must load (that of the chosen SDK); ``None`` checks nothing.
    expected_core_version: str | None = None
    #: keep and reuse the compiled QNN context (QNN runners only); ``None`` compiles every time
    context: ContextCache | None = None

    def _runner(self) -> Runner:
        return Runner(RUNNER_SCRIPT, python=self.python, timeout_s=self.timeout_s, label=self.target)

    def run(self, inputs: dict[str, np.ndarray]) -> RunResult:
        """Compile (or load the cached compiled context) and run every sample in a runner process."""
        if self.context is None or self.ep != "qnn":
            return self._run(inputs, self.onnx_path)
        key = self.context.key(self.onnx_path, self.session_config)
        built: dict[str, RunResult] = {}

        def cold(entry: Path) -> None:
            result = self._run(inputs, self.onnx_path, context_dump=entry / _CONTEXT_MODEL)
            if not (entry / _CONTEXT_MODEL).is_file():
                why = result.info.pop("context_error", None) or "the session wrote no context model"
                raise _NotCached(result, why)
            (entry / _CONTEXT_LOG).write_text(self._log_path().read_text(errors="replace"))
            info = {"key_parts": self.context.parts, "model": str(self.onnx_path), "cold_compile_s": result.compile_s}
            (entry / _CONTEXT_INFO).write_text(json.dumps(info, indent=1, default=str))
            built["result"] = result

        try:
            entry = ArtifactCache(self.context.root).entry(CONTEXT_STAGE, key, cold)
        except _NotCached as missing:
            return _note_context(missing.result, f"not cached: {missing.why}", key)
        if "result" in built:
            return _note_context(built["result"], "cold", key, entry)
        cold_log = (entry / _CONTEXT_LOG).read_text(errors="replace")
        try:
            result = self._run(inputs, entry / _CONTEXT_MODEL, placement_log=cold_log)
        except CellError as error:
            if "failed at compile" not in error.message:
                raise
            # the cached context did not load: compile from the graph this once, keep nothing
            return _note_context(self._run(inputs, self.onnx_path), f"warm failed, compiled: {error.message}", key)
        return _note_context(result, "warm", key, entry)

    def _log_path(self) -> Path:
        return self.workdir / LOG_FILE

    def _run(
        self,
        inputs: dict[str, np.ndarray],
        model: Path,
        context_dump: Path | None = None,
        placement_log: str | None = None,
    ) -> RunResult:
        """One runner process on ``model``; ``context_dump`` asks it to write the compiled QNN context there,
        ``placement_log`` is the cold compile's log to read placement from (a warm run compiles nothing).
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        inputs_path, outputs_path = self.workdir / "runner_inputs.npz", self.workdir / "runner_outputs.npz"
        np.savez(inputs_path, **inputs)
        request = {
            "model": str(model),
            "ep": self.ep,
            "inputs": str(inputs_path),
            "outputs": str(outputs_path),
            "provider_options": self.provider_options,
            "session_config": self.session_config,
        }
        if context_dump is not None:
            request["context_dump"] = str(context_dump)
        runner = self._runner()
        finished = runner.execute(request, self.workdir, self.onnx_path.name)  # a hang: CellError("timeout")
        log_path = finished.log
        log_text = finished.log_text()
        if placement_log is not None:  # keep the cold compile's log (vendor reasons) with this run's
            log_text = placement_log + "\n" + log_text
            log_path.write_text(
                f"# zoocompat: compiled QNN context reused from {model.parent}; the cold compile's log, then this "
                f"run's\n{log_text}"
            )
        runner.check_signal(finished, self.onnx_path.name)  # a signal: CellError("crash")
        report, returncode = finished.report, finished.code
        if returncode != 0:
            detail = report.get("error") or log_text.strip().splitlines()[-1:] or ["no output"]
            stage = report.get("stage", "start")
            if report.get("error_type") in _BAD_MODEL_ERRORS:
                category = "bad_input"
            elif _TOO_NEW.search(str(detail)):
                category = "convert_error"  # the model is fine; this runtime release cannot read it
            else:
                category = "unsupported_op" if stage == "compile" else "crash"
            rejected = ""
            if stage == "compile" and self.ep == "qnn":
                reasons = parse_placement(log_text, _TARGET_EP[self.ep], self.target).reasons
                rejected = f"; vendor: {'; '.join(reasons[:5])}" if reasons else ""
            raise CellError(
                category,
                f"{self.target} runner failed at {stage} on {self.onnx_path.name} "
                f"(exit {returncode}): {detail}{rejected}; log: {log_path}",
            )
        loaded = report.get("qnn_core_version")
        if self.expected_core_version and loaded != self.expected_core_version:
            raise CellError(
                "crash",
                f"{self.target} runner loaded QNN core {loaded} from {report.get('qnn_library')}, not the "
                f"requested {self.expected_core_version} (python {self.python}); reinstall the SDK environment",
            )
        with np.load(outputs_path, allow_pickle=False) as data:
            outputs = {key: data[key] for key in data.files}
        placement = parse_placement(
            placement_log if placement_log is not None else log_text, _TARGET_EP[self.ep], self.target
        )
        samples = max(int(report.get("samples", 1)), 1)
        info_extra = {"context_error": report["context_error"]} if "context_error" in report else {}
        return RunResult(
            outputs=outputs,
            placement=placement,
            compile_s=float(report["compile_s"]),
            run_s=float(report["run_s"]),
            info={
                "providers": report.get("providers"),
                "per_sample_ms": 1000 * report["run_s"] / samples,
                "runtime": {key: report[key] for key in RUNTIME_KEYS if key in report},
                **info_extra,
            },
        )


def _note_context(result: RunResult, state: str, key: str, entry: Path | None = None) -> RunResult:
    """Say in the result's runtime info whether the compiled QNN context was built (``cold``), reused
    (``warm``) or not kept, under which key and where; the record keeps it in ``backend_info.loaded``.
    """
    runtime = result.info.setdefault("runtime", {})
    runtime["htp_context"] = {"state": state, "key": key, "entry": str(entry) if entry else None}
    return result
