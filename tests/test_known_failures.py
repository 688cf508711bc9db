"""Known failures: the YAML file, its checks, matching, and strict xfail / xpass in the matrix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from zoocompat.api.registry import registry
from zoocompat.gate.known_failures import (
    KnownFailures,
    KnownFailuresError,
    dump_known_failures,
    load_known_failures,
    parse_known_failures,
)
from zoocompat.model.cards import discover
from zoocompat.report.results import CellRecord, MetricResult

ROOT = Path(__file__).parent.parent
SHIPPED = ROOT / "zoo" / "known_failures.yaml"
MODELS = {"resnet_mnist", "vit_mnist", "ppocr_rec", "mtcnn_onet"}
ENTRY = {"model": "resnet_mnist", "backend": "htp", "precision": "w8a8", "category": "accuracy", "reason": "r"}


def _parse(*entries: dict) -> KnownFailures:
    return parse_known_failures(yaml.safe_dump({"known_failures": list(entries)}), "kf.yaml", MODELS)


def _record(**overrides) -> CellRecord:
    base = dict(
        id="resnet_mnist-pytorch-htp-w8a8-ptq",
        model="resnet_mnist",
        frontend="pytorch",
        backend="htp",
        precision="w8a8",
        quant="ptq",
        status="fail",
        category="accuracy",
        reason="top1 dropped 4.1 points",
        metric=MetricResult(name="top1", fp32=0.99, value=0.949, drop=0.041, tolerance=0.01),
        backend_info={"sdk": "qnn-2.51"},
    )
    base.update(overrides)
    return CellRecord(**base)


def test_shipped_file_is_valid_against_the_zoo():
    cards, _ = discover(list(registry().zoo_dirs))
    known = load_known_failures(SHIPPED, set(cards))
    pairs = {(e.model, e.backend, e.precision) for e in known.known_failures}
    assert ("resnet_mnist", "htp", "w8a8") in pairs and ("ppocr_rec", "cpu", "w8a8") in pairs
    categories = {(e.model, e.backend): e.category for e in known.known_failures}
    assert categories.pop(("vit_mnist", "dsp")) == "unsupported_op"  # Erf refused; the DSP allows no CPU fallback
    # two standalone per-channel DequantizeLinear nodes refused; the DSP allows no CPU fallback
    assert categories.pop(("topic_encoder", "dsp")) == "unsupported_op"
    assert set(categories.values()) == {"accuracy"}
    assert {e.sdk for e in known.known_failures if e.model == "vit_mnist"} == {"qnn-2.51"}  # it passes on 2.47


def test_round_trip_load_dump_load(tmp_path):
    known = load_known_failures(SHIPPED, None)
    again = parse_known_failures(dump_known_failures(known), "dumped.yaml", None)
    assert again == known
    more = _parse(ENTRY, {"model": "*_mnist", "sdk": "qnn-2.*", "category": "crash", "reason": "x", "link": "u"})
    assert parse_known_failures(dump_known_failures(more), "d.yaml", MODELS) == more


def test_matching_globs_first_entry_wins():
    known = _parse(
        ENTRY | {"sdk": "qnn-2.51"},
        {"model": "*", "backend": "htp", "category": "crash", "reason": "every htp cell"},
    )
    match = known.match(_record(), sdk="qnn-2.51")
    assert match is not None and match.index == 1
    assert known.match(_record(), sdk="qnn-2.47").index == 2  # entry 1 is for 2.51 only
    assert known.match(_record(backend="cpu")) is None
    assert known.match(_record(precision="w8a16"), sdk=None).index == 2  # no SDK id: only "*" matches it


def test_apply_turns_the_record_into_xfail_or_xpass():
    match = _parse(ENTRY).match(_record())
    failing = _record()
    message = match.apply(failing, "conformance/known_failures.yaml")
    assert failing.status == "xfail" and failing.category == "accuracy" and failing.metric.drop == 0.041
    assert message.startswith("known failure (conformance/known_failures.yaml entry 1)")

    passing = _record(status="pass", category=None, reason="38/38 nodes on htp")
    message = match.apply(passing, "conformance/known_failures.yaml")
    assert passing.status == "xpass"
    assert message.startswith(
        "fixed: remove this entry from conformance/known_failures.yaml "
        "(entry 1: model=resnet_mnist backend=htp precision=w8a8 (accuracy): r)"
    )
    assert passing.reason.startswith("fixed: remove this entry")

    other = _record(status="error", category="crash", reason="runner died")
    message = match.apply(other)
    assert other.status == "error" and "expects category accuracy" in message

    skipped = _record(status="skip", category=None)
    assert match.apply(skipped) is None and skipped.status == "skip"


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (ENTRY | {"model": "resnet_mnsit"}, ["entry 2, field 'model'", "'resnet_mnsit' is not a known model"]),
        (ENTRY | {"model": "yolo*"}, ["entry 2, field 'model'", "glob matches no model"]),
        (ENTRY | {"backend": "hpt"}, ["entry 2, field 'backend'", "'hpt' is not a known backend", "htp"]),
        (ENTRY | {"precision": "int8"}, ["entry 2, field 'precision'", "w8a8"]),
        (ENTRY | {"sdk": "2.51"}, ["entry 2, field 'sdk'", "not an SDK id"]),
        (ENTRY | {"category": "acuracy"}, ["entry 2, field 'category'", "'acuracy' is not a results category"]),
        (ENTRY | {"modle": "x"}, ["entry 2, field 'modle'", "unknown field"]),
        ({k: v for k, v in ENTRY.items() if k != "reason"}, ["entry 2, field 'reason'", "required field is missing"]),
    ],
)
def test_invalid_entries_name_file_entry_and_field(entry, words):
    with pytest.raises(KnownFailuresError) as info:
        _parse(ENTRY, entry)
    text = str(info.value)
    assert text.startswith("kf.yaml: ")
    for word in words:
        assert word in text


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("known_failures: [", ["not valid YAML"]),
        ("- model: x", ["expected a mapping with a 'known_failures' list"]),
        ("knwon_failures: []", ["unknown field (allowed: known_failures)"]),
        ("", []),
    ],
)
def test_file_level_errors(text, words):
    if not words:
        assert parse_known_failures(text, "kf.yaml", MODELS) == KnownFailures()
        return
    with pytest.raises(KnownFailuresError) as info:
        parse_known_failures(text, "kf.yaml", MODELS)
    for word in words:
        assert word in str(info.value)


def test_unreadable_file(tmp_path):
    with pytest.raises(KnownFailuresError, match="cannot read known failures"):
        load_known_failures(tmp_path / "none.yaml")


def _pytest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "conformance/", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_invalid_file_is_a_usage_error(tmp_path):
    bad = tmp_path / "kf.yaml"
    bad.write_text(yaml.safe_dump({"known_failures": [ENTRY | {"backend": "npu"}]}))
    done = _pytest("--collect-only", "-q", "--known-failures", str(bad))
    assert done.returncode == 4
    assert f"--known-failures: {bad}: entry 1, field 'backend'" in done.stderr
    done = _pytest("--collect-only", "-q", "--known-failures", str(tmp_path / "missing.yaml"))
    assert done.returncode == 4 and "cannot read known failures" in done.stderr


def test_matrix_records_xfail_and_fails_an_xpass(tmp_path, card_dict):
    """A real cpu fp32 cell that passes is an XPASS failure; a user card with bad weights an xfail."""
    cards = tmp_path / "my_cards"
    cards.mkdir()
    (cards / "bad_weights.pt").write_bytes(b"not the pinned weights")
    card_dict.update(name="user_onet", source={**card_dict["source"], "kind": "file", "path": "bad_weights.pt"})
    for key in ("package", "version"):
        card_dict["source"].pop(key, None)
    card_dict["smoke"] = []
    (cards / "user_onet.yaml").write_text(yaml.safe_dump(card_dict))
    (cards / "new_onet.yaml").write_text(yaml.safe_dump({**card_dict, "name": "new_onet"}))  # in no entry: NEW
    known = tmp_path / "kf.yaml"
    known.write_text(
        yaml.safe_dump(
            {
                "known_failures": [
                    {"model": "mtcnn_onet", "backend": "cpu", "category": "accuracy", "reason": "was broken"},
                    {"model": "user_*", "category": "bad_input", "reason": "weights not shipped"},
                ]
            }
        )
    )
    report = tmp_path / "report"
    selection = ["--zoo-models", "mtcnn_onet,user_onet,new_onet", "--backends", "cpu", "--precisions", "fp32"]
    done = _pytest("-q", *selection, "--zoo", str(cards), "--zoo-report", str(report), "--known-failures", str(known))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 failed" in done.stdout and "1 xfailed" in done.stdout
    # the summary keeps the new failure apart from the known one and the fixed one, and says what exit 1 means
    summary = done.stdout[done.stdout.index("zoocompat ====") :]
    assert f"NEW failures: 1 (not accepted in `{known}`" in summary
    assert "bad_input  new_onet-pytorch-cpu-fp32-none: " in summary
    assert "known failures: 1 (xfail" in summary and "🟡 user_onet-pytorch-cpu-fp32-none [bad_input]" in summary
    assert "known failures that passed: 1 (xpass" in summary and "🟢 mtcnn_onet-pytorch-cpu-fp32-none" in summary
    assert "exit status 1: new failures" in summary
    assert f"fixed: remove this entry from {known} (entry 1: model=mtcnn_onet backend=cpu" in done.stdout
    cells = {c["model"]: c for c in json.loads((report / "results.json").read_text())["cells"]}
    assert cells["mtcnn_onet"]["status"] == "xpass" and cells["mtcnn_onet"]["metric"]["value"] > 0.9
    assert cells["user_onet"]["status"] == "xfail" and cells["user_onet"]["category"] == "bad_input"
    assert (report / "support.html").read_text().startswith("<!DOCTYPE html>")
    assert "html:    " in done.stdout
