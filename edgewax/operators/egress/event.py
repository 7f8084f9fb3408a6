"""`egress.event`: a condition that holds over time becomes `start`, `update` and `end` events."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from edgewax.config.types import Duration
from edgewax.events import Event
from edgewax.operators.base import BASE_FIELDS, FieldInfo, Fields, NodeOptions, Problem
from edgewax.operators.keyed import KeyedTransform
from edgewax.operators.registry import register
from edgewax.operators.transforms.expressions import ExpressionField


class EventOptions(NodeOptions):
    when: ExpressionField = Field(
        description='Condition of an incident, e.g. "anomaly_score > 0.8".'
    )
    min_duration: Duration = Field(
        0.0,
        description="How long the condition must hold (event time) before `start` is emitted; "
        "shorter incidents emit nothing.",
    )
    gap: Duration = Field(
        0.0,
        description="How long the condition may lapse without ending the incident (against "
        "flapping); 0 ends it at the first event where it is false.",
    )
    update_every: Duration | None = Field(
        None,
        description="While an incident goes on, emit an `update` at most this often; default: "
        "no updates.",
    )
    peak: list[str] = Field(
        [],
        description="Numeric fields whose greatest value during the incident is reported as "
        "`peak_<field>`.",
    )


@register
class IncidentEvents(KeyedTransform):
    """Turn a per-frame condition into incidents: `start`, `update` and `end` events per key.

    Each output has `event` (`start`/`update`/`end`), `started_at`, `duration` (seconds the
    condition held), `count` (events in the incident) and `peak_<field>`. Input events become
    these summaries; they are counted as `in_event` (inside an incident) or `condition_false`.

    >>> from edgewax.testing import run_node
    >>> scores = [0.1, 0.9, 0.95, 0.2, 0.9, 0.1, 0.1]
    >>> events = [{"ts": float(t), "s": s} for t, s in enumerate(scores)]
    >>> opts = {"when": "s > 0.8", "gap": "2s", "peak": ["s"]}
    >>> for e in run_node("egress.event", opts, events):
    ...     print(e["event"], e["ts"], e["duration"], e["count"], e["peak_s"])
    start 1.0 0.0 1 0.9
    end 6.0 3.0 3 0.95
    """

    type_name = "egress.event"
    Options: ClassVar[type[NodeOptions]] = EventOptions

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        from edgewax.operators.transforms.fields import _unknown_fields

        refs: list[tuple[tuple[str | int, ...], str]] = [
            (("when",), f) for f in sorted(options.when.fields)
        ]
        refs += [(("peak", i), f) for i, f in enumerate(options.peak)]
        return _unknown_fields(refs, fields_in, "unknown field")

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        out = dict(BASE_FIELDS)
        out.update(
            event=FieldInfo("str"),
            started_at=FieldInfo("float64"),
            duration=FieldInfo("float64"),
            count=FieldInfo("int64"),
        )
        out.update({f"peak_{f}": FieldInfo("float64") for f in options.peak})
        return out

    def prepare(self, event: Event) -> Any:
        return bool(self.options.when.fn(event)), [float(event[f]) for f in self.options.peak]

    def _emit(self, kind: str, ts: float, key: str, s: dict[str, Any]) -> Event:
        out = {
            "ts": ts,
            "key": key,
            "event": kind,
            "started_at": s["start"],
            "duration": s["last"] - s["start"],
            "count": s["count"],
        }
        out.update({f"peak_{f}": v for f, v in zip(self.options.peak, s["peaks"])})
        return out

    def step(self, state: Any, events: list[Event], prepared: list[Any]) -> tuple[Any, list[Event]]:
        o = self.options
        s: dict[str, Any] | None = state
        out: list[Event] = []
        absorbed = false = 0
        for e, (held, values) in zip(events, prepared):
            t = e["ts"]
            key = e["key"]
            lapse = t - s["last"] if s is not None else 0.0
            if s is not None and (lapse >= o.gap if not held else 0 < o.gap < lapse):
                if s["started"]:
                    out.append(self._emit("end", t, key, s))
                s = None
            if not held:
                if s is None:
                    false += 1
                else:
                    absorbed += 1
                continue
            absorbed += 1
            if s is None:
                s = {"start": t, "last": t, "count": 0, "peaks": values}
                s.update(started=False, updated=t)
            s["last"] = t
            s["count"] += 1
            s["peaks"] = [max(a, b) for a, b in zip(s["peaks"], values)]
            if not s["started"]:
                if t - s["start"] >= o.min_duration:
                    s["started"] = True
                    s["updated"] = t
                    out.append(self._emit("start", t, key, s))
            elif o.update_every is not None and t - s["updated"] >= o.update_every:
                s["updated"] = t
                out.append(self._emit("update", t, key, s))
        stats = self.ctx.stats
        if absorbed:
            stats.discard("in_event", absorbed)
        if false:
            stats.discard("condition_false", false)
        if s is not None:
            s["key"] = events[-1]["key"]
        return s, out

    def flush(self, state: Any) -> list[Event]:
        if state is None or not state["started"]:
            return []
        return [self._emit("end", state["last"], state["key"], state)]
