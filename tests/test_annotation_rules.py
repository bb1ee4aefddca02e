"""Annotation tools that report facts: `dif` in both of the real file's units, time/frame
tolerance from the file's own resolution, overlapping events, a consensus that keeps agreed
values, and the ME/MaE rule that reproduces the dataset's statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmhe.annotations import CODING_COLUMNS, MeRule, agreement, read_coding_file, write_coding_sheet
from mmhe.annotations.coding_file import time_resolution, time_tolerance


def _row(onset, apex, offset, frames, dif, *, kind="Micro", marker=146, subject="liyan"):
    return (
        subject,
        f"angry_1_{marker}_{subject}_20230718.avi",
        marker,
        onset,
        apex,
        offset,
        *frames,
        "AU4, AU7",
        "angry",
        kind,
        "2024年05月15日-19时54分",
        dif,
    )


def _write(rows, path, *, kind=True):
    frame = pd.DataFrame(rows, columns=CODING_COLUMNS)
    if not kind:
        frame = frame.drop(columns=["Macro/Micro"])
    return write_coding_sheet(frame, path)


def _codes(coding, code):
    return {(i.row, i.message) for i in coding.issues if i.code == code}


def test_dif_is_read_in_frames_or_milliseconds_as_the_names_say(tmp_path):
    rows = [
        # five-part names: counter difference + 1 (wraps at 1000): 34 - 869 + 1000 + 1
        _row(1.0, 2.1, 2.5, ("11-00-01-000-869", "11-00-02-100-034", "11-00-02-500-094"), 166),
        # four-part names: milliseconds + 1 (real file: 255 of 269 rows)
        _row(3.0, 3.19, 3.3, ("11-00-03-000", "11-00-03-190", "11-00-03-300"), 191),
        # four-part names, dif in frames (the other convention): 190 ms = 28.5 frames
        _row(5.0, 5.19, 5.3, ("11-00-05-000", "11-00-05-190", "11-00-05-300"), 29),
        # neither: reported with both readings
        _row(7.0, 7.19, 7.3, ("11-00-07-000", "11-00-07-190", "11-00-07-300"), 77),
    ]
    coding = read_coding_file(_write(rows, tmp_path / "c.xlsx"))
    assert coding.table["dif_unit"].tolist() == ["frames", "ms", "frames", None]
    assert coding.table["dif"].tolist() == [166, 191, 29, 77]  # as written
    ((row, message),) = _codes(coding, "dif_mismatch")
    assert row == 4 and "191 (milliseconds + 1" in message and "frames from onset" in message


def test_time_frame_tolerance_comes_from_the_files_resolution(tmp_path):
    assert time_resolution([36.31, 36.86, 37.75, 10.06]) == 0.01
    assert time_resolution([36.3, 36.8, 37.0]) == 0.1
    assert time_resolution([1.2345, 2.0001]) == 0.001
    assert time_tolerance(0.01) == pytest.approx(0.0265)  # 2.5 steps + 1.5 ms
    assert time_tolerance(0.001) == pytest.approx(2 / 150 + 0.0015)  # two frames at least
    rows = [  # times to 10 ms; names disagree by 20 ms (rounding) and by 40 ms (a fact)
        _row(1.01, 1.21, 1.41, ("11-00-01-010", "11-00-01-230", "11-00-01-410"), 221),
        _row(3.01, 3.21, 3.41, ("11-00-03-010", "11-00-03-250", "11-00-03-410"), 241),
    ]
    coding = read_coding_file(_write(rows, tmp_path / "c.xlsx"))
    assert coding.time_resolution_s == 0.01
    mismatches = _codes(coding, "time_frame_mismatch")
    assert {r for r, _ in mismatches} == {2}
    assert "40 ms apart; rounding allows 27 ms" in next(iter(mismatches))[1]


def test_overlapping_events_of_one_clip_are_reported(tmp_path):
    rows = [
        _row(1.0, 1.2, 2.0, ("11-00-01-000", "11-00-01-200", "11-00-02-000"), 201),
        _row(1.5, 1.6, 1.7, ("11-00-01-500", "11-00-01-600", "11-00-01-700"), 101),
        _row(2.5, 2.6, 2.7, ("11-00-02-500", "11-00-02-600", "11-00-02-700"), 101),
        _row(1.5, 1.6, 1.7, ("11-00-01-500", "11-00-01-600", "11-00-01-700"), 101, marker=110),
    ]
    coding = read_coding_file(_write(rows, tmp_path / "c.xlsx"))
    ((row, message),) = _codes(coding, "overlap")
    assert row == 2 and "overlaps sheet row 2" in message  # data row 1 = sheet row 2


def test_consensus_of_a_file_with_itself_changes_nothing(tmp_path):
    rows = [
        _row(1.0, 1.19, 1.3, ("11-00-01-000", "11-00-01-190", "11-00-01-300"), 191),
        _row(3.0, 3.2, 3.5, ("11-00-03-000-100", "11-00-03-200-130", "11-00-03-500-175"), 31),
        _row(5.0, 5.2, 5.4, ("11-00-05-000-400", "11:00:05.200", "11-00-05-400-460"), 31),
    ]
    path = _write(rows, tmp_path / "c.xlsx")
    report = agreement([path, path], coders=["A", "B"])
    consensus = report.consensus.sort_values("onset_s")
    assert consensus["dif"].tolist() == [191, 31, 31]  # milliseconds stay milliseconds
    assert consensus["apex_frame_text"].tolist() == [
        "11-00-01-190",
        "11-00-03-200-130",
        "11:00:05.200",  # a name no parser reads is kept as the coders wrote it
    ]
    assert len(report.consensus_changes) == 0
    written = report.write(tmp_path / "out")
    sheet = pd.read_excel(written["consensus.xlsx"], dtype=object)
    assert sheet["ApexFrame"].tolist() == consensus["apex_frame_text"].tolist()


def test_consensus_lists_every_value_no_coder_wrote(tmp_path):
    a = [_row(1.0, 1.2, 1.5, ("11-00-01-000-100", "11-00-01-200-130", "11-00-01-500-175"), 31)]
    b = [_row(1.0, 1.3, 1.5, ("11-00-01-000-100", "11-00-01-300-145", "11-00-01-500-175"), 46)]
    c = [_row(1.0, 1.25, 1.5, ("11-00-01-000-100", "11-00-01-250-137", "11-00-01-500-175"), 38)]
    paths = [_write(r, tmp_path / f"{n}.xlsx") for n, r in zip("abc", (a, b, c), strict=True)]
    two = agreement(paths[:2], coders=["A", "B"])  # even count: the median is new
    changed = two.consensus_changes.set_index("column")
    assert set(changed.index) == {"ApexTime", "ApexFrame", "dif"}
    assert changed.loc["ApexTime", "consensus_value"] == pytest.approx(1.25)
    assert "A: 1.2" in changed.loc["ApexTime", "coder_values"]
    three = agreement(paths, coders=["A", "B", "C"])  # the median is coder C's own row
    assert len(three.consensus_changes) == 0


def test_me_rule_default_reproduces_the_published_durations(tmp_path):
    # planted: 40 MEs of 0.25-0.50 s, and 6 long expressions with a fast onset-to-apex
    rng = np.random.default_rng(0)
    short = rng.uniform(0.25, 0.50, 40)
    long = np.array([0.8, 1.2, 2.0, 3.1, 4.4, 5.45])
    rows = []
    for i, total in enumerate(np.concatenate([short, long])):
        onset = 10.0 * (i + 1)
        apex = onset + min(0.2, total)
        rows.append(
            _row(round(onset, 2), round(apex, 2), round(onset + total, 2), ("", "", ""), "")
        )
    coding = read_coding_file(_write(rows, tmp_path / "c.xlsx", kind=False))
    me = coding.table[coding.table["kind"] == "ME"]
    durations = np.round(np.concatenate([short, long]), 2)
    assert len(me) == 40
    assert me["duration_s"].mean() == pytest.approx(durations[:40].mean(), abs=1e-9)
    either = read_coding_file(tmp_path / "c.xlsx", me_rule=MeRule.total_or_onset_apex()).table
    assert (either["kind"] == "ME").sum() == 46  # the "or" rule admits up to 5.45 s
    assert either.loc[either["kind"] == "ME", "duration_s"].max() == pytest.approx(5.45)
    differ = coding.rule_disagreements()
    assert differ["sheet_row"].tolist() == list(range(42, 48))
    assert (differ["rule_a"] == "MaE").all() and (differ["rule_b"] == "ME").all()
    assert str(MeRule()) == "total <= 500 ms"


def test_kind_column_wins_over_either_rule(tmp_path):
    rows = [_row(1.0, 1.1, 2.0, ("", "", ""), "", kind="Micro")]
    table = read_coding_file(_write(rows, tmp_path / "c.xlsx")).table
    assert table.loc[0, "kind"] == "ME" and table.loc[0, "kind_source"] == "column"
