"""`sink.jsonl`: events appended to a JSON Lines file, rotated by size so disk use stays bounded."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from edgewax.config.types import ByteSize
from edgewax.errors import EdgewaxError
from edgewax.events import Event, encode
from edgewax.operators.base import NodeOptions, Sink, SinkWriter
from edgewax.operators.registry import register
from edgewax.operators.sinks.partitioned import ResumableWriter

log = logging.getLogger(__name__)


class JsonlSinkOptions(NodeOptions):
    path: str = Field(description="File to write, relative to the config file's folder.")
    mode: Literal["append", "overwrite"] = Field(
        "append", description="`append` keeps what a file holds; `overwrite` starts it empty."
    )
    max_bytes: ByteSize | None = Field(
        None,
        description="Rotate when the file would grow past this size (e.g. 10MB): the file "
        "becomes `PATH.1`, older ones shift to `.2` and so on. null: never rotate.",
    )
    backups: int = Field(5, ge=0, description="Rotated files to keep; older ones are deleted.")
    fsync: bool = Field(
        False, description="fsync after every batch: survives power loss, costs write speed."
    )


class _JsonlWriter(SinkWriter, ResumableWriter):
    def __init__(self, node: JsonlSink, resume: Any = None) -> None:
        o: JsonlSinkOptions = node.options
        self.ctx = node.ctx
        self.options = o
        self.path = node.ctx.path(o.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            recovering = node.ctx.keep_state.is_set()
            first = self._first_offset() if recovering else None
            if resume is not None:
                self._truncate(int(resume))
            elif first is not None:
                # Restarted before the first snapshot: back to where the first run began.
                self._truncate(first)
            elif o.mode == "overwrite":
                self.path.write_bytes(b"")
            self.file = open(self.path, "ab")  # noqa: SIM115 - open for the sink's life
            if recovering and first is None:
                self._start_file.parent.mkdir(parents=True, exist_ok=True)
                self._start_file.write_text(str(self.file.tell()))
        except OSError as e:
            raise EdgewaxError(
                f"pipeline {node.ctx.pipeline}, node {node.ctx.node_id}: cannot write "
                f"`{self.path}`: {e.strerror}"
            ) from None
        self.size = self.file.tell()

    @property
    def _start_file(self) -> Path:
        """Where a recovering run notes the file's size when it began, until its first snapshot.

        It lives in the recovery folder, so deleting that folder (starting over) forgets it too.
        """
        ctx = self.ctx
        return ctx.state_dir / "recovery" / "sinks" / f"{ctx.pipeline}.{ctx.node_id}.start"

    def _first_offset(self) -> int | None:
        try:
            return int(self._start_file.read_text())
        except (OSError, ValueError):
            return None

    def _truncate(self, offset: int) -> None:
        """Resume: drop what was written after the snapshot (Bytewax replays it)."""
        size = self.path.stat().st_size if self.path.exists() else 0
        if size >= offset:
            if size > offset:
                with open(self.path, "r+b") as f:
                    f.truncate(offset)
            return
        # Smaller than at the snapshot: rotated (or removed) since. Lines from the snapshot on
        # may then be written twice; say so rather than cut someone else's bytes.
        log.warning(
            "%s/%s: %s is shorter than at the last snapshot (rotated since?); events after "
            "the snapshot may appear twice",
            self.ctx.pipeline,
            self.ctx.node_id,
            self.path,
        )

    def snapshot(self) -> Any:
        return self.size

    def write(self, batch: list[Event]) -> None:
        lines = [(encode(e) + "\n").encode("utf-8") for e in batch]
        limit = self.options.max_bytes
        total = sum(map(len, lines))
        if limit is None or self.size + total <= limit:
            self._write(b"".join(lines))
        else:
            # Split the batch at the size limit, so no file grows past it (unless one line does).
            chunk: list[bytes] = []
            size = self.size
            for line in lines:
                if size and size + len(line) > limit:
                    self._write(b"".join(chunk))
                    self._rotate()
                    chunk, size = [], 0
                chunk.append(line)
                size += len(line)
            self._write(b"".join(chunk))
        if self.options.fsync:
            os.fsync(self.file.fileno())
        self.ctx.stats.sent.inc(len(batch))
        self.ctx.stats.sink_bytes.inc(total)

    def _write(self, data: bytes) -> None:
        self.file.write(data)
        self.file.flush()
        self.size += len(data)

    def _rotate(self) -> None:
        self.file.close()
        keep = self.options.backups
        names = [self.path] + [Path(f"{self.path}.{i}") for i in range(1, keep + 1)]
        if keep == 0:
            self.path.unlink()
        else:
            names[-1].unlink(missing_ok=True)
            for older, newer in zip(reversed(names[1:]), reversed(names[:-1])):
                if newer.exists():
                    os.replace(newer, older)
        self.file = open(self.path, "ab")  # noqa: SIM115
        self.size = 0

    def close(self) -> None:
        self.file.close()


@register
class JsonlSink(Sink):
    """Append each event as one line of compact JSON to a file, rotating by size.

    >>> from edgewax.testing import run_yaml, tmp_file
    >>> out = tmp_file("", suffix=".jsonl")
    >>> run_yaml(f'''
    ... - {{id: temps, type: sensor.synthetic, signal: temperature, keys: [t1], count: 3, speed: 0}}
    ... - {{id: log, type: sink.jsonl, path: "{out}"}}''')
    >>> len(open(out).readlines())
    3
    """

    type_name = "sink.jsonl"
    Options: ClassVar[type[NodeOptions]] = JsonlSinkOptions

    resumable = True

    def open(self) -> SinkWriter:
        return _JsonlWriter(self)

    def open_resumable(self, state: Any) -> SinkWriter:
        return _JsonlWriter(self, state)
