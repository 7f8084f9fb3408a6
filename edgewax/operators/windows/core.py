"""The window primitive every `window.*` node is a thin composition of.

Three Bytewax steps: a stateless `flat_map_batch` splits each batch by key into numpy `Columns`
(one item per key per batch, not per event, so Bytewax routes little), a `stateful_batch` keeps each
key's open windows, and two `flat_map_batch` steps split its output into the summaries and the
`late` output (`inputs: [win.late]`).

Time is the data's: a key's watermark is the greatest `ts` it has seen minus `allowed_lateness`, so
a replay gives the same windows on every run whatever the pace or the batching (Bytewax's
`EventClock` moves its watermark with the wall clock). A window closes when the watermark passes
its end; an event whose every window has closed is late: it goes to the `late` output, counted in
`edgewax_window_late_events` and as a `late` discard. `clock: system` takes the watermark from the
wall clock instead, for live sources, so windows close without new data (Bytewax's `notify_at`).
Windows still open at the end of the stream are emitted then.
"""

from __future__ import annotations

import copy
import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Literal

import bytewax.operators as op
import numpy as np
from bytewax.dataflow import Stream
from pydantic import Field

from edgewax.config.types import Duration
from edgewax.events import Event
from edgewax.operators.base import (
    BASE_FIELDS,
    FieldInfo,
    Fields,
    NodeOptions,
    Problem,
    Transform,
    failure_reason,
)
from edgewax.operators.windows.aggregates import Accumulator, Aggregate, Columns, summary


class WindowOptions(NodeOptions):
    by: list[str] = Field(
        ["key"],
        min_length=1,
        description="Fields whose values together pick a window's group; default: the event's "
        "`key`. Each summary carries them, and `key` is their values joined by `|`.",
    )
    aggregate: Aggregate = Field(
        default_factory=Aggregate,
        description='What each window\'s summary holds: `count: "*"` (default on); '
        "`sum`, `mean`, `min`, `max`, `std`, `p50`, `p90`, `p99`, `first`, `last`: a field or a "
        "list of fields, each giving `<field>_<op>`; `top_k: {field: k}` giving `<field>_top`; "
        "`histogram: field` giving `<field>_histogram`; `any` / `all`: `{name: condition}`.",
    )


class TimeWindowOptions(WindowOptions):
    allowed_lateness: Duration = Field(
        0.0,
        description="How far behind the newest event time of its group an event may arrive and "
        "still count; later events go to the `late` output.",
    )
    clock: Literal["data", "system"] = Field(
        "data",
        description="`data`: time advances with the events' `ts` (replays are deterministic; "
        "a group's last windows close at the end of the stream). `system`: the wall clock, for "
        "live sources, so windows close on time even when no new events come.",
    )


@dataclass
class WindowState:
    """One group's state: its newest event time, open windows and type-specific extras."""

    max_ts: float = -np.inf
    windows: dict[int, Accumulator] = field(default_factory=dict)
    by: dict[str, Any] = field(default_factory=dict)
    position: int = 0
    """Events seen (count windows)."""
    next_id: int = 0
    """Next session id (session windows)."""


