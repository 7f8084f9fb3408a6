"""`sink.mqtt`: each event published as one JSON message, through the durable outbox."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from edgewax.config.types import Duration
from edgewax.errors import EdgewaxError
from edgewax.events import Event
from edgewax.operators.base import NodeOptions
from edgewax.operators.connection import TlsOptions, check_url
from edgewax.operators.registry import register
from edgewax.operators.sinks.remote import (
    RemoteSink,
    RemoteSinkOptions,
    render,
    template_fields,
)
from edgewax.outbox import Item, Outcome, Transport


class MqttSinkOptions(RemoteSinkOptions):
    url: str = Field(description="Broker: mqtt://host[:1883] or mqtts://host[:8883] (TLS).")
    topic: str = Field(
        description="Topic to publish to; `{field}` is filled from the event, e.g. "
        "`plant/{key}/alerts` (`/`, `+`, `#` in values become `_`)."
    )
    qos: Literal[0, 1, 2] = Field(
        1,
        description="0: at most once (acknowledged when written to the socket); 1 and 2: "
        "acknowledged on PUBACK / PUBCOMP.",
    )
    retain: bool = Field(False, description="Ask the broker to keep the last message per topic.")
    client_id: str | None = Field(
        None, description="MQTT client id; default: `edgewax-<pipeline>-<node>-<random>`."
    )
    username: str | None = Field(None, description="User name; use `${ENV}` for per-device values.")
    password: SecretStr | None = Field(
        None, description="Password; put it in `${ENV}` (it is never logged)."
    )
    keepalive: int = Field(30, ge=5, description="Keep-alive interval, seconds.")
    timeout: Duration = Field(
        10.0, gt=0, description="Longest wait for the broker's acknowledgements of one batch."
    )
    max_inflight: int = Field(
        20,
        ge=1,
        description="Messages unacknowledged at once. Keep it at or under the broker's limit "
        "(mosquitto's `max_inflight_messages`, 20 by default): mosquitto acknowledges QoS 2 "
        "messages past it and then drops them.",
    )
    batch: int = Field(100, ge=1, description="Messages taken from the outbox per round.")
    tls: TlsOptions = Field(
        default_factory=TlsOptions, description="TLS options (used for mqtts:// URLs)."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(
            v,
            ("mqtt", "mqtts"),
            "is not an mqtt:// or mqtts:// URL",
            "`username`/`password` (from ${ENV})",
        )

    @field_validator("topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        template_fields(v)
        if "+" in v or "#" in v or not v:
            raise ValueError("a topic to publish to may not be empty or hold `+` or `#`")
        return v


def _clean(value: str) -> str:
    return value.replace("/", "_").replace("+", "_").replace("#", "_").replace("\x00", "_")


class MqttTransport(Transport):
    """A paho-mqtt client with its own network thread; reconnects by itself."""

    label = "mqtt"

    def __init__(self, opts: MqttSinkOptions, name: str, base_dir: Any = None) -> None:
        try:  # the `mqtt` extra, imported only when used
            import paho.mqtt.client as mqtt
            from paho.mqtt.enums import CallbackAPIVersion
        except ImportError:
            raise EdgewaxError(
                f"sink.mqtt ({name}) needs paho-mqtt 2: pip install 'edgewax[mqtt]'"
            ) from None

        self.opts = opts
        self.max_events = opts.batch
        self.max_bytes = 1 << 62
        self.topic = opts.topic
        self.static = not template_fields(opts.topic)
        self.routed = not self.static
        parts = urlsplit(opts.url)
        tls = parts.scheme == "mqtts"
        host, port = parts.hostname or "", parts.port or (8883 if tls else 1883)
        cid = opts.client_id or f"edgewax-{name}-{uuid.uuid4().hex[:8]}"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, clean_session=True)
        c.max_inflight_messages_set(opts.max_inflight)
        c.reconnect_delay_set(1, 10)
        if opts.username is not None or opts.password is not None:
            c.username_pw_set(
                opts.username or "",
                opts.password.get_secret_value() if opts.password is not None else None,
            )
        if tls:
            c.tls_set_context(opts.tls.context(base_dir or Path))
        self.error = "not connected yet"
        self.connected = threading.Event()
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        self.client = c
        c.connect_async(host, port, opts.keepalive)
        c.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.error = f"broker refused the connection: {reason}"
            self.connected.clear()
        else:
            # Small messages and acknowledgements: without this, Nagle's algorithm and delayed
            # ACKs hold each round trip for tens of milliseconds.
            sock = client.socket()
            if sock is not None and hasattr(sock, "setsockopt"):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connected.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.connected.clear()
        self.error = f"disconnected: {reason}"

    def route(self, event: Event) -> str | None:
        return None if self.static else render(self.topic, event, _clean)

    def send(self, items: list[Item]) -> Outcome:
        if not self.connected.is_set():
            # paho connects in its thread; give a fresh client a moment before calling it down.
            self.connected.wait(0.5)
            if not self.connected.is_set():
                return Outcome(error=f"broker {self.opts.url}: {self.error}")
        o = self.opts
        infos = []
        sent = 0
        for it in items:
            topic = it.route or self.topic
            info = self.client.publish(topic, it.payload, qos=o.qos, retain=o.retain)
            infos.append(info)
            if info.rc != 0:
                break
            sent += len(it.payload) + len(topic)
        deadline = time.monotonic() + o.timeout
        acked: list[int] = []
        for i, info in enumerate(infos):
            if not self._wait(info, deadline):
                break
            acked.append(i)
        if len(acked) == len(items):
            return Outcome(acked=acked, egress_bytes=sent)
        why = self.error if not self.connected.is_set() else "no acknowledgement in time"
        return Outcome(acked=acked, error=f"broker {o.url}: {why}", egress_bytes=sent)

    def _wait(self, info: Any, deadline: float) -> bool:
        """Wait for one message's acknowledgement while connected and in time."""
        while True:
            try:
                if info.is_published():
                    return True
                if not self.connected.is_set() or time.monotonic() > deadline:
                    return False
                info.wait_for_publish(0.05)
            except (RuntimeError, ValueError):
                return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@register
