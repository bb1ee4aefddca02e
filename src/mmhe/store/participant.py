"""One participant, start to end: read the three devices, align them, locate expressions.

`inspect_participant` is shared by `validate` (which stops there) and `ingest` (which then
writes the trials, windows and frames with `write_participant`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmhe.errors import AlignmentError, MMHEError
from mmhe.labels import REST_MARKER, STIMULUS_MARKERS, stimulus_categories
from mmhe.parallel import background_writes
from mmhe.store.config import IngestConfig
from mmhe.store.layout import ParticipantFiles
from mmhe.store.problems import issue_frame
from mmhe.store.zarr_arrays import (
    array_compressors,
    consolidate,
    create_data_array,
    seconds,
    write_coordinate,
)


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
    clean: Any = field(default=lambda finding: finding, repr=False)
    """Finding -> Finding applied when issues are written (ingest: names -> pseudonyms)."""

    def add(self, severity: str, code: str, message: str, file: Path | str | None = None) -> None:
        self.findings.append(Finding(severity, code, message, str(file or "")))

    @property
    def has_errors(self) -> bool:
        return any(f.severity == "error" for f in self.findings)


def _report_physio_checks(found: Inspection, path: Path | None) -> None:
    """Read-time physiology checks as findings: masked segments, saturation, channel
    choices and units (`mmhe.io.physio_checks`, `mmhe.io.channel_roles`)."""
    name = Path(path).name if path is not None else "BIOPAC file"
    segments = found.physio.bad_segments
    tail = segments[segments["reason"].str.startswith("garbage tail")]
    if len(tail):
        found.add(
            "warning",
            "physio_bad_segment",
            f"{name}: {tail['reason'].iloc[0]} from {tail['start_s'].min():.3f} s to the end, "
            f"masked (NaN) in {len(tail)} channels ({', '.join(tail['channel'])})",
            path,
        )
    for segment in segments.drop(tail.index).itertuples(index=False):
        action = "masked (NaN)" if segment.masked else "kept"
        found.add(
            "warning",
            "physio_bad_segment" if segment.masked else "physio_saturated",
            f"{name}: {segment.channel} {segment.start_s:.3f}-{segment.stop_s:.3f} s "
            f"({segment.n_samples} samples) {segment.reason}; {action}",
            path,
        )
    for note in found.physio.channel_notes:
        found.add("warning", "physio_channels", f"{name}: {note}", path)
    if found.physio.unknown_channels:
        found.add(
            "warning",
            "physio_unknown_channels",
            f"{name}: channels without a role kept under their own names: "
            + ", ".join(repr(label) for label in found.physio.unknown_channels),
            path,
        )


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


def _failure(exc: Exception) -> str:
    if isinstance(exc, MMHEError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"  # a reader library failing on a corrupt file


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
    except Exception as exc:
        inspection.add("error", code, _failure(exc), path)
    return None


_DEVICE_WORDS = {"eeg": "EEG", "biopac": "BIOPAC"}


def _read_device(inspection: Inspection, what: str, reader, code: str):
    """Read one device, trying every candidate file in order; several candidates are a
    reported conflict naming them all (an error, or a warning when `--prefer` chose)."""
    files = inspection.files
    candidates = files.candidates.get(what) or (
        [getattr(files, what)] if getattr(files, what) else []
    )
    if len(candidates) <= 1:
        value = _read(inspection, what, candidates[0] if candidates else None, reader, code)
        return value, candidates[0] if candidates else None
    failures: dict[Path, str] = {}
    chosen, value = None, None
    for path in candidates:
        try:
            value, chosen = reader(path), path
            break
        except Exception as exc:
            failures[path] = _failure(exc)
    names = ", ".join(_local_name(p, files.folder) for p in candidates)
    word = _DEVICE_WORDS[what]
    if chosen is None:
        for path, reason in failures.items():
            inspection.add("error", code, reason, path)
        inspection.add(
            "error",
            f"{what}_ambiguous",
            f"{len(candidates)} {word} files ({names}) and none can be read",
            files.folder,
        )
        return None, None
    skipped = "; ".join(
        f"{_local_name(p, files.folder)} not readable: {reason}" for p, reason in failures.items()
    )
    preferred = files.preferred and chosen == candidates[0]
    inspection.add(
        "warning" if preferred else "error",
        f"{what}_ambiguous",
        f"{len(candidates)} {word} files ({names}); used {_local_name(chosen, files.folder)}"
        + (f" ({skipped})" if skipped else "")
        + ("" if preferred else f"; keep one, or choose with --prefer {chosen.suffix.lower()}"),
        files.folder,
    )
    return value, chosen


def _local_name(path: Path, folder: Path) -> str:
    try:
        return str(path.relative_to(folder))
    except ValueError:
        return path.name


def _physio_findings(found: Inspection, physio, path: Path) -> bool:
    """Empty or NaN BIOPAC signals as findings; False when nothing usable is left."""
    signals = physio.signals
    if len(signals) == 0 or signals.shape[1] == 0:
        found.add(
            "error",
            "biopac_empty",
            "the BIOPAC file holds no samples (empty export?): export the recording again",
            path,
        )
        return False
    values = signals.to_numpy(dtype=float)
    missing = np.isnan(values)
    if missing.all():
        found.add(
            "error",
            "biopac_all_nan",
            f"every BIOPAC sample is NaN ({len(signals)} samples x {signals.shape[1]} channels): "
            "export the recording again",
            path,
        )
        return False
    for column, mask in zip(signals.columns, missing.T, strict=True):
        if not mask.any():
            continue
        edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        longest = int(np.argmax(stops - starts))
        found.add(
            "warning",
            "physio_nan",
            f"BIOPAC channel {column}: {int(mask.sum())} NaN samples in {len(starts)} run(s), "
            f"longest {int(stops[longest] - starts[longest])} samples from "
            f"{starts[longest] / physio.sfreq:.3f} s (stored as NaN; windows over them give NaN)",
            path,
        )
    return True


def _no_physio_markers_message(physio) -> str:
    if not physio.has_trigger_lines:
        return "the BIOPAC file has no Digital (STP Input) trigger lines: it cannot be aligned"
    text = physio.markers.attrs.get("message")
    base = "the BIOPAC file has no trigger markers (its digital trigger lines never carry a code)"
    return f"{base}: {text}" if text else base


def _truncation_findings(found: Inspection) -> None:
    """The EEG ends while another device still records a stimulus: a cut EEG file."""
    timeline, raw = found.timeline, found.raw
    duration = raw.n_times / float(raw.info["sfreq"])
    camera = timeline.alignments.get("camera")
    if camera is not None and timeline.camera_runs is not None and len(timeline.camera_runs):
        ends = camera.to_reference(timeline.camera_runs["last_s"].to_numpy(dtype=float))
        late = ends > duration + 1.0 / timeline.fps
        if late.any():
            last = int(np.argmax(ends))
            found.add(
                "error",
                "eeg_truncated",
                f"the EEG ends at {duration:.3f} s but the camera recorded marker "
                f"{int(timeline.camera_runs['code'].iloc[last])} until {ends[last]:.3f} s "
                f"on the EEG clock ({int(late.sum())} camera run(s) past the EEG end): the EEG "
                "file looks truncated; its last trial is cut short",
                found.files.eeg,
            )
            return
    physio = timeline.alignments.get("physio")
    if physio is not None and found.physio is not None and len(found.physio.markers):
        onsets = physio.to_reference(found.physio.markers["onset_s"].to_numpy(dtype=float))
        late = onsets > duration
        if late.any():
            found.add(
                "error",
                "eeg_truncated",
                f"the EEG ends at {duration:.3f} s but the BIOPAC saw {int(late.sum())} marker(s) "
                f"after it (codes {found.physio.markers['code'][late].tolist()[:5]}): the EEG "
                "file looks truncated",
                found.files.eeg,
            )


def inspect_participant(
    files: ParticipantFiles, subject_id: str, expressions: pd.DataFrame, config: IngestConfig
) -> Inspection:
    """Read the devices of one participant, align them and locate its expressions.

    expressions : the coding-file rows of this participant (de-identified table).
    Never raises for bad data: problems are `Inspection.findings`; expressions that cannot be
    located keep NA sample indices and a `locate_problem`. Without a usable EEG clock
    (unreadable EEG, or no markers) expressions are located on the camera's own clock
    (`mmhe.sync.camera_timeline`): their face frames survive, flagged.
    """
    from mmhe.io.biopac import read_biopac
    from mmhe.io.camera import FrameSequence
    from mmhe.io.eeg import eeg_markers, read_eeg_checked
    from mmhe.sync import build_timeline

    found = Inspection(subject_id, files)
    for problem in files.problems:
        found.add("warning", "missing_file", problem, files.folder)
    from mmhe.io.xdf import is_xdf, read_xdf_eeg, read_xdf_physio

    def eeg_reader(path):
        if is_xdf(path):  # an LSL recording: one stream per device, nothing to truncate
            raw, problems = read_xdf_eeg(path), []
        else:
            raw, problems = read_eeg_checked(path, preload=False)
        return raw, problems, eeg_markers(raw)

    def physio_reader(path):
        return read_xdf_physio(path) if is_xdf(path) else read_biopac(path)

    eeg, files.eeg = _read_device(found, "eeg", eeg_reader, "eeg_unreadable")
    if eeg is not None:
        found.raw, truncation, found.markers["eeg"] = eeg
        for problem in truncation:
            found.add("error", "eeg_truncated", problem, files.eeg)
        if len(found.markers["eeg"]) == 0:
            found.add(
                "error",
                "no_eeg_markers",
                found.markers["eeg"].attrs.get("message")
                or "the EEG recording has no stimulus markers (100..148): no trials can be cut",
                files.eeg,
            )
    found.physio, files.biopac = _read_device(found, "biopac", physio_reader, "biopac_unreadable")
    if found.physio is not None and not _physio_findings(found, found.physio, files.biopac):
        found.physio = None
    found.frames = _read(found, "camera", files.camera, FrameSequence, "camera_unreadable")

    if found.physio is not None:
        found.markers["physio"] = found.physio.markers
        _report_physio_checks(found, files.biopac)
        if len(found.physio.markers) == 0:
            found.add(
                "warning",
                "no_physio_markers",
                _no_physio_markers_message(found.physio),
                files.biopac,
            )
    if found.frames is not None:
        found.markers["camera"] = found.frames.markers()[["onset_s", "code"]]
        dropped, unrecorded = count_dropped_frames(found.frames)
        if dropped:
            found.add("warning", "dropped_frames", f"{dropped} frames dropped", files.camera)
        found.unrecorded_frames = unrecorded

    rows = expressions.copy()
    if found.raw is None or len(found.markers["eeg"]) == 0:
        reason = "EEG unreadable or missing" if found.raw is None else "EEG without markers"
        return _camera_clock(found, rows, reason)
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
                return _camera_clock(found, rows, f"devices could not be aligned: {exc}")
    if physio_markers is None:
        found.physio = None  # unreadable, without markers, or not alignable: not stored
    found.frames = frames
    for device, alignment in found.timeline.alignments.items():
        for warning in alignment.warnings:
            found.add("warning", "poor_alignment", f"{device}: {warning}")
    _truncation_findings(found)
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


def _camera_clock(found: Inspection, rows: pd.DataFrame, reason: str) -> Inspection:
    """No EEG clock: locate expressions on the camera's own clock when there are frames."""
    from mmhe.sync import camera_timeline

    if found.physio is not None:
        found.add(
            "warning",
            "physio_not_stored",
            f"BIOPAC data not stored: {reason}, so there is no clock to align it to",
            found.files.biopac,
        )
        found.physio = None
    if found.frames is None or len(found.frames) == 0 or not len(found.frames.markers()):
        rows["locate_problem"] = f"{reason}: no timeline"
        found.expressions = rows
        return found
    found.timeline = camera_timeline(found.frames)
    found.expressions = (
        found.timeline.locate(rows)
        if len(rows)
        else rows.assign(locate_problem=pd.Series(dtype="object"))
    )
    kept = int(found.expressions["locate_problem"].isna().sum()) if len(rows) else 0
    found.add(
        "warning",
        "camera_clock_only",
        f"{reason}: {kept} of {len(rows)} expression(s) located on the camera's own clock "
        "(face frames stored; no EEG or BIOPAC samples, located_by camera_clock_*)",
        found.files.camera,
    )
    return found


