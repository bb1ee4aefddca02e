"""EEG features: MNE preprocessing, band power and differential entropy per window.

The published EEG baseline of this dataset family (see ``docs/references.md``) band-passes
the EEG, computes the PSD in consecutive 1-s windows in five bands (1-4, 4-8, 8-13, 13-30,
30-47 Hz) per channel, and z-scores the features per subject. Differential entropy (DE) is
the other classic per-band feature (Duan, Zhu & Lu 2013, "Differential entropy feature for
EEG-based emotion classification", IEEE NER; Shi, Jiao & Lu 2013, EMBC).

Conventions (units SI, shapes as in MNE):

- ``data`` arrays are ``(n_channels, n_samples)`` in volts; windows are consecutive,
  non-overlapping and ``window_s`` long; trailing samples that do not fill a window are
  ignored.
- Spectra are Welch estimates per window with a periodic Hann taper, the segment mean
  removed, one-sided, in V^2/Hz: the numbers of ``mne.time_frequency.psd_array_welch``
  called with ``window="hann"``, ``average="mean"`` and the same ``n_fft = n_per_seg``
  and ``n_overlap`` on the same windows.
- Band power: the mean of the PSD over the bins with ``fmin <= f <= fmax`` (MNE's
  convention; a bin on a shared edge such as 4 Hz counts in both bands).
- Differential entropy: ``0.5 * ln(2 * pi * e * variance)`` (natural log, nats), where
  the variance of the band-limited signal is the integral of the PSD over the band
  (Parseval). Each bin holds the PSD over its cell ``f +- df / 2``; cells are clipped to
  ``[fmin, fmax]``, so the integral spans exactly ``fmax - fmin`` Hz. This is the
  spectral equivalent of band-pass filtering then taking the variance per window. Both
  features come from one spectrum: call `window_psd` once, then `band_power_from_psd`
  and `differential_entropy_from_psd`, to pay for a single FFT.

Agreement of the spectral DE with the filter version (4th-order Butterworth band-pass,
zero-phase with ``scipy.signal.sosfiltfilt`` over the whole input, variance per window),
checked in ``tests/test_features_eeg.py`` and ``benchmarks/bench_features_eeg.py``: on
1/f EEG-like noise band-limited to 1-47 Hz the window-averaged DE agrees within 0.1 nats
in every band (measured -0.07 to +0.05). The spectral DE is that of an ideal band-pass;
the Butterworth filter, applied forward and backward, passes about 10 % less of a flat
band's variance at its sloping edges, which lowers its DE by about 0.05 nats. Single 1-s
windows scatter by 0.1-0.25 nats SD between the two methods because both are noisy
estimates of the same band variance from one second of data. Known difference: the Hann
taper spreads a narrow spectral peak over +-2 bins, so a strong rhythm within 2 Hz of a
band edge partly counts in the neighbouring band (a Butterworth filter's transition band
leaks it too, by a different amount). Samples that are NaN make their window and channel
NaN.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Literal

import mne
import numpy as np
from numpy.typing import ArrayLike, NDArray

from mmhe.errors import ConfigError
from mmhe.features.bands import FIVE_BANDS

BaselineMode = Literal["ratio", "db", "zscore", "mean"]


# ----------------------------------------------------------------- preprocessing


def preprocess(
    raw: mne.io.BaseRaw,
    *,
    l_freq: float | None = 1.0,
    h_freq: float | None = 47.0,
    notch: float | None = 50.0,
    reference: Literal["average"] | Sequence[str] | None = "average",
) -> mne.io.BaseRaw:
    """Band-pass, notch-filter and re-reference a copy of an EEG recording.

    raw : MNE Raw (volts); only its EEG channels are filtered and re-referenced.
    l_freq, h_freq : band-pass edges in Hz (``None`` skips that side). Zero-phase FIR
        (``raw.filter(method="fir", phase="zero", fir_design="firwin")``, MNE's default
        transition bands).
    notch : power-line frequency in Hz; it and its harmonics below Nyquist are removed by
        MNE's zero-phase FIR notch filter (``None`` skips). Needed even with
        ``h_freq=47``: MNE's low-pass transition band reaches 52.9 Hz at -6 dB.
    reference : ``"average"`` (common average of the EEG channels, applied to the data,
        not as a projector), a list of reference channel names, or ``None`` to keep it.
    Returns a new Raw with its data loaded; ``raw`` itself is never modified. The copy
    doubles the memory of the data: crop long recordings first.
    """
    if not isinstance(raw, mne.io.BaseRaw):
        raise ConfigError(f"preprocess expects an mne.io.Raw, got {type(raw).__name__}")
    sfreq = float(raw.info["sfreq"])
    nyquist = sfreq / 2.0
    for name, value in (("l_freq", l_freq), ("h_freq", h_freq), ("notch", notch)):
        if value is not None and not 0.0 < value < nyquist:
            raise ConfigError(
                f"{name}={value} Hz is outside (0, {nyquist}) Hz for a recording sampled at "
                f"{sfreq} Hz; pass a frequency below Nyquist or None to skip this step"
            )
    if l_freq is not None and h_freq is not None and l_freq >= h_freq:
        raise ConfigError(f"l_freq={l_freq} Hz must be below h_freq={h_freq} Hz")
    eeg_picks = mne.pick_types(raw.info, eeg=True, exclude=[])
    if eeg_picks.size == 0:
        raise ConfigError(
            "the recording has no EEG channels; set the channel types "
            "(raw.set_channel_types) before preprocessing"
        )

    out = raw.copy().load_data()
    if notch is not None:
        harmonics = np.arange(notch, nyquist, notch)
        out.notch_filter(harmonics, picks="eeg", method="fir", phase="zero", verbose="error")
    if l_freq is not None or h_freq is not None:
        out.filter(
            l_freq,
            h_freq,
            picks="eeg",
            method="fir",
            phase="zero",
            fir_design="firwin",
            verbose="error",
        )
    if reference is not None:
        ref = reference if isinstance(reference, str) else list(reference)
        out.set_eeg_reference(ref, projection=False, verbose="error")
    return out


# ----------------------------------------------------------------- spectra


def _as_channels(data: ArrayLike) -> NDArray[np.float64]:
    array = np.asarray(data, dtype=np.float64)
    if array.ndim == 1:
        array = array[np.newaxis, :]
    if array.ndim != 2:
        raise ConfigError(
            f"data must have shape (n_channels, n_samples), got shape {array.shape}; "
            "pass one trial at a time"
        )
    return array


def _samples(duration_s: float, sfreq: float, name: str) -> int:
    if not np.isfinite(sfreq) or sfreq <= 0:
        raise ConfigError(f"sfreq must be a positive number of Hz, got {sfreq}")
    n = round(duration_s * sfreq)
    if n < 2 or abs(n - duration_s * sfreq) > 1e-6:
        raise ConfigError(
            f"{name}={duration_s} s is not a whole number (>= 2) of samples at {sfreq} Hz"
        )
    return n


def _check_bands(bands: Mapping[str, tuple[float, float]], sfreq: float) -> None:
    if not bands:
        raise ConfigError("bands is empty; pass e.g. FIVE_BANDS")
    for name, (fmin, fmax) in bands.items():
        if not 0.0 <= fmin < fmax <= sfreq / 2.0:
            raise ConfigError(
                f"band {name!r} = ({fmin}, {fmax}) Hz must satisfy 0 <= fmin < fmax <= "
                f"{sfreq / 2.0} Hz (Nyquist)"
            )


def _hann_spectrum(rect: NDArray[np.complex128], n: int, n_keep: int) -> NDArray[np.complex128]:
    """Bins ``0 .. n_keep - 1`` of the periodic-Hann-tapered DFT from the untapered one.

    The periodic Hann window 0.5 - 0.5 cos(2 pi m / n) multiplies the signal, so its DFT
    convolves the spectrum with the kernel (-1/4, 1/2, -1/4) (Harris 1978, Proc. IEEE 66):
    ``H[k] = X[k] / 2 - (X[k - 1] + X[k + 1]) / 4``. Bins outside the one-sided range are
    conjugates by Hermitian symmetry.
    """
    n_rfft = rect.shape[-1]
    k = np.arange(-1, n_keep + 1)
    mirrored = (k < 0) | (k >= n_rfft)
    index = np.where(k < 0, -k, np.where(k >= n_rfft, n - k, k))
    neighbours = rect[..., index]
    neighbours[..., mirrored] = np.conj(neighbours[..., mirrored])
    return 0.5 * neighbours[..., 1:-1] - 0.25 * (neighbours[..., :-2] + neighbours[..., 2:])


def window_psd(
    data: ArrayLike,
    sfreq: float,
    window_s: float = 1.0,
    *,
    nperseg: int | None = None,
    noverlap: int | None = None,
    fmax: float | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Welch PSD (Hann taper, segment mean removed) in consecutive windows.

    data : array, shape (n_channels, n_samples), volts (1-D is one channel)
    sfreq : sampling rate in Hz
    window_s : window length in seconds (a whole number of samples)
    nperseg : Welch segment length in samples; default the whole window (one Hann-tapered
        periodogram per window, resolution 1 / window_s Hz: 1 Hz for 1-s windows, so the
        3-Hz delta band still holds four bins)
    noverlap : overlap of segments in samples; default ``nperseg // 2``
    fmax : keep only bins with ``f <= fmax`` (saves memory); default all up to Nyquist
    Returns ``(freqs, psd)``: freqs shape (n_freqs,) in Hz and psd shape
    (n_windows, n_channels, n_freqs) in V^2/Hz, equal to
    ``mne.time_frequency.psd_array_welch(windows, sfreq, n_fft=nperseg,
    n_per_seg=nperseg, n_overlap=noverlap, window="hann", average="mean")``.
    One ``numpy.fft.rfft`` call over all windows, segments and channels; the taper is
    applied in the frequency domain (see `_hann_spectrum`), which is exact.
    """
    array = _as_channels(data)
    n_window = _samples(window_s, sfreq, "window_s")
    n_seg = n_window if nperseg is None else int(nperseg)
    if not 2 <= n_seg <= n_window:
        raise ConfigError(f"nperseg={nperseg} must be between 2 and the window ({n_window})")
    overlap = n_seg // 2 if noverlap is None else int(noverlap)
    if not 0 <= overlap < n_seg:
        raise ConfigError(f"noverlap={noverlap} must be >= 0 and < nperseg ({n_seg})")
    n_channels, n_samples = array.shape
    n_windows = n_samples // n_window
    if n_windows == 0:
        raise ConfigError(
            f"data has {n_samples} samples, fewer than one window of {n_window} samples "
            f"({window_s} s at {sfreq} Hz); pass a longer segment or a shorter window_s"
        )

    windows = array[:, : n_windows * n_window].reshape(n_channels, n_windows, n_window)
    step = n_seg - overlap
    n_segments = 1 + (n_window - n_seg) // step
    if n_segments == 1:
        segments = windows[..., np.newaxis, :n_seg]
    else:
        segments = np.lib.stride_tricks.sliding_window_view(windows, n_seg, axis=-1)
        segments = segments[..., : (n_segments - 1) * step + 1 : step, :]

    freqs = np.fft.rfftfreq(n_seg, 1.0 / sfreq)
    n_keep = freqs.size if fmax is None else int(np.searchsorted(freqs, fmax, side="right"))
    if n_keep == 0:
        raise ConfigError(f"fmax={fmax} Hz is below the first frequency bin")
    rect = np.fft.rfft(segments, axis=-1)  # (n_channels, n_windows, n_segments, n_rfft)
    rect[..., 0] = 0.0  # removing each segment's mean zeroes its DC bin
    tapered = _hann_spectrum(rect, n_seg, n_keep)
    del rect
    power = tapered.real**2 + tapered.imag**2
    psd = power.mean(axis=2)
    # density scaling of a periodic Hann taper: sum(w^2) = 3 n / 8; one-sided doubling of
    # every bin except DC and (for even n) Nyquist
    scale = np.full(n_keep, 2.0 / (sfreq * 0.375 * n_seg))
    scale[0] /= 2.0
    if n_seg % 2 == 0 and n_keep == n_seg // 2 + 1:
        scale[-1] /= 2.0
    psd *= scale
    return freqs[:n_keep], psd.transpose(1, 0, 2)


