"""Batch drivers: features of every expression and trial of a store, cached in the store.

Results go to ``STORE/<version>/features/<modality>-<hash>/`` where the hash covers the
feature parameters (EEG band table included), the store version and the feature code
version (`FEATURE_FORMAT`); a changed parameter computes a new folder, an unchanged one
is reused. Inside it, each participant's part records the provenance key of the stored
participant it was computed from (`mmhe.store.provenance`): after a re-ingest changed a
participant, only that participant's features are recomputed, and `load_features`
refuses features older than the store. Participants run in parallel through Dask (a local
cluster by default, ``scheduler="sync"`` in this process, or a scheduler address), each
written atomically (temporary folder, then rename); a failure on one sample becomes a
row of ``issues.parquet`` with its reason and never stops the batch.

Per participant, ``participants/<sid>/``:

- face: ``face.npy`` (expressions x 3 x S x S, float32: strain, horizontal, vertical
  flow between onset and apex of the face aligned by its landmarks and masked to the face
  only; `mmhe.features.flow.expression_flow`) + ``face.parquet`` (with the alignment's
  quality: head motion, similarity residual, frames without landmarks, face out of frame;
  raised flags are also issues);
- eeg: ``eeg.npy`` (expressions x T x channels x 5 bands, float32 log10 band power in
  V^2/Hz, NaN after an expression's last window) + ``eeg.parquet``, and the same for
  whole trials (``eeg_trial.npy``);
- physio: ``physio.parquet`` (one row per expression, NeuroKit2 features) and
  ``physio_trial.parquet``;
- eeg_raw: ``eeg_raw.npy`` (expressions x 1 x channels x samples, float32 volts, the
  filtered, re-referenced EEG resampled to 128 Hz in a fixed window; NaN outside the
  trial) + ``eeg_raw.parquet``, and ``eeg_raw_trial.npy`` (a fixed span of each trial),
  for end-to-end EEG models such as EEGNet (`mmhe.features.eeg_raw`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from mmhe.features.bands import FIVE_BANDS
from mmhe.features.windows import EEG_WINDOW, PHYSIO_WINDOW, window_bounds

MODALITIES = ("face", "eeg", "physio")
"""Modalities `compute_features` makes by default; ``eeg_raw`` is made when a benchmark
or a user asks for it."""
ALL_MODALITIES = (*MODALITIES, "eeg_raw")
ID_COLUMNS = (
    "expression_id",
    "subject_id",
    "row",
    "kind",
    "emotion",
    "compound",
    "marker",
    "trial_index",
)
"""Identifier and label columns of every per-expression feature table."""
NON_FEATURE_COLUMNS = {*ID_COLUMNS, "code", "ok", "n_windows", "category"}
"""Columns of the feature tables that are not features."""
FEATURE_FORMAT = 3
"""Bumped when a modality's values change for unchanged parameters (2: physiology with
artefact-corrected beats, masked data, trial HRV and event-related features; 3: EEG
filtered once per continuous session, no padding artefacts at trial edges)."""


class FaceFeatureConfig(BaseModel):
    """Optical-flow image of each expression (onset -> apex): the face aligned on its
    landmarks and cut to the face only, as the dataset's authors do
    (`mmhe.features.flow.expression_flow`); (strain, u, v) at `size` (28 for STSTNet, 128
    for the authors' network `mmhe_net`)."""

    model_config = ConfigDict(extra="forbid")  # a typo is refused, not ignored

    method: Literal["tvl1", "dis", "farneback"] = "tvl1"
    size: int = Field(28, ge=8)
    align: Literal["landmarks", "ecc", "none"] = "landmarks"
    mask: bool = True
    flow_size: int = Field(128, ge=16)
    max_head_motion: float = Field(0.1, gt=0, description="inter-ocular distances")


class EEGFeatureConfig(BaseModel):
    """Band power per 1-s window of the filtered, re-referenced EEG (published baseline)."""

    model_config = ConfigDict(extra="forbid")  # a typo is refused, not ignored

    l_freq: float = 1.0
    h_freq: float = 47.0
    notch: float | None = 50.0
    window_s: float = 1.0
    exclude: tuple[str, ...] = ("M1", "M2")
    max_windows: int = Field(8, ge=1, description="windows kept per expression")
    trial_max_windows: int = Field(240, ge=1, description="windows kept per trial")
    start: tuple[str, float] = EEG_WINDOW.start
    end: tuple[str, float] = EEG_WINDOW.end
    bands: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(FIVE_BANDS), description="band name -> (fmin, fmax) Hz"
    )


