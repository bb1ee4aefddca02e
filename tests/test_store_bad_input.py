"""Ingest survives broken participants: every other participant is stored, every problem
is reported with its file and reason, and no expression disappears."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import scipy.io
from typer.testing import CliRunner

from mmhe.annotations import read_coding_file, write_coding_sheet
from mmhe.cli import app
from mmhe.store import MMHEStore, ingest, validate


def _break_tree(tree):
    people = sorted(p.name for p in tree.iterdir() if (p / "EEG").is_dir())
    no_biopac, bad_eeg, messy = people
    (tree / no_biopac / "BIOPAC" / "Untitled1 (001).mat").unlink()
    eeg = tree / bad_eeg / "EEG" / "Acquisition 01.set"
    eeg.write_bytes(eeg.read_bytes()[: eeg.stat().st_size // 3])

    # messy: BIOPAC markers replaced by codes the EEG never saw, one unreadable frame,
    # and coding rows for a clip that was never shown and for frames that do not exist
    mat_path = tree / messy / "BIOPAC" / "Untitled1 (001).mat"
    mat = scipy.io.loadmat(mat_path)
    labels = [str(np.squeeze(x)) for x in np.ravel(mat["labels"])]
    digital = [i for i, name in enumerate(labels) if name.startswith("Digital")]
    lines = mat["data"][:, digital] > 2.5
    code = (lines * (1 << np.arange(8))).sum(axis=1)
    scrambled = np.where(code > 0, 255 - code, 0)  # 255 - (100..148) is outside 100..148
    mat["data"][:, digital] = ((scrambled[:, None] >> np.arange(8)) & 1) * 5.0
    scipy.io.savemat(mat_path, {k: v for k, v in mat.items() if not k.startswith("__")})

    coding = read_coding_file(tree / "coding_file.xlsx")
    mine = coding.table[coding.table["subject"] == messy]
    first = mine.iloc[0]
    frames = sorted((tree / messy / "Camera" / str(first["marker"])).glob("*.tif"))
    onset_name = f"{first['onset_frame_text']}"
    victim = next(f for f in frames if onset_name in f.name or f.name[11:].startswith(onset_name))
    victim.write_bytes(b"II*\x00garbage")

    rows = pd.read_excel(tree / "coding_file.xlsx", dtype=object)
    template = rows[rows["Subject"] == messy].iloc[0].copy()
    never_shown = template.copy()
    never_shown["Marker"] = 148
    never_shown["Filename"] = str(template["Filename"]).replace(f"_{template['Marker']}_", "_148_")
    never_shown["Estimated Emotion"] = "sad"
    nowhere = template.copy()
    for column, text in (
        ("OnsetFrame", "03-00-00-000-001"),
        ("ApexFrame", "03-00-00-100-016"),
        ("OffsetFrame", "03-00-00-200-031"),
    ):
        nowhere[column] = text
    nowhere["OnsetTime"], nowhere["ApexTime"], nowhere["OffsetTime"] = 9000.0, 9000.1, 9000.2
    rows = pd.concat([rows, pd.DataFrame([never_shown, nowhere])], ignore_index=True)
    write_coding_sheet(rows, tree / "coding_file.xlsx")
    return no_biopac, bad_eeg, messy, victim.name


def test_broken_participants_are_reported_not_fatal(synth_tiny, tmp_path):
    tree = tmp_path / "raw"
    shutil.copytree(synth_tiny, tree)
    no_biopac, bad_eeg, messy, victim = _break_tree(tree)
    mapping = tmp_path / "private.csv"
    version = ingest(tree, tmp_path / "store", scheduler="sync", pseudonyms=mapping)
    ids = dict(pd.read_csv(mapping).itertuples(index=False, name=None))
    store = MMHEStore(version)
    issues = store.issues()

    def codes(sid):
        return set(issues.loc[issues["subject_id"] == sid, "code"])

    participants = store.participants().set_index("subject_id")
    assert participants.loc[ids[no_biopac], "modalities"] == "eeg,camera"
    assert "missing_biopac" in codes(ids[no_biopac])
    assert participants.loc[ids[no_biopac], "n_not_located"] == 0

    assert "eeg_unreadable" in codes(ids[bad_eeg])
    message = issues.loc[issues["code"] == "eeg_unreadable", "message"].iloc[0]
    assert "Acquisition 01.set" in message and bad_eeg not in message.lower()
    assert participants.loc[ids[bad_eeg], "n_trials"] == 0

    assert {"alignment_failed", "frames_unreadable", "expression_not_located"} <= codes(ids[messy])
    assert participants.loc[ids[messy], "modalities"] == "eeg,camera"
    assert participants.loc[ids[messy], "n_trials"] > 0
    unreadable = issues[issues["code"] == "frames_unreadable"]["message"].iloc[0]
    assert victim in unreadable
    located = store.expressions(participant=ids[messy], located=True)
    assert (located["stored_frames"] == 0).sum() >= 1  # face missing, EEG/physio kept

    # no expression disappears: coding file = stored + reported as not located
    coding = read_coding_file(tree / "coding_file.xlsx")
    expressions = store.expressions()
    stored = expressions[expressions["locate_problem"].isna()]
    not_located = issues[issues["code"] == "expression_not_located"]
    assert len(coding.table) == len(expressions) == len(stored) + len(not_located)
    assert store.manifest["counts"]["expressions_not_located"] == len(not_located)
    # the unreadable EEG costs no face sample: located on the camera's own clock, flagged
    faces = store.expressions(participant=ids[bad_eeg])
    assert len(faces) and faces["locate_problem"].isna().all()
    assert faces["located_by"].str.startswith("camera_clock_").all()
    assert (faces["stored_frames"] > 0).all() and faces["eeg_onset"].isna().all()
    assert participants.loc[ids[bad_eeg], "modalities"] == "camera"
    assert "camera_clock_only" in codes(ids[bad_eeg])

    report, _ = validate(store.path)
    assert report.set_index("subject_id").loc[ids[bad_eeg], "status"] == "error"
    assert CliRunner().invoke(app, ["validate", str(tmp_path / "store")]).exit_code == 1
    raw_report, _ = validate(tree)
    assert raw_report.set_index("subject_id").loc[ids[messy], "status"] == "error"
    assert raw_report.iloc[-1]["not_located"] == len(not_located)
