"""source.mqtt against a real mosquitto broker: messages in = events out, bad payloads dead-lettered
and counted, a broker restart survived."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from edgewax.config.spec import load_spec_text
from edgewax.flows.compiler import Compiled, compile_spec
from edgewax.testing import run_compiled


def compiled_for(
    nodes: str, base: Path, dead_letters: bool = True, env: dict[str, str] | None = None
) -> Compiled:
    settings = "{}" if dead_letters else "{dead_letter: {path: null}}"
    text = f"version: 1\nsettings: {settings}\npipelines:\n  p:\n    nodes:\n"
    text += "".join(f"      {line}\n" for line in nodes.strip().splitlines())
    return compile_spec(load_spec_text(text, base, env))


def value(c: Compiled, name: str, **labels: str) -> float:
    labels = {"pipeline": "p", "node": "vitals", "type": "source.mqtt", **labels}
    return float(c.metrics.registry.get_sample_value(name, labels) or 0.0)


def wait_until(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met in time: {cond.__doc__ or ''}")
        time.sleep(0.02)


def subscribed(c: Compiled) -> Callable[[], bool]:
    """The source's readiness check (Health.ready() is vacuously true before it registers)."""
    return lambda: bool(c.health.status().get("p/vitals", {}).get("ready"))


def publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    wait_until(client.is_connected)
    return client


def publish(client: mqtt.Client, topic: str, payloads: list[Any]) -> None:
    infos = [
        client.publish(topic, p if isinstance(p, bytes) else json.dumps(p), qos=1) for p in payloads
    ]
    for info in infos:
        info.wait_for_publish(5)
        assert info.is_published()


class Running:
    def __init__(self, c: Compiled) -> None:
        self.c = c
        self.thread = threading.Thread(target=run_compiled, args=(c,))
        self.thread.start()

    def stop(self) -> None:
        self.c.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


NODES = """
- id: vitals
  type: source.mqtt
  url: {url}
  topics: [ward/+/vitals]
  key_topic_level: 1
  time_field: t
  fields: {{heart_rate: hr, spo2: vitals.spo2}}
  reconnect: {{initial: 100ms, max: 500ms}}
- {{id: out, type: sink.jsonl, path: out.jsonl}}
"""


def test_messages_in_equal_events_out_and_bad_payloads_are_counted(
    mosquitto: Any, tmp_path: Path
) -> None:
    c = compiled_for(NODES.format(url=mosquitto.url), tmp_path)
    run = Running(c)
    try:
        wait_until(subscribed(c))
        pub = publisher(mosquitto.port)
        good = [{"t": 1000 + i, "hr": 60 + i, "vitals": {"spo2": 97.5}} for i in range(200)]
        publish(pub, "ward/bed-7/vitals", good[:100])
        publish(pub, "ward/bed-8/vitals", good[100:])
        publish(pub, "ward/bed-7/vitals", [b"not json", [1, 2], {"t": 1, "hr": 70}])
        publish(pub, "ward/other/temperature", [{"t": 1, "hr": 1, "vitals": {"spo2": 1}}])
        wait_until(lambda: value(c, "edgewax_node_received_events_total") >= 203)
        time.sleep(0.2)
        pub.loop_stop()
    finally:
        run.stop()
    events = lines(tmp_path / "out.jsonl")
    assert len(events) == 200
    assert value(c, "edgewax_node_sent_events_total") == 200
    assert value(c, "edgewax_node_discarded_events_total", reason="malformed") == 2
    assert value(c, "edgewax_node_discarded_events_total", reason="missing_field") == 1
    assert value(c, "edgewax_node_errors_total") == 3
    first = events[0]
    assert first == {"ts": 1000.0, "key": "bed-7", "heart_rate": 60, "spo2": 97.5}
    assert {e["key"] for e in events} == {"bed-7", "bed-8"}
    dead = lines(tmp_path / ".edgewax" / "dead_letters.jsonl")
    assert len(dead) == 3  # with the topic and the raw payload, to look at later
    assert any("not json" in json.dumps(d) and "ward/bed-7/vitals" in json.dumps(d) for d in dead)


def test_broker_restart_is_survived(mosquitto: Any, tmp_path: Path) -> None:
    c = compiled_for(NODES.format(url=mosquitto.url), tmp_path, dead_letters=False)
    run = Running(c)
    try:
        wait_until(subscribed(c))
        pub = publisher(mosquitto.port)
        publish(
            pub, "ward/bed-1/vitals", [{"t": i, "hr": i, "vitals": {"spo2": 98}} for i in range(50)]
        )
        wait_until(lambda: value(c, "edgewax_node_sent_events_total") >= 50)
        pub.loop_stop()
        pub.disconnect()

        mosquitto.stop()
        wait_until(lambda: not subscribed(c)())
        time.sleep(0.5)  # a few reconnect attempts against a closed port
        mosquitto.start()
        wait_until(subscribed(c))

        pub = publisher(mosquitto.port)
        publish(
            pub,
            "ward/bed-1/vitals",
            [{"t": 100 + i, "hr": i, "vitals": {"spo2": 98}} for i in range(50)],
        )
        wait_until(lambda: value(c, "edgewax_node_sent_events_total") >= 100)
        pub.loop_stop()
    finally:
        run.stop()
    assert len(lines(tmp_path / "out.jsonl")) == 100
    assert value(c, "edgewax_source_reconnects_total") >= 1


