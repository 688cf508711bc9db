"""The op table and the gate agree.

Every coverage regression the gate finds in the zoo between two releases is a regression of an op or pattern
probe, or the op diff lists it as seen only in models, naming the cell.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from tests.conftest import DATA
from zoocompat.cli import main
from zoocompat.diagnose import ops as ops_table
from zoocompat.gate.agreement import coverage_regressions, explain
from zoocompat.report.results import load_results

DOCS = DATA.parent.parent / "docs"
BEFORE, AFTER = "qnn-2.47", "qnn-2.51"


def _tables() -> tuple[dict, dict]:
    return tuple(json.loads((DOCS / f"op-support-htp-{sdk}.json").read_text()) for sdk in (BEFORE, AFTER))


def _findings() -> list[dict]:
    both = load_results(DOCS / "results-latest.json")
    runs = [both.model_copy(update={"cells": [c for c in both.cells if c.release == sdk]}) for sdk in (BEFORE, AFTER)]
    return [f for f in coverage_regressions(*runs) if f["backend"] == "htp"]


def test_every_coverage_regression_of_the_zoo_is_a_probe_regression_or_listed_as_seen_only_in_models():
    before, after = _tables()
    findings = _findings()
    assert findings, "the published results hold the 2.47 -> 2.51 gate's coverage regression (ViT's Erf)"
    probes = {**before["probes"], **after["probes"]}
    explained = explain(ops_table.diff_tables(before, after), findings, probes)
    published = (DOCS / "op-support-diff-qnn-2.47-2.51.md").read_text()
    alone = published.split("## Seen only in models", 1)
    assert len(alone) == 2, "the published op diff was made with --results and has the models section"
    for finding in explained:
        assert finding["explained_by"] or f"`{finding['cell']}`" in alone[1], finding
    vit = next(f for f in explained if f["cell"].startswith("vit_mnist-pytorch-htp-w8a8-ptq"))
    assert vit["ops"] == ["Erf"] and any("GELU(erf)" in p for p in vit["explained_by"])


def test_a_model_regression_no_probe_shows_is_listed_with_its_cell(tmp_path):
    probes = {"Relu": {"op": "Relu"}}
    before = {"ops": {"Relu": {"w8a8": "supported"}}, "backend": "htp", "sdk": BEFORE, "probes": probes}
    after = {**before, "sdk": AFTER, "ops": {"Relu": {"w8a8": "unsupported"}}}
    findings = [
        {"cell": "m-onnx-htp-w8a8-ptq", "backend": "htp", "precision": "w8a8", "ops": ["Relu"]},
        {"cell": "n-onnx-htp-w8a8-ptq", "backend": "htp", "precision": "w8a8", "ops": ["TopK"]},
        {"cell": "o-onnx-htp-w8a16-ptq", "backend": "htp", "precision": "w8a16", "ops": ["Relu"]},
    ]
    models = explain(ops_table.diff_tables(before, after), findings, before["probes"])
    assert [m["explained_by"] for m in models] == [["Relu"], [], []]
    text = ops_table.render_diff_markdown(ops_table.diff_tables(before, after, models=models))
    seen = text.split("## Seen only in models", 1)[1]
    assert "| `n-onnx-htp-w8a8-ptq` | w8a8 | TopK |" in seen and "| `o-onnx-htp-w8a16-ptq` | w8a16 | Relu |" in seen
    assert "| `m-onnx-htp-w8a8-ptq` | w8a8 | Relu | Relu |" in seen


def test_the_cli_diff_takes_the_zoo_results(tmp_path):
    before, after = _tables()
    (tmp_path / "a.json").write_text(json.dumps(before))
    (tmp_path / "b.json").write_text(json.dumps(after))
    args = ["ops", "--diff", str(tmp_path / "a.json"), str(tmp_path / "b.json")]
    result = CliRunner().invoke(main, [*args, "--results", str(DOCS / "results-latest.json")])
    assert result.exit_code == 0, result.output
    assert "## Seen only in models" in result.stdout and "vit_mnist-pytorch-htp-w8a8-ptq" in result.stdout
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({**json.loads((DOCS / "results-latest.json").read_text()), "cells": []}))
    bad = CliRunner().invoke(main, [*args, "--results", str(empty)])
    assert bad.exit_code == 2 and "no cells of qnn-2.47 and qnn-2.51" in bad.output
    (tmp_path / "junk.json").write_text("{not json")
    junk = CliRunner().invoke(main, [*args, "--results", str(tmp_path / "junk.json")])
    assert junk.exit_code == 2 and junk.output.startswith("error: --results:") and "junk.json" in junk.output
