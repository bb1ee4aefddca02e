"""Pieces shared by the physiology feature modules (`physio`, `cardiac`, `physio_events`)."""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from typing import Any, NamedTuple, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from mmhe.errors import ConfigError
from mmhe.parallel import ProcessWide

T = TypeVar("T")

MIN_DURATION_S: dict[str, float] = {
    "ecg": 4.0,
    "ppg": 4.0,
    "eda": 4.0,
    "rsp": 15.0,
    "emg": 0.5,
    "skt": 1.0,
}
"""Shortest segment (seconds) each signal is analysed on; shorter -> NaN and a flag.
RSP needs one whole breath at the slowest plausible rate (4 /min = 15 s); NeuroKit2's
breath detection fails on two-breath segments, so 8-s expression windows are too short
for respiration (use `mmhe.features.windows.RSP_WINDOW` or the trial)."""
VALID_SHARE_MIN = 0.5
"""A segment with NaN samples (masked at read time) is analysed on its longest finite
stretch only when that stretch holds at least this share of the segment."""

# What NeuroKit2 raises on segments it cannot process (e.g. IndexError when no peak is
# found, TypeError from signal_smooth on a very short signal).
NK_FAILURES = (ValueError, IndexError, TypeError, ZeroDivisionError, np.linalg.LinAlgError)


class PhysioResult(NamedTuple):
    """Features of one segment and the problems found in it (see `mmhe.features.physio`)."""

    features: dict[str, float]
    flags: list[str]


def nk_rate(sfreq: float) -> int | float:
    """The sampling rate as NeuroKit2 wants it: some of its paths index with it, so an
    integral rate must be a Python int (1000.0 -> 1000)."""
    return int(sfreq) if float(sfreq).is_integer() else float(sfreq)


