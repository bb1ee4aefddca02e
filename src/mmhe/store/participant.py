"""One participant, start to end: read the three devices, align them, locate expressions.

`inspect_participant` is shared by `validate` (which stops there) and `ingest` (which then
writes the trials, windows and frames with `write_participant`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmhe.errors import AlignmentError, MMHEError
from mmhe.labels import REST_MARKER, STIMULUS_MARKERS, stimulus_categories
from mmhe.store.config import IngestConfig
from mmhe.store.layout import ParticipantFiles


@dataclass
class Finding:
    """A problem met while reading one participant (becomes a row of the `issues` table)."""

    severity: str  # "error" | "warning"
    code: str
    message: str
    file: str = ""


@dataclass
class Inspection:
    """Everything read and derived for one participant before anything is written."""

    subject_id: str
    files: ParticipantFiles
    findings: list[Finding] = field(default_factory=list)
    raw: Any = None  # mne.io.BaseRaw (not preloaded)
    physio: Any = None  # PhysioRecording
    frames: Any = None  # FrameSequence
    markers: dict[str, pd.DataFrame] = field(default_factory=dict)
    timeline: Any = None  # mmhe.sync.Timeline
    trials: pd.DataFrame | None = None
    expressions: pd.DataFrame | None = None
    unrecorded_frames: int = 0

    def add(self, severity: str, code: str, message: str, file: Path | str | None = None) -> None:
        self.findings.append(Finding(severity, code, message, str(file or "")))

    @property
    def has_errors(self) -> bool:
        return any(f.severity == "error" for f in self.findings)


DROPPED_FRAME_MAX_RUN = 5
"""Counter gaps inside a clip's run of up to this many frames are dropped frames (the
camera loses isolated frames); longer gaps are stretches the folder does not hold (a
partial copy, or a synthetic tree that keeps only the frames around expressions)."""


def count_dropped_frames(frames) -> tuple[int, int]:
    """(frames dropped in short counter gaps, frames missing in longer gaps), inside runs."""
    gaps = frames.dropped_frames()
    if not len(gaps):
        return 0, 0
    inside = gaps[~gaps["marker_change"].astype(bool)]
    missing = inside["missing_by_counter"]
    short = (missing > 0) & (missing <= DROPPED_FRAME_MAX_RUN)
    return int(missing[short].sum()), int(missing[missing > DROPPED_FRAME_MAX_RUN].sum())


def _read(inspection: Inspection, what: str, path: Path | None, reader, code: str):
    if path is None:
        inspection.add(
            "error" if what == "eeg" else "warning",
            f"missing_{what}",
            f"no {what} file found",
            inspection.files.folder,
        )
        return None
    try:
        return reader(path)
    except MMHEError as exc:
        inspection.add("error", code, str(exc), path)
    except Exception as exc:  # a reader library failing on a corrupt file
        inspection.add("error", code, f"{type(exc).__name__}: {exc}", path)
    return None


def inspect_participant(
    files: ParticipantFiles, subject_id: str, expressions: pd.DataFrame, config: IngestConfig
) -> Inspection:
    """Read the devices of one participant, align them and locate its expressions.

    expressions : the coding-file rows of this participant (de-identified table).
    Never raises for bad data: problems are `Inspection.findings`; expressions that cannot be
    located keep NA sample indices and a `locate_problem`.
    """
    from mmhe.io.biopac import read_biopac
    from mmhe.io.camera import FrameSequence
    from mmhe.io.eeg import eeg_markers, read_eeg
    from mmhe.sync import build_timeline

    found = Inspection(subject_id, files)
    for problem in files.problems:
        found.add("warning", "missing_file", problem, files.folder)
    found.raw = _read(
        found, "eeg", files.eeg, lambda p: read_eeg(p, preload=False), "eeg_unreadable"
    )
    found.physio = _read(found, "biopac", files.biopac, read_biopac, "biopac_unreadable")
    found.frames = _read(found, "camera", files.camera, FrameSequence, "camera_unreadable")

    if found.raw is not None:
        found.markers["eeg"] = eeg_markers(found.raw)
    if found.physio is not None:
        found.markers["physio"] = found.physio.markers
        if len(found.physio.markers) == 0:
            found.add(
                "warning",
                "no_physio_markers",
                "the BIOPAC file has no trigger markers",
                files.biopac,
            )
    if found.frames is not None:
        found.markers["camera"] = found.frames.markers()[["onset_s", "code"]]
        dropped, unrecorded = count_dropped_frames(found.frames)
        if dropped:
            found.add("warning", "dropped_frames", f"{dropped} frames dropped", files.camera)
        found.unrecorded_frames = unrecorded

    rows = expressions.copy()
    if found.raw is None:
        rows["locate_problem"] = "EEG unreadable or missing: no timeline"
        found.expressions = rows
        return found
    physio_markers = (
        found.physio.markers if found.physio is not None and len(found.physio.markers) else None
    )
    frames = found.frames
    while True:
        try:
            found.timeline = build_timeline(
                found.markers["eeg"],
                physio_markers,
                frames,
                eeg_sfreq=float(found.raw.info["sfreq"]),
                physio_sfreq=float(found.physio.sfreq) if found.physio is not None else None,
                eeg_duration_s=found.raw.n_times / float(found.raw.info["sfreq"]),
                physio_duration_s=(
                    len(found.physio.signals) / float(found.physio.sfreq)
                    if found.physio is not None
                    else None
                ),
            )
            break
        except AlignmentError as exc:
            # a device that cannot be aligned is left out; the rest of the session is kept
            device = getattr(exc, "device", None)
            found.add("error", "alignment_failed", str(exc))
            if device == "BIOPAC" and physio_markers is not None:
                physio_markers = None
            elif device == "camera" and frames is not None:
                frames = None
            else:
                rows["locate_problem"] = f"devices could not be aligned: {exc}"
                found.expressions = rows
                return found
    if physio_markers is None:
        found.physio = None  # unreadable, without markers, or not alignable: not stored
    found.frames = frames
    for device, alignment in found.timeline.alignments.items():
        for warning in alignment.warnings:
            found.add("warning", "poor_alignment", f"{device}: {warning}")
    trials = found.timeline.trials
    keep = trials["code"].isin(STIMULUS_MARKERS) | (
        config.include_rest & (trials["code"] == REST_MARKER)
    )
    found.trials = trials[keep].reset_index(drop=True)
    found.expressions = (
        found.timeline.locate(rows)
        if len(rows)
        else rows.assign(locate_problem=pd.Series(dtype="object"))
    )
    return found


# ---------------------------------------------------------------- writing


def file_digest(path: Path) -> str:
    """BLAKE2b of a file's bytes (streamed in 4 MB blocks)."""
    digest = hashlib.blake2b(digest_size=16)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(4 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_digest(folder: Path) -> tuple[int, str]:
    """(total bytes, hash of the sorted name/size listing) of a frame folder.

    Frames are hashed by listing, not content: hashing ~400,000 images per participant on
    every ingest costs more than reading them; names carry timestamp and counter.
    """
    digest = hashlib.blake2b(digest_size=16)
    total = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            size = path.stat().st_size
            total += size
            digest.update(f"{path.relative_to(folder)}:{size}\n".encode())
    return total, digest.hexdigest()


def _to_frames(frames: np.ndarray, config: IngestConfig) -> np.ndarray:
    """Downscale / convert frames (n, H, W[, 3]) uint8 as the config says."""
    import cv2

    if frames.ndim == 3:
        frames = frames[..., None]
    _, height, width, channels = frames.shape
    if config.frame_color == "grey" and channels == 3:
        frames = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames])[..., None]
    if config.frame_size is not None and max(height, width) > config.frame_size:
        scale = config.frame_size / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        resized = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
        frames = np.stack([r if r.ndim == 3 else r[..., None] for r in resized])
    return np.ascontiguousarray(frames)


