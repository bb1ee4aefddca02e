"""Face preprocessing of the MMHE camera frames: segment, detect, register, crop.

The published visual baseline (see ``docs/data-format.md``, "The published baselines")
segments the face from the green background panel, crops it to 256 x 256, aligns the
onset frame to the apex frame and only then computes TV-L1 optical flow. Every function
here is a pure array -> array function on one frame (or one onset/apex pair), offline:
only OpenCV's bundled Haar cascades are used, nothing is downloaded.

Frames are ``(H, W, 3)`` RGB or ``(H, W)`` grey arrays of ``uint8`` (``uint16`` frames are
accepted and scaled to 8 bits). Coordinates are pixels, ``x`` to the right, ``y`` down;
a box is ``(x, y, w, h)`` with ``(x, y)`` its top-left corner.

Face detectors are pluggable: :func:`detect_face` looks its ``backend`` up in a small
registry (:func:`add_face_backend`), so a landmark detector can be added later without
changing any caller.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Literal, Protocol

import cv2
import numpy as np
from numpy.typing import NDArray
from skimage.registration import phase_cross_correlation

from mmhe.errors import MMHEError

__all__ = [
    "GREEN_A_MAX",
    "GREEN_CHROMA_MIN",
    "Box",
    "BoxLike",
    "FaceBackend",
    "FaceBox",
    "FaceNotFoundError",
    "FrameError",
    "RegistrationError",
    "RegistrationResult",
    "add_face_backend",
    "box_in_crop",
    "check_frame",
    "crop",
    "detect_face",
    "face_backends",
    "register",
    "segment_face",
    "square_region",
    "to_grey",
]

Box = tuple[int, int, int, int]
"""``(x, y, w, h)`` in pixels, ``(x, y)`` the top-left corner."""

# --- chroma key (CIE L*a*b*, OpenCV 8-bit encoding: a = a* + 128, b = b* + 128) ----------
GREEN_A_MAX = -15.0
"""Chroma key, part 1: a pixel is background when its a* (green-red axis) is below this.

