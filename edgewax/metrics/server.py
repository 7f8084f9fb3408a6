"""The HTTP endpoint of a run: `/metrics` for Prometheus, `/healthz` and `/readyz` for probes.

One thread, started by the runner for the life of `edgewax run`, serves the run's own registry
(never the process-global one). It listens on 127.0.0.1 unless the config says otherwise; with
`auth` set, `/metrics` and `/readyz` want HTTP basic auth (compared in constant time) while
`/healthz` stays open for liveness probes; with `tls` set, it speaks HTTPS only.

>>> from edgewax.config.spec import MetricsSettings
>>> from edgewax.health import Health
>>> from edgewax.metrics import Metrics
>>> import urllib.request
>>> server = MetricsServer(MetricsSettings(port=1), Metrics().registry, Health(), port=0)
>>> server.start()
>>> urllib.request.urlopen(server.url("/healthz")).read()
b'ok\\n'
>>> server.stop()
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from edgewax.config.spec import MetricsSettings
from edgewax.errors import EdgewaxError
from edgewax.health import Health

log = logging.getLogger("edgewax.metrics")

_CLIENT_TIMEOUT = 10.0
"""Seconds a client may take to send its request (or finish a TLS handshake)."""


class MetricsServer:
    """Serves one run's registry and readiness; `start()` binds (or raises), `stop()` closes."""

    def __init__(
        self,
        settings: MetricsSettings,
        registry: CollectorRegistry,
        health: Health,
        base_dir: Path | None = None,
        host: str | None = None,
        port: int | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.health = health
        self.host = host if host is not None else settings.host
        self.port = port if port is not None else settings.port
        self.path = settings.path
        self.stopping = stopping
        self._credentials: bytes | None = None
        if settings.auth is not None:
            pair = f"{settings.auth.username}:{settings.auth.password.get_secret_value()}"
            self._credentials = pair.encode("utf-8")
        self._tls: ssl.SSLContext | None = None
        if settings.tls is not None:
            self._tls = _tls_context(settings.tls.cert, settings.tls.key, base_dir or Path.cwd())
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def scheme(self) -> str:
        return "https" if self._tls is not None else "http"

    def url(self, path: str | None = None) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"{self.scheme}://{host}:{self.port}{self.path if path is None else path}"

    def start(self) -> None:
        """Bind and serve in a daemon thread; EdgewaxError if the address cannot be bound."""
        server_class = _Server6 if ":" in self.host else _Server
        try:
            httpd = server_class((self.host, self.port), _Handler, self)
        except OSError as e:
            raise EdgewaxError(
                f"metrics endpoint: cannot listen on {self.host}:{self.port}: "
                f"{e.strerror or e} (set settings.metrics.port or --metrics-port, or turn it "
                "off with --no-metrics)"
            ) from None
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._thread = threading.Thread(
            # The poll interval bounds how long `stop()` (and so the end of a run) waits.
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="edgewax-metrics"
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def authorized(self, header: str | None) -> bool:
        if self._credentials is None:
            return True
        if header is None:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except ValueError:
            return False
        return hmac.compare_digest(given, self._credentials)


def _tls_context(cert: str, key: str, base_dir: Path) -> ssl.SSLContext:
    def resolve(p: str) -> Path:
        path = Path(p).expanduser()
        return path if path.is_absolute() else base_dir / path

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(resolve(cert), resolve(key))
    except (OSError, ssl.SSLError) as e:
        raise EdgewaxError(
            f"metrics endpoint: cannot load TLS cert `{cert}` / key `{key}`: {e}"
        ) from None
    return ctx


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: Any, owner: MetricsServer) -> None:
        self.owner = owner
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the request's own thread: a slow TLS handshake never holds up the others.
        request.settimeout(_CLIENT_TIMEOUT)
        tls = self.owner._tls
        if tls is not None:
            try:
                request = tls.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as e:
                log.debug("metrics endpoint: TLS handshake with %s failed: %s", client_address, e)
                return
        super().finish_request(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "edgewax"
    sys_version = ""

    def do_GET(self) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(200, b"ok\n", "text/plain; charset=utf-8")
            return
        if path not in (owner.path, "/readyz"):
            self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")
            return
        if not owner.authorized(self.headers.get("Authorization")):
            self._send(
                401,
                b"unauthorized\n",
                "text/plain",
                {"WWW-Authenticate": 'Basic realm="edgewax", charset="UTF-8"'},
            )
            return
        if path == owner.path:
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, encoder(owner.registry), content_type)
            return
        ready = owner.health.ready() and not owner.stopping()
        status = owner.health.status()
        body = {"ready": ready, "stopping": owner.stopping(), "checks": status}
        data = (json.dumps(body, indent=1, sort_keys=True) + "\n").encode("utf-8")
        self._send(200 if ready else 503, data, "application/json")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _send(
        self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics endpoint: %s %s", self.address_string(), format % args)
