"""Facial action units as displacements of the synthetic face, and an expression's time course.

Every AU is a few Gaussian-windowed displacement "bumps" (`AU_ANCHORS`) in face-normalised
coordinates (see `mmhe.synth.face`: the image-left eye centre at (0.28, 0.38), the
image-right one at (0.72, 0.38), y down); `mmhe.synth.face.FaceRenderer` scales the bumps
of the active AUs by their intensity and applies them with one remap. AU25/26/27 also
darken the gap between the lips (`MOUTH_OPENING`). `expression_intensity` is the 0..1
profile of one expression over time (onset, apex, offset).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from mmhe.errors import ConfigError
from mmhe.labels import ACTION_UNITS

__all__ = [
    "AU_ANCHORS",
    "EYE_CENTRES",
    "MACRO_APEX_INTENSITY",
    "MAX_MOUTH_DARKENING",
    "MICRO_APEX_INTENSITY",
    "MOUTH_GAP",
    "MOUTH_GAP_RADIUS",
    "MOUTH_INTERIOR",
    "MOUTH_OPENING",
    "AUAnchor",
    "expression_intensity",
]


class AUAnchor(NamedTuple):
    """One displacement bump of an action unit, in face-normalised coordinates.

    center : (x, y) centre of the Gaussian window
    direction : (dx, dy) displacement of the skin at the centre at intensity 1
        (its norm is the amplitude; 0.02 units ~ 8 px at a 640 px head height)
    radius : (sigma_x, sigma_y) of the Gaussian window (cut to zero beyond 3 sigma)
    """

    center: tuple[float, float]
    direction: tuple[float, float]
    radius: tuple[float, float]


def _pair(
    left: tuple[float, float], direction: tuple[float, float], radius: tuple[float, float]
) -> tuple[AUAnchor, AUAnchor]:
    """A bilateral bump: `left` on the image left, mirrored about x = 0.5."""
    (x, y), (dx, dy) = left, direction
    return AUAnchor((x, y), (dx, dy), radius), AUAnchor((1.0 - x, y), (-dx, dy), radius)


EYE_CENTRES = ((0.28, 0.38), (0.72, 0.38))
"""Canonical eye centres (image left, image right) defining face-normalised coordinates."""

_INNER_BROW, _OUTER_BROW, _MID_BROW = (0.40, 0.28), (0.20, 0.295), (0.33, 0.29)
_UPPER_LID, _LOWER_LID, _CHEEK = (0.28, 0.345), (0.28, 0.41), (0.22, 0.56)
_LIP_CORNER, _NOSTRIL_WING, _NASOLABIAL = (0.305, 0.775), (0.40, 0.64), (0.36, 0.665)
_UPPER_LIP, _LOWER_LIP, MOUTH_GAP, _CHIN = (0.5, 0.75), (0.5, 0.86), (0.5, 0.80), (0.5, 1.0)

_LID_R, _CORNER_R, _LIP_R = (0.065, 0.03), (0.06, 0.05), (0.12, 0.03)
_CLOSED_EYE = (  # image-left eye: upper lid down over the eye, lower lid up a little
    AUAnchor((0.28, 0.37), (0.0, 0.045), (0.07, 0.04)),
    AUAnchor((0.28, 0.42), (0.0, -0.01), (0.06, 0.025)),
)

AU_ANCHORS: dict[int, tuple[AUAnchor, ...]] = {
    # brows
    1: _pair(_INNER_BROW, (0.0, -0.02), (0.06, 0.05)),  # inner brows up
    2: _pair(_OUTER_BROW, (0.0, -0.02), (0.06, 0.05)),  # outer brows up
    4: _pair(_MID_BROW, (0.008, 0.016), (0.08, 0.05)),  # brows down and together
    # lids and cheeks
    5: _pair(_UPPER_LID, (0.0, -0.012), _LID_R),  # upper lids up
    6: _pair(_CHEEK, (0.0, -0.018), (0.09, 0.07)),  # cheeks up
    7: _pair(_LOWER_LID, (0.0, -0.01), (0.06, 0.025)),  # lower lids up (tighten)
    41: _pair(_UPPER_LID, (0.0, 0.014), (0.065, 0.035)),  # upper lids droop
    42: (  # slit
        *_pair(_UPPER_LID, (0.0, 0.022), (0.065, 0.035)),
        *_pair(_LOWER_LID, (0.0, -0.008), (0.06, 0.025)),
    ),
    43: (*_pair(*_CLOSED_EYE[0]), *_pair(*_CLOSED_EYE[1])),  # eyes closed
    44: (  # squint
        *_pair(_LOWER_LID, (0.0, -0.012), (0.06, 0.025)),
        *_pair(_UPPER_LID, (0.0, 0.008), _LID_R),
    ),
    45: (*_pair(*_CLOSED_EYE[0]), *_pair(*_CLOSED_EYE[1])),  # blink (apex = closed)
    46: _CLOSED_EYE,  # wink: image-left eye only
    # nose
    9: (  # nose wrinkles up (sides of the bridge and the tip)
        *_pair((0.44, 0.52), (0.006, -0.014), (0.05, 0.06)),
        AUAnchor((0.5, 0.63), (0.0, -0.008), (0.06, 0.04)),
    ),
    11: _pair(_NASOLABIAL, (-0.006, -0.01), (0.04, 0.045)),  # nasolabial fold deepens
    38: _pair(_NOSTRIL_WING, (-0.008, 0.0), (0.03, 0.03)),  # nostrils widen
    39: _pair(_NOSTRIL_WING, (0.008, 0.0), (0.03, 0.03)),  # nostrils narrow
    # lips and jaw
    10: (AUAnchor(_UPPER_LIP, (0.0, -0.016), (0.13, 0.035)),),  # upper lip up
    12: _pair(_LIP_CORNER, (-0.012, -0.016), _CORNER_R),  # lip corners up and out
    13: _pair(_LIP_CORNER, (-0.006, -0.018), (0.045, 0.045)),  # sharp, steep corner pull
    14: _pair(_LIP_CORNER, (-0.01, 0.0), (0.035, 0.035)),  # dimpler: corners back
    15: _pair(_LIP_CORNER, (-0.003, 0.016), _CORNER_R),  # lip corners down
    16: (AUAnchor(_LOWER_LIP, (0.0, 0.014), (0.1, 0.035)),),  # lower lip down
    17: (
        AUAnchor(_CHIN, (0.0, -0.016), (0.12, 0.06)),
        AUAnchor(_LOWER_LIP, (0.0, -0.008), (0.1, 0.03)),
    ),  # chin (and lower lip) up
    18: _pair(_LIP_CORNER, (0.014, 0.0), (0.05, 0.05)),  # pucker: corners in
    20: _pair(_LIP_CORNER, (-0.018, 0.003), _CORNER_R),  # lips stretched sideways
    22: (  # funneler: corners in, lips everted
        *_pair((0.32, 0.78), (0.01, 0.0), (0.05, 0.05)),
        AUAnchor(_UPPER_LIP, (0.0, -0.006), _LIP_R),
        AUAnchor(_LOWER_LIP, (0.0, 0.006), _LIP_R),
    ),
    23: (
        AUAnchor((0.5, 0.755), (0.0, 0.008), (0.12, 0.025)),
        AUAnchor((0.5, 0.855), (0.0, -0.008), (0.12, 0.025)),
    ),  # lips tightened (narrowed)
    24: (
        AUAnchor((0.5, 0.755), (0.0, 0.012), (0.15, 0.03)),
        AUAnchor((0.5, 0.855), (0.0, -0.012), (0.15, 0.03)),
    ),  # lips pressed together
    25: (
        AUAnchor(_UPPER_LIP, (0.0, -0.012), _LIP_R),
        AUAnchor((0.5, 0.865), (0.0, 0.016), (0.12, 0.035)),
    ),  # lips part
    26: (AUAnchor((0.5, 0.9), (0.0, 0.04), (0.2, 0.1)),),  # jaw drops
    27: (  # mouth stretched open
        AUAnchor((0.5, 0.92), (0.0, 0.06), (0.22, 0.12)),
        *_pair(_LIP_CORNER, (0.006, 0.0), (0.05, 0.05)),
    ),
    28: (
        AUAnchor((0.5, 0.755), (0.0, 0.01), (0.12, 0.025)),
        AUAnchor((0.5, 0.855), (0.0, -0.012), (0.12, 0.025)),
    ),  # lips sucked in
}
"""AU -> its displacement bumps (`AUAnchor`s) in face-normalised coordinates.

