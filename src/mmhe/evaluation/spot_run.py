"""`spot_store`: spot micro- and macro-expressions in every stored trial video, LOSO.

Input: a store ingested with ``video_size`` (whole-trial face videos, `mmhe.store.videos`)
whose coding file gives the true intervals. Steps:

1. Frame scores (`mmhe.features.spotting.frame_scores`) of every video, computed per
   participant in parallel (Dask through `mmhe.parallel.run_tasks`) and cached in
   ``STORE/<version>/features/spotting-<hash>/<subject>.npz``; the hash covers the
   score parameters, the store version and `SPOT_FORMAT`.
2. The true intervals (`spotting_truth`): every located expression of a trial with a
   video, in frames of that video (``frame_onset - frame_start`` ...); expressions that
   cannot be placed are listed in ``issues.csv`` with the reason, never dropped silently.
3. Leave-one-subject-out with the chosen spotter (`flow_spotter` or `learned_spotter`):
   every threshold is chosen on the training participants, and every fold is audited
   (`run_loso`).
4. Scores (`spotting_scores`, MEGC rules), the false-positive rate of the videos without
   any expression (the no-expression control) and, with ``recognise``, the STRS score
   (`mmhe.evaluation.spot_recognition`).

Outputs in OUT: ``intervals.csv`` (participant, trial, marker, onset, offset, apex, kind,
score, fold, onset_s, offset_s), ``results.csv`` (rows ME, MaE, overall; tp, fp, fn,
precision, recall, F1), ``control.csv``, ``matches.csv``, ``truth.csv``, ``folds.csv``,
``issues.csv``, ``audit.json``, ``config.json`` and ``summary.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from mmhe import __version__
from mmhe.errors import ConfigError, InputFileError
from mmhe.evaluation.spotter import FLOW_GRID, SpotRun, flow_spotter, run_loso
from mmhe.evaluation.spotter_learned import LearnedSpotterConfig, learned_spotter
from mmhe.evaluation.spotting import results_table, spotting_scores
from mmhe.features.spotting import FlowSpotConfig, FrameScores, frame_scores, video_landmarks
from mmhe.parallel import opencv_threads, run_tasks
from mmhe.store.reader import MMHEStore
from mmhe.store.videos import stored_videos

SPOT_FORMAT = 2  # 2: facial regions from landmarks by default
"""Bumped when cached frame scores change meaning."""


class SpotConfig(BaseModel):
    """Everything a spotting run depends on (saved as ``config.json``).

    method : ``flow`` (training-free, thresholds tuned per fold) or ``learned``.
    protocol : ``loso`` (leave one participant out).
    scores : frame-score parameters. learned : the learned spotter's settings.
    iou : IoU threshold of a hit (MEGC: 0.5). recognise : also recognise the emotion of
    every found interval and report STRS.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["flow", "learned"] = "flow"
    protocol: Literal["loso"] = "loso"
    scores: FlowSpotConfig = FlowSpotConfig()
    learned: LearnedSpotterConfig = LearnedSpotterConfig()
    iou: float = Field(0.5, gt=0, le=1)
    recognise: bool = False
    seed: int = 0


def video_id(subject_id: str, trial_index: int) -> str:
    return f"{subject_id}/{int(trial_index)}"


# ---------------------------------------------------------------- frame scores


def scores_key(store: MMHEStore, config: FlowSpotConfig) -> str:
    """Cache folder name of the frame scores of `store` with `config`."""
    payload = json.dumps(
        {"format": SPOT_FORMAT, "store": store.path.name, "params": config.model_dump()},
        sort_keys=True,
    )
    return "spotting-" + hashlib.sha256(payload.encode()).hexdigest()[:10]


def _score_participant(
    store_path: str, subject_id: str, trials: list[int], config: FlowSpotConfig, target: str
) -> dict[str, Any]:
    """Frame scores of one participant's videos into one ``.npz`` (atomic); a Dask task.
    OpenCV runs on one thread (`mmhe.parallel.opencv_threads`)."""
    with opencv_threads(1):
        return _score_videos(store_path, subject_id, trials, config, target)


