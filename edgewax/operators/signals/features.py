"""`signal.features`: summary features of each frame, computed for a whole batch at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from edgewax.events import Event
from edgewax.operators.base import FieldInfo, Fields, NodeOptions, Problem, Transform
from edgewax.operators.registry import register
from edgewax.operators.transforms.fields import _unknown_fields

Feature = Literal["rms", "peak", "crest", "kurtosis", "mean", "std", "bands"]
ALL: tuple[Feature, ...] = ("rms", "peak", "crest", "kurtosis", "mean", "std", "bands")


class FeaturesOptions(NodeOptions):
    field: str = Field("frame", description="Input field holding a 1-D sample array per event.")
    features: list[Feature] = Field(
        default_factory=lambda: list(ALL),
        min_length=1,
        description="Features to compute: `rms`, `peak` (max |x|), `crest` (peak / rms), "
        "`kurtosis` (Pearson: 3 for Gaussian noise, 1.5 for a sine), `mean`, `std` "
        "(population), `bands` (FFT band energies, needs `bands` and `rate_hz`).",
    )
    bands: list[tuple[float, float]] = Field(
        default_factory=list,
        description="Frequency bands [low, high) in Hz for `bands`, e.g. [[0, 50], [50, 200]]; "
        "each gives a field `band_<low>_<high>`: the band's share of the mean square (Parseval: "
        "all bands from 0 to rate_hz/2 add up to rms²).",
    )
    rate_hz: float | None = Field(None, gt=0, description="Sample rate of the frames, for bands.")
    prefix: str = Field("", description="Prefix for the output field names, e.g. `accel_`.")
    keep_input: bool = Field(
        False,
        description="Keep the input array; default: drop it, so the event carries only features "
        "(no raw samples).",
    )

    @model_validator(mode="after")
    def _bands_need_rate(self) -> FeaturesOptions:
        for i, (lo, hi) in enumerate(self.bands):
            if not 0 <= lo < hi:
                raise ValueError(f"bands[{i}]: need 0 <= low < high, got [{lo}, {hi}]")
        if "bands" in self.features and self.bands and self.rate_hz is None:
            raise ValueError("`bands` needs `rate_hz`, the frames' sample rate")
        return self


def band_name(lo: float, hi: float) -> str:
    """`band_50_200` for [50, 200); `band_0.5_2` for [0.5, 2)."""
    return f"band_{lo:g}_{hi:g}"


def frame_features(
    x: npt.NDArray[np.float64],
    features: tuple[str, ...] = ALL,
    bands: list[tuple[float, float]] | None = None,
    rate_hz: float | None = None,
) -> dict[str, npt.NDArray[np.float64]]:
    """Features of each row of `x` (frames x samples), one array of values per feature.

    >>> out = frame_features(np.array([[1.0, -1.0, 1.0, -1.0]]), bands=[(0, 1), (1, 3)], rate_hz=4)
    >>> {k: v.tolist() for k, v in out.items()}  # doctest: +NORMALIZE_WHITESPACE
    {'rms': [1.0], 'peak': [1.0], 'crest': [1.0], 'mean': [0.0], 'kurtosis': [1.0], 'std': [1.0],
     'band_0_1': [0.0], 'band_1_3': [1.0]}
    """
    out: dict[str, npt.NDArray[np.float64]] = {}
    n = x.shape[1]
    ms = np.einsum("ij,ij->i", x, x) / n
    rms = np.sqrt(ms)
    peak = np.abs(x).max(axis=1) if n else np.zeros(len(x))
    if "rms" in features:
        out["rms"] = rms
    if "peak" in features:
        out["peak"] = peak
    if "crest" in features:
        with np.errstate(divide="ignore", invalid="ignore"):
            out["crest"] = np.where(rms > 0, peak / np.where(rms > 0, rms, 1.0), 0.0)
    mean = x.mean(axis=1)
    if "mean" in features:
        out["mean"] = mean
    if "kurtosis" in features or "std" in features:
        d = x - mean[:, None]
        d2 = d * d
        var = d2.mean(axis=1)
        if "kurtosis" in features:
            m4 = (d2 * d2).mean(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                out["kurtosis"] = np.where(var > 0, m4 / np.where(var > 0, var * var, 1.0), 0.0)
        if "std" in features:
            out["std"] = np.sqrt(var)
    if "bands" in features and bands:
        assert rate_hz is not None
        spec = np.fft.rfft(x, axis=1)
        power = spec.real**2 + spec.imag**2
        # One-sided spectrum: every bin but DC (and Nyquist for even n) stands for two.
        weight = np.full(power.shape[1], 2.0)
        weight[0] = 1.0
        if n % 2 == 0:
            weight[-1] = 1.0
        power *= weight / (n * n)
        freqs = np.fft.rfftfreq(n, 1.0 / rate_hz)
        for lo, hi in bands:
            sel = (freqs >= lo) & (freqs < hi)
            out[band_name(lo, hi)] = power[:, sel].sum(axis=1)
    return out


@register
class SignalFeatures(Transform):
    """Summary features of sample frames: RMS, peak, crest factor, kurtosis, band energies, ...

    The frames of a batch are stacked and computed together (one numpy pass per feature).

    >>> from edgewax.testing import run_node
    >>> out = run_node("signal.features", {"features": ["rms", "peak"]},
    ...                [{"frame": np.array([3.0, -4.0])}])
    >>> out
    [{'ts': 0.0, 'key': 'k', 'rms': 3.5355..., 'peak': 4.0}]
    """

    type_name = "signal.features"
    Options: ClassVar[type[NodeOptions]] = FeaturesOptions

    def __init__(self, options: FeaturesOptions, ctx: Any) -> None:
        super().__init__(options, ctx)
        self.features = tuple(options.features)
        self.names = _names(options)

    @classmethod
    def fields_out(cls, options: Any, fields_in: Fields, base_dir: Path) -> Fields:
        if fields_in is None:
            return None
        out = dict(fields_in)
        if not options.keep_input:
            out.pop(options.field, None)
        for name in _names(options).values():
            out[name] = FieldInfo("float64")
        return out

    @classmethod
    def check(cls, options: Any, fields_in: Fields, base_dir: Path) -> list[Problem]:
        return _unknown_fields([(("field",), options.field)], fields_in, "unknown field")

    def process(self, batch: list[Event]) -> list[Event]:
        o: FeaturesOptions = self.options
        name = o.field
        arrays = [np.asarray(e[name], dtype=np.float64) for e in batch]
        # Frames of one length stack into one matrix; mixed lengths go group by group.
        groups: dict[int, list[int]] = {}
        for i, a in enumerate(arrays):
            if a.ndim != 1 or a.size == 0:
                raise ValueError(f"field `{name}` must be a non-empty 1-D array")
            groups.setdefault(a.size, []).append(i)
        columns: dict[str, list[float]] = {k: [0.0] * len(batch) for k in self.names}
        for idx in groups.values():
            x = np.stack([arrays[i] for i in idx])
            values = frame_features(x, self.features, o.bands, o.rate_hz)
            for feat, col in values.items():
                target = columns[feat]
                for i, v in zip(idx, col.tolist()):
                    target[i] = v
        out = []
        renamed = [(self.names[k], columns[k]) for k in self.names]
        for i, e in enumerate(batch):
            ev = dict(e) if not o.keep_input else (dict(e) if self.ctx.shared_input else e)
            if not o.keep_input:
                ev.pop(name, None)
            for field_name, column in renamed:
                ev[field_name] = column[i]
            out.append(ev)
        return out


def _names(o: FeaturesOptions) -> dict[str, str]:
    """Feature key -> output field name, in output order."""
    names = {}
    for f in ALL:
        if f not in o.features:
            continue
        if f == "bands":
            for lo, hi in o.bands:
                names[band_name(lo, hi)] = o.prefix + band_name(lo, hi)
        else:
            names[f] = o.prefix + f
    return names
