"""Recorded data: `source.jsonl` and `source.csv` replay files as event streams.

A record that cannot be read (bad JSON, a CSV row of the wrong width, a time that is not a time) is
dead-lettered with its file and line number and counted as `malformed`; the rest go on.
"""

from __future__ import annotations

import csv
import glob
import json
import threading
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from edgewax.errors import EdgewaxError
from edgewax.events import Event, event_time
from edgewax.health import Check
from edgewax.operators.base import (
    BASE_FIELDS,
    FieldInfo,
    Fields,
    NodeContext,
    NodeOptions,
    Problem,
    Source,
)
from edgewax.operators.registry import register
from edgewax.operators.sources.partitions import (
    BATCH,
    EventPartition,
    PartitionedSource,
    SourceProgress,
)


class FileSourceOptions(NodeOptions):
    path: str = Field(
        description="File to replay, relative to the config file's folder; a glob such as "
        "`data/*.jsonl` reads each match as its own partition (workers split them). A named "
        "pipe works too: the source opens when a writer does (until then `/readyz` says 503)."
    )
    time_field: str | None = Field(
        "ts",
        description="Field holding event time: epoch seconds or ISO-8601 text. null stamps each "
        "event with the time it is read.",
    )
    key_field: str | None = Field(
        "key", description="Field holding the stream key (device id); stored as text."
    )
    key: str | None = Field(
        None, description="Key for records without `key_field`; default: the file name's stem."
    )
    speed: float = Field(
        0.0,
        ge=0,
        description="Replay pace by event time: 0 as fast as possible, 1 real time, N times "
        "faster.",
    )
    batch_size: int = Field(
        BATCH, ge=1, description="Most records read per batch when catching up."
    )


def _readable(path: Path) -> bool:
    """A regular file, or a named pipe another process writes records into."""
    return path.is_file() or path.is_fifo()


def _files(pattern: str, base_dir: Path) -> list[Path]:
    path = Path(pattern).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    if glob.has_magic(str(path)):
        return sorted(Path(p) for p in glob.glob(str(path)) if _readable(Path(p)))
    return [path] if _readable(path) else []


class _OpenFiles:
    """The node's readiness check: ready once every file it replays is open.

    Opening a named pipe waits for its writer, so until then `/readyz` says which file waits.
    """

    def __init__(self, check: Check, count: int) -> None:
        self.check = check
        self.count = count
        self.opened = 0
        self._lock = threading.Lock()
        check.fail(f"{count} file(s) not opened yet")

    def opening(self, path: Path) -> None:
        with self._lock:
            if self.opened < self.count:
                self.check.fail(f"opening {path}")

    def open(self, path: Path) -> None:
        with self._lock:
            self.opened += 1
            if self.opened >= self.count:
                self.check.ok(f"{self.count} file(s) open")
            else:
                self.check.fail(f"{self.opened} of {self.count} files open")

    def failed(self, path: Path, error: OSError) -> None:
        with self._lock:
            self.check.fail(f"cannot open {path}: {error.strerror or error}")


class _FilePartition(EventPartition):
    def __init__(
        self,
        ctx: NodeContext,
        path: Path,
        options: FileSourceOptions,
        opened: _OpenFiles | None = None,
        progress: SourceProgress | None = None,
        part: str = "",
    ) -> None:
        super().__init__(ctx, options.speed, options.batch_size)
        self.path = path
        self.options = options
        self.default_key = options.key or path.stem
        if opened is not None:
            opened.opening(path)
        try:
            self.file = open(path, "rb")  # noqa: SIM115 - open for the partition's life
        except OSError as e:
            if opened is not None:
                opened.failed(path, e)
            raise EdgewaxError(
                f"node {ctx.node_id}: cannot open `{path}`: {e.strerror or e}"
            ) from None
        if opened is not None:
            opened.open(path)
        self._seekable = not path.is_fifo()
        self.progress = progress
        self.part = part
        self.line_no = 0
        self._received = ctx.stats.received.inc
        self._bytes = ctx.stats.source_bytes.inc

    def tell(self) -> Any:
        return (self.file.tell() if self._seekable else 0, self.line_no)

    def position(self) -> float:
        return float(self.file.tell()) if self._seekable else 0.0

    def seek(self, position: Any) -> None:
        offset, self.line_no = position
        if self._seekable:
            self.file.seek(offset)

    def close(self) -> None:
        self.file.close()

    def _lines(self, n: int) -> list[bytes]:
        seekable = self._seekable
        start = self.file.tell() if seekable else 0
        lines = list(islice(self.file, n))
        if not lines:
            raise StopIteration
        self._received(len(lines))
        if seekable:
            self._bytes(self.file.tell() - start)
        else:
            self._bytes(sum(map(len, lines)))
        return lines

    def _finish(self, rec: dict[str, Any]) -> Event:
        """Set `ts` and `key` on a parsed record (general case; `read` inlines the common one)."""
        tf = self.options.time_field
        if tf is None:
            rec["ts"] = time.time()
        else:
            t = rec[tf]
            rec["ts"] = float(t) if type(t) is float or type(t) is int else event_time(t)
        kf = self.options.key_field
        k = rec.get(kf, self.default_key) if kf is not None else self.default_key
        rec["key"] = k if type(k) is str else str(k)
        return rec

    def _malformed(self, line_no: int, raw: bytes, error: str) -> None:
        text = raw.decode("utf-8", "replace").rstrip("\n")
        record = {"file": str(self.path), "line": line_no, "raw": text[:4096]}
        self.ctx.dead_letter("malformed", f"{self.path.name}:{line_no}: {error}", record)


