"""Train and convert the small models edgewax ships in `models/` (float32 and full-integer int8).

Runs in its own venv with tensorflow-cpu and scikit-learn (see tools/README.md); edgewax never
imports TensorFlow. Every figure written to `models/MANIFEST.json` is measured on held-out data
with the LiteRT interpreter edgewax runs, on the `.tflite` files as written.

    python tools/make_models.py [--out models] [--only digits,vibration,scenes,shelf]

Models:
- `digits_cnn_{f32,int8}`: a CNN on scikit-learn's bundled 8x8 digits (upsampled to 16x16 inside
  the model); input `image` float32 (batch, 8, 8) in [0, 1]; output `probs` (batch, 10).
- `vib_ae1d_{f32,int8}`: a 1-D convolutional autoencoder for vibration frames from edgewax's own
  synthetic generator (`sensor.synthetic`, signal vibration, 1 kHz); input `frame` float32
  (batch, 256) in g, as `signal.frame` emits it; outputs `recon` (batch, 256) and `score`
  (batch,), the mean squared reconstruction error in units of (0.1 g)^2. The manifest stores the
  anomaly `threshold` on `score` and the recall on injected faults.
- `scenes_cnn_{f32,int8}`: a camera-scene classifier on synthetic 64x64 RGB scenes rendered with
  numpy (`empty`, `person`, `vehicle`); input `image` float32 (batch, 64, 64, 3) in 0..255;
  output `probs` (batch, 3).
- `shelf_occ_{f32,int8}`: shelf occupancy regression on synthetic 32x32 RGB shelf regions (8
  product slots, random products, lighting and noise, rendered with numpy: `render_shelf`);
  input `image` float32 (batch, 32, 32, 3) in 0..255; output `occupancy` (batch,), the share
  of the 8 slots holding a product, 0..1.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SEED = 1234
FRAME = 256
HOP = 128
AE_SCALE = 0.1
"""The autoencoder works in units of 0.1 g (normal RMS ~0.4 of that)."""


def _signals() -> Any:
    """edgewax's synthetic signal module, loaded by path (it needs only numpy)."""
    path = ROOT / "edgewax" / "operators" / "sources" / "signals.py"
    spec = importlib.util.spec_from_file_location("edgewax_signals", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["edgewax_signals"] = module
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ conversion


def convert(tf: Any, fn: Any, model: Any, rep: np.ndarray | list[np.ndarray], int8: bool) -> bytes:
    """A tf.function -> .tflite bytes; int8: full-integer with int8 input and output."""
    import tempfile

    import keras

    # Through a Keras export archive: variables are frozen and the signature keeps our names.
    with tempfile.TemporaryDirectory() as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            name="serving_default", fn=fn.python_function, input_signature=fn.input_signature
        )
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        return _convert(tf, converter, rep, int8)


def _convert(tf: Any, converter: Any, rep: np.ndarray | list[np.ndarray], int8: bool) -> bytes:
    if int8:
        reps = rep if isinstance(rep, list) else [rep]

        def representative() -> Any:
            for i in range(len(reps[0])):
                yield [r[i : i + 1] for r in reps]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return bytes(converter.convert())


