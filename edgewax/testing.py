"""Run nodes and small pipelines in-process: for docstring examples and tests.

>>> run_node("filter", {"where": "t > 20"}, [{"t": 19}, {"t": 21}])
[{'ts': 0.0, 'key': 'k', 't': 21}]
"""

from __future__ import annotations

import tempfile
import textwrap
from pathlib import Path
from typing import Any, ClassVar

from bytewax.testing import run_main

from edgewax.config.diagnostics import Mark
from edgewax.config.spec import (
    DeadLetterSettings,
    NodeSpec,
    PipelineSpec,
    Settings,
    Spec,
    load_spec_text,
)
from edgewax.events import Event
from edgewax.flows.compiler import Compiled, compile_spec
from edgewax.operators.base import NodeContext, NodeOptions, Sink, SinkWriter, Source
from edgewax.operators.registry import node_types
from edgewax.operators.sources.partitions import EventPartition, PartitionedSource

_QUIET = Settings(dead_letter=DeadLetterSettings(path=None))


def run_compiled(compiled: Compiled) -> None:
    """Run in this thread with Bytewax's test runner; no signal handling."""
    try:
        run_main(compiled.flow)  # type: ignore[no-untyped-call]
    finally:
        compiled.dead_letters.close()


def run_yaml(nodes: str, base_dir: Path | None = None) -> None:
    """Run one pipeline given as the YAML list of its nodes (shown by its `sink.stdout`)."""
    body = textwrap.indent(textwrap.dedent(nodes).strip("\n"), "      ")
    text = (
        "version: 1\nsettings: {dead_letter: {path: null}}\n"
        f"pipelines:\n  doc:\n    nodes:\n{body}\n"
    )
    run_compiled(compile_spec(load_spec_text(text, base_dir or Path.cwd())))


class _ListPartition(EventPartition):
    def __init__(self, ctx: NodeContext, events: list[Event]) -> None:
        super().__init__(ctx)
        self.events = events
        self.index = 0

    def read(self, n: int) -> list[Event]:
        if self.index >= len(self.events):
            raise StopIteration
        batch = self.events[self.index : self.index + n]
        self.index += len(batch)
        return batch

    def tell(self) -> Any:
        return self.index

    def seek(self, position: Any) -> None:
        self.index = int(position)


class _ListOptions(NodeOptions):
    events: list[dict[str, Any]] = []


class _ListSource(Source):
    """Events from a Python list (tests only)."""

    type_name = "testing.list"
    Options: ClassVar[type[NodeOptions]] = _ListOptions

    def source(self) -> PartitionedSource:
        return PartitionedSource({"list": lambda: _ListPartition(self.ctx, self.options.events)})


class Bucket:
    """Where a capture sink puts events; an object of its own so options keep the reference."""

    def __init__(self) -> None:
        self.events: list[Event] = []


class _CaptureOptions(NodeOptions):
    out: Bucket


class _CaptureWriter(SinkWriter):
    def __init__(self, node: Sink) -> None:
        self.out = node.options.out.events
        self.sent = node.ctx.stats.sent.inc

    def write(self, batch: list[Event]) -> None:
        self.out.extend(batch)
        self.sent(len(batch))


class _CaptureSink(Sink):
    """Collects events into a Bucket (tests only)."""

    type_name = "testing.capture"
    Options: ClassVar[type[NodeOptions]] = _CaptureOptions

    def open(self) -> SinkWriter:
        return _CaptureWriter(self)


def run_node(
    type_name: str,
    options: dict[str, Any],
    events: list[dict[str, Any]],
    base_dir: Path | None = None,
) -> list[Event]:
    """Run one node over `events` (missing `ts`/`key` become 0.0/"k") and return its output."""
    cls = node_types()[type_name]
    filled = [{"ts": 0.0, "key": "k", **e} for e in events]
    bucket = Bucket()
    mark = Mark(1, 1)
    src = NodeSpec("src", "testing.list", _ListSource, _ListOptions(events=filled), [], mark)
    node = NodeSpec("node", type_name, cls, cls.Options.model_validate(options), ["src"], mark)
    sink = NodeSpec(
        "out", "testing.capture", _CaptureSink, _CaptureOptions(out=bucket), ["node"], mark
    )
    src.consumers = ["node"]
    node.consumers = ["out"]
    pipeline = PipelineSpec("test", [src, node, sink], mark)
    spec = Spec("<test>", base_dir or Path.cwd(), _QUIET, {"test": pipeline}, "")
    run_compiled(compile_spec(spec))
    return bucket.events


def tmp_file(content: str, suffix: str = ".jsonl") -> str:
    """Write `content` to a new temporary file and return its path."""
    with tempfile.NamedTemporaryFile("w", suffix=suffix, delete=False, encoding="utf-8") as f:
        f.write(content)
    return f.name
