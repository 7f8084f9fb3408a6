"""`edgewax test`: cases in YAML, run through the real CLI against the real compiler."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ROOT, cli, free_port

PIPELINE = """\
version: 1
pipelines:
  boiler:
    nodes:
      - {id: temps, type: sensor.synthetic, signal: temperature, keys: [b1, b2], rate_hz: 5,
         duration: 20s, seed: 7, faults: [{kind: overheat, key: b2, at: 2s, duration: 10s}]}
      - id: readings
        type: map
        set: {temperature_f: "round(temperature * 9 / 5 + 32, 1)"}
      - {id: hot, type: filter, where: "temperature > 65"}
      - {id: once, type: egress.cooldown, seconds: 60}
      - {id: cloud, type: sink.http, url: "http://127.0.0.1:PORT/events"}
      - {id: log, type: sink.jsonl, inputs: [readings], path: out/t.jsonl}
"""

CASES = """\
tests:
  - name: one alert per boiler an hour
    pipeline: boiler
    start: 2026-01-01T00:00:00Z
    inputs:
      - node: temps
        events:
          - {key: b1, temperature: 50}
          - {key: b2, temperature: 90}
          - {key: b2, temperature: 91.5}
          - {key: b2, temperature: 92, ts: 2026-01-01T00:00:30Z}
    expect:
      - node: cloud
        events:
          - {key: b2, ts: 2026-01-01T00:00:01Z, temperature: 90, temperature_f: {approx: 194, tolerance: 0.01}}
      - {node: once, dropped: {cooldown: 2}}
      - {node: hot, count: {min: 3, max: 3}, all: "temperature > 65"}
      - {node: log, count: 4, fields: [temperature_f]}
  - name: injected in the middle, upstream does not run
    inputs:
      - {node: hot, events: [{temperature: 10}, {temperature: 70.25}]}
    expect:
      - {node: cloud, events: [{temperature: 70.2}], tolerance: 0.1}
      - {node: once, count: 1}
  - name: the synthetic source on the test's clock
    start: 2026-01-01T00:00:00Z
    bytes_ratio: {max: 0.2}
    expect:
      - {node: cloud, count: 1, contains: [{key: b2}], all: "ts >= 1767225601"}
      - {node: temps, count: 200}
"""


def _write(tmp: Path, cases: str = CASES, pipeline: str = PIPELINE) -> Path:
    # A port nothing listens on: `edgewax test` must not try to send there.
    (tmp / "pipelines.yaml").write_text(pipeline.replace("PORT", str(free_port())))
    (tmp / "pipelines_test.yaml").write_text(cases)
    return tmp / "pipelines.yaml"


def test_cases_pass_and_nothing_is_written_or_sent(tmp_path: Path) -> None:
    path = _write(tmp_path)
    r = cli("test", str(path), "-v", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("PASS  boiler: one alert per boiler an hour (")
    assert lines[1].startswith("PASS  boiler: injected in the middle, upstream does not run")
    assert "bytes out/in" in lines[2]
    assert lines[-1].startswith("3 passed, 0 failed in ")
    assert not (tmp_path / "out").exists()  # local sinks are captured too
    assert not (tmp_path / ".edgewax").exists()  # no outbox, no dead-letter file


def test_a_failing_case_shows_a_diff_and_exits_1(tmp_path: Path) -> None:
    cases = """\
tests:
  - name: wrong expectation
    inputs: [{node: temps, events: [{key: b2, temperature: 90}, {key: b2, temperature: 95}]}]
    expect:
      - {node: hot, events: [{temperature: 90}, {temperature: 96}]}
      - {node: cloud, count: 2}
      - {node: once, none: true}
"""
    r = cli("test", str(_write(tmp_path, cases)), "-k", "wrong", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    assert out.startswith("FAIL  boiler: wrong expectation")
    assert "hot: event 1: `temperature`: expected 96, got 95" in out
    assert '-{"temperature":96}' in out and '+{"temperature":95}' in out
    assert "cloud: expected 2 events, got 1" in out
    assert "once: expected no events, got 1" in out
    assert out.splitlines()[-1].startswith("0 passed, 1 failed")


def test_stub_replaces_a_model(tmp_path: Path, write_config: Callable[..., Path]) -> None:
    models = ROOT / "models"
    text = f"""\
version: 1
pipelines:
  pump:
    nodes:
      - {{id: vib, type: sensor.synthetic, signal: vibration, keys: [p1], rate_hz: 1000,
          duration: 2s}}
      - {{id: frames, type: signal.frame, field: accel, size: 256, hop: 256}}
      - {{id: ae, type: tflite, model: {models}/vib_ae1d_int8.tflite, outputs: {{score: anomaly_score}}}}
      - {{id: scored, type: drop, fields: [frame]}}
      - {{id: incidents, type: egress.event, when: anomaly_score > 0.3, min_duration: 0s}}
      - {{id: out, type: sink.stdout}}
tests:
  - name: a high score is an incident
    start: 1000
    inputs:
      - node: ae
        every: 0.25
        arrays: {{frame: float32}}
        events: [{{frame: [0.0, 0.1]}}, {{frame: [0.0, 0.1]}}]
    stub: {{node: ae, outputs: {{anomaly_score: 0.5}}, drop: [nothing]}}
    expect:
      - {{node: ae, count: 2, fields: [anomaly_score, frame]}}
      - {{node: out, events: [{{event: start, ts: 1000}}, {{event: end, count: 2}}]}}
  - name: the real model on synthetic data
    start: 1000
    expect:
      - {{node: ae, count: 7, fields: [model_version], all: "anomaly_score < 0.0111"}}
      - {{node: out, none: true}}
