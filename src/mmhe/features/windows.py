"""Sample bounds of analysis windows locked to expressions or to whole stimulus trials.

Times are in seconds on one device's clock, with time 0 at that recording's first
sample (`mmhe.sync` converts camera times of the coding file to device times). A window
``[t_start, t_end)`` becomes the samples ``start = round(t_start * sfreq)`` up to, not
including, ``stop = round(t_end * sfreq)`` (nearest sample, NumPy's round-half-to-even),
so ``data[..., start:stop]`` cuts it. Everything is vectorised: one call handles every
expression of a recording.

Windows are clipped to the recording ``[0, n_samples)``; ``clipped`` says which were.
A window with a missing (NaN) time, or with nothing left after clipping, is marked
``valid = False`` (its bounds are 0, 0), so a batch can report it instead of dropping it.

Defaults (issue 7): EEG from onset - 1 s to offset + 1 s; physiology from onset - 2 s to
onset + 6 s, because autonomic responses lag the expression by seconds (skin conductance
responses peak 2-5 s after a stimulus; Boucsein 2012, "Electrodermal Activity").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mmhe.errors import ConfigError

Anchor = Literal["onset", "apex", "offset"]
ANCHORS: tuple[str, ...] = ("onset", "apex", "offset")


class WindowBounds(NamedTuple):
    """Bounds of many windows, each array of shape (n_windows,).

    start, stop : int64 sample indices (``data[..., start:stop]``)
    clipped : bool, True where the requested window reached outside the recording
    valid : bool, False where a time was NaN or nothing of the window is in the recording
    """

    start: NDArray[np.int64]
    stop: NDArray[np.int64]
    clipped: NDArray[np.bool_]
    valid: NDArray[np.bool_]


@dataclass(frozen=True)
class WindowSpec:
    """A window relative to an expression: ``start`` and ``end`` are (anchor, seconds).

    ``WindowSpec(("onset", -2.0), ("onset", 6.0))`` is onset - 2 s to onset + 6 s.
    """

    start: tuple[Anchor, float]
    end: tuple[Anchor, float]

    def __post_init__(self) -> None:
        for name, (anchor, offset_s) in (("start", self.start), ("end", self.end)):
            if anchor not in ANCHORS:
                raise ConfigError(f"window {name} anchor {anchor!r} is not one of {ANCHORS}")
            if not np.isfinite(offset_s):
                raise ConfigError(f"window {name} offset {offset_s!r} s is not a finite number")
        if self.start[0] == self.end[0] and self.end[1] <= self.start[1]:
            raise ConfigError(
                f"window ends ({self.end}) before it starts ({self.start}); swap them"
            )

    def bounds(
        self,
        onset_s: ArrayLike,
        offset_s: ArrayLike | None = None,
        *,
        sfreq: float,
        apex_s: ArrayLike | None = None,
        n_samples: int | None = None,
    ) -> WindowBounds:
        """`window_bounds` with this window's start and end."""
        return window_bounds(
            onset_s,
            offset_s,
            start=self.start,
            end=self.end,
            sfreq=sfreq,
            apex_s=apex_s,
            n_samples=n_samples,
        )


EEG_WINDOW = WindowSpec(("onset", -1.0), ("offset", 1.0))
"""EEG around an expression: onset - 1 s to offset + 1 s."""
PHYSIO_WINDOW = WindowSpec(("onset", -2.0), ("onset", 6.0))
"""Peripheral physiology: onset - 2 s to onset + 6 s (autonomic responses lag)."""
RSP_WINDOW = WindowSpec(("onset", -5.0), ("onset", 10.0))
"""Respiration needs >= 15 s (one breath at 4 /min, `mmhe.features.physio.MIN_DURATION_S`)."""


def _check_sfreq(sfreq: float) -> float:
    if not np.isfinite(sfreq) or sfreq <= 0:
        raise ConfigError(f"sfreq must be a positive number of Hz, got {sfreq}")
    return float(sfreq)


