"""The ``zoocompat`` command line. Imports no ML framework at start-up."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from zoocompat import __version__
from zoocompat.api.errors import ZoocompatError


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group()
@click.version_option(__version__, prog_name="zoocompat")
def main() -> None:
    """Model-zoo compatibility suite for Snapdragon-class NPU SDKs (QNN / SNPE).

    Run the matrix with `pytest -n auto conformance/`; these commands list,
    check and tabulate.
    """


@main.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def plugins(as_json: bool) -> None:
    """List registered plugins (kind, name, version, source)."""
    from zoocompat.api.registry import registry

    reg = registry()
    infos = reg.infos()
    if as_json:
        click.echo(json.dumps({"plugins": [vars(i) for i in infos], "broken": reg.broken}, indent=1))
    else:
        width = max(len(i.name) for i in infos) if infos else 4
        for info in infos:
            click.echo(f"{info.kind:<10} {info.name:<{width}}  {info.version:<8} {info.source}")
        for broken in reg.broken:
            click.echo(f"broken plugin: {broken}", err=True)
    if reg.broken:
        sys.exit(1)


@main.group()
def zoo() -> None:
    """List and check model cards."""


def _all_cards(extra: tuple[str, ...]):
    from zoocompat.api.registry import registry
    from zoocompat.model.cards import discover

    return discover(list(registry().zoo_dirs) + [Path(d) for d in extra])


@zoo.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--zoo", "extra", multiple=True, help="extra folder of cards")
def zoo_list(as_json: bool, extra: tuple[str, ...]) -> None:
    """Models: frontend, source, dataset, metric, FP32 reference and measured FP32 (from the cache)."""
    from zoocompat.model.measured import measured_fp32

    cards, errors = _all_cards(extra)
    models = []
    for card in cards.values():
        models.append(
            {
                "name": card.name,
                "frontend": card.frontend,
                "source": card.source.kind,
                "dataset": card.dataset.name or f"own:{card.dataset.source.kind}",
                "metric": card.metric.name,
                "fp32_reference": card.metric.fp32_reference,
                "fp32_measured": measured_fp32(card),
            }
        )
    if as_json:
        click.echo(json.dumps({"models": models, "errors": [str(e) for e in errors]}, indent=1))
    else:
        for m in models:
            measured = "not measured yet" if m["fp32_measured"] is None else f"{m['fp32_measured']:.4f}"
            click.echo(
                f"{m['name']:<22} {m['frontend']:<10} {m['source']:<9} {m['dataset']:<14} "
                f"{m['metric']:<6} ref {m['fp32_reference']}  measured {measured}"
            )
        for error in errors:
            click.echo(f"invalid card: {error}", err=True)
    if errors:
        sys.exit(1)


@zoo.command("check")
@click.argument("cards", nargs=-1, required=True, type=click.Path(path_type=Path))
def zoo_check(cards: tuple[Path, ...]) -> None:
    """Validate cards against the plugins, their model files and their data, before anything runs.

    Every problem is listed at once, each naming the card, the field and the fix;
    exits 1 when any card has one.
    """
    from zoocompat.api.registry import registry
    from zoocompat.model.cards import load_card
    from zoocompat.model.check import card_problems

    reg = registry()
    failed = False
    for path in cards:
        try:
            loaded = load_card(path, reg)
        except ZoocompatError as error:
            click.echo(str(error), err=True)
            failed = True
            continue
        problems = card_problems(loaded, reg)
        if problems:
            click.echo("\n".join([f"{path}: invalid model card", *(f"  - {p}" for p in problems)]), err=True)
            failed = True
            continue
        data = loaded.dataset.name or f"own data ({loaded.dataset.source.kind})"
        inputs = ", ".join(f"{i.name} {i.dtype}{list(i.shape)}" for i in loaded.inputs)
        click.echo(f"{path}: ok ({loaded.name}, {loaded.frontend}, inputs {inputs}, {data}, {loaded.metric.name})")
    if failed:
        sys.exit(1)


@main.command()
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["md", "html", "csv"]), default="md")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None)
def table(results: Path, fmt: str, output: Path | None) -> None:
    """Support table from a results.json: Markdown, one self-contained HTML page with plots, or CSV."""
    from zoocompat.report.results import load_results
    from zoocompat.report.table import render_csv, render_markdown

    try:
        loaded = load_results(results)
    except ZoocompatError as error:
        _fail(str(error))
    if fmt == "html":
        from zoocompat.report.html import render_html

        text = render_html(loaded)
    else:
        text = render_markdown(loaded) if fmt == "md" else render_csv(loaded)
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@main.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True)
def merge(results: tuple[Path, ...], output: Path) -> None:
    """Join results files (shards, several SDK runs); a later cell id replaces an earlier one.

    The header keeps the first file's tools and backends, the earliest start and
    the latest finish, and lists every file's host and command under
    ``run.host.parts``; disagreements between files are printed as warnings.
    """
    from zoocompat.pytest_plugin.shard import merge_results
    from zoocompat.report.results import load_results, write_atomic

    try:
        loaded = [load_results(p) for p in results]
    except ZoocompatError as error:
        _fail(str(error))
    merged, warnings = merge_results(loaded, [str(p) for p in results])
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    write_atomic(output, merged.model_dump_json(indent=1))
    click.echo(f"wrote {output}: {len(merged.cells)} cells from {len(loaded)} files")


@main.command()
@click.argument("baseline", type=click.Path(path_type=Path))
@click.argument("candidate", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="machine-readable output instead of Markdown")
@click.option("--threshold", type=float, default=0.5, show_default=True, help="accuracy drop growth, in points")
@click.option("--max-slowdown", type=float, default=2.0, show_default=True, help="slowdown factor that is a regression")
@click.option(
    "--sqnr-margin",
    type=float,
    default=3.0,
    show_default=True,
    help="SQNR change (dB) vs the CPU run that is a regression or an improvement (widened by the samples' spread)",
)
@click.option(
    "--gate-emulator-latency",
    is_flag=True,
    help="let slowdowns timed on an emulator (the HTP off-device) fail the gate, not only be reported",
)
@click.option("--md", "md_file", type=click.Path(path_type=Path), default=None, help="write the Markdown here")
@click.option(
    "--bisect",
    is_flag=True,
    help="rerun each regressed cell on the installed SDK releases in between; name the first that changed",
)
def gate(
    baseline: Path,
    candidate: Path,
    as_json: bool,
    threshold: float,
    max_slowdown: float,
    sqnr_margin: float,
    gate_emulator_latency: bool,
    md_file,
    bisect: bool,
) -> None:
    """Compare two results.json cell by cell: exit 0 pass, 1 regression, 2 usage error.

    Cells pair by id without the SDK suffix, so a qnn-2.47 run and a qnn-2.51
    run of the same cell are compared; a pair whose model sha256 differ is
    reported as "model changed", not compared.
    """
    from zoocompat.gate.compare import gate_files, render_markdown

    try:
        report = gate_files(baseline, candidate, threshold, max_slowdown, sqnr_margin, gate_emulator_latency)
    except ZoocompatError as error:
        _fail(str(error))
    if bisect:
        from zoocompat.gate.bisect import bisect_report

        bisect_report(report, baseline, candidate, progress=lambda line: click.echo(line, err=True))
    text = render_markdown(report)
    if md_file:
        md_file.write_text(text, encoding="utf-8")
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=1))
    elif md_file:
        counts = f"{len(report.regressions)} regression(s), {len(report.improvements)} improvement(s)"
        if report.model_changed:
            counts += f", {len(report.model_changed)} model(s) changed"
        click.echo(f"{report.verdict}: {counts}; wrote {md_file}")
    else:
        click.echo(text, nl=False)
    sys.exit(report.exit_code)


@main.group()
def sdk() -> None:
    """List, install and locate QNN SDK releases (isolated environments under the cache)."""


@sdk.command("list")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def sdk_list(as_json: bool) -> None:
    """Known releases, installed or not, with the QNN core version read from each installed library."""
    from zoocompat.sdk.releases import listing

    entries = listing()
    if as_json:
        click.echo(json.dumps({"sdks": entries}, indent=1))
        return
    for e in entries:
        if e["id"].startswith("snpe-"):  # a local SNPE SDK ($SNPE_ROOT): no onnxruntime of its own
            click.echo(f"{e['id']:<10} installed  SNPE {e['qnn_core_version'] or '?'} {e['path']} (local)")
        elif e["installed"]:
            click.echo(
                f"{e['id']:<10} installed  QNN core {e['qnn_core_version'] or '?':<9} "
                f"onnxruntime {e['onnxruntime_version'] or '?':<8} "
                f"onnxruntime-qnn {e['onnxruntime_qnn_version'] or '?':<7} "
                f"{e['path']} ({e['source']})"
            )
        else:
            click.echo(f"{e['id']:<10} not installed (zoocompat sdk install {e['id']})")


@sdk.command("install")
@click.argument("sdk_id")
@click.option("--force", is_flag=True, help="rebuild the environment even if it is installed")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def sdk_install(sdk_id: str, force: bool, as_json: bool) -> None:
    """Build SDK_ID's isolated environment (numpy, onnxruntime, onnxruntime-qnn at pinned versions)."""
    from dataclasses import asdict

    from zoocompat.sdk.releases import SdkError, install, release

    try:
        pinned = release(sdk_id)
        if not as_json:
            click.echo(f"installing {sdk_id}: {' '.join(pinned.requirements())} ...", err=True)
        env = install(sdk_id, force=force)
    except SdkError as error:
        _fail(str(error), 1)
    if as_json:
        click.echo(json.dumps(asdict(env), indent=1))
    else:
        click.echo(f"{env.id}: QNN core {env.qnn_core_version} (read from {env.htp_library}); python {env.python}")


