"""The published results are the default matrix (issue: a newcomer's ``./run.sh matrix`` meets no cell the docs hide).

``docs/results-latest.json`` must hold a record for every cell ``./run.sh matrix`` runs on the default zoo, on
the release this environment installs, plus the older release's accelerator columns the gate compares; and the
published tables must be what ``zoocompat table`` renders from it. When a card, a backend's precisions or the
pinned SDK changes, these fail until the docs are regenerated (the commands are in ``docs/support-table.md``).
"""

from __future__ import annotations

from tests.conftest import DATA
from zoocompat.api.registry import registry
from zoocompat.model.cards import discover
from zoocompat.report.results import load_results
from zoocompat.report.table import render_markdown
from zoocompat.run.matrix import Selection, matrix_cells, sdk_backends
from zoocompat.sdk.releases import current_env

DOCS = DATA.parent.parent / "docs"
#: The older release whose accelerator w8a8 columns the published gate (docs/gate-qnn-2.47-to-2.51.md) compares.
GATE_BEFORE = "qnn-2.47"


def _published():
    return load_results(DOCS / "results-latest.json")


def _default_matrix():
    cards, errors = discover(list(registry().zoo_dirs))
    assert errors == [], "the default zoo loads"
    return cards, matrix_cells(cards.values(), Selection())


def _key(model: str, frontend: str, backend: str, precision: str, quant: str, sdk: str | None) -> tuple:
    return (model, frontend, backend, precision, quant, sdk)


def _published_keys() -> set[tuple]:
    return {_key(c.model, c.frontend, c.backend, c.precision, c.quant, c.release) for c in _published().cells}


def test_results_latest_holds_every_cell_of_the_default_matrix_on_the_installed_release():
    current = current_env()
    assert current is not None, "the environment installs a QNN release (onnxruntime-qnn)"
    _, cells = _default_matrix()
    bound = set(sdk_backends())
    have = _published_keys()
    missing = [
        cell.id
        for cell in cells
        if _key(
            cell.model,
            cell.frontend,
            cell.backend,
            cell.precision,
            cell.quant,
            current.id if cell.backend in bound else None,
        )
        not in have
    ]
    assert len(cells) >= 100, "the default matrix is the full zoo x every default column"
    assert missing == [], (
        f"docs/results-latest.json lacks {len(missing)} of the {len(cells)} cells ./run.sh matrix runs "
        f"(on {current.id}), e.g. {missing[:5]}: regenerate it (docs/support-table.md says how)"
    )


def test_results_latest_holds_the_older_releases_gate_columns_for_every_default_model():
    cards, cells = _default_matrix()
    have = _published_keys()
    bound = set(sdk_backends())
    gate = [c for c in cells if c.backend in bound and c.precision == "w8a8" and c.quant == "ptq"]
    assert {c.backend for c in gate} >= {"htp", "dsp"}
    missing = [
        f"{c.id}-{GATE_BEFORE}"
        for c in gate
        if _key(c.model, c.frontend, c.backend, c.precision, c.quant, GATE_BEFORE) not in have
    ]
    assert missing == [], f"docs/results-latest.json lacks the {GATE_BEFORE} gate columns {missing[:5]}"


def test_results_latest_holds_no_model_the_default_zoo_dropped():
    cards, _ = _default_matrix()
    stale = sorted({c.model for c in _published().cells} - set(cards))
    assert stale == [], f"docs/results-latest.json holds models the default zoo no longer has: {stale}"


def test_the_published_support_table_is_rendered_from_results_latest():
    published = (DOCS / "support-table.md").read_text()
    rendered = render_markdown(_published()).strip() in published
    assert rendered, (
        "docs/support-table.md is not what `zoocompat table docs/results-latest.json` renders: re-render it"
    )
