"""`window.session`: a group's events until a silence of `gap`; closed sessions leave no state."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import Field, model_validator

from edgewax.config.types import Duration
from edgewax.operators.base import NodeOptions
from edgewax.operators.registry import register
from edgewax.operators.windows.aggregates import Accumulator, Columns
from edgewax.operators.windows.core import TimeWindowOptions, WindowNode, WindowState


class SessionOptions(TimeWindowOptions):
    gap: Duration = Field(
        description="Silence (in event time) that ends a session: events less than `gap` apart "
        "are in the same session."
    )

    @model_validator(mode="after")
    def _positive(self) -> SessionOptions:
        if self.gap <= 0:
            raise ValueError("`gap` must be more than 0")
        return self


@register
class SessionWindow(WindowNode):
    """Summarise each group's bursts of activity: a session ends after `gap` without events.

    `window_start`/`window_end` are the first and last event times of the session. A session is
    removed from the group's state as soon as it is emitted (Bytewax's own `SessionWindower` keeps
    closed sessions, upstream issue #577); with `clock: system` a group with no open session keeps
    nothing at all.

    >>> from edgewax.testing import run_node
    >>> events = [{"ts": t} for t in (0, 2, 3, 20, 21)]
    >>> for e in run_node("window.session", {"gap": "5s"}, events):
    ...     print(e["window_start"], e["window_end"], e["count"])
    0.0 3.0 3
    20.0 21.0 2
    """

    type_name = "window.session"
    Options: ClassVar[type[NodeOptions]] = SessionOptions

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.gap: float = options.gap

    def assign(
        self, state: WindowState, cols: Columns, wm: np.ndarray[Any, Any]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        # Sessions merge and split event by event, so this pass is a loop over times only; the
        # aggregates after it are vectorised like every window's.
        gap = self.gap
        spans = {sid: [acc.ts_min, acc.ts_max] for sid, acc in state.windows.items()}
        parent: dict[int, int] = {}
        n = len(cols)
        assigned = np.full(n, -1, dtype=np.int64)
        late = np.zeros(n, dtype=np.bool_)
        for i, (t, w) in enumerate(zip(cols.ts.tolist(), wm.tolist())):
            hits = [
                sid for sid, (lo, hi) in spans.items() if lo - gap < t < hi + gap and hi + gap > w
            ]
            if not hits:
                if t + gap <= w:
                    late[i] = True
                    continue
                sid = state.next_id
                state.next_id += 1
                spans[sid] = [t, t]
                assigned[i] = sid
                continue
            root = min(hits)
            span = spans[root]
            for other in hits:
                if other == root:
                    continue
                lo, hi = spans.pop(other)
                span[0], span[1] = min(span[0], lo), max(span[1], hi)
                parent[other] = root
                acc = state.windows.pop(other, None)
                if acc is not None:
                    state.windows.setdefault(root, Accumulator(self.agg)).merge(acc)
            span[0], span[1] = min(span[0], t), max(span[1], t)
            assigned[i] = root

        def find(sid: int) -> int:
            while sid in parent:
                sid = parent[sid]
            return sid

        rows = np.flatnonzero(~late)
        wids = np.array([find(s) for s in assigned[rows].tolist()], dtype=np.int64)
        return wids, rows, late

    def closes_at(self, state: WindowState, wid: int, acc: Accumulator) -> float:
        return float(acc.ts_max + self.gap)

    def bounds(self, state: WindowState, wid: int, acc: Accumulator) -> tuple[float, float]:
        return float(acc.ts_min), float(acc.ts_max)
