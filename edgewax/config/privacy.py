"""The privacy lint: raw data (camera frames, raw samples; `FieldInfo.raw`) never reaches a remote
sink unless that sink says `allow_raw: true`.

Raw-ness flows along every path from the node that declares a raw field: through any node that keeps
the field (map, filter, egress, a window's `first`/`last` of it, a window's `late` output) and into
fields computed from it. It stops at a node that is known to remove the field: `drop`, `select`,
`redact`, or a node whose declared output lacks it. Where a node's fields are not known before run
time, a raw field is assumed to pass (the lint errs on the side of the device).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgewax.config.spec import NodeSpec

RawPaths = dict[str, list[str]]
"""Raw field -> one path of node ids (from the node that made it raw) that carries it."""


@dataclass(frozen=True)
class Leak:
    """A remote sink that raw fields can reach."""

    sink: NodeSpec
    fields: RawPaths


def _split(ref: str) -> tuple[str, str | None]:
    node, dot, output = ref.partition(".")
    return node, (output if dot else None)


def _removed(spec: NodeSpec, raw_in: Iterable[str]) -> set[str]:
    """Raw input fields that `spec` is known not to pass on."""
    names = set(raw_in)
    options = spec.options
    if spec.type_name == "drop":
        return names & set(options.fields)
    if spec.type_name == "select":
        return names - {"ts", "key", *options.fields}
    if spec.type_name == "redact":
        return names & set(options.fields)
    if spec.fields is not None:
        return {n for n in names if n not in spec.fields or not spec.fields[n].raw}
    return set()


def raw_fields(nodes: list[NodeSpec]) -> dict[str, RawPaths]:
    """For every node (and named output, e.g. `win.late`): the raw fields its events may carry."""
    out: dict[str, RawPaths] = {}
    raw_in_of: dict[str, RawPaths] = {}
    for spec in nodes:  # topological order
        raw_in: RawPaths = {}
        for ref in spec.inputs:
            for name, path in out.get(ref, {}).items():
                raw_in.setdefault(name, path)
        raw_in_of[spec.id] = raw_in
        if spec.cls.kind == "sink":
            out[spec.id] = raw_in
            continue
        gone = _removed(spec, raw_in)
        mine: RawPaths = {n: [*p, spec.id] for n, p in raw_in.items() if n not in gone}
        for name, info in (spec.fields or {}).items():
            if info.raw and name not in mine:
                origin = next(iter(raw_in.values()), [])
                mine[name] = [*origin, spec.id]
        # A field computed from a raw one is raw too (a copy or a tensor made from it).
        for name, expr in _computed(spec):
            reads = sorted(f for f in expr if f in raw_in)
            if reads and name not in mine:
                mine[name] = [*raw_in[reads[0]], spec.id]
        out[spec.id] = mine
        for name in spec.cls.outputs:
            out[f"{spec.id}.{name}"] = {n: [*p, f"{spec.id}.{name}"] for n, p in raw_in.items()}
    return out


def _computed(spec: NodeSpec) -> list[tuple[str, frozenset[str]]]:
    """Fields a node computes from expressions, with the fields each reads."""
    sets = getattr(spec.options, "set", None)
    if spec.type_name == "map" and isinstance(sets, dict):
        return [(name, e.fields) for name, e in sets.items()]
    # A window's `first` / `last` of a field is that field's value (even where fields are unknown).
    agg = getattr(spec.options, "aggregate", None)
    if spec.type_name.startswith("window.") and agg is not None:
        return [(f"{f}_{op}", frozenset([f])) for op in ("first", "last") for f in getattr(agg, op)]
    return []


def leaks(nodes: list[NodeSpec]) -> list[Leak]:
    """Remote sinks without `allow_raw: true` that raw fields reach."""
    raw = raw_fields(nodes)
    found = []
    for spec in nodes:
        if spec.cls.kind != "sink" or not getattr(spec.cls, "remote", False):
            continue
        if getattr(spec.options, "allow_raw", False):
            continue
        if raw.get(spec.id):
            found.append(Leak(spec, raw[spec.id]))
    return found


def describe(leak: Leak) -> tuple[str, str]:
    """The one-line message and hint for a leak."""
    names = sorted(leak.fields)
    name = names[0]
    path = " -> ".join([*leak.fields[name], leak.sink.id])
    more = f" (and {', '.join(f'`{n}`' for n in names[1:])})" if len(names) > 1 else ""
    message = f"raw field `{name}`{more} reaches remote sink `{leak.sink.id}` via {path}"
    fields = ", ".join(names)
    hint = (
        f"remove it before the sink (`type: drop, fields: [{fields}]`, `select` or `redact`), "
        "or set `allow_raw: true` on the sink if raw data may leave the device"
    )
    return message, hint


def paths_to(nodes: list[NodeSpec], target: str) -> list[list[str]]:
    """Every path from a source to `target`, as node ids (named outputs as `node.output`)."""
    by_id = {n.id: n for n in nodes}

    def walk(ref: str) -> list[list[str]]:
        node_id = _split(ref)[0]
        spec = by_id[node_id]
        if not spec.inputs:
            return [[ref]]
        return [[*p, ref] for inp in spec.inputs for p in walk(inp)]

    return walk(target)