@sdk.command("path")
@click.argument("sdk_id")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def sdk_path(sdk_id: str, as_json: bool) -> None:
    """Print SDK_ID's python (first line) and QNN library folder (second line)."""
    from dataclasses import asdict

    from zoocompat.sdk.releases import SdkError, find, not_installed_reason, release

    try:
        release(sdk_id)
    except SdkError as error:
        if find(sdk_id) is None:  # an installed release the table does not know is still usable
            _fail(str(error))
    env = find(sdk_id)
    if env is None:
        _fail(not_installed_reason(sdk_id), 1)
    if as_json:
        click.echo(json.dumps(asdict(env), indent=1))
    else:
        click.echo(env.python)
        click.echo(env.qnn_lib_dir)


@main.command()
@click.option(
    "--backend",
    "backend_name",
    default=None,
    help="backend plugin to probe (default: the last-ordered non-reference backend; htp with the built-ins)",
)
@click.option("--sdk", "sdk_id", default=None, help="SDK release, e.g. qnn-2.47 (default: this environment's)")
@click.option("--precisions", default=None, help="comma-separated (default: every precision of the backend)")
@click.option("--ops", "op_names", default=None, help="comma-separated probe names or ONNX op types (default: all)")
@click.option("--json", "as_json", is_flag=True, help="print the table as JSON")
@click.option("--md", "md_file", type=click.Path(path_type=Path), default=None, help="write a Markdown table")
@click.option("--diff", nargs=2, type=click.Path(path_type=Path), default=None, help="compare two `ops --json` files")
@click.option(
    "--results",
    "results_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="with --diff: the zoo's results under both releases (one file holding both SDKs' cells, or the "
    "baseline's then the candidate's): list model regressions no probe shows",
)
@click.option("--no-cache", is_flag=True, help="probe again even where a cached result exists")
@click.option(
    "--corpus",
    type=click.Choice(["onnx"]),
    default=None,
    help="run a peer's test corpus instead of the probes: onnx = onnx/backend/test/data of the installed wheel",
)
@click.option("--kinds", default=None, help="corpus kinds, comma-separated: light, pytorch-operator, pytorch-converted")
@click.option("-k", "--select", "select", multiple=True, help="corpus cases to run: glob, or substring (repeatable)")
@click.option("--exclude", multiple=True, help="corpus cases to leave out: glob, or substring (repeatable)")
@click.option(
    "--probes",
    "probe_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="an `ops --json` op table of the same backend and SDK: mark corpus cases that disagree with it",
)
def ops(
    backend_name, sdk_id, precisions, op_names, as_json, md_file, diff, no_cache, results_files, **corpus_options
) -> None:
    """Per-op support table: single-op ONNX probes x precisions on a backend (or --diff two tables).

    With --corpus onnx, the cases of ONNX's own backend test data instead (see docs/corpus.md).
    """
    from zoocompat.diagnose import ops as ops_table

    if diff:
        try:
            tables = [json.loads(Path(p).read_text()) for p in diff]
        except (OSError, ValueError) as error:
            _fail(f"--diff needs two files written by `zoocompat ops --json`: {error}")
        if not all(isinstance(t, dict) and "ops" in t for t in tables):
            _fail(f"--diff: {diff[0]} or {diff[1]} is not an `ops --json` table (no 'ops' key)")
        changes = ops_table.diff_tables(*tables)
        if results_files:
            changes["models"] = _model_findings(tables, changes, results_files)
        corpus_diff = "corpus" in tables[0]
        text = ops_table.render_diff_markdown(
            changes, "ONNX corpus changes" if corpus_diff else None, "case" if corpus_diff else "probe"
        )
        if md_file:
            Path(md_file).write_text(text, encoding="utf-8")
        click.echo(json.dumps(changes, indent=1) if as_json else text, nl=not text.endswith("\n") or as_json)
        return
    from zoocompat.api.registry import registry

    if backend_name is None:
        accelerators = [n for n in registry().axis("backend") if n not in registry().reference_backends()]
        if not accelerators:
            _fail("no backend to probe: every registered backend is the reference; pass --backend NAME")
        backend_name = accelerators[-1]
    try:
        backend = registry().get("backend", backend_name)
    except ZoocompatError as error:
        _fail(str(error))
    if corpus_options["corpus"]:
        chosen = precisions.split(",") if precisions else [p for p in backend.precisions if p in _CORPUS_PRECISIONS]
    else:
        chosen = precisions.split(",") if precisions else list(backend.precisions)
    unknown = [p for p in chosen if p not in backend.precisions]
    if unknown:
        _fail(
            f"backend {backend_name} has no precision {', '.join(unknown)}; it offers {', '.join(backend.precisions)}"
        )
    unavailable = backend.available(sdk_id)
    if unavailable:
        _fail(f"backend {backend_name} is not available: {unavailable}", 1)
    if corpus_options["corpus"]:
        _corpus(backend, sdk_id, chosen, precisions, as_json, md_file, no_cache, **corpus_options)
        return
    command = " ".join(
        ["zoocompat ops --backend", backend_name]
        + ([f"--sdk {sdk_id}"] if sdk_id else [])
        + ([f"--precisions {precisions}"] if precisions else [])
        + ([f"--ops {op_names}"] if op_names else [])
    )
    try:
        result = ops_table.run_ops(
            backend,
            sdk_id,
            chosen,
            op_names.split(",") if op_names else None,
            progress=lambda line: click.echo(line, err=True),
            use_cache=not no_cache,
        )
    except KeyError as error:
        _fail(f"--ops: no probe or ONNX op named {error.args[0]}; `zoocompat ops --json` lists every probe")
    _emit_table(result, command, md_file, as_json, lambda: ops_table.render_markdown(result, command=command), "probe")


