"""The `tflite` node and its runtime on tiny models written with LiteRT's flatbuffer schema.

These need no TensorFlow: `edgewax.inference.flatbuild` writes one-layer models whose output is
easy to compute with numpy. Tests on the shipped models are in tests/test_models.py.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgewax.config.diagnostics import ConfigError
from edgewax.config.spec import load_spec_text
from edgewax.flows.compiler import compile_spec
from edgewax.inference.flatbuild import dense_model, expected_dense
from edgewax.inference.model import ModelError, read_model, sha256_hex, signature_of
from edgewax.inference.runner import Runner, dequantize, quantize
from edgewax.inference.swap import ModelSlot
from edgewax.testing import run_compiled, run_node

from .conftest import cli


def write(path: Path, content: bytes) -> str:
    """Write atomically (temp + rename), as a deployment would; returns the sha256."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)
    return sha256_hex(content)


def test_outputs_match_numpy_and_carry_the_version(tmp_path: Path) -> None:
    digest = write(tmp_path / "m.tflite", dense_model(4, 3, seed=1))
    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    out = run_node("tflite", {"model": "m.tflite", "input": "v"}, [{"v": r} for r in x], tmp_path)
    assert len(out) == 50
    got = np.stack([e["y"] for e in out])
    np.testing.assert_allclose(got, expected_dense(x, 4, 3, seed=1), rtol=1e-5, atol=1e-6)
    assert {e["model_version"] for e in out} == {digest[:12]}


def test_default_input_is_the_model_input_name_and_outputs_rename(tmp_path: Path) -> None:
    write(tmp_path / "m.tflite", dense_model(2, 2, weights=np.eye(2)))
    out = run_node(
        "tflite", {"model": "m.tflite", "outputs": {0: "same"}}, [{"x": [1.0, 2.0]}], tmp_path
    )
    assert out[0]["same"].tolist() == [1.0, 2.0]
    assert "y" not in out[0]


def test_quantisation_round_trip() -> None:
    content = dense_model(3, 3, weights=np.eye(3), int8=True, in_scale=1 / 64, out_scale=1 / 64)
    spec = signature_of(content).inputs[0]
    x = np.array([[0.5, -1.0, 1.984375]], np.float32)
    q = quantize(x, spec)
    assert q.dtype == np.int8 and q.tolist() == [[32, -64, 127]]
    np.testing.assert_array_equal(dequantize(q, spec), x)
    # Values beyond the int8 range clip instead of wrapping around.
    assert quantize(np.array([[5.0, -5.0, 0.0]]), spec).tolist() == [[127, -128, 0]]
    # Through the model: float in, de-quantised float out, within one output step.
    [y] = Runner(content, signature_of(content)).run([x])
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x, atol=1 / 64)


def test_raw_passes_integer_tensors(tmp_path: Path) -> None:
    write(tmp_path / "q.tflite", dense_model(2, 2, weights=np.eye(2), int8=True))
    events = [{"x": np.array([64, -32], np.int8)}]
    [e] = run_node("tflite", {"model": "q.tflite", "raw": True}, events, tmp_path)
    assert e["y"].dtype == np.int8
    [f] = run_node("tflite", {"model": "q.tflite"}, [{"x": np.array([1.0, -0.5])}], tmp_path)
    assert f["y"].dtype == np.float32 and f["y"].tolist() == [1.0, -0.5]


