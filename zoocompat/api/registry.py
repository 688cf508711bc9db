"""The plugin manager: built-in and third-party plugins load the same way.

Every plugin, the built-in ones in ``plugins/`` included, is found through the
``zoocompat`` entry-point group. :class:`Registry` collects what their hooks
return and answers lookups by kind and name, and the matrix's *axes*: the
registered frontends, backends, precisions and quantization modes, each in the
order its plugin declares. The core names none of them.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pluggy

from zoocompat.api import hookspecs
from zoocompat.api.errors import PluginError
from zoocompat.api.protocols import Precision, QuantMode, optional

ENTRY_POINT_GROUP = "zoocompat"
KINDS = ("frontend", "quantizer", "backend", "dataset", "metric", "precision", "quant_mode")
#: The matrix's axes (the names of the results record's fields and of the pytest options) -> plugin kind.
AXES = {"frontend": "frontend", "backend": "backend", "precision": "precision", "quant": "quant_mode"}

SortKey = tuple[int, int, str]


@dataclass
class PluginInfo:
    """One registered plugin object, for ``zoocompat plugins``."""

    kind: str
    name: str
    version: str
    source: str


@dataclass
class Registry:
    """Plugin objects by kind and name, the zoo folders and known-failures files plugins declare."""

    manager: pluggy.PluginManager
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[tuple[str, str], PluginInfo] = field(default_factory=dict)
    zoo_dirs: list = field(default_factory=list)
    known_failures: list[Path] = field(default_factory=list)
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

    # -- axes --------------------------------------------------------------------

    def _axis_table(self, axis: str) -> dict[str, Any]:
        if axis not in AXES:
            raise KeyError(f"{axis!r} is not a matrix axis; axes: {', '.join(AXES)}")
        return self.objects.get(AXES[axis], {})

    def order(self, axis: str, name: str) -> int | None:
        """The declared order of ``name`` on ``axis`` (``"frontend"``, ``"backend"``, ``"precision"``,
        ``"quant"``), or ``None`` when nothing registered here has that name.
        """
        obj = self._axis_table(axis).get(name)
        return None if obj is None else int(optional(obj, "order"))  # records carry theirs; plugins may not

    def sort_key(self, axis: str) -> Callable[[str], SortKey]:
        """A key that sorts names of ``axis`` by declared order, ties by name, and names registered nowhere
        here last, by name (a results file may name a backend or precision this machine does not have).
        """

        def key(name: str) -> SortKey:
            order = self.order(axis, name)
            return (0, order, name) if order is not None else (1, 0, name)

        return key

    def axis(self, axis: str) -> list[str]:
        """The registered names of ``axis`` in their declared order."""
        return sorted(self._axis_table(axis), key=self.sort_key(axis))

    def defaults(self, axis: str) -> list[str]:
        """The names of ``axis`` the matrix runs when its option is not given (``default`` of a precision or
        quantization mode; every frontend and backend), in order.
        """
        table = self._axis_table(axis)
        return [name for name in self.axis(axis) if getattr(table[name], "default", True)]

    def precision(self, name: str) -> Precision:
        """The registered :class:`Precision` called ``name``, or a clear error."""
        return self.get("precision", name)

    def quant_mode(self, name: str) -> QuantMode:
        """The registered :class:`QuantMode` called ``name``, or a clear error."""
        return self.get("quant_mode", name)

    def reference_backends(self) -> list[str]:
        """Names of the backends that declare ``reference = True`` (normally exactly one), in order."""
        return [name for name in self.axis("backend") if optional(self.get("backend", name), "reference")]

    def reference_backend(self) -> str:
        """The one backend that declares ``reference = True``: the host runtime of the FP32 and QDQ references."""
        found = self.reference_backends()
        if len(found) == 1:
            return found[0]
        if not found:
            raise PluginError(
                f"no registered backend declares `reference = True` (registered: "
                f"{', '.join(self.axis('backend')) or 'none'}); the FP32 and QDQ references need one. Install "
                "zoocompat's built-in plugins (the `cpu` backend) or a plugin whose backend is the reference."
            )
        owners = ", ".join(f"{name} ({self.sources[('backend', name)].source})" for name in found)
        raise PluginError(
            f"several backends declare `reference = True`: {owners}; exactly one may. "
            "Uninstall one of them, or set `reference = False` on all but one."
        )


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


def build_registry(extra: Iterable[object] = ()) -> Registry:
    """Load every ``zoocompat`` entry point, then the ``extra`` plugin objects (modules or objects with
    hook implementations, e.g. a test's in-process plugin), and collect what their hooks return.
    """
    manager = pluggy.PluginManager("zoocompat")
    manager.add_hookspecs(hookspecs)
    registry = Registry(manager=manager)
    dists = _load_entry_points(manager, registry)
    for plugin in extra:
        name = manager.register(plugin)
        dists[name] = ("in-process", "unknown")
    hooks = {
        "frontend": manager.hook.zoocompat_frontends,
        "quantizer": manager.hook.zoocompat_quantizers,
        "backend": manager.hook.zoocompat_backends,
        "dataset": manager.hook.zoocompat_datasets,
        "metric": manager.hook.zoocompat_metrics,
        "precision": manager.hook.zoocompat_precisions,
        "quant_mode": manager.hook.zoocompat_quant_modes,
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
    for files in reversed(manager.hook.zoocompat_known_failures()):  # in registration order
        registry.known_failures.extend(Path(f) for f in files)
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
