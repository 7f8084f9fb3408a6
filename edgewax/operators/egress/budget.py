"""`egress.budget`: a byte budget per period on what leaves; low priorities are shed first."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator

from edgewax.config.types import ByteSize, Duration
from edgewax.events import Event, encode
from edgewax.operators.base import Fields, NodeOptions, Problem
from edgewax.operators.keyed import KeyedTransform
from edgewax.operators.registry import register
from edgewax.operators.transforms.expressions import ExpressionField


class BudgetOptions(NodeOptions):
    bytes: ByteSize = Field(
        description="Bytes (of the events' compact JSON) that may pass per period, e.g. 5MB."
    )
    period: Duration = Field(
        86400.0, description="Budget period in event time, aligned to the epoch (default 1d)."
    )
    priority: ExpressionField | None = Field(
        None,
        description="Field or expression giving an event's priority (an integer, higher is more "
        "important); default: every event has priority 0.",
    )
    critical: ExpressionField | None = Field(
        None,
        description="Condition for events that always pass (their bytes still count against "
        "the budget), e.g. \"severity == 'critical'\".",
    )
    shares: dict[int, float] = Field(
        {0: 0.5, 1: 0.8, 2: 1.0},
        description="Priority -> share of the period's bytes that events of that priority may "
        "use up to; a priority between listed ones uses the next lower one's share, below the "
        "lowest the lowest's. So low priorities stop first and leave room for higher ones.",
    )

    @model_validator(mode="after")
    def _shares(self) -> BudgetOptions:
        if not self.shares or any(not 0 <= s <= 1 for s in self.shares.values()):
            raise ValueError("`shares` must map priorities to fractions between 0 and 1")
        if self.period <= 0:
            raise ValueError("`period` must be more than 0")
        return self


@register
class Budget(KeyedTransform):
    """Pass events while the period's byte budget allows; shed lower priorities first.

    The size of an event is that of its compact JSON (`edgewax.events.encode`). Shed events are
    counted as `budget` discards and in `edgewax_egress_shed_events{priority}` and
    `edgewax_egress_shed_bytes{priority}`.

    >>> from edgewax.testing import run_node
    >>> events = [{"ts": t, "p": p} for t, p in [(0, 0), (1, 0), (2, 1), (3, 2), (4, 0)]]
    >>> out = run_node("egress.budget", {"bytes": 90, "priority": "p", "period": "1h"}, events)
    >>> [(e["ts"], e["p"]) for e in out]
    [(0, 0), (2, 1), (3, 2)]
    """

    type_name = "egress.budget"
    Options: ClassVar[type[NodeOptions]] = BudgetOptions
    default_per = "all"

    def __init__(self, options: BudgetOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.levels = sorted(options.shares.items())
        self._shed: dict[int, tuple[Any, Any]] = {}

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        from edgewax.operators.transforms.fields import _unknown_fields

        refs = [
            ((name,), f)
            for name in ("priority", "critical")
            if getattr(options, name) is not None
            for f in sorted(getattr(options, name).fields)
        ]
        return _unknown_fields(refs, fields_in, "expression reads unknown field")

    def share(self, priority: int) -> float:
        share = self.levels[0][1]
        for level, s in self.levels:
            if priority >= level:
                share = s
        return share

    def prepare(self, event: Event) -> Any:
        o = self.options
        size = len(encode(event).encode("utf-8"))
        priority = int(o.priority.fn(event)) if o.priority is not None else 0
        critical = bool(o.critical.fn(event)) if o.critical is not None else False
        return size, priority, critical

    def _count_shed(self, priority: int, size: int) -> None:
        pair = self._shed.get(priority)
        if pair is None:
            stats = self.ctx.stats
            pair = (
                stats.counter(
                    "edgewax_egress_shed_events",
                    "Events a budget shed, by priority.",
                    priority=str(priority),
                ),
                stats.counter(
                    "edgewax_egress_shed_bytes",
                    "Bytes of the events a budget shed, by priority.",
                    priority=str(priority),
                ),
            )
            self._shed[priority] = pair
        pair[0].inc()
        pair[1].inc(size)

    def step(self, state: Any, events: list[Event], prepared: list[Any]) -> tuple[Any, list[Event]]:
        budget, seconds = self.options.bytes, self.options.period
        period, used = state or (None, 0)
        out = []
        for e, (size, priority, critical) in zip(events, prepared):
            current = e["ts"] // seconds
            if current != period:
                period, used = current, 0
            if critical or used + size <= budget * self.share(priority):
                used += size
                out.append(e)
            else:
                self._count_shed(priority, size)
        if len(out) != len(events):
            self.ctx.stats.discard("budget", len(events) - len(out))
        return (period, used), out
