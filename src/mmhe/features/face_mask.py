"""The face only, as the dataset's authors cut it: no EEG cap, hair, ears, neck or background.

:func:`face_mask` bounds the face by its landmarks (the jaw line below, a forehead line
above the brows) and keeps, inside that outline, the pixels whose colour is the face's
own skin colour (measured on the cheeks and nose of this very image, so any skin tone,
lighting and background works); holes left by glasses, eyes, brows, the mouth and the
electrodes stuck on the face are filled. It follows the authors' "colour and area
thresholds" segmentation, anchored on the 68 landmarks instead of a fixed box.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

from mmhe.features.frames import FrameError, check_frame, fill_holes
from mmhe.features.landmarks import JAW, eye_centres, face_landmarks

__all__ = [
    "FOREHEAD_HEIGHT",
    "SKIN_DISTANCE",
    "face_mask",
    "face_mask_small",
    "face_outline",
    "mask_iou",
]

FOREHEAD_HEIGHT = 1.0
"""Height of the forehead above the brows, in units of the brow-to-nose-base distance (the
rule of facial thirds: hairline-brows ~ brows-nose base). The colour test then cuts the
outline at the cap's rim or the hairline, whichever is lower."""
JAW_MARGIN = 0.01
"""The jaw points are pushed away from the nose by this fraction of the jaw's width: dlib
puts its contour slightly inside the face's edge."""
SKIN_DISTANCE = 4.0
"""A pixel is skin when its robust Mahalanobis distance to the face's skin colour (CIE
L*a*b*) is below this (per-channel medians and MAD-based deviations of the cheek and nose
pixels)."""
_SKIN_SPREAD_MIN = (4.0, 2.0, 2.5)  # floor of the L*, a*, b* deviations (even, flat skin)
_WORK_WIDTH = 160  # the mask is computed with the face (jaw width) at most this wide
_OPEN_FRACTION = 0.03  # opening kernel, fraction of the jaw width: drops specks
_CLOSE_FRACTION = 0.08  # closing kernel: bridges glasses frames and electrode rings


def _up_vector(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """Unit vector pointing up the face (perpendicular to the eye line, towards the brows)."""
    left, right = eye_centres(points)
    across = (right - left) / max(float(np.hypot(*(right - left))), 1e-9)
    return np.array([across[1], -across[0]])


def face_outline(
    points: np.ndarray, *, forehead: float = FOREHEAD_HEIGHT, jaw_margin: float = JAW_MARGIN
) -> NDArray[np.float64]:
    """Polygon bounding the face: the jaw line and a forehead line above the brows.

    points : (68, 2) landmarks, pixels. forehead : forehead height in brow-to-nose-base
        distances (:data:`FOREHEAD_HEIGHT`).
    Returns (N, 2) float64 pixels, clockwise in the image: jaw points 0-16 (ear to ear
    under the chin), the outer jaw point 16 and the brows 26-17 lifted along the face's
    up axis (the jaw ends by half the lift, the brows by all of it), then point 0 lifted.
    """
    points = np.asarray(points, dtype=np.float64)
    up = _up_vector(points)
    brow_height = float((points[17:27].mean(axis=0) - points[33]) @ up)
    lift = forehead * max(brow_height, 1.0) * up
    jaw = points[list(JAW)]
    outward = jaw - points[29]
    outward /= np.maximum(np.hypot(outward[:, 0], outward[:, 1]), 1e-9)[:, None]
    jaw = jaw + jaw_margin * float(np.hypot(*(points[16] - points[0]))) * outward
    brows = points[26:16:-1] + lift
    return np.vstack([jaw, points[16] + 0.5 * lift, brows, points[0] + 0.5 * lift])


def _between(points: np.ndarray, a: int, b: int, t: float) -> np.ndarray:
    return (1.0 - t) * points[a] + t * points[b]


def _skin_sample_regions(points: NDArray[np.float64]) -> list[NDArray[np.float64]]:
    """Quadrilaterals of bare skin whatever the occlusions: both upper cheeks (between the
    lower lid, the side of the nose, the lip corner and the jaw, kept away from each edge)
    and the nose bridge."""
    p = points

    def cheek(jaw: tuple[int, int, int], nose: int, corner: int, lids: tuple[int, int]):
        return np.array(
            [
                _between(p, jaw[0], nose, 0.3),
                _between(p, jaw[1], nose, 0.3),
                _between(p, jaw[2], corner, 0.4),
                _between(p, nose, corner, 0.5),
                _between(p, lids[0], nose, 0.4),
                _between(p, lids[1], nose, 0.4),
            ]
        )

    bridge = np.array(
        [
            _between(p, 27, 39, 0.3),
            _between(p, 27, 42, 0.3),
            _between(p, 30, 35, 0.4),
            _between(p, 30, 31, 0.4),
        ]
    )
    return [cheek((1, 2, 3), 31, 48, (41, 40)), cheek((15, 14, 13), 35, 54, (46, 47)), bridge]


def _skin_model(lab: np.ndarray, sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = lab[sample]
    centre = np.median(values, axis=0)
    spread = 1.4826 * np.median(np.abs(values - centre), axis=0)
    return centre, np.maximum(spread, _SKIN_SPREAD_MIN)


def _ellipse(size: float) -> np.ndarray:
    side = max(3, round(size) | 1)
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))


