"""Reading a running instance's endpoint, for `edgewax top`: `/metrics` and `/readyz`."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request

from edgewax.errors import EdgewaxError
from edgewax.metrics.status import Snapshot

_TIMEOUT = 5.0


class Endpoint:
    """One instance's endpoint: `URL` may be `host:port`, or a full URL with or without a path.

    >>> Endpoint("10.0.0.7:9464").metrics_url, Endpoint("https://box/m").ready_url
    ('http://10.0.0.7:9464/metrics', 'https://box/readyz')
    """

    def __init__(
        self,
        url: str,
        user: str | None = None,
        password: str | None = None,
        cafile: str | None = None,
        insecure: bool = False,
    ) -> None:
        if "://" not in url:
            url = "http://" + url
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise EdgewaxError(f"not an http(s) URL: {url}")
        path = parts.path if parts.path not in ("", "/") else "/metrics"
        self.metrics_url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        self.ready_url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/readyz", "", ""))
        self._headers = {"Accept": "text/plain;version=0.0.4"}
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._tls = ssl.create_default_context(cafile=cafile)
            if insecure:
                self._tls.check_hostname = False
                self._tls.verify_mode = ssl.CERT_NONE

    def _get(self, url: str, ok: tuple[int, ...] = (200,)) -> tuple[int, bytes]:
        request = urllib.request.Request(url, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT, context=self._tls) as r:
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return e.code, e.read()
            hint = " (check --user and $EDGEWAX_METRICS_PASSWORD)" if e.code == 401 else ""
            raise EdgewaxError(f"{url}: HTTP {e.code} {e.reason}{hint}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise EdgewaxError(f"{url}: cannot connect: {reason}") from None

    def snapshot(self) -> Snapshot:
        _, body = self._get(self.metrics_url)
        try:
            return Snapshot.from_text(body.decode("utf-8"))
        except ValueError as e:
            raise EdgewaxError(f"{self.metrics_url}: not a Prometheus exposition: {e}") from None

    def header(self) -> str:
        """`URL · ready` (or what is not ready), from `/readyz`."""
        try:
            code, body = self._get(self.ready_url, ok=(200, 503))
        except EdgewaxError as e:
            return f"{self.metrics_url} · readiness unknown ({e})"
        if code == 200:
            return f"{self.metrics_url} · ready"
        try:
            checks = json.loads(body).get("checks", {})
            waiting = [f"{n}: {c.get('detail', '')}" for n, c in checks.items() if not c["ready"]]
        except (ValueError, AttributeError, KeyError, TypeError):
            waiting = []
        return f"{self.metrics_url} · not ready" + (f" ({'; '.join(waiting)})" if waiting else "")
