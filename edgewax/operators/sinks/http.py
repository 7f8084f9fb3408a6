"""`sink.http`: batches of events POSTed as JSON arrays, through the durable outbox."""

from __future__ import annotations

import email.utils
import http.client
import socket
import ssl
import time
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from edgewax.config.types import ByteSize, Duration
from edgewax.operators.base import NodeOptions
from edgewax.operators.connection import TlsOptions, check_url
from edgewax.operators.registry import register
from edgewax.operators.sinks.remote import RemoteSink, RemoteSinkOptions
from edgewax.outbox import Item, Outcome, Transport

RETRY_STATUS = frozenset({408, 429})
"""4xx answers that are worth retrying; every other 4xx dead-letters the batch."""


class HttpBatchOptions(NodeOptions):
    max_events: int = Field(100, ge=1, description="Most events in one POST.")
    max_bytes: ByteSize = Field(1_000_000, ge=1, description="Most body bytes in one POST.")
    linger_ms: int = Field(
        0, ge=0, description="Wait up to this long for a batch to fill before sending it."
    )


class HttpSinkOptions(RemoteSinkOptions):
    url: str = Field(description="Endpoint to POST to: http://host:port/path or https://...")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Extra request headers; put secrets in `${ENV}` (values are never logged), "
        'e.g. `Authorization: "Bearer ${API_TOKEN}"`.',
    )
    timeout: Duration = Field(10.0, gt=0, description="Connect and read timeout of one request.")
    batch: HttpBatchOptions = Field(
        default_factory=HttpBatchOptions, description="How events are grouped into requests."
    )
    tls: TlsOptions = Field(
        default_factory=TlsOptions, description="HTTPS options (for https:// URLs)."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(
            v,
            ("http", "https"),
            "is not an http:// or https:// URL",
            "headers (e.g. Authorization: ${API_TOKEN})",
        )


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date.

    >>> retry_after("3"), retry_after(None)
    (3.0, None)
    >>> retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470)
    10.0
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


class HttpTransport(Transport):
    """One keep-alive connection; one POST per batch."""

    label = "http"

    def __init__(self, opts: HttpSinkOptions, base_dir: Any = None) -> None:
        parts = urlsplit(opts.url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = opts.timeout
        self.max_events = opts.batch.max_events
        self.max_bytes = opts.batch.max_bytes
        self.linger = opts.batch.linger_ms / 1000
        self.headers = {k: v.get_secret_value() for k, v in opts.headers.items()}
        self.headers.setdefault("Content-Type", "application/json")
        self.context: ssl.SSLContext | None = None
        if self.https:
            self.context = opts.tls.context(base_dir or Path)
        self.conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self.conn is None:
            if self.https:
                self.conn = http.client.HTTPSConnection(
                    self.host, self.port, timeout=self.timeout, context=self.context
                )
            else:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return self.conn

    def send(self, items: list[Item]) -> Outcome:
        body = b"[" + b",".join(i.payload for i in items) + b"]"
        conn = self._connect()
        sent = 0
        try:
            conn.request("POST", self.path, body=body, headers=self.headers)
            sent = len(body)
            resp = conn.getresponse()
            status = resp.status
            text = resp.read(4096)
            if resp.will_close:
                self.close()
            ra = resp.getheader("Retry-After")
        except (TimeoutError, OSError, http.client.HTTPException) as e:
            self.close()
            what = "timed out" if isinstance(e, (socket.timeout, TimeoutError)) else str(e)
            return Outcome(
                error=f"POST {self.host}:{self.port}: {what or type(e).__name__}", egress_bytes=sent
            )
        if 200 <= status < 300:
            return Outcome(acked=list(range(len(items))), egress_bytes=sent)
        if status >= 500 or status in RETRY_STATUS:
            return Outcome(error=f"HTTP {status}", retry_after=retry_after(ra), egress_bytes=sent)
        why = f"HTTP {status}: {text[:200].decode('utf-8', 'replace')}"
        return Outcome(rejected=[(i, why) for i in range(len(items))], egress_bytes=sent)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@register
class HttpSink(RemoteSink):
    """POST events as JSON arrays to an HTTP(S) endpoint, through a durable outbox.

    Each event carries a stable `event_id` (for de-duplication on the far side: delivery is
    at-least-once). 2xx acknowledges a batch; 408, 429 (honouring Retry-After), 5xx, timeouts and
    refused connections are retried with backoff; any other answer dead-letters the batch
    (reason `rejected`).

    A sink that cannot be reached does not stop the pipeline: events wait in the outbox (kept
    across restarts) and go out as soon as it answers.

    >>> import sqlite3, tempfile
    >>> from pathlib import Path
    >>> from edgewax.testing import run_yaml
    >>> home = Path(tempfile.mkdtemp())
    >>> run_yaml('''
    ... - {id: temps, type: sensor.synthetic, signal: temperature, keys: [t1], count: 3, speed: 0}
    ... - {id: cloud, type: sink.http, url: "http://127.0.0.1:9/ingest",
    ...    headers: {Authorization: "Bearer ${NO_SUCH_TOKEN:-dev}"}, outbox: {drain_timeout: 0s}}
    ... ''', base_dir=home)
    >>> db = sqlite3.connect(home / ".edgewax/outbox/doc.cloud.db")
    >>> db.execute("SELECT SUM(n) FROM queue WHERE done IS NULL").fetchone()
    (3,)
    """

    type_name = "sink.http"
    Options: ClassVar[type[NodeOptions]] = HttpSinkOptions

    def transport(self) -> Transport:
        return HttpTransport(self.options, self.ctx.path)