class _JsonlPartition(_FilePartition):
    def read(self, n: int) -> list[Event]:
        lines = self._lines(n)
        first_line = self.line_no + 1
        self.line_no += len(lines)
        tf = self.options.time_field
        kf = self.options.key_field
        if tf is None or kf is None:
            return self._read_general(lines, first_line)
        # The hot loop: one JSON parse and two lookups an event, with everything in locals.
        out: list[Event] = []
        append = out.append
        loads = json.loads
        default_key = self.default_key
        for i, raw in enumerate(lines):
            try:
                rec = loads(raw)
                t = rec[tf]
                rec["ts"] = t if type(t) is float else event_time(t)
                k = rec.get(kf, default_key)
                rec["key"] = k if type(k) is str else str(k)
                append(rec)
            except Exception as e:  # anything wrong with one line is that line's alone
                self._bad_line(first_line + i, raw, e)
        return out

    def _read_general(self, lines: list[bytes], first_line: int) -> list[Event]:
        out = []
        for i, raw in enumerate(lines):
            try:
                out.append(self._finish(json.loads(raw)))
            except Exception as e:
                self._bad_line(first_line + i, raw, e)
        return out

    def _bad_line(self, line_no: int, raw: bytes, e: Exception) -> None:
        if not raw.strip():
            return  # blank lines are not records
        if not isinstance(e, json.JSONDecodeError) and not raw.lstrip().startswith(b"{"):
            e = ValueError("not a JSON object")
        self._malformed(line_no, raw, _describe(e, self.options.time_field))


class _CsvPartition(_FilePartition):
    def __init__(
        self,
        ctx: NodeContext,
        path: Path,
        options: CsvOptions,
        opened: _OpenFiles | None = None,
        progress: SourceProgress | None = None,
        part: str = "",
    ) -> None:
        super().__init__(ctx, path, options, opened, progress, part)
        self.csv_options = options
        header = self.file.readline()
        self.header = next(csv.reader([header.decode("utf-8-sig")], delimiter=options.delimiter))
        self.line_no = 1
        self.convert: dict[str, Callable[[str], Any]] = {
            name: _CONVERTERS[options.types.get(name, "auto")] for name in self.header
        }

    def seek(self, position: Any) -> None:
        offset, line_no = position
        if offset > 0:
            super().seek(position)
        self.line_no = max(line_no, 1)

    def read(self, n: int) -> list[Event]:
        lines = self._lines(n)
        out = []
        header = self.header
        width = len(header)
        convert = self.convert
        line_no = self.line_no
        rows = csv.reader(
            (b.decode("utf-8", "replace") for b in lines), delimiter=self.csv_options.delimiter
        )
        for raw, row in zip(lines, rows):
            line_no += 1
            if not row:
                continue
            try:
                if len(row) != width:
                    raise ValueError(f"expected {width} columns, found {len(row)}")
                rec = {name: convert[name](cell) for name, cell in zip(header, row)}
                out.append(self._finish(rec))
            except (ValueError, KeyError, TypeError) as e:
                self._malformed(line_no, raw, _describe(e, self.options.time_field))
        self.line_no = line_no
        return out


def _describe(e: Exception, time_field: str | None) -> str:
    if isinstance(e, KeyError):
        return f"missing time field `{time_field}`"
    if isinstance(e, json.JSONDecodeError):
        return f"invalid JSON: {e.msg} at column {e.colno}"
    return str(e)


def _auto(cell: str) -> Any:
    if cell == "":
        return None
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        return float(cell)
    except ValueError:
        return cell


