"""`edgewax explain`: what can leave the device, and (with `--replay`) how much would have.

Without replay it reads the validated spec: per remote sink, the paths that feed it, the fields
that can reach it and which of them are raw. With replay it runs the pipelines over their recorded
files as fast as possible, every sink replaced by a counter (nothing is written or sent), and
reports per remote sink the events and bytes that would have left, projected per day from the
data's event-time span, and per node what it dropped and why.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from edgewax.config import privacy
from edgewax.config.spec import NodeSpec, PipelineSpec, Spec
from edgewax.errors import EdgewaxError
from edgewax.events import Event, encode
from edgewax.operators.base import NodeOptions, Sink, SinkWriter, Transform

FILE_SOURCES = ("source.jsonl", "source.csv")


def _remote(spec: NodeSpec) -> bool:
    return spec.cls.kind == "sink" and bool(getattr(spec.cls, "remote", False))


def describe(spec: Spec, pipelines: list[PipelineSpec]) -> str:
    """Per pipeline and remote sink: paths, the fields that can leave, which are raw."""
    lines = []
    for p in pipelines:
        lines.append(f"pipeline {p.name}")
        raw = privacy.raw_fields(p.nodes)
        sinks = [n for n in p.nodes if _remote(n)]
        if not sinks:
            lines.append("  no remote sink: nothing leaves the device")
        for s in sinks:
            allow = bool(getattr(s.options, "allow_raw", False))
            lines.append(f"  remote sink {s.id} ({s.type_name}, allow_raw: {str(allow).lower()})")
            for path in privacy.paths_to(p.nodes, s.id):
                lines.append(f"    path: {' -> '.join(path)}")
            if s.fields is None:
                lines.append("    fields: not known before run time (an upstream node does not")
                lines.append("            declare its fields); raw fields are tracked regardless")
            else:
                lines.append(f"    fields: {', '.join(sorted(s.fields))}")
            leaking = raw.get(s.id, {})
            if not leaking:
                lines.append("    raw: none")
            for name, path in sorted(leaking.items()):
                lines.append(f"    raw: {name} via {' -> '.join([*path, s.id])}")
    return "\n".join(lines) + "\n"


class Tally:
    """What a replaced sink or a span tracker saw (shared by its workers)."""

    def __init__(self) -> None:
        self.events = 0
        self.bytes = 0
        self.ts_min = math.inf
        self.ts_max = -math.inf


class _TallyOptions(NodeOptions):
    tally: Tally


class _CountingWriter(SinkWriter):
    def __init__(self, node: Sink) -> None:
        self.tally: Tally = node.options.tally
        self.sent = node.ctx.stats.sent.inc

    def write(self, batch: list[Event]) -> None:
        t = self.tally
        t.events += len(batch)
        t.bytes += sum(len(encode(e).encode("utf-8")) for e in batch)
        self.sent(len(batch))


class CountingSink(Sink):
    """Counts events and their encoded bytes instead of writing them (replay only)."""

    type_name = "explain.count"
    Options: ClassVar[type[NodeOptions]] = _TallyOptions

    def open(self) -> SinkWriter:
        return _CountingWriter(self)


class SpanTracker(Transform):
    """Notes the least and greatest event time of a source's events (replay only)."""

    type_name = "explain.span"
    Options: ClassVar[type[NodeOptions]] = _TallyOptions

    def process(self, batch: list[Event]) -> list[Event]:
        t: Tally = self.options.tally
        if batch:
            times = [e["ts"] for e in batch]
            t.events += len(batch)
            t.ts_min = min(t.ts_min, *times)
            t.ts_max = max(t.ts_max, *times)
        return batch


@dataclasses.dataclass
class _Plan:
    pipeline: PipelineSpec
    sinks: dict[str, Tally]
    spans: dict[str, Tally]


