"""Benchmark of the conformance matrix: cold vs warm cache, 1 vs 2 workers, overhead, memory, HTP cache.

Prints one JSON object. Every run of the matrix is a real ``pytest conformance/``
subprocess with its own temporary ``ZOOCOMPAT_CACHE`` and report folder (the
pinned model files and training recipes are copied in from the default cache
first, so a cold run does no download; they are the matrix's inputs, not its
work). Phases, on one selection:

0. warm-up: one ``python -c "import torch, ..., tensorflow"`` so the libraries are in the
   page cache before the first timed phase (otherwise phase 1 alone pays for the disk).
1. cold, ``-n 2``: empty cache, everything converted, calibrated, compiled, run.
2. warm, ``-n 2`` and ``-n 1``: the same cache again. Conversion, calibration,
   the compiled QNN contexts and the backends' outputs are all reused
   (``zoocompat/reuse.py``); metrics, verdicts and the tables are computed again.
3. cold, ``-n 1``: a second empty cache, one worker: the same work as phase 1
   on one core.
4. rerun, ``-n 1``: the warm cache with ``--rerun-backends``: every backend runs
   again (HTP from its cached context), everything before it reused.
5. bare: the same models on the same inputs through plain onnxruntime
   sessions in this process (CPU EP; QNN EP with the backend's options),
   one sample at a time as the runner does.
6. optional (``--compare-dist``): cold ``-n 2`` runs, each on a fresh cache, with
   xdist's own ``--dist load`` (``--zoo-group-by none``: cells in collection
   order) and ``--dist loadgroup`` (a model's cells on one worker), against the
   default (model-affine load scheduling, ``zoocompat/schedule.py``).

Definitions (all wall seconds, ``time.perf_counter``):

- ``warm_ratio`` = warm ``-n 2`` / cold ``-n 2``.
- ``speedup_n2`` = cold ``-n 1`` / cold ``-n 2``: the matrix's real work on one
  worker vs two, both from an empty cache. ``speedup_n2_warm`` is the same on
  the warm cache (start-up bound: there is little left to share out).
- ``overhead_ratio`` = cold ``-n 1`` wall / the raw work inside it: each model's
  conversion once (``convert_s``: framework load and forward, export, the FP32
  reference run), each quantization once (``quantize_s``: calibration and
  export), and every cell's ``compile_s + run_s`` (vendor session create + run,
  timed inside the runner processes). 1.0 would mean the matrix costs nothing
  around the library calls; the rest is pytest and worker start-up, framework
  imports, data loading, runner process start-up, verdicts and reports.
- ``rerun_overhead_ratio`` = rerun ``-n 1`` wall / its cells' ``compile_s + run_s``;
  ``overhead_ratio_vs_bare`` divides the same wall by the bare sessions'
  create + run time instead.
- ``htp_throughput_ratio`` = bare QNN session time / the htp backend's run
  time on the same QDQ models and inputs (the first ``--pair-samples``, 64 by
  default, of each cell's evaluation split): the backend's ``run`` (runner
  process, warm context, its timed loop) and a bare in-process session,
  alternated twice per cell, fastest of each; 1.0 = the runner costs nothing
  per sample.
- ``htp_compile_warm_ratio`` = sum of the htp cells' ``compile_s`` in the rerun
  (session created from the cached QNN context) / in the cold run (compiling
  the graph).
- ``peak_rss_mb``: per worker (``resource.getrusage`` at session finish, via
  ``bench/rss_probe.py``), the max over all runs, and the runner processes' peak.
- ``cpu_busy`` per phase: CPU seconds the matrix's processes used / (wall x
  cores): well under 1.0 on ``-n 2`` means other work on the machine took the
  cores (contention), or the workers waited.

Usage: python bench/matrix.py [--quick] [--json] [--compare-dist] [--models a,b]
[--backends cpu,htp] [--precisions fp32,w8a8] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

QUICK = {"models": "mtcnn_onet,mtcnn_rnet", "backends": "cpu,htp", "precisions": "fp32,w8a8"}
FULL = {
    "models": "mtcnn_onet,mtcnn_rnet,ppocr_textline_cls,keras_digits_cnn",
    "backends": "cpu,htp",
    "precisions": "fp32,fp16,w8a8,w8a16",
}
#: ``--compare-dist``: the default (model-affine ``--dist load``, zoocompat/schedule.py) against these
COMPARED_DIST = {"xdist_load": ("--zoo-group-by", "none"), "loadgroup": ("--dist", "loadgroup")}
SEEDED_STAGES = ("sources", "recipes")  # inputs of the matrix (pinned files, trained weights), not its work


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _seed_cache(cache: Path) -> None:
    from zoocompat.api.cache import default_root

    source = default_root()
    for stage in SEEDED_STAGES:
        if (source / stage).is_dir():
            shutil.copytree(source / stage, cache / stage, ignore=shutil.ignore_patterns("*.lock"))


def run_matrix(cache: Path, report: Path, rss: Path, workers: int, selection: dict[str, str], *extra: str) -> dict:
    """One ``pytest conformance/`` run; returns wall and CPU seconds, exit code and the results."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "rss_probe", "-q", "conformance/"]
    command += ["-n", str(workers), "--zoo-report", str(report), "--zoo-models", selection["models"]]
    command += ["--backends", selection["backends"], "--precisions", selection["precisions"], *extra]
    env = dict(
        os.environ,
        ZOOCOMPAT_CACHE=str(cache),
        ZOOCOMPAT_BENCH_RSS=str(rss),
        PYTHONPATH=os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")])),
    )
    cpu_before = _children_cpu_s()
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    cpu = _children_cpu_s() - cpu_before
    results_path = report / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {"cells": []}
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_busy": cpu / (wall * (os.cpu_count() or 1)),
        "exit": done.returncode,
        "results": results,
        "tail": (done.stdout + done.stderr)[-1500:] if done.returncode not in (0, 1) else "",
    }


