"""`edgewax test`: run a pipeline's test cases against injected or recorded events.

A case is compiled by the ordinary compiler from the validated pipeline with overrides, never by a
second interpreter: injected events come from a list source that takes the place of a source (or of
a node's inputs), stubbed nodes become a fixed-output transform, every sink becomes a capture (so
nothing is written and nothing leaves: no network), and a capture is tapped onto every node an
expectation names. Sources run as fast as they can (`speed: 0`), sources with a `start` start at
the case's clock, and windows on the wall clock use the data's time, so a case gives the same
result on every run.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgewax.config.cases import Case, CaseInput, Expectation, as_time
from edgewax.config.diagnostics import ConfigError, Diagnostic, Mark
from edgewax.config.loader import YMap, load_yaml_text, read_text
from edgewax.config.spec import (
    DeadLetterSettings,
    NodeSpec,
    PipelineSpec,
    Spec,
    _Report,
    _unknown_keys,
    check_cases,
    load_spec,
    split_ref,
)
from edgewax.events import Event, encode, event_time
from edgewax.operators.base import NodeOptions, Transform
from edgewax.operators.sources.partitions import PartitionedSource
from edgewax.testing import (
    Bucket,
    _CaptureOptions,
    _CaptureSink,
    _ListOptions,
    _ListPartition,
    _ListSource,
)

TEST_FILE_SUFFIXES = ("_test.yaml", "_test.yml")
LIVE_SOURCES = ("source.mqtt",)


# -- the nodes a case swaps in ---------------------------------------------------------------


class _InjectPartition(_ListPartition):
    """A list partition that counts its events' JSON bytes as bytes in, and hands out copies
    (a case's events are reused by every run of it)."""

    def read(self, n: int) -> list[Event]:
        batch = super().read(n)
        self.ctx.stats.source_bytes.inc(sum(len(encode(e).encode("utf-8")) for e in batch))
        return [dict(e) for e in batch]


class InjectSource(_ListSource):
    """Injected test events; counts their JSON bytes as bytes in."""

    type_name = "test.inject"

    def source(self) -> PartitionedSource:
        events = self.options.events
        return PartitionedSource({"inject": lambda: _InjectPartition(self.ctx, events)})


class _StubOptions(NodeOptions):
    outputs: dict[str, Any] = {}
    drop: list[str] = []


class StubNode(Transform):
    """Sets fixed fields on every event (a model replaced in a test)."""

    type_name = "test.stub"
    Options: ClassVar[type[NodeOptions]] = _StubOptions

    def process(self, batch: list[Event]) -> list[Event]:
        drop = set(self.options.drop)
        outputs = self.options.outputs
        return [{**{k: v for k, v in e.items() if k not in drop}, **outputs} for e in batch]


# -- loading --------------------------------------------------------------------------------


@dataclasses.dataclass
class Suite:
    """The pipelines under test and their cases, each with the folder its recordings are in."""

    spec: Spec
    cases: list[tuple[Case, Path, str]]
    """(case, folder for recordings, file that holds it)"""


def is_test_file(path: Path) -> bool:
    return path.name.endswith(TEST_FILE_SUFFIXES)


def load_suite(path: Path, display: str | None = None) -> Suite:
    """The cases of a pipelines file (its `tests:`, `<stem>_test.yaml` beside it) or a test file."""
    file = display or str(path)
    if is_test_file(path):
        spec, cases = _load_test_file(path, file)
        return Suite(spec, [(c, path.resolve().parent, file) for c in cases])
    spec = load_spec(path, display=file)
    found = [(c, spec.base_dir, file) for c in spec.tests]
    stem = path.name.rsplit(".", 1)[0]
    for suffix in TEST_FILE_SUFFIXES:
        beside = path.with_name(stem + suffix)
        if beside.is_file():
            shown = str(Path(file).with_name(beside.name))
            _, cases = _load_test_file(beside, shown, spec)
            found += [(c, beside.resolve().parent, shown) for c in cases]
    if not found:
        raise ConfigError(
            [
                Diagnostic(
                    file,
                    Mark(1, 1),
                    "no test cases",
                    f"add `tests:` to the file or write {stem}_test.yaml beside it "
                    "(see docs/testing.md)",
                )
            ]
        )
    return Suite(spec, found)


def _load_test_file(path: Path, file: str, spec: Spec | None = None) -> tuple[Spec, list[Case]]:
    text = read_text(path, file)
    data = load_yaml_text(text, file, os.environ)
    report = _Report(file)
    if not isinstance(data, YMap) or "tests" not in data:
        report.add(
            getattr(data, "mark", Mark(1, 1)),
            "a test file is a mapping with `tests:` (and `config:`, the pipelines file)",
            "e.g. `config: pipelines.yaml` and `tests: [{name: ..., expect: [...]}]`",
        )
        raise ConfigError(report.items)
    _unknown_keys(report, data, ("config", "tests"), "keys of a test file")
    if spec is None:
        config = data.get("config", "pipelines.yaml")
        target = path.resolve().parent / str(config)
        shown = str(Path(file).parent / str(config))
        if not target.is_file():
            report.add(
                data.value_marks.get("config", data.mark),
                f"no pipelines file at `{config}`",
                "`config:` is relative to the test file's folder",
            )
            raise ConfigError(report.items)
        spec = load_spec(target, display=shown)
    cases = check_cases(report, data, spec.pipelines)
    if report.items:
        raise ConfigError(report.items)
    return spec, cases


# -- planning: the pipeline with a case's overrides ------------------------------------------


@dataclasses.dataclass
class Plan:
    pipeline: PipelineSpec
    captures: dict[str, Bucket]
    """what each expected node emitted (for a sink: received), by the expectation's `node`"""
    remote: list[str]
    """captures of remote sinks: what would have left the device"""
    sources: list[str]
    """ids of the nodes that read bytes in"""


class CaseError(Exception):
    """A case that cannot be run as written (exit code 2)."""


def _events(inp: CaseInput, case: Case, folder: Path) -> list[Event]:
    if inp.recording is not None:
        path = folder / inp.recording
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as err:
            raise CaseError(f"recording `{inp.recording}`: {err.strerror or err}") from None
        raw = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                msg = f"recording `{inp.recording}` line {n}: not JSON ({err.msg})"
                raise CaseError(msg) from None
            if not isinstance(value, dict):
                raise CaseError(f"recording `{inp.recording}` line {n}: not a JSON object")
            raw.append(value)
    else:
        raw = list(inp.events or [])
    start = event_time(case.start) if case.start is not None else 0.0
    out = []
    for i, e in enumerate(raw):
        ev: Event = {"key": "test", **e}
        ev["ts"] = as_time(e["ts"]) if "ts" in e else start + i * inp.every
        ev["key"] = str(ev["key"])
        for name, dtype in inp.arrays.items():
            if name in ev:
                ev[name] = np.asarray(ev[name], dtype=dtype)
        out.append(ev)
    return out


def plan(spec: Spec, case: Case, folder: Path) -> Plan:
    pipeline = spec.pipelines[case.pipeline or next(iter(spec.pipelines))]
    nodes: dict[str, NodeSpec] = {}
    injected: list[NodeSpec] = []
    inputs_at = {i.node: i for i in case.inputs}
    stubs = {s.node: s for s in case.stub}
    start = event_time(case.start) if case.start is not None else None
    for n in pipeline.nodes:
        if n.id in inputs_at:
            events = _events(inputs_at[n.id], case, folder)
            opts = _ListOptions(events=events)
            if n.cls.kind == "source":
                nodes[n.id] = NodeSpec(n.id, InjectSource.type_name, InjectSource, opts, [], n.mark)
                continue
            feeder = NodeSpec(f"{n.id}~in", InjectSource.type_name, InjectSource, opts, [], n.mark)
            injected.append(feeder)
            n = dataclasses.replace(n, inputs=[feeder.id])
        if n.id in stubs:
            s = stubs[n.id]
            opts2 = _StubOptions(outputs=s.outputs, drop=s.drop)
            n = dataclasses.replace(n, type_name=StubNode.type_name, cls=StubNode, options=opts2)
        elif n.cls.kind == "source":
            update: dict[str, Any] = {}
            fields = n.cls.Options.model_fields
            if "speed" in fields:
                update["speed"] = 0.0
            if "start" in fields and start is not None:
                update["start"] = start
            n = dataclasses.replace(n, options=n.options.model_copy(update=update))
        elif getattr(n.options, "clock", None) == "system":
            n = dataclasses.replace(n, options=n.options.model_copy(update={"clock": "data"}))
        nodes[n.id] = dataclasses.replace(n, consumers=[])

    order = [*injected, *nodes.values()]
    if case.inputs:
        # Only what is downstream of the injected events runs.
        roots = {n.id for n in injected} | {i for i in inputs_at if nodes[i].cls.kind == "source"}
        keep: set[str] = set(roots)
        for n in order:
            if any(split_ref(i)[0] in keep for i in n.inputs):
                keep.add(n.id)
        order = [
            dataclasses.replace(n, inputs=[i for i in n.inputs if split_ref(i)[0] in keep])
            for n in order
            if n.id in keep
        ]
    kept = {n.id for n in order}
    for n in order:
        if n.cls.kind == "source" and n.type_name in LIVE_SOURCES:
            raise CaseError(
                f"source `{n.id}` ({n.type_name}) reads a live broker; inject events at it "
                f"(`inputs: [{{node: {n.id}, recording: ...}}]`) so the test needs no network"
            )
        if n.type_name == "source.camera" and getattr(n.options, "file", None) is None:
            raise CaseError(
                f"source `{n.id}` reads a live camera; give it a `file` or inject events at it"
            )

    captures: dict[str, Bucket] = {}
    remote: list[str] = []
    final: list[NodeSpec] = []
    for n in order:
        if n.cls.kind == "sink":
            bucket = Bucket()
            captures[n.id] = bucket
            if getattr(n.cls, "remote", False):
                remote.append(n.id)
            n = dataclasses.replace(
                n, type_name="test.capture", cls=_CaptureSink, options=_CaptureOptions(out=bucket)
            )
        final.append(n)
    for exp in case.expect:
        ref = exp.node
        if split_ref(ref)[0] not in kept:
            raise CaseError(
                f"node `{split_ref(ref)[0]}` does not run in this case: it is not downstream of "
                "the injected events"
            )
        if ref in captures:
            continue
        bucket = Bucket()
        captures[ref] = bucket
        tap = ref.replace(".", "~") + "~expect"
        final.append(
            NodeSpec(
                tap, "test.capture", _CaptureSink, _CaptureOptions(out=bucket), [ref], Mark(1, 1)
            )
        )
    by_id = {n.id: n for n in final}
    for n in final:
        for i in n.inputs:
            by_id[split_ref(i)[0]].consumers.append(n.id)
    # A captured event must not change after the capture: nodes after a tapped one pass events on
    # as they are (filter, egress), so every node downstream of a tap reads its input as shared
    # (the compiler then copies before changing an event).
    tapped = {split_ref(e.node)[0] for e in case.expect}
    shared: set[str] = set()
    for n in final:
        if n.id in tapped or any(split_ref(i)[0] in shared for i in n.inputs):
            shared.add(n.id)
    for nid in shared:
        if len(by_id[nid].consumers) < 2:
            by_id[nid].consumers.append("~shared")
    sources = [n.id for n in final if n.cls.kind == "source"]
    return Plan(dataclasses.replace(pipeline, nodes=final), captures, remote, sources)


# -- checking ---------------------------------------------------------------------------------


def _num(v: Any) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))


