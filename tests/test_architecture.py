"""The import architecture holds: the contracts in ``.importlinter`` pass, and the core has no import cycle.

The contracts (core closed to the built-ins, plugin kinds independent, the zoo
through the registry, the core's stages layered) are import-linter's; the
cycle check is separate because a layers contract does not see a cycle
between two modules of one stage (``run.pipeline -> run.autoquant -> run.pipeline``).
Both read the import graph statically, function-level imports included, and
leave out ``if TYPE_CHECKING:`` imports (annotations only, nothing runs).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_import_contracts_are_kept() -> None:
    assert LINT_IMPORTS.is_file(), f"{LINT_IMPORTS} is missing: pip install the dev extra (import-linter)"
    done = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (each holds at least one cycle), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def test_cycles_finds_a_cycle_and_only_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert cycles(edges) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_core_has_no_import_cycle() -> None:
    graph = grimp.build_graph("zoocompat", exclude_type_checking_imports=True)
    core = {m for m in graph.modules if m == "zoocompat" or m.startswith("zoocompat.")}
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if i in core} for m in core}
    found = cycles(edges)
    described = []
    for component in found:
        first, second = component[:2]  # in one component each module reaches every other
        there = graph.find_shortest_chain(first, second) or (first, second)
        back = graph.find_shortest_chain(second, first) or (second, first)
        described.append(f"{' -> '.join(there)} -> {' -> '.join(back[1:])}  (modules in the cycle: {component})")
    assert not found, "import cycles in the core (break them by moving code, not by importing inside a function):\n" + (
        "\n".join(described)
    )
