"""BIOPAC MP160 physiology of MMHE: read `.acq` and AcqKnowledge `.mat` exports.

A recording is PPG, respiration, two EMG, two skin temperatures, EDA, ECG and the
ECG-rate computed channel, plus eight digital STP input lines that carry the 8-bit
stimulus marker (bit k = `Digital (STP Input k)`). `read_biopac` returns the analog
channels under canonical names on one sampling rate, and the markers decoded from the
digital lines. Native `.acq` files are read with bioread; `.mat` exports with SciPy
(MATLAB v5) or h5py (MATLAB v7.3, HDF5).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import bioread
import h5py
import numpy as np
import pandas as pd
import scipy.io

from mmhe.errors import InputFileError
from mmhe.io.channel_roles import RoleRule, assign_channels, load_role_table
from mmhe.io.physio_checks import (
    BadSegment,
    check_channel,
    garbage_tail,
    hold_bad,
    mask_segments,
    segments_frame,
)
from mmhe.labels import VALID_MARKERS

MMHE_EXPORT_COLUMNS: tuple[str, ...] = (
    "PPG, X, PPGED-R",
    "RSP, X, RSPEC-R",
    "EMG A, X, EMG2-R",
    "SKT A, X, SKT2-R",
    "EDA, X, PPGED-R",
    "ECG, X, RSPEC-R",
    "EMG B, X, EMG2-R",
    "SKT B, X, SKT2-R",
    *(f"Digital (STP Input {bit})" for bit in range(8)),
    "ECG rate (.5 - 35 Hz)",
)
"""The 17 column names of MMHE's AcqKnowledge MATLAB export, in order (data-format.md)."""

CANONICAL_COLUMNS: tuple[str, ...] = (
    "PPG",
    "RSP",
    "EMG_A",
    "SKT_A",
    "EDA",
    "ECG",
    "EMG_B",
    "SKT_B",
    "ECG_RATE",
)
"""Column names of the MMHE BIOPAC channels, in the export's order."""

MIN_STABLE_S = 0.005
"""Default time a trigger code must hold to count (5 ms): longer than bit skew."""

_DIGITAL_LINE = re.compile(r"^\s*digital\b.*?\binput\s*(\d+)\s*\)?\s*$", re.IGNORECASE)
_MAT_REQUIRED = ("data", "labels", "isi")
_MAT_OPTIONAL = ("units", "isi_units", "start_sample")
_ISI_SECONDS = {"s": 1.0, "sec": 1.0, "ms": 1e-3, "msec": 1e-3, "us": 1e-6, "µs": 1e-6}
_EVENT_COLUMNS = {"onset_s": "float64", "text": "object", "type": "object", "channel": "object"}


@dataclass
class PhysioRecording:
    """One BIOPAC recording on one sampling rate.

    sfreq : sampling rate of `signals` in Hz.
    signals : DataFrame, shape (n_samples, n_channels), one column per analog channel:
        canonical names (`CANONICAL_COLUMNS`) for recognised channels, the file's own
        name otherwise; values in the file's units (`units`). Digital lines are not here.
        From a MATLAB v5 export the columns are views into the loaded `data` array (no
        copy); v7.3 exports are read one channel at a time.
    units : {column: unit as written in the file}.
    markers : DataFrame `onset_s` (seconds from the file's first sample), `code`,
        decoded from the digital lines; attrs "glitches", "dropped_codes", and more
        (see `decode_trigger_lines`).
    events : AcqKnowledge's own event markers: `onset_s`, `text`, `type`, `channel`
        (column name, "" for global markers); empty for `.mat` exports.
    original_rates : {column: Hz as recorded} (multi-rate `.acq` files differ per channel).
    path : the file read.
    has_trigger_lines : whether the file has any `Digital (STP Input k)` line.
    channel_labels : {column: channel name as written in the file}.
    start_sample : index of the first exported sample in the acquisition (`.mat`).
    roles : {column: role} (ECG, PPG, RSP, EDA, SKT, EMG, EOG) from the channel-role table
        (`mmhe.io.channel_roles`); unknown channels are absent.
    chosen : {role: column} the channel each role uses (the raw one when several fit).
    unknown_channels : labels no rule recognised (kept under their own names).
    channel_notes : one sentence per choice or doubt (two candidates for a role, a unit
        not understood).
    file_units : {column: unit as written in the file}; `units` gives the unit of
        `signals` (ECG mV, EDA uS, SKT deg C once converted, see `mmhe.io.physio_checks`).
    bad_segments : one row per implausible stretch found at read time (`channel`,
        `start_s`, `stop_s`, `n_samples`, `reason`, `masked`); masked ones are NaN in
        `signals`.
    """

    sfreq: float
    signals: pd.DataFrame
    units: dict[str, str]
    markers: pd.DataFrame
    events: pd.DataFrame
    original_rates: dict[str, float]
    path: Path
    has_trigger_lines: bool
    channel_labels: dict[str, str] = field(default_factory=dict)
    start_sample: int = 0
    roles: dict[str, str] = field(default_factory=dict)
    chosen: dict[str, str] = field(default_factory=dict)
    unknown_channels: list[str] = field(default_factory=list)
    channel_notes: list[str] = field(default_factory=list)
    file_units: dict[str, str] = field(default_factory=dict)
    bad_segments: pd.DataFrame = field(default_factory=lambda: segments_frame([]))

    @property
    def n_samples(self) -> int:
        """Number of samples of `signals`."""
        return len(self.signals)

    @property
    def times(self) -> np.ndarray:
        """Sample times in seconds from the first sample, shape (n_samples,)."""
        return np.arange(self.n_samples) / self.sfreq


