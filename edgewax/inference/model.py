"""Model files and their signatures: read, verify against sha256 pins, describe inputs and outputs.

The runtime is LiteRT (`ai_edge_litert.interpreter.Interpreter`). Only when LiteRT is not
installed does edgewax fall back to `tflite_runtime.interpreter.Interpreter` (the same API; note
that tflite-runtime needs numpy < 2 and has no wheels past Python 3.11).

A model file's expected digest comes from, in order: the node's `sha256` option (one digest or a
list of accepted ones), else a sidecar file next to the model (`MODEL.sha256`, e.g.
`vib.tflite.sha256`, or `vib.sha256`; the first word is the hex digest, as `sha256sum` writes it),
else nothing (the model runs unpinned, and a warning says so). The same rule applies when the node
starts, when `edgewax validate` runs, and when a hot swap loads a new version.

>>> from edgewax.inference.flatbuild import dense_model
>>> sig = signature_of(dense_model(4, 2))
>>> sig.inputs[0]
TensorSpec(name='x', index=0, dtype='float32', shape=(-1, 4), scale=0.0, zero_point=0)
>>> sig.inputs[0].describe(), sig.outputs[0].describe()
('x float32[?,4]', 'y float32[?,2]')
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgewax.errors import EdgewaxError

log = logging.getLogger("edgewax.inference")

VERSION_CHARS = 12
"""`model_version` on every event: this many hex characters of the file's sha256."""

_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


class ModelError(EdgewaxError):
    """A model file that cannot be used: missing, corrupt, or not matching its pin."""


def interpreter_class() -> tuple[Any, str]:
    """The Interpreter class and the runtime's name: LiteRT, or tflite_runtime if it is missing."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise ModelError(
                "no TFLite runtime: install `ai-edge-litert` (edgewax's dependency)"
            ) from None
        return Interpreter, "tflite_runtime"
    return Interpreter, "litert"


def new_interpreter(content: bytes, num_threads: int = 1, delegates: bool = True) -> Any:
    """An interpreter over model bytes, tensors allocated. Raises ModelError for a bad model.

    `delegates=False` skips the default (XNNPACK) delegate: enough to read a signature, and
    cheaper, as validation does.
    """
    cls, _ = interpreter_class()
    kwargs: dict[str, Any] = {}
    if not delegates:
        resolver = getattr(sys.modules[cls.__module__], "OpResolverType", None)
        if resolver is not None:
            kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interp = cls(model_content=content, num_threads=num_threads, **kwargs)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"not a valid TFLite model ({first})") from None
    return interp


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: its name, tensor index, dtype, shape (-1: dynamic) and quantisation."""

    name: str
    index: int
    dtype: str
    shape: tuple[int, ...]
    scale: float = 0.0
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and self.dtype in ("int8", "uint8", "int16")

    @property
    def dynamic_batch(self) -> bool:
        return len(self.shape) > 0 and self.shape[0] == -1

    def describe(self) -> str:
        dims = ",".join("?" if d < 0 else str(d) for d in self.shape)
        q = f" q(scale={self.scale:.6g}, zero_point={self.zero_point})" if self.quantized else ""
        return f"{self.name} {self.dtype}[{dims}]{q}"


