"""Spotters: frame scores -> intervals, with every threshold chosen on training participants.

The training-free optical-flow spotter (`flow_candidates` + `select_intervals`):

1. Candidates. Blocks are visited from the highest detection score down
   (`FrameScores.detection`: face motion in noise units at the micro or macro lag); a
   block not yet covered by an earlier candidate becomes one: its peak is the apex, its
   extent comes from how far the displacement has grown at each lag
   (`FrameScores.extent` with `fraction`), and the frames it spans are covered (a
   non-maximum suppression over the candidate's own extent); a candidate whose extent
   would swallow the apex of a stronger one is dropped. Onset and offset are the block
   centres at that distance before and after the peak.
2. Selection. A candidate is reported when its score reaches `threshold`, with
   `blink_px` its eye-region motion stays below that many pixels (a 128-px face crop: a
   blink is not an expression), and with `head_px` the head itself does not move there
   and back by more than that. Its kind follows its length (`length_limits`).

`tune_flow` picks (threshold, fraction, blink_px, head_px) from `FLOW_GRID` by the overall MEGC F1
on the training participants' videos only; `run_loso` runs leave-one-subject-out and
audits every fold: the tuning sees an `AuditedInputs` view that raises `LeakageError`
when asked for a participant outside the training side and logs every participant it
read, so the audit is a measurement, not a promise. Ties in F1 go to the higher
precision, then to the first grid entry (grid order: thresholds ascending).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mmhe.errors import ConfigError
from mmhe.evaluation.splits import LeakageError, audit_split, loso
from mmhe.evaluation.spotting import (
    as_intervals,
    counts_to_scores,
    greedy_match,
    interval_iou,
    kind_from_length,
)
from mmhe.features.spotting import FACE_GROUPS, FrameScores

CANDIDATE_FLOOR = 1.5
"""Candidates below this detection score (noise units) are never kept."""

FLOW_GRID: dict[str, tuple[Any, ...]] = {
    "threshold": tuple(float(t) for t in np.round(np.arange(2.0, 8.01, 0.25), 2)),
    "fraction": (0.5, 0.6, 0.8),
    "blink_px": (0.6, 1.0, None),
    "head_px": (0.3, 0.6, None),
}
"""Values tried for each parameter of the flow spotter (all combinations)."""

INTERVAL_COLUMNS = ["video", "onset", "offset", "apex", "kind", "score"]


class FlowSpotterParams(BaseModel):
    """Thresholds of the flow spotter (module docstring). The defaults are a starting
    point for a single video (values LOSO chose on the synthetic planted set);
    `mmhe spot` always tunes them on the training participants.

    threshold : detection score (noise units) a candidate must reach.
    fraction : share of the largest displacement that marks the onset and the offset.
    blink_px : veto candidates whose eye-region motion exceeds this (px at 128); None:
        no veto.
    head_px : veto candidates at which the head itself moves (there and back) by more
        than this (px at 128): residual tracking errors of a moving head look like
        expressions; None: no veto.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float = Field(4.0, gt=0)
    fraction: float = Field(0.6, gt=0, le=1)
    blink_px: float | None = Field(0.6, gt=0)
    head_px: float | None = Field(0.6, gt=0)


# ---------------------------------------------------------------- one video