def _plain(v: Any) -> Any:
    """JSON-like value of `v` (numpy arrays and scalars become lists and numbers)."""
    return json.loads(encode({"v": v}))["v"]


def _differs(expected: Any, actual: Any, tol: float) -> bool:
    if (
        isinstance(expected, dict)
        and "approx" in expected
        and set(expected)
        <= {
            "approx",
            "tolerance",
        }
    ):
        tol = float(expected.get("tolerance", tol))
        expected = expected["approx"]
    actual = _plain(actual)
    if _num(expected) and _num(actual):
        return not math.isclose(float(expected), float(actual), rel_tol=0.0, abs_tol=tol)
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) != len(actual) or any(
            _differs(e, a, tol) for e, a in zip(expected, actual)
        )
    if isinstance(expected, dict) and isinstance(actual, dict):
        return any(k not in actual or _differs(v, actual[k], tol) for k, v in expected.items())
    return bool(expected != actual)


def _mismatch(expected: dict[str, Any], actual: Event, tol: float) -> list[str]:
    out = []
    for k, v in expected.items():
        want = as_time(v) if k == "ts" and not _num(v) and not isinstance(v, dict) else v
        if k not in actual:
            out.append(f"`{k}` missing")
        elif _differs(want, actual[k], tol):
            out.append(f"`{k}`: expected {_show(v)}, got {_show(actual[k])}")
    return out


