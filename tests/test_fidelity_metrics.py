"""Fidelity metrics (sqnr, cosine, agreement): scored against the FP32 output, no labels."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
from zoocompat_plugins.metrics import fidelity
from zoocompat_plugins.metrics.fidelity import MAX_SQNR_DB, Agreement, Cosine, Sqnr

from zoocompat.api.errors import CellError
from zoocompat.api.protocols import Metric, missing_members, optional
from zoocompat.api.registry import build_registry

ROOT = Path(__file__).parent.parent
METRICS = (Sqnr(), Cosine(), Agreement())
PERFECT = {"sqnr": MAX_SQNR_DB, "cosine": 1.0, "agreement": 1.0}


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.name)
@pytest.mark.parametrize("shape", [(5, 10), (5, 1, 10), (3, 1, 1, 7)])
def test_fp32_against_itself_scores_the_perfect_value(metric, shape):
    fp32 = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    scores = metric.score(fp32, fp32.copy())
    assert scores.dtype == np.float64 and scores.shape == (shape[0],)
    assert scores.tolist() == [PERFECT[metric.name]] * shape[0]


@pytest.mark.parametrize("metric", [Sqnr(), Cosine()], ids=lambda m: m.name)
def test_any_shape_per_sample_is_flattened(metric):
    fp32 = np.random.default_rng(1).normal(size=(4, 2, 3, 5))
    noisy = fp32 + 0.01
    flat = metric.score(noisy.reshape(4, -1), fp32.reshape(4, -1))
    np.testing.assert_array_equal(metric.score(noisy, fp32), flat)
    assert metric.score(np.arange(3.0) + 1, np.arange(3.0) + 1).tolist() == [PERFECT[metric.name]] * 3  # 1 value each


def test_sqnr_known_values():
    ref = np.ones((2, 8))
    out = ref + np.array([[0.1], [0.01]])  # noise 1/100 and 1/10000 of the signal
    np.testing.assert_allclose(Sqnr().score(out, ref), [20.0, 40.0])
    ref = np.array([[3.0, 4.0]])
    assert Sqnr().score(np.array([[3.0, 5.0]]), ref)[0] == pytest.approx(10 * np.log10(25.0))


def test_sqnr_cap_and_all_zero_reference():
    ref = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 2.0], [1.0, 2.0]])
    out = np.array([[0.0, 0.0], [0.0, 1e-3], [1.0, 2.0], [1.0, 2.0 + 1e-12]])
    assert Sqnr().score(out, ref).tolist() == [MAX_SQNR_DB, 0.0, MAX_SQNR_DB, MAX_SQNR_DB]  # 1e-12: capped


def test_cosine_known_values():
    ref = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 2.0], [0.0, 0.0], [0.0, 0.0], [3.0, 1.0]])
    out = np.array([[0.0, 1.0], [-1.0, 0.0], [2.0, 2.0], [1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(Cosine().score(out, ref), [0.0, -1.0, 1.0, 1 / np.sqrt(5), 1.0, 0.0, 0.0])


def test_agreement_top1_and_top2():
    fp32 = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5]])
    out = np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.5, 0.4, 0.1]])  # FP32's top-1 ranks 2nd, 1st, 3rd
    assert Agreement().score(out, fp32).tolist() == [0.0, 1.0, 0.0]
    top2 = Agreement().configure({"k": 2})
    assert top2.score(out, fp32).tolist() == [1.0, 1.0, 0.0]
    assert Agreement().configure({"k": 3}).score(out, fp32).tolist() == [1.0, 1.0, 1.0]
    assert Agreement().configure({"k": 10}).score(out, fp32).tolist() == [1.0, 1.0, 1.0]  # k above the classes
    # singleton axes between the sample and the class axis are allowed
    assert top2.score(out[:, None, None, :], fp32[:, None, None, :]).tolist() == [1.0, 1.0, 0.0]


def test_agreement_configure_returns_a_copy_and_checks_k():
    registered = Agreement()
    assert registered.configure({}).k == 1
    assert registered.configure({"k": np.int64(2)}).k == 2
    assert registered.configure({"k": 5}) is not registered and registered.k == 1
    for bad in (0, -1, 1.5, "2", True, None):
        with pytest.raises(CellError, match=r"metric\.params\.k") as error:
            registered.configure({"k": bad})
        assert error.value.category == "bad_input"
    with pytest.raises(CellError, match=r"unknown metric\.params \['top'\]"):
        registered.configure({"top": 2})


def test_agreement_needs_one_score_vector_per_sample():
    with pytest.raises(CellError, match="2 score vectors per sample") as error:
        Agreement().score(np.zeros((3, 2, 4)), np.zeros((3, 2, 4)))
    assert error.value.category == "bad_input"
    with pytest.raises(CellError, match="no class axis"):
        Agreement().score(np.zeros(3), np.zeros(3))


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.name)
def test_shape_mismatch_is_bad_input_naming_both_shapes(metric):
    for out, ref in [(np.zeros((4, 10)), np.zeros((3, 10))), (np.zeros((4, 10)), np.zeros((4, 1, 10)))]:
        with pytest.raises(CellError, match=r"does not match the FP32 output.*metric\.output") as error:
            metric.score(out, ref)
        assert error.value.category == "bad_input"
        assert str(list(out.shape)) in error.value.message and str(list(ref.shape)) in error.value.message
    with pytest.raises(CellError, match="FP32 output"):
        metric.score(np.zeros((2, 3)), None)


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.name)
def test_protocol_members(metric):
    assert missing_members(metric, Metric) == []
    assert optional(metric, "compared_with") == "fp32"
    assert optional(metric, "floor") is (metric.name == "sqnr")
    assert metric.higher_is_better is True


def test_registered_through_the_entry_point():
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["zoocompat"]
    assert entry_points["metrics_fidelity"] == "zoocompat_plugins.metrics.fidelity"
    reg = build_registry()
    if "sqnr" not in reg.names("metric"):  # an install older than the entry point: register the module in-process
        reg = build_registry(extra=[fidelity])
    assert {"sqnr", "cosine", "agreement"} <= set(reg.names("metric"))
    assert {"top1", "exact_match"} & set(reg.names("metric"))  # beside the other built-in metrics
    assert isinstance(reg.get("metric", "agreement"), Agreement)
