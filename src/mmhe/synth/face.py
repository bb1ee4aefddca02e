"""A real face photograph that makes FACS action units, for the synthetic camera frames.

The face is the head of scikit-image's bundled astronaut portrait
(`skimage.data.astronaut()`, NASA photograph of Eileen Collins, public domain), cut
from its studio background (soft elliptical window anchored on OpenCV's Haar face
box, low-saturation background pixels removed, holes filled, edges feathered) and
composited on a green screen with per-participant scale, position, brightness,
colour and camera noise (`FaceAppearance`).

Action units are rendered as smooth local deformations: every AU is a few
Gaussian-windowed displacement "bumps" (`AU_ANCHORS`), the bumps of the active AUs
are scaled by their intensity, summed, and applied with one `cv2.remap`. A bump's
window is separable, so the sum of bumps is a rank-n matrix product of precomputed
1-D profiles (fast at 2048 x 1088). AU25/26/27 also darken the gap between the lips
(`MOUTH_OPENING`).

Face-normalised coordinates
---------------------------
All anchors are given in one canonical frame of an upright frontal face: x grows to
the image right, y downwards, the image-left eye centre is at (0.28, 0.38) and the
image-right eye centre at (0.72, 0.38), so one unit is the inter-ocular distance /
0.44 (about the width of OpenCV's frontal-face box). The rendered head (hair top to
chin) is about 1.62 units tall, so at a 640 px head height one unit is ~395 px.
The canonical frame is placed on the photograph by a similarity transform fitted to
the two eyes found by `haarcascade_eye.xml` inside the face found by
`haarcascade_frontalface_default.xml` (fixed fractions of the face box are used when
a cascade finds nothing).

Note that the source portrait already smiles (AU6+AU12+AU25 at low intensity in the
neutral frame); all AUs are rendered as deformations relative to it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import cv2
import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage
from scipy.special import ndtri
from skimage import data as skdata
from skimage.morphology import convex_hull_image

from mmhe.errors import ConfigError
from mmhe.labels import ACTION_UNITS

# ---------------------------------------------------------------- AU anchors


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


_EYES = ((0.28, 0.38), (0.72, 0.38))
"""Canonical eye centres (image left, image right) defining face-normalised coordinates."""

_INNER_BROW, _OUTER_BROW, _MID_BROW = (0.40, 0.28), (0.20, 0.295), (0.33, 0.29)
_UPPER_LID, _LOWER_LID, _CHEEK = (0.28, 0.345), (0.28, 0.41), (0.22, 0.56)
_LIP_CORNER, _NOSTRIL_WING, _NASOLABIAL = (0.305, 0.775), (0.40, 0.64), (0.36, 0.665)
_UPPER_LIP, _LOWER_LIP, _MOUTH_GAP, _CHIN = (0.5, 0.75), (0.5, 0.86), (0.5, 0.80), (0.5, 1.0)

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
_MOUTH_GAP_RADIUS = (0.075, 0.02)
_MAX_MOUTH_DARKENING = 0.8
_MOUTH_INTERIOR = np.array([75.0, 20.0, 25.0], np.float32)  # RGB of the dark mouth cavity

MICRO_APEX_INTENSITY = 0.4
"""Suggested apex intensity of a micro-expression (~3 px at a 640 px head height)."""
MACRO_APEX_INTENSITY = 1.0
"""Suggested apex intensity of a macro-expression (~8 px at a 640 px head height)."""

_WINDOW_CUT = math.exp(-0.5 * 3.0**2)  # Gaussian windows are zero beyond 3 sigma


# ---------------------------------------------------------------- appearance


@dataclass(frozen=True)
class FaceAppearance:
    """How one participant looks on camera.

    width, height : frame size in pixels
    face_scale : head height (hair top to chin) as a fraction of the frame height
    center : (x, y) of the head centre as fractions of the frame width and height
    brightness : multiplicative gain on the face (1 = the photograph)
    color_gain : per-channel (R, G, B) gains on the face
    noise_sigma : camera noise standard deviation in grey levels (quantised Gaussian)
    background : RGB colour of the green screen, 0..255
    """

    width: int
    height: int
    face_scale: float = 0.7
    center: tuple[float, float] = (0.5, 0.5)
    brightness: float = 1.0
    color_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    noise_sigma: float = 2.0
    background: tuple[int, int, int] = (40, 160, 60)

    def __post_init__(self) -> None:
        # Accept NumPy scalars and lists; store plain ints, floats and tuples (hashable).
        try:
            for name in ("width", "height"):
                if isinstance(getattr(self, name), numbers.Integral):
                    object.__setattr__(self, name, int(getattr(self, name)))
            for name in ("face_scale", "brightness", "noise_sigma"):
                object.__setattr__(self, name, float(getattr(self, name)))
            object.__setattr__(self, "center", tuple(float(c) for c in self.center))
            object.__setattr__(self, "color_gain", tuple(float(g) for g in self.color_gain))
            object.__setattr__(self, "background", tuple(int(c) for c in self.background))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid FaceAppearance field: {exc}") from exc
        problems = []
        if not (isinstance(self.width, int) and isinstance(self.height, int)):
            problems.append(f"width/height must be integers, got {self.width!r}x{self.height!r}")
        elif self.width < 64 or self.height < 64:
            problems.append(f"frame {self.width}x{self.height} is smaller than 64x64 px")
        if not 0.2 <= self.face_scale <= 0.95:
            problems.append(f"face_scale {self.face_scale} is outside 0.2..0.95")
        if len(self.center) != 2 or not all(0.0 <= c <= 1.0 for c in self.center):
            problems.append(f"center {self.center} must be two fractions in 0..1")
        if not self.brightness > 0:
            problems.append(f"brightness {self.brightness} must be positive")
        if len(self.color_gain) != 3 or not all(g > 0 for g in self.color_gain):
            problems.append(f"color_gain {self.color_gain} must be three positive gains")
        if not self.noise_sigma >= 0:
            problems.append(f"noise_sigma {self.noise_sigma} must be >= 0 grey levels")
        if len(self.background) != 3 or not all(0 <= int(c) <= 255 for c in self.background):
            problems.append(f"background {self.background} must be three values in 0..255")
        if problems:
            raise ConfigError("invalid FaceAppearance: " + "; ".join(problems))


def random_appearance(rng: np.random.Generator, width: int, height: int) -> FaceAppearance:
    """Draw one participant's look: head scale 0.55-0.8 of the frame height (less if the
    frame is too narrow), position jittered while the head stays inside the frame,
    brightness 0.8-1.2, colour gains 0.9-1.1, noise 1-3 grey levels, a green around
    (40, 160, 60)."""
    source = _source_face()
    head_w, head_h = source.head_box[2], source.head_box[3]
    aspect = head_w / head_h
    max_scale = min(0.8, 0.9 * width / (aspect * height))
    face_scale = float(rng.uniform(min(0.55, max_scale), max_scale))
    half_w = 0.5 * face_scale * aspect * height / width
    half_h = 0.5 * face_scale
    slack_x = max(0.0, min(0.12, 0.5 - half_w - 0.02))
    slack_y = max(0.0, min(0.06, 0.5 - half_h - 0.02))
    center = (
        float(0.5 + rng.uniform(-slack_x, slack_x)),
        float(0.5 + rng.uniform(-slack_y, slack_y)),
    )
    background = (
        int(rng.integers(25, 61)),
        int(rng.integers(140, 186)),
        int(rng.integers(40, 81)),
    )
    return FaceAppearance(
        width=int(width),
        height=int(height),
        face_scale=face_scale,
        center=center,
        brightness=float(rng.uniform(0.8, 1.2)),
        color_gain=tuple(float(g) for g in rng.uniform(0.9, 1.1, size=3)),
        noise_sigma=float(rng.uniform(1.0, 3.0)),
        background=background,
    )


# ---------------------------------------------------------------- the source photograph


@dataclass(frozen=True)
class _SourceFace:
    rgb: np.ndarray  # (512, 512, 3) float32, the astronaut photograph
    alpha: np.ndarray  # (512, 512) float32 in 0..1, the head matte
    head_box: tuple[float, float, float, float]  # x, y, w, h of the matte, photograph px
    eye_mid: np.ndarray  # (2,) photograph px
    scale: float  # photograph px per face unit
    angle: float  # radians, rotation of the eye line
    detected: tuple[bool, bool]  # (face found by Haar, both eyes found by Haar)


_FALLBACK_FACE_BOX = (0.346, 0.129, 0.186, 0.186)  # fractions of the photograph (x, y, w, h)
_FALLBACK_EYES = ((0.26, 0.37), (0.74, 0.39))  # fractions of the face box


def _cascade(name: str) -> cv2.CascadeClassifier:
    classifier = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    if classifier.empty():
        raise ConfigError(f"OpenCV's bundled cascade {name} could not be loaded")
    return classifier


def _most_eye_like(centres: list[tuple[float, float]], face_width: float) -> tuple[float, float]:
    """The detection nearest the usual eye position, 0.23 face widths from the midline."""
    return min(centres, key=lambda c: abs(abs(c[0] - face_width / 2) - 0.23 * face_width))


def _detect_face_and_eyes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool, bool]:
    """Face box (x, y, w, h) and the two eye centres (image left, right) in pixels."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    side = grey.shape[0]
    faces = _cascade("haarcascade_frontalface_default.xml").detectMultiScale(grey, 1.1, 5)
    face_found = len(faces) > 0
    if face_found:
        box = np.asarray(max(faces, key=lambda f: f[2] * f[3]), dtype=float)
    else:
        box = np.asarray(_FALLBACK_FACE_BOX) * side
    x, y, w, h = box
    eyes_found = False
    if face_found:
        roi = grey[int(y) : int(y + 0.6 * h), int(x) : int(x + w)]
        eyes = _cascade("haarcascade_eye.xml").detectMultiScale(roi, 1.1, 5)
        centres = [(ex + ew / 2, ey + eh / 2) for ex, ey, ew, eh in eyes]
        left = [c for c in centres if c[0] < 0.5 * w]
        right = [c for c in centres if c[0] >= 0.5 * w]
        if left and right:
            eyes_found = True
            eye_l = np.add(_most_eye_like(left, w), box[:2])
            eye_r = np.add(_most_eye_like(right, w), box[:2])
    if not eyes_found:
        eye_l = np.array(_FALLBACK_EYES[0]) * (w, h) + (x, y)
        eye_r = np.array(_FALLBACK_EYES[1]) * (w, h) + (x, y)
    return box, eye_l, eye_r, face_found, eyes_found


