"""The durable store-and-forward outbox in front of every remote sink.

`Outbox.put(batch)` encodes the events, gives each a stable `event_id`, and commits them to the
sink's SQLite queue (`<state_dir>/outbox/<pipeline>.<node>.db`) before it returns: from then on the
event is accepted and survives a killed process. A drain thread sends what is queued through the
sink's `Transport` in batches, on its own (it does not wait for new traffic, so a sink that comes
back is served at once), with exponential backoff and jitter while the sink fails.

`event_id`: an event that already has a text `event_id` field keeps it. Otherwise it is the hex
BLAKE2b-128 of `<pipeline>/<node>` and the event's compact JSON, so the same event replayed after
a restart gets the same id; the queue ignores ids it holds or sent within `dedup_window`, so a
replay sends only what had not gone out. (Two events with identical content are one event.)
The receiver sees `event_id` as a field of every event and de-duplicates by it: delivery is
at-least-once (a batch in flight when the process dies is sent again).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgewax.events import Event, encode
from edgewax.operators.base import NodeContext
from edgewax.outbox.compact import summarize, window_of
from edgewax.outbox.options import BackoffOptions, CompactOptions, OutboxOptions
from edgewax.outbox.store import Event4, Item, Store

__all__ = ["Item", "Outbox", "OutboxOptions", "Outcome", "Transport", "event_id"]

log = logging.getLogger("edgewax.outbox")
_blake2b = hashlib.blake2b

DELIVERY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
    900,
    3600,
    4 * 3600,
    86400,
)
"""Delivery latency buckets: milliseconds on a good link to a day of outage."""


def event_id(scope: bytes, text: str) -> str:
    """The id of an event whose compact JSON is `text`, for the sink named by `scope`.

    >>> event_id(b"p/cloud", '{"ts":1.0,"key":"a"}')
    '018e12e35c67717bdd308aa616dbad33'
    """
    return _blake2b(scope + b"\0" + text.encode("utf-8"), digest_size=16).hexdigest()


def stamp(scope: bytes, event: Event) -> tuple[bytes, bytes]:
    """The event's 16-byte id and its JSON (with `event_id` as the first field, unless the
    event had a text `event_id` already: then the id is a hash of that)."""
    data = encode(event).encode("utf-8")
    eid = event.get("event_id")
    if eid.__class__ is str and eid:
        return _blake2b(eid.encode("utf-8"), digest_size=16).digest(), data
    digest = _blake2b(scope + b"\0" + data, digest_size=16).digest()
    return digest, b'{"event_id":"' + digest.hex().encode() + b'",' + data[1:]


@dataclass
class Outcome:
    """What a transport did with a batch of items."""

    acked: list[int] = field(default_factory=list)
    """Indexes of items the far side acknowledged."""
    rejected: list[tuple[int, str]] = field(default_factory=list)
    """Indexes of items the far side refused for good (e.g. HTTP 400), with why."""
    error: str | None = None
    """Why the other items failed (they are retried)."""
    retry_after: float | None = None
    """Seconds the far side asked us to wait (HTTP Retry-After)."""
    egress_bytes: int = 0
    """Bytes that left the device for this batch (counted even when the batch failed)."""


class Transport:
    """How a remote sink talks to its far side; the outbox calls it from its drain thread."""

    max_events: int = 100
    max_bytes: int = 1_000_000
    linger: float = 0.0
    label: str = "remote"
    routed: bool = False
    """True when `route` gives each event its own destination (else it is not called)."""
    """Value of the `sink` label of `edgewax_egress_bytes`."""

    def route(self, event: Event) -> str | None:
        """Per-event destination kept with the event (an MQTT topic); None if the sink has one."""
        return None

    def send(self, items: list[Item]) -> Outcome:
        raise NotImplementedError

    def close(self) -> None:
        return None


class Backoff:
    """Exponential backoff with jitter."""

    def __init__(self, opts: BackoffOptions, rng: random.Random | None = None) -> None:
        self.opts = opts
        self.failures = 0
        self.rng = rng or random.Random()

    def next(self) -> float:
        o = self.opts
        base = min(o.max, o.initial * o.multiplier**self.failures)
        self.failures += 1
        return max(0.0, base * (1 + o.jitter * (2 * self.rng.random() - 1)))

    def reset(self) -> None:
        self.failures = 0


class _Meters:
    def __init__(self, ctx: NodeContext, label: str) -> None:
        s = ctx.stats
        self.depth = s.gauge("edgewax_outbox_depth_events", "Events waiting in the outbox.")
        self.bytes = s.gauge("edgewax_outbox_bytes", "Bytes of events waiting in the outbox.")
        self.oldest = s.gauge(
            "edgewax_outbox_oldest_age_seconds", "Age of the oldest event waiting in the outbox."
        )
        self.sent = s.counter("edgewax_outbox_sent_events", "Events the far side acknowledged.")
        self.retries = s.counter(
            "edgewax_outbox_retries", "Events sent again after a failed attempt."
        )
        self.offline = s.counter(
            "edgewax_outbox_offline_seconds", "Time the sink was failing with events waiting."
        )
        self.latency = s.histogram(
            "edgewax_outbox_delivery_seconds",
            "Time from acceptance into the outbox to acknowledgement.",
            buckets=DELIVERY_BUCKETS,
        )
        self.egress = s.counter(
            "edgewax_egress_bytes", "Bytes that left the device through remote sinks.", sink=label
        )
        self._ctx = ctx
        self._dropped: dict[str, Any] = {}

    def dropped(self, reason: str, n: int) -> None:
        if n <= 0:
            return
        c = self._dropped.get(reason)
        if c is None:
            c = self._dropped[reason] = self._ctx.stats.counter(
                "edgewax_outbox_dropped_events",
                "Events the outbox dropped, by reason.",
                reason=reason,
            )
        c.inc(n)
        self._ctx.stats.discard(reason, n)


class Outbox:
    """Durable queue + drain thread for one remote sink (see the module docstring)."""

    def __init__(
        self,
        ctx: NodeContext,
        opts: OutboxOptions,
        transport: Transport,
        path: Path | None = None,
    ) -> None:
        self.ctx = ctx
        self.opts = opts
        self.transport = transport
        self.scope = f"{ctx.pipeline}/{ctx.node_id}".encode()
        self.path = path or ctx.state_dir / "outbox" / f"{ctx.pipeline}.{ctx.node_id}.db"
        self.store = Store(
            self.path,
            opts.max_bytes,
            opts.sync,
            transport.max_events,
            newest_first=opts.order == "newest_first",
        )
        self.meters = _Meters(ctx, transport.label)
        self.check = ctx.health.check(f"{ctx.pipeline}/{ctx.node_id}", "sink")
        self.check.ok("outbox accepting")
        self.backoff = Backoff(opts.backoff)
        self._priority = opts.priority.fn if opts.priority is not None else None
        self._wake = threading.Event()
        self._room = threading.Condition()
        self._closing = threading.Event()
        self._deadline = float("inf")
        self.reachable: bool | None = None
        self.offline_since: float | None = None
        self._gauges()
        self._thread = threading.Thread(
            target=self._run, name=f"edgewax-outbox-{ctx.pipeline}/{ctx.node_id}", daemon=True
        )
        self._thread.start()

    # -- accepting --------------------------------------------------------------------------
    def rows(self, batch: list[Event]) -> list[Event4]:
        """Encode a batch; events whose route cannot be made are dead-lettered."""
        scope = self.scope
        if self._priority is None and not self.transport.routed:
            try:  # the common case: one tight loop for the whole batch
                out: list[Event4] = []
                append = out.append
                for e in batch:
                    key, payload = stamp(scope, e)
                    append((key, 0, None, payload))
                return out
            except Exception:
                pass  # find and dead-letter the bad events one by one below
        route = self.transport.route
        prio = self._priority
        rows: list[Event4] = []
        for e in batch:
            try:
                r = route(e)
                p = 1 if prio is not None and _truthy(prio, e) else 0
                key, payload = stamp(scope, e)
            except Exception as exc:
                from edgewax.operators.base import failure_reason

                reason, message = failure_reason(exc)
                self.ctx.dead_letter(reason, message, e)
                continue
            rows.append((key, p, r, payload))
        return rows

    def put(self, batch: list[Event]) -> int:
        """Queue a batch durably; returns how many events were accepted."""
        rows = self.rows(batch)
        policy = self.opts.when_full
        accepted = 0
        now = time.time()
        full = False
        while rows:
            res = self.store.put(rows, now, policy)
            accepted += res.accepted
            self.meters.dropped("full", res.dropped_oldest)
            full = res.rest > 0
            if not full:
                break
            if policy == "block":
                self.check.fail("outbox full and the sink is not taking events")
            if policy == "drop_newest" or self.ctx.stop.is_set() or self._closing.is_set():
                self.meters.dropped("full", res.rest)
                break
            # block: hold the pipeline until the drain makes room (accepted ones are now
            # known ids, so putting the whole list again only adds the rest).
            self._wake.set()
            with self._room:
                self._room.wait(0.2)
        if self.store.depth:
            self._wake.set()
        m = self.meters
        m.depth.set(self.store.depth)
        m.bytes.set(self.store.bytes)
        if policy == "block" and not full and not self.check.ready:
            self.check.ok("sink reachable" if self.reachable else "outbox accepting")
        return accepted

    # -- draining ---------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                self._loop()
                return
            except Exception:  # e.g. a full or broken disk: keep the thread, try again
                log.exception("outbox %s: drain failed; retrying in 1s", self.path)
                time.sleep(1.0)

    def _loop(self) -> None:
        next_house = 0.0
        wait_until = 0.0
        while True:
            now = time.monotonic()
            if self._closing.is_set() and (self.store.depth == 0 or now >= self._deadline):
                break
            if now >= next_house:
                self._housekeeping()
                next_house = now + 1.0
            if now < wait_until:
                self._sleep(min(wait_until, next_house) - now)
                continue
            self._wake.clear()  # before looking, so that a put() from now on wakes the wait below
            items = self.store.take(self.transport.max_events, self.transport.max_bytes)
            if not items:
                self._wake.wait(max(0.0, next_house - time.monotonic()))
                continue
            linger = self.transport.linger
            if linger > 0 and len(items) < self.transport.max_events and not self._closing.is_set():
                young = time.time() - min(i.enq for i in items)
                if young < linger:
                    self._sleep(linger - young)
                    continue
            wait_until = self._deliver(items)

    def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self._closing.is_set():
            time.sleep(min(seconds, 0.05))
        else:
            self._closing.wait(min(seconds, 1.0))

    def _deliver(self, items: list[Item]) -> float:
        """Send one batch; returns the monotonic time before which not to try again."""
        try:
            out = self.transport.send(items)
        except Exception as e:  # a transport bug must not kill the drain thread
            log.exception("outbox %s: sink failed", self.path)
            out = Outcome(error=f"{type(e).__name__}: {e}")
        m = self.meters
        if out.egress_bytes:
            m.egress.inc(out.egress_bytes)
            self.ctx.stats.sink_bytes.inc(out.egress_bytes)
        now = time.time()
        finished = set(out.acked) | {i for i, _ in out.rejected}
        self.store.settle(items, finished, "sent" if out.acked else "rejected")
        if out.acked:
            m.sent.inc(len(out.acked))
            self.ctx.stats.sent.inc(len(out.acked))
            # One observation per row (events accepted together share their enqueue time).
            for enq in {items[i].enq for i in out.acked}:
                m.latency.observe(now - enq)
        for i, why in out.rejected:
            self._reject(items[i], why)
        failed = len(items) - len(finished)
        with self._room:
            self._room.notify_all()
        if failed:
            m.retries.inc(failed)
            self._offline(out.error or "not acknowledged")
            wait = self.backoff.next()
            if out.retry_after is not None:
                wait = max(wait, out.retry_after)
            return time.monotonic() + wait
        self._online()
        self.backoff.reset()
        self._gauges(oldest=False)
        return 0.0

    def _reject(self, item: Item, why: str) -> None:
        try:
            event = json.loads(item.payload)
        except ValueError:
            event = item.payload.decode("utf-8", "replace")
        self.meters.dropped("rejected", 1)
        self.ctx.stats.errors.inc()
        self.ctx.stats.dead_letters.inc()
        self.ctx.dead_letters.put(self.ctx.pipeline, self.ctx.node_id, "rejected", why, event)

    def _offline(self, error: str) -> None:
        now = time.monotonic()
        if self.offline_since is None:
            self.offline_since = now
            log.warning(
                "pipeline %s, node %s: sink unreachable (%s); events wait in the outbox",
                self.ctx.pipeline,
                self.ctx.node_id,
                error,
            )
        self._tick_offline(now)
        self.reachable = False
        if self._accepting():
            self.check.ok(self._status(error))
        else:
            self.check.fail(self._status(error))

    def _tick_offline(self, now: float) -> None:
        if self.offline_since is not None:
            self.meters.offline.inc(max(0.0, now - self.offline_since))
            self.offline_since = now

    def _online(self) -> None:
        if self.offline_since is not None:
            self._tick_offline(time.monotonic())
            self.offline_since = None
            log.info(
                "pipeline %s, node %s: sink reachable again", self.ctx.pipeline, self.ctx.node_id
            )
        self.reachable = True
        self.check.ok(self._status())

    def _accepting(self) -> bool:
        return self.opts.when_full != "block" or self.store.bytes < self.store.max_bytes

    def _status(self, error: str | None = None) -> str:
        if error is None:
            return "sink reachable"
        return f"outbox accepting; sink unreachable: {error}"

    def _housekeeping(self) -> None:
        o = self.opts
        now = time.time()
        try:
            if o.max_age is not None:
                self.meters.dropped("ttl", self.store.expire(now - o.max_age))
            if o.compact is not None and self.offline_since is not None:
                self._compact(o.compact, now)
            self.store.forget(now - o.dedup_window, o.dedup_max_ids)
        except Exception as e:
            log.error("outbox %s: housekeeping failed: %s", self.path, e)
        self._tick_offline(time.monotonic())
        self._gauges()
        with self._room:
            self._room.notify_all()

    def _compact(self, c: CompactOptions, now: float) -> None:
        rows = self.store.old_rows(now - c.after)
        if not rows:
            return
        groups: dict[tuple[str, float], list[Event]] = {}
        meta: dict[tuple[str, float], tuple[int, float, str | None]] = {}
        for _, prio, enq, route, payload in rows:
            for line in payload.split(b"\n"):
                e = json.loads(line)
                ts = e.get("ts")
                g = (
                    str(e.get("key")),
                    window_of(ts if isinstance(ts, (int, float)) else 0.0, c.window),
                )
                groups.setdefault(g, []).append(e)
                p0, e0, r0 = meta.get(g, (prio, enq, route))
                meta[g] = (max(p0, prio), min(e0, enq), r0)
        summaries = []
        for g, events in groups.items():
            (s,) = summarize(events, c)
            ids = ",".join(sorted(str(e.get("event_id", "")) for e in events))
            key = hashlib.blake2b(ids.encode(), digest_size=16, key=self.scope[:56] + b"#summary")
            s = {"event_id": key.hexdigest(), **s, "events": len(events)}
            prio, enq, route = meta[g]
            with contextlib.suppress(Exception):
                route = self.transport.route(s)
            summaries.append((key.digest(), prio, enq, route, encode(s).encode("utf-8")))
        n = self.store.replace([r[0] for r in rows], summaries)
        log.info(
            "pipeline %s, node %s: compacted %d queued events into %d summaries",
            self.ctx.pipeline,
            self.ctx.node_id,
            n,
            len(summaries),
        )

    def _gauges(self, oldest: bool = True) -> None:
        """Set the gauges; the oldest age (a scan of the queue) only when asked (each second)."""
        m = self.meters
        m.depth.set(self.store.depth)
        m.bytes.set(self.store.bytes)
        if not self.store.depth:
            m.oldest.set(0.0)
        elif oldest:
            enq = self.store.oldest_enq()
            m.oldest.set(0.0 if enq is None else max(0.0, time.time() - enq))

    # -- closing ----------------------------------------------------------------------------
    def flush(self, timeout: float) -> bool:
        """Wait until the queue is empty (True) or `timeout` passes (False)."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        while self.store.depth and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.store.depth == 0

    def close(self, timeout: float | None = None) -> None:
        """Give the drain `drain_timeout` to send what is queued, then stop and close the file."""
        t = self.opts.drain_timeout if timeout is None else timeout
        self._deadline = time.monotonic() + t
        self._closing.set()
        self._wake.set()
        self._thread.join()
        left = self.store.depth
        if left:
            log.warning(
                "pipeline %s, node %s: %d events stay in the outbox for the next start (%s)",
                self.ctx.pipeline,
                self.ctx.node_id,
                left,
                self.path,
            )
        self._gauges()
        self.transport.close()
        self.store.close()


def _truthy(fn: Callable[[Event], Any], e: Event) -> bool:
    try:
        return bool(fn(e))
    except Exception:
        return False
