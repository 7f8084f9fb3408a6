"""One-line config diagnostics: `FILE:LINE:COL: pipeline P, node N: what is wrong (hint)`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from edgewax.errors import EdgewaxError


@dataclass(frozen=True, order=True)
class Mark:
    """A 1-based position in a YAML file; `style` is the scalar's quote character, if any."""

    line: int
    col: int
    style: str | None = None


@dataclass(frozen=True)
class Diagnostic:
    """One mistake in a config file, printed as a single line."""

    file: str
    mark: Mark
    message: str
    hint: str | None = None
    pipeline: str | None = None
    node: str | None = None

    def __str__(self) -> str:
        where = []
        if self.pipeline is not None:
            where.append(f"pipeline {self.pipeline}")
        if self.node is not None:
            where.append(f"node {self.node}")
        scope = f"{', '.join(where)}: " if where else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.file}:{self.mark.line}:{self.mark.col}: {scope}{self.message}{hint}"


class ConfigError(EdgewaxError):
    """Every mistake found in a config file, one line each, in file order."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.file, d.mark.line, d.mark.col))
        super().__init__("\n".join(str(d) for d in self.diagnostics))


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A hint naming the closest of `choices` to a misspelt `word`, or None.

    >>> did_you_mean("thresold", ["threshold", "where"])
    'did you mean `threshold`?'
    """
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


def one_of(word: str, choices: Iterable[str], what: str) -> str:
    """A did-you-mean hint, or the list of valid `what` when nothing is close."""
    options = sorted(choices)
    return did_you_mean(word, options) or f"valid {what}: {', '.join(options)}"