def _band_masks(
    freqs: NDArray[np.float64], bands: Mapping[str, tuple[float, float]]
) -> NDArray[np.float64]:
    """Averaging weights, shape (n_freqs, n_bands): 1/count on bins fmin <= f <= fmax."""
    weights = np.zeros((freqs.size, len(bands)))
    for column, (name, (fmin, fmax)) in enumerate(bands.items()):
        inside = (freqs >= fmin) & (freqs <= fmax)
        if not inside.any():
            raise ConfigError(
                f"band {name!r} ({fmin}-{fmax} Hz) contains no frequency bin at a resolution "
                f"of {freqs[1] - freqs[0]:g} Hz; use a longer nperseg or window_s"
            )
        weights[inside, column] = 1.0 / inside.sum()
    return weights


def _band_cells(
    freqs: NDArray[np.float64], bands: Mapping[str, tuple[float, float]]
) -> NDArray[np.float64]:
    """Integration weights in Hz, shape (n_freqs, n_bands): overlap of each bin's cell
    ``[f - df/2, f + df/2]`` with ``[fmin, fmax]``."""
    df = freqs[1] - freqs[0]
    low = freqs - df / 2.0
    high = freqs + df / 2.0
    weights = np.zeros((freqs.size, len(bands)))
    for column, (fmin, fmax) in enumerate(bands.values()):
        weights[:, column] = np.clip(np.minimum(high, fmax) - np.maximum(low, fmin), 0.0, None)
    return weights