_CORPUS_PRECISIONS = ("fp32", "fp16", "w8a8", "w8a16")


def _emit_table(result: dict, command: str, md_file: Path | None, as_json: bool, render, noun: str) -> None:
    """An ops or corpus table: its command kept, Markdown (``render()``) to ``md_file``, JSON or counts out."""
    result["run"]["command"] = command
    if md_file:
        Path(md_file).write_text(render(), encoding="utf-8")
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    for precision, counts in result["summary"].items():
        click.echo(f"{precision:<6} " + "  ".join(f"{v} {n}" for v, n in counts.items()))
    click.echo(f"{result['run']['results']} {noun} runs in {result['run']['seconds']} s")


def _model_findings(tables: list[dict], changes: dict, files: tuple[Path, ...]) -> list[dict]:
    """The gate's coverage regressions in ``files`` between the two tables' releases, held against the probe
    regressions of their diff ``changes``.
    """
    from zoocompat.gate.agreement import coverage_regressions, explain
    from zoocompat.report.results import load_results

    before, after = tables
    try:
        loaded = [load_results(f) for f in files]
    except (OSError, ValueError, ZoocompatError) as error:
        _fail(f"--results: {error}")
    if len(loaded) == 1:  # one file with both releases' cells
        both = loaded[0]
        loaded = [
            both.model_copy(update={"cells": [c for c in both.cells if c.release == t.get("sdk")]}) for t in tables
        ]
    elif len(loaded) != 2:
        _fail(f"--results takes one file holding both releases' cells, or two files; got {len(loaded)}")
    if not all(r.cells for r in loaded):
        _fail(f"--results: no cells of {before.get('sdk')} and {after.get('sdk')} in {', '.join(map(str, files))}")
    found = coverage_regressions(*loaded)
    found = [f for f in found if f["backend"] == after.get("backend")]
    return explain(changes, found, {**before.get("probes", {}), **after.get("probes", {})})


