"""Frame scores for spotting expressions in long face videos (training-free optical flow).

Input: one trial's face video, frames (n, S, S) uint8 grey square face crops (the face box
plus a margin, as `mmhe.store.videos` stores them; S = 128 by default) at the camera's
frame rate (150 fps for MMHE). Output: `FrameScores`, the head-free motion of every facial
region between frames a few lags apart, from which the spotter (`mmhe.evaluation.spotter`)
reads detection scores and the extent of each candidate.

The method follows the training-free optical-flow spotters of the MEGC spotting track
(MDMD, the MEGC 2020 baseline: He et al.; the nose reference of Zhang et al. 2020 and
MTSN; Zhao et al., "Rethinking optical flow methods for micro-expression spotting",
ACM MM 2022):

1. Block averaging. Consecutive frames are averaged in blocks of `stride` frames, 30 Hz
   at 150 fps (the frame rate of CAS(ME)^2): camera noise drops by sqrt(stride), and a
   micro-expression (~0.38 s) still spans about 11 blocks.
2. Region motion. Each facial region (`facial_regions`: brows, eyes, nose, cheeks,
   mouth corners, chin) is tracked from block t to block t + lag with pyramidal
   Lucas-Kanade optical flow (`cv2.calcOpticalFlowPyrLK`, a grid of windows of up to
   21 x 21 px per region at S = 128, one pyramid level above the full resolution: between
   blocks the face moves a few pixels at most); its displacement is the median
   over its windows. Lags: 0.2, 0.4, 0.6, 0.9, 1.3 and 1.8 s.
   Head motion is removed by subtracting a reference displacement. The published
   spotters take the nose region as the reference; on the synthetic planted set the
   nose ridge alone proved ill-conditioned (little texture: its vertical displacement
   was off by 0.2-0.3 px during 2-px head moves, which the other regions then showed
   as motion), so the reference is the median displacement of all ten regions, the
   nose included: the head moves every region, an expression a few (a blink two). This
   raised the LOSO F1 of the planted set from 0.59 to 0.62 (12 participants).
3. Bump score (`bump_scores`). With D(t) the head-free displacement of a region, an
   expression is a bump: D rises from the onset to the apex and falls back by the offset.
   The flow from t - lag to t measures D(t) - D(t - lag), the flow from t to t + lag
   measures D(t + lag) - D(t); at an apex both differences point the same way, at the
   start or end of a lasting change (a new head posture, a slow drift) they do not. The
   score of a region is ``sqrt(max(0, (D(t) - D(t - lag)) . (D(t) - D(t + lag))))``.
4. Detection score (`FrameScores.detection`). Each region's bump score is divided by its
   noise level in that video (1.4826 x the median absolute displacement, a robust
   standard deviation: most of a long video holds no expression), bilateral regions are
   averaged (left and right brow, cheek, mouth corner), smoothed over 3 blocks, and the
   face score is the largest group (brows, cheeks, mouth, chin) at the micro (0.2 s) or
   the macro (0.6 s) lag. The eye regions stay apart (``eyes``, in pixels): blinks move
   the eyelids far more than any expression; the spotter may veto candidates on them.
5. Extent (`FrameScores.extent`). How far D(apex) - D(apex -+ lag) has grown at each lag
   gives the distance from the apex to the onset and to the offset.

Facial regions (`mmhe.features.face_regions`) come from 68-point landmarks when given
(the iBUG 300-W / dlib convention), otherwise from fixed fractions of the face box
(`REGION_FRACTIONS`); `frame_scores(..., landmarks=...)` takes them as soon as a
detector provides them.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import BaseModel, ConfigDict, Field

from mmhe.errors import ConfigError
from mmhe.features.face_regions import REGION_FRACTIONS, Region, facial_regions

__all__ = [
    "EYE_GROUP",
    "FACE_GROUPS",
    "REGION_FRACTIONS",
    "FlowSpotConfig",
    "FrameScores",
    "block_average",
    "bump_scores",
    "facial_regions",
    "frame_scores",
    "robust_noise",
]

FACE_GROUPS: dict[str, tuple[str, ...]] = {
    "brows": ("brow_l", "brow_r"),
    "cheeks": ("cheek_l", "cheek_r"),
    "mouth": ("mouth_l", "mouth_r"),
    "chin": ("chin",),
}
"""Groups whose largest score is the face score (bilateral regions averaged)."""
EYE_GROUP = ("eye_l", "eye_r")
REFERENCE_SIZE = 128
"""Displacements are given in pixels of a face crop of this side."""
NOISE_FLOOR = 0.005
"""Smallest noise level (px at 128) a region's scores are divided by."""


