"""Config mistakes in the camera, image, MQTT and signal nodes: one line each, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewax.config.diagnostics import ConfigError
from edgewax.config.spec import load_spec_text

from .conftest import cli

HEAD = "version: 1\npipelines:\n  p:\n    nodes:\n"
OUT = "- {id: out, type: sink.stdout}"
SRC = "- {id: vib, type: sensor.synthetic, signal: vibration, count: 1}"
CAM = "- {id: cam, type: source.camera, device: 0, width: 320, height: 240}"


def nodes(*lines: str) -> str:
    return HEAD + "".join(f"      {line}\n" for line in lines)


CASES = {
    "camera_two_sources": nodes("- {id: cam, type: source.camera, device: 0, file: a.avi}", OUT),
    "camera_no_source": nodes("- {id: cam, type: source.camera, fps: 5}", OUT),
    "camera_width_only": nodes("- {id: cam, type: source.camera, device: 0, width: 320}", OUT),
    "camera_bad_policy": nodes(
        "- {id: cam, type: source.camera, device: 0, frame_policy: newest}", OUT
    ),
    "camera_missing_file": nodes(
        "- {id: cam, type: source.camera, file: none.avi, reconnect: {enabled: false}}", OUT
    ),
    "camera_loop_on_device": nodes("- {id: cam, type: source.camera, device: 0, loop: true}", OUT),
    "camera_bad_reconnect": nodes(
        "- {id: cam, type: source.camera, device: 0, reconnect: {initial: soon}}", OUT
    ),
    "crop_outside_frame": nodes(
        CAM, "- {id: roi, type: image.crop, x: 300, width: 100, height: 10}", OUT
    ),
    "resize_zero": nodes(CAM, "- {id: small, type: image.resize, width: 0, height: 10}", OUT),
    "normalize_channels": nodes(CAM, "- {id: n, type: image.normalize, mean: [0.5, 0.5]}", OUT),
    "tensor_layout": nodes(CAM, "- {id: t, type: image.to_tensor, layout: NCHW}", OUT),
    "motion_unknown_field": nodes(CAM, "- {id: m, type: image.motion, field: frmae}", OUT),
    "mqtt_bad_url": nodes("- {id: m, type: source.mqtt, url: 'tcp://broker', topics: [a]}", OUT),
    "mqtt_url_credentials": nodes(
        "- {id: m, type: source.mqtt, url: 'mqtt://u:p@broker', topics: [a]}", OUT
    ),
    "mqtt_bad_topic": nodes(
        "- {id: m, type: source.mqtt, url: 'mqtt://broker', topics: [a/#/b]}", OUT
    ),
    "mqtt_bad_qos": nodes(
        "- {id: m, type: source.mqtt, url: 'mqtt://broker', topics: [a], qos: 3}", OUT
    ),
    "mqtt_missing_ca": nodes(
        "- {id: m, type: source.mqtt, url: 'mqtts://broker', topics: [a], tls: {ca: ca.pem}}", OUT
    ),
    "frame_unknown_field": nodes(SRC, "- {id: w, type: signal.frame, field: acel, size: 256}", OUT),
    "frame_zero_size": nodes(SRC, "- {id: w, type: signal.frame, field: accel, size: 0}", OUT),
    "features_bands_without_rate": nodes(
        SRC,
        "- {id: w, type: signal.frame, field: accel, size: 8}",
        "- {id: f, type: signal.features, bands: [[0, 10]]}",
        OUT,
    ),
    "features_unknown_feature": nodes(
        SRC,
        "- {id: w, type: signal.frame, field: accel, size: 8}",
        "- {id: f, type: signal.features, features: [rms, skew]}",
        OUT,
    ),
    "zscore_unknown_field": nodes(SRC, "- {id: z, type: signal.zscore, fields: [acel]}", OUT),
}

# name, line, column, start of the message, number of problems
EXPECTED = [
    ("camera_two_sources", 5, 9, "give exactly one of `device`, `url` or `file` (got `device` ", 1),
    ("camera_no_source", 5, 9, "give exactly one of `device`, `url` or `file` (got none)", 1),
    ("camera_width_only", 5, 9, "give both `width` and `height`, or neither", 1),
    ("camera_bad_policy", 5, 65, "option `frame_policy`: input should be 'latest', 'drop_oldes", 1),
    ("camera_missing_file", 5, 46, "no file at `none.avi`", 1),
    ("camera_loop_on_device", 5, 57, "`loop` and `start` are for files", 1),
    (
        "camera_bad_reconnect",
        5,
        72,
        "option `reconnect.initial`: `soon` is not a duration; write ",
        1,
    ),
    ("crop_outside_frame", 6, 52, "the region ends at x=400 but frames are 320 pixels wide", 1),
    ("resize_zero", 6, 48, "option `width`: input should be greater than or equal to 1", 1),
    ("normalize_channels", 6, 46, "2 values for 3 channels", 1),
    ("tensor_layout", 6, 48, "option `layout`: input should be 'HWC' or 'CHW'", 1),
    ("motion_unknown_field", 6, 44, "unknown field `frmae`", 1),
    ("mqtt_bad_url", 5, 41, "option `url`: `tcp://broker` is not a broker URL; write e.g.", 1),
    (
        "mqtt_url_credentials",
        5,
        41,
        "option `url`: put credentials in `username`/`password` (from",
        1,
    ),
    ("mqtt_bad_topic", 5, 67, "topic `a/#/b`: `#` must be the last level", 1),
    ("mqtt_bad_qos", 5, 76, "option `qos`: input should be 0, 1 or 2", 1),
    ("mqtt_missing_ca", 5, 82, "no file at `ca.pem`", 1),
    ("frame_unknown_field", 6, 44, "unknown field `acel`", 1),
    ("frame_zero_size", 6, 57, "option `size`: input should be greater than or equal to 1", 1),
    ("features_bands_without_rate", 7, 9, "`bands` needs `rate_hz`, the frames' sample rate", 1),
    (
        "features_unknown_feature",
        7,
        56,
        "option `features[1]`: input should be 'rms', 'peak', 'crest'",
        1,
    ),
    ("zscore_unknown_field", 6, 47, "unknown field `acel`", 1),
]


def test_every_case_is_expected() -> None:
    assert {row[0] for row in EXPECTED} == set(CASES)


@pytest.mark.parametrize(
    ("name", "line", "col", "message", "count"), EXPECTED, ids=[row[0] for row in EXPECTED]
)
def test_bad_config(name: str, line: int, col: int, message: str, count: int) -> None:
    with pytest.raises(ConfigError) as info:
        load_spec_text(CASES[name], Path("/nonexistent"), {}, file="t.yaml")
    diagnostics = info.value.diagnostics
    assert len(diagnostics) == count, str(info.value)
    first = diagnostics[0]
    assert (first.mark.line, first.mark.col) == (line, col), str(info.value)
    assert first.message.startswith(message), str(info.value)
    rendered = str(first)
    assert rendered.startswith(f"t.yaml:{line}:{col}: pipeline p, node ")
    assert "\n" not in rendered


def test_validate_cli_prints_one_line_and_never_the_password(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: m, type: source.mqtt, url: 'mqtt://127.0.0.1', topics: [a/#/b],\n"
        "         username: u, password: '${MQTT_PASSWORD}'}\n"
        "      - {id: out, type: sink.stdout}\n"
    )
    done = cli("validate", str(tmp_path / "p.yaml"), env={"MQTT_PASSWORD": "hunter2-secret"})
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "`#` must be the last level" in done.stderr
    assert "hunter2-secret" not in done.stderr + done.stdout
