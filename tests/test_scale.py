"""Scale-out, recovery and shutdown, with real `edgewax run` subprocesses.

- equivalence: the same deterministic replay through windows and egress gives the same multiset of
  outputs with 1 worker, 2 workers and 2 processes (Bytewax cluster mode on 127.0.0.1);
- crash: SIGKILL mid-replay, restart with recovery: `sink.jsonl` holds exactly the uninterrupted
  run's lines; `sink.http` (real server) got every event id at least once;
- SIGTERM: exit 0, open windows flushed, the outbox delivered; with recovery, a restart finishes
  the replay exactly; a second signal exits at once; `shutdown_timeout` bounds a stuck drain.

Windows aggregate with `count`, `min` and `max` only: exact whatever the batching (a float `mean`
is summed per batch, so its last digit depends on how a paced replay happened to batch).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, cli
from tests.http_server import HttpServer

SAMPLES = 2400  # per key, at 10 Hz: 240 s of event time, four 60 s windows per key


def pipelines(speed: float, http_url: str | None = None, extra_settings: str = "") -> str:
    http = ""
    if http_url is not None:
        http = (
            f"      - {{id: cloud, type: sink.http, inputs: [alerts], url: {http_url},\n"
            "         outbox: {drain_timeout: 10s}}\n"
        )
    return f"""\
version: 1
settings: {{state_dir: state{extra_settings}}}
pipelines:
  synth:
    nodes:
      - {{id: temps, type: sensor.synthetic, signal: temperature, keys: [a, b, c, d],
         count: {SAMPLES}, rate_hz: 10, speed: {speed}, start: 0, seed: 7,
         faults: [{{kind: spike, at: 30s, key: b}}]}}
      - {{id: minute, type: window.tumbling, size: 60s,
         aggregate: {{count: "*", min: temperature, max: temperature}}}}
      - {{id: alerts, type: egress.deadband, fields: [temperature_max], absolute: 0.2}}
      - {{id: out, type: sink.jsonl, path: out/synth.jsonl}}
{http}  files:
    nodes:
      - {{id: rec, type: source.jsonl, path: "data/*.jsonl", speed: {speed}}}
      - {{id: per10, type: window.tumbling, size: 10s, aggregate: {{count: "*", max: v}}}}
      - {{id: log, type: sink.jsonl, path: out/files.jsonl}}