def _expected_value(name: str, v: Any) -> Any:
    """An expected value as emitted events hold it (`ts` as epoch seconds)."""
    if name == "ts" and not _num(v):
        return as_time(v)
    if isinstance(v, dict) and "approx" in v and set(v) <= {"approx", "tolerance"}:
        return v["approx"]
    return v


def _show(v: Any) -> str:
    text = json.dumps(_plain(v), separators=(",", ":"))
    return text if len(text) <= 80 else text[:77] + "..."


def _project(e: Event, keys: list[str]) -> str:
    """The event with only `keys` (all of it when it has none of them), as one JSON line."""
    picked = {k: e[k] for k in keys if k in e}
    return encode(picked or e)


def _diff(expected: list[dict[str, Any]], actual: list[Event]) -> list[str]:
    """A unified diff of the events, each shown only with the fields the case names."""
    keys = list(dict.fromkeys(k for e in expected for k in e)) or ["ts", "key"]
    want = [encode({k: _expected_value(k, v) for k, v in e.items()}) for e in expected]
    got = [_project(e, keys) for e in actual]
    lines = difflib.unified_diff(want, got, "expected", "emitted", lineterm="", n=2)
    return list(lines)


def check(exp: Expectation, events: list[Event], dropped: dict[str, int]) -> list[str]:
    """What is wrong with `events` for `exp`, as lines (empty: it holds)."""
    fails: list[str] = []
    n = len(events)
    if exp.none and n:
        fails.append(f"expected no events, got {n}")
        fails += ["  + " + _project(e, list(e))[:200] for e in events[:5]]
    if isinstance(exp.count, int) and n != exp.count:
        fails.append(f"expected {exp.count} events, got {n}")
    elif exp.count is not None and not isinstance(exp.count, int):
        lo, hi = exp.count.min, exp.count.max
        if (lo is not None and n < lo) or (hi is not None and n > hi):
            most = hi if hi is not None else "any"
            fails.append(f"expected {lo if lo is not None else 0}..{most} events, got {n}")
    for f in exp.fields:
        missing = sum(1 for e in events if f not in e)
        if missing:
            fails.append(f"field `{f}` missing in {missing} of {n} events")
    if exp.events is not None:
        # Event-time order: across keys, the order a run emits in depends on batching.
        events = sorted(
            events, key=lambda e: (e["ts"] if _num(e.get("ts")) else 0.0, str(e.get("key")))
        )
        bad = [
            (i, m)
            for i, (want, got) in enumerate(zip(exp.events, events))
            if (m := _mismatch(want, got, exp.tolerance))
        ]
        if bad or len(exp.events) != n:
            what = f"expected {len(exp.events)} events, got {n}" if len(exp.events) != n else ""
            for i, m in bad[:5]:
                fails.append(f"event {i}: " + "; ".join(m))
            if what:
                fails.append(what)
            fails += ["  " + line for line in _diff(exp.events, events)]
    for want in exp.contains or []:
        if not any(not _mismatch(want, e, exp.tolerance) for e in events):
            fails.append(f"no emitted event matches {_show(want)}")
    if exp.all is not None:
        for i, e in enumerate(events):
            try:
                ok = bool(exp.all.fn(e))
            except Exception as err:
                ok = False
                fails.append(f"event {i}: `{exp.all.source}` failed: {err}")
                break
            if not ok:
                fails.append(f"event {i} does not satisfy `{exp.all.source}`: {_show(e)[:200]}")
                break
    for reason, count in (exp.dropped or {}).items():
        got = dropped.get(reason, 0)
        if got != count:
            fails.append(f"expected {count} dropped as `{reason}`, got {got}")
    seen: set[str] = set()
    out = []
    for line in fails:  # the same count may be wrong for two conditions: say it once
        if line.startswith(" ") or line not in seen:
            out.append(line)
            seen.add(line)
    return out


