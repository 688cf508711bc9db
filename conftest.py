"""Repo-root pytest wiring: the zoocompat pytest plugin serves conformance/ and tests/.

An installed zoocompat registers it through its ``pytest11`` entry point; this
checkout names it only when that entry point is not loaded (not installed, or
``PYTEST_DISABLE_PLUGIN_AUTOLOAD`` set), so it is never registered twice.
"""

import importlib.metadata
import os

_autoloaded = not os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD") and any(
    ep.name == "zoocompat" for ep in importlib.metadata.entry_points(group="pytest11")
)
# Only defined when needed: pytest refuses `pytest_plugins` in a conftest it meets below the rootdir, as when
# `pytest -p zoocompat --zoo DIR` run elsewhere collects the shipped matrix from this (editable) checkout.
if not _autoloaded:
    pytest_plugins = ["zoocompat.pytest_plugin.plugin"]