# ---------------------------------------------------------------- writing


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (64 hex digits), streamed through one reused buffer
    (`hashlib.file_digest`).

    SHA-256 is the content hash of git-annex, DataLad and most data archives, and CPUs
    compute it in hardware (x86 SHA extensions, ARMv8): 1,412 MB/s here against 529 MB/s
    for BLAKE2b (256 MB in memory), so the 917 MB of device files of the demo raw tree
    cost 0.65 instead of 1.7 CPU-s of ingest.
    """
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


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
    ``arrays.zarr`` with ``eeg_continuous`` (channels x samples of the whole session;
    trials are views of it, `mmhe.store.trial_view`) or, without
    ``config.keep_continuous_eeg``, ``eeg`` (trials x channels x samples), ``physio``
    (trials x channels x samples, float32, NaN after a trial's end, one chunk per trial),
    ``frames/<expression_id>/image`` (frames x H x W x C, uint8, one file per expression,
    chunks of `frames_per_chunk` frames), each with dimension names and coordinates
    (`mmhe.store.zarr_arrays`); with ``config.video_size`` also ``videos/<trial_index>``
    (every frame of the trial as a grey face crop, `mmhe.store.videos`).
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
        signal = array_compressors("signal", config.compression)
        _write_eeg(group, found, trials, signal, config.keep_continuous_eeg)
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
            _write_physio(group, found, trials, array_compressors("signal", config.compression))
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
        with background_writes() as submit:  # frames written while the next are decoded
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
                        f"coding-file sheet row {int(row['row']) + 1}: {exc}",
                        found.files.camera,
                    )
                    continue
                _write_frames(
                    frames_group.create_group(row["expression_id"]),
                    frames,
                    first,
                    found,
                    array_compressors("frames", config.compression),
                    submit,
                )
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
    consolidate(out_dir / "arrays.zarr")
    return counts


def _write_frames(
    group,
    frames: np.ndarray,
    first: int,
    found: Inspection,
    compressors,
    submit: Callable[..., None],
) -> None:
    """One expression's frames (n, H, W, C) as ``image`` with its frame and time axes;
    the pixels are written through ``submit(function, *arguments)`` (`background_writes`).
    One file per expression, in chunks of `frames_per_chunk` frames."""
    per_chunk = frames_per_chunk(frames.shape)
    image = create_data_array(
        group,
        "image",
        shape=frames.shape,
        dtype="uint8",
        chunks=(per_chunk, *frames.shape[1:]),
        dims=("frame", "y", "x", "color"),
        coordinates=("time",),
        compressors=compressors,
        shards=(_multiple(len(frames), per_chunk), *frames.shape[1:])
        if per_chunk < len(frames)
        else None,
    )
    submit(image.__setitem__, Ellipsis, frames)
    index = np.arange(first, first + len(frames), dtype=np.int64)
    write_coordinate(group, "frame", index, "frame", attrs={"long_name": "camera frame index"})
    camera = found.timeline.alignments.get("camera") if found.timeline is not None else None
    times = (
        camera.to_reference(found.frames.times[index])
        if camera is not None
        else np.full(len(index), np.nan)
    )
    write_coordinate(
        group, "time", times, "frame", attrs={"units": "s", "long_name": "time on the EEG clock"}
    )
    colors = ["R", "G", "B"] if frames.shape[-1] == 3 else ["grey"]
    write_coordinate(group, "color", colors, "color")


FRAME_CHUNK_BYTES = 16 << 20
"""Most bytes of frames in one chunk of ``frames/<id>/image`` (before compression)."""


def frames_per_chunk(shape: tuple[int, ...]) -> int:
    """Frames per chunk of an expression's ``image`` of ``shape`` (n, H, W, C): as many
    as fit in `FRAME_CHUNK_BYTES`, at least one, at most n.

    Every reader takes an expression's frames whole (`MMHEStore.frames`), so a chunk
    per frame only cost Zarr's per-chunk work: on the demo raw tree one chunk per
    expression (240 x 320 frames) took 1.1-1.5 s less user CPU of the 10 participants'
    ingest (3 alternated pairs, store on tmpfs), and the face features read the frames
    0.1 s faster per participant. Full-resolution frames (2048 x 1088 x 3, 6.7 MB) go
    two to a chunk inside one file per expression.
    """
    n = int(shape[0])
    frame_bytes = max(1, math.prod(int(side) for side in shape[1:]))
    return max(1, min(n, FRAME_CHUNK_BYTES // frame_bytes))


def _write_eeg(
    group, found: Inspection, trials: pd.DataFrame, compressors, continuous: bool
) -> None:
    """The EEG from one pass over the recording in blocks of about
    `CONTINUOUS_CHUNK_SAMPLES` (each sample read, and calibrated by MNE, once).

    With ``continuous``: ``eeg_continuous`` (the session) and, along ``trial``, each
    trial's ``eeg_start`` and ``n_eeg_samples`` on it; trials are read as views of the
    session (`mmhe.store.trial_view`), not stored twice. Without: ``eeg`` (trials x
    channels x samples, NaN after a trial's end), every trial cut from the blocks it
    spans."""
    raw = found.raw
    kinds = raw.get_channel_types()
    picks = [i for i, kind in enumerate(kinds) if kind != "stim"]
    sfreq = float(raw.info["sfreq"])
    starts = trials["eeg_start"].astype(int).to_numpy()
    stops = trials["eeg_stop"].astype(int).to_numpy()
    lengths = stops - starts
    trials["n_eeg_samples"] = lengths
    longest = int(lengths.max())
    channel_attrs = {
        "channels": [raw.ch_names[i] for i in picks],
        "channel_types": [kinds[i] for i in picks],
        "sfreq": sfreq,
        "unit": "V",
    }
    _trial_coordinates(group, trials)
    _eeg_channel_coordinates(group, raw, picks)
    write_coordinate(group, "eeg_time", seconds(longest, sfreq), "eeg_time", attrs={"units": "s"})
    n = int(raw.n_times)
    if continuous:
        inner = min(n, CONTINUOUS_READ_SAMPLES)
        shard = _multiple(min(n, CONTINUOUS_CHUNK_SAMPLES), inner)  # written whole, once
        array = create_data_array(
            group,
            "eeg_continuous",
            shape=(len(picks), n),
            dtype="float32",
            chunks=(len(picks), inner),
            shards=(len(picks), shard),
            dims=("eeg_channel", "eeg_session_time"),
            coordinates=("eeg_channel_type",),
            compressors=compressors,
            attrs=channel_attrs,
        )
        write_coordinate(
            group,
            "eeg_session_time",
            seconds(n, sfreq),
            "eeg_session_time",
            chunk=CONTINUOUS_CHUNK_SAMPLES,
            attrs={"units": "s", "long_name": "seconds from the EEG recording's first sample"},
        )
        for name, values, meaning in (
            ("eeg_start", starts, "first sample of the trial in eeg_continuous"),
            ("n_eeg_samples", lengths, "samples of the trial in eeg_continuous"),
        ):
            attrs = {"units": "samples", "long_name": meaning}
            write_coordinate(group, name, values.astype(np.int64), "trial", attrs=attrs)
        with background_writes() as submit:  # a block is written while the next is read
            for block in range(0, n, shard):
                end = min(n, block + shard)
                data = raw.get_data(picks=picks, start=block, stop=end).astype("float32")
                submit(array.__setitem__, (slice(None), slice(block, end)), data)
        return
    array = create_data_array(
        group,
        "eeg",
        shape=(len(trials), len(picks), longest),
        dtype="float32",
        chunks=(1, len(picks), longest),
        dims=("trial", "eeg_channel", "eeg_time"),
        coordinates=("marker", "category", "eeg_channel_type"),
        fill_value=math.nan,
        compressors=compressors,
        attrs=channel_attrs,
    )
    first, last = int(starts.min()), int(stops.max())
    pending: dict[int, np.ndarray] = {}  # trial -> its samples while its blocks are read
    with background_writes() as submit:  # a trial is written while the next block is read
        for block in range(first, last, CONTINUOUS_CHUNK_SAMPLES):
            end = min(last, block + CONTINUOUS_CHUNK_SAMPLES)
            data = raw.get_data(picks=picks, start=block, stop=end).astype("float32")
            for i in np.flatnonzero((starts < end) & (stops > block) & (lengths > 0)):
                low, high = max(starts[i], block), min(stops[i], end)
                part = pending.setdefault(i, np.empty((len(picks), lengths[i]), dtype="float32"))
                part[:, low - starts[i] : high - starts[i]] = data[:, low - block : high - block]
                if stops[i] <= end:
                    where = (int(i), slice(None), slice(None, int(lengths[i])))
                    submit(array.__setitem__, where, pending.pop(i))


CONTINUOUS_CHUNK_SAMPLES = 60_000
"""Samples per block read from the recording and per file (shard) of ``eeg_continuous``
(60 s at 1000 Hz: 16 MB for 68 channels)."""
CONTINUOUS_READ_SAMPLES = 5_000
"""Samples per chunk inside a shard of ``eeg_continuous``, the least a read decompresses
(5 s: 1.4 MB for 68 channels). Trials are read as views of the session, so a 2-s window
around an expression (`MMHEStore.torch_dataset`) must not decompress a whole 60-s block:
on the demo store it took 10.4-11.1 ms per window then, 3.5-6.2 ms with these chunks, and
5.9-8.0 ms from the per-trial chunks of store format 2 (2 runs each)."""


def _multiple(samples: int, step: int) -> int:
    """The least multiple of ``step`` that holds ``samples`` (a shard holds whole chunks)."""
    return -(-samples // step) * step


def _trial_coordinates(group, trials: pd.DataFrame) -> None:
    if "trial" in group:
        return
    write_coordinate(group, "trial", trials["trial_index"].to_numpy(np.int64), "trial")
    write_coordinate(group, "marker", trials["code"].to_numpy(np.int64), "trial")
    write_coordinate(group, "category", trials["category"].fillna("").to_numpy(str), "trial")


def _eeg_channel_coordinates(group, raw, picks: list[int]) -> None:
    if "eeg_channel" in group:
        return
    kinds = raw.get_channel_types()
    write_coordinate(group, "eeg_channel", [raw.ch_names[i] for i in picks], "eeg_channel")
    write_coordinate(group, "eeg_channel_type", [kinds[i] for i in picks], "eeg_channel")


def _write_physio(group, found: Inspection, trials: pd.DataFrame, compressors) -> None:
    signals = found.physio.signals
    values = signals.to_numpy(dtype="float32")
    valid = trials["physio_start"].notna()
    lengths = np.where(valid, (trials["physio_stop"] - trials["physio_start"]).fillna(0), 0)
    shape = (len(trials), values.shape[1], int(lengths.max()))
    units = [str(found.physio.units.get(c, "")) for c in signals.columns]
    array = create_data_array(
        group,
        "physio",
        shape=shape,
        dtype="float32",
        chunks=(1, *shape[1:]),
        dims=("trial", "physio_channel", "physio_time"),
        coordinates=("marker", "category", "physio_unit"),
        fill_value=math.nan,
        compressors=compressors,
        attrs={
            "channels": list(signals.columns),
            "sfreq": float(found.physio.sfreq),
            "units": units,
        },
    )
    _trial_coordinates(group, trials)
    write_coordinate(group, "physio_channel", list(signals.columns), "physio_channel")
    write_coordinate(group, "physio_unit", units, "physio_channel")
    write_coordinate(
        group,
        "physio_time",
        seconds(shape[2], found.physio.sfreq),
        "physio_time",
        attrs={"units": "s"},
    )
    for i, (start, stop) in enumerate(
        zip(trials["physio_start"], trials["physio_stop"], strict=True)
    ):
        if not pd.isna(start):
            array[i, :, : int(stop) - int(start)] = values[int(start) : int(stop)].T
    trials["n_physio_samples"] = lengths.astype(int)


def issue_records(found: Inspection, expressions: pd.DataFrame) -> list[dict[str, Any]]:
    """The participant's rows of the `issues` table: its findings (passed through
    `found.clean`, e.g. a redactor) and one row per expression that could not be located."""
    sid = found.subject_id
    records = [{"subject_id": sid, "row": None, **found.clean(f).__dict__} for f in found.findings]
    if expressions is not None and "locate_problem" in expressions:
        records += [
            {
                "subject_id": sid,
                "row": int(r.row),
                "severity": "error",
                "code": "expression_not_located",
                "message": found.clean(Finding("error", "", str(r.locate_problem))).message,
                "file": "",
            }
            for r in expressions[expressions["locate_problem"].notna()].itertuples()
        ]
    return records


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
    from mmhe.io.xdf import is_xdf, xdf_alignment_rows

    if is_xdf(found.files.eeg):  # one row per LSL stream: its timing residual
        alignment += [{"subject_id": sid, **row} for row in xdf_alignment_rows(found.files.eeg)]
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
    issues = issue_frame(issue_records(found, table))
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
