"""Seeded synthetic sensor signals with injectable faults (pure numpy; no Bytewax).

The `sensor.synthetic` node wraps this module so that pipelines run with no hardware. Three signals
are known (`SIGNALS`): a pump's `vibration` (1 kHz accelerometer), a machine's `temperature` and a
patient's `vitals`. A `Generator` makes one key's stream; sample `i` is at `t = i / rate_hz` seconds
from the stream start and depends only on (signal, seed, key, rate, faults, i): any split of a range
into `generate` calls gives the same values bit for bit, so a restarted node resumes from an index.

>>> SIGNALS["vitals"].fields
('heart_rate', 'spo2')
>>> SIGNALS["vibration"].fault_kinds
('imbalance', 'bearing', 'looseness')
>>> gen = Generator("temperature", key="pump-7", rate_hz=1.0, seed=42,
...                 faults=[Fault("overheat", start=2.0, duration=60.0)])
>>> out = gen.generate(0, 4)
>>> sorted(out)
['fault', 't', 'temperature']
>>> out["t"].tolist(), out["fault"].tolist()
([0.0, 1.0, 2.0, 3.0], ['', '', 'overheat', 'overheat'])
>>> bool(np.array_equal(out["temperature"], gen.generate(0, 4)["temperature"]))
True

The models (all parameters are drawn per key from (seed, signal, key); see `Generator.params`):

- vibration, `accel` in g: shaft tone at `shaft_hz` (25 Hz +-10%) with 2x and 3x harmonics, a slow
  amplitude wander (5-10%) and a slight shaft-speed wander (0.1-0.2%), plus white noise; RMS ~0.04
  g, kurtosis ~2. Tones at or above 0.45 x rate are left out, as a sensor's anti-alias filter would.
  `imbalance`: the 1x tone grows to (1 + 3 x severity) times its size (RMS ~x3.5 at severity 1; the
  kurtosis falls towards a sine's 1.5). `bearing`: an outer-race defect, an impact every
  1/(`bearing_ratio` x shaft_hz) s (ratio 3.5-3.7, 2% slip) ringing the structure at
  `resonance_hz` (280-380 Hz, at most 0.4 x rate) and dying out within ~10 ms (kurtosis ~6 and
  crest factor ~5 at severity 1, RMS ~x2.5). `looseness`: phase-locked harmonics 1x-10x, 0.5x, 1.5x
  and 2.5x sub-harmonics, and 1.5x the normal noise again on top (kurtosis ~5-6, RMS ~x2 at severity
  1). Vibration faults start and stop as a step.
- temperature, `temperature` in degC: `baseline_c` (40-60) + a 24 h sinusoid (1.5-3.5 degC) + slow
  random wander (20 min and 1 min knots, ~0.6 degC) + white noise (~0.05 degC). `overheat`: rises
  by 30 x severity degC over min(20% of the duration, 300 s), easing in, then holds until the end.
  `sensor_stuck`: every field frozen at its value at the first sample of the fault (other faults
  included). `spike`: single-sample spikes of 8-20 degC x severity (3 in 4 upwards), about one
  every 15-30 s.
- vitals, `heart_rate` in bpm and `spo2` in %: `rest_hr` (60-80) + wander (5 min and 30 s knots) +
  respiratory sinus arrhythmia (1-3 bpm at 0.2-0.3 Hz) + noise; `spo2_base` (96.5-98.5) + wander +
  noise, clipped to [0, 100] (heart rate to >= 0). Episodes ramp in over min(60 s, 20%) (30 s for
  desaturation) and out over min(30 s, 10%) of the duration, both inside the interval.
  `tachycardia`: heart rate towards rest + (135 - rest) x severity; `bradycardia`: towards rest +
  (40 - rest) x severity; `desaturation`: SpO2 towards base - (base - 85) x severity, heart rate
  +6 x severity. `artifact` (motion): in 2 s slots, 30% x severity read 0 / 0 (dropout) and
  15% x severity erratic values (30-220 bpm, 50-100 %).

How randomness is made: every noise source is a *stream* of independent draws indexed by a global
counter (a sample, a spline knot, a bearing impact, a 2 s slot). Draws come in blocks of `BLOCK`;
block `b` of stream `s` comes from `np.random.Philox` keyed on a hash of (seed, signal, key) with
counter `(0, 0, b, s)`, so any draw is reachable without making the ones before it. Slow random
wander is a Catmull-Rom spline through such knots; everything else is closed-form in `t`. Nothing
is rounded: the node may round.

Faults act exactly on the samples with `start <= t < start + duration`; nothing leaks outside, and
adding a fault changes no sample outside its interval. The `fault` output names the active kind, or
`""`; where faults overlap, the kinds are joined with `+` in the order the faults were given.
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

__all__ = ["BLOCK", "SIGNALS", "Fault", "Generator", "SignalSpec"]

FloatArray = npt.NDArray[np.float64]
"""One float64 value per sample."""

ObjectArray = npt.NDArray[np.object_]
"""One Python object (here a str) per sample."""


@dataclass(frozen=True)
class SignalSpec:
    """What a signal produces: its output fields in order, its fault kinds and its usual rate."""

    name: str
    fields: tuple[str, ...]
    fault_kinds: tuple[str, ...]
    default_rate_hz: float
    description: str


SIGNALS: Mapping[str, SignalSpec] = MappingProxyType(
    {
        "vibration": SignalSpec(
            name="vibration",
            fields=("accel",),
            fault_kinds=("imbalance", "bearing", "looseness"),
            default_rate_hz=1000.0,
            description="Pump/motor accelerometer in g: ~25 Hz shaft tone, harmonics and noise.",
        ),
        "temperature": SignalSpec(
            name="temperature",
            fields=("temperature",),
            fault_kinds=("overheat", "sensor_stuck", "spike"),
            default_rate_hz=1.0,
            description="Machine temperature in degC: 40-60 baseline, daily drift, small noise.",
        ),
        "vitals": SignalSpec(
            name="vitals",
            fields=("heart_rate", "spo2"),
            fault_kinds=("tachycardia", "bradycardia", "desaturation", "artifact"),
            default_rate_hz=1.0,
            description="Patient heart rate in bpm and SpO2 in % with episodes.",
        ),
    }
)
"""The known signals by name."""


@dataclass(frozen=True)
class Fault:
    """A fault (or episode) injected into a stream over `start <= t < start + duration` seconds."""

    kind: str
    """One of the signal's `fault_kinds`; checked by `Generator`."""
    start: float
    """Seconds from the stream start (event-time offset), >= 0."""
    duration: float
    """Seconds, >= 0; `math.inf` for a fault that never ends."""
    severity: float = 1.0
    """Scales the effect: 1 is a clear fault, 0 none, up to ~3 extreme."""
    key: str | None = None
    """The only key the fault applies to; None for every key."""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise ValueError(f"fault kind must be a non-empty string, got {self.kind!r}")
        if not (math.isfinite(self.start) and self.start >= 0):
            raise ValueError(
                f"fault {self.kind!r}: start must be >= 0 and finite, got {self.start}"
            )
        if math.isnan(self.duration) or self.duration < 0:
            raise ValueError(
                f"fault {self.kind!r}: duration must be >= 0 (inf allowed), got {self.duration}"
            )
        if not (math.isfinite(self.severity) and self.severity >= 0):
            raise ValueError(
                f"fault {self.kind!r}: severity must be finite and >= 0, got {self.severity}"
            )
        if self.key is not None and not isinstance(self.key, str):
            raise ValueError(f"fault {self.kind!r}: key must be a string or None, got {self.key!r}")

    @property
    def end(self) -> float:
        """`start + duration`: the first instant no longer in the fault."""
        return self.start + self.duration


