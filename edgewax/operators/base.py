"""The small core every node type is built from: sources, batch transforms and sinks.

A node type is a class with an `Options` model (the single declaration of its fields: validation,
JSON Schema and docs all come from it) and one of three shapes:

- `Source`: returns a Bytewax source whose partitions emit lists of events;
- `Transform`: `process(batch) -> batch`, run by Bytewax's `flat_map_batch`; the compiler wraps it
  with the shared counters and the dead-letter guard, so a node only says what it does;
- `Sink`: `open()` returns a writer that takes batches of events.

Stateful and windowed nodes override `Transform.build` and use the same context.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import bytewax.operators as op
from bytewax.dataflow import Stream
from pydantic import BaseModel, ConfigDict

from edgewax.events import Event
from edgewax.flows.deadletters import DeadLetters
from edgewax.health import Health
from edgewax.metrics import NodeStats

Kind = Literal["source", "transform", "sink"]


@dataclass(frozen=True)
class FieldInfo:
    """What validation knows of a field: its dtype and shape, where a node declares them.

    `shape` is one event's shape, without a batch dimension (a 224x224 RGB frame is
    `(224, 224, 3)`; `None` in it is a size known only at run time). `raw` marks raw data (camera
    frames, raw sample arrays, and tensors made from them): the privacy lint refuses a path that
    carries a raw field to a remote sink.
    """

    dtype: str | None = None
    shape: tuple[int | None, ...] | None = None
    raw: bool = False


Fields = Mapping[str, FieldInfo] | None
"""The fields a node's events carry; None when not known before run time (e.g. JSON lines)."""

BASE_FIELDS: dict[str, FieldInfo] = {"ts": FieldInfo("float64"), "key": FieldInfo("str")}


@dataclass(frozen=True)
class Problem:
    """A validate-time problem with a node's options; `loc` is the option path it points at."""

    loc: tuple[str | int, ...]
    message: str
    hint: str | None = None


class NodeOptions(BaseModel):
    """Base of every node type's options: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


@dataclass
class NodeContext:
    """What a node gets from the compiler: who it is, where files go, its counters."""

    pipeline: str
    node_id: str
    type_name: str
    step_id: str
    base_dir: Path
    state_dir: Path
    stats: NodeStats
    dead_letters: DeadLetters
    stop: threading.Event = field(default_factory=threading.Event)
    health: Health = field(default_factory=Health)
    """Readiness checks for `/readyz`: `ctx.health.check(f"{pipeline}/{node}", "source")`."""
    shared_input: bool = False
    """True when another node reads the same upstream events: copy before changing them."""
    keep_state: threading.Event = field(default_factory=threading.Event)
    """Set when the run keeps recovery snapshots. Then a stop by signal is a pause, not an end:
    stateful nodes keep their state at end of stream (`stopping_to_resume()`) instead of
    flushing it, and the restart carries on exactly where the snapshot left off."""

    def stopping_to_resume(self) -> bool:
        """True at end of stream when it is a stop by signal that a restart will resume."""
        return self.stop.is_set() and self.keep_state.is_set()

    def path(self, p: str | Path) -> Path:
        """A path from the config, relative to the config file's folder."""
        path = Path(p).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def dead_letter(self, reason: str, error: str, event: Any) -> None:
        """Keep an event the node cannot handle: counted as an error and a discard, and written."""
        self.stats.errors.inc()
        self.stats.dead_letters.inc()
        self.stats.discard(reason)
        self.stats.error_seen(reason)
        self.dead_letters.put(self.pipeline, self.node_id, reason, error, event)


