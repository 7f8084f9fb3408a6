"""The privacy lint, `redact`, and `edgewax explain` (real CLI subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from edgewax.config.diagnostics import ConfigError
from edgewax.config.spec import load_spec_text

from . import privacy_nodes  # noqa: F401 - registers test.camera and test.remote
from .conftest import ROOT

HEAD = "version: 1\npipelines:\n  p:\n    nodes:\n"
CAM = "- {id: cam, type: test.camera}"


def config(*lines: str) -> str:
    return HEAD + "".join(f"      {line}\n" for line in lines)


LEAKS = {
    "direct": (config(CAM, "- {id: cloud, type: test.remote}"), 6, 9, "cam -> cloud"),
    "through_filter_and_egress": (
        config(
            CAM,
            "- {id: f, type: filter, where: 'score > 0.1'}",
            "- {id: cool, type: egress.cooldown, seconds: 5}",
            "- {id: cloud, type: test.remote}",
        ),
        8,
        9,
        "cam -> f -> cool -> cloud",
    ),
    "copied_by_map": (
        config(
            CAM,
            "- {id: m, type: map, set: {img: 'frame'}}",
            "- {id: d, type: drop, fields: [frame]}",
            "- {id: cloud, type: test.remote}",
        ),
        8,
        9,
        "cam -> m -> d -> cloud",
    ),
    "window_first": (
        config(
            CAM,
            "- {id: w, type: window.tumbling, size: 10, aggregate: {first: frame}}",
            "- {id: cloud, type: test.remote}",
        ),
        7,
        9,
        "cam -> w -> cloud",
    ),
    "late_output": (
        config(
            CAM,
            "- {id: w, type: window.tumbling, size: 10, aggregate: {mean: score}}",
            "- {id: log, type: sink.stdout}",
            "- {id: cloud, type: test.remote, inputs: [w.late]}",
        ),
        8,
        9,
        "cam -> w.late -> cloud",
    ),
    "fan_in": (
        config(
            CAM,
            "- {id: d, type: drop, fields: [frame]}",
            "- {id: cloud, type: test.remote, inputs: [d, cam]}",
        ),
        7,
        9,
        "cam -> cloud",
    ),
}


@pytest.mark.parametrize("name", list(LEAKS))
def test_raw_to_remote_is_one_line_error(name: str) -> None:
    text, line, col, path = LEAKS[name]
    with pytest.raises(ConfigError) as info:
        load_spec_text(text, Path("."), file="t.yaml")
    (d,) = info.value.diagnostics
    rendered = str(d)
    assert (d.mark.line, d.mark.col) == (line, col), rendered
    assert "\n" not in rendered and rendered.startswith(f"t.yaml:{line}:{col}: ")
    assert "reaches remote sink `cloud`" in rendered and path in rendered
    assert "allow_raw: true" in rendered


OK = {
    "allow_raw": config(CAM, "- {id: cloud, type: test.remote, allow_raw: true}"),
    "drop": config(
        CAM, "- {id: d, type: drop, fields: [frame]}", "- {id: cloud, type: test.remote}"
    ),
    "select": config(
        CAM, "- {id: s, type: select, fields: [score]}", "- {id: cloud, type: test.remote}"
    ),
    "redact": config(
        CAM, "- {id: r, type: redact, fields: [frame]}", "- {id: cloud, type: test.remote}"
    ),
    "window_mean": config(
        CAM,
        "- {id: w, type: window.tumbling, size: 10, aggregate: {mean: score}}",
        "- {id: cloud, type: test.remote}",
    ),
    "raw_to_local_sink": config(CAM, "- {id: out, type: sink.stdout}"),
}


@pytest.mark.parametrize("name", list(OK))
def test_no_raw_reaches_remote(name: str) -> None:
    load_spec_text(OK[name], Path("."), file="t.yaml")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys, tests.privacy_nodes; from edgewax.cli import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_validate_reports_the_leak(write_config: Callable[[str], Path]) -> None:
    path = write_config(LEAKS["direct"][0])
    result = run_cli("validate", str(path), cwd=path.parent)
    assert result.returncode == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{path}:6:9: ") and "raw field `frame`" in first


EXPLAIN = """version: 1
settings: {dead_letter: {path: null}}
pipelines:
  plant:
    nodes:
      - {id: src, type: source.jsonl, path: in.jsonl}
      - {id: win, type: window.tumbling, size: 60s, aggregate: {mean: t, max: t}}
      - {id: summary, type: test.remote}
      - {id: hot, type: filter, inputs: [src], where: "t > 50"}
      - {id: cool, type: egress.cooldown, seconds: 600}
      - {id: alerts, type: test.remote}
      - {id: raw, type: test.remote, inputs: [src], allow_raw: true}
      - {id: log, type: sink.jsonl, inputs: [win.late], path: late.jsonl}
