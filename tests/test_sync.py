"""Marker alignment between device clocks, trials and expression lookup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmhe.errors import AlignmentError, ConfigError
from mmhe.io.camera import FrameSequence, parse_frame_name
from mmhe.sync import align, build_timeline

TIME_OF_DAY = 11 * 3600 + 5 * 60 + 50.0  # camera clock at EEG time 0 (before the offset)


def session_markers(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A rest marker before each of the 48 clips in random order, 30-60 s apart (EEG s)."""
    codes = np.ravel([[100, m] for m in rng.permutation(np.arange(101, 149))])
    onsets = 5.0 + np.cumsum(rng.uniform(30.0, 60.0, codes.size))
    return onsets, codes


@pytest.mark.parametrize(
    ("offset_s", "drift_ppm", "seed", "missing_side"),
    [(0.037, 50.0, 1, "other"), (0.037, 50.0, 2, "reference"), (-0.120, -180.0, 3, "other")],
)
def test_align_recovers_planted_offset_and_drift(
    offset_s: float, drift_ppm: float, seed: int, missing_side: str
) -> None:
    rng = np.random.default_rng(seed)
    t_ref, codes = session_markers(rng)
    slope = 1.0 + drift_ppm * 1e-6
    # other clock = camera time of day: t_ref = offset + slope * (t_other - TIME_OF_DAY)
    t_other = (t_ref - offset_s) / slope + TIME_OF_DAY
    keep = rng.random(codes.size) >= 0.10  # about 10 % lost on one side
    spurious_t, spurious_codes = np.array([700.0, 1900.5]), np.array([112, 77])
    ref = pd.DataFrame({"onset_s": np.round(t_ref, 3), "code": codes})
    other = pd.DataFrame({"onset_s": np.round(t_other, 3), "code": codes})
    if missing_side == "other":
        other = other[keep]
        spurious = pd.DataFrame({"onset_s": spurious_t, "code": spurious_codes})
        ref = pd.concat([ref, spurious], ignore_index=True)
    else:
        ref = ref[keep]
        spurious = pd.DataFrame({"onset_s": spurious_t + TIME_OF_DAY, "code": spurious_codes})
        other = pd.concat([other, spurious], ignore_index=True)

    result = align(ref, other)

    assert result.drift_ppm == pytest.approx(drift_ppm, abs=1.0)
    # the offset at the start of the recording (the time-of-day part removed)
    assert result.to_reference(TIME_OF_DAY) == pytest.approx(offset_s, abs=1e-3)
    assert result.offset_s == pytest.approx(offset_s - slope * TIME_OF_DAY, abs=5e-3)
    mapped = result.to_reference((t_ref - offset_s) / slope + TIME_OF_DAY)
    assert np.max(np.abs(mapped - t_ref)) < 1e-3
    assert result.n_matched == keep.sum() == len(result.matched)
    assert result.residual_ms_max < 1.5 and not result.warnings  # two 0.5 ms roundings
    assert (result.matched["code"] == codes[keep]).all()
    assert len(result.unmatched) == (~keep).sum() + 2
    # everything left over sits on the side that kept all events and got the extras
    extra_side = "reference" if missing_side == "other" else "other"
    assert (result.unmatched["side"] == extra_side).all()
    assert sorted(result.unmatched["code"]) == sorted([*codes[~keep], 77, 112])


def test_mapping_both_ways_are_exact_inverses() -> None:
    rng = np.random.default_rng(4)
    t_ref, codes = session_markers(rng)
    other = pd.DataFrame({"onset_s": t_ref * (1 - 120e-6) + 61234.5, "code": codes})
    result = align(pd.DataFrame({"onset_s": t_ref, "code": codes}), other)
    t = rng.uniform(0, 5000, size=(3, 7))
    np.testing.assert_allclose(result.to_reference(result.to_other(t)), t, rtol=0, atol=1e-9)
    u = t + 61234.5
    np.testing.assert_allclose(result.to_other(result.to_reference(u)), u, rtol=0, atol=1e-9)
    assert result.to_other(t).shape == (3, 7)


