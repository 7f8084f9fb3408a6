"""The `tflite` node in a compiled pipeline vs a raw LiteRT `Interpreter` loop, same inputs.

For the digits CNN and the vibration autoencoder, float32 and int8, and two batch modes:

- `batch 1`: the model runs once per event (raw: set_tensor / invoke / get_tensor per sample;
  node: `batch: {max_size: 1}`);
- `batch 64`: the model runs on 64 events at a time (raw: resize once, then one set / invoke /
  get per 64 samples; node: `batch: {max_size: 64}`).

The raw loop gets the inputs already stacked in one array; for int8 models it quantises that array
once (as any caller must) and does not de-quantise. The pipeline is a whole compiled Bytewax
dataflow: an in-memory source of events (each holding its own array) -> `tflite` -> a sink that
only counts, so it pays for stacking, quantising, de-quantising, splitting outputs into events
and Bytewax itself. An `empty` row runs the same pipeline without the model: the framework's share.
Best of `--repeat` runs. Bar: pipeline / raw <= 1.15 in time per sample.

    python benchmarks/inference.py [--samples 4000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from bytewax.testing import run_main

from edgewax.config.diagnostics import Mark
from edgewax.config.spec import DeadLetterSettings, NodeSpec, PipelineSpec, Settings, Spec
from edgewax.flows.compiler import compile_spec
from edgewax.inference.model import interpreter_class
from edgewax.operators.base import NodeOptions, Sink, SinkWriter
from edgewax.operators.registry import node_types
from edgewax.testing import _ListOptions, _ListSource

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"


class _CountOptions(NodeOptions):
    pass


class _CountWriter(SinkWriter):
    count = 0

    def write(self, batch: list[Any]) -> None:
        _CountWriter.count += len(batch)


class _CountSink(Sink):
    type_name = "bench.count"
    Options: ClassVar[type[NodeOptions]] = _CountOptions

    def open(self) -> SinkWriter:
        return _CountWriter()


def pipeline_seconds(events: list[dict[str, Any]], options: dict[str, Any] | None) -> float:
    """Run list source -> [tflite] -> count sink; seconds for the run (not the compile)."""
    mark = Mark(1, 1)
    src = NodeSpec("src", "testing.list", _ListSource, _ListOptions(events=events), [], mark)
    nodes = [src]
    last = "src"
    if options is not None:
        cls = node_types()["tflite"]
        node = NodeSpec("m", "tflite", cls, cls.Options.model_validate(options), [last], mark)
        nodes.append(node)
        src.consumers = ["m"]
        last = "m"
    sink = NodeSpec("out", "bench.count", _CountSink, _CountOptions(), [last], mark)
    nodes[-1].consumers = ["out"]
    nodes.append(sink)
    spec = Spec(
        "<bench>",
        MODELS,
        Settings(dead_letter=DeadLetterSettings(path=None)),
        {"b": PipelineSpec("b", nodes, mark)},
        "",
    )
    compiled = compile_spec(spec)
    _CountWriter.count = 0
    started = time.perf_counter()
    run_main(compiled.flow)
    seconds = time.perf_counter() - started
    assert _CountWriter.count == len(events), (_CountWriter.count, len(events))
    return seconds


def raw_seconds(path: Path, x: np.ndarray, batch: int) -> float:
    """The plain Interpreter loop a developer would write, indices looked up once."""
    cls, _ = interpreter_class()
    interp = cls(model_path=str(path), num_threads=1)
    inp = interp.get_input_details()[0]
    outs = [d["index"] for d in interp.get_output_details()]
    idx = inp["index"]
    if batch != 1:
        interp.resize_tensor_input(idx, [batch, *x.shape[1:]])
    interp.allocate_tensors()
    set_tensor, invoke, get_tensor = interp.set_tensor, interp.invoke, interp.get_tensor
    started = time.perf_counter()
    data = x
    scale, zp = inp["quantization"]
    if inp["dtype"] != np.float32:
        data = np.clip(np.round(x / scale) + zp, -128, 127).astype(inp["dtype"])
    results = []
    n = len(data)
    if batch == 1:
        for i in range(n):
            set_tensor(idx, data[i : i + 1])
            invoke()
            results.append([get_tensor(o) for o in outs])
    else:
        full = n - n % batch
        for s in range(0, full, batch):
            set_tensor(idx, data[s : s + batch])
            invoke()
            results.append([get_tensor(o) for o in outs])
        if full < n:  # the tail: resize once more
            interp.resize_tensor_input(idx, [n - full, *x.shape[1:]])
            interp.allocate_tensors()
            interp.set_tensor(idx, data[full:])
            interp.invoke()
            results.append([interp.get_tensor(o) for o in outs])
    return time.perf_counter() - started


def inputs(kind: str, n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    if kind == "digits":
        test = np.load(MODELS / "digits_test.npz")
        return test["x"][rng.integers(0, len(test["x"]), n)].astype(np.float32)
    t = np.arange(256) / 1000.0
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    frames = 0.05 * np.sin(2 * np.pi * 25 * t + phase) + rng.normal(0, 0.008, (n, 256))
    return frames.astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    _, runtime = interpreter_class()
    print(f"runtime {runtime}; {args.samples} samples; best of {args.repeat}; 1 thread")
    header = f"{'model':<18} {'batch':>5} {'raw µs/s':>9} {'node µs/s':>10} {'ratio':>6}"
    print(header + f" {'empty µs/s':>11}")
    rows = []
    worst = 0.0
    for kind, field, stem in (
        ("digits", "image", "digits_cnn"),
        ("vibration", "frame", "vib_ae1d"),
    ):
        x = inputs(kind, args.samples)
        events = [{"ts": float(i), "key": "k", field: row} for i, row in enumerate(x)]
        empty = min(pipeline_seconds(events, None) for _ in range(args.repeat))
        for precision in ("f32", "int8"):
            path = MODELS / f"{stem}_{precision}.tflite"
            for batch in (1, 64):
                options = {"model": path.name, "batch": {"max_size": batch}, "watch": None}
                raws, nodes = [], []
                for _ in range(args.repeat):  # alternate, so load from other work hits both
                    raws.append(raw_seconds(path, x, batch))
                    nodes.append(pipeline_seconds(events, options))
                raw, node = min(raws), min(nodes)
                per = 1e6 / args.samples
                ratio = node / raw
                worst = max(worst, ratio)
                print(
                    f"{path.stem:<18} {batch:>5} {raw * per:>9.2f} {node * per:>10.2f} "
                    f"{ratio:>6.3f} {empty * per:>11.2f}"
                )
                rows.append(
                    {
                        "model": path.stem,
                        "batch": batch,
                        "raw_us": raw * per,
                        "node_us": node * per,
                        "ratio": ratio,
                        "empty_us": empty * per,
                    }
                )
    verdict = "meets" if worst <= 1.15 else "misses"
    print(f"worst pipeline/raw ratio {worst:.3f} ({verdict} the 1.15 bar)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
