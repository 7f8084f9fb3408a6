"""`egress.deadband`: report by exception, passing an event only when a value moved enough."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator

from edgewax.events import Event
from edgewax.operators.base import Fields, NodeOptions, Problem
from edgewax.operators.keyed import KeyedOptions, KeyedTransform
from edgewax.operators.registry import register


class DeadbandOptions(KeyedOptions):
    fields: list[str] = Field(min_length=1, description="Numeric fields to watch.")
    absolute: float | None = Field(
        None, ge=0, description="Pass when a field changed by at least this much."
    )
    percent: float | None = Field(
        None,
        ge=0,
        description="Pass when a field changed by at least this percent of its last passed value.",
    )

    @model_validator(mode="after")
    def _one(self) -> DeadbandOptions:
        if (self.absolute is None) == (self.percent is None):
            raise ValueError("give exactly one of `absolute` and `percent`")
        return self


@register
class Deadband(KeyedTransform):
    """Pass an event only when one of `fields` moved beyond the deadband since the last one passed.

    The first event of each key passes; the rest are counted as `deadband` discards.

    >>> from edgewax.testing import run_node
    >>> events = [{"t": v} for v in (20.0, 20.2, 20.6, 20.4, 21.2)]
    >>> [e["t"] for e in run_node("egress.deadband", {"fields": ["t"], "absolute": 0.5}, events)]
    [20.0, 20.6, 21.2]
    """

    type_name = "egress.deadband"
    Options: ClassVar[type[NodeOptions]] = DeadbandOptions

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        from edgewax.operators.transforms.fields import _unknown_fields

        refs = [(("fields", i), f) for i, f in enumerate(options.fields)]
        return _unknown_fields(refs, fields_in, "unknown field")

    def prepare(self, event: Event) -> Any:
        return [float(event[f]) for f in self.options.fields]

    def step(self, state: Any, events: list[Event], prepared: list[Any]) -> tuple[Any, list[Event]]:
        absolute, percent = self.options.absolute, self.options.percent
        out = []
        last = state
        for e, values in zip(events, prepared):
            if last is None:
                passed = True
            elif absolute is not None:
                passed = any(abs(v - o) >= absolute for v, o in zip(values, last))
            else:
                passed = any(abs(v - o) >= abs(o) * percent / 100 for v, o in zip(values, last))
            if passed:
                out.append(e)
                last = values
        if len(out) != len(events):
            self.ctx.stats.discard("deadband", len(events) - len(out))
        return last, out
