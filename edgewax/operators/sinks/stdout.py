"""`sink.stdout`: events as JSON lines on standard output (logs go to standard error)."""

from __future__ import annotations

import sys
from typing import ClassVar

from edgewax.events import Event, encode
from edgewax.operators.base import NodeOptions, Sink, SinkWriter
from edgewax.operators.registry import register


class StdoutOptions(NodeOptions):
    pass


class _StdoutWriter(SinkWriter):
    def __init__(self, node: StdoutSink) -> None:
        self.ctx = node.ctx

    def write(self, batch: list[Event]) -> None:
        text = "".join([encode(e) + "\n" for e in batch])
        try:
            # Looked up on every batch so that a redirected sys.stdout (doctest, pytest) is used.
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (`edgewax run | head`): stop the sources and end quietly.
            self.ctx.stop.set()
            self.ctx.stats.discard("closed", len(batch))
            return
        self.ctx.stats.sent.inc(len(batch))
        self.ctx.stats.sink_bytes.inc(len(text) if text.isascii() else len(text.encode("utf-8")))


@register
class StdoutSink(Sink):
    """Print each event as one line of compact JSON on standard output.

    >>> from edgewax.testing import run_yaml
    >>> run_yaml('''
    ... - {id: temps, type: sensor.synthetic, signal: temperature, keys: [t1], count: 2, speed: 0,
    ...    start: 0, seed: 1}
    ... - {id: out, type: sink.stdout}''')
    {"ts":0.0,"key":"t1","temperature":...}
    {"ts":1.0,"key":"t1","temperature":...}
    """

    type_name = "sink.stdout"
    Options: ClassVar[type[NodeOptions]] = StdoutOptions

    def open(self) -> SinkWriter:
        return _StdoutWriter(self)
