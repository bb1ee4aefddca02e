"""A PyTorch `Dataset` of per-expression samples with every modality, ready for a DataLoader.

>>> from torch.utils.data import DataLoader                                # doctest: +SKIP
>>> data = store.torch_dataset(label="compound", frames=16)                # doctest: +SKIP
>>> batch = next(iter(DataLoader(data, batch_size=4, collate_fn=data.collate)))
>>> batch["face"].shape, batch["eeg"].shape, batch["label"]                # doctest: +SKIP
(torch.Size([4, 16, 3, H, W]), torch.Size([4, 68, 2000]), tensor([0, 0, 2, 1]))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, default_collate

from mmhe.errors import ConfigError
from mmhe.labels import EXPRESSION_TASKS

MODALITIES: tuple[str, ...] = ("face", "eeg", "physio")
Transform = Callable[[dict[str, Any]], dict[str, Any]] | Mapping[str, Callable[[Any], Any]]


def sample_positions(first: int, last: int, n: int, sampling: str) -> np.ndarray:
    """``n`` positions from ``first`` to ``last`` (both included), evenly spaced.

    sampling : "uniform" rounds them to whole frames (a short clip repeats frames, a long
        one skips some); "interpolate" keeps the fractional positions for linear
        interpolation between neighbouring frames.
    >>> sample_positions(0, 9, 4, "uniform")
    array([0, 3, 6, 9])
    """
    positions = np.linspace(first, last, n)
    return np.rint(positions).astype(np.int64) if sampling == "uniform" else positions


def resample_frames(frames: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Frames (T, H, W, C) at ``positions`` (n,): whole positions pick frames, fractional
    ones blend the two neighbours linearly. Returns (n, H, W, C) float32 in [0, 255]."""
    positions = np.asarray(positions)
    if positions.dtype.kind in "iu":
        return frames[positions].astype(np.float32)
    low = np.floor(positions).astype(np.int64)
    high = np.minimum(low + 1, len(frames) - 1)
    weight = (positions - low).astype(np.float32)[:, None, None, None]
    return (1 - weight) * frames[low].astype(np.float32) + weight * frames[high].astype(np.float32)


