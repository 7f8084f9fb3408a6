"""`image.motion`: a cheap motion gate, so the model runs only when something in view changes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from edgewax.config.types import Duration
from edgewax.events import Event
from edgewax.operators.base import FieldInfo, Fields, NodeOptions, Problem
from edgewax.operators.image.frames import ImageOptions, check_field, frames_of
from edgewax.operators.keyed import KeyedTransform
from edgewax.operators.registry import register
from edgewax.operators.sources.camera import import_cv2


class MotionOptions(ImageOptions):
    width: int = Field(
        160,
        ge=8,
        le=4096,
        description="Frames are compared gray at this width (height in "
        "proportion): smaller is cheaper and ignores sensor noise.",
    )
    threshold: int = Field(
        25, ge=1, le=255, description="A pixel changed when its gray level moved by more than this."
    )
    min_area: float = Field(
        0.01,
        gt=0,
        le=1,
        description="Share of pixels that must change for a frame to count as "
        "motion (0.01: 1% of the view).",
    )
    blur: int = Field(
        3, ge=0, le=31, description="Box blur size applied before comparing (0: none); damps noise."
    )
    pass_still: bool = Field(
        False, description="Pass still frames too (with their `motion_score`) instead of dropping."
    )
    keyframe_every: Duration | None = Field(
        None,
        description="Pass one frame every this often even when still (e.g. 60s), so a "
        "stuck scene is still seen now and then.",
    )
    score_field: str = Field("motion_score", description="Field for the share of changed pixels.")


@dataclass
class _State:
    previous: np.ndarray[Any, Any] | None = None
    last_kept: float | None = None


@register
class Motion(KeyedTransform):
    """Motion gate: pass frames that differ from the previous frame of their key; drop still ones.

    Each frame is made gray and small, blurred, and compared with the key's previous frame: the
    share of pixels whose level moved by more than `threshold` is its `motion_score`. Frames with a
    score under `min_area` are dropped and counted (`no_motion`), unless `pass_still`; the first
    frame of a key, and one every `keyframe_every`, pass anyway.

    >>> import numpy as np
    >>> from edgewax.testing import run_node
    >>> still, moved = np.zeros((48, 64, 3), np.uint8), np.zeros((48, 64, 3), np.uint8)
    >>> moved[10:30, 10:30] = 255
    >>> out = run_node("image.motion", {"width": 32},
    ...                [{"ts": t, "frame": f} for t, f in enumerate([still, still, moved, moved])])
    >>> [(e["ts"], round(e["motion_score"], 2)) for e in out]
    [(0, 0.0), (2, 0.19)]
    """

    type_name = "image.motion"
    Options: ClassVar[type[NodeOptions]] = MotionOptions

    def __init__(self, options: MotionOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.cv2 = import_cv2()
        self.skipped = ctx.stats.counter(
            "edgewax_frames_skipped",
            "Frames skipped before processing, by reason.",
            reason="no_motion",
        )

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        if fields_in is None:
            return None
        return {**fields_in, options.score_field: FieldInfo("float64")}

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        return check_field(options, fields_in)

    def new_state(self) -> _State:
        return _State()

    def _small(self, f: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        cv2 = self.cv2
        o: MotionOptions = self.options
        if f.ndim == 3 and f.shape[2] == 3:
            f = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
        elif f.ndim == 3:
            f = f[:, :, 0]
        h, w = f.shape
        size = (o.width, max(1, round(h * o.width / w)))
        if f.dtype != np.uint8:
            f = np.clip(f, 0, 255).astype(np.uint8)
        small = cv2.resize(f, size, interpolation=cv2.INTER_AREA)
        if o.blur > 1:
            small = cv2.blur(small, (o.blur, o.blur))
        return np.asarray(small)

    def step(
        self, state: _State, batch: list[Event], prepared: list[Any]
    ) -> tuple[_State, list[Event]]:
        o: MotionOptions = self.options
        smalls = [self._small(f) for f in frames_of(batch, o.field)]
        first = state.previous is None
        prev = smalls[0] if state.previous is None else state.previous
        shapes = {s.shape for s in smalls} | {prev.shape}
        if len(shapes) == 1:
            cur = np.stack(smalls)
            before = np.concatenate([prev[None], cur[:-1]])
            # |a - b| > t on uint8 without overflow: max - min.
            diff = np.maximum(cur, before) - np.minimum(cur, before)
            scores = (diff > o.threshold).mean(axis=(1, 2)).tolist()
        else:  # the frame size changed: a changed view is motion
            scores, last = [], prev
            for s in smalls:
                same = s.shape == last.shape
                scores.append(
                    float((np.abs(s.astype(np.int16) - last) > o.threshold).mean()) if same else 1.0
                )
                last = s
        out = []
        last_kept = state.last_kept
        every = o.keyframe_every
        name = o.score_field
        copy = self.ctx.shared_input
        for i, (e, score) in enumerate(zip(batch, scores)):
            ts = float(e["ts"])
            due = every is not None and (last_kept is None or ts - last_kept >= every)
            if score >= o.min_area or (first and i == 0) or due:
                last_kept = ts  # a kept frame restarts the keyframe clock
            elif not o.pass_still:
                continue
            ev = dict(e) if copy else e
            ev[name] = score
            out.append(ev)
        dropped = len(batch) - len(out)
        if dropped:
            self.skipped.inc(dropped)
            self.ctx.stats.discard("no_motion", dropped)
        return _State(smalls[-1], last_kept), out
