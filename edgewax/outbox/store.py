"""The outbox's durable queue: one SQLite file (WAL journal) per remote sink.

A row holds a run of events accepted together (one incoming batch, split by priority and route and
at the sink's batch size): their 16-byte ids, and their JSON joined by newlines (compact JSON has
none inside). Storing a batch per row instead of an event per row keeps the cost per event to
encoding it: the bar is outbox throughput >= half of sending directly (`benchmarks/outbox.py`).

A pending row has `done IS NULL`. A row that reached its end (sent, rejected, expired, pushed out,
compacted) drops its payload and keeps its ids, `done` time and `fate` for `dedup_window`. The ids
of every row on disk are also held in memory (`seen`), so an event replayed after a restart is
neither queued twice while it waits nor sent again once it went out (within the window).

Durability: `put` commits before it returns (only then is an event "accepted"). With
`sync: full` (the default) SQLite fsyncs the WAL on every commit, so accepted events survive
power loss, at the cost of one fsync per accepted batch. With `sync: normal` (SQLite's
`synchronous=NORMAL` in WAL mode) the commit is in the OS when `put` returns, so an accepted event
survives SIGKILL and any crash of the process; a power cut or kernel crash may roll back the last
commits (the queue is never corrupted). Marking rows done commits with
`synchronous=NORMAL` in both modes: losing such a commit to a power cut means a batch is sent
twice, which at-least-once allows.

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
    prio INTEGER NOT NULL,
    enq REAL NOT NULL,
    route TEXT,
    n INTEGER NOT NULL,
    size INTEGER NOT NULL,
    ids BLOB NOT NULL,
    payload BLOB,
    summary INTEGER NOT NULL DEFAULT 0,
    done REAL,
    fate TEXT
);
CREATE INDEX IF NOT EXISTS finished ON queue (done) WHERE done IS NOT NULL;
"""

Fate = Literal["sent", "rejected", "ttl", "full", "compacted"]
WhenFull = Literal["block", "drop_newest", "drop_oldest"]
ID_BYTES = 16


@dataclass(slots=True)
class Item:
    """One queued event as a transport sees it."""

    rowid: int
    pos: int
    """Index of the event within its row."""
    enq: float
    route: str | None
    payload: bytes


@dataclass
class PutResult:
    accepted: int = 0
    """Events now queued (a replayed event still queued or recently sent is not queued again)."""
    duplicates: int = 0
    dropped_oldest: int = 0
    """Queued events pushed out to make room (`drop_oldest`)."""
    rest: int = 0
    """Events at the end of the list that did not fit (dropped for `drop_newest`, retried for
    `block`)."""


Event4 = tuple[bytes, int, "str | None", bytes]
"""(16-byte id, priority, route, JSON payload) of one event to queue."""


