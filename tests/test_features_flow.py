"""Tests of mmhe.features.flow: flow accuracy on planted warps, strain closed forms,
the STSTNet flow image and apex estimation.

Planted warps: ``prev(p) = face(p + f(p))`` (bicubic resampling), ``next = face``, so by
OpenCV's convention (``prev[y, x] ~ next[y + dy, x + dx]``) the true flow is exactly f.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from mmhe.features import face as facemod
from mmhe.features import flow, landmarks
from mmhe.features.face import FrameError

ASTRONAUT_FACE = (177, 66, 95, 95)  # see tests/test_features_face.py
BORDER = 16  # flow near the image border is not constrained by the image: excluded


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return astronaut()


@pytest.fixture(scope="module")
def face_grey(photo: np.ndarray) -> np.ndarray:
    """128 x 128 grey crop of the astronaut's face (brows to chin)."""
    return np.ascontiguousarray(facemod.to_grey(photo)[50:178, 160:288])


def grid(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    return xx, yy


def displaced(image: np.ndarray, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """``image`` sampled at p + f(p): the frame whose flow to ``image`` is f."""
    xx, yy = grid(image.shape)
    out = cv2.remap(
        image.astype(np.float32),
        xx + fx.astype(np.float32),
        yy + fy.astype(np.float32),
        cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def sinusoidal_field(shape: tuple[int, ...], amplitude: float = 1.5, wavelength: float = 96.0):
    xx, yy = grid(shape)
    fx = (
        amplitude
        * np.sin(2 * np.pi * yy / wavelength)
        * np.cos(2 * np.pi * xx / (1.3 * wavelength))
    )
    fy = (
        amplitude
        * np.cos(2 * np.pi * xx / (0.9 * wavelength))
        * np.sin(2 * np.pi * yy / (1.1 * wavelength))
    )
    return fx, fy


def interior(array: np.ndarray) -> np.ndarray:
    return array[BORDER:-BORDER, BORDER:-BORDER]


@pytest.mark.parametrize(("method", "limit"), [("tvl1", 0.15), ("dis", 0.25), ("farneback", 0.4)])
def test_optical_flow_recovers_a_smooth_subpixel_warp(face_grey, method, limit):
    fx, fy = sinusoidal_field(face_grey.shape)
    assert np.hypot(fx, fy).max() > 1.2  # sub-pixel to ~1.5 px displacements
    estimated = flow.optical_flow(displaced(face_grey, fx, fy), face_grey, method)
    assert estimated.shape == (*face_grey.shape, 2)
    assert estimated.dtype == np.float32
    end_point_error = np.hypot(estimated[..., 0] - fx, estimated[..., 1] - fy)
    assert interior(end_point_error).mean() < limit


def test_optical_flow_converts_rgb_to_grey(photo):
    rgb = np.ascontiguousarray(photo[50:178, 160:288])
    fx, fy = sinusoidal_field(rgb.shape[:2])
    prev_rgb = np.stack([displaced(rgb[..., c], fx, fy) for c in range(3)], axis=2)
    from_rgb = flow.optical_flow(prev_rgb, rgb, "dis")
    from_grey = flow.optical_flow(facemod.to_grey(prev_rgb), facemod.to_grey(rgb), "dis")
    np.testing.assert_array_equal(from_rgb, from_grey)


def test_optical_flow_rejects_bad_input(face_grey):
    with pytest.raises(FrameError, match="differ in shape"):
        flow.optical_flow(face_grey, face_grey[:-2])
    with pytest.raises(FrameError, match="unknown optical-flow method"):
        flow.optical_flow(face_grey, face_grey, "lucas-kanade")


# --- strain -----------------------------------------------------------------------------------


def test_strain_of_a_linear_field_is_the_closed_form():
    xx, yy = grid((40, 50))
    a, b, c, d = 0.03, -0.01, 0.02, -0.015  # u = a x + b y, v = c x + d y
    field = np.stack([a * xx + b * yy + 3.0, c * xx + d * yy - 1.0], axis=2)
    expected = np.sqrt(a**2 + d**2 + 2 * (0.5 * (b + c)) ** 2)
    strain = flow.optical_strain(field)
    assert strain.shape == (40, 50) and strain.dtype == np.float32
    np.testing.assert_allclose(strain, expected, rtol=1e-5)


def test_strain_of_a_rotation_is_zero_and_of_a_translation_is_zero():
    xx, yy = grid((30, 30))
    small_rotation = np.stack([-0.01 * yy, 0.01 * xx], axis=2)  # antisymmetric gradient
    np.testing.assert_allclose(flow.optical_strain(small_rotation), 0.0, atol=1e-6)
    translation = np.broadcast_to(np.array([2.3, -1.1], np.float32), (30, 30, 2))
    assert np.abs(flow.optical_strain(np.array(translation))).max() == 0.0


@pytest.mark.parametrize("method", ["tvl1", "dis"])
def test_estimated_flow_of_a_translation_has_no_strain(face_grey, method):
    shift = np.ones(face_grey.shape, np.float32)
    estimated = flow.optical_flow(
        displaced(face_grey, 1.7 * shift, -0.9 * shift), face_grey, method
    )
    np.testing.assert_allclose(interior(estimated).mean(axis=(0, 1)), (1.7, -0.9), atol=0.05)
    assert interior(flow.optical_strain(estimated)).mean() < 1e-2


@pytest.mark.parametrize("method", ["tvl1", "dis"])
def test_estimated_flow_of_a_planted_stretch_has_the_closed_form_strain(face_grey, method):
    xx, yy = grid(face_grey.shape)
    a, c, d = 0.02, 0.01, -0.015  # u = a x, v = c x + d y: stretch, shear and squeeze
    fx, fy = a * (xx - 64), c * (xx - 64) + d * (yy - 64)
    expected = np.sqrt(a**2 + d**2 + 2 * (0.5 * c) ** 2)
    estimated = flow.optical_flow(displaced(face_grey, fx, fy), face_grey, method)
    strain = interior(flow.optical_strain(estimated))
    assert np.median(strain) == pytest.approx(expected, rel=0.1)


def test_strain_rejects_non_flow_arrays():
    with pytest.raises(FrameError, match=r"\(H, W, 2\)"):
        flow.optical_strain(np.zeros((10, 10)))


# --- the STSTNet image ------------------------------------------------------------------------


def test_flow_stack_scales_units_and_normalises_per_sample():
    constant = np.broadcast_to(np.array([4.0, -2.0], np.float32), (128, 128, 2)).copy()
    image = flow.flow_stack(constant, 28)
    assert image.shape == (3, 28, 28) and image.dtype == np.float32
    assert np.abs(image[0]).max() == 0.0  # no strain
    np.testing.assert_allclose(image[1], 4 / np.sqrt(20), rtol=1e-5)  # direction kept
    np.testing.assert_allclose(image[2], -2 / np.sqrt(20), rtol=1e-5)
    assert not flow.flow_stack(np.zeros((64, 64, 2), np.float32)).any()


def test_flow_stack_minmax_maps_every_channel_to_unit_range():
    rng = np.random.default_rng(7)
    field = cv2.GaussianBlur(rng.normal(0, 2, (96, 96, 2)).astype(np.float32), (0, 0), 5)
    image = flow.flow_stack(field, 28, normalization="minmax")
    np.testing.assert_allclose(image.min(axis=(1, 2)), 0.0, atol=1e-6)
    np.testing.assert_allclose(image.max(axis=(1, 2)), 1.0, atol=1e-6)
    maxabs = flow.flow_stack(field, 28)
    assert np.hypot(maxabs[1], maxabs[2]).max() == pytest.approx(1.0, abs=1e-6)
    assert maxabs[0].min() >= 0.0 and maxabs[0].max() == pytest.approx(1.0, abs=1e-6)
    # per sample: scaling the motion does not change the image
    np.testing.assert_allclose(flow.flow_stack(3 * field, 28), maxabs, atol=1e-5)
    with pytest.raises(FrameError, match="normalization"):
        flow.flow_stack(field, normalization="zscore")


def smile(photo: np.ndarray, amplitude: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Onset (neutral) and apex frames: the lip corners (x 205 and 245, y 143) pull up and out."""
    xx, yy = grid(photo.shape[:2])
    fx = np.zeros_like(xx)
    fy = np.zeros_like(xx)
    for corner_x, direction in ((205.0, -1.0), (245.0, 1.0)):
        bump = amplitude * np.exp(-((xx - corner_x) ** 2 + (yy - 143.0) ** 2) / (2 * 12.0**2))
        fx += direction * 0.5 * bump
        fy -= bump
    onset = np.stack([displaced(photo[..., c], fx, fy) for c in range(3)], axis=2)
    return onset, photo


@pytest.mark.parametrize("align", ["landmarks", "ecc"])
def test_flow_image_of_a_smile_moves_the_lower_face(photo, align):
    onset, apex = smile(photo)
    image = flow.flow_image(onset, apex, box=ASTRONAUT_FACE, method="dis", align=align)
    assert image.shape == (3, 28, 28) and image.dtype == np.float32
    magnitude = np.hypot(image[1], image[2])
    assert magnitude.max() == pytest.approx(1.0, abs=1e-6)
    # rows of the eyes and of the mouth in the 28 px image, from the crop's landmarks
    result = flow.expression_flow(onset, apex, box=ASTRONAUT_FACE, method="dis", align=align)
    to_crop = np.eye(2, 3) if align == "ecc" else result.alignment.matrices[0]
    if align == "ecc":
        x0, y0, side = facemod.square_region(ASTRONAUT_FACE, margin=flow.BOX_MARGIN)
        to_crop = np.array([[128 / side, 0, -x0 * 128 / side], [0, 128 / side, -y0 * 128 / side]])
    points = landmarks.face_landmarks(onset) @ to_crop[:, :2].T + to_crop[:, 2]
    eyes_row = round(points[36:48, 1].mean() * 28 / 128)
    mouth_row = round(points[48:68, 1].min() * 28 / 128)
    # landmark alignment resamples each frame at its own sub-pixel phase: on this photograph,
    # enlarged 1.1x into the crop, that leaves ~0.2 px of flow noise on the still forehead
    ratio = 3.0 if align == "landmarks" else 5.0
    assert magnitude[mouth_row:].mean() > ratio * magnitude[: eyes_row + 1].mean()
    # lip corners move up (negative v); left corner left, right corner right
    lower = image[:, mouth_row - 2 :]
    assert lower[2].min() < -0.5
    assert lower[1][:, :14].min() < -0.2 and lower[1][:, 14:].max() > 0.2


def test_flow_image_detects_the_face_when_no_box_is_given(photo):
    onset, apex = smile(photo)
    detected = flow.flow_image(onset, apex, method="dis")
    given = flow.flow_image(onset, apex, box=facemod.detect_face(onset, eyes=False), method="dis")
    np.testing.assert_array_equal(detected, given)
    detected = flow.flow_image(onset, apex, method="dis", align="ecc")
    given = flow.flow_image(onset, apex, box=facemod.detect_face(apex), method="dis", align="ecc")
    np.testing.assert_array_equal(detected, given)


def test_registration_removes_head_motion_from_the_face_flow(photo):
    head_motion = cv2.getRotationMatrix2D((224.0, 113.0), 1.0, 1.0)
    head_motion[:, 2] += (2.3, -1.7)
    onset = cv2.warpAffine(
        photo, head_motion, (512, 512), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    kwargs = {"box": ASTRONAUT_FACE, "method": "dis", "flow_size": 128, "mask": False}
    raw = flow.face_flow(onset, photo, align="none", **kwargs)
    aligned = flow.face_flow(onset, photo, align="ecc", **kwargs)
    assert raw.shape == aligned.shape == (128, 128, 2)
    # 2.9 px of head motion is ~2.5 px in the 128 px crop of a 124 px square
    assert np.hypot(raw[..., 0], raw[..., 1]).mean() > 1.5
    assert np.hypot(aligned[..., 0], aligned[..., 1]).mean() < 0.15
    by_landmarks = flow.expression_flow(onset, photo, method="dis")
    face = by_landmarks.mask
    assert by_landmarks.alignment.quality.head_motion_px == pytest.approx(2.9, abs=0.6)
    magnitude = np.hypot(by_landmarks.flow[..., 0], by_landmarks.flow[..., 1])
    assert magnitude[face].mean() < 0.15 and (magnitude[~face] == 0).all()


def test_remove_rigid_motion_keeps_the_local_motion():
    xx, yy = grid((128, 128))
    bump = 1.5 * np.exp(-((xx - 80) ** 2 + (yy - 90) ** 2) / (2 * 10.0**2))  # local motion
    planted = cv2.getRotationMatrix2D((64.0, 64.0), 0.8, 1.01)
    planted[:, 2] += (0.7, -0.4)
    rigid_u = planted[0, 0] * xx + planted[0, 1] * yy + planted[0, 2] - xx
    rigid_v = planted[1, 0] * xx + planted[1, 1] * yy + planted[1, 2] - yy
    field = np.stack([rigid_u + 0.5 * bump, rigid_v - bump], axis=2).astype(np.float32)
    corrected, matrix = flow.remove_rigid_motion(field, region=(16, 16, 96, 96))
    np.testing.assert_allclose(matrix, planted, atol=1e-4)
    np.testing.assert_allclose(corrected[..., 0], 0.5 * bump, atol=1e-3)
    np.testing.assert_allclose(corrected[..., 1], -bump, atol=1e-3)


# --- apex -------------------------------------------------------------------------------------


def test_estimate_apex_finds_the_planted_apex(photo):
    amplitudes = [0.0, 0.3, 0.8, 1.4, 2.2, 3.0, 2.5, 1.8, 1.0, 0.4]
    rgb = np.ascontiguousarray(photo[40:200, 140:300])
    fx, fy = sinusoidal_field(rgb.shape[:2], amplitude=1.0, wavelength=120.0)
    frames = np.stack(
        [
            np.stack([displaced(rgb[..., c], a * fx, a * fy) for c in range(3)], axis=2)
            for a in amplitudes
        ]
    )
    assert flow.estimate_apex(frames) == 5
    assert flow.estimate_apex(list(frames[:5])) == 4
    assert flow.estimate_apex(frames, box=(20, 20, 120, 120)) == 5
    assert flow.estimate_apex(frames[:1]) == 0
    with pytest.raises(FrameError, match="at least one frame"):
        flow.estimate_apex([])
    with pytest.raises(FrameError, match="one size"):
        flow.estimate_apex([frames[0], frames[1][:-8]])


# --- the aligned, masked face of the synthetic twin ---------------------------------------------


@pytest.fixture(scope="module")
def twin_pair():
    """Onset (neutral) and apex (AU12 at full intensity) of the synthetic face in cap,
    headphones and glasses, the head moved by (-6, 5) px between them."""
    from mmhe.synth.face import AU_ANCHORS, FaceAppearance, FaceRenderer

    renderer = FaceRenderer(FaceAppearance(640, 480, glasses=True))
    rng = np.random.default_rng(0)
    onset = renderer.render({}, head_shift=(4.0, -3.0), rng=rng)
    apex = renderer.render({12: 1.0}, head_shift=(-2.0, 2.0), rng=rng)
    corners = renderer.face_to_pixels([a.center for a in AU_ANCHORS[12]]) + np.array([4.0, -3.0])
    planted = np.hypot(*AU_ANCHORS[12][0].direction) * renderer.pixels_per_unit
    return onset, apex, corners, planted


def test_expression_flow_sees_the_smile_not_the_head_nor_the_headgear(twin_pair):
    onset, apex, corners, planted = twin_pair
    result = flow.expression_flow(onset, apex, method="tvl1")
    field, face = result.flow, result.mask
    quality = result.alignment.quality
    assert quality.head_motion_px == pytest.approx(np.hypot(6, 5), abs=1.0)
    assert quality.flags == ()
    magnitude = np.hypot(field[..., 0], field[..., 1])
    assert (magnitude[~face] == 0).all()  # cap, headphones and background: no flow
    to_crop = result.alignment.matrices[0]
    scale = float(np.sqrt(np.linalg.det(to_crop[:, :2])))
    lip_corners = corners @ to_crop[:, :2].T + to_crop[:, 2]
    for side, (x, y) in zip((-1, 1), lip_corners, strict=True):
        u, v = field[round(y) - 2 : round(y) + 3, round(x) - 2 : round(x) + 3].mean(axis=(0, 1))
        # dense flow on a 128 px crop smooths the 5 px bump: 40-110 % of its peak
        assert 0.4 < np.hypot(u, v) / (planted * scale) < 1.1
        assert v < 0 and np.sign(u) == side  # up, and outwards
    eyes = result.alignment.template[36:48]  # the eyes, far from the smile, stay still
    (x0, y0), (x1, y1) = eyes.min(axis=0).astype(int), eyes.max(axis=0).astype(int)
    assert magnitude[y0 : y1 + 1, x0 : x1 + 1].mean() < 0.1 * planted * scale


def test_flow_stack_with_a_mask_keeps_strain_off_the_mask_edge(twin_pair):
    onset, apex, _, _ = twin_pair
    result = flow.expression_flow(onset, apex, method="dis")
    image = flow.flow_stack(result.flow, 128, mask=result.mask)
    assert image.shape == (3, 128, 128)
    edge = result.mask & ~cv2.erode(result.mask.astype(np.uint8), np.ones((3, 3))).astype(bool)
    assert (image[0][edge] == 0).all() and (image[:, ~result.mask] == 0).all()
    with pytest.raises(FrameError, match="mask"):
        flow.flow_stack(result.flow, 28, mask=result.mask[:-1])
    assert flow.flow_image(onset, apex, 128, method="dis").shape == (3, 128, 128)
