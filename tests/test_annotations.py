"""The coding-file reader on a sheet with every quirk of data-format.md: exact table and issues."""

from __future__ import annotations

import datetime as dt
import json
import stat

import pandas as pd
import pytest
from typer.testing import CliRunner

from mmhe.annotations import (
    CODING_COLUMNS,
    MeRule,
    PseudonymMap,
    read_coding_file,
    write_coding_file,
    write_coding_sheet,
)
from mmhe.cli import app
from mmhe.errors import AnnotationError, MMHEError

# Subject, Filename, Marker, Onset, Apex, Offset, OnsetFrame, ApexFrame, OffsetFrame, AUs,
# Emotion, Macro/Micro, Date, dif
QUIRKY_ROWS = [
    # 1: a clean macro-expression, counters in every frame name
    (
        "wangxiaomin",
        "angry_1_146_wangxiaomin_20230718.avi",
        146,
        36.31,
        36.86,
        37.75,
        "11-05-52-025-446",
        "11-05-52-578-529",
        "11-05-53-465-662",
        "AU4, AU7",
        "angry",
        "Macro",
        "2024年05月15日-19时54分",
        84,
    ),
    # 2: four-part frame names, apex == offset, full-width comma, 'sad', space in '. avi'
    (
        "liyan",
        "sad_2_109_liyan_20230802. avi",
        109,
        10.06,
        10.25,
        10.25,
        "17-11-10-845",
        "17-11-11-035",
        "17-11-11-035",
        "AU1，AU4",
        "sad",
        "Micro",
        "2024年05月23日-10时37分",
        29,
    ),
    # 3: counter wraps 869 -> 034 (dif 166 modulo 1000)
    (
        "wangxiaomin",
        "angry_2_107_wangxiaomin_20230718.avi",
        107,
        4.55,
        5.65,
        5.65,
        "10-21-40-688-869",
        "10-21-41-788-034",
        "10-21-41-788-034",
        "AU4",
        "angry",
        "Macro",
        "2024年05月22日-22时07分",
        166,
    ),
    # 4: ' Tense ' with spaces and case, AUs without a space
    (
        "zhangsan",
        "tense_1_144_zhangsan_20230801.avi",
        144,
        2.00,
        2.10,
        2.30,
        "09-00-02-000-300",
        "09-00-02-100-315",
        "09-00-02-300-345",
        "AU4,AU7",
        " Tense ",
        "Micro",
        "2024年06月01日-08时05分",
        16,
    ),
    # 5: impossible onset > apex -> error
    (
        "zhangsan",
        "tense_1_144_zhangsan_20230801.avi",
        144,
        5.00,
        4.80,
        5.20,
        "09-00-05-000-750",
        "09-00-04-800-720",
        "09-00-05-200-780",
        "AU4",
        "tense",
        "Micro",
        "2024年06月01日-08时06分",
        None,
    ),
    # 6: duplicate of row 3 (coded again later) -> error
    (
        "wangxiaomin",
        "angry_2_107_wangxiaomin_20230718.avi",
        107,
        4.55,
        5.65,
        5.65,
        "10-21-40-688-869",
        "10-21-41-788-034",
        "10-21-41-788-034",
        "AU4",
        "angry",
        "Macro",
        "2024年05月25日-09时00分",
        166,
    ),
    # 7: unknown emotion -> error
    (
        "liyan",
        "bored_1_106_liyan_20230802.avi",
        106,
        1.00,
        1.10,
        1.20,
        "17-00-01-000-100",
        "17-00-01-100-115",
        "17-00-01-200-130",
        "AU12",
        "bored",
        "Micro",
        "2024年05月23日-10时40分",
        16,
    ),
    # 8: unknown AU99 and a malformed token
    (
        "wangxiaomin",
        "angry_1_146_wangxiaomin_20230718.avi",
        146,
        40.00,
        40.10,
        40.30,
        "11-05-55-715-000",
        "11-05-55-815-015",
        "11-05-56-015-045",
        "AU4, AU99, AUx",
        "angry",
        "Micro",
        "2024年05月15日-19时58分",
        16,
    ),
    # 9: happy during a sadness clip (marker 101)
    (
        "liyan",
        "happy_1_101_liyan_20230802.avi",
        101,
        3.00,
        3.12,
        3.30,
        "16-50-03-000-200",
        "16-50-03-120-218",
        "16-50-03-300-245",
        "AU6, AU12",
        "happy",
        "Micro",
        "2024年05月23日-11时00分",
        19,
    ),
    # 10: marked Macro, but 300 ms long
    (
        "zhangsan",
        "fear_1_104_zhangsan_20230801.avi",
        104,
        8.00,
        8.15,
        8.30,
        "09-10-08-000-500",
        "09-10-08-150-522",
        "09-10-08-300-545",
        "AU1, AU2, AU5",
        "fear",
        "Macro",
        "2024年06月01日-08时30分",
        23,
    ),
    # 11: Filename names another participant
    (
        "liyan",
        "sad_3_118_wangwu_20230802.avi",
        118,
        6.00,
        6.20,
        6.40,
        "17-20-06-000-100",
        "17-20-06-200-130",
        "17-20-06-400-160",
        "AU15",
        "sad",
        "Micro",
        "2024年05月23日-11时10分",
        31,
    ),
    # 12: dif disagrees with the counters (16 expected)
    (
        "zhangsan",
        "disgust_1_102_zhangsan_20230801.avi",
        102,
        3.00,
        3.10,
        3.40,
        "09-20-03-000-100",
        "09-20-03-100-115",
        "09-20-03-400-160",
        "AU9, AU10",
        "disgust",
        "Micro",
        "2024年06月01日-09时00分",
        20,
    ),
    # 13: malformed frame name (two-digit milliseconds) -> warning, row kept
    (
        "wangxiaomin",
        "surprise_1_108_wangxiaomin_20230718.avi",
        108,
        2.00,
        2.10,
        2.20,
        "11-20-02-00-100",
        "11-20-02-100-115",
        "11-20-02-200-130",
        "AU1, AU2",
        "surprise",
        "Micro",
        "2024年05月16日-10时00分",
        16,
    ),
    # 14: unreadable coding date -> warning
    (
        "wangxiaomin",
        "surprise_1_108_wangxiaomin_20230718.avi",
        108,
        5.00,
        5.10,
        5.20,
        "11-20-05-000-550",
        "11-20-05-100-565",
        "11-20-05-200-580",
        "AU1, AU2",
        "surprise",
        "Micro",
        "2024/13/45",
        16,
    ),
    # 15: AU4 alone for happiness -> implausible AU set (warning)
    (
        "liyan",
        "happy_2_103_liyan_20230802.avi",
        103,
        7.00,
        7.10,
        7.20,
        "16-55-07-000-300",
        "16-55-07-100-315",
        "16-55-07-200-330",
        "AU4",
        "happy",
        "Micro",
        "2024年05月23日-11时20分",
        16,
    ),
]

