"""Inter-coder agreement: coder files built from one ground truth with planted perturbations.

Every figure is checked against its value computed here from the planted perturbations;
kappas also against scikit-learn; Fleiss' kappa against Fleiss (1971)'s worked example.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from openpyxl import load_workbook
from sklearn.metrics import cohen_kappa_score
from typer.testing import CliRunner

from mmhe.annotations import CODING_COLUMNS, PseudonymMap, read_coding_file, write_coding_sheet
from mmhe.annotations.agreement import (
    agreement,
    au_reliability,
    cohen_kappa,
    confusion_matrix,
    fleiss_category_kappa,
    fleiss_kappa,
    interval_iou,
    match_events,
)
from mmhe.annotations.consensus import shift_frame_name
from mmhe.cli import app
from mmhe.errors import ConfigError

FPS = 150
NAMES = ("liyan", "wangxiaomin", "zhangsan")
MARKERS = (101, 102, 103, 104, 105, 107, 108)
WORD = {
    101: "sad",
    102: "disgust",
    103: "happy",
    104: "fear",
    105: "tense",
    107: "angry",
    108: "surprise",
    117: "surprise",
}
CANONICAL = {
    "sad": "sadness",
    "disgust": "disgust",
    "happy": "happiness",
    "fear": "fear",
    "tense": "tension",
    "angry": "anger",
    "surprise": "surprise",
}
AUS = {
    101: (1, 4, 15),
    102: (9, 10),
    103: (6, 12),
    104: (1, 2, 5, 20),
    105: (4, 7),
    107: (4, 7, 23),
    108: (1, 2, 5, 26),
}


@dataclass(frozen=True)
class Event:
    """One expression in frames from the clip start (frame i is at i / 150 s)."""

    subject: str
    marker: int
    onset: int
    apex: int
    offset: int
    aus: tuple[int, ...]
    emotion: str  # the word written in the file
    micro: bool
    counter: bool = True  # frame names with the frame counter (five parts)


def ground_truth() -> list[Event]:
    """20 expressions, 2 participants, 7 clips each; ~half with apex == offset."""
    events = []
    for i in range(20):
        marker = MARKERS[(i // 2) % 7]
        micro = i % 3 == 0
        onset = 150 + 300 * i
        apex = onset + (30 if micro else 90)
        offset = apex if i % 2 == 0 else onset + (60 if micro else 240)
        events.append(
            Event(
                NAMES[i % 2],
                marker,
                onset,
                apex,
                offset,
                AUS[marker],
                WORD[marker],
                micro,
                counter=i % 3 != 1,
            )
        )
    return events


def clip_start(subject: str, marker: int) -> tuple[float, int]:
    """Time of day (s) and frame counter of frame 0 of a clip recording."""
    hour = 9 + NAMES.index(subject) % 12
    return hour * 3600 + (marker - 100) * 120.0, 37 * marker % 1000


def frame_text(e: Event, frame: int) -> str:
    tod, counter = clip_start(e.subject, e.marker)
    ms = round((tod + frame / FPS) * 1000)
    s, ms = divmod(ms, 1000)
    text = f"{s // 3600:02d}-{s // 60 % 60:02d}-{s % 60:02d}-{ms:03d}"
    return f"{text}-{(counter + frame) % 1000:03d}" if e.counter else text


def coding_row(e: Event) -> tuple:
    return (
        e.subject,
        f"{WORD[e.marker]}_1_{e.marker}_{e.subject}_20230718.avi",
        e.marker,
        e.onset / FPS,
        e.apex / FPS,
        e.offset / FPS,
        frame_text(e, e.onset),
        frame_text(e, e.apex),
        frame_text(e, e.offset),
        ", ".join(f"AU{a}" for a in e.aus),
        e.emotion,
        "Micro" if e.micro else "Macro",
        "2024年05月15日-19时54分",
        e.apex - e.onset + 1,
    )


def write_coder(path: Path, events: list[Event], extra_rows: tuple = ()) -> Path:
    rows = [coding_row(e) for e in events] + list(extra_rows)
    return write_coding_sheet(pd.DataFrame(rows, columns=CODING_COLUMNS), path)


def shifted(e: Event, onset: int, apex: int, offset: int) -> Event:
    return replace(e, onset=e.onset + onset, apex=e.apex + apex, offset=e.offset + offset)


# ---------------------------------------------------------------- the two-coder scenario

GT = ground_truth()
MISSED = {5, 12}  # B misses these
AU_DROPPED = {2, 8, 9}  # B drops the last AU
SWAPPED = {3: "angry", 16: "sad"}  # B's emotion
KIND_FLIPPED = {4}  # B writes Micro for a Macro
MATCHED = [i for i in range(20) if i not in MISSED]


def jitter(i: int) -> tuple[int, int, int]:
    """B's (onset, apex, offset) timing jitter in frames for ground-truth event i."""
    apex = -(i % 3)
    return i % 4, apex, apex if GT[i].apex == GT[i].offset else 1


