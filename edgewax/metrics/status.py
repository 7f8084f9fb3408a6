"""A compact status of running pipelines, computed from metric samples only.

The live view of `edgewax run` reads the run's registry and `edgewax top URL` reads a running
instance's `/metrics` text; both become the same `Snapshot`, so the two views cannot disagree:

>>> text = '''
... edgewax_node_info{pipeline="p",node="src",type="sensor.synthetic",kind="source"} 1
... edgewax_node_info{pipeline="p",node="out",type="sink.jsonl",kind="sink"} 1
... edgewax_node_sent_events_total{pipeline="p",node="src",type="sensor.synthetic"} 100
... edgewax_node_sent_events_total{pipeline="p",node="out",type="sink.jsonl"} 40
... edgewax_source_bytes_total{pipeline="p",node="src",type="sensor.synthetic"} 800
... edgewax_source_progress_ratio{pipeline="p",node="src",type="sensor.synthetic"} 0.25
... '''
>>> tracker = Tracker()
>>> tracker.add(Snapshot.from_text(text, at=10.0))
>>> later = text.replace(" 100", " 300").replace(" 40", " 90").replace("0.25", "0.5")
>>> tracker.add(Snapshot.from_text(later, at=12.0))
>>> print("\\n".join(render(tracker.status(), width=80)))
pipeline      in/s    out/s  saved   outbox  errors  last error
p            100.0     25.0  -       -            0  -
  src        [##########----------]  50%  ETA 0:04
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

Labels = dict[str, str]

_WINDOW = 5.0
"""Seconds of history rates are taken over: steady numbers without hiding a stall for long."""


@dataclass
class Snapshot:
    """Every sample of one scrape: `(sample name, labels, value)`, and when it was taken."""

    at: float
    samples: list[tuple[str, Labels, float]]

    @classmethod
    def from_registry(cls, registry: CollectorRegistry, at: float | None = None) -> Snapshot:
        samples = [
            (s.name, dict(s.labels), float(s.value))
            for family in registry.collect()
            for s in family.samples
        ]
        return cls(time.time() if at is None else at, samples)

    @classmethod
    def from_text(cls, text: str, at: float | None = None) -> Snapshot:
        """Parse a Prometheus text exposition (what `/metrics` returns)."""
        samples = [
            (s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]
        return cls(time.time() if at is None else at, samples)

    def series(self, name: str, **match: str) -> Iterable[tuple[Labels, float]]:
        for n, labels, value in self.samples:
            if n == name and all(labels.get(k) == v for k, v in match.items()):
                yield labels, value


@dataclass
class Totals:
    """One pipeline's running totals in one snapshot."""

    events_in: float = 0.0
    events_out: float = 0.0
    source_bytes: float = 0.0
    egress_bytes: float | None = None
    outbox_depth: float | None = None
    outbox_age: float | None = None
    errors: float = 0.0
    last_error: tuple[float, str, str] | None = None
    """(when, node, reason) of the latest dead letter."""
    progress: dict[str, float] = field(default_factory=dict)
    """Finite sources' progress, 0 to 1, by node id."""


def totals(snap: Snapshot) -> dict[str, Totals]:
    """Per pipeline: what came in (sources), went out (sinks), bytes, outbox, errors, progress."""
    kinds: dict[tuple[str, str], str] = {}
    out: dict[str, Totals] = {}

    def of(labels: Labels) -> Totals:
        return out.setdefault(labels.get("pipeline", ""), Totals())

    for labels, _ in snap.series("edgewax_node_info"):
        kinds[(labels.get("pipeline", ""), labels.get("node", ""))] = labels.get("kind", "")
        of(labels)
    for labels, _ in snap.series("edgewax_up"):
        of(labels)
    for labels, value in snap.series("edgewax_node_sent_events_total"):
        kind = kinds.get((labels.get("pipeline", ""), labels.get("node", "")))
        if kind == "source":
            of(labels).events_in += value
        elif kind == "sink":
            of(labels).events_out += value
    for labels, value in snap.series("edgewax_source_bytes_total"):
        of(labels).source_bytes += value
    for labels, value in snap.series("edgewax_egress_bytes_total"):
        t = of(labels)
        t.egress_bytes = (t.egress_bytes or 0.0) + value
    for labels, value in snap.series("edgewax_outbox_depth_events"):
        t = of(labels)
        t.outbox_depth = (t.outbox_depth or 0.0) + value
    for labels, value in snap.series("edgewax_outbox_oldest_age_seconds"):
        t = of(labels)
        t.outbox_age = max(t.outbox_age or 0.0, value)
    for labels, value in snap.series("edgewax_node_errors_total"):
        of(labels).errors += value
    for labels, value in snap.series("edgewax_node_last_error_timestamp_seconds"):
        t = of(labels)
        if t.last_error is None or value > t.last_error[0]:
            t.last_error = (value, labels.get("node", ""), labels.get("reason", ""))
    for labels, value in snap.series("edgewax_source_progress_ratio"):
        of(labels).progress[labels.get("node", "")] = value
    out.pop("", None)
    return dict(sorted(out.items()))