def _score_videos(
    store_path: str, subject_id: str, trials: list[int], config: FlowSpotConfig, target: str
) -> dict[str, Any]:
    started = time.perf_counter()
    store = MMHEStore(store_path)
    arrays: dict[str, np.ndarray] = {}
    n_frames = 0
    for trial in trials:
        video = store.video(subject_id, trial)
        points = video_landmarks(video.frames) if config.regions == "landmarks" else None
        scores = frame_scores(video.frames, video.fps, config, landmarks=points)
        n_frames += scores.n_frames
        for name, value in scores.to_arrays().items():
            arrays[f"{trial}/{name}"] = value
    tmp = f"{target}.tmp{os.getpid()}.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, target)
    return {
        "subject_id": subject_id,
        "n_frames": n_frames,
        "seconds": time.perf_counter() - started,
    }


def compute_frame_scores(
    store: MMHEStore,
    videos: pd.DataFrame,
    config: FlowSpotConfig,
    *,
    scheduler: str | None = None,
    n_workers: int = 2,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[Path, list[dict[str, Any]]]:
    """Frame scores of every video, cached per participant; (cache folder, new work)."""
    folder = store.path / "features" / scores_key(store, config)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.json").write_text(
        json.dumps({"format": SPOT_FORMAT, "params": config.model_dump()}, indent=2)
    )
    tasks = []
    for sid, part in videos.groupby("subject_id", sort=True):
        target = folder / f"{sid}.npz"
        if not target.is_file():
            trials = [int(t) for t in part["trial_index"]]
            tasks.append((_score_participant, str(store.path), sid, trials, config, str(target)))
    done = run_tasks(tasks, scheduler, n_workers, progress) if tasks else []
    return folder, done


def load_frame_scores(folder: Path, subject_id: str, trial_index: int) -> FrameScores:
    """One video's cached `FrameScores`."""
    path = folder / f"{subject_id}.npz"
    with np.load(path) as data:
        prefix = f"{int(trial_index)}/"
        arrays = {k[len(prefix) :]: data[k] for k in data.files if k.startswith(prefix)}
    if not arrays:
        raise InputFileError(path, f"no frame scores of trial {trial_index}", "delete the cache")
    return FrameScores.from_arrays(arrays)


# ---------------------------------------------------------------- truth