def test_batch_and_single_invoke_agree() -> None:
    x = np.random.default_rng(3).normal(size=(300, 8)).astype(np.float32)
    for int8 in (False, True):
        dynamic = dense_model(8, 5, seed=2, int8=int8)
        fixed = dense_model(8, 5, seed=2, int8=int8, batch=1)
        fixed4 = dense_model(8, 5, seed=2, int8=int8, batch=4)
        [a] = Runner(dynamic, signature_of(dynamic), max_batch=64).run([x])
        [b] = Runner(dynamic, signature_of(dynamic), max_batch=1).run([x])
        [c] = Runner(fixed, signature_of(fixed)).run([x])
        [d] = Runner(fixed4, signature_of(fixed4)).run([x[:299]])
        assert Runner(fixed, signature_of(fixed)).fixed == 1
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(a, c, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(a[:299], d, rtol=1e-6, atol=1e-6)


def test_labels_and_top_k(tmp_path: Path) -> None:
    write(tmp_path / "m.tflite", dense_model(3, 3, weights=np.eye(3)))
    (tmp_path / "l.txt").write_text("cat\ndog\nbird\n")
    opts = {"model": "m.tflite", "labels": "l.txt", "top_k": 2}
    [e] = run_node("tflite", opts, [{"x": [0.1, 0.7, 0.2]}], tmp_path)
    assert e["label"] == "dog" and e["score"] == pytest.approx(0.7)
    assert [t["label"] for t in e["top"]] == ["dog", "bird"]


def test_shape_mismatch_is_dead_lettered_and_the_rest_go_on(tmp_path: Path) -> None:
    write(tmp_path / "m.tflite", dense_model(3, 1, weights=np.ones((1, 3))))
    cfg = f"""
version: 1
settings: {{state_dir: {tmp_path}/state}}
pipelines:
  p:
    nodes:
      - {{id: src, type: source.jsonl, path: in.jsonl}}
      - {{id: m, type: tflite, model: m.tflite, input: v}}
      - {{id: out, type: sink.jsonl, path: out.jsonl}}
"""
    lines = [{"v": [1, 2, 3]}, {"v": [1, 2]}, {"v": [1, 1, 1]}, {"w": 1}, {"v": ["a", "b", "c"]}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"ts": 0, **x}) + "\n" for x in lines))
    compiled = compile_spec(load_spec_text(cfg, tmp_path))
    run_compiled(compiled)
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [e["y"] for e in out] == [[6.0], [3.0]]
    stats = compiled.stats[("p", "m")]
    assert stats.discarded() == {"tensor_shape": 1, "missing_field": 1, "bad_value": 1}
    letters = [
        json.loads(x) for x in (tmp_path / "state/dead_letters.jsonl").read_text().splitlines()
    ]
    assert "shape (2,)" in letters[0]["error"]


# ------------------------------------------------------------------ validation

HEAD = "version: 1\npipelines:\n  p:\n    nodes:\n"


def config(*nodes: str) -> str:
    return HEAD + "".join(f"      {n}\n" for n in nodes)