@cache
def _source_face() -> _SourceFace:
    """Cut the astronaut's head from its background once (deterministic, no randomness)."""
    rgb = skdata.astronaut()
    box, eye_l, eye_r, face_found, eyes_found = _detect_face_and_eyes(rgb)
    x, y, w, _ = box
    # Soft head window: an ellipse around face and hair, anchored on the face box.
    ellipse = np.zeros(rgb.shape[:2], np.uint8)
    centre = (round(x + 0.52 * w), round(y - 0.17 * w + 0.5 * w))
    cv2.ellipse(ellipse, centre, (round(0.8 * w), round(0.885 * w)), 0, 0, 360, 1, -1)
    # The studio background is bright and unsaturated; hair and skin are saturated.
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    head = (hsv[..., 1] > 40) & (hsv[..., 2] > 40) & (ellipse > 0)
    head = ndimage.binary_opening(head, iterations=2)
    head = ndimage.binary_closing(head, iterations=3)
    head = ndimage.binary_fill_holes(head)  # eye whites and teeth are unsaturated too
    labels, n = ndimage.label(head)
    if n == 0:
        head = ellipse > 0
    else:
        sizes = ndimage.sum_labels(head, labels, index=np.arange(1, n + 1))
        head = labels == 1 + int(np.argmax(sizes))
    # Hair is convex above the cheeks: fill notches left by unsaturated highlights.
    cheeks = round((eye_l[1] + eye_r[1]) / 2 + 0.25 * w)
    upper = head.copy()
    upper[cheeks:] = False
    if upper.any():
        head |= convex_hull_image(upper)
    alpha = cv2.GaussianBlur(head.astype(np.float32), (0, 0), 1.5)
    ys, xs = np.nonzero(head)
    head_box = (
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1),
    )
    eye_vector = eye_r - eye_l
    return _SourceFace(
        rgb=rgb.astype(np.float32),
        alpha=alpha,
        head_box=head_box,
        eye_mid=(eye_l + eye_r) / 2,
        scale=float(np.hypot(*eye_vector)) / (_EYES[1][0] - _EYES[0][0]),
        angle=float(np.arctan2(eye_vector[1], eye_vector[0])),
        detected=(face_found, eyes_found),
    )


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


