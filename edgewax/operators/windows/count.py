"""`window.count`: windows of N events in arrival order, every `hop` events."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from edgewax.operators.base import NodeOptions
from edgewax.operators.registry import register
from edgewax.operators.windows.aggregates import Accumulator, Columns
from edgewax.operators.windows.core import WindowNode, WindowOptions, WindowState
from edgewax.operators.windows.tumbling import MAX_OVERLAP


class CountOptions(WindowOptions):
    size: int = Field(ge=1, description="Events per window (N).")
    hop: int | None = Field(
        None,
        ge=1,
        description="Events between window starts; default `size` (no overlap). Smaller "
        "overlaps windows; larger skips events between windows.",
    )

    @model_validator(mode="after")
    def _overlap(self) -> CountOptions:
        if self.hop is not None and self.size / self.hop > MAX_OVERLAP:
            raise ValueError(f"`size` / `hop` must be at most {MAX_OVERLAP}")
        return self


@register
class CountWindow(WindowNode):
    """Summarise each group's events per window of N events (arrival order, no lateness).

    `window_start` and `window_end` are the least and greatest `ts` in the window; windows not
    full at the end of the stream are emitted then.

    >>> from edgewax.testing import run_node
    >>> events = [{"ts": float(t), "v": t} for t in range(5)]
    >>> for e in run_node("window.count", {"size": 2, "aggregate": {"sum": "v"}}, events):
    ...     print(e["window_start"], e["window_end"], e["count"], e["v_sum"])
    0.0 1.0 2 1.0
    2.0 3.0 2 5.0
    4.0 4.0 1 4.0
    """

    type_name = "window.count"
    Options: ClassVar[type[NodeOptions]] = CountOptions
    uses_time = False

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.size: int = options.size
        self.hop: int = options.hop or options.size
        self.overlap = math.ceil(self.size / self.hop)

    def assign(
        self, state: WindowState, cols: Columns, wm: np.ndarray[Any, Any]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        n = len(cols)
        pos = state.position + np.arange(n, dtype=np.int64)
        state.position += n
        k_last = pos // self.hop
        wids, rows = [], []
        for j in range(self.overlap):
            k = k_last - j
            ok = (k >= 0) & (k * self.hop + self.size > pos)
            wids.append(k[ok])
            rows.append(np.flatnonzero(ok))
        return np.concatenate(wids), np.concatenate(rows), np.zeros(n, dtype=np.bool_)

    def closing_value(self, state: WindowState) -> float:
        return float(state.position)

    def closes_at(self, state: WindowState, wid: int, acc: Accumulator) -> float:
        return float(wid * self.hop + self.size)

    def bounds(self, state: WindowState, wid: int, acc: Accumulator) -> tuple[float, float]:
        return float(acc.ts_min), float(acc.ts_max)
