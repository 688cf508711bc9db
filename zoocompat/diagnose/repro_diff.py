"""``zoocompat repro CELL --baseline SDK``: the smallest subgraph that separates two SDK releases.

A repro cut for one release (:mod:`.repro_plan`) can fail on the older release
too, and then it proves nothing about the upgrade. This search looks for a
subgraph of the cell's own model, with its Q/DQ and the values the full model
feeds it, that the baseline release runs as the full model did there and the
candidate release does not:

- a **fallback**: the baseline takes the whole subgraph on the target with CPU
  fallback disabled, the candidate refuses it;
- **numerics** (accuracy or fidelity): the candidate's output is below the
  threshold against the CPU run of the same subgraph (graph optimizations off),
  the baseline's above.

It starts from the fallen-back node (or the first bad layer of the cell's
diagnosis) and grows by graph neighbourhood, one hop of compute nodes at a
time (through their Q/DQ pairs), until a subgraph separates the releases; then
it drops nodes one at a time (farthest first) while the subgraph still
separates them. Every candidate subgraph runs on both releases, each through
the backend's runner in that release's own isolated environment. When no
subgraph up to :data:`MAX_NODES` compute nodes separates them, it says so with
what it tried.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoocompat.api.errors import CellError
from zoocompat.diagnose.first_bad import activation_pairs, float_tensors, no_context_cache, run_cpu
from zoocompat.diagnose.repro import ReproCase, ReproError
from zoocompat.diagnose.repro_plan import cut_and_feed, setup
from zoocompat.report.results import CellRecord
from zoocompat.verdict.stats import sqnr_db

__all__ = ["MAX_CHECKS", "MAX_NODES", "neighbours", "plan_differential", "separate"]

#: the largest subgraph (compute nodes, Q/DQ not counted) the search grows to
MAX_NODES = 48
#: the most subgraphs checked (each on both releases) before the search gives up
MAX_CHECKS = 24
STRICT = {"session.disable_cpu_ep_fallback": "1"}
_QDQ = ("QuantizeLinear", "DequantizeLinear")


def neighbours(model: Any) -> dict[int, set[int]]:
    """``{node index: indices of the compute nodes next to it}``, looking through Q/DQ chains (both ways)."""
    nodes = list(model.graph.node)
    producer = {o: i for i, n in enumerate(nodes) for o in n.output if o}
    consumers: dict[str, list[int]] = {}
    for i, n in enumerate(nodes):
        for name in n.input:
            consumers.setdefault(name, []).append(i)

    def walk(start: list[str], step) -> set[int]:
        found, stack, seen = set(), list(start), set()
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            for j in step(name):
                if nodes[j].op_type in _QDQ:
                    stack += list(nodes[j].input if step is up else nodes[j].output)
                else:
                    found.add(j)
        return found

    def up(name: str) -> list[int]:
        return [producer[name]] if name in producer else []

    def down(name: str) -> list[int]:
        return consumers.get(name, [])

    return {
        i: walk(list(n.input), up) | walk(list(n.output), down) for i, n in enumerate(nodes) if n.op_type not in _QDQ
    }


@dataclass
class Outcome:
    """What one release did with one subgraph."""

    sdk: str
    bad: bool  # showed the problem (refused it / below the threshold)
    text: str


@dataclass
class _Search:
    """What every check needs: the backend, the cell, the model, the batch, the two releases, the problem."""

    backend: Any
    cell: Any
    model: Any
    batch: dict[str, np.ndarray]
    baseline: str
    candidate: str
    kind: str  # fallback | numerics
    threshold_db: float
    work: Path
    checks: int = 0

    def graph(self, region: set[int]) -> tuple[Any, dict[str, np.ndarray], dict[str, np.ndarray], Path]:
        """The region's model, fed from the full model, its CPU reference, and where it is saved."""
        import onnx

        sub, inputs = cut_and_feed(self.model, region, self.batch)
        path = self.work / f"region_{self.checks}.onnx"
        onnx.save(sub, str(path))
        return sub, inputs, run_cpu(sub, inputs, optimize=False), path

    def run(self, sdk: str, path: Path, inputs: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> Outcome:
        """The subgraph at ``path`` on one release, judged for this search's problem."""
        workdir = path.with_name(f"{path.stem}_{sdk}")
        with no_context_cache():
            compiled = self.backend.compile(path, self.cell.precision, self.released(sdk), workdir)
            if self.kind == "fallback":
                compiled.session_config = {**getattr(compiled, "session_config", {}), **STRICT}
            try:
                outputs = compiled.run(inputs).outputs
            except CellError as error:
                refused = "fallback" in error.message.lower() and "disabled" in error.message.lower()
                if self.kind == "fallback" and refused:
                    return Outcome(sdk, True, "refused: part of it would fall back to the CPU")
                return Outcome(sdk, False, f"error: {error.message.split('; log:')[0][:200]}")
        if self.kind == "fallback":
            return Outcome(sdk, False, "ran whole on the target")
        values = [sqnr_db(ref, outputs[name]) for name, ref in expected.items()]
        worst = min(float("inf") if v is None else v for v in values)
        return Outcome(sdk, worst < self.threshold_db, f"{worst:.2f} dB against the CPU reference")

    def released(self, sdk: str) -> str | None:
        """The SDK id as the backend takes it (the installed environment's release is ``None`` in a cell)."""
        return self.cell.sdk if sdk == self.candidate else sdk

    def check(self, region: set[int]) -> tuple[bool, list[Outcome], tuple]:
        """Whether ``region`` separates the releases (candidate bad, baseline good), with both outcomes."""
        self.checks += 1
        sub, inputs, expected, path = self.graph(region)
        candidate = self.run(self.candidate, path, inputs, expected)
        baseline = self.run(self.baseline, path, inputs, expected) if candidate.bad else None
        outcomes = [candidate] + ([baseline] if baseline else [])
        return bool(candidate.bad and baseline and not baseline.bad), outcomes, (sub, inputs, expected)


@dataclass
class Found:
    """The outcome of :func:`separate`: the smallest separating region (``None``: none), and what was tried."""

    region: set[int] | None
    graph: tuple | None
    outcomes: list[Outcome]
    tried: list[str]
    largest: int


def separate(search: _Search, seed: int) -> Found:
    """Grow a region from node ``seed`` by neighbourhood until it separates the releases, then shrink it."""
    adjacent = neighbours(search.model)
    region, tried, hops = {seed}, [], {seed: 0}
    while True:
        separates, outcomes, graph = search.check(region)
        tried.append(f"{_describe(search.model, region)}: " + "; ".join(f"{o.sdk} {o.text}" for o in outcomes))
        if separates:
            break
        grown = {j for i in region for j in adjacent.get(i, ())} - region
        if not grown or len(region) + len(grown) > MAX_NODES or search.checks >= MAX_CHECKS:
            return Found(None, None, outcomes, tried, len(region))
        depth = max(hops[i] for i in region) + 1
        hops.update(dict.fromkeys(grown, depth))
        region |= grown
    for node in sorted(region - {seed}, key=lambda i: -hops[i]):  # drop the farthest nodes first
        if search.checks >= MAX_CHECKS:
            break
        smaller = region - {node}
        separates, smaller_outcomes, smaller_graph = search.check(smaller)
        if separates:
            region, graph, outcomes = smaller, smaller_graph, smaller_outcomes
    return Found(region, graph, outcomes, tried, len(region))


def _seed(model: Any, record: CellRecord, kind: str) -> tuple[int, str]:
    """Where the search starts: the first node of a fallen-back op type, or the first bad layer."""
    nodes = list(model.graph.node)
    if kind == "fallback":
        ops = list(record.coverage.fallback_ops) if record.coverage and record.coverage.fallback_ops else []
        index = next((i for op in ops for i, n in enumerate(nodes) if n.op_type == op), None)
        if index is None:
            raise ReproError(f"{record.id}: no node of the fallen-back op types {ops or '(none recorded)'}")
        return index, f"the fallen-back {nodes[index].op_type} node {nodes[index].name!r}"
    found = record.diagnosis.backend if record.diagnosis else None
    if found is None or not found.first_bad_tensor:
        raise ReproError(f"{record.id}: its diagnosis names no first bad layer on the backend to start from")
    pairs = activation_pairs(model) if any(n.op_type in _QDQ for n in nodes) else float_tensors(model)
    pair = next((p for p in pairs if p.qdq == found.first_bad_tensor and p.index >= 0), None)
    if pair is None:
        raise ReproError(f"{record.id}: the first bad tensor {found.first_bad_tensor!r} is not a node's output")
    return pair.index, f"the first bad layer {pair.op_type} {pair.layer!r}"


def _describe(model: Any, region: set[int]) -> str:
    ops = [model.graph.node[i].op_type for i in sorted(region)]
    count = f"{len(ops)} compute node{'s' if len(ops) > 1 else ''}"
    return f"{count}: {' → '.join(ops)}" if len(ops) <= 12 else count


def plan_differential(
    runner: Any,
    cell: Any,
    record: CellRecord,
    baseline: str,
    samples: int,
    work: Path,
    problem: str | None = None,
) -> ReproCase:
    """The smallest subgraph of ``record``'s model that ``baseline`` runs as the full model did and the cell's
    release does not (see the module doc); raises :class:`ReproError` when none up to :data:`MAX_NODES`
    compute nodes separates them, naming what was tried.
    """
    kind = problem or ("fallback" if record.coverage and record.coverage.fallback_ops else "numerics")
    if kind not in ("fallback", "numerics"):
        raise ReproError(f"--baseline repros show a fallback or numerics; {kind!r} is neither")
    ctx = setup(runner, cell, record, samples, work)
    candidate = cell.sdk or ctx.common["sdk"]
    if candidate == baseline:
        raise ReproError(f"{record.id} ran on {baseline} already: pass another release as --baseline")
    threshold = 0.0
    if kind == "numerics":
        found = record.diagnosis.backend if record.diagnosis else None
        threshold = found.threshold_db if found else 20.0
    search = _Search(ctx.backend, cell, ctx.model, ctx.batch, baseline, candidate, kind, threshold, work)
    seed, start = _seed(ctx.model, record, kind)
    found = separate(search, seed)
    if found.region is None:
        raise ReproError(
            f"{record.id}: no subgraph of up to {found.largest} compute nodes around {start} separates "
            f"{baseline} from {candidate} ({kind}); tried, growing by neighbourhood:\n  " + "\n  ".join(found.tried)
        )
    region, graph, kept_outcomes = found.region, found.graph, found.outcomes
    sub, inputs, expected = graph
    described = _describe(ctx.model, region)
    details = list(ctx.common["details"])
    details += [f"{o.sdk}: {o.text}" for o in kept_outcomes]
    details.append(f"search: {search.checks} subgraphs checked on both releases, from {start}")
    common = {**ctx.common, "details": details, "sdk": candidate}
    if kind == "fallback":
        common["session_config"] = {**ctx.common["session_config"], **STRICT}
    what = (
        f"a subgraph of {described} around {start}, with its Q/DQ, fed the values the full model gives it "
        f"on {samples} evaluation samples: {baseline} runs it "
        + ("whole on the target" if kind == "fallback" else "above the threshold")
        + f", {candidate} does not"
    )
    return ReproCase(
        kind="fallback" if kind == "fallback" else "backend",
        model=sub,
        inputs=inputs,
        expected=expected,
        ep=ctx.ep,
        check="fallback" if kind == "fallback" else "sqnr_below",
        threshold_db=threshold,
        observed=_observed(record, kind, baseline, candidate),
        expected_from="cpu",
        what=what,
        baseline_sdk=baseline,
        outcomes={o.sdk: o.text for o in kept_outcomes},
        **common,
    )


def _observed(record: CellRecord, kind: str, baseline: str, candidate: str) -> str:
    if kind == "fallback":
        ops = ", ".join(f"{op} ×{n}" for op, n in (record.coverage.fallback_ops or {}).items())
        return f"{ops} fell back to the CPU under {candidate} (a regression against {baseline})"
    return f"{record.reason[:200]} under {candidate} (a regression against {baseline})"
