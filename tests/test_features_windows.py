"""Window bounds on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from mmhe.errors import ConfigError
from mmhe.features import windows
from mmhe.features.windows import EEG_WINDOW, PHYSIO_WINDOW, WindowSpec


def test_eeg_default_window_onset_minus_1_to_offset_plus_1():
    onset = np.array([10.0, 20.25, 30.1234])
    offset = np.array([10.4, 21.0, 30.5])
    bounds = windows.window_bounds(onset, offset, sfreq=1000.0, n_samples=100_000)
    np.testing.assert_array_equal(bounds.start, [9000, 19250, 29123])
    np.testing.assert_array_equal(bounds.stop, [11400, 22000, 31500])
    assert not bounds.clipped.any() and bounds.valid.all()
    assert bounds.start.dtype == np.int64


def test_physio_window_onset_minus_2_to_onset_plus_6():
    onset = np.array([5.0, 12.5])
    bounds = PHYSIO_WINDOW.bounds(onset, sfreq=500.0, n_samples=10_000)
    np.testing.assert_array_equal(bounds.start, [1500, 5250])
    np.testing.assert_array_equal(bounds.stop, [5500, 9250])
    np.testing.assert_array_equal(bounds.stop - bounds.start, [4000, 4000])  # 8 s


def test_windows_are_clipped_to_the_recording_and_flagged():
    onset = np.array([0.5, 50.0, 99.0, 200.0])
    offset = onset + 0.5
    bounds = EEG_WINDOW.bounds(onset, offset, sfreq=100.0, n_samples=10_000)
    np.testing.assert_array_equal(bounds.start, [0, 4900, 9800, 0])
    np.testing.assert_array_equal(bounds.stop, [200, 5150, 10_000, 0])
    np.testing.assert_array_equal(bounds.clipped, [True, False, True, True])
    np.testing.assert_array_equal(bounds.valid, [True, True, True, False])


def test_missing_times_give_invalid_windows_not_errors():
    bounds = windows.window_bounds([1.0, np.nan], [2.0, 3.0], sfreq=10.0)
    np.testing.assert_array_equal(bounds.valid, [True, False])
    np.testing.assert_array_equal(bounds.start, [0, 0])
    np.testing.assert_array_equal(bounds.stop, [30, 0])
    np.testing.assert_array_equal(bounds.clipped, [False, False])


def test_apex_anchor_and_scalar_times():
    spec = WindowSpec(("apex", -0.5), ("apex", 0.5))
    bounds = spec.bounds(3.0, 4.0, apex_s=3.2, sfreq=100.0)
    np.testing.assert_array_equal(bounds.start, [270])
    np.testing.assert_array_equal(bounds.stop, [370])
    with pytest.raises(ConfigError, match="apex_s was not given"):
        spec.bounds(3.0, 4.0, sfreq=100.0)


def test_rounding_to_the_nearest_sample():
    # 0.0014 s * 1000 = 1.4 -> 1; 0.0016 s -> 2 (start), as documented
    spec = WindowSpec(("onset", 0.0), ("onset", 0.01))
    bounds = spec.bounds([0.0014, 0.0016], sfreq=1000.0)
    np.testing.assert_array_equal(bounds.start, [1, 2])
    np.testing.assert_array_equal(bounds.stop, [11, 12])


def test_trial_bounds_with_padding():
    bounds = windows.trial_bounds(
        [10.0, 75.0], [70.0, 135.0], sfreq=250.0, pad_s=(2.0, 1.0), n_samples=250 * 135
    )
    np.testing.assert_array_equal(bounds.start, [2000, 18250])
    np.testing.assert_array_equal(bounds.stop, [17750, 33750])
    np.testing.assert_array_equal(bounds.clipped, [False, True])


def test_cut_windows_returns_views_in_order():
    data = np.arange(2 * 100).reshape(2, 100)
    bounds = windows.window_bounds([0.2, np.nan], [0.3, 0.5], sfreq=10.0, n_samples=100)
    cut = windows.cut_windows(data, bounds)
    assert len(cut) == 2
    np.testing.assert_array_equal(cut[0], data[:, 0:13])  # 0.2 - 1 s clipped to 0, 0.3 + 1 s
    assert cut[1].shape == (2, 0)
    assert np.shares_memory(cut[0], data)


def test_bad_specifications_raise():
    with pytest.raises(ConfigError, match="anchor"):
        WindowSpec(("peak", 0.0), ("offset", 1.0))
    with pytest.raises(ConfigError, match="before it starts"):
        WindowSpec(("onset", 2.0), ("onset", 1.0))
    with pytest.raises(ConfigError, match="sfreq"):
        windows.window_bounds([1.0], [2.0], sfreq=0.0)
    with pytest.raises(ConfigError, match="shapes"):
        windows.window_bounds([1.0, 2.0], [2.0, 3.0, 4.0], sfreq=100.0)
    with pytest.raises(ConfigError, match="offset_s was not given"):
        windows.window_bounds([1.0], sfreq=100.0)
