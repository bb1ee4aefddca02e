"""Frames, boxes and errors shared by the face modules (:mod:`mmhe.features.face`,
:mod:`mmhe.features.landmarks`, :mod:`mmhe.features.face_mask`,
:mod:`mmhe.features.alignment`, :mod:`mmhe.features.registration`).

Frames are ``(H, W, 3)`` RGB or ``(H, W)`` grey arrays of ``uint8`` (``uint16`` frames are
accepted and scaled to 8 bits). Coordinates are pixels, ``x`` to the right, ``y`` down,
the centre of the top-left pixel at ``(0, 0)``; a box is ``(x, y, w, h)`` with ``(x, y)``
its top-left corner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from mmhe.errors import MMHEError

__all__ = [
    "Box",
    "BoxLike",
    "FaceBox",
    "FaceNotFoundError",
    "FrameError",
    "RegistrationError",
    "as_box",
    "check_frame",
    "clip_region",
    "fill_holes",
    "to_grey",
]

Box = tuple[int, int, int, int]
"""``(x, y, w, h)`` in pixels, ``(x, y)`` the top-left corner."""


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


def as_box(box: BoxLike) -> tuple[float, ...]:
    values = box.box if isinstance(box, FaceBox) else tuple(box)
    if len(values) != 4 or values[2] <= 0 or values[3] <= 0:
        raise FrameError(f"box {box!r}: expected (x, y, w, h) with positive w and h")
    return tuple(float(v) for v in values)


def clip_region(box: BoxLike | None, shape: tuple[int, ...], pad: float = 0.0) -> Box:
    """Integer box clipped to the frame, grown by ``pad`` times its size on every side."""
    height, width = shape[:2]
    if box is None:
        return (0, 0, width, height)
    x, y, w, h = as_box(box)
    x0 = max(0, math.floor(x - pad * w))
    y0 = max(0, math.floor(y - pad * h))
    x1 = min(width, math.ceil(x + w + pad * w))
    y1 = min(height, math.ceil(y + h + pad * h))
    if x1 - x0 < 8 or y1 - y0 < 8:
        raise FrameError(f"box {box!r} leaves fewer than 8 x 8 pixels inside the frame {shape}")
    return (x0, y0, x1 - x0, y1 - y0)


def fill_holes(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """``mask`` with every False region that does not touch the image border set to True
    (4-connected regions: eyes, glasses and dark hair inside a face or head mask)."""
    count, labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    if count <= 1:
        return mask
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    outside = np.zeros(count, dtype=bool)
    outside[np.unique(border)] = True
    outside[0] = False  # label 0 is the mask itself
    return ~outside[labels]
