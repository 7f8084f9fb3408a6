"""Errors a user can see: each names the place and the fix; no traceback for a user's mistake."""

from __future__ import annotations


class EdgewaxError(Exception):
    """A mistake of the user's (config, files, environment), reported in one line."""


class ExpressionError(EdgewaxError):
    """An expression that does not compile; `offset` is the 0-based character in its source."""

    def __init__(self, message: str, offset: int = 0, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.hint = hint
