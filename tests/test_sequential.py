"""Sequential evaluation (zoocompat/verdict/sequential.py): valid under repeated looks, and it stops early.

The simulations draw many cells whose true drop sits just past the tolerance
(the worst case for a wrong pass) and run the same :class:`SequentialTest` the
pipeline runs, look by look. With its looks' error budget spent evenly, a
wrong pass must stay within its nominal rate; the naive procedure (a 95%
interval at every look) is run on the same cells to show that the simulation
can tell the difference.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from zoocompat.verdict.sequential import ALPHA, SequentialTest, schedule
from zoocompat.verdict.stats import paired_drop

ROOT = Path(__file__).parent.parent
TOLERANCE = 0.01  # one point of top-1, the zoo's usual tolerance


def _paired_binary(rng: np.random.Generator, n: int, worse: float, better: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample 0/1 scores of a reference and a candidate: the candidate loses a sample the reference gets
    right with chance ``worse`` and wins one it gets wrong with chance ``better``.
    """
    u = rng.random(n)
    reference, candidate = np.ones(n), np.ones(n)
    candidate[u < worse] = 0
    reference[(u >= worse) & (u < worse + better)] = 0
    return reference, candidate


def _run(test: SequentialTest, reference: np.ndarray | None, candidate: np.ndarray) -> SequentialTest:
    while test.next_size is not None:
        n = test.next_size
        test.look(None if reference is None else reference[:n], candidate[:n])
    return test


def _naive(reference: np.ndarray, candidate: np.ndarray, sizes: tuple[int, ...], tolerance: float) -> str:
    """A 95% interval at every look, stopping at the first that decides: what the error budget prevents."""
    verdict = "inconclusive"
    for n in sizes:
        verdict = paired_drop(reference[:n], candidate[:n]).verdict(tolerance)
        if verdict != "inconclusive":
            break
    return verdict


def test_schedule_grows_geometrically_to_the_most_with_at_most_four_looks():
    assert schedule(160, 160) == (160,)
    assert schedule(500, 900) == (500, 900)
    assert schedule(128, 480) == (128, 248, 480)
    sizes = schedule(100, 10_000)
    assert len(sizes) == 4 and sizes[0] == 100 and sizes[-1] == 10_000
    assert all(b > a for a, b in zip(sizes, sizes[1:], strict=False))
    with pytest.raises(ValueError, match="at least one sample"):
        schedule(0, 10)


def test_one_planned_look_is_the_fixed_size_95_percent_verdict():
    rng = np.random.default_rng(5)
    reference, candidate = _paired_binary(rng, 400, 0.02, 0.01)
    test = _run(SequentialTest((400,), TOLERANCE), reference, candidate)
    single = paired_drop(reference, candidate)
    assert test.looks[-1].alpha == ALPHA
    assert test.looks[-1].interval == single.interval and test.verdict == single.verdict(TOLERANCE)


def test_false_pass_rate_with_repeated_looks_stays_nominal_for_accuracy():
    """4 looks (100 .. 900 samples), 3000 cells whose true drop is 1.2 points against a 1-point tolerance."""
    rng = np.random.default_rng(20261130)
    sizes, cells = schedule(100, 900), 3000
    assert len(sizes) == 4
    wrong_pass = naive_pass = 0
    for _ in range(cells):
        reference, candidate = _paired_binary(rng, sizes[-1], 0.022, 0.010)
        wrong_pass += _run(SequentialTest(sizes, TOLERANCE), reference, candidate).verdict == "pass"
        naive_pass += _naive(reference, candidate, sizes, TOLERANCE) == "pass"
    rate, naive_rate = wrong_pass / cells, naive_pass / cells
    error = 3 * math.sqrt(ALPHA / 2 * (1 - ALPHA / 2) / cells)  # three standard errors of a 2.5% rate
    assert rate <= ALPHA / 2 + error, (rate, naive_rate)  # a wrong pass is one side of the 95% interval
    assert rate <= ALPHA
    assert naive_rate > rate + error, (rate, naive_rate)  # repeated 95% looks do inflate it


def test_false_pass_rate_with_repeated_looks_stays_nominal_for_scores_and_floors():
    """The bootstrap path (a lower-is-better error such as NME) and the floor path (SQNR in dB), 3 looks each."""
    rng = np.random.default_rng(7)
    sizes, cells, tolerance = schedule(40, 160), 400, 0.005
    wrong_error = wrong_floor = 0
    for _ in range(cells):
        reference = rng.gamma(2.0, 0.01, sizes[-1])
        candidate = reference + rng.normal(tolerance + 0.0005, 0.01, sizes[-1])  # the error rose a bit too much
        test = SequentialTest(sizes, tolerance, higher_is_better=False)
        wrong_error += _run(test, reference, candidate).verdict == "pass"
        sqnr = rng.normal(19.9, 3.0, sizes[-1])  # a mean just under the 20 dB floor
        wrong_floor += _run(SequentialTest(sizes, 20.0, floor=True), None, sqnr).verdict == "pass"
    assert wrong_error / cells <= ALPHA, wrong_error / cells
    assert wrong_floor / cells <= ALPHA, wrong_floor / cells


