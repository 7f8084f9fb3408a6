"""Run a model over a batch: one interpreter per worker thread, tensor indices looked up once.

When the model's batch dimension is dynamic (shape signature -1), a batch of n events is one
`set_tensor` / `invoke` / `get_tensor` round (in chunks of at most `max_batch`). An interpreter is
resized once per batch size: up to three stay allocated for the sizes last used (full chunks and a
tail, say), so steady streams never resize. A model with a fixed batch of 1 is run in a tight loop
of set / invoke / get per event; a fixed batch of B > 1 runs chunks of B, the last one padded.

Quantisation is handled here unless `raw`: float input is quantised with the input tensor's scale
and zero point (`q = round(x / scale) + zero_point`, clipped to the integer type), and integer
output is de-quantised (`(q - zero_point) * scale`, float32).

>>> import numpy as np
>>> from edgewax.inference.flatbuild import dense_model
>>> from edgewax.inference.model import signature_of
>>> content = dense_model(2, 2, weights=np.eye(2), int8=True)
>>> runner = Runner(content, signature_of(content))
>>> [out] = runner.run([np.array([[0.5, -0.25], [1.0, 0.0]], np.float32)])
>>> out.tolist()
[[0.5, -0.25], [1.0, 0.0]]
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edgewax.inference.model import Signature, TensorSpec, new_interpreter

Array = npt.NDArray[Any]

PARKED = 2
"""Interpreters a runner keeps allocated for batch sizes other than the active one."""


def quantize(x: Array, spec: TensorSpec) -> Array:
    """Real values -> the integer tensor type with the tensor's scale and zero point."""
    info = np.iinfo(spec.dtype)
    q = np.divide(x, np.float32(spec.scale), dtype=np.float32)  # one new array, then in place
    np.round(q, out=q)
    q += spec.zero_point
    np.clip(q, info.min, info.max, out=q)
    out: Array = q.astype(spec.dtype)
    return out


def dequantize(q: Array, spec: TensorSpec) -> Array:
    """The integer tensor -> float32 real values."""
    out: Array = q.astype(np.float32)
    out -= np.float32(spec.zero_point)
    out *= np.float32(spec.scale)
    return out


