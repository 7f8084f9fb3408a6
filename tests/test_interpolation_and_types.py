"""`${ENV}` interpolation, durations and sizes, and dead-letter logging limits."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from edgewax.config.interpolation import InterpolationError, interpolate
from edgewax.config.types import parse_byte_size, parse_duration
from edgewax.flows.deadletters import DeadLetters

ENV = {"HOST": "broker", "EMPTY": "", "PORT": "8883"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("${HOST}", "broker"),
        ("mqtts://${HOST}:${PORT}", "mqtts://broker:8883"),
        ("${MISSING:-dflt}", "dflt"),
        ("${EMPTY:-dflt}", "dflt"),
        ("${EMPTY-dflt}", ""),
        ("${MISSING-dflt}", "dflt"),
        ("${MISSING:-${HOST}}", "broker"),
        ("${MISSING:-}", ""),
        ("cost $$5 and $$${HOST}", "cost $5 and $broker"),
        ("a lone $ stays", "a lone $ stays"),
        ("$", "$"),
    ],
)
def test_interpolate(text: str, expected: str) -> None:
    assert interpolate(text, ENV) == expected


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("x ${NOPE}", "environment variable `NOPE` is not set", 2),
        ("${NOPE:?give the broker}", "environment variable `NOPE` is not set: give the broker", 0),
        ("${EMPTY:?required}", "environment variable `EMPTY` is not set: required", 0),
        ("${HOST", "unterminated `${`", 0),
        ("${1BAD}", "`${1BAD}` is not a valid reference", 0),
        ("${HOST:+x}", "`${HOST:+x}` is not a valid reference", 0),
    ],
)
def test_interpolate_errors(text: str, message: str, offset: int) -> None:
    with pytest.raises(InterpolationError) as info:
        interpolate(text, ENV)
    assert info.value.message == message
    assert info.value.offset == offset


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (5, 5.0),
        (0.5, 0.5),
        ("90", 90.0),
        ("250ms", 0.25),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1.5s", 1.5),
        (" 10 s ", 10.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["10 minutes", "s", "", "1x", True, [1]])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (10, 10),
        ("10", 10),
        ("10B", 10),
        ("1KB", 1000),
        ("1KiB", 1024),
        ("50MB", 50_000_000),
        ("1.5GB", 1_500_000_000),
        ("2mib", 2 * 2**20),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_byte_size(text) == size


@pytest.mark.parametrize("bad", ["lots", "10 XB", True, None])
def test_bad_sizes(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_byte_size(bad)


def test_dead_letters_are_kept_rotated_and_logged_with_a_rate_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "dl" / "dead.jsonl"
    dl = DeadLetters(path, max_bytes=5000, log_every=60)
    with caplog.at_level(logging.WARNING, logger="edgewax.deadletters"):
        for i in range(100):
            dl.put("p", "n", "bad_value", f"ValueError: {i}", {"i": i, "arr": b"\x00"})
        dl.put("p", "other", "missing_field", "missing field 'x'", {"i": -1})
    dl.close()
    assert dl.count == 101
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert warnings[0].startswith("pipeline p, node n: dead letter (bad_value): ValueError: 0")
    assert path.stat().st_size <= 5000
    rotated = path.with_name("dead.jsonl.1")
    assert rotated.exists() and rotated.stat().st_size <= 5000
    last = [json.loads(line) for line in path.read_text().splitlines()][-1]
    assert last["node"] == "other" and last["event"] == {"i": -1}


def test_odd_expression_values_are_config_errors(tmp_path: Path) -> None:
    from edgewax.config.diagnostics import ConfigError
    from edgewax.config.spec import load_spec_text

    for value, message in (
        ("true", "option `where`"),
        ("5", "option `where`"),
        ("''", "option `where`: expression is empty"),
    ):
        text = (
            "version: 1\npipelines:\n  p:\n    nodes:\n"
            "      - {id: s, type: sensor.synthetic}\n"
            f"      - {{id: f, type: filter, where: {value}}}\n"
            "      - {id: o, type: sink.stdout}\n"
        )
        with pytest.raises(ConfigError) as info:
            load_spec_text(text, tmp_path, {}, file="t.yaml")
        assert str(info.value).startswith("t.yaml:6:"), str(info.value)
        assert message in str(info.value), str(info.value)


def test_an_unquoted_yaml_timestamp_is_an_event_time(tmp_path: Path) -> None:
    """`start: 2026-01-01T00:00:00Z` (a YAML timestamp, not text) means the same as quoted."""
    import json

    from edgewax.config.spec import load_spec_text
    from edgewax.flows.compiler import compile_spec
    from edgewax.testing import run_compiled

    for start in ("2026-01-01T00:00:00Z", "'2026-01-01T00:00:00Z'", "2026-01-01"):
        text = (
            "version: 1\nsettings: {dead_letter: {path: null}}\npipelines:\n  p:\n    nodes:\n"
            f"      - {{id: s, type: sensor.synthetic, count: 1, speed: 0, start: {start}}}\n"
            "      - {id: out, type: sink.jsonl, path: out.jsonl, mode: overwrite}\n"
        )
        run_compiled(compile_spec(load_spec_text(text, tmp_path)))
        event = json.loads((tmp_path / "out.jsonl").read_text())
        assert event["ts"] == 1767225600.0, start