@dataclass(frozen=True)
class _Options:
    sfreq: float | None
    min_stable_samples: int | None
    valid: Collection[int]
    require_trigger_lines: bool
    roles: tuple[RoleRule, ...]


@dataclass
class _SourceChannel:
    """One channel of a file before naming and resampling; `load` returns its samples."""

    label: str
    unit: str
    rate: float
    n_samples: int
    load: Callable[[], np.ndarray]


# ------------------------------------------------------------------ public API


def read_biopac(
    path: str | Path,
    *,
    sfreq: float | None = None,
    min_stable_samples: int | None = None,
    valid: Collection[int] = VALID_MARKERS,
    require_trigger_lines: bool = False,
    roles: str | Path | None = None,
) -> PhysioRecording:
    """Read a BIOPAC `.acq` file or AcqKnowledge `.mat` export (MATLAB v5 or v7.3).

    path : the `.acq` or `.mat` file.
    sfreq : rate in Hz to put every analog channel on (default: the highest channel
        rate, so nothing is downsampled); see `resample_signal` for the methods.
    min_stable_samples : samples a trigger code must hold to count (default 5 ms worth
        at the digital lines' rate); see `decode_trigger_lines`.
    valid : marker codes to keep (default 100..148); others are dropped and counted.
    require_trigger_lines : raise when the file has no digital lines (by default such a
        file gives empty markers, `has_trigger_lines=False` and `markers.attrs["message"]`).
    Raises InputFileError naming the file when it is missing, corrupt, lacks `data`,
    `labels` or `isi` (.mat), or has no trigger lines while they are required.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".acq", ".mat"):
        raise InputFileError(
            path,
            f"unsupported BIOPAC file extension {suffix!r}",
            "give an AcqKnowledge .acq file or its MATLAB .mat export",
        )
    if not path.is_file():
        raise InputFileError(path, "file not found", "give the path of an existing .acq or .mat")
    options = _Options(
        sfreq, min_stable_samples, valid, require_trigger_lines, load_role_table(roles)
    )
    if suffix == ".acq":
        return _read_acq(path, options)
    if _is_hdf5(path):
        return _read_mat_v73(path, options)
    return _read_mat_v5(path, options)


def digital_line_bit(label: str) -> int | None:
    """Bit number of a digital trigger line label (`Digital (STP Input 3)` -> 3), else None."""
    match = _DIGITAL_LINE.match(label)
    return int(match.group(1)) if match else None


def canonical_channel_names(labels: Sequence[str]) -> list[str]:
    """Column names for analog channel labels, recognised by the channel-role table.

    labels : channel names as written in the file (digital lines excluded), in file order.
    Returns one unique name per label (see `mmhe.io.channel_roles.assign_channels`):
    ``EKG - ERS100C`` -> ECG, ``EDA - GSR100C`` -> EDA, ``EDA filtered, differentiated``
    -> EDA_DIFF, ``ECG rate (.5 - 35 Hz)`` -> ECG_RATE, ``EMG A, X, EMG2-R`` -> EMG_A;
    unknown labels are kept.
    """
    return assign_channels(labels).names


def decode_trigger_lines(
    lines: Mapping[int, np.ndarray],
    sfreq: float,
    *,
    min_stable_samples: int | None = None,
    valid: Collection[int] = VALID_MARKERS,
) -> pd.DataFrame:
    """Decode digital trigger lines into markers (an 8-bit code on eight lines).

    lines : {bit k: samples of line k}, each shape (n_samples,), volts (0 / 5 V).
    sfreq : sampling rate of the lines in Hz.
    min_stable_samples : samples a code must hold to count (default 5 ms worth).
    valid : codes to keep (default 100..148); others are dropped and counted.
    Returns a DataFrame `onset_s` (seconds from the first sample), `code` (int).

    Each line is thresholded at half the high level (the maximum over all lines) and
    code = sum(bit_k << k). The code sequence is cut into runs of equal code; a run is
    stable when it lasts at least `min_stable_samples`. Short runs between two stable
    runs of different codes are the bit skew of one transition (bits switching a few
    samples apart) and are ignored; short runs between two stable runs of the SAME code
    (or the idle code 0 assumed before and after the recording) are glitches: counted in
    `attrs["glitches"]`, never emitted. Consecutive stable runs of one code are one
    marker, code 0 is idle. The onset is the first bit edge of the marker's transition:
    the first sample at which the lines left the previous stable code (not the sample at
    which the last skewed bit has switched, which makes a marker late by up to the port's
    bit skew, 0-2 ms on real parallel ports, and biases the fitted clock drift).
    attrs: "source" ("digital lines"), "glitches",
    "dropped_codes" ({code: count}), "bits", "high_level", "min_stable_samples".
    """
    bits = sorted(lines)
    if not bits:
        raise ValueError("decode_trigger_lines needs at least one line")
    if bits[0] < 0 or bits[-1] > 15:
        raise ValueError(f"bit numbers must be 0..15, got {bits}")
    n = len(lines[bits[0]])
    if any(len(lines[bit]) != n for bit in bits):
        raise ValueError("all trigger lines must have the same number of samples")
    if min_stable_samples is None:
        min_stable_samples = max(1, round(MIN_STABLE_S * sfreq))
    high = max((float(np.max(lines[bit])) for bit in bits if n), default=0.0)

    code = np.zeros(n, dtype=np.uint16)
    if high > 0:
        for bit in bits:  # eight lines: vectorised over samples
            code |= (np.asarray(lines[bit]) > high / 2).astype(np.uint16) << np.uint16(bit)

    onsets, codes, glitches = _stable_codes(code, min_stable_samples)
    valid_codes = np.fromiter(valid, dtype=np.int64)
    is_marker = codes != 0
    onsets, codes = onsets[is_marker], codes[is_marker]
    is_valid = np.isin(codes, valid_codes)
    frame = pd.DataFrame({"onset_s": onsets[is_valid] / sfreq, "code": codes[is_valid]}).astype(
        {"onset_s": "float64", "code": "int64"}
    )
    frame.attrs.update(
        source="digital lines",
        glitches=int(glitches),
        dropped_codes=dict(sorted(Counter(int(c) for c in codes[~is_valid]).items())),
        bits=bits,
        high_level=high,
        min_stable_samples=int(min_stable_samples),
    )
    return frame


def resample_signal(
    signal: np.ndarray, rate: float, sfreq: float, n_samples: int | None = None
) -> np.ndarray:
    """Put one channel sampled at `rate` Hz on `sfreq` Hz, sample 0 staying at time 0.

    signal : shape (n,), any unit.
    Returns shape (n_samples,) (default ceil(n * sfreq / rate)). Upsampling (rate <
    sfreq) interpolates linearly between the original samples (`numpy.interp`): exact
    at the original sample instants, no overshoot, and the last value is held after the
    last original sample. Downsampling (rate > sfreq) uses `scipy.signal.resample_poly`
    (polyphase FIR with a Kaiser-window anti-aliasing filter). Equal rates return the
    signal itself (no copy), cut or end-padded to `n_samples`.
    """
    signal = np.asarray(signal)
    if n_samples is None:
        n_samples = math.ceil(len(signal) * sfreq / rate - 1e-9)
    if len(signal) == 0:
        return np.full(n_samples, np.nan)
    if rate == sfreq:
        out = signal
    elif rate < sfreq:
        t_out = np.arange(n_samples) / sfreq
        return np.interp(t_out, np.arange(len(signal)) / rate, signal)
    else:
        from scipy.signal import resample_poly  # imported here: 0.9 s of every ingest's start

        ratio = Fraction(sfreq).limit_denominator(10_000) / Fraction(rate).limit_denominator(10_000)
        out = resample_poly(signal.astype(np.float64), ratio.numerator, ratio.denominator)
    if len(out) >= n_samples:
        return out[:n_samples]
    return np.concatenate([out, np.full(n_samples - len(out), out[-1])])


# ------------------------------------------------------------------ decoding


def _stable_codes(code: np.ndarray, min_stable: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(onset samples, codes, glitch count) of the stable code runs of a code sequence."""
    n = code.size
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), 0
    starts = np.concatenate(([0], np.flatnonzero(code[1:] != code[:-1]) + 1))
    lengths = np.diff(np.append(starts, n))
    values = code[starts].astype(np.int64)
    stable = lengths >= min_stable
    stable_runs = np.flatnonzero(stable)

    # Unstable segments (maximal groups of short runs): a glitch when the stable codes
    # on both sides are equal (idle 0 assumed beyond the recording's ends).
    unstable = ~stable
    seg_first = np.flatnonzero(unstable & ~np.concatenate(([False], unstable[:-1])))
    seg_last = np.flatnonzero(unstable & ~np.concatenate((unstable[1:], [False])))
    before = np.where(seg_first > 0, values[np.maximum(seg_first - 1, 0)], 0)
    last = len(values) - 1
    after = np.where(seg_last < last, values[np.minimum(seg_last + 1, last)], 0)
    glitches = int(np.count_nonzero(before == after))

    if stable_runs.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), glitches
    stable_values = values[stable_runs]
    first_of_code = np.concatenate(([True], stable_values[1:] != stable_values[:-1]))
    marker_runs = stable_runs[first_of_code]
    onsets = starts[marker_runs].astype(np.int64)

    # Onset = the first bit edge of the transition: a marker's first stable run preceded by
    # short runs (the bits switching a few samples apart) starts where those runs start,
    # i.e. at the first sample whose code left the previous stable code.
    previous = marker_runs - 1
    skewed = previous >= 0
    skewed[skewed] = unstable[previous[skewed]]
    if skewed.any():
        segment = np.searchsorted(seg_last, previous[skewed])  # the segment ending there
        onsets[skewed] = starts[seg_first[segment]]
    return onsets, values[marker_runs], glitches


