"""Dead letters: events a node could not handle, kept on disk instead of lost, and counted.

Each dead letter is one JSON line: when, where (pipeline, node), why (reason, error) and the event
or raw record itself. The file rotates once at `max_bytes` (to `NAME.1`), so disk use stays
bounded. Logging is rate limited per node and reason: the first one is logged, then one summary
line at most every `log_every` seconds.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from edgewax.events import json_default

log = logging.getLogger("edgewax.deadletters")


class DeadLetters:
    """A process-wide, thread-safe dead-letter writer (workers are threads of one process)."""

    def __init__(self, path: Path | None, max_bytes: int = 10 * 2**20, log_every: float = 10.0):
        self.path = path
        self.max_bytes = max_bytes
        self.log_every = log_every
        self._lock = threading.Lock()
        self._file: Any = None
        self._size = 0
        self._logged: dict[tuple[str, str, str], tuple[float, int]] = {}
        self.count = 0

    def put(self, pipeline: str, node: str, reason: str, error: str, event: Any) -> None:
        """Keep one dead letter: write it (if a path is set) and log it, rate limited."""
        record = {
            "time": time.time(),
            "pipeline": pipeline,
            "node": node,
            "reason": reason,
            "error": error,
            "event": event,
        }
        with self._lock:
            self.count += 1
            if self.path is not None:
                self._write(record)
            self._log(pipeline, node, reason, error)

    def _write(self, record: dict[str, Any]) -> None:
        assert self.path is not None
        try:
            line = json.dumps(record, default=_lenient, separators=(",", ":")) + "\n"
        except ValueError:  # circular structures
            record["event"] = repr(record["event"])[:10_000]
            line = json.dumps(record, default=_lenient, separators=(",", ":")) + "\n"
        data = line.encode("utf-8")
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab")  # noqa: SIM115 - kept open for the run
            self._size = self._file.tell()
        if self._size and self._size + len(data) > self.max_bytes:
            self._file.close()
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            self._file = open(self.path, "ab")  # noqa: SIM115
            self._size = 0
        self._file.write(data)
        self._file.flush()
        self._size += len(data)

    def _log(self, pipeline: str, node: str, reason: str, error: str) -> None:
        key = (pipeline, node, reason)
        now = time.monotonic()
        last, suppressed = self._logged.get(key, (-1e18, 0))
        if now - last >= self.log_every:
            more = f" (+{suppressed} more since the last report)" if suppressed else ""
            where = f" -> {self.path}" if self.path is not None else ""
            log.warning(
                "pipeline %s, node %s: dead letter (%s): %s%s%s",
                pipeline,
                node,
                reason,
                error,
                more,
                where,
            )
            self._logged[key] = (now, 0)
        else:
            self._logged[key] = (last, suppressed + 1)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _lenient(value: Any) -> Any:
    try:
        return json_default(value)
    except TypeError:
        return repr(value)[:10_000]