class WindowNode(Transform):
    """Base of the `window.*` node types: subclasses say how events map to windows."""

    order_sensitive: ClassVar[bool] = True

    outputs: ClassVar[tuple[str, ...]] = ("late",)
    """Extra outputs other nodes may read as `inputs: [<id>.late]`."""
    uses_time: ClassVar[bool] = True

    def __init__(self, options: Any, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.agg: Aggregate = options.aggregate
        self.by: list[str] = list(options.by)
        self.lateness: float = getattr(options, "allowed_lateness", 0.0)
        self.system_clock = getattr(options, "clock", "data") == "system"
        self.late_counter = ctx.stats.counter(
            "edgewax_window_late_events",
            "Events that came after every window they belong to had closed.",
        )
        self.extra_outputs: dict[str, Stream[Event]] = {}

    # What a window type defines -------------------------------------------------------------

    def assign(
        self, state: WindowState, cols: Columns, wm: np.ndarray[Any, Any]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None, np.ndarray[Any, Any]]:
        """(window id per pair, row per pair or None for every row in order, late mask per
        row); `wm` is each row's watermark."""
        raise NotImplementedError

    def bounds(self, state: WindowState, wid: int, acc: Accumulator) -> tuple[float, float]:
        """`window_start`, `window_end` of a window."""
        raise NotImplementedError

    def closes_at(self, state: WindowState, wid: int, acc: Accumulator) -> float:
        """The watermark at which a window closes (for count windows: the position)."""
        raise NotImplementedError

    def closing_value(self, state: WindowState) -> float:
        """What `closes_at` is compared to: the watermark (count windows: the position)."""
        return state.max_ts - self.lateness

    # Validation -----------------------------------------------------------------------------

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        out: dict[str, FieldInfo] = dict(BASE_FIELDS)
        for f in options.by:
            if f != "key":
                out[f] = (fields_in or {}).get(f) or FieldInfo()
        out["window_start"] = FieldInfo("float64")
        out["window_end"] = FieldInfo("float64")
        out.update(options.aggregate.outputs(fields_in))
        return out

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        from edgewax.operators.transforms.fields import _unknown_fields

        problems: list[Problem] = options.aggregate.check(fields_in)
        refs = [(("by", i), f) for i, f in enumerate(options.by)]
        problems += _unknown_fields(refs, fields_in, "`by` names unknown field")
        return problems

    # Bytewax wiring -------------------------------------------------------------------------

    def _group_key(self, e: Event) -> str:
        by = self.by
        if len(by) == 1:
            v = e[by[0]]
            return v if type(v) is str else str(v)
        return "|".join(str(e[f]) for f in by)

    def _split(self, batch: list[Event]) -> list[tuple[str, Columns]]:
        # Columns are read once for the whole batch, then each group takes its rows.
        cols = Columns.of(batch, self.agg)
        if self.by == ["key"]:
            keys = [e["key"] for e in batch]
        else:
            gk = self._group_key
            keys = [gk(e) for e in batch]
        first = keys[0]
        if keys.count(first) == len(keys):
            return [(first if type(first) is str else str(first), cols)]
        # Equal keys get equal codes (setdefault keeps the first count it saw), all in C.
        index: dict[Any, int] = {}
        codes = np.fromiter(map(index.setdefault, keys, itertools.count()), np.int64, len(keys))
        order = np.argsort(codes, kind="stable")
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        out = []
        for rows in np.split(order, bounds):
            k = keys[int(rows[0])]
            out.append((k if type(k) is str else str(k), cols.take(rows)))
        return out

    def split(self, batch: list[Event]) -> list[tuple[str, Columns]]:
        """Batch -> one (group key, columns) item per group; bad events are dead-lettered."""
        self.ctx.stats.received.inc(len(batch))
        try:
            return self._split(batch)
        except Exception:
            good = []
            for e in batch:
                try:
                    self._split([e])
                    good.append(e)
                except Exception as exc:
                    reason, message = failure_reason(exc)
                    self.ctx.dead_letter(reason, message, e)
            return self._split(good) if good else []

    def build(self, up: Stream[Event]) -> Stream[Event]:
        sid = self.ctx.step_id
        keyed = op.flat_map_batch(f"{sid}/split", up, self.split)
        out = op.stateful_batch(f"{sid}/windows", keyed, self._logic)
        sent = self.ctx.stats.sent.inc

        def summaries(items: list[tuple[str, tuple[list[Event], list[Event]]]]) -> list[Event]:
            events = []
            for key, (done, _late) in items:
                for e in done:
                    e["key"] = key  # Bytewax keeps the group key outside the logic
                events.extend(done)
            sent(len(events))
            return events

        def late(items: list[tuple[str, tuple[list[Event], list[Event]]]]) -> list[Event]:
            return [e for _, (_done, lates) in items for e in lates]

        self.extra_outputs["late"] = op.flat_map_batch(f"{sid}/late", out, late)
        return op.flat_map_batch(f"{sid}/out", out, summaries)

    def _logic(self, resume: WindowState | None) -> WindowLogic:
        return WindowLogic(self, resume or WindowState())


class WindowLogic(op.StatefulBatchLogic[Columns, tuple[list[Event], list[Event]], WindowState]):
    """One group's windows inside Bytewax's `stateful_batch`."""

    def __init__(self, node: WindowNode, state: WindowState) -> None:
        self.node = node
        self.state = state

    def _watermarks(self, ts: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        node = self.node
        if node.system_clock:
            return np.full(len(ts), time.time() - node.lateness)
        if not node.uses_time:
            return np.zeros(len(ts))
        running = np.maximum.accumulate(ts)
        np.maximum(running, self.state.max_ts, out=running)
        return running - node.lateness

    def on_batch(self, values: list[Columns]) -> tuple[list[Any], bool]:
        node = self.node
        state = self.state
        lates: list[Event] = []
        for cols in values:
            if not state.by and node.by != ["key"]:
                state.by = {f: cols.events[0][f] for f in node.by}
            wm = self._watermarks(cols.ts)
            wids, rows, late = node.assign(state, cols, wm)
            if len(cols) and node.uses_time:
                state.max_ts = max(state.max_ts, float(cols.ts.max()))
            n_late = int(late.sum())
            if n_late:
                lates.extend(cols.events[i] for i in np.flatnonzero(late).tolist())
                node.late_counter.inc(n_late)
                node.ctx.stats.discard("late", n_late)
            self._merge(cols, wids, rows)
        done = self._close(self._now())
        return [(done, lates)], self._discard()

    def _merge(
        self, cols: Columns, wids: np.ndarray[Any, Any], rows: np.ndarray[Any, Any] | None
    ) -> None:
        from edgewax.operators.windows.aggregates import partials

        windows = self.state.windows
        agg = self.node.agg
        for wid, part in partials(cols, wids, rows, agg):
            acc = windows.get(wid)
            if acc is None:
                windows[wid] = acc = Accumulator(agg)
            acc.merge(part)

    def _now(self) -> float:
        node = self.node
        if node.system_clock:
            return time.time() - node.lateness
        return node.closing_value(self.state)

    def _close(self, now: float, everything: bool = False) -> list[Event]:
        node = self.node
        state = self.state
        closing = [
            wid
            for wid, acc in state.windows.items()
            if everything or node.closes_at(state, wid, acc) <= now
        ]
        out = []
        for wid in closing:
            acc = state.windows.pop(wid)
            start, end = node.bounds(state, wid, acc)
            out.append((start, wid, summary(acc, node.agg, "", start, end, state.by)))
        out.sort(key=lambda t: (t[0], t[1]))
        return [e for _, _, e in out]

    def _discard(self) -> bool:
        # With the data clock a group keeps its newest time (a few bytes) so that lateness stays
        # exact; with the wall clock, a group with no open window needs nothing.
        return self.node.system_clock and not self.state.windows

    def on_notify(self) -> tuple[list[Any], bool]:
        done = self._close(self._now())
        return ([(done, [])] if done else []), self._discard()

    def on_eof(self) -> tuple[list[Any], bool]:
        if self.node.ctx.stopping_to_resume():
            return [], False  # open windows stay in the snapshot; the restart closes them
        done = self._close(0.0, everything=True)
        return ([(done, [])] if done else []), True

    def notify_at(self) -> datetime | None:
        node = self.node
        if not node.system_clock or not self.state.windows:
            return None
        due = min(node.closes_at(self.state, w, a) for w, a in self.state.windows.items())
        return datetime.fromtimestamp(due + node.lateness, timezone.utc)

    def snapshot(self) -> WindowState:
        return copy.deepcopy(self.state)
