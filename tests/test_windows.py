"""Windows against a plain-Python reference, lateness, replay determinism and session state."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgewax.config.spec import load_spec_text
from edgewax.flows.compiler import compile_spec
from edgewax.flows.deadletters import DeadLetters
from edgewax.metrics import Metrics
from edgewax.operators.base import NodeContext
from edgewax.operators.registry import node_types
from edgewax.operators.windows.aggregates import Columns
from edgewax.operators.windows.core import WindowState
from edgewax.testing import run_compiled

from . import windowing as ref
from .conftest import cli

AGG = "{sum: v, mean: v, min: v, max: v, std: v, first: v}"
FIELDS = ("count", "v_sum", "v_mean", "v_min", "v_max", "v_std", "v_first")


def run_window(
    tmp: Path, events: list[dict[str, Any]], window: str, batch_size: int = 1000
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run source.jsonl -> window -> (out.jsonl, late.jsonl); return both, as read back."""
    (tmp / "in.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    for name in ("out.jsonl", "late.jsonl"):
        (tmp / name).unlink(missing_ok=True)
    text = f"""
version: 1
settings: {{dead_letter: {{path: null}}}}
pipelines:
  p:
    nodes:
      - {{id: src, type: source.jsonl, path: in.jsonl, batch_size: {batch_size}}}
      - {{id: win, {window}, aggregate: {AGG}}}
      - {{id: out, type: sink.jsonl, path: out.jsonl}}
      - {{id: late, type: sink.jsonl, inputs: [win.late], path: late.jsonl}}
"""
    run_compiled(compile_spec(load_spec_text(text, tmp)))
    read = [
        [json.loads(line) for line in (tmp / n).read_text().splitlines()]
        if (tmp / n).exists()
        else []
        for n in ("out.jsonl", "late.jsonl")
    ]
    return read[0], read[1]


def _norm(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(
        (r["key"], r["window_start"], r["window_end"], *(r[f] for f in FIELDS)) for r in rows
    )


def assert_same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    g, w = _norm(got), _norm(want)
    assert len(g) == len(w), (g, w)
    for a, b in zip(g, w):
        assert a[:4] == b[:4], (a, b)
        assert a[4:] == pytest.approx(b[4:], rel=1e-9, abs=1e-9), (a, b)


events_strategy = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.integers(0, 1200).map(lambda i: i / 4),
        st.integers(-50, 50),
    ),
    min_size=1,
    max_size=60,
).map(lambda rows: [{"ts": t, "key": k, "v": v} for k, t, v in rows])

SETTINGS = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(
    events=events_strategy,
    size=st.sampled_from([5.0, 10.0, 30.0]),
    lateness=st.sampled_from([0.0, 5.0, 60.0]),
    batch=st.sampled_from([1, 7, 1000]),
)
def test_tumbling_matches_reference(
    tmp_path: Path, events: list[dict[str, Any]], size: float, lateness: float, batch: int
) -> None:
    out, late = run_window(
        tmp_path,
        events,
        f"type: window.tumbling, size: {size}, allowed_lateness: {lateness}",
        batch,
    )
    want, want_late = ref.fixed(events, size, size, lateness)
    assert_same(out, want)
    assert sorted(map(json.dumps, late)) == sorted(map(json.dumps, want_late))


@SETTINGS
@given(
    events=events_strategy,
    shape=st.sampled_from([(10.0, 5.0), (30.0, 10.0), (10.0, 4.0), (6.0, 6.0)]),
    lateness=st.sampled_from([0.0, 12.0]),
    batch=st.sampled_from([1, 5, 1000]),
)
def test_sliding_matches_reference(
    tmp_path: Path,
    events: list[dict[str, Any]],
    shape: tuple[float, float],
    lateness: float,
    batch: int,
) -> None:
    size, hop = shape
    window = f"type: window.sliding, size: {size}, hop: {hop}, allowed_lateness: {lateness}"
    out, late = run_window(tmp_path, events, window, batch)
    want, want_late = ref.fixed(events, size, hop, lateness)
    assert_same(out, want)
    assert len(late) == len(want_late)