def band_power_from_psd(
    psd: NDArray[np.float64],
    freqs: NDArray[np.float64],
    bands: Mapping[str, tuple[float, float]] = FIVE_BANDS,
) -> NDArray[np.float64]:
    """Mean PSD over the bins ``fmin <= f <= fmax`` of each band.

    psd : array, shape (..., n_freqs), V^2/Hz; freqs : shape (n_freqs,), Hz, evenly spaced
    Returns array, shape (..., n_bands), V^2/Hz.
    """
    _check_bands(bands, np.inf)
    return psd @ _band_masks(np.asarray(freqs, dtype=np.float64), bands)


def differential_entropy_from_psd(
    psd: NDArray[np.float64],
    freqs: NDArray[np.float64],
    bands: Mapping[str, tuple[float, float]] = FIVE_BANDS,
) -> NDArray[np.float64]:
    """DE = 0.5 ln(2 pi e var) with var = integral of the PSD over each band (nats).

    psd : array, shape (..., n_freqs), V^2/Hz; freqs : shape (n_freqs,), Hz, evenly spaced,
    reaching at least each band's fmax - df/2
    Returns array, shape (..., n_bands), nats. A band with zero power gives -inf.
    """
    _check_bands(bands, np.inf)
    freqs = np.asarray(freqs, dtype=np.float64)
    top = freqs[-1] + (freqs[1] - freqs[0]) / 2.0
    for name, (_, fmax) in bands.items():
        if fmax > top + 1e-9:
            raise ConfigError(f"band {name!r} reaches {fmax} Hz but the PSD stops at {top} Hz")
    variance = psd @ _band_cells(freqs, bands)
    with np.errstate(divide="ignore"):
        return 0.5 * np.log(2.0 * np.pi * np.e * variance)


