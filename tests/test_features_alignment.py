"""Alignment of an expression's frames by landmarks: planted rotations, scales and shifts
are undone to under a pixel at camera resolution; quality flags fire when they should."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.data import astronaut
from skimage.transform import SimilarityTransform

from mmhe.features import alignment as al
from mmhe.features.frames import FrameError
from mmhe.features.landmarks import STABLE_POINTS, LandmarksNotFoundError, eye_centres

WIDTH, HEIGHT = 2048, 1088


@pytest.fixture(scope="module")
def camera_frame() -> np.ndarray:
    """The astronaut enlarged x4 (face ~380 px, as at 1 m with a 16 mm lens) in a 2048 x
    1088 frame."""
    big = cv2.resize(astronaut(), None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(big[100 : 100 + HEIGHT, 0:WIDTH])


def moved(frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The frame seen after the head moved by ``matrix`` (frame pixel p -> matrix @ p)."""
    return cv2.warpAffine(
        frame, matrix, frame.shape[1::-1], flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )


def test_similarity_transform_is_umeyamas_least_squares():
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 500, (11, 2))
    planted = cv2.getRotationMatrix2D((250, 250), 7.0, 1.08)
    planted[:, 2] += (12.5, -3.25)
    target = source @ planted[:, :2].T + planted[:, 2]
    np.testing.assert_allclose(al.similarity_transform(source, target), planted, atol=1e-9)
    noisy = target + rng.normal(0, 2.0, target.shape)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image's Umeyama, the reference
        reference = SimilarityTransform.from_estimate(source, noisy)
    else:  # scikit-image < 0.26
        reference = SimilarityTransform()
        reference.estimate(source, noisy)
    np.testing.assert_allclose(
        al.similarity_transform(source, noisy), reference.params[:2], atol=1e-9
    )
    with pytest.raises(FrameError, match="coincide"):
        al.similarity_transform(np.ones((4, 2)), target[:4])


@pytest.mark.parametrize(
    ("angle", "scale", "shift"), [(3.0, 1.04, (14.0, -9.5)), (-2.2, 0.96, (-7.25, 11.0))]
)
def test_alignment_undoes_a_planted_head_motion_to_under_a_pixel(camera_frame, angle, scale, shift):
    head = cv2.getRotationMatrix2D((900.0, 420.0), angle, scale)
    head[:, 2] += shift
    aligned = al.align_expression([camera_frame, moved(camera_frame, head)], size=256)
    # frame 1 -> template pose, recovered: (crop -> template) o (frame 1 -> crop)
    recovered = al._compose(cv2.invertAffineTransform(aligned.matrices[0]), aligned.matrices[1])
    face = aligned.landmarks[0]  # 68 points spread over the whole face
    error = np.hypot(*(al._apply(recovered, al._apply(head, face)) - face).T)
    print(f"alignment error px (2048 frame): mean {error.mean():.2f} max {error.max():.2f}")
    assert error.max() < 1.0
    # the aligned apex crop now matches the onset crop inside the face
    crops = aligned.frames.astype(float)
    inside = aligned.mask
    assert np.abs(crops[1] - crops[0])[inside].mean() < 2.5  # grey levels
    eye_distance = np.hypot(*np.subtract(*eye_centres(face)))
    stable = face[list(STABLE_POINTS)]
    planted_motion = np.sqrt(((al._apply(head, stable) - stable) ** 2).sum(axis=1).mean())
    assert aligned.quality.head_motion_px == pytest.approx(planted_motion, abs=1.0)
    assert aligned.quality.head_motion == pytest.approx(planted_motion / eye_distance, abs=0.01)
    assert aligned.quality.fit_residual < 0.01 and aligned.quality.flags == ()


def test_crops_masks_and_sizes(camera_frame):
    aligned = al.align_expression([camera_frame], size=128)
    assert aligned.frames.shape == (1, 128, 128, 3) and aligned.frames.dtype == np.uint8
    assert aligned.size == 128 and aligned.mask.shape == (128, 128)
    assert 0.35 < aligned.mask.mean() < 0.8  # the face fills the crop
    masked = aligned.masked()
    assert (masked[0][~aligned.mask] == 0).all()
    np.testing.assert_array_equal(masked[0][aligned.mask], aligned.frames[0][aligned.mask])
    # the template's landmarks land inside the crop, nose tip near the middle
    assert ((aligned.template > 0) & (aligned.template < 128)).all()
    assert np.abs(aligned.template[30] - 64).max() < 20
    unmasked = al.align_expression([camera_frame], size=256, mask=False)
    assert unmasked.mask is None and unmasked.masked() is unmasked.frames
    grey = al.align_expression([cv2.cvtColor(camera_frame, cv2.COLOR_RGB2GRAY)])
    assert grey.frames.shape == (1, 128, 128)


def test_head_motion_flag(camera_frame):
    shove = np.array([[1.0, 0.0, 45.0], [0.0, 1.0, 20.0]])  # ~0.2 eye distances
    aligned = al.align_expression([camera_frame, moved(camera_frame, shove)])
    assert aligned.quality.head_motion_px == pytest.approx(np.hypot(45, 20), abs=1.0)
    assert aligned.quality.flags == ("head_motion",)
    code, message = aligned.quality.describe()[0]
    assert code == "face_head_motion" and "eye distances" in message
    relaxed = al.align_expression([camera_frame, moved(camera_frame, shove)], max_head_motion=0.5)
    assert relaxed.quality.flags == ()


def test_missing_landmarks_and_out_of_frame_flags(camera_frame):
    blank = np.full_like(camera_frame, 90)
    aligned = al.align_expression([camera_frame, blank, camera_frame], apex_index=2)
    assert aligned.quality.landmarks_missing == (1,)
    assert np.isnan(aligned.landmarks[1]).all()
    np.testing.assert_allclose(aligned.matrices[1], aligned.matrices[0])  # previous pose
    assert aligned.quality.flags == ("landmarks_missing",)
    with pytest.raises(LandmarksNotFoundError, match="template frame 0"):
        al.align_expression([blank, camera_frame])
    # the face pushed over the frame's left edge by 5 % of its width
    jaw = aligned.landmarks[0][:17]
    push = -(jaw[:, 0].min() + 0.05 * np.ptp(jaw[:, 0]))
    edge = moved(camera_frame, np.array([[1.0, 0.0, push], [0.0, 1.0, 0.0]]))
    edge[:, int(jaw[:, 0].max() + push) + 40 :] = 90  # no reflected second face
    assert al.align_expression([edge]).quality.flags == ("out_of_frame",)


def test_bad_input_is_refused(camera_frame):
    with pytest.raises(FrameError, match="at least one frame"):
        al.align_expression([])
    with pytest.raises(FrameError, match="one size"):
        al.align_expression([camera_frame, camera_frame[:-8]])
    with pytest.raises(FrameError, match="apex_index"):
        al.align_expression([camera_frame], apex_index=3)
    with pytest.raises(FrameError, match=r"\(1, 68, 2\)"):
        al.align_expression([camera_frame], landmarks=np.zeros((2, 68, 2)))