# ---------------------------------------------------------------- renderer


class FaceRenderer:
    """Render frames of one participant's face with action units.

    All expensive work (matte, scaling, compositing, displacement profiles, noise
    lookup tables) happens once in `__init__`; `render` then costs one separable
    field product, one `cv2.remap` over the head and the noise. A renderer is
    read-only after construction (safe to share between threads, picklable).

    Attributes
    ----------
    appearance : the participant's `FaceAppearance`
    head_box : (x, y, w, h) of the head (hair top to chin) in frame pixels, unshifted
    pixels_per_unit : frame pixels per face-normalised unit
    max_shift : largest |head_shift| per axis, in pixels, that `render` accepts
    """

    def __init__(self, appearance: FaceAppearance) -> None:
        self.appearance = appearance
        source = _source_face()
        width, height = appearance.width, appearance.height
        # photograph px -> frame px: p_frame = zoom * p_photo + offset
        hx, hy, hw, hh = source.head_box
        zoom = appearance.face_scale * height / hh
        offset = np.array(appearance.center) * (width, height) - zoom * np.array(
            (hx + hw / 2, hy + hh / 2)
        )
        self._zoom, self._offset = zoom, offset
        self.head_box = (
            float(zoom * hx + offset[0]),
            float(zoom * hy + offset[1]),
            float(zoom * hw),
            float(zoom * hh),
        )
        x0, y0, bw, bh = self.head_box
        if x0 < 0 or y0 < 0 or x0 + bw > width or y0 + bh > height:
            raise ConfigError(
                f"the head ({bw:.0f}x{bh:.0f} px at {x0:.0f},{y0:.0f}) does not fit in the "
                f"{width}x{height} frame; lower face_scale or move center towards 0.5"
            )
        self.pixels_per_unit = float(zoom * source.scale)
        self.max_shift = max(4.0, 0.04 * bh)

        # Region of interest: the head plus a margin for displacements and head shift.
        margin = self.max_shift + 0.06 * self.pixels_per_unit + 3
        rx0, ry0 = max(0, math.floor(x0 - margin)), max(0, math.floor(y0 - margin))
        rx1 = min(width, math.ceil(x0 + bw + margin))
        ry1 = min(height, math.ceil(y0 + bh + margin))
        self._roi = (slice(ry0, ry1), slice(rx0, rx1))
        roi_w, roi_h = rx1 - rx0, ry1 - ry0

        # Composite the scaled, colour-graded photograph on the green screen.
        to_roi = np.array([[zoom, 0, offset[0] - rx0], [0, zoom, offset[1] - ry0]])
        gain = appearance.brightness * np.asarray(appearance.color_gain, np.float32)
        face = cv2.warpAffine(
            source.rgb * gain, to_roi, (roi_w, roi_h), flags=cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REPLICATE,
        )  # fmt: skip
        alpha = cv2.warpAffine(source.alpha, to_roi, (roi_w, roi_h), flags=cv2.INTER_LINEAR)
        alpha = np.clip(alpha, 0.0, 1.0)[..., None]
        green = np.asarray(appearance.background, np.float32)
        base = np.empty((height, width, 3), np.uint8)
        base[...] = np.asarray(appearance.background, np.uint8)
        composite = alpha * face + (1.0 - alpha) * green
        base[self._roi] = np.clip(np.rint(composite), 0, 255).astype(np.uint8)
        self._base = base
        self._base_roi = np.ascontiguousarray(base[self._roi])

        # Separable displacement bumps in ROI pixels.
        self._grid_x = np.arange(roi_w, dtype=np.float32)
        self._grid_y = np.arange(roi_h, dtype=np.float32)[:, None]
        origin = np.array([rx0, ry0], float)
        rotation = np.array(
            [[math.cos(source.angle), -math.sin(source.angle)],
             [math.sin(source.angle), math.cos(source.angle)]]
        )  # fmt: skip
        self._rotation = rotation
        self._source = source
        profiles_x, profiles_y, shifts, index = [], [], [], {}
        for au, anchors in AU_ANCHORS.items():
            first = len(shifts)
            for anchor in anchors:
                cx, cy = self.face_to_pixels([anchor.center])[0] - origin
                sx, sy = np.asarray(anchor.radius) * self.pixels_per_unit
                profiles_x.append(self._window(self._grid_x, cx, sx))
                profiles_y.append(self._window(self._grid_y[:, 0], cy, sy))
                shifts.append(rotation @ np.asarray(anchor.direction) * self.pixels_per_unit)
            index[au] = np.arange(first, len(shifts))
        self._profiles_x = np.asarray(profiles_x, np.float32)  # (n_bumps, roi_w)
        self._profiles_y = np.asarray(profiles_y, np.float32).T.copy()  # (roi_h, n_bumps)
        self._shifts = np.asarray(shifts, np.float32)  # (n_bumps, 2) frame px
        self._bump_index = index

        # Darkening window of the mouth gap, on a small box of the ROI.
        gx, gy = self.face_to_pixels([_MOUTH_GAP])[0] - origin
        sx, sy = np.asarray(_MOUTH_GAP_RADIUS) * self.pixels_per_unit
        mx0, mx1 = max(0, math.floor(gx - 3 * sx)), min(roi_w, math.ceil(gx + 3 * sx) + 1)
        my0, my1 = max(0, math.floor(gy - 3 * sy)), min(roi_h, math.ceil(gy + 3 * sy) + 1)
        self._mouth = (slice(my0, my1), slice(mx0, mx1))
        self._mouth_window = (
            self._window(np.arange(my0, my1, dtype=np.float32), gy, sy)[:, None, None]
            * self._window(np.arange(mx0, mx1, dtype=np.float32), gx, sx)[None, :, None]
        ).astype(np.float32)

        # Camera noise: a byte drawn from the rng indexes a quantised Gaussian level.
        levels = np.rint(ndtri((np.arange(256) + 0.5) / 256) * appearance.noise_sigma)
        self._noise_up = np.clip(levels, 0, 255).astype(np.uint8)
        self._noise_down = np.clip(-levels, 0, 255).astype(np.uint8)

    @staticmethod
    def _window(grid: np.ndarray, centre: float, sigma: float) -> np.ndarray:
        window = np.exp(-0.5 * ((grid - centre) / max(sigma, 0.5)) ** 2)
        window[window < _WINDOW_CUT] = 0.0
        return window

    @property
    def detected(self) -> tuple[bool, bool]:
        """Whether OpenCV's cascades found (the face, both eyes) on the source photograph;
        False means the fixed fractional fallback anchored the AU regions."""
        return self._source.detected

    def face_to_pixels(self, points: ArrayLike) -> np.ndarray:
        """Face-normalised (x, y) points, shape (n, 2) -> frame pixels (n, 2), unshifted."""
        points = np.asarray(points, float).reshape(-1, 2)
        source = self._source
        photo = source.eye_mid + source.scale * (
            (points - np.mean(_EYES, axis=0)) @ self._rotation.T
        )
        return self._zoom * photo + self._offset

    def pixels_to_face(self, points: ArrayLike) -> np.ndarray:
        """Frame pixels (n, 2) -> face-normalised (x, y) points (n, 2); inverse of
        `face_to_pixels`."""
        points = np.asarray(points, float).reshape(-1, 2)
        source = self._source
        photo = (points - self._offset) / self._zoom
        return (photo - source.eye_mid) @ self._rotation / source.scale + np.mean(_EYES, axis=0)

    def render(
        self,
        au_intensity: Mapping[int, float],
        *,
        head_shift: tuple[float, float] = (0.0, 0.0),
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """One camera frame, shape (height, width, 3) uint8 RGB.

        au_intensity : {AU number: intensity in 0..1}; 0 = neutral, 1 = full displacement
            of `AU_ANCHORS` (see `MICRO_APEX_INTENSITY`, `MACRO_APEX_INTENSITY`)
        head_shift : (dx, dy) translation of the whole head in frame pixels (sub-pixel
            allowed), at most `max_shift` per axis
        rng : source of camera noise; None renders a noise-free, deterministic frame
        """
        active = self._active(au_intensity)
        shift_x, shift_y = (float(s) for s in head_shift)
        if not (abs(shift_x) <= self.max_shift and abs(shift_y) <= self.max_shift):
            raise ConfigError(
                f"head_shift {head_shift} exceeds {self.max_shift:.1f} px; the head would "
                "leave its margin (use a smaller head motion)"
            )
        frame = self._base.copy()
        source = self._base_roi
        darkening = sum(MOUTH_OPENING.get(au, 0.0) * level for au, level in active.items())
        if darkening > 0:
            source = source.copy()
            weight = min(darkening, _MAX_MOUTH_DARKENING) * self._mouth_window
            lips = source[self._mouth]
            source[self._mouth] = np.rint(lips + weight * (_MOUTH_INTERIOR - lips)).astype(np.uint8)
        if active:
            bumps = np.concatenate([self._bump_index[au] for au in active])
            weights = np.concatenate(
                [
                    np.full(len(self._bump_index[au]), level, np.float32)
                    for au, level in active.items()
                ]
            )
            shifts = self._shifts[bumps] * weights[:, None]  # (n, 2) px
            left = self._profiles_y[:, bumps]  # (roi_h, n)
            fields = (
                np.concatenate([left * shifts[:, 0], left * shifts[:, 1]])
                @ (self._profiles_x[bumps])
            )  # (2 roi_h, roi_w): dx stacked over dy
            roi_h = left.shape[0]
            # Backward map: the output pixel p shows the source at p - displacement.
            map_x = self._grid_x - shift_x - fields[:roi_h]
            map_y = self._grid_y - shift_y - fields[roi_h:]
            frame[self._roi] = cv2.remap(
                source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
        elif shift_x or shift_y:
            translate = np.array([[1.0, 0.0, shift_x], [0.0, 1.0, shift_y]])
            frame[self._roi] = cv2.warpAffine(
                source, translate, source.shape[1::-1], flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )  # fmt: skip
        if rng is not None and self.appearance.noise_sigma > 0:
            draws = np.frombuffer(rng.bytes(frame.size), np.uint8).reshape(frame.shape)
            cv2.add(frame, cv2.LUT(draws, self._noise_up), dst=frame)
            cv2.subtract(frame, cv2.LUT(draws, self._noise_down), dst=frame)
        return frame

    def _active(self, au_intensity: Mapping[int, float]) -> dict[int, float]:
        active = {}
        for au, level in au_intensity.items():
            if au not in self._bump_index:
                raise ConfigError(
                    f"AU{au} cannot be rendered: it is not in mmhe.labels.ACTION_UNITS "
                    f"(known: {sorted(self._bump_index)})"
                )
            level = float(level)
            if not 0.0 <= level <= 1.0:
                raise ConfigError(f"AU{au} intensity {level} is outside 0..1")
            if level > 0:
                active[int(au)] = level
        return dict(sorted(active.items()))  # fixed summation order: reproducible bytes