class Lite:
    """A converted model run through LiteRT, float in and out (quantised when the model is int8)."""

    def __init__(self, content: bytes) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interp = Interpreter(model_content=content, num_threads=1)
        self.runner = self.interp.get_signature_runner()
        self.inputs = self.runner.get_input_details()
        self.outputs = self.runner.get_output_details()

    def __call__(self, x: np.ndarray, batch: int = 64) -> dict[str, np.ndarray]:
        ((name, det),) = self.inputs.items()
        parts: dict[str, list[np.ndarray]] = {k: [] for k in self.outputs}
        for s in range(0, len(x), batch):
            chunk = x[s : s + batch].astype(np.float32)
            scale, zp = det["quantization"]
            if det["dtype"] != np.float32:
                info = np.iinfo(det["dtype"])
                chunk = np.clip(np.round(chunk / scale + zp), info.min, info.max).astype(
                    det["dtype"]
                )
            out = self.runner(**{name: chunk})
            for k, v in out.items():
                o_scale, o_zp = self.outputs[k]["quantization"]
                if self.outputs[k]["dtype"] != np.float32:
                    v = (v.astype(np.float32) - o_zp) * o_scale
                parts[k].append(v)
        return {k: np.concatenate(v) for k, v in parts.items()}

    def signature(self) -> dict[str, Any]:
        def tensor(name: str, d: dict[str, Any]) -> dict[str, Any]:
            scale, zp = d["quantization"]
            out = {
                "name": name,
                "shape": [int(v) for v in d["shape_signature"]],
                "dtype": np.dtype(d["dtype"]).name,
            }
            if scale:
                out["quantization"] = {"scale": float(scale), "zero_point": int(zp)}
            return out

        return {
            "inputs": [tensor(k, v) for k, v in self.inputs.items()],
            "outputs": [tensor(k, v) for k, v in self.outputs.items()],
        }


def write(
    out: Path, name: str, content: bytes, lite: Lite, extra: dict[str, Any]
) -> dict[str, Any]:
    path = out / f"{name}.tflite"
    path.write_bytes(content)
    entry = {
        "file": path.name,
        "sha256": hashlib.sha256(content).hexdigest(),
        "size": len(content),
        "signature": lite.signature(),
        **extra,
    }
    print(f"  {path.name}: {len(content) / 1024:.1f} KiB {json.dumps(extra)}", flush=True)
    return entry


# ---------------------------------------------------------------------- digits


def digits(tf: Any, out: Path) -> dict[str, Any]:
    import keras
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    np.savez_compressed(out / "digits_test.npz", x=x_test, y=y_test)

    keras.utils.set_random_seed(SEED)
    inp = keras.Input((8, 8), name="image")
    h = keras.layers.Reshape((8, 8, 1))(inp)
    h = keras.layers.UpSampling2D(2, interpolation="bilinear")(h)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(64, activation="relu")(h)
    probs = keras.layers.Dense(10, activation="softmax", name="probs")(h)
    model = keras.Model(inp, probs)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=40, batch_size=32, verbose=0, validation_split=0.1)

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8], tf.float32, name="image")])
    def serve(image: Any) -> Any:
        return {"probs": model(image)}

    entries = {}
    for int8 in (False, True):
        name = f"digits_cnn_{'int8' if int8 else 'f32'}"
        content = convert(tf, serve, model, x_train[:300], int8)
        lite = Lite(content)
        acc = float((lite(x_test)["probs"].argmax(1) == y_test).mean())
        entries[name] = write(
            out,
            name,
            content,
            lite,
            {
                "task": "digit classification (scikit-learn digits, 8x8 upsampled to 16x16)",
                "labels": "digits.labels",
                "metric": {"test_accuracy": round(acc, 6), "test_samples": len(y_test)},
                "test_set": "digits_test.npz",
            },
        )
    (out / "digits.labels").write_text("".join(f"{i}\n" for i in range(10)))
    return entries


# ------------------------------------------------------------------- vibration


