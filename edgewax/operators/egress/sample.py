"""`egress.sample`: keep every Nth event, a seeded random share, or at most M per interval."""

from __future__ import annotations

import random
from typing import Any, ClassVar

from pydantic import Field, model_validator

from edgewax.config.types import Duration
from edgewax.events import Event
from edgewax.operators.base import NodeOptions
from edgewax.operators.keyed import KeyedOptions, KeyedTransform
from edgewax.operators.registry import register


class SampleOptions(KeyedOptions):
    every: int | None = Field(None, ge=1, description="Keep the 1st, N+1th, 2N+1th, ... event.")
    probability: float | None = Field(
        None, ge=0, le=1, description="Keep each event with this probability."
    )
    seed: int = Field(0, description="Seed of the random draws (with `probability`).")
    max: int | None = Field(
        None, ge=0, description="Keep at most this many events per `interval` of event time."
    )
    interval: Duration = Field(
        60.0, description="Interval for `max`; intervals are aligned to the epoch."
    )

    @model_validator(mode="after")
    def _one(self) -> SampleOptions:
        given = [n for n in ("every", "probability", "max") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of `every`, `probability` and `max`")
        if self.max is not None and self.interval <= 0:
            raise ValueError("`interval` must be more than 0")
        return self


@register
class Sample(KeyedTransform):
    """Keep a sample of the events: every Nth, with a probability, or at most M per interval.

    Draws are seeded per key, so a replay keeps the same events; dropped ones count as `sampled`.

    >>> from edgewax.testing import run_node
    >>> [e["i"] for e in run_node("egress.sample", {"every": 3}, [{"i": i} for i in range(7)])]
    [0, 3, 6]
    >>> events = [{"ts": t, "i": t} for t in (0, 1, 2, 60, 61)]
    >>> [e["i"] for e in run_node("egress.sample", {"max": 2, "interval": 60}, events)]
    [0, 1, 60, 61]
    """

    type_name = "egress.sample"
    Options: ClassVar[type[NodeOptions]] = SampleOptions

    def step(self, state: Any, events: list[Event], prepared: list[Any]) -> tuple[Any, list[Event]]:
        o = self.options
        out: list[Event] = []
        if o.every is not None:
            n = state or 0
            for e in events:
                if n % o.every == 0:
                    out.append(e)
                n += 1
            state = n % o.every
        elif o.probability is not None:
            rng = state or random.Random(f"{o.seed}:{events[0]['key']}")
            out = [e for e in events if rng.random() < o.probability]
            state = rng
        else:
            interval, count = state or (None, 0)
            for e in events:
                current = e["ts"] // o.interval
                if current != interval:
                    interval, count = current, 0
                if count < o.max:
                    out.append(e)
                    count += 1
            state = (interval, count)
        if len(out) != len(events):
            self.ctx.stats.discard("sampled", len(events) - len(out))
        return state, out
