"""The examples replay their recordings against real servers and give what their READMEs say.

Each example runs in-process on the real compiler, its remote sink pointed at a real local HTTP
server or mosquitto; the test checks what arrived against the example's `expected.jsonl` and
the bytes-out / bytes-in ratio (from the run's own `edgewax_egress_bytes_total` and
`edgewax_source_bytes_total`) against the figure printed in its README. Each example's
`edgewax test` cases run through the CLI too. `EDGEWAX_UPDATE_EXAMPLES=1` rewrites the expected
files (then read the diff).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from edgewax.config.spec import load_spec
from edgewax.flows.compiler import Compiled, compile_spec
from edgewax.testing import run_compiled
from tests.conftest import ROOT, cli
from tests.http_server import HttpServer

EXAMPLES = ROOT / "examples"
UPDATE = os.environ.get("EDGEWAX_UPDATE_EXAMPLES") == "1"


def run_example(name: str, env: dict[str, str]) -> Compiled:
    path = EXAMPLES / name / "pipelines.yaml"
    spec = load_spec(path, env={**os.environ, "EDGEWAX_SPEED": "0", **env})
    compiled = compile_spec(spec)
    run_compiled(compiled)
    return compiled


def total(compiled: Compiled, metric: str) -> float:
    return sum(
        s.value for m in compiled.metrics.registry.collect() for s in m.samples if s.name == metric
    )


def ratio(compiled: Compiled) -> float:
    return total(compiled, "edgewax_egress_bytes_total") / total(
        compiled, "edgewax_source_bytes_total"
    )


def readme_ratio(name: str) -> float:
    """The ratio the README prints: `bytes out / bytes in: **0.000123**`."""
    text = (EXAMPLES / name / "README.md").read_text()
    found = re.search(r"bytes out / bytes in: \*\*([0-9.]+)\*\*", text)
    assert found, f"examples/{name}/README.md does not print its bytes-out/bytes-in ratio"
    return float(found.group(1))


def check_expected(name: str, events: list[dict[str, Any]]) -> None:
    path = EXAMPLES / name / "expected.jsonl"
    got = [{k: v for k, v in e.items() if k != "event_id"} for e in events]
    if UPDATE:
        path.write_text("".join(json.dumps(e, separators=(",", ":")) + "\n" for e in got))
    want = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert _rounded(got) == _rounded(want)


def _rounded(value: Any) -> Any:
    """Floats to 6 significant digits, nested (model scores differ in the last bits by CPU)."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def check_ratio(name: str, compiled: Compiled) -> None:
    r = ratio(compiled)
    print(f"{name}: bytes out / bytes in = {r:.6f}")
    assert r == pytest.approx(readme_ratio(name), rel=0.02)


def check_cases(name: str) -> None:
    r = cli("test", str(EXAMPLES / name / "pipelines.yaml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 failed" in r.stdout


@pytest.fixture
def http_server() -> Any:
    server = HttpServer().start()
    yield server
    server.stop()


def test_smart_city_traffic(http_server: HttpServer, tmp_path: Path) -> None:
    env = {"TRAFFIC_INGEST_URL": http_server.url, "EDGEWAX_STATE": str(tmp_path)}
    compiled = run_example("smart-city-traffic", env)
    assert total(compiled, "edgewax_source_bytes_total") == 180 * 64 * 64 * 3
    check_expected("smart-city-traffic", http_server.events)
    assert all("image" not in e and "frame" not in e for e in http_server.events)
    check_ratio("smart-city-traffic", compiled)
    check_cases("smart-city-traffic")
    r = cli("explain", str(EXAMPLES / "smart-city-traffic" / "pipelines.yaml"))
    assert "raw: none" in r.stdout, r.stdout


def test_predictive_maintenance(http_server: HttpServer, tmp_path: Path) -> None:
    env = {"MAINTENANCE_INGEST_URL": http_server.url, "EDGEWAX_STATE": str(tmp_path)}
    compiled = run_example("predictive-maintenance", env)
    assert total(compiled, "edgewax_source_bytes_total") == 540_000 * 8
    events = sorted(http_server.events, key=lambda e: (e["ts"], e["key"], e.get("event", "")))
    check_expected("predictive-maintenance", events)
    incidents = [(e["key"], e["event"]) for e in events if "event" in e]
    assert incidents == [
        ("pump-2", "start"),
        ("pump-3", "start"),
        ("pump-3", "end"),
        ("pump-2", "end"),
    ]
    assert all("frame" not in e and "accel" not in e for e in events)
    check_ratio("predictive-maintenance", compiled)
    check_cases("predictive-maintenance")
