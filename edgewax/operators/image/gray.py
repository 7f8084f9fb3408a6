"""`image.gray`: RGB frames to one-channel gray (OpenCV)."""

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
from edgewax.operators.sources.camera import import_cv2


class GrayOptions(ImageOptions):
    keep_channel: bool = Field(
        False, description="Output H x W x 1 instead of H x W (for models with a channel axis)."
    )
    bgr: bool = Field(False, description="Input is BGR (a camera with `color: bgr`), not RGB.")


@register
class Gray(Transform):
    """Convert RGB images to gray (luma); gray images pass unchanged.

    >>> import numpy as np
    >>> from edgewax.testing import run_node
    >>> out = run_node("image.gray", {}, [{"frame": np.full((2, 2, 3), 200, np.uint8)}])
    >>> out[0]["frame"].shape, int(out[0]["frame"][0, 0])
    ((2, 2), 200)
    """

    type_name = "image.gray"
    Options: ClassVar[type[NodeOptions]] = GrayOptions

    def __init__(self, options: GrayOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.cv2 = import_cv2()
        self.code = self.cv2.COLOR_BGR2GRAY if options.bgr else self.cv2.COLOR_RGB2GRAY

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        info = frame_info(options, fields_in)
        hw = info.shape[:2] if info.shape is not None else (None, None)
        shape = (*hw, 1) if options.keep_channel else hw
        return with_output(options, fields_in, FieldInfo(info.dtype, shape, info.raw))

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        return check_field(options, fields_in)

    def process(self, batch: list[Event]) -> list[Event]:
        o: GrayOptions = self.options
        convert, code = self.cv2.cvtColor, self.code
        out = []
        for f in frames_of(batch, o.field):
            if f.ndim == 3 and f.shape[2] == 3:
                f = convert(f, code)
            elif f.ndim == 3 and f.shape[2] == 1:
                f = f[:, :, 0]
            elif f.ndim != 2:
                raise ValueError(f"cannot make a gray image of shape {f.shape}")
            out.append(f[:, :, None] if o.keep_channel else f)
        return put(batch, o.output or o.field, out, self.ctx.shared_input)
