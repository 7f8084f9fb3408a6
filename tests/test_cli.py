"""The `edgewax` CLI as a user runs it: real subprocesses, real signals, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, cli

INFINITE = """\
version: 1
pipelines:
  live:
    nodes:
      - {id: temps, type: sensor.synthetic, keys: [a, b], rate_hz: 50, speed: 1, seed: 1}
      - {id: out, type: sink.jsonl, path: out.jsonl}
      - {id: show, type: sink.stdout, inputs: [temps]}
"""


def test_default_pipeline_runs_and_events_flow(tmp_path: Path) -> None:
    env = {"EDGEWAX_SPEED": "0", "EDGEWAX_STATE": str(tmp_path / "state")}
    config = tmp_path / "pipelines.yaml"
    config.write_text((ROOT / "pipelines.yaml").read_text())
    (tmp_path / "models").symlink_to(ROOT / "models")
    proc = cli("run", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    printed = [json.loads(line) for line in proc.stdout.splitlines()]
    alerts = [e for e in printed if "temperature" in e]
    assert alerts, "the default pipeline prints its alerts"
    assert all(a["temperature"] > 65 and a["key"] == "boiler-2" for a in alerts)
    # pump-2's bearing fault (from 10 s) is one incident; pump-1 stays quiet
    incidents = [e for e in printed if "event" in e]
    assert [(e["key"], e["event"]) for e in incidents] == [("pump-2", "start"), ("pump-2", "end")]
    assert 9.5 <= incidents[0]["started_at"] - logged_start(tmp_path) <= 10.5
    health = [json.loads(line) for line in (tmp_path / "out/pump_health.jsonl").open()]
    assert {h["key"] for h in health} == {"pump-1", "pump-2"}
    assert all("frame" not in h and "accel" not in h for h in health + incidents)
    late = [h for h in health if h["key"] == "pump-2" and h["window_start"] > incidents[0]["ts"]]
    early = [h for h in health if h["key"] == "pump-1"]
    assert min(h["anomaly_score_mean"] for h in late) > max(h["anomaly_score_max"] for h in early)
    logged = [json.loads(line) for line in (tmp_path / "out/temperatures.jsonl").open()]
    assert len(logged) == 2 * 5 * 20  # two boilers, 5 Hz, 20 s
    assert {"ts", "key", "temperature", "temperature_f"} == set(logged[0])
    assert "pipeline boiler-room" in proc.stderr and "200 filtered" not in proc.stdout


def logged_start(tmp_path: Path) -> float:
    """Event time of the default run's first reading (both plants start together)."""
    with (tmp_path / "out/temperatures.jsonl").open() as f:
        return float(json.loads(f.readline())["ts"])


