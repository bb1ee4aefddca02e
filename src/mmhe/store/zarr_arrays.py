"""Zarr arrays that xarray opens: dimension names, coordinate arrays, consolidated metadata.

Layout of ``participants/<sid>/arrays.zarr`` (Zarr v3):

====================  ==============================================  =====================
array                 dimensions                                      content
====================  ==============================================  =====================
eeg_continuous        (eeg_channel, eeg_session_time)                 float32 volts, the
                                                                      whole session
eeg (only without     (trial, eeg_channel, eeg_time)                  float32 volts, NaN
keep_continuous_eeg)                                                  after a trial's end
physio                (trial, physio_channel, physio_time)            float32, units per
                                                                      channel
frames/<id>/image     (frame, y, x, color)                            uint8 face frames
====================  ==============================================  =====================

Coordinates (arrays named like their dimension, opened by xarray as indexes):
``trial`` (trial_index), ``eeg_channel`` / ``physio_channel`` (names), ``eeg_time`` /
``physio_time`` (seconds from a trial's first stored sample, i.e. from its stimulus
marker when ``trial_padding_s`` = 0), ``eeg_session_time`` (seconds from the EEG
recording's first sample), ``frame`` (camera frame index, the numbers of the
expressions table's ``frame_onset`` / ``frame_apex`` / ``frame_offset``), ``color``.
Non-index coordinates: ``marker``, ``category``, ``eeg_start`` and ``n_eeg_samples`` (where
each trial lies in ``eeg_continuous``, in samples) along ``trial``, ``eeg_channel_type``,
``physio_unit``, and ``time`` along ``frame`` (seconds on the EEG clock, the axis of
``eeg_session_time``). The trials' EEG is ``eeg_continuous[:, eeg_start : eeg_start +
n_eeg_samples]``; `MMHEStore.eeg` and `MMHEStore.to_xarray` give it as a trials x channels
x samples array (`mmhe.store.trial_view`).

>>> import xarray as xr                                                  # doctest: +SKIP
>>> xr.open_zarr("STORE/v-.../participants/sub-001/arrays.zarr")       # doctest: +SKIP
>>> xr.open_zarr(".../arrays.zarr", group="frames/sub-001-r00001")     # doctest: +SKIP
>>> xr.open_datatree(".../arrays.zarr", engine="zarr")                 # every array
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

COMPRESSIONS: tuple[str, ...] = ("fast", "small", "none")
"""Compression settings of `IngestConfig.compression` (see `array_compressors`)."""


def array_compressors(kind: str, compression: str = "fast") -> Any:
    """Zarr compressors for an array ``kind`` ("signal": EEG / physiology float32;
    "frames": uint8 images) under a ``compression`` setting.

    "fast" (default): Blosc LZ4 with bit shuffle for both kinds. Measured on the demo
    store (one participant's arrays written through Zarr, best of 3): EEG 1.3x faster to
    write than Zstd and smaller (compression ratio 1.20 vs 1.08 on the synthetic noise),
    physiology 1.4x faster (2.07 vs 1.64), frames 1.35x faster (1.43 vs 1.47); Zstd
    encoding took 30-48 % of ingest time before. "small": Zstd (Zarr's default; the
    smallest frames); "none": uncompressed (frames 1.8x faster to write than Zstd, at
    full size).
    """
    from zarr.codecs import BloscCodec

    if compression == "small":
        return "auto"
    if compression == "none":
        return None
    if compression != "fast":
        raise ValueError(f"compression {compression!r} is not one of {COMPRESSIONS}")
    if kind not in ("signal", "frames"):
        raise ValueError(f"array kind {kind!r} is not 'signal' or 'frames'")
    return [BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")]


def create_data_array(
    group,
    name: str,
    *,
    shape: tuple[int, ...],
    dtype: str,
    chunks: tuple[int, ...],
    dims: Sequence[str],
    coordinates: Sequence[str] = (),
    fill_value: Any = None,
    attrs: dict[str, Any] | None = None,
    compressors: Any = "auto",
    shards: tuple[int, ...] | None = None,
):
    """An empty Zarr array with dimension names; ``coordinates`` lists the non-index
    coordinate arrays xarray should attach to it (CF ``coordinates`` attribute);
    ``compressors`` as Zarr takes them (`array_compressors`); ``shards`` (a multiple of
    ``chunks``) stores many chunks in one file, each still read on its own."""
    if len(dims) != len(shape):
        raise ValueError(f"{name}: {len(dims)} dimension names for a {len(shape)}-d array")
    kwargs: dict[str, Any] = {"compressors": compressors}
    if shards is not None:
        kwargs["shards"] = shards
    if fill_value is not None:
        kwargs["fill_value"] = fill_value
    meta = dict(attrs or {})
    if coordinates:
        meta["coordinates"] = " ".join(coordinates)
    return group.create_array(
        name,
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        dimension_names=list(dims),
        attributes=meta,
        # write every chunk as given: by default Zarr first compares each chunk with the
        # fill value (a full scan of its pixels or samples) to skip storing it; a skipped
        # chunk and a stored one read the same
        config={"write_empty_chunks": True},
        **kwargs,
    )


def write_coordinate(
    group,
    name: str,
    values: Sequence[Any] | np.ndarray,
    dim: str,
    *,
    chunk: int | None = None,
    attrs: dict[str, Any] | None = None,
):
    """A 1-d coordinate array along ``dim`` (strings stored as variable-length UTF-8).

    Created with its attributes and values in one Zarr call: an array costs
    milliseconds of Zarr overhead per call, and ingest writes hundreds of coordinates.
    """
    values = np.asarray(values)
    if values.dtype.kind in "UO":  # numpy's variable-length strings: Zarr's vlen UTF-8
        values = values.astype(np.dtypes.StringDType())
    return group.create_array(
        name,
        data=values,
        chunks=(min(len(values), chunk),) if chunk and len(values) else "auto",
        dimension_names=[dim],
        attributes=dict(attrs or {}),
    )


def consolidate(path: str | Path) -> None:
    """Write consolidated metadata so ``xarray.open_zarr`` opens the store in one read.

    Zarr warns that consolidated metadata is not (yet) part of the v3 specification;
    xarray and zarr-python both read it, and it is rewritten with every store version.
    """
    import zarr

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata")
        zarr.consolidate_metadata(str(path))


def seconds(n: int, sfreq: float) -> np.ndarray:
    """Sample times (n,) in seconds of a signal sampled at ``sfreq`` Hz."""
    return np.arange(n, dtype=np.float64) / float(sfreq)