def band_power(
    data: ArrayLike,
    sfreq: float,
    bands: Mapping[str, tuple[float, float]] = FIVE_BANDS,
    window_s: float = 1.0,
    *,
    nperseg: int | None = None,
    noverlap: int | None = None,
) -> NDArray[np.float64]:
    """Mean power spectral density per band in consecutive windows.

    data : array, shape (n_channels, n_samples), volts
    sfreq : sampling rate in Hz
    bands : {name: (fmin, fmax)} in Hz; bins with fmin <= f <= fmax are averaged
    window_s : window length in seconds; nperseg, noverlap : see `window_psd`
    Returns array, shape (n_windows, n_channels, n_bands), V^2/Hz.
    Welch estimate with a Hann taper per window (the published baseline's PSD feature);
    equals MNE's ``psd_array_welch`` on the same windows (see the module docstring).

    >>> rng = np.random.default_rng(0)
    >>> band_power(rng.standard_normal((64, 60_000)) * 1e-5, 1000.0).shape
    (60, 64, 5)
    """
    _check_bands(bands, sfreq)
    top = max(fmax for _, fmax in bands.values())
    freqs, psd = window_psd(data, sfreq, window_s, nperseg=nperseg, noverlap=noverlap, fmax=top)
    return band_power_from_psd(psd, freqs, bands)


