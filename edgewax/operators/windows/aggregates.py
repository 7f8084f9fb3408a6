"""What a window computes: the `aggregate:` option, and its vectorised per-window accumulators.

A batch of one key's events becomes columns once (`Columns`: numpy arrays of event time and of every
numeric field read); the window node gives every event a window id, and `partials` reduces each
column per window with numpy (`reduceat` over rows sorted by window). Each open window keeps one
`Accumulator`, into which these per-batch partials merge; variance merges with Chan's formula, so
`std` is exact whatever the batches were.

>>> agg = Aggregate(mean=["t"], max="t", p50="t")
>>> cols = Columns.of([{"ts": 1.0, "t": 2.0}, {"ts": 2.0, "t": 4.0}], agg)
>>> acc = Accumulator(agg)
>>> for part in partials(cols, np.zeros(2, dtype=np.int64), None, agg):
...     acc.merge(part[1])
>>> acc.result(agg)
{'count': 2, 't_mean': 3.0, 't_max': 4.0, 't_p50': 3.0}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
from pydantic import BeforeValidator, Field, WithJsonSchema

from edgewax.events import Event
from edgewax.operators.base import FieldInfo, Fields, NodeOptions, Problem
from edgewax.operators.transforms.expressions import ExpressionField

NUMERIC_OPS = ("sum", "mean", "min", "max", "std", "p50", "p90", "p99")
VALUE_OPS = ("first", "last")
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0}


def _names(value: Any) -> Any:
    """A field name or a list of them; one name stands for a list of one."""
    return [value] if isinstance(value, str) else value


FieldList = Annotated[
    list[str],
    BeforeValidator(_names),
    WithJsonSchema(
        {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    ),
]


def _count(value: Any) -> Any:
    return True if value == "*" else value


class Aggregate(NodeOptions):
    """What to compute over each window; each output is a field of the summary event."""

    count: Annotated[
        bool,
        BeforeValidator(_count),
        WithJsonSchema({"anyOf": [{"type": "boolean"}, {"const": "*"}]}),
    ] = Field(
        True, description='Emit `count`, the number of events in the window (`"*"` means true).'
    )
    sum: FieldList = Field([], description="Numeric fields to sum: `<field>_sum`.")
    mean: FieldList = Field([], description="Numeric fields to average: `<field>_mean`.")
    min: FieldList = Field([], description="Numeric fields' least value: `<field>_min`.")
    max: FieldList = Field([], description="Numeric fields' greatest value: `<field>_max`.")
    std: FieldList = Field(
        [], description="Numeric fields' population standard deviation: `<field>_std`."
    )
    p50: FieldList = Field([], description="Median of numeric fields: `<field>_p50`.")
    p90: FieldList = Field([], description="90th percentile (linear): `<field>_p90`.")
    p99: FieldList = Field([], description="99th percentile (linear): `<field>_p99`.")
    first: FieldList = Field(
        [], description="Value at the earliest event time (any type): `<field>_first`."
    )
    last: FieldList = Field(
        [], description="Value at the latest event time (any type): `<field>_last`."
    )
    top_k: dict[str, int] = Field(
        {},
        description="Label field -> k: the k most frequent values with their counts, "
        "`<field>_top: [[value, count], ...]` (ties by value).",
    )
    histogram: FieldList = Field(
        [], description="Label fields to count by value: `<field>_histogram: {value: count}`."
    )
    any: dict[str, ExpressionField] = Field(
        {}, description="Output name -> condition: true if it held for any event in the window."
    )
    all: dict[str, ExpressionField] = Field(
        {}, description="Output name -> condition: true if it held for every event in the window."
    )

    def numeric(self) -> list[str]:
        """Fields read as float64 columns."""
        return list(dict.fromkeys(f for op in NUMERIC_OPS for f in getattr(self, op)))

    def simple(self) -> bool:
        """Only count, sum, mean, min and max: no per-row values kept."""
        return not (
            self.std
            or self.p50
            or self.p90
            or self.p99
            or self.first
            or self.last
            or self.top_k
            or self.histogram
            or self.any
            or self.all
        )

    def labels(self) -> list[str]:
        return list(dict.fromkeys([*self.top_k, *self.histogram]))

    def values(self) -> list[str]:
        return list(dict.fromkeys([*self.first, *self.last]))

    def conditions(self) -> dict[str, Any]:
        return {**self.any, **self.all}

    def outputs(self, fields_in: Fields) -> dict[str, FieldInfo]:
        """The summary fields, with `first`/`last` keeping the raw-ness of their field."""
        out: dict[str, FieldInfo] = {}
        if self.count:
            out["count"] = FieldInfo("int64")
        for op in NUMERIC_OPS:
            for f in getattr(self, op):
                out[f"{f}_{op}"] = FieldInfo("float64")
        for op in VALUE_OPS:
            for f in getattr(self, op):
                known = fields_in.get(f) if fields_in is not None else None
                out[f"{f}_{op}"] = known or FieldInfo()
        for f in self.top_k:
            out[f"{f}_top"] = FieldInfo()
        for f in self.histogram:
            out[f"{f}_histogram"] = FieldInfo()
        for name in self.conditions():
            out[name] = FieldInfo("bool")
        return out

    def check(self, fields_in: Fields) -> list[Problem]:
        problems: list[Problem] = []
        names = list(self.outputs(None))
        for name in dict.fromkeys(names):
            if names.count(name) > 1:
                problems.append(
                    Problem(("aggregate",), f"two aggregates are named `{name}`", "rename one")
                )
        for k_field, k in self.top_k.items():
            if k < 1:
                problems.append(
                    Problem(("aggregate", "top_k", k_field), "k must be at least 1", None)
                )
        if fields_in is None:
            return problems
        refs: list[tuple[tuple[str | int, ...], str]] = []
        for op in (*NUMERIC_OPS, *VALUE_OPS, "histogram"):
            refs += [(("aggregate", op), f) for f in getattr(self, op)]
        refs += [(("aggregate", "top_k", f), f) for f in self.top_k]
        for kind in ("any", "all"):
            for out, e in getattr(self, kind).items():
                refs += [(("aggregate", kind, out), f) for f in sorted(e.fields)]
        from edgewax.operators.transforms.fields import _unknown_fields

        problems += _unknown_fields(refs, fields_in, "aggregate reads unknown field")
        for op in NUMERIC_OPS:
            for f in getattr(self, op):
                info = fields_in.get(f)
                if info is not None and info.shape:
                    problems.append(
                        Problem(
                            ("aggregate", op),
                            f"`{f}` is an array {info.shape}, not a number",
                            "aggregate a number computed from it (e.g. with `map`)",
                        )
                    )
        return problems


@dataclass
class Columns:
    """One key's events of one batch as columns; the events are kept for the `late` output."""

    batch: list[Event]
    ts: np.ndarray[Any, Any]
    numeric: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)
    values: dict[str, list[Any]] = field(default_factory=dict)
    labels: dict[str, list[str]] = field(default_factory=dict)
    conditions: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)
    rows: np.ndarray[Any, Any] | None = None
    """Which of `batch` these columns are (None: all), so a split costs no per-event work."""

    @property
    def events(self) -> list[Event]:
        if self.rows is None:
            return self.batch
        batch = self.batch
        return [batch[i] for i in self.rows.tolist()]

    def __getstate__(self) -> dict[str, Any]:
        # Between workers, ship only this group's events, not the whole batch.
        state = dict(self.__dict__)
        state["batch"], state["rows"] = self.events, None
        return state

    @classmethod
    def of(cls, events: list[Event], agg: Aggregate) -> Columns:
        """Read the columns; raises (KeyError, ValueError, TypeError) on a bad event."""
        n = len(events)
        ts = np.fromiter([e["ts"] for e in events], np.float64, n)
        cols = cls(events, ts)
        for f in agg.numeric():
            cols.numeric[f] = np.fromiter([e[f] for e in events], np.float64, n)
        for f in agg.values():
            cols.values[f] = [e[f] for e in events]
        for f in agg.labels():
            cols.labels[f] = [str(e[f]) for e in events]
        for name, expr in agg.conditions().items():
            fn = expr.fn
            cols.conditions[name] = np.fromiter([bool(fn(e)) for e in events], np.bool_, n)
        return cols

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, index: np.ndarray[Any, Any]) -> Columns:
        """The rows at `index`, e.g. one group's rows of a whole batch's columns."""
        rows = index if self.rows is None else self.rows[index]
        listed = index.tolist() if self.values or self.labels else []
        return Columns(
            self.batch,
            self.ts[index],
            {f: a[index] for f, a in self.numeric.items()},
            {f: [v[i] for i in listed] for f, v in self.values.items()},
            {f: [v[i] for i in listed] for f, v in self.labels.items()},
            {f: a[index] for f, a in self.conditions.items()},
            rows,
        )


