"""Shared fixtures: run the CLI as a real subprocess, write configs to temp folders."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `python -m edgewax ARGS` in a subprocess; returns the completed process."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "edgewax", *args],
        cwd=cwd or ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a pipelines file into a fresh folder and return its path."""

    def write(text: str, name: str = "pipelines.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:`port`."""
    import socket
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


class Mosquitto:
    """A real mosquitto broker on 127.0.0.1 that a test may stop and start again (same port)."""

    def __init__(self, workdir: Path) -> None:
        import shutil

        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            pytest.fail("mosquitto is not installed (./test.sh installs it with apt-get)")
        self.exe = exe
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def mosquitto(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A running broker: `.url`, `.port`, `.stop()` and `.start()` (for outage tests)."""
    broker = Mosquitto(tmp_path)
    broker.start()
    yield broker
    broker.stop()


class Prometheus:
    """A real Prometheus server on 127.0.0.1 that scrapes the targets it is given, fast."""

    def __init__(self, workdir: Path) -> None:
        import shutil

        exe = shutil.which("prometheus") or "/usr/bin/prometheus"
        if not Path(exe).exists():
            pytest.fail("prometheus is not installed (./test.sh installs it with apt-get)")
        self.exe = exe
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "prometheus.log"

    def start(
        self, targets: list[str], scheme: str = "http", interval: str = "250ms", **job: object
    ) -> None:
        """Scrape `targets` (`host:port`) every `interval` as job `edgewax`; `job` adds to the
        scrape config (e.g. `basic_auth={...}`, `tls_config={"ca_file": ...}`)."""
        import json

        conf = self.workdir / "prometheus.yml"
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval},
            "scrape_configs": [
                {
                    "job_name": "edgewax",
                    "scheme": scheme,
                    "static_configs": [{"targets": targets}],
                    **job,
                }
            ],
        }
        conf.write_text(json.dumps(config))  # JSON is YAML
        self.proc = subprocess.Popen(
            [
                self.exe,
                f"--config.file={conf}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
        )
        wait_for_port(self.port, timeout=30)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        """Until `/-/ready` says 200: the port opens before the storage is ready for queries."""
        import time
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=5) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus not ready; see {self.log}")
            time.sleep(0.1)

    def query(self, promql: str) -> list[dict[str, object]]:
        """The result of an instant query (`/api/v1/query`): `[{metric: {...}, value: [t, v]}]`."""
        import json
        import urllib.parse
        import urllib.request

        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@pytest.fixture
def prometheus(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A Prometheus server to `start(targets)`, then `query(promql)`; stopped after the test."""
    server = Prometheus(tmp_path)
    yield server
    server.stop()
