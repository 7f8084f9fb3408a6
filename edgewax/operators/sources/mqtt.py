"""`source.mqtt`: sensor readings from an MQTT broker (paho-mqtt 2.x), JSON payloads to events.

The client runs on its own thread and queues what arrives; the Bytewax side parses the queue a
batch at a time. A payload that is not a JSON object, or lacks a mapped field, is dead-lettered
(`malformed` / `missing_field`) and the rest go on.

Not losing messages: the client keeps a persistent session (MQTT 3.1.1 `clean_session: false`
with a fixed client id) and subscribes with QoS 1 by default, so while the link is down the broker
keeps the messages for us and sends them when we reconnect. That survives our reconnects and, if
the broker persists its sessions to disk (mosquitto `persistence true`), broker restarts too; a
broker without persistence forgets the session when it restarts, and what was published while it
was down is lost on the publisher's side. Messages are acknowledged on receipt, so the few queued
in memory are lost if the process is killed. paho-mqtt (extra `mqtt`) is imported when the node
starts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

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
from edgewax.operators.connection import TlsOptions, check_url
from edgewax.operators.registry import register
from edgewax.operators.sources.backoff import Backoff, ReconnectOptions
from edgewax.operators.sources.partitions import BATCH, LivePartition, PartitionedSource

log = logging.getLogger("edgewax.mqtt")

_IDLE_WAKE = 0.01


def import_paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError as e:  # pragma: no cover - the test set-up installs the extra
        raise EdgewaxError("source.mqtt needs paho-mqtt: pip install 'edgewax[mqtt]'") from e
    return mqtt


def topic_problem(topic: str) -> str | None:
    """Why `topic` is not a valid MQTT subscription filter, or None.

    >>> topic_problem("plant/+/vitals"), topic_problem("plant/#/x")
    (None, '`#` must be the last level')
    """
    if not topic:
        return "empty topic"
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return "`#` must be the last level"
        if "+" in level and level != "+":
            return "`+` must be a whole level"
    return None


class MqttOptions(NodeOptions):
    url: str = Field(
        description="Broker: `mqtt://host:1883` or `mqtts://host:8883` (TLS). Credentials go in "
        "`username`/`password`, not here."
    )
    topics: list[str] = Field(
        min_length=1, description="Topic filters to subscribe to; `+` and `#` wildcards work."
    )
    qos: Literal[0, 1, 2] = Field(
        1, description="Subscription QoS: 1 (default) keeps messages across reconnects."
    )
    client_id: str | None = Field(
        None,
        description="Client id of the persistent session; default: edgewax-PIPELINE-NODE. "
        "Must be unique per device.",
    )
    clean_session: bool = Field(
        False, description="Start a fresh session on each connect (loses what was queued)."
    )
    username: str | None = Field(None, description="Broker user name, e.g. `${MQTT_USER}`.")
    password: SecretStr | None = Field(
        None, description="Broker password, from the environment: `${MQTT_PASSWORD}`. Never logged."
    )
    tls: TlsOptions = Field(
        default_factory=TlsOptions, description="TLS options (used for mqtts:// URLs)."
    )
    fields: dict[str, str] | None = Field(
        None,
        description="Event field -> payload path (dots go into objects), e.g. "
        "`{heart_rate: hr, spo2: vitals.spo2}`; a message without one is dead-lettered. "
        "Default: every top-level payload field.",
    )
    raw: list[str] = Field(
        default_factory=list,
        description="Fields (of `fields`) that are raw personal or sensor data, e.g. "
        "`[heart_rate, spo2]`: the privacy lint keeps them, and fields computed from them, off "
        "remote sinks unless the sink says `allow_raw: true`.",
    )
    key_field: str | None = Field(None, description="Payload path holding the key (device id).")
    key_topic_level: int | None = Field(
        None,
        description="Topic level holding the key, from 0 (negative counts from the end): "
        "`plant/bed-7/vitals` with 1 gives `bed-7`. Default (and no `key_field`): the topic.",
    )
    time_field: str | None = Field(
        None,
        description="Payload path holding event time (epoch seconds or ISO-8601); "
        "default: the arrival time.",
    )
    keepalive: int = Field(30, ge=5, le=3600, description="MQTT keepalive, in seconds.")
    max_pending: int = Field(
        100_000,
        ge=1,
        description="Messages held in memory before the oldest are dropped (`overflow`).",
    )
    batch_size: int = Field(BATCH, ge=1, description="Most messages parsed per batch.")
    reconnect: ReconnectOptions = Field(
        default_factory=ReconnectOptions, description="Reconnecting after the broker drops."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        return check_url(
            url,
            ("mqtt", "mqtts"),
            "is not a broker URL; write e.g. mqtt://127.0.0.1:1883",
            "`username`/`password` (from ${ENV})",
        )


def _get(obj: Any, path: str) -> Any:
    """The value at a dotted path; KeyError when missing."""
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            raise KeyError(path)
        obj = obj[part]
    return obj


class _NotAnObject(ValueError):
    pass


def message_event(o: MqttOptions, topic: str, payload: bytes, arrived: float) -> Event:
    """The event for one message; KeyError for a missing field, ValueError for bad JSON.

    >>> o = MqttOptions(url="mqtt://broker", topics=["ward/+/vitals"], key_topic_level=1,
    ...                 fields={"heart_rate": "hr", "spo2": "vitals.spo2"})
    >>> message_event(o, "ward/bed-7/vitals", b'{"hr": 72, "vitals": {"spo2": 97.5}}', 1000.0)
    {'heart_rate': 72, 'spo2': 97.5, 'ts': 1000.0, 'key': 'bed-7'}
    """
    rec = json.loads(payload)
    if not isinstance(rec, dict):
        raise _NotAnObject("payload is not a JSON object")
    ev: Event = {name: _get(rec, path) for name, path in o.fields.items()} if o.fields else rec
    if o.time_field is not None:
        t = _get(rec, o.time_field)
        ev["ts"] = float(t) if type(t) in (int, float) else event_time(t)
    else:
        ev["ts"] = arrived
    if o.key_field is not None:
        ev["key"] = str(_get(rec, o.key_field))
    elif o.key_topic_level is not None:
        ev["key"] = topic.split("/")[o.key_topic_level]
    else:
        ev["key"] = topic
    return ev


class _MqttPartition(LivePartition):
    def __init__(self, ctx: NodeContext, options: MqttOptions) -> None:
        super().__init__(ctx, options.batch_size)
        self.options = options
        self.mqtt = import_paho()
        self.queue: deque[tuple[str, bytes, float]] = deque()
        self.connected = False
        self._overflow = 0
        parts = urlsplit(options.url)
        self.host = parts.hostname or "127.0.0.1"
        self.tls = parts.scheme == "mqtts"
        self.port = parts.port or (8883 if self.tls else 1883)
        self.check.fail(f"connecting to {self.host}:{self.port}")
        self.client = self._client()

    def _client(self) -> Any:
        mqtt = self.mqtt
        o = self.options
        cid = o.client_id or f"edgewax-{self.ctx.pipeline}-{self.ctx.node_id}"
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=cid,
            clean_session=o.clean_session,
            protocol=mqtt.MQTTv311,
        )
        if o.username is not None:
            client.username_pw_set(
                o.username, o.password.get_secret_value() if o.password else None
            )
        if self.tls:
            client.tls_set_context(o.tls.context(self.ctx.path))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    # ------------------------------------------------ client thread side

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            self.check.fail(f"broker refused: {rc}")
            return
        self.connected = True
        # Resubscribe even with a session: a broker that restarted may have lost it.
        client.subscribe([(t, self.options.qos) for t in self.options.topics])
        log.info("mqtt %s: connected to %s:%s", self.ctx.node_id, self.host, self.port)

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, codes: Any, props: Any) -> None:
        # Ready once the broker confirms the subscriptions: from then on nothing is missed.
        bad = [str(c) for c in codes if c.is_failure]
        if bad:
            self.check.fail(f"subscription refused: {', '.join(bad)}")
            log.error("mqtt %s: subscription refused: %s", self.ctx.node_id, ", ".join(bad))
        else:
            self.check.ok(f"subscribed on {self.host}:{self.port}")

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connected = False
        self.check.fail(f"disconnected from {self.host}:{self.port}")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        q = self.queue
        if len(q) >= self.options.max_pending:
            q.popleft()
            self._overflow += 1
        q.append((msg.topic, msg.payload, time.time()))

    def _run(self) -> None:
        mqtt = self.mqtt
        client = self.client
        backoff = Backoff(self.options.reconnect)
        first = True
        while not (self.halt.is_set() or self.ctx.stop.is_set()):
            try:
                if first:
                    client.connect(self.host, self.port, self.options.keepalive)
                else:
                    self.reconnects.inc()
                    client.reconnect()
                first = False
            except (OSError, ValueError) as e:
                first = False
                self.check.fail(f"cannot connect to {self.host}:{self.port}: {e}")
                if not self._retry(backoff, str(e)):
                    return
                continue
            while not (self.halt.is_set() or self.ctx.stop.is_set()):
                rc = client.loop(timeout=0.2)
                if rc != mqtt.MQTT_ERR_SUCCESS:
                    break
                if self.connected:
                    backoff.reset()
            self.connected = False
            if self.halt.is_set() or self.ctx.stop.is_set():
                break
            self.check.fail(f"lost {self.host}:{self.port}")
            if not self._retry(backoff, "connection lost"):
                return
        with contextlib.suppress(Exception):
            client.disconnect()

    def _retry(self, backoff: Backoff, why: str) -> bool:
        if not self.options.reconnect.enabled:
            log.error("mqtt %s: %s; not reconnecting", self.ctx.node_id, why)
            return False
        wait = backoff.next()
        log.warning(
            "mqtt %s: %s; reconnecting to %s:%s in %.1f s",
            self.ctx.node_id,
            why,
            self.host,
            self.port,
            wait,
        )
        return not self.halt.wait(wait)

    # ------------------------------------------------ Bytewax side

    def tell(self) -> Any:
        return None

    def seek(self, position: Any) -> None:
        return None

    def read(self, n: int) -> list[Event]:
        if self.thread is None:
            self.thread = threading.Thread(
                target=self._run, name=f"edgewax-mqtt-{self.ctx.node_id}", daemon=True
            )
            self.thread.start()
        q = self.queue
        m = min(n, len(q))
        if self._overflow:
            count, self._overflow = self._overflow, 0
            self.ctx.stats.discard("overflow", count)
        if not m:
            if not self.thread.is_alive():
                raise StopIteration
            self._wake = time.time() + _IDLE_WAKE
            return []
        self._wake = None
        msgs = [q.popleft() for _ in range(m)]
        stats = self.ctx.stats
        stats.received.inc(m)
        stats.source_bytes.inc(sum(len(p) for _, p, _ in msgs))
        return self._parse(msgs)

    def _parse(self, msgs: list[tuple[str, bytes, float]]) -> list[Event]:
        o = self.options
        out = []
        for topic, payload, arrived in msgs:
            try:
                out.append(message_event(o, topic, payload, arrived))
            except KeyError as e:
                self._bad("missing_field", f"{topic}: missing field {e}", topic, payload)
            except ValueError as e:  # JSONDecodeError is a ValueError
                reason = (
                    "malformed"
                    if isinstance(e, _NotAnObject | json.JSONDecodeError)
                    else "bad_value"
                )
                self._bad(reason, f"{topic}: {e}", topic, payload)
            except (TypeError, IndexError) as e:
                self._bad("bad_value", f"{topic}: {e}", topic, payload)
        return out

    def _bad(self, reason: str, error: str, topic: str, payload: bytes) -> None:
        record = {"topic": topic, "payload": payload[:4096].decode("utf-8", "replace")}
        self.ctx.dead_letter(reason, error, record)


@register
class MqttSource(Source):
    """Sensor readings from MQTT topics: JSON payloads mapped to event fields.

    A pipeline (needs a broker; the tests run one):

        - {id: vitals, type: source.mqtt, url: "mqtts://${BROKER}", topics: [ward/+/vitals],
           username: "${MQTT_USER}", password: "${MQTT_PASSWORD}", key_topic_level: 1,
           fields: {heart_rate: hr, spo2: vitals.spo2}}

    What one message becomes (see `message_event`):

    >>> o = MqttSource.Options.model_validate({"url": "mqtt://127.0.0.1", "topics": ["ward/#"],
    ...     "key_field": "id", "time_field": "at", "fields": {"hr": "hr"}})
    >>> message_event(o, "ward/x", b'{"id": 7, "at": "2026-01-01T00:00:00Z", "hr": 61}', 0.0)
    {'hr': 61, 'ts': 1767225600.0, 'key': '7'}
    """

    type_name = "source.mqtt"
    Options: ClassVar[type[NodeOptions]] = MqttOptions

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        if options.fields is None:
            return None
        raw = set(options.raw)
        return {**BASE_FIELDS, **{name: FieldInfo(raw=name in raw) for name in options.fields}}

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        o: MqttOptions = options
        problems = []
        for i, topic in enumerate(o.topics):
            why = topic_problem(topic)
            if why is not None:
                problems.append(
                    Problem(
                        ("topics", i), f"topic `{topic}`: {why}", "e.g. plant/+/vitals or plant/#"
                    )
                )
        problems.extend(o.tls.problems(base_dir))
        for i, name in enumerate(o.raw):
            if o.fields is None or name not in o.fields:
                problems.append(
                    Problem(
                        ("raw", i),
                        f"`{name}` is not one of `fields`",
                        "list the payload fields in `fields:` to declare some of them raw",
                    )
                )
        if o.password is not None and o.username is None:
            problems.append(
                Problem(
                    ("password",), "`password` without `username`", "set username: ${MQTT_USER}"
                )
            )
        return problems

    def source(self) -> PartitionedSource:
        return PartitionedSource({self.ctx.node_id: lambda: _MqttPartition(self.ctx, self.options)})
