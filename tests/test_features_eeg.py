"""EEG features against closed forms, MNE and the band-pass filter definition."""

from __future__ import annotations

import mne
import numpy as np
import pytest
import scipy.signal

from mmhe.errors import ConfigError
from mmhe.features import eeg
from mmhe.features.eeg import FIVE_BANDS

BAND_NAMES = list(FIVE_BANDS)


def sine(freq: float, amplitude: float, sfreq: float, seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * sfreq)) / sfreq
    return amplitude * np.sin(2 * np.pi * freq * t + 0.3)


def pink_noise(rng: np.random.Generator, n_channels: int, n_samples: int, sfreq: float):
    """1/f-power Gaussian noise band-limited to 1-47 Hz (what `preprocess` leaves), volts."""
    spectrum = np.fft.rfft(rng.standard_normal((n_channels, n_samples)), axis=-1)
    freqs = np.fft.rfftfreq(n_samples, 1.0 / sfreq)
    spectrum[:, 1:] /= np.sqrt(freqs[1:])
    spectrum[:, (freqs < 1.0) | (freqs > 47.0)] = 0.0
    return np.fft.irfft(spectrum, n_samples, axis=-1) * 1e-5


# ----------------------------------------------------------------- closed forms


@pytest.mark.parametrize("freq", [10.0, 10.3])
def test_alpha_sine_band_power_and_de(freq):
    amplitude, sfreq = 20e-6, 1000.0
    data = sine(freq, amplitude, sfreq, 10.0)[np.newaxis]
    power = eeg.band_power(data, sfreq)
    assert power.shape == (10, 1, 5)
    share = power / power.sum(axis=-1, keepdims=True)
    assert np.all(share[..., BAND_NAMES.index("alpha")] > 0.95)

    de = eeg.differential_entropy(data, sfreq)[..., BAND_NAMES.index("alpha")]
    expected = 0.5 * np.log(2 * np.pi * np.e * amplitude**2 / 2)
    np.testing.assert_allclose(de, expected, rtol=0.01)
    # and the variance behind it, which the 1 % on a log value would hide
    variance = np.exp(2 * de) / (2 * np.pi * np.e)
    np.testing.assert_allclose(variance, amplitude**2 / 2, rtol=0.01)


def test_de_of_white_noise_matches_band_variance():
    """White noise of variance s2 has s2 * 2 (fmax - fmin) / sfreq in each band."""
    rng = np.random.default_rng(7)
    sfreq, sigma = 250.0, 3e-6
    data = rng.normal(0.0, sigma, size=(8, 250 * 600))
    de = eeg.differential_entropy(data, sfreq)
    variance = (np.exp(2 * de) / (2 * np.pi * np.e)).mean(axis=(0, 1))
    expected = np.array([sigma**2 * 2 * (hi - lo) / sfreq for lo, hi in FIVE_BANDS.values()])
    np.testing.assert_allclose(variance, expected, rtol=0.03)


def test_de_agrees_with_zero_phase_butterworth_filter_version():
    """The spectral DE against sosfiltfilt band-pass + variance per window (module doc)."""
    rng = np.random.default_rng(3)
    sfreq = 250.0
    data = pink_noise(rng, 8, 250 * 120, sfreq)
    spectral = eeg.differential_entropy(data, sfreq)
    filtered = []
    for lo, hi in FIVE_BANDS.values():
        sos = scipy.signal.butter(4, [lo, hi], btype="bandpass", fs=sfreq, output="sos")
        band = scipy.signal.sosfiltfilt(sos, data, axis=-1)
        variance = band.reshape(8, 120, 250).var(axis=-1).T
        filtered.append(0.5 * np.log(2 * np.pi * np.e * variance))
    difference = spectral - np.stack(filtered, axis=-1)
    assert np.all(np.abs(difference.mean(axis=(0, 1))) < 0.1)
    assert np.all(difference.std(axis=(0, 1)) < 0.3)


# ----------------------------------------------------------------- MNE parity


