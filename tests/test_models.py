"""The shipped models in `models/`, run through real pipelines and the real CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgewax.config.spec import load_spec_text
from edgewax.flows.compiler import compile_spec
from edgewax.inference.model import read_model, sha256_hex
from edgewax.inference.runner import Runner
from edgewax.inference.swap import ModelSlot
from edgewax.operators.sources.signals import Fault, Generator
from edgewax.testing import run_compiled, run_node

from .conftest import ROOT, cli

MODELS = ROOT / "models"
MANIFEST = json.loads((MODELS / "MANIFEST.json").read_text())["models"]


def test_manifest_matches_the_files() -> None:
    assert set(MANIFEST) >= {
        f"{m}_{p}" for m in ("digits_cnn", "vib_ae1d", "scenes_cnn") for p in ("f32", "int8")
    }
    for name, entry in MANIFEST.items():
        content = (MODELS / entry["file"]).read_bytes()
        assert sha256_hex(content) == entry["sha256"], name
        assert len(content) == entry["size"] < 400_000, name
        model = read_model(MODELS / entry["file"], [entry["sha256"]])
        assert [t.name for t in model.signature.inputs] == [
            t["name"] for t in entry["signature"]["inputs"]
        ]
        int8 = name.endswith("int8")
        assert all((t.dtype == "int8") == int8 for t in model.signature.inputs), name


@pytest.mark.parametrize("precision", ["f32", "int8"])
def test_digits_accuracy_through_a_pipeline_equals_the_manifest(precision: str) -> None:
    test = np.load(MODELS / "digits_test.npz")
    entry = MANIFEST[f"digits_cnn_{precision}"]
    events = [{"image": x, "truth": int(y)} for x, y in zip(test["x"], test["y"])]
    options = {
        "model": entry["file"],
        "sha256": entry["sha256"],
        "labels": "digits.labels",
        "top_k": 3,
    }
    out = run_node("tflite", options, events, MODELS)
    assert len(out) == len(events)
    accuracy = np.mean([e["label"] == str(e["truth"]) for e in out])
    assert round(float(accuracy), 6) == entry["metric"]["test_accuracy"]
    assert accuracy > 0.95
    assert all(e["model_version"] == entry["sha256"][:12] for e in out)
    assert all(len(e["top"]) == 3 and e["top"][0]["label"] == e["label"] for e in out)
    probs = np.stack([e["probs"] for e in out])
    assert probs.dtype == np.float32  # de-quantised for int8
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.02)


def _run(name: str, x: np.ndarray, max_batch: int = 64) -> list[np.ndarray]:
    model = read_model(MODELS / f"{name}.tflite")
    return Runner(model.content, model.signature, max_batch=max_batch).run([x])


def test_int8_agrees_with_float32() -> None:
    test = np.load(MODELS / "digits_test.npz")
    [p32] = _run("digits_cnn_f32", test["x"])
    [p8] = _run("digits_cnn_int8", test["x"])
    assert np.mean(p32.argmax(1) == p8.argmax(1)) >= 0.97
    assert np.abs(p32 - p8).mean() < 0.01
    frames = np.concatenate(
        [_frames([], 4.0), *(_frames([k], 2.0) for k in ("bearing", "imbalance", "looseness"))]
    )
    r32, s32 = _run("vib_ae1d_f32", frames)
    r8, s8 = _run("vib_ae1d_int8", frames)
    assert np.corrcoef(s32, s8)[0, 1] > 0.95
    assert np.abs(r32 - r8).mean() < 0.01  # g
    # The int8 score is coarse near zero (one step ~0.0044), so decisions agree on most frames.
    t32, t8 = MANIFEST["vib_ae1d_f32"]["threshold"], MANIFEST["vib_ae1d_int8"]["threshold"]
    assert np.mean((s32 > t32) == (s8 > t8)) >= 0.8


def test_batch_and_single_invoke_give_the_same_outputs() -> None:
    x = np.load(MODELS / "digits_test.npz")["x"][:100]
    for name in ("digits_cnn_f32", "digits_cnn_int8", "vib_ae1d_int8"):
        data = _frames([], 2.0)[:100] if name.startswith("vib") else x
        batched = _run(name, data, max_batch=64)
        single = _run(name, data, max_batch=1)
        for a, b in zip(batched, single):
            if name.endswith("int8"):
                np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _frames(kinds: list[str], seconds: float, key: str = "check-1") -> np.ndarray:
    faults = [Fault(k, 0.0, float("inf")) for k in kinds]
    accel = Generator("vibration", key, 1000.0, 99, faults).generate(0, int(seconds * 1000))[
        "accel"
    ]
    starts = range(0, len(accel) - 255, 128)
    return np.stack([accel[s : s + 256] for s in starts]).astype(np.float32)


@pytest.mark.parametrize("precision", ["f32", "int8"])
def test_autoencoder_flags_faults_over_its_threshold(precision: str) -> None:
    entry = MANIFEST[f"vib_ae1d_{precision}"]
    threshold = entry["threshold"]
    events = [{"frame": f, "truth": "ok"} for f in _frames([], 8.0)]
    for kind in ("bearing", "looseness", "imbalance"):
        events += [{"frame": f, "truth": kind} for f in _frames([kind], 4.0)]
    out = run_node(
        "tflite", {"model": entry["file"], "outputs": {"score": "score"}}, events, MODELS
    )
    flagged = {e["truth"]: [] for e in out}
    for e in out:
        assert isinstance(e["score"], float)
        flagged[e["truth"]].append(e["score"] > threshold)
    assert np.mean(flagged["ok"]) <= 0.02
    assert np.mean(flagged["bearing"]) == 1.0 and np.mean(flagged["looseness"]) == 1.0
    assert entry["metric"]["fault_recall"] > 0.85


def test_scenes_model_labels_rendered_frames() -> None:
    entry = MANIFEST["scenes_cnn_int8"]
    frame = np.zeros((64, 64, 3), np.uint8)  # uint8 camera frames feed it directly
    [e] = run_node(
        "tflite", {"model": entry["file"], "labels": "scenes.labels"}, [{"image": frame}], MODELS
    )
    assert e["label"] in ("empty", "person", "vehicle") and 0 <= e["score"] <= 1


def test_swap_refuses_another_signature_and_a_wrong_pin(tmp_path: Path) -> None:
    path = tmp_path / "digits.tflite"
    shutil.copy(MODELS / "digits_cnn_f32.tflite", path)
    pin = MANIFEST["digits_cnn_f32"]["sha256"]
    slot = ModelSlot(read_model(path, [pin]), pins=[pin])
    tmp = tmp_path / "new.tmp"
    shutil.copy(MODELS / "digits_cnn_int8.tflite", tmp)
    os.replace(tmp, path)
    assert slot.poll() == "failed"  # the pin refuses it first
    slot2 = ModelSlot(read_model(MODELS / "digits_cnn_f32.tflite"))
    slot2.path = path
    slot2._seen = ()
    assert slot2.poll() == "failed"  # unpinned, but int8 in/out is another signature
    assert slot2.current.model.sha256 == pin


def test_corrupt_model_file(tmp_path: Path) -> None:
    content = (MODELS / "digits_cnn_f32.tflite").read_bytes()
    (tmp_path / "cut.tflite").write_bytes(content[: len(content) // 2])
    r = cli("inspect-model", str(tmp_path / "cut.tflite"))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert "not a valid TFLite model" in r.stderr.strip().splitlines()[-1]
    cfg = "version: 1\npipelines:\n  p:\n    nodes:\n      - {id: s, type: sensor.synthetic, count: 1}\n      - {id: m, type: tflite, model: cut.tflite}\n      - {id: o, type: sink.stdout}\n"
    (tmp_path / "p.yaml").write_text(cfg)
    r = cli("validate", str(tmp_path / "p.yaml"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[0].startswith(f"{tmp_path / 'p.yaml'}:6:")


def test_inspect_model_cli() -> None:
    entry = MANIFEST["vib_ae1d_int8"]
    r = cli("inspect-model", "models/vib_ae1d_int8.tflite")
    assert r.returncode == 0, r.stderr
    assert entry["sha256"] in r.stdout
    assert "frame  int8[?,256]  q(scale=" in r.stdout
    assert "CONV_2D" in r.stdout and "batch    dynamic" in r.stdout
    r = cli("inspect-model", "--json", "models/vib_ae1d_int8.tflite")
    info = json.loads(r.stdout)
    assert info["sha256"] == entry["sha256"] and info["size"] == entry["size"]
    assert [o["name"] for o in info["outputs"]] == [
        o["name"] for o in entry["signature"]["outputs"]
    ]
    assert info["inputs"][0]["quantization"]["scale"] > 0
    assert r.returncode == 0


def test_cli_run_with_a_real_model_and_sidecar(tmp_path: Path) -> None:
    """`edgewax run` end to end: digits through the CLI, pinned by a sidecar file."""
    shutil.copy(MODELS / "digits_cnn_int8.tflite", tmp_path / "d.tflite")
    shutil.copy(MODELS / "digits.labels", tmp_path / "d.labels")
    (tmp_path / "d.tflite.sha256").write_text(
        MANIFEST["digits_cnn_int8"]["sha256"] + "  d.tflite\n"
    )
    test = np.load(MODELS / "digits_test.npz")
    with (tmp_path / "in.jsonl").open("w") as f:
        for i, (x, y) in enumerate(zip(test["x"][:50], test["y"][:50])):
            f.write(json.dumps({"ts": i, "key": "cam", "image": x.tolist(), "y": int(y)}) + "\n")
    (tmp_path / "p.yaml").write_text(
        "version: 1\npipelines:\n  digits:\n    nodes:\n"
        "      - {id: src, type: source.jsonl, path: in.jsonl}\n"
        "      - {id: cnn, type: tflite, model: d.tflite, labels: d.labels, outputs: {}}\n"
        "      - {id: out, type: sink.jsonl, path: out.jsonl}\n"
    )
    r = cli("run", str(tmp_path / "p.yaml"))
    assert r.returncode == 0, r.stderr
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(out) == 50
    assert np.mean([e["label"] == str(e["y"]) for e in out]) > 0.9
    assert (
        "probs" not in out[0]
        and out[0]["model_version"] == MANIFEST["digits_cnn_int8"]["sha256"][:12]
    )


def test_spec_with_models_validates(tmp_path: Path) -> None:
    entry = MANIFEST["vib_ae1d_int8"]
    text = f"""
