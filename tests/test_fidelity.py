"""The fidelity verdict: thresholds per precision, and the "closer to FP32 than the reference" exemption."""

from __future__ import annotations

import numpy as np
import pytest

from zoocompat.verdict.fidelity import THRESHOLD_DB, fidelity_problem
from zoocompat.verdict.stats import sqnr_db


@pytest.mark.parametrize(
    ("precision", "vs_cpu", "vs_fp32", "reference_vs_fp32", "fails"),
    [
        ("w8a8", 28.2, 45.9, 28.2, False),  # keras digits on HTP: far above the threshold
        ("w8a8", 9.4, 9.6, 8.8, False),  # PP-OCR rec on HTP: low, but no further from FP32 than the reference
        ("w8a8", 3.0, 4.0, 30.0, True),  # low and much worse than the reference: a broken kernel
        ("w8a16", -9.8, -9.8, 60.0, True),  # QNN 2.51 HTP w8a16 Log returns a constant (op probe finding)
        ("fp16", 56.4, 56.4, None, False),  # htp fp16 against the FP32 run itself
        ("fp16", 37.3, 37.3, None, False),  # fp16 storage of every activation of the PP-OCR detector
        ("fp16", 20.0, 20.0, None, True),
        ("w8a8", None, 40.0, 40.0, False),  # identical to the cpu run
        ("w8a8", 11.0, 27.5, 29.0, False),  # below the threshold but within the margin of the reference
    ],
)
def test_fidelity_problem(precision, vs_cpu, vs_fp32, reference_vs_fp32, fails):
    problem = fidelity_problem(precision, vs_cpu, vs_fp32, reference_vs_fp32)
    assert (problem is not None) == fails, problem
    if problem:
        assert f"{THRESHOLD_DB[precision]:.0f} dB for {precision}" in problem


def test_thresholds_order_by_precision():
    assert THRESHOLD_DB["fp16"] > THRESHOLD_DB["w8a16"] > THRESHOLD_DB["w8a8"] > THRESHOLD_DB["w4a8"]


def test_a_constant_output_is_far_below_every_threshold():
    rng = np.random.default_rng(0)
    reference = np.log(rng.uniform(0.1, 3.0, size=(16, 8)))
    constant = np.full_like(reference, -2.302)
    assert sqnr_db(reference, constant) < min(THRESHOLD_DB.values())