@SETTINGS
@given(
    events=events_strategy,
    gap=st.sampled_from([2.0, 10.0, 40.0]),
    lateness=st.sampled_from([0.0, 20.0]),
    batch=st.sampled_from([1, 4, 1000]),
)
def test_sessions_match_reference(
    tmp_path: Path, events: list[dict[str, Any]], gap: float, lateness: float, batch: int
) -> None:
    window = f"type: window.session, gap: {gap}, allowed_lateness: {lateness}"
    out, late = run_window(tmp_path, events, window, batch)
    want, want_late = ref.sessions(events, gap, lateness)
    assert_same(out, want)
    assert len(late) == len(want_late)


@SETTINGS
@given(
    events=events_strategy,
    shape=st.sampled_from([(3, 3), (4, 2), (2, 5), (1, 1)]),
    batch=st.sampled_from([1, 3, 1000]),
)
def test_count_windows_match_reference(
    tmp_path: Path, events: list[dict[str, Any]], shape: tuple[int, int], batch: int
) -> None:
    size, hop = shape
    out, late = run_window(tmp_path, events, f"type: window.count, size: {size}, hop: {hop}", batch)
    want, _ = ref.counts(events, size, hop)
    assert_same(out, want)
    assert late == []


def test_lateness_on_time_tolerated_and_too_late(tmp_path: Path) -> None:
    events = [
        {"ts": 5.0, "key": "a", "v": 1},  # on time: window [0, 10)
        {"ts": 12.0, "key": "a", "v": 2},  # watermark 12 - 5 = 7: [0, 10) stays open
        {"ts": 8.0, "key": "a", "v": 3},  # late, within tolerance: joins [0, 10)
        {"ts": 16.0, "key": "a", "v": 4},  # watermark 11: [0, 10) closes
        {"ts": 9.0, "key": "a", "v": 5},  # too late: its only window has closed
    ]
    out, late = run_window(tmp_path, events, "type: window.tumbling, size: 10, allowed_lateness: 5")
    assert [(r["window_start"], r["count"], r["v_sum"]) for r in out] == [
        (0.0, 2, 4.0),
        (10.0, 2, 6.0),
    ]
    assert late == [{"ts": 9.0, "key": "a", "v": 5}]


def test_late_events_are_counted_when_not_wired(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"ts": t, "v": 1}) + "\n" for t in (0, 20, 1))
    )
    text = """
version: 1
settings: {dead_letter: {path: null}}
pipelines:
  p:
    nodes:
      - {id: src, type: source.jsonl, path: in.jsonl, key: k}
      - {id: win, type: window.tumbling, size: 10}
      - {id: out, type: sink.jsonl, path: out.jsonl}
"""
    compiled = compile_spec(load_spec_text(text, tmp_path))
    run_compiled(compiled)
    assert compiled.stats[("p", "win")].discarded() == {"late": 1.0}
    value = compiled.metrics.registry.get_sample_value(
        "edgewax_window_late_events_total",
        {"pipeline": "p", "node": "win", "type": "window.tumbling"},
    )
    assert value == 1.0


