"""`tflite`: run a TensorFlow Lite model on every event, on LiteRT, a whole batch at a time.

The node reads one tensor per model input from the events (`input`), runs the model over the batch
(see `edgewax.inference.runner`), and writes each output's row for the event to a field
(`outputs`), plus `model_version` (the first 12 hex characters of the model file's sha256), and,
with `labels`, `label` and `score` (and `top`, the `top_k` best, when `top_k` > 1).

When the model file changes, the new version is verified, loaded and warmed up in a background
thread and swapped in between batches (`edgewax.inference.swap`).
"""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import bytewax.operators as op
import numpy as np
from bytewax.dataflow import Stream
from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgewax.config.diagnostics import did_you_mean
from edgewax.config.types import Duration
from edgewax.events import Event
from edgewax.inference.model import (
    ModelError,
    ModelFile,
    Signature,
    TensorSpec,
    read_model,
)
from edgewax.inference.swap import ModelSlot
from edgewax.operators.base import (
    FieldInfo,
    Fields,
    NodeContext,
    NodeOptions,
    Problem,
    Transform,
    guarded,
)
from edgewax.operators.registry import register

_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
VERSION_FIELD = "model_version"


BATCH_INPUT_BYTES = 256 * 1024
"""Input bytes of one invoke that the default batch size aims at. Measured with scenes_cnn (64x64x3
float32, `benchmarks/scale.py`): invokes of 8 ran 14 % faster than invokes of 64 on one worker and
scaled to 1.4x on two processes instead of 1.1x (a 3 MB batch does not stay in a core's cache)."""


def auto_batch_size(sig: Signature) -> int:
    """The default `batch.max_size`: inputs of one invoke within `BATCH_INPUT_BYTES`, 1 to 64.

    >>> from edgewax.inference.model import Signature, TensorSpec
    >>> frame = TensorSpec("frame", 0, "float32", (-1, 256))
    >>> image = TensorSpec("image", 0, "float32", (-1, 64, 64, 3))
    >>> out = TensorSpec("y", 1, "float32", (-1, 1))
    >>> auto_batch_size(Signature((frame,), (out,))), auto_batch_size(Signature((image,), (out,)))
    (64, 5)
    """
    per_event = sum(
        int(np.prod([max(d, 1) for d in t.shape[1:]])) * np.dtype(t.dtype).itemsize
        for t in sig.inputs
    )
    return max(1, min(64, BATCH_INPUT_BYTES // max(per_event, 1)))


class BatchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_size: int | None = Field(
        None,
        ge=1,
        le=65536,
        description="Most events the model runs on in one invoke (models with a dynamic batch "
        "dimension); larger Bytewax batches are split. Default: as many as keep one invoke's "
        "inputs within 256 KiB (at most 64), so a batch stays in a core's cache: a 64x64 RGB "
        "float32 input gets 5, a 256-sample frame 64.",
    )
    max_wait_ms: float = Field(
        0,
        ge=0,
        description="Wait up to this long to gather up to `max_size` events of a key before "
        "running (for sources that deliver one event at a time); 0 runs each Bytewax batch "
        "as it comes.",
    )


class TfliteOptions(NodeOptions):
    model: str = Field(description="Path of the `.tflite` file (relative to the config file).")
    sha256: str | list[str] | None = Field(
        None,
        description="The model file's sha256 (or a list of accepted ones): a file that does not "
        "match is refused, when validating, starting and hot swapping. Without it, a sidecar "
        "`MODEL.sha256` next to the model is used if present.",
    )
    input: str | list[str] | None = Field(
        None,
        description="The field holding the input tensor (a list for a model with several "
        "inputs, in the model's input order); default: fields named like the model's inputs.",
    )
    outputs: dict[str | int, str] | None = Field(
        None,
        description="Model output (tensor name or index) -> field to write it to; default: every "
        "output, each to a field of its own name.",
    )
    labels: str | None = Field(
        None,
        description="A labels file (one label per line, in the order of the class scores): adds "
        "`label` and `score` from the first output with one score per label.",
    )
    top_k: int = Field(
        1,
        ge=1,
        description="With `labels` and top_k > 1: also `top`, the k best "
        "`{label, score}`, best first.",
    )
    num_threads: int = Field(1, ge=1, le=64, description="Threads for each interpreter.")
    batch: BatchOptions = Field(
        default_factory=BatchOptions, description="Micro-batching: `{max_size, max_wait_ms}`."
    )
    raw: bool = Field(
        False,
        description="Pass tensors as they are: no quantising of float input and no "
        "de-quantising of integer output for quantised models.",
    )
    watch: Duration | None = Field(
        2.0,
        description="How often to look for a new version of the model file (hot swap); null "
        "never looks.",
    )

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str | list[str] | None) -> str | list[str] | None:
        for digest in [value] if isinstance(value, str) else value or []:
            if not _HEX.match(digest):
                raise ValueError("a sha256 is 64 hex characters (`sha256sum MODEL` prints it)")
        return value

    @property
    def pins(self) -> list[str]:
        return [self.sha256] if isinstance(self.sha256, str) else list(self.sha256 or [])


def _inputs(options: TfliteOptions, sig: Signature) -> list[str]:
    if options.input is None:
        return [t.name for t in sig.inputs]
    return [options.input] if isinstance(options.input, str) else list(options.input)


def _outputs(options: TfliteOptions, sig: Signature) -> list[tuple[TensorSpec, str]]:
    """(output tensor, field) pairs; raises KeyError naming an output the model does not have."""
    if options.outputs is None:
        return [(t, t.name) for t in sig.outputs]
    by_name = {t.name: t for t in sig.outputs}
    pairs = []
    for ref, field in options.outputs.items():
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit() and ref not in by_name):
            i = int(ref)
            if not 0 <= i < len(sig.outputs):
                raise KeyError(ref)
            pairs.append((sig.outputs[i], field))
        elif ref in by_name:
            pairs.append((by_name[ref], field))
        else:
            raise KeyError(ref)
    return pairs