Skin, lips and hair have a* > 0 and white or grey clothes a* ~ 0, while a lit green panel
sits near a* = -40 to -80 and stays below -15 in its shadows."""
GREEN_CHROMA_MIN = 20.0
"""Chroma key, part 2: ... and its chroma sqrt(a*^2 + b*^2) is above this (not near-grey)."""
_OPEN_FRACTION = 0.01  # opening kernel = 1 % of the working image's longer side (>= 3 px)
_CLOSE_FRACTION = 0.02  # closing kernel = 2 % (>= 5 px)
_FULL_MASK_FRACTION = 0.98  # a "foreground" covering more than this means: no green panel


class FrameError(MMHEError, ValueError):
    """A frame has the wrong shape or data type, or two frames do not match."""


class FaceNotFoundError(MMHEError):
    """Neither the face detector nor the green-screen segmentation found a face."""


class RegistrationError(MMHEError):
    """The onset frame could not be aligned to the apex frame."""


@dataclass(frozen=True)
class FaceBox:
    """A detected face in frame pixels.

    x, y, w, h : top-left corner and size of the face box.
    eyes : boxes ``(x, y, w, h)`` of the eyes found inside the face (0 to 2, left to right).
    source : which step found it: a backend name (``"haar"``) or ``"segmentation"``.
    """

    x: int
    y: int
    w: int
    h: int
    eyes: tuple[Box, ...] = ()
    source: str = "haar"

    @property
    def box(self) -> Box:
        """The face box as an ``(x, y, w, h)`` tuple."""
        return (self.x, self.y, self.w, self.h)

    @property
    def center(self) -> tuple[float, float]:
        """Centre ``(x, y)`` of the box in pixels."""
        return (self.x + self.w / 2.0, self.y + self.h / 2.0)


BoxLike = FaceBox | tuple[float, float, float, float]
"""What box arguments accept: a :class:`FaceBox` or any ``(x, y, w, h)`` (sub-pixel allowed)."""


@dataclass(frozen=True)
class RegistrationResult:
    """Alignment of an onset frame to an apex frame.

    matrix : (2, 3) float64 Euclidean warp mapping apex pixel coordinates to onset pixel
        coordinates: ``onset(matrix @ [x, y, 1]) ~ apex(x, y)``.
    warped : the onset frame resampled onto the apex frame's grid (same shape and dtype as
        the onset frame), i.e. ``cv2.warpAffine(onset, matrix, flags=WARP_INVERSE_MAP)``.
    correlation : zero-mean normalised cross-correlation of the warped onset and the apex
        frame (grey) inside the registration region, in [-1, 1].
    method : ``"ecc"`` or ``"phase"``.
    """

    matrix: NDArray[np.float64]
    warped: NDArray[np.uint8]
    correlation: float
    method: str

    @property
    def shift(self) -> tuple[float, float]:
        """Translation part ``(tx, ty)`` of :attr:`matrix` in pixels."""
        return (float(self.matrix[0, 2]), float(self.matrix[1, 2]))

    @property
    def angle_deg(self) -> float:
        """Rotation angle of :attr:`matrix` in degrees, atan2(m10, m00) (image axes: y down)."""
        return math.degrees(math.atan2(self.matrix[1, 0], self.matrix[0, 0]))


# --- frame helpers --------------------------------------------------------------------------


def check_frame(frame: np.ndarray, name: str = "frame") -> NDArray[np.uint8]:
    """Validate one frame: (H, W, 3) RGB or (H, W) grey (a trailing 1-channel axis is
    dropped), at least 8 x 8, uint8 (uint16 is scaled to 8 bits, ``x // 257``).

    Returns a C-contiguous uint8 array; raises :class:`FrameError` naming ``name``.
    """
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"{name}: expected a NumPy array, got {type(frame).__name__}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if not (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)):
        raise FrameError(
            f"{name}: expected shape (H, W, 3) RGB or (H, W) grey, got {frame.shape} "
            "(drop an alpha channel with frame[..., :3])"
        )
    if frame.shape[0] < 8 or frame.shape[1] < 8:
        raise FrameError(f"{name}: frame of {frame.shape[:2]} pixels is too small (need >= 8 x 8)")
    if frame.dtype == np.uint16:
        frame = (frame // 257).astype(np.uint8)
    elif frame.dtype != np.uint8:
        raise FrameError(
            f"{name}: expected dtype uint8 (or uint16), got {frame.dtype} "
            "(convert with np.clip(x * 255, 0, 255).astype(np.uint8) for [0, 1] floats)"
        )
    return np.ascontiguousarray(frame)


def to_grey(frame: np.ndarray) -> NDArray[np.uint8]:
    """Grey-level version of a frame.

    frame : (H, W, 3) RGB or (H, W) grey, uint8.
    Returns (H, W) uint8 (ITU-R BT.601 luma via ``cv2.COLOR_RGB2GRAY``; grey frames as is).
    """
    frame = check_frame(frame)
    if frame.ndim == 3:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return frame


def _as_box(box: BoxLike) -> tuple[float, ...]:
    values = box.box if isinstance(box, FaceBox) else tuple(box)
    if len(values) != 4 or values[2] <= 0 or values[3] <= 0:
        raise FrameError(f"box {box!r}: expected (x, y, w, h) with positive w and h")
    return tuple(float(v) for v in values)


# --- segmentation ----------------------------------------------------------------------------


def _fill_holes(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Fill background regions that do not touch the image border."""
    count, labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    if count <= 1:
        return mask
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    outside = np.zeros(count, dtype=bool)
    outside[np.unique(border)] = True
    outside[0] = False  # label 0 is the foreground itself
    return ~outside[labels]


def segment_face(frame: np.ndarray, *, work_side: int = 512) -> NDArray[np.bool_]:
    """Foreground (head and shoulders) mask of a frame shot against a green panel.

    frame : (H, W, 3) RGB uint8. (A grey frame has no chroma: its mask is all True.)
    work_side : the frame is subsampled by the smallest integer step that brings its
        longer side to at most this many pixels before keying (plain decimation: the
        panel is smooth and the opening removes noise); the mask is scaled back to (H, W).
    Returns (H, W) bool, True on the person.

    Steps: chroma key in CIE L*a*b* (background = a* < ``GREEN_A_MAX`` = -15 and chroma
    > ``GREEN_CHROMA_MIN`` = 20), morphological opening (elliptic kernel, 1 % of the
    working size) then closing (2 %), the largest 8-connected component is kept (head and
    shoulders), and holes not touching the border are filled (eyes, glasses, dark hair).
    """
    frame = check_frame(frame)
    height, width = frame.shape[:2]
    if frame.ndim == 2:
        return np.ones((height, width), dtype=bool)
    step = max(1, math.ceil(max(height, width) / work_side))
    small = np.ascontiguousarray(frame[step // 2 :: step, step // 2 :: step])  # block centres
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2Lab)
    a_star = lab[:, :, 1].astype(np.float32) - 128.0
    b_star = lab[:, :, 2].astype(np.float32) - 128.0
    green = (a_star < GREEN_A_MAX) & (a_star * a_star + b_star * b_star > GREEN_CHROMA_MIN**2)
    foreground = (~green).astype(np.uint8)

    side = max(small.shape[:2])
    open_size = max(3, round(side * _OPEN_FRACTION) | 1)
    close_size = max(5, round(side * _CLOSE_FRACTION) | 1)
    ellipse = cv2.MORPH_ELLIPSE
    foreground = cv2.morphologyEx(
        foreground, cv2.MORPH_OPEN, cv2.getStructuringElement(ellipse, (open_size, open_size))
    )
    foreground = cv2.morphologyEx(
        foreground, cv2.MORPH_CLOSE, cv2.getStructuringElement(ellipse, (close_size, close_size))
    )
    count, labels, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
    if count <= 1:
        return np.zeros((height, width), dtype=bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    mask = _fill_holes(labels == largest)
    if mask.shape != (height, width):
        scaled = cv2.resize(
            mask.astype(np.uint8) * 255, (width, height), interpolation=cv2.INTER_LINEAR
        )
        mask = scaled > 127
    return mask


def _mask_bounds(mask: NDArray[np.bool_]) -> Box | None:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


def _head_box_from_mask(mask: NDArray[np.bool_]) -> FaceBox | None:
    """Approximate face box from a head-and-shoulders mask (the detector's fallback).

    The head is the top of the mask: its width is the 75th percentile of the row widths
    within the top 35 % of the mask. A frontal face box (as Viola-Jones draws it: brows to
    chin, cheek to cheek) is about 0.8 of the head's width including hair and ears and
    starts about 0.35 of that width below the top of the hair; the box is that square,
    centred on the head rows. A coarse fallback, meant for cropping, not for landmarks.
    """
    if np.count_nonzero(mask) > _FULL_MASK_FRACTION * mask.size:
        return None  # no green background: the mask says nothing about the head
    bounds = _mask_bounds(mask)
    if bounds is None:
        return None
    _, top, _, mask_height = bounds
    band = mask[top : top + max(1, round(0.35 * mask_height))]
    widths = band.sum(axis=1)
    band = band[widths > 0]
    widths = widths[widths > 0]
    if widths.size == 0:
        return None
    head_width = float(np.percentile(widths, 75))
    side = 0.8 * head_width
    if side < 4:
        return None
    columns = np.arange(mask.shape[1], dtype=np.float64)
    centre = float(np.median((band * columns).sum(axis=1) / widths))
    x = round(centre - side / 2)
    y = round(top + 0.35 * head_width)
    return FaceBox(x, y, round(side), round(side), (), "segmentation")


# --- detection -------------------------------------------------------------------------------


class FaceBackend(Protocol):
    """A face detector usable by :func:`detect_face`.

    Called with the validated full-resolution frame ((H, W, 3) RGB or (H, W) grey uint8), an
    optional search region ``(x, y, w, h)``, the longer side in pixels the backend should
    shrink the frame to, and whether to look for the eyes; returns the largest face in frame
    pixels, or ``None``.
    """

    def __call__(
        self, frame: NDArray[np.uint8], *, region: Box | None, max_side: int, eyes: bool
    ) -> FaceBox | None: ...


_BACKENDS: dict[str, FaceBackend] = {}
_HAAR_FACES = ("haarcascade_frontalface_default.xml", "haarcascade_frontalface_alt2.xml")
_HAAR_EYES = "haarcascade_eye.xml"
_local = threading.local()  # one set of cascades per thread (detectMultiScale is stateful)


def add_face_backend(name: str, backend: FaceBackend) -> None:
    """Register a face detector under ``name`` for ``detect_face(frame, backend=name)``."""
    _BACKENDS[name] = backend


def face_backends() -> tuple[str, ...]:
    """Names of the registered face detectors."""
    return tuple(_BACKENDS)


def _cascade(name: str) -> cv2.CascadeClassifier:
    cache = getattr(_local, "cascades", None)
    if cache is None:
        cache = _local.cascades = {}
    if name not in cache:
        classifier = cv2.CascadeClassifier(cv2.data.haarcascades + name)
        if classifier.empty():
            raise FaceNotFoundError(
                f"OpenCV's bundled cascade {name} could not be loaded from "
                f"{cv2.data.haarcascades} (reinstall opencv-contrib-python-headless)"
            )
        cache[name] = classifier
    return cache[name]


def _largest(boxes: np.ndarray | tuple) -> np.ndarray | None:
    if len(boxes) == 0:
        return None
    boxes = np.asarray(boxes)
    return boxes[int(np.argmax(boxes[:, 2] * boxes[:, 3]))]


def _haar_eyes(frame: NDArray[np.uint8], face: Box) -> tuple[Box, ...]:
    """Up to two eyes in the upper 60 % of ``face``, searched at a face width of 120 px."""
    x, y, w, h = face
    x0, y0 = max(0, x), max(0, y)
    upper = frame[y0 : y + round(0.6 * h), x0 : x + w]
    if upper.shape[0] < 8 or upper.shape[1] < 8:
        return ()
    if upper.ndim == 3:
        upper = cv2.cvtColor(upper, cv2.COLOR_RGB2GRAY)
    scale = 120.0 / w
    size = (max(1, round(upper.shape[1] * scale)), max(1, round(upper.shape[0] * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    upper = cv2.resize(upper, size, interpolation=interpolation)
    found = _cascade(_HAAR_EYES).detectMultiScale(
        upper, scaleFactor=1.1, minNeighbors=5, minSize=(16, 16), maxSize=(50, 50)
    )
    if len(found) == 0:
        return ()
    found = np.asarray(found)
    found = found[np.argsort(-found[:, 2] * found[:, 3])[:2]]
    found = found[np.argsort(found[:, 0])]
    return tuple(
        (x0 + round(ex / scale), y0 + round(ey / scale), round(ew / scale), round(eh / scale))
        for ex, ey, ew, eh in found
    )


def _haar_backend(
    frame: NDArray[np.uint8], *, region: Box | None, max_side: int, eyes: bool = True
) -> FaceBox | None:
    """Viola-Jones detector (Viola & Jones, CVPR 2001; Lienhart & Maydt's extended Haar
    features, ICIP 2002) with OpenCV's bundled cascades: frontal face default, then alt2
    when the default finds nothing.

    The search runs on the region shrunk by the smallest integer factor k that brings the
    frame's longer side to at most ``max_side`` (k x k block means); scale step 1.2 (box
    sizes come in 20 % steps: harmless for cropping, where onset and apex share one box),
    5 neighbours, minimum face 1/8 of the shrunk frame's shorter side (>= 20 px). Eyes
    (``haarcascade_eye``) are searched in the upper 60 % of the largest face at a face
    width of 120 px.
    """
    height, width = frame.shape[:2]
    rx, ry, rw, rh = region if region is not None else (0, 0, width, height)
    step = max(1, math.ceil(max(height, width) / max_side))
    rw, rh = rw - rw % step, rh - rh % step  # whole blocks: OpenCV's fast INTER_AREA path
    patch = frame[ry : ry + rh, rx : rx + rw]
    small = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY) if patch.ndim == 3 else patch
    scale = 1.0 / step
    if step > 1:
        small = cv2.resize(small, (rw // step, rh // step), interpolation=cv2.INTER_AREA)
    min_face = max(20, round(min(height, width) * scale / 8))
    if min(small.shape) < min_face:
        return None
    best = None
    for name in _HAAR_FACES:
        found = _cascade(name).detectMultiScale(
            small, scaleFactor=1.2, minNeighbors=5, minSize=(min_face, min_face)
        )
        best = _largest(found)
        if best is not None:
            break
    if best is None:
        return None
    fx, fy, fw, fh = (float(v) / scale for v in best)
    face = (rx + round(fx), ry + round(fy), round(fw), round(fh))
    return FaceBox(*face, _haar_eyes(frame, face) if eyes else (), "haar")


add_face_backend("haar", _haar_backend)


def detect_face(
    frame: np.ndarray,
    *,
    backend: str = "haar",
    mask: NDArray[np.bool_] | None = None,
    max_side: int = 320,
    eyes: bool = True,
    fallback: bool = True,
) -> FaceBox:
    """Box of the largest face in a frame (and its eyes when found).

    frame : (H, W, 3) RGB or (H, W) grey uint8.
    backend : a registered detector (:func:`face_backends`); ``"haar"`` uses OpenCV's
        bundled Viola-Jones cascades (frontal face default, then alt2; eyes inside).
    mask : optional :func:`segment_face` mask of this frame; the search is restricted to
        its bounding box (faster) and it is reused by the fallback.
    max_side : the detector works on the frame shrunk to this longer side (pixels).
    eyes : also look for the eyes (a few ms; cropping and flow do not need them).
    fallback : when the detector finds nothing, use a box derived from the segmented head
        (top of the green-screen mask, square; ``source="segmentation"``, no eyes).
    Returns a :class:`FaceBox` in frame pixels. Raises :class:`FaceNotFoundError` when
    neither the detector nor the segmentation finds a face.
    """
    frame = check_frame(frame)
    if backend not in _BACKENDS:
        raise FaceNotFoundError(
            f"unknown face backend {backend!r}; registered: {', '.join(face_backends())} "
            "(add one with mmhe.features.face.add_face_backend)"
        )
    height, width = frame.shape[:2]
    region = None
    if mask is not None:
        if mask.shape != (height, width):
            raise FrameError(f"mask of shape {mask.shape} does not match the frame {frame.shape}")
        bounds = _mask_bounds(mask)
        if bounds is not None and np.count_nonzero(mask) <= _FULL_MASK_FRACTION * mask.size:
            x, y, w, h = bounds
            pad = round(0.05 * max(w, h))
            x0, y0 = max(0, x - pad), max(0, y - pad)
            region = (x0, y0, min(width, x + w + pad) - x0, min(height, y + h + pad) - y0)
    detector = _BACKENDS[backend]
    found = detector(frame, region=region, max_side=max_side, eyes=eyes)
    if found is None and region is not None:  # the mask may have cut the face: search all
        found = detector(frame, region=None, max_side=max_side, eyes=eyes)
    if found is not None:
        return found
    if fallback:
        head = _head_box_from_mask(segment_face(frame) if mask is None else mask)
        if head is not None:
            return head
    raise FaceNotFoundError(
        f"no face in the {width} x {height} frame: the {backend!r} detector found none"
        + (" and no green-screen head could be segmented" if fallback else "")
        + " (check that the frame shows a frontal face, or pass the face box yourself)"
    )


# --- registration ----------------------------------------------------------------------------


def _region(box: BoxLike | None, shape: tuple[int, ...], pad: float = 0.0) -> Box:
    """Integer box clipped to the frame, grown by ``pad`` times its size on every side."""
    height, width = shape[:2]
    if box is None:
        return (0, 0, width, height)
    x, y, w, h = _as_box(box)
    x0 = max(0, math.floor(x - pad * w))
    y0 = max(0, math.floor(y - pad * h))
    x1 = min(width, math.ceil(x + w + pad * w))
    y1 = min(height, math.ceil(y + h + pad * h))
    if x1 - x0 < 8 or y1 - y0 < 8:
        raise FrameError(f"box {box!r} leaves fewer than 8 x 8 pixels inside the frame {shape}")
    return (x0, y0, x1 - x0, y1 - y0)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    denominator = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


def _ecc(onset_grey: np.ndarray, apex_grey: np.ndarray, region: Box) -> NDArray[np.float64]:
    """Euclidean ECC (Evangelidis & Psarakis 2008) of the apex region against the onset.

    Both images are smoothed (5 x 5 Gaussian, sigma 1 px) over the region grown by a pad
    *before* the template is cut out: smoothing the cut template (OpenCV's own
    ``gaussFiltSize``) blurs its borders differently from the input and biases the fit.
    """
    x, y, w, h = region
    height, width = onset_grey.shape
    pad = round(0.1 * max(w, h)) + 8
    ix0, iy0 = max(0, x - pad), max(0, y - pad)
    ix1, iy1 = min(width, x + w + pad), min(height, y + h + pad)
    apex_area = cv2.GaussianBlur(apex_grey[iy0:iy1, ix0:ix1].astype(np.float32), (5, 5), 1.0)
    source = cv2.GaussianBlur(onset_grey[iy0:iy1, ix0:ix1].astype(np.float32), (5, 5), 1.0)
    template = np.ascontiguousarray(apex_area[y - iy0 : y - iy0 + h, x - ix0 : x - ix0 + w])
    # initial warp: template pixel p -> source pixel p + (region origin - source origin)
    warp = np.array([[1, 0, x - ix0], [0, 1, y - iy0]], dtype=np.float32)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-5)
    try:
        _, warp = cv2.findTransformECC(
            template, source, warp, cv2.MOTION_EUCLIDEAN, criteria, None, 1
        )
    except cv2.error as error:
        raise RegistrationError(
            f"ECC registration did not converge on the {w} x {h} region at ({x}, {y}): "
            f"{str(error).strip().splitlines()[-1]} (try method='phase' or a larger box)"
        ) from error
    # back to frame coordinates: q = A (p - o_t) + t + o_s
    rotation = warp[:, :2].astype(np.float64)
    shift = warp[:, 2].astype(np.float64) + np.array([ix0, iy0]) - rotation @ np.array([x, y])
    return np.hstack([rotation, shift[:, None]])


_PHASE_ITERATIONS = 2


def _phase(onset_grey: np.ndarray, apex_grey: np.ndarray, region: Box) -> NDArray[np.float64]:
    """Translation by phase correlation with a Hann window, refined once.

    Sub-pixel peak by the upsampled DFT of Guizar-Sicairos et al. (Opt. Lett. 2008,
    ``skimage.registration.phase_cross_correlation``, 1/100 px). Content entering and
    leaving the window shrinks the estimate by a few per cent, so the onset is resampled
    by the first estimate and the residual added (``_PHASE_ITERATIONS`` = 2 passes).
    """
    x, y, w, h = region
    window = cv2.createHanningWindow((w, h), cv2.CV_32F)
    reference = apex_grey[y : y + h, x : x + w].astype(np.float32) * window
    onset_float = onset_grey.astype(np.float32)
    shift = np.zeros(2)
    for _ in range(_PHASE_ITERATIONS):
        # the onset patch seen through the current estimate (apex pixel p -> onset p + shift)
        to_patch = np.array([[1.0, 0.0, x + shift[0]], [0.0, 1.0, y + shift[1]]])
        moving = cv2.warpAffine(
            onset_float,
            to_patch,
            (w, h),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        rows_cols, _, _ = phase_cross_correlation(
            reference, moving * window, upsample_factor=100, normalization=None
        )
        shift -= rows_cols[::-1]  # (row, col) that moves `moving` onto `reference`
    return np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]])


def register(
    onset: np.ndarray,
    apex: np.ndarray,
    *,
    box: BoxLike | None = None,
    method: Literal["ecc", "phase"] = "ecc",
) -> RegistrationResult:
    """Align the onset frame to the apex frame (sub-pixel), so head motion is not flow.

    onset, apex : frames of the same shape, (H, W, 3) RGB or (H, W) grey uint8.
    box : region used for the fit (normally the face box); the whole frame when None.
    method : ``"ecc"`` = enhanced correlation coefficient maximisation (Evangelidis &
        Psarakis, IEEE TPAMI 2008) with a Euclidean (rotation + translation) motion on the
        grey frames smoothed by a 5 x 5 Gaussian (sigma 1 px); ``"phase"`` = translation
        only, by phase correlation with a Hann window (Guizar-Sicairos et al. 2008; no
        rotation, use it when the head only translates).
    Returns a :class:`RegistrationResult` (2 x 3 warp apex -> onset coordinates, the onset
        frame warped onto the apex grid with bilinear interpolation and replicated borders,
        and the correlation of the two inside the region).
    """
    onset = check_frame(onset, "onset")
    apex = check_frame(apex, "apex")
    if onset.shape != apex.shape:
        raise FrameError(f"onset {onset.shape} and apex {apex.shape} frames differ in shape")
    region = _region(box, apex.shape)
    onset_grey, apex_grey = to_grey(onset), to_grey(apex)
    if method == "ecc":
        matrix = _ecc(onset_grey, apex_grey, region)
    elif method == "phase":
        matrix = _phase(onset_grey, apex_grey, region)
    else:
        raise FrameError(f"unknown registration method {method!r}; use 'ecc' or 'phase'")
    height, width = apex.shape[:2]
    warped = cv2.warpAffine(
        onset,
        matrix,
        (width, height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    x, y, w, h = region
    warped_grey = to_grey(warped)
    correlation = _ncc(warped_grey[y : y + h, x : x + w], apex_grey[y : y + h, x : x + w])
    return RegistrationResult(matrix, warped, correlation, method)


# --- cropping --------------------------------------------------------------------------------


def square_region(box: BoxLike, *, margin: float = 0.15) -> tuple[int, int, int]:
    """Square ``(x0, y0, side)`` in frame pixels that :func:`crop` cuts out for ``box``.

    side = round(max(w, h) * (1 + 2 * margin)), centred on the box centre; it may extend
    past the frame (those pixels are replicated edges in the crop).
    """
    if margin < 0:
        raise FrameError(f"margin must be >= 0, got {margin}")
    x, y, w, h = _as_box(box)
    side = max(1, round(max(w, h) * (1.0 + 2.0 * margin)))
    x0 = round(x + w / 2.0 - side / 2.0)
    y0 = round(y + h / 2.0 - side / 2.0)
    return (x0, y0, side)


def box_in_crop(size: int = 256, *, margin: float = 0.15) -> tuple[float, float, float, float]:
    """The face box ``(x, y, w, h)`` inside a crop made by ``crop(frame, box, size,
    margin=margin)`` of a square box: cropping the crop again with this box and margin
    gives back the whole crop (use it to run :func:`mmhe.features.flow.face_flow` on
    stored 256 x 256 crops)."""
    inner = size / (1.0 + 2.0 * margin)
    start = (size - inner) / 2.0
    return (start, start, inner, inner)


def crop(
    frame: np.ndarray, box: BoxLike, size: int = 256, *, margin: float = 0.15
) -> NDArray[np.uint8]:
    """Square face crop, resized (256 x 256 as published).

    frame : (H, W, 3) RGB or (H, W) grey uint8.
    box : face box ``(x, y, w, h)`` or :class:`FaceBox`.
    size : output side in pixels. margin : added on each side, as a fraction of the box's
        longer side (see :func:`square_region`).
    Returns (size, size, 3) or (size, size) uint8; parts outside the frame are filled by
    edge replication; resampled with ``cv2.INTER_AREA``.
    """
    frame = check_frame(frame)
    if int(size) != size or size < 1:
        raise FrameError(f"crop size must be a positive integer, got {size!r}")
    x0, y0, side = square_region(box, margin=margin)
    height, width = frame.shape[:2]
    cx0, cy0 = max(0, x0), max(0, y0)
    cx1, cy1 = min(width, x0 + side), min(height, y0 + side)
    if cx1 <= cx0 or cy1 <= cy0:
        raise FrameError(f"box {box!r} lies entirely outside the {width} x {height} frame")
    patch = frame[cy0:cy1, cx0:cx1]
    if (cx0, cy0, cx1, cy1) != (x0, y0, x0 + side, y0 + side):
        patch = cv2.copyMakeBorder(
            patch,
            cy0 - y0,
            y0 + side - cy1,
            cx0 - x0,
            x0 + side - cx1,
            cv2.BORDER_REPLICATE,
        )
    if side == size:
        return np.ascontiguousarray(patch)
    return cv2.resize(patch, (int(size), int(size)), interpolation=cv2.INTER_AREA)
