"""`redact`: replace fields that must not leave the device with a hash or a fixed text."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from edgewax.events import Event, encode
from edgewax.operators.base import FieldInfo, Fields, NodeOptions, Problem, Transform
from edgewax.operators.registry import register


class RedactOptions(NodeOptions):
    fields: list[str] = Field(min_length=1, description="Fields to replace (absent ones are left).")
    method: Literal["hash", "mask"] = Field(
        "hash",
        description="`hash`: the first 16 hex digits of SHA-256 over `salt` and the value's JSON "
        "(equal values stay comparable); `mask`: the fixed text `mask`.",
    )
    salt: str = Field(
        "",
        description="Text mixed into the hash so that short values cannot be guessed; pass it "
        "as `${ENV}`.",
    )
    mask: str = Field("[redacted]", description="Replacement text for `method: mask`.")

    @field_validator("fields")
    @classmethod
    def _not_protected(cls, fields: list[str]) -> list[str]:
        for name in fields:
            if name in ("ts", "key"):
                raise ValueError(f"`{name}` cannot be redacted: every event needs it")
        return fields


@register
class Redact(Transform):
    """Replace the listed fields with a salted hash or a fixed text; the result is not raw.

    >>> from edgewax.testing import run_node
    >>> run_node("redact", {"fields": ["plate"], "method": "mask"}, [{"plate": "AB-123"}])
    [{'ts': 0.0, 'key': 'k', 'plate': '[redacted]'}]
    >>> run_node("redact", {"fields": ["plate"], "salt": "s"}, [{"plate": "AB-123"}])[0]["plate"]
    '...'
    """

    type_name = "redact"
    Options: ClassVar[type[NodeOptions]] = RedactOptions

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        from edgewax.operators.transforms.fields import _unknown_fields

        refs = [(("fields", i), f) for i, f in enumerate(options.fields)]
        return _unknown_fields(refs, fields_in, "unknown field")

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        if fields_in is None:
            return None
        return {k: (FieldInfo("str") if k in options.fields else v) for k, v in fields_in.items()}

    def replace(self, value: Any) -> str:
        o = self.options
        if o.method == "mask":
            return str(o.mask)
        digest = hashlib.sha256((o.salt + encode(value)).encode("utf-8")).hexdigest()
        return digest[:16]

    def process(self, batch: list[Event]) -> list[Event]:
        names = [f for f in self.options.fields]
        replaced = [{n: self.replace(e[n]) for n in names if n in e} for e in batch]
        if self.ctx.shared_input:
            return [{**e, **r} for e, r in zip(batch, replaced)]
        for e, r in zip(batch, replaced):
            e.update(r)
        return batch
