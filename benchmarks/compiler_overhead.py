"""Compiler overhead: one pipeline as edgewax YAML and as hand-written Bytewax, timed side by side.

Pipeline: N events from a JSON Lines file -> map (temp_f = temperature * 9 / 5 + 32) -> filter
(temp_f > 100, about half pass) -> JSON Lines file. Both sides run in this process on Bytewax's own
runtime entry (`cli_main`, 1 worker, 10 s epochs), so interpreter start-up and imports are left out
of both. Runs alternate (and swap which goes first each round) so machine noise hits both; the
median is reported.

The bar: edgewax-yaml median / hand-written median <= 1.05.

    python benchmarks/compiler_overhead.py                   # 1,000,000 events, 3 runs each
    python benchmarks/compiler_overhead.py --events 200000 --runs 5

This is a benchmark, not a test: it always exits 0 (unless a side fails or the outputs differ).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from importlib.metadata import version
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import bytewax.operators as op
from bytewax._bytewax import cli_main
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from edgewax.config.spec import load_spec
from edgewax.flows.compiler import compile_spec
from edgewax.flows.runner import run

Event = dict[str, Any]

BAR = 1.05
BATCH = 1000
THRESHOLD_F = 100
# Celsius range whose midpoint is 100 F (37.78 C), so about half the events pass the filter.
TEMP_C = (22.0, 53.56)
EPOCH = timedelta(seconds=10)


# --------------------------------------------------------------------------------------------
# Input data and the YAML side
# --------------------------------------------------------------------------------------------


def generate_input(path: Path, n: int, seed: int = 42) -> None:
    """Write `n` JSON lines: ts, key (8 sensors), temperature (C) and humidity."""
    rng = random.Random(seed)
    uniform = rng.uniform
    lo, hi = TEMP_C
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, n, 100_000):
            chunk = []
            for i in range(start, min(n, start + 100_000)):
                rec = {
                    "ts": 1700000000.0 + i * 0.001,
                    "key": f"sensor-{i % 8}",
                    "temperature": round(uniform(lo, hi), 2),
                    "humidity": round(uniform(20.0, 90.0), 1),
                }
                chunk.append(json.dumps(rec) + "\n")
            f.write("".join(chunk))


def write_yaml(path: Path, input_path: Path, output_path: Path) -> None:
    # json.dumps gives quoted strings YAML reads as they are (any characters in the temp path).
    path.write_text(
        f"""version: 1
settings: {{dead_letter: {{path: null}}}}
pipelines:
  bench:
    nodes:
      - {{id: src, type: source.jsonl, path: {json.dumps(str(input_path))}}}
      - {{id: f, type: map, set: {{temp_f: "temperature * 9 / 5 + 32"}}}}
      - {{id: hot, type: filter, where: "temp_f > {THRESHOLD_F}"}}
      - {{id: out, type: sink.jsonl, path: {json.dumps(str(output_path))}, mode: overwrite}}
