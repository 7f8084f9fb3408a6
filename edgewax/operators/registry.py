"""The node types by name: the built-in ones, and plug-ins from the `edgewax.nodes` entry points.

A plug-in package declares, in its `pyproject.toml`:

    [project.entry-points."edgewax.nodes"]
    "acme.threshold" = "acme_nodes:Threshold"

where `Threshold` subclasses `edgewax.operators.base.Source`, `Transform` or `Sink`. The entry
point's name is the node's `type:`.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from importlib.metadata import entry_points
from typing import TypeVar

from edgewax.operators.base import Node, Sink, Source, Transform

log = logging.getLogger("edgewax.registry")

ENTRY_POINT_GROUP = "edgewax.nodes"

_BUILTIN_ROOT = "edgewax.operators"
"""Every module in a family folder under here (sources, inference, windows, egress, sinks, ...) is
imported on first use, so a new built-in node type needs only its module and `@register`. Such
modules import optional dependencies (OpenCV, paho) inside the node, never at module level, so
that `edgewax validate` works without the extras installed."""


def _builtin_modules() -> list[str]:
    root = importlib.import_module(_BUILTIN_ROOT)
    return sorted(
        info.name
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{_BUILTIN_ROOT}.")
        if info.name.count(".") >= 3  # modules inside a family folder, not base / registry
    )


_REGISTRY: dict[str, type[Node]] = {}
_PLUGIN_FAILURES: dict[str, str] = {}
_loaded = False

N = TypeVar("N", bound=type[Node])


def register(cls: N) -> N:
    """Class decorator: make a node type known under its `type_name`."""
    name = cls.type_name
    if not name:
        raise TypeError(f"{cls.__name__} has no type_name")
    other = _REGISTRY.get(name)
    if other is not None and other is not cls:
        raise TypeError(f"node type `{name}` is defined twice: {other} and {cls}")
    _REGISTRY[name] = cls
    return cls


def _load_plugins() -> None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = ep.load()
            if not (isinstance(cls, type) and issubclass(cls, (Source, Transform, Sink))):
                raise TypeError("not a subclass of edgewax Source, Transform or Sink")
            if ep.name in _REGISTRY and _REGISTRY[ep.name] is not cls:
                raise TypeError(f"the type name `{ep.name}` is already taken")
            cls.type_name = ep.name
            _REGISTRY[ep.name] = cls
        except Exception as e:
            _PLUGIN_FAILURES[ep.name] = f"{ep.value}: {type(e).__name__}: {e}"
            log.warning("node plug-in `%s` (%s) failed to load: %s", ep.name, ep.value, e)


def node_types() -> dict[str, type[Node]]:
    """Every known node type by name (loads built-ins and plug-ins on first use)."""
    global _loaded
    if not _loaded:
        for module in _builtin_modules():
            importlib.import_module(module)
        _load_plugins()
        _loaded = True
    return dict(sorted(_REGISTRY.items()))


def plugin_failure(name: str) -> str | None:
    """Why the plug-in that would provide `name` did not load, if one failed."""
    node_types()
    return _PLUGIN_FAILURES.get(name)
