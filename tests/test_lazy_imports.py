"""ML frameworks are imported only by the plugins a cell needs.

A matrix of onnx-frontend cells on the cpu backend must never import
TensorFlow (nor torch for float cells), in the controller or in the worker:
each process writes the frameworks in its ``sys.modules`` at session end
(a small pytest plugin loaded with ``-p``). torch comes in with integer cells
only because AIMET's ONNX quantizer (``aimet_onnx``) imports it itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.corpus.digits_linear import build_onnx, card, fit_weights

ROOT = Path(__file__).parent.parent
FRAMEWORKS = ("torch", "tensorflow", "keras", "tf2onnx", "aimet_torch", "jax", "torchvision", "timm")
PROBE = """
import json, os, sys
from pathlib import Path

def pytest_sessionfinish(session, exitstatus):
    worker = getattr(session.config, "workerinput", {}).get("workerid", "controller")
    found = sorted(m for m in FRAMEWORKS if m in sys.modules)
    Path(os.environ["IMPORT_PROBE_DIR"], worker + ".json").write_text(json.dumps(found))
"""


@pytest.fixture(scope="module")
def onnx_zoo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lazy")
    (root / "zoo").mkdir()
    weights, bias = fit_weights()
    build_onnx(root / "zoo" / "digits_a.onnx", weights, bias)
    (root / "zoo" / "digits_a.yaml").write_text(yaml.safe_dump(card("digits_a", "digits_a.onnx")))
    (root / "import_probe.py").write_text(f"FRAMEWORKS = {FRAMEWORKS!r}\n{PROBE}")
    return root


def _imported(root: Path, precisions: str) -> dict[str, list[str]]:
    probes = root / f"probe-{precisions.replace(',', '-')}"
    probes.mkdir()
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "import_probe", "-q", "conformance/"]
    command += ["-n", "1", "--zoo", str(root / "zoo"), "--zoo-report", str(probes / "report"), "--backends", "cpu"]
    command += ["--zoo-models", "digits_a", "--precisions", precisions]
    env = dict(
        os.environ,
        ZOOCOMPAT_CACHE=str(root / "cache"),
        IMPORT_PROBE_DIR=str(probes),
        PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    )
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return {path.stem: json.loads(path.read_text()) for path in probes.glob("*.json")}


def test_onnx_float_cells_import_no_framework(onnx_zoo):
    found = _imported(onnx_zoo, "fp32")
    assert set(found) == {"controller", "gw0"}
    assert found == {"controller": [], "gw0": []}


def test_onnx_integer_cells_import_no_tensorflow(onnx_zoo):
    found = _imported(onnx_zoo, "w8a8")
    assert found["controller"] == []
    assert not {"tensorflow", "keras", "tf2onnx", "aimet_torch", "timm"} & set(found["gw0"]), found
