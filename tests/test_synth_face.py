"""The synthetic face: found by OpenCV's Haar cascade, on green, AUs in the right place
and measurable by optical flow; the expression profile; TIFF and AVI writers."""

from __future__ import annotations

import hashlib

import av
import cv2
import numpy as np
import pytest
import tifffile

from mmhe.errors import ConfigError
from mmhe.labels import ACTION_UNITS
from mmhe.synth.face import (
    AU_ANCHORS,
    FaceAppearance,
    FaceRenderer,
    expression_intensity,
    random_appearance,
)
from mmhe.synth.video import write_avi, write_tif

# Anatomical thirds of the face in face-normalised y (eyes at 0.38, mouth at ~0.8).
UPPER, MIDDLE, LOWER = (-np.inf, 0.47), (0.47, 0.70), (0.70, np.inf)
EXPECTED_THIRD = {
    **dict.fromkeys([1, 2, 4, 5, 7, 41, 42, 43, 44, 45, 46], UPPER),  # brows, lids
    **dict.fromkeys([6, 9, 11, 38, 39], MIDDLE),  # cheeks, nose
    **dict.fromkeys([10, 12, 13, 14, 15, 16, 17, 18, 20, 22, 23, 24, 25, 26, 27, 28], LOWER),
}


@pytest.fixture(scope="module")
def renderer_640() -> FaceRenderer:
    """Cap and headphones on; no face electrodes, whose contrast would move with the skin
    and make the AU-placement measurements below lopsided."""
    return FaceRenderer(FaceAppearance(640, 480, face_electrodes=False))