def _corpus(
    backend, sdk_id, chosen, precisions, as_json, md_file, no_cache, corpus, kinds, select, exclude, probe_file
):
    """`zoocompat ops --corpus`: a peer's test corpus through ``backend``; the table as JSON and/or Markdown."""
    from zoocompat.diagnose import corpus as corpora

    try:
        cases = corpora.cases(corpus, kinds.split(",") if kinds else corpora.KINDS, list(select), list(exclude))
    except ValueError as error:
        _fail(str(error))
    try:
        probe_table = json.loads(probe_file.read_text()) if probe_file else None
    except (ValueError, OSError) as error:
        _fail(f"--probes: {probe_file} is not an `ops --json` table: {error}")
    if probe_table is not None and "ops" not in probe_table:
        _fail(f"--probes: {probe_file} is not an `ops --json` table (no 'ops' key)")
    command = " ".join(
        [f"zoocompat ops --corpus {corpus} --backend", backend.name]
        + ([f"--sdk {sdk_id}"] if sdk_id else [])
        + ([f"--precisions {precisions}"] if precisions else [])
        + ([f"--kinds {kinds}"] if kinds else [])
        + [f"-k {s}" for s in select]
        + [f"--exclude {e}" for e in exclude]
        + ([f"--probes {probe_file}"] if probe_file else [])
    )
    result = corpora.run_corpus(
        backend, sdk_id, chosen, cases, progress=lambda line: click.echo(line, err=True), use_cache=not no_cache
    )
    render = lambda: corpora.render_markdown(result, probe_table, command=command)  # noqa: E731
    _emit_table(result, command, md_file, as_json, render, "corpus")


