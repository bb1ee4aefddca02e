"""The MEGC spotting scorer: hand-made cases, an independent implementation, STRS."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmhe.errors import ConfigError
from mmhe.evaluation.spotting import (
    analysis_scores,
    length_limits,
    match_intervals,
    results_table,
    spotting_scores,
)


def _table(rows, kind=None):
    frame = pd.DataFrame(rows, columns=["video", "onset", "offset"])
    if kind is not None:
        frame["kind"] = kind
    return frame


def test_exact_hit_and_iou_just_above_and_below_half():
    truth = _table([("v", 0, 99)], "MaE")  # 100 frames
    exact = spotting_scores(truth, _table([("v", 0, 99)], "MaE"))["overall"]
    assert (exact["tp"], exact["fp"], exact["fn"], exact["f1"]) == (1, 0, 0, 1.0)
    # |A n B| / |A u B| on inclusive counts: [0, 49] -> 50 / 100 = 0.5 exactly: a hit
    half = spotting_scores(truth, _table([("v", 0, 49)], "MaE"))["overall"]
    assert (half["tp"], half["fp"], half["fn"]) == (1, 0, 0)
    # [0, 48] -> 49 / 100: a miss (one false positive and one false negative)
    below = spotting_scores(truth, _table([("v", 0, 48)], "MaE"))["overall"]
    assert (below["tp"], below["fp"], below["fn"]) == (0, 1, 1)
    assert below["precision"] == below["recall"] == below["f1"] == 0.0
    # [-50, 99]: 100 / 150 = 0.667, a hit; [50, 149]: 50 / 150, a miss
    assert spotting_scores(truth, _table([("v", -50, 99)], "MaE"))["overall"]["tp"] == 1
    assert spotting_scores(truth, _table([("v", 50, 149)], "MaE"))["overall"]["tp"] == 0
    assert spotting_scores(truth, _table([("v", 0, 49)], "MaE"), iou=0.51)["overall"]["tp"] == 0


def test_one_truth_two_candidates_and_kinds_apart():
    truth = _table([("v", 0, 99)], "MaE")
    two = spotting_scores(truth, _table([("v", 0, 99), ("v", 5, 99)], "MaE"))["overall"]
    assert (two["tp"], two["fp"], two["fn"]) == (1, 1, 0)
    assert two["precision"] == 0.5 and two["recall"] == 1.0 and two["f1"] == pytest.approx(2 / 3)
    # a prediction of the other kind never matches, even when it overlaps perfectly
    other = spotting_scores(truth, _table([("v", 0, 99)], "ME"))
    assert (other["MaE"]["fn"], other["ME"]["fp"], other["overall"]["tp"]) == (1, 1, 0)
    # without a kind column the length decides: 80 frames at 150 fps is an ME, 81 a MaE
    assert length_limits(150) == (35, 80) and length_limits(30) == (7, 16)
    by_length = spotting_scores(_table([("v", 0, 79), ("v", 200, 280)]), _table([("v", 0, 79)]))
    assert by_length["ME"]["tp"] == 1 and by_length["MaE"]["fn"] == 1


def test_empty_videos_and_videos_without_truth():
    empty = _table([])
    none = spotting_scores(empty, empty)["overall"]
    assert none == {"tp": 0, "fp": 0, "fn": 0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    only_truth = spotting_scores(_table([("a", 0, 50), ("b", 0, 50)]), empty)["overall"]
    assert (only_truth["tp"], only_truth["fn"], only_truth["fp"]) == (0, 2, 0)
    # predictions in a video that has no truth are false positives (not ignored)
    stray = spotting_scores(_table([("a", 0, 50)]), _table([("a", 0, 50), ("x", 0, 50)]))
    assert stray["overall"]["fp"] == 1 and stray["overall"]["tp"] == 1


def _reference_counts(truth: pd.DataFrame, predicted: pd.DataFrame, iou: float) -> dict:
    """An independent implementation: frames as Python sets, the rules written out."""
    counts = {"ME": [0, 0, 0], "MaE": [0, 0, 0]}
    for kind in counts:
        for video in set(truth["video"]) | set(predicted["video"]):
            gt = truth[(truth.video == video) & (truth.kind == kind)]
            gt = sorted(zip(gt.onset, gt.offset, strict=True))
            pr = predicted[(predicted.video == video) & (predicted.kind == kind)]
            pr = sorted(zip(pr.onset, pr.offset, strict=True))
            free = [set(range(a, b + 1)) for a, b in gt]
            used = [False] * len(gt)
            for a, b in pr:
                frames = set(range(a, b + 1))
                best, best_iou = None, -1.0
                for j, other in enumerate(free):
                    if used[j]:
                        continue
                    value = len(frames & other) / len(frames | other)
                    if value > best_iou:
                        best, best_iou = j, value
                if best is not None and best_iou >= iou:
                    used[best] = True
                    counts[kind][0] += 1
                else:
                    counts[kind][1] += 1
            counts[kind][2] += used.count(False)
    return counts


def test_agrees_with_an_independent_implementation():
    rng = np.random.default_rng(7)
    for case in range(60):
        rows = []
        for _table in ("truth", "predicted"):
            n = int(rng.integers(0, 9))
            onset = rng.integers(0, 400, n)
            length = rng.integers(20, 200, n)
            rows.append(
                pd.DataFrame(
                    {
                        "video": rng.choice(["a", "b", "c"], n),
                        "onset": onset,
                        "offset": onset + length - 1,
                        "kind": rng.choice(["ME", "MaE"], n),
                    }
                )
            )
        truth, predicted = rows
        iou = float(rng.choice([0.3, 0.5, 0.7]))
        ours = spotting_scores(truth, predicted, iou=iou)
        reference = _reference_counts(truth, predicted, iou)
        for kind in ("ME", "MaE"):
            got = [ours[kind][k] for k in ("tp", "fp", "fn")]
            assert got == reference[kind], (case, kind)
        assert ours["overall"]["tp"] == reference["ME"][0] + reference["MaE"][0]


def test_strs_matches_the_public_scorer_example():
    """The worked example of the public STRS scorer's README (Liong et al. 2023): 0.2."""
    rows = [
        ("EP02_01f", 10, 70, "happiness", 45, 85, "happiness"),
        ("EP03_02", 100, 170, "others", 130, 160, "others"),
        ("EP04_02", 0, 70, "others", 20, 75, "others"),
        ("EP01_11f", 20, 90, "happiness", 45, 95, "repression"),
        ("EP02_04f", 70, 140, "happiness", 30, 140, "repression"),
    ]
    predicted = pd.DataFrame(
        [(v, a, b, e) for v, a, b, e, *_ in rows], columns=["video", "onset", "offset", "emotion"]
    ).assign(kind="ME")
    truth = pd.DataFrame(
        [(v, a, b, e) for v, *_, a, b, e in rows], columns=["video", "onset", "offset", "emotion"]
    ).assign(kind="ME")
    scores = spotting_scores(truth, predicted, labels="emotion")
    assert scores["overall"]["f1"] == pytest.approx(0.6)
    assert scores["analysis"]["f1"] == pytest.approx(1 / 3)
    assert scores["strs"] == pytest.approx(0.2)
    # analysis F1 is the harmonic mean of the label-mean precision and recall
    perfect = analysis_scores(["a", "b", "a"], ["a", "b", "a"])
    assert perfect["f1"] == perfect["uf1"] == perfect["uar"] == 1.0


def test_results_table_and_bad_input():
    table = results_table(spotting_scores(_table([("v", 0, 99)]), _table([("v", 0, 99)])))
    assert table["kind"].tolist() == ["ME", "MaE", "overall"]
    assert table.columns.tolist() == ["kind", "tp", "fp", "fn", "precision", "recall", "F1"]
    with pytest.raises(ConfigError, match="lacks the column"):
        spotting_scores(pd.DataFrame({"video": ["v"], "onset": [1]}), _table([]))
    with pytest.raises(ConfigError, match="predicted row 0: offset 5 < onset"):
        spotting_scores(_table([]), _table([("v", 9, 5)]))
    with pytest.raises(ConfigError, match="not a whole frame"):
        spotting_scores(_table([("v", 0.5, 9)]), _table([]))
    with pytest.raises(ConfigError, match="kind 'micro'"):
        spotting_scores(_table([("v", 0, 9)], "micro"), _table([]))
    with pytest.raises(ConfigError, match="IoU threshold"):
        match_intervals(_table([]), _table([]), iou=0.0)
