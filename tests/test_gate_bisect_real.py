"""``gate --bisect`` on a real regression across installed QNN releases.

A digits classifier with one exact-GELU hidden layer (``tests/corpus/digits_linear.py``: the Div → Erf → Add →
Mul → Mul that torch.onnx writes for ``nn.GELU()``), quantized w8a8 by AIMET, runs every node on the HTP under
QNN 2.47, whose QNN EP fuses the quantized pattern into one Gelu; from 2.49 on the EP takes the nodes one by one
and refuses the Erf. Each cell here is a real one of the pipeline under that release's own environment, and the
bisect reruns the cell under the installed release in between. ``.ci/run`` installs qnn-2.47 and qnn-2.49.
"""

from __future__ import annotations

import pytest

from tests.corpus.digits_linear import build_gelu_onnx, card, digits_runner
from zoocompat.gate.compare import bisect_regressions, compare
from zoocompat.report.results import Results, RunInfo
from zoocompat.run.matrix import Cell
from zoocompat.sdk import releases

pytest.importorskip("aimet_onnx")
BASELINE, MIDDLE, CANDIDATE = "qnn-2.47", "qnn-2.49", "qnn-2.51"


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    for sdk in (BASELINE, MIDDLE, CANDIDATE):
        if releases.find(sdk) is None:
            pytest.skip(releases.not_installed_reason(sdk))
    data = card("digits_gelu") | {"metric": {"name": "top1", "output": "probs", "fp32_reference": 0.95}}
    return digits_runner(tmp_path_factory.mktemp("bisect"), data, build=build_gelu_onnx)[0]


def _cell(sdk: str) -> Cell:
    return Cell("digits_gelu", "onnx", "htp", "w8a8", "ptq", sdk)


def test_bisect_names_the_release_where_the_quantized_gelu_left_the_htp(runner):
    base, cand = runner.run_cell(_cell(BASELINE)), runner.run_cell(_cell(CANDIDATE))
    assert not base.coverage.fallback_ops and base.coverage.target_nodes == base.coverage.total_nodes, base.coverage
    assert cand.coverage.fallback_ops == {"Erf": 1}, cand.coverage
    assert base.model_sha256 == cand.model_sha256  # the same QDQ model on both sides: the SDK changed, not it
    baseline = Results(run=RunInfo(sdk=BASELINE), cells=[base])
    candidate = Results(run=RunInfo(sdk=CANDIDATE), cells=[cand])
    report = compare(baseline, candidate)
    assert "coverage" in {f.kind for f in report.regressions}, report.regressions
    ran: list[str] = []

    def run_cell(record, sdk):
        ran.append(sdk)
        return runner.run_cell(_cell(sdk))

    installed = [BASELINE, MIDDLE, CANDIDATE]
    (found,) = bisect_regressions(report, baseline, candidate, installed, run_cell, releases.RELEASES)
    assert ran == [MIDDLE]  # one release in between, run once
    assert (found.last_unchanged, found.first_changed) == (BASELINE, MIDDLE), found
    assert "new fallback op types Erf" in found.tested[MIDDLE]