@main.command()
@click.argument("artifact", type=click.Path(path_type=Path))
@click.option("--encodings", type=click.Path(path_type=Path), default=None, help="default: the .encodings beside it")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--csv", "as_csv", is_flag=True, help="one CSV row per layer")
def inspect(artifact: Path, encodings: Path | None, as_json: bool, as_csv: bool) -> None:
    """Per-layer listing of an ONNX model (FP32 or QDQ) with shapes, parameters and encodings."""
    from zoocompat.report.inspect import inspect_onnx, render_csv, render_text

    try:
        listing = inspect_onnx(artifact, encodings)
    except ZoocompatError as error:
        _fail(str(error))
    if as_json:
        click.echo(json.dumps(listing.to_json(), indent=1))
    elif as_csv:
        click.echo(render_csv(listing), nl=False)
    else:
        click.echo(render_text(listing), nl=False)


@main.command()
@click.argument("model")
@click.option("--precision", default="w8a8", show_default=True, type=click.Choice(["w8a8", "w8a16", "w4a8"]))
@click.option(
    "--technique",
    default="ptq",
    show_default=True,
    help="ptq, tf_enhanced, percentile, cle, adaround, "
    "seqmse, or a '+' combination such as cle+adaround (aimet_onnx); ort offers ptq; "
    "qat: quantization-aware training with the card's qat_quantizer (aimet_torch)",
)
@click.option("--quantizer", "quantizer_name", default=None, help="quantizer plugin (default: the card's)")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="default: quantized/<model>-<precision>-<technique>",
)
@click.option(
    "--input-list",
    type=click.Path(path_type=Path),
    default=None,
    help="SNPE-style input list of float32 .raw files: the calibration data",
)
@click.option(
    "--encodings-override",
    type=click.Path(path_type=Path),
    default=None,
    help="AIMET encodings (0.6.1 / 1.0.0) that replace the computed ones for the tensors they name",
)
@click.option(
    "--encodings-format",
    type=click.Choice(["0.6.1", "1.0.0"]),
    default=None,
    help="layout of the written encodings (default: the quantizer's, 1.0.0 for aimet_onnx)",
)
@click.option("--per-tensor", is_flag=True, help="one weight encoding per tensor instead of per output channel")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def quantize(
    model,
    precision,
    technique,
    quantizer_name,
    out_dir,
    input_list,
    encodings_override,
    encodings_format,
    per_tensor,
    as_json,
) -> None:
    """Convert MODEL (a zoo name or card file), quantize it, score the QDQ model on CPU."""
    from zoocompat.run.quantize import quantize_card

    try:
        result = quantize_card(
            model,
            precision,
            technique,
            out_dir,
            quantizer=quantizer_name,
            input_list=input_list,
            encodings_override=encodings_override,
            encodings_format=encodings_format,
            per_channel=False if per_tensor else None,
        )
    except ZoocompatError as error:
        _fail(str(error), 1)
    if as_json:
        click.echo(json.dumps({k: result[k] for k in ("qdq_onnx", "encodings", "metric")}, indent=1))
        return
    m = result["metric"]
    for step in result["report"].get("steps", []):
        extra = "".join(f" {k}={v}" for k, v in step.items() if k not in ("step", "did", "seconds"))
        click.echo(f"  {step['step']:<10} {step['seconds']:>8.2f} s  {step.get('did', '')}{extra}")
    if "seqmse" in result["report"] and result["report"]["seqmse"].get("note"):
        click.echo(f"  note: {result['report']['seqmse']['note']}")
    click.echo(
        f"{model} {precision} {technique}: {m['name']} {m['value']:.4f} (fp32 {m['fp32']:.4f}, "
        f"drop {m['drop'] * 100:.2f} points)\n  qdq onnx  {result['qdq_onnx']}\n  encodings {result['encodings']}"
    )


