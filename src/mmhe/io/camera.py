"""The XIMEA face camera: one ``.tif`` per frame, and the ``.avi`` clips cut per expression.

`FrameSequence` indexes a folder of frames from their file names only
(``YYYY-MM-DD-HH-MM-SS-mmm-CCC-MARKER.tif``: time of day to the millisecond, a frame
counter wrapping at 1000 and the DB25 trigger value) and reads frames lazily with
tifffile. `read_clip` decodes an ``.avi`` clip with PyAV into the same array form.

>>> frames = FrameSequence("RAW/s01/Camera")          # doctest: +SKIP
>>> frames.markers()[["onset_s", "code", "n_frames"]]  # doctest: +SKIP
>>> frames.read(frames.frame_at(61538.257)).shape     # doctest: +SKIP
(1088, 2048, 3)
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import tifffile

from mmhe.errors import InputFileError
from mmhe.io import bayer
from mmhe.io.frame_names import COUNTER_MODULUS, FrameName, FrameNameError, parse_frame_name

__all__ = [
    "FRAME_EXTENSIONS",
    "FrameName",
    "FrameNameError",
    "FrameSequence",
    "clip_fps",
    "parse_frame_name",
    "read_clip",
]

FRAME_EXTENSIONS = (".tif", ".tiff")
"""File endings (case-insensitive) that count as camera frames."""

SECONDS_PER_DAY = 86400
_FIELDS = ["year", "month", "day", "hour", "minute", "second", "millisecond", "counter", "marker"]
_FILE_NAME = (  # RE2 syntax (pyarrow); named groups in the order of _FIELDS
    r"(?i)^(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})-(?P<hour>\d{2})-(?P<minute>\d{2})-"
    r"(?P<second>\d{2})-(?P<millisecond>\d{3})-(?P<counter>\d{1,3})-(?P<marker>\d{1,3})\.tiff?$"
)
_NAME_HINT = "camera frames must be named YYYY-MM-DD-HH-MM-SS-mmm-CCC-MARKER.tif"
_TIFF_ERRORS = (OSError, ValueError, KeyError, IndexError, struct.error, tifffile.TiffFileError)


def _scan_frames(folder: Path, recursive: bool) -> tuple[list[str], list[str]]:
    """File names and paths of the frames under `folder` (hidden files are skipped)."""
    names: list[str] = []
    paths: list[str] = []
    pending = [os.fspath(folder)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    if recursive:
                        pending.append(entry.path)
                elif entry.name.lower().endswith(FRAME_EXTENSIONS):
                    names.append(entry.name)
                    paths.append(entry.path)
    return names, paths


def _valid_dates(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> tuple:
    """Calendar days as datetime64[D] and a mask of valid (year, month, day) triples."""
    month_index = (year - 1970) * 12 + np.clip(month, 1, 12) - 1
    month_start = month_index.astype("datetime64[M]").astype("datetime64[D]")
    next_month = (month_index + 1).astype("datetime64[M]").astype("datetime64[D]")
    month_length = (next_month - month_start).astype(np.int64)
    valid = (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_length)
    return month_start + (day - 1).astype("timedelta64[D]"), valid


def _parse_file_names(folder: Path, names: list[str], paths: list[str]) -> dict[str, np.ndarray]:
    """Fields of every name as int64 arrays plus ``date`` (datetime64[D]).

    Vectorised (pyarrow's RE2 regex); names that do not match the regular form go one by
    one through `parse_frame_name`. Raises `InputFileError` listing the count and the
    first few names that do not parse.
    """
    parts = pc.extract_regex(pa.array(names, type=pa.string()), _FILE_NAME)
    regular = parts.is_valid().to_numpy(zero_copy_only=False)
    fields = {
        name: np.array(pc.fill_null(pc.cast(child, pa.int64()), 0), dtype=np.int64)
        for name, child in zip(_FIELDS, parts.flatten(), strict=True)
    }
    date, valid_date = _valid_dates(fields["year"], fields["month"], fields["day"])
    regular &= (
        valid_date
        & (fields["hour"] <= 23)
        & (fields["minute"] <= 59)
        & (fields["second"] <= 60)
        & (fields["counter"] < COUNTER_MODULUS)
        & (fields["marker"] <= 255)
    )
    bad: list[str] = []
    for position in np.flatnonzero(~regular):
        try:
            parsed = parse_frame_name(names[position])
        except FrameNameError as exc:
            bad.append(f"{paths[position]} ({exc.problem})")
            continue
        if parsed.date is None or parsed.counter is None or parsed.marker is None:
            bad.append(f"{paths[position]} (lacks the date, counter or marker)")
            continue
        for name in _FIELDS[3:]:
            fields[name][position] = getattr(parsed, name)
        date[position] = np.datetime64(parsed.date, "D")
    if bad:
        shown = "; ".join(bad[:5])
        error = InputFileError(
            folder,
            f"{len(bad)} of {len(names)} frame file names do not parse, e.g. {shown}",
            hint=f"{_NAME_HINT}; move other .tif files out of the folder",
        )
        error.bad_files = bad
        raise error
    fields["date"] = date
    return fields


class FrameSequence:
    """A time-sorted index of camera frames, built from file names only (no image is read).

    folder : a folder of ``YYYY-MM-DD-HH-MM-SS-mmm-CCC-MARKER.tif`` frames (searched
        recursively by default, so ``Camera/`` with one sub-folder per clip works).
        Hidden files (names starting with ".") are ignored.
    fps : nominal frame rate in Hz used by `dropped_frames`; None uses `fps_estimate`.

    ``.index`` is a DataFrame, one row per frame sorted by time then counter, with columns
    ``path`` (str), ``time_s`` (float seconds since midnight of the first frame's date:
    frames after midnight continue above 86400 s, so time stays monotonic), ``date``
    (datetime64, the frame's calendar day), ``counter`` (0..999, wraps) and ``marker``
    (the DB25 trigger value). Row positions are the frame indices used by every method.

    Raises `InputFileError` for a missing folder, a folder without frames, or file names
    that do not parse (all bad names are counted; the first few are quoted).
    """

    def __init__(
        self, folder: str | os.PathLike[str], *, fps: float | None = 150.0, recursive: bool = True
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputFileError(self.folder, "camera folder not found", hint="check the path")
        names, paths = _scan_frames(self.folder, recursive)
        if not names:
            raise InputFileError(
                self.folder,
                "no .tif/.tiff frames" + (" (searched recursively)" if recursive else ""),
                hint=_NAME_HINT,
            )
        fields = _parse_file_names(self.folder, names, paths)
        day = fields["date"]
        days = (day - day.min()).astype(np.int64)
        seconds = days * SECONDS_PER_DAY + fields["hour"] * 3600 + fields["minute"] * 60
        millis = (seconds + fields["second"]) * 1000 + fields["millisecond"]
        order = np.lexsort((fields["counter"], millis))
        self.index: pd.DataFrame = pd.DataFrame(
            {
                "path": np.asarray(paths, dtype=object)[order],
                "time_s": millis[order] / 1000.0,
                "date": day[order].astype("datetime64[ns]"),
                "counter": fields["counter"][order],
                "marker": fields["marker"][order],
            }
        )
        self.fps = fps
        self._time = self.index["time_s"].to_numpy()
        self._counter = self.index["counter"].to_numpy()
        self._marker = self.index["marker"].to_numpy()
        self._paths = self.index["path"].to_numpy()

    def __len__(self) -> int:
        return len(self.index)

    def __repr__(self) -> str:
        return f"FrameSequence({str(self.folder)!r}, {len(self)} frames)"

    @property
    def times(self) -> np.ndarray:
        """Frame times, shape (n_frames,), seconds since midnight of the first frame's day."""
        return self._time

    @property
    def fps_estimate(self) -> float:
        """Frame rate in Hz from frame pairs with consecutive counters (NaN if none).

        The inverse mean interval of the pairs whose interval lies within half the median
        interval of the median (stalls excluded). The mean rather than the median alone,
        because millisecond timestamps make intervals of a 150 fps camera 6 or 7 ms.
        """
        step = np.diff(self._counter) % COUNTER_MODULUS
        intervals = np.diff(self._time)[(step == 1)]
        intervals = intervals[intervals > 0]
        if intervals.size == 0:
            return float("nan")
        median = np.median(intervals)
        typical = intervals[np.abs(intervals - median) <= 0.5 * median]
        return float(1.0 / typical.mean())

    def dropped_frames(self, *, fps: float | None = None, tolerance: float = 0.5) -> pd.DataFrame:
        """Gaps between consecutive frames, by frame counter and by timestamp.

        fps : frame rate in Hz for the timestamp test; None uses the sequence's `fps`
            (or `fps_estimate` when that is None too).
        tolerance : a timestamp gap is flagged above (1 + tolerance) frame periods.

        Returns one row per gap: ``after_index`` (the frame before the gap),
        ``missing_by_counter`` ((counter step - 1) mod 1000: ambiguous beyond 999 lost
        frames; a repeated counter gives 999), ``missing_by_time`` (round(gap * fps) - 1,
        at least 0), ``gap_s`` and ``marker_change`` (True when the trigger value differs
        across the gap: usually the pause between two clip recordings, not a loss).
        """
        rate = fps if fps is not None else self.fps
        if rate is None:
            rate = self.fps_estimate
        if not rate or not np.isfinite(rate) or rate <= 0:
            raise ValueError(f"frame rate must be a positive number of Hz, got {rate!r}")
        period = 1.0 / rate
        gap = np.diff(self._time)
        missing_counter = (np.diff(self._counter) - 1) % COUNTER_MODULUS
        missing_time = np.maximum(np.rint(gap / period).astype(np.int64) - 1, 0)
        flagged = (missing_counter != 0) | (gap > (1.0 + tolerance) * period)
        after = np.flatnonzero(flagged)
        return pd.DataFrame(
            {
                "after_index": after,
                "missing_by_counter": missing_counter[after],
                "missing_by_time": missing_time[after],
                "gap_s": gap[after],
                "marker_change": self._marker[after] != self._marker[after + 1],
            }
        )

    def markers(self, *, max_gap_s: float | None = None) -> pd.DataFrame:
        """Runs of frames with the same non-zero trigger value (one per clip recording).

        A run ends where the value changes (the recorder stops between clips and every
        clip has its own marker), or, when `max_gap_s` is given, where consecutive frames
        are more than `max_gap_s` apart. The default does not split on gaps, so a folder
        holding only some frames of each clip (as `mmhe synth` writes) keeps one run per
        clip. Returns columns ``onset_s`` (time of the run's first frame, on
        the clock of ``index.time_s``), ``code``, ``first_index``, ``last_index``
        (inclusive), ``n_frames`` and ``last_s`` (time of the run's last frame).
        """
        n = len(self)
        starts = np.ones(n, dtype=bool)
        starts[1:] = self._marker[1:] != self._marker[:-1]
        if max_gap_s is not None:
            starts[1:] |= np.diff(self._time) > max_gap_s
        first = np.flatnonzero(starts)
        last = np.append(first[1:] - 1, n - 1)
        keep = self._marker[first] != 0
        first, last = first[keep], last[keep]
        return pd.DataFrame(
            {
                "onset_s": self._time[first],
                "code": self._marker[first],
                "first_index": first,
                "last_index": last,
                "n_frames": last - first + 1,
                "last_s": self._time[last],
            }
        )

    def frame_at(self, time_s: float | np.ndarray) -> int | np.ndarray:
        """Index of the frame nearest in time (ties go to the earlier frame).

        time_s : seconds on the clock of ``index.time_s``; scalar or array of any shape.
        Times before the first or after the last frame give the first or last frame.
        Returns an int for a scalar, else an int64 array of the same shape.
        """
        query = np.asarray(time_s, dtype=float)
        if np.isnan(query).any():
            raise ValueError("frame_at got NaN times")
        right = np.clip(np.searchsorted(self._time, query, side="left"), 0, len(self) - 1)
        left = np.maximum(right - 1, 0)
        nearest = np.where(
            np.abs(self._time[right] - query) < np.abs(query - self._time[left]), right, left
        ).astype(np.int64)
        return int(nearest) if nearest.ndim == 0 else nearest

    def path(self, i: int) -> Path:
        """Path of frame `i`."""
        return Path(self._paths[i])

    def read(self, i: int) -> np.ndarray:
        """Pixels of frame `i`: array (H, W) or (H, W, 3), the file's dtype (first page).

        A raw colour-filter-array frame (TIFF/EP CFA, as `mmhe record` stores a colour
        camera's Bayer frames) is demosaiced to (H, W, 3) RGB (`mmhe.io.bayer`).
        Nothing is cached. An unreadable or truncated file raises `InputFileError`.
        """
        path = self._paths[i]
        try:
            image = _read_first_page(path)
        except _TIFF_ERRORS as exc:
            raise InputFileError(
                path, f"cannot read the camera frame ({exc})", hint="the file may be truncated"
            ) from exc
        image = np.asarray(image)
        if image.size == 0 or image.ndim not in (2, 3):
            raise InputFileError(
                path, f"no image in the file (array of shape {image.shape})", hint="corrupt file?"
            )
        return image

    def read_range(self, i: int, j: int) -> np.ndarray:
        """Frames ``i`` to ``j - 1`` (a Python slice) as one array (n, H, W[, 3]).

        Raises `ValueError` for an empty range and `InputFileError` for an unreadable
        frame or a frame whose shape or dtype differs from the first.
        """
        positions = range(len(self))[i:j]
        if len(positions) == 0:
            raise ValueError(f"empty frame range [{i}, {j}) of a sequence of {len(self)} frames")
        first = self.read(positions[0])
        stack = np.empty((len(positions), *first.shape), dtype=first.dtype)
        stack[0] = first
        for slot, position in enumerate(positions[1:], start=1):
            image = self.read(position)
            if image.shape != first.shape or image.dtype != first.dtype:
                raise InputFileError(
                    self._paths[position],
                    f"frame is {image.shape} {image.dtype}, the first of the range "
                    f"is {first.shape} {first.dtype}",
                )
            stack[slot] = image
        return stack


def _read_first_page(path: str) -> np.ndarray:
    """The first page of a TIFF; a Bayer (CFA) page demosaiced to RGB."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages.first
        image = page.asarray()
        if page.photometric != bayer.CFA_PHOTOMETRIC:
            return image
        tags = page.tags
        repeat, codes = tags.get(bayer.CFA_REPEAT_PATTERN_DIM_TAG), tags.get(bayer.CFA_PATTERN_TAG)
    if repeat is None or codes is None or image.ndim != 2:
        raise ValueError("a CFA frame without its CFARepeatPatternDim / CFAPattern tags")
    return bayer.demosaic(image, bayer.pattern_from_tags(repeat.value, codes.value))


def _open_video(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise InputFileError(path, "clip file not found", hint="check the Clips folder")
    try:
        container = av.open(os.fspath(path))
    except av.error.FFmpegError as exc:
        raise InputFileError(path, f"cannot open the clip ({exc})", hint="corrupt file?") from exc
    if not container.streams.video:
        container.close()
        raise InputFileError(path, "the file has no video stream")
    return container


def read_clip(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode every frame of a video clip (``.avi``) with PyAV.

    Returns uint8 RGB array (n_frames, H, W, 3). A missing, corrupt or empty file raises
    `InputFileError`.
    """
    path = Path(path)
    with _open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        buffer: np.ndarray | None = None
        overflow: list[np.ndarray] = []
        count = 0
        try:
            for frame in container.decode(stream):
                image = frame.to_ndarray(format="rgb24")
                if buffer is None:
                    buffer = np.empty((max(stream.frames, 1), *image.shape), dtype=np.uint8)
                if count < len(buffer):
                    buffer[count] = image
                else:
                    overflow.append(image)
                count += 1
        except av.error.FFmpegError as exc:
            raise InputFileError(path, f"decoding failed after {count} frames ({exc})") from exc
        except ValueError as exc:  # a frame of another size than the first
            raise InputFileError(path, f"frame {count} does not match the first ({exc})") from exc
    if buffer is None:
        raise InputFileError(path, "the clip has no decodable frames")
    if overflow:
        try:
            return np.concatenate([buffer, np.stack(overflow)])
        except ValueError as exc:
            raise InputFileError(path, f"frames differ in size ({exc})") from exc
    return buffer[:count]


def clip_fps(path: str | os.PathLike[str]) -> float:
    """Frame rate of a video clip in Hz (the container's average rate)."""
    path = Path(path)
    with _open_video(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    if not rate:
        raise InputFileError(path, "the clip does not state a frame rate")
    return float(rate)
