"""Mistakes in window, egress and privacy options: one line each, `FILE:LINE:COL: ...`."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewax.config.diagnostics import ConfigError
from edgewax.config.spec import load_spec_text

HEAD = "version: 1\npipelines:\n  p:\n    nodes:\n"
SRC = "- {id: src, type: sensor.synthetic, count: 1}"
OUT = "- {id: out, type: sink.stdout}"


def nodes(*lines: str) -> str:
    return HEAD + "".join(f"      {line}\n" for line in lines)


CASES = [
    (
        "unknown_output",
        nodes(
            SRC,
            "- {id: win, type: window.tumbling, size: 10}",
            OUT,
            "- {id: l, type: sink.stdout, inputs: [win.lat]}",
        ),
        8,
        45,
        "node `win` has no output `lat`",
        "did you mean `late`",
    ),
    (
        "output_of_plain_node",
        nodes(
            SRC,
            "- {id: f, type: filter, where: 'temperature > 1'}",
            OUT,
            "- {id: l, type: sink.stdout, inputs: [f.late]}",
        ),
        8,
        45,
        "node `f` has no output `late`",
        "`f` has one output: read it as `f`",
    ),
    (
        "only_late_output_read",
        nodes(
            SRC,
            "- {id: win, type: window.tumbling, size: 10}",
            "- {id: l, type: sink.stdout, inputs: [win.late]}",
        ),
        6,
        9,
        "its output goes nowhere",
        None,
    ),
    (
        "hop_larger_than_size",
        nodes(SRC, "- {id: w, type: window.sliding, size: 10s, hop: 20s}", OUT),
        6,
        9,
        "hop` must be more than 0 and at most `size`",
        None,
    ),
    (
        "aggregate_unknown_field",
        nodes(
            SRC, "- {id: w, type: window.tumbling, size: 10, aggregate: {mean: temprature}}", OUT
        ),
        6,
        68,
        "aggregate reads unknown field `temprature`",
        "did you mean `temperature`",
    ),
    (
        "unknown_aggregate",
        nodes(
            SRC, "- {id: w, type: window.tumbling, size: 10, aggregate: {median: temperature}}", OUT
        ),
        6,
        62,
        "unknown option `aggregate.median`",
        None,
    ),
    (
        "bad_condition",
        nodes(
            SRC,
            "- {id: w, type: window.tumbling, size: 10, aggregate: {any: {hot: 'temperature >'}}}",
            OUT,
        ),
        6,
        87,
        "option `aggregate.any.hot`: invalid syntax",
        None,
    ),
    (
        "bad_lateness",
        nodes(SRC, "- {id: w, type: window.session, gap: 5s, allowed_lateness: soon}", OUT),
        6,
        66,
        "option `allowed_lateness`: `soon` is not a duration",
        None,
    ),
    (
        "deadband_without_threshold",
        nodes(SRC, "- {id: d, type: egress.deadband, fields: [temperature]}", OUT),
        6,
        9,
        "give exactly one of `absolute` and `percent`",
        None,
    ),
    (
        "budget_size",
        nodes(SRC, "- {id: b, type: egress.budget, bytes: lots}", OUT),
        6,
        45,
        "option `bytes`: `lots` is not a size",
        None,
    ),
    (
        "sample_two_modes",
        nodes(SRC, "- {id: s, type: egress.sample, every: 2, probability: 0.5}", OUT),
        6,
        9,
        "give exactly one of `every`, `probability` and `max`",
        None,
    ),
    (
        "event_unknown_field",
        nodes(SRC, "- {id: e, type: egress.event, when: 'temp > 1'}", OUT),
        6,
        43,
        "unknown field `temp`",
        "known fields",
    ),
    (
        "rate_limit_per",
        nodes(SRC, "- {id: r, type: egress.rate_limit, per_minute: 1, per: device}", OUT),
        6,
        62,
        "option `per`: input should be 'key' or 'all'",
        None,
    ),
    (
        "redact_key",
        nodes(SRC, "- {id: r, type: redact, fields: [key]}", OUT),
        6,
        39,
        "option `fields`: `key` cannot be redacted",
        None,
    ),
]


@pytest.mark.parametrize(
    ("name", "text", "line", "col", "message", "hint"), CASES, ids=[c[0] for c in CASES]
)
def test_one_line_error(
    name: str, text: str, line: int, col: int, message: str, hint: str | None
) -> None:
    with pytest.raises(ConfigError) as info:
        load_spec_text(text, Path("."), file="t.yaml")
    (d,) = info.value.diagnostics
    rendered = str(d)
    assert "\n" not in rendered
    assert message in d.message, rendered
    assert (d.mark.line, d.mark.col) == (line, col), rendered
    if hint:
        assert hint in (d.hint or ""), rendered
