"""Backend outputs are reused only for the same model bytes, inputs, runtime and backend code.

Runs a real cpu cell (the least-squares digits classifier of the bad-input
corpus) through :class:`CellRunner` several times on one cache and checks
what the record says happened and that the verdict is the same either way.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.corpus.digits_linear import build_onnx, digits_cells
from zoocompat.api.cache import ArtifactCache
from zoocompat.run import reuse


@pytest.fixture
def digits(tmp_path: Path):
    return digits_cells(tmp_path, "digits_reuse")


def test_second_run_reuses_the_outputs_and_gives_the_same_verdict(digits):
    run, *_ = digits
    first = run()
    second = run(report="r2")
    assert first.status == second.status == "pass", (first.reason, second.reason)
    assert first.backend_info["outputs"]["state"] == "measured"
    assert second.backend_info["outputs"]["state"] == "reused"
    assert second.backend_info["outputs"]["key"] == first.backend_info["outputs"]["key"]
    assert second.metric == first.metric
    assert second.coverage == first.coverage
    assert (second.timing.compile_s, second.timing.run_s) == (first.timing.compile_s, first.timing.run_s)
    assert Path(second.artifacts["runner_log"]).is_file()  # the kept log of the run that measured them


def test_other_precision_or_changed_model_runs_the_backend_again(digits):
    run, folder, weights, bias, _ = digits
    assert run(precision="fp32").backend_info["outputs"]["state"] == "measured"
    assert run(precision="w8a8").backend_info["outputs"]["state"] == "measured"
    build_onnx(folder / "model.onnx", weights * np.float32(1.01), bias)  # new bytes, new conversion
    again = run(precision="fp32", report="r2")
    assert again.backend_info["outputs"]["state"] == "measured"


def test_rerun_backends_never_reads_or_writes_kept_outputs(digits):
    run, *_, cache = digits
    record = run(reuse_outputs=False)
    assert record.status == "pass"
    assert "outputs" not in record.backend_info
    assert not (cache.root / reuse.OUTPUTS_STAGE).exists()


def test_environment_switch_turns_reuse_off(monkeypatch, digits):
    run, *_ = digits
    run()
    monkeypatch.setenv("ZOOCOMPAT_REUSE_OUTPUTS", "0")
    assert "outputs" not in run(report="r2").backend_info


def test_a_failed_run_keeps_nothing(tmp_path: Path):
    def crash():
        raise RuntimeError("vendor library died")

    cache = ArtifactCache(tmp_path / "cache")
    with pytest.raises(RuntimeError):
        reuse.run_or_reuse(cache, "k" * 24, crash, tmp_path / "runner.log")
    assert not (cache.root / reuse.OUTPUTS_STAGE / ("k" * 24)).exists()


def test_inputs_digest_sees_values_dtype_and_shape():
    base = {"x": np.zeros((2, 3), np.float32)}
    assert reuse.inputs_digest(base) == reuse.inputs_digest({"x": np.zeros((2, 3), np.float32)})
    assert reuse.inputs_digest(base) != reuse.inputs_digest({"x": np.zeros((3, 2), np.float32)})
    assert reuse.inputs_digest(base) != reuse.inputs_digest({"x": np.zeros((2, 3), np.float64)})
    changed = np.zeros((2, 3), np.float32)
    changed[1, 2] = 1e-7
    assert reuse.inputs_digest(base) != reuse.inputs_digest({"x": changed})


def _plugin_backend(folder: Path, module: str, package: bool) -> object:
    """A backend defined in ``folder/module.py`` among unrelated ``.py`` files (site-packages), or in a package."""
    folder.mkdir(parents=True)
    (folder / "other_dist.py").write_text("VALUE = 1\n")
    (folder / "six.py").write_text("# someone else's module\n")
    if package:
        (folder / "__init__.py").write_text("")
    (folder / f"{module}.py").write_text("class NineBackend:\n    name = 'npu9000'\n")
    root = folder.parent if package else folder
    name = f"{folder.name}.{module}" if package else module
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(name).NineBackend()
    finally:
        sys.path.remove(str(root))


def _digest(backend: object) -> str:
    reuse._sources_digest.cache_clear()  # the digest is cached per process; these tests change files under it
    return reuse.code_digest(backend)


def test_a_one_file_plugin_is_hashed_alone_not_with_its_neighbours(tmp_path: Path):
    backend = _plugin_backend(tmp_path / "site-packages", "zc_one_file_plugin", package=False)
    before = _digest(backend)
    assert reuse.code_files(backend) == [(tmp_path / "site-packages" / "zc_one_file_plugin.py").resolve()]
    (tmp_path / "site-packages" / "other_dist.py").write_text("VALUE = 2\n")  # a neighbour upgraded
    assert _digest(backend) == before
    (tmp_path / "site-packages" / "zc_one_file_plugin.py").write_text("class NineBackend:\n    name = 'x'\n")
    assert _digest(backend) != before  # its own code still counts


def test_a_plugin_in_a_package_is_hashed_with_its_package(tmp_path: Path):
    backend = _plugin_backend(tmp_path / "zc_plugin_pkg", "nine", package=True)
    before = _digest(backend)
    (tmp_path / "zc_plugin_pkg" / "other_dist.py").write_text("VALUE = 2\n")  # shared code of the package
    assert _digest(backend) != before
