"""EEG band power per class on the scalp, and its difference to each participant's rest.

Read from the benchmark's EEG features in the store (`mmhe.features.batch`: log10 band
power per 1-s window of the filtered, re-referenced EEG, V^2/Hz): per expression the
mean over its windows, per participant the mean over the windows of the rest block
(marker 100; the calm clips when a store keeps no rest block). Maps are drawn with MNE's
`plot_topomap` on the Neuroscan Quik-Cap montage (`mmhe.io.eeg.quikcap_montage`).

Units: band power in dB re 1 uV^2/Hz (10 log10(P / 1e-12 V^2/Hz)); the difference to
rest in dB (10 log10 of the power ratio), averaged over expressions.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mmhe.errors import InputFileError

DB_OFFSET = 12.0
"""log10(V^2/Hz) + 12 = log10(uV^2/Hz)."""


@dataclass(frozen=True)
class ClassMaps:
    """Mean band power of each class and its difference to rest.

    classes : class names (rows); bands : band names (columns of the maps).
    power_db : (K, C, B) mean band power, dB re 1 uV^2/Hz.
    change_db : (K, C, B) mean of (expression - its participant's rest), dB; NaN when no
        participant has a baseline.
    n : (K,) expressions averaged; n_participants : (K,) participants among them;
    baseline : "rest", "calm" or "" (none found).
    """

    classes: list[str]
    channels: list[str]
    bands: list[str]
    power_db: np.ndarray
    change_db: np.ndarray
    n: np.ndarray
    n_participants: np.ndarray
    baseline: str


def _window_mean(array: np.ndarray) -> np.ndarray:
    """Mean over windows (axis 1) ignoring the NaN padding: (N, T, C, B) -> (N, C, B)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an expression without windows
        return np.nanmean(np.asarray(array, dtype=np.float64), axis=1)


def class_maps(store, feature_config, column: str, samples: str = "ME") -> ClassMaps:
    """`ClassMaps` of the expressions of `samples` ("ME", "MaE" or "both") by `column`
    ("compound", "emotion" or "kind"), from the cached EEG features of `feature_config`.

    Raises `InputFileError` when those features were not computed (or are older than the
    store).
    """
    from mmhe.features.batch import _complete, feature_dir, store_keys

    folder = feature_dir(store, "eeg", feature_config)
    made_from = _complete(folder)
    if made_from is None or made_from != store_keys(store):
        raise InputFileError(
            folder,
            "no up-to-date EEG features for the run's parameters",
            f"run `mmhe features {store.path} --modality eeg`",
        )
    bands = list(feature_config.eeg.bands)
    sums: dict[str, list[np.ndarray]] = {}
    changes: dict[str, list[np.ndarray]] = {}
    people: dict[str, set[str]] = {}
    channels: list[str] | None = None
    baseline_kind = ""
    for sid in store.participant_ids():
        part = folder / "participants" / sid
        if not (part / "eeg.npy").is_file():
            continue
        if channels is None:
            channels = json.loads((part / "eeg_channels.json").read_text())
        table = pd.read_parquet(part / "eeg.parquet")
        if not len(table):
            continue
        power = _window_mean(np.load(part / "eeg.npy", mmap_mode="r"))
        trials = pd.read_parquet(part / "eeg_trial.parquet")
        baseline = None
        for kind in ("rest", "calm"):
            rows = np.flatnonzero(trials["category"].astype(str).to_numpy() == kind)
            if rows.size:
                trial_power = np.load(part / "eeg_trial.npy", mmap_mode="r")
                baseline = np.nanmean(_window_mean(trial_power[rows]), axis=0)
                baseline_kind = baseline_kind or kind
                break
        keep = table["kind"].eq(samples) if samples in ("ME", "MaE") else table["kind"].notna()
        keep &= table[column].notna() & np.isfinite(power).all(axis=(1, 2))
        for position in np.flatnonzero(keep.to_numpy()):
            name = str(table[column].iloc[position])
            sums.setdefault(name, []).append(power[position])
            people.setdefault(name, set()).add(sid)
            if baseline is not None:
                changes.setdefault(name, []).append(power[position] - baseline)
    if channels is None or not sums:
        raise InputFileError(folder, f"no {samples} expressions with EEG features")
    classes = _class_order(list(sums), column)
    c, b = len(channels), len(bands)
    power_db = np.stack([10 * (np.mean(sums[k], axis=0) + DB_OFFSET) for k in classes])
    change_db = np.stack(
        [
            10 * np.mean(changes[k], axis=0) if k in changes else np.full((c, b), np.nan)
            for k in classes
        ]
    )
    return ClassMaps(
        classes,
        channels,
        bands,
        power_db,
        change_db,
        np.array([len(sums[k]) for k in classes]),
        np.array([len(people[k]) for k in classes]),
        baseline_kind,
    )


def _class_order(names: list[str], column: str) -> list[str]:
    from mmhe.labels import COMPOUND_CLASSES, SEVEN_EMOTIONS

    reference = {"compound": list(COMPOUND_CLASSES), "emotion": list(SEVEN_EMOTIONS)}.get(
        column, []
    )
    known = [n for n in reference if n in names]
    return known + sorted(n for n in names if n not in known)


def topomap_figure(maps: ClassMaps, which: str = "power"):
    """Bands down, classes across (a portrait figure that reads on a phone and beside its
    twin on a screen), drawn with `mne.viz.plot_topomap` on the Quik-Cap montage; one
    colour bar per band on the right.

    which : "power" (dB re 1 uV^2/Hz, one colour scale per band) or "change" (dB against
        rest, a diverging scale symmetric about 0 per band).
    """
    import matplotlib.pyplot as plt
    import mne

    from mmhe.io.eeg import quikcap_montage

    info = mne.create_info(maps.channels, 1000.0, "eeg")
    info.set_montage(quikcap_montage(), match_case=False, on_missing="ignore")
    values = maps.power_db if which == "power" else maps.change_db
    k, b = len(maps.classes), len(maps.bands)
    fig, grid = plt.subplots(
        b,
        k + 1,
        figsize=(1.45 * k + 1.3, 1.45 * b + 0.5),
        gridspec_kw={"width_ratios": [1] * k + [0.07]},
        layout="constrained",
        squeeze=False,
    )
    for j, band in enumerate(maps.bands):
        finite = values[:, :, j][np.isfinite(values[:, :, j])]
        if which == "power":
            vlim = (float(finite.min()), float(finite.max())) if finite.size else (0, 1)
            cmap = "viridis"
        else:
            top = float(np.abs(finite).max()) if finite.size else 1.0
            vlim, cmap = (-top, top), "RdBu_r"
        image = None
        for i in range(k):
            ax = grid[j, i]
            if not np.isfinite(values[i, :, j]).all():
                ax.set_axis_off()
                continue
            image, _ = mne.viz.plot_topomap(
                values[i, :, j],
                info,
                axes=ax,
                show=False,
                cmap=cmap,
                vlim=vlim,
                contours=0,
                sensors=True,
                extrapolate="head",
            )
            if j == 0:
                ax.set_title(f"{maps.classes[i]}\n(n = {maps.n[i]:,})", fontsize=9)
            if i == 0:
                ax.set_ylabel(band, fontsize=10)
                ax.yaxis.set_visible(True)
                ax.set_yticks([])
        if image is not None:
            bar = fig.colorbar(image, cax=grid[j, k])
            bar.ax.tick_params(labelsize=7)
            bar.set_label("dB" if which == "change" else "dB re 1 µV²/Hz", fontsize=7)
        else:
            grid[j, k].set_axis_off()
    return fig
