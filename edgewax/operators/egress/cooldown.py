"""`egress.cooldown`: at most one event per key every N seconds of event time."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from edgewax.config.types import Duration
from edgewax.events import Event
from edgewax.operators.base import NodeOptions
from edgewax.operators.keyed import KeyedOptions, KeyedTransform
from edgewax.operators.registry import register


class CooldownOptions(KeyedOptions):
    seconds: Duration = Field(
        description="Quiet time after a passed event (event time): later events of the same key "
        "within it are dropped as `cooldown`."
    )


@register
class Cooldown(KeyedTransform):
    """Pass an event, then drop that key's events for `seconds` of event time.

    >>> from edgewax.testing import run_node
    >>> events = [{"ts": t} for t in (0, 30, 59.9, 60, 61, 125)]
    >>> [e["ts"] for e in run_node("egress.cooldown", {"seconds": "60s"}, events)]
    [0, 60, 125]
    """

    type_name = "egress.cooldown"
    Options: ClassVar[type[NodeOptions]] = CooldownOptions

    def step(self, state: Any, events: list[Event], prepared: list[Any]) -> tuple[Any, list[Event]]:
        seconds = self.options.seconds
        last = state
        out = []
        for e in events:
            t = e["ts"]
            if last is None or t - last >= seconds:
                out.append(e)
                last = t
        if len(out) != len(events):
            self.ctx.stats.discard("cooldown", len(events) - len(out))
        return last, out
