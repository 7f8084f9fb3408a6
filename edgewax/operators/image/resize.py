"""`image.resize`: scale frames to a model's input size (OpenCV)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

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

_INTERPOLATION = {
    "area": "INTER_AREA",
    "linear": "INTER_LINEAR",
    "nearest": "INTER_NEAREST",
    "cubic": "INTER_CUBIC",
}


class ResizeOptions(ImageOptions):
    width: int = Field(ge=1, le=16384, description="Output width in pixels.")
    height: int = Field(ge=1, le=16384, description="Output height in pixels.")
    interpolation: Literal["area", "linear", "nearest", "cubic"] = Field(
        "area", description="`area` (best for shrinking), `linear`, `nearest` or `cubic`."
    )


@register
class Resize(Transform):
    """Resize images to `width` x `height` (aspect ratio not kept: crop first to keep it).

    >>> import numpy as np
    >>> from edgewax.testing import run_node
    >>> frame = np.zeros((8, 16, 3), np.uint8)
    >>> out = run_node("image.resize", {"width": 4, "height": 2}, [{"frame": frame}])
    >>> out[0]["frame"].shape
    (2, 4, 3)
    """

    type_name = "image.resize"
    Options: ClassVar[type[NodeOptions]] = ResizeOptions

    def __init__(self, options: ResizeOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.cv2 = import_cv2()
        self.flag = getattr(self.cv2, _INTERPOLATION[options.interpolation])

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        info = frame_info(options, fields_in)
        rest = info.shape[2:] if info.shape is not None and len(info.shape) >= 3 else ()
        if info.shape is None:
            rest = (None,)
        shape = (options.height, options.width, *rest)
        return with_output(options, fields_in, FieldInfo(info.dtype, shape, info.raw))

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        return check_field(options, fields_in)

    def process(self, batch: list[Event]) -> list[Event]:
        o: ResizeOptions = self.options
        resize, size, flag = self.cv2.resize, (o.width, o.height), self.flag
        out = [resize(f, size, interpolation=flag) for f in frames_of(batch, o.field)]
        return put(batch, o.output or o.field, out, self.ctx.shared_input)