Bilateral AUs have one bump per side (mirrored). Any AU of `mmhe.labels.ACTION_UNITS`
without a specific entry gets a small generic bump in its FACS region
(`_GENERIC_BY_REGION`), so every catalogued AU renders something.
"""

_GENERIC_BY_REGION: dict[str, tuple[AUAnchor, ...]] = {
    "upper": (AUAnchor((0.5, 0.3), (0.0, -0.01), (0.15, 0.05)),),
    "middle": (AUAnchor((0.5, 0.6), (0.0, -0.01), (0.15, 0.05)),),
    "lower": (AUAnchor((0.5, 0.86), (0.0, 0.01), (0.15, 0.05)),),
}
for _number, _unit in ACTION_UNITS.items():
    AU_ANCHORS.setdefault(_number, _GENERIC_BY_REGION[_unit.region])

MOUTH_OPENING: dict[int, float] = {25: 0.45, 26: 0.6, 27: 0.75}
"""AU -> how far the gap between the lips is blended towards the dark mouth cavity at
intensity 1 (0 = unchanged, 1 = cavity colour at the gap centre)."""
MOUTH_GAP_RADIUS = (0.075, 0.02)
MAX_MOUTH_DARKENING = 0.8
MOUTH_INTERIOR = np.array([75.0, 20.0, 25.0], np.float32)  # RGB of the dark mouth cavity

MICRO_APEX_INTENSITY = 0.4
"""Suggested apex intensity of a micro-expression (~3 px at a 640 px head height)."""
MACRO_APEX_INTENSITY = 1.0
"""Suggested apex intensity of a macro-expression (~8 px at a 640 px head height)."""


# ---------------------------------------------------------------- timing profile


def expression_intensity(
    t: ArrayLike,
    onset: float,
    apex: float,
    offset: float,
    *,
    tail: float = 0.1,
) -> np.ndarray:
    """Smooth 0..1 intensity of one expression at times `t`.

    t : array of times (any shape), same unit as onset/apex/offset (seconds)
    Returns float64 array shaped like `t`: 0 before onset, a raised-cosine rise to 1 at
    the apex, a raised-cosine fall to 0 at the offset, 0 after (C1-smooth, monotone on
    each side). When `apex == offset` (the coding file's "offset not coded separately")
    the fall lasts `tail` seconds after the apex instead. `onset == apex` gives a step
    up at the onset.
    """
    if not (np.isfinite([onset, apex, offset, tail]).all() and onset <= apex <= offset):
        raise ConfigError(
            f"expression times must satisfy onset <= apex <= offset, got {onset}, {apex}, {offset}"
        )
    if tail <= 0:
        raise ConfigError(f"tail must be a positive duration in seconds, got {tail}")
    t = np.asarray(t, dtype=float)
    end = offset if offset > apex else apex + tail
    rise = np.clip((t - onset) / (apex - onset), 0.0, 1.0) if apex > onset else (t >= onset) * 1.0
    fall = np.clip((t - apex) / (end - apex), 0.0, 1.0)
    up = 0.5 - 0.5 * np.cos(np.pi * rise)
    down = 0.5 + 0.5 * np.cos(np.pi * fall)
    return np.where(t <= apex, up, down)