EXPECTED_ISSUES = {
    (5, "OnsetTime", "error", "order"),
    (6, None, "error", "duplicate_row"),
    (7, "Estimated Emotion", "error", "unknown_emotion"),
    (8, "Action Units", "warning", "unknown_au"),
    (8, "Action Units", "warning", "malformed_au"),
    (9, "Estimated Emotion", "warning", "emotion_stimulus_mismatch"),
    (10, "Macro/Micro", "warning", "kind_rule_mismatch"),
    (11, "Filename", "warning", "filename_mismatch"),
    (12, "dif", "warning", "dif_mismatch"),
    (13, "OnsetFrame", "warning", "malformed_frame_name"),
    (14, "Date", "warning", "bad_date"),
    (15, "Action Units", "warning", "implausible_aus"),
}


def quirky_frame(*, with_kind: bool = True) -> pd.DataFrame:
    frame = pd.DataFrame(QUIRKY_ROWS, columns=CODING_COLUMNS)
    return frame if with_kind else frame.drop(columns=["Macro/Micro"])


@pytest.fixture
def quirky_xlsx(tmp_path):
    return write_coding_sheet(quirky_frame(), tmp_path / "coding_file.xlsx")


def issue_set(coding):
    return {(i.row, i.column, i.severity, i.code) for i in coding.issues}


