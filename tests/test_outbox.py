"""Remote sinks and the outbox against real servers and real faults.

Every scenario asserts the exact set of delivered `event_id`s. Backoffs are shortened in the YAML
so the suite stays quick.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgewax.config.spec import load_spec
from edgewax.events import encode
from edgewax.flows.compiler import compile_spec
from edgewax.flows.deadletters import DeadLetters
from edgewax.metrics import Metrics
from edgewax.operators.base import NodeContext
from edgewax.operators.sinks.http import HttpSinkOptions, HttpTransport
from edgewax.outbox import Outbox, OutboxOptions, event_id
from edgewax.testing import run_compiled
from tests.conftest import ROOT, Mosquitto
from tests.http_server import HttpServer

FAST = "backoff: {initial: 20ms, max: 200ms}"


@pytest.fixture
def http() -> Iterator[HttpServer]:
    server = HttpServer().start()
    yield server
    server.stop()


def _events(n: int, step: float = 0.0, key: str = "dev-1") -> list[dict[str, Any]]:
    return [{"ts": 1000.0 + i * step, "key": key, "seq": i} for i in range(n)]


def _ids(events: list[dict[str, Any]], scope: str = "p/cloud") -> set[str]:
    return {event_id(scope.encode(), encode(e)) for e in events}


def _write_jsonl(path: Path, events: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def _config(tmp: Path, sink: str, speed: float = 0) -> Path:
    p = tmp / "p.yaml"
    p.write_text(
        "version: 1\nsettings: {state_dir: state}\npipelines:\n  p:\n    nodes:\n"
        f"      - {{id: src, type: source.jsonl, path: in.jsonl, speed: {speed}}}\n"
        f"      - {{id: cloud, {sink}}}\n"
    )
    return p


def _run(config: Path) -> Any:
    compiled = compile_spec(load_spec(config))
    run_compiled(compiled)
    return compiled


def _value(compiled: Any, name: str, **labels: str) -> float:
    full = {
        "pipeline": "p",
        "node": "cloud",
        "type": compiled.stats[("p", "cloud")].labels[2],
        **labels,
    }
    v = compiled.metrics.registry.get_sample_value(name, full)
    return 0.0 if v is None else float(v)


# -- HTTP ------------------------------------------------------------------------------------


def test_http_500s_then_200s_deliver_everything_once(tmp_path: Path, http: HttpServer) -> None:
    events = _events(50)
    _write_jsonl(tmp_path / "in.jsonl", events)
    http.script(500, 500, 503)
    c = _run(
        _config(
            tmp_path,
            f'type: sink.http, url: "{http.url}", batch: {{max_events: 10}}, outbox: {{{FAST}}}',
        )
    )
    assert Counter(http.ids) == Counter(_ids(events))  # each exactly once
    assert [r[2] for r in http.requests[:4]] == [500, 500, 503, 200]
    assert _value(c, "edgewax_outbox_sent_events_total") == 50
    assert _value(c, "edgewax_outbox_retries_total") == 30
    assert _value(c, "edgewax_outbox_depth_events") == 0
    assert _value(c, "edgewax_egress_bytes_total", sink="http") > 0
    assert _value(c, "edgewax_outbox_delivery_seconds_count") >= 1
    assert c.health.status()["p/cloud"]["ready"]


def test_http_429_honours_retry_after(tmp_path: Path, http: HttpServer) -> None:
    events = _events(5)
    _write_jsonl(tmp_path / "in.jsonl", events)
    http.script((429, {"Retry-After": "1"}, 0.0))
    _run(_config(tmp_path, f'type: sink.http, url: "{http.url}", outbox: {{{FAST}}}'))
    assert set(http.ids) == _ids(events)
    (t0, _, s0), (t1, _, s1) = http.requests
    assert (s0, s1) == (429, 200)
    assert t1 - t0 >= 0.95  # the 20ms backoff was stretched to the server's 1s


def test_http_timeouts_retry_and_duplicate_only_the_timed_out_batch(
    tmp_path: Path, http: HttpServer
) -> None:
    events = _events(30)
    _write_jsonl(tmp_path / "in.jsonl", events)
    http.script((200, {}, 0.6))  # answered after the client gave up: the far side got it
    _run(
        _config(
            tmp_path,
            f'type: sink.http, url: "{http.url}", timeout: 200ms, '
            f"batch: {{max_events: 10}}, outbox: {{{FAST}}}",
        )
    )
    assert set(http.ids) == _ids(events)
    dupes = {i for i, n in Counter(http.ids).items() if n > 1}
    assert len(dupes) <= 10  # only the batch in flight at the timeout


def test_http_4xx_dead_letters_the_batch(tmp_path: Path, http: HttpServer) -> None:
    events = _events(20)
    _write_jsonl(tmp_path / "in.jsonl", events)
    http.script(400)
    c = _run(
        _config(
            tmp_path,
            f'type: sink.http, url: "{http.url}", batch: {{max_events: 10}}, outbox: {{{FAST}}}',
        )
    )
    assert set(http.ids) == _ids(events[10:])
    dead = [json.loads(line) for line in (tmp_path / "state/dead_letters.jsonl").open()]
    assert {d["reason"] for d in dead} == {"rejected"}
    assert {d["event"]["event_id"] for d in dead} == _ids(events[:10])
    assert _value(c, "edgewax_outbox_dropped_events_total", reason="rejected") == 10


def test_http_down_at_boot_then_up_with_secret_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    server = HttpServer()  # not listening yet: connections are refused
    events = _events(40)
    _write_jsonl(tmp_path / "in.jsonl", events)
    monkeypatch.setenv("EW_TEST_TOKEN", "s3cret-token")
    timer = threading.Timer(1.0, server.start)
    timer.start()
    try:
        c = _run(
            _config(
                tmp_path,
                f'type: sink.http, url: "{server.url}", headers: {{Authorization: "Bearer '
                '${EW_TEST_TOKEN}"}, outbox: {drain_timeout: 10s, ' + FAST + "}",
            )
        )
        assert set(server.ids) == _ids(events)
        assert server.headers_seen[0]["Authorization"] == "Bearer s3cret-token"
        assert _value(c, "edgewax_outbox_offline_seconds_total") > 0.5
        assert "s3cret" not in caplog.text
    finally:
        timer.join()
        server.stop()


def _pki(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl."""
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=edgewax-test-ca",
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, ext in (("server", ["-extfile", "san.ext"]), ("client", [])):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "1",
            *ext,
        )