def problems(text: str, base: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_spec_text(text, base, file="pipelines.yaml")
    return str(info.value).splitlines()


SRC = "- {id: src, type: testing.shapes}"


def test_validate_refuses_missing_corrupt_and_mispinned_models(tmp_path: Path) -> None:
    digest = write(tmp_path / "m.tflite", dense_model(2, 2))
    (tmp_path / "bad.tflite").write_bytes(b"\x00" * 64)
    (tmp_path / "cut.tflite").write_bytes(dense_model(2, 2)[:100])
    src = "- {id: src, type: sensor.synthetic, count: 1, signal: vibration}"
    out = "- {id: o, type: sink.stdout}"
    cases = {
        "nope.tflite": "model file",
        "bad.tflite": "not a TFLite model",
        "cut.tflite": "not a valid TFLite model",
    }
    for name, words in cases.items():
        [line] = problems(config(src, f"- {{id: m, type: tflite, model: {name}}}", out), tmp_path)
        assert line.startswith("pipelines.yaml:6:"), line
        assert "node m" in line and words in line, line
    wrong = "0" * 64
    [line] = problems(
        config(src, f"- {{id: m, type: tflite, model: m.tflite, sha256: '{wrong}'}}", out),
        tmp_path,
    )
    assert line.startswith("pipelines.yaml:6:"), line
    assert "does not match the `sha256` pin" in line and digest in line
    # A sidecar pins it when the YAML does not.
    (tmp_path / "m.tflite.sha256").write_text(f"{wrong}  m.tflite\n")
    [line] = problems(config(src, "- {id: m, type: tflite, model: m.tflite}", out), tmp_path)
    assert "sidecar m.tflite.sha256" in line
    (tmp_path / "m.tflite.sha256").write_text(f"{digest}  m.tflite\n")
    load_spec_text(
        config(src, "- {id: m, type: tflite, model: m.tflite, input: accel}", out), tmp_path
    )


def test_validate_checks_the_tensor_contract(tmp_path: Path) -> None:
    write(tmp_path / "m.tflite", dense_model(4, 2))
    src = "- {id: src, type: sensor.synthetic, count: 1, signal: vitals}"
    out = "- {id: o, type: sink.stdout}"
    lines = problems(
        config(src, "- {id: m, type: tflite, model: m.tflite, input: heart_rat}", out), tmp_path
    )
    assert "input field `heart_rat` is not produced upstream" in lines[0]
    assert "did you mean `heart_rate`" in lines[0]
    lines = problems(
        config(src, "- {id: m, type: tflite, model: m.tflite, input: spo2, outputs: {z: o}}", out),
        tmp_path,
    )
    assert "the model has no output `z`" in lines[0] and lines[0].startswith("pipelines.yaml:6:")


def test_validate_compares_declared_shapes(tmp_path: Path) -> None:
    """Upstream FieldInfo (here from a signal.frame-like node) against the model's shape[1:]."""
    from edgewax.operators.base import FieldInfo
    from edgewax.operators.inference.tflite import Tflite, TfliteOptions

    write(tmp_path / "m.tflite", dense_model(256, 2))
    opts = TfliteOptions(model="m.tflite", input="frame")
    base = {"ts": FieldInfo("float64"), "key": FieldInfo("str")}
    ok = {**base, "frame": FieldInfo("float32", (256,), raw=True)}
    assert Tflite.check(opts, ok, tmp_path) == []
    fields = Tflite.fields_out(opts, ok, tmp_path)
    assert fields is not None
    assert fields["y"] == FieldInfo("float32", (2,), raw=True)
    assert fields["model_version"] == FieldInfo("str")
    bad = {**base, "frame": FieldInfo("float32", (128,), raw=True)}
    [p] = Tflite.check(opts, bad, tmp_path)
    assert p.loc == ("input",)
    assert "has shape (128) per event, the model input `x` takes (256)" in p.message
    text = {**base, "frame": FieldInfo("str")}
    [p] = Tflite.check(opts, text, tmp_path)
    assert "takes numbers" in p.message


def test_cli_validate_is_one_line_per_problem(tmp_path: Path) -> None:
    write(tmp_path / "m.tflite", dense_model(2, 2))
    path = tmp_path / "pipelines.yaml"
    path.write_text(
        config(
            "- {id: src, type: sensor.synthetic, count: 1}",
            f"- {{id: m, type: tflite, model: m.tflite, sha256: '{'a' * 64}'}}",
            "- {id: o, type: sink.stdout}",
        )
    )
    r = cli("validate", str(path))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith(f"{path}:6:") and "node m" in first and "sha256" in first


# --------------------------------------------------------------------- hot swap


def test_slot_swaps_verified_models_and_keeps_the_old_one_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "m.tflite"
    v1 = dense_model(2, 2, weights=np.eye(2))
    v2 = dense_model(2, 2, weights=2 * np.eye(2))
    write(path, v1)
    results: list[str] = []
    slot = ModelSlot(read_model(path), on_swap=lambda r, old, new, d: results.append(r))
    runner, _ = slot.runner()
    assert slot.poll() is None  # nothing changed

    def step(content: bytes) -> str | None:
        write(path, content)
        return slot.poll()

    assert step(b"TFL3 garbage") == "failed"  # corrupt: kept v1
    assert slot.current.model.sha256 == sha256_hex(v1)
    assert step(dense_model(3, 2)) == "failed"  # another signature
    assert step(v2) == "ok"
    runner2, model2 = slot.runner()
    assert runner2 is not runner and model2.sha256 == sha256_hex(v2)
    assert runner2.run([np.array([[1.0, 1.0]], np.float32)])[0].tolist() == [[2.0, 2.0]]
    assert results == ["failed", "failed", "ok"]


def test_slot_refuses_a_swap_that_breaks_the_pin(tmp_path: Path) -> None:
    path = tmp_path / "m.tflite"
    v1 = dense_model(2, 2, weights=np.eye(2))
    v2 = dense_model(2, 2, weights=3 * np.eye(2))
    pin = write(path, v1)
    slot = ModelSlot(read_model(path, [pin]), pins=[pin])
    write(path, v2)
    assert slot.poll() == "failed"
    assert slot.current.model.sha256 == pin
    # Without a YAML pin the sidecar decides: a matching sidecar lets the new version in.
    slot2 = ModelSlot(read_model(path))
    write(path, v1)
    (tmp_path / "m.tflite.sha256").write_text("f" * 64 + "\n")
    assert slot2.poll() == "failed"
    (tmp_path / "m.tflite.sha256").write_text(sha256_hex(v1) + "  m.tflite\n")
    assert slot2.poll() == "ok"


def test_hot_swap_under_a_running_pipeline(tmp_path: Path) -> None:
    """Replace the model mid-stream: every event comes out once, in order, v1 then v2."""
    path = tmp_path / "m.tflite"
    v1 = write(path, dense_model(2, 1, weights=np.array([[1.0, 0.0]])))
    v2_bytes = dense_model(2, 1, weights=np.array([[0.0, 1.0]]))
    n = 2000
    with (tmp_path / "in.jsonl").open("w") as f:
        for i in range(n):
            f.write(json.dumps({"ts": i / 200, "key": "k", "i": i, "v": [1.0, 2.0]}) + "\n")
    cfg = f"""
version: 1
settings: {{state_dir: {tmp_path}/state}}
pipelines:
  p:
    nodes:
      - {{id: src, type: source.jsonl, path: in.jsonl, speed: 4, batch_size: 20}}
      - {{id: m, type: tflite, model: m.tflite, input: v, watch: 0.1s}}
      - {{id: out, type: sink.jsonl, path: out.jsonl}}
"""
    compiled = compile_spec(load_spec_text(cfg, tmp_path))
    swapper = threading.Timer(1.0, lambda: write(path, v2_bytes))
    swapper.start()
    run_compiled(compiled)
    swapper.join()
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [e["i"] for e in out] == list(range(n))  # none lost, none twice, in order
    versions = [e["model_version"] for e in out]
    v2 = sha256_hex(v2_bytes)[:12]
    first_v2 = versions.index(v2)
    assert 0 < first_v2 < n
    assert set(versions[:first_v2]) == {v1[:12]} and set(versions[first_v2:]) == {v2}
    assert {e["y"][0] for e in out[:first_v2]} == {1.0} and {e["y"][0] for e in out[first_v2:]} == {
        2.0
    }
    swaps = compiled.metrics.registry.get_sample_value(
        "edgewax_model_swaps_total",
        {"pipeline": "p", "node": "m", "type": "tflite", "result": "ok"},
    )
    assert swaps == 1
    info = compiled.metrics.registry.get_sample_value(
        "edgewax_model_info",
        {
            "pipeline": "p",
            "node": "m",
            "type": "tflite",
            "model": "m.tflite",
            "sha256": sha256_hex(v2_bytes),
            "version": v2,
        },
    )
    assert info == 1
    assert compiled.health.status()["p/m"]["ready"]
    assert v2 in compiled.health.status()["p/m"]["detail"]


def test_latency_histogram_and_readiness(tmp_path: Path) -> None:
    digest = write(tmp_path / "m.tflite", dense_model(2, 2))
    cfg = """
version: 1
settings: {dead_letter: {path: null}}
pipelines:
  p:
    nodes:
      - {id: src, type: source.jsonl, path: in.jsonl}
      - {id: m, type: tflite, model: m.tflite, input: v, watch: null}
      - {id: out, type: sink.jsonl, path: out.jsonl}
"""
    (tmp_path / "in.jsonl").write_text('{"ts": 0, "v": [1, 2]}\n' * 10)
    compiled = compile_spec(load_spec_text(cfg, tmp_path))
    assert compiled.health.status()["p/m"] == {
        "kind": "model",
        "ready": True,
        "detail": f"m.tflite version {digest[:12]}",
        "since": compiled.health.status()["p/m"]["since"],
    }
    run_compiled(compiled)
    labels = {
        "pipeline": "p",
        "node": "m",
        "type": "tflite",
        "model": "m.tflite",
        "version": digest[:12],
    }
    count = compiled.metrics.registry.get_sample_value("edgewax_inference_seconds_count", labels)
    assert count is not None and count >= 1


def test_micro_batching_with_max_wait(tmp_path: Path) -> None:
    write(tmp_path / "m.tflite", dense_model(2, 1, weights=np.ones((1, 2))))
    events = [{"key": f"k{i % 3}", "v": [i, 1]} for i in range(50)]
    opts = {"model": "m.tflite", "input": "v", "batch": {"max_size": 8, "max_wait_ms": 20}}
    out = run_node("tflite", opts, events, tmp_path)
    assert sorted(e["y"][0] for e in out) == [float(i + 1) for i in range(50)]
    for k in ("k0", "k1", "k2"):  # order kept per key
        ys = [e["y"][0] for e in out if e["key"] == k]
        assert ys == sorted(ys)


def test_missing_model_at_run_time_is_one_line(tmp_path: Path) -> None:
    write(tmp_path / "m.tflite", dense_model(2, 2))
    path = tmp_path / "pipelines.yaml"
    path.write_text(
        config(
            "- {id: src, type: sensor.synthetic, count: 1, signal: vibration}",
            "- {id: m, type: tflite, model: m.tflite, input: accel}",
            "- {id: o, type: sink.stdout}",
        )
    )
    spec = load_spec_text(path.read_text(), tmp_path)
    (tmp_path / "m.tflite").unlink()
    with pytest.raises(ModelError, match=r"node m: model file .* does not exist"):
        compile_spec(spec)


def test_watcher_thread_polls(tmp_path: Path) -> None:
    path = tmp_path / "m.tflite"
    write(path, dense_model(2, 2, weights=np.eye(2)))
    slot = ModelSlot(read_model(path))
    stop = threading.Event()
    slot.watch(0.05, stop)
    new = write(path, dense_model(2, 2, weights=np.eye(2) * 5))
    deadline = time.monotonic() + 5
    while slot.current.model.sha256 != new and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    assert slot.current.model.sha256 == new


def test_one_interpreter_per_worker_thread(tmp_path: Path) -> None:
    path = tmp_path / "m.tflite"
    write(path, dense_model(4, 2, seed=5))
    slot = ModelSlot(read_model(path), max_batch=8)
    x = np.random.default_rng(1).normal(size=(500, 4)).astype(np.float32)
    seen: dict[str, tuple[Runner, np.ndarray]] = {}

    def work(name: str) -> None:
        runner, _ = slot.runner()
        assert slot.runner()[0] is runner  # the same one on every batch
        outs = [runner.run([x[i : i + 50]])[0] for i in range(0, 500, 50)]
        seen[name] = (runner, np.concatenate(outs))  # kept alive: ids stay distinct

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(r) for r, _ in seen.values()}) == 3
    assert len({id(r.interp) for r, _ in seen.values()}) == 3
    for _, out in seen.values():
        np.testing.assert_allclose(out, expected_dense(x, 4, 2, seed=5), rtol=1e-5, atol=1e-6)


