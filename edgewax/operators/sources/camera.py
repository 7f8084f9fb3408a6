"""`source.camera`: frames from a USB/V4L2 device, an RTSP/HTTP stream or a video file (OpenCV).

Frames are read on a thread of their own, into a small queue, so a slow model never stalls
capture; what happens when the queue is full is the `frame_policy`:

- `latest` (default for devices and streams): downstream always gets the newest frame; frames it
  had no time for are skipped and counted (`edgewax_frames_skipped{reason="latest"}`);
- `drop_oldest`: a queue of `buffer` frames, in order; when full the oldest is skipped;
- `block` (default for files): capture waits for downstream; nothing is skipped.

A file replays at its native frame rate times `speed` (0: as fast as decoding goes, in batches of
up to `batch_size` frames), and from the start again with `loop`. A device or stream that drops or
cannot be opened is reopened with exponential backoff and jitter (`edgewax_source_reconnects`); so
is a file that is missing, until it appears. The node's readiness check is ok while the source is
open. OpenCV (extra `camera`) is imported when the node starts, not before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from edgewax.config.types import EventTime
from edgewax.errors import EdgewaxError
from edgewax.events import Event, event_time
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
from edgewax.operators.sources.backoff import Backoff, ReconnectOptions
from edgewax.operators.sources.partitions import LivePartition, PartitionedSource

log = logging.getLogger("edgewax.camera")

Policy = Literal["latest", "drop_oldest", "block"]

_IDLE_WAKE = 0.005
"""How soon to look again when no frame is ready (seconds): well under a frame at 60 fps."""


def import_cv2() -> Any:
    """OpenCV, or a readable error naming the extra to install."""
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - the test set-up installs the extra
        raise EdgewaxError(
            "source.camera and the image nodes need OpenCV: pip install 'edgewax[camera]'"
        ) from e
    return cv2


class CameraOptions(NodeOptions):
    device: int | str | None = Field(
        None, description="Local camera: an index (0) or a device path (`/dev/video0`)."
    )
    url: str | None = Field(
        None,
        description="Network stream read by FFmpeg, e.g. `rtsp://cam-1/stream` or an HTTP "
        "MJPEG URL. Put credentials in `${ENV}` variables.",
    )
    file: str | None = Field(
        None, description="Video file, relative to the config file's folder (e.g. `clip.avi`)."
    )
    key: str | None = Field(None, description="Camera id, the events' `key`; default: the node id.")
    fps: float | None = Field(
        None, gt=0, description="Most frames per second to emit; extra frames are skipped (`fps`)."
    )
    width: int | None = Field(None, ge=1, description="Frame width in pixels (frames are resized).")
    height: int | None = Field(None, ge=1, description="Frame height in pixels.")
    color: Literal["rgb", "bgr"] = Field(
        "rgb", description="Channel order of `frame`: `rgb` (what models expect) or OpenCV's `bgr`."
    )
    frame_policy: Policy | None = Field(
        None,
        description="When downstream is slower than the camera: `latest` (skip to the newest "
        "frame), `drop_oldest` (bounded queue), `block` (wait; nothing skipped). Default: "
        "`block` for files, `latest` otherwise.",
    )
    buffer: int | None = Field(
        None,
        ge=1,
        description="Frames the capture queue holds; default: 1 for `latest`, 30 for "
        "`drop_oldest`, `batch_size` for `block`.",
    )
    batch_size: int = Field(
        16, ge=1, description="Most frames handed downstream at once (memory: frames x bytes)."
    )
    speed: float = Field(
        1.0,
        ge=0,
        description="Files only: replay pace, 1 the file's own frame rate, N times faster, 0 as "
        "fast as decoding goes.",
    )
    loop: bool = Field(False, description="Files only: start again at the end (a test camera).")
    start: EventTime | None = Field(
        None,
        description="Files only: event time of the first frame (epoch seconds or ISO-8601); "
        "frame i is at start + i / the file's fps. Default: when the file is opened.",
    )
    reconnect: ReconnectOptions = Field(
        default_factory=ReconnectOptions,
        description="Reopening a source that drops or cannot be opened, e.g. `{initial: 1s, "
        "max: 1m}`; `{enabled: false}` ends the source instead.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> CameraOptions:
        given = [n for n in ("device", "url", "file") if getattr(self, n) is not None]
        if len(given) != 1:
            what = "none" if not given else " and ".join(f"`{n}`" for n in given)
            raise ValueError(f"give exactly one of `device`, `url` or `file` (got {what})")
        if (self.width is None) != (self.height is None):
            raise ValueError("give both `width` and `height`, or neither")
        return self

    @field_validator("start")
    @classmethod
    def _check_start(cls, start: float | str | None) -> float | str | None:
        if start is not None:
            event_time(start)
        return start

    @property
    def policy(self) -> Policy:
        if self.frame_policy is not None:
            return self.frame_policy
        return "block" if self.file is not None else "latest"


class _Capture(threading.Thread):
    """Reads frames into a queue; reopens with backoff; paces file replay by its frame rate."""

    def __init__(self, part: _CameraPartition, start_index: int) -> None:
        super().__init__(name=f"edgewax-camera-{part.ctx.node_id}", daemon=True)
        self.part = part
        self.index = start_index
        self.done = False
        self.error: str | None = None

    def run(self) -> None:
        try:
            self._run()
        except Exception as e:  # ours: keep the traceback, end the source
            log.exception("camera %s: capture failed", self.part.ctx.node_id)
            self.error = f"{type(e).__name__}: {e}"
        finally:
            with self.part.cond:
                self.done = True
                self.part.cond.notify_all()

    def _wait(self, seconds: float) -> bool:
        """Sleep unless stopped; True when stopped."""
        return self.part.halt.wait(seconds) or self.part.ctx.stop.is_set()

    def _run(self) -> None:
        part = self.part
        o = part.options
        cv2 = part.cv2
        backoff = Backoff(o.reconnect)
        first_attempt = True
        while not self._stopped():
            if not first_attempt:
                part.reconnects.inc()
            first_attempt = False
            cap = part.open_capture()
            if cap is None or not cap.isOpened():
                if cap is not None:
                    cap.release()
                part.check.fail(f"cannot open {part.describe()}")
                if not o.reconnect.enabled:
                    self.error = f"cannot open {part.describe()}"
                    log.error("camera %s: %s", part.ctx.node_id, self.error)
                    return
                wait = backoff.next()
                log.warning(
                    "camera %s: cannot open %s; retrying in %.1f s",
                    part.ctx.node_id,
                    part.describe(),
                    wait,
                )
                if self._wait(wait):
                    return
                continue
            backoff.reset()
            part.check.ok(f"open: {part.describe()}")
            try:
                ended = self._read_all(cap, cv2)
            finally:
                cap.release()
            if self._stopped():
                return
            if part.is_file:
                if ended and o.loop:
                    first_attempt = True  # a loop is not a reconnect
                    continue
                if ended:
                    part.check.ok("finished")
                    return
            part.check.fail(f"lost {part.describe()}")
            if not o.reconnect.enabled:
                self.error = f"lost {part.describe()}"
                return
            wait = backoff.next()
            log.warning(
                "camera %s: lost %s; reopening in %.1f s", part.ctx.node_id, part.describe(), wait
            )
            if self._wait(wait):
                return

    def _stopped(self) -> bool:
        return self.part.halt.is_set() or self.part.ctx.stop.is_set()

    def _read_all(self, cap: Any, cv2: Any) -> bool:
        """Read until the source ends (True) or fails or we stop (False)."""
        part = self.part
        o = part.options
        is_file = part.is_file
        rate = part.file_fps(cap) if is_file else 0.0
        if is_file and part.total_frames:
            pos = self.index % part.total_frames if o.loop else self.index
            if pos:
                cap.set(cv2.CAP_PROP_POS_FRAMES, pos)
        min_gap = 0.999 / o.fps if o.fps else 0.0
        size = (o.width, o.height) if o.width is not None else None
        to_rgb = o.color == "rgb"
        wall0 = time.time()
        index0 = self.index
        stop = part.halt
        global_stop = part.ctx.stop
        while not (stop.is_set() or global_stop.is_set()):
            ok, frame = cap.read()
            if not ok or frame is None:
                return is_file
            index = self.index
            self.index += 1
            if is_file:
                ts = part.start + index / rate
                if o.speed > 0:
                    delay = wall0 + (index - index0) / rate / o.speed - time.time()
                    if delay > 0 and self._wait(delay):
                        return False
            else:
                ts = time.time()
            part.count_read(frame.nbytes)
            if min_gap and part.last_ts is not None and ts - part.last_ts < min_gap:
                part.count_skip("fps")
                continue
            part.last_ts = ts
            if size is not None and (frame.shape[1], frame.shape[0]) != size:
                frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
            if to_rgb:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            part.push((ts, index, frame))
        return False


class _CameraPartition(LivePartition):
    def __init__(self, ctx: NodeContext, options: CameraOptions, key: str, base: Path) -> None:
        super().__init__(ctx, options.batch_size)
        self.options = options
        self.key = key
        self.cv2 = import_cv2()
        self.is_file = options.file is not None
        self.path = ctx.path(options.file) if options.file is not None else None
        self.policy = options.policy
        default_buffer = {"latest": 1, "drop_oldest": 30, "block": options.batch_size}
        self.maxlen = options.buffer or default_buffer[self.policy]
        self.queue: deque[tuple[float, int, Any]] = deque()
        self.cond = threading.Condition()
        self.start = event_time(options.start) if options.start is not None else time.time()
        self.total_frames = 0
        self.last_ts: float | None = None
        self.next_index = 0  # the next frame index to emit (the resume position)
        self._read_n = 0
        self._read_bytes = 0
        self._skips: dict[str, int] = {}
        self.thread: _Capture | None = None
        self.check.fail(f"opening {self.describe()}")

    def describe(self) -> str:
        o = self.options
        if o.file is not None:
            return f"file {self.path}"
        if o.url is not None:
            return "stream " + o.url.split("@")[-1]  # never log credentials in a URL
        return f"device {o.device}"

    def open_capture(self) -> Any:
        cv2 = self.cv2
        o = self.options
        if self.path is not None:
            if not self.path.is_file():
                return None
            cap = cv2.VideoCapture(str(self.path))
            self.total_frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
            return cap
        if o.url is not None:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 5000]
            return cv2.VideoCapture(o.url, cv2.CAP_FFMPEG, params)
        device = o.device
        if isinstance(device, str) and device.isdigit():
            device = int(device)
        if isinstance(device, str) and not Path(device).exists():
            return None
        cap = cv2.VideoCapture(device)
        if cap.isOpened():
            if o.width is not None:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, o.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, o.height)
            if o.fps is not None:
                cap.set(cv2.CAP_PROP_FPS, o.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    def file_fps(self, cap: Any) -> float:
        fps = float(cap.get(self.cv2.CAP_PROP_FPS) or 0.0)
        return fps if 0 < fps < 1000 else 25.0

    # ------------------------------------------------ capture thread side

    def count_read(self, nbytes: int) -> None:
        self._read_n += 1
        self._read_bytes += nbytes

    def count_skip(self, reason: str, n: int = 1) -> None:
        self._skips[reason] = self._skips.get(reason, 0) + n

    def push(self, item: tuple[float, int, Any]) -> None:
        q = self.queue
        with self.cond:
            if self.policy == "block":
                while len(q) >= self.maxlen and not (self.halt.is_set() or self.ctx.stop.is_set()):
                    self.cond.wait(0.1)
            elif len(q) >= self.maxlen:
                q.popleft()
                self.count_skip(self.policy)
            q.append(item)
            self.cond.notify_all()

    # ------------------------------------------------ Bytewax side

    def tell(self) -> Any:
        # A file's frame times count from `start`: a resumed replay keeps the first run's.
        return (self.next_index, self.start)

    def seek(self, position: Any) -> None:
        index, start = position if isinstance(position, tuple) else (position, None)
        if self.is_file:
            self.next_index = int(index)
            if start is not None:
                self.start = float(start)

    def read(self, n: int) -> list[Event]:
        if self.thread is None:
            self.thread = _Capture(self, self.next_index)
            self.thread.start()
        q = self.queue
        with self.cond:
            if not q and not self.thread.done:
                # Wait a moment for the next frame (woken as soon as it is pushed): cheaper than
                # a Bytewax wake-up, and the worker has nothing else from this source to do.
                self.cond.wait(_IDLE_WAKE)
            if self.policy == "latest" and len(q) > 1:
                self.count_skip("latest", len(q) - 1)
                items = [q.pop()]
                q.clear()
            else:
                items = [q.popleft() for _ in range(min(n, len(q)))]
            if items:
                self.cond.notify_all()
            done = self.thread.done and not q
            read_n, read_bytes, self._read_n, self._read_bytes = (
                self._read_n,
                self._read_bytes,
                0,
                0,
            )
            skips, self._skips = self._skips, {}
        stats = self.ctx.stats
        if read_n:
            stats.received.inc(read_n)
            stats.source_bytes.inc(read_bytes)
        for reason, count in skips.items():
            self.skipped(reason).inc(count)
            stats.discard(reason, count)
        if not items:
            if done:
                if self.thread.error is not None:
                    log.error("camera %s ended: %s", self.ctx.node_id, self.thread.error)
                raise StopIteration
            self._wake = time.time() + _IDLE_WAKE
            return []
        self._wake = None
        key = self.key
        self.next_index = items[-1][1] + 1
        return [{"ts": ts, "key": key, "frame": f, "frame_index": i} for ts, i, f in items]

    def skipped(self, reason: str) -> Any:
        return self.ctx.stats.counter(
            "edgewax_frames_skipped", "Frames skipped before processing, by reason.", reason=reason
        )

    def interrupt(self) -> None:
        with self.cond:
            self.cond.notify_all()


@register
class Camera(Source):
    """Frames from a camera, a network stream or a video file, with a frame-dropping policy.

    Events: `ts` (capture time; for files the frame's time in the file from `start`), `key` (the
    camera id), `frame` (uint8 array, height x width x 3) and `frame_index` (0, 1, ... as read,
    skipped frames included). Counters: frames read (`edgewax_source_bytes` and the node's received
    count), frames skipped by reason (`edgewax_frames_skipped{reason}`: `latest`,
    `drop_oldest`, `fps`), reopenings (`edgewax_source_reconnects`).

    >>> from edgewax.testing import run_yaml
    >>> import cv2, numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "clip.avi")
    >>> out = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    >>> for i in range(3): out.write(np.full((24, 32, 3), 40 * i, np.uint8))
    >>> out.release()
    >>> run_yaml(f'''
    ... - {{id: cam, type: source.camera, file: {path}, speed: 0, start: 0}}
    ... - {{id: out, type: sink.stdout}}''')
    {"ts":0.0,"key":"cam","frame":...,"frame_index":0}
    {"ts":0.1,"key":"cam","frame":...,"frame_index":1}
    {"ts":0.2,"key":"cam","frame":...,"frame_index":2}
    """

    type_name = "source.camera"
    Options: ClassVar[type[NodeOptions]] = CameraOptions

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        shape = (options.height, options.width, 3)
        return {
            **BASE_FIELDS,
            "frame": FieldInfo("uint8", shape, raw=True),
            "frame_index": FieldInfo("int64"),
        }

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        o: CameraOptions = options
        if o.file is not None and not o.reconnect.enabled:
            path = Path(o.file).expanduser()
            path = path if path.is_absolute() else base_dir / path
            if not path.is_file():
                return [
                    Problem(
                        ("file",),
                        f"no file at `{o.file}`",
                        "check the path (relative to the config file), or keep `reconnect` "
                        "enabled to wait for the file",
                    )
                ]
        if o.file is None and (o.loop or o.start is not None):
            return [
                Problem(
                    ("loop" if o.loop else "start",),
                    "`loop` and `start` are for files",
                    "remove it, or read a `file`",
                )
            ]
        return []

    def source(self) -> PartitionedSource:
        key = self.options.key or self.ctx.node_id
        return PartitionedSource(
            {key: lambda: _CameraPartition(self.ctx, self.options, key, self.ctx.base_dir)}
        )
