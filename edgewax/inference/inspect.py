"""`edgewax inspect-model FILE`: what a model takes and gives, its ops, size and sha256.

>>> import tempfile, pathlib
>>> from edgewax.inference.flatbuild import dense_model
>>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.tflite"
>>> _ = path.write_bytes(dense_model(4, 2, int8=True))
>>> info = inspect_model(path)
>>> info["inputs"][0]["shape"], info["inputs"][0]["quantization"], info["ops"]
([-1, 4], {'scale': 0.015625, 'zero_point': 0}, {'FULLY_CONNECTED': 1})
>>> print(format_inspection(info))  # doctest: +ELLIPSIS
model    ...tiny.tflite
size     ... bytes
sha256   ...
version  ...
runtime  litert
inputs   x  int8[?,4]  q(scale=0.015625, zero_point=0)
outputs  y  int8[?,2]  q(scale=0.0625, zero_point=-1)
ops      FULLY_CONNECTED x1
batch    dynamic (resized per batch)
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from edgewax.inference.model import (
    ModelError,
    TensorSpec,
    interpreter_class,
    read_model,
    read_sidecar,
)


def _ops(content: bytes) -> dict[str, int]:
    """Operator names and counts over all subgraphs, from the flatbuffer itself."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - tflite_runtime ships no schema module
        return {}
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(content, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        codes.append(custom.decode() if custom else names.get(builtin, f"OP_{builtin}"))
    counts: Counter[str] = Counter()
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for o in range(graph.OperatorsLength()):
            counts[codes[graph.Operators(o).OpcodeIndex()]] += 1
    return dict(counts.most_common())


def _tensor(t: TensorSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"name": t.name, "index": t.index, "dtype": t.dtype, "shape": [*t.shape]}
    out["quantization"] = {"scale": t.scale, "zero_point": t.zero_point} if t.quantized else None
    return out


def inspect_model(path: Path) -> dict[str, Any]:
    """A JSON-ready description of a model file (ModelError if it is missing or not a model)."""
    model = read_model(path)
    sig = model.signature
    info: dict[str, Any] = {
        "file": str(path),
        "size": len(model.content),
        "sha256": model.sha256,
        "version": model.version,
        "runtime": interpreter_class()[1],
        "inputs": [_tensor(t) for t in sig.inputs],
        "outputs": [_tensor(t) for t in sig.outputs],
        "ops": _ops(model.content),
        "dynamic_batch": all(t.dynamic_batch for t in sig.inputs),
    }
    try:
        side = read_sidecar(path)
    except ModelError as e:
        info["sidecar"] = {"error": str(e)}
    else:
        if side is not None:
            info["sidecar"] = {"file": str(side[1]), "matches": side[0] == model.sha256}
    return info


def format_inspection(info: dict[str, Any]) -> str:
    """The text form of `inspect_model`'s result."""

    def tensor(t: dict[str, Any]) -> str:
        dims = ",".join("?" if d < 0 else str(d) for d in t["shape"])
        q = t["quantization"]
        quant = f"  q(scale={q['scale']:.6g}, zero_point={q['zero_point']})" if q else ""
        return f"{t['name']}  {t['dtype']}[{dims}]{quant}"

    lines = [
        f"model    {info['file']}",
        f"size     {info['size']} bytes",
        f"sha256   {info['sha256']}",
        f"version  {info['version']}",
        f"runtime  {info['runtime']}",
    ]
    for label, key in (("inputs", "inputs"), ("outputs", "outputs")):
        for i, t in enumerate(info[key]):
            lines.append(f"{label if i == 0 else '':<8} {tensor(t)}")
    ops = ", ".join(f"{name} x{n}" for name, n in info["ops"].items())
    lines.append(f"ops      {ops}")
    batch = "dynamic (resized per batch)" if info["dynamic_batch"] else "fixed (one run per event)"
    lines.append(f"batch    {batch}")
    side = info.get("sidecar")
    if side:
        state = side.get("error") or ("matches" if side["matches"] else "DOES NOT MATCH")
        lines.append(f"sidecar  {side.get('file', '')} {state}".rstrip())
    return "\n".join(lines)