def _frame_span(row: pd.Series, trial: pd.Series | None, context: int, n_total: int):
    first = int(row["frame_onset"]) - context
    last = int(row["frame_offset"]) + context
    low, high = 0, n_total - 1
    if trial is not None and not pd.isna(trial["frame_start"]):
        low, high = int(trial["frame_start"]), int(trial["frame_stop"]) - 1
    return max(first, low), min(last, high)


def write_participant(found: Inspection, out_dir: Path, config: IngestConfig) -> dict[str, Any]:
    """Write one inspected participant into `out_dir` (a fresh folder): tables and arrays.

    Layout: ``{trials,expressions,events,alignment,issues,action_units}.parquet`` and
    ``arrays.zarr`` with ``eeg`` and ``physio`` (trials x channels x samples, float32, NaN
    after a trial's end, one chunk per trial) and ``frames/<expression_id>``
    (frames x H x W x C, uint8, one chunk per frame); with ``config.video_size`` also
    ``videos/<trial_index>`` (every frame of the trial as a grey face crop,
    `mmhe.store.videos`).
    """
    import zarr

    sid = found.subject_id
    out_dir.mkdir(parents=True)
    group = zarr.open_group(str(out_dir / "arrays.zarr"), mode="w")
    categories = stimulus_categories()
    trials = found.trials.copy() if found.trials is not None else pd.DataFrame()
    counts: dict[str, Any] = {"trials": len(trials)}
    if len(trials):
        trials.insert(0, "subject_id", sid)
        trials.insert(1, "trial_index", np.arange(len(trials)))
        trials["category"] = trials["code"].map(categories)
        pad_eeg = round(config.trial_padding_s * float(found.raw.info["sfreq"]))
        trials["eeg_start"] = (trials["eeg_start"] - pad_eeg).clip(lower=0)
        trials["eeg_stop"] = (trials["eeg_stop"] + pad_eeg).clip(upper=found.raw.n_times)
        _write_eeg(group, found, trials)
        if (
            found.physio is not None
            and "physio_start" in trials
            and trials["physio_start"].notna().any()
        ):
            pad = round(config.trial_padding_s * float(found.physio.sfreq))
            n = len(found.physio.signals)
            cut = trials["physio_start"].notna() & trials["physio_stop"].isna()
            if cut.any():  # the BIOPAC stopped before these trials ended: keep what exists
                found.add(
                    "warning",
                    "physio_truncated",
                    f"BIOPAC recording ends inside trial(s) with marker(s) "
                    f"{trials.loc[cut, 'code'].tolist()}; kept up to its end",
                )
                trials.loc[cut, "physio_stop"] = n
            trials["physio_start"] = (trials["physio_start"] - pad).clip(lower=0)
            trials["physio_stop"] = (trials["physio_stop"] + pad).clip(upper=n)
            _write_physio(group, found, trials)
    expressions = found.expressions.copy()
    expressions.insert(0, "expression_id", [f"{sid}-r{int(r):05d}" for r in expressions["row"]])
    expressions["trial_index"] = pd.array([pd.NA] * len(expressions), dtype="Int64")
    expressions["stored_frames"] = 0
    expressions["frames_first"] = pd.array([pd.NA] * len(expressions), dtype="Int64")
    if len(trials) and len(expressions):
        by_code = dict(zip(trials["code"], trials["trial_index"], strict=False))
        expressions["trial_index"] = pd.array(
            [by_code.get(int(m)) for m in expressions["marker"]], dtype="Int64"
        )
    if found.frames is not None and len(expressions):
        frames_group = group.require_group("frames")
        for i, row in expressions.iterrows():
            if not pd.isna(row.get("locate_problem")) or pd.isna(row.get("frame_onset")):
                continue
            trial = None
            if not pd.isna(row["trial_index"]):
                trial = trials.loc[trials["trial_index"] == row["trial_index"]].iloc[0]
            first, last = _frame_span(row, trial, config.frame_context, len(found.frames))
            try:
                frames = _to_frames(found.frames.read_range(first, last + 1), config)
            except MMHEError as exc:  # the face is missing; EEG and physiology stay usable
                found.add(
                    "error",
                    "frames_unreadable",
                    f"coding row {int(row['row'])}: {exc}",
                    found.files.camera,
                )
                continue
            array = frames_group.create_array(
                row["expression_id"],
                shape=frames.shape,
                dtype="uint8",
                chunks=(1, *frames.shape[1:]),
            )
            array[...] = frames
            expressions.loc[i, "stored_frames"] = len(frames)
            expressions.loc[i, "frames_first"] = first
    if config.video_size and found.frames is not None and len(trials):
        from mmhe.store.videos import write_trial_videos

        counts |= write_trial_videos(
            group,
            found.frames,
            trials,
            config.video_size,
            lambda severity, code, message: found.add(severity, code, message, found.files.camera),
        )
    counts["expressions"] = len(expressions)
    counts["not_located"] = (
        int(expressions["locate_problem"].notna().sum()) if "locate_problem" in expressions else 0
    )
    _tables(found, trials, expressions, out_dir)
    return counts