def test_a_clear_pass_and_a_clear_fail_stop_before_the_last_look():
    rng = np.random.default_rng(11)
    sizes = schedule(100, 3200)
    clear_pass = _run(SequentialTest(sizes, TOLERANCE), *_paired_binary(rng, sizes[-1], 0.001, 0.001))
    clear_fail = _run(SequentialTest(sizes, TOLERANCE), *_paired_binary(rng, sizes[-1], 0.20, 0.0))
    assert clear_fail.verdict == "fail" and len(clear_fail.looks) == 1 and clear_fail.looks[0].samples == 100
    assert clear_pass.verdict == "pass" and clear_pass.looks[-1].samples < sizes[-1], clear_pass.looks
    open_cell = _run(SequentialTest(sizes, TOLERANCE), *_paired_binary(rng, sizes[-1], 0.021, 0.010))
    assert open_cell.verdict in ("inconclusive", "fail") and open_cell.looks[-1].samples >= sizes[-2]


def test_identical_outputs_pass_at_the_first_look():
    test = SequentialTest(schedule(50, 400), TOLERANCE)
    test.look(np.ones(50), np.ones(50), identical=True)
    assert test.verdict == "pass" and test.next_size is None


def test_a_look_refuses_the_wrong_number_of_samples():
    test = SequentialTest((10, 20), TOLERANCE)
    with pytest.raises(ValueError, match="planned at 10 samples, got 12"):
        test.look(np.ones(12), np.ones(12))


def test_samples_needed_for_perfect_agreement_is_where_the_interval_clears():
    drop = paired_drop(np.ones(160), np.ones(160))
    needed = drop.samples_needed(TOLERANCE)
    assert paired_drop(np.ones(needed), np.ones(needed)).verdict(TOLERANCE) == "pass"
    assert paired_drop(np.ones(needed - 1), np.ones(needed - 1)).verdict(TOLERANCE) == "inconclusive"


# --- through the pipeline ---------------------------------------------------------------------------------------


def _onet_card(**dataset) -> dict:
    card = yaml.safe_load((ROOT / "zoo" / "cards" / "mtcnn_onet.yaml").read_text())
    card.update(name="onet_looks", smoke=[], qat_quantizer=None)
    card["dataset"].update(dataset)
    return card


def _matrix(tmp_path: Path, zoo: Path, report: str, *extra: str) -> list[dict]:
    command = [
        sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "conformance/", "--zoo", str(zoo),
        "--zoo-models", "onet_looks", "--backends", "cpu,htp", "--precisions", "w8a8", "--quant", "ptq",
        "--zoo-report", str(tmp_path / report), *extra,
    ]  # fmt: skip
    env = dict(os.environ, ZOOCOMPAT_CACHE=str(tmp_path / "cache"))
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False, env=env)
    results = tmp_path / report / "results.json"
    assert results.is_file(), done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(results.read_text())["cells"]


def test_cells_grow_look_by_look_to_the_pool_and_keep_what_they_ran(tmp_path):
    """ONet on its 200 LFW faces: looks at 40, 80, 160 samples on cpu and htp, never recomputed on a rerun."""
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "onet_looks.yaml").write_text(yaml.safe_dump(_onet_card(evaluation=40, max_evaluation="pool")))
    cells = _matrix(tmp_path, zoo, "first")
    assert {c["backend"] for c in cells} == {"cpu", "htp"}
    for cell in cells:
        metric = cell["metric"]
        assert metric["planned"] == [40, 80, 160] and metric["pool"] == 160, cell["id"]
        looks = metric["looks"]
        assert [look["samples"] for look in looks] == metric["planned"][: len(looks)]
        assert all(look["alpha"] == pytest.approx(ALPHA / 3) for look in looks)
        assert metric["samples"] == looks[-1]["samples"]
        if cell["status"] == "inconclusive":  # ONet agrees with FP32 on every face: 160 cannot show <= 1 pt
            assert metric["stopped"] == "pool" and metric["samples"] == 160
            assert "pool exhausted at 160" in cell["reason"] and f"about {metric['samples_needed']}" in cell["reason"]
        else:
            assert metric["stopped"] == "decided", cell["id"]
    htp = next(c for c in cells if c["backend"] == "htp")
    assert htp["coverage"]["target_nodes"] == htp["coverage"]["total_nodes"]  # ONet runs whole on the HTP
    assert htp["fidelity"]["sqnr_vs_cpu_db"] > htp["fidelity"]["threshold_db"]
    grown = [c for c in cells if len(c["metric"]["looks"]) > 1]
    assert grown, "no cell took a second look"
    again = {c["id"]: c for c in _matrix(tmp_path, zoo, "second")}
    for cell in grown:
        rerun = again[cell["id"]]
        assert rerun["metric"]["looks"] == cell["metric"]["looks"]
        notes = rerun["backend_info"]["outputs"]
        assert notes["state"] == "reused" and {n["state"] for n in notes["looks"]} == {"reused"}, notes


def test_the_command_line_limits_the_looks(tmp_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "onet_looks.yaml").write_text(yaml.safe_dump(_onet_card(evaluation=40, max_evaluation="pool")))
    (cell,) = _matrix(tmp_path, zoo, "capped", "--backends", "cpu", "--max-evaluation", "60")
    assert cell["metric"]["planned"] == [40, 60]  # the pool holds 160: the command line stops it at 60
    assert cell["status"] == "inconclusive", cell["reason"]  # no drop on 60 faces cannot show <= 1 point
    assert cell["metric"]["stopped"] == "max_evaluation" and "--max-evaluation 60" in cell["reason"]
