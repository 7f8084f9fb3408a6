"""The outbox's durable queue: one SQLite file (WAL journal) per remote sink.

One table holds the queue and its recent past. A pending row has `done IS NULL` and carries the
encoded event; a row that reached its end (sent, rejected, expired, pushed out, compacted) keeps
only its `event_id`, `done` time and `fate` for `dedup_window`. `event_id` is UNIQUE and every
insert is `INSERT OR IGNORE`, so an event replayed after a restart is not queued twice while it
waits, nor sent again once it went out (within the window).

Durability: `put` commits before it returns (the event is "accepted" only then). With
`sync: full` (the default) SQLite's `synchronous=FULL` fsyncs the WAL on that commit, so an
accepted event survives SIGKILL and power loss; `sync: normal` only writes it to the OS (survives
a killed process, not power loss). Marking rows done commits with `synchronous=NORMAL` in both
modes: losing such a commit to a power cut only means an event is sent twice (at-least-once).

All access goes through one connection under one lock: the dataflow's writer and the drain thread
take turns (SQLite serialises writers anyway).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    prio INTEGER NOT NULL,
    enq REAL NOT NULL,
    ts REAL,
    key TEXT,
    size INTEGER NOT NULL,
    route TEXT,
    payload BLOB,
    summary INTEGER NOT NULL DEFAULT 0,
    done REAL,
    fate TEXT
);
CREATE INDEX IF NOT EXISTS pending ON queue (prio, id) WHERE done IS NULL;
CREATE INDEX IF NOT EXISTS pending_enq ON queue (enq) WHERE done IS NULL;
CREATE INDEX IF NOT EXISTS finished ON queue (done) WHERE done IS NOT NULL;
"""

Fate = Literal["sent", "rejected", "ttl", "full", "compacted"]
WhenFull = Literal["block", "drop_newest", "drop_oldest"]


@dataclass
class Row:
    """One event to queue: its id, priority, enqueue time, event time, key, route and bytes."""

    event_id: str
    prio: int
    enq: float
    ts: float | None
    key: str | None
    route: str | None
    payload: bytes


@dataclass
class Item:
    """One queued event as the drain thread sees it."""

    rowid: int
    event_id: str
    enq: float
    route: str | None
    payload: bytes


@dataclass
class PutResult:
    accepted: int = 0
    """Rows now queued (new ones; a replayed event still queued or recently sent is ignored)."""
    duplicates: int = 0
    dropped_oldest: int = 0
    """Queued rows pushed out to make room (`drop_oldest`)."""
    rest: int = 0
    """Rows at the end of the list that did not fit (dropped for `drop_newest`, retried for
    `block`)."""


