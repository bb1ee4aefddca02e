"""Each trial's EEG as a view of the continuous session: one copy of the samples on disk.

Ingest stores the session once (``eeg_continuous``, channels x samples) and, along the
``trial`` dimension, where each trial lies in it (``eeg_start``, ``n_eeg_samples``:
samples on the session's clock, padding included). `TrialEEG` shows these spans as the
trials x channels x samples array that stores kept as a second copy before store format
3 (NaN after a trial's end), so readers index it as they index a Zarr array and only the
asked samples are read (5-s chunks inside 60-s shard files). Measured on the demo raw
tree (10 participants, ``mmhe ingest --scheduler sync``, 3 alternated runs each against the
previous commit): the store shrank from 1,326 to 867 MB, ingest took 1.20x less wall time
(22.3 against 26.8 s) and 1.17x less CPU (25.0 against 29.3 s).

>>> view = store.eeg("sub-001")                       # doctest: +SKIP
>>> view.shape, view[1, :, :1000].shape               # doctest: +SKIP
((9, 68, 26327), (68, 1000))
"""

from __future__ import annotations

import operator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mmhe.errors import InputFileError

__all__ = ["TRIAL_DIMS", "TrialEEG"]

TRIAL_DIMS = ("trial", "eeg_channel", "eeg_time")
"""Dimension names of the trial view (those of the stored ``eeg`` array before format 3)."""


class TrialEEG:
    """Trials x channels x samples (float32 volts, NaN after each trial's end), read from
    the continuous session.

    session : the (channels, samples) ``eeg_continuous`` Zarr array (or any array with
        ``shape``, ``attrs`` and slicing). starts, lengths : (trials,) first sample and
        sample count of each trial on the session. path : the Zarr group, named in errors.
    Indexing takes up to three keys (integers, slices, 1-d integer lists, ``...``) and
    returns a NumPy array, as Zarr does; lists in several places select orthogonally
    (each axis on its own, as Zarr's ``oindex``). Raises `InputFileError` when a trial does not
    lie inside the session (a damaged store).
    """

    def __init__(
        self,
        session: Any,
        starts: NDArray[np.integer],
        lengths: NDArray[np.integer],
        path: str | Path = "",
    ) -> None:
        self.session = session
        self.starts = np.asarray(starts, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        n_channels, n_samples = (int(v) for v in session.shape)
        outside = np.flatnonzero(
            (self.starts < 0) | (self.lengths < 0) | (self.starts + self.lengths > n_samples)
        )
        if self.starts.shape != self.lengths.shape or len(outside):
            where = outside.tolist() if len(outside) else "all"
            raise InputFileError(
                path,
                f"trial(s) {where} do not lie inside the {n_samples}-sample EEG session",
                "the store is damaged; ingest again into a new folder",
            )
        longest = int(self.lengths.max()) if len(self.lengths) else 0
        self.shape = (len(self.starts), n_channels, longest)
        self.dtype = np.dtype(session.dtype)
        self.ndim = 3
        self.dims = TRIAL_DIMS
        self.attrs = {**dict(session.attrs), "coordinates": "marker category eeg_channel_type"}

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"<TrialEEG {self.shape} {self.dtype}, a view of eeg_continuous>"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        data = self[...]
        return data if dtype is None else data.astype(dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        trials, channels, times = _three_keys(key)
        trial_index = np.arange(self.shape[0])[trials]
        channel_index = np.arange(self.shape[1])[channels]
        if isinstance(times, slice) and times.step in (None, 1):
            first, stop, _ = times.indices(self.shape[2])
            time_index = None
        else:
            time_index = np.arange(self.shape[2])[times]
            first, stop = 0, 0
            if time_index.size:
                first, stop = int(time_index.min()), int(time_index.max()) + 1
        stop = max(stop, first)
        out = np.full((trial_index.size, channel_index.size, stop - first), np.nan, self.dtype)
        channel_key = _as_key(channel_index, self.shape[1])
        for row, trial in enumerate(trial_index.ravel()):
            end = min(stop, int(self.lengths[trial]))
            if end > first:
                begin = int(self.starts[trial])
                block = self.session[:, begin + first : begin + end]
                out[row, :, : end - first] = block[channel_key]
        if time_index is not None:
            out = out[..., time_index - first]
        # drop the axes that integer keys remove, as NumPy and Zarr do
        shape = (*trial_index.shape, *channel_index.shape, *out.shape[2:])
        return out.reshape(shape)


def _three_keys(key: Any) -> tuple[Any, Any, Any]:
    """(trial, channel, time) keys from a NumPy-style key of at most three parts."""
    parts = key if isinstance(key, tuple) else (key,)
    ellipses = [i for i, part in enumerate(parts) if part is Ellipsis]
    if len(ellipses) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if ellipses:
        at = ellipses[0]
        parts = parts[:at] + (slice(None),) * (3 - len(parts) + 1) + parts[at + 1 :]
    if len(parts) > 3:
        raise IndexError(f"too many indices for a 3-d array: {len(parts)} were given")
    parts = parts + (slice(None),) * (3 - len(parts))
    return tuple(_checked(part) for part in parts)  # type: ignore[return-value]


def _checked(part: Any) -> Any:
    if isinstance(part, slice):
        return part
    if isinstance(part, np.ndarray | list | tuple):
        array = np.asarray(part)
        if array.dtype.kind not in "iu" or array.ndim != 1:
            raise IndexError("only integers, slices, 1-d integer lists and '...' are valid")
        return array
    try:
        return operator.index(part)
    except TypeError:
        raise IndexError(
            f"only integers, slices, 1-d integer lists and '...' are valid, not {part!r}"
        ) from None


def _as_key(index: np.ndarray, size: int) -> slice | np.ndarray:
    """A slice when ``index`` is every row in order (Zarr then reads no copy), else it."""
    flat = index.ravel()
    if flat.size == size and np.array_equal(flat, np.arange(size)):
        return slice(None)
    return flat
