"""Align every frame of an expression to one template (the onset frame's pose) by landmarks.

The dataset's authors crop the face to 256 px, align it on the landmarks and feed
128 x 128 flow maps to their network. Here every frame's stable landmarks (eye corners and
nose, :data:`mmhe.features.landmarks.STABLE_POINTS`) are mapped onto the template frame's
by a least-squares similarity (rotation, uniform scale, shift; Umeyama 1991), and the
frame is resampled straight into a square crop of the template face, so head motion
between onset and apex never becomes optical flow. The face-only mask
(:func:`mmhe.features.face_mask.face_mask`) of the template crop is applied to every
frame before flow.

Per-expression quality flags (:class:`AlignmentQuality`): landmarks not found in some
frame, head motion between the template and the apex above a threshold, the face partly
out of the frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from mmhe.features.face_mask import face_mask_small, face_outline
from mmhe.features.frames import FrameError, check_frame
from mmhe.features.landmarks import (
    STABLE_POINTS,
    LandmarksNotFoundError,
    box_from_landmarks,
    eye_centres,
    face_landmarks,
)

__all__ = [
    "ALIGN_MARGIN",
    "MAX_HEAD_MOTION",
    "AlignedExpression",
    "AlignmentQuality",
    "align_expression",
    "similarity_transform",
    "track_landmarks",
]

ALIGN_MARGIN = 0.05
"""Crop margin on each side, as a fraction of the face's larger extent (its mask's, or its
landmark outline's without a mask)."""
MAX_HEAD_MOTION = 0.1
"""Head motion (RMS shift of the stable landmarks between template and apex) above which an
expression is flagged, in inter-ocular distances (0.1 ~ 6 mm on an adult face)."""