@main.command()
@click.argument("model")
@click.option("--allowed-drop", type=float, default=0.01, show_default=True, help="in metric units (0.01 = 1 point)")
@click.option(
    "--precision",
    default="w8a8",
    show_default=True,
    type=click.Choice(["w8a8", "w4a8"]),
    help="base precision; the ladder may move to w8a16",
)
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), default=None, help="default: quantized/<model>-autoquant"
)
@click.option("--input-list", type=click.Path(path_type=Path), default=None, help="calibration data as .raw files")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output (steps still print to stderr)")
def autoquant(model, allowed_drop, precision, out_dir, input_list, as_json) -> None:
    """Climb PTQ -> CLE -> AdaRound -> w8a16 -> QAT until the accuracy drop is allowed."""
    from zoocompat.run.autoquant import auto_quant
    from zoocompat.run.quantize import calibration_samples, find_card, make_runner

    def show(step) -> None:
        value = "" if step.accuracy is None else f"{step.accuracy:.4f} (drop {step.drop * 100:.2f} points)"
        note = f"  {step.note}" if step.note else ""
        click.echo(
            f"  {step.technique:<13} {step.precision:<6} {step.status:<8} {value:<28} {step.seconds:7.1f} s{note}",
            err=as_json,
        )

    try:
        runner = make_runner()
        card = find_card(runner, model)
        samples = calibration_samples(runner, card, input_list) if input_list else None
        click.echo(f"autoquant {card.name}: allowed drop {allowed_drop * 100:.2f} points", err=as_json)
        result = auto_quant(
            card, allowed_drop, runner=runner, out_dir=out_dir, precision=precision, calibration=samples, progress=show
        )
    except ZoocompatError as error:
        _fail(str(error), 1)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=1))
    else:
        chosen = result.chosen
        verdict = "met" if result.met else "NOT met (best step kept)"
        if chosen is None:
            click.echo("no step produced a model")
        else:
            click.echo(
                f"{verdict}: {chosen.technique} {chosen.precision} {result.metric} {chosen.accuracy:.4f} "
                f"(fp32 {result.fp32:.4f})\n  qdq onnx  {result.qdq_onnx}\n  encodings {result.encodings}"
            )
    if not result.met:
        sys.exit(1)


