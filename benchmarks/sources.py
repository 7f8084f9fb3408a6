"""Sources benchmark: camera frames through the image nodes, and MQTT messages in, each side by side
with the same work done by hand in a plain loop, in one run.

1. Frames. A video file (MJPG/AVI, made here from scikit-learn's bundled sample images: half the
   clip still, half with a moving patch) goes decode -> resize 224x224 -> motion gate ->
   to_tensor (float32, /255), as a compiled edgewax pipeline (`source.camera` with `speed: 0`,
   `image.resize`, `image.motion`, `image.to_tensor`, a counting sink) and as the same OpenCV/numpy
   calls in a plain Python loop. Bar: pipeline / plain <= 1.15 in time per frame.
2. MQTT. N JSON messages are queued for a persistent session on a local mosquitto (QoS 1), then
   drained: by `source.mqtt` (with a field mapping) in a compiled pipeline, and by a bare paho
   client doing the same parsing. Reported in messages/s (no bar).

Runs alternate and the median is reported. The figures are noisy on a shared machine.

    python benchmarks/sources.py                  # 600 frames 640x480, 20,000 messages, 3 runs
    python benchmarks/sources.py --frames 300 --messages 5000 --runs 5 --skip-mqtt

A benchmark, not a test: always exits 0 unless a side fails or the two sides disagree.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from importlib.resources import files
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np

from edgewax.config.spec import load_spec_text
from edgewax.flows.compiler import compile_spec
from edgewax.flows.runner import run
from edgewax.operators.base import NodeOptions, Sink, SinkWriter
from edgewax.operators.registry import register

BAR = 1.15
W, H, FPS = 640, 480, 30.0
SIZE = 224


# ----------------------------------------------------------------------------------- frames


def make_video(path: Path, n: int) -> None:
    folder = files("sklearn.datasets") / "images"
    china = cv2.resize(cv2.imread(str(folder / "china.jpg")), (W, H))
    flower = cv2.resize(cv2.imread(str(folder / "flower.jpg")), (160, 120))
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (W, H))
    for i in range(n):
        f = china.copy()
        if (i // 50) % 2:  # 50 frames moving, 50 still, ...
            x = (i * 7) % (W - 160)
            f[200:320, x : x + 160] = flower
        else:
            f[200:320, 0:160] = flower
        out.write(f)
    out.release()


class _Count:
    def __init__(self) -> None:
        self.events = 0
        self.checksum = 0.0


class CountOptions(NodeOptions):
    into: Any


class _CountWriter(SinkWriter):
    def __init__(self, node: Sink) -> None:
        self.into: _Count = node.options.into
        self.sent = node.ctx.stats.sent.inc

    def write(self, batch: list[dict[str, Any]]) -> None:
        c = self.into
        for e in batch:
            c.checksum += float(e["tensor"][0, 0, 0])
        c.events += len(batch)
        self.sent(len(batch))


@register
class CountSink(Sink):
    """Counts events (benchmark only)."""

    type_name = "bench.count"
    Options: ClassVar[type[NodeOptions]] = CountOptions

    def open(self) -> SinkWriter:
        return _CountWriter(self)


def run_pipeline(video: Path) -> tuple[float, int, float]:
    text = f"""version: 1
settings: {{dead_letter: {{path: null}}}}
pipelines:
  bench:
    nodes:
      - {{id: cam, type: source.camera, file: {video}, speed: 0}}
      - {{id: small, type: image.resize, width: {SIZE}, height: {SIZE}}}
      - {{id: gate, type: image.motion}}
      - {{id: tensor, type: image.to_tensor, scale: 0.00392156862745098}}
      - {{id: out, type: bench.count, into: null}}
