"""Keyed tumbling window (count / mean / max) over N events: edgewax vs Bytewax vs plain Python.

Three contestants, side by side in one run, each reading the same JSON Lines file:

- `edgewax`: `source.jsonl -> window.tumbling -> sink.jsonl` from YAML;
- `bytewax fold_window`: the same edgewax file source, then `key_on` and Bytewax's own
  `fold_window` (EventClock with no system wait, TumblingWindower) and the same aggregates;
- `plain python`: a loop over the lines with `json.loads` and a dict of accumulators.

A second table runs the window steps alone on events already in memory (parsing left out), which is
what the node itself costs. Bar: edgewax >= 2x fold_window and >= 1,000,000 events/s.

    python benchmarks/windows.py                  # 1,000,000 events, one run each
    python benchmarks/windows.py --events 200000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import bytewax.operators as op
import numpy as np
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

from edgewax.config.diagnostics import Mark
from edgewax.config.spec import NodeSpec, PipelineSpec, Spec, load_spec_text
from edgewax.flows.compiler import compile_spec
from edgewax.flows.deadletters import DeadLetters
from edgewax.metrics import Metrics
from edgewax.operators.base import NodeContext
from edgewax.operators.registry import node_types
from edgewax.testing import _QUIET, _ListOptions, _ListSource, run_compiled

KEYS = 10
SIZE = 10.0  # seconds
RATE = 1000.0  # events per second of event time, over all keys
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def make_events(n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    ts = np.arange(n) / RATE
    keys = [f"k{i}" for i in rng.integers(0, KEYS, n)]
    vs = rng.normal(20, 5, n).round(3)
    return [{"ts": float(t), "key": k, "v": float(v)} for t, k, v in zip(ts, keys, vs)]


class _Null(DynamicSink[Any]):
    def __init__(self) -> None:
        self.count = 0

    def build(self, step_id: str, worker_index: int, worker_count: int) -> Any:
        outer = self

        class Part(StatelessSinkPartition[Any]):
            def write_batch(self, items: list[Any]) -> None:
                outer.count += len(items)

        return Part()


def ours_file(path: Path) -> int:
    text = f"""
version: 1
settings: {{dead_letter: {{path: null}}}}
pipelines:
  bench:
    nodes:
      - {{id: src, type: source.jsonl, path: {path.name}}}
      - {{id: win, type: window.tumbling, size: {SIZE}, aggregate: {{mean: v, max: v}}}}
      - {{id: out, type: sink.jsonl, path: {path.stem}-out.jsonl}}
"""
    compiled = compile_spec(load_spec_text(text, path.parent))
    run_compiled(compiled)
    return int(compiled.stats[("bench", "win")].sent._value.get())


def _fold(flow: Dataflow, stream: Any) -> _Null:
    keyed = op.key_on("key", stream, lambda e: e["key"])
    clock = EventClock(
        lambda e: EPOCH + timedelta(seconds=e["ts"]), wait_for_system_duration=timedelta(0)
    )
    windower = TumblingWindower(length=timedelta(seconds=SIZE), align_to=EPOCH)

    def folder(acc: list[float], e: dict[str, Any]) -> list[float]:
        v = e["v"]
        acc[0] += 1
        acc[1] += v
        if v > acc[2]:
            acc[2] = v
        return acc

    def merger(a: list[float], b: list[float]) -> list[float]:
        return [a[0] + b[0], a[1] + b[1], max(a[2], b[2])]

    out = fold_window("fold", keyed, clock, windower, lambda: [0, 0.0, -math.inf], folder, merger)
    summaries = op.map("summary", out.down, lambda kv: (kv[0], kv[1][1][1] / kv[1][1][0]))
    sink = _Null()
    op.output("out", summaries, sink)
    return sink


def bytewax_file(path: Path) -> int:
    spec = load_spec_text(
        f"""
version: 1
pipelines:
  b:
    nodes:
      - {{id: src, type: source.jsonl, path: {path.name}}}
      - {{id: out, type: sink.stdout}}