@main.command()
@click.argument("cell_id")
@click.option(
    "--results",
    "results_path",
    type=click.Path(path_type=Path),
    default=Path("reports/latest/results.json"),
    show_default=True,
    help="the results.json holding the cell",
)
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None, help="default: repro/<cell id>")
@click.option("--samples", type=int, default=4, show_default=True, help="evaluation samples in the repro")
@click.option("--no-verify", is_flag=True, help="write the folder without running its script")
@click.option(
    "--problem",
    type=click.Choice(["fallback", "numerics", "crash"]),
    default=None,
    help="which problem to show when a cell has several (default: the cell's failure category)",
)
@click.option("--zoo", "extra", multiple=True, type=click.Path(path_type=Path), help="extra folder of cards")
@click.option(
    "--baseline",
    "baseline",
    default=None,
    help="an installed SDK release without the problem: cut the smallest subgraph that separates the two",
)
def repro(
    cell_id: str, results_path: Path, out_dir: Path | None, samples: int, no_verify: bool, problem, extra, baseline
) -> None:
    """Write the smallest ONNX + inputs + expected outputs + one command that show CELL_ID's problem.

    For a cell that falls back, fails accuracy or fidelity, or crashes; the
    folder's repro.py is run under the cell's SDK to check it reproduces. With
    --baseline SDK, the subgraph is searched so that it shows the problem under
    the cell's release and not under the baseline's, and repro.py is run under both.
    """
    import shutil
    import subprocess

    from zoocompat.diagnose.repro import find_cell, write_repro
    from zoocompat.diagnose.repro_plan import plan_repro
    from zoocompat.report.results import load_results
    from zoocompat.run.matrix import Cell
    from zoocompat.run.quantize import make_runner

    try:
        record = find_cell(load_results(results_path), cell_id)
        out = out_dir or Path("repro") / record.id
        runner = make_runner(extra_zoo=tuple(extra))
        work = out / "_work"
        cell = Cell(record.model, record.frontend, record.backend, record.precision, record.quant, record.sdk)
        if baseline:
            from zoocompat.diagnose.repro_diff import plan_differential
            from zoocompat.sdk.releases import find, not_installed_reason

            if find(baseline) is None:
                _fail(f"--baseline: {not_installed_reason(baseline)}", 1)
            case = plan_differential(runner, cell, record, baseline, samples, work, problem)
        else:
            case = plan_repro(runner, cell, record, samples, work, problem)
        zoo = "".join(f" --zoo {folder}" for folder in extra)
        also = f" --baseline {baseline}" if baseline else ""
        write_repro(case, out, command=f"zoocompat repro {record.id} --results {results_path}{zoo}{also} --out {out}")
        shutil.rmtree(work, ignore_errors=True)
    except ZoocompatError as error:
        _fail(" ".join(str(error).split()), 1)
    except Exception as error:  # a bug in cutting the repro: one line that says so, never a traceback
        said = " ".join(str(error).split())  # onnxruntime's messages span lines
        _fail(
            f"repro of {cell_id} failed while cutting the model: {type(error).__name__}: {said[:600]}; the "
            "cell's record is unchanged; please report this with the record",
            1,
        )
    click.echo(f"wrote {out}: {case.what}")
    if no_verify:
        return
    from zoocompat.sdk.releases import find

    def under(sdk: str | None) -> int:
        env = find(sdk) if case.ep == "qnn" and sdk else None
        done = subprocess.run([env.python if env else sys.executable, str(out / "repro.py")], capture_output=True)
        click.echo(f"--- repro.py under {sdk or 'this environment'}: exit {done.returncode}")
        click.echo((done.stdout + done.stderr).decode(errors="replace").rstrip())
        return done.returncode

    if under(case.sdk) != 0:
        _fail(f"the repro in {out} did not reproduce the problem under {case.sdk}", 1)
    if case.baseline_sdk and under(case.baseline_sdk) == 0:
        _fail(f"the repro in {out} reproduces under the baseline {case.baseline_sdk} too: it separates nothing", 1)


if __name__ == "__main__":
    main()