def _faces(frame: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    side = frame.shape[0] // 6
    return cascade.detectMultiScale(grey, 1.1, 5, minSize=(side, side))


def _grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def _flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dense Farneback flow a -> b, shape (H, W, 2) in pixels (dx, dy)."""
    gaussian = cv2.OPTFLOW_FARNEBACK_GAUSSIAN
    return cv2.calcOpticalFlowFarneback(_grey(a), _grey(b), None, 0.5, 3, 15, 5, 7, 1.5, gaussian)


def _window_mean(flow: np.ndarray, centre: np.ndarray, half: int) -> np.ndarray:
    x, y = np.rint(centre).astype(int)
    return flow[y - half : y + half + 1, x - half : x + half + 1].reshape(-1, 2).mean(0)


# ---------------------------------------------------------------- face detection and look


@pytest.mark.parametrize("size", [(320, 240), (640, 480)])
def test_haar_cascade_finds_exactly_one_face_for_random_participants(size):
    rng = np.random.default_rng(7)
    for _ in range(5):
        renderer = FaceRenderer(random_appearance(rng, *size))
        aus = {int(au): float(rng.uniform(0, 1)) for au in rng.choice([1, 4, 6, 12, 15], 2)}
        frame = renderer.render(aus, head_shift=(0.4, -0.3), rng=rng)
        faces = _faces(frame)
        assert len(faces) == 1, (renderer.appearance, faces)
        x, y, w, h = faces[0]
        hx, hy, hw, hh = renderer.head_box
        assert hx <= x + w / 2 <= hx + hw and hy <= y + h / 2 <= hy + hh


def test_haar_cascade_finds_the_face_at_full_camera_resolution():
    rng = np.random.default_rng(3)
    renderer = FaceRenderer(random_appearance(rng, 2048, 1088))
    frame = renderer.render({12: 0.5, 6: 0.5}, rng=rng)
    assert frame.shape == (1088, 2048, 3) and frame.dtype == np.uint8
    assert len(_faces(frame)) == 1


def test_face_sits_on_a_green_background():
    rng = np.random.default_rng(11)
    for _ in range(3):
        renderer = FaceRenderer(random_appearance(rng, 320, 240))
        frame = renderer.render({}, rng=rng).astype(int)
        border = np.concatenate(
            [frame[:6].reshape(-1, 3), frame[-6:].reshape(-1, 3), frame[:, :6].reshape(-1, 3)]
        )
        red, green, blue = border.T
        assert np.all(green - red > 60) and np.all(green - blue > 50)
        cheek = renderer.face_to_pixels([(0.25, 0.55)])[0].astype(int)
        skin_red, skin_green, _ = frame[cheek[1], cheek[0]]
        assert skin_red > skin_green  # skin, not screen


def test_render_is_deterministic_and_noise_has_the_requested_sigma():
    appearance = FaceAppearance(320, 240, noise_sigma=2.0)
    first, second = FaceRenderer(appearance), FaceRenderer(appearance)
    clean = first.render({})
    assert np.array_equal(clean, first.render({}))
    assert np.array_equal(clean, second.render({}))
    assert np.array_equal(clean, first.render({12: 0.0}))
    noisy = first.render({}, rng=np.random.default_rng(5))
    assert np.array_equal(noisy, second.render({}, rng=np.random.default_rng(5)))
    assert not np.array_equal(noisy, first.render({}, rng=np.random.default_rng(6)))
    residual = noisy[:40].astype(float) - clean[:40]  # green rows: no clipping
    assert abs(residual.mean()) < 0.05
    assert residual.std() == pytest.approx(np.sqrt(2.0**2 + 1 / 12), rel=0.1)


def test_fallback_anchors_agree_with_the_haar_anchors(monkeypatch):
    from mmhe.synth import face

    detected = face._source_face()
    assert detected.detected == (True, True)

    class Blind:  # a cascade that finds nothing
        def detectMultiScale(self, *args, **kwargs):
            return ()

    monkeypatch.setattr(face, "_cascade", lambda name: Blind())
    fallback = face._source_face.__wrapped__()
    assert fallback.detected == (False, False)
    assert np.abs(fallback.eye_mid - detected.eye_mid).max() < 3.0  # photograph px
    assert fallback.scale == pytest.approx(detected.scale, rel=0.1)
    assert np.abs(np.subtract(fallback.head_box, detected.head_box)).max() < 6.0


def test_random_appearance_is_reproducible_and_in_range():
    a = random_appearance(np.random.default_rng(1), 320, 240)
    assert a == random_appearance(np.random.default_rng(1), 320, 240)
    assert a != random_appearance(np.random.default_rng(2), 320, 240)
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = random_appearance(rng, 320, 240)
        assert 0.55 <= a.face_scale <= 0.8 and 0.8 <= a.brightness <= 1.2
        assert all(0.9 <= g <= 1.1 for g in a.color_gain) and 1 <= a.noise_sigma <= 3
        FaceRenderer(a)  # fits in the frame


# ---------------------------------------------------------------- action units


def test_every_catalogued_au_is_rendered_in_its_third_of_the_face(renderer_640):
    assert set(ACTION_UNITS) <= set(AU_ANCHORS) and set(EXPECTED_THIRD) <= set(AU_ANCHORS)
    neutral = renderer_640.render({}).astype(np.int16)
    h, w = neutral.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    uv = renderer_640.pixels_to_face(np.stack([xx.ravel(), yy.ravel()], 1)).reshape(h, w, 2)
    for au, (low, high) in EXPECTED_THIRD.items():
        change = np.abs(renderer_640.render({au: 1.0}).astype(np.int16) - neutral).sum(-1)
        assert change.sum() > 5000, f"AU{au} changes almost nothing"
        inside = (uv[..., 1] >= low) & (uv[..., 1] < high)
        share = change[inside].sum() / change.sum()
        assert share > 0.65, f"AU{au}: only {share:.0%} of the change is in its third"
        centre_x = (change * uv[..., 0]).sum() / change.sum()
        if au == 46:  # wink: image-left eye only
            assert centre_x < 0.4
        else:  # symmetric AUs change both sides
            assert 0.4 < centre_x < 0.6, f"AU{au} centre x {centre_x:.2f}"


def test_lip_corner_puller_is_measured_by_optical_flow(renderer_640):
    neutral = renderer_640.render({})
    smile = renderer_640.render({12: 1.0})
    flow = _flow(neutral, smile)
    anchors = AU_ANCHORS[12]
    half = 4
    for anchor in anchors:
        planted = np.asarray(anchor.direction) * renderer_640.pixels_per_unit
        centre = renderer_640.face_to_pixels([anchor.center])[0]
        measured = _window_mean(flow, centre, half)
        assert np.all(np.sign(measured) == np.sign(planted)), (measured, planted)
        # dense flow smooths a local bump: it recovers 60-110 % of the peak, same direction
        ratio = np.linalg.norm(measured) / np.linalg.norm(planted)
        assert 0.6 < ratio < 1.1, (measured, planted)
        cosine = measured @ planted / np.linalg.norm(measured) / np.linalg.norm(planted)
        assert cosine > np.cos(np.radians(15))
    # left corner moves left, right corner moves right, both up
    assert anchors[0].direction[0] < 0 < anchors[1].direction[0]
    # the forehead does not move
    forehead = renderer_640.face_to_pixels([(0.5, 0.1)])[0]
    assert np.abs(_window_mean(flow, forehead, 8)).max() < 0.1
    # displacement scales with intensity
    half_smile = _window_mean(_flow(neutral, renderer_640.render({12: 0.5})), centre, half)
    assert np.linalg.norm(half_smile) == pytest.approx(0.5 * np.linalg.norm(measured), rel=0.2)


def test_micro_expression_apex_is_a_few_pixels_at_640px_head_height():
    renderer = FaceRenderer(FaceAppearance(900, 700, face_scale=640 / 700))
    assert renderer.head_box[3] == pytest.approx(640)
    from mmhe.synth.face import MICRO_APEX_INTENSITY

    amplitude = MICRO_APEX_INTENSITY * renderer.pixels_per_unit
    for au in (1, 2, 4, 12, 15):
        norm = max(np.linalg.norm(a.direction) for a in AU_ANCHORS[au]) * amplitude
        assert 2.0 <= norm <= 4.0, (au, norm)


def test_head_shift_translates_the_head(renderer_640):
    still = renderer_640.render({})
    moved = renderer_640.render({}, head_shift=(0.6, -0.4))
    flow = _flow(still, moved)
    x, y, w, h = (int(v) for v in renderer_640.head_box)
    face = flow[y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4].reshape(-1, 2)
    assert np.median(face, axis=0) == pytest.approx([0.6, -0.4], abs=0.1)
    assert np.array_equal(still[:20], moved[:20])  # background unchanged


def test_bad_render_arguments_raise_config_errors(renderer_640):
    with pytest.raises(ConfigError, match="AU99"):
        renderer_640.render({99: 0.5})
    with pytest.raises(ConfigError, match=r"outside 0\.\.1"):
        renderer_640.render({12: 1.5})
    with pytest.raises(ConfigError, match="head_shift"):
        renderer_640.render({}, head_shift=(100.0, 0.0))
    with pytest.raises(ConfigError, match="does not fit"):
        FaceRenderer(FaceAppearance(640, 480, face_scale=0.9, center=(0.1, 0.5)))
    with pytest.raises(ConfigError, match="face_scale"):
        FaceAppearance(640, 480, face_scale=2.0)


# ---------------------------------------------------------------- expression profile


def test_expression_intensity_rises_to_the_apex_and_falls_to_the_offset():
    onset, apex, offset = 1.0, 1.12, 1.3
    assert expression_intensity([onset, apex, offset], onset, apex, offset) == pytest.approx(
        [0.0, 1.0, 0.0]
    )
    t = np.linspace(0.5, 2.0, 1501)
    level = expression_intensity(t, onset, apex, offset)
    assert level.shape == t.shape and level.min() >= 0 and level.max() <= 1
    assert np.all(level[t < onset] == 0) and np.all(level[t > offset] == 0)
    assert np.all(np.diff(level[(t >= onset) & (t <= apex)]) >= 0)
    assert np.all(np.diff(level[(t >= apex) & (t <= offset)]) <= 0)
    assert expression_intensity(1.06, onset, apex, offset) == pytest.approx(0.5)  # half-way


def test_expression_intensity_when_apex_equals_offset_falls_over_the_tail():
    level = expression_intensity([1.0, 1.2, 1.25, 1.3, 1.31], 1.0, 1.2, 1.2, tail=0.1)
    assert level == pytest.approx([0.0, 1.0, 0.5, 0.0, 0.0])
    step = expression_intensity([0.99, 1.0, 1.05], 1.0, 1.0, 1.1)
    assert step == pytest.approx([0.0, 1.0, 0.5])
    with pytest.raises(ConfigError, match="onset <= apex <= offset"):
        expression_intensity(0.0, 1.0, 0.9, 1.2)


# ---------------------------------------------------------------- writers


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_write_tif_round_trip_is_exact_and_reproducible(tmp_path, renderer_640):
    frame = renderer_640.render({12: 0.4}, rng=np.random.default_rng(0))
    path = tmp_path / "cam" / "2023-07-21-16-45-38-257-410-112.tif"
    write_tif(path, frame)
    assert np.array_equal(tifffile.imread(path), frame)
    with tifffile.TiffFile(path) as tif:
        assert "Software" not in tif.pages[0].tags and "DateTime" not in tif.pages[0].tags
    digest = _sha(path)
    write_tif(path, frame)
    assert _sha(path) == digest
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left
    with pytest.raises(ConfigError, match="uint8 RGB"):
        write_tif(tmp_path / "bad.tif", frame.astype(np.float32))
    assert not (tmp_path / "bad.tif").exists()


def test_write_avi_round_trip_and_identical_bytes(tmp_path):
    renderer = FaceRenderer(FaceAppearance(161, 121, face_scale=0.8))  # odd sizes
    rng = np.random.default_rng(0)
    levels = expression_intensity(np.arange(12) / 150, 0.0, 0.03, 0.07)
    frames = np.stack([renderer.render({12: v, 6: v}, rng=rng) for v in levels])
    first, second = tmp_path / "a" / "clip-1.avi", tmp_path / "b" / "clip-1.avi"
    write_avi(first, frames, 150.0)
    write_avi(second, frames.copy(), 150.0)
    assert _sha(first) == _sha(second)
    with av.open(str(first)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 150
        decoded = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert decoded.shape == frames.shape
    assert np.array_equal(decoded, frames)  # FFV1 is lossless
    write_avi(first, frames, 150.0, codec="mjpeg")
    with av.open(str(first)) as container:
        lossy = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    assert lossy.shape == frames.shape
    assert np.abs(lossy.astype(int) - frames).mean() < 3.0
    assert sorted(p.name for p in first.parent.iterdir()) == ["clip-1.avi"]
    with pytest.raises(ConfigError, match="codec"):
        write_avi(tmp_path / "x.avi", frames, 150.0, codec="h264")
    with pytest.raises(ConfigError, match="fps"):
        write_avi(tmp_path / "x.avi", frames, 0.0)
    assert not (tmp_path / "x.avi").exists()


# ---------------------------------------------------------------- headgear and face truth


def _at(frame: np.ndarray, renderer: FaceRenderer, point, shift=(0.0, 0.0)) -> np.ndarray:
    x, y = np.rint(renderer.face_to_pixels([point])[0] + shift).astype(int)
    return frame[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3).mean(axis=0)


def test_the_twin_wears_cap_headphones_electrodes_and_optional_glasses():
    from mmhe.synth import headgear

    plain = FaceRenderer(FaceAppearance(640, 480, eeg_cap=False, headphones=False,
                                        face_electrodes=False))  # fmt: skip
    dressed = FaceRenderer(FaceAppearance(640, 480, glasses=True))
    bare, worn = plain.render({}), dressed.render({})
    # the cap over the crown: dark fabric where the photograph shows blonde hair
    crown = (0.53 + 0.13 / 2, headgear.CAP_RIM_Y - 0.12)  # between two electrode holders
    assert _at(worn, dressed, crown).mean() < 70 < _at(bare, plain, crown).mean()
    assert np.array_equal(_at(worn, dressed, (0.5, 0.55)), _at(bare, plain, (0.5, 0.55)))
    # headphone cups beside the face, white foam EOG electrodes beside the eyes
    assert _at(worn, dressed, (0.53 - 0.66, 0.56)).max() < 40
    assert _at(worn, dressed, (0.28 + 0.024, 0.535)).min() > 200  # VEO foam, below the eye
    assert 140 < _at(worn, dressed, (0.28, 0.535)).mean() < 160  # its grey centre
    # glasses: dark rims round the eyes, absent without them
    rim = (0.28, 0.39 - 0.105)
    assert _at(worn, dressed, rim).mean() < 60 < _at(bare, plain, rim).mean()
    # skull-borne items do not move with an expression, glued electrodes do (AU6 cheeks up)
    brows_up = dressed.render({1: 1.0, 2: 1.0})
    cap = dressed.face_to_pixels([(0.5, headgear.CAP_RIM_Y - 0.03)])[0].astype(int)
    np.testing.assert_array_equal(brows_up[cap[1] - 3 : cap[1], cap[0] - 10 : cap[0] + 10],
                                  worn[cap[1] - 3 : cap[1], cap[0] - 10 : cap[0] + 10])  # fmt: skip
    cheeks_up = dressed.render({6: 1.0})
    assert (
        np.abs(cheeks_up.astype(int) - worn).sum(axis=2)[
            tuple(np.rint(dressed.face_to_pixels([(0.28, 0.535)])[0][::-1]).astype(int))
        ]
        > 0
    )


def test_face_region_truth_is_the_outline_minus_cap_and_headphones():
    renderer = FaceRenderer(FaceAppearance(640, 480, glasses=True))
    region = renderer.face_region()
    outline = np.zeros(region.shape, np.uint8)
    cv2.fillPoly(outline, [np.round(renderer.face_outline()).astype(np.int32)], 1)
    assert np.count_nonzero(region & ~outline.astype(bool)) < 0.01 * region.sum()
    # the cap's rim cuts the forehead: no row above it, all of the face below it
    rim = renderer.face_to_pixels([(0.5, 0.15)])[0]
    column = region[:, int(rim[0])]
    assert not column[: int(rim[1]) - 2].any() and column[int(rim[1]) + 3 : int(rim[1]) + 40].all()
    # glasses and electrodes lie on the face: inside the region
    for point in ((0.28, 0.39 - 0.105), (0.28, 0.535), (0.13, 0.40)):
        x, y = np.rint(renderer.face_to_pixels([point])[0]).astype(int)
        assert region[y, x], point
    moved = renderer.face_region((5.0, -3.0))
    np.testing.assert_array_equal(moved[100:400, 205:500], region[103:403, 200:495])
    truth = renderer.face_region_truth()
    assert truth["frame_size"] == [640, 480] and truth["area_px"] == region.sum()
    polygon = np.zeros(region.shape, np.uint8)
    cv2.fillPoly(polygon, [np.asarray(truth["outline"], np.int32)], 1)
    assert (polygon.astype(bool) & region).sum() / (polygon.astype(bool) | region).sum() > 0.97


def test_ground_truth_json_holds_the_face_region_of_the_rendered_frames(synth_tiny):
    import json

    from mmhe.features.face_mask import face_mask, mask_iou

    truth = json.loads((synth_tiny / "ground_truth.json").read_text())
    person = truth["participants"][0]
    region = person["face_region"]
    width, height = region["frame_size"]
    expected = np.zeros((height, width), np.uint8)
    cv2.fillPoly(expected, [np.asarray(region["outline"], np.int32)], 1)
    frame_path = sorted((synth_tiny / person["folder"] / "Camera").rglob("*.tif"))[0]
    frame = tifffile.imread(frame_path)
    assert frame.shape == (height, width, 3)
    # the head sways by at most 2 px at this size: the region still matches the frame
    assert mask_iou(face_mask(frame), expected.astype(bool)) > 0.75
