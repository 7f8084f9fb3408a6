"""The `outbox:` options every remote sink takes, and the defaults they start from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edgewax.config.types import ByteSize, Duration
from edgewax.operators.base import NodeOptions
from edgewax.operators.transforms.expressions import ExpressionField

Aggregate = Literal["count", "sum", "mean", "min", "max", "first", "last"]


def _count_all() -> dict[Aggregate, list[str] | str]:
    return {"count": "*"}


class BackoffOptions(NodeOptions):
    """How long the outbox waits before it tries a failing sink again."""

    initial: Duration = Field(0.5, description="Wait after the first failure.")
    max: Duration = Field(60.0, description="Longest wait between two attempts.")
    multiplier: float = Field(2.0, ge=1.0, description="Each failure multiplies the wait by this.")
    jitter: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="Random share of the wait added or taken off (0.2: +-20%), so that many "
        "devices coming back at once do not retry in step.",
    )


class CompactOptions(NodeOptions):
    """Fold old backlog into per-window summaries during a long outage instead of dropping it."""

    after: Duration = Field(
        description="Events queued longer than this (while the sink fails) are compacted."
    )
    window: Duration = Field(
        60.0,
        gt=0,
        description="Summary window by event time `ts`, e.g. 1m: one summary per key and window.",
    )
    aggregate: dict[
        Literal["count", "sum", "mean", "min", "max", "first", "last"], list[str] | str
    ] = Field(
        default_factory=_count_all,
        description="What each summary holds: aggregate -> field or list of fields. A "
        "summary has `ts` (window start), `key`, `window_end`, `compacted: true` and "
        '`<field>_<aggregate>` per entry (`count: "*"` gives `count`). Non-numeric '
        "values are skipped by sum/mean/min/max.",
    )


class OutboxOptions(NodeOptions):
    """The durable store-and-forward queue in front of a remote sink (one SQLite file per sink)."""

    enabled: bool = Field(
        True,
        description="false sends each batch directly (retrying in the dataflow's thread, so a "
        "down sink stalls the pipeline) and keeps nothing on disk.",
    )
    max_bytes: ByteSize = Field(
        100_000_000, description="Most event bytes the queue holds (e.g. 50MB)."
    )
    max_age: Duration | None = Field(
        None,
        description="Events queued longer than this are dropped (reason `ttl`); null: "
        "kept until sent or pushed out by `max_bytes`.",
    )
    when_full: Literal["block", "drop_newest", "drop_oldest"] = Field(
        "drop_oldest",
        description="At `max_bytes`: `block` holds the pipeline until there is room, "
        "`drop_newest` drops the incoming events, `drop_oldest` drops the oldest queued ones "
        "(lowest priority first); drops count with reason `full`.",
    )
    order: Literal["oldest_first", "newest_first"] = Field(
        "oldest_first",
        description="Drain order within a priority: `newest_first` sends live data before "
        "backlog after an outage.",
    )
    priority: ExpressionField | None = Field(
        None,
        description="Events for which this expression is true (e.g. `severity == 'alert'`) are "
        "sent before all others.",
    )
    sync: Literal["full", "normal"] = Field(
        "full",
        description="`full` (default): each accepted batch is committed and fsynced before it "
        "counts as accepted (survives SIGKILL and power loss; one fsync per batch, see the "
        "README); `normal`: committed to the OS only (survives SIGKILL and crashes of the "
        "process; a power cut may lose the last second or so, never corrupts the queue) - for "
        "flash that must be spared or when throughput matters more.",
    )
    backoff: BackoffOptions = Field(
        default_factory=BackoffOptions, description="Retry waits for a failing sink."
    )
    drain_timeout: Duration = Field(
        5.0,
        description="On shutdown, how long the outbox may keep sending before it closes (what "
        "is left stays on disk for the next start).",
    )
    dedup_window: Duration = Field(
        3600.0,
        description="How long the ids of sent events are remembered, so that events replayed "
        "after a restart are not sent twice.",
    )
    dedup_max_ids: int = Field(
        1_000_000,
        ge=0,
        description="Most sent-event ids remembered (about 80 bytes of memory each); the "
        "oldest are forgotten first.",
    )
    compact: CompactOptions | None = Field(
        None, description="Fold old backlog into per-window summaries during a long outage."
    )

    @model_validator(mode="after")
    def _check(self) -> OutboxOptions:
        if self.backoff.max < self.backoff.initial:
            raise ValueError("backoff.max must be at least backoff.initial")
        return self