def _bool(cell: str) -> bool | None:
    low = cell.strip().lower()
    if low in ("true", "1", "yes", "on"):
        return True
    if low in ("false", "0", "no", "off"):
        return False
    if low == "":
        return None
    raise ValueError(f"`{cell}` is not a boolean")


_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "auto": _auto,
    "str": str,
    "int": lambda c: None if c == "" else int(c),
    "float": lambda c: None if c == "" else float(c),
    "bool": _bool,
}


class _FileSource(Source):
    Options: ClassVar[type[NodeOptions]] = FileSourceOptions
    partition: ClassVar[type[_FilePartition]]

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        if not _files(options.path, base_dir):
            return [
                Problem(
                    ("path",),
                    f"no file at `{options.path}`",
                    "paths are relative to the config file's folder",
                )
            ]
        return []

    def source(self) -> PartitionedSource:
        files = _files(self.options.path, self.ctx.base_dir)
        if not files:
            raise EdgewaxError(f"node {self.ctx.node_id}: no file at `{self.options.path}`")
        base = self.ctx.base_dir
        ctx = self.ctx
        opened = _OpenFiles(ctx.health.check(f"{ctx.pipeline}/{ctx.node_id}", "source"), len(files))
        names = {p: _part_name(p, base) for p in files}
        # A named pipe has no size, so a replay that reads one has no progress to show.
        progress = (
            SourceProgress(ctx.stats, {names[p]: float(p.stat().st_size) for p in files})
            if all(p.is_file() for p in files)
            else None
        )
        return PartitionedSource(
            {names[p]: self._factory(p, names[p], opened, progress) for p in files}
        )

    def _factory(
        self, path: Path, part: str, opened: _OpenFiles, progress: SourceProgress | None
    ) -> Callable[[], EventPartition]:
        return lambda: self.partition(self.ctx, path, self.options, opened, progress, part)


def _part_name(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


@register
class JsonlSource(_FileSource):
    """Replay a JSON Lines file (one JSON object per line) as events.

    Each object becomes an event with all its fields, plus `ts` from `time_field` and `key` from
    `key_field`. Blank lines are skipped; lines that are not JSON objects are dead-lettered.

    >>> from edgewax.testing import run_yaml, tmp_file
    >>> data = tmp_file('{"ts": 1, "key": "a", "t": 20.5}\\n{oops\\n{"ts": 2, "t": 21}\\n')
    >>> run_yaml(f'''
    ... - {{id: rec, type: source.jsonl, path: "{data}", key: b}}
    ... - {{id: out, type: sink.stdout}}''')
    {"ts":1.0,"key":"a","t":20.5}
    {"ts":2.0,"t":21,"key":"b"}
    """

    type_name = "source.jsonl"
    partition = _JsonlPartition


class CsvOptions(FileSourceOptions):
    delimiter: str = Field(",", min_length=1, max_length=1, description="Column separator.")
    types: dict[str, Literal["auto", "str", "int", "float", "bool"]] = Field(
        default_factory=dict,
        description="Per-column type; `auto` (the default) reads numbers as numbers, empty as "
        "null, anything else as text.",
    )


@register
class CsvSource(_FileSource):
    """Replay a CSV file with a header row as events, one per row.

    Values are numbers where they look like numbers (see `types`); `ts` and `key` come from
    `time_field` and `key_field`. Rows of the wrong width are dead-lettered. One record a line.

    >>> from edgewax.testing import run_yaml, tmp_file
    >>> data = tmp_file("ts,key,temp\\n1,a,20.5\\n2,a\\n3,b,22\\n", suffix=".csv")
    >>> run_yaml(f'''
    ... - {{id: rec, type: source.csv, path: "{data}"}}
    ... - {{id: out, type: sink.stdout}}''')
    {"ts":1.0,"key":"a","temp":20.5}
    {"ts":3.0,"key":"b","temp":22}
    """

    type_name = "source.csv"
    Options: ClassVar[type[NodeOptions]] = CsvOptions
    partition = _CsvPartition

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        files = _files(options.path, base_dir)
        return _csv_fields(files[0], options) if files else None


def _csv_fields(path: Path, options: CsvOptions) -> Fields:
    if path.is_fifo():
        return None  # reading its header would take it from the run (and wait for a writer)
    try:
        with open(path, encoding="utf-8-sig") as f:
            header = next(csv.reader([f.readline()], delimiter=options.delimiter))
    except (OSError, StopIteration, UnicodeDecodeError):
        return None
    fields: dict[str, FieldInfo] = {name: FieldInfo() for name in header}
    return {**fields, **BASE_FIELDS}