def differential_entropy(
    data: ArrayLike,
    sfreq: float,
    bands: Mapping[str, tuple[float, float]] = FIVE_BANDS,
    window_s: float = 1.0,
    *,
    nperseg: int | None = None,
    noverlap: int | None = None,
) -> NDArray[np.float64]:
    """Differential entropy of the band-limited signal in consecutive windows.

    data : array, shape (n_channels, n_samples), volts
    sfreq : sampling rate in Hz
    bands : {name: (fmin, fmax)} in Hz
    window_s : window length in seconds; nperseg, noverlap : see `window_psd`
    Returns array, shape (n_windows, n_channels, n_bands), nats:
    ``0.5 * ln(2 * pi * e * variance)``, the DE of a Gaussian with the band's variance
    (Duan et al. 2013), the variance being the integral of the window's Hann-Welch PSD
    over ``[fmin, fmax]`` (spectral equivalent of zero-phase band-pass filtering; the
    agreement with sosfiltfilt filtering is stated in the module docstring).

    >>> rng = np.random.default_rng(0)
    >>> differential_entropy(rng.standard_normal((2, 2_000)), 1000.0).shape
    (2, 2, 5)
    """
    _check_bands(bands, sfreq)
    top = max(fmax for _, fmax in bands.values())
    n_seg = _samples(window_s, sfreq, "window_s") if nperseg is None else int(nperseg)
    df = sfreq / max(n_seg, 1)
    freqs, psd = window_psd(
        data, sfreq, window_s, nperseg=nperseg, noverlap=noverlap, fmax=top + df / 2.0
    )
    return differential_entropy_from_psd(psd, freqs, bands)


# ----------------------------------------------------------------- normalisation


def baseline_correct(
    features: ArrayLike,
    baseline_features: ArrayLike,
    mode: BaselineMode = "ratio",
) -> NDArray[np.float64]:
    """Express window features relative to a baseline block (the rest block, marker 100).

    features : array, shape (n_windows, ...) e.g. (n_windows, n_channels, n_bands)
    baseline_features : array, shape (n_baseline_windows, ...) with the same trailing shape,
        the same feature computed on the rest block's windows
    mode : with ``m`` and ``s`` the baseline's mean and SD over its windows (axis 0):
        ``"ratio"`` x / m; ``"db"`` 10 log10(x / m) (both for band power);
        ``"zscore"`` (x - m) / s; ``"mean"`` x - m (for log-scale features such as DE)
    Returns array, same shape as ``features``. A zero baseline mean (ratio, db) or SD
    (zscore) gives inf/nan in that feature, never a silent finite number.
    """
    x = np.asarray(features, dtype=np.float64)
    base = np.asarray(baseline_features, dtype=np.float64)
    if base.ndim != x.ndim or base.shape[1:] != x.shape[1:]:
        raise ConfigError(
            f"baseline_features has shape {base.shape} but features have shape {x.shape}; "
            "both must be (n_windows, ...) with the same trailing shape"
        )
    if base.shape[0] == 0:
        raise ConfigError("baseline_features has no windows; is the rest block present?")
    mean = base.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if mode == "ratio":
            return x / mean
        if mode == "db":
            return 10.0 * np.log10(x / mean)
        if mode == "zscore":
            return (x - mean) / base.std(axis=0)
        if mode == "mean":
            return x - mean
    raise ConfigError(f"mode={mode!r} is not one of 'ratio', 'db', 'zscore', 'mean'")