def face_mask(
    image: np.ndarray,
    landmarks: np.ndarray | None = None,
    *,
    forehead: float = FOREHEAD_HEIGHT,
    skin_distance: float = SKIN_DISTANCE,
) -> NDArray[np.bool_]:
    """Face-only mask of an image: skin inside the jaw line and under the forehead line.

    image : (H, W, 3) RGB uint8 (a grey image has no skin colour: the outline alone is
        returned). A full frame or a face crop, any background.
    landmarks : (68, 2) pixels; found with :func:`mmhe.features.landmarks.face_landmarks`
        when None.
    forehead : see :func:`face_outline`. skin_distance : see :data:`SKIN_DISTANCE`.
    Returns (H, W) bool, True on the face.

    Steps, on the face's bounding region shrunk so the jaw is at most 160 px wide:
    1. the outline (:func:`face_outline`) as a filled polygon;
    2. the skin colour of this face: medians and MAD-based deviations (floored) of CIE
       L*a*b* over the upper cheeks and the nose bridge (``_skin_sample_regions``);
    3. skin = outline pixels closer than ``skin_distance`` deviations (robust Mahalanobis
       distance, diagonal) -- this removes the cap, hair, headset, background and
       shadowed neck;
    4. opening (kernel 3 % of the jaw width) to drop specks, then the connected parts that
       touch the inner face (the hull of brows, eyes, nose and mouth) are kept, the inner
       hull is added (eyes, brows, mouth and glasses are face whatever their colour),
       closing (8 %) and hole filling fill glasses frames and electrodes, and the result is
       cut to the outline again;
    5. the mask is scaled back to the image (bilinear, threshold 0.5).
    """
    image = check_frame(image)
    height, width = image.shape[:2]
    mask = np.zeros((height, width), dtype=bool)
    face, region, _ = _work_mask(image, landmarks, forehead, skin_distance)
    if face is None:
        return mask
    x0, y0, x1, y1 = region
    if face.shape != (y1 - y0, x1 - x0):
        face = cv2.resize(face.astype(np.float32), (x1 - x0, y1 - y0)) > 0.5  # bilinear
    mask[y0:y1, x0:x1] = face
    return mask


