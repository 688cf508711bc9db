"""Model-affine load scheduling (zoocompat/schedule.py): which worker is sent which cell.

The scheduler's choices are checked on xdist's own ``LoadScheduling`` machinery
with stand-in worker handles (they only record what they were sent), then on a
real ``pytest -n 2`` matrix run, where each worker must keep to its model.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.corpus.digits_linear import build_onnx, card, fit_weights
from zoocompat.model.cards import discover
from zoocompat.pytest_plugin.schedule import ModelAffinityScheduling, cell_id_of, expected_seconds
from zoocompat.run.matrix import Cell

ROOT = Path(__file__).parent.parent


class _Config:
    """What ``LoadScheduling`` reads from the pytest config: the worker specs and ``--maxschedchunk``."""

    def __init__(self, workers: int) -> None:
        self.values = {"tx": [f"{workers}*popen"], "maxschedchunk": None}

    def getvalue(self, name: str):
        return self.values[name]

    getoption = getvalue


class _Worker:
    """A worker handle that records the test indices it is sent."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.gateway = type("Gateway", (), {"id": name})()
        self.sent: list[int] = []
        self.shutting_down = False

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent.extend(indices)

    def shutdown(self) -> None:
        self.shutting_down = True

    def __repr__(self) -> str:
        return self.name


def _nodeid(model: str, precision: str) -> str:
    return f"conformance/test_matrix.py::test_cell[{model}-onnx-cpu-{precision}]"


def _scheduler(
    models: dict[str, int], workers: int = 2, seconds: dict[str, float] | None = None
) -> tuple[ModelAffinityScheduling, list[_Worker], list[str]]:
    collection = [_nodeid(model, f"p{i}") for model, count in models.items() for i in range(count)]
    groups = {cell_id_of(nodeid): nodeid.split("[")[1].split("-")[0] for nodeid in collection}
    sched = ModelAffinityScheduling(_Config(workers), None, groups, seconds)
    nodes = [_Worker(f"gw{i}") for i in range(workers)]
    for node in nodes:
        sched.add_node(node)
        sched.add_node_collection(node, collection)
    sched.schedule()
    return sched, nodes, collection


def _models(node: _Worker, collection: list[str]) -> list[str]:
    return [collection[i].split("[")[1].split("-")[0] for i in node.sent]


def _finish(sched: ModelAffinityScheduling, node: _Worker, count: int = 1) -> None:
    for _ in range(count):
        sched.mark_test_complete(node, sched.node2pending[node][0])


def test_cell_id_of_reads_the_parametrize_id():
    assert cell_id_of("conformance/test_matrix.py::test_cell[a-b-c]") == "a-b-c"
    assert cell_id_of("conformance/test_matrix.py::test_cell[m[1]-x]") == "m[1]-x"
    assert cell_id_of("tests/test_x.py::test_plain") is None


def test_workers_start_on_different_models():
    sched, (gw0, gw1), collection = _scheduler({"a": 6, "b": 6})
    # xdist's plain load would send gw0 a0 a1 a2 and gw1 a3 a4 a5: both workers on model a, one waiting
    # on the other's conversion.
    assert set(_models(gw0, collection)) == {"a"}
    assert set(_models(gw1, collection)) == {"b"}


def test_a_worker_gets_its_own_model_first_then_a_fresh_one_then_the_biggest_left():
    sched, (gw0, gw1, gw2), collection = _scheduler({"a": 4, "b": 8, "c": 8, "d": 2, "e": 2}, workers=3)
    model = {i: nodeid.split("[")[1].split("-")[0] for i, nodeid in enumerate(collection)}
    # no timings: every cell alike, so the models with most cells are started first
    assert [set(_models(n, collection)) for n in (gw0, gw1, gw2)] == [{"b"}, {"c"}, {"a"}]
    assert [model[i] for i in sched.pick(gw2, 3)] == ["a", "a", "d"]  # its own model, then one nobody holds
    sched.pending = [i for i in sched.pending if model[i] != "a"]  # a is used up
    assert [model[i] for i in sched.pick(gw2, 3)] == ["d", "d", "e"]  # models nobody holds, in order
    sched.pending = [i for i in sched.pending if model[i] in "bc"][:9]  # b: 6 left, c: 3 left, both held
    assert [model[i] for i in sched.pick(gw2, 2)] == ["b", "b"]  # the biggest left is shared out
    assert len(set(sched.pick(gw2, 100))) == len(sched.pending)  # never the same cell twice


def _cell(collection: list[str], index: int) -> str:
    return cell_id_of(collection[index]).replace("-onnx-cpu", "")


