"""`egress.dedup`: drop an event whose fields repeat a passed event's within a time-to-live."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from edgewax.config.types import Duration
from edgewax.events import Event, encode
from edgewax.operators.base import Fields, NodeOptions, Problem
from edgewax.operators.keyed import KeyedOptions, KeyedTransform
from edgewax.operators.registry import register


class DedupOptions(KeyedOptions):
    fields: list[str] = Field(
        min_length=1, description="Fields whose values together make an event a repeat."
    )
    ttl: Duration = Field(
        description="How long (event time) after a passed event its values count as seen."
    )


@register
class Dedup(KeyedTransform):
    """Drop events whose `fields` equal those of an event passed less than `ttl` before.

    >>> from edgewax.testing import run_node
    >>> seen = [(0, "cat"), (1, "cat"), (2, "dog"), (11, "cat")]
    >>> events = [{"ts": t, "label": label} for t, label in seen]
    >>> out = run_node("egress.dedup", {"fields": ["label"], "ttl": 10}, events)
    >>> [(e["ts"], e["label"]) for e in out]
    [(0, 'cat'), (2, 'dog'), (11, 'cat')]
    """

    type_name = "egress.dedup"
    Options: ClassVar[type[NodeOptions]] = DedupOptions

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        from edgewax.operators.transforms.fields import _unknown_fields

        refs = [(("fields", i), f) for i, f in enumerate(options.fields)]
        return _unknown_fields(refs, fields_in, "unknown field")

    def prepare(self, event: Event) -> Any:
        values = tuple(event[f] for f in self.options.fields)
        try:
            hash(values)
            return values
        except TypeError:  # lists, arrays: compare their JSON text
            return encode(list(values))

    def step(self, state: Any, events: list[Event], prepared: list[Any]) -> tuple[Any, list[Event]]:
        ttl = self.options.ttl
        seen: OrderedDict[Any, float] = state if state is not None else OrderedDict()
        out = []
        for e, values in zip(events, prepared):
            t = e["ts"]
            # Entries are in the order they passed: expire from the front.
            while seen:
                _, since = next(iter(seen.items()))
                if t - since < ttl:
                    break
                seen.popitem(last=False)
            if values in seen and t - seen[values] < ttl:
                continue
            seen.pop(values, None)
            seen[values] = t
            out.append(e)
        if len(out) != len(events):
            self.ctx.stats.discard("duplicate", len(events) - len(out))
        return (seen or None), out
