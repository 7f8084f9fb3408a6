"""Keyed state for transforms: the one primitive `egress.*`, `signal.frame`, `signal.zscore` and
`image.motion` are thin compositions of.

A stateless step splits each batch by group (the event's `key`, or one group for `per: all`) and
reads what the node needs from each event (`prepare`; an event it cannot read is dead-lettered).
Bytewax's `stateful_batch` then runs the node's `step` over each group's events with that group's
state, in arrival order, so one key's state lives on one worker, is snapshotted with Bytewax
recovery, and the same recording gives the same output on every run. Splitting first means Bytewax
routes one item per group per batch, not one per event. A group whose state becomes `None` is
removed. If `step` raises on a group's events, they are rerun one by one and the failures are
dead-lettered, so `step` must change the state only once it knows the whole call succeeds.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar, Literal

import bytewax.operators as op
from bytewax.dataflow import Stream
from pydantic import Field

from edgewax.events import Event
from edgewax.operators.base import NodeContext, NodeOptions, Transform, failure_reason

Group = tuple[list[Event], list[Any]]


class KeyedOptions(NodeOptions):
    per: Literal["key", "all"] = Field(
        "key", description="`key`: separate state for each `key`; `all`: one for all events."
    )


class KeyedTransform(Transform):
    """Base of nodes with per-group state: subclasses define `step`, and maybe `new_state`,
    `prepare` and `flush`."""

    order_sensitive: ClassVar[bool] = True

    default_per: ClassVar[str] = "key"

    def new_state(self) -> Any:
        """The state of a group seen for the first time (must pickle, for recovery)."""
        return None

    def prepare(self, event: Event) -> Any:
        """What `step` needs from one event; raise on an event that cannot be used."""
        return None

    def step(self, state: Any, events: list[Event], prepared: list[Any]) -> tuple[Any, list[Event]]:
        """(new state, or None to forget the group; events to pass on) for one group, in order."""
        raise NotImplementedError

    def flush(self, state: Any) -> list[Event]:
        """Events to emit when the stream ends (e.g. an incident still going on)."""
        return []

    def _groups(self, batch: list[Event]) -> list[tuple[str, Group]]:
        per_key = getattr(self.options, "per", self.default_per) == "key"
        prepare = self.prepare
        groups: dict[str, Group] = {}
        for e in batch:
            g = str(e["key"]) if per_key else "*"
            item = groups.get(g)
            if item is None:
                groups[g] = item = ([], [])
            p = prepare(e)
            item[0].append(e)
            item[1].append(p)
        return list(groups.items())

    def split(self, batch: list[Event]) -> list[tuple[str, Group]]:
        self.ctx.stats.received.inc(len(batch))
        try:
            return self._groups(batch)
        except Exception:
            good = []
            for e in batch:
                try:
                    self.prepare(e)
                    _ = e["key"]  # every event needs a key to be grouped
                    good.append(e)
                except Exception as exc:
                    reason, message = failure_reason(exc)
                    self.ctx.dead_letter(reason, message, e)
            return self._groups(good)

    def build(self, up: Stream[Event]) -> Stream[Event]:
        sid = self.ctx.step_id
        groups = op.flat_map_batch(f"{sid}/split", up, self.split)
        node, ctx = self, self.ctx
        out = op.stateful_batch(
            f"{sid}/state",
            groups,
            lambda state: _Logic(node, ctx, node.new_state() if state is None else state),
        )
        sent = self.ctx.stats.sent.inc

        def flatten(items: list[tuple[str, list[Event]]]) -> list[Event]:
            events = [e for _, batch in items for e in batch]
            sent(len(events))
            return events

        return op.flat_map_batch(f"{sid}/out", out, flatten)


class _Logic(op.StatefulBatchLogic[Group, list[Event], Any]):
    def __init__(self, node: KeyedTransform, ctx: NodeContext, state: Any) -> None:
        self.node = node
        self.ctx = ctx
        self.state = state

    def on_batch(self, values: list[Group]) -> tuple[list[list[Event]], bool]:
        out: list[Event] = []
        step = self.node.step
        for events, prepared in values:
            try:
                self.state, passed = step(self.state, events, prepared)
                out.extend(passed)
            except Exception:
                for e, p in zip(events, prepared):
                    try:
                        self.state, passed = step(self.state, [e], [p])
                        out.extend(passed)
                    except Exception as exc:
                        reason, message = failure_reason(exc)
                        self.ctx.dead_letter(reason, message, e)
        return [out], self.state is None

    def on_eof(self) -> tuple[list[list[Event]], bool]:
        if self.ctx.stopping_to_resume():
            return [], False  # kept in the snapshot: the restart carries on with it
        return [self.node.flush(self.state)], True

    def snapshot(self) -> Any:
        return copy.deepcopy(self.state)
