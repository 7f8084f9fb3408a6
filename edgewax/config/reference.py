"""The JSON Schema and the node reference, both derived from the node types' option models.

Nothing here lists a field by hand: a field added to an `Options` model shows up in validation,
`edgewax schema` (editor autocomplete) and `docs/nodes.md` at once.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo as PydanticField
from pydantic_core import PydanticUndefined

from edgewax.config.spec import ID_RE, Settings
from edgewax.operators.base import Node
from edgewax.operators.registry import node_types

SCHEMA_ID = "urn:edgewax:schema:pipelines:v1"


def _node_model(name: str, cls: type[Node]) -> type[BaseModel]:
    model_name = "Node_" + re.sub(r"\W", "_", name)
    fields: dict[str, Any] = {
        "id": (str, Field(pattern=ID_RE.pattern, description="Unique id in the pipeline.")),
        "type": (Literal[name], Field(description=cls.summary())),
    }
    if cls.kind != "source":
        fields["inputs"] = (
            list[str] | None,
            Field(None, description="Ids of the nodes it reads; default: the previous node."),
        )
    return create_model(model_name, __base__=cls.Options, __doc__=cls.summary(), **fields)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a whole `pipelines.yaml` (draft 2020-12)."""
    from edgewax.config.cases import Case

    models = [_node_model(name, cls) for name, cls in node_types().items()]
    node_union = Annotated[Union[tuple(models)], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007

    class Pipeline(BaseModel):
        model_config = ConfigDict(extra="forbid")
        description: str = Field("", description="What the pipeline is for.")
        nodes: list[node_union] = Field(  # type: ignore[valid-type]
            min_length=1, description="The nodes, in flow order; `inputs` defaults to the previous."
        )

    class PipelinesFile(BaseModel):
        """An edgewax pipelines file."""

        model_config = ConfigDict(extra="forbid", title="edgewax pipelines.yaml")
        version: Literal[1] = Field(description="Format version; this edgewax reads 1.")
        settings: Settings = Field(default_factory=Settings, description="Whole-file settings.")
        pipelines: dict[str, Pipeline] = Field(min_length=1, description="Pipelines by name.")
        tests: list[Case] | None = Field(
            None, description="Test cases for `edgewax test` (see docs/testing.md)."
        )

    schema = PipelinesFile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["properties"]["pipelines"]["propertyNames"] = {"pattern": ID_RE.pattern}
    return schema


def _type_text(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    """A short, readable type from a field's JSON Schema (so docs and schema cannot disagree)."""
    if "x-edgewax-type" in schema:
        return str(schema["x-edgewax-type"])
    if "$ref" in schema:
        return "mapping"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    if "anyOf" in schema:
        parts = [p for p in schema["anyOf"] if p.get("type") != "null"]
        text = " or ".join(_type_text(p, defs) for p in parts)
        return text + (" or null" if len(parts) < len(schema["anyOf"]) else "")
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type_text(schema.get('items', {}), defs)}"
    if kind == "object":
        values = schema.get("additionalProperties")
        return f"map of {_type_text(values, defs)}" if isinstance(values, dict) else "mapping"
    return str(kind or "any")


def _options_table(model: type[BaseModel], label: str) -> list[str]:
    rows = [f"| {label} | type | default | description |", "| --- | --- | --- | --- |"]
    return rows + _option_rows(model, "")


def _option_rows(model: type[BaseModel], prefix: str) -> list[str]:
    """One row per field; a field that is itself an options model is followed by its fields,
    as `outer.inner` (e.g. `outbox.max_bytes`)."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    rows = []
    for fname, info in model.model_fields.items():
        prop = schema.get("properties", {}).get(fname, {})
        desc = (info.description or "").replace("|", "\\|").replace("\n", " ")
        name = prefix + fname
        rows.append(f"| `{name}` | {_type_text(prop, defs)} | {_default_text(info)} | {desc} |")
        nested = _nested_model(info.annotation)
        if nested is not None:
            rows += _option_rows(nested, name + ".")
    return rows


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The options model a field holds (`X` or `X | None`), if it holds one."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _default_text(info: PydanticField) -> str:
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return ""
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return ""
    return "`" + json.dumps(value, default=str) + "`"


def _doc_body(cls: type[Node]) -> str:
    """The docstring after its summary line, with its example kept as an example."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    lines = doc.splitlines()[1:]
    out: list[str] = []
    in_example = False
    for line in lines:
        if line.startswith(">>>") or line.startswith("..."):
            if not in_example:
                out.append("```python")
                in_example = True
        elif in_example and not line.strip():
            out.append("```")
            in_example = False
        out.append(line)
    if in_example:
        out.append("```")
    return "\n".join(out).strip()


def node_reference() -> str:
    """`docs/nodes.md`: every node type, its summary, example and options table."""
    parts = [
        "# Node reference",
        "",
        "Generated by `edgewax docs` from the node types' option models; do not edit by hand.",
        "Every node also takes `id` (unique in its pipeline) and, unless it is a source, "
        "`inputs` (ids it reads; default: the previous node that is not a sink).",
        "",
        "| type | kind | what it does |",
        "| --- | --- | --- |",
    ]
    types = node_types()
    for name, cls in types.items():
        parts.append(
            f"| [`{name}`](#{re.sub(r'[^a-z0-9-]', '', name.lower())}) | {cls.kind} | "
            f"{cls.summary()} |"
        )
    for name, cls in types.items():
        parts += ["", f"## {name}", "", f"*{cls.kind}* — {cls.summary()}", ""]
        body = _doc_body(cls)
        if body:
            parts += [body, ""]
        parts += (
            _options_table(cls.Options, "option") if cls.Options.model_fields else ["No options."]
        )
    parts += ["", "## settings", "", "Top-level `settings:` of a file.", ""]
    parts += _options_table(Settings, "setting")
    return "\n".join(parts) + "\n"