def test_https_with_ca_and_client_certificate(tmp_path: Path) -> None:
    import ssl

    _pki(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    tls.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: the device must show its certificate
    tls.load_verify_locations(tmp_path / "ca.pem")
    server = HttpServer().start(tls)
    try:
        events = _events(12)
        _write_jsonl(tmp_path / "in.jsonl", events)
        _run(
            _config(
                tmp_path,
                f'type: sink.http, url: "{server.url}", '
                "tls: {ca: ca.pem, cert: client.pem, key: client.key}, "
                "outbox: {" + FAST + "}",
            )
        )
        assert set(server.ids) == _ids(events)
        # Without the CA the server's certificate is not trusted: retried, never sent.
        plain = HttpTransport(HttpSinkOptions(url=server.url, timeout=2))
        out = plain.send([])
        assert out.error is not None and "CERTIFICATE_VERIFY_FAILED" in out.error
    finally:
        server.stop()


# -- MQTT ------------------------------------------------------------------------------------


class Collector:
    """Subscribes to everything on a broker (again after each restart) and keeps payloads."""

    def __init__(self, broker: Mosquitto) -> None:
        self.broker = broker
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.clients: list[Any] = []
        self.lock = threading.Lock()

    def connect(self) -> None:
        import paho.mqtt.client as mqtt

        for old in self.clients:  # a fresh client per broker run: no auto-reconnect races
            old.loop_stop()
        done = threading.Event()
        n = len(self.clients)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"collector-{n}")

        def on_message(client: Any, userdata: Any, msg: Any) -> None:
            with self.lock:
                self.messages.append((msg.topic, json.loads(msg.payload)))

        c.on_message = on_message
        c.on_subscribe = lambda *a: done.set()
        c.connect("127.0.0.1", self.broker.port)
        c.loop_start()
        c.subscribe("#", qos=1)
        assert done.wait(5)
        self.clients.append(c)

    @property
    def ids(self) -> list[str]:
        with self.lock:
            return [m["event_id"] for _, m in self.messages]

    def close(self) -> None:
        for c in self.clients:
            c.loop_stop()
            c.disconnect()