def test_multi_input_models_batched_and_looped(tmp_path: Path) -> None:
    from edgewax.inference.flatbuild import add_model

    for batch in (None, 1):
        write(tmp_path / "add.tflite", add_model(3, batch=batch))
        events = [{"p": [i, 0, 1], "q": [1, 1, i]} for i in range(40)]
        opts = {"model": "add.tflite", "input": ["p", "q"], "outputs": {"y": "sum"}}
        out = run_node("tflite", opts, events, tmp_path)
        assert [e["sum"].tolist() for e in out] == [[i + 1, 1, i + 1] for i in range(40)]


def test_a_list_of_pins_accepts_each_version(tmp_path: Path) -> None:
    path = tmp_path / "m.tflite"
    v1 = dense_model(2, 2, weights=np.eye(2))
    v2 = dense_model(2, 2, weights=4 * np.eye(2))
    pins = [write(path, v1), sha256_hex(v2)]
    slot = ModelSlot(read_model(path, pins), pins=pins)
    write(path, v2)
    assert slot.poll() == "ok"
    write(path, dense_model(2, 2, weights=5 * np.eye(2)))
    assert slot.poll() == "failed"
    assert slot.current.model.sha256 == pins[1]


def test_hot_swap_with_two_workers_under_edgewax_run(tmp_path: Path) -> None:
    """`edgewax run -w 2`: two keys (partitions) on two worker threads, each with its own
    interpreter; the model is replaced mid-run; per key every event comes out once, in order."""
    import subprocess
    import sys

    from .conftest import ROOT

    path = tmp_path / "m.tflite"
    v1 = write(path, dense_model(2, 1, weights=np.array([[0.0, 1.0]])))
    v2_bytes = dense_model(2, 1, weights=np.array([[0.0, 2.0]]))
    (tmp_path / "p.yaml").write_text(
        "version: 1\npipelines:\n  p:\n    nodes:\n"
        "      - {id: s, type: sensor.synthetic, signal: vibration, keys: [a, b], rate_hz: 500,"
        " duration: 6s, speed: 2, start: 0}\n"
        "      - {id: v, type: map, set: {v: '[accel, 1.0]'}}\n"
        "      - {id: m, type: tflite, model: m.tflite, input: v, watch: 0.1s}\n"
        "      - {id: o, type: sink.jsonl, path: out.jsonl}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgewax", "run", "-w", "2", str(tmp_path / "p.yaml")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # swap once events come out
        if (tmp_path / "out.jsonl").exists() and (tmp_path / "out.jsonl").stat().st_size:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    write(path, v2_bytes)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    v2 = sha256_hex(v2_bytes)[:12]
    for key in ("a", "b"):
        events = [e for e in out if e["key"] == key]
        ts = [e["ts"] for e in events]
        assert len(events) == 3000 and ts == sorted(ts) and len(set(ts)) == 3000
        versions = [e["model_version"] for e in events]
        k = versions.index(v2)
        assert k > 0 and set(versions[:k]) == {v1[:12]} and set(versions[k:]) == {v2}
        assert {e["y"][0] for e in events[:k]} == {1.0} and {e["y"][0] for e in events[k:]} == {2.0}