def _clip(
    t_start: NDArray[np.float64], t_end: NDArray[np.float64], sfreq: float, n_samples: int | None
) -> WindowBounds:
    valid = np.isfinite(t_start) & np.isfinite(t_end)
    start = np.round(np.where(valid, t_start, 0.0) * sfreq).astype(np.int64)
    stop = np.round(np.where(valid, t_end, 0.0) * sfreq).astype(np.int64)
    upper = np.iinfo(np.int64).max if n_samples is None else int(n_samples)
    if upper < 0:
        raise ConfigError(f"n_samples must be >= 0, got {n_samples}")
    clipped = valid & ((start < 0) | (stop > upper))
    start = np.clip(start, 0, upper)
    stop = np.clip(stop, 0, upper)
    valid &= stop > start
    start[~valid] = 0
    stop[~valid] = 0
    return WindowBounds(start, stop, clipped, valid)


def window_bounds(
    onset_s: ArrayLike,
    offset_s: ArrayLike | None = None,
    *,
    start: tuple[Anchor, float] = EEG_WINDOW.start,
    end: tuple[Anchor, float] = EEG_WINDOW.end,
    sfreq: float,
    apex_s: ArrayLike | None = None,
    n_samples: int | None = None,
) -> WindowBounds:
    """Sample bounds of windows locked to expressions.

    onset_s, offset_s, apex_s : arrays, shape (n,) (or scalars), seconds from the
        recording's first sample; only the anchors that ``start``/``end`` use are needed
    start, end : (anchor, seconds) with anchor ``"onset"``, ``"apex"`` or ``"offset"``;
        the default is EEG's onset - 1 s to offset + 1 s (`EEG_WINDOW`)
    sfreq : sampling rate of the recording in Hz
    n_samples : length of the recording, to clip to; None clips at 0 only
    Returns `WindowBounds` (start, stop, clipped, valid), each shape (n,).

    >>> window_bounds([10.0, 0.5], [10.4, 1.0], sfreq=1000.0, n_samples=11_000).start
    array([9000,    0])
    """
    spec = WindowSpec(start, end)
    sfreq = _check_sfreq(sfreq)
    times = {"onset": onset_s, "offset": offset_s, "apex": apex_s}
    arrays = {}
    for anchor in {spec.start[0], spec.end[0]}:
        if times[anchor] is None:
            raise ConfigError(f"the window uses the {anchor} but {anchor}_s was not given")
        arrays[anchor] = np.asarray(times[anchor], dtype=np.float64)
    try:
        t_start, t_end = np.broadcast_arrays(
            np.atleast_1d(arrays[spec.start[0]] + spec.start[1]),
            np.atleast_1d(arrays[spec.end[0]] + spec.end[1]),
        )
    except ValueError:
        shapes = {anchor: array.shape for anchor, array in arrays.items()}
        raise ConfigError(f"time arrays have different shapes {shapes}") from None
    if t_start.ndim != 1:
        raise ConfigError(f"times must be 1-D arrays (one per expression), got {t_start.shape}")
    return _clip(t_start, t_end, sfreq, n_samples)


def trial_bounds(
    start_s: ArrayLike,
    stop_s: ArrayLike,
    *,
    sfreq: float,
    pad_s: tuple[float, float] = (0.0, 0.0),
    n_samples: int | None = None,
) -> WindowBounds:
    """Sample bounds of whole-trial windows (a stimulus clip from its start to its end).

    start_s, stop_s : arrays, shape (n,), seconds from the recording's first sample
    pad_s : seconds added before the start and after the stop (negative trims)
    sfreq : Hz; n_samples : recording length to clip to (None: clip at 0 only)
    Returns `WindowBounds`, each shape (n,).
    """
    sfreq = _check_sfreq(sfreq)
    before, after = (float(p) for p in pad_s)
    try:
        t_start, t_end = np.broadcast_arrays(
            np.atleast_1d(np.asarray(start_s, dtype=np.float64)) - before,
            np.atleast_1d(np.asarray(stop_s, dtype=np.float64)) + after,
        )
    except ValueError:
        raise ConfigError("start_s and stop_s must have the same shape") from None
    if t_start.ndim != 1:
        raise ConfigError(f"times must be 1-D arrays (one per trial), got {t_start.shape}")
    return _clip(t_start, t_end, sfreq, n_samples)


def cut_windows(data: NDArray[np.generic], bounds: WindowBounds) -> list[NDArray[np.generic]]:
    """The windows of ``data`` (shape (..., n_samples)) as views, one per window.

    Invalid windows come back empty (``shape (..., 0)``), so the list keeps one entry per
    window. Views, not copies: copy a window before modifying it.
    """
    return [data[..., int(a) : int(b)] for a, b in zip(bounds.start, bounds.stop, strict=True)]