"""


def write_data(folder: Path) -> None:
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name in ("m1", "m2", "m3"):
        with open(data / f"{name}.jsonl", "w") as f:
            for i in range(3000):
                f.write(json.dumps({"ts": i * 0.1, "key": name, "v": (i * 7919) % 1000}) + "\n")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write_data(tmp_path)
    return tmp_path


def lines(folder: Path) -> Counter[str]:
    out: Counter[str] = Counter()
    for name in ("synth", "files"):
        path = folder / "out" / f"{name}.jsonl"
        if path.exists():
            out.update(f"{name} {line}" for line in path.read_text().splitlines())
    return out


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [int(s.getsockname()[1]) for s in socks]
    for s in socks:
        s.close()
    return ports


def start(folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edgewax", "run", "pipelines.yaml", "-q", "--no-metrics", *args],
        cwd=folder,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cluster(folder: Path, *args: str) -> list[subprocess.Popen[str]]:
    addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(2))
    return [start(folder, "-i", str(i), "-a", addresses, *args) for i in range(2)]


def finish(procs: list[subprocess.Popen[str]], timeout: float = 90) -> None:
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err


def wait_for_output(folder: Path, minimum: int, timeout: float = 30) -> None:
    """Until the replay is under way (some windows written), so a kill lands mid-stream."""
    deadline = time.monotonic() + timeout
    while sum(lines(folder).values()) < minimum:
        assert time.monotonic() < deadline, "the replay wrote nothing"
        time.sleep(0.05)


@pytest.fixture
def http() -> Iterator[HttpServer]:
    server = HttpServer().start()
    yield server
    server.stop()


def reference(tmp_path: Path, http_url: str | None = None) -> Counter[str]:
    """An uninterrupted run, as fast as possible, one worker."""
    folder = tmp_path / "reference"
    write_data(folder)
    (folder / "pipelines.yaml").write_text(pipelines(0, http_url))
    proc = cli("run", "pipelines.yaml", "-q", "--no-metrics", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return lines(folder)


def test_same_outputs_with_1_worker_2_workers_and_2_processes(project: Path) -> None:
    (project / "pipelines.yaml").write_text(pipelines(0))
    results = []
    for args in (["-w", "1"], ["-w", "2"], None):
        for f in (project / "out").glob("*.jsonl"):
            f.unlink()
        procs = cluster(project) if args is None else [start(project, *args)]
        finish(procs)
        results.append(lines(project))
    one, two_workers, two_processes = results
    assert sum(one.values()) > 50 and max(one.values()) == 1
    assert two_workers == one
    assert two_processes == one


def test_sigkill_then_restart_gives_the_uninterrupted_output(
    project: Path, tmp_path: Path, http: HttpServer
) -> None:
    expected = reference(tmp_path, http.url)
    expected_ids = {e["event_id"] for e in http.events}
    http.events.clear()
    # Paced: 240 s of event time at 40x takes ~6 s, so the kill lands mid-replay.
    (project / "pipelines.yaml").write_text(pipelines(40, http.url))
    first = start(project, "-w", "2", "--snapshot-interval", "0.2")
    wait_for_output(project, 10)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    before = sum(lines(project).values())
    assert 0 < before < sum(expected.values())
    finish([start(project, "-w", "2", "--snapshot-interval", "0.2")])
    assert lines(project) == expected  # exactly: no line lost, none twice
    # The remote sink: at-least-once, identified by event id.
    assert {e["event_id"] for e in http.events} == expected_ids


def test_sigkill_two_processes_then_restart(project: Path, tmp_path: Path) -> None:
    expected = reference(tmp_path)
    (project / "pipelines.yaml").write_text(pipelines(40))
    procs = cluster(project, "--snapshot-interval", "0.2")
    wait_for_output(project, 10)
    for p in procs:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    assert sum(lines(project).values()) < sum(expected.values())
    finish(cluster(project, "--snapshot-interval", "0.2"))
    assert lines(project) == expected
    # Each process keeps its own state folder, with its own recovery partition.
    assert (project / "state/proc-0/recovery/part-0.sqlite3").is_file()
    assert (project / "state/proc-1/recovery/part-1.sqlite3").is_file()
    # Another number of processes cannot take that state over: one line, before connecting.
    three = ";".join(f"127.0.0.1:{p}" for p in free_ports(3))
    proc = cli("run", "pipelines.yaml", "-q", "--recovery", "-i", "0", "-a", three, cwd=project)
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "holds the state of a run of 2 process(es), as process 0; this is process 0 of 3. Run "
            "with the same number of processes (workers per process may change), or delete the "
            "recovery folders to start over"
        )
    )


def test_sigterm_exits_0_and_loses_nothing_in_flight(project: Path, http: HttpServer) -> None:
    (project / "pipelines.yaml").write_text(pipelines(40, http.url))
    proc = start(project)
    wait_for_output(project, 10)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert time.monotonic() - t0 < 15
    assert "SIGTERM: stopping" in err
    got = lines(project)
    synth = [json.loads(line.split(" ", 1)[1]) for line in got if line.startswith("synth ")]
    # The windows still open were emitted (partial: fewer than 600 samples).
    assert any(w["count"] < 600 for w in synth)
    # Everything the egress passed reached the HTTP server before the exit.
    sent = Counter((e["key"], e["window_end"]) for e in http.events if "window_end" in e)
    assert sent == Counter((w["key"], w["window_end"]) for w in synth)


def test_sigterm_with_recovery_pauses_and_the_restart_finishes(
    project: Path, tmp_path: Path
) -> None:
    expected = reference(tmp_path)
    (project / "pipelines.yaml").write_text(
        pipelines(40, extra_settings=", recovery: {enabled: true, snapshot_interval: 0.2}")
    )
    proc = start(project)
    wait_for_output(project, 10)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    # A pause, not an end: open windows stay in the snapshot instead of being flushed.
    assert sum(lines(project).values()) < sum(expected.values())
    finish([start(project)])
    assert lines(project) == expected


def wait_for_outbox(folder: Path, proc: subprocess.Popen[str]) -> None:
    """Until the run is inside Bytewax (its HTTP sink's outbox open): signals are ours then."""
    deadline = time.monotonic() + 30
    while not (folder / "state/outbox/synth.cloud.db").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.5)


def test_second_signal_exits_at_once_and_shutdown_is_bounded(
    project: Path, http: HttpServer
) -> None:
    # The HTTP server answers after 20 s: the outbox drain (10 s) would hold the shutdown.
    http.script(*[(200, {}, 20.0)] * 50)
    (project / "pipelines.yaml").write_text(pipelines(0, http.url))
    proc = start(project)
    wait_for_outbox(project, proc)
    proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    assert proc.returncode == 128 + signal.SIGTERM
    assert time.monotonic() - t0 < 3

    shutil.rmtree(project / "state")
    (project / "pipelines.yaml").write_text(pipelines(0, http.url, ", shutdown_timeout: 2s"))
    proc = start(project)
    wait_for_outbox(project, proc)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1, err
    assert time.monotonic() - t0 < 6
    assert "shutdown_timeout" in err


def test_cluster_flags_mistakes_are_one_line(project: Path) -> None:
    (project / "pipelines.yaml").write_text(pipelines(0))
    proc = cli("run", "pipelines.yaml", "-q", "--process-id", "0", cwd=project)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("edgewax: error: --process-id and")
    proc = cli(
        "run", "pipelines.yaml", "-q", "-i", "2", "-a", "127.0.0.1:1;127.0.0.1:2", cwd=project
    )
    assert proc.returncode == 1 and "is not an index" in proc.stderr
    proc = cli(
        "run",
        "pipelines.yaml",
        "-q",
        cwd=project,
        env={"EDGEWAX_PROCESS_ID": "0", "EDGEWAX_ADDRESSES": "nohost"},
    )
    assert proc.returncode == 1 and "`nohost` is not host:port" in proc.stderr