class ExpressionDataset(Dataset):
    """Expressions of a store as tensors, one dict per expression.

    label : a task of `mmhe benchmark`: "compound" (negative, positive, surprise),
        "emotion7" (the seven emotions) or "kind" (ME, MaE); expressions without a label
        of that task are left out. ``classes`` gives the names in class-index order.
    kind : "ME" or "MaE" to keep one kind, None for both.
    modalities : any of "face", "eeg", "physio"; another name is an error.
    frames : face frames per sample, taken evenly from the coded onset to the offset
        (None keeps every stored frame: clips then differ in length and cannot be
        batched).
    sampling : "uniform" (nearest frames) or "interpolate" (linear blend of neighbours).
    transform : a callable on the whole item dict, or {modality: callable on its tensor}.
    eeg_window_s, physio_window_s : (start, end) in seconds relative to the onset; the
        window has a fixed length and is zero-filled where it leaves the trial.

    Each item: ``face`` (frames, C, H, W) float32 in [0, 1], ``eeg`` (channels, samples)
    float32 volts, ``physio`` (channels, samples) float32 in each channel's unit,
    ``present`` {modality: bool} (a missing modality is all zeros with False),
    ``label`` int64, ``subject_id``, ``expression_id``. ``collate`` batches them.
    """

    def __init__(
        self,
        store,
        *,
        label: str = "compound",
        kind: str | None = "ME",
        modalities: Sequence[str] = MODALITIES,
        frames: int | None = 16,
        sampling: Literal["uniform", "interpolate"] = "uniform",
        transform: Transform | None = None,
        eeg_window_s: tuple[float, float] = (-1.0, 1.0),
        physio_window_s: tuple[float, float] = (-2.0, 6.0),
    ) -> None:
        if label not in EXPRESSION_TASKS:
            hint = " (the seven-emotion task is 'emotion7')" if label == "emotion" else ""
            raise ConfigError(
                f"unknown label {label!r}{hint}; use one of {', '.join(EXPRESSION_TASKS)}"
            )
        modalities = tuple(modalities)
        unknown = [m for m in modalities if m not in MODALITIES]
        if unknown or not modalities:
            raise ConfigError(
                f"unknown modality {unknown or '(none given)'}; use some of {', '.join(MODALITIES)}"
            )
        if sampling not in ("uniform", "interpolate"):
            raise ConfigError(f"sampling must be 'uniform' or 'interpolate', got {sampling!r}")
        if frames is not None and frames < 1:
            raise ConfigError(f"frames must be >= 1 (or None), got {frames}")
        if isinstance(transform, Mapping):
            extra = [m for m in transform if m not in modalities]
            if extra:
                raise ConfigError(f"transform for modality {extra} not in {modalities}")
        column, classes = EXPRESSION_TASKS[label]
        table = store.expressions(kind=kind, located=True)
        table = table[table[column].isin(classes)].reset_index(drop=True)
        self.store = store
        self.table = table
        self.label = label
        self.classes = tuple(classes)
        self.labels = np.array([self.classes.index(v) for v in table[column]], dtype=np.int64)
        self.modalities = modalities
        self.frames = frames
        self.sampling = sampling
        self.transform = transform
        self.eeg_window_s = eeg_window_s
        self.physio_window_s = physio_window_s
        self._trials = store.trials().set_index(["subject_id", "trial_index"])
        self._shapes = {m: self._shape(m) for m in modalities}

    def __len__(self) -> int:
        return len(self.table)

    # ------------------------------------------------------------ shapes

    def _shape(self, modality: str) -> tuple[int, ...]:
        """Shape of one sample's tensor of ``modality`` (for zero-filling missing ones)."""
        if modality == "face":
            stored = self.table[self.table["stored_frames"] > 0]
            if not len(stored):
                raise ConfigError("no selected expression has stored face frames; leave out 'face'")
            n, height, width, channels = self.store.frame_array(
                stored["expression_id"].iloc[0]
            ).shape
            return (self.frames or n, channels, height, width)
        window = self.eeg_window_s if modality == "eeg" else self.physio_window_s
        for sid in pd.unique(self.table["subject_id"]):
            try:
                array = self.store.eeg(sid) if modality == "eeg" else self.store.physio(sid)
            except KeyError:
                continue
            width = round((window[1] - window[0]) * float(array.attrs["sfreq"]))
            return (array.shape[1], width)
        raise ConfigError(f"no selected participant has {modality} data; leave out {modality!r}")

    # ------------------------------------------------------------ reading

    def _face(self, row) -> np.ndarray | None:
        if not row["stored_frames"]:
            return None
        frames = self.store.frames(row["expression_id"])
        if self.frames is None:
            return frames.astype(np.float32)
        first = int(row["frames_first"])
        onset = int(np.clip(int(row["frame_onset"]) - first, 0, len(frames) - 1))
        offset = int(np.clip(int(row["frame_offset"]) - first, onset, len(frames) - 1))
        positions = sample_positions(onset, offset, self.frames, self.sampling)
        return resample_frames(frames, positions)

    def _window(self, kind: str, row, window: tuple[float, float]) -> np.ndarray | None:
        onset_col, start_col, count_col = (
            ("eeg_onset", "eeg_start", "n_eeg_samples")
            if kind == "eeg"
            else ("physio_onset", "physio_start", "n_physio_samples")
        )
        if pd.isna(row.get(onset_col)) or pd.isna(row["trial_index"]):
            return None
        trial = self._trials.loc[(row["subject_id"], int(row["trial_index"]))]
        if count_col not in trial or pd.isna(trial[count_col]) or pd.isna(trial[start_col]):
            return None
        array = (
            self.store.eeg(row["subject_id"])
            if kind == "eeg"
            else self.store.physio(row["subject_id"])
        )
        sfreq = float(array.attrs["sfreq"])
        onset = int(row[onset_col]) - int(trial[start_col])
        begin = onset + round(window[0] * sfreq)
        start = max(0, begin)
        stop = min(int(trial[count_col]), onset + round(window[1] * sfreq))
        data = np.zeros(self._shapes[kind], dtype=np.float32)
        if stop > start:
            chunk = array[int(row["trial_index"]), :, start:stop]
            data[:, start - begin : start - begin + chunk.shape[1]] = chunk
        return data

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.table.iloc[index]
        item: dict[str, Any] = {
            "label": torch.tensor(self.labels[index]),
            "subject_id": row["subject_id"],
            "expression_id": row["expression_id"],
            "present": {},
        }
        for modality in self.modalities:
            if modality == "face":
                data = self._face(row)
                if data is not None:
                    data = np.ascontiguousarray(data.transpose(0, 3, 1, 2)) / np.float32(255)
            else:
                window = self.eeg_window_s if modality == "eeg" else self.physio_window_s
                data = self._window(modality, row, window)
            item["present"][modality] = data is not None
            item[modality] = (
                torch.from_numpy(np.asarray(data, dtype=np.float32))
                if data is not None
                else torch.zeros(self._shapes[modality])
            )
        if isinstance(self.transform, Mapping):
            for modality, function in self.transform.items():
                item[modality] = function(item[modality])
        elif self.transform is not None:
            item = self.transform(item)
        return item

    @staticmethod
    def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
        """Batch items: tensors stacked (B, ...), ``present`` {modality: (B,) bool},
        ``label`` (B,), ids as lists. Unequal shapes are an error naming the modality."""
        return collate_expressions(items)


def collate_expressions(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch `ExpressionDataset` items (see `ExpressionDataset.collate`)."""
    if not items:
        raise ConfigError("cannot collate an empty batch")
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key == "present":
            batch[key] = {m: torch.tensor([v[m] for v in values]) for m in values[0]}
        elif key in ("subject_id", "expression_id"):
            batch[key] = list(values)
        elif isinstance(values[0], torch.Tensor):
            shapes = sorted({tuple(v.shape) for v in values})
            if len(shapes) > 1:
                hint = " (pass frames=N for fixed-length clips)" if key == "face" else ""
                raise ConfigError(f"cannot batch {key!r}: samples have shapes {shapes}{hint}")
            batch[key] = torch.stack(values)
        else:
            batch[key] = default_collate(values)
    return batch
