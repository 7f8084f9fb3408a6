"""The status on a terminal: a few lines pinned to the bottom during `edgewax run`, or the whole
screen for `edgewax top`. Plain ANSI escapes, no curses and no extra dependency.

`edgewax run` keeps the status in the terminal's last lines by giving the rest of the screen to a
scroll region (as apt does), so logs on stderr and `sink.stdout` output on stdout scroll above it
instead of tearing it. It is on only when stderr is a terminal (and `TERM` is not `dumb`), and off
with `--quiet`.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from typing import TextIO

from edgewax.errors import EdgewaxError
from edgewax.metrics.status import Snapshot, Tracker, render

ESC = "\x1b"

log = logging.getLogger("edgewax.live")


def wanted(stream: TextIO) -> bool:
    """Whether a live view makes sense on `stream`: a real terminal that understands escapes."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and os.environ.get("TERM", "") not in ("dumb", "")


def _size(stream: TextIO) -> tuple[int, int]:
    """(columns, rows) of the terminal behind `stream`."""
    try:
        size = os.get_terminal_size(stream.fileno())
        return size.columns, size.lines
    except (OSError, ValueError, AttributeError):
        fallback = shutil.get_terminal_size((100, 24))
        return fallback.columns, fallback.lines


class LiveView:
    """Redraws the status at the bottom of the terminal about once a second, in its own thread."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        stream: TextIO,
        interval: float = 1.0,
        header: Callable[[], str] | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.stream = stream
        self.interval = interval
        self.header = header
        self.tracker = Tracker()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._height = 0  # lines reserved at the bottom
        self._rows = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="edgewax-live", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._release()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tracker.add(self.snapshot())
                self._draw()
            except (OSError, ValueError):  # the terminal went away: nothing left to show on
                return
            except Exception:  # a bug in the view must not end the run: stop showing it
                self._release()
                log.exception("the live status failed and is off for the rest of the run")
                return
            self._stop.wait(self.interval)

    def lines(self, width: int) -> list[str]:
        lines = render(self.tracker.status(), width=width, now=self.tracker.now)
        if self.header is not None:
            lines.insert(0, self.header()[:width])
        return lines

    def _draw(self) -> None:
        cols, rows = _size(self.stream)
        if rows < 4:
            return  # no room to pin anything
        lines = self.lines(max(20, cols - 1))
        height = min(len(lines), max(1, rows // 2))
        lines = lines[:height]
        out = []
        if height != self._height or rows != self._rows:
            out.append(self._reserve(height, rows))
        out.append(f"{ESC}7")  # save the cursor: it belongs to the scrolling output
        top = rows - height + 1
        for i in range(height):
            text = lines[i] if i < len(lines) else ""
            style = f"{ESC}[1m" if i == 0 else ""
            out.append(f"{ESC}[{top + i};1H{ESC}[2K{style}{text}{ESC}[0m")
        out.append(f"{ESC}8")
        self.stream.write("".join(out))
        self.stream.flush()

    def _reserve(self, height: int, rows: int) -> str:
        """Make room at the bottom: scroll what is there up, then fence it off."""
        grow = max(0, height - self._height)
        self._height, self._rows = height, rows
        return (
            "\n" * grow  # push the output up (it scrolls if the cursor is near the bottom)
            + (f"{ESC}[{grow}A" if grow else "")
            + f"{ESC}7{ESC}[1;{rows - height}r{ESC}8"  # region setting homes the cursor
        )

    def _release(self) -> None:
        if not self._height:
            return
        _, rows = _size(self.stream)
        top = rows - self._height + 1
        clear = "".join(f"{ESC}[{top + i};1H{ESC}[2K" for i in range(self._height))
        try:
            self.stream.write(f"{ESC}7{ESC}[r{clear}{ESC}8")
            self.stream.flush()
        except (OSError, ValueError):
            pass
        self._height = 0


def top(
    fetch: Callable[[], Snapshot],
    stream: TextIO,
    interval: float = 1.0,
    header: Callable[[], str] | None = None,
    once: bool = False,
) -> None:
    """`edgewax top`: the status on the whole screen until Ctrl-C, or printed once (`once`).

    With `once`, two scrapes `interval` apart give the rates; the output is plain text.
    """
    tracker = Tracker()
    if once:
        tracker.add(fetch())
        time.sleep(interval)
        tracker.add(fetch())
        width = 200 if not wanted(stream) else _size(stream)[0] - 1
        lines = render(tracker.status(), width=width, now=tracker.now)
        if header is not None:
            lines.insert(0, header())
        stream.write("\n".join(lines) + "\n")
        stream.flush()
        return
    stream.write(f"{ESC}[?1049h{ESC}[?25l")  # alternate screen, hide the cursor
    try:
        while True:
            problem = ""
            try:
                tracker.add(fetch())
            except EdgewaxError as e:  # keep watching: the instance may come back
                problem = str(e)
            cols, rows = _size(stream)
            lines = render(tracker.status(), width=cols - 1, now=tracker.now)
            if header is not None:
                lines.insert(0, header())
            if problem:
                lines.insert(0, problem)
            # Overwrite in place (no full clear, so no flicker), then clear what is left below.
            text = "\n".join(f"{line[: cols - 1]}{ESC}[K" for line in lines[:rows])
            stream.write(f"{ESC}[H{text}{ESC}[J")
            stream.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        stream.write(f"{ESC}[?25h{ESC}[?1049l")
        stream.flush()
