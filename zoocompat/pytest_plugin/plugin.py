"""pytest wiring: options, the parametrized matrix, records and the support table.

A test that asks for the ``zoo_cell`` fixture is parametrized with every cell
of the matrix (see :mod:`zoocompat.run.matrix`), with one marker per axis value,
so ``-m "htp and w8a8"`` selects cells. Each cell's record is written by the
worker that ran it as soon as it finishes; the controller (the only process
without ``workerinput``) resets the report folder at start and merges the
records into ``results.json`` and ``support.md`` at the end.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import pytest

from zoocompat.api.cache import ArtifactCache
from zoocompat.api.environment import default_worker_memory_gb, host_info, limit_memory, tool_versions
from zoocompat.api.errors import CardError, PluginError
from zoocompat.api.protocols import optional
from zoocompat.api.registry import AXES, registry
from zoocompat.gate.known_failures import KnownFailures, KnownFailuresError, load_known_failures_files
from zoocompat.model.cards import Card, discover
from zoocompat.pytest_plugin import live
from zoocompat.pytest_plugin.collect import collect_shipped_matrix, is_matrix_path
from zoocompat.pytest_plugin.shard import SHARD_BY, ShardError, load_durations, parse_shard
from zoocompat.report.results import ReportDir, RunInfo, load_results, now, write_atomic
from zoocompat.report.table import render_markdown, run_summary
from zoocompat.run.matrix import Cell, Selection, matrix_cells

DEFAULT_REPORT = "reports/latest"


def _csv(value: str | None) -> set[str] | None:
    return {v.strip() for v in value.split(",") if v.strip()} if value else None


def _axis_help(axis: str) -> str:
    """``--backends`` and co.: the registered names in order, and which run when the option is not given."""
    try:
        reg = registry()
        names, defaults = reg.axis(axis), reg.defaults(axis)
    except PluginError as error:  # the session reports it where it matters; --help must still work
        return f"comma-separated names registered by plugins ({error})"
    default = "all" if defaults == names else ",".join(defaults)
    return f"comma-separated, of {','.join(names)} (registered by plugins; default: {default})"


def pytest_addoption(parser: pytest.Parser) -> None:
    """The matrix's command-line options."""
    group = parser.getgroup("zoocompat", "zoocompat conformance matrix")
    group.addoption("--zoo-models", default=None, help="comma-separated model names")
    group.addoption("--frontends", default=None, help=_axis_help("frontend"))
    group.addoption("--backends", default=None, help=_axis_help("backend"))
    group.addoption("--precisions", default=None, help=_axis_help("precision"))
    group.addoption("--quant", default=None, help=_axis_help("quant"))
    group.addoption(
        "--sdk",
        default=None,
        help="SDK id(s) for the SDK-bound backends (htp, dsp), comma-separated for side by side, "
        "e.g. qnn-2.47,qnn-2.51 (default: the installed one; see `zoocompat sdk list`)",
    )
    group.addoption(
        "--strict-npu",
        action="store_true",
        default=False,
        help="htp cells without CPU fallback (session.disable_cpu_ep_fallback=1): a graph the NPU cannot take "
        "whole fails as unsupported_op with the vendor's reason",
    )
    group.addoption(
        "--device",
        default=None,
        metavar="adb:SERIAL[,adb:SERIAL...]",
        help="run the htp/dsp cells on a phone or board over adb (needs a local SDK: QNN_SDK_ROOT or SNPE_ROOT); "
        "several devices: xdist worker gwN takes the N-th (one worker per device: -n <number of devices>); "
        "a worker's ZOOCOMPAT_DEVICE wins",
    )
    group.addoption("--zoo", action="append", default=[], help="extra folder of model cards (repeatable)")
    group.addoption("--zoo-report", default=DEFAULT_REPORT, help=f"report folder (default {DEFAULT_REPORT})")
    group.addoption(
        "--resume",
        action="store_true",
        default=False,
        help="keep the report folder's cell records and run only the cells without one",
    )
    group.addoption(
        "--rerun-backends",
        action="store_true",
        default=False,
        help="run every backend again instead of reusing the outputs an identical earlier run kept in the cache "
        "(same model bytes, inputs, runtime and backend code; see ZOOCOMPAT_REUSE_OUTPUTS)",
    )
    group.addoption(
        "--max-evaluation",
        type=_positive_int,
        default=None,
        metavar="N",
        help="most evaluation samples any cell's later looks may grow to (lowers a card's dataset.max_evaluation, "
        "never raises it; see docs/sequential-verdicts.md)",
    )
    group.addoption(
        "--evaluation-budget",
        type=_positive_number,
        default=None,
        metavar="SECONDS",
        help="most seconds any cell's later looks may spend on its backend (lowers a card's dataset.budget_s)",
    )
    group.addoption(
        "--max-sample-mb",
        type=_positive_number,
        default=None,
        metavar="MIB",
        help="most MiB one sample (all inputs) may take, from the card's shapes, checked before any data is built "
        "(default 768; a card's dataset.max_sample_mb when not given)",
    )
    group.addoption(
        "--max-split-mb",
        type=_positive_number,
        default=None,
        metavar="MIB",
        help="most MiB a calibration or evaluation split may take (default 6144; else the card's dataset.max_split_mb)",
    )
    group.addoption(
        "--worker-memory-gb",
        type=float,
        default=None,
        metavar="GIB",
        help="address space each process running cells may take (RLIMIT_AS); a cell over it is recorded as "
        "error / resource and the run goes on (default: $ZOOCOMPAT_WORKER_MEMORY_GB or 75%% of the machine's "
        "memory; 0: no limit)",
    )
    group.addoption(
        "--known-failures",
        default=None,
        help="YAML of accepted failures, strict xfails, instead of the files plugins declare (zoocompat_known_failures "
        "hook; the default zoo's known_failures.yaml)",
    )
    group.addoption(
        "--shard",
        default=None,
        metavar="K/N",
        help="run only the K-th of N deterministic parts of the selected cells (balanced by --shard-durations); "
        f"the report goes to {DEFAULT_REPORT}-shard-K-of-N unless --zoo-report is given; join with zoocompat merge",
    )
    group.addoption(
        "--shard-durations",
        default=None,
        metavar="FILE",
        help="a previous results.json (or a {cell_id: seconds} JSON) whose timings balance --shard "
        "(default: equal weight per cell)",
    )
    group.addoption(
        "--shard-by",
        default="model",
        choices=SHARD_BY,
        help="unit of --shard: a model's cells together (default; they share conversion and calibration) or cells",
    )
    group.addoption(
        "--zoo-group-by",
        default="model",
        choices=("model", "model-sdk", "none"),
        help="what a worker keeps to: under -n / --dist load (default) a worker is sent the cells of the model "
        "(or model and SDK) it already works on first, then a model no worker has, then the biggest one left; "
        "--dist loadgroup keeps each on one worker (xdist_group mark); none: xdist's own scheduling",
    )