def flow_candidates(
    scores: FrameScores, fraction: float, *, floor: float = CANDIDATE_FLOOR
) -> pd.DataFrame:
    """Candidate intervals of one video (step 1 of the module docstring).

    Returns a DataFrame sorted by decreasing score with columns onset, offset, apex
    (frames of the video, inclusive), score (noise units), eyes and head (bump scores,
    px at 128), group and scale (0 micro, 1 macro lag).
    """
    detection = scores.detection()
    face = detection.face
    covered = np.zeros(len(face), dtype=bool)
    apexes = np.zeros(len(face), dtype=bool)
    names = list(FACE_GROUPS)
    rows = []
    last = scores.n_frames - 1
    for block in np.argsort(-face, kind="stable"):
        if face[block] < floor:
            break
        if covered[block]:
            continue
        scale = int(detection.scale[block])
        group = names[int(np.argmax(detection.groups[scale][:, block]))]
        before, after = scores.extent(int(block), group, fraction)
        first, last_block = max(0, int(np.floor(block - before))), int(np.ceil(block + after))
        if apexes[first : last_block + 1].any():  # it would swallow a stronger candidate
            covered[block] = True
            continue
        covered[first : last_block + 1] = True
        apexes[block] = True
        centre = float(scores.frames[block])
        rows.append(
            {
                "onset": int(np.clip(round(centre - before * scores.stride), 0, last)),
                "offset": int(np.clip(round(centre + after * scores.stride), 0, last)),
                "apex": round(centre),
                "score": float(face[block]),
                "eyes": float(detection.eyes[block]),
                "head": float(detection.head[block]),
                "group": group,
                "scale": scale,
            }
        )
    return pd.DataFrame(
        rows, columns=["onset", "offset", "apex", "score", "eyes", "head", "group", "scale"]
    )


def select_intervals(
    candidates: pd.DataFrame, params: FlowSpotterParams, fps: float
) -> pd.DataFrame:
    """Candidates that pass `params` (step 2), with their kind from their length."""
    keep = candidates["score"] >= params.threshold
    if params.blink_px is not None:
        keep &= candidates["eyes"] <= params.blink_px
    if params.head_px is not None:
        keep &= candidates["head"] <= params.head_px
    out = candidates[keep].copy()
    out["kind"] = kind_from_length(out["offset"] - out["onset"] + 1, fps)
    return out


# ---------------------------------------------------------------- audited inputs


class AuditedInputs:
    """Per-video inputs and the truth, handed out participant by participant, logged.

    videos : table with columns ``video`` (id) and ``subject_id``.
    load : video id -> its input (e.g. `FrameScores`); called lazily, results cached.
    truth : intervals with a ``video`` column (the participant comes from `videos`).

    `view(allowed)` gives an object with the same reading methods that raises
    `LeakageError` for a video of any other participant (and, for the test side, for
    the truth); every participant read through any view is recorded in `reads` (view
    name -> set of participants).
    """

    def __init__(
        self, videos: pd.DataFrame, load: Callable[[str], Any], truth: pd.DataFrame
    ) -> None:
        self.videos = videos[["video", "subject_id"]].reset_index(drop=True)
        self._owner = dict(zip(self.videos["video"], self.videos["subject_id"], strict=True))
        self._load = load
        self._cache: dict[str, Any] = {}
        self._truth = truth
        self.reads: dict[str, set[str]] = {}

    def view(self, name: str, allowed: Iterable[str], *, labels: bool = True) -> _View:
        """A reader restricted to `allowed` participants; ``labels=False`` (test side)
        also refuses the truth."""
        return _View(self, name, frozenset(allowed), labels)

    def _get(self, name: str, allowed: frozenset[str], video: str) -> Any:
        owner = self._owner.get(video)
        if owner is None:
            raise ConfigError(f"unknown video {video!r}")
        self.reads.setdefault(name, set()).add(owner)
        if owner not in allowed:
            raise LeakageError(
                f"{name}: video {video} belongs to participant {owner}, who is not on this "
                "side of the split"
            )
        if video not in self._cache:
            self._cache[video] = self._load(video)
        return self._cache[video]


@dataclass
class _View:
    source: AuditedInputs
    name: str
    allowed: frozenset[str]
    labels: bool = True

    def videos(self) -> list[str]:
        table = self.source.videos
        return table.loc[table["subject_id"].isin(self.allowed), "video"].tolist()

    def subject_of(self, video: str) -> str:
        return self.source._owner[video]

    def __getitem__(self, video: str) -> Any:
        return self.source._get(self.name, self.allowed, video)

    def truth(self) -> pd.DataFrame:
        if not self.labels:
            raise LeakageError(f"{self.name}: the test side's true intervals are not readable")
        videos = set(self.videos())
        self.source.reads.setdefault(self.name, set()).update(self.allowed)
        return self.source._truth[self.source._truth["video"].isin(videos)]


