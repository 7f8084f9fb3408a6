"""Keyed state for transforms: `KeyedTransform` runs a node per key on Bytewax's `stateful_batch`.

Events are routed by `key` (so one key's state lives on one worker and is snapshotted with Bytewax
recovery); the node sees whole batches of one key at a time and can vectorise over them. Like
`guarded`, a batch that raises is rerun event by event and the failures are dead-lettered, so a
node must change its state only after the whole batch has succeeded.
"""

from __future__ import annotations

from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream

from edgewax.events import Event
from edgewax.operators.base import NodeContext, Transform, failure_reason


class KeyedTransform(Transform):
    """A transform with state per `key`: implement `new_state()` and `process_key(state, batch)`."""

    def new_state(self) -> Any:
        """The state of a key seen for the first time (must pickle, for recovery)."""
        return None

    def process_key(self, state: Any, batch: list[Event]) -> tuple[list[Event], Any]:
        """Events out and the new state for a batch of one key's events, in arrival order."""
        raise NotImplementedError

    def build(self, up: Stream[Event]) -> Stream[Event]:
        sid = self.ctx.step_id
        keyed = op.key_on(f"{sid}_key", up, _key)
        logic = op.stateful_batch(
            sid,
            keyed,
            lambda state: _Logic(self, self.ctx, self.new_state() if state is None else state),
        )
        return op.flat_map_batch(f"{sid}_unkey", logic, _values)


def _key(e: Event) -> str:
    return str(e["key"])


def _values(batch: list[tuple[str, list[Event]]]) -> list[Event]:
    return [e for _, events in batch for e in events]


class _Logic(op.StatefulBatchLogic[Event, list[Event], Any]):
    def __init__(self, node: KeyedTransform, ctx: NodeContext, state: Any) -> None:
        self.node = node
        self.ctx = ctx
        self.state = state

    def on_batch(self, values: list[Event]) -> tuple[list[list[Event]], bool]:
        ctx = self.ctx
        ctx.stats.received.inc(len(values))
        try:
            out, self.state = self.node.process_key(self.state, values)
        except Exception:
            out = []
            for item in values:
                try:
                    got, self.state = self.node.process_key(self.state, [item])
                    out.extend(got)
                except Exception as e:
                    reason, message = failure_reason(e)
                    ctx.dead_letter(reason, message, item)
        ctx.stats.sent.inc(len(out))
        return ([out] if out else []), False

    def snapshot(self) -> Any:
        import copy

        return copy.deepcopy(self.state)
