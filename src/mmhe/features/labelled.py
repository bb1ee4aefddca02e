"""Cached features as labelled `xarray.DataArray`s: named dimensions and coordinates.

`mmhe.features.batch.load_features(..., labelled=True)` returns these:

- face: (sample, flow, y, x), flow = strain, horizontal, vertical (`flow_image`);
- eeg: (sample, window, channel, band) log10 V^2/Hz, channel names, band names with their
  edges in Hz (``band_low_hz`` / ``band_high_hz``), ``window_start_s`` (seconds from the
  window start of the expression, or the trial's marker); NaN after the last window;
- physio: (sample, feature), one NeuroKit2 feature per column of the feature table.

``sample`` is the expression id (``"sub-001/3"``, participant/trial index, for trial
features); the table's identifier and label columns (subject_id, kind, emotion,
compound, marker, trial_index, ok, n_windows, ...) are coordinates along it, so
``features.sel(sample=features.compound == "negative")`` or ``.groupby("subject_id")``
work directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

FLOW_COMPONENTS: tuple[str, ...] = ("strain", "horizontal", "vertical")
"""Channel order of `mmhe.features.flow.flow_image`."""


def _sample_coords(table: pd.DataFrame, trial: bool) -> dict[str, Any]:
    """``sample`` ids plus every other column of ``table`` as a coordinate along it."""
    if trial:
        ids = (table["subject_id"] + "/" + table["trial_index"].astype(str)).to_numpy(str)
    else:
        ids = table["expression_id"].to_numpy(str)
    coords: dict[str, Any] = {"sample": ids}
    for column in table.columns:
        if column == "expression_id":
            continue
        values = table[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            values = values.astype("float64") if values.hasnans else values
        else:
            values = values.astype(object).where(values.notna(), "").astype(str)
        coords[column] = ("sample", np.asarray(values))
    return coords


def labelled(
    table: pd.DataFrame,
    array: np.ndarray | None,
    modality: str,
    *,
    trial: bool,
    channels: list[str] | None,
    params: dict[str, Any],
    window_s: float = 1.0,
):
    """One DataArray of the features of ``modality`` (see the module docstring)."""
    import xarray as xr

    from mmhe.features.eeg import FIVE_BANDS

    attrs = {"modality": modality, "level": "trial" if trial else "expression", **_flat(params)}
    if modality == "physio":
        from mmhe.features.batch import NON_FEATURE_COLUMNS

        features = [
            c
            for c in table.columns
            if c not in NON_FEATURE_COLUMNS and pd.api.types.is_numeric_dtype(table[c])
        ]
        coords = _sample_coords(table.drop(columns=features), trial)
        return xr.DataArray(
            table[features].to_numpy(np.float64),
            dims=("sample", "feature"),
            coords={**coords, "feature": features},
            name="physio_features",
            attrs=attrs,
        )
    coords = _sample_coords(table, trial)
    if modality == "face":
        return xr.DataArray(
            array,
            dims=("sample", "flow", "y", "x"),
            coords={**coords, "flow": list(FLOW_COMPONENTS)},
            name="face_flow",
            attrs=attrs,
        )
    bands = list(FIVE_BANDS)
    array = np.asarray(array)
    if array.ndim != 4:  # no sample at all
        array = np.zeros((0, 0, len(channels or []), len(bands)), np.float32)
    return xr.DataArray(
        array,
        dims=("sample", "window", "channel", "band"),
        coords={
            **coords,
            "window": np.arange(array.shape[1]),
            "window_start_s": ("window", np.arange(array.shape[1]) * float(window_s)),
            "channel": list(channels or []),
            "band": bands,
            "band_low_hz": ("band", [FIVE_BANDS[b][0] for b in bands]),
            "band_high_hz": ("band", [FIVE_BANDS[b][1] for b in bands]),
        },
        name="eeg_band_power",
        attrs={**attrs, "units": "log10(V^2/Hz)"},
    )


def _flat(params: dict[str, Any]) -> dict[str, Any]:
    """Feature parameters as netCDF-friendly attributes (tuples -> strings)."""
    return {
        f"param_{k}": v if isinstance(v, (int, float, str, bool)) else str(v)
        for k, v in params.items()
        if v is not None
    }