def coder_b_events() -> list[Event]:
    events = []
    for i in MATCHED:
        e = shifted(GT[i], *jitter(i))
        if i in AU_DROPPED:
            e = replace(e, aus=e.aus[:-1])
        if i in SWAPPED:
            e = replace(e, emotion=SWAPPED[i])
        if i in KIND_FLIPPED:
            e = replace(e, micro=not e.micro)
        events.append(e)
    extras = [
        Event("liyan", 117, 600, 630, 660, (1, 2), "surprise", True),  # clip A never coded
        Event(
            "liyan",
            GT[6].marker,
            GT[6].onset + 20,
            GT[6].onset + 40,
            GT[6].onset + 60,
            (1,),
            "fear",
            True,
        ),  # overlaps GT[6] with IoU 10/60 < 0.5
        Event("wangxiaomin", 101, 9000, 9030, 9060, (1, 4), "sad", True),  # no overlap
    ]
    blocked = Event("liyan", 107, 7000, 7030, 7050, (4, 7), "angry", True)  # A's row is bad
    other_participant = Event("zhangsan", 103, 300, 330, 360, (6, 12), "happy", True)
    return events + extras + [blocked, other_participant]


def rejected_row_of_a() -> tuple:
    bad = Event("liyan", 107, 7000, 7030, 7050, (4, 7), "bored", True)
    return coding_row(bad)