def _restart(broker: Mosquitto, collector: Collector) -> None:
    broker.start()
    collector.connect()


def test_mqtt_broker_down_at_start_then_up(tmp_path: Path, mosquitto: Mosquitto) -> None:
    mosquitto.stop()
    events = _events(30, step=0.02)
    _write_jsonl(tmp_path / "in.jsonl", events)
    col = Collector(mosquitto)
    timer = threading.Timer(1.0, _restart, (mosquitto, col))
    timer.start()
    try:
        c = _run(
            _config(
                tmp_path,
                f'type: sink.mqtt, url: "{mosquitto.url}", topic: "plant/{{key}}/seq", qos: 1, '
                "outbox: {drain_timeout: 15s, " + FAST + "}",
            )
        )
        timer.join()
        deadline = time.monotonic() + 5
        while len(col.ids) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(col.ids) == _ids(events)
        assert {t for t, _ in col.messages} == {"plant/dev-1/seq"}
        assert _value(c, "edgewax_outbox_sent_events_total") == 30
    finally:
        col.close()


def test_mqtt_broker_killed_mid_run_then_restarted(tmp_path: Path, mosquitto: Mosquitto) -> None:
    events = _events(60, step=0.05)  # 3 s of data at speed 1
    _write_jsonl(tmp_path / "in.jsonl", events)
    col = Collector(mosquitto)
    col.connect()
    kill = threading.Timer(0.8, mosquitto.stop)
    back = threading.Timer(2.0, _restart, (mosquitto, col))
    kill.start()
    back.start()
    try:
        _run(
            _config(
                tmp_path,
                f'type: sink.mqtt, url: "{mosquitto.url}", topic: "t/{{key}}", qos: 2, '
                "outbox: {drain_timeout: 15s, " + FAST + "}",
                speed=1,
            )
        )
        back.join()
        deadline = time.monotonic() + 5
        while set(col.ids) != _ids(events) and time.monotonic() < deadline:
            time.sleep(0.05)
        missing = [e["seq"] for e in events if _ids([e]) - set(col.ids)]
        assert missing == [], (missing, len(col.messages))
    finally:
        col.close()


# -- the process killed mid-stream -----------------------------------------------------------