class EEGRawFeatureConfig(BaseModel):
    """Raw EEG windows for end-to-end models (EEGNet: 128 Hz, Lawhern et al. 2018).

    The EEG is filtered and re-referenced as for band power, resampled to ``sfreq``, and
    cut into fixed windows: ``length_s`` from ``start`` (anchor, seconds) around each
    expression; for trials, ``trial_length_s`` from ``trial_start_s`` after the marker.
    """

    sfreq: float = Field(128.0, gt=0)
    l_freq: float = 1.0
    h_freq: float = 40.0
    notch: float | None = 50.0
    exclude: tuple[str, ...] = ("M1", "M2")
    start: tuple[str, float] = ("onset", -0.5)
    length_s: float = Field(2.0, gt=0)
    trial_start_s: float = Field(0.0, ge=0)
    trial_length_s: float = Field(4.0, gt=0)


class PhysioFeatureConfig(BaseModel):
    """NeuroKit2 features in a window locked to the onset (autonomic responses lag).

    quality: cardiac signal quality, "correlation" (one matrix product) or NeuroKit2's
    "templatematch" (about a third of the per-trial physiology time).
    """

    model_config = ConfigDict(extra="forbid")  # a typo is refused, not ignored

    start: tuple[str, float] = PHYSIO_WINDOW.start
    end: tuple[str, float] = PHYSIO_WINDOW.end
    quality: Literal["correlation", "templatematch"] = "correlation"


class FeatureConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a typo is refused, not ignored
    face: FaceFeatureConfig = FaceFeatureConfig()
    eeg: EEGFeatureConfig = EEGFeatureConfig()
    physio: PhysioFeatureConfig = PhysioFeatureConfig()
    eeg_raw: EEGRawFeatureConfig = EEGRawFeatureConfig()

    def key(self, modality: str, store_version: str) -> str:
        payload = json.dumps(
            {
                "format": FEATURE_FORMAT,
                "store": store_version,
                "modality": modality,
                "params": getattr(self, modality).model_dump(),
            },
            sort_keys=True,
        )
        return f"{modality}-" + hashlib.sha256(payload.encode()).hexdigest()[:10]


def _issue(sid: str, expression_id: str | None, code: str, message: str) -> dict[str, Any]:
    return {"subject_id": sid, "sample": expression_id, "code": code, "message": message}


# ---------------------------------------------------------------- per modality


FACE_QUALITY_COLUMNS = ("head_motion", "fit_residual", "landmarks_missing", "out_of_frame")
"""Alignment quality per expression in ``face.parquet`` (see `AlignmentQuality`)."""


def _face(store, sid: str, expressions: pd.DataFrame, config: FaceFeatureConfig):
    """One participant's flow images; OpenCV runs on the task's threads
    (`mmhe.parallel.opencv_threads`)."""
    from mmhe.parallel import opencv_threads

    with opencv_threads():
        return _face_images(store, sid, expressions, config)