def check_arguments(signal: ArrayLike, sfreq: float) -> NDArray[np.float64]:
    """The signal as a 1-D float64 array; ConfigError for bad arguments."""
    try:
        array = np.asarray(signal, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError("signal must be a 1-D array of numbers") from None
    if array.ndim != 1:
        raise ConfigError(f"signal must be 1-D (one channel), got shape {array.shape}")
    if not isinstance(sfreq, int | float | np.number) or not math.isfinite(sfreq) or sfreq <= 0:
        raise ConfigError(f"sfreq must be a positive number of Hz, got {sfreq!r}")
    return array


def longest_finite(x: NDArray[np.float64]) -> tuple[int, int]:
    """(start, stop) of the longest run of finite samples ((0, 0) when there is none)."""
    finite = np.isfinite(x)
    if finite.all():
        return 0, x.size
    edges = np.flatnonzero(np.diff(np.concatenate(([0], finite.astype(np.int8), [0]))))
    starts, stops = edges[0::2], edges[1::2]
    if starts.size == 0:
        return 0, 0
    best = int(np.argmax(stops - starts))
    return int(starts[best]), int(stops[best])


def valid_part(
    x: NDArray[np.float64], sfreq: float, kind: str
) -> tuple[NDArray[np.float64] | None, str | None, list[str]]:
    """(analysable samples or None, why not, flags) of a segment.

    NaN samples are masked data (read-time checks) or padding: the longest finite stretch
    is analysed when it holds at least `VALID_SHARE_MIN` of the segment, with a flag
    naming the share; infinite values, a too-short or flat segment give None and why.
    """
    flags: list[str] = []
    if np.isinf(x).any():
        n_bad = int(np.count_nonzero(~np.isfinite(x)))
        return None, f"{n_bad} of {x.size} samples are not finite (NaN/inf)", flags
    n_nan = int(np.count_nonzero(np.isnan(x)))
    if n_nan:
        start, stop = longest_finite(x)
        if n_nan == x.size:
            return None, f"no valid sample: all {x.size} masked (NaN)", flags
        if (stop - start) < VALID_SHARE_MIN * x.size:
            return None, f"{n_nan} of {x.size} samples are not finite (NaN/inf)", flags
        flags.append(
            f"{n_nan} of {x.size} samples masked (NaN); features from the valid part "
            f"{start / sfreq:.2f}-{stop / sfreq:.2f} s"
        )
        x = x[start:stop]
    duration = x.size / sfreq
    if duration < MIN_DURATION_S[kind]:
        minimum = MIN_DURATION_S[kind]
        return None, f"segment of {duration:.3g} s is shorter than {minimum:g} s", flags
    if np.ptp(x) == 0.0:
        return None, f"flat signal (every sample equals {x[0]:g})", flags
    return x, None, flags


def nan_result(names: tuple[str, ...], flags: list[str]) -> PhysioResult:
    """Every feature NaN, with the flags saying why."""
    return PhysioResult(dict.fromkeys(names, math.nan), flags)


def quietly(function: Callable[..., object], *args: object, **kwargs: object) -> object:
    """Call NeuroKit2 without its warnings (every condition they report is flagged here),
    its Butterworth designs memoised (`memoised_butter`)."""
    with warnings.catch_warnings(), memoised_butter():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


# ----------------------------------------------------------------- filter designs

_butter_original: Callable[..., Any] | None = None  # scipy's, kept once seen
_butter_signature: inspect.Signature | None = None
_BUTTER_DESIGNS: dict[tuple, Any] = {}
_BUTTER_DESIGNS_MAX = 256


def _butter_key(arguments: dict[str, Any]) -> tuple | None:
    """Hashable key of ``scipy.signal.butter``'s bound arguments (None: not memoised)."""
    if "N" not in arguments or "Wn" not in arguments:
        return None  # not scipy's signature (a wrapped butter): left alone
    try:
        cutoff = np.asarray(arguments["Wn"], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    key = [type(arguments["N"]), arguments["N"], cutoff.shape, tuple(cutoff.ravel().tolist())]
    for name in ("btype", "analog", "output", "fs"):
        value = arguments.get(name)
        key += [type(value), value]
    try:
        hash(tuple(key))
    except TypeError:
        return None
    return tuple(key)


def _memoised_butter(*args: Any, **kwargs: Any) -> Any:
    """``scipy.signal.butter`` with the same signature and results, each design computed
    once per process: every call gets its own writable copy of the coefficients."""
    original, signature = _butter_original, _butter_signature
    assert original is not None and signature is not None  # set when it is installed
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError:
        return original(*args, **kwargs)  # scipy raises its own error
    bound.apply_defaults()
    key = _butter_key(bound.arguments)
    if key is None:
        return original(*args, **kwargs)
    design = _BUTTER_DESIGNS.get(key)
    if design is None:
        design = original(*args, **kwargs)
        if len(_BUTTER_DESIGNS) < _BUTTER_DESIGNS_MAX:
            _BUTTER_DESIGNS[key] = design
    if isinstance(design, tuple):
        return tuple(v.copy() if isinstance(v, np.ndarray) else v for v in design)
    return design.copy()


def _install_memoised_butter() -> Callable[[], None]:
    """Put `_memoised_butter` in place of ``scipy.signal.butter``; returns the undo."""
    global _butter_original, _butter_signature
    import scipy.signal

    current = scipy.signal.butter
    if current is not _butter_original:  # first use, or another butter than the one memoised
        _BUTTER_DESIGNS.clear()
        _butter_original, _butter_signature = current, inspect.signature(current)
    scipy.signal.butter = _memoised_butter

    def undo() -> None:
        if scipy.signal.butter is _memoised_butter:
            scipy.signal.butter = _butter_original

    return undo


_MEMOISED_BUTTER = ProcessWide(_install_memoised_butter)


def memoised_butter() -> AbstractContextManager[None]:
    """Within this block ``scipy.signal.butter`` is `_memoised_butter`: same arguments ->
    a copy of the same coefficients, designed once per process.

    NeuroKit2 designs its Butterworth filters on every call (``scipy.signal.butter``:
    0.25 ms for ``output="ba"``, 0.8 ms for ``"sos"``, most of it in ``zpk2sos``), about
    220 designs of a handful of kinds per participant (0.12-0.2 CPU-s). The memo
    returns what ``butter`` returns, so NeuroKit2's outputs do not change (tested). The
    replacement is held across threads and undone when the last block ends
    (`mmhe.parallel.ProcessWide`); arguments it cannot key (unhashable) go to scipy
    unchanged.
    """
    return _MEMOISED_BUTTER.held()


# ----------------------------------------------------------------- shared steps

_SHARED: ContextVar[dict | None] = ContextVar("mmhe_physio_shared_steps", default=None)


@contextmanager
def shared_steps() -> Iterator[None]:
    """Within this block, a NeuroKit2 step run twice on the same samples runs once.

    A trial's features (`physio_features`) and its event series (`trial_series`) both
    need its beats, breaths and SCRs; `mmhe.features.batch` computes both inside one
    block, so each step runs once per trial. Results are keyed by the step, its
    arguments and a BLAKE2b digest of the samples' bytes, so equal inputs give the very
    same outputs (the steps are deterministic); nothing is kept after the block.
    """
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def reused(function: Callable[..., T]) -> Callable[..., T]:
    """Decorate a step ``function(x: 1-D float64 array, *arguments)`` so that inside a
    `shared_steps` block its result for the same samples and arguments is reused."""

    @functools.wraps(function)
    def step(x: NDArray[np.float64], *arguments: Any) -> T:
        memo = _SHARED.get()
        if memo is None:
            return function(x, *arguments)
        x = np.ascontiguousarray(x)
        key = (
            function.__qualname__,
            arguments,
            x.dtype.str,
            x.shape,
            hashlib.blake2b(x.data, digest_size=16).digest(),
        )
        if key not in memo:
            memo[key] = function(x, *arguments)
        return memo[key]

    return step
