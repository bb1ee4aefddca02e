"""Intensity registration of an onset frame to an apex frame (ECC or phase correlation).

Used when no landmarks are wanted (``align="ecc"`` in :func:`mmhe.features.flow.face_flow`)
and to check landmark alignment; see :mod:`mmhe.features.alignment` for the landmark path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray
from skimage.registration import phase_cross_correlation

from mmhe.features.frames import (
    Box,
    BoxLike,
    FrameError,
    RegistrationError,
    check_frame,
    clip_region,
    to_grey,
)

__all__ = ["RegistrationResult", "register"]


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
    region = clip_region(box, apex.shape)
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
