"""zoocompat: a model-zoo compatibility suite for Snapdragon-class NPU SDKs.

The core (this package) imports no ML framework; frameworks live in plugins.
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("zoocompat")
"""Marker for plugin hook implementations: ``@zoocompat.hookimpl``."""

__all__ = ["__version__", "hookimpl"]
