"""How a sink node meets Bytewax: one partition, so exactly one worker owns a file or a stream."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from edgewax.events import Event

if TYPE_CHECKING:
    from edgewax.operators.base import Sink, SinkWriter


class _WriterPartition(StatefulSinkPartition[Event, Any]):
    def __init__(self, node: Sink, writer: SinkWriter) -> None:
        self._writer = writer
        self._received = node.ctx.stats.received.inc

    def write_batch(self, values: list[Event]) -> None:
        self._received(len(values))
        self._writer.write(values)

    def snapshot(self) -> Any:
        return self._writer.snapshot()

    def close(self) -> None:
        self._writer.close()


class _OneWriterSink(FixedPartitionedSink[Event, Any]):
    def __init__(self, node: Sink) -> None:
        self._node = node

    def list_parts(self) -> list[str]:
        return ["0"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _WriterPartition:
        return _WriterPartition(self._node, self._node.open(resume_state))


def _route(batch: list[Event]) -> list[tuple[str, Event]]:
    return [("0", e) for e in batch]


def attach_writer(node: Sink, up: Stream[Event]) -> None:
    """Send `up` to the node's writer; the writer counts what it sends (and its bytes)."""
    keyed = op.flat_map_batch(f"{node.ctx.step_id}__route", up, _route)
    op.output(node.ctx.step_id, keyed, _OneWriterSink(node))
