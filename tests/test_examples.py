"""The examples replay their recordings against real servers and give what their READMEs say.

Each example runs in-process on the real compiler, its remote sink pointed at a real local HTTP
server or mosquitto; the test checks what arrived against the example's `expected.jsonl` and
the bytes-out / bytes-in ratio (from the run's own `edgewax_egress_bytes_total` and
`edgewax_source_bytes_total`) against the figure printed in its README. Each example's
`edgewax test` cases run through the CLI too. `EDGEWAX_UPDATE_EXAMPLES=1` rewrites the expected
files (then read the diff).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edgewax.config.spec import load_spec
from edgewax.flows.compiler import Compiled, compile_spec
from edgewax.testing import run_compiled
from tests.conftest import ROOT, cli
from tests.http_server import HttpServer

EXAMPLES = ROOT / "examples"
UPDATE = os.environ.get("EDGEWAX_UPDATE_EXAMPLES") == "1"


def run_example(name: str, env: dict[str, str]) -> Compiled:
    path = EXAMPLES / name / "pipelines.yaml"
    spec = load_spec(path, env={**os.environ, "EDGEWAX_SPEED": "0", **env})
    compiled = compile_spec(spec)
    run_compiled(compiled)
    return compiled


def total(compiled: Compiled, metric: str) -> float:
    return sum(
        s.value for m in compiled.metrics.registry.collect() for s in m.samples if s.name == metric
    )


def ratio(compiled: Compiled) -> float:
    return total(compiled, "edgewax_egress_bytes_total") / total(
        compiled, "edgewax_source_bytes_total"
    )


def readme_ratio(name: str) -> float:
    """The ratio the README prints: `bytes out / bytes in: **0.000123**`."""
    text = (EXAMPLES / name / "README.md").read_text()
    found = re.search(r"bytes out / bytes in: \*\*([0-9.]+)\*\*", text)
    assert found, f"examples/{name}/README.md does not print its bytes-out/bytes-in ratio"
    return float(found.group(1))


def check_expected(name: str, events: list[dict[str, Any]]) -> None:
    path = EXAMPLES / name / "expected.jsonl"
    got = [{k: v for k, v in e.items() if k != "event_id"} for e in events]
    if UPDATE:
        path.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in got))
    want = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert _rounded(got) == _rounded(want)


def _rounded(value: Any) -> Any:
    """Floats to 6 significant digits, nested (model scores differ in the last bits by CPU)."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def check_ratio(name: str, compiled: Compiled) -> None:
    r = ratio(compiled)
    print(f"{name}: bytes out / bytes in = {r:.6f}")
    assert r == pytest.approx(readme_ratio(name), rel=0.02)


