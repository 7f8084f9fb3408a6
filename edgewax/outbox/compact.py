"""Compaction: during a long outage, old backlog becomes one summary event per key and window.

The summary's fields are declared in YAML (`compact.aggregate`, e.g. `{count: "*", mean:
[temperature], max: temperature}`) and computed here with plain Python: no expressions run.

>>> from edgewax.outbox.options import CompactOptions
>>> opts = CompactOptions(after=60, window=10, aggregate={"count": "*", "mean": "t", "max": ["t"]})
>>> events = [{"ts": 1.0, "key": "a", "t": 2}, {"ts": 5.0, "key": "a", "t": 4},
...           {"ts": 12.0, "key": "a", "t": 9}]
>>> for s in summarize(events, opts): print(s)  # doctest: +NORMALIZE_WHITESPACE
{'ts': 0.0, 'key': 'a', 'window_end': 10.0, 'compacted': True,
 'count': 2, 't_mean': 3.0, 't_max': 4}
{'ts': 10.0, 'key': 'a', 'window_end': 20.0, 'compacted': True,
 'count': 1, 't_mean': 9.0, 't_max': 9}
"""

from __future__ import annotations

import math
from typing import Any

from edgewax.events import Event
from edgewax.outbox.options import CompactOptions


def window_of(ts: float, size: float) -> float:
    """Start of the tumbling window that holds `ts`."""
    return math.floor(ts / size) * size


def _numbers(events: list[Event], field: str) -> list[float]:
    out = []
    for e in events:
        v = e.get(field)
        if (
            isinstance(v, (int, float))
            and not isinstance(v, bool)
            and not (isinstance(v, float) and math.isnan(v))
        ):
            out.append(v)
    return out


def _aggregate(kind: str, field: str, events: list[Event]) -> Any:
    if kind == "count":
        return len(events) if field == "*" else sum(1 for e in events if e.get(field) is not None)
    if kind == "first":
        return next((e[field] for e in events if field in e), None)
    if kind == "last":
        return next((e[field] for e in reversed(events) if field in e), None)
    values = _numbers(events, field)
    if not values:
        return None
    if kind == "sum":
        return sum(values)
    if kind == "mean":
        return sum(values) / len(values)
    if kind == "min":
        return min(values)
    return max(values)


def summary_fields(opts: CompactOptions) -> list[tuple[str, str, str]]:
    """(output name, aggregate, field) for each declared aggregate."""
    out: list[tuple[str, str, str]] = []
    for kind, fields in opts.aggregate.items():
        for f in [fields] if isinstance(fields, str) else fields:
            name = "count" if (kind == "count" and f == "*") else f"{f}_{kind}"
            out.append((name, kind, f))
    return out


def summarize(events: list[Event], opts: CompactOptions) -> list[Event]:
    """One summary per (key, window) of `events` (in arrival order), ordered by key and window."""
    groups: dict[tuple[str, float], list[Event]] = {}
    for e in events:
        ts = e.get("ts")
        ts = float(ts) if isinstance(ts, (int, float)) else 0.0
        groups.setdefault((str(e.get("key", "")), window_of(ts, opts.window)), []).append(e)
    spec = summary_fields(opts)
    out = []
    for (key, start), members in sorted(groups.items()):
        s: Event = {
            "ts": start,
            "key": key,
            "window_end": start + opts.window,
            "compacted": True,
        }
        for name, kind, f in spec:
            s[name] = _aggregate(kind, f, members)
        out.append(s)
    return out
