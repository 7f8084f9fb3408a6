"""`image.crop`: keep a region of interest of each frame."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from edgewax.events import Event
from edgewax.operators.base import FieldInfo, Fields, NodeOptions, Problem, Transform
from edgewax.operators.image.frames import (
    ImageOptions,
    check_field,
    frame_info,
    frames_of,
    put,
    with_output,
)
from edgewax.operators.registry import register


class CropOptions(ImageOptions):
    x: int = Field(0, ge=0, description="Left edge of the region, in pixels from the left.")
    y: int = Field(0, ge=0, description="Top edge of the region, in pixels from the top.")
    width: int = Field(ge=1, description="Region width in pixels.")
    height: int = Field(ge=1, description="Region height in pixels.")


@register
class Crop(Transform):
    """Crop images to the region `x`, `y`, `width`, `height` (a frame too small is dead-lettered).

    >>> import numpy as np
    >>> from edgewax.testing import run_node
    >>> img = np.arange(16, dtype=np.uint8).reshape(4, 4)
    >>> out = run_node("image.crop", {"x": 1, "y": 2, "width": 2, "height": 2}, [{"frame": img}])
    >>> out[0]["frame"]
    array([[ 9, 10],
           [13, 14]], dtype=uint8)
    """

    type_name = "image.crop"
    Options: ClassVar[type[NodeOptions]] = CropOptions

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        info = frame_info(options, fields_in)
        rest = info.shape[2:] if info.shape is not None else (None,)
        shape = (options.height, options.width, *rest)
        return with_output(options, fields_in, FieldInfo(info.dtype, shape, info.raw))

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        problems = check_field(options, fields_in)
        shape = frame_info(options, fields_in).shape
        if shape is not None and len(shape) >= 2:
            h, w = shape[0], shape[1]
            if w is not None and options.x + options.width > w:
                problems.append(
                    Problem(
                        ("width",),
                        f"the region ends at x={options.x + options.width}"
                        f" but frames are {w} pixels wide",
                        f"make x + width <= {w}",
                    )
                )
            if h is not None and options.y + options.height > h:
                problems.append(
                    Problem(
                        ("height",),
                        f"the region ends at y={options.y + options.height}"
                        f" but frames are {h} pixels high",
                        f"make y + height <= {h}",
                    )
                )
        return problems

    def process(self, batch: list[Event]) -> list[Event]:
        o: CropOptions = self.options
        x0, y0, x1, y1 = o.x, o.y, o.x + o.width, o.y + o.height
        frames = frames_of(batch, o.field)
        for f in frames:
            if f.shape[0] < y1 or f.shape[1] < x1:
                raise ValueError(f"frame {f.shape[1]}x{f.shape[0]} is smaller than the region")
        # A copy, so the cropped event does not keep the whole frame alive.
        out = [f[y0:y1, x0:x1].copy() for f in frames]
        return put(batch, o.output or o.field, out, self.ctx.shared_input)
