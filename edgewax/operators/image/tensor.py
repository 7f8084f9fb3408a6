"""`image.to_tensor`: frames to the layout and dtype of a model input (declared for validation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

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
)
from edgewax.operators.registry import register

_LIMITS = {"uint8": (0, 255), "int8": (-128, 127)}


class TensorOptions(ImageOptions):
    output: str | None = Field("tensor", description="Field to write the tensor to.")
    layout: Literal["HWC", "CHW"] = Field(
        "HWC", description="Axis order of one event's tensor: `HWC` (TFLite's usual) or `CHW`."
    )
    dtype: Literal["float32", "uint8", "int8"] = Field(
        "float32", description="Element type, as the model input wants it."
    )
    scale: float = Field(
        1.0, description="Multiply values by this (e.g. 1/255 for a float model that wants [0, 1])."
    )
    offset: float = Field(
        0.0,
        description="Then add this (e.g. -128 for an int8 model with zero point -128 and scale "
        "1/255); integer outputs are rounded and clipped to the dtype's range.",
    )
    keep_input: bool = Field(
        False, description="Keep the input image too; default: drop it (halves the memory)."
    )


@register
class ToTensor(Transform):
    """Make a model input from an image: layout (HWC/CHW), dtype, scale and offset.

    The output field is declared with its dtype and shape, so the inference node can check at
    validate time that it fits the model's input.

    >>> import numpy as np
    >>> from edgewax.testing import run_node
    >>> out = run_node("image.to_tensor", {"layout": "CHW", "dtype": "int8", "offset": -128},
    ...                [{"frame": np.full((2, 3, 3), 255, np.uint8)}])
    >>> t = out[0]["tensor"]; t.shape, t.dtype, int(t.max()), "frame" in out[0]
    ((3, 2, 3), dtype('int8'), 127, False)
    """

    type_name = "image.to_tensor"
    Options: ClassVar[type[NodeOptions]] = TensorOptions

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        if fields_in is None:
            return None
        info = frame_info(options, fields_in)
        shape = info.shape
        if shape is not None and len(shape) == 2:
            shape = (*shape, 1)
        if shape is not None and options.layout == "CHW":
            shape = (shape[2], shape[0], shape[1])
        out = dict(fields_in)
        if not options.keep_input:
            out.pop(options.field, None)
        # A tensor made from an image is raw data, whatever the input declared.
        out[options.output or options.field] = FieldInfo(options.dtype, shape, raw=True)
        return out

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        return check_field(options, fields_in)

    def _convert(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """`x` is (B, H, W, C); the result is (B, ...) in the output layout and dtype."""
        o: TensorOptions = self.options
        if o.layout == "CHW":
            x = x.transpose(0, 3, 1, 2)
        if o.scale == 1.0 and o.offset == 0.0 and x.dtype == np.dtype(o.dtype):
            return np.ascontiguousarray(x)
        y = x.astype(np.float32)
        if o.scale != 1.0:
            y *= np.float32(o.scale)
        if o.offset != 0.0:
            y += np.float32(o.offset)
        if o.dtype in _LIMITS:
            lo, hi = _LIMITS[o.dtype]
            np.rint(y, out=y)
            np.clip(y, lo, hi, out=y)
        return np.ascontiguousarray(y.astype(o.dtype, copy=False))

    def process(self, batch: list[Event]) -> list[Event]:
        o: TensorOptions = self.options
        frames = [f if f.ndim == 3 else f[:, :, None] for f in frames_of(batch, o.field)]
        block = stacked(frames)
        if block is not None:
            out = list(self._convert(block))
        else:
            out = [self._convert(f[None])[0] for f in frames]
        name = o.output or o.field
        if not o.keep_input and name != o.field:
            batch = [{k: v for k, v in e.items() if k != o.field} for e in batch]
            return put(batch, name, out, False)
        return put(batch, name, out, self.ctx.shared_input)