def test_sigkill_mid_stream_loses_nothing(tmp_path: Path, http: HttpServer) -> None:
    events = _events(200, step=0.02)  # 4 s at speed 1
    _write_jsonl(tmp_path / "in.jsonl", events)
    cfg = _config(
        tmp_path,
        f'type: sink.http, url: "{http.url}", batch: {{max_events: 10}}, '
        "outbox: {drain_timeout: 10s, " + FAST + "}",
        speed=1,
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "edgewax", "run", str(cfg), "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while len(http.ids) < 40 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = len(http.ids)
    assert 0 < before < 200
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert set(http.ids) == _ids(events)
    dupes = [i for i, n in Counter(http.ids).items() if n > 1]
    assert len(dupes) <= 10  # at most the batch in flight at the kill


# -- outbox policies, driven directly --------------------------------------------------------


def _outbox(tmp: Path, server: HttpServer, max_events: int = 10, **opts: Any) -> Outbox:
    metrics = Metrics()
    ctx = NodeContext(
        "p",
        "cloud",
        "sink.http",
        "p/cloud",
        tmp,
        tmp / "state",
        metrics.node("p", "cloud", "sink.http"),
        DeadLetters(None),
    )
    transport = HttpTransport(
        HttpSinkOptions(url=server.url, timeout=0.5, batch={"max_events": max_events})
    )
    opts.setdefault("backoff", {"initial": 0.02, "max": 0.2})
    return Outbox(ctx, OutboxOptions.model_validate(opts), transport)


def _dropped(box: Outbox, reason: str) -> float:
    v = box.ctx.stats._metrics.registry.get_sample_value(
        "edgewax_outbox_dropped_events_total",
        {"pipeline": "p", "node": "cloud", "type": "sink.http", "reason": reason},
    )
    return 0.0 if v is None else v


def _size(e: dict[str, Any]) -> int:
    return len(encode(e)) + len('"event_id":"",') + 32


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
def test_outbox_full_drops_by_policy(tmp_path: Path, policy: str) -> None:
    server = HttpServer()
    events = [{"ts": 1000.0, "key": "dev-1", "seq": 10 + i} for i in range(20)]  # equal sizes
    box = _outbox(tmp_path, server, max_bytes=10 * _size(events[0]), when_full=policy)
    try:
        for e in events:
            box.put([e])
        assert box.store.depth == 10
        assert _dropped(box, "full") == 10
        server.start()
        assert box.flush(10)
        kept = events[:10] if policy == "drop_newest" else events[10:]
        assert set(server.ids) == _ids(kept), [e["seq"] for e in server.events]
    finally:
        box.close(0)
        server.stop()


def test_outbox_full_blocks_until_the_sink_takes_events(tmp_path: Path) -> None:
    server = HttpServer()
    events = [{"ts": 1000.0, "key": "dev-1", "seq": 10 + i} for i in range(20)]
    box = _outbox(tmp_path, server, max_bytes=10 * _size(events[0]), when_full="block")
    try:
        box.put(events[:10])
        threading.Timer(0.5, server.start).start()
        t0 = time.monotonic()
        box.put(events[10:])  # holds until the drain made room
        assert time.monotonic() - t0 >= 0.4
        assert box.flush(10)
        assert set(server.ids) == _ids(events)
        assert _dropped(box, "full") == 0
    finally:
        box.close(0)
        server.stop()


def test_outbox_ttl_drops_old_events(tmp_path: Path) -> None:
    server = HttpServer()
    old, new = _events(5), _events(3, key="dev-2")
    box = _outbox(tmp_path, server, max_age=0.2)
    try:
        box.put(old)
        time.sleep(1.5)  # housekeeping runs every second
        assert _dropped(box, "ttl") == 5
        server.start()
        box.put(new)
        assert box.flush(10)
        assert set(server.ids) == _ids(new)
    finally:
        box.close(0)
        server.stop()


def test_outbox_compacts_old_backlog_into_summaries(tmp_path: Path) -> None:
    server = HttpServer()
    events = [{"ts": 100.0 + i, "key": k, "t": float(i)} for i in range(20) for k in ("a", "b")]
    box = _outbox(
        tmp_path,
        server,
        compact={
            "after": 0.1,
            "window": 10,
            "aggregate": {"count": "*", "mean": "t", "max": ["t"]},
        },
    )
    try:
        box.put(events)
        time.sleep(2.5)  # offline, then compacted by housekeeping
        server.start()
        assert box.flush(10)
        got = sorted(((e["key"], e["ts"]), e) for e in server.events)
        assert [k for k, _ in got] == [("a", 100.0), ("a", 110.0), ("b", 100.0), ("b", 110.0)]
        first = got[0][1]
        assert (first["count"], first["t_mean"], first["t_max"], first["window_end"]) == (
            10,
            4.5,
            9.0,
            110.0,
        )
        assert all(e["compacted"] and e["events"] == 10 for _, e in got)
        assert box.store.fates()["compacted"] == 40
    finally:
        box.close(0)
        server.stop()


def test_outbox_priority_and_newest_first(tmp_path: Path) -> None:
    server = HttpServer()
    events = [{"ts": float(i), "key": "k", "seq": i, "level": "info"} for i in range(4)]
    alert = {"ts": 1.5, "key": "k", "seq": 99, "level": "alert"}
    box = _outbox(tmp_path, server, max_events=1, order="newest_first", priority="level == 'alert'")
    try:
        box.put(events[:2])
        box.put([alert])
        box.put(events[2:])
        server.start()
        assert box.flush(10)
        assert [e["seq"] for e in server.events] == [99, 3, 2, 1, 0]
    finally:
        box.close(0)
        server.stop()


def test_outbox_replay_is_not_sent_twice(tmp_path: Path, http: HttpServer) -> None:
    events = _events(10)
    box = _outbox(tmp_path, http)
    try:
        assert box.put(events) == 10
        assert box.flush(10)
        assert box.put(events) == 0  # same ids, already sent: ignored
        assert box.flush(1)
        assert Counter(http.ids) == Counter(_ids(events))
    finally:
        box.close(0)


def test_outbox_survives_a_restart_and_drains_without_new_traffic(tmp_path: Path) -> None:
    server = HttpServer()
    events = _events(25)
    box = _outbox(tmp_path, server)
    box.put(events)
    box.close(0)  # sink down: everything stays on disk
    server.start()
    try:
        box = _outbox(tmp_path, server)  # a new process would do the same
        assert box.flush(10)  # drained with no put() at all
        assert set(server.ids) == _ids(events)
        box.close(0)
    finally:
        server.stop()


def test_validate_rejects_a_bad_topic_template(tmp_path: Path) -> None:
    from tests.conftest import cli

    p = tmp_path / "p.yaml"
    p.write_text(
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: src, type: sensor.synthetic, signal: temperature, keys: [a], count: 1}\n"
        '      - {id: cloud, type: sink.mqtt, url: "mqtt://localhost", topic: "a/{key.x}"}\n'
    )
    r = cli("validate", str(p))
    assert r.returncode != 0
    assert "cloud" in r.stderr and "key.x" in r.stderr and "Traceback" not in r.stderr


