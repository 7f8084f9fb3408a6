"""The live status of `edgewax run` on a real pseudo-terminal, and its absence elsewhere; the
readiness of sources and the endpoint's settings, in-process."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from edgewax.config.spec import MetricsSettings, load_spec_text
from edgewax.errors import EdgewaxError
from edgewax.flows.compiler import compile_spec
from edgewax.flows.runner import _serve_metrics, run

from .conftest import ROOT, cli

# 3 s of paced samples: long enough for a few redraws, with a progress bar (a counted stream).
PACED = """\
version: 1
settings: {state_dir: state}
pipelines:
  paced:
    nodes:
      - {id: temps, type: sensor.synthetic, keys: [a], count: 30, rate_hz: 10, speed: 1}
      - {id: out, type: sink.jsonl, path: out.jsonl}
"""


def run_on_pty(cwd: Path, *args: str, rows: int = 24, cols: int = 100) -> tuple[int, str]:
    """Run `edgewax ARGS` with stderr (and stdin) on a pseudo-terminal; return (rc, what it drew)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgewax", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color"},
        stdin=slave,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
    return proc.wait(timeout=30), out.decode("utf-8", "replace")


def test_live_view_draws_on_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(PACED)
    rc, screen = run_on_pty(tmp_path, "run", "p.yaml", "--no-metrics", rows=24)
    assert rc == 0, screen
    # Four lines kept at the bottom of a 24-row terminal, the rest a scroll region.
    assert "\x1b[1;20r" in screen
    assert "\x1b[21;1H" in screen and "edgewax run · 1 pipeline" in screen
    frames = screen.count("pipeline       in/s")
    assert frames >= 2, screen  # redrawn about once a second
    assert re.search(r"paced\s+\d+\.\d\s+\d+\.\d", screen)  # events/s in and out
    assert re.search(r"temps\s+\[#+-*\]\s+\d+%\s+ETA \d:\d\d", screen)  # progress with an ETA
    # Handed back: scroll region reset and the status cleared before the summary.
    tail = screen[screen.rindex("\x1b[r") :]
    assert "edgewax: finished in" in tail and "pipeline paced" in tail


def test_live_view_is_off_with_quiet_on_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(PACED.replace("count: 30", "count: 5"))
    rc, screen = run_on_pty(tmp_path, "run", "p.yaml", "--no-metrics", "--quiet")
    assert rc == 0, screen
    assert "\x1b[" not in screen and "in/s" not in screen


def test_live_view_is_off_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(PACED.replace("count: 30", "count: 12"))
    proc = cli("run", "p.yaml", "--no-metrics", cwd=tmp_path, env={"TERM": "xterm"})
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stderr and "in/s" not in proc.stderr
    assert "edgewax: finished in" in proc.stderr


def test_a_file_that_cannot_be_opened_fails_readiness_and_the_run(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"ts": 1}\n')
    (tmp_path / "b.jsonl").write_text('{"ts": 2}\n')
    spec = load_spec_text(
        "version: 1\nsettings: {dead_letter: {path: null}}\npipelines:\n  p:\n    nodes:\n"
        "      - {id: rec, type: source.jsonl, path: '*.jsonl'}\n"
        "      - {id: out, type: sink.jsonl, path: out/out.jsonl}\n",
        tmp_path,
    )
    compiled = compile_spec(spec)
    check = compiled.health.status()["p/rec"]
    assert check["ready"] is False and check["detail"] == "2 file(s) not opened yet"
    (tmp_path / "b.jsonl").unlink()  # gone between validation and the run
    with pytest.raises(EdgewaxError, match=r"node rec: cannot open .*b\.jsonl"):
        run(compiled, handle_signals=False)
    check = compiled.health.status()["p/rec"]
    assert check["ready"] is False and "cannot open" in check["detail"]
    assert not compiled.health.ready()


def test_sources_report_progress_and_readiness_in_process(tmp_path: Path) -> None:
    data = "".join(f'{{"ts": {i}, "v": {i}}}\n' for i in range(2500))
    (tmp_path / "rec.jsonl").write_text(data)
    spec = load_spec_text(
        "version: 1\nsettings: {dead_letter: {path: null}}\npipelines:\n  p:\n    nodes:\n"
        "      - {id: rec, type: source.jsonl, path: rec.jsonl}\n"
        "      - {id: gen, type: sensor.synthetic, count: 10, speed: 0}\n"
        "      - {id: out, type: sink.jsonl, inputs: [rec, gen], path: out.jsonl}\n",
        tmp_path,
    )
    compiled = compile_spec(spec)
    assert compiled.health.status()["p/gen"]["ready"] is True  # nothing to open
    progress = compiled.metrics.source_progress
    assert progress.labels("p", "rec", "source.jsonl")._value.get() == 0.0
    run(compiled, handle_signals=False)
    assert compiled.health.ready()
    assert progress.labels("p", "rec", "source.jsonl")._value.get() == 1.0
    assert progress.labels("p", "gen", "sensor.synthetic")._value.get() == 1.0


def test_an_infinite_source_has_no_progress(tmp_path: Path) -> None:
    spec = load_spec_text(
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: gen, type: sensor.synthetic}\n"
        "      - {id: out, type: sink.stdout}\n",
        tmp_path,
    )
    compiled = compile_spec(spec)
    families = {m.name for m in compiled.metrics.registry.collect() if m.samples}
    assert "edgewax_source_progress_ratio" not in families