class Store:
    """The SQLite queue of one sink; thread-safe."""

    def __init__(
        self,
        path: Path,
        max_bytes: int,
        sync: Literal["full", "normal"] = "full",
        row_events: int = 100,
        newest_first: bool = False,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_bytes = max_bytes
        self.row_events = max(1, row_events)
        self.sync = "FULL" if sync == "full" else "NORMAL"
        self.lock = threading.Lock()
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=10000")
        self.db.executescript(_SCHEMA)
        # The drain reads in this order: an index that matches it makes `take` a short scan
        # (a mixed ASC/DESC order over a plain index would sort the whole queue each time).
        self.newest_first = newest_first
        order = "DESC" if newest_first else "ASC"
        other = "pending_asc" if newest_first else "pending_desc"
        self.db.execute(f"DROP INDEX IF EXISTS {other}")
        self.db.execute(
            f"CREATE INDEX IF NOT EXISTS pending_{order.lower()} ON queue (prio DESC, id {order}) "
            "WHERE done IS NULL"
        )
        depth, size = self.db.execute(
            "SELECT COALESCE(SUM(n), 0), COALESCE(SUM(size), 0) FROM queue WHERE done IS NULL"
        ).fetchone()
        self.depth: int = depth
        self.bytes: int = size
        self.inflight: set[int] = set()
        """Rows the drain is sending now: `drop_oldest` leaves them alone (they may arrive)."""
        self.seen: set[bytes] = set()
        for (ids,) in self.db.execute("SELECT ids FROM queue"):
            self.seen.update(_split_ids(ids))

    # -- writing --------------------------------------------------------------------------
    def put(self, events: Sequence[Event4], enq: float, when_full: WhenFull) -> PutResult:
        """Queue `events` (committed, per `sync`, before this returns)."""
        res = PutResult()
        if not events:
            return res
        with self.lock:
            seen = self.seen
            fresh: list[Event4] = []
            batch_ids: set[bytes] = set()
            for ev in events:
                if ev[0] in seen or ev[0] in batch_ids:
                    res.duplicates += 1
                else:
                    batch_ids.add(ev[0])
                    fresh.append(ev)
            if not fresh:
                return res
            room = self.max_bytes - self.bytes
            need = sum(len(e[3]) for e in fresh)
            fit = len(fresh)
            victims: list[tuple[int, int, int]] = []
            if need > room:
                if when_full == "drop_oldest":
                    victims = self._oldest(need - room)
                    room += sum(v[2] for v in victims)
                if need > room:
                    fit, total = 0, 0
                    for e in fresh:
                        if total + len(e[3]) > room:
                            break
                        total += len(e[3])
                        fit += 1
            rows = self._rows(fresh[:fit], enq)
            self.db.execute(f"PRAGMA synchronous={self.sync}")
            self.db.execute("BEGIN IMMEDIATE")
            try:
                if victims:
                    self._finish([v[0] for v in victims], "full", time.time())
                self.db.executemany(
                    "INSERT INTO queue (prio, enq, route, n, size, ids, payload) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            if victims:
                res.dropped_oldest = sum(v[1] for v in victims)
                self.depth -= res.dropped_oldest
                self.bytes -= sum(v[2] for v in victims)
            seen.update(batch_ids if fit == len(fresh) else (e[0] for e in fresh[:fit]))
            res.accepted = fit
            res.rest = len(fresh) - fit
            self.depth += fit
            self.bytes += sum(r[4] for r in rows)
        return res

    def _rows(
        self, events: Sequence[Event4], enq: float
    ) -> list[tuple[int, float, str | None, int, int, bytes, bytes]]:
        """Group events by (priority, route), in order, in rows of at most `row_events`."""
        groups: dict[tuple[int, str | None], list[Event4]] = {}
        for e in events:
            groups.setdefault((e[1], e[2]), []).append(e)
        rows = []
        step = self.row_events
        for (prio, route), evs in groups.items():
            for i in range(0, len(evs), step):
                chunk = evs[i : i + step]
                payload = b"\n".join([e[3] for e in chunk])
                ids = b"".join([e[0] for e in chunk])
                rows.append(
                    (prio, enq, route, len(chunk), len(payload) - len(chunk) + 1, ids, payload)
                )
        return rows

    def _oldest(self, need: int) -> list[tuple[int, int, int]]:
        out: list[tuple[int, int, int]] = []
        got = 0
        for rowid, n, size in self.db.execute(
            "SELECT id, n, size FROM queue WHERE done IS NULL ORDER BY prio ASC, id ASC"
        ):
            if rowid in self.inflight:
                continue
            out.append((rowid, n, size))
            got += size
            if got >= need:
                break
        return out

    def _finish(self, rowids: Sequence[int], fate: Fate, now: float) -> None:
        for i in range(0, len(rowids), 500):
            chunk = list(rowids[i : i + 500])
            marks = ",".join("?" * len(chunk))
            self.db.execute(
                f"UPDATE queue SET payload = NULL, done = ?, fate = ? "
                f"WHERE done IS NULL AND id IN ({marks})",
                [now, fate, *chunk],
            )

    # -- draining -------------------------------------------------------------------------
    def take(self, max_events: int, max_bytes: int) -> list[Item]:
        """The next events to send (whole rows): highest priority first, then by `order`."""
        direction = "DESC" if self.newest_first else "ASC"
        out: list[Item] = []
        total = 0
        with self.lock:
            cur = self.db.execute(
                "SELECT id, enq, route, n, size, payload FROM queue WHERE done IS NULL "
                f"ORDER BY prio DESC, id {direction}"
            )
            for rowid, enq, route, n, size, payload in cur:
                if out and (len(out) + n > max_events or total + size > max_bytes):
                    break
                out.extend(
                    Item(rowid, i, enq, route, p) for i, p in enumerate(payload.split(b"\n"))
                )
                total += size
            cur.close()
            self.inflight = {it.rowid for it in out}
        return out

    def settle(self, items: Sequence[Item], finished: set[int], fate: Fate = "sent") -> None:
        """Mark the rows of `items` done where every event is in `finished` (indexes into
        `items`); a row only partly finished keeps the rest of its events queued."""
        done: list[int] = []
        partial: list[tuple[int, list[Item], list[Item]]] = []
        if len(finished) == len(items):  # the usual case: the whole batch
            done = list(dict.fromkeys([it.rowid for it in items]))
        else:
            rows: dict[int, list[tuple[int, Item]]] = {}
            for i, it in enumerate(items):
                rows.setdefault(it.rowid, []).append((i, it))
            for rowid, members in rows.items():
                left = [it for i, it in members if i not in finished]
                if not left:
                    done.append(rowid)
                elif len(left) < len(members):
                    partial.append((rowid, [it for _, it in members], left))
        if not done and not partial:
            self.inflight = set()
            return
        now = time.time()
        with self.lock:
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("BEGIN IMMEDIATE")
            sizes = self._pending(done)
            self._finish(list(sizes), fate, now)
            moved_n = sum(n for n, _ in sizes.values())
            moved_b = sum(b for _, b in sizes.values())
            for rowid, row_items, left in partial:
                row = self.db.execute(
                    "SELECT ids, n, size FROM queue WHERE done IS NULL AND id = ?", (rowid,)
                ).fetchone()
                if row is None:
                    continue
                ids, n, size = row
                keep = {it.pos for it in left}
                all_ids = _split_ids(ids)
                new_ids = b"".join(all_ids[p] for p in sorted(keep))
                payload = b"\n".join(it.payload for it in sorted(left, key=lambda x: x.pos))
                new_size = len(payload) - len(left) + 1
                self.db.execute(
                    "UPDATE queue SET ids = ?, payload = ?, n = ?, size = ? WHERE id = ?",
                    (new_ids, payload, len(left), new_size, rowid),
                )
                # The finished events' ids stay remembered through a done row of their own.
                gone = b"".join(all_ids[p] for p in range(len(all_ids)) if p not in keep)
                self.db.execute(
                    "INSERT INTO queue (prio, enq, route, n, size, ids, done, fate) "
                    "VALUES (0, ?, NULL, ?, 0, ?, ?, ?)",
                    (row_items[0].enq, n - len(left), gone, now, fate),
                )
                moved_n += n - len(left)
                moved_b += size - new_size
            self.db.execute("COMMIT")
            self.depth -= moved_n
            self.bytes -= moved_b
            self.inflight = set()

    def _pending(self, rowids: list[int]) -> dict[int, tuple[int, int]]:
        out: dict[int, tuple[int, int]] = {}
        for i in range(0, len(rowids), 500):
            chunk = rowids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for rowid, n, size in self.db.execute(
                f"SELECT id, n, size FROM queue WHERE done IS NULL AND id IN ({marks})", chunk
            ):
                out[rowid] = (n, size)
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
            sizes = self._pending(ids)
            self._finish(list(sizes), "ttl", time.time())
            self.db.execute("COMMIT")
            n = sum(v[0] for v in sizes.values())
            self.depth -= n
            self.bytes -= sum(v[1] for v in sizes.values())
            return n

    def forget(self, finished_before: float, max_ids: int) -> None:
        """Forget rows finished before this time (the dedup window), and the oldest finished
        rows beyond `max_ids` remembered ids."""
        with self.lock:
            gone: list[tuple[int, bytes]] = self.db.execute(
                "SELECT id, ids FROM queue WHERE done IS NOT NULL AND done < ?",
                (finished_before,),
            ).fetchall()
            if len(self.seen) - sum(len(g[1]) for g in gone) // ID_BYTES > max_ids:
                gone = []
                over = len(self.seen) - max_ids
                for rowid, ids in self.db.execute(
                    "SELECT id, ids FROM queue WHERE done IS NOT NULL ORDER BY done"
                ):
                    gone.append((rowid, ids))
                    over -= len(ids) // ID_BYTES
                    if over <= 0:
                        break
            if not gone:
                return
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("BEGIN IMMEDIATE")
            rowids = [g[0] for g in gone]
            for i in range(0, len(rowids), 500):
                chunk = rowids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                self.db.execute(f"DELETE FROM queue WHERE id IN ({marks})", chunk)
            self.db.execute("COMMIT")
            for _, ids in gone:
                self.seen.difference_update(_split_ids(ids))

    def oldest_enq(self) -> float | None:
        with self.lock:
            row = self.db.execute("SELECT MIN(enq) FROM queue WHERE done IS NULL").fetchone()
        return None if row is None else row[0]

    def old_rows(self, older_than: float) -> list[tuple[int, int, float, str | None, bytes]]:
        """Queued plain rows (not summaries) enqueued before `older_than`, for compaction:
        (rowid, priority, enq, route, payload)."""
        with self.lock:
            return self.db.execute(
                "SELECT id, prio, enq, route, payload FROM queue "
                "WHERE done IS NULL AND summary = 0 AND enq < ? ORDER BY id",
                (older_than,),
            ).fetchall()

    def replace(
        self,
        rowids: Sequence[int],
        summaries: Sequence[tuple[bytes, int, float, str | None, bytes]],
    ) -> int:
        """Compaction: mark `rowids` compacted and queue `summaries` (id, prio, enq, route,
        payload), in one transaction; returns the events compacted."""
        now = time.time()
        with self.lock:
            self.db.execute(f"PRAGMA synchronous={self.sync}")
            self.db.execute("BEGIN IMMEDIATE")
            try:
                sizes = self._pending(list(rowids))
                self._finish(list(sizes), "compacted", now)
                self.db.executemany(
                    "INSERT INTO queue (prio, enq, route, n, size, ids, payload, summary) "
                    "VALUES (?, ?, ?, 1, ?, ?, ?, 1)",
                    [(p, e, r, len(pl), i, pl) for i, p, e, r, pl in summaries],
                )
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            n = sum(v[0] for v in sizes.values())
            self.depth += len(summaries) - n
            self.bytes += sum(len(s[4]) for s in summaries) - sum(v[1] for v in sizes.values())
            self.seen.update(s[0] for s in summaries)
            return n

    def fates(self) -> dict[str, int]:
        """Events of finished rows by fate (tests, diagnostics)."""
        with self.lock:
            return dict(
                self.db.execute(
                    "SELECT fate, SUM(n) FROM queue WHERE done IS NOT NULL GROUP BY fate"
                ).fetchall()
            )

    def close(self) -> None:
        with self.lock:
            try:
                self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                self.db.close()


def _split_ids(ids: bytes) -> list[bytes]:
    return [ids[i : i + ID_BYTES] for i in range(0, len(ids), ID_BYTES)]