def test_replays_are_deterministic(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n = 20_000
    ts = np.sort(rng.uniform(0, 3600, n)) + rng.normal(0, 3, n)  # out of order by a few s
    keys = rng.choice(["a", "b", "c", "d"], n)
    (tmp_path / "in.jsonl").write_text(
        "".join(
            json.dumps({"ts": float(t), "key": str(k), "v": float(v)}) + "\n"
            for t, k, v in zip(ts, keys, rng.normal(size=n))
        )
    )
    runs = []
    for i, (batch, workers) in enumerate([(1000, 1), (1000, 1), (1000, 1), (37, 2)]):
        out = f"out{i}.jsonl"
        (tmp_path / "p.yaml").write_text(f"""
version: 1
settings: {{dead_letter: {{path: null}}}}
pipelines:
  p:
    nodes:
      - {{id: src, type: source.jsonl, path: in.jsonl, batch_size: {batch}}}
      - {{id: win, type: window.sliding, size: 10s, hop: 5s, allowed_lateness: 1s,
          aggregate: {{mean: v, p90: v, std: v}}}}
      - {{id: out, type: sink.jsonl, path: {out}}}
      - {{id: late, type: sink.jsonl, inputs: [win.late], path: late{i}.jsonl}}
""")
        result = cli("run", "-q", "-w", str(workers), str(tmp_path / "p.yaml"))
        assert result.returncode == 0, result.stderr
        lines = sorted((tmp_path / out).read_text().splitlines())
        late = sorted((tmp_path / f"late{i}.jsonl").read_text().splitlines())
        runs.append((lines, late))
    assert runs[0][1], "the data should have some late events"
    assert runs[0] == runs[1] == runs[2]
    # Other batch boundaries and two workers: the same windows and late events; sums may
    # differ in the last bit (another summation order).
    assert runs[3][1] == runs[0][1]
    other = [json.loads(line) for line in runs[3][0]]
    first = [json.loads(line) for line in runs[0][0]]
    assert [(r["key"], r["window_start"], r["count"]) for r in other] == [
        (r["key"], r["window_start"], r["count"]) for r in first
    ]
    assert [r["v_std"] for r in other] == pytest.approx([r["v_std"] for r in first])


def _ctx() -> NodeContext:
    return NodeContext(
        "p",
        "s",
        "window.session",
        "p/s",
        Path("."),
        Path("."),
        Metrics().node("p", "s", "window.session"),
        DeadLetters(None),
        threading.Event(),
    )


def _session_logic(options: dict[str, Any]) -> Any:
    cls = node_types()["window.session"]
    node = cls(cls.Options.model_validate(options), _ctx())
    return node, node._logic(None)


def _cols(node: Any, times: list[float]) -> Columns:
    return Columns.of([{"ts": t, "key": "k"} for t in times], node.agg)


def test_closed_sessions_leave_no_state() -> None:
    node, logic = _session_logic({"gap": 10})
    (out,), discard = logic.on_batch([_cols(node, [0, 1, 2])])
    assert out == ([], []) and not discard
    for start in range(100, 10_000, 100):  # 99 sessions, each closed by the next
        (out,), _ = logic.on_batch([_cols(node, [start, start + 1])])
        assert len(out[0]) == 1
        assert len(logic.state.windows) == 1  # only the open session is kept
    (out,), discard = logic.on_eof()
    assert len(out[0]) == 1 and discard


def test_system_clock_session_discards_its_state(monkeypatch: pytest.MonkeyPatch) -> None:
    import edgewax.operators.windows.core as core

    now = [1000.0]
    monkeypatch.setattr(core.time, "time", lambda: now[0])
    node, logic = _session_logic({"gap": 10, "clock": "system"})
    (out,), discard = logic.on_batch([_cols(node, [995, 998])])
    assert not discard and len(logic.state.windows) == 1
    assert logic.notify_at().timestamp() == pytest.approx(1008.0)
    now[0] = 1009.0
    emitted, discard = logic.on_notify()
    assert discard and logic.state.windows == {}
    assert emitted[0][0][0]["count"] == 2
    # too old for any session that could still be open: late
    (out,), _ = logic.on_batch([_cols(node, [980])])
    assert len(out[1]) == 1


def test_state_snapshot_round_trips() -> None:
    import pickle

    node, logic = _session_logic({"gap": 10, "aggregate": {"p50": "ts", "histogram": "key"}})
    logic.on_batch([_cols(node, [0, 1, 2])])
    state = pickle.loads(pickle.dumps(logic.snapshot()))
    assert isinstance(state, WindowState)
    again = node._logic(state)
    (out,), _ = again.on_eof()
    assert out[0][0]["ts_p50"] == 1.0 and out[0][0]["key_histogram"] == {"k": 3}


def test_aggregates_all_kinds(tmp_path: Path) -> None:
    events = [
        {"ts": float(i), "key": "a", "v": float(i), "label": lab, "hot": i > 6}
        for i, lab in enumerate("xyxzxyxxyz")
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    text = """
version: 1
settings: {dead_letter: {path: null}}
pipelines:
  p:
    nodes:
      - {id: src, type: source.jsonl, path: in.jsonl}
      - id: win
        type: window.tumbling
        size: 100
        aggregate:
          count: "*"
          p50: v
          p90: v
          p99: v
          last: label
          top_k: {label: 2}
          histogram: label
          any: {any_hot: "hot"}
          all: {all_hot: "hot", all_small: "v < 100"}
      - {id: out, type: sink.jsonl, path: out.jsonl}
"""
    run_compiled(compile_spec(load_spec_text(text, tmp_path)))
    (row,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    values = np.arange(10.0)
    assert row["v_p50"] == pytest.approx(np.percentile(values, 50))
    assert row["v_p90"] == pytest.approx(np.percentile(values, 90))
    assert row["v_p99"] == pytest.approx(np.percentile(values, 99))
    assert row["label_last"] == "z"
    assert row["label_top"] == [["x", 5], ["y", 3]]
    assert row["label_histogram"] == {"x": 5, "y": 3, "z": 2}
    assert (row["any_hot"], row["all_hot"], row["all_small"]) == (True, False, True)
    assert row["ts"] == row["window_end"] == 100.0 and math.isclose(row["window_start"], 0.0)


def test_by_fields_and_bad_events(tmp_path: Path) -> None:
    events = [
        {"ts": 1.0, "key": "a", "site": "n", "line": 1, "v": 1},
        {"ts": 2.0, "key": "b", "site": "n", "line": 1, "v": 3},
        {"ts": 3.0, "key": "a", "site": "s", "line": 2, "v": "oops"},
        {"ts": 4.0, "key": "a", "site": "s", "line": 2},
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    text = """
version: 1
settings: {dead_letter: {path: dead.jsonl}, state_dir: .}
pipelines:
  p:
    nodes:
      - {id: src, type: source.jsonl, path: in.jsonl}
      - {id: win, type: window.tumbling, size: 10, by: [site, line], aggregate: {sum: v}}
      - {id: out, type: sink.jsonl, path: out.jsonl}
"""
    compiled = compile_spec(load_spec_text(text, tmp_path))
    run_compiled(compiled)
    (row,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert (row["key"], row["site"], row["line"], row["v_sum"]) == ("n|1", "n", 1, 4.0)
    assert compiled.stats[("p", "win")].discarded() == {"bad_value": 1.0, "missing_field": 1.0}
    assert len((tmp_path / "dead.jsonl").read_text().splitlines()) == 2


def test_system_clock_closes_windows_without_new_data() -> None:
    """A live source goes quiet: its window is emitted on time, not at the end of the stream."""
    import time as walltime
    from typing import ClassVar

    from edgewax.config.diagnostics import Mark
    from edgewax.config.spec import NodeSpec, PipelineSpec, Spec
    from edgewax.operators.base import NodeOptions, Source
    from edgewax.operators.sources.partitions import EventPartition, PartitionedSource
    from edgewax.testing import _QUIET, Bucket, _CaptureOptions, _CaptureSink

    class Quiet(EventPartition):
        """Three events now, then nothing for 2 s, then the end."""

        def __init__(self, ctx: NodeContext) -> None:
            super().__init__(ctx)
            self.t0 = walltime.time()
            self.sent = False

        def read(self, n: int) -> list[dict[str, Any]]:
            now = walltime.time()
            if not self.sent:
                self.sent = True
                return [{"ts": now, "key": "live", "v": i} for i in range(3)]
            if now - self.t0 > 2.0:
                raise StopIteration
            walltime.sleep(0.01)
            return []

        def tell(self) -> Any:
            return None

        def seek(self, position: Any) -> None:
            return None

    class QuietSource(Source):
        type_name = "testing.quiet"
        Options: ClassVar[type[NodeOptions]] = NodeOptions

        def source(self) -> PartitionedSource:
            return PartitionedSource({"q": lambda: Quiet(self.ctx)})

    bucket = Bucket()
    arrivals: list[float] = []

    class Timed(list):  # type: ignore[type-arg]
        def extend(self, items: Any) -> None:
            arrivals.append(walltime.time())
            super().extend(items)

    bucket.events = Timed()
    cls = node_types()["window.tumbling"]
    mark = Mark(1, 1)
    src = NodeSpec("src", "testing.quiet", QuietSource, NodeOptions(), [], mark, ["win"])
    options = cls.Options.model_validate({"size": 0.5, "clock": "system"})
    win = NodeSpec("win", cls.type_name, cls, options, ["src"], mark, ["out"])
    out = NodeSpec(
        "out", "testing.capture", _CaptureSink, _CaptureOptions(out=bucket), ["win"], mark
    )
    spec = Spec("<t>", Path("."), _QUIET, {"p": PipelineSpec("p", [src, win, out], mark)}, "")
    started = walltime.time()
    run_compiled(compile_spec(spec))
    ended = walltime.time()
    assert [e["count"] for e in bucket.events] == [3]
    assert arrivals[0] - started < 1.5 < ended - started  # before the source ended