class Runner:
    """One model version's interpreter, owned by one thread (interpreters are not thread-safe)."""

    def __init__(
        self,
        content: bytes,
        signature: Signature,
        num_threads: int = 1,
        max_batch: int = 256,
        raw: bool = False,
        interpreter: Any = None,
    ) -> None:
        self.signature = signature
        self.content = content
        self.num_threads = num_threads
        self.inputs = signature.inputs
        self.outputs = signature.outputs
        self._bind(
            interpreter if interpreter is not None else new_interpreter(content, num_threads)
        )
        self._parked: OrderedDict[int, Any] = OrderedDict()
        """Interpreters allocated for other batch sizes, least recently used first."""
        self._in_idx = [t.index for t in self.inputs]
        self._out_idx = [t.index for t in self.outputs]
        self.raw = raw
        self.dynamic = all(t.dynamic_batch for t in self.inputs)
        self.fixed = (
            0 if self.dynamic else max(self.inputs[0].shape[0], 1) if self.inputs[0].shape else 1
        )
        self.max_batch = max(int(max_batch), 1)
        self.last_seconds = 0.0
        """Time the last `run` spent in the interpreter (set/invoke/get), for the latency metric."""

    def _bind(self, interp: Any) -> None:
        """Use `interp`: its calls bound once (`get_input_details` costs microseconds a call).

        LiteRT's wrapper methods are called directly: the Python layer's `invoke` checks on every
        call that no `tensor()` view is alive, and the runner never makes one.
        """
        self.interp = interp
        wrapper: Any = getattr(interp, "_interpreter", None)
        calls = ("SetTensor", "Invoke", "GetTensor", "ResizeInputTensor", "AllocateTensors")
        if all(hasattr(wrapper, m) for m in calls):
            self._set, self._get = wrapper.SetTensor, wrapper.GetTensor
            self._invoke = wrapper.Invoke
            self._resize_input = wrapper.ResizeInputTensor
            self._allocate = wrapper.AllocateTensors
        else:  # pragma: no cover - other runtimes: the public API
            self._set, self._get = interp.set_tensor, interp.get_tensor
            self._invoke = interp.invoke
            self._resize_input = interp.resize_tensor_input
            self._allocate = interp.allocate_tensors
        shape = interp.get_input_details()[0]["shape"]
        self._size = int(shape[0]) if len(shape) else 1

    def _use(self, m: int) -> None:
        """Make the active interpreter one allocated for batch size m.

        Up to `PARKED` more interpreters stay allocated for other sizes, so a stream whose
        batches split into full chunks and a tail does not resize twice a batch; past that, the
        least recently used one is resized.
        """
        if m == self._size:
            return
        parked = self._parked
        parked[self._size] = self.interp
        interp = parked.pop(m, None)
        if interp is not None:
            self._bind(interp)
            return
        if len(parked) <= PARKED:
            self._bind(new_interpreter(self.content, self.num_threads))
        else:
            self._bind(parked.popitem(last=False)[1])
        self._resize(m)

    def prepare(self, arrays: Sequence[Array]) -> list[Array]:
        """Stacked input arrays -> the model's input dtypes (quantised unless raw)."""
        out = []
        for x, spec in zip(arrays, self.inputs):
            if spec.quantized and not self.raw:
                out.append(quantize(x, spec))
            else:
                out.append(np.ascontiguousarray(x, dtype=spec.dtype))
        return out

    def finish(self, outputs: list[Array]) -> list[Array]:
        """Raw output tensors -> float32 (de-quantised unless raw)."""
        if self.raw:
            return outputs
        return [
            dequantize(o, spec) if spec.quantized else o for o, spec in zip(outputs, self.outputs)
        ]

    def run(self, arrays: Sequence[Array]) -> list[Array]:
        """Run a batch: `arrays[i]` is input i stacked over the batch; one array per output."""
        inputs = self.prepare(arrays)
        n = len(inputs[0])
        started = time.perf_counter()
        if n == 0:
            outputs = [
                np.empty((0, *(max(d, 0) for d in t.shape[1:])), t.dtype) for t in self.outputs
            ]
        elif self.dynamic:
            outputs = self._run_dynamic(inputs, n)
        elif self.fixed == 1:
            outputs = self._run_loop(inputs, n)
        else:
            outputs = self._run_fixed(inputs, n)
        self.last_seconds = time.perf_counter() - started
        return self.finish(outputs)

    def _resize(self, m: int) -> None:
        for spec in self.inputs:
            self._resize_input(spec.index, np.array([m, *spec.shape[1:]], np.int32), True)
        self._allocate()
        self._size = m

    def _run_dynamic(self, inputs: list[Array], n: int) -> list[Array]:
        step = self.max_batch
        set_, get, invoke = self._set, self._get, self._invoke
        in_idx, out_idx = self._in_idx, self._out_idx
        if n <= step:
            self._use(n)
            set_, get, invoke = self._set, self._get, self._invoke
            for idx, x in zip(in_idx, inputs):
                set_(idx, x)
            invoke()
            return [get(idx, 0) for idx in out_idx]
        if step == 1:
            self._use(1)
            return self._run_loop(inputs, n)
        outs: list[Array] = []
        for start in range(0, n, step):
            m = min(step, n - start)
            if m != self._size:
                self._use(m)
                set_, get, invoke = self._set, self._get, self._invoke
            for idx, x in zip(in_idx, inputs):
                set_(idx, x[start : start + m])
            invoke()
            if not outs:
                outs = [_like(get(idx, 0), n) for idx in out_idx]
            for y, idx in zip(outs, out_idx):
                y[start : start + m] = get(idx, 0)
        return outs

    def _run_loop(self, inputs: list[Array], n: int) -> list[Array]:
        set_, get, invoke = self._set, self._get, self._invoke
        in_idx, out_idx = self._in_idx, self._out_idx
        for idx, x in zip(in_idx, inputs):
            set_(idx, x[0:1])
        invoke()
        outs = [_like(get(idx, 0), n) for idx in out_idx]
        for y, idx in zip(outs, out_idx):
            y[0] = get(idx, 0)[0]
        if len(in_idx) == 1 and len(out_idx) == 1:
            (i0,), (o0,), (x0,), (y0,) = in_idx, out_idx, inputs, outs
            for k in range(1, n):
                set_(i0, x0[k : k + 1])
                invoke()
                y0[k] = get(o0, 0)[0]
            return outs
        pairs = list(zip(outs, out_idx))
        if len(in_idx) == 1:
            (i0,), (x0,) = in_idx, inputs
            for k in range(1, n):
                set_(i0, x0[k : k + 1])
                invoke()
                for y, idx in pairs:
                    y[k] = get(idx, 0)[0]
            return outs
        feeds = list(zip(in_idx, inputs))
        for k in range(1, n):
            for idx, x in feeds:
                set_(idx, x[k : k + 1])
            invoke()
            for y, idx in pairs:
                y[k] = get(idx, 0)[0]
        return outs

    def _run_fixed(self, inputs: list[Array], n: int) -> list[Array]:
        b = self.fixed
        parts: list[list[Array]] = [[] for _ in self._out_idx]
        for start in range(0, n, b):
            m = min(b, n - start)
            for idx, x in zip(self._in_idx, inputs):
                chunk = x[start : start + m]
                if m < b:
                    pad = np.zeros((b - m, *chunk.shape[1:]), chunk.dtype)
                    chunk = np.concatenate([chunk, pad])
                self._set(idx, chunk)
            self._invoke()
            for part, idx in zip(parts, self._out_idx):
                part.append(self._get(idx, 0)[:m])
        return [np.concatenate(p) for p in parts]

    def warm_up(self) -> None:
        """One invoke on zeros, so the first real batch does not pay for kernel preparation."""
        zeros = [np.zeros((1, *(max(d, 1) for d in t.shape[1:])), t.dtype) for t in self.inputs]
        raw, self.raw = self.raw, True
        try:
            self.run(zeros)
        finally:
            self.raw = raw


def _like(first: Array, n: int) -> Array:
    """An empty array for n rows shaped like the rows of `first` (an output tensor)."""
    return np.empty((n, *first.shape[1:]), first.dtype)