def similarity_transform(source: np.ndarray, target: np.ndarray) -> NDArray[np.float64]:
    """Least-squares similarity mapping ``source`` points onto ``target`` points.

    source, target : (n, 2) matching points, n >= 2, pixels.
    Returns (2, 3) float64 ``M`` minimising sum |M @ [s, 1] - t|^2 over rotations, uniform
    scales and shifts (Umeyama, IEEE TPAMI 1991, without reflection); the same estimate as
    ``skimage.transform.SimilarityTransform``.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2:
        raise FrameError(f"expected two (n, 2) point sets, got {source.shape} and {target.shape}")
    if len(source) < 2:
        raise FrameError("a similarity needs at least 2 point pairs")
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    s, t = source - source_mean, target - target_mean
    variance = float((s * s).sum()) / len(s)
    if variance <= 0:
        raise FrameError("the source points coincide: no similarity can be fitted")
    covariance = t.T @ s / len(s)
    u, d, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign)) / variance
    linear = scale * rotation
    return np.hstack([linear, (target_mean - linear @ source_mean)[:, None]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> NDArray[np.float64]:
    return np.asarray(points, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]


def _compose(outer: np.ndarray, inner: np.ndarray) -> NDArray[np.float64]:
    """(2, 3) matrix of ``outer(inner(p))``."""
    return np.hstack(
        [outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]]
    )


def track_landmarks(
    frames: Sequence[np.ndarray] | np.ndarray, *, first: np.ndarray | None = None
) -> tuple[NDArray[np.float64], tuple[int, ...]]:
    """68 landmarks in every frame of a clip, each frame starting from the previous fit.

    frames : T frames (H, W, 3) or (H, W) uint8. first : landmarks of frame 0 if known.
    Returns (landmarks (T, 68, 2) pixels, NaN where none were found; indices of those
    frames). A frame is fitted in the box of the last good fit
    (:func:`~mmhe.features.landmarks.box_from_landmarks`, no detector: ~3 ms), and only
    when that fit is not a plausible face is the detector chain run.
    """
    tracks = np.full((len(frames), 68, 2), np.nan)
    missing = []
    previous = None if first is None else np.asarray(first, dtype=np.float64)
    for index in range(len(frames)):
        frame = frames[index]
        points = None
        if index == 0 and previous is not None:
            points = previous
        if points is None and previous is not None:
            try:
                points = face_landmarks(frame, box_from_landmarks(previous))
            except LandmarksNotFoundError:
                points = None
        if points is None:
            try:
                points = face_landmarks(frame)
            except LandmarksNotFoundError:
                missing.append(index)
                continue
        tracks[index] = points
        previous = points
    return tracks, tuple(missing)


@dataclass(frozen=True)
class AlignmentQuality:
    """Quality flags of one aligned expression.

    landmarks_missing : indices of frames without landmarks (aligned with the transform
        of the nearest earlier frame that had them).
    head_motion : RMS displacement of the stable landmarks between the template and the
        apex frame, in inter-ocular distances of the template (``head_motion_px`` pixels).
    fit_residual : RMS residual of the apex frame's similarity fit, in inter-ocular
        distances: what a similarity cannot undo (turning or nodding out of plane).
    out_of_frame : the face outline of some frame leaves the frame.
    max_head_motion : the threshold of the ``head_motion`` flag.
    """

    landmarks_missing: tuple[int, ...]
    head_motion: float
    head_motion_px: float
    fit_residual: float
    out_of_frame: bool
    max_head_motion: float = MAX_HEAD_MOTION

    @property
    def flags(self) -> tuple[str, ...]:
        """Names of the raised flags: ``landmarks_missing``, ``head_motion``,
        ``out_of_frame``."""
        raised = []
        if self.landmarks_missing:
            raised.append("landmarks_missing")
        if not self.head_motion <= self.max_head_motion:
            raised.append("head_motion")
        if self.out_of_frame:
            raised.append("out_of_frame")
        return tuple(raised)

    def describe(self) -> list[tuple[str, str]]:
        """One ``(code, message)`` per raised flag, for batch issue reports."""
        messages = {
            "landmarks_missing": f"no landmarks in frame(s) {list(self.landmarks_missing)}; "
            "aligned with the previous frame's pose",
            "head_motion": f"the head moved {self.head_motion:.3f} eye distances "
            f"({self.head_motion_px:.1f} px) between onset and apex "
            f"(threshold {self.max_head_motion}); similarity residual {self.fit_residual:.3f}",
            "out_of_frame": "the face is partly outside the frame",
        }
        return [(f"face_{flag}", messages[flag]) for flag in self.flags]


@dataclass(frozen=True)
class AlignedExpression:
    """Frames of an expression in the template face's square crop.

    frames : (T, size, size[, 3]) uint8, every frame resampled into the template crop.
    mask : (size, size) bool face-only mask of the template crop, or None.
    landmarks : (T, 68, 2) landmarks in frame pixels (NaN where missing).
    matrices : (T, 2, 3) float64 maps frame pixels -> crop pixels.
    template : (68, 2) the template frame's landmarks in crop pixels.
    quality : :class:`AlignmentQuality`.
    refined : (T,) bool, whether ECC refined the frame's landmark alignment.
    """

    frames: NDArray[np.uint8]
    mask: NDArray[np.bool_] | None
    landmarks: NDArray[np.float64]
    matrices: NDArray[np.float64]
    template: NDArray[np.float64]
    quality: AlignmentQuality
    refined: NDArray[np.bool_] | None = None

    @property
    def size(self) -> int:
        """Side of the crop in pixels."""
        return int(self.frames.shape[1])

    def masked(self) -> NDArray[np.uint8]:
        """The frames with every pixel outside the mask set to 0 (the authors' black)."""
        if self.mask is None:
            return self.frames
        keep = self.mask if self.frames.ndim == 3 else self.mask[..., None]
        return np.where(keep, self.frames, 0).astype(np.uint8)


def _crop_matrix(
    template: np.ndarray,
    size: int,
    margin: float,
    face: np.ndarray | None = None,
    face_to_frame: np.ndarray | None = None,
) -> NDArray[np.float64]:
    """Template-frame pixels -> crop pixels: the bounding square of the face mask (``face``
    on a grid mapped to frame pixels by ``face_to_frame``) or, without a mask, of the
    landmarks' outline, plus margin."""
    if face is not None and face.any():
        rows, cols = np.flatnonzero(face.any(axis=1)), np.flatnonzero(face.any(axis=0))
        corners = np.array(
            [[cols[0] - 0.5, rows[0] - 0.5], [cols[-1] + 0.5, rows[-1] + 0.5]], dtype=float
        )
        if face_to_frame is not None:
            corners = _apply(face_to_frame, corners)
        (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
    else:
        outline = face_outline(template)
        (x0, y0), (x1, y1) = outline.min(axis=0), outline.max(axis=0)
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
    left, top = 0.5 * (x0 + x1) - 0.5 * side, 0.5 * (y0 + y1) - 0.5 * side
    k = size / side
    # pixel centres: crop j <-> template left + (j + 0.5) / k - 0.5
    return np.array([[k, 0.0, (0.5 - left) * k - 0.5], [0.0, k, (0.5 - top) * k - 0.5]])


def _warp(frame: np.ndarray, matrix: np.ndarray, size: int) -> NDArray[np.uint8]:
    """Resample ``frame`` into the (size, size) crop given by ``matrix`` (frame -> crop).

    When the crop shrinks the frame by n >= 2, the needed part of the frame is first
    averaged over n x n blocks (INTER_AREA) so bilinear resampling does not alias; outside
    the frame, edges are replicated.
    """
    height, width = frame.shape[:2]
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    shrink = max(1, int(1.0 / scale)) if scale > 0 else 1
    inverse = cv2.invertAffineTransform(matrix)
    corners = _apply(inverse, np.array([[-1, -1], [size, -1], [-1, size], [size, size]], float))
    pad = 2 * shrink
    x0 = max(0, math.floor(corners[:, 0].min()) - pad)
    y0 = max(0, math.floor(corners[:, 1].min()) - pad)
    x1 = min(width, math.ceil(corners[:, 0].max()) + pad)
    y1 = min(height, math.ceil(corners[:, 1].max()) + pad)
    if x1 - x0 < 2 * shrink or y1 - y0 < 2 * shrink:  # the crop is outside the frame
        x0, y0, x1, y1, shrink = 0, 0, width, height, 1
    x1 -= (x1 - x0) % shrink
    y1 -= (y1 - y0) % shrink
    region = frame[y0:y1, x0:x1]
    if shrink > 1:
        size_small = ((x1 - x0) // shrink, (y1 - y0) // shrink)
        region = cv2.resize(region, size_small, interpolation=cv2.INTER_AREA)
    # small pixel q <-> frame pixel shrink * q + (x0, y0) + (shrink - 1) / 2
    offset = np.array([x0, y0], float) + 0.5 * (shrink - 1)
    to_frame = np.array([[shrink, 0.0, offset[0]], [0.0, shrink, offset[1]]])
    return cv2.warpAffine(
        np.ascontiguousarray(region),
        _compose(matrix, to_frame),
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def _smooth_grey(crop: np.ndarray) -> NDArray[np.float32]:
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    return cv2.GaussianBlur(grey.astype(np.float32), (5, 5), 1.0)


def _ecc_correction(
    reference: np.ndarray, moving: np.ndarray, region: np.ndarray
) -> NDArray[np.float64] | None:
    """Similarity W with ``moving(W p) ~ reference(p)`` on ``region`` (shrunk by 2 px so the
    crop's edges do not count), or None when ECC does not converge.

    OpenCV's ECC has no similarity model: an affine warp is fitted and replaced by the
    similarity closest to it over the region's pixels (least squares), so a shear or a
    one-axis stretch that an expression may induce is not applied."""
    inner = cv2.erode(region.astype(np.uint8), np.ones((5, 5), np.uint8))
    if np.count_nonzero(inner) < 64:
        return None
    warp = np.eye(2, 3, dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-5)
    try:
        _, warp = cv2.findTransformECC(
            reference, moving, warp, cv2.MOTION_AFFINE, criteria, inner, 1
        )
    except cv2.error:
        return None
    ys, xs = np.nonzero(inner[::4, ::4])
    points = np.stack([xs, ys], axis=1).astype(np.float64) * 4
    return similarity_transform(points, _apply(warp.astype(np.float64), points))


def _out_of_frame(points: np.ndarray, shape: tuple[int, ...]) -> bool:
    outline = face_outline(points)
    height, width = shape[:2]
    return bool(
        (outline[:, 0] < 0).any()
        or (outline[:, 1] < 0).any()
        or (outline[:, 0] > width - 1).any()
        or (outline[:, 1] > height - 1).any()
    )


def align_expression(
    frames: Sequence[np.ndarray] | np.ndarray,
    *,
    apex_index: int | None = None,
    template_index: int = 0,
    size: int = 128,
    margin: float = ALIGN_MARGIN,
    mask: bool = True,
    landmarks: np.ndarray | None = None,
    max_head_motion: float = MAX_HEAD_MOTION,
    refine: bool = True,
) -> AlignedExpression:
    """Align the frames of one expression to the template frame's pose and crop the face.

    frames : T >= 1 frames of one size, (H, W, 3) RGB or (H, W) grey uint8 (normally onset
        ... apex, or just the onset and apex frames).
    apex_index : the frame whose head motion is checked (default: the last).
    template_index : the frame whose pose all frames are mapped to (default 0, the onset).
    size : crop side in pixels: 128 (the authors' network input) or 256 (their crop).
    margin : added around the face on each side, fraction of its larger extent.
    mask : compute the face-only mask of the template frame
        (:func:`~mmhe.features.face_mask.face_mask`); the crop is then the bounding square
        of the mask (the face as the authors crop it), and the mask, resampled into the
        crop, is :attr:`AlignedExpression.mask`. Without it the crop bounds the landmarks'
        outline (:func:`~mmhe.features.face_mask.face_outline`).
    landmarks : (T, 68, 2) landmarks in frame pixels if already known (NaN rows = missing);
        tracked with :func:`track_landmarks` otherwise.
    max_head_motion : threshold of the head-motion flag (:data:`MAX_HEAD_MOTION`).
    refine : after the landmark similarity, align each frame's crop to the template's by
        ECC (Evangelidis & Psarakis 2008; affine, reduced to its closest similarity) on the
        whole crop, the face and the cap and hair around it that move with the head (the
        face alone lets a large expression pull the fit more): dlib's landmarks carry
        0.1-0.5 px of noise that no choice of box removes, ECC is good to ~0.01 px. Part
        of an expression may be absorbed as a global shift; :func:`mmhe.features.flow.
        remove_rigid_motion` gives it back (the static majority of the face decides).
        Frames where ECC fails keep the landmark alignment (``refined`` False).
    Returns an :class:`AlignedExpression`. Raises
    :class:`~mmhe.features.landmarks.LandmarksNotFoundError` when the template frame has no
    landmarks (nothing to align to).

    Example
    -------
    >>> aligned = align_expression([onset_frame, apex_frame], size=128)  # doctest: +SKIP
    >>> aligned.masked().shape, aligned.quality.flags
    ((2, 128, 128, 3), ())
    """
    if len(frames) == 0:
        raise FrameError("align_expression needs at least one frame, got none")
    checked = [check_frame(frames[i], f"frame {i}") for i in range(len(frames))]
    shape = checked[0].shape
    for index, frame in enumerate(checked):
        if frame.shape != shape:
            raise FrameError(
                f"frame {index} has shape {frame.shape}, frame 0 {shape}: "
                "all frames of an expression must have one size"
            )
    if int(size) != size or size < 16:
        raise FrameError(f"crop size must be an integer >= 16, got {size!r}")
    count = len(checked)
    if not 0 <= template_index < count:
        raise FrameError(f"template_index {template_index} is outside 0..{count - 1}")
    apex_index = count - 1 if apex_index is None else int(apex_index)
    if not 0 <= apex_index < count:
        raise FrameError(f"apex_index {apex_index} is outside 0..{count - 1}")
    if landmarks is None:
        order = [template_index, *[i for i in range(count) if i != template_index]]
        tracked, missing_ordered = track_landmarks([checked[i] for i in order])
        tracks = np.full((count, 68, 2), np.nan)
        tracks[order] = tracked
        missing = tuple(sorted(order[i] for i in missing_ordered))
    else:
        tracks = np.asarray(landmarks, dtype=np.float64)
        if tracks.shape != (count, 68, 2):
            raise FrameError(f"landmarks must have shape ({count}, 68, 2), got {tracks.shape}")
        missing = tuple(int(i) for i in np.flatnonzero(~np.isfinite(tracks).all(axis=(1, 2))))
    if template_index in missing:
        raise LandmarksNotFoundError(
            f"no landmarks in the template frame {template_index}: the expression cannot be "
            "aligned (pass its landmarks, or choose another template_index)"
        )
    template = tracks[template_index]
    stable = list(STABLE_POINTS)
    face = None
    if mask:  # the crop bounds the face mask, resampled once from where it is computed
        small, to_small = face_mask_small(checked[template_index], template)
        small_to_frame = cv2.invertAffineTransform(to_small)
        to_crop = _crop_matrix(template, int(size), margin, small, small_to_frame)
        small_to_crop = _compose(to_crop, small_to_frame)
        face = (
            cv2.warpAffine(
                small.astype(np.float32), small_to_crop, (int(size), int(size)),
                flags=cv2.INTER_LINEAR,
            )
            > 0.5
        )  # fmt: skip
    else:
        to_crop = _crop_matrix(template, int(size), margin)
    matrices = np.empty((count, 2, 3))
    last_pose = np.eye(2, 3)
    for index in range(count):
        if index not in missing:
            last_pose = similarity_transform(tracks[index][stable], template[stable])
        matrices[index] = _compose(to_crop, last_pose)
    crops = np.stack([_warp(frame, matrices[i], int(size)) for i, frame in enumerate(checked)])
    template_in_crop = _apply(to_crop, template)
    refined = np.zeros(count, dtype=bool)
    if refine and count > 1:
        region = np.ones((int(size), int(size)), dtype=bool)
        reference = _smooth_grey(crops[template_index])
        for index in range(count):
            if index == template_index:
                continue
            correction = _ecc_correction(reference, _smooth_grey(crops[index]), region)
            if correction is not None:
                matrices[index] = _compose(cv2.invertAffineTransform(correction), matrices[index])
                crops[index] = _warp(checked[index], matrices[index], int(size))
                refined[index] = True

    left, right = eye_centres(template)
    eye_distance = float(np.hypot(*(right - left)))
    if apex_index in missing:
        motion_px, residual = math.nan, math.nan
    else:
        apex_stable = tracks[apex_index][stable]
        shift = apex_stable - template[stable]
        motion_px = float(np.sqrt((shift**2).sum(axis=1).mean()))
        fitted = _apply(similarity_transform(apex_stable, template[stable]), apex_stable)
        residual = float(np.sqrt(((fitted - template[stable]) ** 2).sum(axis=1).mean()))
    quality = AlignmentQuality(
        landmarks_missing=missing,
        head_motion=motion_px / eye_distance,
        head_motion_px=motion_px,
        fit_residual=residual / eye_distance,
        out_of_frame=any(_out_of_frame(tracks[i], shape) for i in range(count) if i not in missing),
        max_head_motion=max_head_motion,
    )
    return AlignedExpression(crops, face, tracks, matrices, template_in_crop, quality, refined)
