"""Readiness of a run's parts: sources open, models loaded, sinks reachable or outbox accepting.

Each part that can be not-ready registers a check once and flips it as its state changes; the
metrics server's `/readyz` answers 200 only when every check is ready.

>>> health = Health()
>>> cam = health.check("traffic/camera", "source")
>>> cam.fail("cannot open rtsp://cam-1/stream")
>>> health.ready()
False
>>> cam.ok()
>>> health.ready(), health.status()["traffic/camera"]["ready"]
(True, True)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Check:
    """One part's readiness; starts not ready unless made with `ready=True`."""

    name: str
    kind: str
    ready: bool = False
    detail: str = ""
    since: float = field(default_factory=time.time)

    def ok(self, detail: str = "") -> None:
        if not self.ready or detail != self.detail:
            self.ready, self.detail, self.since = True, detail, time.time()

    def fail(self, detail: str) -> None:
        if self.ready or detail != self.detail:
            self.ready, self.detail, self.since = False, detail, time.time()


class Health:
    """The checks of one run, by name (`pipeline/node`, or any unique name)."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}
        self._lock = threading.Lock()

    def check(self, name: str, kind: str, ready: bool = False) -> Check:
        """The check called `name`, registered on first call (workers of one node share it)."""
        with self._lock:
            c = self._checks.get(name)
            if c is None:
                c = self._checks[name] = Check(name, kind, ready)
            return c

    def ready(self) -> bool:
        with self._lock:
            return all(c.ready for c in self._checks.values())

    def status(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {
                n: {"kind": c.kind, "ready": c.ready, "detail": c.detail, "since": c.since}
                for n, c in sorted(self._checks.items())
            }
