"""Frame scores of long face videos and the training-free flow spotter on rendered videos."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import zarr

from mmhe.errors import ConfigError
from mmhe.evaluation.spotter import FlowSpotterParams, flow_candidates, select_intervals
from mmhe.evaluation.spotting import spotting_scores
from mmhe.features import face as F
from mmhe.features.spotting import (
    REGION_FRACTIONS,
    _Tracker,
    block_average,
    bump_scores,
    facial_regions,
    frame_scores,
    video_landmarks,
)
from mmhe.synth import face

FPS = 150.0


def render(seconds: float, events: list, seed: int = 0) -> np.ndarray:
    """A long grey face-crop video (n, 128, 128) of the synthetic face, as ingest stores it.

    events : (what, onset_s, apex_s, offset_s, value): ``"au"`` with {AU: peak}, or
    ``"head"`` with the (dx, dy) head shift in frame pixels at the apex. A slow lighting
    drift (5 %, 20 s period) and camera noise are always on.
    """
    rng = np.random.default_rng(seed)
    renderer = face.FaceRenderer(face.random_appearance(rng, 192, 144))
    box = F.detect_face(renderer.render({}), eyes=False).box
    n = round(seconds * FPS)
    out = np.empty((n, 128, 128), np.uint8)
    for i in range(n):
        t = i / FPS
        aus: dict[int, float] = {}
        shift = np.zeros(2)
        for what, onset, apex, offset, value in events:
            level = float(face.expression_intensity(t, onset, apex, offset))
            if what == "au":
                for au, peak in value.items():
                    aus[au] = max(aus.get(au, 0.0), peak * level)
            else:
                shift += level * np.asarray(value)
        image = renderer.render(aus, head_shift=tuple(shift), rng=np.random.default_rng([seed, i]))
        gain = 1 + 0.05 * np.sin(2 * np.pi * t / 20)
        image = np.clip(image * gain, 0, 255).astype(np.uint8)
        out[i] = F.to_grey(F.crop(image, box, 128, margin=0.15))
    return out


@pytest.fixture(scope="module")
def planted():
    """11 s: an ME (AU6+12), a blink, a head move, an MaE (AU15) and a second blink."""
    events = [
        ("au", 1.0, 1.15, 1.38, {12: 0.4, 6: 0.3}),
        ("au", 3.0, 3.06, 3.2, {45: 0.9}),
        ("head", 5.0, 5.4, 5.8, (1.2, 0.8)),
        ("au", 7.0, 7.5, 8.2, {15: 0.9}),
        ("au", 9.0, 9.05, 9.25, {45: 1.0}),
    ]
    return render(11.0, events), events


def test_regions_follow_the_face_layout_with_and_without_landmarks():
    regions = facial_regions(128)
    assert set(regions) == set(REGION_FRACTIONS)
    centre = {k: ((a + c) / 2, (b + d) / 2) for k, (a, b, c, d) in regions.items()}
    assert centre["brow_l"][1] < centre["eye_l"][1] < centre["cheek_l"][1] < centre["mouth_l"][1]
    assert centre["mouth_l"][1] < centre["chin"][1] and centre["brow_l"][0] < centre["brow_r"][0]
    assert all(0 <= a < c <= 128 and 0 <= b < d <= 128 for a, b, c, d in regions.values())
    # a 68-point shape (iBUG order) built from the same layout gives the same ordering
    points = np.zeros((68, 2))
    points[0:17] = np.c_[np.linspace(10, 118, 17), 60 + 50 * np.sin(np.linspace(0, np.pi, 17))]
    points[17:22] = np.c_[np.linspace(25, 55, 5), np.full(5, 35)]
    points[22:27] = np.c_[np.linspace(73, 103, 5), np.full(5, 35)]
    points[27:31] = np.c_[np.full(4, 64), np.linspace(50, 75, 4)]
    points[31:36] = np.c_[np.linspace(54, 74, 5), np.full(5, 80)]
    points[36:42] = np.c_[np.linspace(30, 50, 6), np.full(6, 50)]
    points[42:48] = np.c_[np.linspace(78, 98, 6), np.full(6, 50)]
    points[48:60] = np.c_[np.linspace(44, 84, 12), np.full(12, 95)]
    points[60:68] = np.c_[np.linspace(50, 78, 8), np.full(8, 95)]
    points[48], points[54], points[57], points[8] = (44, 95), (84, 95), (64, 100), (64, 115)
    marked = facial_regions(128, points)
    middle = {k: ((a + c) / 2, (b + d) / 2) for k, (a, b, c, d) in marked.items()}
    assert middle["brow_l"][1] < middle["eye_l"][1] < middle["mouth_l"][1] < middle["chin"][1]
    assert abs(middle["mouth_l"][0] - 44) < 2 and abs(middle["nose"][0] - 64) < 2
    with pytest.raises(ConfigError, match="68 finite"):
        facial_regions(128, points[:10])


def test_median_over_windows_bump_closed_form_and_block_average():
    tracker = _Tracker.build(facial_regions(128), 21, 1)
    rng = np.random.default_rng(0)
    shifts = rng.normal(size=(3, tracker.n_windows, 2))  # three block pairs at once
    shifts[rng.random(shifts.shape[:2]) < 0.3] = np.nan
    shifts[0, tracker.slots[0][tracker.slots[0] >= 0]] = np.nan  # a region lost entirely
    padded = np.concatenate([shifts, np.full((3, 1, 2), np.nan)], axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reference = np.nanmedian(padded[:, tracker.slots], axis=2)
    np.testing.assert_allclose(tracker.regions(shifts), reference)
    assert np.isnan(tracker.regions(shifts)[0, 0]).all()

    # D(t) a raised-cosine bump of 1 px in x: the score is sqrt((D(t)-D(t-L))(D(t)-D(t+L)))
    t, lag = np.arange(60), 6
    d = np.where(np.abs(t - 30) < 10, 0.5 + 0.5 * np.cos(np.pi * (t - 30) / 10), 0.0)
    motion = np.zeros((60, 1, 2))
    motion[: 60 - lag, 0, 0] = d[lag:] - d[:-lag]
    motion[60 - lag :] = np.nan
    score = bump_scores(motion, lag)[:, 0]
    inner = np.arange(lag, 60 - lag)
    expected = np.sqrt(np.clip((d[inner] - d[inner - lag]) * (d[inner] - d[inner + lag]), 0, None))
    np.testing.assert_allclose(score[inner], expected)
    assert score[30] == pytest.approx(0.5 - 0.5 * np.cos(np.pi * lag / 10))  # = 1 - D(24)
    assert score[:lag].max() == 0
    step = np.where(t >= 30, 1.0, 0.0)  # a lasting change is no bump
    motion[: 60 - lag, 0, 0] = step[lag:] - step[:-lag]
    assert bump_scores(motion, lag).max() == 0
    frames = np.arange(2 * 7 * 4, dtype=np.uint8).reshape(7, 2, 4)
    np.testing.assert_array_equal(
        block_average(frames, 3), np.rint(frames[:6].reshape(2, 3, 2, 4).mean(1))
    )


def test_frame_scores_stream_a_zarr_array(planted, tmp_path):
    video, _ = planted
    short = video[:600]
    stored = zarr.create_array(
        str(tmp_path / "v.zarr"), shape=short.shape, chunks=(150, 128, 128), dtype="uint8"
    )
    stored[...] = short
    a = frame_scores(short, FPS)
    b = frame_scores(stored, FPS, chunk_frames=300)  # read 300 frames at a time
    np.testing.assert_array_equal(a.motion, b.motion)
    assert a.stride == 5 and a.lags == (6, 12, 18, 27, 39, 54) and a.motion.shape[:2] == (6, 120)
    with pytest.raises(ConfigError, match="square crops"):
        frame_scores(np.zeros((10, 20, 30), np.uint8), FPS)


def test_flow_spotter_finds_planted_expressions_and_ignores_distractors(planted):
    video, _events = planted
    points = video_landmarks(video)  # 68 points on the crop: regions follow the face
    assert points is not None and points.shape == (68, 2)
    scores = frame_scores(video, FPS, landmarks=points)
    assert scores.meta["landmarks"]
    params = FlowSpotterParams()
    found = select_intervals(flow_candidates(scores, params.fraction), params, FPS)
    truth = pd.DataFrame(
        [
            ("v", round(1.0 * FPS), round(1.38 * FPS), "ME"),
            ("v", round(7.0 * FPS), round(8.2 * FPS), "MaE"),
        ],
        columns=["video", "onset", "offset", "kind"],
    )
    result = spotting_scores(truth, found.assign(video="v"))
    assert result["ME"]["tp"] == 1 and result["MaE"]["tp"] == 1
    assert result["overall"]["fp"] == 0, found
    # and the distractors are present in the video: the eyes and the head do move there
    detection = scores.detection()
    seconds = scores.frames / FPS
    assert detection.eyes[(seconds > 2.9) & (seconds < 3.3)].max() > 1.0
    assert detection.head[(seconds > 4.9) & (seconds < 5.9)].max() > 0.6


def test_no_expression_control_stays_below_the_stated_false_positive_rate():
    """20 s of a face that only blinks (3x), moves its head (2x) and sees the light drift:
    at most 3 intervals per minute are found with the default thresholds (one in these
    20 s; the rate is stated in README, "Spotting")."""
    events = [
        ("au", 3.0, 3.06, 3.2, {45: 0.9}),
        ("au", 10.0, 10.06, 10.25, {45: 0.8}),
        ("au", 16.0, 16.05, 16.2, {45: 1.0}),
        ("head", 6.0, 6.4, 6.8, (1.2, 0.8)),
        ("head", 13.0, 13.3, 13.6, (-1.0, 1.0)),
    ]
    scores = frame_scores(render(20.0, events, seed=1), FPS)
    params = FlowSpotterParams()
    found = select_intervals(flow_candidates(scores, params.fraction), params, FPS)
    assert len(found) / (20.0 / 60.0) <= 3.0, found