BLOCK: Final = 4096
"""Draws per counter block of a random stream."""

_CACHE_BLOCKS: Final = 32
"""Random blocks a generator keeps, so that small sequential calls do not redraw a block."""

_ANTI_ALIAS: Final = 0.45
"""Tones at or above this fraction of the sample rate are left out (the sensor's AA filter)."""

# Random streams: one independent counter-indexed sequence each.
_S_NOISE: Final = 0
_S_NOISE2: Final = 1
_S_WANDER: Final = 2
_S_WANDER2: Final = 3
_S_WANDER3: Final = 4
_S_EVENT_U: Final = 5
_S_EVENT_A: Final = 6
_S_EVENT_B: Final = 7


def _first_index_at_or_after(x: float, rate: float) -> int | None:
    """The least i >= 0 with `i / rate >= x`, exactly as float division; None if there is none."""
    scaled = x * rate
    if not math.isfinite(scaled) or scaled > 2.0**62:
        return None
    i = max(math.ceil(scaled), 0)
    while i > 0 and (i - 1) / rate >= x:
        i -= 1
    while i / rate < x:
        i += 1
    return i


def _smoothstep(x: FloatArray) -> FloatArray:
    """0 below 0, 1 above 1, a C1 S-curve in between."""
    c = np.clip(x, 0.0, 1.0)
    return c * c * (3.0 - 2.0 * c)


