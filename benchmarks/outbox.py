"""Outbox cost: events/s through the durable outbox vs the same client sending directly.

Two far sides, both local and real: an HTTP server (stdlib ThreadingHTTPServer on 127.0.0.1) and a
mosquitto broker (QoS 1). For each, the same transport (`HttpTransport` / `MqttTransport`) is
driven in batches of 100 events:

- direct: encode + stamp each batch and `send` it, waiting for the acknowledgement (what
  `outbox: {enabled: false}` does);
- outbox: `Outbox.put(batch)` (committed to SQLite before it returns) while the drain thread
  sends; timed until the last event is acknowledged. Measured with `sync: full` (the default:
  fsync per accepted batch, survives power loss) and `sync: normal` (committed to the OS,
  survives SIGKILL).

Also reported: the put-only rate with the sink down (the pure cost of durability, per policy).
Runs alternate and the median is reported. Bar: outbox / direct >= 0.5 (with the default
`sync: full`, whose cost is this disk's fsync time per batch; `sync: normal` is reported too).

    python benchmarks/outbox.py                      # 20,000 events, 3 runs each
    python benchmarks/outbox.py --events 5000 --runs 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgewax.flows.deadletters import DeadLetters  # noqa: E402
from edgewax.metrics import Metrics  # noqa: E402
from edgewax.operators.base import NodeContext  # noqa: E402
from edgewax.operators.sinks.http import HttpSinkOptions, HttpTransport  # noqa: E402
from edgewax.operators.sinks.mqtt import MqttSinkOptions, MqttTransport  # noqa: E402
from edgewax.outbox import Item, Outbox, OutboxOptions, Transport, stamp  # noqa: E402
from tests.conftest import Mosquitto  # noqa: E402
from tests.http_server import HttpServer  # noqa: E402

BAR = 0.5
BATCH = 100


def events(n: int, run: int) -> list[list[dict[str, Any]]]:
    evs = [
        {"ts": 1e9 + i * 0.01, "key": f"dev-{i % 4}", "run": run, "temperature": 20.0 + i % 50}
        for i in range(n)
    ]
    return [evs[i : i + BATCH] for i in range(0, n, BATCH)]


def ctx(tmp: Path) -> NodeContext:
    m = Metrics()
    return NodeContext(
        "bench",
        "cloud",
        "sink",
        "bench/cloud",
        tmp,
        tmp,
        m.node("bench", "cloud", "sink"),
        DeadLetters(None),
    )


def direct(transport: Transport, batches: list[list[dict[str, Any]]]) -> float:
    scope = b"bench/cloud"
    t0 = time.perf_counter()
    for batch in batches:
        items = []
        for e in batch:
            _, payload = stamp(scope, e)
            items.append(Item(0, len(items), 0.0, transport.route(e), payload))
        out = transport.send(items)
        assert len(out.acked) == len(items), out.error
    return sum(map(len, batches)) / (time.perf_counter() - t0)


def outboxed(
    transport: Transport,
    batches: list[list[dict[str, Any]]],
    sync: str,
    delivered: Callable[[], int],
) -> float:
    with tempfile.TemporaryDirectory() as d:
        box = Outbox(ctx(Path(d)), OutboxOptions(sync=sync), transport)  # type: ignore[arg-type]
        start = delivered()
        n = sum(map(len, batches))
        t0 = time.perf_counter()
        for batch in batches:
            box.put(batch)
        while delivered() - start < n:
            time.sleep(0.001)
        rate = n / (time.perf_counter() - t0)
        box.close(0)
    return rate


def put_only(batches: list[list[dict[str, Any]]], sync: str) -> float:
    """Accept into the outbox with the sink down (connection refused): durability alone."""
    with tempfile.TemporaryDirectory() as d:
        t = HttpTransport(HttpSinkOptions(url="http://127.0.0.1:9/x", timeout=1))
        box = Outbox(ctx(Path(d)), OutboxOptions(sync=sync), t)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        for batch in batches:
            box.put(batch)
        rate = sum(map(len, batches)) / (time.perf_counter() - t0)
        box.close(0)
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    server = HttpServer().start()
    server.count_only = True
    tmp = Path(tempfile.mkdtemp())
    broker = Mosquitto(tmp)
    # Without TCP_NODELAY on the broker, each PUBACK round trip waits on Nagle + delayed ACK
    # (~40 ms): QoS 1 then runs at ~1,800 events/s whatever the client does.
    broker.conf.write_text(broker.conf.read_text() + "set_tcp_nodelay true\n")
    broker.start()

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    got = [0]
    sub = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: got.__setitem__(0, got[0] + 1)
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    sub.subscribe("bench/#", qos=0)
    time.sleep(0.3)

    def http_t() -> Transport:
        return HttpTransport(HttpSinkOptions(url=server.url, batch={"max_events": BATCH}))

    mqtt_opts = MqttSinkOptions(url=broker.url, topic="bench/{key}", qos=1, batch=BATCH)

    def mqtt_t() -> Transport:
        t = MqttTransport(mqtt_opts, "bench")
        t.connected.wait(5)  # type: ignore[attr-defined]
        return t

    results: dict[str, list[float]] = {}
    for run in range(args.runs):
        data = events(args.events, run)
        for name, make, delivered in (
            ("http", http_t, lambda: server.received),
            ("mqtt", mqtt_t, lambda: got[0]),
        ):
            t = make()
            results.setdefault(f"{name} direct", []).append(direct(t, data))
            t.close()
            for sync in ("full", "normal"):
                t = make()
                rate = outboxed(t, events(args.events, 1000 + run), sync, delivered)
                results.setdefault(f"{name} outbox sync={sync}", []).append(rate)
        for sync in ("full", "normal"):
            results.setdefault(f"put only (sink down) sync={sync}", []).append(
                put_only(events(args.events, 2000 + run), sync)
            )

    print(f"events: {args.events} per run, batches of {BATCH}, runs: {args.runs} (median shown)")
    med = {k: statistics.median(v) for k, v in results.items()}
    for k, v in med.items():
        print(f"  {k:<36} {v:>10,.0f} events/s")
    for name in ("http", "mqtt"):
        for sync in ("full", "normal"):
            r = med[f"{name} outbox sync={sync}"] / med[f"{name} direct"]
            ok = "meets" if r >= BAR else "MISSES"
            print(f"  {name}: outbox(sync={sync}) / direct = {r:.2f} ({ok} the bar >= {BAR})")
    sub.loop_stop()
    broker.stop()
    server.stop()


if __name__ == "__main__":
    main()