@pytest.mark.parametrize(
    ("sfreq", "window_s", "nperseg", "noverlap"),
    [(1000.0, 1.0, None, None), (250.0, 2.0, 128, 64), (200.0, 1.0, 51, 10), (512.0, 1.0, 256, 0)],
)
def test_band_power_equals_mne_psd_array_welch(sfreq, window_s, nperseg, noverlap):
    rng = np.random.default_rng(11)
    n_window = round(window_s * sfreq)
    data = rng.standard_normal((4, n_window * 6 + 17)) * 1e-5 + 2e-4  # DC offset, tail
    power = eeg.band_power(data, sfreq, window_s=window_s, nperseg=nperseg, noverlap=noverlap)

    windows = data[:, : 6 * n_window].reshape(4, 6, n_window).transpose(1, 0, 2)
    n_seg = nperseg or n_window
    psd, freqs = mne.time_frequency.psd_array_welch(
        windows,
        sfreq,
        n_fft=n_seg,
        n_per_seg=n_seg,
        n_overlap=n_seg // 2 if noverlap is None else noverlap,
        window="hann",
        average="mean",
        verbose="error",
    )
    expected = np.stack(
        [psd[..., (freqs >= lo) & (freqs <= hi)].mean(axis=-1) for lo, hi in FIVE_BANDS.values()],
        axis=-1,
    )
    assert power.shape == expected.shape == (6, 4, 5)
    np.testing.assert_allclose(power, expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("n_window", [200, 201])  # even: Nyquist bin; odd: none
def test_window_psd_full_range_equals_mne(n_window):
    rng = np.random.default_rng(12)
    data = rng.standard_normal((2, 3 * n_window)) + 5.0
    freqs, psd = eeg.window_psd(data, float(n_window), 1.0)
    windows = data.reshape(2, 3, n_window).transpose(1, 0, 2)
    expected, expected_freqs = mne.time_frequency.psd_array_welch(
        windows, float(n_window), n_fft=n_window, window="hann", verbose="error"
    )
    np.testing.assert_allclose(freqs, expected_freqs)
    np.testing.assert_allclose(psd, expected, rtol=1e-9)


def test_window_psd_keeps_windows_and_channels_apart():
    rng = np.random.default_rng(0)
    data = rng.standard_normal((3, 3000))
    freqs, psd = eeg.window_psd(data, 1000.0)
    _, second = eeg.window_psd(data[1:2, 1000:2000], 1000.0)
    np.testing.assert_allclose(psd[1, 1], second[0, 0], rtol=1e-12)
    assert freqs[1] == 1.0 and psd.shape == (3, 3, 501)


# ----------------------------------------------------------------- preprocessing


def make_raw(sfreq: float = 500.0, seconds: float = 20.0) -> mne.io.RawArray:
    rng = np.random.default_rng(5)
    n = round(sfreq * seconds)
    eeg_data = rng.standard_normal((6, n)) * 2e-6
    eeg_data += sine(10.0, 10e-6, sfreq, seconds) + sine(50.0, 40e-6, sfreq, seconds)
    ecg = sine(1.2, 1e-3, sfreq, seconds)[np.newaxis] + sine(50.0, 1e-4, sfreq, seconds)
    info = mne.create_info([f"E{i}" for i in range(6)] + ["EKG"], sfreq, ["eeg"] * 6 + ["ecg"])
    return mne.io.RawArray(np.vstack([eeg_data, ecg]), info, verbose="error")


def amplitude_at(x: np.ndarray, freq: float, sfreq: float) -> np.ndarray:
    spectrum = np.abs(np.fft.rfft(x, axis=-1)) * 2 / x.shape[-1]
    return spectrum[..., round(freq * x.shape[-1] / sfreq)]


def test_preprocess_removes_line_noise_and_leaves_input_untouched():
    raw = make_raw()
    before = raw.get_data().copy()
    out = eeg.preprocess(raw)
    np.testing.assert_array_equal(raw.get_data(), before)
    assert out is not raw

    cleaned = out.get_data(picks="eeg")[:, 1000:-1000]  # away from the filter edges
    original = before[:6, 1000:-1000]
    line_before = amplitude_at(original, 50.0, 500.0)
    line_after = amplitude_at(cleaned, 50.0, 500.0)
    assert np.all(line_after < line_before * 1e-3)  # more than 60 dB down
    # the common 10 Hz rhythm is in every channel, so the average reference removes it;
    # the channel mean is zero at every sample
    np.testing.assert_allclose(out.get_data(picks="eeg").mean(axis=0), 0.0, atol=1e-18)
    # non-EEG channels are neither filtered nor re-referenced
    np.testing.assert_array_equal(out.get_data(picks="ecg"), before[6:])


def test_preprocess_keeps_in_band_signal_without_reference():
    raw = make_raw()
    out = eeg.preprocess(raw, reference=None)
    cleaned = out.get_data(picks="eeg")[:, 1000:-1000]
    alpha = amplitude_at(cleaned, 10.0, 500.0)
    np.testing.assert_allclose(alpha, 10e-6, rtol=0.05)


def test_preprocess_rejects_bad_arguments():
    raw = make_raw()
    with pytest.raises(ConfigError, match="Nyquist"):
        eeg.preprocess(raw, h_freq=300.0)
    with pytest.raises(ConfigError, match="below h_freq"):
        eeg.preprocess(raw, l_freq=40.0, h_freq=30.0)
    no_eeg = raw.copy().pick(["EKG"])
    with pytest.raises(ConfigError, match="no EEG channels"):
        eeg.preprocess(no_eeg)
    with pytest.raises(ConfigError, match=r"mne\.io\.Raw"):
        eeg.preprocess(np.zeros((2, 100)))


# ----------------------------------------------------------------- argument checks


def test_band_functions_reject_bad_arguments():
    data = np.zeros((2, 1000))
    with pytest.raises(ConfigError, match="fewer than one window"):
        eeg.band_power(data[:, :500], 1000.0)
    with pytest.raises(ConfigError, match="whole number"):
        eeg.band_power(data, 1000.0, window_s=0.0005)
    with pytest.raises(ConfigError, match="no frequency bin"):
        eeg.band_power(data, 1000.0, bands={"narrow": (10.2, 10.4)})
    with pytest.raises(ConfigError, match="Nyquist"):
        eeg.band_power(data, 80.0, window_s=12.5)
    with pytest.raises(ConfigError, match="n_channels, n_samples"):
        eeg.differential_entropy(np.zeros((2, 2, 1000)), 1000.0)


def test_one_dimensional_input_is_one_channel():
    x = sine(20.0, 1e-5, 500.0, 3.0)
    np.testing.assert_array_equal(eeg.band_power(x, 500.0), eeg.band_power(x[None], 500.0))


# ----------------------------------------------------------------- normalisation


def test_baseline_correct_modes():
    rng = np.random.default_rng(2)
    base = rng.uniform(1.0, 2.0, size=(30, 4, 5))
    x = rng.uniform(1.0, 3.0, size=(7, 4, 5))
    mean, sd = base.mean(axis=0), base.std(axis=0)
    np.testing.assert_allclose(eeg.baseline_correct(x, base, "ratio"), x / mean)
    np.testing.assert_allclose(eeg.baseline_correct(x, base, "db"), 10 * np.log10(x / mean))
    np.testing.assert_allclose(eeg.baseline_correct(x, base, "zscore"), (x - mean) / sd)
    np.testing.assert_allclose(eeg.baseline_correct(x, base, "mean"), x - mean)
    with pytest.raises(ConfigError, match="same trailing shape"):
        eeg.baseline_correct(x, base[:, :3], "ratio")
    with pytest.raises(ConfigError, match="not one of"):
        eeg.baseline_correct(x, base, "percent")
    # a baseline of ratio 1: the rest block against itself averages to 1
    np.testing.assert_allclose(eeg.baseline_correct(base, base).mean(axis=0), 1.0)


def test_zscore_fitted_on_training_rows_only():
    rng = np.random.default_rng(4)
    features = rng.normal(5.0, 2.0, size=(40, 3))
    features[20:] += 100.0  # the "test" rows differ a lot
    train = np.arange(40) < 20
    mean, std = eeg.fit_zscore(features[train])
    z = eeg.apply_zscore(features, mean, std)
    np.testing.assert_allclose(z[train].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z[train].std(axis=0), 1.0)
    assert np.all(z[~train].mean(axis=0) > 20)  # the test rows did not leak into the fit

    constant = eeg.fit_zscore(np.ones((5, 2)))
    np.testing.assert_array_equal(constant[1], [1.0, 1.0])


def test_zscore_per_subject():
    rng = np.random.default_rng(6)
    subjects = np.repeat(["s1", "s2"], 10)
    features = rng.normal(size=(20, 4)) + np.where(subjects == "s1", 0.0, 50.0)[:, None]
    fit_rows = np.tile(np.arange(10) < 6, 2)
    stats = eeg.fit_zscore_per_subject(features, subjects, fit_mask=fit_rows)
    assert set(stats) == {"s1", "s2"}
    z = eeg.zscore_per_subject(features, subjects, stats)
    for subject in ("s1", "s2"):
        rows = (subjects == subject) & fit_rows
        np.testing.assert_allclose(z[rows].mean(axis=0), 0.0, atol=1e-12)
        np.testing.assert_allclose(z[rows].std(axis=0), 1.0)
    with pytest.raises(ConfigError, match="subject 's2'"):
        eeg.zscore_per_subject(features, subjects, {"s1": stats["s1"]})