def test_persistent_session_keeps_messages_while_we_are_away(
    mosquitto: Any, tmp_path: Path
) -> None:
    # QoS 1 + clean_session false + a fixed client id: the broker queues for us while we are down.
    c = compiled_for(NODES.format(url=mosquitto.url), tmp_path, dead_letters=False)
    run = Running(c)
    wait_until(subscribed(c))
    run.stop()  # the session stays on the broker
    pub = publisher(mosquitto.port)
    publish(
        pub, "ward/bed-2/vitals", [{"t": i, "hr": i, "vitals": {"spo2": 98}} for i in range(30)]
    )
    pub.loop_stop()

    c2 = compiled_for(NODES.format(url=mosquitto.url), tmp_path, dead_letters=False)
    run2 = Running(c2)
    try:
        wait_until(lambda: value(c2, "edgewax_node_sent_events_total") >= 30)
    finally:
        run2.stop()
    assert [e["heart_rate"] for e in lines(tmp_path / "out.jsonl")] == list(range(30))


def _user() -> str:
    import getpass

    return getpass.getuser()


def _openssl(*args: str, cwd: Path) -> None:
    import subprocess

    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def test_tls_with_a_private_ca_and_a_password_from_the_environment(
    tmp_path: Path, caplog: Any
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    import shutil
    import subprocess

    from .conftest import free_port, wait_for_port

    if shutil.which("openssl") is None:
        import pytest

        pytest.skip("openssl is not installed")
    # A private CA and a server certificate for 127.0.0.1.
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=edgewax test CA",
        cwd=tmp_path,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=tmp_path,
    )
    (tmp_path / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "san.cnf",
        cwd=tmp_path,
    )
    (tmp_path / "passwd").write_text("")
    subprocess.run(
        ["mosquitto_passwd", "-b", str(tmp_path / "passwd"), "sensor", "s3cret-pw"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    (tmp_path / "tls.conf").write_text(
        f"listener {port} 127.0.0.1\ncafile {tmp_path / 'ca.pem'}\n"
        f"certfile {tmp_path / 'server.pem'}\nkeyfile {tmp_path / 'server.key'}\n"
        f"allow_anonymous false\npassword_file {tmp_path / 'passwd'}\n"
        # Run as root (CI containers), mosquitto drops to its own user, which cannot read the
        # test's private temp folder: keep the invoking user.
        f"user {_user()}\n"
    )
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker = subprocess.Popen([exe, "-c", str(tmp_path / "tls.conf")], stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        c = compiled_for(
            f"""
- id: vitals
  type: source.mqtt
  url: mqtts://127.0.0.1:{port}
  topics: [ward/#]
  tls: {{ca: ca.pem}}
  username: sensor
  password: ${{MQTT_PASSWORD}}
  fields: {{hr: hr}}
- {{id: out, type: sink.jsonl, path: out.jsonl}}
""",
            tmp_path,
            env={"MQTT_PASSWORD": "s3cret-pw"},
        )
        assert "s3cret-pw" not in repr(c.spec)
        run = Running(c)
        try:
            wait_until(subscribed(c))
            import paho.mqtt.client as paho

            pub = paho.Client(callback_api_version=paho.CallbackAPIVersion.VERSION2)
            pub.tls_set(ca_certs=str(tmp_path / "ca.pem"))
            pub.username_pw_set("sensor", "s3cret-pw")
            pub.connect("127.0.0.1", port)
            pub.loop_start()
            wait_until(pub.is_connected)
            publish(pub, "ward/bed-1", [{"hr": 60 + i} for i in range(10)])
            wait_until(lambda: value(c, "edgewax_node_sent_events_total") >= 10)
            pub.loop_stop()
        finally:
            run.stop()
        assert [e["hr"] for e in lines(tmp_path / "out.jsonl")] == list(range(60, 70))
        assert "connected" in caplog.text or "subscribed" in str(c.health.status())
        assert "s3cret-pw" not in caplog.text
    finally:
        broker.kill()
        broker.wait()


def test_queued_messages_survive_a_broker_restart_with_persistence(tmp_path: Path) -> None:
    # As far as MQTT allows: the broker persists our session and its queue across its restart.
    from .conftest import Mosquitto

    broker = Mosquitto(tmp_path)
    broker.conf.write_text(
        f"listener {broker.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {tmp_path}/\nuser {_user()}\n"
    )
    broker.start()
    try:
        c = compiled_for(NODES.format(url=broker.url), tmp_path, dead_letters=False)
        run = Running(c)
        wait_until(subscribed(c))
        run.stop()  # we are away; the session stays on the broker
        pub = publisher(broker.port)
        publish(
            pub, "ward/bed-3/vitals", [{"t": i, "hr": i, "vitals": {"spo2": 98}} for i in range(25)]
        )
        pub.loop_stop()
        pub.disconnect()
        assert broker.proc is not None
        broker.proc.terminate()  # a clean restart: mosquitto saves sessions on the way down
        broker.proc.wait()
        broker.proc = None
        broker.start()
        c2 = compiled_for(NODES.format(url=broker.url), tmp_path, dead_letters=False)
        run2 = Running(c2)
        try:
            wait_until(lambda: value(c2, "edgewax_node_sent_events_total") >= 25)
        finally:
            run2.stop()
        assert [e["heart_rate"] for e in lines(tmp_path / "out.jsonl")] == list(range(25))
    finally:
        broker.stop()
