"""A PyTorch `Dataset` of per-expression samples with whichever modalities are present."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mmhe.labels import COMPOUND_CLASSES, SEVEN_EMOTIONS


class ExpressionDataset(Dataset):
    """Expressions of a store as tensors.

    Each item is a dict: ``face`` (frames x C x H x W float32 in [0, 1], or absent),
    ``eeg`` (channels x samples float32 volts, the expression's EEG window), ``physio``
    (channels x samples), ``label`` (int64), ``subject_id``, ``expression_id`` and
    ``present`` ({modality: bool}). EEG and physiology windows have a fixed length for
    batching: `eeg_window_s` / `physio_window_s` are (start, end) in seconds relative to the
    expression onset, zero-filled where they leave the trial.
    """

    def __init__(
        self,
        store,
        *,
        label: str = "compound",
        kind: str | None = "ME",
        eeg_window_s: tuple[float, float] = (-1.0, 1.0),
        physio_window_s: tuple[float, float] = (-2.0, 6.0),
        modalities: tuple[str, ...] = ("face", "eeg", "physio"),
    ) -> None:
        self.store = store
        table = store.expressions(kind=kind, located=True)
        classes = (
            COMPOUND_CLASSES
            if label == "compound"
            else SEVEN_EMOTIONS
            if label == "emotion"
            else ("ME", "MaE")
        )
        column = {"compound": "compound", "emotion": "emotion", "kind": "kind"}[label]
        table = table[table[column].isin(classes)].reset_index(drop=True)
        self.table = table
        self.classes = tuple(classes)
        self.labels = np.array([self.classes.index(v) for v in table[column]], dtype=np.int64)
        self.modalities = modalities
        self.eeg_window_s = eeg_window_s
        self.physio_window_s = physio_window_s
        self._trials = store.trials().set_index(["subject_id", "trial_index"])

    def __len__(self) -> int:
        return len(self.table)

    def _window(self, kind: str, row, window: tuple[float, float]) -> np.ndarray | None:
        if kind == "eeg":
            onset_col, start_col, count_col, reader = (
                "eeg_onset",
                "eeg_start",
                "n_eeg_samples",
                self.store.eeg,
            )
        else:
            onset_col, start_col, count_col, reader = (
                "physio_onset",
                "physio_start",
                "n_physio_samples",
                self.store.physio,
            )
        if (
            row.get(onset_col) is None
            or np.isnan(float(row[onset_col]))
            or np.isnan(float(row["trial_index"]))
        ):
            return None
        trial = self._trials.loc[(row["subject_id"], int(row["trial_index"]))]
        if count_col not in trial or np.isnan(float(trial[count_col])):
            return None
        array = reader(row["subject_id"])
        sfreq = float(array.attrs["sfreq"])
        onset = int(row[onset_col]) - int(trial[start_col])
        start = max(0, onset + round(window[0] * sfreq))
        stop = min(int(trial[count_col]), onset + round(window[1] * sfreq))
        width = round((window[1] - window[0]) * sfreq)
        data = np.zeros((array.shape[1], width), dtype=np.float32)
        if stop > start:
            chunk = array[int(row["trial_index"]), :, start:stop]
            begin = start - (onset + round(window[0] * sfreq))
            data[:, begin : begin + chunk.shape[1]] = chunk
        return data

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.table.iloc[index]
        item: dict[str, Any] = {
            "label": torch.tensor(self.labels[index]),
            "subject_id": row["subject_id"],
            "expression_id": row["expression_id"],
            "present": {},
        }
        if "face" in self.modalities:
            frames = self.store.frames(row["expression_id"]) if row["stored_frames"] else None
            item["present"]["face"] = frames is not None
            if frames is not None:
                item["face"] = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        for kind, window in (("eeg", self.eeg_window_s), ("physio", self.physio_window_s)):
            if kind in self.modalities:
                data = self._window(kind, row, window)
                item["present"][kind] = data is not None
                if data is not None:
                    item[kind] = torch.from_numpy(data)
        return item