class Store:
    """The SQLite queue of one sink; thread-safe."""

    def __init__(self, path: Path, max_bytes: int, sync: Literal["full", "normal"] = "full"):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.sync = "FULL" if sync == "full" else "NORMAL"
        self.lock = threading.Lock()
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=10000")
        self.db.executescript(_SCHEMA)
        depth, size = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM queue WHERE done IS NULL"
        ).fetchone()
        self.depth: int = depth
        self.bytes: int = size

    # -- writing --------------------------------------------------------------------------
    def put(self, rows: Sequence[Row], when_full: WhenFull) -> PutResult:
        """Queue `rows` (committed, per `sync`, before this returns)."""
        res = PutResult()
        if not rows:
            return res
        with self.lock:
            room = self.max_bytes - self.bytes
            need = sum(len(r.payload) for r in rows)
            fit = len(rows)
            victims: list[tuple[int, int]] = []
            if need > room:
                if when_full == "drop_oldest":
                    victims = self._oldest(need - room)
                    room += sum(s for _, s in victims)
                if need > room:
                    fit, total = 0, 0
                    for r in rows:
                        if total + len(r.payload) > room:
                            break
                        total += len(r.payload)
                        fit += 1
            self.db.execute(f"PRAGMA synchronous={self.sync}")
            self.db.execute("BEGIN IMMEDIATE")
            try:
                if victims:
                    self._finish([v for v, _ in victims], "full", time.time())
                    res.dropped_oldest = len(victims)
                    self.depth -= len(victims)
                    self.bytes -= sum(s for _, s in victims)
                top = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM queue").fetchone()[0]
                self.db.executemany(
                    "INSERT OR IGNORE INTO queue (event_id, prio, enq, ts, key, size, route, "
                    "payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (r.event_id, r.prio, r.enq, r.ts, r.key, len(r.payload), r.route, r.payload)
                        for r in rows[:fit]
                    ],
                )
                inserted, added = self.db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM queue WHERE id > ?", (top,)
                ).fetchone()
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            res.accepted = inserted
            res.duplicates = fit - inserted
            res.rest = len(rows) - fit
            self.depth += inserted
            self.bytes += added
        return res

    def _oldest(self, need: int) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        got = 0
        for rowid, size in self.db.execute(
            "SELECT id, size FROM queue WHERE done IS NULL ORDER BY prio ASC, id ASC"
        ):
            out.append((rowid, size))
            got += size
            if got >= need:
                break
        return out

    def _finish(self, rowids: Sequence[int], fate: Fate, now: float) -> int:
        n = 0
        for i in range(0, len(rowids), 500):
            chunk = list(rowids[i : i + 500])
            marks = ",".join("?" * len(chunk))
            cur = self.db.execute(
                f"UPDATE queue SET payload = NULL, size = 0, done = ?, fate = ? "
                f"WHERE done IS NULL AND id IN ({marks})",
                [now, fate, *chunk],
            )
            n += cur.rowcount
        return n

    # -- draining -------------------------------------------------------------------------
    def take(self, max_events: int, max_bytes: int, newest_first: bool) -> list[Item]:
        """The next events to send: highest priority first, then by `order`."""
        direction = "DESC" if newest_first else "ASC"
        with self.lock:
            rows = self.db.execute(
                "SELECT id, event_id, enq, route, payload FROM queue WHERE done IS NULL "
                f"ORDER BY prio DESC, id {direction} LIMIT ?",
                (max_events,),
            ).fetchall()
        out: list[Item] = []
        total = 0
        for rowid, eid, enq, route, payload in rows:
            if out and total + len(payload) > max_bytes:
                break
            out.append(Item(rowid, eid, enq, route, payload))
            total += len(payload)
        return out

    def finish(self, items: Sequence[Item], fate: Fate) -> int:
        """Mark `items` done (sent, rejected, ...); returns how many were still queued."""
        if not items:
            return 0
        now = time.time()
        with self.lock:
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("BEGIN IMMEDIATE")
            sizes = self._pending_sizes([i.rowid for i in items])
            n = self._finish(list(sizes), fate, now)
            self.db.execute("COMMIT")
            self.depth -= n
            self.bytes -= sum(sizes.values())
        return n

    def _pending_sizes(self, rowids: list[int]) -> dict[int, int]:
        out: dict[int, int] = {}
        for i in range(0, len(rowids), 500):
            chunk = rowids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            out.update(
                self.db.execute(
                    f"SELECT id, size FROM queue WHERE done IS NULL AND id IN ({marks})", chunk
                ).fetchall()
            )
        return out

    def expire(self, older_than: float) -> int:
        """Drop events queued before `older_than` (epoch seconds); returns how many."""
        with self.lock:
            ids = [
                r[0]
                for r in self.db.execute(
                    "SELECT id FROM queue WHERE done IS NULL AND enq < ?", (older_than,)
                )
            ]
            if not ids:
                return 0
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("BEGIN IMMEDIATE")
            sizes = self._pending_sizes(ids)
            n = self._finish(ids, "ttl", time.time())
            self.db.execute("COMMIT")
            self.depth -= n
            self.bytes -= sum(sizes.values())
            return n

    def forget(self, finished_before: float) -> None:
        """Delete the records of events finished before this time (the dedup window)."""
        with self.lock:
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute(
                "DELETE FROM queue WHERE done IS NOT NULL AND done < ?", (finished_before,)
            )

    def oldest_enq(self) -> float | None:
        with self.lock:
            row = self.db.execute("SELECT MIN(enq) FROM queue WHERE done IS NULL").fetchone()
        return None if row is None else row[0]

    def old_rows(
        self, older_than: float
    ) -> list[tuple[int, int, float, float | None, str | None, str | None, bytes]]:
        """Queued plain events (not summaries) enqueued before `older_than`, for compaction."""
        with self.lock:
            return self.db.execute(
                "SELECT id, prio, enq, ts, key, route, payload FROM queue "
                "WHERE done IS NULL AND summary = 0 AND enq < ? ORDER BY id",
                (older_than,),
            ).fetchall()

    def replace(self, rowids: Sequence[int], summaries: Sequence[Row]) -> int:
        """Compaction: mark `rowids` compacted and queue `summaries`, in one transaction."""
        now = time.time()
        with self.lock:
            self.db.execute(f"PRAGMA synchronous={self.sync}")
            self.db.execute("BEGIN IMMEDIATE")
            try:
                sizes = self._pending_sizes(list(rowids))
                n = self._finish(list(sizes), "compacted", now)
                before = self.db.total_changes
                self.db.executemany(
                    "INSERT OR IGNORE INTO queue (event_id, prio, enq, ts, key, size, route, "
                    "payload, summary) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)",
                    [
                        (r.event_id, r.prio, r.enq, r.ts, r.key, len(r.payload), r.route, r.payload)
                        for r in summaries
                    ],
                )
                added = self.db.total_changes - before
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.depth += added - n
            self.bytes += sum(len(r.payload) for r in summaries) - sum(sizes.values())
            return n

    def fates(self) -> dict[str, int]:
        """Counts of finished rows by fate (tests, diagnostics)."""
        with self.lock:
            return dict(
                self.db.execute(
                    "SELECT fate, COUNT(*) FROM queue WHERE done IS NOT NULL GROUP BY fate"
                ).fetchall()
            )

    def close(self) -> None:
        with self.lock:
            try:
                self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                self.db.close()