@pytest.fixture(scope="module")
def two_coders(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("two")
    a = write_coder(folder / "coder_a.xlsx", GT, extra_rows=(rejected_row_of_a(),))
    b = write_coder(folder / "coder_b.xlsx", coder_b_events())
    return a, b


@pytest.fixture(scope="module")
def report(two_coders):
    return agreement(two_coders, coders=["A", "B"])


def percentile95(values: list[float]) -> float:
    """The 95th percentile by linear interpolation between order statistics (by hand)."""
    ordered = sorted(values)
    h = 0.95 * (len(ordered) - 1)
    low = math.floor(h)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (h - low) * (ordered[high] - ordered[low])


def hand_kappa(a: list, b: list) -> float:
    """Cohen's kappa written out: (p_o - p_e) / (1 - p_e)."""
    n = len(a)
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    p_e = sum(a.count(k) * b.count(k) for k in set(a) | set(b)) / n**2
    return (p_o - p_e) / (1 - p_e)


def test_detection_figures(report):
    row = report.detection.set_index(["reference", "coder"]).loc[("A", "B")]
    # A: 20 expressions (its 'bored' row is rejected). B: 18 copies + 3 extras comparable,
    # plus one on A's rejected row and one of a participant A never coded (not comparable).
    assert (row["n_reference"], row["n_coder"], row["matched"]) == (20, 21, 18)
    assert row["precision"] == pytest.approx(18 / 21)
    assert row["recall"] == pytest.approx(18 / 20)
    assert row["f1"] == pytest.approx(2 * 18 / (20 + 21))
    assert (row["not_comparable_reference"], row["not_comparable_coder"]) == (0, 2)
    back = report.detection.set_index(["reference", "coder"]).loc[("B", "A")]
    assert back["precision"] == pytest.approx(18 / 20) and back["recall"] == pytest.approx(18 / 21)


def test_matching_pairs_the_planted_copies(report):
    a_rows = {i: i + 1 for i in range(20)}  # GT event i is row i + 1 of A's file
    b_rows = {i: k + 1 for k, i in enumerate(MATCHED)}
    pairs = set(zip(report.matches["row_a"], report.matches["row_b"], strict=True))
    assert pairs == {(a_rows[i], b_rows[i]) for i in MATCHED}


def test_timing_differences_in_frames(report):
    timing = report.timing.set_index("point")
    for k, point in enumerate(("onset", "apex", "offset")):
        planted = [jitter(i)[k] for i in MATCHED]
        absolute = [abs(d) for d in planted]
        got = timing.loc[point]
        assert got["n"] == 18
        assert got["mean_frames"] == pytest.approx(sum(planted) / 18, abs=1e-6)
        assert got["mean_abs_frames"] == pytest.approx(sum(absolute) / 18, abs=1e-6)
        ordered = sorted(absolute)
        assert got["median_abs_frames"] == pytest.approx((ordered[8] + ordered[9]) / 2, abs=1e-6)
        assert got["p95_abs_frames"] == pytest.approx(percentile95(absolute), abs=1e-6)
        assert got["max_abs_frames"] == pytest.approx(max(absolute), abs=1e-6)
    diffs = report.matches.set_index("row_a")["onset_diff_frames"]
    assert diffs.loc[4] == pytest.approx(3, abs=1e-6)  # GT event 3 jittered by 3 % 4 frames


def test_au_reliability_and_per_au_kappa(report):
    # dropping one of two AUs gives R = 2 * 1 / (2 + 1) in 3 of the 18 matched events
    assert report.au_reliability == pytest.approx((15 + 3 * 2 / 3) / 18)
    assert report.matches["au_reliability"].min() == pytest.approx(2 / 3)
    kappa = report.au_kappa.set_index("au")
    # AU10 (disgust clips) and AU7 (tension clips) lose their code in B in some events
    for au in (10, 7, 4, 12):
        with_au_a = [int(au in GT[i].aus) for i in MATCHED]
        with_au_b = [
            int(au in GT[i].aus and not (i in AU_DROPPED and GT[i].aus[-1] == au)) for i in MATCHED
        ]
        assert kappa.loc[au, "n_a"] == sum(with_au_a)
        assert kappa.loc[au, "n_b"] == sum(with_au_b)
        expected = 1.0 if with_au_a == with_au_b else hand_kappa(with_au_a, with_au_b)
        assert kappa.loc[au, "kappa"] == pytest.approx(expected)
        assert kappa.loc[au, "kappa"] == pytest.approx(cohen_kappa_score(with_au_a, with_au_b))
    assert kappa.loc[10, "kappa"] < 1 and kappa.loc[12, "kappa"] == 1


def test_emotion_and_kind_kappa(report):
    truth = [CANONICAL[GT[i].emotion] for i in MATCHED]
    coded = [CANONICAL[SWAPPED.get(i, GT[i].emotion)] for i in MATCHED]
    assert report.emotion_kappa == pytest.approx(hand_kappa(truth, coded))
    assert report.emotion_kappa == pytest.approx(cohen_kappa_score(truth, coded))
    assert 0 < report.emotion_kappa < 1
    kinds_a = ["ME" if GT[i].micro else "MaE" for i in MATCHED]
    kinds_b = [
        ("MaE" if k == "ME" else "ME") if i in KIND_FLIPPED else k
        for i, k in zip(MATCHED, kinds_a, strict=True)
    ]
    assert report.kind_kappa == pytest.approx(hand_kappa(kinds_a, kinds_b))
    labels = report.labels.set_index("target")
    assert labels.loc["emotion", "agreement"] == pytest.approx(16 / 18)
    assert labels.loc["kind", "agreement"] == pytest.approx(17 / 18)
    confusion = report.confusion[("emotion", "A", "B")]
    assert confusion.loc["disgust", "anger"] == 1 and confusion.loc["disgust", "sadness"] == 1
    assert int(np.trace(confusion.to_numpy())) == 16 and confusion.to_numpy().sum() == 18


def test_per_participant_and_per_emotion(report):
    people = report.participants.set_index("subject_id")
    ids = dict(zip(report.events["subject"], report.events["subject_id"], strict=True))
    assert sorted(ids.items()) == [
        ("liyan", "sub-001"),
        ("wangxiaomin", "sub-002"),
        ("zhangsan", "sub-003"),
    ]
    # liyan: A has GT events 0, 2, ..., 18 (10); B copies 9 of them (12 missed) + 2 extras
    liyan = people.loc["sub-001"]
    assert (liyan["n_a"], liyan["n_b"], liyan["matched"]) == (10, 11, 9)
    assert liyan["f1"] == pytest.approx(18 / 21)
    # wangxiaomin: 10 in A, 9 copies (5 missed) + 1 extra in B; one AU dropped of 2 (event 9)
    wang = people.loc["sub-002"]
    assert (wang["n_a"], wang["n_b"], wang["matched"]) == (10, 10, 9)
    assert wang["au_reliability"] == pytest.approx((8 + 2 / 3) / 9)
    assert "sub-003" not in people.index  # zhangsan is not comparable: A never coded them
    emotions = report.emotions.set_index("emotion")
    disgust = [i for i in range(20) if GT[i].emotion == "disgust"]
    matched_disgust = [i for i in disgust if i not in MISSED]
    row = emotions.loc["disgust"]
    assert row["n_a"] == len(disgust)
    assert row["recall"] == pytest.approx(len(matched_disgust) / len(disgust))
    # B calls two disgust events otherwise: they are matched but not disgust for B
    assert row["n_b"] == len(matched_disgust) - 2 and row["precision"] == 1.0
    assert row["specific_agreement"] == pytest.approx(
        2 * (len(matched_disgust) - 2) / (2 * len(matched_disgust) - 2)
    )
    is_a = [int(GT[i].emotion == "disgust") for i in MATCHED]
    is_b = [int(SWAPPED.get(i, GT[i].emotion) == "disgust") for i in MATCHED]
    assert row["kappa"] == pytest.approx(cohen_kappa_score(is_a, is_b))


def test_unmatched_events_have_reasons(report):
    unmatched = report.unmatched
    assert len(unmatched) == 7
    assert sorted(unmatched.loc[unmatched["coder"] == "A", "row"]) == [6, 13]
    assert unmatched.loc[unmatched["coder"] == "A", "comparable"].all()
    b = unmatched[unmatched["coder"] == "B"].set_index("row")
    assert "coded no expression in this clip (marker 117)" in b.loc[19, "reason"]
    assert "IoU 0.17 < 0.5" in b.loc[20, "reason"]
    assert "none of A's 2 expression(s) in this clip" in b.loc[21, "reason"]
    assert "rejected (unknown_emotion)" in b.loc[22, "reason"] and not b.loc[22, "comparable"]
    assert "no usable expression of sub-003" in b.loc[23, "reason"] and not b.loc[23, "comparable"]


def test_two_coder_consensus_and_disagreements(report, tmp_path):
    types = report.disagreements["type"].value_counts().to_dict()
    assert types == {
        "seen_by_some": 5,
        "not_comparable": 2,
        "emotion_tie": 2,
        "au_tie": 3,
        "kind_tie": 1,
        "rejected_row": 1,
    }
    assert len(report.consensus) == 18 - 2
    consensus = report.consensus.set_index("cluster")
    events = report.events
    for i in MATCHED:
        if i in SWAPPED:
            continue
        cluster = events.loc[(events["coder"] == "A") & (events["row"] == i + 1), "cluster"].item()
        row = consensus.loc[cluster]
        on, ap, off = jitter(i)
        assert row["onset_s"] == pytest.approx((2 * GT[i].onset + on) / 2 / FPS, abs=1e-9)
        assert row["apex_s"] == pytest.approx((2 * GT[i].apex + ap) / 2 / FPS, abs=1e-9)
        assert row["offset_s"] == pytest.approx((2 * GT[i].offset + off) / 2 / FPS, abs=1e-9)
        expected = GT[i].aus[:-1] if i in AU_DROPPED else GT[i].aus  # 1 of 2 is not a majority
        assert row["aus"] == expected
    # the consensus file reads back without errors and with consistent frame names
    path = report.write(tmp_path / "out")["consensus.xlsx"]
    again = read_coding_file(path)
    assert not again.errors and len(again.table) == 16
    bad = {"time_frame_mismatch", "dif_mismatch", "malformed_frame_name", "missing_frame"}
    assert not [i for i in again.issues if i.code in bad]
    sheet = load_workbook(path)["disagreements"]
    assert sheet.max_row == 1 + len(report.disagreements)


def test_identical_files_agree_perfectly(tmp_path):
    a = write_coder(tmp_path / "a.xlsx", GT)
    b = write_coder(tmp_path / "b.xlsx", GT)
    perfect = agreement([a, b])
    assert perfect.coders == ["a", "b"]
    assert perfect.emotion_kappa == 1.0 and perfect.kind_kappa == 1.0
    assert perfect.au_reliability == 1.0
    assert perfect.detection["f1"].tolist() == [1.0, 1.0]
    assert (
        perfect.timing[["mean_frames", "median_abs_frames", "p95_abs_frames"]].abs().max().max()
        == 0
    )
    assert perfect.unmatched.empty and perfect.disagreements.empty
    assert perfect.au_kappa["kappa"].dropna().eq(1.0).all()
    assert len(perfect.consensus) == 20
    truth = read_coding_file(a).table
    merged = perfect.consensus.sort_values("onset_s").reset_index(drop=True)
    columns = [
        "subject_id",
        "marker",
        "onset_s",
        "apex_s",
        "offset_s",
        "onset_frame_text",
        "apex_frame_text",
        "offset_frame_text",
        "aus",
        "emotion",
        "kind",
        "dif",
    ]
    pd.testing.assert_frame_equal(merged[columns], truth[columns], check_dtype=False)


def test_three_coders_consensus_restores_the_ground_truth(tmp_path):
    k = 3  # frames: 20 ms, so frame names move by whole milliseconds
    first = [shifted(e, k, k, k) for e in GT]
    first = [replace(e, aus=e.aus[:-1]) if i in {2, 8} else e for i, e in enumerate(first)]
    first.append(Event("wangxiaomin", 101, 9000, 9030, 9060, (1, 4), "sad", True))
    second = [e for i, e in enumerate(GT) if i not in MISSED]
    third = [shifted(e, -k, -k, -k) for e in GT]
    third = [replace(e, emotion=SWAPPED[i]) if i in SWAPPED else e for i, e in enumerate(third)]
    third = [replace(e, micro=not e.micro) if i == 4 else e for i, e in enumerate(third)]
    paths = [
        write_coder(tmp_path / f"{n}.xlsx", ev)
        for n, ev in (("first", first), ("second", second), ("third", third))
    ]
    truth_path = write_coder(tmp_path / "truth.xlsx", GT)
    report = agreement(paths)
    assert report.kappa_method == "fleiss"

    out = report.write(tmp_path / "out")
    merged = read_coding_file(out["consensus.xlsx"]).table
    truth = read_coding_file(truth_path).deidentified()  # outputs carry pseudonyms only
    assert not read_coding_file(out["consensus.xlsx"]).errors
    merged = merged.sort_values(["subject_id", "onset_s"]).reset_index(drop=True)
    truth = truth.sort_values(["subject_id", "onset_s"]).reset_index(drop=True)
    exact = [
        "subject_id",
        "file",
        "marker",
        "onset_frame_text",
        "apex_frame_text",
        "offset_frame_text",
        "aus",
        "emotion",
        "kind",
        "dif",
    ]
    pd.testing.assert_frame_equal(merged[exact], truth[exact])
    for column in ("onset_s", "apex_s", "offset_s"):
        np.testing.assert_allclose(merged[column], truth[column], atol=1e-9)

    # Fleiss' kappa on the 18 events all three saw: 2 of them with one deviating label
    full = [i for i in range(20) if i not in MISSED]
    labels = sorted({CANONICAL[w] for w in WORD.values()} | {"anger", "sadness"})
    counts = np.zeros((len(full), len(labels)), int)
    for r, i in enumerate(full):
        for word in (GT[i].emotion, GT[i].emotion, SWAPPED.get(i, GT[i].emotion)):
            counts[r, labels.index(CANONICAL[word])] += 1
    assert report.emotion_kappa == pytest.approx(fleiss_kappa(counts))
    assert 0 < report.emotion_kappa < 1
    # pairwise figures: second vs first misses 2, first has one extra
    det = report.detection.set_index(["reference", "coder"]).loc[("first", "second")]
    assert (det["n_reference"], det["n_coder"], det["matched"]) == (21, 18, 18)
    timing = report.timing.set_index(["coder_a", "coder_b", "point"])
    assert timing.loc[("first", "third", "onset"), "mean_frames"] == pytest.approx(-2 * k)
    unmatched = report.unmatched
    assert len(unmatched) == 5
    assert set(unmatched.loc[unmatched["coder"] == "third", "missed_by"]) == {"second"}
    assert (
        unmatched.loc[unmatched["coder"] == "first", "missed_by"].tolist().count("second, third")
        == 1
    )
    types = report.disagreements["type"].value_counts().to_dict()
    assert types == {"seen_by_some": 3}  # 2 kept (2 of 3 coders), the extra left out
    resolutions = report.disagreements["resolution"].tolist()
    assert sum(r.startswith("kept in the consensus: seen by 2 of 3") for r in resolutions) == 2
    fleiss_rows = report.participants[report.participants["method"] == "fleiss"]
    assert fleiss_rows["matched"].tolist() == [9, 9]  # each participant lost one to 'second'
    per_emotion = report.emotions[report.emotions["method"] == "fleiss"].set_index("emotion")
    np.testing.assert_allclose(per_emotion.loc[labels, "kappa"], fleiss_category_kappa(counts))


def test_conflicting_pairwise_matches_are_reported(tmp_path):
    def event(onset: int, offset: int) -> Event:
        return Event("liyan", 101, onset, onset + 60, offset, (1, 4), "sad", False)

    # pairwise one-to-one: A1-B1 (IoU .82), A1-C2 (.82), B1-C1 (.73); merging by decreasing
    # IoU puts A1, B1, C2 together, so B1-C1 would add a second event of C: a conflict
    paths = [
        write_coder(tmp_path / "A.xlsx", [event(150, 300)]),
        write_coder(tmp_path / "B.xlsx", [event(165, 315)]),
        write_coder(tmp_path / "C.xlsx", [event(188, 338), event(135, 285)]),
    ]
    report = agreement(paths)
    clusters = report.events.set_index(["coder", "row"])["cluster"]
    assert clusters[("A", 1)] == clusters[("B", 1)] == clusters[("C", 2)] != clusters[("C", 1)]
    assert len(report.matches) == 3
    types = report.disagreements["type"].value_counts().to_dict()
    assert types == {"conflicting_match": 1, "seen_by_some": 1}
    lone = report.unmatched.set_index(["coder", "row"]).loc[("C", 1)]
    assert lone["missed_by"] == "A, B"
    assert "B's row 1 was matched to it pairwise but sits in another cluster" in lone["reason"]
    assert "A's row 1 overlaps it (IoU 0.60) but was matched" in lone["reason"]
    assert len(report.consensus) == 1 and report.consensus["n_coders"].item() == 3


def test_unreadable_frame_names_are_recomputed_or_reported(tmp_path):
    a_rows = [coding_row(e) for e in GT[:2]]
    b_events = [shifted(e, 3, 0, 0) for e in GT[:2]]  # onsets 3 frames (20 ms) later
    b_rows = [coding_row(e) for e in b_events]
    b_rows[0] = (*b_rows[0][:6], "garbled", *b_rows[0][7:])  # B's onset frame of event 0
    a_rows[1] = (*a_rows[1][:6], "garbled", *a_rows[1][7:])  # both unreadable for event 1
    b_rows[1] = (*b_rows[1][:6], "??", *b_rows[1][7:])
    paths = [
        write_coding_sheet(pd.DataFrame(rows, columns=CODING_COLUMNS), tmp_path / f"{n}.xlsx")
        for n, rows in (("A", a_rows), ("B", b_rows))
    ]
    report = agreement(paths)
    merged = report.consensus.sort_values("onset_s")
    # event 0: median onset 10 ms after A's, A's frame name moved by 10 ms and 1.5 -> 2 frames
    assert merged["onset_s"].iloc[0] == pytest.approx((GT[0].onset + 1.5) / FPS)
    assert merged["onset_frame_text"].iloc[0] == shift_frame_name(
        frame_text(GT[0], GT[0].onset), 0.01
    )
    assert merged["onset_frame_text"].iloc[1] == ""
    frame_rows = report.disagreements[report.disagreements["type"] == "frame_name"]
    assert len(frame_rows) == 1 and "onset" in frame_rows["reason"].item()


def test_files_of_different_participants_are_not_comparable(tmp_path):
    a = write_coder(tmp_path / "a.csv", [e for e in GT if e.subject == "liyan"])
    b = write_coder(tmp_path / "b.csv", [e for e in GT if e.subject == "wangxiaomin"])
    report = agreement([a, b], coders=["A", "B"])
    assert math.isnan(report.emotion_kappa) and math.isnan(report.au_reliability)
    assert report.detection["matched"].tolist() == [0, 0]
    assert report.detection["n_reference"].tolist() == [0, 0]
    assert len(report.unmatched) == 20 and not report.unmatched["comparable"].any()
    assert report.consensus.empty
    assert set(report.disagreements["type"]) == {"not_comparable"}
    # same participants, another session (date in Filename): different videos
    rows = [coding_row(e) for e in GT[:4]]
    other_day = [(r[0], r[1].replace("20230718", "20230802"), *r[2:]) for r in rows]
    c = write_coding_sheet(pd.DataFrame(other_day, columns=CODING_COLUMNS), tmp_path / "c.csv")
    dated = agreement([write_coder(tmp_path / "d.csv", GT[:4]), c])
    assert dated.detection["matched"].tolist() == [0, 0]
    assert not dated.unmatched["comparable"].any()
    assert "no usable expression of sub-001 on 2023-07-18" in dated.unmatched["reason"].iloc[0]


# ---------------------------------------------------------------- statistics


def test_cohen_kappa_matches_scikit_learn():
    rng = np.random.default_rng(7)
    words = ["anger", "disgust", "fear", "happiness"]
    for _ in range(20):
        a = rng.choice(words, size=40).tolist()
        b = [x if rng.random() < 0.6 else rng.choice(words) for x in a]
        assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert cohen_kappa(["x", "y"], ["x", "y"]) == 1.0
    assert math.isnan(cohen_kappa(["x", "x"], ["x", "x"]))
    assert math.isnan(cohen_kappa([], []))
    matrix = confusion_matrix(["fear", "anger"], ["anger", "anger"])
    assert matrix.index.tolist() == ["fear", "anger"] and matrix.loc["fear", "anger"] == 1


# Fleiss (1971), Table 1: 30 patients, 6 psychiatrists each, 5 diagnoses
FLEISS_1971 = [
    (0, 0, 0, 6, 0),
    (0, 3, 0, 0, 3),
    (0, 1, 4, 0, 1),
    (0, 0, 0, 0, 6),
    (0, 3, 0, 3, 0),
    (2, 0, 4, 0, 0),
    (0, 0, 4, 0, 2),
    (2, 0, 3, 1, 0),
    (2, 0, 0, 4, 0),
    (0, 0, 0, 0, 6),
    (1, 0, 0, 5, 0),
    (1, 1, 0, 4, 0),
    (0, 3, 3, 0, 0),
    (1, 0, 0, 5, 0),
    (0, 2, 0, 3, 1),
    (0, 0, 5, 0, 1),
    (3, 0, 0, 1, 2),
    (5, 1, 0, 0, 0),
    (0, 2, 0, 4, 0),
    (1, 0, 2, 0, 3),
    (0, 0, 0, 0, 6),
    (0, 1, 0, 5, 0),
    (0, 2, 0, 1, 3),
    (2, 0, 0, 4, 0),
    (1, 0, 0, 4, 1),
    (0, 5, 0, 1, 0),
    (4, 0, 0, 0, 2),
    (0, 2, 0, 4, 0),
    (1, 0, 5, 0, 0),
    (0, 0, 0, 0, 6),
]


def test_fleiss_kappa_on_the_published_example():
    counts = np.array(FLEISS_1971)
    assert counts.shape == (30, 5) and set(counts.sum(axis=1)) == {6}
    assert round(fleiss_kappa(counts), 3) == 0.430  # Fleiss (1971), p. 381
    np.testing.assert_array_equal(
        np.round(fleiss_category_kappa(counts), 3), [0.245, 0.245, 0.520, 0.471, 0.566]
    )
    assert fleiss_kappa(np.array([[3, 0], [0, 3]])) == 1.0
    with pytest.raises(ConfigError, match="same number"):
        fleiss_kappa(np.array([[3, 0], [1, 1]]))


def test_iou_reliability_and_matching_primitives():
    iou = interval_iou([0.0, 1.0], [1.0, 1.0], [0.5, 1.0], [1.5, 1.0])
    np.testing.assert_allclose(iou, [[0.5 / 1.5, 0.0], [0.0, 1.0]])
    assert au_reliability((4, 7), (4, 7)) == 1.0
    assert au_reliability((1, 2, 5), (1, 2)) == pytest.approx(4 / 5)
    assert math.isnan(au_reliability((), ()))
    assert shift_frame_name("11-05-52-025-998", 0.02) == "11-05-52-045-001"  # counter wraps
    assert shift_frame_name("23-59-59-990", 0.02) == "00-00-00-010"
    columns = ["subject_id", "marker", "clip_index", "session_date", "onset_s", "offset_s"]
    a = pd.DataFrame(
        [("s1", 101, 1, None, 0.0, 1.0), ("s1", 101, 1, None, 0.9, 2.0)], columns=columns
    )
    b = pd.DataFrame(
        [
            ("s1", 101, 1, None, 0.05, 1.05),
            ("s1", 101, 2, None, 0.9, 2.0),
            ("s1", 102, 1, None, 0.9, 2.0),
        ],
        columns=columns,
        index=[10, 11, 12],
    )
    a["clip_index"] = a["clip_index"].astype("Int64")
    b["clip_index"] = b["clip_index"].astype("Int64")
    found = match_events(a, b, iou=0.5)
    assert found[["index_a", "index_b"]].values.tolist() == [[0, 10]]  # other clip / marker
    assert found["iou"].item() == pytest.approx(0.95 / 1.05)
    with pytest.raises(ConfigError, match="IoU threshold"):
        match_events(a, b, iou=0)
    with pytest.raises(ConfigError, match="two or more"):
        agreement(["only.xlsx"])


# ---------------------------------------------------------------- command line


def test_cli_writes_outputs_and_prints_tables(two_coders, tmp_path):
    out = tmp_path / "agree"
    result = CliRunner().invoke(
        app,
        [
            "annotations",
            "agree",
            *map(str, two_coders),
            "--coder",
            "A",
            "--coder",
            "B",
            "--out",
            str(out),
        ],
        terminal_width=160,
    )
    assert result.exit_code == 0, result.output
    for title in (
        "Detection",
        "Timing differences",
        "Labels",
        "Per-AU kappa",
        "Per participant",
        "Per emotion",
        "Disagreements",
    ):
        assert title in result.output
    report = agreement(two_coders, coders=["A", "B"])
    assert f"emotion kappa (Cohen) {report.emotion_kappa:.3f}" in result.output
    expected = {
        "detection.csv",
        "timing.csv",
        "labels.csv",
        "au_kappa.csv",
        "participants.csv",
        "emotions.csv",
        "matches.csv",
        "unmatched.csv",
        "disagreements.csv",
        "consensus.csv",
        "events.csv",
        "files.csv",
        "confusion_emotion_A_vs_B.csv",
        "confusion_kind_A_vs_B.csv",
        "consensus.xlsx",
        "agreement.html",
        "agreement.json",
    }
    assert expected <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "agreement.json").read_text())
    assert summary["emotion_kappa"] == pytest.approx(report.emotion_kappa)
    assert summary["disagreements"]["emotion_tie"] == 2
    page = (out / "agreement.html").read_text()
    assert page.lower().startswith("<!doctype html>") and "<style>" in page
    assert "http" not in page and "<script" not in page and "<link" not in page
    detection = pd.read_csv(out / "detection.csv")
    assert detection["f1"].iloc[0] == pytest.approx(36 / 41)

    def everything(folder: Path) -> str:
        text = [p.read_text(encoding="utf-8") for p in folder.glob("*.csv")]
        text += [
            (folder / n).read_text(encoding="utf-8") for n in ("agreement.html", "agreement.json")
        ]
        book = load_workbook(folder / "consensus.xlsx")
        text += [str(c) for s in book for r in s.iter_rows(values_only=True) for c in r]
        return "\n".join(text).casefold()

    text = everything(out)
    assert not [n for n in NAMES if n in text] and "sub-001" in text
    named = tmp_path / "named"
    result = CliRunner().invoke(
        app, ["annotations", "agree", *map(str, two_coders), "--names", "--out", str(named)]
    )
    assert result.exit_code == 0, result.output
    assert "liyan" in everything(named)
    assert read_coding_file(named / "consensus.xlsx").table["subject"].iloc[0] == "liyan"

    mapping = tmp_path / "private" / "pseudonyms.csv"
    PseudonymMap({"zhangsan": "sub-001"}).save(mapping)
    result = CliRunner().invoke(
        app,
        [
            "annotations",
            "agree",
            *map(str, two_coders),
            "--pseudonyms",
            str(mapping),
            "--out",
            str(tmp_path / "mapped"),
        ],
    )
    assert result.exit_code == 0, result.output
    ids = pd.read_csv(tmp_path / "mapped" / "participants.csv")["subject_id"].tolist()
    assert ids == ["sub-002", "sub-003"]  # liyan, wangxiaomin after the known zhangsan
    assert len(PseudonymMap.load(mapping)) == 3  # the new ids are kept in the private map


