"""Reading a store: tables as DataFrames, arrays lazily, MNE Epochs and a PyTorch Dataset."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmhe.errors import InputFileError


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
        parts = [p for p in parts if len(p)]
        table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
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

    def _group(self, subject_id: str):
        import zarr

        return zarr.open_group(
            str(self.path / "participants" / subject_id / "arrays.zarr"), mode="r"
        )

    def eeg(self, subject_id: str):
        """Lazy zarr array (trials x channels x samples, volts; NaN after a trial's end)."""
        return self._group(subject_id)["eeg"]

    def physio(self, subject_id: str):
        """Lazy zarr array (trials x channels x samples) of the BIOPAC signals."""
        return self._group(subject_id)["physio"]

    def frames(self, expression_id: str) -> np.ndarray:
        """Stored face frames of one expression: (frames, H, W, C) uint8."""
        subject_id = expression_id.rsplit("-r", 1)[0]
        return self._group(subject_id)["frames"][expression_id][...]

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

    def to_epochs(self, subject_id: str, *, picks: str | Sequence[str] = "all"):
        """MNE `EpochsArray` of a participant's trials, cropped to the shortest trial.

        Events carry the stimulus markers (event_id ``{"101": 101, ...}``); tmin = 0.
        """
        import mne

        array = self.eeg(subject_id)
        trials = self.trials(participant=subject_id).sort_values("trial_index")
        n = int(trials["n_eeg_samples"].min())
        data = np.asarray(array[:, :, :n], dtype="float64")
        info = mne.create_info(
            list(array.attrs["channels"]),
            float(array.attrs["sfreq"]),
            list(array.attrs["channel_types"]),
        )
        codes = trials["code"].astype(int).to_numpy()
        events = np.column_stack([np.arange(len(codes)) * n, np.zeros_like(codes), codes])
        epochs = mne.EpochsArray(
            data,
            info,
            events=events,
            tmin=0.0,
            event_id={str(c): int(c) for c in sorted(set(codes))},
            verbose="error",
        )
        return epochs if picks == "all" else epochs.pick(picks)

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
