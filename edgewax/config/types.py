"""Option types that read the way people write them: `250ms`, `60s`, `5m`, `50MB`.

>>> parse_duration("1m30s"), parse_duration("250ms"), parse_duration(2)
(90.0, 0.25, 2.0)
>>> parse_byte_size("50MB"), parse_byte_size("1KiB"), parse_byte_size(10)
(50000000, 1024, 10)
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_BYTES = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kKmMgGtT]i?)?[bB]?\s*$")
_BYTE_UNITS = {
    "": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "ki": 2**10,
    "mi": 2**20,
    "gi": 2**30,
    "ti": 2**40,
}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a string such as `90s`, `1m30s`, `250ms`, `2h`, `1d`."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, not a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 30s, 5m or 250ms")
    text = value.strip().replace(" ", "")
    try:
        return float(text)
    except ValueError:
        pass
    total = 0.0
    pos = 0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"`{value}` is not a duration; write e.g. 30s, 5m, 1h30m or 250ms")
    return total


def parse_byte_size(value: Any) -> int:
    """Bytes from a number or a string such as `50MB`, `512KiB`, `1GB`."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 50MB, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if not isinstance(value, str):
        raise ValueError("expected a size such as 50MB or 512KiB")
    m = _BYTES.match(value)
    if m is None:
        raise ValueError(f"`{value}` is not a size; write e.g. 512KB, 50MB or 1GiB")
    return int(float(m.group(1)) * _BYTE_UNITS[(m.group(2) or "").lower()])


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    Field(ge=0),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^\s*(\d+(\.\d*)?\s*(ms|s|m|h|d)\s*)+$"},
            ],
            "description": "seconds, or a duration such as 30s, 5m, 1h30m, 250ms",
            "x-edgewax-type": "duration",
        }
    ),
]
"""A duration in seconds; accepts numbers and strings like `30s`."""

ByteSize = Annotated[
    int,
    BeforeValidator(parse_byte_size),
    Field(ge=0),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\s*\d+(\.\d*)?\s*([kKmMgGtT]i?)?[bB]?\s*$"},
            ],
            "description": "bytes, or a size such as 512KB, 50MB, 1GiB",
            "x-edgewax-type": "size",
        }
    ),
]
"""A size in bytes; accepts numbers and strings like `50MB`."""


def _yaml_time(value: Any) -> Any:
    from edgewax.events import event_time

    return event_time(value) if isinstance(value, dt.date) else value


EventTime = Annotated[
    float | str,
    BeforeValidator(_yaml_time),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string"}]}),
]
"""An event time: epoch seconds or ISO-8601 text; an unquoted YAML timestamp works too."""