def _positive_int(text: str) -> int:
    """An option's whole number of at least 1 (argparse reports the error with the option's name)."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _positive_number(text: str) -> float:
    """An option's finite number above 0 (seconds, MiB)."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(text)
    return value


def _is_controller(config: pytest.Config) -> bool:
    return not hasattr(config, "workerinput")


def _zoo(config: pytest.Config) -> tuple[dict[str, Card], list[CardError]]:
    cached = getattr(config, "_zoocompat_zoo", None)
    if cached is None:
        extra = [Path(d) for d in config.getoption("zoo")]
        for folder in extra:
            if not folder.is_dir():
                raise pytest.UsageError(f"--zoo {folder}: no such folder of model cards")
        dirs = list(registry().zoo_dirs) + extra
        cached = discover(dirs)
        config._zoocompat_zoo = cached  # type: ignore[attr-defined]
    return cached


def _report(config: pytest.Config) -> ReportDir:
    root = config.getoption("zoo_report")
    shard = config.getoption("shard")
    if shard and root == DEFAULT_REPORT:  # each shard writes its own report unless told where
        try:
            spec = parse_shard(shard)
        except ShardError as error:
            raise pytest.UsageError(str(error)) from None
        root = f"{DEFAULT_REPORT}-shard-{spec.index}-of-{spec.count}"
    return ReportDir(Path(root))


def _wants_matrix(config: pytest.Config) -> bool:
    """Whether this session runs matrix cells (so it owns the report folder).

    Decided from the command line because under xdist the controller collects
    nothing itself; ``--collect-only`` never touches the report.
    """
    if config.option.collectonly:
        return False
    args = config.args or [str(config.invocation_params.dir)]
    return any(is_matrix_path(arg) for arg in args)


