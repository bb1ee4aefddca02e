"""Whole-trial face videos for spotting: every frame of a trial as a small grey face crop.

Spotting looks at every frame of a long trial (90 s at 150 fps = 13,500 frames of
2048 x 1088 x 3 bytes, 90 GB), so a trial is never loaded whole: frames are read one by
one from the raw ``.tif`` files (`stream_trial_crops`), cropped to the participant's face
and shrunk, and written chunk by chunk. With ``IngestConfig.video_size = S`` (e.g. 128)
`mmhe ingest` stores, per trial, in ``arrays.zarr``::

    videos/<trial_index>/frames   (n_frames, S, S) uint8 grey, dims (frame, y, x),
                                  chunks of 150 frames (one second at 150 fps)
    videos/<trial_index>/time_s   (n_frames,) float64 camera time of day (s, the frame
                                  names' clock), dims (frame,)
    videos/<trial_index>/counter  (n_frames,) int16 frame counter of the name (0..999)
    videos/<trial_index>/valid    (n_frames,) bool, False where the raw frame could not
                                  be read (the previous frame is repeated there)

with attributes ``fps``, ``frame_start``, ``code`` (marker), ``box`` (x, y, w, h),
``box_source``, ``size``, ``margin`` and ``date`` (calendar day of the first frame).

Frame i of a trial video is camera frame ``trial.frame_start + i`` of the participant
(`mmhe.io.camera.FrameSequence` order), so the stored expressions' ``frame_onset`` etc.
minus ``frame_start`` are positions in the video. The crop: a square around the face box
found on the trial's middle frame (`mmhe.features.face.detect_face`, Haar cascade, else
the green-screen head) with a margin of `VIDEO_MARGIN` of the box side on each side,
converted to grey (ITU-R BT.601) and resized with ``cv2.INTER_AREA`` to S x S. At
S = 128 a trial costs 16 kB per frame before compression (Zstandard in Zarr): about 220 MB
for a 90-s trial. The box is fixed per trial; head motion stays in the video (spotters
remove it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mmhe.errors import InputFileError, MMHEError
from mmhe.store.zarr_arrays import write_coordinate

VIDEO_MARGIN = 0.15
"""Margin around the face box, on each side, as a fraction of the box side."""
VIDEO_CHUNK = 150
"""Frames per stored chunk (and per read while streaming)."""
FINDING = Callable[[str, str, str], None]
"""finding(severity, code, message): how problems are reported to the ingest."""


def trial_face_box(frames, first: int, stop: int) -> tuple[tuple[int, int, int, int], str]:
    """Face box (x, y, w, h) of a trial and how it was found.

    Tries the middle frame, then the first and the last (`detect_face`: Haar, then the
    green-screen head). Returns the box and ``"haar"``/``"segmentation"``, or the
    central square of the frame and ``"frame"`` when no face is found.
    """
    from mmhe.features.face import FaceNotFoundError, detect_face

    image = None
    for position in dict.fromkeys(((first + stop - 1) // 2, first, stop - 1)):
        try:
            image = frames.read(position)
            found = detect_face(image, eyes=False)
        except (FaceNotFoundError, InputFileError, ValueError):
            continue
        return found.box, found.source
    if image is None:
        raise InputFileError(frames.path(first), "no frame of the trial can be read")
    height, width = image.shape[:2]
    side = min(height, width)
    return ((width - side) // 2, (height - side) // 2, side, side), "frame"


def stream_trial_crops(
    frames,
    first: int,
    stop: int,
    box: tuple[int, int, int, int],
    size: int,
    *,
    chunk: int = VIDEO_CHUNK,
    margin: float = VIDEO_MARGIN,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Face crops of camera frames ``first .. stop - 1``, `chunk` frames at a time.

    frames : a `mmhe.io.camera.FrameSequence`; box : face box (x, y, w, h) in its pixels.
    Yields (crops (k, size, size) uint8 grey, valid (k,) bool). Only one raw frame is in
    memory at a time; an unreadable frame repeats the previous crop (black for the
    first) and is marked invalid.
    """
    from mmhe.features.face import crop, to_grey

    previous = np.zeros((size, size), np.uint8)
    for start in range(first, stop, chunk):
        end = min(start + chunk, stop)
        crops = np.empty((end - start, size, size), np.uint8)
        valid = np.ones(end - start, dtype=bool)
        for i, position in enumerate(range(start, end)):
            try:
                image = frames.read(position)
                previous = to_grey(crop(image, box, size, margin=margin))
            except (MMHEError, ValueError):
                valid[i] = False
            crops[i] = previous
        yield crops, valid


