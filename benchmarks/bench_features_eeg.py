"""Benchmark: EEG band power + differential entropy against MNE and the common way.

One participant: 42 one-minute trials x 64 channels at 1000 Hz, 1-s windows, on one core
(CPU seconds of this process, BLAS/FFT threads limited to one).
Timed in the same run, one trial at a time (never more than one trial's intermediates):

- mmhe: `band_power` + `differential_entropy` (two calls, two FFTs), and the shared-
  spectrum path (`window_psd` once + `band_power_from_psd` + `differential_entropy_from_psd`);
- MNE: ``psd_array_welch`` as a user calls it on a trial: the continuous (channels,
  samples) data in chunks of channels under 10 MB (above 10 MB MNE falls back to
  ``np.apply_along_axis``, one scipy call per channel, ~10x slower: that is not how
  anyone should call it), Hann, n_fft = n_per_seg = 1000, no overlap, ``average=None``
  (one spectrum per 1-s window), then the band means: the reference for band power
  (must agree within 1e-6 relative);
- limit: one ``np.fft.rfft`` of all the trial's 1-s windows (reads every sample once and
  does the one transform any spectral feature needs);
- the common DE: ``scipy.signal.butter`` (order 4, b/a) + ``filtfilt`` per band per
  trial, variance per 1-s window; and the same Butterworth in second-order sections with
  ``sosfiltfilt``, the numerically sound version, against which the spectral DE is
  checked (window-averaged difference within 0.1 nats per band).

Run: ``.venv/bin/python benchmarks/bench_features_eeg.py [--trials 42]``. Prints each
path's seconds, its ratio to MNE (the anchor) and to the limit.
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import argparse
import time
from collections import defaultdict

import mne
import numpy as np
import scipy.signal
from threadpoolctl import threadpool_limits

from mmhe.features import eeg
from mmhe.features.eeg import FIVE_BANDS

SFREQ = 1000.0
N_CHANNELS = 64
TRIAL_S = 60
WINDOW = 1000


def synthetic_trial(rng: np.random.Generator) -> np.ndarray:
    """EEG-like trial, volts: 1/f noise band-limited to 1-47 Hz plus a 10 Hz alpha rhythm
    of random phase and amplitude per channel (what `eeg.preprocess` would leave)."""
    n = int(TRIAL_S * SFREQ)
    spectrum = np.fft.rfft(rng.standard_normal((N_CHANNELS, n)), axis=-1)
    freqs = np.fft.rfftfreq(n, 1.0 / SFREQ)
    spectrum[:, 1:] /= np.sqrt(freqs[1:])
    spectrum[:, (freqs < 1.0) | (freqs > 47.0)] = 0.0
    data = np.fft.irfft(spectrum, n, axis=-1) * 1e-5
    t = np.arange(n) / SFREQ
    phase = rng.uniform(0, 2 * np.pi, (N_CHANNELS, 1))
    amplitude = rng.uniform(1e-6, 5e-6, (N_CHANNELS, 1))
    return data + amplitude * np.sin(2 * np.pi * 10.0 * t + phase)


MNE_CHUNK_BYTES = 10e6
"""Above this size ``psd_array_welch`` falls back to ``np.apply_along_axis``."""


def mne_band_power(trial: np.ndarray) -> np.ndarray:
    """Band power per window (windows, channels, bands) from MNE's Welch PSD, called on
    channel chunks below `MNE_CHUNK_BYTES` with one spectrum per window."""
    per_channel = trial.shape[1] * trial.itemsize
    step = max(1, int((MNE_CHUNK_BYTES - 1) // per_channel))
    parts = []
    for first in range(0, trial.shape[0], step):
        psd, freqs = mne.time_frequency.psd_array_welch(
            trial[first : first + step],
            SFREQ,
            fmin=1.0,
            fmax=47.0,
            n_fft=WINDOW,
            n_per_seg=WINDOW,
            n_overlap=0,
            window="hann",
            average=None,
            verbose="error",
        )
        parts.append(psd)  # (channels, freqs, windows)
    psd = np.concatenate(parts).transpose(2, 0, 1)
    return np.stack(
        [psd[..., (freqs >= lo) & (freqs <= hi)].mean(axis=-1) for lo, hi in FIVE_BANDS.values()],
        axis=-1,
    )


def fft_limit(trial: np.ndarray) -> np.ndarray:
    """One real FFT of every 1-s window: the least any spectral feature costs."""
    return np.fft.rfft(trial.reshape(trial.shape[0], -1, WINDOW), axis=-1)


def butterworth_de(trial: np.ndarray, sos: bool) -> np.ndarray:
    out = []
    for lo, hi in FIVE_BANDS.values():
        if sos:
            sections = scipy.signal.butter(4, [lo, hi], btype="bandpass", fs=SFREQ, output="sos")
            band = scipy.signal.sosfiltfilt(sections, trial, axis=-1)
        else:
            b, a = scipy.signal.butter(4, [lo, hi], btype="bandpass", fs=SFREQ)
            band = scipy.signal.filtfilt(b, a, trial, axis=-1)
        variance = band.reshape(N_CHANNELS, -1, WINDOW).var(axis=-1).T
        with np.errstate(divide="ignore", invalid="ignore"):
            out.append(0.5 * np.log(2 * np.pi * np.e * variance))
    return np.stack(out, axis=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=42)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    times: dict[str, float] = defaultdict(float)
    worst_bp = 0.0
    de_diff_sum = np.zeros(5)
    de_diff_sq = np.zeros(5)
    ba_bad = np.zeros(5)
    n_values = 0

    def timed(name: str, function, *arguments):
        start = time.process_time()  # CPU seconds: robust to other jobs on the machine
        result = function(*arguments)
        times[name] += time.process_time() - start
        return result

    with threadpool_limits(limits=1):
        for _ in range(args.trials):
            trial = synthetic_trial(rng)
            power = timed("mmhe band_power", eeg.band_power, trial, SFREQ)
            de = timed("mmhe differential_entropy", eeg.differential_entropy, trial, SFREQ)

            def shared(x):
                freqs, psd = eeg.window_psd(x, SFREQ, fmax=47.5)
                return (
                    eeg.band_power_from_psd(psd, freqs),
                    eeg.differential_entropy_from_psd(psd, freqs),
                )

            power_shared, de_shared = timed("mmhe shared spectrum (both)", shared, trial)
            reference_power = timed("MNE psd_array_welch", mne_band_power, trial)
            timed("limit: rfft of all windows", fft_limit, trial)
            de_ba = timed("common DE: butter b/a + filtfilt", butterworth_de, trial, False)
            de_sos = timed("Butterworth DE: sos + sosfiltfilt", butterworth_de, trial, True)

            assert np.array_equal(power, power_shared) and np.array_equal(de, de_shared)
            worst_bp = max(
                worst_bp, float(np.max(np.abs(power - reference_power) / reference_power))
            )
            difference = de - de_sos
            de_diff_sum += difference.sum(axis=(0, 1))
            de_diff_sq += (difference**2).sum(axis=(0, 1))
            ba_bad += (~np.isfinite(de_ba) | (np.abs(de_ba - de_sos) > 1.0)).sum(axis=(0, 1))
            n_values += difference.shape[0] * difference.shape[1]
            del trial, power, de, power_shared, de_shared, reference_power, de_ba, de_sos

    times["mmhe band_power + differential_entropy"] = (
        times["mmhe band_power"] + times["mmhe differential_entropy"]
    )
    print(
        f"{args.trials} trials x {N_CHANNELS} channels x {TRIAL_S} s at {SFREQ:g} Hz, "
        "1-s windows, one core"
    )
    anchor, limit = times["MNE psd_array_welch"], times["limit: rfft of all windows"]
    print(f"  {'':40s} {'seconds':>8s} {'x MNE':>7s} {'x limit':>8s}")
    for name, seconds in times.items():
        print(f"  {name:<40s} {seconds:8.2f} {seconds / anchor:7.2f} {seconds / limit:8.2f}")
    mean_diff = de_diff_sum / n_values
    sd_diff = np.sqrt(de_diff_sq / n_values - mean_diff**2)
    print(f"band power vs MNE: max relative difference {worst_bp:.2e} (must be <= 1e-6)")
    for band, m, s, bad in zip(FIVE_BANDS, mean_diff, sd_diff, ba_bad, strict=True):
        print(
            f"DE {band:<6s} spectral - sosfiltfilt: mean {m:+.3f} nats, SD {s:.3f}; "
            f"b/a filtfilt off by > 1 nat in {bad / n_values:6.1%} of windows"
        )
    ok = worst_bp <= 1e-6 and bool(np.all(np.abs(mean_diff) < 0.1))
    print("values agree" if ok else "VALUES DISAGREE")
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
