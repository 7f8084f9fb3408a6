"""Tests for edgewax.operators.sources.signals: determinism, resumability, fault signatures."""

from __future__ import annotations

import doctest
import itertools
import math
import time

import numpy as np
import pytest

from edgewax.operators.sources import signals
from edgewax.operators.sources.signals import SIGNALS, Fault, Generator

ALL_FAULTS = {
    "vibration": [
        Fault("imbalance", 1.0, 2.0),
        Fault("bearing", 2.5, 3.0, severity=1.5),
        Fault("looseness", 4.0, 2.0, severity=0.7),
    ],
    "temperature": [
        Fault("overheat", 1000.0, 3000.0),
        Fault("sensor_stuck", 2000.0, 500.0),
        Fault("spike", 5000.0, 4000.0, severity=2.0),
    ],
    "vitals": [
        Fault("tachycardia", 1000.0, 900.0),
        Fault("bradycardia", 3000.0, 900.0),
        Fault("desaturation", 5000.0, 300.0, severity=2.0),
        Fault("artifact", 6000.0, 3000.0),
    ],
}


def _gen(
    signal: str,
    key: str = "k1",
    seed: int = 7,
    faults: list[Fault] | None = None,
    rate: float | None = None,
) -> Generator:
    rate_hz = SIGNALS[signal].default_rate_hz if rate is None else rate
    return Generator(signal, key, rate_hz, seed, faults or [])


def _kurtosis(x: np.ndarray) -> float:
    d = x - x.mean()
    return float(np.mean(d**4) / np.mean(d**2) ** 2)


def _rms(x: np.ndarray) -> float:
    d = x - x.mean()
    return float(np.sqrt(np.mean(d**2)))


def _tone(x: np.ndarray, t: np.ndarray, freq: float, seconds: float = 1.0) -> float:
    """Amplitude of x's component at freq: a DFT at exactly freq over windows of `seconds`,
    short enough that the slight shaft-speed wander does not smear the line."""
    rate = 1.0 / (t[1] - t[0])
    size = round(seconds * rate)
    count = len(x) // size
    phasor = x * np.exp(-2j * math.pi * freq * t)
    windows = phasor[: count * size].reshape(count, size)
    return float(np.mean(2.0 * np.abs(windows.mean(axis=1))))