def test_every_quirk_gives_the_exact_issues(quirky_xlsx):
    coding = read_coding_file(quirky_xlsx)
    assert issue_set(coding) == EXPECTED_ISSUES
    assert coding.table["row"].tolist() == [1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15]
    # no row dropped silently: every source row is kept or has an error
    rejected = {i.row for i in coding.errors}
    assert set(coding.table["row"]) | rejected == set(range(1, 16))
    assert set(coding.table["row"]) & rejected == set()
    summary = coding.summary()
    assert (summary["rows_read"], summary["rows_kept"], summary["rows_rejected"]) == (15, 12, 3)
    assert summary["issues_by_code"]["order"]["rows"] == [5]
    assert summary["expressions"]["anger"] == {"MaE": 2, "ME": 1}


def test_exact_values_of_the_table(quirky_xlsx):
    table = read_coding_file(quirky_xlsx).table.set_index("row")
    first = table.loc[1]
    assert first["subject"] == "wangxiaomin" and first["subject_id"] == "sub-002"
    assert (first["marker"], first["clip_index"], first["session_date"]) == (
        146,
        1,
        dt.date(2023, 7, 18),
    )
    assert (first["onset_s"], first["apex_s"], first["offset_s"]) == (36.31, 36.86, 37.75)
    assert first["onset_frame"] == dt.time(11, 5, 52, 25000)
    assert first["onset_tod_s"] == pytest.approx(11 * 3600 + 5 * 60 + 52.025)
    assert (first["onset_counter"], first["apex_counter"], first["offset_counter"]) == (
        446,
        529,
        662,
    )
    assert first["aus"] == (4, 7)
    assert (first["emotion"], first["compound"], first["kind"], first["kind_source"]) == (
        "anger",
        "negative",
        "MaE",
        "column",
    )
    assert first["coded_at"] == pd.Timestamp(2024, 5, 15, 19, 54)
    assert first["dif"] == 84

    four_part = table.loc[2]
    assert four_part["subject_id"] == "sub-001"
    assert pd.isna(four_part["onset_counter"]) and pd.isna(four_part["apex_counter"])
    assert four_part["apex_s"] == four_part["offset_s"] == 10.25
    assert four_part["aus"] == (1, 4)
    assert (four_part["emotion"], four_part["kind"]) == ("sadness", "ME")
    assert four_part["session_date"] == dt.date(2023, 8, 2)

    wrap = table.loc[3]
    assert (wrap["onset_counter"], wrap["apex_counter"], wrap["dif"]) == (869, 34, 166)
    tense = table.loc[4]
    assert (tense["emotion"], tense["compound"], tense["subject_id"]) == (
        "tension",
        "negative",
        "sub-003",
    )
    assert table.loc[8, "aus"] == (4, 99)
    assert table.loc[10, "kind"] == "MaE"  # the column wins, the rule only warns
    assert pd.isna(table.loc[13, "onset_tod_s"]) and table.loc[13, "onset_s"] == 2.0
    assert pd.isna(table.loc[14, "coded_at"])


def test_missing_kind_column_uses_the_duration_rule(tmp_path):
    path = write_coding_sheet(quirky_frame(with_kind=False), tmp_path / "no_kind.csv")
    coding = read_coding_file(path)
    assert (None, "Macro/Micro", "warning", "kind_column_missing") in issue_set(coding)
    table = coding.table.set_index("row")
    assert set(table["kind_source"]) == {"duration_rule"}
    assert table.loc[1, "kind"] == "MaE" and table.loc[10, "kind"] == "ME"
    # a stricter rule turns the 300 ms expression of row 10 into an MaE
    strict = read_coding_file(path, me_rule=MeRule(max_total_s=0.2, max_onset_apex_s=0.1))
    assert strict.table.set_index("row").loc[10, "kind"] == "MaE"
    assert not any(i.code == "kind_rule_mismatch" for i in coding.issues)


def test_csv_and_xlsx_give_the_same_table(tmp_path, quirky_xlsx):
    csv_path = write_coding_sheet(quirky_frame(), tmp_path / "coding_file.csv")
    from_csv = read_coding_file(csv_path)
    from_xlsx = read_coding_file(quirky_xlsx)
    pd.testing.assert_frame_equal(from_csv.table, from_xlsx.table)
    assert issue_set(from_csv) == issue_set(from_xlsx)


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_round_trip_write_then_read(tmp_path, quirky_xlsx, suffix):
    first = read_coding_file(quirky_xlsx)
    again = read_coding_file(write_coding_file(first, tmp_path / f"again{suffix}"))
    keep = [c for c in first.table.columns if c != "row"]
    pd.testing.assert_frame_equal(
        first.table[keep].reset_index(drop=True), again.table[keep].reset_index(drop=True)
    )
    assert not again.errors