"""


def test_explain_and_replay(write_config: Callable[[str], Path]) -> None:
    path = write_config(EXPLAIN)
    # Two hours of one reading a second; hot for the second half hour.
    lines = [
        json.dumps({"ts": float(t), "key": "pump", "t": 60.0 if 1800 <= t < 3600 else 20.0})
        for t in range(7200)
    ]
    (path.parent / "in.jsonl").write_text("\n".join(lines) + "\n")
    result = run_cli("explain", str(path), cwd=path.parent)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "remote sink summary (test.remote, allow_raw: false)" in out
    assert "path: src -> win -> summary" in out
    assert "fields: count, key, t_max, t_mean, ts, window_end, window_start" in out
    assert "path: src -> hot -> cool -> alerts" in out
    assert "remote sink raw (test.remote, allow_raw: true)" in out

    result = run_cli("explain", str(path), "--replay", cwd=path.parent)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "replayed 7200 events spanning 2.0 h of event time" in out
    assert "remote sink summary: 120 events" in out
    assert "per day: 1,440 events" in out
    assert "remote sink alerts: 3 events" in out  # 1800 s of heat, one per 600 s
    assert "per day: 36 events" in out
    assert "remote sink raw: 7200 events" in out
    assert "hot (filter): in 7200, out 1800, dropped: 5400 filtered" in out
    assert "cool (egress.cooldown): in 1800, out 3, dropped: 1797 cooldown" in out
    assert not (path.parent / "late.jsonl").exists()  # sinks are counters in a replay


def test_graph_labels_the_late_output(write_config: Callable[[str], Path]) -> None:
    path = write_config(LEAKS["late_output"][0].replace("test.remote", "sink.stdout"))
    result = run_cli("graph", str(path), cwd=path.parent)
    assert result.returncode == 0, result.stderr
    assert "-->|late|" in result.stdout


def test_window_first_of_raw_field_is_raw_even_when_fields_are_unknown(tmp_path: Path) -> None:
    (tmp_path / "logs.jsonl").write_text("")
    text = config(
        CAM,
        "- {id: logs, type: source.jsonl, path: logs.jsonl}",
        "- {id: w, type: window.tumbling, inputs: [cam, logs], size: 10, aggregate: {last: frame}}",
        "- {id: cloud, type: test.remote}",
    )
    with pytest.raises(ConfigError) as info:
        load_spec_text(text, tmp_path, file="t.yaml")
    assert "raw field `frame_last` reaches remote sink `cloud` via cam -> w -> cloud" in str(
        info.value
    )


def test_replay_skips_live_sources() -> None:
    from edgewax.flows.explain import replay

    spec = load_spec_text(
        config("- {id: s, type: sensor.synthetic}", "- {id: cloud, type: test.remote}"),
        Path("."),
    )
    with pytest.raises(Exception, match="replay needs file sources"):
        replay(spec, list(spec.pipelines.values()))


REAL = "version: 1\npipelines:\n  p:\n    nodes:\n"
REAL_LEAKS = {
    "camera_to_http": (
        [
            "- {id: cam, type: source.camera, file: clip.avi}",
            "- {id: small, type: image.resize, width: 64, height: 64}",
            "- {id: cloud, type: sink.http, url: 'http://127.0.0.1:9/ingest'}",
        ],
        "cam -> small -> cloud",
    ),
    "frames_to_mqtt": (
        [
            "- {id: vib, type: sensor.synthetic, signal: vibration, count: 10}",
            "- {id: frames, type: signal.frame, field: accel, size: 256, hop: 128}",
            "- {id: cloud, type: sink.mqtt, url: 'mqtt://127.0.0.1:1', topic: 'pumps/{key}'}",
        ],
        "frames -> cloud",  # the path starts where the raw field is made
    ),
    "reconstruction_to_http": (
        [
            "- {id: vib, type: sensor.synthetic, signal: vibration, count: 10}",
            "- {id: frames, type: signal.frame, field: accel, size: 256, hop: 128}",
            f"- {{id: ae, type: tflite, model: {ROOT}/models/vib_ae1d_f32.tflite}}",
            "- {id: d, type: drop, fields: [frame]}",
            "- {id: cloud, type: sink.http, url: 'http://127.0.0.1:9/ingest'}",
        ],
        "raw field `recon` reaches remote sink `cloud` via frames -> ae -> d -> cloud",
    ),
}


@pytest.mark.parametrize("name", list(REAL_LEAKS))
def test_real_remote_sinks_refuse_raw_data(name: str) -> None:
    lines, path = REAL_LEAKS[name]
    text = REAL + "".join(f"      {line}\n" for line in lines)
    with pytest.raises(ConfigError) as info:
        load_spec_text(text, Path("."), file="t.yaml")
    rendered = str(info.value.diagnostics[-1])
    assert rendered.startswith(f"t.yaml:{4 + len(lines)}:9: ")
    assert "reaches remote sink `cloud`" in rendered and path in rendered
    allowed = text.replace("{id: cloud,", "{id: cloud, allow_raw: true,")
    load_spec_text(allowed, Path("."), file="t.yaml")


def test_explain_lists_what_leaves_through_real_sinks(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        REAL
        + "      - {id: vib, type: sensor.synthetic, signal: vibration, count: 10}\n"
        "      - {id: frames, type: signal.frame, field: accel, size: 256, hop: 128}\n"
        f"      - {{id: ae, type: tflite, model: {ROOT}/models/vib_ae1d_f32.tflite,"
        " outputs: {score: anomaly_score}}\n"
        "      - {id: d, type: drop, fields: [frame]}\n"
        "      - {id: cloud, type: sink.http, url: 'http://127.0.0.1:9/ingest'}\n"
    )
    result = run_cli("explain", "p.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cloud" in result.stdout and "anomaly_score" in result.stdout
    assert "vib -> frames -> ae -> d -> cloud" in result.stdout
