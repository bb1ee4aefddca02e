"""Optical flow, optical strain and the network input image of an onset/apex pair.

Published visual baseline (``docs/data-format.md``): face segmented and cropped, onset
and apex aligned, TV-L1 optical flow, then the horizontal, vertical and optical-strain maps
feed small CNNs: resized to 28 x 28 for STSTNet (Liong et al., FG 2019), RCN-A and
FeatRef; at 128 x 128 for the dataset's own network (:class:`mmhe.models.MMHENet`).

By default (:func:`expression_flow`, ``align="landmarks"``) both frames are aligned to
the onset's pose by their 68 landmarks and cropped to the face
(:func:`mmhe.features.alignment.align_expression`), everything but the face is blacked out
by the face-only mask (:func:`mmhe.features.face_mask.face_mask`) before the flow, and
the flow outside the mask is zero.

Flow convention (OpenCV's): ``flow[y, x] = (dx, dy)`` in pixels such that
``prev[y, x] ~ next[y + dy, x + dx]``; x to the right, y down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from mmhe.features import face as _face
from mmhe.features.alignment import (
    ALIGN_MARGIN,
    MAX_HEAD_MOTION,
    AlignedExpression,
    align_expression,
    track_landmarks,
)
from mmhe.features.face import Box, BoxLike, FrameError
from mmhe.features.face_mask import face_mask
from mmhe.features.landmarks import face_landmarks

__all__ = [
    "Alignment",
    "FaceFlow",
    "FlowMethod",
    "Normalization",
    "estimate_apex",
    "expression_flow",
    "face_flow",
    "flow_image",
    "flow_stack",
    "optical_flow",
    "optical_strain",
    "remove_rigid_motion",
]

FlowMethod = Literal["tvl1", "dis", "farneback"]
Normalization = Literal["maxabs", "minmax"]
Alignment = Literal["landmarks", "ecc", "none"]
BOX_MARGIN = 0.15
"""Crop margin around a detector's face box (``align="ecc"`` or ``"none"``)."""

# Farneback parameters of OpenCV's own sample (pyr_scale, levels, winsize, iterations,
# poly_n, poly_sigma, flags).
_FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)
_TINY = 1e-6


def _tvl1() -> cv2.optflow.DualTVL1OpticalFlow:
    """Dual TV-L1 (Zach, Pock & Bischof, DAGM 2007; Wedel et al. 2009) with OpenCV's default
    parameters, as in the published pipeline's ``cv2.optflow.DualTVL1OpticalFlow_create()``:
    tau 0.25, lambda 0.15, theta 0.3, 5 scales (scale step 0.8), 5 warps, epsilon 0.01,
    30 inner and 10 outer iterations, 5 x 5 median filtering, gamma 0."""
    return cv2.optflow.DualTVL1OpticalFlow_create()