def _write_eeg(group, found: Inspection, trials: pd.DataFrame) -> None:
    raw = found.raw
    picks = [i for i, kind in enumerate(raw.get_channel_types()) if kind != "stim"]
    lengths = (trials["eeg_stop"] - trials["eeg_start"]).astype(int).to_numpy()
    shape = (len(trials), len(picks), int(lengths.max()))
    array = group.create_array(
        "eeg", shape=shape, dtype="float32", chunks=(1, *shape[1:]), fill_value=math.nan
    )
    for i, (start, stop) in enumerate(zip(trials["eeg_start"], trials["eeg_stop"], strict=True)):
        array[i, :, : int(stop) - int(start)] = raw.get_data(
            picks=picks, start=int(start), stop=int(stop)
        ).astype("float32")
    array.attrs.update(
        channels=[raw.ch_names[i] for i in picks],
        channel_types=[raw.get_channel_types()[i] for i in picks],
        sfreq=float(raw.info["sfreq"]),
        unit="V",
    )
    trials["n_eeg_samples"] = lengths


def _write_physio(group, found: Inspection, trials: pd.DataFrame) -> None:
    signals = found.physio.signals
    values = signals.to_numpy(dtype="float32")
    valid = trials["physio_start"].notna()
    lengths = np.where(valid, (trials["physio_stop"] - trials["physio_start"]).fillna(0), 0)
    shape = (len(trials), values.shape[1], int(lengths.max()))
    array = group.create_array(
        "physio", shape=shape, dtype="float32", chunks=(1, *shape[1:]), fill_value=math.nan
    )
    for i, (start, stop) in enumerate(
        zip(trials["physio_start"], trials["physio_stop"], strict=True)
    ):
        if not pd.isna(start):
            array[i, :, : int(stop) - int(start)] = values[int(start) : int(stop)].T
    array.attrs.update(
        channels=list(signals.columns),
        sfreq=float(found.physio.sfreq),
        units=[str(found.physio.units.get(c, "")) for c in signals.columns],
    )
    trials["n_physio_samples"] = lengths.astype(int)