def test_too_few_matches_raise_with_the_counts() -> None:
    ref = pd.DataFrame({"onset_s": [1.0, 50.0, 90.0, 130.0], "code": [101, 102, 103, 104]})
    other = pd.DataFrame({"onset_s": [1001.0, 1050.0, 1300.0], "code": [101, 102, 120]})
    with pytest.raises(AlignmentError, match=r"only 2 of 4 reference and 3 other markers"):
        align(ref, other)
    disjoint = pd.DataFrame({"onset_s": [5.0, 9.0, 12.0], "code": [140, 141, 142]})
    with pytest.raises(AlignmentError, match="no marker code in common"):
        align(ref, disjoint)
    with pytest.raises(AlignmentError, match=r"lack the column\(s\) \['code'\]"):
        align(ref, other.rename(columns={"code": "marker"}))
    with pytest.raises(AlignmentError, match="repeated row labels"):
        align(pd.concat([ref, ref]), other)
    with pytest.raises(AlignmentError, match="without a finite onset_s"):
        align(ref.assign(onset_s=[1.0, np.nan, 90.0, 130.0]), other)
    with pytest.raises(ConfigError, match="min_matches"):
        align(ref, other, min_matches=1)


def test_jittered_markers_give_a_poor_fit_warning() -> None:
    rng = np.random.default_rng(5)
    t_ref, codes = session_markers(rng)
    jitter = rng.normal(0.0, 0.020, codes.size)  # 20 ms trigger jitter
    other = pd.DataFrame({"onset_s": t_ref + 3000.0 + jitter, "code": codes})
    result = align(pd.DataFrame({"onset_s": t_ref, "code": codes}), other, max_residual_ms=5.0)
    assert result.n_matched >= 0.95 * codes.size
    assert result.residual_ms_max > 5.0
    assert any(w.startswith("poor fit") for w in result.warnings)
    assert result.offset_s == pytest.approx(-3000.0, abs=0.02)


def test_an_outlier_event_is_rejected_and_reported() -> None:
    rng = np.random.default_rng(6)
    t_ref, codes = session_markers(rng)
    t_other = t_ref + 250.0
    t_other[10] += 0.030  # one trigger 30 ms late
    result = align(
        pd.DataFrame({"onset_s": t_ref, "code": codes}),
        pd.DataFrame({"onset_s": t_other, "code": codes}),
    )
    assert result.n_matched == codes.size - 1
    assert 10 not in result.matched["other_index"].to_numpy()
    assert set(result.unmatched["index"]) == {10}
    assert result.residual_ms_max < 1e-6
    assert any("rejected as outliers" in w and "30.0" in w for w in result.warnings)


# --- build_timeline and locate on a small hand-built session -----------------------------

EEG_SFREQ, PHYSIO_SFREQ, FPS = 1000.0, 2000.0, 150.0
EEG_CODES = [100, 112, 113, 100, 114]
EEG_ONSETS = [1.0, 3.0, 5.0, 7.0, 8.0]
PHYSIO_LEAD_S = 2.5  # BIOPAC started 2.5 s before the EEG
CAMERA_OFFSET_S = TIME_OF_DAY  # camera time of day at EEG time 0
RUN_FRAMES = 75  # 0.5 s of frames per recorded marker