class Node:
    """Base of all node types. The first docstring line is the summary `edgewax nodes` shows."""

    type_name: ClassVar[str] = ""
    kind: ClassVar[Kind]
    Options: ClassVar[type[NodeOptions]] = NodeOptions
    spread: ClassVar[bool] = False
    """Heavy native work that releases the GIL (inference): worth spreading over every worker,
    so a single-partition source is redistributed before it when more workers than partitions
    run (`settings.redistribute: auto`)."""
    order_sensitive: ClassVar[bool] = False
    """Per-key state that depends on arrival order (windows, egress): `auto` does not
    redistribute a pipeline that has one, since that would reorder a key's events."""
    outputs: ClassVar[tuple[str, ...]] = ()
    """Named outputs besides the main one, read as `inputs: [<id>.<name>]` (e.g. `win.late`);
    `build` puts their streams in `self.extra_outputs`."""

    def __init__(self, options: Any, ctx: NodeContext) -> None:
        self.options = options
        self.ctx = ctx

    @classmethod
    def summary(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0].strip() if doc else ""

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        """The fields this node's events carry, given its input's (unknown stays unknown)."""
        return fields_in

    @classmethod
    def output_fields(cls, name: str, options: Any, fields_in: Fields) -> Fields:
        """The fields of the named output `name` (default: the input's)."""
        return fields_in

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        """Validate-time checks beyond the options model: files, referenced fields."""
        return []


class Source(Node):
    """A node with no inputs that produces events."""

    kind: ClassVar[Kind] = "source"

    partitions: int | None = None
    """After `build`: how many partitions the Bytewax source has (None: not known)."""

    def build(self, flow: Any) -> Stream[Event]:
        source = self.source()
        list_parts = getattr(source, "list_parts", None)
        self.partitions = len(list_parts()) if list_parts is not None else None
        return op.input(self.ctx.step_id, flow, source)

    def source(self) -> Any:
        """The Bytewax source (see `edgewax.operators.sources.partitions`)."""
        raise NotImplementedError


def failure_reason(exc: BaseException) -> tuple[str, str]:
    """A counter-friendly reason and a readable message for an exception raised on an event."""
    if isinstance(exc, KeyError):
        return "missing_field", f"missing field {exc}"
    if isinstance(exc, (TypeError, ValueError, ArithmeticError, IndexError)):
        return "bad_value", f"{type(exc).__name__}: {exc}"
    return "error", f"{type(exc).__name__}: {exc}"


def guarded(
    fn: Callable[[list[Event]], list[Event]], ctx: NodeContext
) -> Callable[[list[Event]], list[Event]]:
    """Run `fn` on a whole batch; if it raises, rerun item by item and dead-letter the failures.

    The fast path costs two counter increments a batch. `fn` must not change an event before it
    knows the whole batch succeeds, so that the rerun sees the events as they came.
    """
    received = ctx.stats.received.inc
    sent = ctx.stats.sent.inc

    def step(batch: list[Event]) -> list[Event]:
        received(len(batch))
        try:
            out = fn(batch)
        except Exception:
            out = []
            for item in batch:
                try:
                    out.extend(fn([item]))
                except Exception as e:
                    reason, message = failure_reason(e)
                    ctx.dead_letter(reason, message, item)
        sent(len(out))
        return out

    return step


class Transform(Node):
    """A node that turns batches of events into batches of events."""

    kind: ClassVar[Kind] = "transform"

    def process(self, batch: list[Event]) -> list[Event]:
        raise NotImplementedError

    def build(self, up: Stream[Event]) -> Stream[Event]:
        return op.flat_map_batch(self.ctx.step_id, up, guarded(self.process, self.ctx))


class SinkWriter:
    """Writes batches for one sink (one writer per process, shared by its workers)."""

    def write(self, batch: list[Event]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        return None


class Sink(Node):
    """A node that takes events out of the dataflow."""

    kind: ClassVar[Kind] = "sink"
    remote: ClassVar[bool] = False
    """True for sinks whose events leave the device (HTTP, MQTT, Kafka): the privacy lint and
    `edgewax explain` look at these; such sinks take an `allow_raw: bool` option."""

    resumable: ClassVar[bool] = False
    """True for sinks whose writer can resume from a snapshot (`open_resumable`): they run as
    one Bytewax partition (one writer in the whole cluster) with their position in recovery."""

    def open(self) -> SinkWriter:
        raise NotImplementedError

    def open_resumable(self, state: Any) -> SinkWriter:
        """A writer that continues from `state` (None: a fresh start); see `sinks.partitioned`."""
        raise NotImplementedError

    def build(self, up: Stream[Event]) -> None:
        if self.resumable:
            from edgewax.operators.sinks.partitioned import attach_resumable

            attach_resumable(self, up)
            return
        from edgewax.operators.sinks.writer import attach_writer

        attach_writer(self, up)