def test_consensus_workbook_is_byte_reproducible(tmp_path):
    from mmhe.annotations.agreement import agreement

    rows = pd.DataFrame(
        [
            (
                "liyan",
                "sad_1_101_liyan_20230802.avi",
                101,
                1.0,
                1.1,
                1.3,
                "10-00-01-000-100",
                "10-00-01-100-115",
                "10-00-01-300-145",
                "AU1, AU4",
                "sad",
                "Micro",
                "2024年05月15日-19时54分",
                16,
            )
        ],
        columns=CODING_COLUMNS,
    )
    paths = [write_coding_sheet(rows, tmp_path / f"coder{i}.xlsx") for i in (1, 2)]
    report = agreement(paths)
    report.write(tmp_path / "a")
    time.sleep(1.1)  # a later second must not change the bytes
    report.write(tmp_path / "b")
    assert (tmp_path / "a" / "consensus.xlsx").read_bytes() == (
        tmp_path / "b" / "consensus.xlsx"
    ).read_bytes()


def test_agreement_page_renders_in_headless_chromium(two_coders, tmp_path):
    from chromium import assert_readable, probe

    out = tmp_path / "agree"
    args = ["annotations", "agree", *map(str, two_coders), "--coder", "A", "--coder", "B"]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out / "agreement.html"
    assert_readable(probe(page))
    html = page.read_text()
    report = agreement(two_coders, coders=["A", "B"])
    kappa = f"{report.emotion_kappa:.3f}".replace("-", "−")
    assert f"<b>{kappa}</b><span>emotion kappa (Cohen)</span>" in html
    assert f'<td class="num">{18 / 21:.3f}</td>' in html  # detection precision of B
    for title in ("Detection", "Timing differences", "Disagreements for adjudication"):
        assert title in html