def spotting_truth(store: MMHEStore, videos: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """True intervals in video frames, and the expressions that could not be placed.

    Returns (truth: video, subject_id, trial_index, marker, onset, apex, offset, kind,
    emotion, compound, expression_id, offset_coded; issues: expression_id, subject_id,
    row, reason).
    """
    expressions = store.expressions()
    columns = [
        "video", "subject_id", "trial_index", "marker", "onset", "apex", "offset", "kind",
        "emotion", "compound", "expression_id", "offset_coded",
    ]  # fmt: skip
    issues: list[dict[str, Any]] = []
    if not len(expressions):
        return pd.DataFrame(columns=columns), pd.DataFrame(
            columns=["expression_id", "subject_id", "row", "reason"]
        )
    lengths = {video_id(r.subject_id, r.trial_index): int(r.n_frames) for r in videos.itertuples()}
    trials = store.trials().set_index(["subject_id", "trial_index"])
    rows = []
    for e in expressions.itertuples(index=False):

        def problem(reason: str, e=e) -> None:
            issues.append(
                {
                    "expression_id": e.expression_id,
                    "subject_id": e.subject_id,
                    "row": e.row,
                    "reason": reason,
                }
            )

        if isinstance(e.locate_problem, str):
            problem(f"not located: {e.locate_problem}")
            continue
        if pd.isna(e.trial_index) or pd.isna(e.frame_onset) or pd.isna(e.frame_offset):
            problem("no trial or no camera frames for this expression")
            continue
        vid = video_id(e.subject_id, e.trial_index)
        if vid not in lengths:
            problem(f"trial {int(e.trial_index)} has no stored video")
            continue
        start = int(trials.loc[(e.subject_id, int(e.trial_index)), "frame_start"])
        onset, offset = int(e.frame_onset) - start, int(e.frame_offset) - start
        apex = int(e.frame_apex) - start if not pd.isna(e.frame_apex) else onset
        if not 0 <= onset <= offset < lengths[vid]:
            problem(f"frames {onset}..{offset} fall outside the video (0..{lengths[vid] - 1})")
            continue
        rows.append(
            {
                "video": vid,
                "subject_id": e.subject_id,
                "trial_index": int(e.trial_index),
                "marker": int(e.marker),
                "onset": onset,
                "apex": min(max(apex, onset), offset),
                "offset": offset,
                "kind": e.kind if e.kind in ("ME", "MaE") else None,
                "emotion": e.emotion,
                "compound": e.compound,
                "expression_id": e.expression_id,
                "offset_coded": bool(offset > apex),
            }
        )
    return pd.DataFrame(rows, columns=columns), pd.DataFrame(
        issues, columns=["expression_id", "subject_id", "row", "reason"]
    )


# ---------------------------------------------------------------- the run


def control_table(
    videos: pd.DataFrame, truth: pd.DataFrame, intervals: pd.DataFrame
) -> pd.DataFrame:
    """False positives in the videos without any true interval (no-expression control).

    One row per kind and one for all: videos, minutes, found, found_per_minute.
    """
    empty = videos[~videos["video"].isin(set(truth["video"]))]
    minutes = float((empty["n_frames"] / empty["fps"]).sum() / 60.0)
    found = intervals[intervals["video"].isin(set(empty["video"]))]
    rows = []
    for kind in ("ME", "MaE", "overall"):
        n = len(found) if kind == "overall" else int((found["kind"] == kind).sum())
        rows.append(
            {
                "kind": kind,
                "videos": len(empty),
                "minutes": round(minutes, 3),
                "found": n,
                "found_per_minute": n / minutes if minutes > 0 else float("nan"),
            }
        )
    return pd.DataFrame(rows)


def spot_store(
    store: str | Path | MMHEStore,
    out: str | Path,
    config: SpotConfig | None = None,
    *,
    scheduler: str | None = None,
    n_workers: int = 2,
    progress: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run spotting on a store and write the outputs to `out` (module docstring).

    scheduler : Dask scheduler address, ``"sync"`` (this process) or None (a local
        cluster of `n_workers`) for the frame scores.
    progress : called with ("scores", task summary) and ("fold", fold record).
    Returns the summary (also ``summary.json``). Raises `InputFileError` for a store
    without videos and `ConfigError` for fewer than two participants with videos.
    """
    config = config or SpotConfig()
    store = store if isinstance(store, MMHEStore) else MMHEStore(store)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    videos = stored_videos(store)
    if not len(videos):
        raise InputFileError(
            store.path,
            "the store holds no whole-trial videos",
            "ingest again with `mmhe ingest RAW --out STORE --video-size 128`",
        )
    videos.insert(
        0,
        "video",
        [video_id(s, t) for s, t in zip(videos["subject_id"], videos["trial_index"], strict=True)],
    )
    needed = 3 if config.method == "learned" else 2
    if videos["subject_id"].nunique() < needed:
        raise ConfigError(
            f"spotting with the {config.method} method under LOSO needs videos of at least "
            f"{needed} participants (the learned spotter splits the training side into fit "
            f"and validation participants); the store has {videos['subject_id'].nunique()}"
        )
    fps_values = videos["fps"].unique()
    if len(fps_values) != 1:
        raise ConfigError(
            f"videos have different frame rates {sorted(fps_values)}; spot them apart"
        )
    fps = float(fps_values[0])
    report = (lambda stage: lambda r: progress(stage, r)) if progress else (lambda stage: None)
    scores_started = time.perf_counter()
    folder, computed = compute_frame_scores(
        store,
        videos,
        config.scores,
        scheduler=scheduler,
        n_workers=n_workers,
        progress=report("scores"),
    )
    scores_seconds = time.perf_counter() - scores_started
    truth, issues = spotting_truth(store, videos)
    owner = dict(
        zip(
            videos["video"],
            zip(videos["subject_id"], videos["trial_index"], strict=True),
            strict=True,
        )
    )

    def load(video: str) -> FrameScores:
        sid, trial = owner[video]
        return load_frame_scores(folder, sid, trial)

    if config.method == "flow":
        spotter = flow_spotter(fps, FLOW_GRID)
    else:
        spotter = learned_spotter(fps, config.learned)
    run: SpotRun = run_loso(videos, load, truth, spotter, progress=report("fold"))
    intervals = _intervals_table(run.intervals, videos, store)
    scores = spotting_scores(
        truth[["video", "onset", "offset", "kind"]],
        intervals[["video", "onset", "offset", "kind"]],
        iou=config.iou,
        fps=fps,
    )
    recognition = None
    if config.recognise:
        from mmhe.evaluation.spot_recognition import recognise_intervals

        intervals, recognition = recognise_intervals(store, videos, truth, intervals, config, fps)
    results = results_table(scores)
    control = control_table(videos, truth, intervals)
    on_box = (  # videos whose first frames gave no landmarks: face-box regions instead
        sum(not load(v).meta.get("landmarks") for v in videos["video"])
        if config.scores.regions == "landmarks"
        else len(videos)
    )
    _write_outputs(out, intervals, results, control, scores, truth, issues, run, recognition)
    summary = {
        "mmhe_version": __version__,
        "store": str(store.path),
        "method": config.method,
        "protocol": config.protocol,
        "fps": fps,
        "videos": len(videos),
        "participants": int(videos["subject_id"].nunique()),
        "frames": int(videos["n_frames"].sum()),
        "video_size": int(videos["size"].iloc[0]),
        "truth": {k: int((truth["kind"] == k).sum()) for k in ("ME", "MaE")},
        "truth_offset_not_coded": int((~truth["offset_coded"]).sum()) if len(truth) else 0,
        "expressions_not_placed": len(issues),
        "results": {k: scores[k] for k in ("ME", "MaE", "overall")},
        "control": control.set_index("kind").to_dict("index"),
        "recognition": recognition,
        "audit_passed": run.audit_passed,
        "frame_scores": {
            "cache": str(folder),
            "computed_participants": len(computed),
            "computed_frames": int(sum(c["n_frames"] for c in computed)),
            "regions": config.scores.regions,
            "videos_on_box_regions": on_box,
            "seconds": round(scores_seconds, 2),
        },
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json))
    (out / "config.json").write_text(
        json.dumps({"config": config.model_dump(), "flow_grid": FLOW_GRID}, indent=2, default=_json)
    )
    return summary


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def _intervals_table(found: pd.DataFrame, videos: pd.DataFrame, store: MMHEStore) -> pd.DataFrame:
    """The found intervals with participant, trial, marker and times from the trial start."""
    meta = videos.set_index("video")
    out = found.copy()
    out["participant"] = [meta.loc[v, "subject_id"] for v in out["video"]]
    out["trial"] = [int(meta.loc[v, "trial_index"]) for v in out["video"]]
    out["marker"] = [int(meta.loc[v, "code"]) for v in out["video"]]
    fps = meta["fps"].to_dict()
    out["onset_s"] = [o / fps[v] for o, v in zip(out["onset"], out["video"], strict=True)]
    out["offset_s"] = [o / fps[v] for o, v in zip(out["offset"], out["video"], strict=True)]
    columns = [
        "participant", "trial", "marker", "onset", "offset", "apex", "kind", "score", "fold",
        "onset_s", "offset_s", "video",
    ]  # fmt: skip
    for column in columns:
        if column not in out:
            out[column] = pd.Series(dtype=float)
    return (
        out[columns]
        .sort_values(["participant", "trial", "onset"], kind="stable")
        .reset_index(drop=True)
    )


def _write_outputs(
    out: Path,
    intervals: pd.DataFrame,
    results: pd.DataFrame,
    control: pd.DataFrame,
    scores: dict[str, Any],
    truth: pd.DataFrame,
    issues: pd.DataFrame,
    run: SpotRun,
    recognition: dict[str, Any] | None,
) -> None:
    intervals.to_csv(out / "intervals.csv", index=False)
    results.to_csv(out / "results.csv", index=False)
    control.to_csv(out / "control.csv", index=False)
    scores["matches"].to_csv(out / "matches.csv", index=False)
    truth.to_csv(out / "truth.csv", index=False)
    issues.to_csv(out / "issues.csv", index=False)
    folds = pd.DataFrame(
        [
            {
                "fold": f["fold"],
                "test_subject": f["test_subject"],
                "n_found": f["n_found"],
                "train_f1": f.get("train_f1"),
                "params": json.dumps(f.get("params"), default=_json),
                "seconds": f["seconds"],
            }
            for f in run.folds
        ]
    )
    folds.to_csv(out / "folds.csv", index=False)
    audit = {"passed": run.audit_passed, "folds": [f["audit"] for f in run.folds]}
    (out / "audit.json").write_text(json.dumps(audit, indent=2, default=_json))
    if recognition is not None:
        (out / "recognition.json").write_text(json.dumps(recognition, indent=2, default=_json))
