"""Device clocks and camera frame timing of a synthetic session.

The reference time ``t`` (seconds) is the EEG recording's clock: the EEG starts at
t = 0 and does not drift. Every other device reads its own clock,

    device_time = offset_s + t * (1 + drift_ppm * 1e-6),

seconds since its own recording start for the BIOPAC, PC time of day for the camera.
A device's sample index is ``round(device_time * rate_hz)``.

The camera polls the trigger line: while the marker is on it grabs frames at its own
150 fps, names each with the PC time of day (to the millisecond, with about 1 ms of
jitter), a frame counter that wraps at 1000 and the marker. A dropped frame advances
the counter but is never written.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from mmhe.io.frame_names import COUNTER_MODULUS


@dataclass(frozen=True)
class DeviceClock:
    """A device clock relative to the EEG clock (see the module docstring)."""

    name: str
    offset_s: float
    drift_ppm: float
    rate_hz: float

    @property
    def scale(self) -> float:
        return 1.0 + self.drift_ppm * 1e-6

    def device_time(self, t: np.ndarray | float) -> np.ndarray:
        """Device clock reading (s) at EEG time(s) `t` (s)."""
        return self.offset_s + np.asarray(t, dtype=float) * self.scale

    def eeg_time(self, device_t: np.ndarray | float) -> np.ndarray:
        """EEG time (s) at device clock reading(s) `device_t` (s)."""
        return (np.asarray(device_t, dtype=float) - self.offset_s) / self.scale

    def sample(self, t: np.ndarray | float) -> np.ndarray:
        """Device sample index (int64) at EEG time(s) `t`."""
        return np.rint(self.device_time(t) * self.rate_hz).astype(np.int64)

    def to_json(self) -> dict[str, float | str]:
        return {
            "offset_s": round(self.offset_s, 9),
            "drift_ppm": round(self.drift_ppm, 6),
            "rate_hz": self.rate_hz,
        }


@dataclass(frozen=True)
class CameraRun:
    """The frames the camera grabbed while one marker was on the trigger line.

    All arrays have shape (n_grabbed,): `eeg_t` true exposure time on the EEG clock (s),
    `stamp_ms` time of day written in the name (ms since midnight), `counter` (0..999),
    `written` False for a dropped frame (counted but never saved).
    """

    marker: int
    date: dt.date
    eeg_t: np.ndarray
    stamp_ms: np.ndarray
    counter: np.ndarray
    written: np.ndarray

    def __len__(self) -> int:
        return len(self.eeg_t)

    def file_name(self, index: int) -> str:
        """``YYYY-MM-DD-HH-MM-SS-mmm-CCC-MARKER.tif`` of grabbed frame `index`."""
        return f"{self.date:%Y-%m-%d}-{self.coding_name(index)}-{self.marker}.tif"

    def coding_name(self, index: int, counter: bool = True) -> str:
        """``HH-MM-SS-mmm-CCC`` (or ``HH-MM-SS-mmm`` without the counter)."""
        ms = int(self.stamp_ms[index])
        hours, rest = divmod(ms, 3_600_000)
        minutes, rest = divmod(rest, 60_000)
        seconds, millis = divmod(rest, 1000)
        text = f"{hours:02d}-{minutes:02d}-{seconds:02d}-{millis:03d}"
        return f"{text}-{int(self.counter[index]):03d}" if counter else text

    def nearest_written(self, t: float) -> int:
        """Index of the written frame whose exposure is nearest to EEG time `t` (s)."""
        candidates = np.flatnonzero(self.written)
        return int(candidates[np.argmin(np.abs(self.eeg_t[candidates] - t))])


def camera_run(
    clock: DeviceClock,
    marker: int,
    on_s: float,
    off_s: float,
    *,
    date: dt.date,
    counter_start: int,
    rng: np.random.Generator,
    jitter_ms: float = 1.0,
    dropped: int = 0,
    protected: int = 1,
) -> CameraRun:
    """Frames grabbed while `marker` is on from EEG time `on_s` to `off_s` (s).

    The first grab follows the marker after a polling latency of up to one frame.
    Timestamps jitter by N(0, `jitter_ms`) clipped to +-2.5 ms (names stay ordered).
    `dropped` frames, never among the first and last `protected`, are not written.
    """
    period = 1.0 / clock.rate_hz
    first = clock.device_time(on_s) + rng.uniform(0.0, period)
    n = max(1, int(np.ceil((clock.device_time(off_s) - first) / period)))
    device_t = first + np.arange(n) * period
    jitter = np.clip(rng.normal(0.0, jitter_ms * 1e-3, n), -2.5e-3, 2.5e-3)
    stamp_ms = np.floor((device_t + jitter) * 1000.0).astype(np.int64)
    written = np.ones(n, dtype=bool)
    inner = np.arange(protected, n - protected)
    if dropped and inner.size > dropped:
        written[rng.choice(inner, size=dropped, replace=False)] = False
    counter = (counter_start + np.arange(n)) % COUNTER_MODULUS
    return CameraRun(marker, date, clock.eeg_time(device_t), stamp_ms, counter, written)