def _dis() -> cv2.DISOpticalFlow:
    """Dense Inverse Search (Kroeger et al., ECCV 2016): OpenCV's MEDIUM preset (8 x 8
    patches, stride 3, 25 gradient-descent and 5 variational-refinement iterations) with
    the finest scale lowered from 1 to 0 so the patches are matched at full resolution
    (OpenCV has no FINE preset; at scale 1 the end-point error on a face crop is ~3x larger
    for a few milliseconds saved)."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis.setFinestScale(0)
    return dis


def optical_flow(
    prev: np.ndarray, next: np.ndarray, method: FlowMethod = "tvl1"
) -> NDArray[np.float32]:
    """Dense optical flow from ``prev`` to ``next``.

    prev, next : frames of the same shape, (H, W, 3) RGB or (H, W) grey uint8 (converted
        to grey inside).
    method : ``"tvl1"`` (default, parity with the published pipeline: OpenCV's Dual TV-L1
        with its default parameters), ``"dis"`` (Dense Inverse Search, MEDIUM preset at
        full resolution, ~100x faster) or ``"farneback"`` (polynomial expansion, Farneback
        2003, parameters of OpenCV's sample: pyramid 0.5 x 3 levels, window 15, 3
        iterations, poly_n 5, sigma 1.2).
    Returns (H, W, 2) float32, (dx, dy) in pixels: ``prev[y, x] ~ next[y + dy, x + dx]``.
    """
    prev_grey = _face.to_grey(prev)
    next_grey = _face.to_grey(next)
    if prev_grey.shape != next_grey.shape:
        raise FrameError(f"prev {prev_grey.shape} and next {next_grey.shape} differ in shape")
    if method == "tvl1":
        flow = _tvl1().calc(prev_grey, next_grey, None)
    elif method == "dis":
        flow = _dis().calc(prev_grey, next_grey, None)
    elif method == "farneback":
        flow = cv2.calcOpticalFlowFarneback(prev_grey, next_grey, None, *_FARNEBACK)
    else:
        raise FrameError(
            f"unknown optical-flow method {method!r}; use 'tvl1', 'dis' or 'farneback'"
        )
    return np.asarray(flow, dtype=np.float32)


def _check_flow(flow: np.ndarray) -> NDArray[np.float32]:
    if not isinstance(flow, np.ndarray) or flow.ndim != 3 or flow.shape[2] != 2:
        shape = getattr(flow, "shape", type(flow).__name__)
        raise FrameError(f"expected a flow field of shape (H, W, 2), got {shape}")
    if flow.shape[0] < 2 or flow.shape[1] < 2:
        raise FrameError(f"flow field of shape {flow.shape} is too small (need >= 2 x 2)")
    return flow.astype(np.float32, copy=False)


def optical_strain(flow: np.ndarray) -> NDArray[np.float32]:
    """Magnitude of the optical strain tensor of a flow field.

    flow : (H, W, 2) displacement (u, v) in pixels.
    Returns (H, W) float32, dimensionless:
    ``sqrt(e_xx^2 + e_yy^2 + 2 e_xy^2)`` with ``e_xx = du/dx``, ``e_yy = dv/dy``,
    ``e_xy = (du/dy + dv/dx) / 2`` -- the infinitesimal strain tensor's Frobenius norm, the
    definition of STSTNet (Liong, See, Wong & Phan, "Shallow Triple Stream
    Three-dimensional CNN (STSTNet) for micro-expression recognition", FG 2019; after
    Shreve et al. 2011). Derivatives are central differences (one-sided at the border,
    ``np.gradient``); a pure translation gives 0.
    """
    flow = _check_flow(flow)
    u, v = flow[:, :, 0], flow[:, :, 1]
    du_dy, du_dx = np.gradient(u)
    dv_dy, dv_dx = np.gradient(v)
    shear = 0.5 * (du_dy + dv_dx)
    return np.sqrt(du_dx**2 + dv_dy**2 + 2.0 * shear**2).astype(np.float32)


def _minmax(channel: np.ndarray) -> np.ndarray:
    low, high = float(channel.min()), float(channel.max())
    if high - low < _TINY:
        return np.zeros_like(channel)
    return (channel - low) / (high - low)


def flow_stack(
    flow: np.ndarray,
    size: int = 28,
    *,
    normalization: Normalization = "maxabs",
    mask: np.ndarray | None = None,
) -> NDArray[np.float32]:
    """The (strain, horizontal, vertical) image of a face flow field, as STSTNet takes it.

    flow : (H, W, 2) flow of a square face crop, pixels.
    size : output side in pixels (28 in STSTNet).
    normalization : per sample, nothing shared across samples (no statistic can leak
        between training and test subjects):

        - ``"maxabs"`` (default): u and v divided by the largest flow magnitude of the
          sample (the longest vector has length 1; zero motion stays 0 and the direction of
          every vector is kept, so a left and a right lip-corner pull stay distinguishable),
          strain divided by its maximum (range [0, 1]).
        - ``"minmax"``: every channel mapped to [0, 1] by its own min and max, as the
          public STSTNet-style preprocessing scripts do (zero motion lands on a
          sample-dependent grey level).

        A channel without motion (range below 1e-6) is all zeros.
    mask : optional (H, W) bool face mask of the flow: the strain is kept only on the mask
        shrunk by one pixel (at its edge the derivatives straddle the blacked-out
        background), and u and v are zeroed outside the mask.
    Returns (3, size, size) float32: channel 0 strain, 1 horizontal, 2 vertical. The
    strain is computed at the flow's resolution and both are then shrunk with
    ``cv2.INTER_AREA`` (flow values scaled to pixels of the ``size`` image before
    normalising).
    """
    flow = _check_flow(flow)
    if int(size) != size or size < 2:
        raise FrameError(f"flow image size must be an integer >= 2, got {size!r}")
    size = int(size)
    strain = optical_strain(flow)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != flow.shape[:2]:
            raise FrameError(f"mask {mask.shape} does not match the flow {flow.shape[:2]}")
        flow = np.where(mask[..., None], flow, 0.0).astype(np.float32)
        inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        strain = np.where(inner, strain, 0.0).astype(np.float32)
    shrink = size / flow.shape[1], size / flow.shape[0]
    small_flow = cv2.resize(flow, (size, size), interpolation=cv2.INTER_AREA)
    u = small_flow[:, :, 0] * shrink[0]
    v = small_flow[:, :, 1] * shrink[1]
    small_strain = cv2.resize(strain, (size, size), interpolation=cv2.INTER_AREA)
    if normalization == "maxabs":
        longest = float(np.sqrt(u * u + v * v).max())
        scale = 1.0 / longest if longest > _TINY else 0.0
        peak = float(small_strain.max())
        strain_scale = 1.0 / peak if peak > _TINY else 0.0
        channels = (small_strain * strain_scale, u * scale, v * scale)
    elif normalization == "minmax":
        channels = (_minmax(small_strain), _minmax(u), _minmax(v))
    else:
        raise FrameError(f"unknown normalization {normalization!r}; use 'maxabs' or 'minmax'")
    return np.stack(channels).astype(np.float32)


def remove_rigid_motion(
    flow: np.ndarray,
    *,
    region: Box | None = None,
    step: int = 4,
    mask: np.ndarray | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """Subtract the dominant rigid (similarity) motion from a face flow field.

    flow : (H, W, 2) flow in pixels.
    region : ``(x, y, w, h)`` whose flow vectors are fitted (normally the face box inside
        the crop); the whole field when None. step : grid spacing of the fitted vectors.
    mask : optional (H, W) bool: only vectors on the mask (the face) are fitted.
    Returns the flow minus the fitted motion field, (H, W, 2) float32, and the 2 x 3
    similarity matrix M (``p + flow(p) ~ M @ [x, y, 1]`` for the rigid part).

    The fit is least-median-of-squares (``cv2.estimateAffinePartial2D`` with LMEDS,
    deterministic, then refined on its inliers): it follows the majority of the face and
    ignores the local motion of an expression (< 50 % of the fitted vectors). A global
    intensity registration (ECC) cannot tell head motion from a smile and absorbs part
    of it; this step removes that bias.
    """
    flow = _check_flow(flow)
    height, width = flow.shape[:2]
    x, y, w, h = region if region is not None else (0, 0, width, height)
    x0, y0 = max(0, int(x)), max(0, int(y))
    x1, y1 = min(width, int(x + w)), min(height, int(y + h))
    ys, xs = np.mgrid[y0:y1:step, x0:x1:step]
    if mask is not None:
        keep = np.asarray(mask, dtype=bool)[ys, xs]
        ys, xs = ys[keep], xs[keep]
    if ys.size < 3:
        raise FrameError(f"region {region!r} holds fewer than 3 flow vectors at step {step}")
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    moved = points + flow[ys.ravel(), xs.ravel()]
    matrix, _ = cv2.estimateAffinePartial2D(points, moved, method=cv2.LMEDS)
    if matrix is None:
        raise _face.RegistrationError(
            "no rigid motion could be fitted to the flow field (degenerate flow; "
            "check the face box or compute the flow with register=False)"
        )
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    rigid_u = matrix[0, 0] * grid_x + matrix[0, 1] * grid_y + matrix[0, 2] - grid_x
    rigid_v = matrix[1, 0] * grid_x + matrix[1, 1] * grid_y + matrix[1, 2] - grid_y
    corrected = flow - np.stack([rigid_u, rigid_v], axis=2)
    return corrected.astype(np.float32), matrix.astype(np.float64)


@dataclass(frozen=True)
class FaceFlow:
    """Optical flow of the face between onset and apex, with how it was obtained.

    flow : (S, S, 2) float32 (u, v) in pixels of the S x S face crop (zero off the mask).
    mask : (S, S) bool face-only mask of the crop, or None (``mask=False``).
    alignment : the landmark alignment (crops, landmarks, quality flags) when
        ``align="landmarks"``, else None.
    """

    flow: NDArray[np.float32]
    mask: NDArray[np.bool_] | None
    alignment: AlignedExpression | None = None


def _box_crop_mask(apex: np.ndarray, box: BoxLike, size: int, margin: float) -> np.ndarray:
    """Face-only mask of the ``crop(apex, box, size, margin)`` crop."""
    points = face_landmarks(apex, box)
    x0, y0, side = _face.square_region(box, margin=margin)
    k = size / side
    in_crop = (points - (x0, y0) + 0.5) * k - 0.5
    return face_mask(_face.crop(apex, box, size, margin=margin), in_crop)


def expression_flow(
    onset: np.ndarray,
    apex: np.ndarray,
    *,
    method: FlowMethod = "tvl1",
    align: Alignment = "landmarks",
    mask: bool = True,
    box: BoxLike | None = None,
    margin: float | None = None,
    flow_size: int = 128,
    max_head_motion: float = MAX_HEAD_MOTION,
) -> FaceFlow:
    """Optical flow of the face between the onset and the apex frame.

    onset, apex : frames of the same shape, (H, W, 3) RGB or (H, W) grey uint8 (full
        camera frames or face crops).
    method : see :func:`optical_flow`.
    align : how head motion is kept out of the flow:

        - ``"landmarks"`` (default, as the dataset's authors): the apex is mapped onto the
          onset's pose by a similarity fitted to the stable landmarks and both are cropped
          square around the onset's face outline
          (:func:`~mmhe.features.alignment.align_expression`); quality flags in
          ``FaceFlow.alignment.quality``;
        - ``"ecc"``: a square around the detector's face box (``margin`` 0.15), the onset
          crop aligned to the apex crop by Euclidean ECC
          (:func:`mmhe.features.registration.register`);
        - ``"none"``: the same crops without any alignment.

        In every case the rigid motion left in the flow of the face is then fitted and
        subtracted (:func:`remove_rigid_motion`: intensity alignment absorbs part of a
        smile, landmarks carry ~0.2 px of noise).
    mask : black out everything but the face before the flow
        (:func:`~mmhe.features.face_mask.face_mask`, needs landmarks) and zero the flow
        there.
    box : face box in frame pixels: seeds the onset's landmarks (``"landmarks"``) or
        sets the crop (``"ecc"``/``"none"``); detected when None. For stored face crops
        made by :func:`mmhe.features.face.crop` and ``align="ecc"``, pass
        ``box=box_in_crop(crop_size, margin=margin)``.
    margin : crop margin on each side (fraction of the face outline's extent for
        landmarks, :data:`~mmhe.features.alignment.ALIGN_MARGIN` = 0.05; of the box's
        longer side otherwise, 0.15).
    flow_size : side of the face crop the flow is computed on: 128 px as the authors'
        network input (4.5x the 28 px STSTNet input, so nothing the network sees is lost).
    max_head_motion : threshold of the head-motion quality flag, inter-ocular distances.
    Returns a :class:`FaceFlow`.
    """
    onset = _face.check_frame(onset, "onset")
    apex = _face.check_frame(apex, "apex")
    if onset.shape != apex.shape:
        raise FrameError(f"onset {onset.shape} and apex {apex.shape} frames differ in shape")
    if align == "landmarks":
        landmarks = None
        if box is not None:
            landmarks, _ = track_landmarks([onset, apex], first=face_landmarks(onset, box))
        aligned = align_expression(
            [onset, apex],
            size=flow_size,
            margin=ALIGN_MARGIN if margin is None else margin,
            mask=mask,
            landmarks=landmarks,
            max_head_motion=max_head_motion,
        )
        crops = aligned.masked() if mask else aligned.frames
        flow = optical_flow(crops[0], crops[1], method)
        face = aligned.mask
        region = None if face is not None else _outline_box(aligned.template, flow_size)
        flow = remove_rigid_motion(flow, region=region, mask=face)[0]
        if face is not None:
            flow[~face] = 0.0
        return FaceFlow(flow, face, aligned)
    if align not in ("ecc", "none"):
        raise FrameError(f"unknown alignment {align!r}; use 'landmarks', 'ecc' or 'none'")
    margin = BOX_MARGIN if margin is None else margin
    if box is None:
        box = _face.detect_face(apex, eyes=False)
    onset_crop = _face.crop(onset, box, flow_size, margin=margin)
    apex_crop = _face.crop(apex, box, flow_size, margin=margin)
    face = _box_crop_mask(apex, box, flow_size, margin) if mask else None
    onset_grey, apex_grey = _face.to_grey(onset_crop), _face.to_grey(apex_crop)
    if align == "ecc":
        onset_grey = _face.register(onset_grey, apex_grey, method="ecc").warped
    if face is not None:
        onset_grey = np.where(face, onset_grey, 0).astype(np.uint8)
        apex_grey = np.where(face, apex_grey, 0).astype(np.uint8)
    flow = optical_flow(onset_grey, apex_grey, method)
    if align == "ecc":
        x, y, w, h = _face.box_in_crop(flow_size, margin=margin)
        flow = remove_rigid_motion(flow, region=(round(x), round(y), round(w), round(h)))[0]
    if face is not None:
        flow[~face] = 0.0
    return FaceFlow(flow, face, None)


def _outline_box(template: np.ndarray, size: int) -> Box:
    """Bounding box of the landmarks in the crop (the rigid fit's region without a mask)."""
    (x0, y0), (x1, y1) = (
        np.clip(template.min(axis=0), 0, size),
        np.clip(template.max(axis=0), 0, size),
    )
    return (int(x0), int(y0), max(1, int(x1 - x0)), max(1, int(y1 - y0)))


def face_flow(
    onset: np.ndarray,
    apex: np.ndarray,
    *,
    method: FlowMethod = "tvl1",
    align: Alignment = "landmarks",
    mask: bool = True,
    box: BoxLike | None = None,
    margin: float | None = None,
    flow_size: int = 128,
) -> NDArray[np.float32]:
    """The flow field of :func:`expression_flow` (same arguments): (flow_size, flow_size,
    2) float32, pixels of the face crop."""
    return expression_flow(
        onset, apex, method=method, align=align, mask=mask, box=box, margin=margin,
        flow_size=flow_size,
    ).flow  # fmt: skip


def flow_image(
    onset: np.ndarray,
    apex: np.ndarray,
    size: int = 28,
    *,
    method: FlowMethod = "tvl1",
    align: Alignment = "landmarks",
    mask: bool = True,
    box: BoxLike | None = None,
    margin: float | None = None,
    flow_size: int = 128,
    normalization: Normalization = "maxabs",
) -> NDArray[np.float32]:
    """Network input of an expression: (strain, horizontal, vertical) of the face flow.

    onset, apex : frames of the same shape, (H, W, 3) RGB or (H, W) grey uint8.
    size : output side: 28 for STSTNet (Liong et al., FG 2019), 128 for the dataset's own
        network (:class:`mmhe.models.MMHENet`).
    method, align, mask, box, margin, flow_size : see :func:`expression_flow`.
    normalization : see :func:`flow_stack` (per sample; default ``"maxabs"``).
    Returns (3, size, size) float32.

    Example
    -------
    >>> image = flow_image(onset_frame, apex_frame)  # doctest: +SKIP
    >>> image.shape
    (3, 28, 28)
    """
    result = expression_flow(
        onset, apex, method=method, align=align, mask=mask, box=box, margin=margin,
        flow_size=flow_size,
    )  # fmt: skip
    return flow_stack(result.flow, size, normalization=normalization, mask=result.mask)


def estimate_apex(
    frames: Sequence[np.ndarray] | np.ndarray,
    *,
    box: BoxLike | None = None,
    max_side: int = 128,
    margin: float = 0.15,
) -> int:
    """Index of the frame that moved most relative to the first (onset) frame.

    frames : T frames of one expression (a sequence, or an array (T, H, W[, 3])), uint8;
        frame 0 is the onset.
    box : face box; each frame is cropped to it (square, ``margin``) at ``max_side``
        pixels. Without a box, whole frames are shrunk to ``max_side`` (INTER_AREA).
    Returns the index t of the largest mean flow magnitude |flow(frame 0 -> frame t)|,
    flow by DIS (:func:`optical_flow`, ``method="dis"``) on the small grey frames; 0 for a
    single frame.
    """
    if len(frames) == 0:
        raise FrameError("estimate_apex needs at least one frame, got none")
    if len(frames) == 1:
        return 0

    def small(frame: np.ndarray) -> NDArray[np.uint8]:
        if box is not None:
            return _face.to_grey(_face.crop(frame, box, max_side, margin=margin))
        grey = _face.to_grey(frame)
        scale = min(1.0, max_side / max(grey.shape))
        if scale == 1.0:
            return grey
        size = (max(8, round(grey.shape[1] * scale)), max(8, round(grey.shape[0] * scale)))
        return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)

    onset = small(frames[0])
    dis = _dis()
    motion = np.zeros(len(frames))
    for index in range(1, len(frames)):
        current = small(frames[index])
        if current.shape != onset.shape:
            raise FrameError(
                f"frame {index} has shape {np.shape(frames[index])}, frame 0 "
                f"{np.shape(frames[0])}: all frames of a clip must have one size"
            )
        flow = dis.calc(onset, current, None)
        motion[index] = float(np.sqrt((flow * flow).sum(axis=2)).mean())
    return int(np.argmax(motion))