def _equal_outputs(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------- specs and shapes


def test_module_doctests() -> None:
    result = doctest.testmod(signals)
    assert result.attempted > 0
    assert result.failed == 0


def test_specs() -> None:
    assert set(SIGNALS) == {"vibration", "temperature", "vitals"}
    assert SIGNALS["vibration"].fields == ("accel",)
    assert SIGNALS["temperature"].fields == ("temperature",)
    assert SIGNALS["vitals"].fields == ("heart_rate", "spo2")
    assert SIGNALS["vibration"].fault_kinds == ("imbalance", "bearing", "looseness")
    assert SIGNALS["temperature"].fault_kinds == ("overheat", "sensor_stuck", "spike")
    assert SIGNALS["vitals"].fault_kinds == (
        "tachycardia",
        "bradycardia",
        "desaturation",
        "artifact",
    )
    assert SIGNALS["vibration"].default_rate_hz == 1000.0
    assert SIGNALS["temperature"].default_rate_hz == 1.0
    assert SIGNALS["vitals"].default_rate_hz == 1.0
    for name, spec in SIGNALS.items():
        assert spec.name == name
        assert spec.description and "\n" not in spec.description


@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_output_layout(signal: str) -> None:
    gen = _gen(signal, faults=ALL_FAULTS[signal])
    rate = gen.rate_hz
    out = gen.generate(123, 5000)
    assert list(out) == [*SIGNALS[signal].fields, "t", "fault"]
    for name in SIGNALS[signal].fields:
        assert out[name].dtype == np.float64
        assert out[name].shape == (5000,)
        assert np.all(np.isfinite(out[name]))
    assert out["t"].dtype == np.float64
    assert out["t"].tolist() == [i / rate for i in range(123, 5123)]
    assert out["fault"].dtype == object
    assert set(out["fault"].tolist()) <= {"", *SIGNALS[signal].fault_kinds} | {
        "+".join(pair) for pair in _pairs(SIGNALS[signal].fault_kinds)
    }
    empty = gen.generate(10, 0)
    assert list(empty) == list(out)
    assert all(v.shape == (0,) for v in empty.values())


def _pairs(kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(a, b) for a in kinds for b in kinds if a != b]


# ----------------------------------------------------------------- determinism and resumability


@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_deterministic_per_seed_and_key(signal: str) -> None:
    n = 3000
    a = _gen(signal, "pump-1", 1).generate(0, n)
    b = _gen(signal, "pump-1", 1).generate(0, n)
    assert _equal_outputs(a, b)
    field = SIGNALS[signal].fields[0]
    other_key = _gen(signal, "pump-2", 1).generate(0, n)
    other_seed = _gen(signal, "pump-1", 2).generate(0, n)
    assert not np.allclose(a[field], other_key[field])
    assert not np.allclose(a[field], other_seed[field])
    assert dict(_gen(signal, "pump-1", 1).params) != dict(_gen(signal, "pump-2", 1).params)


@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_split_invariance(signal: str) -> None:
    rate = SIGNALS[signal].default_rate_hz
    faults = ALL_FAULTS[signal]
    start, n = 17, 12_000 if rate > 1 else 10_000
    whole = _gen(signal, faults=faults).generate(start, n)
    rng = np.random.default_rng(0)
    for trial in range(6):
        cuts = np.sort(rng.choice(np.arange(1, n), size=int(rng.integers(1, 25)), replace=False))
        bounds = [0, *cuts.tolist(), n]
        gen = _gen(signal, faults=faults)  # a fresh generator, as after a restart
        pieces = list(itertools.pairwise(bounds))
        if trial % 2:
            rng.shuffle(pieces)  # out of order, too: nothing depends on earlier calls
        parts = {lo: gen.generate(start + lo, hi - lo) for lo, hi in pieces}
        joined = {k: np.concatenate([parts[lo][k] for lo in sorted(parts)]) for k in whole}
        assert _equal_outputs(joined, whole), f"split {bounds} differs"


@pytest.mark.parametrize(
    ("signal", "rate"), [("vibration", 257.3), ("vitals", 25.0), ("temperature", 0.1)]
)
def test_split_invariance_at_other_rates(signal: str, rate: float) -> None:
    kinds = SIGNALS[signal].fault_kinds
    span = 6000 / rate / len(kinds)  # overlapping faults, one after another
    faults = [Fault(kind, (i + 0.1) * span, 1.5 * span, 1.3) for i, kind in enumerate(kinds)]
    whole = _gen(signal, rate=rate, faults=faults).generate(5, 6000)
    gen = _gen(signal, rate=rate, faults=faults)
    step = [1, 999, 4096, 3, 900]
    parts, at = [], 0
    while at < 6000:
        m = min(step[len(parts) % len(step)], 6000 - at)
        parts.append(gen.generate(5 + at, m))
        at += m
    for k in whole:
        assert np.array_equal(np.concatenate([p[k] for p in parts]), whole[k]), k
    assert {f.kind for f in faults} <= set(whole["fault"].tolist())


def test_split_invariance_one_sample_at_a_time_and_far_from_start() -> None:
    faults = [Fault("bearing", 0.0, math.inf)]
    gen = _gen("vibration", faults=faults)
    first = 86_400_000 * 3  # three days in at 1 kHz
    whole = gen.generate(first, 300)
    singles = [_gen("vibration", faults=faults).generate(first + i, 1) for i in range(300)]
    for k in whole:
        assert np.array_equal(np.concatenate([s[k] for s in singles]), whole[k])
    assert np.all(np.isfinite(whole["accel"]))


AFFECTS = {
    "imbalance": {"accel"},
    "bearing": {"accel"},
    "looseness": {"accel"},
    "overheat": {"temperature"},
    "sensor_stuck": {"temperature"},
    "spike": {"temperature"},
    "tachycardia": {"heart_rate"},
    "bradycardia": {"heart_rate"},
    "desaturation": {"spo2", "heart_rate"},
    "artifact": {"heart_rate", "spo2"},
}


@pytest.mark.parametrize("signal", sorted(SIGNALS))
def test_faults_change_nothing_outside_their_interval(signal: str) -> None:
    n = 10_000
    clean = _gen(signal).generate(0, n)
    for fault in ALL_FAULTS[signal]:
        out = _gen(signal, faults=[fault]).generate(0, n)
        inside = (clean["t"] >= fault.start) & (clean["t"] < fault.start + fault.duration)
        assert inside.any() and not inside.all()
        for name in SIGNALS[signal].fields:
            assert np.array_equal(out[name][~inside], clean[name][~inside]), fault.kind
            changed = not np.array_equal(out[name][inside], clean[name][inside])
            assert changed == (name in AFFECTS[fault.kind]), (fault.kind, name)


# -------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize("rate", [1.0, 3.0, 7.3, 100.0, 1000.0])
def test_labels_exact_on_interval_boundaries(rate: float) -> None:
    rng = np.random.default_rng(int(rate * 10))
    n = 4000
    horizon = n / rate
    starts = [0.0, 0.1, 0.3, 1 / 3, horizon / 2, *rng.uniform(0, horizon, 6).round(3).tolist()]
    durations = [0.0, 0.2, 0.7, 1.0, 2 / 3, *rng.uniform(0, horizon / 4, 6).round(3).tolist()]
    for start, duration in zip(starts, durations, strict=True):
        gen = _gen("temperature", rate=rate, faults=[Fault("overheat", start, duration)])
        a, m = int(rng.integers(0, n // 2)), int(rng.integers(1, n // 2))
        out = gen.generate(a, m)
        expect = [start <= i / rate < start + duration for i in range(a, a + m)]
        assert (out["fault"] == "overheat").tolist() == expect, (start, duration)
        assert set(out["fault"].tolist()) <= {"", "overheat"}


def test_labels_open_ended_and_overlapping() -> None:
    gen = _gen(
        "vibration",
        faults=[Fault("looseness", 1.0, math.inf), Fault("bearing", 0.5, 1.0)],
    )
    out = gen.generate(0, 3000)
    t = out["t"]
    labels = out["fault"]
    assert set(labels[t < 0.5]) == {""}
    assert set(labels[(t >= 0.5) & (t < 1.0)]) == {"bearing"}
    assert set(labels[(t >= 1.0) & (t < 1.5)]) == {"looseness+bearing"}
    assert set(labels[t >= 1.5]) == {"looseness"}


def test_fault_key_filtering() -> None:
    faults = [Fault("overheat", 100.0, 500.0, key="a"), Fault("spike", 0.0, 50.0, key="b")]
    a = _gen("temperature", "a", faults=faults)
    c = _gen("temperature", "c", faults=faults)
    assert [f.kind for f in a.faults] == ["overheat"]
    assert c.faults == ()
    out_a, out_c = a.generate(0, 1000), c.generate(0, 1000)
    assert set(out_a["fault"]) == {"", "overheat"}
    assert set(out_c["fault"]) == {""}
    assert _equal_outputs(out_c, _gen("temperature", "c").generate(0, 1000))
    everyone = [Fault("overheat", 100.0, 500.0)]
    for key in ("a", "b", "c"):
        assert "overheat" in set(
            _gen("temperature", key, faults=everyone).generate(0, 1000)["fault"]
        )


# ------------------------------------------------------------------------- vibration signatures


def _vibration_windows(kind: str, severity: float, key: str) -> tuple[dict[str, float], ...]:
    gen = _gen("vibration", key, 11, [Fault(kind, 10.0, 10.0, severity)])
    out = gen.generate(0, 20_000)
    f0 = gen.params["shaft_hz"]
    result = []
    for sl in (slice(0, 10_000), slice(10_000, 20_000)):
        x, t = out["accel"][sl], out["t"][sl]
        result.append(
            {
                "rms": _rms(x),
                "kurtosis": _kurtosis(x),
                "crest": float(np.max(np.abs(x - x.mean())) / _rms(x)),
                "1x": _tone(x, t, f0),
                "harmonics": sum(_tone(x, t, h * f0) for h in range(4, 11)),
                "subharmonic": _tone(x, t, 0.5 * f0),
            }
        )
    assert set(out["fault"][:10_000]) == {""} and set(out["fault"][10_000:]) == {kind}
    return tuple(result)


def test_vibration_is_plausible() -> None:
    for key in ("pump-1", "pump-2", "fan-9"):
        gen = _gen("vibration", key)
        out = gen.generate(0, 30_000)
        x, t = out["accel"], out["t"]
        f0 = gen.params["shaft_hz"]
        assert 22.5 <= f0 <= 27.5
        assert 0.02 < _rms(x) < 0.06  # g
        assert 1.5 < _kurtosis(x) < 3.0  # tones plus a little noise: not impulsive
        assert abs(x.mean()) < 0.005
        assert _tone(x, t, f0) > 1.5 * _tone(x, t, 2 * f0) > 0.012  # 1x dominates, 2x present
        assert _tone(x, t, 1.3 * f0) < 0.005  # no tone between the harmonics


@pytest.mark.parametrize("key", ["pump-1", "pump-2", "fan-9"])
@pytest.mark.parametrize("kind", ["imbalance", "bearing", "looseness"])
def test_vibration_fault_signatures(kind: str, key: str) -> None:
    before, during = _vibration_windows(kind, 1.0, key)
    assert during["rms"] > 1.5 * before["rms"]
    if kind == "imbalance":
        # The 1x tone grows; a purer sinusoid has a *lower* kurtosis (1.5 for a pure sine).
        assert during["1x"] > 3.0 * before["1x"]
        assert during["kurtosis"] < before["kurtosis"]
    elif kind == "bearing":
        assert during["kurtosis"] > 2.0 * before["kurtosis"]
        assert during["kurtosis"] > 4.5
        assert during["crest"] > 1.6 * before["crest"]
    else:
        assert during["kurtosis"] > 1.8 * before["kurtosis"]
        assert during["harmonics"] > 5.0 * before["harmonics"]
        assert during["subharmonic"] > 5.0 * before["subharmonic"]


@pytest.mark.parametrize("kind", ["imbalance", "bearing", "looseness"])
def test_vibration_severity_scales(kind: str) -> None:
    windows = [_vibration_windows(kind, s, "pump-1") for s in (0.0, 0.3, 1.0, 2.0)]
    levels = [during["rms"] for _, during in windows]
    base = windows[0][0]["rms"]
    assert levels[0] == pytest.approx(base, rel=0.1)  # severity 0: no change
    excess = [rms**2 - base**2 for rms in levels[1:]]  # the power the fault adds
    assert 0 < 4 * excess[0] < excess[1] < excess[2] / 2.5  # grows about as severity squared
    assert levels[2] > 1.5 * base


def test_bearing_impacts_at_defect_frequency() -> None:
    gen = _gen("vibration", "pump-1", faults=[Fault("bearing", 0.0, math.inf, severity=2.0)])
    out = gen.generate(0, 20_000)
    env = np.abs(out["accel"]) - np.abs(out["accel"]).mean()  # crude envelope
    bpfo = gen.params["bearing_ratio"] * gen.params["shaft_hz"]
    assert _tone(env, out["t"], bpfo) > 5 * _tone(env, out["t"], 1.17 * bpfo)


# ----------------------------------------------------------------------- temperature signatures


def test_temperature_is_plausible() -> None:
    for key in ("m1", "m2", "m3", "m4"):
        gen = _gen("temperature", key)
        x = gen.generate(0, 86_400)["temperature"]  # a day at 1 Hz
        assert 40.0 <= gen.params["baseline_c"] <= 60.0
        assert x.min() > 33.0 and x.max() < 67.0
        assert 1.5 < np.ptp(x) < 12.0  # daily drift plus wander
        assert np.abs(np.diff(x)).max() < 1.0  # slow: no jumps without a fault


@pytest.mark.parametrize("severity", [0.5, 1.0, 2.0])
def test_overheat_ramps_and_holds(severity: float) -> None:
    start, duration = 1000.0, 2000.0
    gen = _gen("temperature", "m1", faults=[Fault("overheat", start, duration, severity)])
    x = gen.generate(0, 4000)["temperature"]
    before = x[900:1000].mean()
    ramp = 300.0  # min(20% of 2000 s, 300 s)
    assert x[2900:3000].mean() - before == pytest.approx(30.0 * severity, abs=2.0)
    assert x[int(start + ramp) + 50 : 3000].std() < 1.0  # holds after the ramp
    assert 0.2 * 30 * severity < x[int(start + ramp / 2)] - before < 0.95 * 30 * severity
    assert x[3000:3100].mean() == pytest.approx(before, abs=2.0)  # over at the end


def test_overheat_short_fault_ramps_over_a_fifth() -> None:
    gen = _gen("temperature", "m1", faults=[Fault("overheat", 100.0, 200.0)])
    x = gen.generate(0, 400)["temperature"]
    assert x[140:300].mean() - x[50:100].mean() == pytest.approx(30.0, abs=2.0)
    assert x[120] - x[50:100].mean() < 28.0


def test_sensor_stuck_freezes_value_at_fault_start() -> None:
    fault = Fault("sensor_stuck", 500.5, 250.0)  # first sample in the fault: t = 501
    clean = _gen("temperature", "m2").generate(0, 1000)["temperature"]
    out = _gen("temperature", "m2", faults=[fault]).generate(0, 1000)
    x, t = out["temperature"], out["t"]
    inside = (t >= 500.5) & (t < 750.5)
    assert np.all(x[inside] == clean[501])
    assert np.array_equal(x[~inside], clean[~inside])
    assert np.unique(x[750:800]).size > 10


def test_stuck_during_overheat_freezes_the_hot_value() -> None:
    faults = [Fault("overheat", 100.0, 2000.0), Fault("sensor_stuck", 800.0, 100.0)]
    out = _gen("temperature", "m2", faults=faults).generate(0, 1000)
    assert np.all(out["temperature"][800:900] == out["temperature"][800])
    assert out["temperature"][800] > out["temperature"][:100].mean() + 25
    assert out["fault"][850] == "overheat+sensor_stuck"


def test_spikes_only_in_fault() -> None:
    gen = _gen("temperature", "m3", faults=[Fault("spike", 2000.0, 2000.0)])
    x = gen.generate(0, 6000)["temperature"]
    clean = _gen("temperature", "m3").generate(0, 6000)["temperature"]
    jump = np.abs(x - clean)
    assert np.all(jump[:2000] == 0) and np.all(jump[4000:] == 0)
    spikes = jump[2000:4000] > 5.0
    assert 40 <= spikes.sum() <= 200  # about one every 15-30 s
    assert np.all((jump[2000:4000] == 0) | spikes)  # single samples, clearly off


# ---------------------------------------------------------------------------- vitals signatures


def test_vitals_are_plausible() -> None:
    for key in ("bed-1", "bed-2", "bed-3", "bed-4"):
        gen = _gen("vitals", key)
        out = gen.generate(0, 7200)
        hr, spo2 = out["heart_rate"], out["spo2"]
        assert 60.0 <= gen.params["rest_hr"] <= 80.0
        assert hr.min() > 50.0 and hr.max() < 92.0
        assert 1.0 < hr.std() < 8.0
        assert spo2.min() > 95.0 and spo2.max() <= 100.0
        assert 96.0 <= spo2.mean() <= 99.0


@pytest.mark.parametrize("key", ["bed-1", "bed-2", "bed-3"])
def test_vitals_episodes(key: str) -> None:
    faults = [
        Fault("tachycardia", 600.0, 600.0),
        Fault("bradycardia", 1800.0, 600.0),
        Fault("desaturation", 3000.0, 300.0),
        Fault("desaturation", 3600.0, 300.0, severity=2.0),
        Fault("artifact", 4200.0, 300.0),
    ]
    out = _gen("vitals", key, faults=faults).generate(0, 4800)
    hr, spo2, labels = out["heart_rate"], out["spo2"], out["fault"]
    rest_hr = hr[:600].mean()
    assert hr[700:1100].mean() > 125.0  # tachycardia plateau (after the ramp)
    assert hr[600:610].mean() < rest_hr + 15.0  # ... reached by a ramp, not a step
    assert hr[1900:2300].mean() < 46.0  # bradycardia plateau
    assert spo2[3060:3250].mean() < 87.0  # desaturation
    assert spo2[3660:3850].mean() < spo2[3060:3250].mean() - 8.0  # deeper at severity 2
    assert hr[3060:3250].mean() >= rest_hr - 5.0  # the heart does not slow down
    art = labels == "artifact"
    zeros = (hr == 0.0) & (spo2 == 0.0)
    assert zeros[art].sum() > 30
    assert not zeros[~art].any()
    assert np.all(hr >= 0.0) and np.all((spo2 >= 0.0) & (spo2 <= 100.0))
    calm = labels == ""
    assert hr[calm].max() < 95.0 and spo2[calm].min() > 94.0


def test_vitals_stay_in_range() -> None:
    for i in range(10):
        faults = [
            Fault("desaturation", 100.0, 300.0, severity=3.0),
            Fault("bradycardia", 500, 300, 3.0),
        ]
        out = _gen("vitals", f"bed-{i}", faults=faults).generate(0, 20_000)
        assert out["spo2"].min() >= 0.0 and out["spo2"].max() <= 100.0
        assert out["heart_rate"].min() >= 0.0


# ------------------------------------------------------------------------------------- errors


def test_errors() -> None:
    with pytest.raises(
        ValueError, match=r"unknown signal 'vibrato'.*temperature, vibration, vitals"
    ):
        Generator("vibrato", "k", 1000.0, 1)
    with pytest.raises(ValueError, match=r"'overheat'.*'vibration'.*imbalance, bearing, looseness"):
        Generator("vibration", "k", 1000.0, 1, [Fault("overheat", 0.0, 1.0)])
    with pytest.raises(ValueError, match="valid kinds"):  # checked even for another key's fault
        Generator("vitals", "k", 1.0, 1, [Fault("bearing", 0.0, 1.0, key="other")])
    with pytest.raises(ValueError, match="rate_hz"):
        Generator("vitals", "k", 0.0, 1)
    with pytest.raises(ValueError, match="seed"):
        Generator("vitals", "k", 1.0, -1)
    with pytest.raises(ValueError, match="duration"):
        Fault("overheat", 0.0, -1.0)
    with pytest.raises(ValueError, match="start"):
        Fault("overheat", math.nan, 1.0)
    with pytest.raises(ValueError, match="severity"):
        Fault("overheat", 0.0, 1.0, severity=math.inf)
    gen = _gen("vitals")
    with pytest.raises(ValueError, match="start_index"):
        gen.generate(-1, 10)
    with pytest.raises(ValueError, match="n must be"):
        gen.generate(0, -1)


# ---------------------------------------------------------------------------------- throughput


def test_throughput_vibration_1khz(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints samples/s (no assertion): 1 kHz vibration, several keys, node-sized calls."""
    keys = [f"pump-{i}" for i in range(4)]
    lines = []
    for label, faults in (("normal", []), ("bearing", [Fault("bearing", 0.0, math.inf)])):
        for chunk in (1000, 10_000):
            gens = [_gen("vibration", key, faults=faults) for key in keys]
            total, best = 500_000, 0.0
            for _ in range(3):
                began = time.perf_counter()
                for i in range(0, total // len(keys), chunk):
                    for gen in gens:
                        gen.generate(i, chunk)
                best = max(best, total / (time.perf_counter() - began))
            lines.append(
                f"{label:8s} chunk={chunk:6d}: {best / 1e6:6.1f} M samples/s "
                f"({best / 1000:,.0f}x real time for one 1 kHz key)"
            )
    with capsys.disabled():
        print("\nvibration @1 kHz, 4 keys:\n  " + "\n  ".join(lines))