def _sum(cells: list[dict], field: str, backend: str | None = None) -> float:
    return sum((c["timing"].get(field) or 0.0) for c in cells if backend is None or c["backend"] == backend)


def bare_sessions(cells: list[dict], cache: Path) -> dict[str, Any]:
    """Plain onnxruntime sessions on each cell's model and inputs; seconds to create and to run, per cell."""
    import onnxruntime as ort
    from zoocompat_plugins.backends.htp import HtpBackend

    from zoocompat.api.cache import ArtifactCache
    from zoocompat.api.registry import registry
    from zoocompat.model.cards import discover
    from zoocompat.report.results import ReportDir
    from zoocompat.run.pipeline import CellRunner
    from zoocompat.sdk import releases as sdks

    reg = registry()
    cards, _ = discover(list(reg.zoo_dirs))
    runner = CellRunner(reg, cards, ArtifactCache(cache), ReportDir(cache / "bare-report"))
    registered = False
    per_cell = {}
    for cell in cells:
        if cell["status"] not in ("pass", "fail", "inconclusive") or cell["backend"] not in ("cpu", "htp"):
            continue
        model = cell["artifacts"].get("qdq_onnx") or cell["artifacts"].get("fp32_onnx")
        if not model:
            continue
        inputs = runner.card_data(cards[cell["model"]]).eval_batch()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        start = time.perf_counter()
        if cell["backend"] == "htp":
            import onnxruntime_qnn

            if not registered:
                ort.register_execution_provider_library("QNNExecutionProvider", onnxruntime_qnn.get_library_path())
                registered = True
            devices = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
            provider = dict(HtpBackend().provider_options(cell["precision"]))
            provider["backend_path"] = str(sdks.current_env().htp_library)
            options.add_provider_for_devices(devices, provider)
            session = ort.InferenceSession(model, sess_options=options)
        else:
            session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
        create_s = time.perf_counter() - start
        names = [o.name for o in session.get_outputs()]
        count = len(next(iter(inputs.values())))
        start = time.perf_counter()
        for i in range(count):
            session.run(names, {key: value[i : i + 1] for key, value in inputs.items()})
        run_s = time.perf_counter() - start
        per_cell[cell["id"]] = {
            "backend": cell["backend"],
            "create_s": round(create_s, 4),
            "run_s": round(run_s, 4),
            "samples": count,
            "providers": session.get_providers()[:1],
        }
        del session
    return per_cell