def _ramp(t: FloatArray, fault: Fault, rise: float, fall: float) -> FloatArray:
    """Fault envelope: smooth rise over `rise` s from start, smooth fall over `fall` s to end."""
    env = _smoothstep((t - fault.start) / rise) if rise > 0 else np.ones_like(t)
    if fall > 0 and math.isfinite(fault.end):
        env = env * _smoothstep((fault.end - t) / fall)
    return env


@dataclass(frozen=True)
class _Span:
    """A fault together with its sample-index interval [first, stop) (stop None: never ends)."""

    fault: Fault
    first: int
    stop: int | None


class Generator:
    """One key's synthetic stream of a signal; see the module docstring."""

    def __init__(
        self, signal: str, key: str, rate_hz: float, seed: int, faults: Sequence[Fault] = ()
    ) -> None:
        spec = SIGNALS.get(signal)
        if spec is None:
            raise ValueError(
                f"unknown signal {signal!r}; valid signals: {', '.join(sorted(SIGNALS))}"
            )
        if not isinstance(key, str):
            raise ValueError(f"key must be a string, got {key!r}")
        rate = float(rate_hz)
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate_hz must be finite and > 0, got {rate_hz!r}")
        seed = operator.index(seed)
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        for fault in faults:
            if not isinstance(fault, Fault):
                raise ValueError(f"faults must be Fault objects, got {fault!r}")
            if fault.kind not in spec.fault_kinds:
                raise ValueError(
                    f"fault kind {fault.kind!r} is not valid for signal {signal!r}; "
                    f"valid kinds: {', '.join(spec.fault_kinds)}"
                )
        self.spec: Final = spec
        self.signal: Final = signal
        self.key: Final = key
        self.rate_hz: Final = rate
        self.seed: Final = seed
        self.faults: Final[tuple[Fault, ...]] = tuple(
            f for f in faults if f.key is None or f.key == key
        )
        """The faults that apply to this key, in the order given."""
        spans = []
        for fault in self.faults:
            first = _first_index_at_or_after(fault.start, rate)
            if first is None:
                continue  # starts after any index this stream can reach
            spans.append(_Span(fault, first, _first_index_at_or_after(fault.end, rate)))
        self._spans: tuple[_Span, ...] = tuple(spans)

        # A stable 128-bit hash of (signal, key): unlike hash() it survives restarts, and unlike
        # crc32 two of many thousands of keys will not share a stream.
        digest = hashlib.blake2b(f"{signal}\0{key}".encode(), digest_size=16).digest()
        words = [seed, int.from_bytes(digest, "little")]
        self._philox_key = np.random.SeedSequence([*words, 0]).generate_state(2, np.uint64)
        self._blocks: OrderedDict[tuple[int, int, bool], FloatArray] = OrderedDict()
        self._stuck: dict[int, dict[str, float]] = {}
        rng = np.random.default_rng(np.random.SeedSequence([*words, 1]))
        draw = {
            "vibration": self._vibration_params,
            "temperature": self._temperature_params,
            "vitals": self._vitals_params,
        }[signal]
        self._p: dict[str, float] = draw(rng)
        self.params: Final[Mapping[str, float]] = MappingProxyType(self._p)
        """This key's fixed parameters (shaft_hz, baseline_c, rest_hr, ...), for inspection."""

    def __repr__(self) -> str:
        return (
            f"Generator({self.signal!r}, key={self.key!r}, rate_hz={self.rate_hz}, "
            f"seed={self.seed}, faults={len(self.faults)})"
        )

    # ------------------------------------------------------------------ public

    def generate(self, start_index: int, n: int) -> dict[str, npt.NDArray[Any]]:
        """Samples start_index .. start_index+n-1 (sample i is at t = i / rate_hz s).

        Returns one float64 array per field of the spec, plus "t" (float64 seconds from the stream
        start) and "fault" (object array of the active fault kind, "" when none). The result does
        not depend on how a range is split into calls.
        """
        start_index = operator.index(start_index)
        n = operator.index(n)
        if start_index < 0:
            raise ValueError(f"start_index must be >= 0, got {start_index}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return self._render(start_index, n, with_stuck=True)

    # ------------------------------------------------------------ randomness

    def _block(self, stream: int, block: int, uniform: bool) -> FloatArray:
        ck = (stream, block, uniform)
        hit = self._blocks.get(ck)
        if hit is not None:
            self._blocks.move_to_end(ck)
            return hit
        counter = np.array([0, 0, block, stream], dtype=np.uint64)
        rng = np.random.Generator(np.random.Philox(key=self._philox_key, counter=counter))
        arr = rng.random(BLOCK) if uniform else rng.standard_normal(BLOCK)
        arr.flags.writeable = False
        self._blocks[ck] = arr
        if len(self._blocks) > _CACHE_BLOCKS:
            self._blocks.popitem(last=False)
        return arr

    def _draws(self, stream: int, first: int, n: int, uniform: bool = False) -> FloatArray:
        """Draws `first .. first+n-1` of a stream: standard normal, or uniform on [0, 1)."""
        if n <= 0:
            return np.empty(0, dtype=np.float64)
        b0, b1 = first // BLOCK, (first + n - 1) // BLOCK
        off = first - b0 * BLOCK
        if b0 == b1:
            return self._block(stream, b0, uniform)[off : off + n]
        whole = np.concatenate([self._block(stream, b, uniform) for b in range(b0, b1 + 1)])
        return whole[off : off + n]

    def _wander(self, stream: int, t: FloatArray, period: float) -> FloatArray:
        """Smooth random wander (std ~0.8) through N(0, 1) knots every `period` s (Catmull-Rom)."""
        x = t / period
        j = np.floor(x)
        f = x - j
        k = j.astype(np.int64)
        lo = int(k[0])
        q = self._draws(stream, lo, int(k[-1]) - lo + 4)
        p0, p1, p2, p3 = q[:-3], q[1:-2], q[2:-1], q[3:]
        # Per-interval cubic coefficients, then one gather each (np.take: fancy indexing is slower).
        k -= lo
        c1 = np.take(0.5 * (p2 - p0), k)
        c2 = np.take(p0 - 2.5 * p1 + 2.0 * p2 - 0.5 * p3, k)
        c3 = np.take(1.5 * (p1 - p2) + 0.5 * (p3 - p0), k)
        out: FloatArray = np.take(p1, k) + f * (c1 + f * (c2 + f * c3))
        return out

    def _in_band(self, freq_hz: float) -> bool:
        return freq_hz < _ANTI_ALIAS * self.rate_hz

    # -------------------------------------------------------------- rendering

    def _active(self, i0: int, n: int) -> list[tuple[Fault, slice]]:
        """The faults touching samples i0 .. i0+n-1, with their slice into that chunk."""
        out = []
        for span in self._spans:
            lo = max(span.first, i0)
            hi = i0 + n if span.stop is None else min(span.stop, i0 + n)
            if lo < hi:
                out.append((span.fault, slice(lo - i0, hi - i0)))
        return out

    def _render(self, i0: int, n: int, with_stuck: bool) -> dict[str, npt.NDArray[Any]]:
        t = np.arange(i0, i0 + n, dtype=np.int64) / self.rate_hz
        active = self._active(i0, n)
        if n == 0:
            values: dict[str, FloatArray] = {f: np.empty(0) for f in self.spec.fields}
        elif self.signal == "vibration":
            values = self._vibration(i0, t, active)
        elif self.signal == "temperature":
            values = self._temperature(i0, t, active)
        else:
            values = self._vitals(i0, t, active)
        if with_stuck:
            for fault, sl in active:
                if fault.kind == "sensor_stuck":
                    frozen = self._stuck_value(fault)
                    for name in self.spec.fields:
                        values[name][sl] = frozen[name]
        out: dict[str, npt.NDArray[Any]] = dict(values)
        out["t"] = t
        out["fault"] = self._labels(n, active)
        return out

    def _stuck_value(self, fault: Fault) -> dict[str, float]:
        """The fields at the first sample of a stuck fault, before any stuck fault applies."""
        ident = id(fault)
        if ident not in self._stuck:
            first = next(s.first for s in self._spans if s.fault is fault)
            sample = self._render(first, 1, with_stuck=False)
            self._stuck[ident] = {name: float(sample[name][0]) for name in self.spec.fields}
        return self._stuck[ident]

    @staticmethod
    def _labels(n: int, active: list[tuple[Fault, slice]]) -> ObjectArray:
        labels: ObjectArray = np.empty(n, dtype=object)
        labels.fill("")
        for fault, sl in active:
            part = labels[sl]
            empty = part == ""
            if empty.all():
                part[:] = fault.kind
                continue
            for old in set(part[~empty].tolist()):
                if fault.kind not in str(old).split("+"):
                    part[part == old] = f"{old}+{fault.kind}"
            part[empty] = fault.kind
        return labels

    # ------------------------------------------------------------- vibration

    @staticmethod
    def _vibration_params(rng: np.random.Generator) -> dict[str, float]:
        return {
            "shaft_hz": 25.0 * (1.0 + rng.uniform(-0.1, 0.1)),
            "amp_1x": rng.uniform(0.04, 0.06),  # g peak
            "amp_2x": rng.uniform(0.015, 0.025),
            "amp_3x": rng.uniform(0.006, 0.012),
            "phase_2x": rng.uniform(0.0, 2.0 * math.pi),
            "phase_3x": rng.uniform(0.0, 2.0 * math.pi),
            "noise_g": rng.uniform(0.006, 0.010),  # broadband, std
            "wander_depth": rng.uniform(0.05, 0.10),  # relative amplitude wander
            "wander_s": rng.uniform(1.0, 3.0),
            "speed_depth": rng.uniform(0.001, 0.002),  # relative shaft-speed modulation
            "speed_period_s": rng.uniform(5.0, 15.0),
            "speed_phase": rng.uniform(0.0, 2.0 * math.pi),
            "bearing_ratio": rng.uniform(3.5, 3.7),  # defect frequency / shaft frequency
            "resonance_hz": rng.uniform(280.0, 380.0),
            "ring_cycles": rng.uniform(0.5, 0.7),  # resonance cycles per decay time constant
            "impact_g": rng.uniform(0.35, 0.45),  # impact peak at severity 1
        }

    def _vibration(
        self, i0: int, t: FloatArray, active: list[tuple[Fault, slice]]
    ) -> dict[str, FloatArray]:
        p = self._p
        f0 = p["shaft_hz"]
        w_mod = 2.0 * math.pi / p["speed_period_s"]
        # Shaft angle in cycles; the speed is f0 * (1 + depth * cos(w_mod t + phase)).
        cycles = f0 * (t + p["speed_depth"] / w_mod * np.sin(w_mod * t + p["speed_phase"]))
        cycles -= 2.0 * np.floor(0.5 * cycles)  # mod 2 revolutions: keeps 0.5x continuous
        theta = (2.0 * math.pi) * cycles
        amp = 1.0 + p["wander_depth"] * self._wander(_S_WANDER, t, p["wander_s"])
        sin1, cos1 = np.sin(theta), np.cos(theta)
        tone = p["amp_1x"] * sin1
        if self._in_band(2.0 * f0):  # 2x and 3x from sin and cos of 1x: no more trig
            sin2, cos2 = 2.0 * sin1 * cos1, 1.0 - 2.0 * sin1 * sin1
            a, ph = p["amp_2x"], p["phase_2x"]
            tone += (a * math.cos(ph)) * sin2 + (a * math.sin(ph)) * cos2
        if self._in_band(3.0 * f0):
            sin3, cos3 = sin1 * (3.0 - 4.0 * sin1 * sin1), cos1 * (4.0 * cos1 * cos1 - 3.0)
            a, ph = p["amp_3x"], p["phase_3x"]
            tone += (a * math.cos(ph)) * sin3 + (a * math.sin(ph)) * cos3
        accel = amp * tone + p["noise_g"] * self._draws(_S_NOISE, i0, len(t))

        for fault, sl in active:
            s = fault.severity
            ts, th, c1 = t[sl], theta[sl], cos1[sl]
            if fault.kind == "imbalance":
                # The once-per-revolution force grows: 1x up to 4x its normal size at severity 1.
                accel[sl] += 3.0 * s * p["amp_1x"] * amp[sl] * sin1[sl]
            elif fault.kind == "bearing":
                accel[sl] += s * self._bearing_impacts(i0 + sl.start, len(ts))
            elif fault.kind == "looseness":
                accel[sl] += s * self._looseness(th, c1, i0 + sl.start)
        return {"accel": accel}

    def _bearing_impacts(self, first: int, n: int) -> FloatArray:
        """Outer-race defect on samples first .. first+n-1: an impact every 1/(ratio * f0) s
        (with slip), each ringing the structure's resonance and decaying within a few ms."""
        p = self._p
        rate = self.rate_hz
        period = 1.0 / (p["bearing_ratio"] * p["shaft_hz"])
        f_res = min(p["resonance_hz"], 0.4 * rate)
        decay = complex(-f_res / p["ring_cycles"], 2.0 * math.pi * f_res)  # ring = Im(e^(decay t))
        width = max(math.ceil(6.0 * p["ring_cycles"] / f_res * rate), 1)  # samples, to e^-6
        # Impacts k (slipping by at most 6% of a period) whose ring can reach the samples.
        k_lo = max(math.floor((first - width - 1) / rate / period) - 1, 0)
        k_hi = math.floor((first + n - 1) / rate / period) + 1
        count = k_hi - k_lo + 1
        k = np.arange(k_lo, k_hi + 1, dtype=np.int64)
        slip = np.minimum(np.maximum(0.02 * self._draws(_S_EVENT_U, k_lo, count), -0.06), 0.06)
        t_hit = (k + slip) * period
        size = np.maximum(1.0 + 0.2 * self._draws(_S_EVENT_A, k_lo, count), 0.3) * p["impact_g"]
        # Impact k rings on the `width` samples from the first at or after it: the value there is
        # Im(size e^(decay dt0) * e^(decay j / rate)), j = 0, 1, ... A sample sums the rings that
        # cover it in impact order (bincount), whatever the chunk: the split does not matter.
        first_hit = np.ceil(t_hit * rate).astype(np.int64)
        start = np.exp(decay * (first_hit / rate - t_hit)) * size
        steps = np.exp(decay * (np.arange(width) / rate))
        ring = (start[:, None] * steps).imag
        base = min(int(first_hit[0]), first)
        bins = (first_hit - base)[:, None] + np.arange(width)
        length = max(int(first_hit[-1]) + width, first + n) - base
        out = np.bincount(bins.ravel(), weights=ring.ravel(), minlength=length)
        return out[first - base : first - base + n].astype(np.float64, copy=False)

    def _looseness(self, theta: FloatArray, c1: FloatArray, first: int) -> FloatArray:
        """Mechanical looseness: phase-locked harmonics 1x..10x, sub-harmonics, more broadband."""
        p = self._p
        f0 = p["shaft_hz"]
        prev, cur = np.ones_like(theta), c1  # cos(k theta) by the Chebyshev recurrence
        out = np.zeros_like(theta)
        for k in range(1, 11):
            if self._in_band(k * f0):
                out += (0.045 / math.sqrt(k)) * cur
            prev, cur = cur, 2.0 * c1 * cur - prev
        for h, a in ((0.5, 0.025), (1.5, 0.02), (2.5, 0.015)):
            if self._in_band(h * f0):
                out += a * np.sin(h * theta + 1.0)
        return out + 1.5 * p["noise_g"] * self._draws(_S_NOISE2, first, len(c1))

    # ----------------------------------------------------------- temperature

    @staticmethod
    def _temperature_params(rng: np.random.Generator) -> dict[str, float]:
        return {
            "baseline_c": rng.uniform(40.0, 60.0),
            "daily_amp_c": rng.uniform(1.5, 3.5),
            "daily_phase": rng.uniform(0.0, 2.0 * math.pi),
            "slow_c": rng.uniform(0.4, 0.8),  # wander with knots every 20 min
            "fast_c": rng.uniform(0.1, 0.2),  # wander with knots every minute
            "noise_c": rng.uniform(0.03, 0.08),
            "spike_every_s": rng.uniform(15.0, 30.0),
        }

    def _temperature(
        self, i0: int, t: FloatArray, active: list[tuple[Fault, slice]]
    ) -> dict[str, FloatArray]:
        p = self._p
        day = 2.0 * math.pi / 86400.0
        temp = (
            p["baseline_c"]
            + p["daily_amp_c"] * np.sin(day * t + p["daily_phase"])
            + p["slow_c"] * self._wander(_S_WANDER, t, 1200.0)
            + p["fast_c"] * self._wander(_S_WANDER2, t, 60.0)
            + p["noise_c"] * self._draws(_S_NOISE, i0, len(t))
        )
        for fault, sl in active:
            s = fault.severity
            if fault.kind == "overheat":
                ramp = min(0.2 * fault.duration, 300.0)
                x = (t[sl] - fault.start) / ramp if ramp > 0 else np.ones_like(t[sl])
                x = np.clip(x, 0.0, 1.0)
                temp[sl] += 30.0 * s * (1.0 - (1.0 - x) ** 2)  # eases into the hold
            elif fault.kind == "spike":
                # Single-sample spikes (interference), about one per `spike_every_s` seconds.
                first, m = i0 + (sl.start or 0), len(t[sl])
                chance = min(0.5, 1.0 / (p["spike_every_s"] * self.rate_hz))
                hit = self._draws(_S_EVENT_U, first, m, uniform=True) < chance
                sign = np.where(self._draws(_S_EVENT_A, first, m, uniform=True) < 0.75, 1.0, -1.0)
                size = 8.0 + 12.0 * self._draws(_S_EVENT_B, first, m, uniform=True)
                temp[sl] += np.where(hit, s * sign * size, 0.0)
            # sensor_stuck is applied by _render, after every other fault.
        return {"temperature": temp}

    # ---------------------------------------------------------------- vitals

    @staticmethod
    def _vitals_params(rng: np.random.Generator) -> dict[str, float]:
        return {
            "rest_hr": rng.uniform(60.0, 80.0),
            "hr_slow_bpm": rng.uniform(2.5, 4.5),  # wander, knots every 5 min
            "hr_fast_bpm": rng.uniform(1.0, 2.5),  # wander, knots every 30 s
            "breath_hz": rng.uniform(0.2, 0.3),
            "rsa_bpm": rng.uniform(1.0, 3.0),  # respiratory sinus arrhythmia
            "breath_phase": rng.uniform(0.0, 2.0 * math.pi),
            "hr_noise_bpm": rng.uniform(0.4, 0.8),
            "spo2_base": rng.uniform(96.5, 98.5),
            "spo2_wander": rng.uniform(0.25, 0.45),  # knots every 2 min
            "spo2_noise": rng.uniform(0.15, 0.3),
        }

    def _vitals(
        self, i0: int, t: FloatArray, active: list[tuple[Fault, slice]]
    ) -> dict[str, FloatArray]:
        p = self._p
        n = len(t)
        hr = (
            p["rest_hr"]
            + p["hr_slow_bpm"] * self._wander(_S_WANDER, t, 300.0)
            + p["hr_fast_bpm"] * self._wander(_S_WANDER2, t, 30.0)
            + p["hr_noise_bpm"] * self._draws(_S_NOISE, i0, n)
        )
        if self._in_band(p["breath_hz"]):
            hr += p["rsa_bpm"] * np.sin(2.0 * math.pi * p["breath_hz"] * t + p["breath_phase"])
        spo2 = (
            p["spo2_base"]
            + p["spo2_wander"] * self._wander(_S_WANDER3, t, 120.0)
            + p["spo2_noise"] * self._draws(_S_NOISE2, i0, n)
        )
        artifacts = []
        for fault, sl in active:
            s, d = fault.severity, fault.duration
            if fault.kind == "tachycardia":
                env = _ramp(t[sl], fault, min(60.0, 0.2 * d), min(30.0, 0.1 * d))
                hr[sl] += env * s * (135.0 - p["rest_hr"])
            elif fault.kind == "bradycardia":
                env = _ramp(t[sl], fault, min(60.0, 0.2 * d), min(30.0, 0.1 * d))
                hr[sl] += env * s * (40.0 - p["rest_hr"])
            elif fault.kind == "desaturation":
                env = _ramp(t[sl], fault, min(30.0, 0.2 * d), min(30.0, 0.1 * d))
                spo2[sl] += env * s * (85.0 - p["spo2_base"])
                hr[sl] += env * s * 6.0  # the heart compensates a little
            else:
                artifacts.append((fault, sl))
        np.maximum(hr, 0.0, out=hr)
        np.clip(spo2, 0.0, 100.0, out=spo2)
        for fault, sl in artifacts:
            # Motion artifact: in 2 s slots, dropouts (both 0) or erratic readings, else normal.
            s, ts = fault.severity, t[sl]
            first = i0 + (sl.start or 0)
            slot = np.floor(ts / 2.0).astype(np.int64)
            lo = int(slot[0])
            u = self._draws(_S_EVENT_U, lo, int(slot[-1]) - lo + 1, uniform=True)[slot - lo]
            p_drop = min(0.9, 0.3 * s)
            p_odd = min(1.0 - p_drop, 0.15 * s)
            drop, odd = u < p_drop, (u >= p_drop) & (u < p_drop + p_odd)
            odd_hr = 30.0 + 190.0 * self._draws(_S_EVENT_A, first, len(ts), uniform=True)
            odd_spo2 = 50.0 + 50.0 * self._draws(_S_EVENT_B, first, len(ts), uniform=True)
            hr[sl] = np.where(drop, 0.0, np.where(odd, odd_hr, hr[sl]))
            spo2[sl] = np.where(drop, 0.0, np.where(odd, odd_spo2, spo2[sl]))
        return {"heart_rate": hr, "spo2": spo2}