@dataclasses.dataclass
class Result:
    case: Case
    pipeline: str
    failures: list[str]
    seconds: float
    bytes_in: int
    bytes_out: int
    remote: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def ratio(self) -> float | None:
        return self.bytes_out / self.bytes_in if self.bytes_in else None


def run_case(spec: Spec, case: Case, folder: Path) -> Result:
    """Compile the case's plan with the ordinary compiler, run it, check every expectation."""
    from edgewax.flows.compiler import compile_spec
    from edgewax.testing import run_compiled

    t0 = time.perf_counter()
    p = plan(spec, case, folder)
    quiet = spec.settings.model_copy(update={"dead_letter": DeadLetterSettings(path=None)})
    test_spec = dataclasses.replace(spec, settings=quiet, pipelines={p.pipeline.name: p.pipeline})
    compiled = compile_spec(test_spec)
    run_compiled(compiled)
    failures: list[str] = []
    for exp in case.expect:
        node = split_ref(exp.node)[0]
        stats = compiled.stats[(p.pipeline.name, node)]
        dropped = {r: int(v) for r, v in stats.discarded().items()}
        for line in check(exp, p.captures[exp.node].events, dropped):
            failures.append(f"{exp.node}: {line}" if not line.startswith(" ") else line)
    bytes_in = 0
    for sid in p.sources:
        child = compiled.stats[(p.pipeline.name, sid)]._source_bytes
        bytes_in += int(child._value.get()) if child is not None else 0
    bytes_out = sum(
        len(encode(e).encode("utf-8")) for sid in p.remote for e in p.captures[sid].events
    )
    took = time.perf_counter() - t0
    result = Result(case, p.pipeline.name, failures, took, bytes_in, bytes_out, bool(p.remote))
    bounds = case.bytes_ratio
    if bounds is not None:
        r = result.ratio
        if r is None:
            failures.append("bytes_ratio: no bytes came in")
        elif (bounds.min is not None and r < bounds.min) or (
            bounds.max is not None and r > bounds.max
        ):
            failures.append(
                f"bytes out / bytes in = {r:.6f} ({bytes_out} / {bytes_in}), "
                f"expected {bounds.min if bounds.min is not None else 0}.."
                f"{bounds.max if bounds.max is not None else 'any'}"
            )
    return result