@contextlib.contextmanager
def _stdout_to_stderr():
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _bare_qnn_run(model: str, precision: str, inputs: dict) -> float:
    """Seconds for one bare QNN EP session (the backend's provider options) to run every sample once."""
    import onnxruntime as ort
    import onnxruntime_qnn
    from zoocompat_plugins.backends.htp import HtpBackend

    from zoocompat.sdk import releases as sdks

    if not any(d.ep_name == "QNNExecutionProvider" for d in ort.get_ep_devices()):
        ort.register_execution_provider_library("QNNExecutionProvider", onnxruntime_qnn.get_library_path())
    devices = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
    options = ort.SessionOptions()
    options.log_severity_level = 3
    provider = dict(HtpBackend().provider_options(precision), backend_path=str(sdks.current_env().htp_library))
    options.add_provider_for_devices(devices, provider)
    session = ort.InferenceSession(model, sess_options=options)
    names = [o.name for o in session.get_outputs()]
    count = len(next(iter(inputs.values())))
    start = time.perf_counter()
    for i in range(count):
        session.run(names, {key: value[i : i + 1] for key, value in inputs.items()})
    return time.perf_counter() - start


def htp_throughput(
    cells: list[dict], cache: Path, work: Path, rounds: int = 2, samples: int | None = None
) -> dict[str, dict]:
    """Per htp cell: the backend's run (its runner process, warm context) and a bare QNN session on the same
    QDQ model and the first ``samples`` inputs (all: ``None``), alternated ``rounds`` times; the fastest of
    each (the least disturbed by other load).
    """
    from zoocompat_plugins.backends.htp import HtpBackend

    from zoocompat.api.cache import ArtifactCache
    from zoocompat.api.registry import registry
    from zoocompat.model.cards import discover
    from zoocompat.report.results import ReportDir
    from zoocompat.run.pipeline import CellRunner

    reg = registry()
    cards, _ = discover(list(reg.zoo_dirs))
    runner = CellRunner(reg, cards, ArtifactCache(cache), ReportDir(work))
    backend = HtpBackend(context_root=cache)
    pairs = {}
    for cell in cells:
        model = cell["artifacts"].get("qdq_onnx") or cell["artifacts"].get("fp32_onnx")
        if cell["backend"] != "htp" or cell["status"] == "skip" or not model:
            continue
        inputs = {k: v[:samples] for k, v in runner.card_data(cards[cell["model"]]).eval_batch().items()}
        backend_s, bare_s = [], []
        for i in range(rounds):
            compiled = backend.compile(Path(model), cell["precision"], cell["sdk"], work / f"{cell['id']}-{i}")
            backend_s.append(compiled.run(inputs).run_s)
            bare_s.append(_bare_qnn_run(model, cell["precision"], inputs))
        pairs[cell["id"]] = {
            "backend_run_s": round(min(backend_s), 4),
            "bare_run_s": round(min(bare_s), 4),
            "samples": len(next(iter(inputs.values()))),
        }
    return pairs


def cli_start() -> dict[str, Any]:
    """``bench/cli_start.py --runs 3``'s JSON."""
    done = subprocess.run(
        [sys.executable, str(BENCH / "cli_start.py"), "--runs", "3"], cwd=ROOT, capture_output=True, text=True
    )
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {"error": done.stderr[-500:]}


def _rss(folder: Path) -> dict[str, Any]:
    workers: dict[str, float] = {}
    children = 0.0
    for path in folder.glob("*.json"):
        record = json.loads(path.read_text())
        name = record["worker"]
        workers[name] = max(workers.get(name, 0.0), record["peak_rss_mb"])
        children = max(children, record["children_peak_rss_mb"])
    return {
        "per_worker": {k: round(v, 1) for k, v in sorted(workers.items())},
        "max_worker": round(max((v for k, v in workers.items() if k != "controller"), default=0.0), 1),
        "runner_children_max": round(children, 1),
    }


