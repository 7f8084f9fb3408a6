"""source.camera and the image nodes on real video: a clip made from scikit-learn's bundled images,
written with OpenCV, replayed from a file and served as an MJPEG stream over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edgewax.config.spec import load_spec_text
from edgewax.flows.compiler import Compiled, compile_spec
from edgewax.operators.base import Transform
from edgewax.operators.registry import register
from edgewax.testing import run_compiled

W, H, FPS = 160, 120, 10.0
STILL_A, MOVING, STILL_B = 10, 10, 10  # frames 0-9 still, 10-19 a patch moves, 20-29 still


def make_frames() -> list[np.ndarray]:
    """RGB frames: scikit-learn's china.jpg as background, a flower.jpg patch moving over it."""
    # The JPEGs behind sklearn.datasets.load_sample_images (read with OpenCV: no Pillow needed).
    from importlib.resources import files

    folder = files("sklearn.datasets") / "images"
    china, flower = (
        cv2.cvtColor(cv2.imread(str(folder / name)), cv2.COLOR_BGR2RGB)
        for name in ("china.jpg", "flower.jpg")
    )
    background = cv2.resize(china, (W, H), interpolation=cv2.INTER_AREA)
    patch = cv2.resize(flower, (40, 30), interpolation=cv2.INTER_AREA)
    frames = [background.copy() for _ in range(STILL_A)]
    x = 0
    for i in range(MOVING):
        x = 8 * i
        f = background.copy()
        f[40:70, x : x + 40] = patch
        frames.append(f)
    last = frames[-1]
    frames += [last.copy() for _ in range(STILL_B)]
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = FPS) -> Path:
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    assert out.isOpened()
    for f in frames:
        out.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out.release()
    return path


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return make_frames()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, frames: list[np.ndarray]) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.avi", frames)


def compiled_for(nodes: str, base: Path) -> Compiled:
    text = "version: 1\nsettings: {dead_letter: {path: null}}\npipelines:\n  p:\n    nodes:\n"
    text += "".join(f"      {line}\n" for line in nodes.strip().splitlines())
    return compile_spec(load_spec_text(text, base))


def counter(compiled: Compiled, name: str, **labels: str) -> float:
    value = compiled.metrics.registry.get_sample_value(name, labels)
    return float(value or 0.0)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def node_labels(node: str, type_name: str) -> dict[str, str]:
    return {"pipeline": "p", "node": node, "type": type_name}


def test_file_frames_counts_and_timestamps(clip: Path, tmp_path: Path) -> None:
    c = compiled_for(
        f"""
- {{id: cam, type: source.camera, file: {clip}, speed: 0, start: 1000, width: {W}, height: {H}}}
- {{id: meta, type: drop, fields: [frame]}}
- {{id: out, type: sink.jsonl, path: out.jsonl}}
""",
        tmp_path,
    )
    run_compiled(c)
    events = read_jsonl(tmp_path / "out.jsonl")
    n = STILL_A + MOVING + STILL_B
    assert [e["frame_index"] for e in events] == list(range(n))
    assert [e["ts"] for e in events] == pytest.approx([1000 + i / FPS for i in range(n)])
    assert {e["key"] for e in events} == {"cam"}
    cam = node_labels("cam", "source.camera")
    assert counter(c, "edgewax_node_received_events_total", **cam) == n
    assert counter(c, "edgewax_node_sent_events_total", **cam) == n
    assert counter(c, "edgewax_source_bytes_total", **cam) == n * W * H * 3
    status = c.health.status()["p/cam"]
    assert status["kind"] == "source"


def test_frames_are_rgb_uint8_with_declared_shape(clip: Path, frames: list[np.ndarray]) -> None:
    from edgewax.operators.sources.camera import Camera, CameraOptions

    opts = CameraOptions(file=str(clip), width=W, height=H)
    info = Camera.fields_out(opts, None, clip.parent)
    assert info is not None and info["frame"].shape == (H, W, 3) and info["frame"].raw
    bucket = _capture(f"- {{id: cam, type: source.camera, file: {clip}, speed: 0}}", clip.parent)
    got = bucket[0]["frame"]
    assert got.dtype == np.uint8 and got.shape == (H, W, 3)
    # MJPG is lossy: the decoded frame is close to the RGB original, channel order included.
    assert np.abs(got.astype(int) - frames[0].astype(int)).mean() < 6