@dataclass
class Partial:
    """One window's share of one batch."""

    n: int
    ts_min: float
    ts_max: float
    sums: dict[str, float]
    m2: dict[str, float]
    mins: dict[str, float]
    maxs: dict[str, float]
    samples: dict[str, np.ndarray[Any, Any]]
    first: dict[str, tuple[float, Any]]
    last: dict[str, tuple[float, Any]]
    labels: dict[str, Counter[str]]
    anys: dict[str, bool]
    alls: dict[str, bool]


def _one_window(cols: Columns, agg: Aggregate) -> Partial:
    """All of `cols` in one window, for count/sum/mean/min/max only: the hot path of a tumbling
    window over in-order data, a handful of numpy reductions per group and batch."""
    ts = cols.ts
    sums, mins, maxs = {}, {}, {}
    for f, x in cols.numeric.items():
        if f in agg.sum or f in agg.mean:
            sums[f] = float(x.sum())
        if f in agg.min:
            mins[f] = float(x.min())
        if f in agg.max:
            maxs[f] = float(x.max())
    return Partial(
        len(ts), float(ts.min()), float(ts.max()), sums, {}, mins, maxs, {}, {}, {}, {}, {}, {}
    )


def partials(
    cols: Columns, window: np.ndarray[Any, Any], rows: np.ndarray[Any, Any] | None, agg: Aggregate
) -> Iterator[tuple[int, Partial]]:
    """Per window id: the partial aggregate of `rows` of `cols` (row i is in window[i]);
    `rows` None means every row, in order."""
    if len(window) == 0:
        return
    if len(window) > 1 and bool(np.any(window[1:] < window[:-1])):
        order = np.argsort(window, kind="stable")
        window = window[order]
        rows = order if rows is None else rows[order]
    whole = rows is None
    if whole and window[0] == window[-1] and agg.simple():
        yield int(window[0]), _one_window(cols, agg)
        return
    if rows is None:
        rows = np.arange(len(window))
    n = len(window)
    if window[0] == window[-1]:  # one window (the common case for tumbling windows)
        starts: np.ndarray[Any, Any] = np.zeros(1, dtype=np.int64)
        ends: np.ndarray[Any, Any] = np.array([n])

        def red(ufunc: Any, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            return np.array([ufunc.reduce(x)])
    else:
        change = np.flatnonzero(window[1:] != window[:-1]) + 1
        starts = np.concatenate(([0], change))
        ends = np.concatenate((change, [n]))

        def red(ufunc: Any, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            return ufunc.reduceat(x, starts)  # type: ignore[no-any-return]

    counts = ends - starts
    ts = cols.ts if whole else cols.ts[rows]
    ts_min = red(np.minimum, ts)
    ts_max = red(np.maximum, ts)
    sums: dict[str, np.ndarray[Any, Any]] = {}
    m2: dict[str, np.ndarray[Any, Any]] = {}
    mins: dict[str, np.ndarray[Any, Any]] = {}
    maxs: dict[str, np.ndarray[Any, Any]] = {}
    samples: dict[str, np.ndarray[Any, Any]] = {}
    need_sum = {*agg.sum, *agg.mean, *agg.std}
    need_min = set(agg.min)
    need_max = set(agg.max)
    need_samples = {*agg.p50, *agg.p90, *agg.p99}
    for f, column in cols.numeric.items():
        x = column if whole else column[rows]
        if f in need_sum:
            s = red(np.add, x)
            sums[f] = s
            if f in agg.std:
                mean = np.repeat(s / counts, counts)
                m2[f] = red(np.add, (x - mean) ** 2)
        if f in need_min:
            mins[f] = red(np.minimum, x)
        if f in need_max:
            maxs[f] = red(np.maximum, x)
        if f in need_samples:
            samples[f] = x
    anys = {n: red(np.logical_or, cols.conditions[n][rows]) for n in agg.any}
    alls = {n: red(np.logical_and, cols.conditions[n][rows]) for n in agg.all}
    # Row order within a window is arrival order (stable sort): ties in time go to arrival.
    for g, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
        r = rows[a:b]
        first = {}
        last = {}
        if agg.first or agg.last:
            wts = ts[a:b]
            i_first = int(r[int(np.argmin(wts))])
            i_last = int(r[len(wts) - 1 - int(np.argmax(wts[::-1]))])
            for f in agg.first:
                first[f] = (float(cols.ts[i_first]), cols.values[f][i_first])
            for f in agg.last:
                last[f] = (float(cols.ts[i_last]), cols.values[f][i_last])
        labels = {}
        for f, values in cols.labels.items():
            labels[f] = Counter([values[i] for i in r.tolist()])
        yield (
            int(window[a]),
            Partial(
                n=int(counts[g]),
                ts_min=float(ts_min[g]),
                ts_max=float(ts_max[g]),
                sums={f: float(v[g]) for f, v in sums.items()},
                m2={f: float(v[g]) for f, v in m2.items()},
                mins={f: float(v[g]) for f, v in mins.items()},
                maxs={f: float(v[g]) for f, v in maxs.items()},
                samples={f: v[a:b] for f, v in samples.items()},
                first=first,
                last=last,
                labels=labels,
                anys={n: bool(v[g]) for n, v in anys.items()},
                alls={n: bool(v[g]) for n, v in alls.items()},
            ),
        )


class Accumulator:
    """One open window's running aggregate (picklable, for Bytewax snapshots)."""

    __slots__ = (
        "alls",
        "anys",
        "first",
        "labels",
        "last",
        "m2",
        "maxs",
        "mins",
        "n",
        "samples",
        "sums",
        "ts_max",
        "ts_min",
    )

    def __init__(self, agg: Aggregate) -> None:
        self.n = 0
        self.ts_min = np.inf
        self.ts_max = -np.inf
        self.sums: dict[str, float] = {}
        self.m2: dict[str, float] = {}
        self.mins: dict[str, float] = {}
        self.maxs: dict[str, float] = {}
        self.samples: dict[str, list[np.ndarray[Any, Any]]] = {}
        self.first: dict[str, tuple[float, Any]] = {}
        self.last: dict[str, tuple[float, Any]] = {}
        self.labels: dict[str, Counter[str]] = {}
        self.anys: dict[str, bool] = {}
        self.alls: dict[str, bool] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {s: getattr(self, s) for s in self.__slots__}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)

    def merge(self, p: Partial | Accumulator) -> None:
        n0, n1 = self.n, p.n
        if n1 == 0:
            return
        self.ts_min = min(self.ts_min, p.ts_min)
        self.ts_max = max(self.ts_max, p.ts_max)
        for f, s in p.sums.items():
            s0 = self.sums.get(f)
            if s0 is None or n0 == 0:
                self.sums[f] = s
                if f in p.m2:
                    self.m2[f] = p.m2[f]
                continue
            if f in p.m2:
                delta = s / n1 - s0 / n0
                self.m2[f] = self.m2[f] + p.m2[f] + delta * delta * n0 * n1 / (n0 + n1)
            self.sums[f] = s0 + s
        for f, v in p.mins.items():
            self.mins[f] = min(self.mins.get(f, v), v)
        for f, v in p.maxs.items():
            self.maxs[f] = max(self.maxs.get(f, v), v)
        for f, arr in p.samples.items():
            if isinstance(arr, list):
                self.samples.setdefault(f, []).extend(arr)
            else:
                self.samples.setdefault(f, []).append(arr)
        for f, (t, v) in p.first.items():
            if f not in self.first or t < self.first[f][0]:
                self.first[f] = (t, v)
        for f, (t, v) in p.last.items():
            if f not in self.last or t >= self.last[f][0]:
                self.last[f] = (t, v)
        for f, c in p.labels.items():
            self.labels.setdefault(f, Counter()).update(c)
        for name, b in p.anys.items():
            self.anys[name] = self.anys.get(name, False) or b
        for name, b in p.alls.items():
            self.alls[name] = self.alls.get(name, True) and b
        self.n = n0 + n1

    def result(self, agg: Aggregate) -> dict[str, Any]:
        """The summary fields (plain Python values, so any sink can encode them)."""
        n = self.n
        out: dict[str, Any] = {}
        if agg.count:
            out["count"] = n
        for f in agg.sum:
            out[f"{f}_sum"] = self.sums[f]
        for f in agg.mean:
            out[f"{f}_mean"] = self.sums[f] / n
        for f in agg.min:
            out[f"{f}_min"] = self.mins[f]
        for f in agg.max:
            out[f"{f}_max"] = self.maxs[f]
        for f in agg.std:
            out[f"{f}_std"] = float(np.sqrt(max(self.m2[f], 0.0) / n))
        for op, q in PERCENTILES.items():
            for f in getattr(agg, op):
                values = np.concatenate(self.samples[f])
                out[f"{f}_{op}"] = float(np.percentile(values, q))
        for f in agg.first:
            out[f"{f}_first"] = self.first[f][1]
        for f in agg.last:
            out[f"{f}_last"] = self.last[f][1]
        for f, k in agg.top_k.items():
            ranked = sorted(self.labels[f].items(), key=lambda kv: (-kv[1], kv[0]))
            out[f"{f}_top"] = [[label, c] for label, c in ranked[:k]]
        for f in agg.histogram:
            out[f"{f}_histogram"] = dict(sorted(self.labels[f].items()))
        out.update(self.anys)
        out.update(self.alls)
        return out


def summary(
    acc: Accumulator, agg: Aggregate, key: str, start: float, end: float, by: Mapping[str, Any]
) -> Event:
    """The event a closed window emits: `ts` = `window_end`."""
    return {
        "ts": end,
        "key": key,
        **by,
        "window_start": start,
        "window_end": end,
        **acc.result(agg),
    }
