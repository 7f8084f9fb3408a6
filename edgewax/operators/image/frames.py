"""What the image nodes share: the frame field's declared info, and stacking a batch of frames."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from edgewax.events import Event
from edgewax.operators.base import FieldInfo, Fields, NodeOptions, Problem
from edgewax.operators.transforms.fields import _unknown_fields


class ImageOptions(NodeOptions):
    field: str = Field("frame", description="Field holding the image (numpy array, H x W [x C]).")
    output: str | None = Field(None, description="Field to write; default: replace `field`.")


def frame_info(options: Any, fields_in: Fields) -> FieldInfo:
    """The declared info of the input image field (unknown: raw data of unknown shape)."""
    if fields_in is not None and options.field in fields_in:
        return fields_in[options.field]
    return FieldInfo(None, None, raw=True)


def with_output(options: Any, fields_in: Fields, info: FieldInfo) -> Fields:
    """`fields_in` with the output field set to `info`."""
    if fields_in is None:
        return None
    return {**fields_in, options.output or options.field: info}


def check_field(options: Any, fields_in: Fields) -> list[Problem]:
    return _unknown_fields([(("field",), options.field)], fields_in, "unknown field")


def frames_of(batch: list[Event], name: str) -> list[np.ndarray[Any, Any]]:
    """The batch's images, checked to be numpy image arrays (raises on a bad one)."""
    frames = [e[name] for e in batch]
    for f in frames:
        if not isinstance(f, np.ndarray) or f.ndim not in (2, 3):
            raise ValueError(f"field `{name}` is not an image array (H x W [x C])")
    return frames


def stacked(frames: list[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any] | None:
    """One (B, ...) array when every frame has the same shape and dtype, else None."""
    first = frames[0]
    if all(f.shape == first.shape and f.dtype == first.dtype for f in frames):
        return np.stack(frames)
    return None


def put(batch: list[Event], name: str, values: Any, shared: bool) -> list[Event]:
    """Set field `name` on each event (copies the events when another node reads them too)."""
    if shared:
        batch = [dict(e) for e in batch]
    for e, v in zip(batch, values):
        e[name] = v
    return batch
