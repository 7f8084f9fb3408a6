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


def compiled_for(nodes: str, base: Path, dead_letters: bool = True) -> Compiled:
    settings = "{}" if dead_letters else "{dead_letter: {path: null}}"
    text = f"version: 1\nsettings: {settings}\npipelines:\n  p:\n    nodes:\n"
    text += "".join(f"      {line}\n" for line in nodes.strip().splitlines())
    return compile_spec(load_spec_text(text, base))


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