def _share_cores(config: pytest.Config) -> None:
    """On an xdist worker, give the libraries ``cores // workers`` threads (unless the user set them), so
    that N workers with a thread pool of every core each do not fight over the cores: torch/OpenMP
    (``OMP_NUM_THREADS``), TensorFlow (``TF_NUM_INTRAOP_THREADS``) and the runner processes' onnxruntime
    sessions (``ZOOCOMPAT_THREADS``, read by ``plugins/backends/ort_runner.py``).
    """
    if _is_controller(config):
        return
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    threads = str(max(1, (os.cpu_count() or 1) // max(workers, 1)))
    for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "ZOOCOMPAT_THREADS"):
        os.environ.setdefault(name, threads)
    if "torch" in sys.modules:  # imported already (a plugin at start-up): OMP_NUM_THREADS came too late
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_configure(config: pytest.Config) -> None:
    """Register axis markers; on the controller of a matrix run, start a fresh report (or resume one)."""
    collect_shipped_matrix(config)  # --zoo / --zoo-models and no test path: the shipped matrix
    if _is_controller(config):
        _CONTROLLER_CONFIG["config"] = config
    _share_cores(config)
    if _wants_matrix(config):  # every process that runs cells, and the runner processes they start
        gb = config.getoption("worker_memory_gb")
        limit_memory(default_worker_memory_gb() if gb is None else gb)
    live.configure(config)
    config.addinivalue_line("markers", "smoke: a small, fast slice of the conformance matrix")
    for axis in AXES:
        for value in registry().axis(axis):
            config.addinivalue_line("markers", f"{value}: cells with this {axis}")
    cards, _ = _zoo(config)
    for name in cards:
        config.addinivalue_line("markers", f"{name}: cells of this model")
    config._zoocompat_selection = _selection(config)  # type: ignore[attr-defined]  # usage errors surface here
    _configure_backends(config)
    sdk_ids = config._zoocompat_selection.sdk_ids()  # type: ignore[attr-defined]
    for sdk in filter(None, sdk_ids):
        config.addinivalue_line("markers", f"{sdk}: cells run on this SDK release")
    config._zoocompat_known = _known_failures(config, set(cards))  # type: ignore[attr-defined]
    if _is_controller(config) and _wants_matrix(config):
        report = _report(config)
        config._zoocompat_timings = _previous_timings(config, report)  # type: ignore[attr-defined]
        if config.getoption("resume"):
            _write_resume_snapshot(report)
            if (report.root / "run.json").exists():
                return  # the interrupted run's header (tools, start time) stays the run's header
        else:
            report.reset()
        run = RunInfo(
            tools=tool_versions(),
            sdk=config.getoption("sdk"),
            host=host_info(),
            command=" ".join(["pytest", *sys.argv[1:]]),
            started=now(),
        )
        for name in registry().names("backend"):
            backend = registry().get("backend", name)
            for i, sdk in enumerate(sdk_ids if optional(backend, "sdk_axis") else sdk_ids[:1]):
                run.backends[name if i == 0 else f"{name}-{sdk}"] = backend.describe(sdk)
        report.write_run(run)


def _previous_timings(config: pytest.Config, report: ReportDir) -> dict[str, float]:
    """Seconds per cell id from ``--shard-durations`` or the report folder's last ``results.json`` (before this
    run replaces it): what the scheduler expects each cell to take. Unreadable history is no history.
    """
    option = config.getoption("shard_durations")
    path = Path(option) if option else report.root / "results.json"
    try:
        return load_durations(path) if path.exists() else {}
    except ShardError:
        return {}


def _configure_backends(config: pytest.Config) -> None:
    """Hand ``--strict-npu`` and ``--device`` to every backend that takes them (``configure``); every
    session sets them, so one session's settings never carry over to the next in the same process.
    """
    from zoocompat.sdk.device import device_for_worker

    worker = getattr(config, "workerinput", {}).get("workerid")
    device = device_for_worker(config.getoption("device"), worker)
    for name in registry().names("backend"):
        backend = registry().get("backend", name)
        configure = optional(backend, "configure")
        if configure is not None:
            try:
                configure(strict_npu=config.getoption("strict_npu"), device=device)
            except ValueError as error:
                raise pytest.UsageError(str(error)) from None


def _shown(path: Path, root: Path) -> Path:
    """``path`` relative to ``root`` when it lies below it (as messages show it), else as it is."""
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        return path


def _known_failures(config: pytest.Config, models: set[str]) -> tuple[Path | None, KnownFailures]:
    """The session's known failures: ``--known-failures FILE``, else the existing files plugins declare
    (``zoocompat_known_failures``), merged in order. Returns ``(the one file, or None for none or several,
    entries)``; each match names its own file. An invalid file is a usage error.
    """
    option = config.getoption("known_failures")
    if option:
        paths = [Path(option)]
    else:
        # shown relative to the cwd (never the rootdir, which may differ): the path is read from there
        paths = [_shown(Path(p), config.invocation_params.dir) for p in registry().known_failures if Path(p).exists()]
    try:
        known = load_known_failures_files(paths, models)
    except KnownFailuresError as error:
        raise pytest.UsageError(f"--known-failures: {error}") from None
    return (paths[0] if len(paths) == 1 else None), known


def _check_known(option: str, wanted: set[str] | None, known: set[str]) -> None:
    unknown = sorted((wanted or set()) - known)
    if unknown:
        raise pytest.UsageError(f"--{option}: unknown {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def _invalid_names(card_errors: list[CardError]) -> set[str]:
    """The models of cards that do not load: each file's ``name:`` line when it has one, and its file name."""
    names = set()
    for error in card_errors:
        if not error.path:
            continue
        path = Path(error.path)
        names.add(path.stem)
        try:
            head = path.read_bytes()[:65536].decode("utf-8", errors="replace")
        except OSError:
            continue
        found = re.search(r"^name:\s*['\"]?([A-Za-z0-9_]+)", head, flags=re.MULTILINE)
        if found:
            names.add(found.group(1))
    return names


def _selection(config: pytest.Config) -> Selection:
    cards, card_errors = _zoo(config)
    reg = registry()
    wanted = _csv(config.getoption("zoo_models"))
    broken = _invalid_names(card_errors) - set(cards)
    # a model whose card does not load is not "unknown": its card error is reported (results, table, a failing
    # test of its own) and the other models run
    _check_known("zoo-models", wanted, set(cards) | broken)
    _check_known("frontends", _csv(config.getoption("frontends")), set(reg.axis("frontend")))
    _check_known("backends", _csv(config.getoption("backends")), set(reg.axis("backend")))
    _check_known("precisions", _csv(config.getoption("precisions")), set(reg.axis("precision")))
    _check_known("quant", _csv(config.getoption("quant")), set(reg.axis("quant")))
    return Selection(
        models=None if wanted is None else wanted - broken,
        frontends=_csv(config.getoption("frontends")),
        backends=_csv(config.getoption("backends")),
        precisions=_csv(config.getoption("precisions")),
        quant=_csv(config.getoption("quant")),
        sdk=config.getoption("sdk"),
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``zoo_cell`` with the matrix (and bad cards, which fail as their own tests)."""
    if "zoo_cell" not in metafunc.fixturenames:
        return
    config = metafunc.config
    cards, card_errors = _zoo(config)
    params = []
    for cell in _cells(config):
        marks = [getattr(pytest.mark, value) for value in cell.axis_values()]
        if cell.is_smoke(cards[cell.model]):
            marks.append(pytest.mark.smoke)
        group = _xdist_group(config, cell)
        if group:
            marks.append(pytest.mark.xdist_group(group))
        params.append(pytest.param(cell, id=cell.id, marks=marks))
    for error in card_errors:
        params.append(pytest.param(error, id=f"card-error-{len(params)}"))
    metafunc.parametrize("zoo_cell", params)


def _xdist_group(config: pytest.Config, cell: Cell) -> str | None:
    """The cell's group under ``--zoo-group-by``: the ``xdist_group`` mark of ``--dist loadgroup`` and the unit
    :mod:`zoocompat.pytest_plugin.schedule` keeps a worker to under ``--dist load``.
    """
    by = config.getoption("zoo_group_by")
    if by == "none":
        return None
    return cell.model if by == "model" or not cell.sdk else f"{cell.model}-{cell.sdk}"


def _cells(config: pytest.Config) -> list[Cell]:
    """The selected cells of the matrix, in order."""
    cards, _ = _zoo(config)
    return matrix_cells(cards.values(), config._zoocompat_selection)


RESUME_SNAPSHOT = "resume.json"


def _write_resume_snapshot(report: ReportDir) -> None:
    """Record which cells already have a record, once, before any worker starts.

    Workers deselect from this snapshot rather than from the live folder, so that
    every worker collects the same tests while cells finish around them.
    """
    done = sorted(path.stem for path in report.cells_dir.glob("*.json")) if report.cells_dir.is_dir() else []
    report.root.mkdir(parents=True, exist_ok=True)
    write_atomic(report.root / RESUME_SNAPSHOT, json.dumps({"done": done}))


def _item_cell(item: pytest.Item) -> Cell | None:
    cell = getattr(item, "callspec", None) and item.callspec.params.get("zoo_cell")
    return cell if isinstance(cell, Cell) else None


def _apply_shard(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``--shard K/N``, deselect the cells of the other shards (same split on every worker)."""
    from zoocompat.pytest_plugin.shard import select

    option = config.getoption("shard")
    if not option:
        return
    try:
        spec = parse_shard(option)
        path = config.getoption("shard_durations")
        durations = load_durations(Path(path)) if path else None
        mine, others = select(
            items,
            spec,
            lambda item: (cell := _item_cell(item)) and cell.id,
            lambda item: (cell := _item_cell(item)) and cell.model,
            durations,
            config.getoption("shard_by"),
        )
    except ShardError as error:
        raise pytest.UsageError(str(error)) from None
    if others:
        config.hook.pytest_deselected(items=others)
        items[:] = mine


@pytest.hookimpl(trylast=True)  # after -m / -k: a shard is a part of the selected cells
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``--shard K/N``, keep this shard's cells; with ``--resume``, deselect the cells that already have
    a record.
    """
    _apply_shard(config, items)
    if not config.getoption("resume"):
        return
    snapshot = _report(config).root / RESUME_SNAPSHOT
    done = set(json.loads(snapshot.read_text())["done"]) if snapshot.exists() else set()
    keep, skip = [], []
    for item in items:
        cell = getattr(item, "callspec", None) and item.callspec.params.get("zoo_cell")
        (skip if isinstance(cell, Cell) and cell.id in done else keep).append(item)
    if skip:
        config.hook.pytest_deselected(items=skip)
        items[:] = keep


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Under ``--dist load`` (what ``-n`` implies), hand a worker the cells of the model it already works on
    first, longest first (:mod:`zoocompat.pytest_plugin.schedule`); ``--zoo-group-by none`` or another ``--dist`` keeps
    xdist's own.
    """
    if config.getoption("dist") != "load" or config.getoption("zoo_group_by") == "none" or not _wants_matrix(config):
        return None
    from zoocompat.pytest_plugin.schedule import ModelAffinityScheduling, expected_seconds

    cells = _cells(config)
    seconds = expected_seconds(cells, _zoo(config)[0], getattr(config, "_zoocompat_timings", {}))
    return ModelAffinityScheduling(config, log, {cell.id: _xdist_group(config, cell) for cell in cells}, seconds)


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched) -> None:
    """On the xdist controller: a worker died inside a cell (kill -9, out of memory, a fatal
    signal in-process). Record that cell as a crash, so the run's results keep it; xdist
    restarts the worker (``--max-worker-restart``) and the other cells run on.
    """
    config = _CONTROLLER_CONFIG.get("config")
    if config is None or not _wants_matrix(config):
        return
    crashitem = crashitem.rsplit("@", 1)[0] if "]@" in crashitem else crashitem  # --dist loadgroup's suffix
    cell_id = crashitem.rpartition("[")[2].rstrip("]") if crashitem.endswith("]") else None
    cells = {cell.id: cell for cell in _cells(config)}
    cell = cells.get(cell_id or "")
    target = _report(config)
    if cell is None or (target.cells_dir / f"{cell.id}.json").exists():
        return
    worker = getattr(getattr(getattr(report, "node", None), "gateway", None), "id", "a worker")
    target.write_cell(
        cell.record(
            "error",
            category="crash",
            reason=f"worker {worker} died while running this cell (killed, out of memory, or a fatal signal "
            "inside the worker process); the other cells ran on. Run it alone with -n 0 to see the cause.",
        )
    )


_CONTROLLER_CONFIG: dict[str, pytest.Config] = {}


@pytest.fixture(scope="session")
def zoo_runner(request: pytest.FixtureRequest):
    """The session's :class:`zoocompat.run.pipeline.CellRunner`."""
    from zoocompat.run.pipeline import CellRunner

    cards, _ = _zoo(request.config)
    reuse = False if request.config.getoption("rerun_backends") else None  # None: ZOOCOMPAT_REUSE_OUTPUTS decides
    return CellRunner(
        registry(),
        cards,
        ArtifactCache(),
        _report(request.config),
        reuse_outputs=reuse,
        max_evaluation=request.config.getoption("max_evaluation"),
        budget_s=request.config.getoption("evaluation_budget"),
        max_sample_mb=request.config.getoption("max_sample_mb"),
        max_split_mb=request.config.getoption("max_split_mb"),
    )


@pytest.fixture(scope="session")
def zoo_known_failures(request: pytest.FixtureRequest) -> tuple[Path | None, KnownFailures]:
    """The session's known failures: ``(file, entries)``, ``(None, empty)`` when there is no file."""
    return request.config._zoocompat_known  # type: ignore[attr-defined]


def run_cell_test(
    zoo_cell: Cell | CardError, zoo_runner, zoo_known_failures: tuple[Path | None, KnownFailures] | None = None
) -> None:
    """The body of the conformance test: run the cell, then turn its record into a test outcome.

    A cell matching a known-failures entry is a strict expected failure: failing
    with the entry's category it is recorded ``xfail`` and xfails; passing it is
    recorded ``xpass`` and fails with "fixed: remove this entry ...".
    """
    if isinstance(zoo_cell, CardError):  # kept in the results (card_errors), then this test fails with it
        zoo_runner.report.write_card_error(zoo_cell.path or "(unknown card)", str(zoo_cell))
        pytest.fail(str(zoo_cell), pytrace=False)
    record = zoo_runner.run_cell(zoo_cell)
    live.remember(record)
    _, known = zoo_known_failures or (None, KnownFailures())
    match = known.match(record, sdk=record.release)
    if match is not None:
        message = match.apply(record)  # the message names the file the entry came from
        if record.status in ("xfail", "xpass"):
            zoo_runner.report.write_cell(record)
        if record.status == "xfail":
            pytest.xfail(message)
        if message is not None:
            pytest.fail(message, pytrace=False)
    if record.status == "skip":
        pytest.skip(record.reason)
    if record.status == "inconclusive":  # neither pass nor fail: the record says how many samples would tell
        pytest.skip(f"inconclusive: {record.reason}")
    if record.status != "pass":
        pytest.fail(f"[{record.category}] {record.reason}", pytrace=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """On the controller: merge cell records into results.json and write support.md and support.html."""
    config = session.config
    if not (_is_controller(config) and _wants_matrix(config)):
        return
    report = _report(config)
    if not (report.root / "run.json").exists():
        return
    results = report.merge()
    (report.root / "support.md").write_text(render_markdown(results), encoding="utf-8")
    config._zoocompat_summary = (results, report.root)  # type: ignore[attr-defined]
    try:
        from zoocompat.report.html import render_html

        (report.root / "support.html").write_text(render_html(results), encoding="utf-8")
    except Exception as error:  # the page is a convenience: a plotting problem must not lose the run's report
        config._zoocompat_html_error = f"{type(error).__name__}: {error}"  # type: ignore[attr-defined]


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Print what the run found (new failures apart from known ones, inconclusive, passed), what its exit
    status means, and where the report is.
    """
    summary = getattr(config, "_zoocompat_summary", None)
    if not summary:
        return
    results, root = summary
    known_file, _ = getattr(config, "_zoocompat_known", (None, None))
    terminalreporter.section("zoocompat")
    for line in run_summary(results, known_file=str(known_file) if known_file else None, exitstatus=exitstatus):
        terminalreporter.write_line(line)
    terminalreporter.write_line(f"results: {os.path.join(root, 'results.json')}")
    terminalreporter.write_line(f"table:   {os.path.join(root, 'support.md')}")
    html_error = getattr(config, "_zoocompat_html_error", None)
    if html_error:
        terminalreporter.write_line(f"html:    not written ({html_error})")
    else:
        terminalreporter.write_line(f"html:    {os.path.join(root, 'support.html')}")


__all__ = ["load_results", "run_cell_test"]