# ---------------------------------------------------------------- tuning


def _grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    combos: list[dict[str, Any]] = [{}]
    for name, values in grid.items():
        combos = [{**c, name: v} for c in combos for v in values]
    return combos


class _GridScorer:
    """Exact MEGC counts of many selections of one candidate set (fast grid search).

    The IoU matrix of every (video, kind) group is computed once; a selection (a boolean
    mask over the candidates) is then scored with `greedy_match` per group, which gives
    the same counts as `spotting_scores` (tested).
    """

    def __init__(self, candidates: pd.DataFrame, truth: pd.DataFrame, fps: float) -> None:
        truth = as_intervals(truth, "truth", fps)
        self.n_truth = len(truth)
        self.groups = []
        candidates = candidates.reset_index(drop=True)
        order = candidates.sort_values(["video", "kind", "onset", "offset"], kind="stable")
        truth_groups = dict(tuple(truth.groupby(["video", "kind"])))
        for key, part in order.groupby(["video", "kind"], sort=False):
            gt = truth_groups.get(key)
            if gt is None:
                overlap = np.zeros((len(part), 0))
            else:
                gt = gt.sort_values(["onset", "offset"], kind="stable")
                overlap = interval_iou(part["onset"], part["offset"], gt["onset"], gt["offset"])
            self.groups.append((part.index.to_numpy(), overlap))

    def counts(self, selected: np.ndarray) -> dict[str, float]:
        tp = 0
        for rows, overlap in self.groups:
            mask = selected[rows]
            if mask.any() and overlap.shape[1]:
                tp += int((greedy_match(overlap[mask]) >= 0).sum())
        return counts_to_scores(tp, int(selected.sum()) - tp, self.n_truth - tp)


def tune_flow(
    inputs: _View,
    fps: float,
    grid: Mapping[str, Sequence[Any]] = FLOW_GRID,
    *,
    candidates: Callable[[str, float], pd.DataFrame] | None = None,
) -> tuple[FlowSpotterParams, pd.DataFrame]:
    """The flow spotter's parameters with the best overall F1 on `inputs` (training side).

    inputs : a view of `AuditedInputs` restricted to training participants (video ->
        `FrameScores`). candidates : optional cache (video, fraction) -> `flow_candidates`
        (labels play no part in candidates, so folds may share them; every video is
        still read through `inputs`, which logs it).
    Returns the chosen `FlowSpotterParams` and the table of every grid point
    (parameters, tp, fp, fn, precision, recall, f1).
    """
    videos = inputs.videos()
    truth = inputs.truth()
    rows = []
    for fraction in grid["fraction"]:
        parts = []
        for video in videos:
            scores = inputs[video]
            found = (
                candidates(video, fraction)
                if candidates is not None
                else flow_candidates(scores, fraction)
            )
            parts.append(found.assign(video=video))
        table = pd.concat([p for p in parts if len(p)] or parts[:1], ignore_index=True)
        table["kind"] = kind_from_length(table["offset"] - table["onset"] + 1, fps)
        scorer = _GridScorer(table, truth, fps)
        score, eyes = table["score"].to_numpy(), table["eyes"].to_numpy()
        head = table["head"].to_numpy()
        for combo in _grid({k: v for k, v in grid.items() if k != "fraction"}):
            selected = score >= combo["threshold"]
            if combo["blink_px"] is not None:
                selected &= eyes <= combo["blink_px"]
            if combo["head_px"] is not None:
                selected &= head <= combo["head_px"]
            rows.append({"fraction": fraction, **combo, **scorer.counts(selected)})
    table = pd.DataFrame(rows)
    best = table.sort_values(["f1", "precision"], ascending=False, kind="stable").iloc[0]
    return FlowSpotterParams(**{k: _plain(best[k]) for k in grid}), table


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


# ---------------------------------------------------------------- protocol


@dataclass
class SpotRun:
    """Result of a spotting protocol: one row per found interval and the fold records.

    intervals : video, onset, offset, apex, kind, score, fold, subject_id.
    folds : one dict per fold (test participant, chosen parameters, audit, seconds).
    """

    intervals: pd.DataFrame
    folds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def audit_passed(self) -> bool:
        return all(f["audit"]["passed"] for f in self.folds)


