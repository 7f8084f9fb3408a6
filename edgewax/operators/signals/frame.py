"""`signal.frame`: gather each key's samples into frames of `size` samples, one every `hop`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import Field

from edgewax.events import Event
from edgewax.operators.base import FieldInfo, Fields, NodeOptions, Problem
from edgewax.operators.keyed import KeyedTransform
from edgewax.operators.registry import register
from edgewax.operators.transforms.fields import _unknown_fields


class FrameOptions(NodeOptions):
    field: str = Field(description="Input field with one numeric sample per event, e.g. `accel`.")
    size: int = Field(ge=1, le=1_000_000, description="Samples per frame (N).")
    hop: int | None = Field(
        None,
        ge=1,
        description="Samples from one frame's start to the next (H); default: `size` (no "
        "overlap). H < N overlaps frames, H > N leaves gaps.",
    )
    output: str = Field("frame", description="Field that holds the frame (float32 array (N,)).")


@dataclass
class _Buffer:
    """One key's samples not yet past: values, their times, their events; `skip` for gaps."""

    values: npt.NDArray[np.float32] = field(default_factory=lambda: np.empty(0, np.float32))
    ts: npt.NDArray[np.float64] = field(default_factory=lambda: np.empty(0, np.float64))
    events: list[Event] = field(default_factory=list)
    skip: int = 0


@register
class SignalFrame(KeyedTransform):
    """Frame a sample stream per key: one event of `size` samples every `hop` samples.

    Each frame event has `ts` of the frame's first sample, the `key`, `<output>` (float32 array
    of shape (N,)) and the other fields of the frame's last sample. Frames are cut per key, in
    arrival order; samples are not reordered by time.

    >>> from edgewax.testing import run_node
    >>> out = run_node("signal.frame", {"field": "x", "size": 4, "hop": 2},
    ...                [{"ts": float(i), "x": i, "n": i} for i in range(8)])
    >>> [(e["ts"], e["frame"].tolist(), e["n"]) for e in out]
    [(0.0, [0.0, 1.0, 2.0, 3.0], 3), (2.0, [2.0, 3.0, 4.0, 5.0], 5), (4.0, [4.0, 5.0, 6.0, 7.0], 7)]
    """

    type_name = "signal.frame"
    Options: ClassVar[type[NodeOptions]] = FrameOptions

    def __init__(self, options: FrameOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.size = options.size
        self.hop = options.hop or options.size

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        if fields_in is None:
            return None
        out = {k: v for k, v in fields_in.items() if k != options.field}
        out[options.output] = FieldInfo("float32", (options.size,), raw=True)
        return out

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        problems = _unknown_fields([(("field",), options.field)], fields_in, "unknown field")
        if options.output in ("ts", "key"):
            problems.append(
                Problem(
                    ("output",),
                    f"output `{options.output}` is reserved",
                    "name the frame field e.g. `frame`",
                )
            )
        return problems

    def new_state(self) -> _Buffer:
        return _Buffer()

    def step(
        self, state: _Buffer, batch: list[Event], prepared: list[Any]
    ) -> tuple[_Buffer, list[Event]]:
        name = self.options.field
        # Convert first: a bad sample raises here, before the state changes.
        new = np.asarray([e[name] for e in batch], dtype=np.float32)
        if new.ndim != 1:
            raise ValueError(f"field `{name}` must hold one number per event")
        new_ts = np.asarray([e["ts"] for e in batch], dtype=np.float64)
        events = batch
        skip = state.skip
        if skip:  # the gap after the last frame when hop > size
            k = min(skip, len(new))
            new, new_ts, events, skip = new[k:], new_ts[k:], events[k:], skip - k
        values = np.concatenate([state.values, new]) if len(state.values) else new
        ts = np.concatenate([state.ts, new_ts]) if len(state.ts) else new_ts
        pending = state.events + events if state.events else list(events)
        n, h = self.size, self.hop
        out: list[Event] = []
        if len(values) >= n:
            count = (len(values) - n) // h + 1
            starts = np.arange(count) * h
            frames = sliding_window_view(values, n)[starts]
            firsts = ts[starts].tolist()
            drop = name if name != self.options.output else None
            output = self.options.output
            for i, (t, frame) in enumerate(zip(firsts, frames)):
                last = pending[i * h + n - 1]
                e = {k: v for k, v in last.items() if k != drop}
                e["ts"] = t
                e[output] = frame.copy()
                out.append(e)
            cut = count * h
            if cut > len(values):
                skip += cut - len(values)
                cut = len(values)
            values, ts, pending = values[cut:].copy(), ts[cut:].copy(), pending[cut:]
        return _Buffer(values, ts, pending, skip), out