def _count(values: Any) -> dict[str, int]:
    """How often each value occurs (``None`` left out)."""
    return dict(Counter(v for v in values if v is not None))


def _context_states(cells: list[dict]) -> dict[str, int]:
    return _count(
        ((c.get("backend_info") or {}).get("loaded") or {}).get("htp_context", {}).get("state") for c in cells
    )


def _output_states(cells: list[dict]) -> dict[str, int]:
    return _count(((c.get("backend_info") or {}).get("outputs") or {}).get("state", "not kept") for c in cells)


def raw_work(cells: list[dict]) -> dict[str, float]:
    """The library work in a run's records: each model's conversion once, each quantization once, and
    every cell's session create + run (a stage cached by one cell reports its build time in the others too).
    """
    convert = {c["model"]: c["timing"].get("convert_s") or 0.0 for c in cells}
    quantize = {(c["model"], c["precision"], c["quant"]): c["timing"].get("quantize_s") or 0.0 for c in cells}
    backend = _sum(cells, "compile_s") + _sum(cells, "run_s")
    parts = {"convert_s": sum(convert.values()), "quantize_s": sum(quantize.values()), "compile_run_s": backend}
    return {**{k: round(v, 2) for k, v in parts.items()}, "total_s": round(sum(parts.values()), 2)}


def _statuses(cells: list[dict]) -> dict[str, int]:
    return _count(c["status"] for c in cells)