def test_redistribute_spreads_a_single_file_and_keeps_the_output(tmp_path: Path) -> None:
    from edgewax.config.spec import load_spec_text
    from edgewax.flows.compiler import compile_spec, should_redistribute

    write_data(tmp_path)
    text = """\
version: 1
settings: {state_dir: state, redistribute: REDISTRIBUTE}
pipelines:
  p:
    nodes:
      - {id: rec, type: source.jsonl, path: data/m1.jsonl, batch_size: 50}
      - {id: hot, type: filter, where: "v > 500"}
      - {id: out, type: sink.jsonl, path: out/files.jsonl}
"""
    outputs = []
    for mode in ("never", "always"):
        (tmp_path / "pipelines.yaml").write_text(text.replace("REDISTRIBUTE", mode))
        spec = load_spec_text(text.replace("REDISTRIBUTE", mode), tmp_path)
        steps = str(compile_spec(spec, workers=2).flow.substeps)
        assert ("p/rec/redistribute" in steps) == (mode == "always")
        proc = cli("run", "pipelines.yaml", "-q", "--no-metrics", "-w", "2", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        outputs.append(Counter((tmp_path / "out/files.jsonl").read_text().splitlines()))
        (tmp_path / "out/files.jsonl").unlink()
    assert outputs[0] == outputs[1] and sum(outputs[0].values()) > 1000
    # `auto`: only a pipeline with inference and without order-sensitive (keyed) nodes.
    auto = load_spec_text(text.replace("REDISTRIBUTE", "auto"), tmp_path)
    assert not should_redistribute(auto, auto.pipelines["p"])
    from edgewax.config.diagnostics import Mark
    from edgewax.config.spec import NodeSpec, PipelineSpec
    from edgewax.operators.registry import node_types

    types = node_types()

    def pipeline(*names: str) -> PipelineSpec:
        nodes = [NodeSpec(n, n, types[n], None, [], Mark(1, 1)) for n in names]
        return PipelineSpec("p", nodes, Mark(1, 1))

    assert should_redistribute(auto, pipeline("source.camera", "tflite", "sink.jsonl"))
    windowed = pipeline("source.camera", "tflite", "window.tumbling", "sink.jsonl")
    assert not should_redistribute(auto, windowed)
    assert not should_redistribute(auto, pipeline("source.camera", "tflite", "egress.dedup"))


def _kill_mid_run_and_restart(
    folder: Path, path: str, minimum: int, interval: str = "0.2"
) -> list[dict[str, object]]:
    """Start with recovery, SIGKILL once `path` has `minimum` lines, restart, return the lines."""
    out = folder / path
    first = start(folder, "--snapshot-interval", interval)
    deadline = time.monotonic() + 30
    while not out.exists() or len(out.read_bytes().splitlines()) < minimum:
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    time.sleep(1.1)  # a resumed source that restarted its clock would now be off by a second
    finish([start(folder, "--snapshot-interval", interval)])
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("interval", ["0.2", "30"], ids=["after-snapshots", "before-any"])
def test_resumed_synthetic_replay_keeps_its_start_time(tmp_path: Path, interval: str) -> None:
    # No `start`: the stream starts "now"; the restart must go on with the first run's clock.
    (tmp_path / "pipelines.yaml").write_text("""\
version: 1
settings: {state_dir: state}
pipelines:
  p:
    nodes:
      - {id: s, type: sensor.synthetic, keys: [a, b], rate_hz: 100, count: 1500, speed: 5}
      - {id: out, type: sink.jsonl, path: out.jsonl}
""")
    # Killed after a few snapshots, or before the first (the sink goes back to where it began).
    events = _kill_mid_run_and_restart(tmp_path, "out.jsonl", 500, interval)
    for key in ("a", "b"):
        ts = sorted(float(e["ts"]) for e in events if e["key"] == key)  # type: ignore[arg-type]
        assert len(ts) == 1500  # none lost, none twice
        assert max(abs(t - (ts[0] + i / 100)) for i, t in enumerate(ts)) < 1e-6


def test_resumed_camera_file_replay_goes_on_from_its_frame(tmp_path: Path) -> None:
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(
        str(tmp_path / "cam.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (32, 32)
    )
    for i in range(150):
        writer.write(np.full((32, 32, 3), i, np.uint8))
    writer.release()
    (tmp_path / "pipelines.yaml").write_text("""\
version: 1
settings: {state_dir: state}
pipelines:
  p:
    nodes:
      - {id: cam, type: source.camera, file: cam.avi, speed: 4}
      - {id: keep, type: select, fields: [frame_index]}
      - {id: out, type: sink.jsonl, path: out.jsonl}
""")
    events = _kill_mid_run_and_restart(tmp_path, "out.jsonl", 60)
    assert sorted(e["frame_index"] for e in events) == list(range(150))  # type: ignore[type-var]
    ts = sorted(float(e["ts"]) for e in events)  # type: ignore[arg-type]
    assert max(abs(t - (ts[0] + i / 25)) for i, t in enumerate(ts)) < 1e-6