def fit_zscore(x: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean and SD of features over samples (axis 0), for `apply_zscore`.

    x : array, shape (n_samples, ...). Returns ``(mean, std)``, each shape ``x.shape[1:]``.
    The SD (ddof 0) of a constant feature is returned as 1 so it maps to 0, as in
    scikit-learn's StandardScaler. Fit on training data only (leakage pitfall 2 of
    ``docs/references.md``).
    """
    array = np.asarray(x, dtype=np.float64)
    if array.ndim == 0 or array.shape[0] == 0:
        raise ConfigError(f"fit_zscore needs at least one sample, got shape {array.shape}")
    mean = array.mean(axis=0)
    std = array.std(axis=0)
    return mean, np.where(std > 0, std, 1.0)


def apply_zscore(x: ArrayLike, mean: ArrayLike, std: ArrayLike) -> NDArray[np.float64]:
    """``(x - mean) / std`` with statistics from `fit_zscore`; x shape (n_samples, ...)."""
    return (np.asarray(x, dtype=np.float64) - mean) / std


def fit_zscore_per_subject(
    features: ArrayLike,
    subjects: ArrayLike,
    fit_mask: ArrayLike | None = None,
) -> dict[Hashable, tuple[NDArray[np.float64], NDArray[np.float64]]]:
    """Per-subject z-score statistics.

    features : array, shape (n_samples, ...); subjects : shape (n_samples,), subject ids
    fit_mask : boolean, shape (n_samples,): rows the statistics may see (e.g. training
        trials, or the rest block); default all rows
    Returns {subject: (mean, std)} from `fit_zscore`, for every subject with a fitted row.
    """
    x = np.asarray(features, dtype=np.float64)
    ids = np.asarray(subjects)
    mask = np.ones(len(ids), dtype=bool) if fit_mask is None else np.asarray(fit_mask, bool)
    if ids.shape != (x.shape[0],) or mask.shape != ids.shape:
        raise ConfigError(
            f"subjects {ids.shape} and fit_mask {mask.shape} must have shape "
            f"({x.shape[0]},), one entry per row of features"
        )
    return {s: fit_zscore(x[(ids == s) & mask]) for s in np.unique(ids[mask]).tolist()}


def zscore_per_subject(
    features: ArrayLike,
    subjects: ArrayLike,
    stats: Mapping[Hashable, tuple[ArrayLike, ArrayLike]],
) -> NDArray[np.float64]:
    """Z-score each subject's rows with that subject's statistics.

    features : array, shape (n_samples, ...); subjects : shape (n_samples,)
    stats : {subject: (mean, std)} from `fit_zscore_per_subject`, fitted on whatever rows
        the protocol allows (never on held-out test rows of a classifier)
    Returns array, same shape as ``features``.
    """
    x = np.asarray(features, dtype=np.float64)
    ids = np.asarray(subjects)
    if ids.shape != (x.shape[0],):
        raise ConfigError(f"subjects has shape {ids.shape}, expected ({x.shape[0]},)")
    out = np.empty_like(x)
    for subject in np.unique(ids).tolist():
        if subject not in stats:
            raise ConfigError(
                f"no z-score statistics for subject {subject!r}; fit them with "
                "fit_zscore_per_subject on rows that include this subject"
            )
        rows = ids == subject
        mean, std = stats[subject]
        out[rows] = apply_zscore(x[rows], mean, std)
    return out
