"""Reading a store: tables as DataFrames, arrays lazily, MNE Epochs and a PyTorch Dataset."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mmhe.errors import InputFileError

if TYPE_CHECKING:
    import zarr

    from mmhe.store.trial_view import TrialEEG

EMPTY_COLUMNS: dict[str, list[str]] = {
    "trials": ["subject_id", "trial_index", "code", "category", "onset_s", "end_s"],
    "expressions": [
        "expression_id",
        "row",
        "subject_id",
        "marker",
        "emotion",
        "compound",
        "kind",
        "aus",
        "locate_problem",
        "trial_index",
        "stored_frames",
    ],
    "events": ["subject_id", "device", "onset_s", "code"],
    "alignment": ["subject_id", "device", "offset_s", "drift_ppm", "n_matched"],
    "issues": ["subject_id", "row", "severity", "code", "message", "file"],
    "action_units": ["expression_id", "subject_id", "au", "name", "region"],
}
"""Columns of each table when a store has no participant folder with that table."""


def _as_list(value: object) -> list | None:
    if value is None:
        return None
    if isinstance(value, (str, int, np.integer)):
        return [value]
    return list(value)  # type: ignore[arg-type]


class MMHEStore:
    """An ingested store (one parameter version of it).

    >>> store = MMHEStore("store")                                # doctest: +SKIP
    >>> store.expressions(kind="ME", compound="negative")         # doctest: +SKIP
    """

    def __init__(self, path: str | Path, version: str | None = None) -> None:
        path = Path(path)
        if (path / "manifest.json").is_file():
            self.path = path
        else:
            latest = path / "latest.json"
            if version is None:
                if not latest.is_file():
                    raise InputFileError(
                        path,
                        "not an mmhe store (no latest.json or manifest.json)",
                        "create one with `mmhe ingest RAW --out STORE`",
                    )
                version = json.loads(latest.read_text())["version"]
            self.path = path / version
            if not (self.path / "manifest.json").is_file():
                raise InputFileError(
                    self.path,
                    "store version has no manifest.json",
                    "the ingest did not finish; run it again",
                )
        self.manifest: dict[str, Any] = json.loads((self.path / "manifest.json").read_text())
        self._cache: dict[str, pd.DataFrame] = {}
        self._groups: dict[str, Any] = {}  # opened arrays.zarr groups (read-only)
        self._trial_views: dict[str, Any] = {}  # EEG trial arrays or views, per participant

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_groups": {}, "_trial_views": {}}  # a worker opens its own

    # ------------------------------------------------------------ tables

    def participant_ids(self) -> list[str]:
        return sorted(
            p.name
            for p in (self.path / "participants").iterdir()
            if p.is_dir() and not p.name.startswith(".")
        )

    def _read(self, name: str, subject_ids: list[str]) -> pd.DataFrame:
        """Table `name` of the given participants, concatenated (their files only)."""
        files = [self.path / "participants" / sid / f"{name}.parquet" for sid in subject_ids]
        parts = [pd.read_parquet(f) for f in files if f.is_file()]  # unknown ids: no rows
        filled = [p for p in parts if len(p)]
        if filled:
            table = pd.concat(filled, ignore_index=True)
        elif parts:  # no rows anywhere: keep the columns (and types) of a written table
            table = max(parts, key=lambda p: p.shape[1]).iloc[0:0]
        else:
            table = pd.DataFrame(columns=EMPTY_COLUMNS.get(name, []))
        if name == "expressions" and len(table):
            table["aus"] = [tuple(int(a) for a in x) for x in table["aus"]]
        return table

    def _table(self, name: str, participant: str | Iterable[str] | None = None) -> pd.DataFrame:
        """Table `name` of every participant (read once, cached) or of some (read now)."""
        if participant is not None:
            return self._read(name, [str(p) for p in _as_list(participant)])
        if name not in self._cache:
            table = self._read(name, self.participant_ids())
            if name == "issues":
                store_issues = pd.read_parquet(self.path / "issues.parquet")
                table = pd.concat([store_issues, table], ignore_index=True)
            self._cache[name] = table
        return self._cache[name].copy()

    def participants(self) -> pd.DataFrame:
        """One row per participant: pseudonym, sex, age, modalities, counts, status."""
        return pd.read_parquet(self.path / "participants.parquet")

    def trials(
        self,
        *,
        participant: str | Iterable[str] | None = None,
        marker: int | Iterable[int] | None = None,
        category: str | Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """Stimulus trials (one per marker and participant) with their sample spans."""
        table = self._table("trials", participant)
        return _filter(table, code=marker, category=category)

    def expressions(
        self,
        *,
        participant: str | Iterable[str] | None = None,
        kind: str | None = None,
        emotion: str | Iterable[str] | None = None,
        compound: str | Iterable[str] | None = None,
        marker: int | Iterable[int] | None = None,
        located: bool | None = None,
    ) -> pd.DataFrame:
        """Expressions of the coding file with their located samples and stored frames."""
        table = self._table("expressions", participant)
        table = _filter(
            table,
            kind=kind,
            emotion=emotion,
            compound=compound,
            marker=marker,
        )
        if located is not None:
            table = table[table["locate_problem"].isna() == located]
        return table.reset_index(drop=True)

    def events(self) -> pd.DataFrame:
        return self._table("events")

    def alignment(self) -> pd.DataFrame:
        return self._table("alignment")

    def issues(self) -> pd.DataFrame:
        return self._table("issues")

    def action_units(self) -> pd.DataFrame:
        return self._table("action_units")

    # ------------------------------------------------------------ arrays

    def arrays_path(self, subject_id: str) -> Path:
        """The folder of a participant's Zarr arrays (``participants/<id>/arrays.zarr``)."""
        return self.path / "participants" / subject_id / "arrays.zarr"

    def _group(self, subject_id: str):
        """The participant's arrays.zarr group, read-only, opened once per store object:
        opening parses the consolidated metadata of every array (about 20 ms here), and
        a features run reads one expression's frames at a time."""
        import zarr

        group = self._groups.get(subject_id)
        if group is None:
            group = zarr.open_group(str(self.arrays_path(subject_id)), mode="r")
            self._groups[subject_id] = group
        return group

    def eeg(self, subject_id: str) -> zarr.Array | TrialEEG:
        """Each trial's EEG, lazy: trials x channels x samples (float32 volts, NaN after a
        trial's end), indexed like a Zarr array. Since store format 3 a view of
        ``eeg_continuous`` (`mmhe.store.trial_view.TrialEEG`); the stored ``eeg`` array of
        older stores and of stores ingested without the continuous session. Raises
        KeyError when the participant has no EEG."""
        view = self._trial_views.get(subject_id)
        if view is None:
            group = self._group(subject_id)
            if "eeg" in group:
                view = group["eeg"]
            elif "eeg_continuous" in group and "eeg_start" in group:
                from mmhe.store.trial_view import TrialEEG

                view = TrialEEG(
                    group["eeg_continuous"],
                    group["eeg_start"][:],
                    group["n_eeg_samples"][:],
                    self.arrays_path(subject_id),
                )
            else:
                raise KeyError("eeg")
            self._trial_views[subject_id] = view
        return view

    def physio(self, subject_id: str) -> zarr.Array:
        """Lazy zarr array (trials x channels x samples) of the BIOPAC signals."""
        return self._group(subject_id)["physio"]

    def frame_array(self, expression_id: str) -> zarr.Array:
        """Lazy zarr array of one expression's stored face frames (frames, H, W, C) uint8."""
        subject_id = expression_id.rsplit("-r", 1)[0]
        return self._group(subject_id)["frames"][expression_id]["image"]

    def frames(self, expression_id: str) -> np.ndarray:
        """Stored face frames of one expression: (frames, H, W, C) uint8. The first is
        camera frame ``frames_first`` of the expressions table."""
        return self.frame_array(expression_id)[...]

    def to_xarray(self, subject_id: str, expression_id: str | None = None):
        """A participant's arrays as a lazy `xarray.Dataset` (dimension names, channel
        names, times in seconds; see `mmhe.store.zarr_arrays`), or with `expression_id`
        that expression's frames (``image`` by ``frame`` and ``time``). The trials' EEG
        (``eeg``: trial x eeg_channel x eeg_time) is a lazy Dask array of one chunk per
        trial, read from ``eeg_continuous`` since store format 3."""
        import xarray as xr

        path = self.arrays_path(subject_id)
        group = None if expression_id is None else f"frames/{expression_id}"
        dataset = xr.open_zarr(path, group=group, consolidated=True)
        if expression_id is not None or "eeg" in dataset:
            return dataset
        try:
            view = self.eeg(subject_id)
        except KeyError:
            return dataset
        import dask.array as da

        from mmhe.store.trial_view import TRIAL_DIMS

        data = da.from_array(view, chunks=(1, *view.shape[1:]), asarray=True, fancy=False)
        attrs = {k: v for k, v in view.attrs.items() if k != "coordinates"}
        dataset["eeg"] = xr.DataArray(data, dims=TRIAL_DIMS, attrs=attrs)
        along = ("marker", "category", "eeg_channel_type", "eeg_start", "n_eeg_samples")
        return dataset.set_coords([name for name in along if name in dataset.data_vars])

    def video(self, subject_id: str, trial_index: int):
        """Whole-trial face video (`mmhe.store.videos.TrialVideo`, lazy), if ingested
        with ``video_size``."""
        from mmhe.store.videos import trial_video

        return trial_video(self, subject_id, trial_index)

    def eeg_trial(self, subject_id: str, trial_index: int) -> np.ndarray:
        """One trial's EEG, channels x samples (padding removed)."""
        trial = self.trials(participant=subject_id).set_index("trial_index").loc[trial_index]
        return self.eeg(subject_id)[trial_index, :, : int(trial["n_eeg_samples"])]

    def physio_trial(self, subject_id: str, trial_index: int) -> np.ndarray:
        """One trial's physiology, channels x samples (padding removed)."""
        trial = self.trials(participant=subject_id).set_index("trial_index").loc[trial_index]
        return self.physio(subject_id)[trial_index, :, : int(trial["n_physio_samples"])]

    # ------------------------------------------------------------ MNE

    def raw(self, subject_id: str):
        """The whole EEG session as an MNE `RawArray` with the Quik-Cap montage and the
        trials and expressions as annotations (`mmhe.store.mne_view.continuous_raw`)."""
        from mmhe.store.mne_view import continuous_raw

        return continuous_raw(self, subject_id)

    def expression_epochs(self, subject_id: str, tmin: float = -0.2, tmax: float = 0.8, **kw):
        """`mne.EpochsArray` locked to each expression's onset (or ``lock="apex"``), with
        metadata (emotion, compound, kind, AUs, times); see
        `mmhe.store.mne_view.expression_epochs` for baseline, picks, lock and kind."""
        from mmhe.store.mne_view import expression_epochs

        return expression_epochs(self, subject_id, tmin, tmax, **kw)

    def trial_epochs(self, subject_id: str, tmin: float = 0.0, tmax: float | None = None, **kw):
        """`mne.EpochsArray`, one epoch per stimulus trial locked to its marker, as long as
        the longest trial (shorter ones zero-padded after their end, or ``pad="recording"``);
        see `mmhe.store.mne_view.trial_epochs`."""
        from mmhe.store.mne_view import trial_epochs

        return trial_epochs(self, subject_id, tmin, tmax, **kw)

    def to_epochs(self, subject_id: str, *, picks: str | Sequence[str] = "all"):
        """Trial epochs (`trial_epochs` with its defaults; kept for older scripts)."""
        return self.trial_epochs(subject_id, picks=None if picks == "all" else picks)

    def torch_dataset(self, **kwargs: Any):
        """A PyTorch Dataset of expressions (see `mmhe.store.torch_view.ExpressionDataset`)."""
        from mmhe.store.torch_view import ExpressionDataset

        return ExpressionDataset(self, **kwargs)


def _filter(table: pd.DataFrame, **conditions: Any) -> pd.DataFrame:
    for column, wanted in conditions.items():
        values = _as_list(wanted)
        if values is not None and column in table:
            table = table[table[column].isin(values)]
    return table
