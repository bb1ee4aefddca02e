"""Colour-filter-array (Bayer) frames: what a colour high-speed camera delivers.

A colour XIMEA camera gives one 8-bit value per pixel behind a 2 x 2 Bayer filter
(2048 x 1088 = 2.2 MB per frame instead of 6.7 MB for RGB). High-speed recorders store
these raw frames and demosaic on read. `mmhe record` writes them as TIFF/EP CFA images
(photometric CFA = 32803, with the CFARepeatPatternDim and CFAPattern tags) so any
reader knows the filter layout; `FrameSequence.read` demosaics them with OpenCV.

>>> raw = mosaic(np.full((4, 4, 3), (200, 100, 30), np.uint8), "RGGB")
>>> demosaic(raw, "RGGB")[1, 1].tolist()
[200, 100, 30]
"""

from __future__ import annotations

import cv2
import numpy as np

CFA_PHOTOMETRIC = 32803
"""TIFF/EP photometric interpretation of colour-filter-array images."""

CFA_REPEAT_PATTERN_DIM_TAG = 33421
CFA_PATTERN_TAG = 33422

BAYER_PATTERNS: dict[str, int] = {
    "RGGB": cv2.COLOR_BayerRGGB2RGB,
    "BGGR": cv2.COLOR_BayerBGGR2RGB,
    "GRBG": cv2.COLOR_BayerGRBG2RGB,
    "GBRG": cv2.COLOR_BayerGBRG2RGB,
}
"""Bayer layouts (colours of the top-left 2 x 2 block, row by row) -> OpenCV conversion."""

_COLOUR_CODE = {"R": 0, "G": 1, "B": 2}  # TIFF/EP CFAPattern values


def check_pattern(pattern: str) -> str:
    """Upper-cased `pattern` if it is a Bayer layout of `BAYER_PATTERNS`, else ValueError."""
    text = str(pattern).upper()
    if text not in BAYER_PATTERNS:
        raise ValueError(f"Bayer pattern {pattern!r} is not one of {', '.join(BAYER_PATTERNS)}")
    return text


def mosaic(rgb: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """What a Bayer sensor records of an RGB image: one colour sample per pixel.

    rgb : array (H, W, 3), any dtype; H and W even.
    Returns array (H, W) of the same dtype.
    """
    pattern = check_pattern(pattern)
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] % 2 or rgb.shape[1] % 2:
        raise ValueError(f"mosaic needs an (even H, even W, 3) image, got {rgb.shape}")
    raw = np.empty(rgb.shape[:2], dtype=rgb.dtype)
    for position, colour in enumerate(pattern):
        row, column = divmod(position, 2)
        raw[row::2, column::2] = rgb[row::2, column::2, _COLOUR_CODE[colour]]
    return raw


def demosaic(raw: np.ndarray, pattern: str = "RGGB") -> np.ndarray:
    """RGB from a Bayer frame by OpenCV's bilinear demosaicing.

    raw : array (H, W), uint8 or uint16.
    Returns array (H, W, 3) RGB of the same dtype.
    """
    return cv2.cvtColor(np.ascontiguousarray(raw), BAYER_PATTERNS[check_pattern(pattern)])


def cfa_tags(pattern: str) -> list[tuple[int, str, int, object, bool]]:
    """tifffile `extratags` describing a 2 x 2 Bayer layout (TIFF/EP CFA tags)."""
    codes = bytes(_COLOUR_CODE[colour] for colour in check_pattern(pattern))
    return [
        (CFA_REPEAT_PATTERN_DIM_TAG, "H", 2, (2, 2), True),
        (CFA_PATTERN_TAG, "B", 4, codes, True),
    ]


def pattern_from_tags(repeat: object, codes: object) -> str:
    """The Bayer layout named by the CFARepeatPatternDim and CFAPattern tag values.

    Raises ValueError for a layout that is not a 2 x 2 Bayer pattern.
    """
    if tuple(np.ravel(repeat).tolist()) != (2, 2):
        raise ValueError(f"CFA repeat pattern {repeat!r} is not 2 x 2")
    values = bytes(codes) if isinstance(codes, bytes | bytearray) else bytes(np.ravel(codes))
    names = {code: colour for colour, code in _COLOUR_CODE.items()}
    try:
        return check_pattern("".join(names[value] for value in values))
    except KeyError:
        raise ValueError(f"CFA pattern {list(values)} uses colours other than R, G, B") from None