Spotter = Callable[[_View, _View, int], tuple[pd.DataFrame, dict[str, Any]]]
"""spotter(training view, test view, fold index) -> (intervals of the test videos, info)."""


def flow_spotter(fps: float, grid: Mapping[str, Sequence[Any]] = FLOW_GRID) -> Spotter:
    """The training-free flow spotter as a `run_loso` spotter (tuned per fold).

    Candidates depend on no label, so they are computed once per (video, fraction) and
    shared by the folds; each fold still reads its videos through its audited view.
    """
    cache: dict[tuple[str, float], pd.DataFrame] = {}
    views: dict[str, _View] = {}

    def candidates(video: str, fraction: float) -> pd.DataFrame:
        key = (video, fraction)
        if key not in cache:
            cache[key] = flow_candidates(views["current"][video], fraction)
        return cache[key]

    def spot(train: _View, test: _View, fold: int) -> tuple[pd.DataFrame, dict[str, Any]]:
        views["current"] = train
        params, table = tune_flow(train, fps, grid, candidates=candidates)
        best = table.sort_values(["f1", "precision"], ascending=False, kind="stable").iloc[0]
        views["current"] = test
        parts = [
            select_intervals(candidates(video, params.fraction), params, fps).assign(video=video)
            for video in test.videos()
        ]
        parts = [p for p in parts if len(p)]
        intervals = (
            pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=INTERVAL_COLUMNS)
        )
        return intervals, {"params": params.model_dump(), "train_f1": float(best["f1"])}

    return spot


def run_loso(
    videos: pd.DataFrame,
    load: Callable[[str], Any],
    truth: pd.DataFrame,
    spotter: Spotter,
    *,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> SpotRun:
    """Leave-one-subject-out spotting with an audited split per fold.

    videos : one row per video: ``video`` (id), ``subject_id``.
    load : video id -> the spotter's input (read only through audited views).
    truth : true intervals (video, onset, offset, kind, ...).
    spotter : see `Spotter` (`flow_spotter`, or the learned spotter).
    Raises `LeakageError` when a fold's structure is wrong or its spotter read a test
    participant during tuning.
    """
    videos = videos.reset_index(drop=True)
    groups = videos["subject_id"].to_numpy(dtype=str)
    inputs = AuditedInputs(videos, load, truth)
    run = SpotRun(intervals=pd.DataFrame(columns=[*INTERVAL_COLUMNS, "fold", "subject_id"]))
    parts = []
    for fold in loso(groups):
        started = time.perf_counter()
        structure = audit_split(fold, groups)
        (test_subject,) = fold.test_groups
        train_subjects = sorted(set(groups[fold.train_idx]))
        train_view = inputs.view(f"fold{fold.index}-train", train_subjects)
        test_view = inputs.view(f"fold{fold.index}-test", [test_subject], labels=False)
        found, info = spotter(train_view, test_view, fold.index)
        read = inputs.reads.get(train_view.name, set())
        audit = {
            **{k: structure[k] for k in ("fold", "n_train", "n_test", "checks")},
            "test_subject": test_subject,
            "train_subjects": train_subjects,
            "read_while_training": sorted(read),
            "test_read_while_training": test_subject in read,
        }
        audit["passed"] = bool(structure["passed"] and not audit["test_read_while_training"])
        if not audit["passed"]:
            raise LeakageError(f"fold {fold.index}: the spotter read {test_subject} in training")
        if len(found):
            parts.append(found.assign(fold=fold.index, subject_id=test_subject))
        record = {
            "fold": fold.index,
            "test_subject": test_subject,
            "n_found": len(found),
            "seconds": round(time.perf_counter() - started, 3),
            "audit": audit,
            **info,
        }
        run.folds.append(record)
        if progress is not None:
            progress(record)
    if parts:
        columns = [*INTERVAL_COLUMNS, "fold", "subject_id"]
        run.intervals = pd.concat(parts, ignore_index=True)[columns]
    return run
