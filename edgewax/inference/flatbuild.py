"""Tiny TFLite models written in pure Python with the flatbuffer schema that ships in LiteRT.

For tests and examples that must not need TensorFlow: `dense_model` is one FULLY_CONNECTED layer
`y = x @ W.T + b` (float32, or full-integer int8 with per-tensor scales), with a dynamic batch
dimension unless `batch` fixes it. The weights are given or drawn from a seed, so the expected
output is easy to compute with numpy.

>>> import numpy as np
>>> from edgewax.inference.model import new_interpreter
>>> w = np.eye(3, dtype=np.float32) * 2
>>> interp = new_interpreter(dense_model(3, 3, weights=w))
>>> interp.set_tensor(0, np.array([[1, 2, 3]], np.float32)); interp.invoke()
>>> interp.get_tensor(interp.get_output_details()[0]["index"]).tolist()
[[2.0, 4.0, 6.0]]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

_TYPES = {"float32": 0, "int32": 2, "uint8": 3, "int8": 9}


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # pragma: no cover - the tflite_runtime fallback has no schema module
        from tensorflow.lite.python import schema_py_generated as schema
    return schema


def dense_model(
    n_in: int,
    n_out: int,
    weights: npt.NDArray[Any] | None = None,
    bias: npt.NDArray[Any] | None = None,
    int8: bool = False,
    batch: int | None = None,
    seed: int = 0,
    input_name: str = "x",
    output_name: str = "y",
    in_scale: float = 1 / 64,
    out_scale: float = 1 / 16,
) -> bytes:
    """A one-layer model `y = x @ weights.T + bias` as .tflite bytes.

    `weights` has shape (n_out, n_in). `int8`: input and output are int8 (zero points 0 and -1,
    scales `in_scale` and `out_scale`), weights int8 and bias int32 as the converter would write
    them. `batch`: a fixed batch size; default: dynamic (shape signature -1).
    """
    s = _schema()
    rng = np.random.default_rng(seed)
    w = (
        np.asarray(weights, np.float32)
        if weights is not None
        else rng.uniform(-1, 1, (n_out, n_in)).astype(np.float32)
    )
    b = np.asarray(bias, np.float32) if bias is not None else np.zeros(n_out, np.float32)
    b0 = batch or 1
    sig0 = batch or -1

    def quant(scale: float, zp: int) -> Any:
        q = s.QuantizationParametersT()
        q.scale, q.zeroPoint = [float(scale)], [int(zp)]
        return q

    def tensor(name: str, shape: list[int], sig: list[int], dtype: str, buf: int, q: Any) -> Any:
        t = s.TensorT()
        t.name, t.shape, t.shapeSignature = name, shape, sig
        t.type, t.buffer, t.quantization = _TYPES[dtype], buf, q
        return t

    def buffer(data: bytes | None) -> Any:
        buf = s.BufferT()
        if data is not None:
            buf.data = np.frombuffer(data, np.uint8).tolist()
        return buf

    if int8:
        w_scale = float(np.abs(w).max() / 127.0) or 1.0
        w_q = np.clip(np.round(w / w_scale), -127, 127).astype(np.int8)
        b_q = np.round(b / (in_scale * w_scale)).astype(np.int32)
        tensors = [
            tensor(input_name, [b0, n_in], [sig0, n_in], "int8", 0, quant(in_scale, 0)),
            tensor("weights", [n_out, n_in], [n_out, n_in], "int8", 1, quant(w_scale, 0)),
            tensor("bias", [n_out], [n_out], "int32", 2, quant(in_scale * w_scale, 0)),
            tensor(output_name, [b0, n_out], [sig0, n_out], "int8", 0, quant(out_scale, -1)),
        ]
        buffers = [buffer(None), buffer(w_q.tobytes()), buffer(b_q.tobytes())]
    else:
        tensors = [
            tensor(input_name, [b0, n_in], [sig0, n_in], "float32", 0, None),
            tensor("weights", [n_out, n_in], [n_out, n_in], "float32", 1, None),
            tensor("bias", [n_out], [n_out], "float32", 2, None),
            tensor(output_name, [b0, n_out], [sig0, n_out], "float32", 0, None),
        ]
        buffers = [buffer(None), buffer(w.tobytes()), buffer(b.tobytes())]

    opts = s.FullyConnectedOptionsT()
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    op.builtinOptionsType = s.BuiltinOptions.FullyConnectedOptions
    op.builtinOptions = opts
    code = s.OperatorCodeT()
    code.builtinCode = s.BuiltinOperator.FULLY_CONNECTED
    code.deprecatedBuiltinCode = s.BuiltinOperator.FULLY_CONNECTED
    code.version = 4 if int8 else 1

    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0], [3], [op]
    graph.name = "main"
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [graph]
    model.buffers = [buffer(None), *buffers]
    for t in tensors:  # buffer 0 is the empty sentinel: shift real buffers by one
        if t.name in ("weights", "bias"):
            t.buffer += 1
    model.description = "edgewax.inference.flatbuild"

    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def expected_dense(
    x: npt.NDArray[Any], n_in: int, n_out: int, seed: int = 0
) -> npt.NDArray[np.float32]:
    """What `dense_model(n_in, n_out, seed=seed)` (float32, default weights) computes for `x`."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(-1, 1, (n_out, n_in)).astype(np.float32)
    out: npt.NDArray[np.float32] = (np.asarray(x, np.float32) @ w.T).astype(np.float32)
    return out


def restamp(content: bytes, description: str) -> bytes:
    """The same model with another description: same signature and outputs, another sha256.

    A stand-in for "a new version of the model" in hot-swap tests and demos.
    """
    import flatbuffers

    s = _schema()
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(content, 0))
    model.description = description
    builder = flatbuffers.Builder(len(content) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def add_model(n: int, batch: int | None = None) -> bytes:
    """A two-input model `y = a + b` over float32 vectors of length n (multi-input tests)."""
    import flatbuffers

    s = _schema()
    b0, sig0 = batch or 1, batch or -1
    tensors = []
    for name in ("a", "b", "y"):
        t = s.TensorT()
        t.name, t.shape, t.shapeSignature = name, [b0, n], [sig0, n]
        t.type, t.buffer = _TYPES["float32"], 0
        tensors.append(t)
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1], [2]
    op.builtinOptionsType = s.BuiltinOptions.AddOptions
    op.builtinOptions = s.AddOptionsT()
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.ADD
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0, 1], [2], [op]
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [graph]
    model.buffers = [s.BufferT()]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())