@dataclass(frozen=True)
class Signature:
    """What a model takes and gives, in the order edgewax uses (the signature's, if it has one)."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def same_as(self, other: Signature) -> bool:
        """True if a model with `other` can replace one with this (names, dtypes, shapes, quant)."""

        def key(specs: tuple[TensorSpec, ...]) -> list[tuple[Any, ...]]:
            return [(t.name, t.dtype, t.shape, t.scale, t.zero_point) for t in specs]

        return key(self.inputs) == key(other.inputs) and key(self.outputs) == key(other.outputs)

    def difference(self, other: Signature) -> str:
        mine = ", ".join(t.describe() for t in (*self.inputs, *self.outputs))
        theirs = ", ".join(t.describe() for t in (*other.inputs, *other.outputs))
        return f"expected {mine}; got {theirs}"


def _spec(name: str, d: dict[str, Any]) -> TensorSpec:
    shape = d.get("shape_signature")
    if shape is None or len(shape) != len(d["shape"]):
        shape = d["shape"]
    scale, zero_point = d.get("quantization", (0.0, 0))
    return TensorSpec(
        name=name,
        index=int(d["index"]),
        dtype=np.dtype(d["dtype"]).name,
        shape=tuple(int(v) for v in shape),
        scale=float(scale),
        zero_point=int(zero_point),
    )


def signature_from(interp: Any) -> Signature:
    """The signature of a loaded interpreter: named by its (single) SignatureDef if it has one."""
    details_in = {d["index"]: d for d in interp.get_input_details()}
    details_out = {d["index"]: d for d in interp.get_output_details()}
    sigs = interp.get_signature_list() if hasattr(interp, "get_signature_list") else {}
    if len(sigs) == 1:
        full = interp._get_full_signature_list()
        (entry,) = full.values()
        inputs = tuple(_spec(name, details_in[idx]) for name, idx in entry["inputs"].items())
        outputs = tuple(_spec(name, details_out[idx]) for name, idx in entry["outputs"].items())
        if len(inputs) == len(details_in) and len(outputs) == len(details_out):
            return Signature(inputs, outputs)
    return Signature(
        tuple(_spec(d["name"], d) for d in details_in.values()),
        tuple(_spec(d["name"], d) for d in details_out.values()),
    )


def signature_of(content: bytes) -> Signature:
    """The signature of model bytes (raises ModelError if they are not a model)."""
    return signature_from(new_interpreter(content, delegates=False))


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def sidecar_paths(path: Path) -> list[Path]:
    """Where a model's sidecar digest may be: `MODEL.tflite.sha256`, then `MODEL.sha256`."""
    return [path.with_name(path.name + ".sha256"), path.with_suffix(".sha256")]


def read_sidecar(path: Path) -> tuple[str, Path] | None:
    """The digest in the model's sidecar file and that file's path, or None if there is none."""
    for side in sidecar_paths(path):
        if side == path or not side.is_file():
            continue
        words = side.read_text(encoding="utf-8", errors="replace").split()
        digest = words[0] if words else ""
        if not _HEX.match(digest):
            raise ModelError(f"{side}: expected a sha256 hex digest, found {digest[:20]!r}")
        return digest.lower(), side
    return None


def expected_digests(path: Path, pins: Sequence[str]) -> tuple[list[str], str]:
    """The digests a model file may have, and where they come from (for messages)."""
    if pins:
        return [p.lower() for p in pins], "the `sha256` pin"
    side = read_sidecar(path)
    if side is not None:
        return [side[0]], f"the sidecar {side[1].name}"
    return [], ""


@dataclass(frozen=True)
class ModelFile:
    """A model file's bytes, read once and verified, with what edgewax needs to run it."""

    path: Path
    content: bytes
    sha256: str
    signature: Signature
    pinned: bool
    stat: tuple[int, int, int, int]
    """(mtime_ns, size, inode, device) when read: the hot-swap watcher compares these."""

    @property
    def version(self) -> str:
        return self.sha256[:VERSION_CHARS]

    @property
    def name(self) -> str:
        return self.path.name


def file_identity(path: Path) -> tuple[int, int, int, int] | None:
    """What tells a changed file from the same one without reading it: mtime, size, inode."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


def read_model(path: Path, pins: Sequence[str] = ()) -> ModelFile:
    """Read and verify a model file: matches its pin (or sidecar), loads; or ModelError."""
    stat = file_identity(path)
    if stat is None or not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    try:
        content = path.read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read model file {path}: {e.strerror}") from None
    digest = sha256_hex(content)
    expected, source = expected_digests(path, pins)
    if expected and digest not in expected:
        raise ModelError(
            f"model file {path.name} has sha256 {digest}, which does not match {source} "
            f"({', '.join(e[:16] + '…' for e in expected)})"
        )
    if content[4:8] != b"TFL3":
        raise ModelError(f"model file {path.name} is not a TFLite model (no TFL3 identifier)")
    try:
        signature = signature_of(content)
    except ModelError as e:
        raise ModelError(f"model file {path.name}: {e}") from None
    return ModelFile(path, content, digest, signature, bool(expected), stat)
