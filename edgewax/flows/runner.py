"""Running a compiled dataflow: Bytewax's own runtime, clean stop on SIGINT / SIGTERM.

Bytewax dies on SIGTERM unless told otherwise. Here both signals are caught and handed to one
watcher thread: the first sets the stop flag (sources end, in-flight batches drain, sinks flush and
close, exit 0); a second exits at once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from bytewax._bytewax import cli_main

from edgewax.errors import EdgewaxError
from edgewax.flows.compiler import Compiled

log = logging.getLogger("edgewax.run")

_SIGNALS = {signal.SIGINT, signal.SIGTERM}


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
) -> RunResult:
    """Run until every source ends or a signal stops them; raise EdgewaxError for a user's fault."""
    started = time.monotonic()
    for p in compiled.pipelines:
        compiled.metrics.up.labels(p.name).set(1)
    watch = _SignalWatch(compiled.stop) if handle_signals else None
    try:
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
    return RunResult(time.monotonic() - started, bool(watch and watch.signalled))


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