def run_suite(
    suite: Suite, pattern: str | None = None, verbose: bool = False, out: Any = None
) -> int:
    """Run the cases (those whose name contains `pattern`), print like a test runner; exit code."""
    import sys

    out = out or sys.stdout
    t0 = time.perf_counter()
    results: list[Result] = []
    chosen = [c for c in suite.cases if pattern is None or pattern in c[0].name]
    try:
        for case, folder, _file in chosen:
            results.append(run_case(suite.spec, case, folder))
            r = results[-1]
            extra = ""
            if verbose and r.ratio is not None and r.remote:
                extra = f"  bytes out/in {r.ratio:.6f} ({r.bytes_out} / {r.bytes_in})"
            status = "PASS" if r.ok else "FAIL"
            print(f"{status}  {r.pipeline}: {case.name} ({r.seconds:.2f} s){extra}", file=out)
            for line in r.failures:
                print(f"      {line}", file=out)
    except CaseError as e:
        print(f"edgewax test: case `{case.name}` in {_file}: {e}", file=out)
        return 2
    passed = sum(r.ok for r in results)
    failed = len(results) - passed
    took = time.perf_counter() - t0
    print(f"{passed} passed, {failed} failed in {took:.1f} s", file=out)
    if not chosen:
        print(f"no case matches `{pattern}`", file=out)
        return 2
    return 1 if failed else 0


__all__ = ["Plan", "Result", "Suite", "check", "load_suite", "plan", "run_case", "run_suite"]
