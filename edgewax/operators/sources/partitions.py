"""How a source node meets Bytewax: one partition per file, sensor or camera, paced by event time.

A concrete source subclasses `EventPartition` and implements `read(n)` (up to `n` events, `[]` when
none are ready, `StopIteration` at the end) and `tell()` (its position after the last event read).
This class adds, once for every source: stopping on SIGTERM, pacing (`speed`: 0 as fast as possible,
1 real time, N times faster), large batches when catching up, counting, and resume positions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from edgewax.events import Event
from edgewax.metrics import NodeStats
from edgewax.operators.base import NodeContext

BATCH = 1000
"""Events read per call when catching up: per-item batches are ~50x slower in Bytewax."""

_MAX_SLEEP = 0.2
"""Longest a paced source waits before looking at the stop flag again."""


class EventPartition(StatefulSourcePartition[Event, Any]):
    """One partition of a source. Subclasses implement `read`, `tell` and `seek`.

    A finite source shows how far it has got by setting `progress` (its node's `SourceProgress`)
    and `part`, and implementing `position()`; it is reported once a batch, by emitted events.
    """

    progress: SourceProgress | None = None
    part: str = ""

    def __init__(self, ctx: NodeContext, speed: float = 0.0, batch_size: int = BATCH) -> None:
        self.ctx = ctx
        self.speed = speed
        self.batch_size = batch_size
        self._sent = ctx.stats.sent.inc
        # Paced mode keeps the rest of the last read here until it is due.
        self._pending: list[Event] = []
        self._cursor = 0
        self._chunk_start: Any = None
        self._t0: float | None = None
        self._w0 = 0.0
        self._span = (0.0, 0.0)

    def read(self, n: int) -> list[Event]:
        raise NotImplementedError

    def tell(self) -> Any:
        raise NotImplementedError

    def seek(self, position: Any) -> None:
        raise NotImplementedError

    def position(self) -> float:
        """Where the source is, in the units of its progress total (bytes, samples)."""
        return 0.0

    def _read(self, n: int) -> list[Event]:
        try:
            return self.read(n)
        except StopIteration:
            if self.progress is not None:
                self.progress.finish(self.part)
            raise

    def resume(self, state: Any) -> None:
        """Continue from a `snapshot()`: seek to the chunk, then skip what was already emitted."""
        if state is None:
            return
        position, skip = state
        self.seek(position)
        while skip > 0:
            skip -= len(self.read(min(skip, self.batch_size)))

    def next_batch(self) -> list[Event]:
        if self.ctx.stop.is_set():
            raise StopIteration
        progress = self.progress
        if self.speed <= 0:
            batch = self._read(self.batch_size)
            self._sent(len(batch))
            if progress is not None:
                progress.update(self.part, self.position())
            return batch
        if self._cursor >= len(self._pending):
            self._chunk_start = self.tell()
            p0 = self.position() if progress is not None else 0.0
            self._pending = self._read(self.batch_size)
            self._cursor = 0
            if progress is not None:
                self._span = (p0, self.position())
            if not self._pending:
                return []
            if self._t0 is None:
                self._t0 = float(self._pending[0]["ts"])
                self._w0 = time.time()
        assert self._t0 is not None
        horizon = self._t0 + (time.time() - self._w0) * self.speed
        pending = self._pending
        start = i = self._cursor
        end = len(pending)
        while i < end and pending[i]["ts"] <= horizon:
            i += 1
        self._cursor = i
        self._sent(i - start)
        if progress is not None and i > start:
            # Paced replays read a chunk ahead: count the part of it emitted so far.
            p0, p1 = self._span
            progress.update(self.part, p0 + (p1 - p0) * i / end)
        return pending[start:i]

    def next_awake(self) -> datetime | None:
        if self.speed <= 0 or self._cursor >= len(self._pending) or self._t0 is None:
            return None
        due = self._w0 + (float(self._pending[self._cursor]["ts"]) - self._t0) / self.speed
        wake = min(due, time.time() + _MAX_SLEEP)
        return datetime.fromtimestamp(wake, timezone.utc)

    def snapshot(self) -> Any:
        if self._cursor < len(self._pending):
            return (self._chunk_start, self._cursor)
        return (self.tell(), 0)


class LivePartition(EventPartition):
    """A partition fed by a thread of its own (a camera capture, a broker client).

    Subclasses start `thread`, set `_wake` (epoch seconds) when `next_batch` found nothing so that
    Bytewax polls again soon, flip `check` as the device or broker comes and goes, and count
    `reconnects`. `close` stops the thread (`halt`, then `interrupt` for other waits) and marks
    the source not ready.
    """

    def __init__(self, ctx: NodeContext, batch_size: int) -> None:
        super().__init__(ctx, 0.0, batch_size)
        self.halt = threading.Event()
        self.thread: threading.Thread | None = None
        self._wake: float | None = None
        self.reconnects = ctx.stats.counter(
            "edgewax_source_reconnects", "Times a source reopened its device, stream or file."
        )
        self.check = ctx.health.check(f"{ctx.pipeline}/{ctx.node_id}", "source")

    def next_awake(self) -> datetime | None:
        if self._wake is None:
            return None
        return datetime.fromtimestamp(self._wake, timezone.utc)

    def interrupt(self) -> None:
        """Wake the thread from waits other than `halt` (e.g. on a condition)."""

    def close(self) -> None:
        self.halt.set()
        self.interrupt()
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.check.fail("closed")


class SourceProgress:
    """How far a finite source has got over all its partitions: one 0..1 gauge for the node.

    Made when the source is built (it knows every partition's total then: a file's size, a
    stream's sample count); each partition reports its position per batch, never per event.

    >>> from edgewax.metrics import Metrics
    >>> stats = Metrics().node("p", "rec", "source.jsonl")
    >>> progress = SourceProgress(stats, {"a.jsonl": 100, "b.jsonl": 300})
    >>> progress.update("a.jsonl", 100); progress.update("b.jsonl", 100)
    >>> stats.progress()._value.get()
    0.5
    """

    def __init__(self, stats: NodeStats, totals: dict[str, float]) -> None:
        self._gauge = stats.progress()
        self._totals = dict(totals)
        self._total = float(sum(totals.values()))
        self._done = dict.fromkeys(totals, 0.0)
        self._lock = threading.Lock()
        self._gauge.set(0.0)

    def update(self, part: str, done: float) -> None:
        with self._lock:
            self._done[part] = min(float(done), self._totals.get(part, 0.0))
            ratio = sum(self._done.values()) / self._total if self._total > 0 else 1.0
        self._gauge.set(ratio)

    def finish(self, part: str) -> None:
        self.update(part, self._totals.get(part, 0.0))


class PartitionedSource(FixedPartitionedSource[Event, Any]):
    """A Bytewax source over named partitions; each is built (or resumed) by its factory."""

    def __init__(self, parts: dict[str, Callable[[], EventPartition]]) -> None:
        self._parts = parts

    def list_parts(self) -> list[str]:
        return list(self._parts)

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> EventPartition:
        part = self._parts[for_part]()
        part.resume(resume_state)
        return part
