"""The Prometheus metrics every node shares, so one dashboard fits any pipeline.

The compiler binds one `NodeStats` per node; nodes count per batch (one `inc(n)` a batch, never
one an item), which keeps counting off the profile. Every family is listed, with its labels, in the
README's metrics reference; `edgewax.metrics.server` serves them, `edgewax.metrics.status` reads
them back for the live view and `edgewax top`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.metrics import MetricWrapperBase

# The `*_created` series double every counter and histogram for a start time nobody graphs
# (`process_start_time_seconds` says it once); this is process-wide, like the registry's use.
disable_created_metrics()  # type: ignore[no-untyped-call]

NODE_LABELS = ("pipeline", "node", "type")

Kind = Literal["counter", "gauge", "histogram"]
_KINDS: dict[str, type[MetricWrapperBase]] = {
    "counter": Counter,
    "gauge": Gauge,
    "histogram": Histogram,
}


class Metrics:
    """The metric families of one run, in their own registry (a test may build many runs)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "edgewax_node_received_events", "Events that reached a node.", NODE_LABELS, registry=r
        )
        self.sent = Counter(
            "edgewax_node_sent_events",
            "Events a node passed on (or wrote, for a sink).",
            NODE_LABELS,
            registry=r,
        )
        self.discarded = Counter(
            "edgewax_node_discarded_events",
            "Events a node dropped, by reason.",
            (*NODE_LABELS, "reason"),
            registry=r,
        )
        self.errors = Counter(
            "edgewax_node_errors",
            "Events a node failed on; each is dead-lettered.",
            NODE_LABELS,
            registry=r,
        )
        self.source_bytes = Counter(
            "edgewax_source_bytes",
            "Bytes read by sources (lines, frames, samples, messages).",
            NODE_LABELS,
            registry=r,
        )
        self.sink_bytes = Counter(
            "edgewax_sink_bytes", "Bytes written by sinks.", NODE_LABELS, registry=r
        )
        self.dead_letters = Counter(
            "edgewax_dead_letters",
            "Events dead-lettered (kept in the dead-letter file, if one is set).",
            ("pipeline",),
            registry=r,
        )
        self.up = Gauge("edgewax_up", "1 while the pipeline runs.", ("pipeline",), registry=r)
        self.build_info = Gauge(
            "edgewax_build_info",
            "Always 1: the edgewax version and the sha256 of the config file's text.",
            ("version", "config_sha256"),
            registry=r,
        )
        self.node_info = Gauge(
            "edgewax_node_info",
            "Always 1: one series per node, with its kind (source, transform, sink).",
            (*NODE_LABELS, "kind"),
            registry=r,
        )
        self.last_error = Gauge(
            "edgewax_node_last_error_timestamp_seconds",
            "When a node last dead-lettered an event, by reason (epoch seconds).",
            (*NODE_LABELS, "reason"),
            registry=r,
        )
        self.source_progress = Gauge(
            "edgewax_source_progress_ratio",
            "How far a finite source (a file replay, a counted stream) has got, 0 to 1.",
            NODE_LABELS,
            registry=r,
        )
        # CPU, resident memory, open files: what an edge box's operator checks first.
        ProcessCollector(registry=r)
        self._families: dict[str, tuple[Kind, tuple[str, ...], MetricWrapperBase]] = {}
        self._lock = threading.Lock()

    def family(
        self,
        kind: Kind,
        name: str,
        doc: str,
        labels: Sequence[str] = NODE_LABELS,
        **options: Any,
    ) -> Any:
        """The metric family `name`, made on first use (node types add their own families here).

        Asking again with the same kind and labels returns the same family; anything else is a
        programming error. `options` go to prometheus-client (e.g. `buckets` for a histogram).
        """
        labels = tuple(labels)
        with self._lock:
            known = self._families.get(name)
            if known is None:
                fam = _KINDS[kind](name, doc, labels, registry=self.registry, **options)
                self._families[name] = (kind, labels, fam)
                return fam
        have_kind, have_labels, fam = known
        if (have_kind, have_labels) != (kind, labels):
            raise ValueError(
                f"metric {name} is a {have_kind}{list(have_labels)}, not a {kind}{list(labels)}"
            )
        return fam

    def node(self, pipeline: str, node: str, type_name: str) -> NodeStats:
        return NodeStats(self, (pipeline, node, type_name))


