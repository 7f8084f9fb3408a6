"""`signal.zscore`: how unusual each value is against its key's running mean and spread."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from edgewax.events import Event
from edgewax.operators.base import FieldInfo, Fields, NodeOptions, Problem
from edgewax.operators.keyed import KeyedTransform
from edgewax.operators.registry import register
from edgewax.operators.transforms.fields import _unknown_fields


class ZScoreOptions(NodeOptions):
    fields: list[str] = Field(
        min_length=1, description="Numeric fields to score, e.g. [heart_rate]."
    )
    method: Literal["running", "ewma"] = Field(
        "running",
        description="`running`: mean and std of every value the key has had (Welford's exact "
        "running moments, computed a batch at a time); `ewma`: exponentially weighted mean and "
        "variance that forget with `alpha`, for slowly drifting signals.",
    )
    alpha: float = Field(
        0.05, gt=0, lt=1, description="EWMA weight of each new value (`ewma` only)."
    )
    min_count: int = Field(
        10, ge=2, description="Values a key must have seen before it is scored; until then z is 0."
    )
    suffix: str = Field("_z", description="Output field name: the input field plus this.")


@register
class SignalZScore(KeyedTransform):
    """Running z-score per key: (value - mean) / std over the values seen before it.

    Each value is scored against the statistics of the key's earlier values (so a spike does not
    dampen its own score), then folded into them. Missing or non-numeric values are dead-lettered.

    >>> from edgewax.testing import run_node
    >>> out = run_node("signal.zscore", {"fields": ["x"], "min_count": 2},
    ...                [{"x": v} for v in [1.0, 3.0, 1.0, 3.0, 12.0]])
    >>> [round(e["x_z"], 2) for e in out]
    [0.0, 0.0, -1.0, 1.41, 10.0]
    """

    type_name = "signal.zscore"
    Options: ClassVar[type[NodeOptions]] = ZScoreOptions

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        if fields_in is None:
            return None
        return {**fields_in, **{f + options.suffix: FieldInfo("float64") for f in options.fields}}

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        refs = [(("fields", i), name) for i, name in enumerate(options.fields)]
        return _unknown_fields(refs, fields_in, "unknown field")

    def new_state(self) -> dict[str, tuple[float, float, float]]:
        return {}

    def step(
        self, state: dict[str, tuple[float, float, float]], batch: list[Event], prepared: list[Any]
    ) -> tuple[dict[str, tuple[float, float, float]], list[Event]]:
        o: ZScoreOptions = self.options
        new_state = dict(state)
        columns = []
        for name in o.fields:
            x = np.asarray([e[name] for e in batch], dtype=np.float64)
            if x.ndim != 1 or not np.isfinite(x).all():
                raise ValueError(f"field `{name}` must be a finite number")
            prior = state.get(name, (0.0, 0.0, 0.0))
            if o.method == "running":
                z, new_state[name] = _running(x, prior, o.min_count)
            else:
                z, new_state[name] = _ewma(x, prior, o.alpha, o.min_count)
            columns.append((name + o.suffix, z))
        if self.ctx.shared_input:
            batch = [dict(e) for e in batch]
        for out_name, z in columns:
            for e, v in zip(batch, z):
                e[out_name] = v
        return new_state, batch


def _running(
    x: np.ndarray[Any, Any], prior: tuple[float, float, float], min_count: int
) -> tuple[list[float], tuple[float, float, float]]:
    """Scores against the moments before each value; state (count, mean, M2) as in Welford.

    Prefix moments come from sums shifted by the prior mean (Chan et al.'s combination), which keeps
    them as accurate as Welford's one-at-a-time update while staying vectorised.
    """
    n0, mean0, m2_0 = prior
    # Shift by the prior mean (or the first value): the prior's shifted sums are 0 and M2.
    c = mean0 if n0 else float(x[0])
    d = x - c
    s1 = np.concatenate([[0.0], np.cumsum(d)])
    s2 = np.concatenate([[0.0], np.cumsum(d * d)]) + m2_0
    n = n0 + np.arange(len(x) + 1, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = c + s1 / n
        m2 = s2 - s1 * s1 / n
        std = np.sqrt(np.maximum(m2, 0.0) / n)
        z = (x - mean[:-1]) / std[:-1]
    ok = (n[:-1] >= min_count) & (std[:-1] > 0)
    z = np.where(ok, z, 0.0)
    return z.tolist(), (float(n[-1]), float(mean[-1]), float(max(m2[-1], 0.0)))


def _ewma(
    x: np.ndarray[Any, Any], prior: tuple[float, float, float], alpha: float, min_count: int
) -> tuple[list[float], tuple[float, float, float]]:
    """EWMA mean and variance (West's incremental form); state (count, mean, variance)."""
    n, mean, var = prior
    out = []
    for v in x.tolist():
        if n >= min_count and var > 0:
            out.append((v - mean) / math.sqrt(var))
        else:
            out.append(0.0)
        if n == 0:
            mean, var = v, 0.0
        else:
            diff = v - mean
            incr = alpha * diff
            mean += incr
            var = (1.0 - alpha) * (var + diff * incr)
        n += 1
    return out, (n, mean, var)
