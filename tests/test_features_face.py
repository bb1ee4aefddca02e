"""Tests of mmhe.features.face: segmentation, detection, registration, cropping.

Everything runs on scikit-image's astronaut photograph (Eileen Collins, 512 x 512 RGB)
and on synthetic green-screen composites of it whose foreground mask is known.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from mmhe.errors import MMHEError
from mmhe.features import face
from mmhe.features.face import FaceBox, FaceNotFoundError, FrameError, RegistrationError

# The face in the astronaut photo: Haar box at full resolution (177, 66, 95, 95), checked
# by eye; tests require overlap with it, not this exact box.
ASTRONAUT_FACE = (177, 66, 95, 95)
GREEN = np.array([40.0, 170.0, 70.0])


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return astronaut()


def green_composite(image: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's head and shoulders on a shaded, noisy green panel, and its mask."""
    height, width = image.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width]
    head = ((xx - 222) / 72.0) ** 2 + ((yy - 128) / 112.0) ** 2 <= 1
    shoulders = ((xx - 250) / 240.0) ** 2 + ((yy - 530) / 300.0) ** 2 <= 1
    mask = head | shoulders
    rng = np.random.default_rng(seed)
    shade = 0.75 + 0.35 * xx / width  # uneven lighting across the panel
    panel = GREEN * shade[..., None] + rng.normal(0.0, 4.0, (height, width, 3))
    frame = np.where(mask[..., None], image, np.clip(panel, 0, 255)).astype(np.uint8)
    return frame, mask


