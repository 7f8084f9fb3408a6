"""`egress.rate_limit`: caps on events per minute, hour and day of event time."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from edgewax.events import Event
from edgewax.operators.base import NodeOptions
from edgewax.operators.keyed import KeyedOptions, KeyedTransform
from edgewax.operators.registry import register

PERIODS = {"per_minute": 60.0, "per_hour": 3600.0, "per_day": 86400.0}


class RateLimitOptions(KeyedOptions):
    per: Literal["key", "all"] = Field(
        "all", description="`all`: the caps hold for all events together; `key`: for each key."
    )
    per_minute: int | None = Field(None, ge=0, description="Most events per minute.")
    per_hour: int | None = Field(None, ge=0, description="Most events per hour.")
    per_day: int | None = Field(None, ge=0, description="Most events per day (UTC days).")

    @model_validator(mode="after")
    def _some(self) -> RateLimitOptions:
        if all(getattr(self, p) is None for p in PERIODS):
            raise ValueError("give at least one of `per_minute`, `per_hour` and `per_day`")
        return self


@register
class RateLimit(KeyedTransform):
    """Pass events while every cap has room in its current (epoch-aligned, event-time) period.

    Events over a cap are dropped as `rate_limit`; the next period starts afresh.

    >>> from edgewax.testing import run_node
    >>> events = [{"ts": t} for t in (0, 10, 20, 30, 60, 70)]
    >>> [e["ts"] for e in run_node("egress.rate_limit", {"per_minute": 2}, events)]
    [0, 10, 60, 70]
    """

    type_name = "egress.rate_limit"
    Options: ClassVar[type[NodeOptions]] = RateLimitOptions
    default_per = "all"

    def step(self, state: Any, events: list[Event], prepared: list[Any]) -> tuple[Any, list[Event]]:
        caps = [
            (name, seconds, getattr(self.options, name))
            for name, seconds in PERIODS.items()
            if getattr(self.options, name) is not None
        ]
        counts: dict[str, list[float]] = state or {name: [-1.0, 0] for name, _, _ in caps}
        out = []
        for e in events:
            t = e["ts"]
            room = True
            for name, seconds, cap in caps:
                c = counts[name]
                period = t // seconds
                if c[0] != period:
                    c[0], c[1] = period, 0
                if c[1] >= cap:
                    room = False
            if room:
                for name, _, _ in caps:
                    counts[name][1] += 1
                out.append(e)
        if len(out) != len(events):
            self.ctx.stats.discard("rate_limit", len(events) - len(out))
        return counts, out
