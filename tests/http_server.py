"""A real HTTP server for sink tests: scriptable answers, records what it acknowledged.

`HttpServer().start()` listens on a free 127.0.0.1 port. `script(...)` queues answers for the
next requests (status, headers, delay); when the script runs out every request gets 200. Events of
requests answered 2xx are kept in `events` (in arrival order); `requests` counts every POST with
its arrival time.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HttpServer:
    def __init__(self, port: int | None = None) -> None:
        import socket

        if port is None:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
        self.port = port
        self.url = f"http://127.0.0.1:{port}/ingest"
        self.lock = threading.Lock()
        self.answers: deque[tuple[int, dict[str, str], float]] = deque()
        self.events: list[dict[str, Any]] = []
        self.requests: list[tuple[float, int, int]] = []
        """(arrival time, events in the request, status answered)."""
        self.headers_seen: list[dict[str, str]] = []
        self.count_only = False
        self.received = 0
        self.server: ThreadingHTTPServer | None = None

    def script(self, *answers: tuple[int, dict[str, str], float] | int) -> None:
        with self.lock:
            for a in answers:
                self.answers.append((a, {}, 0.0) if isinstance(a, int) else a)

    @property
    def ids(self) -> list[str]:
        with self.lock:
            return [e["event_id"] for e in self.events]

    def start(self, tls: ssl.SSLContext | None = None) -> HttpServer:
        """Listen (with `tls`: HTTPS, and `url` says https)."""
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    status, headers, delay = (
                        outer.answers.popleft() if outer.answers else (200, {}, 0.0)
                    )
                if delay:
                    time.sleep(delay)
                if outer.count_only:
                    n = body.count(b'"event_id"')
                    with outer.lock:
                        outer.received += n
                else:
                    events = json.loads(body)
                    n = len(events)
                    with outer.lock:
                        outer.requests.append((time.monotonic(), n, status))
                        outer.headers_seen.append(dict(self.headers))
                        if 200 <= status < 300:
                            outer.events.extend(events)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                return None

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
            self.url = self.url.replace("http://", "https://")
        self.server = server
        threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
