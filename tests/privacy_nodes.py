"""Test-only node types for the privacy lint and `explain`: a remote sink and a raw source.

The real remote sinks (`sink.http`, `sink.mqtt`) are built in another branch; these stand in with
the same contract (`remote = True`, an `allow_raw` option). Import this module to register them;
CLI subprocess tests run `python -c "import tests.privacy_nodes; ..."`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from edgewax.events import Event, encode
from edgewax.operators.base import (
    BASE_FIELDS,
    FieldInfo,
    Fields,
    NodeOptions,
    Sink,
    SinkWriter,
    Source,
)
from edgewax.operators.registry import node_types, register
from edgewax.operators.sources.partitions import EventPartition, PartitionedSource


class RemoteOptions(NodeOptions):
    allow_raw: bool = Field(False, description="Let raw fields leave the device.")


class _CountingWriter(SinkWriter):
    def __init__(self, node: Sink) -> None:
        self.stats = node.ctx.stats

    def write(self, batch: list[Event]) -> None:
        self.stats.sent.inc(len(batch))
        self.stats.sink_bytes.inc(sum(len(encode(e)) for e in batch))


@register
class RemoteSink(Sink):
    """A sink that stands for one leaving the device (tests only)."""

    type_name = "test.remote"
    Options: ClassVar[type[NodeOptions]] = RemoteOptions
    remote = True

    def open(self) -> SinkWriter:
        return _CountingWriter(self)


class CameraOptions(NodeOptions):
    count: int = Field(3, description="Frames to emit.")


class _FramePartition(EventPartition):
    def __init__(self, ctx: Any, count: int) -> None:
        super().__init__(ctx)
        self.count = count
        self.i = 0

    def read(self, n: int) -> list[Event]:
        if self.i >= self.count:
            raise StopIteration
        out = [
            {"ts": float(i), "key": "cam", "frame": np.zeros((4, 4), np.uint8), "score": 0.5}
            for i in range(self.i, min(self.count, self.i + n))
        ]
        self.i += len(out)
        return out

    def tell(self) -> Any:
        return self.i

    def seek(self, position: Any) -> None:
        self.i = int(position)


@register
class RawCamera(Source):
    """Frames declared raw (tests only)."""

    type_name = "test.camera"
    Options: ClassVar[type[NodeOptions]] = CameraOptions

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        return {
            **BASE_FIELDS,
            "frame": FieldInfo("uint8", (4, 4), raw=True),
            "score": FieldInfo("float64"),
        }

    def source(self) -> PartitionedSource:
        return PartitionedSource({"cam": lambda: _FramePartition(self.ctx, self.options.count)})


node_types()  # load the built-ins first so these do not shadow anything
