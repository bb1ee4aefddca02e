"""Facial regions of a square face crop, for region-wise motion (expression spotting).

Two schemes behind one function, `facial_regions(size, landmarks=None)`:

- with 68 landmarks (the iBUG 300-W / dlib convention, as a landmark detector returns
  them in crop pixels), each region follows the face's own geometry: brows above their
  landmarks, eyes around theirs, the nose ridge, cheeks between the eye and the jaw,
  squares on the mouth corners, the chin below the lower lip;
- without, fixed fractions of the face box (`REGION_FRACTIONS`), which a crop made with
  `mmhe.features.face.crop(frame, box, size, margin=VIDEO_MARGIN)` holds at known
  positions. This is what `mmhe spot` uses until a landmark detector is in the house.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from mmhe.errors import ConfigError
from mmhe.store.videos import VIDEO_MARGIN

__all__ = ["REGION_FRACTIONS", "Region", "facial_regions"]

Region = tuple[int, int, int, int]
"""``(x0, y0, x1, y1)`` in pixels of the face crop, x1 and y1 exclusive."""
REGION_FRACTIONS: dict[str, tuple[float, float, float, float]] = {
    "brow_l": (0.12, 0.10, 0.45, 0.28),
    "brow_r": (0.55, 0.10, 0.88, 0.28),
    "eye_l": (0.15, 0.27, 0.42, 0.42),
    "eye_r": (0.58, 0.27, 0.85, 0.42),
    "nose": (0.43, 0.44, 0.57, 0.60),
    "cheek_l": (0.10, 0.48, 0.32, 0.64),
    "cheek_r": (0.68, 0.48, 0.90, 0.64),
    "mouth_l": (0.15, 0.68, 0.42, 0.90),
    "mouth_r": (0.58, 0.68, 0.85, 0.90),
    "chin": (0.38, 0.84, 0.62, 0.95),
}
"""Regions as (x0, y0, x1, y1) fractions of the face box (x right, y down; "_l" = image
left). Placed on OpenCV's frontal-face box, whose top is near the brows and whose bottom
is at the chin: eye centres at about (0.28, 0.36) and (0.72, 0.36), mouth corners at
about (0.28, 0.76). The chin region stays inside the jaw line (windows on the face
contour see the static background and track badly); the nose region is the ridge
between the eyes and the tip (blinks must not reach it)."""


# 68-point landmark indices (iBUG 300-W, 0-based; "_l" = image left = the subject's right)
_LANDMARKS = {
    "brow_l": range(17, 22),
    "brow_r": range(22, 27),
    "nose": range(27, 31),
    "eye_l": range(36, 42),
    "eye_r": range(42, 48),
}


def _box(points: np.ndarray, pad_x: float, pad_top: float, pad_bottom: float) -> np.ndarray:
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    return np.array([x0 - pad_x, y0 - pad_top, x1 + pad_x, y1 + pad_bottom])


def _landmark_regions(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Regions (x0, y0, x1, y1) in the landmarks' pixels from 68 points."""
    points = {name: landmarks[list(index)] for name, index in _LANDMARKS.items()}
    eye_l, eye_r = points["eye_l"].mean(axis=0), points["eye_r"].mean(axis=0)
    d = float(np.hypot(*(eye_r - eye_l)))  # inter-ocular distance
    if not d > 0:
        raise ConfigError("landmarks: the two eye centres coincide; not a 68-point face shape")
    regions = {
        "brow_l": _box(points["brow_l"], 0.05 * d, 0.25 * d, 0.02 * d),
        "brow_r": _box(points["brow_r"], 0.05 * d, 0.25 * d, 0.02 * d),
        "eye_l": _box(points["eye_l"], 0.08 * d, 0.08 * d, 0.08 * d),
        "eye_r": _box(points["eye_r"], 0.08 * d, 0.08 * d, 0.08 * d),
        "nose": _box(points["nose"], 0.12 * d, 0.0, 0.0),
    }
    corner_l, corner_r = landmarks[48], landmarks[54]
    wing_l, wing_r = landmarks[31], landmarks[35]
    half = 0.2 * d
    for side, corner, wing, eye, jaw in (
        ("l", corner_l, wing_l, eye_l, landmarks[2]),
        ("r", corner_r, wing_r, eye_r, landmarks[14]),
    ):
        regions[f"mouth_{side}"] = np.array(
            [corner[0] - half, corner[1] - half, corner[0] + half, corner[1] + half]
        )
        top = eye[1] + 0.3 * d
        x_mid = 0.5 * (jaw[0] + wing[0])
        regions[f"cheek_{side}"] = np.array(
            [x_mid - 0.18 * d, top, x_mid + 0.18 * d, max(wing[1], top + 0.1 * d)]
        )
    lip, chin = landmarks[57], landmarks[8]
    regions["chin"] = np.array(
        [landmarks[7][0], lip[1] + 0.05 * d, landmarks[9][0], max(chin[1], lip[1] + 0.2 * d)]
    )
    return regions


def facial_regions(
    size: int, landmarks: ArrayLike | None = None, *, margin: float = VIDEO_MARGIN
) -> dict[str, Region]:
    """The facial regions of a square face crop, in crop pixels.

    size : side of the crop in pixels.
    landmarks : optional (68, 2) points (x, y) in crop pixels, iBUG 300-W order (dlib's
        68-point model); regions then follow the face's own geometry. Without them the
        regions are `REGION_FRACTIONS` of the face box, which a crop made with
        `mmhe.features.face.crop(frame, box, size, margin=margin)` holds at
        ``[margin, 1 + margin] / (1 + 2 margin)`` of its side.
    Returns {name: (x0, y0, x1, y1)} for the names of `REGION_FRACTIONS`, each clipped
    to the crop and at least 3 x 3 pixels.
    """
    if int(size) != size or size < 16:
        raise ConfigError(f"face crop size must be an integer >= 16 px, got {size!r}")
    size = int(size)
    if landmarks is not None:
        points = np.asarray(landmarks, dtype=float)
        if points.shape != (68, 2) or not np.isfinite(points).all():
            raise ConfigError(
                f"landmarks must be 68 finite (x, y) points, got shape {points.shape}"
            )
        raw = _landmark_regions(points)
    else:
        low, scale = margin / (1 + 2 * margin), size / (1 + 2 * margin)
        raw = {
            name: np.array([low * size + scale * f for f in fractions])
            for name, fractions in REGION_FRACTIONS.items()
        }
    regions: dict[str, Region] = {}
    for name in REGION_FRACTIONS:
        x0, y0, x1, y1 = raw[name]
        x0, y0 = int(np.clip(round(x0), 0, size - 3)), int(np.clip(round(y0), 0, size - 3))
        x1 = int(np.clip(round(x1), x0 + 3, size))
        y1 = int(np.clip(round(y1), y0 + 3, size))
        regions[name] = (x0, y0, x1, y1)
    return regions
