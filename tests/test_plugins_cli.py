"""Plugins load through entry points; the CLI works and starts without ML frameworks."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from zoocompat.api.registry import build_registry
from zoocompat.cli import main


def test_builtin_plugins_register_through_entry_points():
    reg = build_registry()
    assert reg.broken == []
    assert set(reg.names("frontend")) >= {"pytorch", "onnx", "tensorflow"}
    assert set(reg.names("backend")) >= {"cpu", "htp"}
    assert "aimet_onnx" in reg.names("quantizer")
    assert all(info.source.startswith("zoocompat:") for info in reg.infos())


def test_unknown_plugin_name_is_a_clear_error():
    reg = build_registry()
    try:
        reg.get("backend", "npu9000")
    except Exception as error:
        assert "no backend plugin named 'npu9000'" in str(error) and "cpu" in str(error)
    else:
        raise AssertionError("expected an error")


def test_cli_plugins_json():
    result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    kinds = {p["kind"] for p in json.loads(result.output)["plugins"]}
    assert kinds == {"frontend", "quantizer", "backend", "dataset", "metric", "precision", "quant_mode"}


def test_cli_zoo_list_and_check(tmp_path):
    result = CliRunner().invoke(main, ["zoo", "list", "--json"])
    assert result.exit_code == 0, result.output
    models = json.loads(result.output)["models"]
    assert {"name", "frontend", "source", "dataset", "metric", "fp32_reference", "fp32_measured"} <= set(models[0])
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nfrontend: caffe\n")
    result = CliRunner().invoke(main, ["zoo", "check", str(bad)])
    assert result.exit_code == 1
    assert "frontend" in result.output and str(bad) in result.output


def test_cli_table_on_bad_file_exits_2(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("{}")
    result = CliRunner().invoke(main, ["table", str(path)])
    assert result.exit_code == 2 and "not a zoocompat results file" in result.output


def test_core_and_cli_import_no_ml_framework():
    code = (
        "import sys; from click.testing import CliRunner; from zoocompat.cli import main; "
        "import zoocompat.run.pipeline, zoocompat.pytest_plugin.plugin; "
        "r = CliRunner().invoke(main, ['plugins']); assert r.exit_code == 0, r.output; "
        "bad = [m for m in ('torch', 'tensorflow', 'onnxruntime', 'onnx', 'aimet_onnx', 'keras') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
