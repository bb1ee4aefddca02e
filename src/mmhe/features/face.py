"""Face preprocessing of the MMHE camera frames: segment the green screen, detect, crop.

The published visual baseline (see ``docs/data-format.md``, "The published baselines")
segments the face from the green background panel, crops it to 256 x 256, aligns the
onset and apex frames and only then computes TV-L1 optical flow. Every function here is a
pure array -> array function on one frame, offline: only OpenCV's bundled Haar cascades
and dlib's bundled HOG detector are used, nothing is downloaded.

Frames and boxes: see :mod:`mmhe.features.frames` (``(H, W, 3)`` RGB or ``(H, W)`` grey
uint8; a box is ``(x, y, w, h)`` in pixels, ``(x, y)`` its top-left corner).

Face detectors are pluggable: :func:`detect_face` tries a chain of named detectors from a
small registry (:func:`add_face_backend`; ``"haar"`` and ``"hog"`` are built in), then the
same chain on the frame padded by a border (tight face crops, where the face touches the
frame), then the green-screen head. Landmarks (:mod:`mmhe.features.landmarks`), the face
mask (:mod:`mmhe.features.face_mask`) and the expression alignment
(:mod:`mmhe.features.alignment`) build on this; intensity registration lives in
:mod:`mmhe.features.registration` (re-exported here).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from mmhe.features.frames import (
    Box,
    BoxLike,
    FaceBox,
    FaceNotFoundError,
    FrameError,
    RegistrationError,
    as_box,
    check_frame,
    fill_holes,
    to_grey,
)
from mmhe.features.registration import RegistrationResult, register

__all__ = [
    "DEFAULT_BACKENDS",
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


# --- segmentation ----------------------------------------------------------------------------


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
    mask = fill_holes(labels == largest)
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

_HOG_MIN_SIDE = 640  # HOG finds faces of >= 80 x 80 px: keep the working image this large
_HOG_UPSAMPLE_BELOW = 400  # frames whose shorter side is below this are upsampled once


def _hog_detector():
    detector = getattr(_local, "hog", None)
    if detector is None:
        import dlib  # imported here: only the HOG and landmark paths need it

        detector = _local.hog = dlib.get_frontal_face_detector()
    return detector


def _hog_backend(
    frame: NDArray[np.uint8], *, region: Box | None, max_side: int, eyes: bool = True
) -> FaceBox | None:
    """dlib's frontal-face detector: HOG features and a linear SVM over an image pyramid
    (Dalal & Triggs, CVPR 2005; King, "Max-margin object detection", 2015), bundled inside
    dlib, no model file.

    It finds faces of at least 80 x 80 px, so the frame is shrunk only down to a longer
    side of ``max(max_side, 640)`` px and upsampled once (x2) when its shorter side is
    below 400 px. Of several detections the highest-scoring one is kept (a score >= 0,
    dlib's default threshold). Its boxes are the ones dlib's 68-point landmark model was
    trained on. Eyes, when asked for, come from the Haar eye cascade inside the box.
    """
    height, width = frame.shape[:2]
    rx, ry, rw, rh = region if region is not None else (0, 0, width, height)
    step = max(1, math.ceil(max(height, width) / max(max_side, _HOG_MIN_SIDE)))
    rw, rh = rw - rw % step, rh - rh % step
    patch = frame[ry : ry + rh, rx : rx + rw]
    small = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY) if patch.ndim == 3 else patch
    if step > 1:
        small = cv2.resize(small, (rw // step, rh // step), interpolation=cv2.INTER_AREA)
    upsample = 1 if min(small.shape) < _HOG_UPSAMPLE_BELOW else 0
    boxes, scores, _ = _hog_detector().run(np.ascontiguousarray(small), upsample, 0.0)
    if len(boxes) == 0:
        return None
    best = boxes[int(np.argmax(scores))]
    left, top = max(best.left(), 0), max(best.top(), 0)
    right = min(best.right() + 1, small.shape[1])
    bottom = min(best.bottom() + 1, small.shape[0])
    if right - left < 8 or bottom - top < 8:
        return None
    face = (
        rx + left * step,
        ry + top * step,
        (right - left) * step,
        (bottom - top) * step,
    )
    return FaceBox(*face, _haar_eyes(frame, face) if eyes else (), "hog")


add_face_backend("hog", _hog_backend)

DEFAULT_BACKENDS = ("haar", "hog")
"""The detector chain of :func:`detect_face`: Viola-Jones first (a few ms), HOG when it
finds nothing (tens of ms, better on rotated and partly covered faces)."""
_PAD_FRACTION = 0.25  # tight crops are padded by a quarter of their size on every side


def _border_colour(frame: NDArray[np.uint8]) -> tuple[float, ...]:
    """Median colour of the outermost rows and columns (black on the authors' crops)."""
    edge = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]])
    median = np.median(edge.reshape(len(edge), -1), axis=0)
    return tuple(float(v) for v in np.atleast_1d(median))


