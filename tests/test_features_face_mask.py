"""The face-only mask against references it was not made from: the face outline traced by
hand on the astronaut photograph, and the synthetic twin's ground-truth face region (cap,
headphones, glasses and EOG electrodes drawn by the renderer)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from mmhe.features import face_mask as fm
from mmhe.features import landmarks
from mmhe.features.frames import FrameError
from mmhe.synth.face import ASTRONAUT_FACE_OUTLINE, FaceAppearance, FaceRenderer, random_appearance


def traced_truth(shape: tuple[int, ...]) -> np.ndarray:
    canvas = np.zeros(shape[:2], np.uint8)
    vertices = np.round(np.asarray(ASTRONAUT_FACE_OUTLINE) * 16).astype(np.int32)
    cv2.fillPoly(canvas, [vertices], 1, cv2.LINE_8, 4)
    return canvas.astype(bool)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return astronaut()


@pytest.fixture(scope="module")
def photo_points(photo) -> np.ndarray:
    return landmarks.face_landmarks(photo)


def test_mask_of_a_real_face_matches_the_hand_traced_face(photo, photo_points):
    """Real photograph, studio background, blonde fringe over the forehead, ears and neck
    visible: none of them may enter the mask."""
    truth = traced_truth(photo.shape)
    mask = fm.face_mask(photo, photo_points)
    assert mask.shape == photo.shape[:2] and mask.dtype == bool
    iou = fm.mask_iou(mask, truth)
    print(f"astronaut face mask IoU {iou:.3f}")  # 0.92 when written
    assert iou > 0.88
    assert np.count_nonzero(mask & ~truth) < 0.03 * truth.sum()  # hair, ears, neck stay out
    assert not mask[60:75, 200:240].any()  # the fringe
    assert not mask[185:195, 205:240].any()  # the neck under the chin
    assert mask[100:105, 195:205].all()  # the image-left eye is filled in
    # landmarks are found when not given
    np.testing.assert_array_equal(fm.face_mask(photo), mask)


@pytest.mark.parametrize(
    ("size", "seed"), [((2048, 1088), 0), ((320, 240), 1), ((320, 240), 2), ((160, 120), 3)]
)
def test_mask_matches_the_twins_face_region(size, seed):
    """Cap, headphones, EOG electrodes (and glasses for some) on the synthetic face."""
    rng = np.random.default_rng(seed)
    appearance = random_appearance(rng, *size)
    if seed == 1:
        appearance = FaceAppearance(**{**appearance.__dict__, "glasses": True})
    renderer = FaceRenderer(appearance)
    shift = tuple(rng.uniform(-0.5, 0.5, 2) * renderer.max_shift)
    frame = renderer.render({}, head_shift=shift, rng=rng)
    truth = renderer.face_region(shift)
    mask = fm.face_mask(frame)
    iou = fm.mask_iou(mask, truth)
    print(f"twin {size} glasses={appearance.glasses}: IoU {iou:.3f}")
    assert iou > 0.87
    assert np.count_nonzero(mask & ~truth) < 0.03 * truth.sum()  # no cap, headset, hair


def test_grey_images_get_the_outline_and_bad_landmarks_are_refused(photo, photo_points):
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    outline = fm.face_mask(grey, photo_points)
    colour = fm.face_mask(photo, photo_points)
    assert np.count_nonzero(colour & ~outline) == 0  # colour only removes pixels
    assert np.count_nonzero(outline) > np.count_nonzero(colour)
    with pytest.raises(FrameError, match="68, 2"):
        fm.face_mask(photo, photo_points[:10])


def test_outline_closes_the_jaw_and_lifts_the_brows(photo_points):
    outline = fm.face_outline(photo_points, jaw_margin=0.0)
    assert outline.shape == (17 + 2 + 10, 2)
    np.testing.assert_allclose(outline[:17], photo_points[:17])
    lift = outline[18:28][::-1] - photo_points[17:27]  # brows 17..26, lifted
    np.testing.assert_allclose(lift, np.broadcast_to(lift[0], lift.shape), atol=1e-9)
    left, right = landmarks.eye_centres(photo_points)
    across = (right - left) / np.hypot(*(right - left))
    up = np.array([across[1], -across[0]])
    assert abs(lift[0] @ across) < 1e-9 and lift[0] @ up > 0  # perpendicular, upwards
    brow_height = (photo_points[17:27].mean(axis=0) - photo_points[33]) @ up
    assert np.hypot(*lift[0]) == pytest.approx(brow_height * fm.FOREHEAD_HEIGHT)
    np.testing.assert_allclose(outline[17] - photo_points[16], lift[0] / 2)
    np.testing.assert_allclose(outline[28] - photo_points[0], lift[0] / 2)


def test_mask_iou_closed_forms():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:, :5] = True
    b[:, 3:] = True
    assert fm.mask_iou(a, b) == pytest.approx(20 / 100)
    assert fm.mask_iou(a, a) == 1.0 and fm.mask_iou(~a & a, ~a & a) == 1.0
    with pytest.raises(FrameError):
        fm.mask_iou(a, b[:5])
