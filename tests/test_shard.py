"""Shards: a deterministic, balanced split of the selected cells, and ``zoocompat merge`` joining them.

The end-to-end test runs a tiny cpu-only matrix unsharded and as two shards
(one of them on two xdist workers with ``--dist loadgroup``), merges the shards
and checks that the merged support table is the unsharded one, timings and
hosts aside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.corpus.digits_linear import build_onnx, card, fit_weights
from zoocompat.pytest_plugin.shard import (
    ShardError,
    ShardSpec,
    assign,
    load_durations,
    merge_results,
    parse_shard,
    select,
)
from zoocompat.report.results import load_results
from zoocompat.report.table import made_by, render_markdown

ROOT = Path(__file__).parent.parent
MODELS = ("digits_a", "digits_b", "digits_c")


@dataclass(frozen=True)
class _Item:
    id: str | None
    model: str | None


def _items(models: int, cells_per_model: int) -> list[_Item]:
    return [_Item(f"m{m}-c{c}", f"m{m}") for m in range(models) for c in range(cells_per_model)]


def _split(items, count, durations=None, by="model"):
    return [
        select(items, ShardSpec(k, count), lambda i: i.id, lambda i: i.model, durations, by)[0]
        for k in range(1, count + 1)
    ]


def test_parse_shard_accepts_k_of_n_only():
    assert parse_shard("2/3") == ShardSpec(2, 3) and str(parse_shard("1/1")) == "1/1"
    for bad in ("0/2", "3/2", "2", "a/b", "1/0", "-1/2", ""):
        with pytest.raises(ShardError, match="expected K/N"):
            parse_shard(bad)


@pytest.mark.parametrize("count", [1, 2, 3, 5])
@pytest.mark.parametrize("by", ["model", "cell"])
def test_every_cell_is_in_exactly_one_shard_and_the_split_is_stable(count, by):
    items = _items(4, 3) + [_Item(None, None)]  # a bad card's test: not a cell, goes to shard 1
    shards = _split(items, count, by=by)
    assert sorted((i for s in shards for i in s), key=str) == sorted(items, key=str)
    assert _Item(None, None) in shards[0]
    assert shards == _split(list(reversed(items)), count, by=by) or all(
        set(a) == set(b) for a, b in zip(shards, _split(list(reversed(items)), count, by=by), strict=True)
    )


def test_model_units_keep_a_models_cells_together_unless_models_are_too_few():
    shards = _split(_items(4, 3), 2)
    for shard in shards:
        models = {i.model for i in shard}
        assert all(sum(i.model == m for i in shard) == 3 for m in models)
    assert [len(s) for s in shards] == [6, 6]  # equal weight per cell without durations: counts balance
    few = _split(_items(1, 4), 2)  # one model, two shards: split by cell instead
    assert [len(s) for s in few] == [2, 2]


def test_durations_balance_the_split():
    items = _items(1, 6)
    durations = {"m0-c0": 10.0, "m0-c1": 1.0, "m0-c2": 1.0, "m0-c3": 1.0, "m0-c4": 1.0, "m0-c5": 1.0}
    heavy, light = _split(items, 2, durations, by="cell")
    assert [i.id for i in heavy] == ["m0-c0"] and len(light) == 5
    # an unknown cell costs the median of the known ones
    assert assign({"a": 3.0, "b": 2.0, "c": 2.0, "d": 1.0}, 2) == {"a": 1, "b": 2, "c": 2, "d": 1}


def test_load_durations_reads_results_or_a_mapping(tmp_path):
    results = tmp_path / "results.json"
    cell = {"id": "x", "timing": {"convert_s": 1.0, "quantize_s": None, "compile_s": 0.5, "run_s": 2.0}}
    results.write_text(json.dumps({"run": {}, "cells": [cell]}))
    assert load_durations(results) == {"x": 3.5}
    mapping = tmp_path / "d.json"
    mapping.write_text(json.dumps({"x": 2, "y": 0.5}))
    assert load_durations(mapping) == {"x": 2.0, "y": 0.5}
    mapping.write_text("[1, 2]")
    with pytest.raises(ShardError, match="neither a zoocompat results.json"):
        load_durations(mapping)
    with pytest.raises(ShardError, match="cannot read"):
        load_durations(tmp_path / "missing.json")


# -- end to end: a tiny cpu-only matrix, unsharded vs two shards merged ---------------------------


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shard")
    zoo = root / "zoo"
    zoo.mkdir()
    weights, bias = fit_weights()
    for name in MODELS:
        build_onnx(zoo / f"{name}.onnx", weights, bias)
        (zoo / f"{name}.yaml").write_text(yaml.safe_dump(card(name, f"{name}.onnx")))
    return root


def _matrix(root: Path, report: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "conformance/"]
    command += ["--zoo", str(root / "zoo"), "--zoo-report", str(report), "--backends", "cpu"]
    command += ["--zoo-models", ",".join(MODELS), "--precisions", "fp32,w8a8", *extra]
    env = dict(os.environ, ZOOCOMPAT_CACHE=str(root / "cache"))
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, env=env)


def _table_without_times(path: Path) -> str:
    """The table without its run times and the commands that made it (a merge lists each part's command)."""
    head, rest = render_markdown(load_results(path)).split("\nMade by:\n", 1)
    head = "\n".join(line for line in head.splitlines() if not line.startswith("Run: "))
    return head + rest[rest.index("\nCells: ") :]


def test_two_shards_merged_give_the_unsharded_table(tiny_zoo):
    whole = _matrix(tiny_zoo, tiny_zoo / "whole", "-n", "0")
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-2000:]
    durations = tiny_zoo / "whole" / "results.json"
    first = _matrix(tiny_zoo, tiny_zoo / "s1", "-n", "0", "--shard", "1/2", "--shard-durations", str(durations))
    second = _matrix(
        tiny_zoo, tiny_zoo / "s2", "-n", "2", "--dist", "loadgroup", "--shard", "2/2", "--shard-durations",
        str(durations),
    )  # fmt: skip
    for done in (first, second):
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "deselected" in first.stdout  # (under xdist the workers deselect; the summary does not say)
    ids = [{c.id for c in load_results(tiny_zoo / s / "results.json").cells} for s in ("s1", "s2")]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    assert {c.model for c in load_results(tiny_zoo / "s1" / "results.json").cells}.isdisjoint(
        {c.model for c in load_results(tiny_zoo / "s2" / "results.json").cells}
    )  # a model's cells stay in one shard
    merged = tiny_zoo / "merged.json"
    done = subprocess.run(
        [sys.executable, "-m", "zoocompat.cli", "merge", str(tiny_zoo / "s1" / "results.json"),
         str(tiny_zoo / "s2" / "results.json"), "-o", str(merged)],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "6 cells from 2 files" in done.stdout and "warning" not in done.stderr
    assert _table_without_times(merged) == _table_without_times(tiny_zoo / "whole" / "results.json")
    header = load_results(merged).run
    assert [p["cells"] for p in header.host["parts"]] == [len(ids[0]), len(ids[1])]
    assert "--shard 1/2" in header.host["parts"][0]["command"]


def test_bad_shard_option_is_a_usage_error(tiny_zoo):
    done = _matrix(tiny_zoo, tiny_zoo / "bad", "-n", "0", "--shard", "3/2", "--collect-only")
    assert done.returncode == 4 and "expected K/N" in done.stderr


def test_merge_warns_when_shards_disagree():
    base = load_results(ROOT / "tests" / "data" / "results-slice.json")
    other = base.model_copy(deep=True)
    other.cells[0].status = "fail" if base.cells[0].status != "fail" else "pass"
    other.run.tools = {**other.run.tools, "onnxruntime": "0.0"}
    merged, warnings = merge_results([base, other], ["a.json", "b.json"])
    assert merged.cells[0].status == other.cells[0].status and len(merged.cells) == len(base.cells)
    assert any(f"a.json says {base.cells[0].status}, b.json says {other.cells[0].status}" in w for w in warnings)
    assert any("tools differ" in w for w in warnings)
    assert [p["source"] for p in merged.run.host["parts"]] == ["a.json", "b.json"]
    single, both = made_by(base), made_by(merged)
    assert single[0] == both[0] == "Made by:" and len(single) == 2 and len(both) == 3
    assert f": {len(base.cells)} cells, " in single[1] and both[1].startswith(f"- `{base.run.command}`: ")