""",
        path.parent,
    )
    src = spec.pipelines["b"].nodes[0]
    metrics = Metrics()
    ctx = NodeContext(
        "b",
        "src",
        src.type_name,
        "src",
        path.parent,
        path.parent,
        metrics.node("b", "src", src.type_name),
        DeadLetters(None),
        threading.Event(),
    )
    flow = Dataflow("fold")
    stream = src.cls(src.options, ctx).build(flow)  # type: ignore[attr-defined]
    sink = _fold(flow, stream)
    run_main(flow)
    return sink.count


def python_file(path: Path) -> int:
    acc: dict[tuple[str, int], list[float]] = {}
    with open(path, "rb") as f:
        for line in f:
            e = json.loads(line)
            k = (e["key"], math.floor(e["ts"] / SIZE))
            a = acc.get(k)
            if a is None:
                acc[k] = a = [0, 0.0, -math.inf]
            v = e["v"]
            a[0] += 1
            a[1] += v
            if v > a[2]:
                a[2] = v
    return len({k: (a[0], a[1] / a[0], a[2]) for k, a in acc.items()})


def ours_memory(events: list[dict[str, Any]]) -> int:
    cls = node_types()["window.tumbling"]
    mark = Mark(1, 1)
    options = cls.Options.model_validate({"size": SIZE, "aggregate": {"mean": "v", "max": "v"}})
    src = NodeSpec(
        "src", "testing.list", _ListSource, _ListOptions.model_construct(events=events), [], mark
    )
    win = NodeSpec("win", cls.type_name, cls, options, ["src"], mark)
    spec_sink = node_types()["sink.stdout"]
    out = NodeSpec("out", "sink.stdout", spec_sink, spec_sink.Options(), ["win"], mark)
    src.consumers, win.consumers = ["win"], ["out"]
    spec = Spec("<bench>", Path.cwd(), _QUIET, {"m": PipelineSpec("m", [src, win], mark)}, "")
    # Count the summaries with a null sink rather than print them.
    spec.pipelines["m"].nodes.append(out)
    compiled = compile_spec(spec)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        run_compiled(compiled)
    return int(compiled.stats[("m", "win")].sent._value.get())


def bytewax_memory(events: list[dict[str, Any]]) -> int:
    flow = Dataflow("fold-mem")
    stream = op.input("in", flow, TestingSource(events, batch_size=1000))
    sink = _fold(flow, stream)
    run_main(flow)
    return sink.count


def python_memory(events: list[dict[str, Any]]) -> int:
    acc: dict[tuple[str, int], list[float]] = {}
    for e in events:
        k = (e["key"], math.floor(e["ts"] / SIZE))
        a = acc.get(k)
        if a is None:
            acc[k] = a = [0, 0.0, -math.inf]
        v = e["v"]
        a[0] += 1
        a[1] += v
        if v > a[2]:
            a[2] = v
    return len(acc)


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    t0 = time.perf_counter()
    n = fn()
    return time.perf_counter() - t0, n


def table(title: str, n: int, rows: list[tuple[str, float, int]]) -> None:
    base = dict((name, s) for name, s, _ in rows)["bytewax fold_window"]
    print(f"\n{title}")
    print(
        f"{'contestant':<22} {'seconds':>8} {'events/s':>12} {'windows':>8} {'vs fold_window':>15}"
    )
    for name, s, windows in rows:
        print(f"{name:<22} {s:>8.2f} {n / s:>12,.0f} {windows:>8} {base / s:>14.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.events
    events = make_events(n)
    print(
        f"{n:,} events, {KEYS} keys, tumbling {SIZE:.0f} s windows, count/mean/max; "
        f"{os.cpu_count()} cores (shared with other work)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        path.write_text("".join(json.dumps(e) + "\n" for e in events))
        rows = []
        for name, fn in (
            ("edgewax window", lambda: ours_file(path)),
            ("bytewax fold_window", lambda: bytewax_file(path)),
            ("plain python", lambda: python_file(path)),
        ):
            s, w = timed(fn)
            rows.append((name, s, w))
        table("from the JSON Lines file (parsing included)", n, rows)
    rows = []
    for name, fn in (
        ("edgewax window", lambda: ours_memory(events)),
        ("bytewax fold_window", lambda: bytewax_memory(events)),
        ("plain python", lambda: python_memory(events)),
    ):
        s, w = timed(fn)
        rows.append((name, s, w))
    table("events already in memory (the window steps alone)", n, rows)
    ours = rows[0][1]
    fold = rows[1][1]
    print(
        f"\nbar: edgewax >= 2x fold_window: {fold / ours:.2f}x; >= 1M events/s: {n / ours:,.0f}/s"
    )


if __name__ == "__main__":
    main()
