"""Every cell record names the model files it ran by sha256, and the gate tells a changed model from an SDK change.

Runs a real cpu cell (the least-squares digits classifier of the bad-input
corpus, milliseconds to build) through :class:`CellRunner`, then the same cell
after the model's weights changed, and gates the two records.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.corpus.digits_linear import build_onnx, digits_cells
from zoocompat.api.cache import sha256_file
from zoocompat.gate.compare import compare, render_markdown
from zoocompat.report.results import Results, RunInfo


def test_records_carry_the_sha256_of_what_ran_and_the_gate_flags_a_changed_model(tmp_path: Path):
    run, folder, weights, bias, _ = digits_cells(tmp_path, "digits_digests")

    fp32 = run("fp32", report="fp32")
    assert fp32.model_sha256 is not None
    assert fp32.model_sha256.fp32_onnx == sha256_file(Path(fp32.artifacts["fp32_onnx"]))
    assert fp32.model_sha256.qdq_onnx is None and fp32.model_sha256.encodings is None

    before = run(report="before")
    digests = before.model_sha256
    assert before.status == "pass", before.reason
    assert digests.qdq_onnx == sha256_file(Path(before.artifacts["qdq_onnx"]))
    assert digests.encodings == sha256_file(Path(before.artifacts["encodings"]))
    assert digests.fp32_onnx == fp32.model_sha256.fp32_onnx  # the same converted model under both cells
    assert len({digests.fp32_onnx, digests.qdq_onnx, digests.encodings}) == 3

    build_onnx(folder / "model.onnx", weights * np.float32(1.01), bias)  # another model under the same card
    after = run(report="after")
    assert after.model_sha256.fp32_onnx != digests.fp32_onnx and after.model_sha256.qdq_onnx != digests.qdq_onnx

    report = compare(Results(run=RunInfo(), cells=[before]), Results(run=RunInfo(), cells=[after]))
    [changed] = report.model_changed
    assert changed.cell == "digits_digests-onnx-cpu-w8a8-ptq" and report.exit_code == 0
    assert report.regressions == report.improvements == report.latency == []
    assert "--zoo-models digits_digests --frontends onnx --backends cpu --precisions w8a8 --quant ptq" in (
        changed.message
    )
    assert "### Model changed (1)" in render_markdown(report)
    # the same run gated against itself: same digests, compared as usual
    again = compare(Results(run=RunInfo(), cells=[before]), Results(run=RunInfo(), cells=[before]))
    assert again.model_changed == [] and again.compared == 1
