"""Leave-one-subject-out spotting: planted motion recovered, shuffled truth at chance, and
the audit measures that no fold's tuning read its test participant."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmhe.evaluation.splits import LeakageError
from mmhe.evaluation.spotter import flow_spotter, run_loso
from mmhe.evaluation.spotter_learned import LearnedSpotterConfig, learned_spotter
from mmhe.evaluation.spotting import spotting_scores
from mmhe.features.spotting import REGION_FRACTIONS, FrameScores

FPS, STRIDE = 150.0, 5
LAGS = (6, 12, 18, 27, 39, 54)
NAMES = tuple(REGION_FRACTIONS)
GROUP = {"ME": ("mouth_l", "mouth_r"), "MaE": ("cheek_l", "cheek_r"), "blink": ("eye_l", "eye_r")}


def fake_scores(rng, n_blocks: int, events: list[tuple[str, int, int, float]]) -> FrameScores:
    """`FrameScores` of a video whose regions move as planted: (kind, first block, number of
    blocks, amplitude px) raised-cosine bumps on the kind's regions, plus tracking noise."""
    d = np.zeros((n_blocks, len(NAMES), 2))
    t = np.arange(n_blocks)
    for kind, first, length, amplitude in events:
        phase = np.clip((t - first) / length, 0, 1)
        bump = amplitude * 0.5 * (1 - np.cos(2 * np.pi * phase))
        for name in GROUP[kind]:
            d[:, NAMES.index(name), 1] += bump
    motion = np.full((len(LAGS), n_blocks, len(NAMES), 2), np.nan)
    for j, lag in enumerate(LAGS):
        motion[j, : n_blocks - lag] = d[lag:] - d[:-lag]
        motion[j, : n_blocks - lag] += rng.normal(0, 0.03, motion[j, : n_blocks - lag].shape)
    return FrameScores(
        frames=t * STRIDE + (STRIDE - 1) / 2,
        fps=FPS,
        stride=STRIDE,
        lags=LAGS,
        detect=(0, 2),
        region_names=NAMES,
        motion=motion,
        head=np.zeros((len(LAGS), n_blocks, 2)),
        n_frames=n_blocks * STRIDE,
    )


@pytest.fixture(scope="module")
def planted_set():
    """5 participants x 2 videos of 12 s, each with an ME, an MaE and a blink."""
    rng = np.random.default_rng(3)
    scores, truth, videos, blinks = {}, [], [], []
    for p in range(5):
        for v in range(2):
            video = f"p{p}/{v}"
            me, mae, blink = (int(x) for x in rng.permutation([40, 150, 280])[:3])
            mae_len = int(rng.integers(30, 50))
            events = [("ME", me, 11, 0.4), ("MaE", mae, mae_len, 0.8), ("blink", blink, 6, 2.0)]
            scores[video] = fake_scores(rng, 360, events)
            blinks.append((video, blink * STRIDE, (blink + 6) * STRIDE - 1))
            videos.append({"video": video, "subject_id": f"p{p}"})
            mae_end, mae_apex = (mae + mae_len) * STRIDE - 1, (mae + mae_len // 2) * STRIDE
            truth += [
                (video, me * STRIDE, (me + 11) * STRIDE - 1, (me + 5) * STRIDE, "ME"),
                (video, mae * STRIDE, mae_end, mae_apex, "MaE"),
            ]
    truth = pd.DataFrame(truth, columns=["video", "onset", "offset", "apex", "kind"])
    return (
        pd.DataFrame(videos),
        scores,
        truth,
        pd.DataFrame(blinks, columns=["video", "onset", "offset"]),
    )


def test_planted_motion_is_recovered_and_every_fold_is_audited(planted_set):
    videos, scores, truth, blinks = planted_set
    run = run_loso(videos, scores.__getitem__, truth, flow_spotter(FPS))
    result = spotting_scores(truth, run.intervals)
    assert result["ME"]["f1"] >= 0.9 and result["MaE"]["f1"] >= 0.8, result["overall"]
    assert run.audit_passed and len(run.folds) == 5
    for fold in run.folds:
        audit = fold["audit"]
        assert audit["test_subject"] not in audit["read_while_training"]
        assert audit["read_while_training"] == audit["train_subjects"]
        assert audit["checks"]["participants_disjoint"]
    # a blink moves the eyes by 2 px: never reported
    found = run.intervals.merge(blinks, on="video", suffixes=("", "_blink"))
    overlap = (found["onset"] <= found["offset_blink"]) & (found["offset"] >= found["onset_blink"])
    assert not overlap.any()


def test_shuffled_truth_scores_at_chance(planted_set):
    videos, scores, truth, _blinks = planted_set
    rng = np.random.default_rng(0)
    shuffled = truth.copy()
    shift = rng.integers(600, 1200, len(truth))
    shuffled["onset"] = (truth["onset"] + shift) % 1500
    shuffled["offset"] = shuffled["onset"] + truth["offset"] - truth["onset"]
    shuffled["apex"] = shuffled["onset"] + truth["apex"] - truth["onset"]
    run = run_loso(videos, scores.__getitem__, shuffled, flow_spotter(FPS))
    assert spotting_scores(shuffled, run.intervals)["overall"]["f1"] <= 0.2


def test_tuning_never_reads_the_test_participant(planted_set):
    videos, scores, truth, _blinks = planted_set

    def leaky(train, test, fold):  # "tunes" on a test video through the training view
        train[test.videos()[0]]
        raise AssertionError("the view let a test video through")

    with pytest.raises(LeakageError, match="not on this side"):
        run_loso(videos, scores.__getitem__, truth, leaky)

    def peeking(train, test, fold):  # asks for the test side's true intervals
        test.truth()
        raise AssertionError("the test view gave out its truth")

    with pytest.raises(LeakageError, match="not readable"):
        run_loso(videos, scores.__getitem__, truth, peeking)

    # measured: replacing the test participant's videos and truth leaves its fold's
    # thresholds exactly as they were
    before = run_loso(videos, scores.__getitem__, truth, flow_spotter(FPS))
    rng = np.random.default_rng(1)
    changed = dict(scores)
    for video in ("p2/0", "p2/1"):
        changed[video] = fake_scores(rng, 360, [("ME", 100, 11, 1.5), ("blink", 200, 6, 2.0)])
    other_truth = truth[~truth["video"].str.startswith("p2/")]
    after = run_loso(videos, changed.__getitem__, other_truth, flow_spotter(FPS))
    fold = {f["test_subject"]: f for f in before.folds}["p2"]
    again = {f["test_subject"]: f for f in after.folds}["p2"]
    assert fold["params"] == again["params"] and fold["train_f1"] == again["train_f1"]


def test_learned_spotter_runs_leakage_free(planted_set):
    videos, scores, truth, _blinks = planted_set
    config = LearnedSpotterConfig(epochs=30)
    run = run_loso(videos, scores.__getitem__, truth, learned_spotter(FPS, config))
    assert run.audit_passed
    for fold in run.folds:
        assert (
            fold["audit"]["test_subject"] not in fold["fit_subjects"] + fold["validation_subjects"]
        )
        assert fold["validation_subjects"] and fold["fit_subjects"]
    result = spotting_scores(truth, run.intervals)
    assert result["overall"]["f1"] >= 0.5, result["overall"]