def test_the_longest_cells_and_the_model_with_most_work_go_first():
    seconds = {"a-onnx-cpu-p0": 5, "a-onnx-cpu-p1": 5, "a-onnx-cpu-p2": 5}
    seconds |= {"b-onnx-cpu-p0": 2, "b-onnx-cpu-p1": 100, "b-onnx-cpu-p2": 3, "b-onnx-cpu-p3": 1}
    sched, (gw0, gw1), collection = _scheduler({"a": 3, "b": 4}, seconds=seconds)
    # gw0 starts on b, the model with most work: its longest cell, and its cheapest as the one queued behind
    assert [_cell(collection, i) for i in gw0.sent] == ["b-p1", "b-p3"]
    assert set(_models(gw1, collection)) == {"a"}
    _finish(sched, gw0)  # b-p1 done: gw0 is sent b's longest cell left
    assert _cell(collection, gw0.sent[-1]) == "b-p2"
    assert sched.maxschedchunk == 1 and all(len(p) <= 2 for p in sched.node2pending.values())


def test_expected_seconds_come_from_timings_else_from_a_scaled_prior():
    cards, _ = discover([ROOT / "zoo" / "cards"])
    cells = [
        Cell("ppocr_textline_cls", "onnx", backend, precision, "none" if precision == "fp16" else "ptq")
        for backend, precision in [("htp", "fp16"), ("htp", "w8a16"), ("htp", "w8a8"), ("cpu", "w8a8")]
    ]
    cells.append(Cell("mtcnn_rnet", "pytorch", "htp", "w8a8", "ptq"))
    prior = expected_seconds(cells, cards, {})
    fp16, w8a16, w8a8, cpu, rnet = (prior[c.id] for c in cells)
    assert fp16 > w8a16 > w8a8 > cpu and w8a8 > rnet  # emulated fp16 costs most; a bigger input costs more
    timed = expected_seconds(cells, cards, {cells[2].id: 46.0, cells[4].id: 2.0})
    assert timed[cells[2].id] == 46.0 and timed[cells[4].id] == 2.0  # a timing is used as it is
    ratios = sorted([46.0 / w8a8, 2.0 / rnet])
    assert timed[cells[0].id] == pytest.approx(fp16 * (ratios[0] + ratios[1]) / 2)  # prior x median ratio


def test_a_crashed_workers_cells_go_to_the_others_and_its_model_is_free_again():
    sched, (gw0, gw1), collection = _scheduler({"a": 6, "b": 6})
    running = sched.node2pending[gw0][0]
    left_behind = sched.node2pending[gw0][1:]
    crashed = sched.remove_node(gw0)
    assert crashed == collection[running]  # xdist reports this one as the crashed cell
    assert set(left_behind) <= set(sched.pending) | set(sched.node2pending[gw1])
    replacement = _Worker("gw2")
    sched.add_node(replacement)
    sched.add_node_collection(replacement, collection)
    sched.schedule()
    assert replacement.sent and set(_models(replacement, collection)) == {"a"}  # nobody holds a any more
    while sched.pending or any(len(p) > 0 for p in sched.node2pending.values()):
        for node in (gw1, replacement):
            if sched.node2pending[node]:
                _finish(sched, node)
    done = set(gw1.sent) | set(replacement.sent)
    assert done | {running} == set(range(len(collection)))


@pytest.fixture(scope="module")
def two_model_zoo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sched")
    weights, bias = fit_weights()
    for name in ("digits_a", "digits_b"):
        build_onnx(root / f"{name}.onnx", weights, bias)
        (root / f"{name}.yaml").write_text(yaml.safe_dump(card(name, f"{name}.onnx")))
    return root


def _first_model_per_worker(stdout: str) -> dict[str, str]:
    """The model of the first cell each worker reported (a worker runs its cells in the order sent)."""
    first: dict[str, str] = {}
    line = re.compile(r"\[(gw\d+)\] (?:\[\s*\d+%\] )?\w+ conformance/test_matrix.py::test_cell\[(\w+?)-onnx")
    for worker, model in line.findall(stdout):
        first.setdefault(worker, model)
    return first


@pytest.mark.parametrize(("group_by", "kept"), [("model", True), ("none", False)])
def test_a_real_two_worker_run_keeps_each_model_on_one_worker(two_model_zoo, tmp_path, group_by, kept):
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "conformance/", "-n", "2"]
    command += ["--zoo", str(two_model_zoo), "--zoo-report", str(tmp_path / "report"), "--backends", "cpu"]
    command += ["--zoo-models", "digits_a,digits_b", "--precisions", "fp32,w8a8,w8a16", "--zoo-group-by", group_by]
    env = dict(os.environ, ZOOCOMPAT_CACHE=str(tmp_path / "cache"))
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    first = _first_model_per_worker(done.stdout)
    assert set(first) == {"gw0", "gw1"}, done.stdout[-2000:]
    # ours starts the two workers on different models; xdist's own load sends both digits_a cells first
    assert (first["gw0"] != first["gw1"]) is kept, first