class MqttSink(RemoteSink):
    """Publish each event as a JSON message to an MQTT broker, through a durable outbox.

    Each message carries a stable `event_id` (delivery is at-least-once). With QoS 1 or 2 an
    event counts as sent on the broker's PUBACK / PUBCOMP; until then it waits in the outbox,
    which is kept across restarts and sent as soon as the broker is back. Needs the `mqtt`
    extra (`pip install edgewax[mqtt]`).

    A broker that is down does not stop the pipeline: events are accepted into the outbox.

    >>> import sqlite3, tempfile
    >>> from pathlib import Path
    >>> from edgewax.testing import run_yaml
    >>> home = Path(tempfile.mkdtemp())
    >>> run_yaml('''
    ... - {id: temps, type: sensor.synthetic, signal: temperature, keys: [t1], count: 3, speed: 0}
    ... - {id: cloud, type: sink.mqtt, url: "mqtt://127.0.0.1:9", topic: "plant/{key}/temp",
    ...    outbox: {drain_timeout: 0s}}''', base_dir=home)
    >>> db = sqlite3.connect(home / ".edgewax/outbox/doc.cloud.db")
    >>> db.execute("SELECT SUM(n), MIN(route) FROM queue WHERE done IS NULL").fetchone()
    (3, 'plant/t1/temp')
    """

    type_name = "sink.mqtt"
    Options: ClassVar[type[NodeOptions]] = MqttSinkOptions

    def transport(self) -> Transport:
        return MqttTransport(self.options, f"{self.ctx.pipeline}-{self.ctx.node_id}", self.ctx.path)
