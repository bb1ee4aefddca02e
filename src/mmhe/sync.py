"""One timeline for the three MMHE devices, tied together by their trigger markers.

Each device has its own clock: EEG seconds from its first sample, BIOPAC seconds from
its first sample, the camera's time of day. `align` matches two marker sequences that
may each miss or add events and fits ``t_ref = offset + (1 + drift) * t_other``;
`build_timeline` aligns BIOPAC and camera to the EEG (the reference clock) and cuts the
session into per-marker trials; `Timeline.locate` maps coding-file expressions into EEG
samples, BIOPAC samples and frame indices.

>>> alignment = align(eeg_markers, camera.markers())      # doctest: +SKIP
>>> alignment.offset_s, alignment.drift_ppm, alignment.residual_ms_max  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mmhe.errors import AlignmentError, ConfigError
from mmhe.io.camera import FrameSequence
from mmhe.labels import VALID_MARKERS

__all__ = ["Alignment", "Timeline", "align", "build_timeline", "camera_timeline"]

SECONDS_PER_DAY = 86400.0
_PAIR_BUDGET = 20_000  # candidate offsets examined by the coarse search
_BATCH_CELLS = 2_000_000  # candidates x events evaluated at once
_OUTLIER_SCALE = 5.0  # matches beyond this many robust SDs are outliers
_MAX_ITERATIONS = 20


@dataclass(eq=False)
class Alignment:
    """The fitted clock relation ``t_ref = offset_s + (1 + drift_ppm * 1e-6) * t_other``.

    matched : one row per matched pair: ``ref_index``, ``other_index`` (row labels of the
        input tables), ``code``, ``t_ref``, ``t_other`` (s) and ``residual_ms``
        (t_ref minus the fitted prediction).
    unmatched : the events left over: ``side`` ("reference"/"other"), ``index``, ``code``,
        ``onset_s``.
    residual_ms_median, residual_ms_max : median and largest absolute residual (ms).
    warnings : human-readable notes, e.g. a poor fit (largest residual over the threshold).
    """

    offset_s: float
    drift_ppm: float
    n_matched: int
    matched: pd.DataFrame
    unmatched: pd.DataFrame
    residual_ms_median: float
    residual_ms_max: float
    warnings: list[str] = field(default_factory=list)

    @property
    def slope(self) -> float:
        """Seconds of reference clock per second of the other clock (1 + drift)."""
        return 1.0 + self.drift_ppm * 1e-6

    def to_reference(self, t: float | np.ndarray) -> np.ndarray:
        """Times on the other clock (s, any shape) -> times on the reference clock (s)."""
        return self.offset_s + self.slope * np.asarray(t, dtype=float)

    def to_other(self, t: float | np.ndarray) -> np.ndarray:
        """Times on the reference clock (s, any shape) -> times on the other clock (s)."""
        return (np.asarray(t, dtype=float) - self.offset_s) / self.slope


@dataclass
class _Events:
    labels: np.ndarray  # row labels of the input table
    onset: np.ndarray  # float seconds, sorted
    code: np.ndarray  # int64


def _events(table: pd.DataFrame, side: str) -> _Events:
    """Validate a marker table (columns onset_s, code) and sort it by onset."""
    if not isinstance(table, pd.DataFrame):
        raise AlignmentError(f"the {side} markers must be a DataFrame, got {type(table).__name__}")
    missing = {"onset_s", "code"} - set(table.columns)
    if missing:
        raise AlignmentError(f"the {side} markers lack the column(s) {sorted(missing)}")
    if not table.index.is_unique:
        raise AlignmentError(
            f"the {side} markers have repeated row labels; call reset_index(drop=True) first"
        )
    onset = pd.to_numeric(table["onset_s"], errors="coerce").to_numpy(dtype=float)
    code = pd.to_numeric(table["code"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(onset) | ~np.isfinite(code) | (code != np.round(code))
    if bad.any():
        rows = list(table.index[bad][:5])
        raise AlignmentError(
            f"the {side} markers have {int(bad.sum())} row(s) without a finite onset_s or an "
            f"integer code, e.g. rows {rows}; drop or fix them before aligning"
        )
    order = np.argsort(onset, kind="stable")
    return _Events(table.index.to_numpy()[order], onset[order], code[order].astype(np.int64))


def _candidate_pairs(ref: _Events, other: _Events) -> tuple[np.ndarray, np.ndarray]:
    """Positions (i, j) of same-code event pairs, rarest codes first, within a budget."""
    pairs = pd.merge(
        pd.DataFrame({"code": ref.code, "i": np.arange(ref.code.size)}),
        pd.DataFrame({"code": other.code, "j": np.arange(other.code.size)}),
        on="code",
    )
    if len(pairs) > _PAIR_BUDGET:
        pairs["n"] = pairs.groupby("code")["code"].transform("size")
        pairs = pairs.sort_values(["n", "code"], kind="stable").head(_PAIR_BUDGET)
    return pairs["i"].to_numpy(), pairs["j"].to_numpy()


class _SameCodeIndex:
    """Nearest reference event of the same code, for many query times at once.

    Codes and times are packed into one sorted key (code rank * block + time), so a
    single `np.searchsorted` finds the nearest same-code neighbour.
    """

    def __init__(self, ref: _Events, other: _Events) -> None:
        self.codes = np.union1d(ref.code, other.code)
        span_ref = np.ptp(ref.onset)
        span_other = np.ptp(other.onset)
        self.origin = ref.onset.min() - span_other - 1.0
        self.block = span_ref + 2.0 * span_other + 4.0
        keys = np.searchsorted(self.codes, ref.code) * self.block + (ref.onset - self.origin)
        self.order = np.argsort(keys, kind="stable")
        self.keys = keys[self.order]
        self.ref_code = ref.code[self.order]
        self.ref_onset = ref.onset[self.order]

    def nearest(self, predicted: np.ndarray, code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reference position and signed residual (ref - predicted) of the nearest same-code
        event for each query; residual is inf where the code has no reference event."""
        query = np.searchsorted(self.codes, code) * self.block + (predicted - self.origin)
        right = np.clip(np.searchsorted(self.keys, query), 0, self.keys.size - 1)
        left = np.maximum(right - 1, 0)
        best = np.where(
            np.abs(self.keys[right] - query) < np.abs(self.keys[left] - query), right, left
        )
        residual = self.ref_onset[best] - predicted
        residual = np.where(self.ref_code[best] == code, residual, np.inf)
        return self.order[best], residual