@pytest.fixture(scope="module")
def composite(photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return green_composite(photo)


# --- segmentation -----------------------------------------------------------------------------


def test_segment_face_recovers_the_green_screen_mask(composite):
    frame, truth = composite
    mask = face.segment_face(frame)
    assert mask.shape == truth.shape and mask.dtype == bool
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.9


def test_segment_face_keeps_only_the_largest_component_and_fills_holes(composite):
    frame, truth = composite
    frame = frame.copy()
    frame[20:40, 20:40] = (200, 150, 130)  # a skin-coloured speck on the panel
    frame[340:360, 140:160] = GREEN.astype(np.uint8)  # green patch on the suit: a hole
    assert truth[340:360, 140:160].all()
    mask = face.segment_face(frame)
    assert not mask[20:40, 20:40].any()
    assert mask[340:360, 140:160].all()


def test_segment_face_works_at_reduced_resolution(composite):
    frame, truth = composite
    big = cv2.resize(frame, (1024, 1024), interpolation=cv2.INTER_NEAREST)
    big_truth = (
        cv2.resize(truth.astype(np.uint8), (1024, 1024), interpolation=cv2.INTER_NEAREST) > 0
    )
    mask = face.segment_face(big, work_side=256)
    assert mask.shape == (1024, 1024)
    assert (mask & big_truth).sum() / (mask | big_truth).sum() > 0.9


def test_segment_face_of_a_grey_frame_is_everything():
    assert face.segment_face(np.full((20, 30), 128, np.uint8)).all()


# --- detection --------------------------------------------------------------------------------


def test_detect_face_in_the_astronaut_photo(photo):
    found = face.detect_face(photo)
    assert isinstance(found, FaceBox)
    assert found.source == "haar"
    assert box_iou(found.box, ASTRONAUT_FACE) > 0.7
    assert len(found.eyes) == 2
    left, right = found.eyes
    assert left[0] < right[0]
    for ex, ey, ew, eh in found.eyes:  # eyes lie in the upper half of the face
        assert found.x <= ex and ex + ew <= found.x + found.w
        assert found.y <= ey and ey + eh / 2 <= found.y + found.h / 2


def test_detect_face_on_grey_frames(photo):
    found = face.detect_face(face.to_grey(photo))
    assert box_iou(found.box, ASTRONAUT_FACE) > 0.7


def test_detect_face_on_a_green_composite_with_and_without_mask(composite):
    frame, _ = composite
    mask = face.segment_face(frame)
    for found in (face.detect_face(frame), face.detect_face(frame, mask=mask)):
        assert found.source == "haar"
        assert box_iou(found.box, ASTRONAUT_FACE) > 0.7


def test_detect_face_falls_back_to_the_segmented_head(composite):
    frame, _ = composite
    faceless = frame.copy()
    cv2.ellipse(faceless, (224, 118), (48, 60), 0, 0, 360, (205, 160, 135), -1)
    found = face.detect_face(faceless)
    assert found.source == "segmentation"
    assert found.eyes == ()
    assert box_iou(found.box, ASTRONAUT_FACE) > 0.5
    with pytest.raises(FaceNotFoundError):
        face.detect_face(faceless, fallback=False)


@pytest.mark.parametrize(
    "frame",
    [np.full((200, 300, 3), 128, np.uint8), np.full((200, 300, 3), (40, 170, 70), np.uint8)],
    ids=["grey-wall", "empty-green-panel"],
)
def test_detect_face_raises_when_nothing_is_found(frame):
    with pytest.raises(FaceNotFoundError, match="no face") as info:
        face.detect_face(frame)
    assert isinstance(info.value, MMHEError)


def test_face_backends_are_pluggable(photo, monkeypatch):
    calls = []

    def fixed(frame, *, region, max_side, eyes):
        calls.append((frame.shape, region, max_side, eyes))
        return FaceBox(10, 20, 30, 40, (), "fixed")

    monkeypatch.setitem(face._BACKENDS, "fixed", None)
    face.add_face_backend("fixed", fixed)
    assert "fixed" in face.face_backends()
    assert face.detect_face(photo, backend="fixed", max_side=200).box == (10, 20, 30, 40)
    assert calls == [((512, 512, 3), None, 200, True)]
    with pytest.raises(FaceNotFoundError, match="unknown face backend"):
        face.detect_face(photo, backend="no-such-backend")


# --- registration -----------------------------------------------------------------------------


def render(image: np.ndarray, matrix: np.ndarray, factor: int = 4) -> np.ndarray:
    """``image`` seen through a 2 x 3 warp (apex pixel p -> onset pixel matrix @ p).

    Rendered like a camera would: warp a 4x bicubic enlargement, then average 4 x 4 blocks,
    so onset and apex frames carry the same resampling blur.
    """
    big = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    centre = (factor - 1) / 2.0  # small pixel i has its centre at big pixel factor*i + centre
    big_matrix = matrix.astype(np.float64).copy()
    big_matrix[:, 2] = factor * matrix[:, 2] + centre * (np.eye(2) - matrix[:, :2]).sum(axis=1)
    warped = cv2.warpAffine(
        big, big_matrix, big.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    return cv2.resize(warped, None, fx=1 / factor, fy=1 / factor, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def rendered_apex(photo: np.ndarray) -> np.ndarray:
    return render(photo, np.eye(2, 3))


def corner_error(estimated: np.ndarray, planted: np.ndarray, box: tuple[int, ...]) -> float:
    x, y, w, h = box
    corners = np.array([[x, y, 1], [x + w, y, 1], [x, y + h, 1], [x + w, y + h, 1]], float).T
    return float(np.abs(estimated @ corners - planted @ corners).max())


def test_register_ecc_undoes_a_planted_shift_and_rotation(photo, rendered_apex):
    planted = cv2.getRotationMatrix2D((224.0, 113.0), 1.5, 1.0)
    planted[:, 2] += (2.3, -1.7)
    onset = render(photo, planted)
    box = (150, 40, 150, 150)
    result = face.register(onset, rendered_apex, box=box)
    assert result.method == "ecc"
    assert result.matrix.shape == (2, 3)
    assert corner_error(result.matrix, planted, box) < 0.1
    planted_angle = np.degrees(np.arctan2(planted[1, 0], planted[0, 0]))
    assert abs(result.angle_deg - planted_angle) < 0.05
    # the warped onset now matches the apex inside the face
    x, y, w, h = box
    before = np.abs(onset[y : y + h, x : x + w].astype(float) - rendered_apex[y : y + h, x : x + w])
    after = np.abs(
        result.warped[y : y + h, x : x + w].astype(float) - rendered_apex[y : y + h, x : x + w]
    )
    assert after.mean() < 0.25 * before.mean()
    assert result.warped.shape == onset.shape and result.warped.dtype == np.uint8
    assert result.correlation > 0.99


def test_register_phase_undoes_a_planted_shift(photo, rendered_apex):
    planted = np.array([[1.0, 0.0, 2.3], [0.0, 1.0, -1.7]])
    onset = render(photo, planted)
    result = face.register(onset, rendered_apex, box=(150, 40, 150, 150), method="phase")
    assert result.method == "phase"
    assert np.abs(np.array(result.shift) - (2.3, -1.7)).max() < 0.1
    assert result.angle_deg == 0.0


def test_register_of_identical_frames_is_the_identity(rendered_apex):
    result = face.register(rendered_apex, rendered_apex, box=ASTRONAUT_FACE)
    np.testing.assert_allclose(result.matrix, np.eye(2, 3), atol=1e-3)
    assert result.correlation == pytest.approx(1.0, abs=1e-6)


def test_register_rejects_mismatched_or_featureless_frames(photo):
    with pytest.raises(FrameError, match="differ in shape"):
        face.register(photo, photo[:-1])
    with pytest.raises(FrameError, match="unknown registration method"):
        face.register(photo, photo, method="optical")
    flat = np.full((64, 64), 100, np.uint8)
    with pytest.raises(RegistrationError, match="did not converge"):
        face.register(flat, flat)


# --- cropping ---------------------------------------------------------------------------------


def test_crop_sizes_and_exact_pixels_inside_the_frame(photo):
    assert face.crop(photo, ASTRONAUT_FACE).shape == (256, 256, 3)
    assert face.crop(face.to_grey(photo), ASTRONAUT_FACE, 64).shape == (64, 64)
    x0, y0, side = face.square_region(ASTRONAUT_FACE, margin=0.15)
    assert side == round(95 * 1.3)
    assert (x0 + side / 2, y0 + side / 2) == pytest.approx((177 + 47.5, 66 + 47.5), abs=1)
    exact = face.crop(photo, ASTRONAUT_FACE, side)
    np.testing.assert_array_equal(exact, photo[y0 : y0 + side, x0 : x0 + side])
    resized = face.crop(photo, ASTRONAUT_FACE, 64)
    expected = cv2.resize(exact, (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(resized, expected)


def test_crop_pads_by_edge_replication_outside_the_frame():
    frame = np.arange(40 * 50, dtype=np.uint16).reshape(40, 50) % 251
    frame = frame.astype(np.uint8)
    # box at the top-left corner: the square (side 20) starts 5 px outside on both axes
    out = face.crop(frame, (0, 0, 10, 10), 20, margin=0.5)
    assert face.square_region((0, 0, 10, 10), margin=0.5) == (-5, -5, 20)
    np.testing.assert_array_equal(out[5:, 5:], frame[:15, :15])
    np.testing.assert_array_equal(out[:5, 5:], np.broadcast_to(frame[0, :15], (5, 15)))
    np.testing.assert_array_equal(out[5:, :5], np.broadcast_to(frame[:15, :1], (15, 5)))
    assert (out[:5, :5] == frame[0, 0]).all()


def test_crop_rejects_bad_boxes_and_sizes(photo):
    with pytest.raises(FrameError, match="outside"):
        face.crop(photo, (1000, 1000, 10, 10))
    with pytest.raises(FrameError, match="positive"):
        face.crop(photo, (10, 10, 0, 10))
    with pytest.raises(FrameError, match="crop size"):
        face.crop(photo, ASTRONAUT_FACE, 0)


# --- frame validation -------------------------------------------------------------------------


def test_frames_are_validated():
    with pytest.raises(FrameError, match="dtype"):
        face.to_grey(np.zeros((20, 20), np.float32))
    with pytest.raises(FrameError, match="shape"):
        face.to_grey(np.zeros((20, 20, 4), np.uint8))
    with pytest.raises(FrameError, match="too small"):
        face.to_grey(np.zeros((4, 20), np.uint8))
    sixteen = np.full((20, 20), 65535, np.uint16)
    assert (face.to_grey(sixteen) == 255).all()


def test_box_in_crop_reproduces_the_crop(photo):
    first = face.crop(photo, ASTRONAUT_FACE, 256)
    inner = face.box_in_crop(256, margin=0.15)
    assert face.square_region(inner, margin=0.15) == (0, 0, 256)
    np.testing.assert_array_equal(face.crop(first, inner, 256, margin=0.15), first)
