"""The metrics endpoint as an operator meets it: a real `edgewax run` subprocess, scraped by a real
Prometheus, checked by `promtool`, read by `edgewax top`, with auth, TLS and readiness."""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT, Prometheus, cli, free_port, wait_for_port

# One pipeline that finishes at once with known counts, one that keeps the process alive.
CONFIG = """\
version: 1
settings:
  state_dir: state
  metrics: {{port: {port}}}
pipelines:
  replay:
    nodes:
      - {{id: src, type: sensor.synthetic, keys: [a, b], count: 50, speed: 0, seed: 1, start: 0}}
      - {{id: hot, type: filter, where: "temperature > 1000"}}
      - {{id: alerts, type: sink.jsonl, path: alerts.jsonl}}
      - {{id: all, type: sink.jsonl, inputs: [src], path: all.jsonl}}
      - {{id: broken, type: map, inputs: [src], set: {{x: "temperature // 0"}}}}
      - {{id: fixed, type: sink.jsonl, path: fixed.jsonl}}
  live:
    nodes:
      - {{id: temps, type: sensor.synthetic, keys: [x], rate_hz: 20, speed: 1}}
      - {{id: log, type: sink.jsonl, path: live.jsonl}}
"""


def start(
    workdir: Path, config: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    (workdir / "p.yaml").write_text(config)
    return subprocess.Popen(
        [sys.executable, "-m", "edgewax", "run", "p.yaml", *args],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "stderr.log").open("w"),
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def get(
    url: str, auth: tuple[str, str] | None = None, context: ssl.SSLContext | None = None
) -> tuple[int, dict[str, str], str]:
    headers = {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def wait_until(predicate: Any, timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or predicate}")
        time.sleep(0.1)


def sample(text: str, name: str, **labels: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


class Instance:
    def __init__(self, workdir: Path, port: int, proc: subprocess.Popen[str]) -> None:
        self.workdir, self.port, self.proc = workdir, port, proc
        self.url = f"http://127.0.0.1:{port}"

    def metrics(self) -> str:
        return get(self.url + "/metrics")[2]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    """One `edgewax run` for the module's read-only checks, with the replay pipeline done."""
    workdir = tmp_path_factory.mktemp("running")
    port = free_port()
    # Set as if by a careless environment: the run must still keep Bytewax's API off.
    proc = start(workdir, CONFIG.format(port=port), env={"BYTEWAX_DATAFLOW_API_ENABLED": "1"})
    instance = Instance(workdir, port, proc)
    try:
        wait_for_port(port, timeout=30)
        wait_until(
            lambda: (
                sample(instance.metrics(), "edgewax_node_received_events_total", node="fixed") == 0
                and sample(instance.metrics(), "edgewax_node_errors_total", node="broken") == 100
            ),
            what="the replay pipeline to finish",
        )
        yield instance
    finally:
        rc = stop(proc)
        assert rc == 0, (workdir / "stderr.log").read_text()


def value(prom: Prometheus, promql: str) -> float | None:
    result = prom.query(promql)
    return float(result[0]["value"][1]) if result else None  # type: ignore[index]


def test_prometheus_scrapes_our_series_with_the_right_values(
    running: Instance, prometheus: Prometheus
) -> None:
    prometheus.start([f"127.0.0.1:{running.port}"])
    q = 'edgewax_node_received_events_total{pipeline="replay",node="all"}'
    wait_until(lambda: value(prometheus, q) == 100, what=f"Prometheus to have {q}")
    sha = hashlib.sha256((running.workdir / "p.yaml").read_bytes()).hexdigest()
    expected = {
        'up{job="edgewax"}': 1,
        'edgewax_node_sent_events_total{pipeline="replay",node="src"}': 100,
        'edgewax_node_received_events_total{pipeline="replay",node="hot"}': 100,
        'edgewax_node_discarded_events_total{pipeline="replay",node="hot",reason="filtered"}': 100,
        'edgewax_node_sent_events_total{pipeline="replay",node="hot"}': 0,
        'edgewax_node_errors_total{pipeline="replay",node="broken"}': 100,
        'edgewax_node_discarded_events_total{node="broken",reason="bad_value"}': 100,
        'edgewax_dead_letters_total{pipeline="replay"}': 100,
        'edgewax_source_bytes_total{pipeline="replay",node="src"}': 100 * 8,
        'edgewax_source_progress_ratio{pipeline="replay",node="src"}': 1,
        'edgewax_up{pipeline="live"}': 1,
        f'edgewax_build_info{{version="0.1.0",config_sha256="{sha}"}}': 1,
        'edgewax_node_info{pipeline="replay",node="src",kind="source",type="sensor.synthetic"}': 1,
        'count(edgewax_node_info{pipeline="replay"})': 6,
        'count(edgewax_node_last_error_timestamp_seconds{node="broken",reason="bad_value"})': 1,
    }
    got = {q: value(prometheus, q) for q in expected}
    assert got == expected
    # The sink wrote every byte it counted.
    written = (running.workdir / "all.jsonl").stat().st_size
    assert value(prometheus, 'edgewax_sink_bytes_total{node="all"}') == written
    # Rates work on the live pipeline: 20 events/s, give or take the machine's load (once
    # Prometheus has a full window of samples).
    rate = 'rate(edgewax_node_sent_events_total{pipeline="live",node="temps"}[3s])'
    wait_until(lambda: 10 < (value(prometheus, rate) or 0) < 30, timeout=15, what=rate)
    # The Grafana dashboard's queries find this run's data (variables as "All").
    from .test_dashboard import DASHBOARD, exprs, metric_names

    exported = {
        r["metric"]["__name__"]  # type: ignore[index]
        for r in prometheus.query('{job="edgewax"}')
    }
    checked = 0
    for expr in exprs(json.loads(DASHBOARD.read_text())):
        names = metric_names(expr)
        if names <= exported and "edgewax_egress_bytes_total" not in expr:
            concrete = expr.replace("$__rate_interval", "3s").replace("$job", "edgewax")
            concrete = concrete.replace("$instance", ".*").replace("$pipeline", ".*")
            assert prometheus.query(concrete), f"no data for the dashboard's `{expr}`"
            checked += 1
    assert checked >= 10
    # No `_created` series and only sources carry source bytes.
    assert not prometheus.query('{__name__=~"edgewax_.*_created"}')
    nodes = {r["metric"]["node"] for r in prometheus.query("edgewax_source_bytes_total")}  # type: ignore[index]
    assert nodes == {"src", "temps"}


def test_promtool_finds_no_problems_in_the_exposition(running: Instance) -> None:
    promtool = "/usr/bin/promtool"
    if not Path(promtool).exists():
        pytest.fail("promtool is not installed (Debian's prometheus package ships it)")
    text = running.metrics()
    assert "edgewax_node_received_events_total" in text
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), (
        proc.stdout + proc.stderr
    )


def test_healthz_and_readyz(running: Instance) -> None:
    code, _, body = get(running.url + "/healthz")
    assert (code, body) == (200, "ok\n")
    code, headers, body = get(running.url + "/readyz")
    assert code == 200 and headers["Content-Type"] == "application/json"
    status = json.loads(body)
    assert status["ready"] is True and status["stopping"] is False
    assert set(status["checks"]) == {"replay/src", "live/temps"}
    assert status["checks"]["live/temps"]["kind"] == "source"
    assert get(running.url + "/nothing")[0] == 404


def local_ipv4_addresses() -> list[str]:
    """This machine's IPv4 addresses (SIOCGIFADDR per interface), loopback included."""
    found = []
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
        found.append(socket.inet_ntoa(packed[20:24]))
    return found


def connects(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=3).close()
        return True
    except OSError:
        return False


def other_local_addresses() -> list[str]:
    # 127.0.0.2 is this machine too (all of 127/8 is loopback), but not 127.0.0.1.
    return ["127.0.0.2", *(a for a in local_ipv4_addresses() if not a.startswith("127."))]


def test_endpoint_listens_on_loopback_only_by_default(running: Instance) -> None:
    assert connects("127.0.0.1", running.port)
    others = other_local_addresses()
    assert others
    reachable = [a for a in others if connects(a, running.port)]
    assert reachable == [], f"the endpoint answers on {reachable}"


def test_all_interfaces_when_configured(tmp_path: Path) -> None:
    """The control for the test above: the same addresses do reach an endpoint on 0.0.0.0."""
    port = free_port()
    config = CONFIG.format(port=port).replace(
        f"{{port: {port}}}", f"{{host: 0.0.0.0, port: {port}}}"
    )
    proc = start(tmp_path, config)
    try:
        wait_for_port(port, timeout=30)
        assert all(connects(a, port) for a in other_local_addresses())
    finally:
        assert stop(proc) == 0
    log = (tmp_path / "stderr.log").read_text()
    assert "listens on 0.0.0.0 without auth" in log


def test_bytewax_engine_api_stays_off(running: Instance) -> None:
    # Bytewax writes dataflow.json where it starts its API server; nothing was written.
    assert not list(running.workdir.rglob("dataflow.json"))


def test_engine_metrics_flag_turns_it_on_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "version: 1\nsettings: {state_dir: state}\npipelines:\n  p:\n    nodes:\n"
        "      - {id: s, type: sensor.synthetic, count: 5, speed: 0}\n"
        "      - {id: out, type: sink.jsonl, path: out.jsonl}\n"
    )
    proc = cli("run", "p.yaml", "--engine-metrics", "--no-metrics", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "0.0.0.0:3030" in proc.stderr and "WARNING" in proc.stderr
    assert (tmp_path / "state" / "dataflow.json").exists()
    assert not (tmp_path / "dataflow.json").exists()


def test_top_once_reads_a_running_instance(running: Instance) -> None:
    proc = cli("top", f"127.0.0.1:{running.port}", "--once", "--interval", "1")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "\x1b[" not in out  # plain text when stdout is not a terminal
    lines = out.splitlines()
    assert lines[0] == f"http://127.0.0.1:{running.port}/metrics · ready"
    assert lines[1].split()[:3] == ["pipeline", "in/s", "out/s"]
    live = next(line for line in lines if line.startswith("live "))
    assert 2 < float(live.split()[1]) < 60  # about 20 events/s in (the machine may be busy)
    replay = next(line for line in lines if line.startswith("replay "))
    assert replay.split()[1:3] == ["0.0", "0.0"]  # done: nothing flows any more
    assert " 100  broken: bad_value " in replay and "ago" in replay
    assert any("src" in line and "100%" in line and "done" in line for line in lines)


def test_top_says_what_is_wrong_when_nothing_listens() -> None:
    proc = cli("top", f"127.0.0.1:{free_port()}", "--once", "--interval", "0.1")
    assert proc.returncode == 1
    assert (
        proc.stderr.startswith("edgewax: error: http://127.0.0.1:")
        and "cannot connect" in proc.stderr
    )
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    args = "-x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=x"
    san = "subjectAltName=IP:127.0.0.1"
    subprocess.run(
        ["openssl", "req", *args.split(), "-addext", san, "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_basic_auth_and_tls(
    tmp_path: Path, certificate: tuple[Path, Path], prometheus: Prometheus
) -> None:
    port = free_port()
    config = CONFIG.format(port=port).replace(
        f"metrics: {{port: {port}}}",
        f"metrics:\n    port: {port}\n    auth: {{username: prom, password: '${{EW_PASSWORD}}'}}\n"
        "    tls: {cert: cert.pem, key: key.pem}",
    )
    proc = start(tmp_path, config, env={"EW_PASSWORD": "s3cret-pw"})
    tls = ssl.create_default_context(cafile=str(certificate[0]))
    base = f"https://127.0.0.1:{port}"
    try:
        wait_for_port(port, timeout=30)
        code, headers, _ = get(base + "/metrics", context=tls)
        assert code == 401 and headers["WWW-Authenticate"].startswith("Basic ")
        assert get(base + "/metrics", ("prom", "wrong"), tls)[0] == 401
        assert get(base + "/metrics", ("other", "s3cret-pw"), tls)[0] == 401
        assert get(base + "/metrics", ("prom", "s3cret-pw-and-more"), tls)[0] == 401
        assert get(base + "/readyz", None, tls)[0] == 401
        code, _, body = get(base + "/metrics", ("prom", "s3cret-pw"), tls)
        assert code == 200 and "edgewax_build_info" in body
        assert get(base + "/readyz", ("prom", "s3cret-pw"), tls)[0] == 200
        assert get(base + "/healthz", None, tls)[0] == 200  # liveness probes need no password
        # Plain HTTP gets no answer from a TLS endpoint.
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            get(f"http://127.0.0.1:{port}/healthz")

        top = ["top", base, "--once", "--interval", "0.2", "--cafile", str(certificate[0])]
        ok = cli(*top, "--user", "prom", env={"EDGEWAX_METRICS_PASSWORD": "s3cret-pw"})
        assert ok.returncode == 0 and "replay" in ok.stdout and "· ready" in ok.stdout, ok.stderr
        bad = cli(*top, "--user", "prom", env={"EDGEWAX_METRICS_PASSWORD": "nope"})
        assert bad.returncode == 1 and "HTTP 401" in bad.stderr

        # A real Prometheus scrapes it with the same credentials over HTTPS.
        prometheus.start(
            [f"127.0.0.1:{port}"],
            scheme="https",
            basic_auth={"username": "prom", "password": "s3cret-pw"},
            tls_config={"ca_file": str(certificate[0])},
        )
        q = 'edgewax_node_sent_events_total{pipeline="replay",node="src"}'
        wait_until(lambda: value(prometheus, q) == 100, what=f"Prometheus to scrape {q}")
        assert value(prometheus, 'up{job="edgewax"}') == 1
    finally:
        assert stop(proc) == 0
    log = (tmp_path / "stderr.log").read_text()
    assert "s3cret-pw" not in log
    assert f"metrics on https://127.0.0.1:{port}/metrics" in log


def test_readyz_waits_for_a_source_that_cannot_open_yet(tmp_path: Path) -> None:
    """A named pipe opens only when a writer comes: /readyz is 503 until then, and says why."""
    fifo = tmp_path / "feed.jsonl"
    os.mkfifo(fifo)
    port = free_port()
    proc = start(
        tmp_path,
        f"version: 1\nsettings: {{metrics: {{port: {port}}}}}\npipelines:\n  feed:\n    nodes:\n"
        "      - {id: rec, type: source.jsonl, path: feed.jsonl, batch_size: 1}\n"
        "      - {id: out, type: sink.jsonl, path: out.jsonl}\n",
    )
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        wait_for_port(port, timeout=30)
        code, _, body = get(url)
        assert code == 503
        check = json.loads(body)["checks"]["feed/rec"]
        assert check["ready"] is False and "feed.jsonl" in check["detail"]
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200  # alive, just not ready
        writer = os.open(fifo, os.O_WRONLY)  # the source's open() returns now
        try:
            wait_until(lambda: get(url)[0] == 200, what="/readyz to flip to 200")
            assert json.loads(get(url)[2])["checks"]["feed/rec"]["detail"] == "1 file(s) open"
            os.write(writer, b'{"ts": 1, "v": 1}\n{"ts": 2, "v": 2}\n')
        finally:
            os.close(writer)
        assert proc.wait(timeout=30) == 0
    finally:
        stop(proc)
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2


def test_readyz_flips_when_the_model_file_goes_missing_and_back(tmp_path: Path) -> None:
    """The node keeps serving the loaded model, but a restart could not load it: not ready."""
    import shutil

    model = tmp_path / "ae.tflite"
    shutil.copy(ROOT / "models/vib_ae1d_f32.tflite", model)
    port = free_port()
    proc = start(
        tmp_path,
        f"version: 1\nsettings: {{metrics: {{port: {port}}}}}\npipelines:\n  pumps:\n"
        "    nodes:\n"
        "      - {id: vib, type: sensor.synthetic, signal: vibration, rate_hz: 1000, speed: 1}\n"
        "      - {id: frames, type: signal.frame, field: accel, size: 256, hop: 256}\n"
        "      - {id: ae, type: tflite, model: ae.tflite, outputs: {score: s}, watch: 0.2s}\n"
        "      - {id: out, type: sink.jsonl, path: out.jsonl, inputs: [ae]}\n",
    )
    url = f"http://127.0.0.1:{port}/readyz"
    try:
        wait_for_port(port, timeout=30)
        wait_until(lambda: get(url)[0] == 200, what="/readyz 200 with the model loaded")
        assert json.loads(get(url)[2])["checks"]["pumps/ae"]["kind"] == "model"
        kept = tmp_path / "kept.tflite"
        model.rename(kept)
        wait_until(lambda: get(url)[0] == 503, what="/readyz 503 with the model file gone")
        detail = json.loads(get(url)[2])["checks"]["pumps/ae"]["detail"]
        assert "ae.tflite" in detail and "still running version" in detail
        kept.rename(model)
        wait_until(lambda: get(url)[0] == 200, what="/readyz 200 with the file back")
    finally:
        assert stop(proc) == 0
    assert (tmp_path / "out.jsonl").read_text().count("\n") > 0


def test_explicit_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "p.yaml").write_text(
            "version: 1\npipelines:\n  p:\n    nodes:\n"
            "      - {id: s, type: sensor.synthetic, count: 5, speed: 0}\n"
            "      - {id: out, type: sink.jsonl, path: out.jsonl}\n"
        )
        proc = cli("run", "p.yaml", "--metrics-port", str(port), cwd=tmp_path)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"edgewax: error: metrics endpoint: cannot listen on 127.0.0.1:{port}")
    assert "Traceback" not in proc.stderr


def test_top_redraws_on_a_terminal_until_ctrl_c(running: Instance) -> None:
    import fcntl as _fcntl
    import select
    import termios

    master, slave = os.openpty()
    _fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgewax", "top", f"127.0.0.1:{running.port}", "--interval", "0.5"],
        env={**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm"},
        stdin=slave,
        stdout=slave,
        stderr=slave,
    )
    os.close(slave)
    screen = b""
    try:
        deadline = time.monotonic() + 30
        while screen.count(b"live ") < 3 and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                screen += os.read(master, 65536)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        while select.select([master], [], [], 0.2)[0]:
            try:
                screen += os.read(master, 65536)
            except OSError:
                break
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    text = screen.decode("utf-8", "replace")
    assert text.startswith("\x1b[?1049h")  # the alternate screen, given back at the end
    assert text.rstrip().endswith("\x1b[?1049l")
    assert text.count("\x1b[H") >= 3 and "replay " in text and "· ready" in text
