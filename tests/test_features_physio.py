"""Physiology features against recorded data, simulations and planted signals."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

with warnings.catch_warnings():  # heartpy imports the deprecated pkg_resources
    warnings.simplefilter("ignore")
    import heartpy

from pathlib import Path

import neurokit2 as nk
from scipy.signal import butter, find_peaks, sosfiltfilt

from mmhe.errors import ConfigError
from mmhe.features import cardiac, physio
from mmhe.features.physio import PhysioResult
from mmhe.io.biopac import read_biopac

BIOREAD_DATA = Path(__file__).parent / "data" / "bioread"  # real AcqKnowledge files, MIT


@pytest.fixture(scope="module")
def real_acq():
    """A real AcqKnowledge 5 recording (ECG 1000 Hz, EDA 2000 Hz, RSP 3.9 Hz, 62 s) and
    the same recording saved by AcqKnowledge 3.8 with a garbage tail."""
    return (
        read_biopac(BIOREAD_DATA / "physio-5.0.1-c.acq"),
        read_biopac(BIOREAD_DATA / "physio-3.8.1-c.acq"),
    )


def reference_r_peaks(ecg: np.ndarray, sfreq: float) -> np.ndarray:
    """An independent R-peak count: peaks of the absolute slope of the 8-20 Hz band
    (where the QRS lives and T waves do not), at least 350 ms apart, then moved to the
    largest band-passed sample within 30 ms."""
    band = sosfiltfilt(butter(2, [8.0, 20.0], btype="band", fs=sfreq, output="sos"), ecg)
    slope = np.abs(np.gradient(band))
    peaks, _ = find_peaks(slope, height=0.15 * np.percentile(slope, 99), distance=0.35 * sfreq)
    w = round(0.03 * sfreq)
    return np.array([p - w + int(np.argmax(band[max(p - w, 0) : p + w])) for p in peaks if p >= w])


def reference_pulse_peaks(ppg: np.ndarray, sfreq: float) -> np.ndarray:
    """An independent pulse count: maxima of the 0.5-8 Hz band above SD / 2, >= 400 ms apart."""
    band = sosfiltfilt(butter(2, [0.5, 8.0], btype="band", fs=sfreq, output="sos"), ppg)
    peaks, _ = find_peaks(band, distance=0.4 * sfreq, height=0.5 * np.std(band))
    return peaks


def rate_and_rmssd(peaks: np.ndarray, sfreq: float) -> tuple[float, float]:
    rr_ms = np.diff(peaks) / sfreq * 1000.0
    return 60000.0 / rr_ms.mean(), float(np.sqrt(np.mean(np.diff(rr_ms) ** 2)))


@pytest.fixture(scope="module")
def ppg_recording() -> np.ndarray:
    data, _ = heartpy.load_exampledata(0)  # a recorded PPG at 100 Hz, bundled with heartpy
    return np.asarray(data, dtype=float)


@pytest.fixture(scope="module")
def ecg_72() -> np.ndarray:
    return nk.ecg_simulate(duration=30, sampling_rate=1000, heart_rate=72, random_state=0)


def planted_eda(onsets_s, amplitudes_us, sfreq=100.0, seconds=40.0) -> np.ndarray:
    """Tonic 5 uS with a slow drift plus SCRs (fast rise, 3-s decay) of known amplitude."""
    t = np.arange(round(seconds * sfreq)) / sfreq
    eda = 5.0 + 0.01 * t
    for onset, amplitude in zip(onsets_s, amplitudes_us, strict=True):
        u = np.clip(t - onset, 0.0, None)
        shape = (1.0 - np.exp(-3.0 * u)) * np.exp(-u / 3.0)
        eda += amplitude * shape / shape.max()
    return eda


# ----------------------------------------------------------------- rates


def test_heart_rate_of_recorded_ppg_matches_an_independent_count(ppg_recording):
    reference_rate, reference_rmssd = rate_and_rmssd(
        reference_pulse_peaks(ppg_recording, 100.0), 100.0
    )
    _, measures = heartpy.process(ppg_recording, 100.0)
    ours = physio.heart_rate(ppg_recording, 100.0, kind="ppg")
    assert abs(ours - reference_rate) < 1.0 and abs(ours - measures["bpm"]) < 1.0
    result = physio.ppg_features(ppg_recording, 100.0)
    assert result.features["rate_bpm"] == pytest.approx(ours)
    assert result.features["rmssd_ms"] == pytest.approx(reference_rmssd, rel=0.15)
    assert result.features["quality"] > 0.8 and result.features["n_corrected"] == 0
    # 25 s: RMSSD yes, SDNN and pNN50 no (they need 60 s)
    assert math.isnan(result.features["sdnn_ms"]) and math.isnan(result.features["pnn50_percent"])
    assert result.flags == [
        "window of 24.8 s too short for sdnn_ms (needs 60 s), pnn50_percent (needs 60 s)"
    ]


def test_long_clipped_ppg_recording_rate_matches_an_independent_count():
    data, timer = heartpy.load_exampledata(2)  # 11 min PPG, peaks clipped at the ADC top
    sfreq = 1.0 / np.mean(
        np.diff(pd.to_datetime(timer, format="mixed").values).astype(float) * 1e-9
    )
    ppg = np.asarray(data, dtype=float)
    reference_rate, _ = rate_and_rmssd(reference_pulse_peaks(ppg, sfreq), sfreq)
    features, _ = physio.ppg_features(ppg, sfreq)
    assert abs(features["rate_bpm"] - reference_rate) < 1.0
    assert features["n_corrected"] > 0 and np.isfinite(features["sdnn_ms"])


def test_real_ecg_rate_and_rmssd_match_a_clean_r_peak_count(real_acq):
    """The acceptance figure of issue 12 on a real AcqKnowledge ECG: two false R peaks on
    the slow wave after the QRS raise HR by 2 bpm and RMSSD 2.5x unless corrected."""
    recording = real_acq[0]
    ecg, sfreq = recording.signals["ECG"].to_numpy(), recording.sfreq
    reference = reference_r_peaks(ecg, sfreq)
    reference_rate, reference_rmssd = rate_and_rmssd(reference, sfreq)
    rr = np.diff(reference) / sfreq
    assert reference.size >= 67 and 0.78 < rr.min() and rr.max() < 1.05  # a clean count

    features, _ = physio.ecg_features(ecg, sfreq)
    assert abs(features["rate_bpm"] - reference_rate) < 1.0
    assert features["rmssd_ms"] == pytest.approx(reference_rmssd, rel=0.15)
    assert features["n_beats"] >= 67 and features["n_corrected"] >= 2
    assert features["quality"] > 0.9
    # without the Kubios correction the detector's own peaks are wrong
    detected = cardiac.detect_beats(ecg, sfreq, "ecg").detected
    raw_rate, raw_rmssd = rate_and_rmssd(detected, sfreq)
    assert abs(raw_rate - reference_rate) > 1.5 and raw_rmssd > 2 * reference_rmssd


def test_garbage_tail_is_masked_and_features_come_from_the_valid_part(real_acq):
    clean, garbage = real_acq
    assert garbage.bad_segments["masked"].all() and len(garbage.bad_segments)
    assert np.nanmax(np.abs(garbage.signals.to_numpy())) < 200  # no 1e306 survives
    ours, flags = physio.physio_features(garbage.signals, garbage.sfreq)
    reference, _ = physio.physio_features(clean.signals, clean.sfreq)
    for name in ("ECG_rate_bpm", "ECG_rmssd_ms", "EDA_tonic_mean", "EDA_scr_count"):
        assert ours[name] == pytest.approx(reference[name], rel=0.01), name
    assert 3.0 < ours["EDA_tonic_mean"] < 4.5  # the issue saw -1.4e300 uS here
    assert any(f.startswith("EDA: 395 of") and "masked" in f for f in flags)
    assert any(f.startswith("ECG:") and "masked" in f for f in flags)


def test_hrv_equals_neurokit_hrv_time_on_the_same_beats(real_acq):
    recording = real_acq[0]
    beats = cardiac.detect_beats(recording.signals["ECG"].to_numpy(), recording.sfreq, "ecg")
    rr_ms, kept = cardiac.rr_intervals(beats.peaks, recording.sfreq)
    assert kept.all()
    ours = cardiac.hrv_time_domain(rr_ms, kept)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = nk.hrv_time(beats.peaks, sampling_rate=int(recording.sfreq))
    assert ours["rmssd_ms"] == pytest.approx(theirs["HRV_RMSSD"].iloc[0], rel=1e-12)
    assert ours["sdnn_ms"] == pytest.approx(theirs["HRV_SDNN"].iloc[0], rel=1e-12)
    assert ours["pnn50_percent"] == pytest.approx(theirs["HRV_pNN50"].iloc[0], rel=1e-12)


def test_quality_default_is_close_to_neurokit_templatematch(real_acq):
    ecg, sfreq = real_acq[0].signals["ECG"].to_numpy(), real_acq[0].sfreq
    cheap, _ = physio.ecg_features(ecg, sfreq)
    slow, _ = physio.ecg_features(ecg, sfreq, quality="templatematch")
    assert cheap["quality"] == pytest.approx(slow["quality"], abs=0.02)
    assert {k: v for k, v in cheap.items() if k != "quality"} == {
        k: v for k, v in slow.items() if k != "quality"
    }
    with pytest.raises(ConfigError, match="quality"):
        physio.ecg_features(ecg, sfreq, quality="best")


def test_rsp_and_eda_steps_give_the_values_of_the_full_neurokit_pipelines(real_acq):
    """Issue 21: only the NeuroKit2 steps whose outputs are used, same values."""
    signals, sfreq = real_acq[0].signals, real_acq[0].sfreq
    rsp = signals["RSP"].to_numpy()
    eda = signals["EDA"].to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rsp_signals, rsp_info = nk.rsp_process(rsp, sampling_rate=int(sfreq))
        eda_signals, eda_info = nk.eda_process(eda, sampling_rate=int(sfreq))
    peaks = np.asarray(rsp_info["RSP_Peaks"])
    rsp_features, _ = physio.rsp_features(rsp, sfreq)
    assert rsp_features["rate_per_min"] == pytest.approx(60.0 / np.mean(np.diff(peaks) / sfreq))
    assert rsp_features["amplitude_mean"] == pytest.approx(
        np.nanmean(rsp_signals["RSP_Amplitude"].to_numpy()[peaks]), rel=1e-12
    )
    amplitudes = np.asarray(eda_info["SCR_Amplitude"])
    amplitudes = amplitudes[np.isfinite(amplitudes) & (amplitudes >= physio.SCR_MIN_AMPLITUDE)]
    eda_features, _ = physio.eda_features(eda, sfreq)
    assert eda_features["tonic_mean"] == pytest.approx(eda_signals["EDA_Tonic"].mean(), rel=1e-12)
    assert eda_features["scr_count"] == amplitudes.size
    assert eda_features["scr_amplitude_mean"] == pytest.approx(amplitudes.mean(), rel=1e-12)


def test_real_recording_features_equal_with_and_without_memoised_filter_designs(
    real_acq, monkeypatch
):
    """Every physiology feature of a real AcqKnowledge recording is exactly what NeuroKit2
    gives when scipy designs each Butterworth filter anew (`memoised_butter` off)."""
    import contextlib

    from mmhe.features import _physio_common

    recording = real_acq[0]
    memoised = physio.physio_features(recording.signals, recording.sfreq)
    monkeypatch.setattr(_physio_common, "memoised_butter", lambda: contextlib.nullcontext())
    fresh = physio.physio_features(recording.signals, recording.sfreq)
    assert memoised.flags == fresh.flags
    assert sum(math.isfinite(v) for v in memoised.features.values()) >= 10
    assert list(memoised.features) == list(fresh.features)
    for name, value in memoised.features.items():
        assert value == fresh.features[name] or (
            math.isnan(value) and math.isnan(fresh.features[name])
        ), name


def test_r42_recording_negative_conductance_never_becomes_a_feature():
    recording = read_biopac(BIOREAD_DATA / "r42_test.acq")  # EDA channel reads -1.06..-0.93 uS
    assert recording.unknown_channels == ["CH4 Input"] and "CH4 Input" in recording.signals
    assert recording.signals["EDA"].isna().all()
    assert "outside 0.05-100 uS" in recording.bad_segments["reason"].iloc[0]
    features, flags = physio.physio_features(recording.signals, recording.sfreq)
    assert all(math.isnan(features[f"EDA_{name}"]) for name in physio.EDA_FEATURES)
    assert "EDA: no valid sample: all 7901 masked (NaN)" in flags
    reference_rate, _ = rate_and_rmssd(
        reference_r_peaks(recording.signals["ECG"].to_numpy(), recording.sfreq), recording.sfreq
    )
    assert abs(features["ECG_rate_bpm"] - reference_rate) < 1.0
    assert math.isnan(features["ECG_rmssd_ms"])  # 7.9 s < the 10 s RMSSD needs
    assert "RSP: channel missing from the recording" in flags


def test_only_a_derived_eda_channel_is_not_called_missing():
    t = np.arange(20_000) / 1000.0
    signals = pd.DataFrame({"EDA_DIFF": np.sin(t)})
    _, flags = physio.physio_features(signals, 1000.0)
    assert (
        "EDA: only derived channel(s) EDA_DIFF in the recording; EDA features need the "
        "raw signal" in flags
    )


def test_heart_rate_and_hrv_of_simulated_ecg(ecg_72):
    assert abs(physio.heart_rate(ecg_72, 1000.0) - 72.0) < 1.0
    features, flags = physio.ecg_features(ecg_72, 1000.0)
    assert flags == [
        "window of 30.0 s too short for sdnn_ms (needs 60 s), pnn50_percent (needs 60 s)"
    ]
    assert abs(features["rate_bpm"] - 72.0) < 1.0
    # the simulation varies the RR intervals a little: RMSSD small, positive, finite
    assert 0.0 < features["rmssd_ms"] < 50.0
    assert math.isnan(features["sdnn_ms"]) and math.isnan(features["pnn50_percent"])
    assert features["n_beats"] == pytest.approx(36, abs=1) and features["n_corrected"] == 0


@pytest.mark.parametrize(
    ("seconds", "finite"),
    [(8.0, set()), (20.0, {"rmssd_ms"}), (61.0, {"rmssd_ms", "sdnn_ms", "pnn50_percent"})],
)
def test_hrv_measures_need_their_minimum_window(seconds, finite):
    sfreq = 250.0
    rr = 0.85 + 0.05 * np.sin(2 * np.pi * np.arange(120) / 4.3)
    beats = np.round(np.concatenate([[0.5], 0.5 + np.cumsum(rr)]) * sfreq).astype(int)
    signal = np.zeros(round(seconds * sfreq))
    beats = beats[beats < signal.size - 50]
    kernel = np.exp(-0.5 * (np.arange(-10, 11) / 3.0) ** 2)  # a 30-ms wide R wave
    for b in beats:
        signal[b - 10 : b + 11] += kernel
    features, flags = physio.ecg_features(signal, sfreq)
    hrv = {name for name in cardiac.HRV_MIN_DURATION_S if np.isfinite(features[name])}
    assert hrv == finite
    assert bool(flags) == (finite != set(cardiac.HRV_MIN_DURATION_S))


def test_ectopic_and_false_beats_are_corrected_and_counted():
    """Planted sinus RR with one premature beat and two T-wave false peaks."""
    sfreq = 500.0
    rng = np.random.default_rng(3)
    rr = 0.85 + 0.03 * np.sin(np.arange(80) / 3.0) + rng.normal(0, 0.005, 80)
    sinus = np.round((0.5 + np.concatenate([[0.0], np.cumsum(rr)])) * sfreq).astype(int)
    shown = sinus.copy()
    shown[30] -= round(0.3 * sfreq)  # premature (ectopic) beat
    signal = np.zeros(sinus[-1] + round(sfreq))
    qrs = np.exp(-0.5 * (np.arange(-8, 9) / 2.5) ** 2)
    for b in shown:
        signal[b - 8 : b + 9] += qrs
    for b in shown[[10, 50]]:  # tall, sharp T waves read as extra beats
        signal[b + round(0.4 * sfreq) - 8 : b + round(0.4 * sfreq) + 9] += qrs
    features, flags = physio.ecg_features(signal, sfreq)
    truth_rate, truth_rmssd = rate_and_rmssd(sinus, sfreq)
    assert abs(features["rate_bpm"] - truth_rate) < 1.0
    assert features["rmssd_ms"] == pytest.approx(truth_rmssd, rel=0.15)
    detected = cardiac.detect_beats(signal, sfreq, "ecg").detected
    assert detected.size == sinus.size + 2  # the detector did take the two T waves
    assert features["n_beats"] == sinus.size and features["n_corrected"] >= 4
    assert flags == ["artefact correction changed 5 of 83 beats (6 % > 5 %)"]


def test_hrv_time_domain_matches_definition_on_planted_rr():
    """A pulse train with known RR intervals: RMSSD, SDNN and pNN50 by hand."""
    sfreq = 1000.0
    rng = np.random.default_rng(0)  # respiratory sinus arrhythmia + noise, 67 s
    rr = 0.85 + 0.05 * np.sin(2 * np.pi * np.arange(80) / 4.3) + rng.normal(0, 0.01, 80)
    beats = np.round(np.concatenate([[1.0], 1.0 + np.cumsum(rr)]) * sfreq).astype(int)
    t = np.arange(beats[-1] + 1000) / sfreq
    ecg = nk.ecg_simulate(duration=3, sampling_rate=1000, heart_rate=60, random_state=1)
    # build an ECG by placing one simulated beat (its R peak at 250) at each planted time
    r_peak = 1000 + int(np.argmax(ecg[1000:2000]))
    beat = ecg[r_peak - 250 : r_peak + 350]
    signal = np.zeros(t.size)
    for b in beats:
        signal[b - 250 : b + 350] += beat
    features, flags = physio.ecg_features(signal, sfreq)
    assert flags == []
    intervals_ms = np.diff(beats) / sfreq * 1000.0
    assert features["rate_bpm"] == pytest.approx(60000.0 / intervals_ms.mean(), abs=0.5)
    successive = np.diff(intervals_ms)
    assert features["rmssd_ms"] == pytest.approx(np.sqrt(np.mean(successive**2)), rel=0.05)
    assert features["sdnn_ms"] == pytest.approx(np.std(intervals_ms, ddof=1), rel=0.05)
    assert features["pnn50_percent"] == pytest.approx(
        100.0 * np.mean(np.abs(successive) > 50.0), abs=3.0
    )


def test_breathing_rate_of_simulated_rsp():
    rsp = nk.rsp_simulate(duration=60, sampling_rate=100, respiratory_rate=15, random_state=0)
    features, flags = physio.rsp_features(rsp, 100.0)
    assert flags == []
    assert abs(features["rate_per_min"] - 15.0) < 1.0
    assert features["amplitude_mean"] > 0.0
    assert 0.0 < features["breath_interval_sd_s"] < 1.0


# ----------------------------------------------------------------- EDA, EMG, SKT


@pytest.mark.parametrize(
    ("onsets", "amplitudes"),
    [((5.0, 15.0, 25.0), (0.5, 0.8, 0.3)), ((4.0, 12.0, 22.0, 31.0), (0.2, 0.2, 0.2, 0.2))],
)
def test_scr_count_and_amplitude_of_planted_responses(onsets, amplitudes):
    features, flags = physio.eda_features(planted_eda(onsets, amplitudes), 100.0)
    assert flags == []
    assert features["scr_count"] == len(onsets)
    assert features["scr_amplitude_mean"] == pytest.approx(np.mean(amplitudes), rel=0.1)
    assert 5.0 < features["tonic_mean"] < 6.0


def test_eda_without_responses_counts_none():
    rng = np.random.default_rng(0)
    eda = 5.0 + rng.normal(0.0, 0.002, 4000)  # sensor noise below the SCR criterion
    features, flags = physio.eda_features(eda, 100.0)
    assert flags == []
    assert features["scr_count"] == 0
    assert math.isnan(features["scr_amplitude_mean"])


def test_emg_rms_of_a_sine_above_the_high_pass():
    amplitude = 1e-3
    t = np.arange(2000) / 1000.0
    emg = amplitude * np.sin(2 * np.pi * 250.0 * t) + 0.5  # offset removed by cleaning
    features, flags = physio.emg_features(emg, 1000.0)
    assert flags == []
    assert features["rms"] == pytest.approx(amplitude / np.sqrt(2), rel=0.01)


def test_emg_at_low_sampling_rate_is_flagged_but_kept():
    emg = np.sin(2 * np.pi * 30.0 * np.arange(400) / 200.0)
    features, flags = physio.emg_features(emg, 200.0)
    assert features["rms"] == pytest.approx(1 / np.sqrt(2), rel=1e-3)
    assert len(flags) == 1 and "below 250 Hz" in flags[0]


def test_skin_temperature_slope_of_a_linear_drift_is_exact():
    sfreq = 50.0
    t = np.arange(400) / sfreq
    features, flags = physio.skin_temperature_features(33.2 + 0.004 * t, sfreq)
    assert flags == []
    assert features["slope_per_s"] == pytest.approx(0.004, rel=1e-9)
    assert features["mean"] == pytest.approx(33.2 + 0.004 * t.mean(), rel=1e-12)


# ----------------------------------------------------------------- plausibility


def test_wrong_sampling_rate_gives_implausible_heart_rate_flagged(ecg_72):
    # declared 250 Hz for a 1000 Hz recording: 72 bpm reads as 18 bpm
    features, flags = physio.ecg_features(ecg_72, 250.0)
    assert all(math.isnan(features[name]) for name in physio.CARDIAC_FEATURES[:5])
    assert any("RR intervals outside 0.27-2.00 s excluded" in flag for flag in flags)
    assert "outside 30-220 bpm" in flags[-1]
    assert math.isnan(physio.heart_rate(ecg_72, 250.0))


@pytest.mark.parametrize("breaths_per_min", [60.0, 3.0])
def test_implausible_breathing_rate_flagged(breaths_per_min):
    t = np.arange(60 * 100) / 100.0
    features, flags = physio.rsp_features(np.sin(2 * np.pi * breaths_per_min / 60 * t), 100.0)
    assert all(math.isnan(v) for v in features.values())
    assert len(flags) == 1 and "outside 4-40 /min" in flags[0]


@pytest.mark.parametrize(
    ("function", "signal", "problem"),
    [
        (physio.ecg_features, np.zeros(8000), "flat signal"),
        (physio.ppg_features, np.full(8000, 2.5), "flat signal"),
        (physio.eda_features, np.full(8000, 5.0), "flat signal"),
        (physio.skin_temperature_features, np.full(8000, 33.0), "flat signal"),
        (physio.ecg_features, np.ones(1000), "shorter than 4 s"),
        (physio.rsp_features, np.arange(8000.0), "shorter than 15 s"),
        (physio.emg_features, np.r_[np.arange(999.0), np.inf], "not finite"),
        (physio.skin_temperature_features, np.full(2000, np.nan), "no valid sample"),
        (physio.eda_features, np.r_[np.full(5000, np.nan), np.linspace(5, 6, 4000)], "not finite"),
    ],
)
def test_unusable_segments_are_nan_and_flagged(function, signal, problem):
    features, flags = function(signal, 1000.0)
    assert features and all(math.isnan(v) for v in features.values())
    assert len(flags) == 1 and problem in flags[0]


def test_a_nan_run_leaves_the_longest_valid_part_flagged():
    t = np.arange(6000) / 100.0
    skt = 33.0 + 0.01 * t
    skt[4000:4300] = np.nan  # masked at read time
    features, flags = physio.skin_temperature_features(skt, 100.0)
    assert features["slope_per_s"] == pytest.approx(0.01, rel=1e-9)
    assert features["mean"] == pytest.approx(skt[:4000].mean())
    assert flags == ["300 of 6000 samples masked (NaN); features from the valid part 0.00-40.00 s"]


def test_noise_has_low_cardiac_quality():
    rng = np.random.default_rng(1)
    features, _ = physio.ecg_features(rng.standard_normal(10_000), 1000.0)
    assert not features["quality"] > 0.6  # NaN (flagged) or a low template match


def test_bad_arguments_raise():
    with pytest.raises(ConfigError, match="1-D"):
        physio.ecg_features(np.zeros((2, 100)), 1000.0)
    with pytest.raises(ConfigError, match="positive"):
        physio.eda_features(np.zeros(100), 0.0)
    with pytest.raises(ConfigError, match="kind"):
        physio.heart_rate(np.zeros(100), 100.0, kind="eeg")
    with pytest.raises(ConfigError, match="numbers"):
        physio.rsp_features(["a", "b"], 100.0)
    with pytest.raises(ConfigError, match="DataFrame"):
        physio.physio_features(np.zeros((8, 100)), 100.0)


# ----------------------------------------------------------------- all channels


def test_physio_features_of_a_whole_segment(ecg_72):
    sfreq, n = 1000.0, 30_000
    t = np.arange(n) / sfreq
    signals = pd.DataFrame(
        {
            "ECG": ecg_72,
            "PPG": nk.ppg_simulate(duration=30, sampling_rate=1000, heart_rate=65, random_state=2),
            "RSP": nk.rsp_simulate(
                duration=30, sampling_rate=1000, respiratory_rate=12, random_state=3
            ),
            "EDA": np.interp(t, np.arange(4000) / 100.0, planted_eda((5.0, 15.0), (0.4, 0.6))),
            "EMG_A": 1e-3 * np.sin(2 * np.pi * 250.0 * t),
            "SKT_A": 33.0 + 0.002 * t,
            "SKT_B": np.full(n, 30.0),
            "Digital": np.zeros(n),  # extra columns are ignored
        }
    )
    features, flags = physio.physio_features(signals, sfreq)
    assert list(features) == physio.physio_feature_names()
    assert abs(features["ECG_rate_bpm"] - 72.0) < 1.0
    assert abs(features["PPG_rate_bpm"] - 65.0) < 2.0
    assert abs(features["RSP_rate_per_min"] - 12.0) < 1.5
    assert features["EDA_scr_count"] == 2
    assert features["EMG_A_rms"] == pytest.approx(1e-3 / np.sqrt(2), rel=0.01)
    assert features["SKT_A_slope_per_s"] == pytest.approx(0.002, rel=1e-9)
    assert math.isnan(features["EMG_B_rms"]) and math.isnan(features["SKT_B_mean"])
    assert sorted(flags) == [
        "ECG: window of 30.0 s too short for sdnn_ms (needs 60 s), pnn50_percent (needs 60 s)",
        "EMG_B: channel missing from the recording",
        "PPG: window of 30.0 s too short for sdnn_ms (needs 60 s), pnn50_percent (needs 60 s)",
        "SKT_B: flat signal (every sample equals 30)",
    ]


def test_result_is_a_named_pair():
    result = physio.skin_temperature_features(np.linspace(30.0, 31.0, 100), 10.0)
    assert isinstance(result, PhysioResult)
    features, flags = result
    assert features is result.features and flags is result.flags


# ----------------------------------------------------------------- synthetic twin


@pytest.mark.parametrize("seed", [0, 2])
def test_planted_rate_and_rmssd_recovered_despite_synthetic_artefacts(seed):
    """`mmhe synth` ECG: tall T waves, ectopic and missed beats, wander, motion bursts."""
    from mmhe.synth.design import Block
    from mmhe.synth.physio import GRID_HZ, simulate_body

    blocks = [Block(101, "sadness", 5.0, 185.0, 1, 1)]
    body = simulate_body(blocks, 0.0, int(190 * GRID_HZ), 1.0, np.random.default_rng(seed))
    assert body.ectopic_s.size >= 1  # the twin does fight back
    segment = body.ecg[int(5 * GRID_HZ) : int(185 * GRID_HZ)]
    features, _ = physio.ecg_features(segment, GRID_HZ)
    sinus = body.r_peaks_s[(body.r_peaks_s >= 5.0) & (body.r_peaks_s < 185.0)]
    planted_rate, planted_rmssd = rate_and_rmssd(sinus, 1.0)
    assert planted_rmssd == pytest.approx(body.trial_targets[101]["rmssd_ms"], rel=1e-3)
    assert abs(features["rate_bpm"] - planted_rate) < 1.0
    assert features["rmssd_ms"] == pytest.approx(planted_rmssd, rel=0.15)
    assert features["n_corrected"] >= body.ectopic_s.size  # every ectopic beat corrected


# ----------------------------------------------------------------- event-related


def test_event_related_rate_change_and_scr_latency_are_recovered():
    """A heart stepping from 60 to 75 bpm 1 s after the event, and an SCR of 0.5 uS whose
    onset is 2.5 s after it, on a 60-s trial."""
    from mmhe.features.physio_events import event_features, trial_series

    sfreq, event_s = 250.0, 30.0
    beats, t = [], 1.0
    while t < 59.0:
        beats.append(t)
        t += 1.0 if t < event_s + 1.0 else 0.8
    signal = np.zeros(int(60 * sfreq))
    kernel = np.exp(-0.5 * (np.arange(-10, 11) / 3.0) ** 2)
    for b in np.round(np.array(beats) * sfreq).astype(int):
        signal[b - 10 : b + 11] += kernel
    eda = np.interp(
        np.arange(signal.size) / sfreq,
        np.arange(6000) / 100.0,
        planted_eda((event_s + 2.5,), (0.5,), seconds=60.0),
    )
    series = trial_series(pd.DataFrame({"ECG": signal, "EDA": eda}), sfreq)
    features = event_features(series, event_s)
    assert features["ECG_rate_change_bpm"] == pytest.approx(12.5, abs=2.5)  # mostly at 75
    assert features["ECG_rate_max_change_bpm"] == pytest.approx(15.0, abs=1.0)
    assert abs(features["ECG_rate_min_change_bpm"]) < 1.0
    assert features["EDA_scr_event"] == 1.0
    assert features["EDA_scr_onset_latency_s"] == pytest.approx(2.5, abs=0.3)
    assert features["EDA_scr_amplitude_us"] == pytest.approx(0.5, rel=0.15)
    assert math.isnan(features["RSP_rate_change_per_min"])  # no respiration channel
    quiet = event_features(series, 10.0)  # no SCR 1-5 s after 10 s, steady heart
    assert quiet["EDA_scr_event"] == 0.0 and math.isnan(quiet["EDA_scr_onset_latency_s"])
    assert abs(quiet["ECG_rate_change_bpm"]) < 0.5


def _eda_phasic(eda: np.ndarray, rate: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cleaned = nk.eda_clean(eda, sampling_rate=rate)
        return nk.eda_phasic(cleaned, sampling_rate=rate)["EDA_Phasic"].to_numpy()


@pytest.mark.parametrize("source", ["real", "planted", "noise", "flat"])
def test_scr_amplitudes_equal_neurokit_eda_peaks(real_acq, source):
    """Issue 21: the SCR amplitudes without ``eda_peaks``' recovery search and formatting
    are NeuroKit2's own, bit for bit; where ``eda_peaks`` fails, so does this."""
    if source == "real":
        rate = int(real_acq[0].sfreq)
        eda = real_acq[0].signals["EDA"].to_numpy()
    elif source == "planted":
        rate, eda = 100, planted_eda((5.0, 15.0, 25.0), (0.5, 0.8, 0.3))
    elif source == "noise":
        rate, eda = 100, 5.0 + np.random.default_rng(0).normal(0.0, 0.002, 4000)
    else:
        rate, eda = 100, np.full(4000, 5.0)
    phasic = _eda_phasic(eda, rate)

    def ours() -> dict:
        found = nk.eda_findpeaks(phasic, sampling_rate=rate, amplitude_min=0.1)
        return physio.scr_amplitudes(nk.eda_fixpeaks(found), phasic)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _, expected = nk.eda_peaks(phasic, sampling_rate=rate, amplitude_min=0.1)
        except ValueError:
            with pytest.raises(ValueError):
                ours()
            assert source == "flat"  # no SCR candidate at all: NeuroKit2 cannot go on
            return
        mine = ours()
    assert len(expected["SCR_Amplitude"]) > 0
    for key in ("SCR_Onsets", "SCR_Peaks", "SCR_Height", "SCR_Amplitude"):
        np.testing.assert_array_equal(mine[key], expected[key])