class NodeStats:
    """The counters of one node, with their label children bound once."""

    def __init__(self, metrics: Metrics, labels: tuple[str, str, str]) -> None:
        self._metrics = metrics
        self.labels = labels
        self.received = metrics.received.labels(*labels)
        self.sent = metrics.sent.labels(*labels)
        self.errors = metrics.errors.labels(*labels)
        self.dead_letters = metrics.dead_letters.labels(labels[0])
        self._discarded: dict[str, Counter] = {}
        self._source_bytes: Counter | None = None
        self._sink_bytes: Counter | None = None
        self._lock = threading.Lock()

    # Made on first use, so that only sources show `edgewax_source_bytes_total` (and only sinks
    # the sink bytes): a series that is always 0 for most nodes is noise on every scrape.
    @property
    def source_bytes(self) -> Counter:
        if self._source_bytes is None:
            self._source_bytes = self._metrics.source_bytes.labels(*self.labels)
        return self._source_bytes

    @property
    def sink_bytes(self) -> Counter:
        if self._sink_bytes is None:
            self._sink_bytes = self._metrics.sink_bytes.labels(*self.labels)
        return self._sink_bytes

    def error_seen(self, reason: str) -> None:
        """Stamp the time of this node's latest dead letter (the live view's `last error`)."""
        self._metrics.last_error.labels(*self.labels, reason).set(time.time())

    def progress(self) -> Gauge:
        """This node's `edgewax_source_progress_ratio` (finite sources set it, 0 to 1)."""
        return self._metrics.source_progress.labels(*self.labels)

    def discard(self, reason: str, n: int = 1) -> None:
        """Count `n` events dropped for `reason` (a short snake_case word)."""
        child = self._discarded.get(reason)
        if child is None:
            with self._lock:
                child = self._metrics.discarded.labels(*self.labels, reason)
                self._discarded[reason] = child
        child.inc(n)

    def _child(self, kind: Kind, name: str, doc: str, labels: dict[str, str], **kw: Any) -> Any:
        fam = self._metrics.family(kind, name, doc, (*NODE_LABELS, *labels), **kw)
        return fam.labels(*self.labels, *labels.values())

    def counter(self, name: str, doc: str, **labels: str) -> Counter:
        """This node's child of counter family `name` (extra labels by keyword, same every call).

        >>> stats = Metrics().node("p", "cam", "source.camera")
        >>> skipped = stats.counter("edgewax_frames_skipped", "Frames skipped.", reason="latest")
        >>> skipped.inc(3)
        >>> skipped._value.get()
        3.0
        """
        return self._child("counter", name, doc, labels)  # type: ignore[no-any-return]

    def gauge(self, name: str, doc: str, **labels: str) -> Gauge:
        """This node's child of gauge family `name`."""
        return self._child("gauge", name, doc, labels)  # type: ignore[no-any-return]

    def histogram(
        self, name: str, doc: str, buckets: Sequence[float] | None = None, **labels: str
    ) -> Histogram:
        """This node's child of histogram family `name` (`buckets` fixed by the first call)."""
        kw = {"buckets": tuple(buckets)} if buckets is not None else {}
        return self._child("histogram", name, doc, labels, **kw)  # type: ignore[no-any-return]

    def discarded(self) -> dict[str, float]:
        """Discards so far by reason (for summaries and tests)."""
        return {r: c._value.get() for r, c in self._discarded.items()}