def _plan(p: PipelineSpec) -> _Plan | str:
    """The pipeline rewired for a replay, or why it cannot be replayed."""
    others = [n for n in p.nodes if n.cls.kind == "source" and n.type_name not in FILE_SOURCES]
    if others:
        names = ", ".join(f"{n.id} ({n.type_name})" for n in others)
        return f"not replayed: it reads live sources ({names}); replay needs file sources"
    sinks: dict[str, Tally] = {}
    spans: dict[str, Tally] = {}
    nodes: list[NodeSpec] = []
    renamed: dict[str, str] = {}
    for n in p.nodes:
        inputs = [renamed.get(i, i) for i in n.inputs]
        if n.cls.kind == "source":
            options = n.options.model_copy(update={"speed": 0.0})
            nodes.append(dataclasses.replace(n, options=options, consumers=[]))
            tracker = f"{n.id}~span"
            spans[n.id] = Tally()
            nodes.append(
                NodeSpec(
                    tracker,
                    SpanTracker.type_name,
                    SpanTracker,
                    _TallyOptions(tally=spans[n.id]),
                    [n.id],
                    n.mark,
                    fields=n.fields,
                )
            )
            renamed[n.id] = tracker
        elif n.cls.kind == "sink":
            sinks[n.id] = Tally()
            options = _TallyOptions(tally=sinks[n.id])
            nodes.append(
                dataclasses.replace(
                    n,
                    type_name=CountingSink.type_name,
                    cls=CountingSink,
                    options=options,
                    inputs=inputs,
                )
            )
        else:
            nodes.append(dataclasses.replace(n, inputs=inputs, consumers=[]))
    by_id = {n.id: n for n in nodes}
    for n in nodes:
        for i in n.inputs:
            by_id[i.partition(".")[0]].consumers.append(n.id)
    return _Plan(dataclasses.replace(p, nodes=nodes), sinks, spans)


def replay(spec: Spec, pipelines: list[PipelineSpec]) -> str:
    """Run the pipelines over their files with counting sinks; the report as text."""
    from edgewax.flows.compiler import compile_spec
    from edgewax.testing import run_compiled

    plans: dict[str, _Plan | str] = {p.name: _plan(p) for p in pipelines}
    runnable = {name: plan for name, plan in plans.items() if isinstance(plan, _Plan)}
    if not runnable:
        raise EdgewaxError("nothing to replay: " + "; ".join(f"{k}: {v}" for k, v in plans.items()))
    replay_spec = dataclasses.replace(
        spec, pipelines={name: plan.pipeline for name, plan in runnable.items()}
    )
    compiled = compile_spec(replay_spec)
    run_compiled(compiled)

    lines = []
    for p in pipelines:
        plan = plans[p.name]
        lines.append(f"pipeline {p.name}")
        if isinstance(plan, str):
            lines.append(f"  {plan}")
            continue
        lo = min((t.ts_min for t in plan.spans.values()), default=math.inf)
        hi = max((t.ts_max for t in plan.spans.values()), default=-math.inf)
        read = sum(t.events for t in plan.spans.values())
        span = hi - lo if hi >= lo else 0.0
        lines.append(f"  replayed {read} events spanning {_duration(span)} of event time")
        per_day = 86400.0 / span if span > 0 else None
        remote = [n for n in p.nodes if _remote(n)]
        if not remote:
            lines.append("  no remote sink: nothing would have left the device")
        for n in remote:
            t = plan.sinks[n.id]
            line = f"  remote sink {n.id}: {t.events} events, {_bytes(t.bytes)}"
            if per_day is not None:
                line += f"; per day: {t.events * per_day:,.0f} events, {_bytes(t.bytes * per_day)}"
            lines.append(line)
        for n in p.nodes:
            if n.cls.kind != "transform":
                continue
            stats = compiled.stats[(p.name, n.id)]
            dropped = {r: int(v) for r, v in sorted(stats.discarded().items()) if v}
            if not dropped and not n.type_name.startswith("egress."):
                continue
            received = int(stats.received._value.get())
            sent = int(stats.sent._value.get())
            why = ", ".join(f"{v} {r}" for r, v in dropped.items()) or "nothing"
            lines.append(f"  {n.id} ({n.type_name}): in {received}, out {sent}, dropped: {why}")
    return "\n".join(lines) + "\n"


def _bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.0f} s"


def explain(spec: Spec, pipelines: list[PipelineSpec], run_replay: bool) -> str:
    return replay(spec, pipelines) if run_replay else describe(spec, pipelines)


__all__ = ["describe", "explain", "replay"]