def _frames(
    signals: Any, key: str, seed: int, seconds: float, faults: list[Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Frames (n, 256) as `signal.frame` makes them (size 256, hop 128), and their fault labels."""
    gen = signals.Generator("vibration", key=key, rate_hz=1000.0, seed=seed, faults=faults)
    n = int(seconds * 1000)
    data = gen.generate(0, n)
    accel = data["accel"].astype(np.float32)
    starts = np.arange(0, n - FRAME + 1, HOP)
    frames = np.stack([accel[s : s + FRAME] for s in starts])
    labels = np.array([data["fault"][s + FRAME - 1] for s in starts])
    return frames, labels


def vibration(tf: Any, out: Path) -> dict[str, Any]:
    import keras

    signals = _signals()
    train = np.concatenate([_frames(signals, f"pump-{k}", 7, 40.0, [])[0] for k in range(24)])
    # Held-out keys (other machines) and another seed: normal frames and each fault kind.
    normal_val = np.concatenate([_frames(signals, f"val-{k}", 11, 20.0, [])[0] for k in range(6)])
    normal_test = np.concatenate([_frames(signals, f"test-{k}", 13, 20.0, [])[0] for k in range(8)])
    faulty: dict[str, np.ndarray] = {}
    for kind in ("imbalance", "bearing", "looseness"):
        fault = signals.Fault(kind, start=0.0, duration=float("inf"), severity=1.0)
        faulty[kind] = np.concatenate(
            [_frames(signals, f"test-{k}", 13, 10.0, [fault])[0] for k in range(8)]
        )

    keras.utils.set_random_seed(SEED)
    inp = keras.Input((FRAME,), name="frame")
    x = keras.layers.Rescaling(1.0 / AE_SCALE)(inp)
    h = keras.layers.Reshape((FRAME, 1))(x)
    h = keras.layers.Conv1D(16, 9, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.Conv1D(16, 9, strides=2, padding="same", activation="relu")(h)
    h = keras.layers.Conv1D(8, 9, strides=2, padding="same", activation="relu")(h)  # (32, 8)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(24, activation="relu")(h)
    h = keras.layers.Dense(32 * 8, activation="relu")(h)
    h = keras.layers.Reshape((32, 8))(h)
    h = keras.layers.UpSampling1D(2)(h)
    h = keras.layers.Conv1D(16, 9, padding="same", activation="relu")(h)
    h = keras.layers.UpSampling1D(2)(h)
    h = keras.layers.Conv1D(16, 9, padding="same", activation="relu")(h)
    h = keras.layers.UpSampling1D(2)(h)
    h = keras.layers.Conv1D(1, 9, padding="same")(h)
    recon = keras.layers.Reshape((FRAME,))(h)
    model = keras.Model(inp, recon)
    model.compile("adam", "mse")
    target = train / AE_SCALE
    model.fit(train, target, epochs=30, batch_size=64, verbose=0, shuffle=True)

    @tf.function(input_signature=[tf.TensorSpec([None, FRAME], tf.float32, name="frame")])
    def serve(frame: Any) -> Any:
        r = model(frame)
        score = tf.reduce_mean(tf.square(frame / AE_SCALE - r), axis=1)
        return {"recon": r * AE_SCALE, "score": score}

    # Calibrate on normal and faulty frames so the int8 score range covers anomalies too.
    rng = np.random.default_rng(SEED)
    calib = np.concatenate([train[rng.choice(len(train), 240, replace=False)]])
    calib_faults = np.concatenate(
        [
            _frames(signals, "calib", 5, 3.0, [signals.Fault(k, 0.0, float("inf"))])[0][:20]
            for k in ("imbalance", "bearing", "looseness")
        ]
    )
    calib = np.concatenate([calib, calib_faults])
    rng.shuffle(calib)

    entries = {}
    for int8 in (False, True):
        name = f"vib_ae1d_{'int8' if int8 else 'f32'}"
        content = convert(tf, serve, model, calib, int8)
        lite = Lite(content)
        val = lite(normal_val)["score"]
        threshold = float(np.quantile(val, 0.995)) * 1.25
        fpr = float((lite(normal_test)["score"] > threshold).mean())
        recall = {k: float((lite(v)["score"] > threshold).mean()) for k, v in faulty.items()}
        total = float(np.mean([lite(v)["score"] > threshold for v in faulty.values()]))
        entries[name] = write(
            out,
            name,
            content,
            lite,
            {
                "task": "vibration anomaly score (1-D conv autoencoder; frames of 256 at 1 kHz)",
                "threshold": round(threshold, 6),
                "metric": {
                    "fault_recall": round(total, 4),
                    "fault_recall_by_kind": {k: round(v, 4) for k, v in recall.items()},
                    "false_positive_rate": round(fpr, 4),
                    "test_frames": {
                        "normal": len(normal_test),
                        "faulty": sum(map(len, faulty.values())),
                    },
                },
                "data": "sensor.synthetic vibration, rate 1000 Hz; signal.frame size 256 hop 128; "
                "train keys pump-0..23 seed 7; threshold from held-out keys val-0..5 seed 11 "
                "(99.5th percentile x 1.25); test keys test-0..7 seed 13, faults at severity 1",
            },
        )
    return entries


# ---------------------------------------------------------------------- scenes

SCENE_CLASSES = ("empty", "person", "vehicle")


def render_scene(rng: np.random.Generator, cls: int, size: int = 64) -> np.ndarray:
    """One synthetic camera scene, uint8 (size, size, 3): a background and maybe one object."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    top, bottom = rng.uniform(40, 200, 3), rng.uniform(40, 200, 3)
    img = top + (bottom - top) * (yy / size)[..., None]
    horizon = rng.uniform(0.4, 0.7) * size
    img = np.where((yy > horizon)[..., None], img * rng.uniform(0.6, 0.9), img)
    for _ in range(rng.integers(0, 4)):  # clutter: soft blobs
        cy, cx, r = [*rng.uniform(0, size, 2).tolist(), rng.uniform(2, 6)]
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2) < r * r
        img[blob] = rng.uniform(30, 220, 3)
    color = rng.uniform(0, 255, 3)
    s = rng.uniform(0.7, 1.3)
    cx, base = rng.uniform(12, size - 12), rng.uniform(horizon + 4, size - 2)
    if cls == 1:  # person: a tall body and a round head
        h, w = 26 * s, 7 * s
        body = (np.abs(xx - cx) < w / 2) & (yy < base) & (yy > base - h)
        head = ((yy - (base - h - 3.5 * s)) ** 2 + (xx - cx) ** 2) < (3.5 * s) ** 2
        img[body | head] = color
    elif cls == 2:  # vehicle: a wide body, a cabin and two dark wheels
        h, w = 9 * s, 28 * s
        body = (np.abs(xx - cx) < w / 2) & (yy < base - 3 * s) & (yy > base - 3 * s - h)
        cabin = (np.abs(xx - cx) < w / 4) & (yy <= base - 3 * s - h) & (yy > base - 3 * s - 1.6 * h)
        img[body | cabin] = color
        for wx in (cx - w / 3, cx + w / 3):
            wheel = ((yy - (base - 3 * s)) ** 2 + (xx - wx) ** 2) < (3.2 * s) ** 2
            img[wheel] = rng.uniform(0, 40)
    img += rng.normal(0, rng.uniform(2, 10), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def scenes(tf: Any, out: Path) -> dict[str, Any]:
    import keras

    def dataset(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        y = rng.integers(0, len(SCENE_CLASSES), n)
        return np.stack([render_scene(rng, int(c)) for c in y]).astype(np.float32), y

    x_train, y_train = dataset(21, 3000)
    x_test, y_test = dataset(22, 600)

    keras.utils.set_random_seed(SEED)
    inp = keras.Input((64, 64, 3), name="image")
    h = keras.layers.Rescaling(1.0 / 255)(inp)
    for filters in (8, 16, 32):
        h = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
        h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(32, activation="relu")(h)
    probs = keras.layers.Dense(len(SCENE_CLASSES), activation="softmax", name="probs")(h)
    model = keras.Model(inp, probs)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=25, batch_size=32, verbose=0)

    @tf.function(input_signature=[tf.TensorSpec([None, 64, 64, 3], tf.float32, name="image")])
    def serve(image: Any) -> Any:
        return {"probs": model(image)}

    (out / "scenes.labels").write_text("".join(f"{c}\n" for c in SCENE_CLASSES))
    entries = {}
    for int8 in (False, True):
        name = f"scenes_cnn_{'int8' if int8 else 'f32'}"
        content = convert(tf, serve, model, x_train[:200], int8)
        lite = Lite(content)
        acc = float((lite(x_test)["probs"].argmax(1) == y_test).mean())
        entries[name] = write(
            out,
            name,
            content,
            lite,
            {
                "task": "camera scene classification: "
                + ", ".join(SCENE_CLASSES)
                + " (synthetic 64x64 RGB scenes rendered with numpy; input 0..255)",
                "labels": "scenes.labels",
                "metric": {"test_accuracy": round(acc, 6), "test_samples": len(y_test)},
            },
        )
    return entries


# ---------------------------------------------------------------------- shelf

SHELF_SLOTS = 8


def render_shelf(rng: np.random.Generator, filled: Any, size: int = 32) -> np.ndarray:
    """One shelf region, uint8 (size, size, 3): a back wall, a board, products in `filled` slots.

    `filled` holds SHELF_SLOTS booleans, left to right. Light, wall colour, product colours and
    heights, and sensor noise vary per call.
    """
    yy = np.mgrid[0:size, 0:size][0].astype(np.float32)
    wall = rng.uniform(30, 90) * rng.uniform(0.85, 1.15, 3)
    img = np.broadcast_to(wall, (size, size, 3)) * (0.85 + 0.3 * yy / size)[..., None]
    img = img.copy()
    board = size - 3
    img[board:] = rng.uniform(120, 200) * rng.uniform(0.9, 1.1, 3)
    width = size // SHELF_SLOTS
    for i, full in enumerate(filled):
        if not full:
            continue
        height = int(rng.integers(size // 2, board - 1))
        x0 = i * width + int(rng.integers(0, 2))
        color = rng.uniform(60, 255, 3) * (rng.uniform(0.3, 1.0, 3) ** 0.5)
        img[board - height : board, x0 : x0 + width - 1] = color
        img[board - height : board - height + 2, x0 : x0 + width - 1] = np.minimum(color * 1.2, 255)
    img *= rng.uniform(0.6, 1.25)
    img += rng.normal(0, rng.uniform(1, 5), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def shelf(tf: Any, out: Path) -> dict[str, Any]:
    import keras

    def dataset(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        xs, ys = [], []
        for _ in range(n):
            filled = rng.random(SHELF_SLOTS) < rng.uniform(0, 1)
            xs.append(render_shelf(rng, filled))
            ys.append(filled.mean())
        return np.stack(xs).astype(np.float32), np.array(ys, np.float32)

    x_train, y_train = dataset(31, 6000)
    x_test, y_test = dataset(32, 1000)

    keras.utils.set_random_seed(SEED)
    inp = keras.Input((32, 32, 3), name="image")
    h = keras.layers.Rescaling(1.0 / 255)(inp)
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(16, activation="relu")(h)
    occ = keras.layers.Dense(1, activation="sigmoid", name="occupancy")(h)
    model = keras.Model(inp, occ)
    model.compile("adam", "mse")
    model.fit(x_train, y_train, epochs=20, batch_size=32, verbose=0)

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32, name="image")])
    def serve(image: Any) -> Any:
        return {"occupancy": tf.reshape(model(image), [-1])}

    entries = {}
    for int8 in (False, True):
        name = f"shelf_occ_{'int8' if int8 else 'f32'}"
        content = convert(tf, serve, model, x_train[:200], int8)
        lite = Lite(content)
        err = np.abs(lite(x_test)["occupancy"] - y_test)
        entries[name] = write(
            out,
            name,
            content,
            lite,
            {
                "task": "shelf occupancy: share of 8 product slots filled (synthetic 32x32 RGB "
                "shelf regions rendered with numpy; input 0..255)",
                "metric": {
                    "test_mae": round(float(err.mean()), 6),
                    "test_within_one_slot": round(float((err < 1 / SHELF_SLOTS).mean()), 6),
                    "test_samples": len(y_test),
                },
            },
        )
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "models"))
    parser.add_argument("--only", default="digits,vibration,scenes,shelf")
    args = parser.parse_args()
    import tensorflow as tf

    tf.random.set_seed(SEED)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    models = manifest.get("models", {})
    makers = {"digits": digits, "vibration": vibration, "scenes": scenes, "shelf": shelf}
    for name in args.only.split(","):
        print(f"{name}:", flush=True)
        models.update(makers[name](tf, out))
    manifest = {
        "generator": "tools/make_models.py",
        "tensorflow": tf.__version__,
        "models": dict(sorted(models.items())),
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
