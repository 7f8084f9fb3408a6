"""Field-level nodes: `map` computes fields, `filter` keeps events, `select` and `drop` trim them.

Expressions (see `edgewax.operators.transforms.expressions`) are compiled once when the config is
validated; a field they read that no upstream node produces is a validate-time error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from edgewax.config.diagnostics import did_you_mean
from edgewax.events import Event
from edgewax.operators.base import FieldInfo, Fields, NodeOptions, Problem, Transform
from edgewax.operators.registry import register
from edgewax.operators.transforms.expressions import ExpressionField

PROTECTED = ("ts", "key")


def _unknown_fields(
    names: Sequence[tuple[tuple[str | int, ...], str]], fields_in: Fields, what: str
) -> list[Problem]:
    """Problems for each referenced name that the upstream events are known not to carry."""
    if fields_in is None:
        return []
    problems = []
    for loc, name in names:
        if name not in fields_in:
            hint = did_you_mean(name, fields_in) or f"known fields: {', '.join(sorted(fields_in))}"
            problems.append(Problem(loc, f"{what} `{name}`", hint))
    return problems


class MapOptions(NodeOptions):
    set: dict[str, ExpressionField] = Field(
        min_length=1,
        description="Fields to compute: name -> expression. All expressions see the event as it "
        "came in (they are evaluated together), so chain two `map` nodes to use a new field.",
    )


@register
class Map(Transform):
    """Compute or overwrite fields from expressions.

    >>> from edgewax.testing import run_node
    >>> run_node("map", {"set": {"temp_f": "round(temp * 9 / 5 + 32, 1)"}}, [{"temp": 21.5}])
    [{'ts': 0.0, 'key': 'k', 'temp': 21.5, 'temp_f': 70.7}]
    """

    type_name = "map"
    Options: ClassVar[type[NodeOptions]] = MapOptions

    def __init__(self, options: MapOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.exprs = [(name, expr.fn) for name, expr in options.set.items()]

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        if fields_in is None:
            return None
        return {**fields_in, **{name: FieldInfo() for name in options.set}}

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        refs = [(("set", out), name) for out, e in options.set.items() for name in sorted(e.fields)]
        return _unknown_fields(refs, fields_in, "expression reads unknown field")

    def process(self, batch: list[Event]) -> list[Event]:
        # Evaluate everything before changing anything, so a failure leaves the batch untouched.
        columns = [(name, [fn(e) for e in batch]) for name, fn in self.exprs]
        if self.ctx.shared_input:
            batch = [dict(e) for e in batch]
        for name, column in columns:
            for e, value in zip(batch, column):
                e[name] = value
        return batch


class FilterOptions(NodeOptions):
    where: ExpressionField = Field(
        description="Condition an event must meet to pass, e.g. "
        "\"temperature > 70 and key != 'test'\"."
    )


@register
class Filter(Transform):
    """Keep the events for which `where` is true; the rest are counted as `filtered`.

    >>> from edgewax.testing import run_node
    >>> run_node("filter", {"where": "x > 1"}, [{"x": 1}, {"x": 2}])
    [{'ts': 0.0, 'key': 'k', 'x': 2}]
    """

    type_name = "filter"
    Options: ClassVar[type[NodeOptions]] = FilterOptions

    def __init__(self, options: FilterOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.pred = options.where.fn

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        refs = [(("where",), name) for name in sorted(options.where.fields)]
        return _unknown_fields(refs, fields_in, "expression reads unknown field")

    def process(self, batch: list[Event]) -> list[Event]:
        pred = self.pred
        out = [e for e in batch if pred(e)]
        if len(out) != len(batch):
            self.ctx.stats.discard("filtered", len(batch) - len(out))
        return out


class FieldListOptions(NodeOptions):
    fields: list[str] = Field(min_length=1, description="Field names.")


class SelectOptions(FieldListOptions):
    fields: list[str] = Field(
        min_length=1,
        description="Fields to keep; `ts` and `key` are always kept. Missing fields are skipped.",
    )


class _FieldListTransform(Transform):
    """Shared by nodes whose option `fields` names fields of their input."""

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        refs = [(("fields", i), name) for i, name in enumerate(options.fields)]
        return _unknown_fields(refs, fields_in, "unknown field")


@register
class Select(_FieldListTransform):
    """Keep only the listed fields (plus `ts` and `key`), e.g. before data leaves the device.

    >>> from edgewax.testing import run_node
    >>> run_node("select", {"fields": ["a"]}, [{"a": 1, "secret": 2}])
    [{'ts': 0.0, 'key': 'k', 'a': 1}]
    """

    type_name = "select"
    Options: ClassVar[type[NodeOptions]] = SelectOptions

    def __init__(self, options: SelectOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.keep = tuple(dict.fromkeys([*PROTECTED, *options.fields]))

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        keep = [*PROTECTED, *options.fields]
        if fields_in is None:
            return None
        return {name: fields_in[name] for name in keep if name in fields_in}

    def process(self, batch: list[Event]) -> list[Event]:
        keep = self.keep
        return [{k: e[k] for k in keep if k in e} for e in batch]


class DropOptions(FieldListOptions):
    fields: list[str] = Field(
        min_length=1, description="Fields to remove; `ts` and `key` cannot be dropped."
    )

    @field_validator("fields")
    @classmethod
    def _not_protected(cls, fields: list[str]) -> list[str]:
        for name in fields:
            if name in PROTECTED:
                raise ValueError(f"`{name}` cannot be dropped: every event has `ts` and `key`")
        return fields


@register
class Drop(_FieldListTransform):
    """Remove the listed fields (absent ones are ignored), e.g. raw data that must stay local.

    >>> from edgewax.testing import run_node
    >>> run_node("drop", {"fields": ["frame"]}, [{"frame": [1, 2], "n": 1}])
    [{'ts': 0.0, 'key': 'k', 'n': 1}]
    """

    type_name = "drop"
    Options: ClassVar[type[NodeOptions]] = DropOptions

    def __init__(self, options: DropOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.drop = frozenset(options.fields)

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        if fields_in is None:
            return None
        return {k: v for k, v in fields_in.items() if k not in options.fields}

    def process(self, batch: list[Event]) -> list[Event]:
        drop = self.drop
        if self.ctx.shared_input:
            return [{k: v for k, v in e.items() if k not in drop} for e in batch]
        for e in batch:
            for name in drop:
                e.pop(name, None)
        return batch


__all__ = ["Drop", "Filter", "Map", "Select"]