def _tables(
    found: Inspection, trials: pd.DataFrame, expressions: pd.DataFrame, out_dir: Path
) -> None:
    from mmhe.labels import ACTION_UNITS

    sid = found.subject_id
    events = [
        markers.assign(subject_id=sid, device=device)[["subject_id", "device", "onset_s", "code"]]
        for device, markers in found.markers.items()
    ]
    alignment = []
    if found.timeline is not None:
        for device, a in found.timeline.alignments.items():
            alignment.append(
                {
                    "subject_id": sid,
                    "device": device,
                    "offset_s": a.offset_s,
                    "drift_ppm": a.drift_ppm,
                    "n_matched": a.n_matched,
                    "n_unmatched": len(a.unmatched),
                    "residual_ms_median": a.residual_ms_median,
                    "residual_ms_max": a.residual_ms_max,
                    "warnings": "; ".join(a.warnings),
                }
            )
    aus = [
        {
            "expression_id": e,
            "subject_id": sid,
            "au": int(au),
            "name": ACTION_UNITS[au].name if au in ACTION_UNITS else "",
            "region": ACTION_UNITS[au].region if au in ACTION_UNITS else "",
        }
        for e, units in zip(expressions["expression_id"], expressions["aus"], strict=True)
        for au in units
    ]
    table = expressions.copy()
    table["aus"] = [list(map(int, a)) for a in table["aus"]]
    records = [{"subject_id": sid, "row": None, **f.__dict__} for f in found.findings]
    if "locate_problem" in table:
        records += [
            {
                "subject_id": sid,
                "row": int(r.row),
                "severity": "error",
                "code": "expression_not_located",
                "message": r.locate_problem,
                "file": "",
            }
            for r in table[table["locate_problem"].notna()].itertuples()
        ]
    issues = pd.DataFrame(
        records, columns=["subject_id", "row", "severity", "code", "message", "file"]
    )
    issues["row"] = issues["row"].astype("Int64")
    outputs = {
        "trials": trials,
        "expressions": table,
        "issues": issues,
        "events": pd.concat(events, ignore_index=True) if events else pd.DataFrame(),
        "alignment": pd.DataFrame(alignment),
        "action_units": pd.DataFrame(
            aus, columns=["expression_id", "subject_id", "au", "name", "region"]
        ),
    }
    for name, frame in outputs.items():
        frame.to_parquet(out_dir / f"{name}.parquet", index=False)
