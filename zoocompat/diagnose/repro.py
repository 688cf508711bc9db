"""``zoocompat repro CELL_ID``: a self-contained folder that shows one cell's problem on the smallest ONNX.

What the folder holds (:func:`write_repro`):

- ``model.onnx``: the smallest graph that still shows the problem, cut from the
  cell's real model with the nodes' real attributes, shapes and Q/DQ encodings;
- ``inputs.npz`` and the same tensors SNPE-style (``raw/*.raw`` + ``raw/input_list.txt``);
- ``expected.npz``: the reference outputs (the CPU EP run of the same model, or
  the FP32 model's for a quantization loss);
- ``repro.py`` (standalone: numpy + onnxruntime [+ onnxruntime-qnn]) and ``repro.json``;
- ``README.md``: the cell, the SDK, what was observed, the one command.

Which graph, and its measurements, is :func:`zoocompat.diagnose.repro_plan.plan_repro`'s
work; this module holds what it produces (:class:`ReproCase`), finds the cell in
a results file and writes the folder.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoocompat.api.errors import ZoocompatError
from zoocompat.api.samples import count, sample
from zoocompat.model.input_list import write_input_list
from zoocompat.report.results import CellRecord, Results

__all__ = ["DEFAULT_SAMPLES", "ReproCase", "ReproError", "find_cell", "write_repro"]

SCRIPT = Path(__file__).with_name("repro_script.py")
DEFAULT_SAMPLES = 4


class ReproError(ZoocompatError):
    """No repro can be made for this cell (unknown id, nothing wrong with it, artifacts gone)."""


@dataclass
class ReproCase:
    """Everything a repro folder holds, before it is written."""

    cell: str
    kind: str  # fallback | backend | quantization | crash
    model: Any  # onnx.ModelProto
    inputs: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]
    ep: str  # "qnn" or "cpu"
    check: str  # "sqnr_below" | "fallback" | "crash"
    threshold_db: float
    observed: str
    expected_from: str  # what expected.npz is: "cpu" (the unfused QDQ reference) or "fp32"
    what: str  # one sentence: which graph this is
    provider_options: dict[str, str] = field(default_factory=dict)
    session_config: dict[str, str] = field(default_factory=dict)
    sdk: str | None = None
    qnn_core_version: str | None = None
    optimize: bool = True  # the main run with onnxruntime's default graph optimizations (False: as written)
    details: list[str] = field(default_factory=list)
    baseline_sdk: str | None = None  # a differential repro: the release that does not show the problem
    outcomes: dict[str, str] = field(default_factory=dict)  # release -> what it did with this graph


def find_cell(results: Results, cell_id: str) -> CellRecord:
    """The record with ``cell_id`` (or, when unique, the one whose id starts with it)."""
    for cell in results.cells:
        if cell.id == cell_id:
            return cell
    matches = [c for c in results.cells if c.id.startswith(cell_id)]
    if len(matches) == 1:
        return matches[0]
    hint = ", ".join(c.id for c in matches[:5]) if matches else "none close"
    raise ReproError(f"no cell {cell_id!r} in these results (matches: {hint})")


def _readme(case: ReproCase, command: str) -> str:
    info = f"{case.sdk or 'the installed SDK'}" + (
        f" (QNN core {case.qnn_core_version})" if case.qnn_core_version else ""
    )
    python = f"$(zoocompat sdk path {case.sdk} | head -1)" if case.sdk else "python"
    if case.ep != "qnn":
        python = "python"
    inputs = ", ".join(f"`{k}` {list(v.shape)} {v.dtype}" for k, v in case.inputs.items())
    lines = [
        f"# Repro: `{case.cell}`",
        "",
        f"**Observed in the matrix:** {case.observed}",
        "",
        f"**This folder:** {case.what}",
        "",
        "```bash",
        f"{python} repro.py              # exit 0 = reproduced, 1 = not",
        f"{python} repro.py --ep cpu     # the same on the CPU EP (default optimizations: fused integer kernels)",
        f"{python} repro.py --reference  # the CPU EP with graph optimizations off: how expected.npz was made",
        "```",
        "",
        f"Runs on: {'the QNN EP (onnxruntime-qnn), ' + info if case.ep == 'qnn' else 'the onnxruntime CPU EP'}.",
    ]
    if case.provider_options:
        lines.append(
            f"Provider options: `{json.dumps(case.provider_options)}` (backend_path: the running release's "
            "`libQnnHtp.so`)."
        )
    if case.session_config:
        lines.append(f"Session config: `{json.dumps(case.session_config)}`.")
    check = {
        "sqnr_below": f"reproduced when an output's SQNR against `expected.npz` is below {case.threshold_db} dB; "
        + (
            "`expected.npz` is the FP32 model's value of the same tensor"
            if case.expected_from == "fp32"
            else "`expected.npz` is the CPU EP run with graph optimizations off (every Q / DQ as written: "
            "the QDQ model's exact semantics)"
        ),
        "fallback": "reproduced when the QNN EP refuses the graph with CPU fallback disabled",
        "crash": "reproduced when the run dies or fails",
    }[case.check]
    if case.baseline_sdk:
        lines += ["", *_releases(case)]
    lines += [
        f"Check: {check}.",
        "",
        "Files: `model.onnx` (open it with Netron or `zoocompat inspect model.onnx`), `inputs.npz` "
        f"({inputs}; the same tensors as `.raw` files in `raw/`, each in its input's dtype, listed in "
        "`raw/input_list.txt` for "
        "`qnn-net-run` / `snpe-net-run --input_list`), `expected.npz`, `repro.json`, `repro.py`.",
        "",
        "## What was measured when this folder was written",
        "",
        *[f"- {d}" for d in case.details],
        "",
        f"Written by `{command}`.",
        "",
    ]
    return "\n".join(lines)


def _releases(case: ReproCase) -> list[str]:
    """The two releases of a differential repro: the command under each, and what each did when written."""
    lines = [
        f"**Two releases.** This graph separates {case.baseline_sdk} (baseline) from {case.sdk} (candidate): "
        "`repro.py` exits 0 (reproduced) under the candidate's python and 1 under the baseline's.",
        "",
        "| release | command | measured when this folder was written |",
        "|---|---|---|",
    ]
    for sdk in (case.sdk, case.baseline_sdk):
        outcome = case.outcomes.get(sdk or "", "–")
        lines.append(f"| {sdk} | `$(zoocompat sdk path {sdk} \\| head -1) repro.py` | {outcome} |")
    return lines + [""]


def _input_ranks(model: Any, inputs: dict[str, np.ndarray]) -> dict[str, int]:
    """``{input name: rank}`` of ``model``'s graph inputs for :func:`zoocompat.api.samples.sample`; an input
    declared without a shape is fed batched (its rank taken as its array's in ``inputs``).
    """
    initializers = {init.name for init in model.graph.initializer}
    ranks = {}
    for graph_input in model.graph.input:
        if graph_input.name in initializers or graph_input.name not in inputs:
            continue
        tensor = graph_input.type.tensor_type
        ranks[graph_input.name] = len(tensor.shape.dim) if tensor.HasField("shape") else inputs[graph_input.name].ndim
    return ranks


def write_repro(case: ReproCase, out: Path, command: str = "zoocompat repro") -> Path:
    """Write the repro folder for ``case`` into ``out`` (created; files of the same names replaced)."""
    import onnx

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(case.model, str(out / "model.onnx"))
    np.savez(out / "inputs.npz", **case.inputs)
    np.savez(out / "expected.npz", **case.expected)
    shutil.rmtree(out / "raw", ignore_errors=True)
    ranks = _input_ranks(case.model, case.inputs)
    feeds = [sample(case.inputs, i, ranks) for i in range(count(case.inputs))]
    write_input_list(feeds, out / "raw", dtypes={name: array.dtype for name, array in case.inputs.items()})
    config = {
        "cell": case.cell,
        "kind": case.kind,
        "ep": case.ep,
        "check": case.check,
        "threshold_db": case.threshold_db,
        "expected": case.expected_from,
        "observed": case.observed,
        "optimize": case.optimize,
        "provider_options": case.provider_options,
        "session_config": case.session_config,
        "sdk": case.sdk,
        "qnn_core_version": case.qnn_core_version,
        "baseline_sdk": case.baseline_sdk,
        "outcomes": case.outcomes,
    }
    (out / "repro.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    shutil.copyfile(SCRIPT, out / "repro.py")
    (out / "README.md").write_text(_readme(case, command), encoding="utf-8")
    return out