@dataclass
class PipelineStatus:
    name: str
    in_rate: float | None
    out_rate: float | None
    saved: float | None
    """Bytes saved: 1 - egress bytes / source bytes; None without a remote sink."""
    outbox_depth: float | None
    outbox_age: float | None
    errors: float
    last_error: tuple[float, str, str] | None
    progress: dict[str, tuple[float, float | None]]
    """By source node: (ratio, seconds left or None)."""


class Tracker:
    """Keeps a few seconds of snapshots to turn counters into rates and progress into an ETA."""

    def __init__(self, window: float = _WINDOW) -> None:
        self.window = window
        self._history: deque[tuple[float, dict[str, Totals]]] = deque()
        self._progress_start: dict[tuple[str, str], tuple[float, float]] = {}
        self.now = 0.0

    def add(self, snap: Snapshot) -> None:
        current = totals(snap)
        self.now = snap.at
        self._history.append((snap.at, current))
        while len(self._history) > 2 and snap.at - self._history[1][0] >= self.window:
            self._history.popleft()
        for pipeline, t in current.items():
            for node, ratio in t.progress.items():
                self._progress_start.setdefault((pipeline, node), (snap.at, ratio))

    def status(self) -> list[PipelineStatus]:
        if not self._history:
            return []
        t1, current = self._history[-1]
        t0, first = self._history[0]
        dt = t1 - t0
        rows = []
        for name, cur in current.items():
            old = first.get(name)
            in_rate = out_rate = None
            if old is not None and dt > 0:
                in_rate = max(0.0, (cur.events_in - old.events_in) / dt)
                out_rate = max(0.0, (cur.events_out - old.events_out) / dt)
            saved = None
            if cur.egress_bytes is not None and cur.source_bytes > 0:
                saved = 1.0 - cur.egress_bytes / cur.source_bytes
            progress = {
                node: (ratio, self._eta(name, node, ratio, t1))
                for node, ratio in cur.progress.items()
            }
            rows.append(
                PipelineStatus(
                    name,
                    in_rate,
                    out_rate,
                    saved,
                    cur.outbox_depth,
                    cur.outbox_age,
                    cur.errors,
                    cur.last_error,
                    progress,
                )
            )
        return rows

    def _eta(self, pipeline: str, node: str, ratio: float, now: float) -> float | None:
        """Seconds left at the average pace since this source was first seen."""
        start = self._progress_start.get((pipeline, node))
        if ratio >= 1.0:
            return 0.0
        if start is None or now <= start[0] or ratio <= start[1]:
            return None
        return (1.0 - ratio) * (now - start[0]) / (ratio - start[1])


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100_000:
        return f"{value / 1000:.0f}k"
    return f"{value:.1f}"


def _count(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value < 100_000 else f"{value / 1000:.0f}k"


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def _ago(when: float, now: float) -> str:
    seconds = max(0.0, now - when)
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def render(
    rows: list[PipelineStatus], width: int = 100, now: float | None = None, bar: int = 20
) -> list[str]:
    """The status as plain lines, each cut to `width` (no colours: fit for logs and tests)."""
    when = time.time() if now is None else now
    lines = [
        f"{'pipeline':<12} {'in/s':>6} {'out/s':>8}  {'saved':<6}  {'outbox':<6} "
        f"{'errors':>6}  last error"
    ]
    for r in rows:
        saved = f"{r.saved:.0%}" if r.saved is not None else "-"
        outbox = _count(r.outbox_depth)
        if r.outbox_age:
            outbox += f" ({_duration(r.outbox_age)})"
        last = "-"
        if r.last_error is not None:
            at, node, reason = r.last_error
            last = f"{node}: {reason} {_ago(at, when)}"
        lines.append(
            f"{r.name:<12} {_rate(r.in_rate):>6} {_rate(r.out_rate):>8}  {saved:<6}  "
            f"{outbox:<6} {_count(r.errors):>6}  {last}"
        )
        for node, (ratio, eta) in r.progress.items():
            filled = round(max(0.0, min(1.0, ratio)) * bar)
            eta_text = "done" if ratio >= 1.0 else f"ETA {_duration(eta)}"
            lines.append(
                f"  {node:<10} [{'#' * filled}{'-' * (bar - filled)}] {ratio:>4.0%}  {eta_text}"
            )
    return [line[:width].rstrip() for line in lines]
