"""A fault corpus: broken copies of one participant or of the coding file of the `tiny` tree,
each fed to `mmhe validate` (the same inspection `ingest` runs). For every case the batch
completes, the broken item is reported with a clear message naming it, nothing of the
other participants changes, no coding row disappears, and no traceback is printed.

`FAULTS` is the corpus; `test_corpus_outcome_table` prints its outcome table (cases,
reported, data lost, tracebacks) with ``pytest -s``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest
import scipy.io
from typer.testing import CliRunner

from mmhe.annotations import read_coding_file
from mmhe.cli import app

VICTIM = "fengming"  # sorted first: pseudonym sub-001
DEVICE_COLUMNS = ["eeg_markers", "physio_markers", "camera_markers", "physio_matched"]


# ------------------------------------------------------------------ building broken trees


def _tree(clean: Path, out: Path, copies: tuple[str, ...] = ("EEG", "BIOPAC")) -> Path:
    """A raw tree whose coding files and the victim's `copies` folders are copies, and
    everything else links to the clean tree (the faults cannot reach it)."""
    out.mkdir(parents=True)
    for item in clean.iterdir():
        if item.name.startswith("."):
            continue
        if not item.is_dir():
            shutil.copy(item, out / item.name)
        elif item.name != VICTIM or not copies:
            os.symlink(item, out / item.name)
        else:
            (out / item.name).mkdir()
            for part in item.iterdir():
                if part.name in copies:
                    shutil.copytree(part, out / item.name / part.name)
                else:
                    os.symlink(part, out / item.name / part.name)
    return out


def _eeg(tree: Path) -> Path:
    return tree / VICTIM / "EEG" / "Acquisition 01.set"


def _mat(tree: Path) -> Path:
    return tree / VICTIM / "BIOPAC" / "Untitled1 (001).mat"


def _cut(path: Path, fraction: float) -> None:
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * fraction)])


def _as_brainvision(tree: Path, *, marker_size_one: bool = False) -> Path:
    from mmhe.synth.eeg import write_eeg

    raw = mne.io.read_raw_eeglab(_eeg(tree), preload=True, verbose="error")
    _eeg(tree).unlink()
    write_eeg(raw, _eeg(tree).parent, "vhdr")
    vmrk = tree / VICTIM / "EEG" / "Acquisition 01.vmrk"
    if marker_size_one:  # as BrainVision Recorder writes them: markers carry no duration
        lines = [
            ",".join([*line.split(",")[:3], "1", *line.split(",")[4:]])
            if line.startswith("Mk")
            else line
            for line in vmrk.read_text().splitlines()
        ]
        vmrk.write_text("\n".join(lines) + "\n")
    return tree / VICTIM / "EEG" / "Acquisition 01.eeg"


def _cut_samples(data: Path, keep: float, n_channels: int = 69, width: int = 4) -> None:
    frame = n_channels * width
    n = data.stat().st_size // frame
    data.write_bytes(data.read_bytes()[: int(n * keep) * frame])


def _flat_trigger(tree: Path) -> None:
    from mmhe.synth.eeg import write_eeg

    raw = mne.io.read_raw_eeglab(_eeg(tree), preload=True, verbose="error")
    raw.set_annotations(None)
    raw._data[raw.ch_names.index("Trigger")] = 0.0
    _eeg(tree).unlink()
    write_eeg(raw, _eeg(tree).parent, "set")


def _edit_mat(tree: Path, change) -> None:
    mat = scipy.io.loadmat(_mat(tree))
    labels = [str(np.squeeze(x)) for x in np.ravel(mat["labels"])]
    change(mat["data"], labels)
    scipy.io.savemat(_mat(tree), {k: v for k, v in mat.items() if not k.startswith("__")})


def _nan_run(data, labels) -> None:
    data[5000:7000, labels.index(next(x for x in labels if x.startswith("PPG")))] = np.nan


def _all_nan(data, labels) -> None:
    data[:] = np.nan


def _flat_digital(data, labels) -> None:
    data[:, [i for i, x in enumerate(labels) if x.startswith("Digital")]] = 0.0


def _key_frame(tree: Path) -> Path:
    coding = read_coding_file(tree / "coding_file.xlsx")
    first = coding.table[coding.table["subject"] == VICTIM].iloc[0]
    folder = tree / VICTIM / "Camera" / str(first["marker"])
    onset = str(first["onset_frame_text"])
    return next(f for f in sorted(folder.glob("*.tif")) if onset in f.name[11:])


def _rows(tree: Path) -> pd.DataFrame:
    return pd.read_excel(tree / "coding_file.xlsx", dtype=object)


def _second_sheet(tree: Path) -> None:
    rows = _rows(tree)
    with pd.ExcelWriter(tree / "coding_file.xlsx") as book:
        pd.DataFrame({"notes": ["coded in May"]}).to_excel(book, sheet_name="readme", index=False)
        rows.to_excel(book, sheet_name="coding", index=False)


def _formula_without_value(tree: Path) -> None:
    from openpyxl import load_workbook

    book = load_workbook(tree / "coding_file.xlsx")
    sheet = book.active
    header = [c.value for c in sheet[1]]
    row = next(r for r in range(2, sheet.max_row + 1) if sheet.cell(r, 1).value == VICTIM)
    sheet.cell(row, header.index("OnsetTime") + 1).value = "=1+1"  # openpyxl keeps no value
    book.save(tree / "coding_file.xlsx")


def _as_csv(tree: Path, sep: str, encoding: str) -> None:
    rows = _rows(tree)
    (tree / "coding_file.xlsx").unlink()
    rows.to_csv(tree / "coding_file.csv", sep=sep, encoding=encoding, index=False)


def _rejected_rows(tree: Path) -> None:
    rows = _rows(tree)
    victim = rows.index[rows["Subject"] == VICTIM][:2]
    rows.loc[victim, "Estimated Emotion"] = "bored"
    from mmhe.annotations import write_coding_sheet

    write_coding_sheet(rows, tree / "coding_file.xlsx")


@dataclass(frozen=True)
class Fault:
    name: str
    damage: object  # tree -> None
    code: str  # the problem code that must name the broken item
    who: str | None  # "victim" or None (a problem of the tree, no participant)
    text: str  # words the message must contain
    victim_only: bool = True  # False: the coding file changes every participant's rows
    error: bool = True  # an error (exit code 1) rather than a warning
    copies: tuple[str, ...] = ("EEG", "BIOPAC")  # the victim's folders the fault may touch


FAULTS = [
    Fault("eeg_truncated", lambda t: _cut(_eeg(t), 0.33), "eeg_unreadable", "victim", "set"),
    Fault("eeg_zero_byte", lambda t: _cut(_eeg(t), 0), "eeg_unreadable", "victim", "0 bytes"),
    Fault(
        "eeg_random_bytes",
        lambda t: _eeg(t).write_bytes(np.random.default_rng(0).bytes(4096)),
        "eeg_unreadable",
        "victim",
        "cannot be read",
    ),
    Fault(
        "eeg_wrong_extension",
        lambda t: _eeg(t).rename(_eeg(t).with_suffix(".edf")),
        "eeg_unreadable",
        "victim",
        "EDF",
    ),
    Fault(
        "eeg_missing_sidecar",
        lambda t: _as_brainvision(t).unlink(),
        "eeg_unreadable",
        "victim",
        "vhdr",
    ),
    Fault(
        "eeg_markers_past_end",
        lambda t: _cut_samples(_as_brainvision(t), 0.6),
        "eeg_truncated",
        "victim",
        "past the end",
    ),
    Fault(
        "eeg_cut_quietly",
        lambda t: _cut_samples(_as_brainvision(t, marker_size_one=True), 0.9),
        "eeg_truncated",
        "victim",
        "camera recorded marker",
    ),
    Fault("eeg_flat_trigger", _flat_trigger, "no_eeg_markers", "victim", "no stimulus markers"),
    Fault(
        "eeg_two_candidates",
        lambda t: (_eeg(t).parent / "Acquisition 01.cdt").write_bytes(b"\x00" * 64),
        "eeg_ambiguous",
        "victim",
        "--prefer",
    ),
    Fault("biopac_zero_byte", lambda t: _cut(_mat(t), 0), "biopac_unreadable", "victim", "mat"),
    Fault(
        "biopac_random_bytes",
        lambda t: _mat(t).write_bytes(np.random.default_rng(1).bytes(4096)),
        "biopac_unreadable",
        "victim",
        "mat",
    ),
    Fault(
        "biopac_nan_run",
        lambda t: _edit_mat(t, _nan_run),
        "physio_nan",
        "victim",
        "2000 NaN samples",
        error=False,
    ),
    Fault("biopac_all_nan", lambda t: _edit_mat(t, _all_nan), "biopac_all_nan", "victim", "NaN"),
    Fault(
        "biopac_flat_trigger",
        lambda t: _edit_mat(t, _flat_digital),
        "no_physio_markers",
        "victim",
        "never carry a code",
        error=False,
    ),
    Fault(
        "camera_corrupt_tif",
        lambda t: _key_frame(t).write_bytes(b"II*\x00garbage"),
        "frames_unreadable",
        "victim",
        ".tif",
        copies=("Camera",),
    ),
    Fault(
        "camera_zero_byte_tif",
        lambda t: _key_frame(t).write_bytes(b""),
        "frames_unreadable",
        "victim",
        "0 bytes",
        copies=("Camera",),
    ),
    Fault(
        "coding_second_sheet",
        _second_sheet,
        "coding_unreadable",
        None,
        "--sheet 'coding'",
        victim_only=False,
    ),
    Fault(
        "coding_random_bytes",
        lambda t: (t / "coding_file.xlsx").write_bytes(np.random.default_rng(2).bytes(2048)),
        "coding_unreadable",
        None,
        "coding_file.xlsx",
        victim_only=False,
    ),
    Fault(
        "coding_missing",
        lambda t: (t / "coding_file.xlsx").unlink(),
        "discovery",
        None,
        "no coding file",
        victim_only=False,
        error=False,
    ),
    Fault(
        "coding_formula_without_value",
        _formula_without_value,
        "coding_formula_without_value",
        "victim",
        "save it",
    ),
    Fault(
        "coding_rejected_rows",
        _rejected_rows,
        "coding_unknown_emotion",
        "victim",
        "bored",
    ),
    Fault(
        "participants_tsv_garbage",
        lambda t: (t / "participants.tsv").write_bytes(b"\xff\xfe\x00garbage\x00"),
        "participants_table_unreadable",
        None,
        "participants.tsv",
        error=False,
    ),
]
READ_CORRECTLY = [
    ("coding_semicolon_csv", lambda t: _as_csv(t, ";", "utf-8")),
    ("coding_gb18030_csv", lambda t: _as_csv(t, ",", "gb18030")),
]


@pytest.fixture(scope="module")
def clean(synth_tiny, tmp_path_factory):
    code, report, problems, _ = _invoke(synth_tiny, tmp_path_factory.mktemp("clean"))
    assert code == 0
    return report, problems


OUTCOMES: list[dict] = []


def _invoke(tree: Path, out: Path):
    """`mmhe validate TREE --json`: (exit code, report by participant, problems)."""
    result = CliRunner().invoke(
        app, ["validate", str(tree), "--rows", "200", "--json", str(out / "report.json")]
    )
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    written = json.loads((out / "report.json").read_text())
    report = pd.DataFrame(written["participants"]).set_index("subject_id")
    return result.exit_code, report, written["problems"], result.output


def _sheet_rows_rejected(problems: list[dict], sid: str) -> int:
    return len(
        {
            p["sheet_row"]
            for p in problems
            if p["subject_id"] == sid
            and p["code"].startswith("coding_")
            and p["severity"] == "error"
        }
    )


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault_is_reported_and_nothing_else_changes(fault, synth_tiny, clean, tmp_path):
    clean_report, _ = clean
    tree = _tree(synth_tiny, tmp_path / "raw", fault.copies)
    fault.damage(tree)
    code, report, problems, output = _invoke(tree, tmp_path)
    victim = report.index[0]  # sub-001 = VICTIM
    mine = [p for p in problems if p["code"] == fault.code]
    expected = victim if fault.who == "victim" else None
    assert any(p["subject_id"] == expected for p in mine), (fault.name, problems)
    assert any(fault.text in p["message"] for p in mine), (fault.name, mine)
    assert code == (1 if fault.error else 0), output
    assert fault.code in output.replace("\n", "")  # the console lists it too
    assert int(report.loc["TOTAL", "errors"]) == sum(p["severity"] == "error" for p in problems)
    assert int(report.loc["TOTAL", "warnings"]) == sum(p["severity"] == "warning" for p in problems)

    others = [s for s in clean_report.index if s not in ("TOTAL", "(store)", victim)]
    columns = list(report.columns) if fault.victim_only else DEVICE_COLUMNS
    for sid in others:  # the rest is identical to a clean run
        assert report.loc[sid, columns].to_dict() == clean_report.loc[sid, columns].to_dict()
    # no coding row lost: each of the victim's rows is stored, reported as not located,
    # or rejected with an error naming its sheet row
    lost = 0
    if fault.victim_only:
        not_located = [
            p
            for p in problems
            if p["code"] == "expression_not_located" and p["subject_id"] == victim
        ]
        assert len(not_located) == int(report.loc[victim, "not_located"])
        lost = (
            int(clean_report.loc[victim, "expressions"])
            - int(report.loc[victim, "expressions"])
            - _sheet_rows_rejected(problems, victim)
        )
    assert lost == 0
    OUTCOMES.append({"case": fault.name, "reported": True, "data_lost": lost, "traceback": False})


@pytest.mark.parametrize("name,damage", READ_CORRECTLY, ids=[n for n, _ in READ_CORRECTLY])
def test_odd_but_valid_coding_files_read_like_the_clean_one(
    name, damage, synth_tiny, clean, tmp_path
):
    clean_report, clean_problems = clean
    tree = _tree(synth_tiny, tmp_path / "raw", copies=())
    damage(tree)
    code, report, problems, output = _invoke(tree, tmp_path)
    assert code == 0, output
    pd.testing.assert_frame_equal(report, clean_report)
    assert [(p["code"], p["sheet_row"]) for p in problems] == [
        (p["code"], p["sheet_row"]) for p in clean_problems
    ]
    OUTCOMES.append(
        {"case": name, "reported": "read correctly", "data_lost": 0, "traceback": False}
    )


def test_corpus_outcome_table():
    """Printed with -s; every case of the corpus ran (this test runs after them)."""
    table = pd.DataFrame(OUTCOMES)
    if len(table) < len(FAULTS) + len(READ_CORRECTLY):
        pytest.skip("run with the whole module to get the outcome table")
    print(f"\nfault corpus: {len(table)} cases\n{table.to_string(index=False)}")
    assert table["data_lost"].sum() == 0 and not table["traceback"].any()