def _face_images(store, sid: str, expressions: pd.DataFrame, config: FaceFeatureConfig):
    from mmhe.features.flow import expression_flow, flow_stack

    images = np.full((len(expressions), 3, config.size, config.size), np.nan, np.float32)
    ok = np.zeros(len(expressions), dtype=bool)
    quality = pd.DataFrame(
        {
            "head_motion": np.nan,
            "fit_residual": np.nan,
            "landmarks_missing": pd.array([pd.NA] * len(expressions), dtype="Int64"),
            "out_of_frame": pd.array([pd.NA] * len(expressions), dtype="boolean"),
        },
        index=range(len(expressions)),
    )
    issues = []
    for i, row in enumerate(expressions.itertuples(index=False)):
        if not row.stored_frames:
            issues.append(_issue(sid, row.expression_id, "no_frames", "no stored face frames"))
            continue
        try:
            frames = store.frames(row.expression_id)
            onset = int(row.frame_onset) - int(row.frames_first)
            apex = int(row.frame_apex) - int(row.frames_first)
            result = expression_flow(
                frames[onset],
                frames[apex],
                method=config.method,
                align=config.align,
                mask=config.mask,
                flow_size=config.flow_size,
                max_head_motion=config.max_head_motion,
            )
            images[i] = flow_stack(result.flow, config.size, mask=result.mask)
            ok[i] = True
        except Exception as exc:  # one sample's failure is reported, never fatal
            issues.append(
                _issue(sid, row.expression_id, "face_failed", f"{type(exc).__name__}: {exc}")
            )
            continue
        if result.alignment is not None:
            flags = result.alignment.quality
            quality.loc[i] = (
                flags.head_motion,
                flags.fit_residual,
                len(flags.landmarks_missing),
                flags.out_of_frame,
            )
            issues += [_issue(sid, row.expression_id, c, m) for c, m in flags.describe()]
    return images, ok, quality, issues


def _filtered_trials(store, sid: str, config: EEGFeatureConfig):
    """Yield (None, channel names), then (trial row, EEG channels x samples filtered) in
    the trials table's order.

    The EEG is filtered once per continuous session (`mmhe.features.eeg_filter`: MNE's
    notch and band-pass designs as one zero-phase pass, common average reference) and
    cut into trials; a store without ``eeg_continuous`` filters each stored trial alone.
    """
    from mmhe.features.eeg_filter import filter_with_context, filtered_trials, session_kernel

    array = store.eeg(sid)
    names, types = list(array.attrs["channels"]), list(array.attrs["channel_types"])
    excluded = {e.upper() for e in config.exclude}
    picks = [
        i
        for i, (n, t) in enumerate(zip(names, types, strict=True))
        if t == "eeg" and n.upper() not in excluded
    ]
    yield None, [names[i] for i in picks]
    sfreq = float(array.attrs["sfreq"])
    kernel = session_kernel(sfreq, l_freq=config.l_freq, h_freq=config.h_freq, notch=config.notch)
    trials = list(store.trials(participant=sid).itertuples(index=False))
    group = store._group(sid)
    if "eeg_continuous" in group and list(group["eeg_continuous"].attrs["channels"]) == names:
        session = group["eeg_continuous"]
        spans = [(int(t.eeg_start), int(t.eeg_start) + int(t.n_eeg_samples)) for t in trials]
        done: dict[int, np.ndarray] = {}
        wanted = 0
        for position, data in filtered_trials(
            lambda start, stop: session[:, start:stop][picks],
            int(session.shape[1]),
            spans,
            kernel,
            sfreq,
        ):
            done[position] = data
            while wanted in done:
                yield trials[wanted], done.pop(wanted)
                wanted += 1
        return
    for trial in trials:
        data = np.asarray(
            array[int(trial.trial_index), :, : int(trial.n_eeg_samples)][picks], np.float64
        )
        clean = filter_with_context(data, kernel, 0, 0)
        yield trial, clean - clean.mean(axis=0, keepdims=True)


def _span(bounds) -> tuple[int, int]:
    """(start, stop) samples of a one-expression `WindowBounds`."""
    return int(np.ravel(bounds.start)[0]), int(np.ravel(bounds.stop)[0])


