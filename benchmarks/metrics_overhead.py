"""Metrics overhead: one pipeline run with no endpoint, and with the endpoint scraped hard.

Pipeline: N events from a JSON Lines file -> filter (about half pass) -> JSON Lines file, run in
this process through `edgewax.flows.runner.run` (1 worker). The "scraped" side serves `/metrics`
on 127.0.0.1, another process fetches `/metrics` and `/readyz` every `--every` seconds (default
0.1 s: 150x more often than a 15 s Prometheus scrape), and the live view's snapshot is taken once
a second in a thread, so the GIL is shared as it is on a box being watched. Runs
alternate (and swap which goes first each round); the median is reported.

The bar: scraped median / no-endpoint median <= 1.05.

    python benchmarks/metrics_overhead.py                       # 500,000 events, 3 runs each
    python benchmarks/metrics_overhead.py --events 200000 --runs 5

This is a benchmark, not a test: it always exits 0 (unless a side fails or counts differ).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from edgewax.config.spec import MetricsSettings, load_spec
from edgewax.flows.compiler import compile_spec
from edgewax.flows.runner import run
from edgewax.metrics.status import Snapshot, Tracker

BAR = 1.05

CONFIG = """\
version: 1
settings: {state_dir: state, dead_letter: {path: null}}
pipelines:
  bench:
    nodes:
      - {id: rec, type: source.jsonl, path: events.jsonl}
      - {id: hot, type: filter, where: "temperature > 37.5"}
      - {id: out, type: sink.jsonl, path: out.jsonl, max_bytes: 10GB}
"""


def make_input(folder: Path, n: int) -> None:
    rng = random.Random(7)
    with open(folder / "events.jsonl", "w") as f:
        for i in range(n):
            t = round(rng.uniform(25.0, 50.0), 2)
            f.write(
                json.dumps({"ts": 1_700_000_000 + i * 0.01, "key": f"s{i % 8}", "temperature": t})
            )
            f.write("\n")
    (folder / "p.yaml").write_text(CONFIG)


SCRAPER = """
import signal, sys, time, urllib.request
url, every = sys.argv[1], float(sys.argv[2])
count = 0
def done(*_):
    print(count)
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
while True:
    try:
        for path in ("/metrics", "/readyz"):
            with urllib.request.urlopen(url + path, timeout=5) as r:
                r.read()
        count += 1
    except OSError:
        time.sleep(0.01)  # not up yet
        continue
    time.sleep(every)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_run(folder: Path, scraped: bool, every: float) -> tuple[float, float, int, int]:
    """Wall and CPU seconds for one run, events out, and how many scrapes were served."""
    out = folder / "out.jsonl"
    if out.exists():
        out.unlink()
    compiled = compile_spec(load_spec(folder / "p.yaml"))
    port = free_port()
    settings = MetricsSettings(port=port) if scraped else None
    stop = threading.Event()

    def live_view() -> None:  # what the live view of `edgewax run` does, once a second
        tracker = Tracker()
        while not stop.wait(1.0):
            tracker.add(Snapshot.from_registry(compiled.metrics.registry))
            tracker.status()

    scraper = None
    viewer = threading.Thread(target=live_view, daemon=True)
    if scraped:
        # Another process, as Prometheus is: only the serving side is paid for here. Started
        # (and its interpreter up) before the clock starts; it waits for the port.
        scraper = subprocess.Popen(
            [sys.executable, "-c", SCRAPER, f"http://127.0.0.1:{port}", str(every)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        time.sleep(0.5)
    started, cpu = time.perf_counter(), time.process_time()
    if scraped:
        viewer.start()
    run(compiled, handle_signals=False, metrics=settings)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    stop.set()
    scrapes = 0
    if scraper is not None:
        viewer.join()
        scraper.terminate()
        scrapes = int(scraper.communicate()[0] or 0)
    sent = int(compiled.stats[("bench", "out")].sent._value.get())
    return seconds, cpu, sent, scrapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--every", type=float, default=0.1, help="seconds between scrapes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_input(folder, args.events)
        times: dict[str, list[float]] = {"no endpoint": [], "scraped": []}
        cpus: dict[str, list[float]] = {"no endpoint": [], "scraped": []}
        rounds: list[float] = []
        outs: set[int] = set()
        served = 0
        for i in range(args.runs):
            order = [False, True] if i % 2 == 0 else [True, False]
            got = {}
            for scraped in order:
                seconds, cpu, sent, scrapes = one_run(folder, scraped, args.every)
                side = "scraped" if scraped else "no endpoint"
                times[side].append(seconds)
                cpus[side].append(cpu)
                got[side] = seconds
                outs.add(sent)
                served += scrapes
            rounds.append(got["scraped"] / got["no endpoint"])
        if len(outs) != 1:
            raise SystemExit(f"the two sides wrote different counts: {outs}")
        base = statistics.median(times["no endpoint"])
        print(
            f"metrics overhead: {args.events:,} events, {args.runs} runs each, scrape every "
            f"{args.every}s ({served} scrapes served); {platform.python_version()}, "
            f"{os.cpu_count()} cpus"
        )
        head = f"{'side':<12} {'median s':>9} {'min s':>7} {'events/s':>10} {'cpu s':>7}"
        print(f"{head} {'ratio':>6}")
        for side, values in times.items():
            median = statistics.median(values)
            print(
                f"{side:<12} {median:>9.2f} {min(values):>7.2f} {args.events / median:>10,.0f} "
                f"{statistics.median(cpus[side]):>7.2f} {median / base:>6.3f}"
            )
        ratio = statistics.median(times["scraped"]) / base
        cpu_ratio = statistics.median(cpus["scraped"]) / statistics.median(cpus["no endpoint"])
        runs = "; ".join(f"{k} " + ", ".join(f"{v:.2f}" for v in vs) for k, vs in times.items())
        print(
            f"per-round ratio (median): {statistics.median(rounds):.3f}; "
            f"CPU ratio: {cpu_ratio:.3f}; runs (s): {runs}"
        )
        print(f"bar: scraped / no endpoint <= {BAR}: {'met' if ratio <= BAR else 'NOT met'}")


if __name__ == "__main__":
    main()