version: 1
pipelines:
  p:
    nodes:
      - {{id: s, type: sensor.synthetic, signal: vibration, count: 10, speed: 0}}
      - {{id: ae, type: tflite, model: {MODELS / entry["file"]}, sha256: {entry["sha256"]}, input: accel}}
      - {{id: o, type: sink.stdout}}
"""
    spec = load_spec_text(text, tmp_path)
    compiled = compile_spec(spec)
    run_compiled(compiled)
    # Scalars do not fit a (256,) frame: each event is dead-lettered, counted, and the run ends.
    assert compiled.stats[("p", "ae")].discarded() == {"tensor_shape": 10}


def test_hot_swap_of_a_real_model_under_edgewax_run(tmp_path: Path) -> None:
    """`edgewax run` as a subprocess; the model file is replaced mid-stream by a new version."""
    import subprocess
    import sys
    import time

    from edgewax.inference.flatbuild import restamp

    v1 = (MODELS / "digits_cnn_int8.tflite").read_bytes()
    v2 = restamp(v1, "digits v2")
    (tmp_path / "d.tflite").write_bytes(v1)
    test = np.load(MODELS / "digits_test.npz")
    n = 1200
    with (tmp_path / "in.jsonl").open("w") as f:
        for i in range(n):
            x = test["x"][i % len(test["x"])]
            f.write(json.dumps({"ts": i / 400, "key": "cam", "i": i, "image": x.tolist()}) + "\n")
    (tmp_path / "p.yaml").write_text(
        "version: 1\npipelines:\n  digits:\n    nodes:\n"
        "      - {id: src, type: source.jsonl, path: in.jsonl, speed: 1, batch_size: 10}\n"
        "      - {id: cnn, type: tflite, model: d.tflite, watch: 0.2s, outputs: {}, labels: "
        f"{MODELS / 'digits.labels'}}}\n"
        "      - {id: out, type: sink.jsonl, path: out.jsonl}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgewax", "run", str(tmp_path / "p.yaml")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
        text=True,
    )
    out_path = tmp_path / "out.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # swap once the first events are out
        if out_path.exists() and out_path.stat().st_size > 0:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    (tmp_path / "d.tflite.tmp").write_bytes(v2)
    os.replace(tmp_path / "d.tflite.tmp", tmp_path / "d.tflite")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    out = [json.loads(x) for x in out_path.read_text().splitlines()]
    assert [e["i"] for e in out] == list(range(n))  # in == out, once each, in order
    versions = [e["model_version"] for e in out]
    a, b = sha256_hex(v1)[:12], sha256_hex(v2)[:12]
    k = versions.index(b)
    assert 0 < k < n and set(versions[:k]) == {a} and set(versions[k:]) == {b}
    assert "swapped version" in stderr
