"""Running a compiled dataflow: Bytewax's own runtime, clean stop on SIGINT / SIGTERM.

Bytewax dies on SIGTERM unless told otherwise. Here both signals are caught and handed to one
watcher thread: the first sets the stop flag (sources end, in-flight batches drain, sinks flush and
close, exit 0); a second exits at once.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

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


class _SignalWatch:
    """Catch SIGINT/SIGTERM in whatever thread the kernel picks, act on them in our own thread.

    The C-level handler only writes the signal number to a socket (`set_wakeup_fd`); a thread
    reads it, so this works while the main thread is inside Bytewax's Rust loop and whatever
    native threads (BLAS pools, Bytewax workers) exist.
    """

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
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
                else:
                    log.warning("%s again: exiting now", name)
                    os._exit(128 + signum)

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
) -> RunResult:
    """Run until every source ends or a signal stops them; raise EdgewaxError for a user's fault.

    With `metrics` (the CLI passes `settings.metrics`), `/metrics`, `/healthz` and `/readyz` are
    served for the life of the run; if the address is taken, that is an error when
    `metrics_required` (the port was configured), else a warning and the run goes on without.
    """
    started = time.monotonic()
    _engine_api(engine_metrics, compiled)
    server = _serve_metrics(compiled, metrics, metrics_required)
    for p in compiled.pipelines:
        compiled.metrics.up.labels(p.name).set(1)
    watch = None
    try:
        watch = _SignalWatch(compiled.stop) if handle_signals else None
        cli_main(  # type: ignore[no-untyped-call]
            compiled.flow,
            workers_per_process=workers,
            epoch_interval=timedelta(seconds=epoch_interval),
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