def frame_time_ms(onset_s: float, k: int) -> int:
    return round((CAMERA_OFFSET_S + onset_s) * 1000) + round(k * 1000 / FPS)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Camera recorded markers 100, 112, 100, 114 (not 113); names only, empty files."""
    root = tmp_path_factory.mktemp("Camera")
    counter = 950
    for code, onset in zip(EEG_CODES, EEG_ONSETS, strict=True):
        if code == 113:
            continue
        folder = root / str(code)
        folder.mkdir(exist_ok=True)
        for k in range(RUN_FRAMES):
            seconds, ms = divmod(frame_time_ms(onset, k), 1000)
            hh, rest = divmod(seconds, 3600)
            mm, ss = divmod(rest, 60)
            name = f"2023-07-18-{hh:02d}-{mm:02d}-{ss:02d}-{ms:03d}-{counter % 1000:03d}-{code}.tif"
            (folder / name).write_bytes(b"")
            counter += 1
    eeg = pd.DataFrame({"onset_s": EEG_ONSETS, "code": EEG_CODES})
    physio = pd.DataFrame({"onset_s": np.add(EEG_ONSETS, PHYSIO_LEAD_S), "code": EEG_CODES})
    frames = FrameSequence(root, fps=FPS)
    timeline = build_timeline(
        eeg,
        physio,
        frames,
        eeg_sfreq=EEG_SFREQ,
        physio_sfreq=PHYSIO_SFREQ,
        fps=FPS,
        eeg_duration_s=10.0,
        physio_duration_s=15.0,
        camera_latency_s=0.0,  # these runs start exactly at their markers
    )
    return {"root": root, "frames": frames, "timeline": timeline, "eeg": eeg, "physio": physio}


def test_timeline_aligns_devices_to_the_eeg(session: dict) -> None:
    timeline = session["timeline"]
    physio, camera = timeline.alignments["physio"], timeline.alignments["camera"]
    assert physio.offset_s == pytest.approx(-PHYSIO_LEAD_S, abs=1e-9)
    assert camera.offset_s == pytest.approx(-CAMERA_OFFSET_S, abs=1e-6)
    assert camera.drift_ppm == pytest.approx(0.0, abs=1e-3)
    assert (physio.n_matched, camera.n_matched) == (5, 4)
    assert camera.unmatched[["side", "code"]].values.tolist() == [["reference", 113]]


def test_trials_give_every_device_its_samples(session: dict) -> None:
    trials = session["timeline"].trials
    assert trials["code"].tolist() == EEG_CODES
    assert trials["end_s"].tolist() == [3.0, 5.0, 7.0, 8.0, 10.0]
    assert trials["eeg_start"].tolist() == [1000, 3000, 5000, 7000, 8000]
    assert trials["eeg_stop"].tolist() == [3000, 5000, 7000, 8000, 10000]
    assert trials["physio_start"].tolist() == [7000, 11000, 15000, 19000, 21000]
    assert trials["physio_stop"].tolist() == [11000, 15000, 19000, 21000, 25000]
    assert trials["frame_start"].tolist() == [0, 75, pd.NA, 150, 225]
    assert trials["frame_stop"].tolist() == [75, 150, pd.NA, 225, 300]
    for column in ["eeg_start", "physio_stop", "frame_start"]:
        assert trials[column].dtype == "Int64"


def test_timeline_without_camera_or_biopac_leaves_their_columns_empty(session: dict) -> None:
    timeline = build_timeline(session["eeg"], None, None, eeg_sfreq=EEG_SFREQ)
    assert timeline.alignments == {}
    trials = timeline.trials
    assert trials["eeg_start"].tolist() == [1000, 3000, 5000, 7000, 8000]
    assert trials["eeg_stop"].tolist()[-1] is pd.NA  # EEG length unknown
    for column in ["physio_start", "physio_stop", "frame_start", "frame_stop"]:
        assert trials[column].isna().all()


def tod(name: str) -> float:
    return parse_frame_name(name).seconds_of_day


def test_locate_maps_expressions_into_every_device(session: dict) -> None:
    frames = session["frames"]
    names = [Path(p).name for p in frames.index["path"]]
    run_112 = 75  # first row of the marker-112 run
    onset_name = "-".join(names[run_112 + 30].split("-")[3:8])  # HH-MM-SS-mmm-CCC
    apex_name = "-".join(names[run_112 + 45].split("-")[3:7])  # counter-less HH-MM-SS-mmm
    nan = np.nan
    expressions = pd.DataFrame(
        [
            # frame time of day (one name with and one without counter), offset by clip time
            (112, tod(onset_name), tod(apex_name), nan, 0.2, 0.3, 0.4),
            # clip-relative seconds only (marker 114 run starts at EEG 8.0 s)
            (114, nan, nan, nan, 0.1, 0.2, 0.3),
            # the camera did not record marker 113: clip start = EEG marker onset
            (113, nan, nan, nan, 0.25, 0.3, 0.35),
            # outside the 0.5 s recording of marker 112
            (112, nan, nan, nan, 1.0, 0.1, 0.2),
            # marker 113 with a frame time of day: the camera clock still maps it
            (113, TIME_OF_DAY + 5.1, nan, nan, nan, nan, nan),
        ],
        columns=[
            "marker",
            "onset_tod_s",
            "apex_tod_s",
            "offset_tod_s",
            "onset_s",
            "apex_s",
            "offset_s",
        ],
        index=[10, 11, 12, 13, 14],
    )
    located = session["timeline"].locate(expressions)
    assert located.index.tolist() == [10, 11, 12, 13, 14]
    na = pd.NA
    assert located["eeg_onset"].tolist() == [3200, 8100, 5250, na, 5100]
    assert located["eeg_apex"].tolist() == [3300, 8200, 5300, 3100, na]
    assert located["eeg_offset"].tolist() == [3400, 8300, 5350, 3200, na]
    assert located["physio_onset"].tolist() == [11400, 21200, 15500, na, 15200]
    assert located["frame_onset"].tolist() == [run_112 + 30, 225 + 15, na, na, na]
    assert located["frame_apex"].tolist() == [run_112 + 45, 225 + 30, na, run_112 + 15, na]
    assert located["frame_offset"].tolist() == [run_112 + 60, 225 + 45, na, run_112 + 30, na]
    assert located["located_by"].tolist() == [
        "clip_time+frame_time",
        "clip_time",
        "clip_time",
        "clip_time",
        "frame_time",
    ]
    problems = located["locate_problem"]
    assert problems.isna().tolist() == [True, True, False, False, False]
    assert "no camera frames for marker 113" in problems[12]
    assert "onset at 1.000 s lies outside the camera recording of marker 112" in problems[13]
    assert "marker 113 was not recorded by the camera" in problems[14]
    assert "no apex time given" in problems[14]
    for column in ["eeg_onset", "physio_apex", "frame_offset"]:
        assert located[column].dtype == "Int64"


def test_locate_without_camera_uses_the_eeg_marker_onset(session: dict) -> None:
    timeline = build_timeline(session["eeg"], None, None, eeg_sfreq=EEG_SFREQ)
    expressions = pd.DataFrame(
        {"marker": [112, 140], "onset_tod_s": [TIME_OF_DAY + 3.2, np.nan], "onset_s": [np.nan, 1.0]}
    )
    located = timeline.locate(expressions)
    assert located["eeg_onset"].isna().all() and located["frame_onset"].isna().all()
    assert "a frame time of day needs the camera frames" in located["locate_problem"][0]
    assert "marker 140 has neither camera frames nor an EEG trial" in located["locate_problem"][1]
    clip_only = timeline.locate(pd.DataFrame({"marker": [112], "onset_s": [0.5]}))
    assert clip_only["eeg_onset"].tolist() == [3500]
    assert clip_only["located_by"].tolist() == ["clip_time"]


def test_polled_camera_start_is_compensated(tmp_path) -> None:
    """Runs start U(0, 1/fps) after their trigger; the default removes the mean lag."""
    rng = np.random.default_rng(11)
    onsets = 10.0 + np.cumsum(rng.uniform(20.0, 40.0, 40))
    codes = rng.choice(np.arange(101, 149), size=onsets.size, replace=False)
    counter = 0
    for onset, code in zip(onsets, codes, strict=True):
        first = TIME_OF_DAY + onset + rng.uniform(0.0, 1.0 / FPS)
        folder = tmp_path / str(code)
        folder.mkdir()
        for k in range(3):
            ms_of_day = int(np.floor((first + k / FPS) * 1000.0))
            seconds, ms = divmod(ms_of_day, 1000)
            hh, rest = divmod(seconds, 3600)
            mm, ss = divmod(rest, 60)
            name = f"2023-07-18-{hh:02d}-{mm:02d}-{ss:02d}-{ms:03d}-{counter % 1000:03d}-{code}.tif"
            (folder / name).write_bytes(b"")
            counter += 1
    eeg = pd.DataFrame({"onset_s": onsets, "code": codes})
    frames = FrameSequence(tmp_path, fps=FPS)
    compensated = build_timeline(eeg, None, frames, eeg_sfreq=EEG_SFREQ, fps=FPS)
    naive = build_timeline(eeg, None, frames, eeg_sfreq=EEG_SFREQ, fps=FPS, camera_latency_s=0.0)
    camera_times = TIME_OF_DAY + onsets  # when the triggers really came, camera clock
    error_compensated = compensated.alignments["camera"].to_reference(camera_times) - onsets
    error_naive = naive.alignments["camera"].to_reference(camera_times) - onsets
    assert np.abs(error_compensated).max() < 1.5e-3
    assert error_naive.mean() < -2.5e-3  # a systematic lag of about half a frame (3.3 ms)


@pytest.mark.parametrize("seed", range(4))
def test_theil_sen_equals_scipy_theilslopes(seed):
    """The clock fit's Theil-Sen line is scipy's, without importing scipy.stats at ingest."""
    from scipy import stats

    from mmhe.sync import theil_sen

    rng = np.random.default_rng(seed)
    n = 5 + 40 * seed
    x = np.sort(rng.uniform(0, 3000, n))
    x[1] = x[0]  # a tie in x: that pair has no slope
    y = 1.00002 * x + 12.5 + rng.normal(0, 0.002, n)
    y[rng.integers(0, n, 2)] += 5.0  # outliers the median ignores
    slope, intercept = theil_sen(x, y)
    expected = stats.theilslopes(y, x)
    assert slope == expected.slope and intercept == expected.intercept
    assert slope == pytest.approx(1.00002, abs=1e-5)