def test_mqtt_qos0_retain_and_credentials(
    tmp_path: Path, mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = _events(20)
    _write_jsonl(tmp_path / "in.jsonl", events)
    col = Collector(mosquitto)
    col.connect()
    monkeypatch.setenv("EW_MQTT_PASS", "pw")
    try:
        c = _run(
            _config(
                tmp_path,
                f'type: sink.mqtt, url: "{mosquitto.url}", topic: "dev/last", qos: 0, '
                'retain: true, username: edge, password: "${EW_MQTT_PASS}"',
            )
        )
        deadline = time.monotonic() + 5
        while len(col.ids) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(col.ids) == _ids(events)
        late = Collector(mosquitto)  # a subscriber that comes later gets the retained message
        late.connect()
        deadline = time.monotonic() + 5
        while not late.ids and time.monotonic() < deadline:
            time.sleep(0.05)
        assert late.ids == list(_ids(events[-1:]))
        late.close()
        assert _value(c, "edgewax_egress_bytes_total", sink="mqtt") > 0
    finally:
        col.close()


def test_shutdown_with_the_sink_down_is_bounded_and_keeps_the_backlog(tmp_path: Path) -> None:
    server = HttpServer()  # never started
    events = _events(30)
    _write_jsonl(tmp_path / "in.jsonl", events)
    t0 = time.monotonic()
    c = _run(
        _config(tmp_path, f'type: sink.http, url: "{server.url}", outbox: {{drain_timeout: 1s}}')
    )
    assert time.monotonic() - t0 < 8
    assert _value(c, "edgewax_outbox_depth_events") == 30
    status = c.health.status()["p/cloud"]
    assert status["ready"] and "sink unreachable" in status["detail"]  # the outbox accepts
    # The next run finds the backlog and sends it, though the source adds nothing new.
    server.start()
    try:
        _write_jsonl(tmp_path / "in.jsonl", [])
        _run(_config(tmp_path, f'type: sink.http, url: "{server.url}"'))
        assert set(server.ids) == _ids(events)
    finally:
        server.stop()


def test_block_when_full_is_not_ready(tmp_path: Path) -> None:
    server = HttpServer()
    events = [{"ts": 1000.0, "key": "dev-1", "seq": 10 + i} for i in range(5)]
    box = _outbox(tmp_path, server, max_bytes=3 * _size(events[0]), when_full="block")
    try:
        box.ctx.stop.set()  # a stopping run: block gives up and counts the rest as full
        box.put(events)
        assert _dropped(box, "full") == 2
        assert not box.check.ready
    finally:
        box.close(0)


def test_without_outbox_batches_are_sent_directly_with_retries(
    tmp_path: Path, http: HttpServer
) -> None:
    events = _events(25)
    _write_jsonl(tmp_path / "in.jsonl", events)
    http.script(500, (429, {"Retry-After": "0"}, 0.0), 400)
    c = _run(
        _config(
            tmp_path,
            f'type: sink.http, url: "{http.url}", batch: {{max_events: 10}}, '
            "outbox: {enabled: false, " + FAST + "}",
        )
    )
    # The first batch is retried twice then rejected (dead-lettered); the rest go through.
    assert Counter(http.ids) == Counter(_ids(events[10:]))
    assert not (tmp_path / "state/outbox").exists()
    assert c.stats[("p", "cloud")].discarded() == {"rejected": 10.0}


def test_validate_reports_outbox_mistakes_in_one_line_each(tmp_path: Path) -> None:
    from tests.conftest import cli

    p = tmp_path / "p.yaml"
    p.write_text(
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: src, type: sensor.synthetic, signal: temperature, keys: [a], count: 1}\n"
        '      - {id: cloud, type: sink.http, url: "http://h/x", headers: {X-Key: "${EW_K:-k9}"},\n'
        "         outbox: {when_full: sometimes, compact: {after: 1h, aggregate: {median: t}}}}\n"
    )
    r = cli("validate", str(p))
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if "node cloud" in line]
    assert len(lines) == 2 and "Traceback" not in r.stderr and "k9" not in r.stderr
    assert "outbox.when_full" in lines[0] and "outbox.compact.aggregate.median" in lines[1]


