"""Open axes: backends, frontends, precisions and quant modes are what plugins register, in their declared order.

An in-process plugin adds a backend ``npu9000`` (order 35: between dsp and htp) and a precision ``w4a16``
(order 45: between w8a16 and w4a8); the matrix, the tables, the gate, known failures and card validation take
them like built-ins, and records naming backends or precisions registered nowhere sort last instead of raising.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import zoocompat
from tests.conftest import ZOO
from zoocompat.api import PluginError, Precision
from zoocompat.api.errors import CardError
from zoocompat.api.registry import Registry, build_registry
from zoocompat.cli import main
from zoocompat.gate.known_failures import KnownFailuresError, parse_known_failures
from zoocompat.model.cards import check_names, discover, load_card
from zoocompat.report.html import render_html
from zoocompat.report.results import Results
from zoocompat.report.table import render_csv, render_markdown
from zoocompat.run.matrix import Selection, build_cells

SLICE = Path(__file__).parent / "data" / "results-slice.json"  # a frozen real run: cpu and htp cells


class _Unavailable:
    """A backend that is never available here: its cells would be recorded as skips."""

    def available(self, sdk: str | None) -> str | None:
        """Why it cannot run."""
        return f"no {self.name} on this machine"

    def describe(self, sdk: str | None) -> dict[str, Any]:
        """What a record says about it."""
        return {"runtime": f"{self.name} simulator"}

    def compile(self, onnx_path: Path, precision: str, sdk: str | None, workdir: Path) -> Any:
        """Not reached: the backend is unavailable."""
        raise NotImplementedError


class Npu9000(_Unavailable):
    """A third-party backend: a new name, a new precision, an order between the built-ins (dsp 30, htp 40)."""

    name = "npu9000"
    precisions = ("fp16", "w8a8", "w4a16")
    order = 35


class Unordered(_Unavailable):
    """A backend that declares no order: it sorts after every ordered one (the default, 100), whatever its name."""

    name = "aaa_unordered"
    precisions = ("fp32",)


class ThirdParty:
    """The in-process plugin: hook implementations, as an entry-point module would have them."""

    def __init__(self, *backends: Any, precisions: tuple[Precision, ...] = ()) -> None:
        self.backends = list(backends)
        self.precisions = list(precisions)

    @zoocompat.hookimpl
    def zoocompat_backends(self) -> list[Any]:
        """The extra backends."""
        return self.backends

    @zoocompat.hookimpl
    def zoocompat_precisions(self) -> list[Precision]:
        """The extra precisions."""
        return self.precisions


W4A16 = Precision("w4a16", quantized=True, order=45, description="4-bit weights, 16-bit activations")


@pytest.fixture(scope="module")
def reg() -> Registry:
    """The built-ins plus npu9000, an unordered backend and w4a16."""
    return build_registry(extra=[ThirdParty(Npu9000(), Unordered(), precisions=(W4A16,))])


def _cells(reg: Registry, **selection):
    cards, errors = discover([ZOO], reg)
    assert errors == []
    backends = {name: reg.get("backend", name).precisions for name in reg.axis("backend")}
    modes = {name: reg.get("quantizer", name).modes for name in reg.names("quantizer")}
    return cards, build_cells(cards.values(), backends, modes, Selection(**selection), registry=reg)


def test_registry_orders_each_axis_by_declared_order(reg):
    assert reg.axis("backend") == ["cpu", "gpu", "dsp", "npu9000", "htp", "aaa_unordered"]
    assert reg.axis("precision") == ["fp32", "fp16", "w8a8", "w8a16", "w4a16", "w4a8"]
    assert reg.axis("frontend") == ["pytorch", "tensorflow", "onnx"]
    assert reg.axis("quant") == ["none", "ptq", "qat", "auto"]
    assert reg.defaults("precision") == ["fp32", "fp16", "w8a8", "w8a16", "w4a16"]  # w4a8 stays opt-in
    assert reg.reference_backend() == "cpu"
    assert reg.precision("w4a16").quantized and not reg.precision("fp16").quantized
    key = reg.sort_key("backend")
    assert sorted(["zzz", "htp", "ghost", "cpu"], key=key) == ["cpu", "htp", "ghost", "zzz"]  # unknown: last


def test_new_backend_and_precision_make_cells_in_declared_order(reg):
    cards, cells = _cells(reg)
    onet = [(c.backend, c.precision, c.quant) for c in cells if c.model == "mtcnn_onet"]
    backends = list(dict.fromkeys(b for b, _, _ in onet))
    assert backends == ["cpu", "gpu", "dsp", "npu9000", "htp", "aaa_unordered"]
    npu = [(p, q) for b, p, q in onet if b == "npu9000"]
    assert npu == [("fp16", "none"), ("w8a8", "ptq"), ("w4a16", "ptq")]  # w4a16 is quantized: a quantizer's mode
    assert "mtcnn_onet-pytorch-npu9000-w4a16-ptq" in {c.id for c in cells}
    assert all(c.quantized == (c.quant != "none") for c in cells)
    _, only = _cells(reg, backends={"npu9000"}, precisions={"w4a16"})
    assert {c.id.split("-", 2)[2] for c in only} == {"npu9000-w4a16-ptq"} and len(only) == len(cards)


def test_a_backend_declaring_an_unregistered_precision_is_a_clear_error():
    reg = build_registry(extra=[ThirdParty(Npu9000())])  # w4a16 not registered
    with pytest.raises(PluginError, match=r"backend 'npu9000' declares precision 'w4a16', which no plugin registers"):
        _cells(reg)


def test_reference_backend_must_be_exactly_one():
    class SecondReference(Npu9000):
        name = "host2"
        reference = True

    reg = build_registry(extra=[ThirdParty(SecondReference())])
    with pytest.raises(PluginError, match=r"several backends declare `reference = True`: cpu .*host2"):
        reg.reference_backend()


def _results_with_new_names() -> dict:
    """The frozen slice plus an npu9000 w4a16 cell and a cell of a backend and precision registered nowhere."""
    data = json.loads(SLICE.read_text())
    htp = next(c for c in data["cells"] if c["backend"] == "htp" and c["precision"] == "w8a8")
    for backend, precision in (("npu9000", "w4a16"), ("ghost", "int3")):
        cell = copy.deepcopy(htp)
        cell.update(backend=backend, precision=precision, sdk=None)
        cell["id"] = "-".join((cell["model"], cell["frontend"], backend, precision, cell["quant"]))
        data["cells"].append(cell)
    data["run"]["backends"]["npu9000"] = {"runtime": "npu9000 simulator"}
    return data


def _header(markdown: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith("| model |"))
    return [part.strip() for part in line.strip("|").split("|")]


def test_tables_show_any_backend_and_precision_in_order(reg):
    results = Results.model_validate(_results_with_new_names())
    header = _header(render_markdown(results, registry=reg))
    assert header[3:] == [
        "cpu fp32", "cpu w8a8", "cpu w8a16", "npu9000 w4a16", "htp fp16", "htp w8a8", "htp w8a16", "ghost int3"
    ]  # fmt: skip
    # the process-wide registry knows neither: both sort last, by name, and nothing raises
    plain = _header(render_markdown(results))[3:]
    assert plain[-2:] == ["ghost int3", "npu9000 w4a16"]
    html = render_html(results, registry=reg)
    assert "npu9000 w4a16" in html and "ghost int3" in html
    assert html.index("npu9000 w4a16") < html.index("htp w8a8")
    csv = render_csv(results)
    assert ",npu9000,w4a16," in csv and ",ghost,int3," in csv


def test_only_the_reference_backend_is_not_an_accelerator(reg):
    results = Results.model_validate(_results_with_new_names())
    text = render_markdown(results, registry=reg)
    model = next(c.model for c in results.cells if c.backend == "npu9000")
    row = next(line for line in text.splitlines() if line.startswith(f"| {model} |"))
    cells = dict(zip(_header(text), [p.strip() for p in row.strip("|").split("|")], strict=True))
    assert "NPU" in cells["npu9000 w4a16"] and "NPU" in cells["ghost int3"]  # any non-reference backend
    assert not any("NPU" in v for k, v in cells.items() if k.startswith("cpu "))


def test_gate_compares_cells_of_new_backends(tmp_path):
    baseline = _results_with_new_names()
    candidate = copy.deepcopy(baseline)
    npu = next(c for c in candidate["cells"] if c["backend"] == "npu9000")
    npu.update(status="fail", category="accuracy", reason="top1 dropped 9 points")
    (tmp_path / "old.json").write_text(json.dumps(baseline))
    (tmp_path / "new.json").write_text(json.dumps(candidate))
    done = CliRunner().invoke(main, ["gate", str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--json"])
    assert done.exit_code == 1, done.output
    report = json.loads(done.output)
    assert [f["cell"] for f in report["regressions"]] == [npu["id"]]
    assert report["candidate"]["qnn_core_version"] == "2.51.0"  # the SDK-driven backend, found by its description
    done = CliRunner().invoke(main, ["gate", str(tmp_path / "old.json"), str(tmp_path / "new.json")])
    assert npu["id"] in done.output


def test_known_failures_take_registered_names_only(reg):
    text = yaml.safe_dump(
        {
            "known_failures": [
                {"model": "*", "backend": "npu9000", "precision": "w4a16", "category": "crash", "reason": "r"}
            ]
        }
    )
    known = parse_known_failures(text, "kf.yaml", None, reg)
    assert known.known_failures[0].backend == "npu9000"
    with pytest.raises(KnownFailuresError) as error:
        parse_known_failures(text, "kf.yaml", None)  # the process-wide registry has no npu9000
    assert "kf.yaml: entry 1, field 'backend': 'npu9000' is not a known backend (known: cpu, dsp, gpu, htp)" in str(
        error.value
    )


def test_cards_validate_against_the_registered_names(reg, card_dict, write_card):
    card_dict.update(tolerance={"default": 0.01, "w4a16": 0.05}, smoke=["npu9000-w4a16", "htp-w8a8"])
    path = write_card(card_dict)
    card = load_card(path, reg)
    assert card.tolerance_for("w4a16") == 0.05 and check_names(card, reg) == []
    with pytest.raises(CardError) as error:
        load_card(path)  # without the plugin: the tolerance key and the smoke pair name nothing registered
    message = str(error.value)
    assert str(path) in message
    assert "tolerance.w4a16: tolerance key 'w4a16' is not 'default' or a registered precision (fp32, fp16" in message
    assert "smoke.0: smoke entry 'npu9000-w4a16' is not '<backend>-<precision>'" in message
    assert "backends: cpu, gpu, dsp, htp" in message


def test_a_card_naming_an_unregistered_frontend_names_card_field_and_known_names(card_dict, write_card):
    card_dict.update(frontend="jax")
    path = write_card(card_dict)
    with pytest.raises(CardError) as error:
        load_card(path)
    message = str(error.value)
    assert message.startswith(f"{path}: invalid model card")
    assert "frontend: 'jax' is not a registered frontend (registered: pytorch, tensorflow, onnx)" in message
    cards, errors = discover([path.parent])
    assert cards == {} and "'jax' is not a registered frontend" in str(errors[0])
