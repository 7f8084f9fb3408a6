"""`image.normalize`: pixels to float32, scaled, with the mean taken off and divided by the std."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from edgewax.events import Event
from edgewax.operators.base import FieldInfo, Fields, NodeOptions, Problem, Transform
from edgewax.operators.image.frames import (
    ImageOptions,
    check_field,
    frame_info,
    frames_of,
    put,
    stacked,
    with_output,
)
from edgewax.operators.registry import register


class NormalizeOptions(ImageOptions):
    scale: float = Field(1 / 255, description="Multiply pixels by this first (1/255: to [0, 1]).")
    mean: float | list[float] = Field(
        0.0,
        description="Subtract after scaling: one value, or one per channel, e.g. "
        "[0.485, 0.456, 0.406] (ImageNet).",
    )
    std: float | list[float] = Field(
        1.0, description="Then divide by this: one value or one per channel (none may be 0)."
    )

    def model_post_init(self, _: Any) -> None:
        stds = self.std if isinstance(self.std, list) else [self.std]
        if any(s == 0 for s in stds):
            raise ValueError("`std` must not be 0")


@register
class Normalize(Transform):
    """Normalize images to float32: (pixel * scale - mean) / std, per channel.

    >>> import numpy as np
    >>> from edgewax.testing import run_node
    >>> frame = np.array([[0, 255]], np.uint8)
    >>> out = run_node("image.normalize", {"mean": 0.5, "std": 0.5}, [{"frame": frame}])
    >>> out[0]["frame"]
    array([[-1.,  1.]], dtype=float32)
    """

    type_name = "image.normalize"
    Options: ClassVar[type[NodeOptions]] = NormalizeOptions

    def __init__(self, options: NormalizeOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.mean = np.asarray(options.mean, np.float32)
        self.std = np.asarray(options.std, np.float32)

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        info = frame_info(options, fields_in)
        return with_output(options, fields_in, FieldInfo("float32", info.shape, info.raw))

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        problems = check_field(options, fields_in)
        shape = frame_info(options, fields_in).shape
        channels = shape[2] if shape is not None and len(shape) == 3 else None
        for name in ("mean", "std"):
            value = getattr(options, name)
            if isinstance(value, list) and channels is not None and len(value) != channels:
                problems.append(
                    Problem(
                        (name,),
                        f"{len(value)} values for {channels} channels",
                        f"give one value or {channels}",
                    )
                )
        return problems

    def _apply(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        out = x.astype(np.float32)
        out *= np.float32(self.options.scale)
        out -= self.mean
        out /= self.std
        return out

    def process(self, batch: list[Event]) -> list[Event]:
        o: NormalizeOptions = self.options
        frames = frames_of(batch, o.field)
        block = stacked(frames)
        out = list(self._apply(block)) if block is not None else [self._apply(f) for f in frames]
        return put(batch, o.output or o.field, out, self.ctx.shared_input)
