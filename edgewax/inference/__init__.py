"""TFLite models at run time: reading and pinning model files, interpreters, hot swap, inspection.

- `edgewax.inference.model`: the runtime (LiteRT, or `tflite_runtime` when LiteRT is missing), model
  files verified against their sha256 pins, and a model's signature (inputs and outputs with
  shapes, dtypes and quantisation);
- `edgewax.inference.runner`: one interpreter per worker thread, working on whole batches;
- `edgewax.inference.swap`: the hot-swap watcher;
- `edgewax.inference.inspect`: what `edgewax inspect-model` prints;
- `edgewax.inference.flatbuild`: tiny models written in pure Python (tests and examples).

The `tflite` node (`edgewax.operators.inference.tflite`) is built from these.
"""
