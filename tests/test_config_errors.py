"""Malformed configs: each gives one precise line `FILE:LINE:COL: ... message (hint)`, never a traceback."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import pytest

from edgewax.config.diagnostics import ConfigError
from edgewax.config.spec import load_spec_text

from .conftest import cli

HEAD = "version: 1\npipelines:\n  p:\n    nodes:\n"
SRC = "- {id: src, type: sensor.synthetic, count: 1}"
OUT = "- {id: out, type: sink.stdout}"


def nodes(*lines: str) -> str:
    return HEAD + "".join(f"      {line}\n" for line in lines)


CASES = {
    "yaml_syntax": "version: 1\npipelines:\n  p: {nodes: [\n",
    "yaml_tab_indent": "version: 1\npipelines:\n\tp: {}\n",
    "duplicate_top_key": "version: 1\nversion: 1\npipelines: {p: {nodes: [{id: s, type: sensor.synthetic}, {id: o, type: sink.stdout}]}}\n",
    "duplicate_option": nodes(
        "- id: src", "  type: sensor.synthetic", "  seed: 1", "  seed: 2", OUT
    ),
    "unknown_top_key": "version: 1\npipeline: {}\n",
    "unknown_type": nodes(SRC, "- {id: f, type: filtr, where: 'x > 1'}", OUT),
    "unknown_option": nodes("- {id: src, type: sensor.synthetic, rate_hx: 10}", OUT),
    "unknown_pipeline_key": "version: 1\npipelines:\n  p:\n    node: []\n",
    "missing_required": nodes(SRC, "- {id: f, type: filter}", OUT),
    "wrong_type": nodes("- {id: src, type: sensor.synthetic, rate_hz: fast}", OUT),
    "wrong_literal": nodes("- {id: src, type: sensor.synthetic, signal: pressure}", OUT),
    "negative_number": nodes("- {id: src, type: sensor.synthetic, rate_hz: -5}", OUT),
    "bad_duration": nodes("- {id: src, type: sensor.synthetic, duration: 10 minutes}", OUT),
    "duplicate_id": nodes(SRC, "- {id: src, type: map, set: {a: '1'}}", OUT),
    "dangling_input": nodes(
        SRC, "- {id: f, type: filter, where: 'temperature > 1', inputs: [sorce]}", OUT
    ),
    "cycle": nodes(
        SRC,
        "- {id: a, type: map, set: {x: '1'}, inputs: [src, b]}",
        "- {id: b, type: map, set: {y: '1'}, inputs: [a]}",
        "- {id: out, type: sink.stdout, inputs: [b]}",
    ),
    "self_input": nodes(SRC, "- {id: a, type: map, set: {x: '1'}, inputs: [a]}", OUT),
    "source_with_inputs": nodes(
        SRC,
        "- {id: s2, type: sensor.synthetic, inputs: [src]}",
        "- {id: out, type: sink.stdout, inputs: [src, s2]}",
    ),
    "transform_without_input": nodes("- {id: f, type: filter, where: 'x > 1'}", SRC, OUT),
    "no_sink": nodes(SRC, "- {id: f, type: filter, where: 'temperature > 1'}"),
    "dead_end": nodes(
        SRC,
        "- {id: f, type: filter, where: 'temperature > 1'}",
        "- {id: out, type: sink.stdout, inputs: [src]}",
    ),
    "input_is_sink": nodes(SRC, OUT, "- {id: out2, type: sink.stdout, inputs: [out]}"),
    "bad_id": nodes("- {id: my.src, type: sensor.synthetic}", OUT),
    "bad_pipeline_name": "version: 1\npipelines:\n  my pipe:\n    nodes:\n      - {id: s, type: sensor.synthetic}\n      - {id: o, type: sink.stdout}\n",
    "bad_expression_syntax": nodes(SRC, "- {id: f, type: filter, where: 'temperature >'}", OUT),
    "forbidden_attribute": nodes(
        SRC, "- {id: f, type: filter, where: 'temperature.real > 1'}", OUT
    ),
    "forbidden_call": nodes(SRC, "- {id: m, type: map, set: {x: \"__import__('os')\"}}", OUT),
    "forbidden_lambda": nodes(
        SRC, "- id: f", "  type: filter", '  where: "(lambda: 1)() > 0"', OUT
    ),
    "unknown_field_in_expression": nodes(
        SRC, "- {id: f, type: filter, where: 'temprature > 70'}", OUT
    ),
    "python_tag": "version: 1\npipelines: !!python/object/apply:os.system ['echo pwned']\n",
    "custom_tag": nodes("- {id: src, type: sensor.synthetic, seed: !seed 5}", OUT),
    "alias_bomb": "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\nh: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]\nversion: 1\n",
    "unset_env": nodes("- {id: src, type: sensor.synthetic, keys: ['${PUMP_ID}']}", OUT),
    "env_required_message": nodes(
        "- {id: src, type: sensor.synthetic, seed: '${SEED:?set SEED per device}'}", OUT
    ),
    "unterminated_env": nodes("- {id: src, type: sensor.synthetic, keys: ['${PUMP']}", OUT),
    "empty_pipelines": "version: 1\npipelines: {}\n",
    "empty_nodes": "version: 1\npipelines:\n  p:\n    nodes: []\n",
    "unsupported_version": "version: 2\npipelines:\n  p:\n    nodes: [{id: s, type: sensor.synthetic}, {id: o, type: sink.stdout}]\n",
    "missing_version": "pipelines:\n  p:\n    nodes: [{id: s, type: sensor.synthetic}, {id: o, type: sink.stdout}]\n",
    "empty_file": "",
    "not_a_mapping": "- just\n- a list\n",
    "node_not_mapping": nodes("- sensor.synthetic", OUT),
    "missing_file": nodes("- {id: src, type: source.jsonl, path: nowhere.jsonl}", OUT),
    "unknown_setting": "version: 1\nsettings: {state_dri: x}\npipelines:\n  p:\n    nodes: [{id: s, type: sensor.synthetic}, {id: o, type: sink.stdout}]\n",
    "bad_fault_kind": nodes(
        "- id: src",
        "  type: sensor.synthetic",
        "  signal: vibration",
        "  faults: [{kind: overheat}]",
        OUT,
    ),
    "drop_protected": nodes(SRC, "- {id: d, type: drop, fields: [ts]}", OUT),
    "select_unknown_field": nodes(SRC, "- {id: s, type: select, fields: [temp]}", OUT),
    "multiple_documents": "version: 1\n---\nversion: 1\n",
    "unknown_nested_option": nodes(
        "- id: src", "  type: sensor.synthetic", "  faults: [{kind: overheat, sevrity: 2}]", OUT
    ),
    "inputs_not_list": nodes(SRC, "- {id: out, type: sink.stdout, inputs: {a: 1}}"),
}

# name, line, column, start of the message, number of problems reported
EXPECTED = [
    ("yaml_syntax", 4, 1, "YAML syntax error: expected the node content, but found 'end", 1),
    ("yaml_tab_indent", 3, 1, "YAML syntax error: found character '\\t' that cannot start an", 1),
    ("duplicate_top_key", 2, 1, "duplicate key `version`", 1),
    ("duplicate_option", 8, 9, "duplicate key `seed`", 1),
    ("unknown_top_key", 2, 1, "unknown key `pipeline`", 1),
    ("unknown_type", 6, 23, "unknown node type `filtr`", 1),
    ("unknown_option", 5, 43, "unknown option `rate_hx`", 1),
    ("unknown_pipeline_key", 4, 5, "unknown key `node`", 1),
    ("missing_required", 6, 9, "missing required option `where`", 1),
    ("wrong_type", 5, 52, "option `rate_hz`: input should be a valid number, unable to ", 1),
    ("wrong_literal", 5, 51, "option `signal`: input should be 'vibration', 'temperature' ", 1),
    ("negative_number", 5, 52, "option `rate_hz`: input should be greater than 0", 1),
    ("bad_duration", 5, 53, "option `duration`: `10 minutes` is not a duration; write e.g", 1),
    ("duplicate_id", 6, 14, "duplicate node id `src`", 1),
    ("dangling_input", 6, 66, "input `sorce` is not a node of this pipeline", 1),
    ("cycle", 6, 9, "the inputs form a cycle: a -> b -> a", 1),
    ("self_input", 6, 52, "reads its own output", 1),
    ("source_with_inputs", 6, 42, "a source takes no `inputs`", 1),
    ("transform_without_input", 5, 9, "has no input", 1),
    ("no_sink", 4, 5, "the pipeline has no sink", 1),
    ("dead_end", 6, 9, "its output goes nowhere", 1),
    ("input_is_sink", 7, 48, "input `out` is a sink and has no output", 1),
    ("bad_id", 5, 14, "`my.src` is not a valid node id", 1),
    ("bad_pipeline_name", 3, 3, "pipeline name `my pipe` is not a valid name", 1),
    ("bad_expression_syntax", 6, 52, "option `where`: invalid syntax", 1),
    ("forbidden_attribute", 6, 39, "option `where`: attribute access is not allowed", 1),
    ("forbidden_call", 6, 38, "option `set.x`: function `__import__` is not allowed", 1),
    ("forbidden_lambda", 8, 18, "option `where`: `lambda` is not allowed in expressions", 1),
    ("unknown_field_in_expression", 6, 38, "expression reads unknown field `temprature`", 1),
    ("python_tag", 2, 12, "tag `!!python/object/apply:os.system` is not allowed", 1),
    ("custom_tag", 5, 49, "tag `!seed` is not allowed", 1),
    ("alias_bomb", 1, 1, "document expands to more than 100000 values through aliases", 1),
    ("unset_env", 5, 50, "environment variable `PUMP_ID` is not set", 1),
    (
        "env_required_message",
        5,
        49,
        "environment variable `SEED` is not set: set SEED per device",
        1,
    ),
    ("unterminated_env", 5, 50, "unterminated `${`", 1),
    ("empty_pipelines", 2, 12, "`pipelines` must map pipeline names to pipelines, and have a", 1),
    ("empty_nodes", 4, 12, "a pipeline needs `nodes:`, a list with at least a source and", 1),
    ("unsupported_version", 1, 10, "unsupported version `2`", 1),
    ("missing_version", 1, 1, "missing `version: 1`", 1),
    ("empty_file", 1, 1, "file is empty", 1),
    ("not_a_mapping", 1, 1, "the file must be a mapping with `version`, `settings`, `pipe", 1),
    ("node_not_mapping", 5, 9, "node #1 must be a mapping with `id` and `type`", 1),
    ("missing_file", 5, 45, "no file at `nowhere.jsonl`", 1),
    ("unknown_setting", 2, 12, "unknown setting `settings.state_dri`", 1),
    ("bad_fault_kind", 8, 17, "option `faults`: faults[0]: kind `overheat` does not apply t", 1),
    ("drop_protected", 6, 37, "option `fields`: `ts` cannot be dropped: every event has `ts", 1),
    ("select_unknown_field", 6, 40, "unknown field `temp`", 1),
    ("multiple_documents", 2, 1, "YAML syntax error: expected a single YAML document, found mo", 1),
    ("unknown_nested_option", 7, 35, "unknown option `faults[0].sevrity`", 1),
    ("inputs_not_list", 6, 46, "`inputs` must be a list of node ids", 1),
]


def test_at_least_thirty_cases() -> None:
    assert len(EXPECTED) >= 30
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
    assert rendered.startswith(f"t.yaml:{line}:{col}: ")
    assert "\n" not in rendered


def test_did_you_mean_hints() -> None:
    hints = {}
    for name in (
        "unknown_type",
        "unknown_option",
        "unknown_top_key",
        "dangling_input",
        "unknown_field_in_expression",
        "unknown_setting",
        "unknown_nested_option",
    ):
        with pytest.raises(ConfigError) as info:
            load_spec_text(CASES[name], Path("/nonexistent"), {}, file="t.yaml")
        hints[name] = info.value.diagnostics[0].hint
    assert hints == {
        "unknown_type": "did you mean `filter`?",
        "unknown_option": "did you mean `rate_hz`?",
        "unknown_top_key": "did you mean `pipelines`?",
        "dangling_input": "did you mean `src`?",
        "unknown_field_in_expression": "did you mean `temperature`?",
        "unknown_setting": "did you mean `state_dir`?",
        "unknown_nested_option": "did you mean `severity`?",
    }


def test_every_error_of_a_file_at_once() -> None:
    text = nodes(
        "- {id: src, type: sensor.synthetic, rate_hx: 1}",
        "- {id: f, type: filtr}",
        "- {id: m, type: map, set: {x: 'a.b'}}",
        "- {id: src, type: sink.stdout}",
    )
    with pytest.raises(ConfigError) as info:
        load_spec_text(text, Path("."), {}, file="t.yaml")
    lines = str(info.value).splitlines()
    assert [line.split(": ")[0] for line in lines] == [
        "t.yaml:5:43",
        "t.yaml:6:23",
        "t.yaml:7:38",
        "t.yaml:8:14",
    ]
    assert "node src: unknown option `rate_hx`" in lines[0]
    assert "node f: unknown node type `filtr`" in lines[1]
    assert "node m: option `set.x`: attribute access is not allowed" in lines[2]
    assert "duplicate node id `src`" in lines[3]


def test_a_broken_node_does_not_hide_other_mistakes() -> None:
    text = nodes(
        "- {id: src, type: sensor.synthetic, count: 1}",
        "- {id: m, type: map, set: {f: 'tempratur * 2'}}",
        "- {id: out, type: sink.jsonl, inputs: [mm], max_byte: 1, path: o.jsonl}",
    )
    with pytest.raises(ConfigError) as info:
        load_spec_text(text, Path("."), {}, file="t.yaml")
    assert [d.message for d in info.value.diagnostics] == [
        "expression reads unknown field `tempratur`",
        "input `mm` is not a node of this pipeline",
        "unknown option `max_byte`",
    ]


def test_default_input_after_a_broken_node_is_that_node() -> None:
    # `f` reads the broken `m` by default, not `src`: no made-up error about `x`.
    text = nodes(
        SRC,
        "- {id: m, type: map, set: {x: 'temperature'}, bogus: 1}",
        "- {id: f, type: filter, where: 'x > 1'}",
        OUT,
    )
    with pytest.raises(ConfigError) as info:
        load_spec_text(text, Path("."), {}, file="t.yaml")
    assert [d.message for d in info.value.diagnostics] == ["unknown option `bogus`"]


def test_env_interpolation_fills_values() -> None:
    text = nodes(
        "- {id: src, type: sensor.synthetic, keys: ['${PUMP}', '${OTHER:-p2}'], seed: '${SEED}'}",
        "- {id: out, type: sink.jsonl, path: 'out/$${literal}.jsonl'}",
    )
    spec = load_spec_text(text, Path("."), {"PUMP": "p1", "SEED": "42"})
    src = spec.pipelines["p"].node("src").options
    assert src.keys == ["p1", "p2"] and src.seed == 42
    assert spec.pipelines["p"].node("out").options.path == "out/${literal}.jsonl"


def test_secret_values_are_not_echoed_in_errors() -> None:
    text = nodes("- {id: src, type: sensor.synthetic, rate_hz: '${TOKEN}'}", OUT)
    with pytest.raises(ConfigError) as info:
        load_spec_text(text, Path("."), {"TOKEN": "s3cr3t-value"}, file="t.yaml")
    assert "s3cr3t-value" not in str(info.value)


def test_alias_bomb_fails_fast_in_bounded_memory() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(ConfigError):
        load_spec_text(CASES["alias_bomb"], Path("."), {}, file="t.yaml")
    assert time.perf_counter() - started < 1.0
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 50_000


def test_yaml_merge_keys_work_and_explicit_keys_win() -> None:
    text = (
        "version: 1\n"
        "x-sensor: &sensor {type: sensor.synthetic, count: 1, seed: 1}\n"
        "pipelines:\n  p:\n    nodes:\n"
        "      - {<<: *sensor, id: a, seed: 5}\n"
        "      - {id: out, type: sink.stdout}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_spec_text(text, Path("."), {}, file="t.yaml")
    # `x-sensor` is not a known top-level key: anchors live inside known keys.
    assert "unknown key `x-sensor`" in str(info.value)
    text = (
        text.replace("x-sensor: &sensor", "settings: {}\n#")
        .replace(
            "      - {<<: *sensor, id: a, seed: 5}",
            "      - &s {id: a, type: sensor.synthetic, count: 1, seed: 1}\n"
            "      - {<<: *s, id: b, seed: 5}",
        )
        .replace("- {id: out, type: sink.stdout}", "- {id: out, type: sink.stdout, inputs: [a, b]}")
    )
    spec = load_spec_text(text, Path("."), {})
    assert spec.pipelines["p"].node("b").options.seed == 5
    assert spec.pipelines["p"].node("a").options.seed == 1


def test_cli_validate_prints_one_line_per_problem_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(CASES["unknown_option"] + "      - {id: f, type: filtr}\n")
    proc = cli("validate", str(path))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == (
        f"{path}:5:43: pipeline p, node src: unknown option `rate_hx` (did you mean `rate_hz`?)"
    )
    assert lines[1].startswith(f"{path}:7:23: pipeline p, node f: unknown node type `filtr`")
    assert lines[-1] == "2 problems found"


def test_cli_run_refuses_bad_config_without_running(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(CASES["python_tag"])
    proc = cli("run", str(path))
    assert proc.returncode == 2
    assert "is not allowed" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_cli_missing_file(tmp_path: Path) -> None:
    proc = cli("validate", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"{tmp_path / 'nope.yaml'}:1:1: file not found")
