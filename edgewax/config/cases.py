"""Test cases for `edgewax test`: the `tests:` key of a pipelines file, or a `*_test.yaml` file.

A case names a pipeline, injects events at any node (a source is replaced by them; any other node
gets them instead of its upstream), may replace nodes by a fixed-output stub, and lists what must
come out of which nodes. The models here are the one declaration of that shape: they validate it
(with `file:line:col` errors, like the pipelines) and give its JSON Schema.

>>> Case.model_validate({"name": "hot", "expect": [{"node": "alerts", "count": 1}]}).expect[0].count
1
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgewax.config.types import Duration, EventTime
from edgewax.events import event_time
from edgewax.operators.transforms.expressions import ExpressionField

ArrayType = Literal["float32", "float64", "int8", "uint8", "int16", "int32", "int64"]


class CaseInput(BaseModel):
    """Events injected at a node."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str = Field(
        description="Node the events enter. A source is replaced by them; any other node reads "
        "them instead of its inputs (and what only fed it does not run)."
    )
    events: list[dict[str, Any]] | None = Field(
        None,
        description="Inline events. `key` defaults to `test`; `ts` (epoch seconds or ISO-8601) "
        "defaults to the case's `start` plus `every` per event.",
    )
    recording: str | None = Field(
        None,
        description="A JSON-lines file of events (relative to the test file's folder), one event "
        "per line, read like `events`.",
    )
    every: Duration = Field(1.0, description="Spacing of events that have no `ts`.")
    arrays: dict[str, ArrayType] = Field(
        default_factory=dict,
        description="Fields to turn from JSON lists into numpy arrays of this dtype, e.g. "
        "`{frame: float32}` to inject frames at a model.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> CaseInput:
        if (self.events is None) == (self.recording is None):
            raise ValueError("give exactly one of `events` or `recording`")
        return self


class CaseStub(BaseModel):
    """A node replaced by a stub that sets fixed fields on every event it reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str = Field(description="The node to replace (a transform, e.g. a `tflite` model).")
    outputs: dict[str, Any] = Field(
        default_factory=dict,
        description="Fields set on every event, e.g. `{anomaly_score: 0.5}`.",
    )
    drop: list[str] = Field(
        default_factory=list, description="Fields removed from every event (e.g. the tensor)."
    )


class CountRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min: int | None = Field(None, ge=0, description="At least this many events.")
    max: int | None = Field(None, ge=0, description="At most this many events.")


class Expectation(BaseModel):
    """What a node must emit (for a sink: what it receives) when the case has run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str = Field(description="A node id, or `NODE.late` for a window's late output.")
    count: int | CountRange | None = Field(
        None, description="How many events: a number, or `{min, max}`."
    )
    none: bool = Field(False, description="`true`: nothing at all is emitted.")
    fields: list[str] = Field(
        default_factory=list, description="Fields every emitted event must have."
    )
    events: list[dict[str, Any]] | None = Field(
        None,
        description="The emitted events, in event-time order (then by key) and no more: each "
        "listed field must be equal (numbers within `tolerance`; a value "
        "`{approx: X, tolerance: T}` for one field). Fields "
        "not listed are not compared.",
    )
    contains: list[dict[str, Any]] | None = Field(
        None, description="Events (compared like `events`) that must each be among those emitted."
    )
    tolerance: float = Field(
        0.0, ge=0, description="Absolute tolerance for numbers in `events` and `contains`."
    )
    all: ExpressionField | None = Field(
        None, description='An expression every emitted event must satisfy, e.g. "score < 0.1".'
    )
    dropped: dict[str, int] | None = Field(
        None,
        description="Events the node discarded, by reason, e.g. `{cooldown: 3}` (exact counts; "
        "reasons not listed are not compared).",
    )


class RatioBounds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min: float | None = Field(None, ge=0, description="Lower bound.")
    max: float | None = Field(None, ge=0, description="Upper bound.")


class Case(BaseModel):
    """One test case of a pipeline."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, description="What the case shows; printed with PASS/FAIL.")
    pipeline: str | None = Field(
        None, description="The pipeline under test; may be left out when the file has one."
    )
    start: EventTime | None = Field(
        None,
        description="The test's clock: the default `ts` of injected events, and `start` of every "
        "source that has one (synthetic sensors, cameras), so runs are repeatable.",
    )
    inputs: list[CaseInput] = Field(
        default_factory=list,
        description="Events to inject; without any, the pipeline's own (file or synthetic) "
        "sources run as fast as they can.",
    )
    stub: list[CaseStub] = Field(
        default_factory=list,
        description="Nodes replaced by fixed-output stubs (one mapping or a list).",
    )
    expect: list[Expectation] = Field(min_length=1, description="What must come out, per node.")
    bytes_ratio: RatioBounds | None = Field(
        None,
        description="Bounds on bytes out / bytes in: JSON bytes reaching remote sinks over the "
        "bytes the sources read (injected events count as their JSON).",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_stub(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("stub"), dict):
            data = {**data, "stub": [data["stub"]]}
        return data


as_time = event_time
"""Epoch seconds from a YAML timestamp (naive means UTC), a number or ISO-8601 text."""


class CaseFile(BaseModel):
    """A `*_test.yaml` file: the pipelines file it tests and its cases."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config: str = Field(
        "pipelines.yaml",
        description="The pipelines file under test, relative to this file's folder.",
    )
    tests: list[Case] = Field(min_length=1, description="The cases.")


__all__ = ["Case", "CaseFile", "CaseInput", "CaseStub", "CountRange", "Expectation", "as_time"]
