"""The learned spotter: a small temporal CNN scores every block from the regions' flow.

Per fold (`run_loso`), on training participants only:

1. Inputs (`block_features`). From the flow spotter's `FrameScores`: at every lag and for
   every facial region, the bump score and the sizes of
   D(t) - D(t - lag) and D(t) - D(t + lag), each divided by that region's noise level in
   the video (`robust_noise`): (n_features, n_blocks) per video.
2. Soft labels (`soft_labels`). For each true interval of kind k, block t gets a
   triangle: 1 at the apex, falling linearly to 0 at the onset and at the offset (SoftNet
   regresses a similar soft score); the label of kind k is the largest triangle of that
   kind.
3. Training (`train_spotnet`). `SpotNet` on the whole videos of the FIT participants (an
   inner split of the training participants, `inner_validation_split`), binary
   cross-entropy on the soft labels with positives weighted by the square root of the
   negative/positive ratio, Adam with weight decay, fixed epochs, seeded (`fold_seeds`).
4. Thresholds. The trained network scores the VALIDATION participants' videos (training
   side, never the test participant); `threshold_me` and `threshold_mae` are chosen from
   `LearnedSpotterConfig.thresholds` by the overall F1 there.
5. Intervals (`learned_intervals`). The scores of each kind, smoothed over 3 blocks,
   above its threshold form runs (of at least `MIN_RUN_BLOCKS`); each run's peak is the
   apex, and as the labels are triangles, a run from a to b at threshold h around the
   apex p spans the onset p - (p - a) / (1 - h) and the offset p + (b - p) / (1 - h).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field

from mmhe.evaluation.splits import inner_validation_split
from mmhe.evaluation.spotter import INTERVAL_COLUMNS, Spotter, _View
from mmhe.evaluation.spotting import KINDS, counts_to_scores, spotting_scores
from mmhe.evaluation.training import fold_seeds
from mmhe.features.spotting import FrameScores, bump_scores, robust_noise
from mmhe.models.spotting import SpotNet

MIN_RUN_BLOCKS = 3
"""Runs of fewer blocks above the threshold (0.1 s at 30 Hz) are noise, not intervals."""


class LearnedSpotterConfig(BaseModel):
    """Training and extraction settings of the learned spotter (module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    epochs: int = Field(80, ge=1)
    batch_videos: int = Field(8, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-3, ge=0)
    val_fraction: float = Field(0.34, gt=0, lt=1)
    thresholds: tuple[float, ...] = tuple(float(t) for t in np.round(np.arange(0.1, 0.91, 0.05), 2))
    seed: int = 0


def block_features(scores: FrameScores) -> np.ndarray:
    """Inputs of one video (step 1): (n_features, n_blocks) float32, noise units.

    Per lag and region: the bump score (`bump_scores`) and the magnitudes of
    D(t) - D(t - lag) and D(t) - D(t + lag), each divided by the region's noise level in
    the video (`robust_noise`); 3 x 10 x 6 = 180 features with the default regions and
    lags.
    """
    keep = list(range(len(scores.region_names)))
    n_blocks = scores.motion.shape[1]
    parts = []
    for j, lag in enumerate(scores.lags):
        motion = scores.motion[j][:, keep]  # (n_blocks, R, 2): D(t + lag) - D(t)
        noise = robust_noise(motion)[None, :]
        after = np.hypot(motion[..., 0], motion[..., 1]) / noise  # |D(t) - D(t + lag)|
        before = np.zeros_like(after)  # |D(t) - D(t - lag)|
        before[lag:] = after[: n_blocks - lag]
        parts += [bump_scores(motion, lag) / noise, before, after]
    features = np.concatenate(parts, axis=1).T
    return np.nan_to_num(features, nan=0.0).astype(np.float32)


def soft_labels(frames: np.ndarray, truth: pd.DataFrame) -> np.ndarray:
    """Triangle labels (2, n_blocks) of (ME, MaE) at block centres `frames` (step 2).

    truth : one video's intervals with onset, apex, offset (frames) and kind.
    """
    labels = np.zeros((len(KINDS), len(frames)), np.float32)
    for row in truth.itertuples(index=False):
        k = KINDS.index(row.kind)
        onset, apex, offset = float(row.onset), float(row.apex), float(row.offset)
        rise = np.clip((frames - onset) / max(apex - onset, 1.0), 0, 1)
        fall = np.clip((offset - frames) / max(offset - apex, 1.0), 0, 1)
        triangle = np.where(frames <= apex, rise, fall)
        triangle[(frames < onset) | (frames > offset)] = 0
        labels[k] = np.maximum(labels[k], triangle)
    return labels


def _batch(items: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, ...]:
    """Pad videos of different lengths: (x, y, mask) tensors."""
    length = max(x.shape[1] for x, _ in items)
    x = np.zeros((len(items), items[0][0].shape[0], length), np.float32)
    y = np.zeros((len(items), len(KINDS), length), np.float32)
    mask = np.zeros((len(items), 1, length), np.float32)
    for i, (features, labels) in enumerate(items):
        n = features.shape[1]
        x[i, :, :n], y[i, :, :n], mask[i, :, :n] = features, labels, 1.0
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(mask)


def train_spotnet(
    videos: list[tuple[np.ndarray, np.ndarray]], config: LearnedSpotterConfig, seed: int
) -> SpotNet:
    """Train `SpotNet` on (features (F, n), labels (2, n)) per video (step 3); eval mode."""
    labels = np.concatenate([y for _, y in videos], axis=1)
    positive = (labels > 0).mean(axis=1).clip(1e-3, None)
    weight = torch.from_numpy(np.sqrt((1 - positive) / positive).astype(np.float32))[None, :, None]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SpotNet(n_features=videos[0][0].shape[0])
        optimiser = torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        order_rng = np.random.default_rng(seed)
        model.train()
        for _ in range(config.epochs):
            order = order_rng.permutation(len(videos))
            for start in range(0, len(order), config.batch_videos):
                x, y, mask = _batch([videos[i] for i in order[start : start + config.batch_videos]])
                optimiser.zero_grad()
                loss = (
                    torch.nn.functional.binary_cross_entropy_with_logits(
                        model(x), y, weight=mask, pos_weight=weight, reduction="sum"
                    )
                    / mask.sum()
                )
                loss.backward()
                optimiser.step()
    model.eval()
    return model


def predict_blocks(model: SpotNet, features: np.ndarray) -> np.ndarray:
    """Probabilities (2, n_blocks) of (ME, MaE) for one video's features (F, n_blocks)."""
    with torch.no_grad():
        logits = model(torch.from_numpy(features[None]))[0]
    return torch.sigmoid(logits).numpy().astype(np.float64)


def learned_intervals(
    frames: np.ndarray, probabilities: np.ndarray, thresholds: Sequence[float], n_frames: int
) -> pd.DataFrame:
    """Intervals from block probabilities (2, n_blocks) at (ME, MaE) thresholds (step 5)."""
    rows = []
    stride = float(frames[1] - frames[0]) if len(frames) > 1 else 1.0
    for k, kind in enumerate(KINDS):
        score = np.convolve(probabilities[k], np.ones(3) / 3, mode="same")
        h = float(thresholds[k])
        above = np.concatenate([[False], score > h, [False]])
        starts = np.flatnonzero(~above[:-1] & above[1:])
        ends = np.flatnonzero(above[:-1] & ~above[1:]) - 1
        for a, b in zip(starts, ends, strict=True):
            if b - a + 1 < MIN_RUN_BLOCKS:
                continue
            peak = a + int(np.argmax(score[a : b + 1]))
            p = frames[peak]
            before = (p - frames[a] + stride / 2) / (1 - h)
            after = (frames[b] - p + stride / 2) / (1 - h)
            rows.append(
                {
                    "onset": int(np.clip(round(p - before), 0, n_frames - 1)),
                    "offset": int(np.clip(round(p + after), 0, n_frames - 1)),
                    "apex": round(p),
                    "kind": kind,
                    "score": float(score[peak]),
                }
            )
    return pd.DataFrame(rows, columns=["onset", "offset", "apex", "kind", "score"])


def _choose_thresholds(
    view: _View,
    probabilities: dict[str, np.ndarray],
    truth: pd.DataFrame,
    fps: float,
    config: LearnedSpotterConfig,
) -> tuple[tuple[float, float], float]:
    """(ME, MaE) thresholds with the best overall F1 on the validation videos (step 4).

    Kinds are matched apart, so each kind's counts depend on its own threshold only: the
    counts are computed per threshold and kind, and the best pair is exact.
    """
    counts: dict[str, dict[float, dict[str, float]]] = {kind: {} for kind in KINDS}
    for h in config.thresholds:
        parts = [
            learned_intervals(view[v].frames, p, (h, h), view[v].n_frames).assign(video=v)
            for v, p in probabilities.items()
        ]
        found = pd.concat(parts, ignore_index=True)
        scores = spotting_scores(truth, found[["video", "onset", "offset", "kind"]], fps=fps)
        for kind in KINDS:
            counts[kind][h] = scores[kind]
    best: tuple[tuple[float, float], tuple[float, float]] | None = None
    for h_me, me in counts["ME"].items():
        for h_mae, mae in counts["MaE"].items():
            overall = counts_to_scores(*(me[k] + mae[k] for k in ("tp", "fp", "fn")))
            key = (overall["f1"], overall["precision"])
            if best is None or key > best[0]:
                best = (key, (h_me, h_mae))
    assert best is not None
    return best[1], float(best[0][0])


def learned_spotter(fps: float, config: LearnedSpotterConfig | None = None) -> Spotter:
    """The learned spotter as a `run_loso` spotter (inputs: `FrameScores` per video)."""
    config = config or LearnedSpotterConfig()
    features: dict[str, np.ndarray] = {}  # label-free: shared by the folds

    def inputs(view: _View, video: str) -> np.ndarray:
        scores = view[video]  # every read goes through the audited view
        if video not in features:
            features[video] = block_features(scores)
        return features[video]

    def spot(train: _View, test: _View, fold: int) -> tuple[pd.DataFrame, dict[str, Any]]:
        seeds = fold_seeds(config.seed, fold)
        videos = train.videos()
        truth = train.truth()
        groups = np.asarray([train.subject_of(v) for v in videos], dtype=str)
        fit_idx, val_idx = inner_validation_split(
            np.arange(len(videos)), groups, config.val_fraction, seeds[3]
        )
        fit = [
            (inputs(train, v), soft_labels(train[v].frames, truth[truth["video"] == v]))
            for v in (videos[i] for i in fit_idx)
        ]
        model = train_spotnet(fit, config, seeds[0])
        val_videos = [videos[i] for i in val_idx]
        probabilities = {v: predict_blocks(model, inputs(train, v)) for v in val_videos}
        thresholds, val_f1 = _choose_thresholds(
            train, probabilities, truth[truth["video"].isin(val_videos)], fps, config
        )
        parts = []
        for video in test.videos():
            probs = predict_blocks(model, inputs(test, video))
            found = learned_intervals(test[video].frames, probs, thresholds, test[video].n_frames)
            if len(found):
                parts.append(found.assign(video=video))
        intervals = (
            pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=INTERVAL_COLUMNS)
        )
        info = {
            "params": {"threshold_me": thresholds[0], "threshold_mae": thresholds[1]},
            "train_f1": val_f1,
            "fit_subjects": sorted(set(groups[fit_idx].tolist())),
            "validation_subjects": sorted(set(groups[val_idx].tolist())),
        }
        return intervals, info

    return spot
