"""Running a compiled dataflow: Bytewax's own runtime, clean stop on SIGINT / SIGTERM.

Bytewax dies on SIGTERM unless told otherwise. Here both signals are caught and handed to one
watcher thread: the first sets the stop flag (sources end, in-flight batches drain, sinks flush and
close, exit 0) and starts the shutdown clock (`settings.shutdown_timeout`: past it the process exits
with 1, whatever is still running); a second signal exits at once.

Scale-out is Bytewax's own: `workers` threads per process, and a cluster of processes given by
`Cluster` (this process's index and every process's `host:port`). Recovery is Bytewax's too: the
partitions live in `state_dir/recovery` (one per process, each process keeping its own under
`state_dir/proc-<I>/`), created on the first run.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bytewax._bytewax import cli_main

from edgewax.config.spec import MetricsSettings
from edgewax.errors import EdgewaxError
from edgewax.flows.compiler import Compiled
from edgewax.metrics.server import MetricsServer

log = logging.getLogger("edgewax.run")

_SIGNALS = {signal.SIGINT, signal.SIGTERM}

ENGINE_API_ENV = "BYTEWAX_DATAFLOW_API_ENABLED"
"""Bytewax 0.21 starts its own dataflow API (with engine metrics) on 0.0.0.0:3030 when this is set
to anything; it has no bind option, so it stays off unless `--engine-metrics` asks for it."""


@dataclass
class RunResult:
    seconds: float
    stopped_by_signal: bool


@dataclass(frozen=True)
class Cluster:
    """This process's place in a multi-process run: its index and every process's address."""

    process_id: int
    addresses: list[str]

    @classmethod
    def parse(cls, process_id: int | None, addresses: str | None) -> Cluster | None:
        """From `--process-id` and `--addresses "host:port;host:port"`; None for one process."""
        if process_id is None and not addresses:
            return None
        if process_id is None or not addresses:
            raise EdgewaxError(
                "--process-id and --addresses go together (or EDGEWAX_PROCESS_ID and "
                "EDGEWAX_ADDRESSES): this process's index and every process's host:port"
            )
        parts = [a.strip() for a in addresses.split(";") if a.strip()]
        for a in parts:
            host, _, port = a.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise EdgewaxError(f"--addresses: `{a}` is not host:port")
        if not 0 <= process_id < len(parts):
            raise EdgewaxError(
                f"--process-id {process_id} is not an index into the {len(parts)} addresses "
                f"(0 to {len(parts) - 1})"
            )
        return cls(process_id, parts)

    @property
    def size(self) -> int:
        return len(self.addresses)


def recovery_dir(state_dir: Path, cluster: Cluster | None) -> Path:
    """This process's Bytewax recovery partitions, created on the first run.

    One process: one partition (any number of worker threads can share it). N processes: N
    partitions, process I keeping `part-I` in its own state folder, so the cluster holds each
    exactly once, whether the processes share a disk or not.
    """
    from bytewax.recovery import init_db_dir

    path = state_dir / "recovery"
    n = cluster.size if cluster is not None else 1
    index = cluster.process_id if cluster is not None else 0
    marker = path / "edgewax.json"
    if any(path.glob("part-*.sqlite3")):
        made = _recovery_shape(marker)
        if made != (n, index):
            was = f"{made[0]} process(es), as process {made[1]}" if made else "another run"
            raise EdgewaxError(
                f"{path} holds the state of a run of {was}; this is process {index} of {n}. "
                "Run with the same number of processes (workers per process may change), or "
                "delete the recovery folders to start over"
            )
        return path
    tmp = state_dir / "recovery.new"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    init_db_dir(tmp, n)  # type: ignore[no-untyped-call]
    path.mkdir(parents=True, exist_ok=True)
    os.replace(tmp / f"part-{index}.sqlite3", path / f"part-{index}.sqlite3")
    marker.write_text(json.dumps({"processes": n, "process_id": index}) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("recovery: created %s", path)
    return path


class _SignalWatch:
    """Catch SIGINT/SIGTERM in whatever thread the kernel picks, act on them in our own thread.

    The C-level handler only writes the signal number to a socket (`set_wakeup_fd`); a thread
    reads it, so this works while the main thread is inside Bytewax's Rust loop and whatever
    native threads (BLAS pools, Bytewax workers) exist.
    """

    def __init__(self, stop: threading.Event, timeout: float = 30.0) -> None:
        self.stop = stop
        self.timeout = timeout
        self.signalled = False
        self._read, self._write = socket.socketpair()
        self._write.setblocking(False)
        self._previous = {s: signal.signal(s, _ignore) for s in _SIGNALS}
        self._previous_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, name="edgewax-signals", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        count = 0
        while True:
            try:
                data = self._read.recv(16)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum not in _SIGNALS:
                    continue
                count += 1
                name = signal.Signals(signum).name
                if count == 1:
                    self.signalled = True
                    log.info(
                        "%s: stopping (sources end, in-flight events drain); send it again "
                        "to exit at once",
                        name,
                    )
                    self.stop.set()
                    threading.Thread(
                        target=self._deadline, name="edgewax-shutdown", daemon=True
                    ).start()
                else:
                    log.warning("%s again: exiting now", name)
                    os._exit(128 + signum)

    def _deadline(self) -> None:
        """Past `timeout` after the first signal, exit whatever is still running (exit 1)."""
        time.sleep(self.timeout)
        log.error(
            "still not stopped %.0f s after the signal (settings.shutdown_timeout): exiting now",
            self.timeout,
        )
        logging.shutdown()
        os._exit(1)

    def close(self) -> None:
        signal.set_wakeup_fd(self._previous_fd)
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._write.close()
        self._read.close()


def _ignore(signum: int, frame: object) -> None:
    """The Python-level handler: the work is done by `_SignalWatch._watch`."""


def run(
    compiled: Compiled,
    workers: int = 1,
    handle_signals: bool = True,
    epoch_interval: float = 10.0,
    metrics: MetricsSettings | None = None,
    metrics_required: bool = True,
    engine_metrics: bool = False,
    cluster: Cluster | None = None,
    recovery: bool = False,
    snapshot_interval: float | None = None,
) -> RunResult:
    """Run until every source ends or a signal stops them; raise EdgewaxError for a user's fault.

    With `metrics` (the CLI passes `settings.metrics`), `/metrics`, `/healthz` and `/readyz` are
    served for the life of the run; if the address is taken, that is an error when
    `metrics_required` (the port was configured), else a warning and the run goes on without.

    With `recovery`, state is snapshotted every `snapshot_interval` seconds (Bytewax's epoch) into
    `state_dir/recovery` and a restart resumes from the last snapshot.
    """
    started = time.monotonic()
    _engine_api(engine_metrics, compiled)
    server = _serve_metrics(compiled, metrics, metrics_required)
    for p in compiled.pipelines:
        compiled.metrics.up.labels(p.name).set(1)
    watch = None
    try:
        recovery_config = None
        if recovery:
            from bytewax.recovery import RecoveryConfig

            db = recovery_dir(compiled.spec.state_dir, cluster)
            recovery_config = RecoveryConfig(str(db))  # type: ignore[no-untyped-call]
            compiled.keep_state.set()
            epoch_interval = snapshot_interval or epoch_interval
        timeout = float(compiled.spec.settings.shutdown_timeout)
        watch = _SignalWatch(compiled.stop, timeout) if handle_signals else None
        cli_main(  # type: ignore[no-untyped-call]
            compiled.flow,
            workers_per_process=workers,
            process_id=cluster.process_id if cluster is not None else None,
            addresses=cluster.addresses if cluster is not None else None,
            epoch_interval=timedelta(seconds=epoch_interval),
            recovery_config=recovery_config,
        )
    except Exception as e:
        user_error = _user_error(e)
        if user_error is not None:
            raise user_error from None
        raise
    finally:
        compiled.dead_letters.close()
        for p in compiled.pipelines:
            compiled.metrics.up.labels(p.name).set(0)
        if watch is not None:
            watch.close()
        if server is not None:
            server.stop()
    return RunResult(time.monotonic() - started, bool(watch and watch.signalled))


def _recovery_shape(marker: Path) -> tuple[int, int] | None:
    """(processes, process id) of the run that made a recovery folder, from its marker."""
    try:
        data = json.loads(marker.read_text())
        return int(data["processes"]), int(data["process_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _serve_metrics(
    compiled: Compiled, settings: MetricsSettings | None, required: bool
) -> MetricsServer | None:
    if settings is None or not settings.enabled:
        return None
    server = MetricsServer(
        settings,
        compiled.metrics.registry,
        compiled.health,
        base_dir=compiled.spec.base_dir,
        stopping=compiled.stop.is_set,
    )
    try:
        server.start()
    except EdgewaxError as e:
        if required:
            raise
        log.warning("%s; running without it", e)
        return None
    log.info("metrics on %s (and /healthz, /readyz)", server.url())
    if not _loopback(server.host):
        if settings.auth is None:
            log.warning(
                "the metrics endpoint listens on %s without auth: anyone who can reach this "
                "address can read it",
                server.host,
            )
        elif settings.tls is None:
            log.warning(
                "the metrics endpoint listens on %s with basic auth but without TLS: the "
                "password crosses the network in clear text",
                server.host,
            )
    return server


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _engine_api(enabled: bool, compiled: Compiled) -> None:
    """Bytewax's own API server: off unless asked for, because it binds every interface."""
    if not enabled:
        os.environ.pop(ENGINE_API_ENV, None)
        return
    state = compiled.spec.state_dir
    state.mkdir(parents=True, exist_ok=True)
    os.environ[ENGINE_API_ENV] = "true"
    # It writes the dataflow's JSON there; keep it in the state folder, not the working folder.
    os.environ.setdefault("BYTEWAX_DATAFLOW_API_CACHE_PATH", str(state))
    log.warning(
        "--engine-metrics: Bytewax's dataflow API listens on 0.0.0.0:3030, every interface, "
        "with no auth; use it only on a trusted network"
    )


def _user_error(e: BaseException) -> EdgewaxError | None:
    """The EdgewaxError behind an exception Bytewax wrapped, if the cause is a user's mistake."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, EdgewaxError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None