def _decode_file_lines(
    path: Path,
    digital: dict[int, _SourceChannel],
    options: _Options,
) -> pd.DataFrame:
    if not digital:
        if options.require_trigger_lines:
            raise InputFileError(
                path,
                "no trigger columns: no 'Digital (STP Input k)' channel found",
                "export the eight digital STP input channels from AcqKnowledge with the data",
            )
        frame = pd.DataFrame({"onset_s": [], "code": []}).astype(
            {"onset_s": "float64", "code": "int64"}
        )
        frame.attrs.update(
            source="none",
            glitches=0,
            dropped_codes={},
            message="no 'Digital (STP Input k)' lines in this file: no markers",
        )
        return frame
    rate = max(channel.rate for channel in digital.values())
    n = max(math.ceil(ch.n_samples * rate / ch.rate - 1e-9) for ch in digital.values())
    lines = {bit: _hold(channel.load(), channel.rate, rate, n) for bit, channel in digital.items()}
    return decode_trigger_lines(
        lines, rate, min_stable_samples=options.min_stable_samples, valid=options.valid
    )


def _hold(samples: np.ndarray, rate: float, target: float, n: int) -> np.ndarray:
    """Zero-order hold of a digital line onto a faster rate (no interpolated levels)."""
    if rate == target and len(samples) == n:
        return samples
    index = np.minimum((np.arange(n) * rate / target).astype(np.int64), len(samples) - 1)
    return samples[index]


