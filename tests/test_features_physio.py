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

import neurokit2 as nk

from mmhe.errors import ConfigError
from mmhe.features import physio
from mmhe.features.physio import PhysioResult


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


def test_heart_rate_of_recorded_ppg_matches_heartpy(ppg_recording):
    _, measures = heartpy.process(ppg_recording, 100.0)
    ours = physio.heart_rate(ppg_recording, 100.0, kind="ppg")
    assert abs(ours - measures["bpm"]) < 2.0
    result = physio.ppg_features(ppg_recording, 100.0)
    assert result.flags == []
    assert result.features["rate_bpm"] == pytest.approx(ours)
    assert result.features["quality"] > 0.8


def test_heart_rate_and_hrv_of_simulated_ecg(ecg_72):
    assert abs(physio.heart_rate(ecg_72, 1000.0) - 72.0) < 1.0
    features, flags = physio.ecg_features(ecg_72, 1000.0)
    assert flags == []
    assert abs(features["rate_bpm"] - 72.0) < 1.0
    # the simulation varies the RR intervals a little: HRV small, positive, finite
    assert 0.0 < features["rmssd_ms"] < 50.0
    assert 0.0 < features["sdnn_ms"] < 50.0
    assert 0.0 <= features["pnn50_percent"] <= 100.0


def test_hrv_time_domain_matches_definition_on_planted_rr():
    """A pulse train with known RR intervals: RMSSD, SDNN and pNN50 by hand."""
    sfreq = 1000.0
    rr = np.tile([0.80, 0.86, 0.78, 0.90], 10)  # seconds
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
    assert all(math.isnan(v) for v in features.values())
    assert len(flags) == 1 and "outside 30-220 bpm" in flags[0]
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
        (physio.emg_features, np.r_[np.arange(999.0), np.nan], "not finite"),
    ],
)
def test_unusable_segments_are_nan_and_flagged(function, signal, problem):
    features, flags = function(signal, 1000.0)
    assert features and all(math.isnan(v) for v in features.values())
    assert len(flags) == 1 and problem in flags[0]


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
        "EMG_B: channel missing from the recording",
        "SKT_B: flat signal (every sample equals 30)",
    ]


def test_result_is_a_named_pair():
    result = physio.skin_temperature_features(np.linspace(30.0, 31.0, 100), 10.0)
    assert isinstance(result, PhysioResult)
    features, flags = result
    assert features is result.features and flags is result.flags