"""
    spec = load_spec_text(text, video.parent)
    count = _Count()
    # The sink's option is an object: set it after validation (YAML cannot hold one).
    node = spec.pipelines["bench"].nodes[-1]
    node.options = node.cls.Options.model_construct(into=count)
    compiled = compile_spec(spec)
    started = time.perf_counter()
    run(compiled, workers=1, handle_signals=False)
    return time.perf_counter() - started, count.events, count.checksum


def run_plain(video: Path) -> tuple[float, int, float]:
    """The same calls, by hand: decode, BGR->RGB, resize, motion gate, tensor."""
    started = time.perf_counter()
    cap = cv2.VideoCapture(str(video))
    prev = None
    events, checksum = 0, 0.0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        small = cv2.resize(frame, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        tiny = cv2.resize(gray, (160, 160), interpolation=cv2.INTER_AREA)
        tiny = cv2.blur(tiny, (3, 3))
        first = prev is None
        score = 0.0 if prev is None else float((cv2.absdiff(tiny, prev) > 25).mean())
        prev = tiny
        if not (first or score >= 0.01):
            continue
        tensor = small.astype(np.float32) * np.float32(1 / 255)
        checksum += float(tensor[0, 0, 0])
        events += 1
    cap.release()
    return time.perf_counter() - started, events, checksum


def bench_frames(frames: int, runs: int, tmp: Path) -> None:
    video = tmp / "clip.avi"
    make_video(video, frames)
    times: dict[str, list[float]] = {"pipeline": [], "plain": []}
    kept: dict[str, int] = {}
    sides = [("pipeline", run_pipeline), ("plain", run_plain)]
    run_plain(video)  # warm the page cache and OpenCV
    for r in range(runs):
        for name, fn in sides if r % 2 == 0 else sides[::-1]:
            took, n, _ = fn(video)
            times[name].append(took)
            kept[name] = n
    if kept["pipeline"] != kept["plain"]:
        raise SystemExit(f"sides disagree: pipeline kept {kept['pipeline']}, plain {kept['plain']}")
    pipe, plain = statistics.median(times["pipeline"]), statistics.median(times["plain"])
    print(f"\nframes: {frames} x {W}x{H} MJPG -> resize {SIZE}x{SIZE} -> motion -> to_tensor")
    print(f"  passed the motion gate: {kept['plain']} of {frames}")
    print(f"  {'side':10} {'median s':>9} {'ms/frame':>9} {'frames/s':>9}")
    for name, t in (("pipeline", pipe), ("plain", plain)):
        print(f"  {name:10} {t:9.3f} {1000 * t / frames:9.2f} {frames / t:9.1f}")
    ratio = pipe / plain
    verdict = "meets" if ratio <= BAR else "misses"
    print(f"  pipeline / plain time per frame: {ratio:.3f} ({verdict} the bar <= {BAR})")


# ------------------------------------------------------------------------------------- mqtt


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = tmp / "mosquitto.conf"
    # Unlimited queue for offline persistent sessions, so all N messages wait for the reader.
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\n"
    )
    proc = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _client(cid: str | None = None) -> Any:
    import paho.mqtt.client as mqtt

    return mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=cid or "",
        clean_session=cid is None,
        protocol=mqtt.MQTTv311,
    )


def subscribe_session(port: int, cid: str) -> None:
    """Create the persistent session (subscribe, disconnect) so the broker queues for it."""
    done = threading.Event()
    c = _client(cid)
    c.on_connect = lambda cl, *a: cl.subscribe("plant/+/vib", qos=1)
    c.on_subscribe = lambda *a: done.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(10)
    c.disconnect()
    c.loop_stop()


def publish(port: int, n: int) -> None:
    c = _client()
    c.connect("127.0.0.1", port)
    c.loop_start()
    infos = []
    for i in range(n):
        payload = json.dumps({"t": 1700000000 + i * 0.01, "rms": 0.1 + i % 7, "temp": {"c": 40.5}})
        infos.append(c.publish(f"plant/pump-{i % 4}/vib", payload, qos=1))
    for info in infos:
        info.wait_for_publish(30)
    c.disconnect()
    c.loop_stop()


def drain_pipeline(port: int, n: int, tmp: Path) -> float:
    text = f"""version: 1
settings: {{dead_letter: {{path: null}}}}
pipelines:
  bench:
    nodes:
      - id: vib
        type: source.mqtt
        url: mqtt://127.0.0.1:{port}
        topics: [plant/+/vib]
        client_id: bench-edgewax
        key_topic_level: 1
        time_field: t
        fields: {{rms: rms, temp_c: temp.c}}
      - {{id: out, type: sink.jsonl, path: {tmp / "mqtt.jsonl"}, mode: overwrite}}
"""
    compiled = compile_spec(load_spec_text(text, tmp))
    sent = compiled.metrics.node("bench", "vib", "source.mqtt").sent
    thread = threading.Thread(target=run, args=(compiled,), kwargs={"handle_signals": False})
    started = time.perf_counter()
    thread.start()
    while sent._value.get() < n:
        time.sleep(0.002)
    took = time.perf_counter() - started
    compiled.stop.set()
    thread.join(10)
    return took


def drain_plain(port: int, n: int) -> float:
    got = [0]
    done = threading.Event()
    out = open(os.devnull, "w")  # noqa: SIM115

    def on_message(cl: Any, u: Any, msg: Any) -> None:
        rec = json.loads(msg.payload)
        ev = {"rms": rec["rms"], "temp_c": rec["temp"]["c"], "ts": float(rec["t"]),
              "key": msg.topic.split("/")[1]}
        out.write(json.dumps(ev) + "\n")
        got[0] += 1
        if got[0] >= n:
            done.set()

    c = _client("bench-plain")
    c.on_connect = lambda cl, *a: cl.subscribe("plant/+/vib", qos=1)
    c.on_message = on_message
    started = time.perf_counter()
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(120)
    took = time.perf_counter() - started
    c.disconnect()
    c.loop_stop()
    out.close()
    return took


def bench_mqtt(n: int, runs: int, tmp: Path) -> None:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        print("\nmqtt: mosquitto is not installed; skipped")
        return
    times: dict[str, list[float]] = {"source.mqtt": [], "plain paho": []}
    for r in range(runs):
        order = ["source.mqtt", "plain paho"] if r % 2 == 0 else ["plain paho", "source.mqtt"]
        for name in order:
            proc, port = start_broker(tmp)
            try:
                cid = "bench-edgewax" if name == "source.mqtt" else "bench-plain"
                subscribe_session(port, cid)
                publish(port, n)
                if name == "source.mqtt":
                    times[name].append(drain_pipeline(port, n, tmp))
                else:
                    times[name].append(drain_plain(port, n))
            finally:
                proc.kill()
                proc.wait()
    print(f"\nmqtt: {n} queued JSON messages (QoS 1, persistent session) drained and mapped")
    print(f"  {'side':12} {'median s':>9} {'msgs/s':>9}")
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"  {name:12} {t:9.3f} {n / t:9.0f}")
    ratio = statistics.median(times["source.mqtt"]) / statistics.median(times["plain paho"])
    print(f"  source.mqtt / plain time per message: {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-mqtt", action="store_true")
    parser.add_argument("--skip-frames", action="store_true")
    args = parser.parse_args()
    print(f"python {platform.python_version()}, opencv {cv2.__version__}, "
          f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if not args.skip_frames:
            bench_frames(args.frames, args.runs, tmp)
        if not args.skip_mqtt:
            bench_mqtt(args.messages, args.runs, tmp)


if __name__ == "__main__":
    main()