def _run_chain(
    frame: NDArray[np.uint8],
    names: Sequence[str],
    region: Box | None,
    max_side: int,
    eyes: bool,
) -> FaceBox | None:
    for name in names:
        found = _BACKENDS[name](frame, region=region, max_side=max_side, eyes=eyes)
        if found is not None:
            return found
    return None


def _padded_search(
    frame: NDArray[np.uint8], names: Sequence[str], max_side: int, eyes: bool
) -> FaceBox | None:
    """The chain on the frame padded by ``_PAD_FRACTION`` of its size in its border colour.

    Detectors need some context around a face: on a tight crop (the face touching the
    frame edges, as in the authors' 256 px crops) Viola-Jones finds nothing until a
    border is added. The box is returned in the unpadded frame's pixels (it may extend
    past the frame).
    """
    height, width = frame.shape[:2]
    pad = max(4, round(_PAD_FRACTION * max(height, width)))
    colour = _border_colour(frame)
    padded = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=colour)
    found = _run_chain(padded, names, None, max_side, eyes)
    if found is None:
        return None
    eyes_back = tuple((x - pad, y - pad, w, h) for x, y, w, h in found.eyes)
    return FaceBox(found.x - pad, found.y - pad, found.w, found.h, eyes_back, found.source)


def detect_face(
    frame: np.ndarray,
    *,
    backend: str | Sequence[str] = DEFAULT_BACKENDS,
    mask: NDArray[np.bool_] | None = None,
    max_side: int = 320,
    eyes: bool = True,
    fallback: bool = True,
) -> FaceBox:
    """Box of the largest face in a frame (and its eyes when found).

    frame : (H, W, 3) RGB or (H, W) grey uint8.
    backend : a registered detector (:func:`face_backends`) or a chain of them tried in
        order; default ``("haar", "hog")``: OpenCV's Viola-Jones cascades (frontal face
        default, then alt2; eyes inside), then dlib's HOG detector.
    mask : optional :func:`segment_face` mask of this frame; the search is restricted to
        its bounding box (faster) and it is reused by the fallback.
    max_side : the detectors work on the frame shrunk to this longer side (pixels; HOG
        keeps at least 640, see its backend).
    eyes : also look for the eyes (a few ms; cropping and flow do not need them).
    fallback : when the chain finds nothing, run it again on the frame padded by a quarter
        of its size (tight face crops on black or green), then use a box derived from the
        segmented head (top of the green-screen mask, square; ``source="segmentation"``,
        no eyes).
    Returns a :class:`FaceBox` in frame pixels (``source`` names the detector). Raises
    :class:`FaceNotFoundError` when nothing finds a face.
    """
    frame = check_frame(frame)
    names = (backend,) if isinstance(backend, str) else tuple(backend)
    unknown = [name for name in names if name not in _BACKENDS]
    if unknown or not names:
        raise FaceNotFoundError(
            f"unknown face backend {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"registered: {', '.join(face_backends())} "
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
    found = _run_chain(frame, names, region, max_side, eyes)
    if found is None and region is not None:  # the mask may have cut the face: search all
        found = _run_chain(frame, names, None, max_side, eyes)
    if found is not None:
        return found
    if fallback:
        found = _padded_search(frame, names, max_side, eyes)
        if found is not None:
            return found
        head = _head_box_from_mask(segment_face(frame) if mask is None else mask)
        if head is not None:
            return head
    raise FaceNotFoundError(
        f"no face in the {width} x {height} frame: the {' / '.join(names)} detector"
        f"{'s' if len(names) > 1 else ''} found none"
        + (", not even with a padded border, and no green-screen head" if fallback else "")
        + " (check that the frame shows a frontal face, or pass the face box yourself)"
    )


# --- cropping --------------------------------------------------------------------------------


def square_region(box: BoxLike, *, margin: float = 0.15) -> tuple[int, int, int]:
    """Square ``(x0, y0, side)`` in frame pixels that :func:`crop` cuts out for ``box``.

    side = round(max(w, h) * (1 + 2 * margin)), centred on the box centre; it may extend
    past the frame (those pixels are replicated edges in the crop).
    """
    if margin < 0:
        raise FrameError(f"margin must be >= 0, got {margin}")
    x, y, w, h = as_box(box)
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