# ------------------------------------------------------------------ assembling


def _assemble(
    path: Path,
    channels: list[_SourceChannel],
    events: pd.DataFrame,
    start_sample: int,
    options: _Options,
) -> PhysioRecording:
    digital: dict[int, _SourceChannel] = {}
    analog: list[_SourceChannel] = []
    for channel in channels:
        bit = digital_line_bit(channel.label)
        if bit is None:
            analog.append(channel)
        elif bit in digital:
            raise InputFileError(
                path,
                f"two channels are digital line {bit}: {digital[bit].label!r}, {channel.label!r}",
            )
        else:
            digital[bit] = channel
    markers = _decode_file_lines(path, digital, options)

    assignment = assign_channels([ch.label for ch in analog], options.roles)
    named = dict(zip(assignment.names, analog, strict=True))
    rates = [ch.rate for ch in analog] or [ch.rate for ch in digital.values()] or [1.0]
    sfreq = float(options.sfreq or max(rates))
    n_out = max((math.ceil(ch.n_samples * sfreq / ch.rate - 1e-9) for ch in analog), default=0)
    checked, segments, units, notes = {}, [], {}, list(assignment.notes)
    for name, ch in named.items():
        values, units[name], found, more = check_channel(
            ch.load(),
            ch.rate,
            name=name,
            role=assignment.roles.get(name),
            raw=assignment.raw.get(name, False),
            unit=ch.unit,
        )
        checked[name] = values
        segments += found
        notes += more
    durations = {name: ch.n_samples / ch.rate for name, ch in named.items()}
    tail_s = garbage_tail(segments, durations)
    if tail_s is not None:
        segments = _with_tail(segments, named, tail_s)
    columns = {}
    for name, ch in named.items():
        mine = [s for s in segments if s.channel == name]
        held = hold_bad(checked[name], mine, ch.rate)
        # a segment reaching the channel's end also covers the samples held after it
        to_end = [
            replace(s, stop_s=math.inf) if s.stop_s >= durations[name] - 1e-9 else s for s in mine
        ]
        columns[name] = mask_segments(resample_signal(held, ch.rate, sfreq, n_out), sfreq, to_end)
    signals = pd.DataFrame(columns, copy=False)  # no copy of the column arrays
    column_of = {ch.label: name for name, ch in named.items()}
    if len(events):
        events = events.assign(channel=events["channel"].map(lambda c: column_of.get(c, c)))
    return PhysioRecording(
        sfreq=sfreq,
        signals=signals,
        units=units,
        markers=markers,
        events=events,
        original_rates={name: float(ch.rate) for name, ch in named.items()},
        path=path,
        has_trigger_lines=bool(digital),
        channel_labels={name: ch.label for name, ch in named.items()},
        start_sample=int(start_sample),
        roles=dict(assignment.roles),
        chosen=dict(assignment.chosen),
        unknown_channels=list(assignment.unknown),
        channel_notes=notes,
        file_units={name: ch.unit for name, ch in named.items()},
        bad_segments=segments_frame(segments),
    )


