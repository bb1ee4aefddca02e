"""Lab Streaming Layer recordings (XDF, as LabRecorder writes them), read with pyxdf.

An XDF file holds several streams, each with its own samples and time stamps on one LSL
clock: EEG, physiology, the stimulus markers and, from `mmhe record --lsl`, the
camera's markers and a per-frame counter. pyxdf corrects every stream's time stamps
with the clock offsets measured during the recording (robust linear fit per clock
segment, so a clock reset mid-way gives two segments) and removes sampling jitter of
regular streams (a straight line through the time stamps of each gap-free segment).
`read_xdf` keeps both results and what they removed:

- ``jitter_ms_*``: how far the recorded time stamps (after the clock-offset correction)
  lie from pyxdf's dejittered line, i.e. the timing residual of the stream;
- ``offset_residual_ms_max``: the scatter of the clock-offset measurements around a
  straight line per clock segment.

`XdfRecording.alignment` lists them per stream (the rows `mmhe ingest` adds to the
alignment table); `read_xdf_eeg` and `read_xdf_physio` give the EEG as an MNE `Raw` and
the physiology as a `PhysioRecording`, with the marker stream's codes on their own
sample clocks (each marker's LSL time mapped through the stream's dejittered time stamps).

>>> recording = read_xdf("session.xdf")            # doctest: +SKIP
>>> recording.alignment()[["stream", "type", "n_samples", "jitter_ms_max"]]  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmhe.errors import InputFileError
from mmhe.labels import VALID_MARKERS

__all__ = [
    "XdfRecording",
    "XdfStream",
    "read_xdf",
    "read_xdf_eeg",
    "read_xdf_physio",
    "xdf_frame_times",
    "xdf_markers",
]

MARKER_TYPES = frozenset({"markers", "marker", "stringmarker", "events", "triggers", "stim"})
"""Stream types (lower case) taken as marker streams."""

FRAME_COUNTER_TYPE = "framecounter"
"""Type (lower case) of the per-frame stream of `mmhe record --lsl`."""

RECORDER_SOURCE_PREFIX = "mmhe-record"
"""Source id prefix of the streams `mmhe record --lsl` publishes."""

_PHYSIO_WORDS = ("physio", "biopac", "ppg", "ecg", "eda", "gsr", "rsp", "resp", "exg", "bio")
_UNIT_SCALE = {
    "v": 1.0,
    "volt": 1.0,
    "volts": 1.0,
    "mv": 1e-3,
    "millivolt": 1e-3,
    "millivolts": 1e-3,
    "uv": 1e-6,
    "µv": 1e-6,
    "μv": 1e-6,
    "microvolt": 1e-6,
    "microvolts": 1e-6,
}


@dataclass
class XdfStream:
    """One stream of an XDF file after pyxdf's clock-offset correction and dejittering.

    time_stamps : array (n,), seconds on the LSL clock of the recording computer.
    time_series : array (n, channels) for numeric streams; list of lists of str for
        string streams.
    jitter_ms_median, jitter_ms_max : |recorded - dejittered| time stamps (ms); 0 for
        irregular streams, which pyxdf does not dejitter; NaN without samples.
    offset_residual_ms_max : largest distance (ms) of a clock-offset measurement from a
        straight line fitted per clock segment; NaN with fewer than 3 measurements.
    clock_segments : pieces with their own clock-offset fit (more than one = the
        stream's clock was reset and pyxdf handled it).
    """

    name: str
    type: str
    source_id: str
    stream_id: int
    channel_format: str
    channel_labels: list[str]
    channel_units: list[str]
    nominal_srate: float
    effective_srate: float
    time_stamps: np.ndarray
    time_series: Any
    n_clock_offsets: int
    clock_offset_ms: float
    offset_residual_ms_max: float
    clock_segments: int
    segments: int
    jitter_ms_median: float
    jitter_ms_max: float

    @property
    def n_samples(self) -> int:
        return len(self.time_stamps)

    @property
    def is_marker(self) -> bool:
        """A marker stream: a marker type, or one channel at an irregular rate."""
        return self.type.lower() in MARKER_TYPES or (
            self.nominal_srate == 0 and len(self.channel_labels) == 1
            and self.type.lower() != FRAME_COUNTER_TYPE
        )  # fmt: skip

    @property
    def from_recorder(self) -> bool:
        """Published by `mmhe record --lsl`."""
        return self.source_id.startswith(RECORDER_SOURCE_PREFIX)

    def values(self) -> np.ndarray:
        """Numeric samples as float64 (n, channels); string streams parsed where numeric."""
        if isinstance(self.time_series, np.ndarray):
            return self.time_series.astype(np.float64, copy=False).reshape(self.n_samples, -1)
        return np.array(
            [[_number(v) for v in sample] for sample in self.time_series], dtype=np.float64
        ).reshape(self.n_samples, -1)

    def sample_of(self, lsl_time: np.ndarray) -> np.ndarray:
        """Fractional sample index of LSL times, through the dejittered time stamps."""
        times = np.asarray(lsl_time, dtype=float)
        index = np.arange(self.n_samples, dtype=float)
        if self.n_samples < 2:
            return np.full(times.shape, np.nan)
        inside = np.interp(times, self.time_stamps, index)
        # beyond the ends: extrapolate at the effective rate
        rate = self.effective_srate or self.nominal_srate
        before, after = times < self.time_stamps[0], times > self.time_stamps[-1]
        inside[before] = (times[before] - self.time_stamps[0]) * rate
        inside[after] = index[-1] + (times[after] - self.time_stamps[-1]) * rate
        return inside


@dataclass
class XdfRecording:
    """The streams of one XDF file and the problems met reading it (`problems`)."""

    path: Path
    streams: list[XdfStream]
    header: dict[str, Any]
    problems: list[str] = field(default_factory=list)

    def stream(self, name: str) -> XdfStream:
        """The stream with this name (or, failing that, this type)."""
        for key in ("name", "type"):
            hits = [s for s in self.streams if getattr(s, key).lower() == name.lower()]
            if hits:
                return hits[0]
        raise InputFileError(
            self.path,
            f"no stream named {name!r}",
            "streams: " + ", ".join(f"{s.name} ({s.type})" for s in self.streams),
        )

    def alignment(self) -> pd.DataFrame:
        """One row per stream: what it holds and how well its time stamps fit LSL's clock.

        Columns: stream, type, source_id, channels, nominal_srate, effective_srate,
        n_samples, first_time_s, last_time_s (LSL clock), clock_offsets (measurements),
        clock_offset_ms (median), offset_residual_ms_max, clock_segments, segments
        (gap-free pieces), jitter_ms_median, jitter_ms_max, problem (None if fine).
        """
        rows = []
        for s in self.streams:
            rows.append(
                {
                    "stream": s.name,
                    "type": s.type,
                    "source_id": s.source_id,
                    "channels": len(s.channel_labels),
                    "nominal_srate": s.nominal_srate,
                    "effective_srate": s.effective_srate,
                    "n_samples": s.n_samples,
                    "first_time_s": float(s.time_stamps[0]) if s.n_samples else np.nan,
                    "last_time_s": float(s.time_stamps[-1]) if s.n_samples else np.nan,
                    "clock_offsets": s.n_clock_offsets,
                    "clock_offset_ms": s.clock_offset_ms,
                    "offset_residual_ms_max": s.offset_residual_ms_max,
                    "clock_segments": s.clock_segments,
                    "segments": s.segments,
                    "jitter_ms_median": s.jitter_ms_median,
                    "jitter_ms_max": s.jitter_ms_max,
                    "problem": _stream_problem(s),
                }
            )
        return pd.DataFrame(rows)


def _stream_problem(s: XdfStream) -> str | None:
    if s.n_samples == 0:
        return "empty stream: no samples"
    if s.clock_segments > 1:
        return f"clock reset: {s.clock_segments} clock segments, each fitted on its own"
    if s.segments > 1:
        return f"{s.segments - 1} gap(s) in the samples"
    return None


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def _text(info: dict[str, Any], key: str, default: str = "") -> str:
    value = info.get(key)
    if isinstance(value, list):
        value = value[0] if value else default
    return default if value is None else str(value)


def _channels(info: dict[str, Any], count: int) -> tuple[list[str], list[str]]:
    """Channel labels and units from the stream's description (defaults: 1..n, "")."""
    labels = [str(i + 1) for i in range(count)]
    units = [""] * count
    try:
        channels = info["desc"][0]["channels"][0]["channel"]
    except (KeyError, IndexError, TypeError):
        return labels, units
    for i, channel in enumerate(channels[:count]):
        if not isinstance(channel, dict):
            continue
        labels[i] = _text(channel, "label", labels[i]) or labels[i]
        units[i] = _text(channel, "unit", "")
    return labels, units


def _jitter(
    final: np.ndarray, raw: np.ndarray, clock_segments: list, segments: list
) -> tuple[float, float]:
    """Median and largest |time stamp - its dejittered line| (ms), from the recorded (raw)
    and final time stamps: final - raw is the clock correction (linear per clock segment)
    plus the jitter removed, so a line fitted to it per piece (clock segment x gap-free
    segment) leaves the jitter."""
    n = len(final)
    if n == 0 or len(raw) != n:
        return np.nan, np.nan
    starts = {0} | {int(a) for a, _ in clock_segments} | {int(a) for a, _ in segments}
    bounds = [*sorted(b for b in starts if 0 <= b < n), n]
    residual = np.zeros(n)
    for start, stop in itertools.pairwise(bounds):
        x, shift = raw[start:stop], final[start:stop] - raw[start:stop]
        if len(x) >= 2 and np.ptp(x) > 0:
            slope, intercept = np.polyfit(x - x[0], shift, 1)
            residual[start:stop] = shift - (intercept + slope * (x - x[0]))
    magnitude = np.abs(residual) * 1e3
    return float(np.median(magnitude)), float(np.max(magnitude))


def _offset_residual(
    times: list[float], values: list[float], raw: np.ndarray, clock_segments: list
) -> float:
    """Largest distance (ms) of clock-offset measurements from a line per clock segment."""
    t, v = np.asarray(times, float), np.asarray(values, float)
    if t.size < 3:
        return np.nan
    group = np.zeros(t.size, dtype=int)
    if len(clock_segments) > 1 and raw.size:
        # each measurement belongs to the clock segment whose raw time span is nearest
        starts = np.array([raw[a] for a, _ in clock_segments])
        stops = np.array([raw[b] for _, b in clock_segments])
        distance = np.maximum(starts[None, :] - t[:, None], 0) + np.maximum(
            t[:, None] - stops[None, :], 0
        )
        group = np.argmin(distance, axis=1)
    worst = 0.0
    for g in np.unique(group):
        x, y = t[group == g], v[group == g]
        if x.size >= 3 and np.ptp(x) > 0:
            slope, intercept = np.polyfit(x - x[0], y, 1)
            worst = max(worst, float(np.max(np.abs(y - intercept - slope * (x - x[0])))))
    return worst * 1e3


class _PyxdfMessages(logging.Handler):
    """Collects pyxdf's warnings and errors (it logs, it does not raise)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def read_xdf(path: str | os.PathLike[str], *, dejitter: bool = True) -> XdfRecording:
    """Read an XDF file with pyxdf (clock-offset correction, clock resets, dejittering).

    path : the `.xdf` file.
    dejitter : remove sampling jitter of regular streams (pyxdf's linear fit per segment).
    Returns an `XdfRecording`; streams without samples are kept (n_samples 0) and listed
    in `problems`, as are pyxdf's own warnings (e.g. a corrupt chunk skipped).
    Raises `InputFileError` for a missing file or one pyxdf cannot parse.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found", "give the path of an existing .xdf file")
    stat = path.stat()
    return _read_xdf_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns, dejitter)


@lru_cache(maxsize=1)  # the EEG, physiology and alignment readers share one parse
def _read_xdf_cached(path_text: str, _size: int, _mtime: int, dejitter: bool) -> XdfRecording:
    import pyxdf

    path = Path(path_text)
    raw_stamps: dict[int, list[np.ndarray]] = {}

    def keep_raw(values, stamps, info, stream_id):
        raw_stamps.setdefault(stream_id, []).append(np.array(stamps, dtype=float, copy=True))
        return values, stamps, info

    handler = _PyxdfMessages()
    logger = logging.getLogger("pyxdf")
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        streams, header = pyxdf.load_xdf(path_text, on_chunk=keep_raw, dejitter_timestamps=dejitter)
    except Exception as exc:  # pyxdf raises whatever a broken file triggers
        raise InputFileError(
            path, f"cannot be read as XDF: {type(exc).__name__}: {exc}", "is it an XDF file?"
        ) from exc
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    out: list[XdfStream] = []
    problems = [f"pyxdf: {message}" for message in handler.messages]
    for stream in streams:
        info = stream["info"]
        stream_id = int(info["stream_id"])
        count = int(_number(_text(info, "channel_count", "1")))
        labels, units = _channels(info, count)
        stamps = np.asarray(stream["time_stamps"], dtype=float)
        parts = raw_stamps.get(stream_id)
        raw = np.concatenate(parts) if parts else np.empty(0)
        clock_segments = list(info.get("clock_segments") or [])
        jitter = _jitter(stamps, raw, clock_segments, list(info.get("segments") or []))
        offsets = list(stream.get("clock_values") or [])
        item = XdfStream(
            name=_text(info, "name"),
            type=_text(info, "type"),
            source_id=_text(info, "source_id"),
            stream_id=stream_id,
            channel_format=_text(info, "channel_format"),
            channel_labels=labels,
            channel_units=units,
            nominal_srate=_number(_text(info, "nominal_srate", "0")),
            effective_srate=float(info.get("effective_srate") or 0.0),
            time_stamps=stamps,
            time_series=stream["time_series"],
            n_clock_offsets=len(offsets),
            clock_offset_ms=float(np.median(offsets) * 1e3) if offsets else np.nan,
            offset_residual_ms_max=_offset_residual(
                stream.get("clock_times") or [], offsets, raw, clock_segments
            ),
            clock_segments=len(clock_segments),
            segments=len(info.get("segments") or []),
            jitter_ms_median=jitter[0],
            jitter_ms_max=jitter[1],
        )
        problem = _stream_problem(item)
        if problem:
            problems.append(f"stream {item.name!r} ({item.type}): {problem}")
        out.append(item)
    if not out:
        problems.append("the file holds no streams")
    return XdfRecording(path, out, header, problems)


# ------------------------------------------------------------------ markers


def _marker_streams(recording: XdfRecording, name: str | None) -> list[XdfStream]:
    if name is not None:
        return [recording.stream(name)]
    markers = [s for s in recording.streams if s.is_marker and s.n_samples]
    external = [s for s in markers if not s.from_recorder]
    return external or markers


def xdf_markers(
    recording: XdfRecording,
    *,
    stream: str | None = None,
    valid: Collection[int] | None = VALID_MARKERS,
) -> pd.DataFrame:
    """Integer marker codes of the marker stream(s), on the LSL clock.

    stream : the marker stream's name; default: every marker stream not published by
        `mmhe record` (the stimulus computer's), or the recorder's when it is the only one.
    valid : codes kept (default 100..148); others are dropped and counted. None keeps
        every non-zero code (0 is "capture stopped" in the recorder's stream).
    Returns ``lsl_time_s``, ``code`` sorted by time; attrs "streams", "dropped_codes"
    ({code: count}) and "ignored" ({text: count} of samples that are not integers).
    """
    chosen = _marker_streams(recording, stream)
    times, codes, ignored = [], [], Counter()
    for s in chosen:
        if isinstance(s.time_series, np.ndarray):
            texts = [str(v) for v in s.time_series.reshape(s.n_samples, -1)[:, 0]]
        else:
            texts = [str(sample[0]) if sample else "" for sample in s.time_series]
        for t, text in zip(s.time_stamps, texts, strict=True):
            value = _number(text.strip())
            if np.isfinite(value) and value == round(value):
                times.append(float(t))
                codes.append(int(value))
            else:
                ignored[text] += 1
    times_a, codes_a = np.asarray(times, float), np.asarray(codes, np.int64)
    if valid is None:
        keep = codes_a != 0
    else:
        keep = np.isin(codes_a, np.fromiter(valid, dtype=np.int64))
    order = np.argsort(times_a[keep], kind="stable")
    frame = pd.DataFrame({"lsl_time_s": times_a[keep][order], "code": codes_a[keep][order]})
    frame.attrs.update(
        streams=[s.name for s in chosen],
        dropped_codes=dict(sorted(Counter(int(c) for c in codes_a[~keep] if c != 0).items())),
        ignored=dict(ignored),
    )
    return frame


def _markers_on(stream: XdfStream, markers: pd.DataFrame, sfreq: float) -> pd.DataFrame:
    """Markers as ``onset_s`` = sample index / sfreq of `stream` (its own clock)."""
    onset = stream.sample_of(markers["lsl_time_s"].to_numpy()) / sfreq
    frame = pd.DataFrame({"onset_s": onset, "code": markers["code"].to_numpy()})
    frame.attrs.update(markers.attrs, source=f"xdf markers {markers.attrs['streams']}")
    return frame


def xdf_frame_times(recording: XdfRecording) -> pd.DataFrame:
    """The per-frame stream of `mmhe record --lsl`: ``frame``, ``counter``, ``marker`` and
    ``lsl_time_s`` (capture time on the LSL clock), one row per captured frame."""
    streams = [s for s in recording.streams if s.type.lower() == FRAME_COUNTER_TYPE]
    if not streams:
        raise InputFileError(recording.path, "no FrameCounter stream (record with --lsl)")
    s = streams[0]
    values = s.values().astype(np.int64)
    columns = {label: values[:, i] for i, label in enumerate(s.channel_labels[:3])}
    return pd.DataFrame({**columns, "lsl_time_s": s.time_stamps})


# ------------------------------------------------------------------ EEG and physiology


def _pick(recording: XdfRecording, name: str | None, test, what: str) -> XdfStream:
    if name is not None:
        return recording.stream(name)
    hits = [s for s in recording.streams if test(s) and s.n_samples and s.nominal_srate > 0]
    if not hits:
        raise InputFileError(
            recording.path,
            f"no {what} stream with samples",
            "streams: " + ", ".join(f"{s.name} ({s.type}, {s.n_samples} samples)"
                                    for s in recording.streams),
        )  # fmt: skip
    return max(hits, key=lambda s: (len(s.channel_labels), s.n_samples))


def _is_physio(stream: XdfStream) -> bool:
    text = f"{stream.type} {stream.name}".lower()
    return (
        stream.type.lower() not in ("eeg", FRAME_COUNTER_TYPE)
        and not stream.is_marker
        and any(re.search(rf"\b{word}", text) for word in _PHYSIO_WORDS)
    )


def read_xdf_eeg(
    path: str | os.PathLike[str], *, stream: str | None = None, marker_stream: str | None = None,
    preload: bool = True, verbose: Any = None,
) -> Any:  # fmt: skip
    """The EEG stream of an XDF file as an MNE `RawArray`, markers as annotations.

    stream : the EEG stream's name (default: the stream of type EEG with most channels).
    marker_stream : see `xdf_markers`. Each marker is placed at the EEG sample whose
        (dejittered) LSL time it has; annotation descriptions are the integer codes, so
        `mmhe.io.eeg.eeg_markers` reads them. Data in volts (channel units microvolts
        unless the stream says otherwise); sfreq = the nominal rate.
    `raw.info["description"]` names the file and stream. Raises `InputFileError`.
    """
    import mne

    recording = read_xdf(path)
    eeg = _pick(recording, stream, lambda s: s.type.lower() == "eeg", "EEG")
    scale = np.array([_UNIT_SCALE.get(u.strip().lower(), 1e-6) for u in eeg.channel_units])
    data = (eeg.values() * scale).T
    sfreq = float(eeg.nominal_srate)
    info = mne.create_info(eeg.channel_labels, sfreq, "eeg")
    info["description"] = f"{recording.path.name}: LSL stream {eeg.name!r}"
    raw = mne.io.RawArray(data, info, verbose="error")
    markers = xdf_markers(recording, stream=marker_stream, valid=None)  # eeg_markers filters
    if len(markers):
        onset = _markers_on(eeg, markers, sfreq)
        raw.set_annotations(
            mne.Annotations(onset["onset_s"], 0.0, onset["code"].astype(str).tolist())
        )
    return raw


def read_xdf_physio(
    path: str | os.PathLike[str], *, stream: str | None = None, marker_stream: str | None = None
) -> Any:
    """The physiology stream of an XDF file as a `mmhe.io.biopac.PhysioRecording`.

    stream : the stream's name (default: a regular stream whose type or name says
        physiology: Physio, BIOPAC, PPG, ECG, EDA, GSR, RSP, ExG, Bio...).
    Channels are named by `canonical_channel_names` from the stream's channel labels;
    markers come from the marker stream (see `xdf_markers`, codes 100..148 kept, others
    counted in ``markers.attrs["dropped_codes"]``), on this stream's samples.
    Raises `InputFileError` when there is no such stream.
    """
    from mmhe.io.biopac import PhysioRecording, canonical_channel_names

    recording = read_xdf(path)
    physio = _pick(recording, stream, _is_physio, "physiology")
    names = canonical_channel_names(physio.channel_labels)
    sfreq = float(physio.nominal_srate)
    signals = pd.DataFrame(physio.values(), columns=names)
    markers = _markers_on(physio, xdf_markers(recording, stream=marker_stream), sfreq)
    markers.attrs.setdefault("glitches", 0)
    events = pd.DataFrame({"onset_s": [], "text": [], "type": [], "channel": []}).astype(
        {"onset_s": "float64"}
    )
    return PhysioRecording(
        sfreq=sfreq,
        signals=signals,
        units=dict(zip(names, physio.channel_units, strict=True)),
        markers=markers,
        events=events,
        original_rates=dict.fromkeys(names, sfreq),
        path=recording.path,
        has_trigger_lines=False,
        channel_labels=dict(zip(names, physio.channel_labels, strict=True)),
    )


# ------------------------------------------------------------------ store wiring


def is_xdf(path: str | os.PathLike[str] | None) -> bool:
    """Whether `path` names an XDF file (by extension)."""
    return path is not None and Path(path).suffix.lower() == ".xdf"


def xdf_alignment_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of the store's alignment table, one per LSL stream (device ``lsl:<name>``).

    offset_s : the stream's first time stamp minus the EEG stream's (LSL clock, s).
    drift_ppm : rate of the stream's sample clock against the EEG's, from pyxdf's
        effective rates (0 for irregular streams, whose times are LSL times).
    n_matched : clock-offset measurements pyxdf fitted; n_unmatched : 0.
    residual_ms_median / residual_ms_max : the stream's timing residual: |time stamp -
        dejittered line| (regular streams) and the clock-offset scatter (all streams).
    warnings : the stream's problem (empty, clock reset, gaps), if any.
    """
    recording = read_xdf(path)
    eeg = [s for s in recording.streams if s.type.lower() == "eeg" and s.n_samples]
    reference = max(eeg, key=lambda s: len(s.channel_labels)) if eeg else None
    start = reference.time_stamps[0] if reference is not None else np.nan
    eeg_ratio = 1.0
    if reference is not None and reference.nominal_srate > 0 and reference.effective_srate > 0:
        eeg_ratio = reference.effective_srate / reference.nominal_srate
    rows = []
    for s in recording.streams:
        ratio = 1.0
        if s.nominal_srate > 0 and s.effective_srate > 0:
            ratio = s.nominal_srate / s.effective_srate
        residuals = [v for v in (s.jitter_ms_max, s.offset_residual_ms_max) if np.isfinite(v)]
        rows.append(
            {
                "device": f"lsl:{s.name}",
                "offset_s": float(s.time_stamps[0] - start) if s.n_samples else np.nan,
                "drift_ppm": (ratio * eeg_ratio - 1.0) * 1e6 if s.n_samples else np.nan,
                "n_matched": s.n_clock_offsets,
                "n_unmatched": 0,
                "residual_ms_median": s.jitter_ms_median,
                "residual_ms_max": max(residuals) if residuals else np.nan,
                "warnings": _stream_problem(s) or "",
            }
        )
    return rows
