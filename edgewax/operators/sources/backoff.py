"""Reconnect policy shared by live sources (cameras, MQTT): exponential backoff with jitter.

>>> b = Backoff(ReconnectOptions(initial=1, max=8, jitter=0), seed=1)
>>> [b.next() for _ in range(5)]
[1.0, 2.0, 4.0, 8.0, 8.0]
>>> b.reset(); b.next()
1.0
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field

from edgewax.config.types import Duration


class ReconnectOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="Reconnect when the source drops or cannot be opened.")
    initial: Duration = Field(0.5, description="First wait before reconnecting (e.g. 500ms).")
    max: Duration = Field(30.0, description="Longest wait between attempts; waits double up to it.")
    jitter: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Random spread of each wait, as a fraction (0.2: +-20%), so a fleet of "
        "devices does not reconnect in lockstep.",
    )


class Backoff:
    """Waits of initial, 2x, 4x ... up to max, each spread by +-jitter; `reset()` after success."""

    def __init__(self, options: ReconnectOptions, seed: int | None = None) -> None:
        self.options = options
        self.attempt = 0
        self._rng = random.Random(seed)

    def next(self) -> float:
        o = self.options
        wait = min(o.initial * (2.0**self.attempt), o.max)
        self.attempt += 1
        if o.jitter:
            wait *= 1.0 + self._rng.uniform(-o.jitter, o.jitter)
        return float(wait)

    def reset(self) -> None:
        self.attempt = 0