def test_a_busy_default_port_is_a_warning_not_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spec = load_spec_text(
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: gen, type: sensor.synthetic, count: 1, speed: 0}\n"
        "      - {id: out, type: sink.stdout}\n",
        tmp_path,
    )
    compiled = compile_spec(spec)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        settings = MetricsSettings(port=busy.getsockname()[1])
        with caplog.at_level(logging.WARNING, logger="edgewax.run"):
            assert _serve_metrics(compiled, settings, required=False) is None
        assert "cannot listen on 127.0.0.1" in caplog.text and "running without it" in caplog.text
        with pytest.raises(EdgewaxError, match="cannot listen"):
            _serve_metrics(compiled, settings, required=True)


def test_metrics_settings_mistakes_are_one_line_each(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "version: 1\n"
        "settings:\n"
        "  metrics:\n"
        "    prot: 9000\n"
        "    tls: {cert: nope.pem, key: nope.key}\n"
        "pipelines:\n  p:\n    nodes:\n"
        "      - {id: gen, type: sensor.synthetic}\n"
        "      - {id: out, type: sink.stdout}\n"
    )
    proc = cli("validate", "p.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == (
        "p.yaml:4:5: unknown setting `settings.metrics.prot` (did you mean `port`?)"
    )
    (tmp_path / "p.yaml").write_text(
        "version: 1\n"
        "settings:\n"
        "  metrics:\n"
        "    tls: {cert: nope.pem, key: nope.key}\n"
        "    auth: {username: prom}\n"
        "pipelines:\n  p:\n    nodes:\n"
        "      - {id: gen, type: sensor.synthetic}\n"
        "      - {id: out, type: sink.stdout}\n"
    )
    proc = cli("validate", "p.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(
        "p.yaml:5:11: missing required setting `settings.metrics.auth.password`"
    )
    (tmp_path / "p.yaml").write_text(
        "version: 1\n"
        "settings:\n"
        "  metrics:\n"
        "    tls: {cert: nope.pem, key: nope.key}\n"
        "pipelines:\n  p:\n    nodes:\n"
        "      - {id: gen, type: sensor.synthetic}\n"
        "      - {id: out, type: sink.stdout}\n"
    )
    proc = cli("validate", "p.yaml", cwd=tmp_path)
    assert proc.stderr.splitlines()[:2] == [
        "p.yaml:4:17: setting `settings.metrics.tls.cert`: no file at `nope.pem` "
        "(paths are relative to the config file's folder)",
        "p.yaml:4:32: setting `settings.metrics.tls.key`: no file at `nope.key` "
        "(paths are relative to the config file's folder)",
    ]


def test_cli_flags_override_the_config(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(PACED.replace("count: 30", "count: 2"))
    proc = cli("run", "p.yaml", "--metrics-port", "0", cwd=tmp_path)
    assert proc.returncode == 1
    assert "--metrics-port must be 1 to 65535 (--no-metrics turns it off)" in proc.stderr


def test_server_path_head_and_readiness_while_stopping() -> None:
    import json
    import threading
    import urllib.error
    import urllib.request

    from edgewax.health import Health
    from edgewax.metrics import Metrics
    from edgewax.metrics.server import MetricsServer

    health = Health()
    check = health.check("p/cam", "source")
    stopping = threading.Event()
    metrics = Metrics()
    metrics.up.labels("p").set(1)
    server = MetricsServer(
        MetricsSettings(path="/m"), metrics.registry, health, port=0, stopping=stopping.is_set
    )
    server.start()

    def status(path: str, method: str = "GET") -> tuple[int, bytes]:
        request = urllib.request.Request(server.url(path), method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    try:
        assert server.url() == f"http://127.0.0.1:{server.port}/m"
        code, body = status("/m")
        assert code == 200 and b'edgewax_up{pipeline="p"} 1.0' in body
        assert status("/metrics")[0] == 404
        assert status("/m", "HEAD") == (200, b"")
        code, body = status("/readyz")
        assert code == 503 and json.loads(body)["checks"]["p/cam"]["ready"] is False
        check.ok("open")
        assert status("/readyz")[0] == 200
        stopping.set()  # SIGTERM: draining, so not ready for new work
        code, body = status("/readyz")
        assert code == 503 and json.loads(body)["stopping"] is True
    finally:
        server.stop()


def test_basic_auth_header_parsing() -> None:
    import base64

    from edgewax.config.spec import MetricsAuth
    from edgewax.health import Health
    from edgewax.metrics import Metrics
    from edgewax.metrics.server import MetricsServer

    auth = MetricsAuth(username="prom", password="pä ss:word")
    server = MetricsServer(MetricsSettings(auth=auth), Metrics().registry, Health())
    good = base64.b64encode("prom:pä ss:word".encode()).decode()
    assert server.authorized(f"Basic {good}")
    assert server.authorized(f"basic  {good} ")  # the scheme is case-insensitive
    assert not server.authorized(None)
    assert not server.authorized(f"Bearer {good}")
    assert not server.authorized("Basic %%%not-base64")
    assert not server.authorized("Basic " + base64.b64encode(b"prom:p").decode())
