"""`${VAR}` interpolation in config strings: per-device values and secrets from the environment.

Forms: `${VAR}`, `${VAR:-default}` (default when unset or empty), `${VAR-default}` (default when
unset), `${VAR:?message}` (error with the message when unset or empty), and `$$` for a literal `$`.
A `$` followed by anything else is kept as is.

>>> interpolate("mqtts://${HOST:-localhost}:${PORT:-8883} costs $$5", {"HOST": "broker"})
'mqtts://broker:8883 costs $5'
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from edgewax.errors import EdgewaxError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InterpolationError(EdgewaxError):
    """A reference that cannot be filled; `offset` is where it starts in the string."""

    def __init__(self, message: str, offset: int, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.hint = hint


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Fill every `${...}` of `text` from `env`; raise InterpolationError on the first failure."""
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c != "$" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt != "{":
            out.append(c)
            i += 1
            continue
        end = _closing_brace(text, i + 2)
        if end < 0:
            raise InterpolationError(
                "unterminated `${`", i, "close it with `}`, or write `$$` for a literal `$`"
            )
        out.append(_resolve(text[i + 2 : end], env, i))
        i = end + 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    """Index of the `}` closing a reference, allowing nested `${...}` in its default."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _resolve(body: str, env: Mapping[str, str], offset: int) -> str:
    m = _NAME.match(body)
    if m is None:
        raise InterpolationError(
            f"`${{{body}}}` is not a valid reference",
            offset,
            "write ${NAME}, ${NAME:-default} or ${NAME:?message}",
        )
    name = m.group(0)
    rest = body[m.end() :]
    value = env.get(name)
    if rest == "":
        if value is None:
            raise InterpolationError(
                f"environment variable `{name}` is not set",
                offset,
                f"set it, or give a default: ${{{name}:-value}}",
            )
        return value
    for op in (":-", "-", ":?", "?"):
        if rest.startswith(op):
            arg = rest[len(op) :]
            missing = value is None or (op.startswith(":") and value == "")
            if not missing:
                return value  # type: ignore[return-value]
            if op.endswith("-"):
                return interpolate(arg, env)
            raise InterpolationError(
                f"environment variable `{name}` is not set: {arg or 'it is required'}", offset
            )
    raise InterpolationError(
        f"`${{{body}}}` is not a valid reference",
        offset,
        "write ${NAME}, ${NAME:-default} or ${NAME:?message}",
    )
