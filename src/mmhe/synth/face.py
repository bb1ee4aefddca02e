"""A real face photograph that makes FACS action units, for the synthetic camera frames.

The face is the head of scikit-image's bundled astronaut portrait
(`skimage.data.astronaut()`, NASA photograph of Eileen Collins, public domain), cut
from its studio background (soft elliptical window anchored on OpenCV's Haar face
box, low-saturation background pixels removed, holes filled, edges feathered) and
composited on a green screen with per-participant scale, position, brightness,
colour and camera noise (`FaceAppearance`), wearing what MMHE participants wear: an EEG
cap with electrodes, headphones, optionally glasses, and EOG electrodes on the face
(`mmhe.synth.headgear`). `FaceRenderer.face_region` is the ground truth of the face as
the dataset's authors cut it (the hand-traced face outline of the photograph,
`ASTRONAUT_FACE_OUTLINE`, minus what the cap and headphones hide).

Action units are rendered as smooth local deformations (`mmhe.synth.action_units`):
every AU is a few Gaussian-windowed displacement "bumps" (`AU_ANCHORS`), the bumps of the active AUs
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

import cv2
import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage
from scipy.special import ndtri
from skimage import data as skdata
from skimage.morphology import convex_hull_image

from mmhe.errors import ConfigError
from mmhe.synth import headgear
from mmhe.synth.action_units import (
    AU_ANCHORS,
    EYE_CENTRES,
    MACRO_APEX_INTENSITY,
    MAX_MOUTH_DARKENING,
    MICRO_APEX_INTENSITY,
    MOUTH_GAP,
    MOUTH_GAP_RADIUS,
    MOUTH_INTERIOR,
    MOUTH_OPENING,
    AUAnchor,
    expression_intensity,
)

__all__ = [
    "ASTRONAUT_FACE_OUTLINE",
    "AU_ANCHORS",
    "GLASSES_SHARE",
    "MACRO_APEX_INTENSITY",
    "MICRO_APEX_INTENSITY",
    "MOUTH_OPENING",
    "AUAnchor",
    "FaceAppearance",
    "FaceRenderer",
    "expression_intensity",
    "random_appearance",
]

_WINDOW_CUT = math.exp(-0.5 * 3.0**2)  # Gaussian windows are zero beyond 3 sigma


# ---------------------------------------------------------------- appearance

GLASSES_SHARE = 0.3
"""Share of random participants who wear glasses."""


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
    eeg_cap, headphones, glasses, face_electrodes : what the participant wears
        (`mmhe.synth.headgear`; by default as in the MMHE sessions, without glasses)
    """

    width: int
    height: int
    face_scale: float = 0.7
    center: tuple[float, float] = (0.5, 0.5)
    brightness: float = 1.0
    color_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    noise_sigma: float = 2.0
    background: tuple[int, int, int] = (40, 160, 60)
    eeg_cap: bool = True
    headphones: bool = True
    glasses: bool = False
    face_electrodes: bool = True

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
            for name in ("eeg_cap", "headphones", "glasses", "face_electrodes"):
                object.__setattr__(self, name, bool(getattr(self, name)))
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
    (40, 160, 60), glasses for 30 % of participants (cap, headphones and EOG electrodes
    for all)."""
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
        glasses=bool(rng.uniform() < GLASSES_SHARE),
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


ASTRONAUT_FACE_OUTLINE = (
    (184, 86), (187, 82), (190, 80), (195, 79), (200, 79), (205, 79), (210, 80), (215, 80),
    (220, 80), (225, 79), (230, 79), (235, 80), (240, 80), (245, 81), (250, 82), (255, 84),
    (260, 86), (263, 90), (264, 100), (266, 110), (267, 120), (267, 130), (266, 140),
    (263, 150), (258, 160), (255, 163), (250, 168), (245, 172), (240, 175), (235, 177),
    (230, 178), (225, 179), (220, 179), (215, 178.5), (210, 177), (205, 174), (200, 170),
    (192, 162), (188, 158), (183, 150), (180, 140), (179, 130), (178, 120), (180, 110),
    (182, 100), (183, 90),
)  # fmt: skip
"""The face only (hairline, cheeks, jaw; no hair, ears or neck) in
`skimage.data.astronaut()`, pixel coordinates (x, y), clockwise from the left temple:
traced by eye on a 6-8x enlargement (each vertex within ~1 px), not by any algorithm of
this package, so it can judge `mmhe.features.face_mask`."""

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
        scale=float(np.hypot(*eye_vector)) / (EYE_CENTRES[1][0] - EYE_CENTRES[0][0]),
        angle=float(np.arctan2(eye_vector[1], eye_vector[0])),
        detected=(face_found, eyes_found),
    )


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
        self._source = source
        self._rotation = np.array(
            [[math.cos(source.angle), -math.sin(source.angle)],
             [math.sin(source.angle), math.cos(source.angle)]]
        )  # fmt: skip
        roi_origin = np.array([rx0, ry0], float)

        def to_roi(points: np.ndarray) -> np.ndarray:
            return self.face_to_pixels(points) - roi_origin

        if appearance.face_electrodes:  # glued on the skin: deformed with it
            headgear.draw_skin_items(composite, to_roi, self.pixels_per_unit)
        base[self._roi] = np.clip(np.rint(composite), 0, 255).astype(np.uint8)
        self._base = base
        self._base_roi = np.ascontiguousarray(base[self._roi])
        self._init_headgear(alpha[..., 0], to_roi, roi_origin)

        # Separable displacement bumps in ROI pixels.
        self._grid_x = np.arange(roi_w, dtype=np.float32)
        self._grid_y = np.arange(roi_h, dtype=np.float32)[:, None]
        origin = roi_origin
        rotation = self._rotation
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
        gx, gy = self.face_to_pixels([MOUTH_GAP])[0] - origin
        sx, sy = np.asarray(MOUTH_GAP_RADIUS) * self.pixels_per_unit
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

    def _init_headgear(self, matte: np.ndarray, to_roi, roi_origin: np.ndarray) -> None:
        """The skull-borne layer (cap, headphones, glasses) and the face-region truth."""
        appearance = self.appearance
        roi_h, roi_w = matte.shape
        grid_y, grid_x = np.mgrid[0:roi_h, 0:roi_w].astype(np.float64)
        pixels = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1) + roi_origin
        face_xy = self.pixels_to_face(pixels).reshape(roi_h, roi_w, 2)
        rgb, alpha, occluders = headgear.overlay(
            (roi_h, roi_w),
            to_roi,
            face_xy[..., 0],
            face_xy[..., 1],
            matte,
            self.pixels_per_unit,
            eeg_cap=appearance.eeg_cap,
            headphones=appearance.headphones,
            glasses=appearance.glasses,
        )
        rows = np.flatnonzero(alpha.max(axis=1) > 1e-3)
        cols = np.flatnonzero(alpha.max(axis=0) > 1e-3)
        if rows.size == 0:
            self._overlay = None
        else:  # kept only over its bounding box, in ROI pixels
            box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
            self._overlay = (box, np.ascontiguousarray(rgb[box]), np.ascontiguousarray(alpha[box]))
        self._occluders = occluders
        # ground truth: the traced outline of the photograph's face, minus cap and headphones
        outline = self._zoom * np.asarray(ASTRONAUT_FACE_OUTLINE) + self._offset
        self._outline = outline

    def face_outline(self, head_shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """The face's outline in frame pixels, (n, 2): hairline, cheeks and jaw of the
        photograph (`ASTRONAUT_FACE_OUTLINE`, traced by hand), moved by `head_shift`."""
        return self._outline + np.asarray(head_shift, float)

    def face_region(self, head_shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """Ground truth of the face as the dataset's authors cut it, (height, width) bool.

        The face outline (`face_outline`: no hair, ears or neck) minus what the cap and the
        headphones cover (coverage > 0.5); glasses and face electrodes lie on the face and
        are part of it (the authors' masks fill them in). For the neutral face: an
        expression moves the skin by a few pixels (a dropped jaw up to 0.06 units), the
        region does not follow it.
        """
        shift_x, shift_y = (float(v) for v in head_shift)
        canvas = np.zeros((self.appearance.height, self.appearance.width), np.uint8)
        vertices = np.round(self.face_outline((shift_x, shift_y)) * 16).astype(np.int32)
        cv2.fillPoly(canvas, [vertices], 1, cv2.LINE_8, 4)
        occluders = self._occluders
        if shift_x or shift_y:
            translate = np.array([[1.0, 0.0, shift_x], [0.0, 1.0, shift_y]])
            occluders = cv2.warpAffine(
                occluders, translate, occluders.shape[::-1], flags=cv2.INTER_LINEAR
            )
        hidden = np.zeros(canvas.shape, bool)
        hidden[self._roi] = occluders > 0.5
        return canvas.astype(bool) & ~hidden

    def face_region_truth(self) -> dict:
        """The face region for ``ground_truth.json``: frame size, the region's bounding box
        and its outer contour in frame pixels (head at rest: each frame's region is this
        moved by the frame's head shift), and its area in pixels."""
        region = self.face_region()
        contours, _ = cv2.findContours(
            region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        largest = max(contours, key=cv2.contourArea)
        polygon = cv2.approxPolyDP(largest, 0.5, True)[:, 0, :]
        x, y, w, h = cv2.boundingRect(largest)
        return {
            "frame_size": [self.appearance.width, self.appearance.height],
            "box": [int(x), int(y), int(w), int(h)],
            "outline": polygon.astype(int).tolist(),
            "area_px": int(np.count_nonzero(region)),
            "glasses": self.appearance.glasses,
            "definition": "face only (no cap, hair, ears or neck), glasses and face "
            "electrodes included, neutral face, head at rest; pixels",
        }

    def _draw_overlay(self, frame: np.ndarray, head_shift: tuple[float, float]) -> None:
        """Composite the cap, headphones and glasses over `frame`, moved by `head_shift`."""
        if self._overlay is None:
            return
        box, rgb, alpha = self._overlay
        roi_rows, roi_cols = self._roi
        rows = slice(roi_rows.start + box[0].start, roi_rows.start + box[0].stop)
        cols = slice(roi_cols.start + box[1].start, roi_cols.start + box[1].stop)
        shift_x, shift_y = head_shift
        if shift_x or shift_y:
            translate = np.array([[1.0, 0.0, shift_x], [0.0, 1.0, shift_y]])
            size = alpha.shape[::-1]
            rgb = cv2.warpAffine(rgb, translate, size, flags=cv2.INTER_LINEAR)
            alpha = cv2.warpAffine(alpha, translate, size, flags=cv2.INTER_LINEAR)
        under = frame[rows, cols].astype(np.float32)
        mixed = rgb + under * (1.0 - alpha[..., None])
        frame[rows, cols] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)

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
            (points - np.mean(EYE_CENTRES, axis=0)) @ self._rotation.T
        )
        return self._zoom * photo + self._offset

    def pixels_to_face(self, points: ArrayLike) -> np.ndarray:
        """Frame pixels (n, 2) -> face-normalised (x, y) points (n, 2); inverse of
        `face_to_pixels`."""
        points = np.asarray(points, float).reshape(-1, 2)
        source = self._source
        photo = (points - self._offset) / self._zoom
        centre = np.mean(EYE_CENTRES, axis=0)
        return (photo - source.eye_mid) @ self._rotation / source.scale + centre

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
            weight = min(darkening, MAX_MOUTH_DARKENING) * self._mouth_window
            lips = source[self._mouth]
            source[self._mouth] = np.rint(lips + weight * (MOUTH_INTERIOR - lips)).astype(np.uint8)
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
        self._draw_overlay(frame, (shift_x, shift_y))
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