def _labels_output(sig: Signature, n: int) -> int | None:
    """The first model output with one score per label (whether or not it is in `outputs`)."""
    for i, spec in enumerate(sig.outputs):
        if len(spec.shape) == 2 and spec.shape[1] == n:
            return i
    return None


def _read_labels(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


_NUMERIC = frozenset(
    ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "float16", "float32", "float64")
)
"""Declared dtypes a model input can take (cast, or quantised for a quantised input)."""


def _fits(info: FieldInfo, spec: TensorSpec, raw: bool) -> str | None:
    """Why a field's declared dtype/shape cannot feed a model input, or None if it can."""
    want = spec.shape[1:]
    if info.shape is not None:
        same = len(info.shape) == len(want) and all(
            a is None or b < 0 or a == b for a, b in zip(info.shape, want)
        )
        if not same:
            have = "x".join("?" if d is None else str(d) for d in info.shape) or "scalar"
            need = "x".join("?" if d < 0 else str(d) for d in want) or "scalar"
            return f"has shape ({have}) per event, the model input `{spec.name}` takes ({need})"
    if info.dtype is not None:
        if raw and spec.quantized and info.dtype != spec.dtype:
            return (
                f"is {info.dtype}; with `raw: true` the quantised input `{spec.name}` takes "
                f"{spec.dtype}"
            )
        if info.dtype not in _NUMERIC:
            return f"is {info.dtype}; the model input `{spec.name}` takes numbers ({spec.dtype})"
    return None


def _sample_shape(spec: TensorSpec) -> tuple[int | None, ...]:
    return tuple(None if d < 0 else d for d in spec.shape[1:])