def _with_tail(
    segments: list[BadSegment], named: Mapping[str, _SourceChannel], tail_s: float
) -> list[BadSegment]:
    """Segments with the garbage tail from `tail_s` on as one segment per channel (its
    reason: every problem seen in the tail), replacing the channels' own tail pieces."""
    in_tail = [s for s in segments if s.masked and s.start_s >= tail_s - 1e-9]
    reasons = sorted({part for s in in_tail for part in s.reason.split("; ")})
    reason = f"garbage tail ({'; '.join(reasons)})"
    out = [s for s in segments if not (s.masked and s.start_s >= tail_s - 1e-9)]
    for name, ch in named.items():
        end = ch.n_samples / ch.rate
        covered = any(s.masked and s.channel == name and s.stop_s >= end - 1e-9 for s in out)
        if end > tail_s and not covered:
            n = ch.n_samples - math.floor(tail_s * ch.rate)
            out.append(BadSegment(name, tail_s, end, n, reason))
    return out


def _empty_events() -> pd.DataFrame:
    return pd.DataFrame({name: [] for name in _EVENT_COLUMNS}).astype(_EVENT_COLUMNS)


# ------------------------------------------------------------------ .acq


def _read_acq(path: Path, options: _Options) -> PhysioRecording:
    try:
        datafile = bioread.read(str(path))
    except Exception as exc:  # bioread raises whatever a broken file triggers
        raise InputFileError(
            path,
            f"cannot be read as an AcqKnowledge file: {type(exc).__name__}: {exc}",
            "the file is truncated or corrupt; re-export it from AcqKnowledge",
        ) from exc
    channels = [
        _SourceChannel(
            label=channel.name,
            unit=channel.units,
            rate=float(channel.samples_per_second),
            n_samples=int(channel.point_count),
            load=lambda channel=channel: channel.data,
        )
        for channel in datafile.channels
    ]
    base_rate = float(datafile.samples_per_second)
    rows = []
    for marker in datafile.event_markers or []:
        channel = datafile.channel_order_map.get(marker.channel_number)
        rows.append(
            {
                "onset_s": marker.sample_index / base_rate,
                "text": marker.text,
                "type": marker.type,
                "channel": channel.name if channel is not None else "",
            }
        )
    events = pd.DataFrame(rows).astype(_EVENT_COLUMNS) if rows else _empty_events()
    return _assemble(path, channels, events, 0, options)


