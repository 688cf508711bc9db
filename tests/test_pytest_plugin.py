"""The matrix's pytest options, markers and usage errors, through a real pytest process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parent.parent


def _pytest(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "conformance/", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_markers_select_axis_values():
    done = _pytest("--collect-only", "-q", "-m", "htp and w8a8")
    assert done.returncode == 0, done.stdout + done.stderr
    ids = [line for line in done.stdout.splitlines() if "test_cell[" in line]
    assert ids and all(line.endswith("-htp-w8a8-ptq]") for line in ids)


def test_unknown_option_values_are_usage_errors():
    done = _pytest("--collect-only", "--zoo-models", "no_such_model")
    assert done.returncode == 4
    assert "--zoo-models: unknown no_such_model; known:" in done.stderr
    done = _pytest("--collect-only", "--backends", "npu9000")
    assert done.returncode == 4 and "--backends: unknown npu9000" in done.stderr
    done = _pytest("--collect-only", "--zoo", "/no/such/folder")
    assert done.returncode == 4 and "no such folder of model cards" in done.stderr


def test_extra_zoo_folder_adds_cells_and_bad_cards_fail_alone(tmp_path, card_dict):
    cards = tmp_path / "cards"
    cards.mkdir()
    card_dict["name"] = "my_onet"
    (cards / "my_onet.yaml").write_text(yaml.safe_dump(card_dict))
    (cards / "broken.yaml").write_text("name: broken\nfrontend: caffe\n")
    done = _pytest("--collect-only", "-q", "--zoo", str(cards), "--zoo-models", "my_onet")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test_cell[my_onet-pytorch-htp-w8a8-ptq]" in done.stdout
    assert "card-error" in done.stdout
    report = tmp_path / "report"
    done = _pytest("-q", "--zoo", str(cards), "-k", "card-error", "--zoo-report", str(report))
    assert done.returncode == 1
    assert "broken.yaml" in done.stdout and "frontend" in done.stdout


def test_collect_only_leaves_the_report_alone(tmp_path):
    report = tmp_path / "report"
    (report / "cells").mkdir(parents=True)
    (report / "cells" / "x.json").write_text("{}")
    done = _pytest("--collect-only", "-q", "--zoo-report", str(report))
    assert done.returncode == 0
    assert (report / "cells" / "x.json").exists()
