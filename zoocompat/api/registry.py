"""The plugin manager: built-in and third-party plugins load the same way.

Every plugin, the built-in ones in ``plugins/`` included, is found through the
``zoocompat`` entry-point group. :class:`Registry` collects what their hooks
return and answers lookups by kind and name.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pluggy

from zoocompat.api import hookspecs
from zoocompat.api.errors import PluginError

ENTRY_POINT_GROUP = "zoocompat"
KINDS = ("frontend", "quantizer", "backend", "dataset", "metric")


@dataclass
class PluginInfo:
    """One registered plugin object, for ``zoocompat plugins``."""

    kind: str
    name: str
    version: str
    source: str


@dataclass
class Registry:
    """Plugin objects by kind and name, plus the zoo folders plugins declare."""

    manager: pluggy.PluginManager
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[tuple[str, str], PluginInfo] = field(default_factory=dict)
    zoo_dirs: list = field(default_factory=list)
    broken: list[str] = field(default_factory=list)

    def get(self, kind: str, name: str) -> Any:
        """Return the plugin object of ``kind`` called ``name`` or raise a clear error."""
        table = self.objects.get(kind, {})
        if name not in table:
            known = ", ".join(sorted(table)) or "none"
            raise PluginError(
                f"no {kind} plugin named {name!r}; registered {kind}s: {known}. "
                f"Install the package that provides it, or fix the name."
            )
        return table[name]

    def names(self, kind: str) -> list[str]:
        """Names of the registered plugins of ``kind``, sorted."""
        return sorted(self.objects.get(kind, {}))

    def infos(self) -> list[PluginInfo]:
        """Every registered plugin object, sorted by kind then name."""
        return sorted(self.sources.values(), key=lambda i: (KINDS.index(i.kind), i.name))


def _load_entry_points(manager: pluggy.PluginManager, registry: Registry) -> dict[str, tuple[str, str]]:
    """Register each entry point's module; a broken one is recorded, not fatal."""
    dists: dict[str, tuple[str, str]] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if manager.get_plugin(ep.name) is not None:
            continue
        dist = (ep.dist.metadata["name"], ep.dist.version) if ep.dist else ("unknown", "unknown")
        try:
            module = ep.load()
        except Exception as error:  # a third-party plugin must not take the suite down
            registry.broken.append(f"{ep.name} = {ep.value} ({dist[0]} {dist[1]}): {type(error).__name__}: {error}")
            continue
        manager.register(module, name=ep.name)
        dists[ep.name] = dist
    return dists


def build_registry() -> Registry:
    """Load every ``zoocompat`` entry point and collect what its hooks return."""
    manager = pluggy.PluginManager("zoocompat")
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager=manager)
    dists = _load_entry_points(manager, registry)
    hooks = {
        "frontend": manager.hook.zoocompat_frontends,
        "quantizer": manager.hook.zoocompat_quantizers,
        "backend": manager.hook.zoocompat_backends,
        "dataset": manager.hook.zoocompat_datasets,
        "metric": manager.hook.zoocompat_metrics,
    }
    for kind, hook in hooks.items():
        table: dict[str, Any] = {}
        for impl in hook.get_hookimpls():
            dist, version = dists.get(impl.plugin_name, ("unknown", "unknown"))
            for obj in impl.function() or []:
                if obj.name in table:
                    raise PluginError(
                        f"two {kind} plugins are named {obj.name!r} "
                        f"({registry.sources[(kind, obj.name)].source} and {impl.plugin_name}); "
                        f"uninstall one of them."
                    )
                table[obj.name] = obj
                registry.sources[(kind, obj.name)] = PluginInfo(kind, obj.name, version, f"{dist}:{impl.plugin_name}")
        registry.objects[kind] = table
    for dirs in manager.hook.zoocompat_zoo_dirs():
        registry.zoo_dirs.extend(dirs)
    return registry


@cache
def registry() -> Registry:
    """The process-wide registry, built on first use."""
    return build_registry()


def distribution_version(name: str) -> str | None:
    """Installed version of a distribution, or ``None``; imports nothing."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
