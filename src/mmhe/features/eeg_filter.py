"""EEG filtered once per continuous session: MNE's filters in one pass, cut into trials.

`mmhe.features.eeg.preprocess` runs MNE's ``Raw.notch_filter`` then ``Raw.filter`` (two
zero-phase FIR passes, each with its own design) and re-references. Feature extraction
used to do that trial by trial: two FIR designs and two passes per trial, and reflected
padding at every trial's edges. Here the same two MNE designs
(`mne.filter.create_filter` with the arguments those methods use) are convolved into one
zero-phase kernel (`session_kernel`) and applied once to the continuous session
(`filtered_trials`): in spans of consecutive trials with the real neighbouring samples
as context, so a trial edge sees the recording, not a reflection, and memory stays
bounded by the span (`SPAN_S`) whatever the session's length.

Values: away from the session's first and last ``len(kernel)`` samples the result
equals `preprocess` of the whole session to float rounding (tested against MNE); near
the session's ends MNE pads once per filter, here once for both. Per-trial filtering
(the previous path) differs within a kernel length of each trial's edges, by design.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from functools import cache, reduce

import numpy as np
from numpy.typing import NDArray

SPAN_S = 120.0
"""Longest stretch of session filtered at once (seconds of consecutive trials)."""


@cache
def session_kernel(
    sfreq: float,
    *,
    l_freq: float | None = 1.0,
    h_freq: float | None = 47.0,
    notch: float | None = 50.0,
) -> NDArray[np.float64]:
    """The zero-phase FIR of `mmhe.features.eeg.preprocess` as one kernel (odd length).

    MNE's band-stop of ``notch`` and its harmonics below Nyquist (what
    ``Raw.notch_filter(method="fir", phase="zero")`` designs: widths f / 200, 1 Hz
    transition, ``filter_length="auto"``), convolved with MNE's band-pass
    ``Raw.filter(l_freq, h_freq, method="fir", phase="zero", fir_design="firwin")``.
    Returns shape (n_taps,), read-only; ``[1.0]`` when every step is None. Designed once
    per process for each set of arguments (MNE's design was 6 % of a participant's EEG
    features).
    """
    import mne

    kernels: list[NDArray[np.float64]] = []
    nyquist = sfreq / 2.0
    if notch is not None:
        freqs = np.arange(notch, nyquist, notch)
        widths = freqs / 200.0
        half = 0.5  # MNE's trans_bandwidth 1 Hz, halved on each side
        kernels.append(
            mne.filter.create_filter(
                None,
                sfreq,
                list(freqs + widths / 2.0 + half),
                list(freqs - widths / 2.0 - half),
                "auto",
                half,
                half,
                method="fir",
                phase="zero",
                fir_window="hamming",
                fir_design="firwin",
                verbose="error",
            )
        )
    if l_freq is not None or h_freq is not None:
        kernels.append(
            mne.filter.create_filter(
                None,
                sfreq,
                l_freq,
                h_freq,
                method="fir",
                phase="zero",
                fir_window="hamming",
                fir_design="firwin",
                verbose="error",
            )
        )
    kernel = (
        reduce(np.convolve, [np.asarray(k, dtype=np.float64) for k in kernels])
        if kernels
        else np.ones(1)
    )
    kernel.flags.writeable = False  # designed once per process and shared (``cache``)
    return kernel


def _reflect(x: NDArray[np.float64], left: int, right: int) -> NDArray[np.float64]:
    """MNE's ``reflect_limited`` padding of the last axis (odd reflection about the end
    samples, zeros beyond the signal's length)."""
    n = x.shape[-1]
    parts = []
    if left:
        parts += [
            np.zeros((*x.shape[:-1], max(left - n + 1, 0))),
            2 * x[..., :1] - x[..., left:0:-1],
        ]
    parts.append(x)
    if right:
        parts += [
            2 * x[..., -1:] - x[..., -2 : -right - 2 : -1],
            np.zeros((*x.shape[:-1], max(right - n + 1, 0))),
        ]
    return np.concatenate(parts, axis=-1)


def filter_with_context(
    x: NDArray[np.float64], kernel: NDArray[np.float64], left: int, right: int
) -> NDArray[np.float64]:
    """Zero-phase filtering of ``x`` (channels, samples) that holds ``left`` / ``right``
    samples of real context before and after the part wanted; missing context (at the
    recording's ends) is MNE's reflected padding. Returns the part wanted, shape
    (channels, samples - left - right). One overlap-add pass over all channels
    (`scipy.signal.oaconvolve`), its FFTs on `mmhe.parallel.task_threads` threads (the
    same values: each transform is computed alone whatever the thread count).
    """
    from scipy.fft import set_workers
    from scipy.signal import oaconvolve

    from mmhe.parallel import task_threads

    half = (kernel.size - 1) // 2
    if kernel.size == 1:
        return x[:, left : x.shape[1] - right] * kernel[0]
    padded = _reflect(x, max(half - left, 0), max(half - right, 0))
    skip_left, skip_right = max(left - half, 0), max(right - half, 0)
    padded = padded[:, skip_left : padded.shape[1] - skip_right]
    with set_workers(task_threads()):
        return oaconvolve(padded, kernel[None, :], mode="valid", axes=-1)


def filtered_trials(
    read: Callable[[int, int], NDArray],
    n_session: int,
    spans: Sequence[tuple[int, int]],
    kernel: NDArray[np.float64],
    sfreq: float,
    *,
    average_reference: bool = True,
    span_s: float = SPAN_S,
) -> Iterator[tuple[int, NDArray[np.float64]]]:
    """(trial position, filtered EEG (channels, samples)) for every trial, in session order.

    read(start, stop) -> the session's channels x samples start..stop (any float dtype);
    n_session : the session's length in samples; spans : each trial's (start, stop)
    samples in the session; kernel : `session_kernel`. Consecutive trials are filtered
    together up to ``span_s`` seconds, with half a kernel of real context on each side,
    then re-referenced to their common average (``average_reference``, as ``preprocess``).
    """
    half = (kernel.size - 1) // 2
    order = sorted(range(len(spans)), key=lambda i: spans[i][0])
    limit = max(1, round(span_s * sfreq))
    group: list[int] = []

    def run(members: list[int]) -> Iterator[tuple[int, NDArray[np.float64]]]:
        start = min(spans[i][0] for i in members)
        stop = max(spans[i][1] for i in members)
        lo, hi = max(0, start - half), min(n_session, stop + half)
        x = np.asarray(read(lo, hi), dtype=np.float64)
        y = filter_with_context(x, kernel, start - lo, hi - stop)
        if average_reference:
            y -= y.mean(axis=0, keepdims=True)
        for i in members:
            yield i, y[:, spans[i][0] - start : spans[i][1] - start]

    for i in order:
        if group and max(spans[g][1] for g in [*group, i]) - spans[group[0]][0] > limit:
            yield from run(group)
            group = []
        group.append(i)
    if group:
        yield from run(group)
