"""How a sink node meets Bytewax: every worker of a process shares the node's one writer.

Bytewax's `DynamicSink` builds a partition per worker; here they all hand their batches to a single
writer per process (opened by the first, closed by the last), under a lock, so a file has one
owner and no per-event routing step is paid for it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from edgewax.events import Event

if TYPE_CHECKING:
    from edgewax.operators.base import Sink, SinkWriter


class _SharedWriter:
    """The node's writer and how many worker partitions use it."""

    def __init__(self, node: Sink) -> None:
        self.node = node
        self.lock = threading.Lock()
        self.writer: SinkWriter | None = None
        self.users = 0

    def acquire(self) -> None:
        with self.lock:
            if self.writer is None:
                self.writer = self.node.open()
            self.users += 1

    def release(self) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0 and self.writer is not None:
                self.writer.close()
                self.writer = None


class _WorkerPartition(StatelessSinkPartition[Event]):
    def __init__(self, shared: _SharedWriter) -> None:
        self._shared = shared
        self._received = shared.node.ctx.stats.received.inc
        shared.acquire()

    def write_batch(self, items: list[Event]) -> None:
        self._received(len(items))
        shared = self._shared
        with shared.lock:
            assert shared.writer is not None
            shared.writer.write(items)

    def close(self) -> None:
        self._shared.release()


class _NodeSink(DynamicSink[Event]):
    def __init__(self, node: Sink) -> None:
        self._shared = _SharedWriter(node)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _WorkerPartition:
        return _WorkerPartition(self._shared)


def attach_writer(node: Sink, up: Stream[Event]) -> None:
    """Send `up` to the node's writer; the writer counts what it sends (and its bytes)."""
    op.output(node.ctx.step_id, up, _NodeSink(node))
