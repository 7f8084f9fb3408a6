"""Pipelines compiled and run for real: file sources, nodes, sinks, dead letters, pacing, fan-out."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edgewax.config.spec import load_spec, load_spec_text
from edgewax.flows.compiler import compile_spec
from edgewax.testing import run_compiled, run_node


def _run(path: Path, workers: int = 1) -> object:
    spec = load_spec(path)
    compiled = compile_spec(spec)
    if workers == 1:
        run_compiled(compiled)
    else:
        from edgewax.flows.runner import run

        run(compiled, workers=workers, handle_signals=False)
    return compiled


def _stats(compiled: object, node: str) -> tuple[int, int, dict[str, float], int]:
    st = compiled.stats[(next(iter(compiled.spec.pipelines)), node)]  # type: ignore[attr-defined]
    return (
        int(st.received._value.get()),
        int(st.sent._value.get()),
        st.discarded(),
        int(st.errors._value.get()),
    )


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_bad_lines_are_dead_lettered_and_counted(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text(
        '{"ts": 1, "key": "a", "t": 1}\n'
        "{not json\n"
        "\n"
        "[1, 2]\n"
        '{"key": "a", "t": 2}\n'
        '{"ts": "2026-01-01T00:00:00Z", "key": 7, "t": 3}\n'
        '{"ts": "yesterday", "t": 4}\n'
    )
    (tmp_path / "p.yaml").write_text(
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: src, type: source.jsonl, path: in.jsonl}\n"
        "      - {id: out, type: sink.jsonl, path: out.jsonl}\n"
    )
    compiled = _run(tmp_path / "p.yaml")
    out = _lines(tmp_path / "out.jsonl")
    assert out == [
        {"ts": 1.0, "key": "a", "t": 1},
        {"ts": 1767225600.0, "key": "7", "t": 3},
    ]
    received, sent, discarded, errors = _stats(compiled, "src")
    assert (received, sent, discarded, errors) == (7, 2, {"malformed": 4}, 4)
    letters = _lines(tmp_path / ".edgewax" / "dead_letters.jsonl")
    assert [d["event"]["line"] for d in letters] == [2, 4, 5, 7]
    assert letters[0]["node"] == "src" and letters[0]["reason"] == "malformed"
    assert "invalid JSON" in letters[0]["error"]
    assert letters[1]["error"].endswith("not a JSON object")
    assert letters[2]["error"].endswith("missing time field `ts`")
    assert letters[3]["event"]["raw"] == '{"ts": "yesterday", "t": 4}'


def test_csv_source_types_and_bad_rows(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(
        "time,device,temp,ok\n"
        "2026-01-01T00:00:00,d1,20.5,true\n"
        "2026-01-01T00:00:01,d1\n"
        "2026-01-01T00:00:02,d2,,false\n"
        "2026-01-01T00:00:03,d2,x1,maybe\n"
    )
    (tmp_path / "p.yaml").write_text(
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: src, type: source.csv, path: in.csv, time_field: time, key_field: device,"
        " types: {ok: bool}}\n"
        "      - {id: out, type: sink.jsonl, path: out.jsonl}\n"
    )
    compiled = _run(tmp_path / "p.yaml")
    out = _lines(tmp_path / "out.jsonl")
    assert out == [
        {
            "time": "2026-01-01T00:00:00",
            "device": "d1",
            "temp": 20.5,
            "ok": True,
            "ts": 1767225600.0,
            "key": "d1",
        },
        {
            "time": "2026-01-01T00:00:02",
            "device": "d2",
            "temp": None,
            "ok": False,
            "ts": 1767225602.0,
            "key": "d2",
        },
    ]
    assert _stats(compiled, "src")[2] == {"malformed": 2}
    letters = _lines(tmp_path / ".edgewax" / "dead_letters.jsonl")
    assert [d["event"]["line"] for d in letters] == [3, 5]
    assert "expected 4 columns, found 2" in letters[0]["error"]
    assert "`maybe` is not a boolean" in letters[1]["error"]


def test_csv_header_gives_fields_for_validation(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("ts,key,temp\n1,a,2\n")
    text = (
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: src, type: source.csv, path: in.csv}\n"
        "      - {id: f, type: filter, where: 'tmp > 1'}\n"
        "      - {id: out, type: sink.stdout}\n"
    )
    import pytest

    from edgewax.config.diagnostics import ConfigError

    with pytest.raises(ConfigError, match=r"expression reads unknown field `tmp`.*`temp`"):
        load_spec_text(text, tmp_path)


def test_runtime_expression_failures_are_dead_lettered_and_the_rest_go_on(tmp_path: Path) -> None:
    events = [{"t": 1}, {"t": "hot"}, {"x": 1}, {"t": 5}, {"t": 0}]
    out = run_node("map", {"set": {"r": "10 / t"}}, events, base_dir=tmp_path)
    assert [e["r"] for e in out] == [10.0, 2.0]
    assert [e["t"] for e in out] == [1, 5]


def test_filter_counts_filtered(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text("".join(json.dumps({"ts": i, "v": i}) + "\n" for i in range(10)))
    (tmp_path / "p.yaml").write_text(
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: src, type: source.jsonl, path: in.jsonl}\n"
        "      - {id: keep, type: filter, where: 'v % 3 == 0'}\n"
        "      - {id: out, type: sink.jsonl, path: out.jsonl}\n"
    )
    compiled = _run(tmp_path / "p.yaml")
    assert [e["v"] for e in _lines(tmp_path / "out.jsonl")] == [0, 3, 6, 9]
    assert _stats(compiled, "keep") == (10, 4, {"filtered": 6.0}, 0)


def test_fan_out_branches_do_not_see_each_others_changes(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('{"ts": 1, "key": "a", "v": 2, "secret": "x"}\n')
    (tmp_path / "p.yaml").write_text(
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: src, type: source.jsonl, path: in.jsonl}\n"
        "      - {id: double, type: map, set: {v: 'v * 2'}}\n"
        "      - {id: hide, type: drop, fields: [secret], inputs: [src]}\n"
        "      - {id: a, type: sink.jsonl, path: a.jsonl, inputs: [double]}\n"
        "      - {id: b, type: sink.jsonl, path: b.jsonl, inputs: [hide]}\n"
        "      - {id: c, type: sink.jsonl, path: c.jsonl, inputs: [src]}\n"
        "      - {id: both, type: sink.jsonl, path: both.jsonl, inputs: [double, hide]}\n"
    )
    _run(tmp_path / "p.yaml")
    assert _lines(tmp_path / "a.jsonl") == [{"ts": 1.0, "key": "a", "v": 4, "secret": "x"}]
    assert _lines(tmp_path / "b.jsonl") == [{"ts": 1.0, "key": "a", "v": 2}]
    assert _lines(tmp_path / "c.jsonl") == [{"ts": 1.0, "key": "a", "v": 2, "secret": "x"}]
    assert sorted(e["v"] for e in _lines(tmp_path / "both.jsonl")) == [2, 4]


def test_select_drop_and_map_semantics(tmp_path: Path) -> None:
    ev = [{"a": 1, "b": 2, "c": 3}]
    assert run_node("select", {"fields": ["c", "a", "zz"]}, ev) == [
        {"ts": 0.0, "key": "k", "c": 3, "a": 1}
    ]
    assert run_node("drop", {"fields": ["a", "zz"]}, ev) == [
        {"ts": 0.0, "key": "k", "b": 2, "c": 3}
    ]
    # All expressions of one `set` see the event as it came in.
    assert run_node("map", {"set": {"a": "b", "b": "a"}}, ev) == [
        {"ts": 0.0, "key": "k", "a": 2, "b": 1, "c": 3}
    ]
    assert run_node("map", {"set": {"key": "'dev-' + str(a)"}}, ev)[0]["key"] == "dev-1"


def test_sources_emit_large_batches_when_catching_up(tmp_path: Path) -> None:
    from edgewax.operators.base import NodeContext, Transform
    from edgewax.operators.registry import register

    sizes: list[int] = []

    @register
    class BatchSizes(Transform):
        """Records batch sizes (test only)."""

        type_name = "test.batch_sizes"

        def __init__(self, options: object, ctx: NodeContext) -> None:
            super().__init__(options, ctx)

        def process(self, batch: list[dict[str, object]]) -> list[dict[str, object]]:
            sizes.append(len(batch))
            return batch

    (tmp_path / "in.jsonl").write_text("".join(f'{{"ts": {i}}}\n' for i in range(5000)))
    (tmp_path / "p.yaml").write_text(
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: src, type: source.jsonl, path: in.jsonl}\n"
        "      - {id: sizes, type: test.batch_sizes}\n"
        "      - {id: out, type: sink.jsonl, path: out.jsonl}\n"
    )
    _run(tmp_path / "p.yaml")
    assert sum(sizes) == 5000
    assert max(sizes) == 1000


def test_speed_paces_replay_by_event_time(tmp_path: Path) -> None:
    # 2 s of event time at speed 4 takes about 0.5 s; speed 0 takes no time at all.
    (tmp_path / "in.jsonl").write_text("".join(f'{{"ts": {i * 0.1}}}\n' for i in range(21)))
    for speed, low, high in ((4, 0.45, 1.5), (0, 0.0, 0.4)):
        (tmp_path / "p.yaml").write_text(
            "version: 1\npipelines:\n  p:\n    nodes:\n"
            f"      - {{id: src, type: source.jsonl, path: in.jsonl, speed: {speed}}}\n"
            "      - {id: out, type: sink.jsonl, path: out.jsonl, mode: overwrite}\n"
        )
        started = time.perf_counter()
        _run(tmp_path / "p.yaml")
        took = time.perf_counter() - started
        assert low <= took <= high, (speed, took)
        assert len(_lines(tmp_path / "out.jsonl")) == 21


def test_jsonl_sink_rotates_by_size(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: s, type: sensor.synthetic, count: 3000, speed: 0, start: 0}\n"
        "      - {id: out, type: sink.jsonl, path: logs/t.jsonl, max_bytes: 40KB, backups: 2}\n"
    )
    _run(tmp_path / "p.yaml")
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert files == ["t.jsonl", "t.jsonl.1", "t.jsonl.2"]
    for name in files:
        size = (tmp_path / "logs" / name).stat().st_size
        assert 0 < size <= 40_000
    newest = _lines(tmp_path / "logs" / "t.jsonl")
    assert newest[-1]["ts"] == 2999.0


def test_synthetic_streams_are_deterministic_and_labelled(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: s, type: sensor.synthetic, signal: vibration, keys: [p1, p2], rate_hz: 100,"
        " duration: 3s, speed: 0, start: 1000, seed: 4, label_faults: true,"
        " faults: [{kind: bearing, key: p2, at: 1s, duration: 1s}]}\n"
        "      - {id: out, type: sink.jsonl, path: out.jsonl, mode: overwrite}\n"
    )
    _run(tmp_path / "p.yaml")
    first = _lines(tmp_path / "out.jsonl")
    _run(tmp_path / "p.yaml", workers=2)
    second = _lines(tmp_path / "out.jsonl")
    key = lambda e: (e["key"], e["ts"])  # noqa: E731
    assert sorted(first, key=key) == sorted(second, key=key)
    assert len(first) == 600
    faulty = [e for e in first if e["fault"]]
    assert {e["key"] for e in faulty} == {"p2"}
    assert min(e["ts"] for e in faulty) == 1001.0 and len(faulty) == 100


def test_state_dir_is_relative_to_the_config_file(tmp_path: Path) -> None:
    sub = tmp_path / "site"
    sub.mkdir()
    (sub / "in.jsonl").write_text('oops\n{"ts": 1}\n')
    (sub / "p.yaml").write_text(
        "version: 1\nsettings: {state_dir: state}\npipelines:\n  p:\n    nodes:\n"
        "      - {id: src, type: source.jsonl, path: in.jsonl}\n"
        "      - {id: out, type: sink.jsonl, path: out/o.jsonl}\n"
    )
    _run(sub / "p.yaml")
    assert (sub / "state" / "dead_letters.jsonl").exists()
    assert (sub / "out" / "o.jsonl").exists()


def test_dead_letters_are_counted_per_pipeline(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text('oops\n{"ts": 1}\n[]\n')
    (tmp_path / "p.yaml").write_text(
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: src, type: source.jsonl, path: in.jsonl}\n"
        "      - {id: out, type: sink.jsonl, path: out.jsonl}\n"
    )
    compiled = _run(tmp_path / "p.yaml")
    registry = compiled.metrics.registry  # type: ignore[attr-defined]
    assert registry.get_sample_value("edgewax_dead_letters_total", {"pipeline": "p"}) == 2


def test_a_map_after_a_pass_through_branch_does_not_change_the_other_branch(tmp_path: Path) -> None:
    """fan-out -> filter -> map: the filter passes the same event objects on, so the map must
    copy them even though its own input has one reader; the other branch sees the originals."""
    text = (
        "version: 1\nsettings: {dead_letter: {path: null}}\npipelines:\n  p:\n    nodes:\n"
        "      - {id: s, type: sensor.synthetic, signal: temperature, count: 2000, speed: 0}\n"
        "      - {id: f, type: filter, where: 'temperature > -1000'}\n"
        "      - {id: m, type: map, set: {temperature: '-1.0'}}\n"
        "      - {id: out, type: sink.jsonl, path: out.jsonl}\n"
        "      - {id: g, type: filter, inputs: [s], where: 'temperature > -1000'}\n"
        "      - {id: h, type: filter, where: 'temperature > -1000'}\n"
        "      - {id: raw, type: sink.jsonl, path: raw.jsonl}\n"
    )
    run_compiled(compile_spec(load_spec_text(text, tmp_path)))
    raw = [json.loads(line) for line in (tmp_path / "raw.jsonl").open()]
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").open()]
    assert len(raw) == len(out) == 2000
    assert all(e["temperature"] == -1.0 for e in out)
    assert all(e["temperature"] != -1.0 for e in raw)