def test_mqtts_with_ca_and_client_certificate(tmp_path: Path) -> None:
    _pki(tmp_path)
    broker = Mosquitto(tmp_path)
    broker.conf.write_text(
        f"listener {broker.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"cafile {tmp_path / 'ca.pem'}\ncertfile {tmp_path / 'server.pem'}\n"
        f"keyfile {tmp_path / 'server.key'}\nrequire_certificate true\n"
        # Run as whoever runs the tests (as root, mosquitto would switch to a user that cannot
        # read pytest's private temp folder).
        f"user {getpass.getuser()}\n"
    )
    broker.start()
    try:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        got: list[str] = []
        ready = threading.Event()
        sub = mqtt.Client(CallbackAPIVersion.VERSION2)
        sub.tls_set(
            ca_certs=str(tmp_path / "ca.pem"),
            certfile=str(tmp_path / "client.pem"),
            keyfile=str(tmp_path / "client.key"),
        )
        sub.on_message = lambda c, u, m: got.append(json.loads(m.payload)["event_id"])
        sub.on_subscribe = lambda *a: ready.set()
        sub.connect("127.0.0.1", broker.port)
        sub.loop_start()
        sub.subscribe("#", qos=1)
        assert ready.wait(5)
        events = _events(15)
        _write_jsonl(tmp_path / "in.jsonl", events)
        _run(
            _config(
                tmp_path,
                f'type: sink.mqtt, url: "mqtts://127.0.0.1:{broker.port}", topic: "s/{{key}}", '
                "tls: {ca: ca.pem, cert: client.pem, key: client.key}",
            )
        )
        deadline = time.monotonic() + 5
        while len(got) < 15 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert set(got) == _ids(events)
        sub.loop_stop()
        sub.disconnect()
    finally:
        broker.stop()


@pytest.mark.parametrize("sink", ["sink.http", "sink.mqtt"])
def test_remote_sink_tls_files_are_checked_at_validate_time(sink: str) -> None:
    from edgewax.config.diagnostics import ConfigError
    from edgewax.config.spec import load_spec_text

    url = "https://127.0.0.1:9/in" if sink == "sink.http" else "mqtts://127.0.0.1:9"
    extra = ", topic: t" if sink == "sink.mqtt" else ""
    text = (
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: s, type: sensor.synthetic, count: 1}\n"
        f"      - {{id: out, type: {sink}, url: '{url}'{extra}, tls: {{cert: c.pem}}}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_spec_text(text, Path("/nonexistent"), {}, file="t.yaml")
    messages = sorted(d.message for d in info.value.diagnostics)
    assert messages == ["a client certificate needs both `cert` and `key`", "no file at `c.pem`"]


@pytest.mark.parametrize(
    ("sink", "url"),
    [("sink.http", "https://me:s3cret@127.0.0.1/in"), ("sink.mqtt", "mqtt://me:s3cret@127.0.0.1")],
)
def test_credentials_in_a_sink_url_are_refused_and_not_echoed(sink: str, url: str) -> None:
    from edgewax.config.diagnostics import ConfigError
    from edgewax.config.spec import load_spec_text

    extra = ", topic: t" if sink == "sink.mqtt" else ""
    text = (
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: s, type: sensor.synthetic, count: 1}\n"
        f"      - {{id: out, type: {sink}, url: '{url}'{extra}}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_spec_text(text, Path("."), {}, file="t.yaml")
    assert "put credentials in" in str(info.value) and "s3cret" not in str(info.value)