class FlowSpotConfig(BaseModel):
    """Parameters of the training-free frame scores (fixed, not tuned: module docstring).

    block_hz : rate of the averaged blocks (Hz); stride = round(fps / block_hz) frames.
    lags_s : lags of the region motion, seconds (ascending).
    detect_lags_s : the (micro, macro) lags whose bump scores detect candidates; each
        must be one of `lags_s`.
    window : largest Lucas-Kanade window, in pixels of a 128-px crop (scaled to the crop).
    pyramid : pyramid levels above the full resolution.
    smooth : moving average of the detection scores, in blocks.
    regions : "landmarks" (68 points fitted on the video's first frames, `video_landmarks`;
        the face-box layout when no face is found there) or "box" (the face-box layout).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    block_hz: float = Field(30.0, gt=0)
    lags_s: tuple[float, ...] = (0.2, 0.4, 0.6, 0.9, 1.3, 1.8)
    detect_lags_s: tuple[float, float] = (0.2, 0.6)
    window: int = Field(21, ge=5)
    pyramid: int = Field(1, ge=0, le=5)
    min_eigen: float = Field(1e-4, gt=0)
    smooth: int = Field(3, ge=1)
    regions: Literal["landmarks", "box"] = "landmarks"

    def model_post_init(self, __context: Any) -> None:
        if list(self.lags_s) != sorted(self.lags_s) or not self.lags_s or min(self.lags_s) <= 0:
            raise ConfigError(f"lags_s must be positive and ascending, got {self.lags_s}")
        missing = [lag for lag in self.detect_lags_s if lag not in self.lags_s]
        if missing:
            raise ConfigError(f"detect_lags_s {missing} are not among lags_s {self.lags_s}")

    def stride(self, fps: float) -> int:
        """Frames per block at `fps`."""
        return max(1, round(fps / self.block_hz))

    def lags(self, fps: float) -> tuple[int, ...]:
        """`lags_s` in blocks at `fps` (at least 1 each)."""
        stride = self.stride(fps)
        return tuple(max(1, round(lag * fps / stride)) for lag in self.lags_s)


# ---------------------------------------------------------------- motion


def block_average(frames: ArrayLike, stride: int) -> NDArray[np.uint8]:
    """Average consecutive frames in blocks of `stride` (a trailing partial block is dropped).

    frames : (n, H, W) uint8. Returns (n // stride, H, W) uint8: the means rounded half
    up, computed exactly in integers.
    """
    frames = np.asarray(frames)
    n = (len(frames) // stride) * stride
    if stride == 1:
        return np.ascontiguousarray(frames[:n], dtype=np.uint8)
    sums = frames[:n].reshape(n // stride, stride, *frames.shape[1:]).sum(axis=1, dtype=np.uint16)
    return ((sums + stride // 2) // stride).astype(np.uint8)


@dataclass(frozen=True)
class _Tracker:
    """Lucas-Kanade windows of every region (built once per crop size).

    A region is covered by a grid of square windows of side min(`window`, 0.9 x its
    shorter side) (odd), about 3/4 of a window apart, so that a window never reaches
    far beyond its region (a blink must not leak into the nose or the brows).
    """

    names: tuple[str, ...]
    calls: tuple[tuple[int, np.ndarray], ...]  # (window side, points (n, 1, 2) float32)
    slots: np.ndarray  # (R, max windows) index into the concatenated windows, -1 = none
    pyramid: int
    min_eigen: float = 1e-4

    @classmethod
    def build(
        cls, regions: dict[str, Region], window: int, pyramid: int, min_eigen: float = 1e-4
    ) -> _Tracker:
        by_size: dict[int, list[tuple[int, float, float]]] = {}
        names = tuple(regions)
        for index, name in enumerate(names):
            x0, y0, x1, y1 = regions[name]
            side = _odd(min(window, 0.9 * min(x1 - x0, y1 - y0)))
            nx = max(1, round((x1 - x0) / (0.75 * side)))
            ny = max(1, round((y1 - y0) / (0.75 * side)))
            by_size.setdefault(side, []).extend(
                (index, x0 + (a + 0.5) * (x1 - x0) / nx, y0 + (b + 0.5) * (y1 - y0) / ny)
                for a in range(nx)
                for b in range(ny)
            )
        calls, owners = [], []
        for side, windows in sorted(by_size.items()):
            calls.append((side, np.asarray([w[1:] for w in windows], np.float32).reshape(-1, 1, 2)))
            owners += [w[0] for w in windows]
        owner = np.asarray(owners)
        width = int(np.bincount(owner, minlength=len(names)).max())
        slots = np.full((len(names), width), -1)
        for index in range(len(names)):
            mine = np.flatnonzero(owner == index)
            slots[index, : len(mine)] = mine
        return cls(names, tuple(calls), slots, pyramid, min_eigen)

    @property
    def n_windows(self) -> int:
        return sum(len(points) for _, points in self.calls)

    def window_shifts(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Displacement (dx, dy) of every window from `first` to `second`, (n_windows,
        2) float32, NaN where a window lost track."""
        shifts = []
        for side, points in self.calls:
            moved, status, _ = cv2.calcOpticalFlowPyrLK(
                first,
                second,
                points,
                None,
                winSize=(side, side),
                maxLevel=self.pyramid,
                criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.01),
                minEigThreshold=self.min_eigen,
            )
            shift = (moved - points).reshape(-1, 2)
            shift[status.ravel() != 1] = np.nan
            shifts.append(shift)
        return np.concatenate(shifts)

    def regions(self, shifts: np.ndarray) -> np.ndarray:
        """Median over each region's windows: (..., n_windows, 2) -> (..., R, 2) float64,
        NaN where every window of a region failed (vectorised over leading axes)."""
        shifts = np.asarray(shifts, dtype=np.float64)
        padded = np.concatenate([shifts, np.full((*shifts.shape[:-2], 1, 2), np.nan)], axis=-2)
        gathered = np.sort(padded[..., self.slots, :], axis=-2)  # (..., R, W, 2), NaN last
        valid = np.isfinite(gathered).sum(axis=-2, keepdims=True)  # (..., R, 1, 2)
        low = np.take_along_axis(gathered, np.maximum(valid - 1, 0) // 2, axis=-2)
        high = np.take_along_axis(gathered, valid // 2 - (valid == 0), axis=-2)
        median = (0.5 * (low + high))[..., 0, :]
        return np.where(valid[..., 0, :] > 0, median, np.nan)

    def __call__(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """Displacement (dx, dy) of each region from `first` to `second`, (R, 2): the
        median over its windows (a window that loses track does not move the region);
        NaN where every window failed."""
        return self.regions(self.window_shifts(first, second))


def _odd(value: float) -> int:
    return max(5, round(value) | 1)


def bump_scores(motion: ArrayLike, lag: int) -> NDArray[np.float64]:
    """Bump score of each region at each block from its lagged displacements.

    motion : (n, R, 2), ``motion[t]`` = displacement from block t to t + lag (NaN where
        t + lag is past the end). Returns (n, R): at block t, ``sqrt(max(0, a . b))``
        with a = D(t) - D(t - lag) = motion[t - lag] and b = D(t) - D(t + lag) =
        -motion[t]; 0 within `lag` blocks of either end and where tracking failed.
    """
    motion = np.asarray(motion, dtype=float)
    n = len(motion)
    out = np.zeros(motion.shape[:2])
    if n > lag:
        dot = np.einsum("trc,trc->tr", motion[: n - lag], -motion[lag:])
        out[lag:] = np.sqrt(np.clip(np.nan_to_num(dot, nan=0.0), 0.0, None))
    return out


def robust_noise(motion: ArrayLike) -> NDArray[np.float64]:
    """Noise level of each region: 1.4826 x the median |displacement component|.

    motion : (n, R, 2). Returns (R,), at least `NOISE_FLOOR`. Most of a long video holds
    no expression, so the median sees the noise, not the expressions.
    """
    motion = np.abs(np.asarray(motion, dtype=float)).reshape(-1, np.shape(motion)[1], 2)
    finite = np.isfinite(motion).any(axis=(0, 2))
    level = np.full(motion.shape[1], NOISE_FLOOR)
    if finite.any():
        level[finite] = 1.4826 * np.nanmedian(motion[:, finite], axis=(0, 2))
    return np.maximum(np.nan_to_num(level, nan=NOISE_FLOOR), NOISE_FLOOR)


def _moving_average(values: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return values
    kernel = np.ones(width) / width
    return np.convolve(values, kernel, mode="same")


# ---------------------------------------------------------------- whole videos


@dataclass
class Detection:
    """Detection scores of one video (see `FrameScores.detection`), per block.

    face : (n_blocks,) the larger of the micro and macro face scores (noise units).
    micro, macro : (n_blocks,) face score at each detection lag.
    scale : (n_blocks,) 0 where the micro score is the larger, 1 where the macro is.
    groups : (2, n_groups, n_blocks) group scores at the (micro, macro) lags.
    eyes : (n_blocks,) eye-region bump score in pixels of a 128-px crop (larger lag).
    head : (n_blocks,) bump score of the head's own displacement, pixels (larger lag).
    """

    face: np.ndarray
    micro: np.ndarray
    macro: np.ndarray
    scale: np.ndarray
    groups: np.ndarray
    eyes: np.ndarray
    head: np.ndarray


@dataclass
class FrameScores:
    """Head-free region motion of one video, sampled once per block.

    frames : (n_blocks,) float, frame index (0-based, in the video) at each block's centre.
    fps : the video's frame rate (Hz). stride : frames per block. lags : lags in blocks.
    detect : indices into `lags` of the (micro, macro) detection lags.
    region_names : names of the R regions (`facial_regions` order).
    motion : (n_lags, n_blocks, R, 2) displacement (dx, dy) of each region from block t
        to block t + lag, minus the head's, in pixels of a 128-px face crop; NaN where
        t + lag is past the end or tracking failed.
    head : (n_lags, n_blocks, 2) the head's displacement (the median over regions).
    n_frames : frames of the video.
    """

    frames: np.ndarray
    fps: float
    stride: int
    lags: tuple[int, ...]
    detect: tuple[int, int]
    region_names: tuple[str, ...]
    motion: np.ndarray
    head: np.ndarray
    n_frames: int
    meta: dict[str, Any] = field(default_factory=dict)

    def _index(self, names: Sequence[str]) -> list[int]:
        return [self.region_names.index(n) for n in names]

    def bump(self, lag_index: int) -> np.ndarray:
        """Bump scores (n_blocks, R) at lag number `lag_index`, pixels of a 128-px crop."""
        return bump_scores(self.motion[lag_index], self.lags[lag_index])

    def detection(self, smooth: int = 3) -> Detection:
        """Detection scores (module docstring, step 4)."""
        faces, groups, eyes, heads = [], [], [], []
        for lag_index in self.detect:
            lag = self.lags[lag_index]
            heads.append(
                _moving_average(bump_scores(self.head[lag_index][:, None], lag)[:, 0], smooth)
            )
            bump = self.bump(lag_index)
            scaled = bump / robust_noise(self.motion[lag_index])[None, :]
            per_group = np.stack(
                [
                    _moving_average(scaled[:, self._index(m)].mean(axis=1), smooth)
                    for m in FACE_GROUPS.values()
                ]
            )
            groups.append(per_group)
            faces.append(per_group.max(axis=0))
            eyes.append(_moving_average(bump[:, self._index(EYE_GROUP)].mean(axis=1), smooth))
        micro, macro = faces
        return Detection(
            face=np.maximum(micro, macro),
            micro=micro,
            macro=macro,
            scale=(macro > micro).astype(np.int8),
            groups=np.stack(groups),
            eyes=np.maximum(*eyes),
            head=np.maximum(*heads),
        )

    def extent(self, block: int, group: str, fraction: float) -> tuple[float, float]:
        """Blocks from `block` (an apex) back to the onset and on to the offset.

        For every lag, the displacement of `group`'s regions between the apex and the
        block one lag before (after) it; the onset (offset) is where it first reaches
        `fraction` of its largest value (linear between lags). Returns (before, after)
        in blocks (the shortest lag when nothing is measurable).
        """
        index = self._index(FACE_GROUPS[group])
        lags = np.asarray(self.lags, dtype=float)
        out = []
        for side in ("before", "after"):
            profile = np.full(len(lags), np.nan)
            for j, lag in enumerate(self.lags):
                t = block - lag if side == "before" else block
                if 0 <= t < self.motion.shape[1]:
                    vectors = self.motion[j, t, index]
                    if np.isfinite(vectors).all():
                        profile[j] = np.hypot(vectors[:, 0], vectors[:, 1]).mean()
            ok = np.isfinite(profile)
            if not ok.any() or np.nanmax(profile) <= 0:
                out.append(float(lags[0]))
                continue
            target = fraction * np.nanmax(profile)
            first = int(np.flatnonzero(ok & (profile >= target))[0])
            previous = first - 1
            if previous >= 0 and ok[previous] and profile[first] > profile[previous]:
                step = (target - profile[previous]) / (profile[first] - profile[previous])
                out.append(float(lags[previous] + step * (lags[first] - lags[previous])))
            else:
                out.append(float(lags[first]))
        return out[0], out[1]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for an ``.npz`` cache (inverse: `from_arrays`)."""
        return {
            "frames": self.frames,
            "fps": np.array(self.fps),
            "stride": np.array(self.stride),
            "lags": np.array(self.lags),
            "detect": np.array(self.detect),
            "region_names": np.array(self.region_names),
            "motion": self.motion.astype(np.float32),
            "head": self.head.astype(np.float32),
            "n_frames": np.array(self.n_frames),
            "landmarks": np.array(bool(self.meta.get("landmarks", False))),
        }

    @classmethod
    def from_arrays(cls, arrays: Any) -> FrameScores:
        return cls(
            frames=np.asarray(arrays["frames"]),
            fps=float(arrays["fps"]),
            stride=int(arrays["stride"]),
            lags=tuple(int(x) for x in arrays["lags"]),
            detect=tuple(int(x) for x in arrays["detect"]),
            region_names=tuple(str(x) for x in arrays["region_names"]),
            motion=np.asarray(arrays["motion"], dtype=np.float64),
            head=np.asarray(arrays["head"], dtype=np.float64),
            n_frames=int(arrays["n_frames"]),
            meta={"landmarks": bool(arrays["landmarks"]) if "landmarks" in arrays else False},
        )


def _blocks(video: Any, stride: int, chunk_frames: int) -> Iterator[np.ndarray]:
    """Averaged blocks of `video` (n, S, S), read `chunk_frames` frames at a time."""
    step = max(stride, (chunk_frames // stride) * stride)
    n = (int(video.shape[0]) // stride) * stride
    for start in range(0, n, step):
        yield from block_average(np.asarray(video[start : min(start + step, n)]), stride)


def video_landmarks(video: Any, n_frames: int = 15) -> np.ndarray | None:
    """68 landmarks (iBUG order, crop pixels) of a face video, fitted on the median of its
    first `n_frames` frames (noise averaged out); None when no plausible face is found.

    video : (n, S, S) uint8 grey crops (NumPy or Zarr). Returns (68, 2) float64 or None.
    """
    from mmhe.features.face import FaceNotFoundError
    from mmhe.features.landmarks import face_landmarks

    first = np.asarray(video[: max(1, min(n_frames, int(video.shape[0])))])
    if first.size == 0:
        return None
    reference = np.median(first, axis=0).astype(np.uint8)
    try:
        return face_landmarks(reference)
    except FaceNotFoundError:
        return None


def frame_scores(
    video: Any,
    fps: float,
    config: FlowSpotConfig | None = None,
    *,
    landmarks: ArrayLike | None = None,
    chunk_frames: int = 1500,
) -> FrameScores:
    """Head-free region motion of one long face video (see the module docstring).

    video : (n, S, S) uint8 grey square face crops: a NumPy array or anything sliced
        like one (a Zarr array is read `chunk_frames` frames at a time, so a trial is
        never loaded whole). fps : frame rate in Hz.
    landmarks : optional (68, 2) points on the crop (`facial_regions`).
    Returns `FrameScores`. Cost: one Lucas-Kanade call per block, lag and window size
    (about 30 windows); about 0.3 ms per frame on one core at 150 fps and S = 128.
    """
    config = config or FlowSpotConfig()
    shape = getattr(video, "shape", None)
    if shape is None or len(shape) != 3 or shape[1] != shape[2]:
        raise ConfigError(f"a spotting video must be (frames, S, S) square crops, got {shape}")
    if not (np.isfinite(fps) and fps > 0):
        raise ConfigError(f"fps must be a positive frame rate in Hz, got {fps}")
    n_frames, size = int(shape[0]), int(shape[1])
    stride, lags = config.stride(fps), config.lags(fps)
    regions = facial_regions(size, landmarks)
    tracker = _Tracker.build(
        regions, _odd(config.window * size / REFERENCE_SIZE), config.pyramid, config.min_eigen
    )
    n_blocks = n_frames // stride
    windows = np.full((len(lags), n_blocks, tracker.n_windows, 2), np.nan, np.float32)
    recent: deque[np.ndarray] = deque(maxlen=max(lags) + 1)
    for t, block in enumerate(_blocks(video, stride, chunk_frames)):
        recent.append(block)
        for j, lag in enumerate(lags):
            if t >= lag:
                windows[j, t - lag] = tracker.window_shifts(recent[-1 - lag], block)
    motion = tracker.regions(windows)  # one vectorised median over all blocks and lags
    with warnings.catch_warnings():  # an all-NaN slice (no region tracked) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        head = np.nanmedian(motion, axis=2)
    motion = (motion - head[:, :, None]) * (REFERENCE_SIZE / size)
    head = head * (REFERENCE_SIZE / size)
    return FrameScores(
        frames=np.arange(n_blocks) * stride + (stride - 1) / 2,
        fps=float(fps),
        stride=stride,
        lags=lags,
        detect=tuple(config.lags_s.index(lag) for lag in config.detect_lags_s),
        region_names=tracker.names,
        motion=motion,
        head=head,
        n_frames=n_frames,
        meta={"size": size, "landmarks": landmarks is not None},
    )
