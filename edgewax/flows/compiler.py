"""Spec → Bytewax `Dataflow`: one step per node, fan-out and fan-in from `inputs`.

Every node gets the same context (counters, dead letters, stop flag); the compiler decides only the
wiring and whether a node may change its input events in place (not when another node reads them).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream

from edgewax import __version__
from edgewax.config.spec import PipelineSpec, Spec, split_ref
from edgewax.errors import EdgewaxError
from edgewax.flows.deadletters import DeadLetters
from edgewax.health import Health
from edgewax.metrics import Metrics, NodeStats
from edgewax.operators.base import NodeContext, Sink, Source, Transform


@dataclass
class Compiled:
    """A dataflow ready to run, with what its nodes count and the flag that stops its sources."""

    flow: Dataflow
    spec: Spec
    pipelines: list[PipelineSpec]
    metrics: Metrics
    dead_letters: DeadLetters
    stop: threading.Event
    stats: dict[tuple[str, str], NodeStats] = field(default_factory=dict)
    health: Health = field(default_factory=Health)
    keep_state: threading.Event = field(default_factory=threading.Event)
    """Set by the runner when recovery is on: see `NodeContext.keep_state`."""


def step_id(pipeline: str, node: str) -> str:
    """Bytewax step ids may not hold `.`; ours are `pipeline/node` (ids never hold `/`)."""
    return f"{pipeline}/{node}"


def select_pipelines(spec: Spec, names: list[str] | None) -> list[PipelineSpec]:
    if not names:
        return list(spec.pipelines.values())
    missing = [n for n in names if n not in spec.pipelines]
    if missing:
        raise EdgewaxError(
            f"{spec.file}: no pipeline named {', '.join(missing)} "
            f"(the file has: {', '.join(spec.pipelines)})"
        )
    return [spec.pipelines[n] for n in names]


def compile_spec(
    spec: Spec,
    pipelines: list[str] | None = None,
    metrics: Metrics | None = None,
    stop: threading.Event | None = None,
    workers: int = 1,
) -> Compiled:
    """Build the Bytewax dataflow for the chosen pipelines (default: all of them).

    `workers` is the number of workers in the whole run (threads x processes): a source with
    fewer partitions is redistributed as `settings.redistribute` says.
    """
    metrics = metrics or Metrics()
    stop = stop or threading.Event()
    dl = spec.settings.dead_letter
    dl_path = spec.state_dir / dl.path if dl.path else None
    dead_letters = DeadLetters(dl_path, dl.max_bytes)
    chosen = select_pipelines(spec, pipelines)
    flow = Dataflow("edgewax")
    compiled = Compiled(flow, spec, chosen, metrics, dead_letters, stop)
    metrics.build_info.labels(__version__, spec.sha256).set(1)
    for pipeline in chosen:
        _compile_pipeline(compiled, pipeline, workers)
    return compiled


def redistribute_batches(step: str, up: Stream[Any]) -> Stream[Any]:
    """Bytewax's `redistribute`, moving whole batches (one pickle and route per batch)."""
    batches = op.flat_map_batch(f"{step}/pack", up, _pack)
    spread = op.redistribute(step, batches)
    return op.flat_map_batch(f"{step}/unpack", spread, _unpack)


def _pack(batch: list[Any]) -> list[list[Any]]:
    return [batch] if batch else []


def _unpack(batches: list[list[Any]]) -> list[Any]:
    return batches[0] if len(batches) == 1 else [e for b in batches for e in b]


def should_redistribute(spec: Spec, pipeline: PipelineSpec) -> bool:
    """Whether a pipeline's small sources are spread over the workers (`settings.redistribute`)."""
    mode = spec.settings.redistribute
    if mode != "auto":
        return mode == "always"
    classes = [n.cls for n in pipeline.nodes]
    return any(c.spread for c in classes) and not any(c.order_sensitive for c in classes)


def _compile_pipeline(c: Compiled, pipeline: PipelineSpec, workers: int = 1) -> None:
    streams: dict[str, Stream[Any]] = {}
    spread = workers > 1 and should_redistribute(c.spec, pipeline)
    by_id = {n.id: n for n in pipeline.nodes}
    # Events another branch also holds must be copied before a node changes them. Nodes such as
    # `filter` pass the same objects on, so a fan-out anywhere upstream counts, not only at the
    # input itself; a named output (`win.late`) may be the events another node also reads.
    shared_in: dict[str, bool] = {}
    for n in pipeline.nodes:  # in topological order
        shared_in[n.id] = any(
            len(by_id[split_ref(i)[0]].consumers) > 1
            or split_ref(i)[1] is not None
            or shared_in[split_ref(i)[0]]
            for i in n.inputs
        )
    for n in pipeline.nodes:
        sid = step_id(pipeline.name, n.id)
        stats = c.metrics.node(pipeline.name, n.id, n.type_name)
        c.stats[(pipeline.name, n.id)] = stats
        c.metrics.node_info.labels(pipeline.name, n.id, n.type_name, n.cls.kind).set(1)
        ctx = NodeContext(
            pipeline=pipeline.name,
            node_id=n.id,
            type_name=n.type_name,
            step_id=sid,
            base_dir=c.spec.base_dir,
            state_dir=c.spec.state_dir,
            stats=stats,
            dead_letters=c.dead_letters,
            stop=c.stop,
            health=c.health,
            keep_state=c.keep_state,
            shared_input=shared_in[n.id],
        )
        node = n.cls(n.options, ctx)
        if isinstance(node, Source):
            stream = node.build(c.flow)
            if spread and (node.partitions is None or node.partitions < workers):
                # One camera or file is read by one worker: hand its batches round the others.
                stream = redistribute_batches(f"{sid}/redistribute", stream)
            streams[n.id] = stream
            continue
        ups = [streams[i] for i in n.inputs]
        up = ups[0] if len(ups) == 1 else op.merge(f"{sid}/merge", *ups)
        if isinstance(node, Transform):
            streams[n.id] = node.build(up)
            for name, stream in getattr(node, "extra_outputs", {}).items():
                streams[f"{n.id}.{name}"] = stream
        elif isinstance(node, Sink):
            node.build(up)
        else:  # pragma: no cover - the registry only admits the three kinds
            raise TypeError(f"{n.type_name} is not a Source, Transform or Sink")