def write_trial_videos(
    group, frames, trials: pd.DataFrame, size: int, finding: FINDING
) -> dict[str, int]:
    """Write every trial's face video into the Zarr `group` (layout: module docstring).

    trials : the participant's trial table (``trial_index``, ``code``, ``frame_start``,
        ``frame_stop``). finding : called with (severity, code, message) for each problem
        (trials without frames, no face found, unreadable frames).
    Returns counts {"videos", "video_frames", "video_frames_unreadable"}.
    """
    videos = group.require_group("videos")
    counts = {"videos": 0, "video_frames": 0, "video_frames_unreadable": 0}
    times = np.asarray(frames.times)
    counters = frames.index["counter"].to_numpy()
    dates = frames.index["date"]
    fps = float(frames.fps) if frames.fps else float(frames.fps_estimate)
    for trial in trials.itertuples(index=False):
        if pd.isna(trial.frame_start) or pd.isna(trial.frame_stop):
            finding(
                "warning",
                "no_video",
                f"trial {trial.trial_index} (marker {trial.code}) has no camera frames",
            )
            continue
        first, stop = int(trial.frame_start), int(trial.frame_stop)
        if stop - first < 2:
            finding(
                "warning",
                "no_video",
                f"trial {trial.trial_index} (marker {trial.code}) has {stop - first} "
                "camera frame(s)",
            )
            continue
        try:
            box, source = trial_face_box(frames, first, stop)
        except MMHEError as exc:
            finding("error", "video_unreadable", f"trial {trial.trial_index}: {exc}")
            continue
        if source == "frame":
            finding(
                "warning",
                "video_no_face",
                f"trial {trial.trial_index} (marker {trial.code}): no face found; the video "
                "holds the central square of the frame",
            )
        n = stop - first
        node = videos.create_group(str(int(trial.trial_index)))
        array = node.create_array(
            "frames",
            shape=(n, size, size),
            chunks=(min(VIDEO_CHUNK, n), size, size),
            dtype="uint8",
            dimension_names=("frame", "y", "x"),
        )
        valid = np.ones(n, dtype=bool)
        for start, (crops, ok) in zip(
            range(0, n, VIDEO_CHUNK),
            stream_trial_crops(frames, first, stop, box, size),
            strict=True,
        ):
            array[start : start + len(crops)] = crops
            valid[start : start + len(crops)] = ok
        for name, values in (
            ("time_s", times[first:stop].astype(np.float64)),
            ("counter", counters[first:stop].astype(np.int16)),
            ("valid", valid),
        ):
            write_coordinate(node, name, values, "frame")
        node.attrs.update(
            trial_index=int(trial.trial_index),
            code=int(trial.code),
            fps=fps,
            frame_start=first,
            size=size,
            margin=VIDEO_MARGIN,
            box=[int(v) for v in box],
            box_source=source,
            date=str(pd.Timestamp(dates.iloc[first]).date()),
            color="grey (BT.601)",
        )
        bad = int((~valid).sum())
        if bad:
            first_bad = int(np.flatnonzero(~valid)[0])
            finding(
                "warning",
                "video_frames_unreadable",
                f"trial {trial.trial_index}: {bad} of {n} frames unreadable (first "
                f"{frames.path(first + first_bad).name}); the previous frame is repeated there",
            )
        counts["videos"] += 1
        counts["video_frames"] += n
        counts["video_frames_unreadable"] += bad
    return counts


@dataclass
class TrialVideo:
    """One stored trial video (lazy: nothing is read until sliced).

    frames : Zarr array (n_frames, S, S) uint8. time_s, counter, valid : (n_frames,).
    fps : nominal frame rate (Hz). box : face box (x, y, w, h) in camera pixels.
    frame_start : camera frame index of frame 0 (`FrameSequence` order).
    """

    subject_id: str
    trial_index: int
    code: int
    frames: Any
    time_s: np.ndarray
    counter: np.ndarray
    valid: np.ndarray
    fps: float
    frame_start: int
    box: tuple[int, int, int, int]
    attrs: dict[str, Any]

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def chunks(self, size: int = VIDEO_CHUNK) -> Iterator[np.ndarray]:
        """The frames, `size` at a time, as (k, S, S) uint8 arrays."""
        for start in range(0, len(self), size):
            yield np.asarray(self.frames[start : start + size])


def trial_video(store, subject_id: str, trial_index: int) -> TrialVideo:
    """The stored video of one trial of `store` (an `MMHEStore`).

    Raises `InputFileError` naming the store and what to do when the store holds no
    videos (ingested without ``--video-size``) or not this trial's.
    """
    import zarr

    path = store.arrays_path(subject_id)
    try:
        root = zarr.open_group(str(path), mode="r")
        node = root["videos"][str(int(trial_index))]
    except (KeyError, FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
        raise InputFileError(
            path,
            f"no stored video of trial {trial_index} ({type(exc).__name__})",
            "ingest with --video-size 128 to store whole-trial face videos",
        ) from None
    attrs = dict(node.attrs)
    return TrialVideo(
        subject_id=subject_id,
        trial_index=int(trial_index),
        code=int(attrs["code"]),
        frames=node["frames"],
        time_s=np.asarray(node["time_s"][...]),
        counter=np.asarray(node["counter"][...]),
        valid=np.asarray(node["valid"][...]),
        fps=float(attrs["fps"]),
        frame_start=int(attrs["frame_start"]),
        box=tuple(int(v) for v in attrs["box"]),
        attrs=attrs,
    )


def stored_videos(store) -> pd.DataFrame:
    """One row per stored trial video: subject_id, trial_index, code, n_frames, fps."""
    import zarr

    rows = []
    for sid in store.participant_ids():
        path = store.arrays_path(sid)
        try:
            videos = zarr.open_group(str(path), mode="r")["videos"]
        except (KeyError, FileNotFoundError, zarr.errors.GroupNotFoundError):
            continue
        for name, node in sorted(videos.groups(), key=lambda kv: int(kv[0])):
            rows.append(
                {
                    "subject_id": sid,
                    "trial_index": int(name),
                    "code": int(node.attrs["code"]),
                    "n_frames": int(node["frames"].shape[0]),
                    "fps": float(node.attrs["fps"]),
                    "size": int(node.attrs["size"]),
                }
            )
    return pd.DataFrame(
        rows, columns=["subject_id", "trial_index", "code", "n_frames", "fps", "size"]
    )