def _coarse_anchor(
    ref: _Events, other: _Events, index: _SameCodeIndex, tolerance_s: float, max_drift: float
) -> tuple[int, int] | None:
    """The same-code pair (i, j) whose offset lets most other events find a partner.

    For a candidate, other event k is predicted at ``ref[i] + (other[k] - other[j])`` and
    counts as matched when a same-code reference event lies within
    ``tolerance_s + max_drift * |other[k] - other[j]|`` (room for the unknown drift).
    Ties go to the candidate with the smaller mean relative residual.
    """
    cand_i, cand_j = _candidate_pairs(ref, other)
    if cand_i.size == 0:
        return None
    batch = max(1, _BATCH_CELLS // max(other.onset.size, 1))
    best_score, best_pair = -np.inf, None
    for start in range(0, cand_i.size, batch):
        i, j = cand_i[start : start + batch], cand_j[start : start + batch]
        lag = other.onset[None, :] - other.onset[j][:, None]
        predicted = ref.onset[i][:, None] + lag
        window = tolerance_s + max_drift * np.abs(lag)
        code = np.broadcast_to(other.code, predicted.shape)
        _, residual = index.nearest(predicted, code)
        hit = np.abs(residual) <= window
        closeness = np.where(hit, np.abs(residual) / window, 0.0).sum(axis=1)
        count = hit.sum(axis=1)
        score = count - closeness / np.maximum(count, 1)
        top = int(np.argmax(score))
        if score[top] > best_score:
            best_score, best_pair = score[top], (int(i[top]), int(j[top]))
    return best_pair


def _match(
    index: _SameCodeIndex, predicted: np.ndarray, other: _Events, window: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches (ref position, other position) within `window` of the prediction;
    a reference event claimed twice keeps the closer partner."""
    ref_pos, residual = index.nearest(predicted, other.code)
    hit = np.abs(residual) <= window
    pairs = pd.DataFrame(
        {"i": ref_pos[hit], "j": np.flatnonzero(hit), "distance": np.abs(residual[hit])}
    )
    pairs = pairs.sort_values(["distance", "j"], kind="stable").drop_duplicates("i")
    pairs = pairs.sort_values("j")
    return pairs["i"].to_numpy(), pairs["j"].to_numpy()


def _fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares intercept and slope of y = a + b x (x should be centred)."""
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def theil_sen(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the Theil-Sen line through (x, y), shape (n,) each: the median
    of the slopes between all pairs with distinct x, and median(y) - slope * median(x).

    The values of ``scipy.stats.theilslopes(y, x)`` (its default ``method="separate"``),
    without importing ``scipy.stats``: 0.6-0.8 s of every ingest's start, which MNE's own
    read of the EEG does not pay.
    """
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.size != y.size or x.size < 2:
        raise ValueError(f"a Theil-Sen line needs two paired series, got {x.size} and {y.size}")
    dx = x[:, None] - x
    up = dx > 0
    slope = float(np.median((y[:, None] - y)[up] / dx[up]))
    return slope, float(np.median(y) - slope * np.median(x))


def align(
    reference: pd.DataFrame,
    other: pd.DataFrame,
    *,
    max_residual_ms: float = 5.0,
    min_matches: int = 3,
    max_drift_ppm: float = 300.0,
    search_tolerance_s: float = 0.05,
) -> Alignment:
    """Match two devices' marker sequences and fit ``t_ref = offset + (1 + drift) * t_other``.

    reference, other : DataFrames with ``onset_s`` (s, each on its own clock; the offset
        between clocks may be arbitrary) and ``code`` (int). Either may miss events or
        hold extra ones.
    max_residual_ms : a fit whose largest residual exceeds this gets a warning.
    min_matches : fewer matched pairs raise `AlignmentError` (with the counts).
    max_drift_ppm : largest clock drift the search allows for.
    search_tolerance_s : trigger latency differences tolerated by the coarse search.

    Method: every same-code pair proposes an offset; the one under which most events find
    a same-code partner (window widened by ``max_drift_ppm`` with distance) wins. A
    Theil-Sen fit on those matches starts an iteration of one-to-one re-matching within
    ``max(5 robust SD, 2 * max_residual_ms)`` and least squares, until the matched set is
    stable. Events rejected as outliers are reported in ``unmatched`` and ``warnings``.
    """
    if min_matches < 2:
        raise ConfigError(
            f"min_matches must be at least 2 to fit offset and drift, got {min_matches}"
        )
    ref = _events(reference, "reference")
    oth = _events(other, "other")
    counts = f"{ref.onset.size} reference and {oth.onset.size} other markers"
    if ref.onset.size < min_matches or oth.onset.size < min_matches:
        raise AlignmentError(f"too few markers to align: {counts} (need {min_matches} matches)")
    index = _SameCodeIndex(ref, oth)
    max_drift = max_drift_ppm * 1e-6
    anchor_pair = _coarse_anchor(ref, oth, index, search_tolerance_s, max_drift)
    if anchor_pair is None:
        raise AlignmentError(f"no marker code in common between {counts}")
    anchor = oth.onset[anchor_pair[1]]
    x = oth.onset - anchor  # centred other clock: keeps the fit well conditioned
    lag_window = search_tolerance_s + max_drift * np.abs(x)
    ref_pos, oth_pos = _match(index, ref.onset[anchor_pair[0]] + x, oth, lag_window)
    if ref_pos.size < min_matches:
        raise AlignmentError(
            f"only {ref_pos.size} of {counts} could be matched (need {min_matches})"
        )
    slope, intercept = theil_sen(x[oth_pos], ref.onset[ref_pos])
    floor_s = 2.0 * max_residual_ms / 1000.0
    for _ in range(_MAX_ITERATIONS):
        residual = ref.onset[ref_pos] - (intercept + slope * x[oth_pos])
        scale = 1.4826 * np.median(np.abs(residual - np.median(residual)))
        threshold = max(_OUTLIER_SCALE * scale, floor_s)
        new_ref, new_oth = _match(index, intercept + slope * x, oth, threshold)
        if new_ref.size < min_matches:
            break
        intercept, slope = _fit_line(x[new_oth], ref.onset[new_ref])
        unchanged = np.array_equal(new_ref, ref_pos) and np.array_equal(new_oth, oth_pos)
        ref_pos, oth_pos = new_ref, new_oth
        if unchanged:
            break
    if ref_pos.size < min_matches:
        raise AlignmentError(
            f"only {ref_pos.size} of {counts} matched consistently (need {min_matches})"
        )
    offset_s = intercept - slope * anchor
    drift_ppm = (slope - 1.0) * 1e6
    residual_ms = (ref.onset[ref_pos] - (intercept + slope * x[oth_pos])) * 1000.0
    matched = pd.DataFrame(
        {
            "ref_index": ref.labels[ref_pos],
            "other_index": oth.labels[oth_pos],
            "code": oth.code[oth_pos],
            "t_ref": ref.onset[ref_pos],
            "t_other": oth.onset[oth_pos],
            "residual_ms": residual_ms,
        }
    )
    ref_left = np.setdiff1d(np.arange(ref.onset.size), ref_pos)
    oth_left = np.setdiff1d(np.arange(oth.onset.size), oth_pos)
    unmatched = pd.DataFrame(
        {
            "side": ["reference"] * ref_left.size + ["other"] * oth_left.size,
            "index": np.concatenate([ref.labels[ref_left], oth.labels[oth_left]]),
            "code": np.concatenate([ref.code[ref_left], oth.code[oth_left]]),
            "onset_s": np.concatenate([ref.onset[ref_left], oth.onset[oth_left]]),
        }
    )
    abs_ms = np.abs(residual_ms)
    warnings: list[str] = []
    if abs_ms.max() > max_residual_ms:
        warnings.append(
            f"poor fit: largest residual {abs_ms.max():.2f} ms exceeds {max_residual_ms} ms "
            f"(median {np.median(abs_ms):.2f} ms over {ref_pos.size} pairs); check trigger "
            "latency or jitter of the devices"
        )
    # same-code events close enough for the search but rejected by the fit
    near_ref, near_oth = _match(index, intercept + slope * x, oth, search_tolerance_s)
    rejected = np.setdiff1d(near_oth, oth_pos)
    if rejected.size:
        missed_ms = (
            ref.onset[near_ref[np.isin(near_oth, rejected)]] - (intercept + slope * x[rejected])
        ) * 1000.0
        warnings.append(
            f"{rejected.size} same-code pair(s) within {search_tolerance_s * 1000:.0f} ms were "
            f"rejected as outliers (residuals {np.round(missed_ms, 1).tolist()} ms)"
        )
    if abs(drift_ppm) > max_drift_ppm:
        warnings.append(f"drift {drift_ppm:.1f} ppm exceeds the searched {max_drift_ppm} ppm")
    return Alignment(
        offset_s=float(offset_s),
        drift_ppm=float(drift_ppm),
        n_matched=int(ref_pos.size),
        matched=matched,
        unmatched=unmatched,
        residual_ms_median=float(np.median(abs_ms)),
        residual_ms_max=float(abs_ms.max()),
        warnings=warnings,
    )


def _samples(times_s: np.ndarray, sfreq: float, duration_s: float | None) -> pd.arrays.IntegerArray:
    """Sample indices round(t * sfreq) as Int64; NA where t is NaN, negative or past the end."""
    samples = np.rint(np.asarray(times_s, dtype=float) * sfreq)
    valid = np.isfinite(samples) & (samples >= 0)
    if duration_s is not None:
        valid &= samples <= np.rint(duration_s * sfreq)
    return _int_or_na(samples, valid)


def _int_or_na(values: np.ndarray, valid: np.ndarray) -> pd.arrays.IntegerArray:
    """Nullable Int64 array of `values`, NA where `valid` is False."""
    return pd.arrays.IntegerArray(np.where(valid, values, 0).astype(np.int64), ~valid)


_POINTS = ("onset", "apex", "offset")


@dataclass(eq=False)
class Timeline:
    """A session on the EEG clock: device alignments, trials, and expression lookup.

    trials : one row per EEG marker 100..148: ``code``, ``onset_s``, ``end_s`` (EEG
        seconds; end = next marker onset, or the EEG end for the last), ``eeg_start``,
        ``eeg_stop``, ``physio_start``, ``physio_stop`` (samples, stop exclusive),
        ``frame_start``, ``frame_stop`` (rows of ``frames.index``, stop exclusive: the
        camera run of that marker). Int64, NA where a device did not record.
    alignments : {"physio": Alignment, "camera": Alignment} with EEG as reference;
        absent keys for devices not given.
    camera_runs : ``frames.markers()`` (camera clock), or None without a camera.
    clock : ``"eeg"`` (the EEG is the reference) or ``"camera"``: a session whose EEG is
        unreadable or has no markers, kept on the camera's own clock by `camera_timeline`
        (no trials; expressions get frame indices only, EEG and BIOPAC samples NA).
    """

    trials: pd.DataFrame
    alignments: dict[str, Alignment]
    eeg_sfreq: float
    physio_sfreq: float | None = None
    frames: FrameSequence | None = None
    camera_runs: pd.DataFrame | None = None
    fps: float = 150.0
    eeg_duration_s: float | None = None
    physio_duration_s: float | None = None
    clock: str = "eeg"

    def locate(self, expressions: pd.DataFrame) -> pd.DataFrame:
        """Map coding-file expressions to EEG samples, BIOPAC samples and frame indices.

        expressions : one row per expression with ``marker`` and, for each point p of
            onset/apex/offset, ``p_tod_s`` (seconds of day of the frame name, may be NaN)
            and ``p_s`` (seconds from the first frame of that marker's camera recording).
        Returns a copy with Int64 columns ``eeg_p``, ``physio_p``, ``frame_p`` for each
        point, ``located_by`` and ``locate_problem`` (NA when all went well).

        Rules, per point: the frame time of day, mapped through the camera alignment, is
        preferred ("frame_time"); otherwise the clip-relative seconds are added to the
        time of the first frame of the marker's run ("clip_time"). A time outside that
        marker's camera recording is not located. Without camera frames for the marker,
        the clip start is approximated by the EEG marker onset (the camera starts on the
        trigger; error up to about one frame period), and ``locate_problem`` says so.
        ``located_by`` is "frame_time+clip_time" when the points of a row used both.
        No row is dropped: what cannot be located stays NA with the reason.
        """
        if "marker" not in expressions.columns:
            raise ConfigError("the expressions table needs a 'marker' column")
        out = expressions.copy()
        n = len(out)
        marker = pd.to_numeric(out["marker"], errors="coerce").to_numpy(dtype=float)
        problems: list[list[str]] = [[] for _ in range(n)]
        methods: list[list[str]] = [[] for _ in range(n)]

        def note(mask: np.ndarray, text: object) -> None:
            for row in np.flatnonzero(mask):
                message = text(row) if callable(text) else str(text)
                if message not in problems[row]:
                    problems[row].append(message)

        trial_onset = _first_by_code(self.trials, "onset_s", marker)
        anchor_first, anchor_last = self._anchor_runs(marker)
        has_run = np.isfinite(anchor_first)
        camera = self.alignments.get("camera")
        physio = self.alignments.get("physio")
        no_marker = ~np.isfinite(marker)
        note(no_marker, "no marker")
        for point in _POINTS:
            tod = _numeric_column(out, f"{point}_tod_s", n)
            clip = _numeric_column(out, f"{point}_s", n)
            cam_t, method = self._camera_times(tod, clip, anchor_first)
            has_cam = np.isfinite(cam_t)
            run_code = self._run_code_at(cam_t)
            inside = has_cam & (run_code == marker)
            outside = has_cam & has_run & ~inside
            note(
                outside,
                lambda r, p=point, t=cam_t: (
                    f"{p} at {t[r] - anchor_first[r]:.3f} s lies outside the camera recording "
                    f"of marker {int(marker[r])} (0 to {anchor_last[r] - anchor_first[r]:.3f} s)"
                ),
            )
            note(
                has_cam & ~has_run & ~no_marker,
                lambda r: f"marker {int(marker[r])} was not recorded by the camera: no frame index",
            )
            cam_t[outside] = np.nan
            method[outside] = ""
            has_cam &= ~outside
            eeg_t = np.full(n, np.nan)
            if camera is not None and self.clock == "eeg":
                eeg_t[has_cam] = camera.to_reference(cam_t[has_cam])
            frame = np.zeros(n, dtype=np.int64)
            if inside.any():
                frame[inside] = self.frames.frame_at(cam_t[inside])
            approx = ~has_cam & ~outside & np.isfinite(clip) & np.isfinite(trial_onset)
            eeg_t[approx] = (trial_onset + clip)[approx]
            method[approx] = "clip_time"
            note(
                approx,
                lambda r: (
                    f"no camera frames for marker {int(marker[r])}: clip start taken as the "
                    "EEG marker onset (about one frame of uncertainty)"
                ),
            )
            placed = np.isfinite(cam_t) if self.clock == "camera" else np.isfinite(eeg_t)
            lost = ~placed & ~outside & ~no_marker
            note(lost & ~np.isfinite(tod) & ~np.isfinite(clip), f"no {point} time given")
            note(
                lost & (np.isfinite(tod) | np.isfinite(clip)),
                lambda r, p=point, tod=tod, clip=clip: (
                    f"{p}: a frame time of day needs the camera frames"
                    if camera is None and np.isfinite(tod[r]) and not np.isfinite(clip[r])
                    else f"marker {int(marker[r])} has neither camera frames nor an EEG trial"
                ),
            )
            out[f"eeg_{point}"] = _samples(eeg_t, self.eeg_sfreq, self.eeg_duration_s)
            note(
                np.isfinite(eeg_t) & out[f"eeg_{point}"].isna().to_numpy(),
                f"{point} falls outside the EEG recording",
            )
            if physio is not None:
                physio_t = physio.to_other(eeg_t)
                out[f"physio_{point}"] = _samples(
                    physio_t, self.physio_sfreq, self.physio_duration_s
                )
                note(
                    np.isfinite(physio_t) & out[f"physio_{point}"].isna().to_numpy(),
                    f"{point} falls outside the BIOPAC recording",
                )
            else:
                out[f"physio_{point}"] = pd.array([pd.NA] * n, dtype="Int64")
            out[f"frame_{point}"] = _int_or_na(frame, inside)
            for row in np.flatnonzero(placed):
                if method[row] not in methods[row]:
                    methods[row].append(method[row])
        out["located_by"] = pd.array(
            ["+".join(sorted(m)) if m else pd.NA for m in methods], dtype="string"
        )
        out["locate_problem"] = pd.array(
            ["; ".join(p) if p else pd.NA for p in problems], dtype="string"
        )
        return out

    def _camera_times(
        self, tod: np.ndarray, clip: np.ndarray, anchor_first: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Camera-clock times of one expression point (NaN where unknown) and the method
        per row: the frame time of day, moved by whole days next to the marker's run (so
        sessions past midnight work), else the run's first frame time + clip seconds."""
        cam_t = np.full(tod.shape, np.nan)
        method = np.full(tod.shape, "", dtype=object)
        if "camera" not in self.alignments and self.clock != "camera":
            return cam_t, method
        has_run = np.isfinite(anchor_first)
        near = np.where(has_run, anchor_first, self.frames.times[0])
        use_tod = np.isfinite(tod)
        days = np.round((near - tod) / SECONDS_PER_DAY)
        cam_t[use_tod] = (tod + days * SECONDS_PER_DAY)[use_tod]
        method[use_tod] = "frame_time"
        use_clip = ~use_tod & np.isfinite(clip) & has_run
        cam_t[use_clip] = (anchor_first + clip)[use_clip]
        method[use_clip] = "clip_time"
        if self.clock == "camera":
            method[use_tod | use_clip] = "camera_clock_" + method[use_tod | use_clip]
        return cam_t, method

    def _anchor_runs(self, marker: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First and last frame time of each row's marker run (NaN without one): the run
        matched to an EEG trial when there is one, else the earliest run of that code."""
        first = np.full(marker.shape, np.nan)
        last = np.full(marker.shape, np.nan)
        if self.camera_runs is None or self.camera_runs.empty:
            return first, last
        runs = self.camera_runs.assign(
            unmatched=~self.camera_runs["first_index"].isin(
                self.trials["frame_start"].dropna().astype(np.int64)
            )
        )
        runs = runs.sort_values(["unmatched", "onset_s"], kind="stable").drop_duplicates("code")
        by_code = runs.set_index("code")
        codes = pd.Series(marker)
        first[:] = codes.map(by_code["onset_s"]).to_numpy(dtype=float)
        last[:] = codes.map(by_code["last_s"]).to_numpy(dtype=float)
        return first, last

    def _run_code_at(self, cam_t: np.ndarray) -> np.ndarray:
        """Code of the camera run whose frames span each time (NaN where none), with half
        a frame period of slack at either end."""
        code = np.full(cam_t.shape, np.nan)
        if self.camera_runs is None or self.camera_runs.empty:
            return code
        half = 0.5 / self.fps
        runs = self.camera_runs.sort_values("onset_s")
        starts = runs["onset_s"].to_numpy() - half
        ends = runs["last_s"].to_numpy() + half
        finite = np.isfinite(cam_t)
        position = np.searchsorted(starts, np.where(finite, cam_t, -np.inf), side="right") - 1
        found = finite & (position >= 0)
        position = np.maximum(position, 0)
        found &= cam_t <= ends[position]
        code[found] = runs["code"].to_numpy()[position[found]]
        return code


def _numeric_column(table: pd.DataFrame, name: str, n: int) -> np.ndarray:
    if name not in table.columns:
        return np.full(n, np.nan)
    return pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=float)


def _first_by_code(trials: pd.DataFrame, column: str, marker: np.ndarray) -> np.ndarray:
    """Value of `column` in the first trial with each row's marker code (NaN if none)."""
    first = trials.drop_duplicates("code").set_index("code")[column]
    return pd.Series(marker).map(first).to_numpy(dtype=float)


def _align_device(name: str, eeg_markers: pd.DataFrame, device_markers: pd.DataFrame, **kwargs):
    try:
        return align(eeg_markers, device_markers, **kwargs)
    except AlignmentError as exc:
        error = AlignmentError(f"{name} markers against the EEG: {exc}")
        error.device = name  # which device to drop to keep the rest of the session
        raise error from exc


def build_timeline(
    eeg_markers: pd.DataFrame,
    physio_markers: pd.DataFrame | None,
    frames: FrameSequence | None,
    *,
    eeg_sfreq: float,
    physio_sfreq: float | None = None,
    fps: float = 150.0,
    eeg_duration_s: float | None = None,
    physio_duration_s: float | None = None,
    max_residual_ms: float = 5.0,
    min_matches: int = 3,
    camera_latency_s: float | None = None,
) -> Timeline:
    """Put BIOPAC and camera on the EEG clock and cut the session into marker trials.

    eeg_markers : DataFrame ``onset_s`` (s from the first EEG sample), ``code``.
    physio_markers : the same from the BIOPAC (s from its first sample), or None.
    frames : the session's `FrameSequence` (all clip folders), or None. Its marker runs
        (`FrameSequence.markers`) are aligned with the EEG markers.
    eeg_sfreq, physio_sfreq : sampling rates in Hz.
    fps : camera frame rate in Hz; the camera fit warns above
        ``max(max_residual_ms, 1000 / fps)`` because run onsets are frame-quantised.
    eeg_duration_s, physio_duration_s : recording lengths in s, when known: the last
        trial ends at the EEG end, and samples past a recording's end become NA.
    camera_latency_s : expected lag of a run's first frame behind its trigger (the recorder
        polls the trigger line, so the lag is uniform over one frame period); subtracted
        from run onsets before alignment. Default half a frame period, ``0.5 / fps``.
    Raises `AlignmentError` naming the device when its markers cannot be aligned.
    """
    if not eeg_sfreq or eeg_sfreq <= 0:
        raise ConfigError(f"eeg_sfreq must be a positive rate in Hz, got {eeg_sfreq!r}")
    eeg = _events(eeg_markers, "EEG")
    if eeg.onset.size == 0:
        error = AlignmentError(
            "the EEG has no markers: no trials and no common clock (check the trigger "
            "channel or the marker file of the EEG recording)"
        )
        error.device = "EEG"
        raise error
    alignments: dict[str, Alignment] = {}
    if physio_markers is not None:
        if not physio_sfreq or physio_sfreq <= 0:
            raise ConfigError("physio_sfreq (Hz) is needed with BIOPAC markers")
        alignments["physio"] = _align_device(
            "BIOPAC",
            eeg_markers,
            physio_markers,
            max_residual_ms=max_residual_ms,
            min_matches=min_matches,
        )
    camera_runs = None
    if camera_latency_s is None:
        camera_latency_s = 0.5 / fps
    if frames is not None:
        camera_runs = frames.markers()
        # The first frame of a run is the first grab after the trigger turned on: the camera
        # polls the line, so it lags the marker by U(0, 1/fps); align the expected trigger time.
        alignments["camera"] = _align_device(
            "camera",
            eeg_markers,
            camera_runs.assign(onset_s=camera_runs["onset_s"] - camera_latency_s),
            max_residual_ms=max(max_residual_ms, 1000.0 / fps),
            min_matches=min_matches,
        )

    is_trial = np.isin(eeg.code, np.asarray(VALID_MARKERS))
    labels, onset, code = eeg.labels[is_trial], eeg.onset[is_trial], eeg.code[is_trial]
    end = np.append(onset[1:], np.nan if eeg_duration_s is None else float(eeg_duration_s))
    trials = pd.DataFrame({"code": code, "onset_s": onset, "end_s": end})
    trials["eeg_start"] = _samples(onset, eeg_sfreq, eeg_duration_s)
    trials["eeg_stop"] = _samples(end, eeg_sfreq, eeg_duration_s)
    if "physio" in alignments:
        to_physio = alignments["physio"].to_other
        trials["physio_start"] = _samples(to_physio(onset), physio_sfreq, physio_duration_s)
        trials["physio_stop"] = _samples(to_physio(end), physio_sfreq, physio_duration_s)
    else:
        trials["physio_start"] = trials["physio_stop"] = pd.array([pd.NA] * len(code), "Int64")
    frame_start = np.zeros(code.size, dtype=np.int64)
    frame_stop = np.zeros(code.size, dtype=np.int64)
    recorded = np.zeros(code.size, dtype=bool)
    if "camera" in alignments:
        matched = alignments["camera"].matched
        run_of_marker = pd.Series(matched["other_index"].to_numpy(), index=matched["ref_index"])
        run = pd.Series(labels).map(run_of_marker)
        recorded = run.notna().to_numpy()
        rows = run[recorded].astype(np.int64).to_numpy()
        frame_start[recorded] = camera_runs.loc[rows, "first_index"].to_numpy()
        frame_stop[recorded] = camera_runs.loc[rows, "last_index"].to_numpy() + 1
    trials["frame_start"] = _int_or_na(frame_start, recorded)
    trials["frame_stop"] = _int_or_na(frame_stop, recorded)
    return Timeline(
        trials=trials,
        alignments=alignments,
        eeg_sfreq=float(eeg_sfreq),
        physio_sfreq=None if physio_sfreq is None else float(physio_sfreq),
        frames=frames,
        camera_runs=camera_runs,
        fps=float(fps),
        eeg_duration_s=eeg_duration_s,
        physio_duration_s=physio_duration_s,
    )


def camera_timeline(frames: FrameSequence, *, fps: float = 150.0) -> Timeline:
    """A session kept on the camera's own clock, for when the EEG cannot be the reference
    (unreadable, or without markers): expressions are located in frames by their frame
    time of day or by clip seconds from their marker's camera run; no trials, and EEG and
    BIOPAC samples stay NA. ``located_by`` starts with ``camera_clock_`` to flag them.
    """
    empty = pd.DataFrame(
        {
            "code": pd.Series(dtype="int64"),
            "onset_s": pd.Series(dtype="float64"),
            "end_s": pd.Series(dtype="float64"),
            **{
                c: pd.array([], dtype="Int64")
                for c in (
                    "eeg_start",
                    "eeg_stop",
                    "physio_start",
                    "physio_stop",
                    "frame_start",
                    "frame_stop",
                )
            },
        }
    )
    return Timeline(
        trials=empty,
        alignments={},
        eeg_sfreq=float("nan"),
        frames=frames,
        camera_runs=frames.markers(),
        fps=float(fps),
        clock="camera",
    )