def _log_band_power(
    segment: np.ndarray, sfreq: float, config: EEGFeatureConfig, max_windows: int
) -> tuple[np.ndarray, int]:
    from mmhe.features.eeg import band_power

    out = np.full((max_windows, segment.shape[0], len(config.bands)), np.nan, np.float32)
    n = min(max_windows, int(segment.shape[1] // round(config.window_s * sfreq)))
    if n:
        power = band_power(
            segment[:, : n * round(config.window_s * sfreq)],
            sfreq,
            bands=config.bands,
            window_s=config.window_s,
        )
        out[:n] = np.log10(np.maximum(power, 1e-30))
    return out, n


def _eeg(store, sid: str, expressions: pd.DataFrame, config: EEGFeatureConfig):
    sfreq = float(store.eeg(sid).attrs["sfreq"])
    trials = store.trials(participant=sid)
    n_channels = None
    expr_out: np.ndarray | None = None
    expr_windows = np.zeros(len(expressions), dtype=np.int64)
    trial_out, trial_windows, issues = [], [], []
    by_trial = {k: g for k, g in expressions.groupby("trial_index")} if len(expressions) else {}
    trials_iter = _filtered_trials(store, sid, config)
    _, channels = next(trials_iter)
    for trial, data in trials_iter:
        if n_channels is None:
            n_channels = data.shape[0]
            expr_out = np.full(
                (len(expressions), config.max_windows, n_channels, len(config.bands)),
                np.nan,
                np.float32,
            )
        features, n = _log_band_power(data, sfreq, config, config.trial_max_windows)
        trial_out.append(features)
        trial_windows.append(n)
        in_trial = by_trial.get(trial.trial_index)  # no empty DataFrame per trial: 3.5 % of EEG
        for index, row in () if in_trial is None else in_trial.iterrows():
            if pd.isna(row["eeg_onset"]):
                continue
            start_s = (int(row["eeg_onset"]) - int(trial.eeg_start)) / sfreq
            bounds = window_bounds(
                start_s,
                start_s + float(row["duration_s"]),
                apex_s=start_s + float(row["onset_apex_s"]),
                start=config.start,
                end=config.end,
                sfreq=sfreq,
                n_samples=data.shape[1],
            )
            position = expressions.index.get_loc(index)
            start, stop = _span(bounds)
            segment = data[:, start:stop]
            expr_out[position], expr_windows[position] = _log_band_power(
                segment, sfreq, config, config.max_windows
            )
            if bool(np.any(bounds.clipped)):
                issues.append(
                    _issue(
                        sid,
                        row["expression_id"],
                        "eeg_window_clipped",
                        "the EEG window leaves the trial; clipped",
                    )
                )
    n_bands = len(config.bands)
    if expr_out is None:
        expr_out = np.zeros((len(expressions), config.max_windows, 0, n_bands), np.float32)
    trials_array = np.stack(trial_out) if trial_out else np.zeros((0, 0, 0, n_bands), np.float32)
    return expr_out, expr_windows, trials_array, np.asarray(trial_windows), trials, issues, channels


def _physio_segment(
    trial: NDArray[np.floating], start: int, stop: int, channels: list[str]
) -> pd.DataFrame:
    """Samples start..stop of one trial's (channels, samples) array as a DataFrame with
    the canonical channel names (float64)."""
    return pd.DataFrame(trial[:, start:stop].T.astype(np.float64), columns=channels)


_FROM_TRIAL = ("RSP_", "ECG_rmssd", "ECG_sdnn", "ECG_pnn50", "PPG_rmssd", "PPG_sdnn", "PPG_pnn50")
"""Expression columns taken from the surrounding trial: breathing is too slow for an 8-s
window and HRV needs 10 s (RMSSD) to 60 s (SDNN, pNN50), `mmhe.features.cardiac`."""


def _from_trial(name: str) -> bool:
    return name.startswith(_FROM_TRIAL)


def _window_flag_kept(flag: str) -> bool:
    """Window flags worth an issue (not those about values the trial provides)."""
    return (
        not flag.startswith("RSP")
        and "too short for rmssd" not in flag
        and ("too short for sdnn" not in flag)
    )


def _physio(store, sid: str, expressions: pd.DataFrame, config: PhysioFeatureConfig):
    """Expression features in the onset-locked window, respiration and HRV from the trial,
    and event-related responses (`mmhe.features.physio_events`) from the trial's series.

    Breathing is too slow for an 8-s window (NeuroKit2 needs >= 15 s and several breaths)
    and HRV needs 10-60 s, so an expression's RSP_* and HRV columns are those of the trial
    (stimulus clip) it lies in. Trial flags become issues with sample ``trial:<index>``.
    """
    from mmhe.features._physio_common import shared_steps
    from mmhe.features.physio import physio_features
    from mmhe.features.physio_events import event_features, trial_series

    try:
        array = store.physio(sid)
    except KeyError:
        return (
            pd.DataFrame(),
            pd.DataFrame(),
            [_issue(sid, None, "no_physio", "no physiology in the store")],
        )
    sfreq = float(array.attrs["sfreq"])
    channels = list(array.attrs["channels"])
    trials = store.trials(participant=sid)
    trial_rows, issues, series = [], [], {}
    stored: dict[int, NDArray[np.float32]] = {}  # each trial read once (a Zarr read ~2.5 ms)
    for trial in trials.itertuples(index=False):
        if pd.isna(trial.physio_start) or not trial.n_physio_samples:
            continue
        n_samples = int(trial.n_physio_samples)
        stored[int(trial.trial_index)] = array[int(trial.trial_index), :, :n_samples]
        segment = _physio_segment(stored[int(trial.trial_index)], 0, n_samples, channels)
        with shared_steps():  # beats, breaths and SCRs found once for both
            result = physio_features(segment, sfreq, quality=config.quality)
            series[int(trial.trial_index)] = trial_series(segment, sfreq)
        trial_rows.append(
            {
                "subject_id": sid,
                "trial_index": int(trial.trial_index),
                "code": int(trial.code),
                **result.features,
            }
        )
        issues += [
            _issue(sid, f"trial:{int(trial.trial_index)}", "physio_trial_flag", flag)
            for flag in result.flags
        ]
    trial_table = pd.DataFrame(trial_rows)
    from_trial = (
        trial_table.set_index("trial_index")[[c for c in trial_table if _from_trial(c)]]
        if len(trial_table)
        else pd.DataFrame()
    )
    by_index = trials.set_index("trial_index")
    rows = []
    for row in expressions.itertuples(index=False):
        record: dict[str, Any] = {"expression_id": row.expression_id}
        if pd.isna(row.physio_onset) or pd.isna(row.trial_index):
            issues.append(
                _issue(
                    sid,
                    row.expression_id,
                    "no_physio_window",
                    "the expression has no BIOPAC samples",
                )
            )
            rows.append(record)
            continue
        trial = by_index.loc[int(row.trial_index)]
        onset_s = (int(row.physio_onset) - int(trial["physio_start"])) / sfreq
        bounds = window_bounds(
            onset_s,
            onset_s + float(row.duration_s),
            apex_s=onset_s + float(row.onset_apex_s),
            start=config.start,
            end=config.end,
            sfreq=sfreq,
            n_samples=int(trial["n_physio_samples"]),
        )
        start, stop = _span(bounds)
        if int(row.trial_index) not in stored:
            stored[int(row.trial_index)] = array[int(row.trial_index)]
        segment = _physio_segment(stored[int(row.trial_index)], start, stop, channels)
        result = physio_features(
            segment.drop(columns=["RSP"], errors="ignore"), sfreq, quality=config.quality
        )
        record.update({k: v for k, v in result.features.items() if not _from_trial(k)})
        if int(row.trial_index) in from_trial.index:
            record.update(from_trial.loc[int(row.trial_index)].to_dict())
        if int(row.trial_index) in series:
            record.update(event_features(series[int(row.trial_index)], onset_s))
        issues += [
            _issue(sid, row.expression_id, "physio_flag", flag)
            for flag in result.flags
            if _window_flag_kept(flag)
        ]
        rows.append(record)
    return pd.DataFrame(rows), trial_table, issues


# ---------------------------------------------------------------- driver


def _participant(
    store_path: str, sid: str, modality: str, config: FeatureConfig, out_dir: str, store_key: str
) -> dict[str, Any]:
    """Features of one participant, unless its part was made from the same stored
    participant (``store_key``); a stale part is replaced. BLAS runs on one thread
    (`mmhe.parallel.one_blas_thread`)."""
    from mmhe.parallel import one_blas_thread

    final = Path(out_dir) / "participants" / sid
    if (final / "summary.json").is_file():
        summary = json.loads((final / "summary.json").read_text())
        if summary.get("store_key") == store_key:
            return summary
    with one_blas_thread():
        return _compute_participant(store_path, sid, modality, config, out_dir, store_key)


def _compute_participant(
    store_path: str, sid: str, modality: str, config: FeatureConfig, out_dir: str, store_key: str
) -> dict[str, Any]:
    """Compute and write one participant's features of one modality (see `_participant`)."""
    from mmhe.store import MMHEStore

    final = Path(out_dir) / "participants" / sid
    started = time.perf_counter()
    store = MMHEStore(store_path)
    expressions = store.expressions(participant=sid, located=True)
    table = expressions[list(ID_COLUMNS)].copy()
    tmp = Path(out_dir) / "participants" / f".tmp-{sid}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    issues: list[dict[str, Any]] = []
    if modality == "face":
        images, ok, quality, issues = _face(store, sid, expressions, config.face)
        np.save(tmp / "face.npy", images)
        table["ok"] = ok
        table = pd.concat([table.reset_index(drop=True), quality], axis=1)
        table.to_parquet(tmp / "face.parquet", index=False)
    elif modality == "eeg":
        expr, n_windows, trial_array, trial_windows, trials, issues, channels = _eeg(
            store, sid, expressions, config.eeg
        )
        (tmp / "eeg_channels.json").write_text(json.dumps(channels))
        np.save(tmp / "eeg.npy", expr)
        np.save(tmp / "eeg_trial.npy", trial_array)
        table["n_windows"] = n_windows
        table["ok"] = n_windows > 0
        table.to_parquet(tmp / "eeg.parquet", index=False)
        trials[["subject_id", "trial_index", "code", "category"]].assign(
            n_windows=trial_windows
        ).to_parquet(tmp / "eeg_trial.parquet", index=False)
    elif modality == "physio":
        features, trial_features, issues = _physio(store, sid, expressions, config.physio)
        merged = table.merge(features, on="expression_id", how="left") if len(features) else table
        merged.to_parquet(tmp / "physio.parquet", index=False)
        trial_features.to_parquet(tmp / "physio_trial.parquet", index=False)
    elif modality == "eeg_raw":
        from mmhe.features.eeg_raw import eeg_raw_windows

        windows = eeg_raw_windows(store, sid, expressions, config.eeg_raw)
        (tmp / "eeg_raw_channels.json").write_text(json.dumps(windows.channels))
        np.save(tmp / "eeg_raw.npy", windows.expressions)
        np.save(tmp / "eeg_raw_trial.npy", windows.trials)
        table["ok"] = windows.expression_ok
        table.to_parquet(tmp / "eeg_raw.parquet", index=False)
        windows.trial_table.to_parquet(tmp / "eeg_raw_trial.parquet", index=False)
        issues = windows.issues
    pd.DataFrame(issues, columns=["subject_id", "sample", "code", "message"]).to_parquet(
        tmp / "issues.parquet", index=False
    )
    summary = {
        "subject_id": sid,
        "modality": modality,
        "store_key": store_key,
        "samples": len(table),
        "issues": len(issues),
        "seconds": round(time.perf_counter() - started, 3),
    }
    (tmp / "summary.json").write_text(json.dumps(summary))
    if final.exists():  # made from an older version of this participant: replace it
        stale = final.with_name(f".old-{sid}-{os.getpid()}")
        os.replace(final, stale)
        os.replace(tmp, final)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return summary


def store_keys(store) -> dict[str, str]:
    """{participant: provenance key} of a store (`mmhe.store.provenance`; "" for stores
    written before keys existed)."""
    recorded = store.manifest.get("participants", {})
    return {sid: recorded.get(sid, {}).get("input_key", "") for sid in store.participant_ids()}


def feature_dir(store, modality: str, config: FeatureConfig | None = None) -> Path:
    """Folder of the cached features of `modality` for `config` in `store`."""
    config = config or FeatureConfig()
    return store.path / "features" / config.key(modality, store.path.name)


def compute_features(
    store_path: str | Path,
    modalities: tuple[str, ...] | list[str] = MODALITIES,
    *,
    config: FeatureConfig | None = None,
    scheduler: str | None = None,
    n_workers: int = 2,
    progress: Callable[[dict[str, Any]], None] | None = None,
    wait_s: float = 0.0,
) -> dict[str, Path]:
    """Compute (or reuse) the features of every participant; returns {modality: folder}.

    One run writes a store's features at a time (`mmhe.store.lock.StoreLock`; another run
    waits `wait_s` seconds, then refuses). A participant's part is reused only when it was
    made from the same stored participant (its provenance key); parts of participants
    added or re-ingested since are computed, parts of removed ones deleted.
    """
    from mmhe.errors import ConfigError
    from mmhe.parallel import run_tasks
    from mmhe.store import MMHEStore
    from mmhe.store.lock import StoreLock

    store = MMHEStore(store_path)
    config = config or FeatureConfig()
    unknown = sorted(set(modalities) - set(ALL_MODALITIES))
    if unknown:
        raise ConfigError(f"unknown feature modality {unknown}; use {', '.join(ALL_MODALITIES)}")
    keys = store_keys(store)
    folders, tasks = {}, []
    with StoreLock(store.path, command="features", wait_s=wait_s):
        for modality in modalities:
            folder = feature_dir(store, modality, config)
            folders[modality] = folder
            if _complete(folder) == keys:
                continue
            (folder / "complete.json").unlink(missing_ok=True)
            (folder / "participants").mkdir(parents=True, exist_ok=True)
            for leftover in (folder / "participants").iterdir():
                if leftover.name.startswith((".tmp-", ".old-")) or leftover.name not in keys:
                    # a killed run (we hold the lock), or a participant gone from the store
                    shutil.rmtree(leftover, ignore_errors=True)
            (folder / "config.json").write_text(
                json.dumps(
                    {
                        "modality": modality,
                        "store_version": store.path.name,
                        "params": getattr(config, modality).model_dump(),
                    },
                    indent=2,
                )
            )
            tasks += [
                (_participant, str(store.path), sid, modality, config, str(folder), key)
                for sid, key in keys.items()
            ]
        run_tasks(tasks, scheduler, n_workers, progress)
        for folder in folders.values():
            if _complete(folder) != keys:
                (folder / "complete.json").write_text(json.dumps({"participants": keys}))
    return folders


def _complete(folder: Path) -> dict[str, str] | None:
    """{participant: store key} a finished feature folder was made from (None: unfinished)."""
    if not (folder / "complete.json").is_file():
        return None
    recorded = json.loads((folder / "complete.json").read_text()).get("participants")
    return recorded if isinstance(recorded, dict) else None


def load_features(
    store_path: str | Path,
    modality: str,
    *,
    trial: bool = False,
    config: FeatureConfig | None = None,
    labelled: bool = False,
) -> Any:
    """(table, array) of computed features, participants concatenated in order.

    face: array (N, 3, S, S); eeg: (N, T, channels, 5) log10 band power, NaN-padded;
    physio: array None (the features are the table's numeric columns). `trial=True`
    gives the trial-level EEG/physiology features instead.
    labelled=True returns one `xarray.DataArray` instead, with named dimensions
    (sample, flow, y, x / sample, window, channel, band / sample, feature), channel and
    band names, and the table's columns as coordinates along ``sample``
    (`mmhe.features.labelled`).
    """
    from mmhe.errors import InputFileError
    from mmhe.store import MMHEStore

    store = MMHEStore(store_path)
    folder = feature_dir(store, modality, config)
    made_from = _complete(folder)
    if made_from is None:
        raise InputFileError(
            folder,
            f"no {modality} features for these parameters",
            f"run `mmhe features {store_path} --modality {modality}`",
        )
    current = store_keys(store)
    if made_from != current:
        changed = sorted(
            sid for sid in set(made_from) | set(current) if made_from.get(sid) != current.get(sid)
        )
        raise InputFileError(
            folder,
            f"{modality} features are older than the store (participants changed since: "
            f"{', '.join(changed[:10])})",
            f"run `mmhe features {store_path} --modality {modality}` to update them",
        )
    name = f"{modality}_trial" if trial else modality
    tables, arrays = [], []
    for sid in store.participant_ids():
        part = folder / "participants" / sid
        tables.append(pd.read_parquet(part / f"{name}.parquet"))
        if (part / f"{name}.npy").is_file():
            arrays.append(np.load(part / f"{name}.npy"))
    table = (
        pd.concat([t for t in tables if len(t)], ignore_index=True)
        if any(len(t) for t in tables)
        else pd.DataFrame()
    )
    array = None
    if arrays:
        widths = {a.shape[1:] for a in arrays if len(a)}
        if len(widths) > 1:  # trials of different lengths: pad windows with NaN
            longest = max(w[0] for w in widths)
            arrays = [
                np.pad(
                    a,
                    [(0, 0), (0, longest - a.shape[1])] + [(0, 0)] * (a.ndim - 2),
                    constant_values=np.nan,
                )
                if len(a)
                else a
                for a in arrays
            ]
        array = (
            np.concatenate([a for a in arrays if len(a)])
            if any(len(a) for a in arrays)
            else np.zeros((0,))
        )
    if labelled:
        from mmhe.features.labelled import labelled as label_features

        config = config or FeatureConfig()
        return label_features(
            table,
            array,
            modality,
            trial=trial,
            channels=eeg_feature_channels(store_path, config) if modality == "eeg" else None,
            params=getattr(config, modality).model_dump(),
            window_s=config.eeg.window_s,
        )
    return table, array


def eeg_feature_channels(store_path: str | Path, config: FeatureConfig | None = None) -> list[str]:
    """Channel names along the channel axis of the EEG feature arrays."""
    from mmhe.store import MMHEStore

    store = MMHEStore(store_path)
    folder = feature_dir(store, "eeg", config)
    first = next((folder / "participants").glob("*/eeg_channels.json"))
    return json.loads(first.read_text())


def feature_issues(
    store_path: str | Path, modality: str, config: FeatureConfig | None = None
) -> pd.DataFrame:
    """Every per-sample problem recorded while computing `modality`."""
    from mmhe.store import MMHEStore

    store = MMHEStore(store_path)
    folder = feature_dir(store, modality, config)
    parts = [pd.read_parquet(p) for p in sorted((folder / "participants").glob("*/issues.parquet"))]
    parts = [p for p in parts if len(p)]
    return (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["subject_id", "sample", "code", "message"])
    )