def _start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    (tmp_path / "p.yaml").write_text(INFINITE)
    return subprocess.Popen(
        [sys.executable, "-m", "edgewax", "run", "p.yaml", *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_output(path: Path, timeout: float = 20) -> None:
    """Wait until events flow into `path` (without reading the process's pipes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 1000:
            return
        time.sleep(0.05)
    raise AssertionError(f"no events reached {path}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("workers", [1, 2])
def test_signal_stops_cleanly_with_exit_0(
    tmp_path: Path, sig: signal.Signals, workers: int
) -> None:
    proc = _start(tmp_path, "--workers", str(workers))
    _wait_for_output(tmp_path / "out.jsonl")
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert time.monotonic() - sent < 5
    assert proc.returncode == 0, err
    assert "stopping" in err and "Traceback" not in err
    # Everything that reached a sink was flushed: whole lines, the same events in both sinks.
    stdout_events = [json.loads(line) for line in out.splitlines()]
    file_events = [json.loads(line) for line in (tmp_path / "out.jsonl").open()]
    key = lambda e: (e["key"], e["ts"])  # noqa: E731
    assert sorted(stdout_events, key=key) == sorted(file_events, key=key)
    assert len(file_events) >= 10


def test_second_signal_exits_at_once(tmp_path: Path) -> None:
    proc = _start(tmp_path)
    _wait_for_output(tmp_path / "out.jsonl")
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode in (0, 128 + signal.SIGTERM)


def test_pipe_closed_early_ends_quietly(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(INFINITE)
    shell = (
        f"PYTHONPATH={ROOT} {sys.executable} -m edgewax run p.yaml 2>err.txt | head -n 3;"
        " echo ${PIPESTATUS[0]} > rc.txt"
    )
    done = subprocess.run(
        ["bash", "-c", shell], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert len(done.stdout.splitlines()) == 3
    assert (tmp_path / "rc.txt").read_text().strip() == "0"
    assert "Traceback" not in (tmp_path / "err.txt").read_text()


def test_pipeline_option_selects_and_unknown_name_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "version: 1\npipelines:\n"
        "  one:\n    nodes:\n"
        "      - {id: s, type: sensor.synthetic, count: 2, speed: 0, keys: [one]}\n"
        "      - {id: o, type: sink.stdout}\n"
        "  two:\n    nodes:\n"
        "      - {id: s, type: sensor.synthetic, count: 2, speed: 0, keys: [two]}\n"
        "      - {id: o, type: sink.stdout}\n"
    )
    proc = cli("run", "p.yaml", "--pipeline", "two", cwd=tmp_path)
    assert proc.returncode == 0
    assert {json.loads(line)["key"] for line in proc.stdout.splitlines()} == {"two"}
    proc = cli("run", "p.yaml", "--pipeline", "three", cwd=tmp_path)
    assert proc.returncode == 1
    assert "no pipeline named three (the file has: one, two)" in proc.stderr


def test_unwritable_sink_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    (tmp_path / "p.yaml").write_text(
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: s, type: sensor.synthetic, count: 2, speed: 0}\n"
        "      - {id: out, type: sink.jsonl, path: blocker/out.jsonl}\n"
    )
    proc = cli("run", "p.yaml", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "pipeline p, node out: cannot write" in proc.stderr


def test_validate_ok() -> None:
    proc = cli("validate")
    assert proc.returncode == 0
    assert proc.stdout.strip() == "pipelines.yaml: ok (2 pipelines, 13 nodes)"


def test_graph_mermaid_and_dot() -> None:
    proc = cli("graph")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0] == "flowchart LR"
    assert '  subgraph p0["boiler-room"]' in lines
    label = {
        line.split("[")[0].split("(")[0].strip(): line.split('"')[1].split("<")[0]
        for line in lines
        if "<small>" in line
    }
    edges = {(label[a], label[b]) for a, _, b in (line.split() for line in lines if "-->" in line)}
    assert edges == {
        ("temps", "readings"),
        ("readings", "hot"),
        ("hot", "alerts"),
        ("readings", "log"),
        ("vib", "frames"),
        ("frames", "ae"),
        ("ae", "scored"),
        ("scored", "incidents"),
        ("incidents", "incident-log"),
        ("scored", "health"),
        ("health", "summaries"),
    }
    proc = cli("graph", "--format", "dot")
    assert proc.returncode == 0
    assert '"boiler-room/readings" -> "boiler-room/log";' in proc.stdout
    if subprocess.run(["which", "dot"], capture_output=True).returncode == 0:
        rendered = subprocess.run(
            ["dot", "-Tsvg"], input=proc.stdout, capture_output=True, text=True
        )
        assert rendered.returncode == 0


def test_schema_validates_the_default_pipeline_and_rejects_typos() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    proc = cli("schema")
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    doc = yaml.safe_load((ROOT / "pipelines.yaml").read_text())
    # Editors see the text before interpolation; put in what the defaults would give.
    doc["settings"]["state_dir"] = ".edgewax"
    temps = doc["pipelines"]["boiler-room"]["nodes"][0]
    temps["duration"], temps["speed"] = "20s", 1
    vib = doc["pipelines"]["pump-health"]["nodes"][0]
    vib["duration"], vib["speed"] = "20s", 1
    assert list(validator.iter_errors(doc)) == []
    doc["pipelines"]["boiler-room"]["nodes"][2]["wher"] = "x > 1"
    errors = list(validator.iter_errors(doc))
    assert errors, "a misspelt option must not pass the schema"
    node_types = {
        n["properties"]["type"]["const"]
        for n in schema["$defs"].values()
        if "type" in n.get("properties", {}) and "const" in n["properties"]["type"]
    }
    assert {"filter", "map", "sink.jsonl", "source.csv", "sensor.synthetic"} <= node_types


def test_nodes_lists_every_type_with_a_summary() -> None:
    proc = cli("nodes")
    assert proc.returncode == 0
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()}
    assert set(rows) >= {
        "source.jsonl",
        "source.csv",
        "sensor.synthetic",
        "map",
        "filter",
        "select",
        "drop",
        "sink.stdout",
        "sink.jsonl",
    }
    assert all(len(line.split(None, 2)) == 3 for line in rows.values())


def test_docs_reference_is_current() -> None:
    proc = cli("docs", "--output", "docs/nodes.md", "--check")
    assert proc.returncode == 0, proc.stderr + " (run `edgewax docs -o docs/nodes.md`)"


def test_plugin_node_types_from_entry_points(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "acme_nodes").mkdir(parents=True)
    (site / "acme_nodes" / "__init__.py").write_text(
        "from edgewax.operators.base import NodeOptions, Transform\n"
        "class ScaleOptions(NodeOptions):\n"
        "    factor: float = 2.0\n"
        "class Scale(Transform):\n"
        '    """Multiply `value` by `factor`."""\n'
        "    Options = ScaleOptions\n"
        "    def process(self, batch):\n"
        "        f = self.options.factor\n"
        "        return [{**e, 'value': e['value'] * f} for e in batch]\n"
    )
    dist = site / "acme_nodes-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-nodes\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[edgewax.nodes]\nacme.scale = acme_nodes:Scale\n")
    (tmp_path / "in.jsonl").write_text('{"ts": 1, "value": 21}\n')
    (tmp_path / "p.yaml").write_text(
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: src, type: source.jsonl, path: in.jsonl}\n"
        "      - {id: x, type: acme.scale, factor: 2}\n"
        "      - {id: out, type: sink.stdout}\n"
    )
    env = {"PYTHONPATH": f"{ROOT}{os.pathsep}{site}"}
    proc = cli("run", "p.yaml", "--quiet", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["value"] == 42
    proc = cli("nodes", env=env)
    assert "acme.scale" in proc.stdout and "Multiply `value` by `factor`." in proc.stdout
    (tmp_path / "p.yaml").write_text(
        (tmp_path / "p.yaml").read_text().replace("factor: 2", "factr: 2")
    )
    proc = cli("validate", "p.yaml", cwd=tmp_path, env=env)
    assert proc.returncode == 2 and "unknown option `factr` (did you mean `factor`?)" in proc.stderr


def test_python_dash_m_and_version() -> None:
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("edgewax ")


def test_node_reference_lists_nested_options_field_by_field() -> None:
    from edgewax.config.reference import node_reference

    text = node_reference()
    for row in ("`outbox.max_bytes`", "`outbox.backoff.jitter`", "`tls.ca`", "`batch.max_size`"):
        assert f"| {row} |" in text, row
