"""Plain-Python reference windows (item by item, as the docs define them) for the tests."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any


def _stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    vs = [r["v"] for r in rows]
    n = len(vs)
    mean = sum(vs) / n
    return {
        "count": n,
        "v_sum": sum(vs),
        "v_mean": mean,
        "v_min": min(vs),
        "v_max": max(vs),
        "v_std": math.sqrt(sum((v - mean) ** 2 for v in vs) / n),
        "v_first": min(rows, key=lambda r: r["ts"])["v"],
    }


def fixed(events: list[dict[str, Any]], size: float, hop: float, lateness: float):
    """(summaries, late events) of tumbling/sliding windows, epoch-aligned."""
    out, late = [], []
    state: dict[str, tuple[float, dict[int, list[dict[str, Any]]]]] = {}
    for e in events:
        mx, wins = state.get(e["key"], (-math.inf, defaultdict(list)))
        mx = max(mx, e["ts"])
        wm = mx - lateness
        k_last = math.floor(e["ts"] / hop)
        ks = [
            k
            for k in range(k_last - math.ceil(size / hop), k_last + 1)
            if k * hop <= e["ts"] < k * hop + size and k * hop + size > wm
        ]
        if not ks:
            late.append(e)
        for k in ks:
            wins[k].append(e)
        for k in sorted(wins):
            if k * hop + size <= wm:
                out.append(
                    {
                        "key": e["key"],
                        "window_start": k * hop,
                        "window_end": k * hop + size,
                        **_stats(wins.pop(k)),
                    }
                )
        state[e["key"]] = (mx, wins)
    for key, (_, wins) in state.items():
        for k in sorted(wins):
            out.append(
                {
                    "key": key,
                    "window_start": k * hop,
                    "window_end": k * hop + size,
                    **_stats(wins[k]),
                }
            )
    return out, late


def sessions(events: list[dict[str, Any]], gap: float, lateness: float):
    out, late = [], []
    state: dict[str, tuple[float, list[list[dict[str, Any]]]]] = {}

    def span(s: list[dict[str, Any]]) -> tuple[float, float]:
        return min(r["ts"] for r in s), max(r["ts"] for r in s)

    for e in events:
        mx, open_ = state.get(e["key"], (-math.inf, []))
        t = e["ts"]
        mx = max(mx, t)
        wm = mx - lateness
        hits = [
            s for s in open_ if span(s)[0] - gap < t < span(s)[1] + gap and span(s)[1] + gap > wm
        ]
        if not hits:
            if t + gap <= wm:
                late.append(e)
            else:
                open_.append([e])
        else:
            merged = [r for s in hits for r in s] + [e]
            open_ = [s for s in open_ if not any(s is h for h in hits)] + [merged]
        still = []
        for s in open_:
            lo, hi = span(s)
            if hi + gap <= wm:
                out.append({"key": e["key"], "window_start": lo, "window_end": hi, **_stats(s)})
            else:
                still.append(s)
        state[e["key"]] = (mx, still)
    for key, (_, open_) in state.items():
        for s in open_:
            lo, hi = span(s)
            out.append({"key": key, "window_start": lo, "window_end": hi, **_stats(s)})
    return out, late


def counts(events: list[dict[str, Any]], size: int, hop: int):
    out = []
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_key[e["key"]].append(e)
    for key, rows in by_key.items():
        k = 0
        while k * hop < len(rows):
            chunk = rows[k * hop : k * hop + size]
            out.append(
                {
                    "key": key,
                    "window_start": min(r["ts"] for r in chunk),
                    "window_end": max(r["ts"] for r in chunk),
                    **_stats(chunk),
                }
            )
            k += 1
    return out, []
