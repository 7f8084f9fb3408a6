"""Events: the records that flow between nodes.

An event is a plain `dict`: `ts` (event time, float seconds since the epoch), `key` (the device or
stream id, a `str`; the partition and state key) and named fields. Values are JSON-like Python
values or numpy arrays. A plain dict is the cheapest thing to build, read and pickle between
workers.

>>> encode({"ts": 1.5, "key": "pump-1", "rms": np.float32(0.25), "x": np.arange(3)})
'{"ts":1.5,"key":"pump-1","rms":0.25,"x":[0,1,2]}'
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import numpy as np

Event = dict[str, Any]


def json_default(value: Any) -> Any:
    """JSON for the values json cannot write itself: numpy arrays and scalars, bytes, times."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot encode a {type(value).__name__} as JSON")


def event_time(value: Any) -> float:
    """Epoch seconds from a number, numeric text, or ISO-8601 text (naive means UTC).

    >>> event_time("2026-01-01T00:00:00Z"), event_time("12.5"), event_time(3)
    (1767225600.0, 12.5, 3.0)
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dt.date):  # an unquoted timestamp in YAML
        if not isinstance(value, dt.datetime):
            value = dt.datetime(value.year, value.month, value.day)
        stamp = value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
        return float(stamp.timestamp())
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        stamp = dt.datetime.fromisoformat(text)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=dt.timezone.utc)
        return stamp.timestamp()
    raise ValueError(f"time must be epoch seconds or ISO-8601 text, not {value!r}")


_encoder = json.JSONEncoder(default=json_default, separators=(",", ":"), ensure_ascii=False)
encode = _encoder.encode
"""Compact JSON text of one event."""