@register
class Tflite(Transform):
    """Run a TensorFlow Lite model (LiteRT) on each event; outputs, labels and model version added.

    Quantised models are handled for you (float in, float out). The model file is pinned by its
    sha256 and swapped without a restart when it changes. A tiny model made in Python:

    >>> import numpy as np, tempfile, pathlib
    >>> from edgewax.inference.flatbuild import dense_model
    >>> from edgewax.testing import run_node
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "double.tflite").write_bytes(dense_model(2, 2, weights=2 * np.eye(2)))
    >>> options = {"model": "double.tflite", "input": "v", "outputs": {"y": "twice"}}
    >>> [e] = run_node("tflite", options, [{"v": np.array([1.0, 2.5], np.float32)}], folder)
    >>> e["twice"].tolist(), e["model_version"]
    ([2.0, 5.0], '...')
    """

    type_name = "tflite"
    spread = True  # LiteRT releases the GIL: worker threads run models in parallel
    Options: ClassVar[type[NodeOptions]] = TfliteOptions

    def __init__(self, options: TfliteOptions, ctx: NodeContext) -> None:
        super().__init__(options, ctx)
        self.path = ctx.path(options.model)
        self.health = ctx.health.check(f"{ctx.pipeline}/{ctx.node_id}", "model")
        try:
            model = read_model(self.path, options.pins)
        except ModelError as e:
            self.health.fail(str(e))
            raise ModelError(f"pipeline {ctx.pipeline}, node {ctx.node_id}: {e}") from None
        sig = model.signature
        self.input_fields = _inputs(options, sig)
        self.pairs = _outputs(options, sig)
        try:
            self.labels = _read_labels(ctx.path(options.labels)) if options.labels else None
        except OSError as e:
            raise ModelError(
                f"pipeline {ctx.pipeline}, node {ctx.node_id}: cannot read labels file "
                f"{options.labels}: {e.strerror}"
            ) from None
        self.labels_at = _labels_output(sig, len(self.labels)) if self.labels is not None else None
        self.shapes = [t.shape[1:] for t in sig.inputs]
        # Where each chosen output is in the runner's output list (a swap keeps the signature).
        names = [t.name for t in sig.outputs]
        self.columns = [(names.index(spec.name), field) for spec, field in self.pairs]
        self.max_size = options.batch.max_size or auto_batch_size(sig)
        self.slot = ModelSlot(
            model,
            options.pins,
            options.num_threads,
            self.max_size,
            options.raw,
            on_swap=self._on_swap,
        )
        self._swaps = {
            r: ctx.stats.counter("edgewax_model_swaps", "Model hot swaps, by result.", result=r)
            for r in ("ok", "failed")
        }
        self._info_lock = threading.Lock()
        self._latency: dict[str, Any] = {}
        self._published(None, model)
        self.health.ok(f"{model.name} version {model.version}")
        self._watching = False

    # ------------------------------------------------------------- validation

    @classmethod
    def _load(cls, options: TfliteOptions, base_dir: Path) -> ModelFile:
        path = Path(options.model).expanduser()
        return read_model(path if path.is_absolute() else base_dir / path, options.pins)

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        try:
            model = cls._load(options, base_dir)
        except ModelError as e:
            where = ("sha256",) if "does not match the `sha256` pin" in str(e) else ("model",)
            hint = (
                "run `edgewax inspect-model FILE` for its sha256; pin the version you tested"
                if where == ("sha256",)
                else None
            )
            return [Problem(where, str(e), hint)]
        sig = model.signature
        problems = []
        fields = _inputs(options, sig)
        loc: tuple[str | int, ...] = ("input",)
        if len(fields) != len(sig.inputs):
            names = ", ".join(t.name for t in sig.inputs)
            problems.append(
                Problem(
                    loc,
                    f"the model takes {len(sig.inputs)} input(s) ({names}), "
                    f"`input` names {len(fields)}",
                    "list one field per model input, in order",
                )
            )
        else:
            for i, (name, spec) in enumerate(zip(fields, sig.inputs)):
                at = (*loc, i) if isinstance(options.input, list) else loc
                if fields_in is None:
                    continue
                if name not in fields_in:
                    hint = did_you_mean(name, fields_in) or (
                        f"known fields: {', '.join(sorted(fields_in))}"
                    )
                    if options.input is None:
                        hint = "set `input:` to the field holding the tensor; " + hint
                    problems.append(
                        Problem(at, f"input field `{name}` is not produced upstream", hint)
                    )
                    continue
                why = _fits(fields_in[name], spec, options.raw)
                if why:
                    problems.append(
                        Problem(at, f"field `{name}` {why}", "reshape or resize it upstream")
                    )
        try:
            _outputs(options, sig)
        except KeyError as e:
            names = ", ".join(t.name for t in sig.outputs)
            problems.append(
                Problem(
                    ("outputs", e.args[0]),
                    f"the model has no output `{e.args[0]}`",
                    f"outputs: {names} (or indices 0..{len(sig.outputs) - 1})",
                )
            )
            return problems
        if options.labels:
            path = Path(options.labels).expanduser()
            path = path if path.is_absolute() else base_dir / path
            if not path.is_file():
                problems.append(Problem(("labels",), f"labels file {path} does not exist"))
            else:
                labels = _read_labels(path)
                if _labels_output(sig, len(labels)) is None:
                    shapes = ", ".join(spec.describe() for spec in sig.outputs)
                    problems.append(
                        Problem(
                            ("labels",),
                            f"{len(labels)} labels, but no output has one score per label",
                            f"outputs: {shapes}",
                        )
                    )
        return problems

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        if fields_in is None:
            return None
        try:
            model = cls._load(options, base_dir)
            pairs = _outputs(options, model.signature)
        except (ModelError, KeyError):
            return None
        raw_in = any(
            fields_in[name].raw for name in _inputs(options, model.signature) if name in fields_in
        )
        out = dict(fields_in)
        for spec, field in pairs:
            dtype = spec.dtype if options.raw or not spec.quantized else "float32"
            shape = _sample_shape(spec)
            # Per-event arrays made from raw data stay raw (a reconstruction, an embedding).
            out[field] = FieldInfo(dtype, shape, raw=raw_in and len(shape) > 0)
        if options.labels:
            out["label"] = FieldInfo("str")
            out["score"] = FieldInfo("float64")
            if options.top_k > 1:
                out["top"] = FieldInfo()
        out[VERSION_FIELD] = FieldInfo("str")
        return out

    # ---------------------------------------------------------------- metrics

    def _published(self, old: ModelFile | None, new: ModelFile) -> None:
        stats = self.ctx.stats
        doc = "The model in use (1) by file, sha256 and version; 0 for replaced versions."
        if old is not None:
            stats.gauge(
                "edgewax_model_info", doc, model=old.name, sha256=old.sha256, version=old.version
            ).set(0)
        stats.gauge(
            "edgewax_model_info", doc, model=new.name, sha256=new.sha256, version=new.version
        ).set(1)

    def _on_swap(
        self, result: str, old: ModelFile | None, new: ModelFile | None, detail: str
    ) -> None:
        if result == "same" and new is not None:
            self.health.ok(f"{new.name} version {new.version}")
            return
        self._swaps[result].inc()
        if result == "ok" and new is not None:
            self._published(old, new)
            self.health.ok(f"{new.name} version {new.version}")
        elif result == "failed" and old is not None:
            # Still serving, but the file on disk is missing or bad: a restart would not load it.
            self.health.fail(f"{detail} (still running version {old.version})")

    def _latency_child(self, model: ModelFile) -> Any:
        child = self._latency.get(model.version)
        if child is None:
            with self._info_lock:
                child = self.ctx.stats.histogram(
                    "edgewax_inference_seconds",
                    "Time the interpreter took for one run over a batch (or chunk) of events.",
                    buckets=_BUCKETS,
                    model=model.name,
                    version=model.version,
                )
                self._latency[model.version] = child
        return child

    # -------------------------------------------------------------------- run

    def build(self, up: Stream[Event]) -> Stream[Event]:
        step = guarded(self.process, self.ctx)
        wait = self.options.batch.max_wait_ms
        if wait <= 0:
            return op.flat_map_batch(self.ctx.step_id, up, step)
        sid = self.ctx.step_id
        keyed = op.key_on(f"{sid}/key", up, lambda e: str(e["key"]))
        lists = op.collect(
            f"{sid}/collect", keyed, timedelta(milliseconds=wait), self.max_size
        )

        def flat(items: list[tuple[str, list[Event]]]) -> list[Event]:
            return step([e for _, events in items for e in events])

        return op.flat_map_batch(sid, lists, flat)

    def _gather(self, batch: list[Event]) -> tuple[list[Event], list[np.ndarray[Any, Any]]]:
        """The input arrays stacked over the batch; events that do not fit are dead-lettered."""
        try:
            # np.array stacks equal-shaped arrays 2x faster than np.stack, and refuses ragged ones.
            arrays = [np.array([e[f] for e in batch]) for f in self.input_fields]
            if all(
                _shape_ok(a.shape[1:], s) and a.dtype.kind in "biuf"
                for a, s in zip(arrays, self.shapes)
            ):
                return batch, arrays
        except (KeyError, ValueError, TypeError):
            pass
        good = []
        for e in batch:
            why = self._misfit(e)
            if why is None:
                good.append(e)
            else:
                self.ctx.dead_letter(why[0], why[1], e)
        if not good:
            return [], []
        return good, [np.array([e[f] for e in good]) for f in self.input_fields]

    def _misfit(self, e: Event) -> tuple[str, str] | None:
        for f, want in zip(self.input_fields, self.shapes):
            if f not in e:
                return "missing_field", f"missing field '{f}'"
            try:
                x = np.asarray(e[f])
            except Exception as err:
                return "bad_value", f"field `{f}`: {type(err).__name__}: {err}"
            if x.dtype.kind not in "biuf":
                return "bad_value", f"field `{f}` holds {x.dtype}, not numbers"
            if not _shape_ok(x.shape, want):
                return "tensor_shape", (
                    f"field `{f}` has shape {tuple(x.shape)}, the model takes "
                    f"{tuple(None if d < 0 else d for d in want)}"
                )
        return None

    def process(self, batch: list[Event]) -> list[Event]:
        if not self._watching:
            self._start_watch()
        runner, model = self.slot.runner()
        batch, arrays = self._gather(batch)
        if not batch:
            return []
        outs = runner.run(arrays)
        self._latency_child(model).observe(runner.last_seconds)
        if self.ctx.shared_input:
            batch = [dict(e) for e in batch]
        version = model.version
        # A per-event scalar becomes a float, anything else that event's row of the output.
        columns = [
            (field, outs[pos].tolist() if outs[pos].ndim == 1 else list(outs[pos]))
            for pos, field in self.columns
        ]
        if len(columns) == 1:  # the common case in one pass over the batch
            (field, column), key = columns[0], VERSION_FIELD
            for e, v in zip(batch, column):
                e[field] = v
                e[key] = version
        else:
            for field, column in columns:
                for e, v in zip(batch, column):
                    e[field] = v
            for e in batch:
                e[VERSION_FIELD] = version
        if self.labels_at is not None:
            self._add_labels(batch, outs[self.labels_at])
        return batch

    def _add_labels(self, batch: list[Event], scores: np.ndarray[Any, Any]) -> None:
        labels = self.labels
        assert labels is not None
        scores = scores.astype(np.float32, copy=False)
        k = min(self.options.top_k, scores.shape[1])
        best = np.argmax(scores, axis=1)
        best_scores = scores[np.arange(len(scores)), best].tolist()
        for e, i, s in zip(batch, best.tolist(), best_scores):
            e["label"] = labels[i] if i < len(labels) else str(i)
            e["score"] = s
        if k > 1:
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            for e, row, idx in zip(batch, scores, order):
                e["top"] = [{"label": labels[i], "score": float(row[i])} for i in idx.tolist()]

    def _start_watch(self) -> None:
        self._watching = True
        if self.options.watch:
            self.slot.watch(float(self.options.watch), self.ctx.stop)


def _shape_ok(have: tuple[int, ...], want: tuple[int, ...]) -> bool:
    return len(have) == len(want) and all(w < 0 or h == w for h, w in zip(have, want))


__all__ = ["Tflite", "TfliteOptions"]
