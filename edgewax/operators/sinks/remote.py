"""What every remote sink (HTTP, MQTT) shares: `allow_raw`, the `outbox:` options and the writer.

The writer puts each batch into the sink's outbox (`edgewax.outbox`) and returns once it is
committed; the outbox's drain thread talks to the far side. With `outbox: {enabled: false}` the
writer sends each batch itself, retrying with the same backoff until it is acknowledged or the run
stops (a down sink then stalls the pipeline, and nothing is kept on disk).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from edgewax.events import Event
from edgewax.operators.base import Fields, NodeOptions, Problem, Sink, SinkWriter
from edgewax.operators.connection import TlsOptions
from edgewax.outbox import Backoff, Item, Outbox, Transport, stamp
from edgewax.outbox.options import OutboxOptions

log = logging.getLogger("edgewax.sinks")


class RemoteSinkOptions(NodeOptions):
    allow_raw: bool = Field(
        False,
        description="Let raw data (camera frames, raw sample arrays) leave the device through "
        "this sink; the privacy lint refuses such a path otherwise.",
    )
    outbox: OutboxOptions = Field(
        default_factory=OutboxOptions,
        description="The durable store-and-forward queue in front of the sink (on by default).",
    )


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def template_fields(template: str) -> list[str]:
    """Field names in a `{field}` template; raises ValueError for anything but plain names."""
    names = _PLACEHOLDER.findall(template)
    for n in names:
        if not _NAME.match(n):
            raise ValueError(f"`{{{n}}}` in `{template}` is not a field name (write e.g. {{key}})")
    if template.replace("{" + "}", "").count("{") != len(names):
        raise ValueError(f"unbalanced braces in `{template}`")
    return names


def render(template: str, event: Event, clean: Callable[[str], str] | None = None) -> str:
    """Fill `{field}` placeholders from the event (a missing field raises KeyError)."""

    def one(m: re.Match[str]) -> str:
        v = str(event[m.group(1)])
        return clean(v) if clean is not None else v

    return _PLACEHOLDER.sub(one, template)


class _OutboxWriter(SinkWriter):
    def __init__(self, node: RemoteSink) -> None:
        self.outbox = Outbox(node.ctx, node.options.outbox, node.transport())

    def write(self, batch: list[Event]) -> None:
        self.outbox.put(batch)

    def close(self) -> None:
        self.outbox.close()


class _DirectWriter(SinkWriter):
    """No outbox: send each batch now, retrying until acknowledged or the run stops."""

    def __init__(self, node: RemoteSink) -> None:
        self.ctx = node.ctx
        self.transport = node.transport()
        self.backoff = Backoff(node.options.outbox.backoff)
        self.scope = f"{node.ctx.pipeline}/{node.ctx.node_id}".encode()
        self.check = node.ctx.health.check(f"{node.ctx.pipeline}/{node.ctx.node_id}", "sink")
        self.egress = node.ctx.stats.counter(
            "edgewax_egress_bytes",
            "Bytes that left the device through remote sinks.",
            sink=self.transport.label,
        )

    def write(self, batch: list[Event]) -> None:
        t = self.transport
        items: list[Item] = []
        now = time.time()
        for e in batch:
            try:
                route = t.route(e)
                _, payload = stamp(self.scope, e)
            except Exception as exc:
                from edgewax.operators.base import failure_reason

                reason, message = failure_reason(exc)
                self.ctx.dead_letter(reason, message, e)
                continue
            items.append(Item(0, len(items), now, route, payload))
        for i in range(0, len(items), t.max_events):
            self._send(items[i : i + t.max_events])

    def _send(self, items: list[Item]) -> None:
        while items:
            out = self.transport.send(items)
            if out.egress_bytes:
                self.egress.inc(out.egress_bytes)
                self.ctx.stats.sink_bytes.inc(out.egress_bytes)
            self.ctx.stats.sent.inc(len(out.acked))
            for i, why in out.rejected:
                try:
                    event: Any = json.loads(items[i].payload)
                except ValueError:
                    event = items[i].payload.decode("utf-8", "replace")
                self.ctx.dead_letter("rejected", why, event)
            done = set(out.acked) | {i for i, _ in out.rejected}
            items = [it for i, it in enumerate(items) if i not in done]
            if not items:
                self.backoff.reset()
                self.check.ok("sink reachable")
                return
            self.check.fail(f"sink unreachable: {out.error}")
            wait = self.backoff.next()
            if out.retry_after is not None:
                wait = max(wait, out.retry_after)
            if self.ctx.stop.wait(wait):
                self.ctx.stats.discard("unsent", len(items))
                log.warning(
                    "pipeline %s, node %s: stopping with %d unsent events (no outbox)",
                    self.ctx.pipeline,
                    self.ctx.node_id,
                    len(items),
                )
                return

    def close(self) -> None:
        self.transport.close()


class RemoteSink(Sink):
    """Base of sinks whose events leave the device; subclasses provide `transport()`."""

    remote: ClassVar[bool] = True

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        tls: TlsOptions | None = getattr(options, "tls", None)
        return tls.problems(base_dir) if tls is not None else []

    def transport(self) -> Transport:
        raise NotImplementedError

    def open(self) -> SinkWriter:
        if self.options.outbox.enabled:
            return _OutboxWriter(self)
        return _DirectWriter(self)