""",
        encoding="utf-8",
    )


@dataclass(frozen=True)
class Timing:
    wall: float
    """Wall-clock seconds: what the bar is about."""
    cpu: float
    """CPU seconds of the whole process (all threads): less sensitive to other load."""
    compile: float = 0.0
    """Of `wall`, the seconds spent loading and compiling the YAML (edgewax only)."""


def run_edgewax(yaml_path: Path) -> Timing:
    """Load, compile and run the YAML pipeline."""
    c0, t0 = time.process_time(), time.perf_counter()
    spec = load_spec(yaml_path)
    compiled = compile_spec(spec)
    t1 = time.perf_counter()
    run(compiled, workers=1, handle_signals=False)
    return Timing(time.perf_counter() - t0, time.process_time() - c0, t1 - t0)


# --------------------------------------------------------------------------------------------
# The hand-written Bytewax side: the same work per event, written the idiomatic way
# --------------------------------------------------------------------------------------------


class _JsonlPartition(StatefulSourcePartition[Event, int]):
    """Batches of up to `batch_size` lines; each parsed, with `ts` a float and `key` a str."""

    def __init__(self, path: Path, batch_size: int, resume_state: int | None) -> None:
        self._f: BinaryIO = open(path, "rb")  # noqa: SIM115 - open for the partition's life
        if resume_state is not None:
            self._f.seek(resume_state)
        self._batch_size = batch_size

    def next_batch(self) -> list[Event]:
        loads = json.loads
        batch = []
        for line in islice(self._f, self._batch_size):
            e = loads(line)
            e["ts"] = float(e["ts"])
            e["key"] = str(e["key"])
            batch.append(e)
        if not batch:
            raise StopIteration
        return batch

    def snapshot(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        self._f.close()


class JsonlSource(FixedPartitionedSource[Event, int]):
    def __init__(self, path: Path, batch_size: int = BATCH) -> None:
        self._path = path
        self._batch_size = batch_size

    def list_parts(self) -> list[str]:
        return [self._path.name]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _JsonlPartition:
        return _JsonlPartition(self._path, self._batch_size, resume_state)


# Exactly what json.dumps(e, separators=(",", ":")) builds on every call, built once.
_dumps = json.JSONEncoder(separators=(",", ":")).encode


class _JsonlSinkPartition(StatelessSinkPartition[Event]):
    def __init__(self, path: Path) -> None:
        self._f: TextIO = open(path, "w", encoding="utf-8")  # noqa: SIM115

    def write_batch(self, items: list[Event]) -> None:
        self._f.write("".join([_dumps(e) + "\n" for e in items]))
        self._f.flush()  # as edgewax's sink does after each batch

    def close(self) -> None:
        self._f.close()


class JsonlSink(DynamicSink[Event]):
    def __init__(self, path: Path) -> None:
        self._path = path

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _JsonlSinkPartition:
        return _JsonlSinkPartition(self._path)


def add_temp_f(e: Event) -> Event:
    e["temp_f"] = e["temperature"] * 9 / 5 + 32
    return e


def handwritten_flow(input_path: Path, output_path: Path) -> Dataflow:
    flow = Dataflow("handwritten")
    s = op.input("src", flow, JsonlSource(input_path))
    s = op.map("f", s, add_temp_f)
    s = op.filter("hot", s, lambda e: e["temp_f"] > THRESHOLD_F)
    op.output("out", s, JsonlSink(output_path))
    return flow


def run_handwritten(input_path: Path, output_path: Path) -> Timing:
    c0, t0 = time.process_time(), time.perf_counter()
    flow = handwritten_flow(input_path, output_path)
    cli_main(flow, workers_per_process=1, epoch_interval=EPOCH)  # type: ignore[no-untyped-call]
    return Timing(time.perf_counter() - t0, time.process_time() - c0)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            n += chunk.count(b"\n")
    return n


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Side:
    name: str
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--events", type=int, default=1_000_000, help="input events (default 1M)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each side (default 3)")
    ap.add_argument(
        "--warmup", type=int, default=10_000, help="events for one untimed warm-up run (0: none)"
    )
    args = ap.parse_args(argv)

    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"bytewax {version('bytewax')}, edgewax {version('edgewax')}, "
        f"CPUs {os.cpu_count()}, {platform.platform()}"
    )

    with tempfile.TemporaryDirectory(prefix="edgewax-bench-") as tmp:
        d = Path(tmp)
        inp = d / "input.jsonl"
        out_yaml = d / "out-yaml.jsonl"
        out_hand = d / "out-hand.jsonl"
        yaml_path = d / "pipelines.yaml"

        t = time.perf_counter()
        generate_input(inp, args.events)
        print(
            f"input: {args.events:,} events, {inp.stat().st_size / 1e6:.1f} MB "
            f"(generated in {time.perf_counter() - t:.1f} s)"
        )
        write_yaml(yaml_path, inp, out_yaml)

        if args.warmup > 0:
            warm_in = d / "warm.jsonl"
            warm_yaml = d / "warm.yaml"
            generate_input(warm_in, min(args.warmup, args.events))
            write_yaml(warm_yaml, warm_in, d / "warm-yaml.jsonl")
            run_edgewax(warm_yaml)
            run_handwritten(warm_in, d / "warm-hand.jsonl")

        yaml_side, hand_side = Side("edgewax-yaml"), Side("hand-written")
        compile_times: list[float] = []

        def do_yaml() -> None:
            gc.collect()
            t = run_edgewax(yaml_path)
            yaml_side.times.append(t.wall)
            yaml_side.cpu.append(t.cpu)
            compile_times.append(t.compile)
            yaml_side.lines.append(count_lines(out_yaml))

        def do_hand() -> None:
            gc.collect()
            t = run_handwritten(inp, out_hand)
            hand_side.times.append(t.wall)
            hand_side.cpu.append(t.cpu)
            hand_side.lines.append(count_lines(out_hand))

        for i in range(args.runs):
            order = (do_yaml, do_hand) if i % 2 == 0 else (do_hand, do_yaml)
            for fn in order:
                fn()
            print(
                f"  run {i + 1}/{args.runs}: edgewax-yaml {yaml_side.times[-1]:.3f} s, "
                f"hand-written {hand_side.times[-1]:.3f} s",
                flush=True,
            )

        assert len(set(yaml_side.lines + hand_side.lines)) == 1, (
            f"output line counts differ: yaml {yaml_side.lines}, hand-written {hand_side.lines}"
        )
        same_bytes = sha256(out_yaml) == sha256(out_hand)
        assert same_bytes, "outputs differ byte-wise"
        out_lines = yaml_side.lines[0]

    print()
    print(
        f"output: {out_lines:,} lines on both sides ({out_lines / args.events:.1%} passed the "
        f"filter), byte-identical: {same_bytes}"
    )
    print(
        f"edgewax load+compile (in the edgewax time): median "
        f"{statistics.median(compile_times) * 1e3:.1f} ms"
    )
    print()
    header = (
        f"{'variant':<14} {'median s':>9} {'min s':>8} {'events/s':>12} {'cpu s':>7}   runs (s)"
    )
    print(header)
    print("-" * len(header))
    for side in (yaml_side, hand_side):
        med = statistics.median(side.times)
        runs = ", ".join(f"{x:.3f}" for x in side.times)
        print(
            f"{side.name:<14} {med:>9.3f} {min(side.times):>8.3f} "
            f"{args.events / med:>12,.0f} {statistics.median(side.cpu):>7.3f}   {runs}"
        )
    print("-" * len(header))
    ratio = statistics.median(yaml_side.times) / statistics.median(hand_side.times)
    cpu_ratio = statistics.median(yaml_side.cpu) / statistics.median(hand_side.cpu)
    print(
        f"ratio yaml/hand-written (median wall): {ratio:.3f}   bar <= {BAR:.2f}: "
        f"{'MET' if ratio <= BAR else 'NOT MET'}"
    )
    paired = statistics.median(y / h for y, h in zip(yaml_side.times, hand_side.times))
    print(
        f"for reference: median per-round ratio {paired:.3f} (rounds run both back to back), "
        f"median CPU ratio {cpu_ratio:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
