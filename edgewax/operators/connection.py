"""What every node that talks to a server (HTTP, MQTT) shares: the `tls:` block and URL checks.

>>> opts = TlsOptions(ca="ca.pem")
>>> [p.message for p in opts.problems(Path("/nonexistent"))]
['no file at `ca.pem`']
>>> [p.message for p in TlsOptions(cert="c.pem").problems(Path("."), check_files=False)]
['a client certificate needs both `cert` and `key`']
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field

from edgewax.operators.base import NodeOptions, Problem


class TlsOptions(NodeOptions):
    ca: str | None = Field(None, description="CA bundle (PEM) to verify the server with.")
    cert: str | None = Field(None, description="Client certificate (PEM) for mutual TLS.")
    key: str | None = Field(None, description="Client certificate's private key (PEM).")
    verify: bool = Field(True, description="Verify the server's certificate and host name.")

    def problems(self, base_dir: Path, check_files: bool = True) -> list[Problem]:
        """Validate-time problems, located under the node's `tls` option."""
        found = []
        if check_files:
            for name in ("ca", "cert", "key"):
                value = getattr(self, name)
                if value is None:
                    continue
                path = Path(value).expanduser()
                if not (path if path.is_absolute() else base_dir / path).is_file():
                    found.append(
                        Problem(
                            ("tls", name),
                            f"no file at `{value}`",
                            "paths are relative to the config file",
                        )
                    )
        if (self.cert is None) != (self.key is None):
            found.append(
                Problem(
                    ("tls", "cert" if self.cert is None else "key"),
                    "a client certificate needs both `cert` and `key`",
                )
            )
        return found

    def context(self, resolve: Callable[[str], Path]) -> ssl.SSLContext:
        """A client context; `resolve` turns a config path into a file path."""
        ctx = ssl.create_default_context(cafile=str(resolve(self.ca)) if self.ca else None)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert and self.key:
            ctx.load_cert_chain(str(resolve(self.cert)), str(resolve(self.key)))
        return ctx


def check_url(url: str, schemes: tuple[str, ...], not_url: str, credentials: str) -> str:
    """`url` if it is a `schemes` URL with a host and no credentials, else a ValueError.

    A URL is logged and shown, so secrets go in `credentials` (named in the message) instead.

    >>> check_url("mqtt://me:pw@broker", ("mqtt",), "is not an mqtt:// URL", "`password`")
    Traceback (most recent call last):
    ...
    ValueError: put credentials in `password`, not the URL
    """
    parts = urlsplit(url)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"`{url}` {not_url}")
    if parts.username or parts.password:
        raise ValueError(f"put credentials in {credentials}, not the URL")
    return url