def test_writing_is_deterministic(tmp_path):
    a = write_coding_sheet(quirky_frame(), tmp_path / "a.xlsx").read_bytes()
    b = write_coding_sheet(quirky_frame(), tmp_path / "b.xlsx").read_bytes()
    assert a == b


def test_stimulus_table_can_be_replaced(tmp_path, quirky_xlsx):
    table = tmp_path / "stimuli.csv"
    table.write_text(
        "marker,category\n"
        + "\n".join(f"{m},{'happy' if m == 101 else 'sad'}" for m in range(100, 149))
    )
    coding = read_coding_file(quirky_xlsx, stimuli=table)
    # row 9 (happy at 101) is now consistent; sadness rows at other markers are too
    assert not any(i.row == 9 and i.code == "emotion_stimulus_mismatch" for i in coding.issues)
    assert any(i.row == 1 and i.code == "emotion_stimulus_mismatch" for i in coding.issues)


def test_pseudonyms_are_stable_and_kept_private(tmp_path, quirky_xlsx):
    mapping = tmp_path / "private" / "pseudonyms.csv"
    known = PseudonymMap({"zhangsan": "sub-001"})
    known.save(mapping)
    coding = read_coding_file(quirky_xlsx, pseudonyms=mapping)
    ids = dict(zip(coding.table["subject"], coding.table["subject_id"], strict=True))
    assert ids == {"zhangsan": "sub-001", "liyan": "sub-002", "wangxiaomin": "sub-003"}
    coding.pseudonyms.save(mapping)
    assert stat.S_IMODE(mapping.stat().st_mode) == 0o600
    again = read_coding_file(quirky_xlsx, pseudonyms=mapping)
    assert again.table["subject_id"].tolist() == coding.table["subject_id"].tolist()
    assert PseudonymMap().id_for("LiYan20230802") == "sub-001"  # date suffix and case ignored
    deidentified = coding.deidentified()
    text = deidentified.astype(str).to_csv()
    for name in ("wangxiaomin", "liyan", "zhangsan"):
        assert name not in text


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(AnnotationError, match="file not found"):
        read_coding_file(tmp_path / "nope.xlsx")
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"not a workbook")
    with pytest.raises(AnnotationError, match=r"broken\.xlsx"):
        read_coding_file(broken)
    missing = tmp_path / "missing.csv"
    quirky_frame().drop(columns=["Marker", "dif"]).to_csv(missing, index=False)
    with pytest.raises(AnnotationError, match=r"missing required column.*Marker"):
        read_coding_file(missing)
    empty = tmp_path / "empty.csv"
    empty.write_text(",".join(CODING_COLUMNS) + "\n")
    with pytest.raises(AnnotationError, match="no data rows"):
        read_coding_file(empty)
    other = tmp_path / "coding.txt"
    other.write_text("x")
    with pytest.raises(MMHEError, match="unsupported extension"):
        read_coding_file(other)


def test_cli_check_prints_summary_and_writes_json(tmp_path, quirky_xlsx):
    out = tmp_path / "check.json"
    result = CliRunner().invoke(app, ["annotations", "check", str(quirky_xlsx), "--json", str(out)])
    assert result.exit_code == 1, result.output  # three rows have errors
    assert "15 rows read, 12 kept, 3 rejected" in result.output
    assert "duplicate_row" in result.output
    payload = json.loads(out.read_text())
    assert payload["summary"]["rows_rejected"] == 3
    assert len(payload["issues"]) == len(EXPECTED_ISSUES)
    assert "wangxiaomin" not in json.dumps(payload["issues"], ensure_ascii=False)

    clean = write_coding_sheet(quirky_frame().iloc[[0, 2, 3]], tmp_path / "clean.xlsx")
    assert CliRunner().invoke(app, ["annotations", "check", str(clean)]).exit_code == 0
    warned = write_coding_sheet(quirky_frame().iloc[[0, 9]], tmp_path / "warned.xlsx")
    assert CliRunner().invoke(app, ["annotations", "check", str(warned)]).exit_code == 0
    assert CliRunner().invoke(app, ["annotations", "check", str(warned), "--strict"]).exit_code == 1
    missing = CliRunner().invoke(app, ["annotations", "check", str(tmp_path / "nope.xlsx")])
    assert missing.exit_code != 0