"""
    path = write_config(text)
    r = cli("test", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("PASS") == 2


def test_case_mistakes_are_one_line_each_with_exit_2(tmp_path: Path) -> None:
    cases = """\
tests:
  - name: typos
    pipeline: boilr
    expect: [{node: cloud}]
  - name: more
    inputs: [{node: temsp, events: []}, {node: log, events: []}]
    stub: {node: temps}
    expect: [{node: hot.late, count: 1}]
  - name: bad keys
    expct: []
"""
    r = cli("test", str(_write(tmp_path, cases)), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "pipelines_test.yaml:10:5: unknown key `tests[2].expct`" in r.stderr, r.stderr
    # Names are checked only once the structure is valid: fix it and look again.
    fixed = "\n".join(cases.splitlines()[:-2]) + "\n"
    r = cli("test", str(_write(tmp_path, fixed)), cwd=tmp_path)
    assert r.returncode == 2
    err = r.stderr
    assert ":3:15: test `typos`: no pipeline `boilr` (did you mean `boiler`?)" in err
    assert ":6:21: pipeline boiler: test `more`: `temsp` is not a node of this pipeline " in err
    assert "did you mean `temps`?" in err
    assert "events cannot be injected at sink `log`" in err
    assert "only a transform can be stubbed; `temps` is a source" in err
    assert "node `hot` has no output `late`" in err
    assert err.splitlines()[-1] == "5 problems found"


def test_tests_key_in_the_pipelines_file_validates(tmp_path: Path) -> None:
    text = PIPELINE.replace("PORT", "9") + "tests:\n  - {name: x, expect: [{node: nope}]}\n"
    (tmp_path / "p.yaml").write_text(text)
    r = cli("validate", str(tmp_path / "p.yaml"))
    assert r.returncode == 2
    assert "p.yaml:15:31: pipeline boiler: test `x`: `nope` is not a node" in r.stderr
    r = cli("test", str(tmp_path / "p.yaml"))
    assert r.returncode == 2


def test_a_live_source_must_be_injected(tmp_path: Path) -> None:
    text = """\
version: 1
pipelines:
  vitals:
    nodes:
      - {id: mq, type: source.mqtt, url: "mqtt://127.0.0.1:9", topics: [v/#]}
      - {id: out, type: sink.stdout}
tests:
  - {name: live, expect: [{node: out, none: true}]}
"""
    (tmp_path / "p.yaml").write_text(text)
    r = cli("test", str(tmp_path / "p.yaml"))
    assert r.returncode == 2
    assert "source `mq` (source.mqtt) reads a live broker; inject events at it" in r.stdout


def test_recordings_ratios_and_selection(tmp_path: Path) -> None:
    (tmp_path / "rec.jsonl").write_text(
        '{"key": "b2", "temperature": 90, "ts": 100}\n\n{"key": "b2", "temperature": 95, "ts": 200}\n'
    )
    cases = """\
tests:
  - name: from a recording
    inputs: [{node: temps, recording: rec.jsonl}]
    bytes_ratio: {max: 0.1}
    expect:
      - {node: once, events: [{ts: 100, temperature: 90}]}
  - name: a missing recording
    inputs: [{node: temps, recording: nope.jsonl}]
    expect: [{node: once, count: 0}]
"""
    path = _write(tmp_path, cases)
    r = cli("test", str(path), "-k", "from a", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "bytes out / bytes in = " in r.stdout and "expected 0..0.1" in r.stdout
    r = cli("test", str(path), "-k", "missing", cwd=tmp_path)
    assert r.returncode == 2
    assert "case `a missing recording`" in r.stdout and "recording `nope.jsonl`" in r.stdout
    r = cli("test", str(path), "-k", "no such case", cwd=tmp_path)
    assert r.returncode == 2 and "no case matches `no such case`" in r.stdout


def test_expect_at_a_windows_late_output(write_config: Callable[..., Path]) -> None:
    text = """\
version: 1
pipelines:
  w:
    nodes:
      - {id: src, type: source.mqtt, url: "mqtt://127.0.0.1:9", topics: [t]}
      - {id: win, type: window.tumbling, size: 10s, clock: system, aggregate: {count: "*"}}
      - {id: out, type: sink.stdout}
      - {id: late, type: sink.stdout, inputs: [win.late]}
tests:
  - name: a late event goes to the late output
    start: 1000
    inputs:
      - {node: src, events: [{ts: 1001}, {ts: 1012}, {ts: 1003}, {ts: 1015}]}
    expect:
      - {node: out, events: [{ts: 1010, count: 1}, {ts: 1020, count: 2}]}
      - {node: win.late, events: [{ts: 1003}]}
      - {node: late, count: 1}
      - {node: win, dropped: {late: 1}}
"""
    r = cli("test", str(write_config(text)))
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_default_pipelines_have_cases() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEWAX_")}
    r = cli("test", cwd=ROOT, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1].startswith("3 passed, 0 failed")