def main() -> None:
    """Run the phases and print the JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 small models x cpu fp32/w8a8 + htp w8a8")
    parser.add_argument("--json", action="store_true", help="print only the JSON object (the default output anyway)")
    parser.add_argument("--compare-dist", action="store_true", help="also cold runs under xdist's load, loadgroup")
    parser.add_argument("--models")
    parser.add_argument("--backends")
    parser.add_argument("--precisions")
    parser.add_argument(
        "--pair-samples",
        type=int,
        default=64,
        help="samples per htp cell in the throughput pairs (default 64; 0: all of them)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary caches and reports")
    args = parser.parse_args()
    args.pair_samples = args.pair_samples or None
    selection = dict(QUICK if args.quick else FULL)
    for key in ("models", "backends", "precisions"):
        if getattr(args, key):
            selection[key] = getattr(args, key)

    # Read the stack into the page cache first, so that the first phase (cold -n 2) does not also pay for
    # loading several GB of libraries from disk that the later phases find in memory.
    warmup = "import torch, onnxruntime, onnxruntime_qnn, aimet_onnx, aimet_torch, timm, tensorflow"
    subprocess.run([sys.executable, "-c", warmup], cwd=ROOT, capture_output=True, check=False)
    load_start = os.getloadavg()
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="zoocompat-bench-"))
    cache, rss = scratch / "cache", scratch / "rss"
    cache.mkdir()
    _seed_cache(cache)
    phases: dict[str, dict] = {}
    try:
        phases["cold_n2"] = run_matrix(cache, scratch / "cold", rss, 2, selection)
        phases["warm_n2"] = run_matrix(cache, scratch / "warm2", rss, 2, selection)
        phases["warm_n1"] = run_matrix(cache, scratch / "warm1", rss, 1, selection)
        single_cache = scratch / "cache-n1"
        single_cache.mkdir()
        _seed_cache(single_cache)
        phases["cold_n1"] = run_matrix(single_cache, scratch / "cold1", rss, 1, selection)
        phases["rerun_n1"] = run_matrix(cache, scratch / "rerun1", rss, 1, selection, "--rerun-backends")
        if args.compare_dist:  # other schedulers, each cold on a fresh cache
            for name, extra in COMPARED_DIST.items():
                other_cache = scratch / f"cache-{name}"
                other_cache.mkdir()
                _seed_cache(other_cache)
                phases[f"cold_n2_{name}"] = run_matrix(other_cache, scratch / f"cold-{name}", rss, 2, selection, *extra)
        cold_cells = phases["cold_n2"]["results"]["cells"]
        rerun_cells = phases["rerun_n1"]["results"]["cells"]
        with _stdout_to_stderr():  # native libraries print to fd 1; stdout carries only the JSON
            bare = bare_sessions(rerun_cells, cache)
            htp_pairs = htp_throughput(rerun_cells, cache, scratch / "htp-pairs", samples=args.pair_samples)
        cli = cli_start()
        peak_rss = _rss(rss)
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)

    raw_cold_n1 = raw_work(phases["cold_n1"]["results"]["cells"])
    raw_rerun = _sum(rerun_cells, "compile_s") + _sum(rerun_cells, "run_s")
    bare_total = sum(b["create_s"] + b["run_s"] for b in bare.values())
    backend_htp_run = sum(p["backend_run_s"] for p in htp_pairs.values())
    bare_htp_run = sum(p["bare_run_s"] for p in htp_pairs.values())
    cold_htp_compile = _sum(cold_cells, "compile_s", "htp")
    warm_htp_compile = _sum(rerun_cells, "compile_s", "htp")
    out: dict[str, Any] = {
        "cold_s": round(phases["cold_n2"]["wall_s"], 2),
        "warm_s": round(phases["warm_n2"]["wall_s"], 2),
        "warm_ratio": round(phases["warm_n2"]["wall_s"] / phases["cold_n2"]["wall_s"], 3),
        "warm_n1_s": round(phases["warm_n1"]["wall_s"], 2),
        "cold_n1_s": round(phases["cold_n1"]["wall_s"], 2),
        "speedup_n2": round(phases["cold_n1"]["wall_s"] / phases["cold_n2"]["wall_s"], 3),
        "speedup_n2_warm": round(phases["warm_n1"]["wall_s"] / phases["warm_n2"]["wall_s"], 3),
        "overhead_ratio": round(phases["cold_n1"]["wall_s"] / raw_cold_n1["total_s"], 2)
        if raw_cold_n1["total_s"]
        else None,
        "raw_work_cold_n1": raw_cold_n1,
        "rerun_n1_s": round(phases["rerun_n1"]["wall_s"], 2),
        "rerun_overhead_ratio": round(phases["rerun_n1"]["wall_s"] / raw_rerun, 2) if raw_rerun else None,
        "overhead_ratio_vs_bare": round(phases["rerun_n1"]["wall_s"] / bare_total, 2) if bare_total else None,
        "bare_sessions_s": round(bare_total, 2),
        "peak_rss_mb": peak_rss,
        "cli_start_s": cli.get("cli_plugins_s"),
        "cli_start": cli,
        "htp_throughput_ratio": round(bare_htp_run / backend_htp_run, 3) if backend_htp_run else None,
        "htp_run_s": {"backend": round(backend_htp_run, 3), "bare": round(bare_htp_run, 3), "cells": htp_pairs},
        "htp_compile_warm_ratio": round(warm_htp_compile / cold_htp_compile, 3) if cold_htp_compile else None,
        "htp_compile_s": {"cold": round(cold_htp_compile, 3), "warm": round(warm_htp_compile, 3)},
        "htp_context_states": {"cold_run": _context_states(cold_cells), "rerun": _context_states(rerun_cells)},
        "outputs_states": {name: _output_states(p["results"]["cells"]) for name, p in phases.items()},
        "phases": {
            name: {
                "wall_s": round(p["wall_s"], 2),
                "cpu_s": round(p["cpu_s"], 2),
                "cpu_busy": round(p["cpu_busy"], 3),
                "exit": p["exit"],
                "cells": _statuses(p["results"]["cells"]),
                **({"tail": p["tail"]} if p["tail"] else {}),
            }
            for name, p in phases.items()
        },
        "selection": {**selection, "cells": len(cold_cells), "quick": args.quick},
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "bench_wall_s": round(time.perf_counter() - started, 1),
    }
    for name in COMPARED_DIST:
        if f"cold_n2_{name}" in phases:  # < 1: that scheduler was faster than the default
            other = phases[f"cold_n2_{name}"]["wall_s"]
            out[f"cold_{name}_s"] = round(other, 2)
            out[f"{name}_vs_default"] = round(other / phases["cold_n2"]["wall_s"], 3)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