# ------------------------------------------------------------------ .mat


def _is_hdf5(path: Path) -> bool:
    return bool(h5py.is_hdf5(path))


def _read_mat_v5(path: Path, options: _Options) -> PhysioRecording:
    try:
        present = {name for name, _, _ in scipy.io.whosmat(path)}
        wanted = [name for name in (*_MAT_REQUIRED, *_MAT_OPTIONAL) if name in present]
        # Load before judging what is missing: a truncated file lists only its first
        # variables, and loading is what tells it is truncated.
        mat = scipy.io.loadmat(path, variable_names=wanted, chars_as_strings=True)
    except Exception as exc:  # scipy raises whatever a broken file triggers
        raise InputFileError(
            path,
            f"cannot be read as a MATLAB .mat file: {type(exc).__name__}: {exc}",
            "the file is truncated or corrupt; re-export it from AcqKnowledge",
        ) from exc
    _require_mat_variables(path, present)
    data = np.asarray(mat["data"])
    labels = _text_list(mat["labels"])
    if data.ndim != 2:
        raise InputFileError(path, f"'data' has shape {data.shape}, expected samples x channels")
    if data.shape[1] != len(labels) and data.shape[0] == len(labels):
        data = data.T  # channels x samples: a transposed export
    if data.shape[1] != len(labels):
        raise InputFileError(
            path, f"'data' has {data.shape[1]} columns but 'labels' names {len(labels)} channels"
        )
    units = _text_list(mat["units"]) if "units" in mat else [""] * len(labels)
    rate = _rate_from_isi(path, _scalar(mat["isi"]), _isi_unit(mat))
    start = int(_scalar(mat["start_sample"])) if "start_sample" in mat else 0
    channels = [
        _SourceChannel(
            label=label,
            unit=units[j] if j < len(units) else "",
            rate=rate,
            n_samples=data.shape[0],
            load=lambda j=j: data[:, j],  # a view: loadmat returns column-major arrays
        )
        for j, label in enumerate(labels)
    ]
    return _assemble(path, channels, _empty_events(), start, options)


