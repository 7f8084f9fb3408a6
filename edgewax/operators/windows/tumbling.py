"""`window.tumbling` and `window.sliding`: fixed windows of event time, aligned to the epoch."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from edgewax.config.types import Duration
from edgewax.operators.base import NodeOptions
from edgewax.operators.registry import register
from edgewax.operators.windows.aggregates import Accumulator, Columns
from edgewax.operators.windows.core import TimeWindowOptions, WindowNode, WindowState

MAX_OVERLAP = 1000
"""Most windows one event may belong to (size / hop): each costs a pass over the batch."""


class TumblingOptions(TimeWindowOptions):
    size: Duration = Field(
        description="Window length, e.g. 60s; windows are aligned to the epoch ([0, 60), [60, "
        "120), ...)."
    )

    @model_validator(mode="after")
    def _positive(self) -> TumblingOptions:
        if self.size <= 0:
            raise ValueError("`size` must be more than 0")
        return self


class SlidingOptions(TumblingOptions):
    hop: Duration = Field(
        description="How far each window starts after the previous one (at most `size`); "
        "an event belongs to about size / hop windows."
    )

    @model_validator(mode="after")
    def _hop(self) -> SlidingOptions:
        if not 0 < self.hop <= self.size:
            raise ValueError("`hop` must be more than 0 and at most `size`")
        if self.size / self.hop > MAX_OVERLAP:
            raise ValueError(f"`size` / `hop` must be at most {MAX_OVERLAP}")
        return self


class _FixedWindows(WindowNode):
    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.size: float = options.size
        self.hop: float = getattr(options, "hop", options.size)
        self.overlap = math.ceil(self.size / self.hop - 1e-9)

    def assign(
        self, state: WindowState, cols: Columns, wm: np.ndarray[Any, Any]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None, np.ndarray[Any, Any]]:
        ts = cols.ts
        hop, size = self.hop, self.size
        k_last = np.floor(ts / hop).astype(np.int64)
        if self.overlap == 1:
            ok = k_last * hop + size > wm
            if bool(ok.all()):
                return k_last, None, ~ok
            return k_last[ok], np.flatnonzero(ok), ~ok
        wids, rows = [], []
        placed = np.zeros(len(ts), dtype=np.bool_)
        for j in range(self.overlap):
            k = k_last - j
            end = k * hop + size
            ok = (end > ts) & (end > wm)
            wids.append(k[ok])
            rows.append(np.flatnonzero(ok))
            placed |= ok
        return np.concatenate(wids), np.concatenate(rows), ~placed

    def bounds(self, state: WindowState, wid: int, acc: Accumulator) -> tuple[float, float]:
        start = wid * self.hop
        return start, start + self.size

    def closes_at(self, state: WindowState, wid: int, acc: Accumulator) -> float:
        return float(wid * self.hop + self.size)


@register
class TumblingWindow(_FixedWindows):
    """Summarise each group's events per fixed, non-overlapping window of event time.

    >>> from edgewax.testing import run_node
    >>> events = [{"ts": t, "temp": 20.0 + t} for t in (0, 30, 59, 60, 61)]
    >>> for e in run_node("window.tumbling",
    ...                   {"size": "60s", "aggregate": {"mean": "temp", "max": "temp"}}, events):
    ...     print(e["window_start"], e["window_end"], e["count"], e["temp_mean"], e["temp_max"])
    0.0 60.0 3 49.666... 79.0
    60.0 120.0 2 80.5 81.0
    """

    type_name = "window.tumbling"
    Options: ClassVar[type[NodeOptions]] = TumblingOptions


@register
class SlidingWindow(_FixedWindows):
    """Summarise each group's events per overlapping window of event time (`size`, every `hop`).

    >>> from edgewax.testing import run_node
    >>> events = [{"ts": t} for t in (0, 5, 12)]
    >>> for e in run_node("window.sliding", {"size": 10, "hop": 5}, events):
    ...     print(e["window_start"], e["window_end"], e["count"])
    -5.0 5.0 1
    0.0 10.0 2
    5.0 15.0 2
    10.0 20.0 1
    """

    type_name = "window.sliding"
    Options: ClassVar[type[NodeOptions]] = SlidingOptions