def check_cases(name: str) -> None:
    r = cli("test", str(EXAMPLES / name / "pipelines.yaml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 failed" in r.stdout


@pytest.fixture
def http_server() -> Any:
    server = HttpServer().start()
    yield server
    server.stop()


def test_smart_city_traffic(http_server: HttpServer, tmp_path: Path) -> None:
    env = {"TRAFFIC_INGEST_URL": http_server.url, "EDGEWAX_STATE": str(tmp_path)}
    compiled = run_example("smart-city-traffic", env)
    assert total(compiled, "edgewax_source_bytes_total") == 180 * 64 * 64 * 3
    check_expected("smart-city-traffic", http_server.events)
    assert all("image" not in e and "frame" not in e for e in http_server.events)
    check_ratio("smart-city-traffic", compiled)
    check_cases("smart-city-traffic")
    r = cli("explain", str(EXAMPLES / "smart-city-traffic" / "pipelines.yaml"))
    assert "raw: none" in r.stdout, r.stdout


def test_predictive_maintenance(http_server: HttpServer, tmp_path: Path) -> None:
    env = {"MAINTENANCE_INGEST_URL": http_server.url, "EDGEWAX_STATE": str(tmp_path)}
    compiled = run_example("predictive-maintenance", env)
    assert total(compiled, "edgewax_source_bytes_total") == 540_000 * 8
    events = sorted(http_server.events, key=lambda e: (e["ts"], e["key"], e.get("event", "")))
    check_expected("predictive-maintenance", events)
    incidents = [(e["key"], e["event"]) for e in events if "event" in e]
    assert incidents == [
        ("pump-2", "start"),
        ("pump-3", "start"),
        ("pump-3", "end"),
        ("pump-2", "end"),
    ]
    assert all("frame" not in e and "accel" not in e for e in events)
    check_ratio("predictive-maintenance", compiled)
    check_cases("predictive-maintenance")


def _wait(cond: Any, timeout: float = 20.0, state: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out: {state() if state else ''}"
        time.sleep(0.05)


def test_patient_vitals_over_a_real_broker(mosquitto: Any, tmp_path: Path) -> None:
    """Publish the recording to mosquitto; the alerts come back on ward-3/<bed>/alerts."""
    import paho.mqtt.client as mqtt

    name = "patient-vitals"
    env = {"VITALS_BROKER": mosquitto.url, "EDGEWAX_STATE": str(tmp_path)}
    spec = load_spec(EXAMPLES / name / "pipelines.yaml", env={**os.environ, **env})
    compiled = compile_spec(spec)
    alerts: list[dict[str, Any]] = []
    sub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda _c, _u, m: alerts.append({"topic": m.topic, **json.loads(m.payload)})
    granted = threading.Event()
    sub.on_connect = lambda c, *_: c.subscribe("ward-3/+/alerts", qos=1)
    sub.on_subscribe = lambda *_: granted.set()
    sub.connect("127.0.0.1", mosquitto.port)
    sub.loop_start()
    assert granted.wait(10)
    pub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    thread = threading.Thread(target=run_compiled, args=(compiled,))
    thread.start()
    try:
        _wait(lambda: bool(compiled.health.status().get("vitals/monitors", {}).get("ready")))
        lines = (EXAMPLES / name / "recording.jsonl").read_text().splitlines()
        infos = []
        for line in lines:
            e = json.loads(line)
            payload = json.dumps({"ts": e["ts"], "hr": e["heart_rate"], "spo2": e["spo2"]})
            infos.append(pub.publish(f"ward-3/{e['key']}/vitals", payload, qos=1))
        for info in infos:
            info.wait_for_publish(5)
        source = compiled.stats[("vitals", "monitors")]
        _wait(
            lambda: source.sent._value.get() >= len(lines) and len(alerts) >= 2,
            state=lambda: (source.sent._value.get(), alerts),
        )
    finally:
        compiled.stop.set()
        thread.join(20)
        sub.loop_stop()
        pub.loop_stop()
    assert not thread.is_alive()
    assert total(compiled, "edgewax_node_received_events_total") > 0
    got = sorted(alerts, key=lambda a: a["ts"])
    check_expected(name, [{k: v for k, v in a.items() if k != "topic"} for a in got])
    assert [a["topic"] for a in got] == ["ward-3/bed-2/alerts", "ward-3/bed-3/alerts"]
    assert all("heart_rate" not in a and "spo2" not in a for a in got)
    check_ratio(name, compiled)


def test_patient_vitals_cases_and_privacy() -> None:
    check_cases("patient-vitals")
    r = cli("explain", str(EXAMPLES / "patient-vitals" / "pipelines.yaml"))
    assert "raw: none" in r.stdout
    # The same pipeline with the raw readings wired to the sink is refused, one line.
    text = (EXAMPLES / "patient-vitals" / "pipelines.yaml").read_text()
    leaky = text + (
        '      - {id: archive, type: sink.http, inputs: [valid], url: "https://cloud.example.com/v"}\n'
    )
    path = EXAMPLES / "patient-vitals" / "leaky.yaml"
    path.write_text(leaky)
    try:
        r = cli("validate", str(path))
    finally:
        path.unlink()
    assert r.returncode == 2
    assert (
        "node archive: raw field `heart_rate` (and `spo2`) reaches remote sink `archive`"
        in r.stderr
    )
    assert "monitors -> valid -> archive" in r.stderr


def test_retail_shelf(http_server: HttpServer, tmp_path: Path) -> None:
    env = {"SHELF_INGEST_URL": http_server.url, "EDGEWAX_STATE": str(tmp_path)}
    compiled = run_example("retail-shelf", env)
    assert total(compiled, "edgewax_source_bytes_total") == 180 * 64 * 64 * 3
    events = sorted(http_server.events, key=lambda e: (e["ts"], e["key"]))
    check_expected("retail-shelf", events)
    assert [e["region"] for e in events[4:]] == [
        "top-right",
        "top-left",
        "bottom-left",
        "bottom-left",
        "bottom-right",
    ]
    assert all(
        set(e) == {"ts", "key", "region", "occupancy", "low_stock", "event_id"} for e in events
    )
    check_ratio("retail-shelf", compiled)
    check_cases("retail-shelf")