def _read_mat_v73(path: Path, options: _Options) -> PhysioRecording:
    try:
        mat = h5py.File(path, "r")
    except Exception as exc:  # h5py raises OSError for a truncated or corrupt file
        raise InputFileError(
            path,
            f"cannot be read as a MATLAB v7.3 (HDF5) .mat file: {type(exc).__name__}: {exc}",
            "the file is truncated or corrupt; re-export it from AcqKnowledge",
        ) from exc
    with mat:
        _require_mat_variables(path, set(mat.keys()))
        labels = _h5_text_list(mat, mat["labels"])
        dataset = mat["data"]
        # MATLAB writes column-major arrays, so HDF5 sees samples x channels transposed:
        # (channels, samples), each channel one contiguous row read on its own.
        if dataset.ndim == 2 and dataset.shape[0] == len(labels):
            channel_axis = 0
        elif dataset.ndim == 2 and dataset.shape[1] == len(labels):
            channel_axis = 1
        else:
            raise InputFileError(
                path, f"'data' has shape {dataset.shape} but 'labels' names {len(labels)} channels"
            )
        n_samples = dataset.shape[1 - channel_axis]
        units = _h5_text_list(mat, mat["units"]) if "units" in mat else [""] * len(labels)
        isi_unit = _h5_text_list(mat, mat["isi_units"])[0] if "isi_units" in mat else "ms"
        rate = _rate_from_isi(path, _scalar(mat["isi"][()]), isi_unit)
        start = int(_scalar(mat["start_sample"][()])) if "start_sample" in mat else 0

        def load(j: int) -> np.ndarray:
            try:
                return dataset[j, :] if channel_axis == 0 else dataset[:, j]
            except OSError as exc:
                raise InputFileError(
                    path, f"cannot read channel {labels[j]!r}: {exc}", "the file is corrupt"
                ) from exc

        channels = [
            _SourceChannel(
                label=label,
                unit=units[j] if j < len(units) else "",
                rate=rate,
                n_samples=n_samples,
                load=lambda j=j: load(j),
            )
            for j, label in enumerate(labels)
        ]
        return _assemble(path, channels, _empty_events(), start, options)


def _require_mat_variables(path: Path, present: set[str]) -> None:
    missing = [name for name in _MAT_REQUIRED if name not in present]
    if missing:
        found = ", ".join(sorted(n for n in present if not n.startswith("#"))) or "none"
        raise InputFileError(
            path,
            f"not an AcqKnowledge MATLAB export: missing variable(s) {missing} (found: {found})",
            "export with File > Save As > MATLAB in AcqKnowledge (variables data, labels, "
            "units, isi, isi_units, start_sample)",
        )


def _rate_from_isi(path: Path, isi: float, unit: str) -> float:
    seconds = _ISI_SECONDS.get(unit.strip().lower())
    if seconds is None or not isi > 0:
        raise InputFileError(
            path,
            f"sample interval isi={isi} {unit!r} is not usable",
            "isi must be positive with isi_units one of " + ", ".join(_ISI_SECONDS),
        )
    return 1.0 / (isi * seconds)


def _isi_unit(mat: Mapping[str, Any]) -> str:
    return _text_list(mat["isi_units"])[0] if "isi_units" in mat else "ms"


def _scalar(value: Any) -> float:
    return float(np.asarray(value).ravel()[0])


def _text_list(value: Any) -> list[str]:
    """Strings of a loadmat char matrix (one per row) or cell array."""
    array = np.asarray(value)
    if array.dtype.kind == "U":
        return [str(text).strip() for text in array.ravel()] or [""]
    if array.dtype == object:
        return ["".join(_text_list(item)) for item in array.ravel()]
    raise ValueError(f"expected text, got an array of {array.dtype}")


def _h5_text_list(mat: Any, dataset: Any) -> list[str]:
    """Strings of a MATLAB v7.3 char matrix (uint16, stored transposed) or cell array."""
    matlab_class = dataset.attrs.get("MATLAB_class", b"")
    if isinstance(matlab_class, bytes):
        matlab_class = matlab_class.decode()
    if dataset.attrs.get("MATLAB_empty", 0):
        return [""]
    values = dataset[()]
    if matlab_class == "cell" or (values.dtype == object and values.size and _is_ref(values)):
        return ["".join(_h5_text_list(mat, mat[ref])) for ref in values.ravel()]
    if values.dtype.kind in "SO":
        return [
            (text.decode() if isinstance(text, bytes) else str(text)).strip()
            for text in values.ravel()
        ]
    # A MATLAB (n_strings x length) char matrix arrives as (length x n_strings) codes.
    codes = np.atleast_2d(values.T if values.ndim == 2 else values[None, :])
    return ["".join(map(chr, row)).strip("\x00 ") for row in codes.astype(np.int64)]


def _is_ref(values: np.ndarray) -> bool:
    return isinstance(values.ravel()[0], h5py.Reference)