def _capture(nodes: str, base: Path) -> list[dict[str, Any]]:
    """Run `nodes` into a recorder and return the events it saw."""
    recorded: list[dict[str, Any]] = []
    _Recorder.sink = recorded
    tail = "\n- {id: rec, type: test.record}\n- {id: sink, type: sink.jsonl, path: /dev/null}"
    run_compiled(compiled_for(nodes + tail, base))
    return recorded


@register
class _Recorder(Transform):
    """Keeps every event it sees (tests only)."""

    type_name = "test.record"
    sink: list[dict[str, Any]] = []

    def process(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        _Recorder.sink.extend(batch)
        return [{"ts": e["ts"], "key": e["key"]} for e in batch]


@register
class _Slow(Transform):
    """Sleeps 100 ms a batch: a model slower than the camera (tests only)."""

    type_name = "test.slow"

    def process(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        time.sleep(0.1)
        return batch


def test_latest_skips_frames_a_slow_model_has_no_time_for(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    clip = write_video(tmp_path / "fast.avi", frames + frames, fps=40.0)  # 60 frames, 1.5 s
    c = compiled_for(
        f"""
- {{id: cam, type: source.camera, file: {clip}, frame_policy: latest}}
- {{id: slow, type: test.slow}}
- {{id: meta, type: drop, fields: [frame]}}
- {{id: out, type: sink.jsonl, path: out.jsonl}}
""",
        tmp_path,
    )
    started = time.monotonic()
    run_compiled(c)
    took = time.monotonic() - started
    events = read_jsonl(tmp_path / "out.jsonl")
    cam = node_labels("cam", "source.camera")
    skipped = counter(c, "edgewax_frames_skipped_total", **cam, reason="latest")
    # Capture kept real time (the slow node did not stall it) and the model saw fresh frames only.
    assert 1.3 < took < 4.0, took
    assert counter(c, "edgewax_node_received_events_total", **cam) == 60
    assert 5 <= len(events) <= 30, len(events)
    assert skipped > 20 and skipped + len(events) == 60
    assert counter(c, "edgewax_node_discarded_events_total", **cam, reason="latest") == skipped
    idx = [e["frame_index"] for e in events]
    assert idx == sorted(idx) and idx[-1] >= 55


def test_block_replays_at_native_fps_without_skipping(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    clip = write_video(tmp_path / "short.avi", frames[:10], fps=20.0)  # 0.5 s
    c = compiled_for(
        f"""
- {{id: cam, type: source.camera, file: {clip}, speed: 1}}
- {{id: slow, type: test.slow}}
- {{id: meta, type: drop, fields: [frame]}}
- {{id: out, type: sink.jsonl, path: out.jsonl}}
""",
        tmp_path,
    )
    started = time.monotonic()
    run_compiled(c)
    assert time.monotonic() - started > 0.45
    assert [e["frame_index"] for e in read_jsonl(tmp_path / "out.jsonl")] == list(range(10))


def test_loop_and_fps_cap(clip: Path, tmp_path: Path) -> None:
    # 30 frames at 10 fps looped twice = 6 s of video; fps 5 keeps every other frame.
    c = compiled_for(
        f"""
- {{id: cam, type: source.camera, file: {clip}, speed: 0, loop: true, fps: 5, start: 0}}
- {{id: meta, type: drop, fields: [frame]}}
- {{id: first, type: filter, where: "frame_index < 60"}}
- {{id: out, type: sink.jsonl, path: out.jsonl}}
""",
        tmp_path,
    )
    thread = threading.Thread(target=run_compiled, args=(c,))
    thread.start()
    cam = node_labels("cam", "source.camera")
    deadline = time.monotonic() + 20
    while (
        counter(c, "edgewax_node_received_events_total", **cam) < 62 and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    c.stop.set()
    thread.join(10)
    events = [e for e in read_jsonl(tmp_path / "out.jsonl") if e["frame_index"] < 60]
    assert [e["frame_index"] for e in events] == list(range(0, 60, 2))
    assert events[-1]["ts"] == pytest.approx(5.8)
    assert counter(c, "edgewax_frames_skipped_total", **cam, reason="fps") >= 30
    assert counter(c, "edgewax_source_reconnects_total", **cam) == 0


def test_motion_gate_passes_moving_frames_only(clip: Path, tmp_path: Path) -> None:
    c = compiled_for(
        f"""
- {{id: cam, type: source.camera, file: {clip}, speed: 0, start: 0}}
- {{id: small, type: image.resize, width: 80, height: 60}}
- {{id: gate, type: image.motion, width: 80, min_area: 0.02}}
- {{id: tensor, type: image.to_tensor, dtype: int8, offset: -128}}
- {{id: meta, type: drop, fields: [tensor]}}
- {{id: out, type: sink.jsonl, path: out.jsonl}}
""",
        tmp_path,
    )
    run_compiled(c)
    events = read_jsonl(tmp_path / "out.jsonl")
    kept = [e["frame_index"] for e in events]
    # The first frame (nothing to compare with) and the frames where the patch moves.
    assert kept == [0, *range(STILL_A, STILL_A + MOVING)]
    assert all(e["motion_score"] >= 0.02 for e in events[1:])
    gate = node_labels("gate", "image.motion")
    assert counter(c, "edgewax_frames_skipped_total", **gate, reason="no_motion") == 19
    assert counter(c, "edgewax_node_discarded_events_total", **gate, reason="no_motion") == 19


def test_motion_keyframes_and_pass_still(clip: Path, tmp_path: Path) -> None:
    c = compiled_for(
        f"""
- {{id: cam, type: source.camera, file: {clip}, speed: 0, start: 0}}
- {{id: gate, type: image.motion, keyframe_every: 0.5s}}
- {{id: meta, type: drop, fields: [frame]}}
- {{id: out, type: sink.jsonl, path: out.jsonl}}
- {{id: all, type: image.motion, inputs: [cam], pass_still: true, score_field: score}}
- {{id: meta2, type: drop, fields: [frame]}}
- {{id: out2, type: sink.jsonl, path: out2.jsonl}}
""",
        tmp_path,
    )
    run_compiled(c)
    kept = [e["frame_index"] for e in read_jsonl(tmp_path / "out.jsonl")]
    assert kept == [0, 5, *range(10, 20), 24, 29]
    every = read_jsonl(tmp_path / "out2.jsonl")
    assert len(every) == 30
    assert [e["frame_index"] for e in every if e["score"] > 0.01] == list(range(10, 20))


def test_missing_file_is_retried_until_it_appears(tmp_path: Path, frames: list[np.ndarray]) -> None:
    target = tmp_path / "late.avi"
    c = compiled_for(
        """
- {id: cam, type: source.camera, file: late.avi, speed: 0, reconnect: {initial: 50ms, max: 200ms}}
- {id: meta, type: drop, fields: [frame]}
- {id: out, type: sink.jsonl, path: out.jsonl}
""",
        tmp_path,
    )
    thread = threading.Thread(target=run_compiled, args=(c,))
    thread.start()
    cam = node_labels("cam", "source.camera")
    time.sleep(0.6)
    assert not c.health.ready()
    assert "cannot open" in c.health.status()["p/cam"]["detail"]
    assert counter(c, "edgewax_source_reconnects_total", **cam) >= 2
    write_video(tmp_path / "writing.avi", frames[:12])
    (tmp_path / "writing.avi").rename(target)
    thread.join(20)
    assert not thread.is_alive()
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 12


def test_missing_device_reconnects_with_backoff_until_stopped(tmp_path: Path) -> None:
    c = compiled_for(
        """
- {id: cam, type: source.camera, device: /dev/video-edgewax-none, reconnect: {initial: 20ms, max: 100ms, jitter: 0.5}}
- {id: meta, type: drop, fields: [frame]}
- {id: out, type: sink.jsonl, path: out.jsonl}
""",
        tmp_path,
    )
    thread = threading.Thread(target=run_compiled, args=(c,))
    thread.start()
    time.sleep(0.8)
    cam = node_labels("cam", "source.camera")
    reconnects = counter(c, "edgewax_source_reconnects_total", **cam)
    # Waits of ~20, 40, 80, 100, 100 ... ms: a handful, not hundreds (backoff is working).
    assert 3 <= reconnects <= 20, reconnects
    assert not c.health.ready()
    c.stop.set()
    thread.join(10)
    assert not thread.is_alive()


class _MjpegServer:
    """An MJPEG-over-HTTP camera (multipart/x-mixed-replace), as IP cameras serve; each
    connection sends `per_connection` frames and then drops, like a flaky link."""

    def __init__(self, frames: list[np.ndarray], per_connection: int, fps: float = 50.0) -> None:
        jpegs = [
            cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes() for f in frames
        ]
        self.connections = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for i in range(per_connection):
                        jpg = jpegs[i % len(jpegs)]
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                            % len(jpg)
                        )
                        self.wfile.write(jpg + b"\r\n")
                        time.sleep(1 / fps)
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def mjpeg(frames: list[np.ndarray]) -> Iterator[_MjpegServer]:
    server = _MjpegServer(frames, per_connection=25)
    yield server
    server.close()


def test_mjpeg_http_stream_and_reconnect_after_drop(mjpeg: _MjpegServer, tmp_path: Path) -> None:
    c = compiled_for(
        f"""
- {{id: cam, type: source.camera, url: "{mjpeg.url}", frame_policy: drop_oldest, reconnect: {{initial: 50ms}}}}
- {{id: small, type: image.resize, width: 32, height: 24}}
- {{id: meta, type: drop, fields: [frame]}}
- {{id: out, type: sink.jsonl, path: out.jsonl}}
""",
        tmp_path,
    )
    thread = threading.Thread(target=run_compiled, args=(c,))
    thread.start()
    cam = node_labels("cam", "source.camera")
    deadline = time.monotonic() + 30
    while counter(c, "edgewax_node_sent_events_total", **cam) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    ready_while_streaming = c.health.status()["p/cam"]["ready"]
    c.stop.set()
    thread.join(10)
    events = read_jsonl(tmp_path / "out.jsonl")
    assert len(events) >= 40
    assert mjpeg.connections >= 2  # the server dropped us after 25 frames; we came back
    assert counter(c, "edgewax_source_reconnects_total", **cam) >= 1
    assert ready_while_streaming
    ts = [e["ts"] for e in events]
    assert ts == sorted(ts) and abs(ts[-1] - time.time()) < 30  # live streams: wall-clock time


def test_cli_run_of_a_looping_camera_stops_on_sigterm(
    tmp_path: Path, frames: list[np.ndarray]
) -> None:
    import os
    import signal
    import subprocess
    import sys

    from .conftest import ROOT

    write_video(tmp_path / "cam.avi", frames[:20])
    (tmp_path / "p.yaml").write_text(
        "version: 1\npipelines:\n  lobby:\n    nodes:\n"
        "      - {id: cam, type: source.camera, file: cam.avi, loop: true, speed: 2}\n"
        "      - {id: gate, type: image.motion}\n"
        "      - {id: input, type: image.to_tensor, dtype: int8, offset: -128}\n"
        "      - {id: meta, type: drop, fields: [tensor]}\n"
        "      - {id: out, type: sink.jsonl, path: out.jsonl}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgewax", "run", "p.yaml"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while len(read_jsonl(tmp_path / "out.jsonl")) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    kept = [e["frame_index"] for e in read_jsonl(tmp_path / "out.jsonl")]
    # The loop went round at least once: the jump back to the first frame is motion again.
    assert kept[: MOVING + 1] == [0, *range(STILL_A, STILL_A + MOVING)]
    assert kept[MOVING + 1] == 20
    assert "cam" in err and "source.camera" in err