def face_mask_small(
    image: np.ndarray,
    landmarks: np.ndarray | None = None,
    *,
    forehead: float = FOREHEAD_HEIGHT,
    skin_distance: float = SKIN_DISTANCE,
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """:func:`face_mask` at the resolution it is computed at (the face at most 160 px
    wide), for resampling it once into another grid (an aligned crop).

    Returns (mask (h, w) bool, matrix (2, 3) mapping image pixels to mask pixels); an
    empty (1, 1) mask when the face is off the image.
    """
    image = check_frame(image)
    face, _, to_work = _work_mask(image, landmarks, forehead, skin_distance)
    if face is None:
        return np.zeros((1, 1), dtype=bool), to_work
    return face, to_work


def _work_mask(
    image: NDArray[np.uint8],
    landmarks: np.ndarray | None,
    forehead: float,
    skin_distance: float,
) -> tuple[NDArray[np.bool_] | None, tuple[int, int, int, int], NDArray[np.float64]]:
    """The face mask on the working patch: (mask, (x0, y0, x1, y1) of the patch in image
    pixels, 2 x 3 map image pixels -> mask pixels); mask None when the face is off the
    image."""
    if landmarks is None:
        landmarks = face_landmarks(image)
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (68, 2):
        raise FrameError(f"expected (68, 2) landmarks, got an array of shape {points.shape}")
    height, width = image.shape[:2]
    outline = face_outline(points, forehead=forehead)
    # working region: the outline's bounds (+5 %) inside the image
    (x0, y0), (x1, y1) = outline.min(axis=0), outline.max(axis=0)
    pad = 0.05 * max(x1 - x0, y1 - y0)
    rx0, ry0 = max(0, math.floor(x0 - pad)), max(0, math.floor(y0 - pad))
    rx1, ry1 = min(width, math.ceil(x1 + pad)), min(height, math.ceil(y1 + pad))
    region = (rx0, ry0, rx1, ry1)
    if rx1 - rx0 < 4 or ry1 - ry0 < 4:
        return None, region, np.eye(2, 3)
    jaw_width = float(np.hypot(*(points[16] - points[0])))
    scale = min(1.0, _WORK_WIDTH / max(jaw_width, 1.0))
    size = (max(4, round((rx1 - rx0) * scale)), max(4, round((ry1 - ry0) * scale)))
    scale_x, scale_y = size[0] / (rx1 - rx0), size[1] / (ry1 - ry0)
    patch = image[ry0:ry1, rx0:rx1]
    if (scale_x, scale_y) != (1.0, 1.0):
        patch = cv2.resize(patch, size, interpolation=cv2.INTER_AREA)
    # pixel centres: work x = (x - rx0 + 0.5) * scale_x - 0.5
    to_work = np.array(
        [
            [scale_x, 0.0, (0.5 - rx0) * scale_x - 0.5],
            [0.0, scale_y, (0.5 - ry0) * scale_y - 0.5],
        ]
    )

    def polygon(xy: np.ndarray, convex: bool = False) -> NDArray[np.bool_]:
        canvas = np.zeros(size[::-1], np.uint8)
        work = xy @ to_work[:, :2].T + to_work[:, 2]
        vertices = np.round(work * 16).astype(np.int32)  # 4 fractional bits
        if convex:
            cv2.fillConvexPoly(canvas, cv2.convexHull(vertices), 1, cv2.LINE_8, 4)
        else:
            cv2.fillPoly(canvas, [vertices], 1, cv2.LINE_8, 4)
        return canvas.astype(bool)

    inside = polygon(outline)
    inner = polygon(points[17:68], convex=True)
    work_jaw = jaw_width * scale_x
    if patch.ndim == 3:
        lab = cv2.cvtColor(patch, cv2.COLOR_RGB2Lab).astype(np.float32)
        lab[..., 0] *= 100.0 / 255.0
        lab[..., 1:] -= 128.0
        sample = np.zeros(size[::-1], dtype=bool)
        for area in _skin_sample_regions(points):
            sample |= polygon(area, convex=True)
        sample &= inside
        if np.count_nonzero(sample) < 10:
            sample = inner
        centre, spread = _skin_model(lab, sample)
        distance = (((lab - centre) / spread) ** 2).sum(axis=2)
        skin = inside & (distance < skin_distance**2)
        skin = cv2.morphologyEx(
            skin.astype(np.uint8), cv2.MORPH_OPEN, _ellipse(_OPEN_FRACTION * work_jaw)
        ).astype(bool)
        _, labels = cv2.connectedComponents(skin.astype(np.uint8), connectivity=8)
        touching = np.unique(labels[inner & skin])
        face = np.isin(labels, touching[touching > 0]) | inner
    else:
        face = inside
    face = cv2.morphologyEx(
        face.astype(np.uint8), cv2.MORPH_CLOSE, _ellipse(_CLOSE_FRACTION * work_jaw)
    ).astype(bool)
    return fill_holes(face) & inside, region, to_work


def mask_iou(first: np.ndarray, second: np.ndarray) -> float:
    """Intersection over union of two boolean masks of the same shape (1.0 when both are
    empty)."""
    first, second = np.asarray(first, bool), np.asarray(second, bool)
    if first.shape != second.shape:
        raise FrameError(f"masks of shapes {first.shape} and {second.shape} differ")
    union = np.count_nonzero(first | second)
    return 1.0 if union == 0 else np.count_nonzero(first & second) / union
