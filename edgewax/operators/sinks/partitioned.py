"""Sinks with resume state: one Bytewax partition per sink, so a file has one writer in a cluster.

A sink whose writer can go back to where a snapshot was taken (a file truncated to a byte offset)
gives exactly the output of an uninterrupted run after a crash and restart with recovery: Bytewax
replays what came after the last snapshot, and the writer first drops what it wrote after it.

Batches, not events, are routed: each worker's batch becomes one `(node id, batch)` item, so the
route to the partition's worker costs one step per batch, never one per event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import bytewax.operators as op
from bytewax.dataflow import Stream
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from edgewax.events import Event

if TYPE_CHECKING:
    from edgewax.operators.base import Sink, SinkWriter


class ResumableWriter:
    """What a resumable sink's writer adds to `SinkWriter`: its position, to resume from."""

    def snapshot(self) -> Any:
        raise NotImplementedError


class _Partition(StatefulSinkPartition[list[Event], Any]):
    def __init__(self, node: Sink, resume_state: Any) -> None:
        self._received = node.ctx.stats.received.inc
        self._writer: SinkWriter = node.open_resumable(resume_state)

    def write_batch(self, values: list[list[Event]]) -> None:
        batch = values[0] if len(values) == 1 else [e for b in values for e in b]
        self._received(len(batch))
        self._writer.write(batch)

    def snapshot(self) -> Any:
        writer = self._writer
        assert isinstance(writer, ResumableWriter)
        return writer.snapshot()

    def close(self) -> None:
        self._writer.close()


class _PartitionedSink(FixedPartitionedSink[list[Event], Any]):
    def __init__(self, node: Sink) -> None:
        self._node = node

    def list_parts(self) -> list[str]:
        return [self._node.ctx.node_id]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _Partition:
        return _Partition(self._node, resume_state)


def attach_resumable(node: Sink, up: Stream[Event]) -> None:
    """Send `up` to the node's one resumable writer (on whichever worker Bytewax gives it)."""
    part = node.ctx.node_id

    def to_partition(batch: list[Event]) -> list[tuple[str, list[Event]]]:
        return [(part, batch)] if batch else []

    keyed = op.flat_map_batch(f"{node.ctx.step_id}/batches", up, to_partition)
    op.output(node.ctx.step_id, keyed, _PartitionedSink(node))
