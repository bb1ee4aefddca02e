"""Read-time checks of physiology channels: units, physical ranges, flat lines, saturation.

`check_channel` looks at one channel as recorded (its own rate, the unit the file gives)
and returns the values in the role's standard unit plus the bad segments it found;
`mask_segments` turns segments into NaN on any sampling grid. `read_biopac` runs both, so
implausible samples never reach a feature: they are NaN in `PhysioRecording.signals`
and listed in `PhysioRecording.bad_segments` (the file itself is never modified).

What counts as bad (masked):

- non-finite samples (NaN, inf) and absurd magnitudes (beyond `ABSURD_MAGNITUDE` in any
  unit, e.g. the 1e306 of a corrupt AcqKnowledge 3.8 tail);
- samples outside the role's physical range, in its standard unit (`PHYSICAL_RANGES`:
  EDA 0.05-100 uS, ECG within +-10 mV, skin temperature 20-42 deg C) or, for channels
  recorded in volts, outside the MP160's +-10 V input range (`HARDWARE_LIMIT_V`);
- flat lines: the same value repeated for at least `FLAT_LINE_S[role]` seconds (a lead
  off, an amplifier stuck);
- a garbage tail: bad runs closer than `MERGE_GAP_S` are one segment, a segment that
  reaches within `MERGE_GAP_S` of the end runs to the end, and such a tail in one channel
  is masked in every channel (the last block of the file is corrupt, not one signal).

Saturation (the channel pinned at its own extreme value in repeated runs of at least
`SATURATION_MIN_S`, clipped pulse peaks) is reported but not masked: the beats are
still there, and masking every peak would destroy them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

PHYSICAL_RANGES: dict[str, tuple[float, float, str]] = {
    "ECG": (-10.0, 10.0, "mV"),
    "EDA": (0.05, 100.0, "uS"),
    "SKT": (20.0, 42.0, "degC"),
}
"""(low, high, standard unit) per raw role. ECG: the ECG100C's +-10 mV input range at
gain 1000; EDA: skin conductance is positive, 0.05-100 uS spans dry to sweaty skin
(Boucsein 2012, "Electrodermal Activity"; below 0.05 uS the electrode is off); skin
temperature: 20-42 deg C covers a cold finger to fever."""
HARDWARE_LIMIT_V = 10.0
"""BIOPAC MP160 analog inputs span +-10 V: a channel recorded in volts cannot exceed it."""
ABSURD_MAGNITUDE = 1e6
"""No physiological channel in any BIOPAC unit reaches a million: corrupt samples."""
FLAT_LINE_S: dict[str, float] = {"ECG": 1.0, "PPG": 1.0, "EMG": 1.0, "RSP": 10.0, "EDA": 30.0}
"""Shortest run of identical samples called a flat line, per raw role. A beating heart
or a live EMG never repeats a 16-bit sample for 1 s; a held breath may for seconds, a
still tonic skin conductance for tens of seconds; skin temperature legitimately sits on
one ADC step for minutes (not checked)."""
SATURATION_MIN_S = 0.01
MERGE_GAP_S = 1.0
TAIL_MAX_S = 5.0
"""Longest bad end of one channel that is masked in every channel (a corrupt last block)."""

_EDA_UNITS = {
    "us": 1.0,
    "microsiemens": 1.0,
    "microsiemen": 1.0,
    "usiemens": 1.0,
    "usiemen": 1.0,
    "umho": 1.0,
    "umhos": 1.0,
    "micromho": 1.0,
    "micromhos": 1.0,
    "s": 1e6,
    "siemens": 1e6,
    "ns": 1e-3,
    "nanosiemens": 1e-3,
}
_VOLT_UNITS = {
    "v": 1.0,
    "volt": 1.0,
    "volts": 1.0,
    "mv": 1e-3,
    "millivolt": 1e-3,
    "millivolts": 1e-3,
    "uv": 1e-6,
    "microvolt": 1e-6,
    "microvolts": 1e-6,
}
_CELSIUS = {"degc", "c", "celsius", "degreesc", "degreec", "degreescelsius", "centigrade"}
_FAHRENHEIT = {"degf", "f", "fahrenheit", "degreesf", "degreef", "degreesfahrenheit"}
BAD_SEGMENT_COLUMNS = ("channel", "start_s", "stop_s", "n_samples", "reason", "masked")


@dataclass(frozen=True)
class BadSegment:
    """``[start_s, stop_s)`` of one channel (seconds from the file's first sample)."""

    channel: str
    start_s: float
    stop_s: float
    n_samples: int
    reason: str
    masked: bool = True


def _normal_unit(unit: str) -> str:
    text = unit.strip().lower().replace("µ", "u").replace("μ", "u").replace("°", "deg")
    return "".join(ch for ch in text if ch.isalnum())


def standard_unit(role: str | None, unit: str) -> tuple[float, float, str, str]:
    """(scale, offset, standard unit, note): ``standard = scale * value + offset``.

    Only roles with a physical range are converted (ECG to mV, EDA to uS, SKT to deg C);
    other channels keep their unit (scale 1); an unknown unit gives a note and no range.
    """
    if role not in PHYSICAL_RANGES:
        return 1.0, 0.0, unit, ""
    target = PHYSICAL_RANGES[role][2]
    key = _normal_unit(unit)
    if not key:
        return 1.0, 0.0, unit, f"no unit in the file: {role} range ({target}) not checked"
    if role == "EDA" and key in _EDA_UNITS:
        return _EDA_UNITS[key], 0.0, "uS", ""
    if role == "ECG" and key in _VOLT_UNITS:
        return _VOLT_UNITS[key] * 1e3, 0.0, "mV", ""
    if role == "SKT" and key in _CELSIUS:
        return 1.0, 0.0, "degC", ""
    if role == "SKT" and key in _FAHRENHEIT:
        return 5.0 / 9.0, -32.0 * 5.0 / 9.0, "degC", ""
    return 1.0, 0.0, unit, f"unit {unit!r} not understood for {role}: range ({target}) not checked"


def _runs(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, stops) of the runs of True in a boolean array."""
    padded = np.concatenate(([False], flags, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return edges[0::2], edges[1::2]


def _fill(n: int, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Boolean mask of length n, True on every [start, stop) span (vectorised)."""
    marks = np.zeros(n + 1, dtype=np.int64)
    np.add.at(marks, starts, 1)
    np.add.at(marks, stops, -1)
    return np.cumsum(marks[:-1]) > 0


def _equal_runs(x: np.ndarray, min_length: int) -> np.ndarray:
    """Mask of samples in runs of at least `min_length` identical values."""
    if x.size < min_length or min_length < 2:
        return np.zeros(x.size, dtype=bool)
    same = np.concatenate(([False], x[1:] == x[:-1]))  # sample equals its predecessor
    starts, stops = _runs(same)
    long = stops - starts + 1 >= min_length  # the run includes the sample before it
    return _fill(x.size, starts[long] - 1, stops[long])


def _merge(mask: np.ndarray, gap: int) -> np.ndarray:
    """Close gaps shorter than `gap` samples between bad runs; extend a run near the end."""
    starts, stops = _runs(mask)
    if starts.size == 0:
        return mask
    short = starts[1:] - stops[:-1] < gap
    bridged = _fill(mask.size, stops[:-1][short], starts[1:][short])
    out = mask | bridged
    if mask.size - stops[-1] < gap:
        out[stops[-1] :] = True
    return out


def check_channel(
    values: np.ndarray,
    sfreq: float,
    *,
    name: str,
    role: str | None,
    raw: bool,
    unit: str,
) -> tuple[np.ndarray, str, list[BadSegment], list[str]]:
    """Check one channel as recorded.

    values : shape (n,), the file's samples in `unit`; sfreq : the channel's own rate (Hz).
    role, raw : from `mmhe.io.channel_roles` (None for an unknown channel).
    Returns (values in the standard unit, that unit, bad segments, notes). The values are
    not masked here: `mask_segments` does that on whatever grid the caller uses.
    """
    x = np.asarray(values)
    if x.dtype != np.float64:
        x = x.astype(np.float64)
    notes: list[str] = []
    reasons: list[tuple[np.ndarray, str]] = []
    magnitude = np.abs(x)  # inf stays inf, NaN stays NaN (its comparisons are False)
    absurd = (magnitude > ABSURD_MAGNITUDE) | np.isnan(x)
    reasons.append((absurd, f"non-finite or beyond +-{ABSURD_MAGNITUDE:g}"))
    scale, offset, out_unit, note = standard_unit(role if raw else None, unit)
    if (scale, offset) == (1.0, 0.0):
        converted = x
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            converted = np.where(absurd, x, x * scale + offset)
    if note:
        notes.append(f"{name}: {note}")
    if raw and role in PHYSICAL_RANGES and out_unit == PHYSICAL_RANGES[role][2]:
        low, high, std = PHYSICAL_RANGES[role]
        reasons.append(((converted < low) | (converted > high), f"outside {low:g}-{high:g} {std}"))
    volts = _VOLT_UNITS.get(_normal_unit(unit))
    if volts is not None:
        limit = HARDWARE_LIMIT_V / volts
        reasons.append((magnitude > limit, f"beyond the +-{HARDWARE_LIMIT_V:g} V input range"))
    if raw and role in FLAT_LINE_S:
        length = max(2, math.ceil(FLAT_LINE_S[role] * sfreq))
        reasons.append((_equal_runs(x, length), f"flat line (>= {FLAT_LINE_S[role]:g} s)"))

    segments: list[BadSegment] = []
    bad = np.zeros(x.size, dtype=bool)
    for mask, _ in reasons:
        bad |= mask
    bad = _merge(bad, max(1, round(MERGE_GAP_S * sfreq)))
    starts, stops = _runs(bad)
    for start, stop in zip(starts, stops, strict=True):
        why = [reason for mask, reason in reasons if mask[start:stop].any()]
        segments.append(
            BadSegment(name, start / sfreq, stop / sfreq, int(stop - start), "; ".join(why))
        )
    if raw and role is not None and x.size:
        segments += _saturation(np.where(bad, np.nan, x) if segments else x, sfreq, name)
    return converted, out_unit, segments, notes


def _saturation(x: np.ndarray, sfreq: float, name: str) -> list[BadSegment]:
    """Repeated runs pinned at the channel's own extreme (clipping): reported, not masked."""
    if np.isnan(x[0]) and np.isnan(x).all():  # every sample masked
        return []
    low, high = np.nanmin(x), np.nanmax(x)
    length = max(3, math.ceil(SATURATION_MIN_S * sfreq))
    out = []
    for extreme, label in ((high, "maximum"), (low, "minimum")):
        starts, stops = _runs(x == extreme)
        long = (stops - starts) >= length
        if np.count_nonzero(long) >= 2:
            n = int(np.sum(stops[long] - starts[long]))
            out.append(
                BadSegment(
                    name,
                    starts[long][0] / sfreq,
                    stops[long][-1] / sfreq,
                    n,
                    f"saturated: {np.count_nonzero(long)} runs ({n} samples) at its "
                    f"{label} {extreme:g}",
                    masked=False,
                )
            )
    return out


def garbage_tail(segments: list[BadSegment], durations_s: Mapping[str, float]) -> float | None:
    """Start (s) of a garbage tail: a masked segment of at most `TAIL_MAX_S` that runs to
    the end of its channel (`durations_s` = {channel: seconds}), the earliest over channels.
    A channel bad from its first sample, or for longer, is a channel problem, not a tail."""
    starts = [
        s.start_s
        for s in segments
        if s.masked
        and s.start_s > 0.0
        and s.stop_s >= durations_s[s.channel] - 1e-9
        and s.stop_s - s.start_s <= TAIL_MAX_S
    ]
    return min(starts) if starts else None


def mask_segments(
    signal: np.ndarray, sfreq: float, segments: list[BadSegment], tail_s: float | None = None
) -> np.ndarray:
    """`signal` (on `sfreq` Hz, time 0 at the first sample) with the masked segments NaN.

    Returns the signal itself when nothing is masked, else a float64 copy.
    """
    spans = [(s.start_s, s.stop_s) for s in segments if s.masked]
    if tail_s is not None:
        spans.append((tail_s, math.inf))
    if not spans:
        return signal
    out = np.array(signal, dtype=np.float64, copy=True)
    n = out.size
    for start_s, stop_s in spans:
        start = max(0, math.floor(start_s * sfreq))
        stop = n if math.isinf(stop_s) else min(n, math.ceil(stop_s * sfreq))
        out[start:stop] = np.nan
    return out


def hold_bad(values: np.ndarray, segments: list[BadSegment], sfreq: float) -> np.ndarray:
    """Masked samples replaced by the last good value before them (for resampling only)."""
    spans = [(s.start_s, s.stop_s) for s in segments if s.masked]
    if not spans:
        return values
    x = np.array(values, dtype=np.float64, copy=True)
    good = np.ones(x.size, dtype=bool)
    for start_s, stop_s in spans:
        good[round(start_s * sfreq) : round(stop_s * sfreq)] = False
    if not good.any():
        return np.zeros_like(x)
    index = np.where(good, np.arange(x.size), 0)
    np.maximum.accumulate(index, out=index)
    first = int(np.argmax(good))
    index[: first + 1] = np.where(good[: first + 1], index[: first + 1], first)
    return x[index]


def segments_frame(segments: list[BadSegment]) -> pd.DataFrame:
    """Bad segments as a table with `BAD_SEGMENT_COLUMNS`."""
    rows: list[Mapping[str, object]] = [s.__dict__ for s in segments]
    return pd.DataFrame(rows, columns=list(BAD_SEGMENT_COLUMNS)).astype(
        {"start_s": "float64", "stop_s": "float64", "n_samples": "int64", "masked": "bool"}
    )
