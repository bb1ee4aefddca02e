"""`mmhe export bids|megc` on the tiny store: the official BIDS validator passes, and both
exports read back to the store's numbers."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import mne_bids
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from mmhe.cli import app
from mmhe.export import export_bids, export_megc
from mmhe.store import MMHEStore


def validate_bids(root: Path) -> dict:
    """Run the BIDS validator (bids-validator-deno, offline) and return its JSON report."""
    binary = Path(sys.executable).with_name("bids-validator-deno")
    command = str(binary) if binary.is_file() else shutil.which("bids-validator-deno")
    assert command, "bids-validator-deno is a dev dependency: pip install -e '.[dev]'"
    done = subprocess.run(
        [command, str(root), "--format", "json"], capture_output=True, text=True, timeout=300
    )
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def bids(store_tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("bids") / "mmhe"
    report = export_bids(store_tiny, out)
    return out, report


def test_bids_export_passes_the_validator(bids, store_tiny):
    out, report = bids
    assert not report.problems and len(report.subjects) == 3
    result = validate_bids(out)
    issues = result["issues"]["issues"]
    errors = [i for i in issues if i["severity"] == "error"]
    assert not errors, errors[:3]
    summary = result["summary"]
    assert sorted(summary["subjects"]) == ["001", "002", "003"]
    assert summary["tasks"] == ["hiddenemotion"] and summary["modalities"] == ["EEG"]
    ages = {m["participantId"]: m["age"] for m in summary["subjectMetadata"]}
    people = MMHEStore(store_tiny).participants().set_index("subject_id")
    assert ages == {sid[4:]: int(people.loc[sid, "age"]) for sid in people.index}


def test_bids_export_reads_back_to_the_store(bids, store_tiny, synth_tiny):
    out, _ = bids
    store = MMHEStore(store_tiny)
    sid = store.participant_ids()[0]
    path = mne_bids.BIDSPath(subject="001", task="hiddenemotion", datatype="eeg", root=out)
    raw = mne_bids.read_raw_bids(path, verbose="error")
    stored = store.raw(sid)
    assert raw.ch_names == stored.ch_names
    np.testing.assert_allclose(raw.get_data(), stored.get_data(), rtol=1e-6, atol=1e-12)
    assert raw.get_channel_types(["HEO", "EKG"]) == ["eog", "ecg"]

    folder = out / "sub-001" / "eeg"
    events = pd.read_csv(
        folder / "sub-001_task-hiddenemotion_events.tsv", sep="\t", na_values="n/a"
    )
    trials = store.trials(participant=sid)
    located = store.expressions(participant=sid, located=True)
    assert len(events) == len(trials) + len(located)
    rows = events.dropna(subset=["expression_id"]).set_index("expression_id")
    table = located.set_index("expression_id").loc[rows.index]
    sfreq = stored.info["sfreq"]
    np.testing.assert_allclose(rows["onset"], table["eeg_onset"].astype(float) / sfreq, atol=1e-6)
    np.testing.assert_allclose(rows["apex"], table["eeg_apex"].astype(float) / sfreq, atol=1e-6)
    np.testing.assert_allclose(rows["offset"], table["eeg_offset"].astype(float) / sfreq, atol=1e-6)
    assert list(rows["emotion"]) == list(table["emotion"])
    assert list(rows["action_units"].astype(str)) == ["+".join(map(str, a)) for a in table["aus"]]
    assert (rows["sample"] == table["eeg_onset"].astype(int)).all()
    trial_rows = events[events["trial_type"].str.startswith("trial/")]
    assert sorted(trial_rows["value"]) == sorted(trials["code"])
    sidecar = json.loads((folder / "sub-001_task-hiddenemotion_events.json").read_text())
    assert set(events.columns) <= set(sidecar)

    # physiology on the EEG clock: each trial's first BIOPAC sample at the trial's onset
    physio_json = json.loads(
        (folder / "sub-001_task-hiddenemotion_recording-biopac_physio.json").read_text()
    )
    with gzip.open(folder / "sub-001_task-hiddenemotion_recording-biopac_physio.tsv.gz") as f:
        physio = pd.read_csv(f, sep="\t", header=None, na_values="n/a").to_numpy()
    assert physio_json["Columns"] == list(store.physio(sid).attrs["channels"])
    first = int(trials["physio_start"].min())
    for trial in trials.itertuples():
        start = int(trial.physio_start) - first
        time = physio_json["StartTime"] + start / physio_json["SamplingFrequency"]
        assert time == pytest.approx(trial.onset_s, abs=0.002)
        n = int(trial.n_physio_samples)
        np.testing.assert_allclose(
            physio[start : start + n].T, store.physio_trial(sid, trial.trial_index), rtol=1e-6
        )

    names = pd.read_csv(synth_tiny / "participants.tsv", sep="\t")["subject"].str.lower()
    for file in out.rglob("*"):
        if file.suffix in (".tsv", ".json", ".vhdr", ".vmrk") or file.name == "README":
            text = file.read_text().lower()
            assert not any(name in text for name in names), file


def test_bids_edf_export_of_one_participant(store_tiny, tmp_path):
    report = export_bids(store_tiny, tmp_path / "edf", eeg_format="EDF", participants=["sub-002"])
    assert report.subjects == ["sub-002"]
    result = validate_bids(tmp_path / "edf")
    assert not [i for i in result["issues"]["issues"] if i["severity"] == "error"]
    path = mne_bids.BIDSPath(
        subject="002", task="hiddenemotion", datatype="eeg", root=tmp_path / "edf"
    )
    raw = mne_bids.read_raw_bids(path, verbose="error")
    stored = MMHEStore(store_tiny).raw("sub-002")
    eeg = raw.get_data(picks="FP1")[0]
    truth = stored.get_data(picks="FP1")[0]
    assert np.abs(eeg - truth).max() <= 2 * np.ptp(truth) / 2**16  # 16-bit EDF resolution


def test_megc_sheet_and_frames_read_back(store_tiny, tmp_path):
    store = MMHEStore(store_tiny)
    result = CliRunner().invoke(
        app, ["export", "megc", str(store_tiny), str(tmp_path / "megc.csv")]
    )
    assert result.exit_code == 0, result.output
    sheet = pd.read_csv(tmp_path / "megc.csv", dtype={"Action Units": str})
    table = store.expressions()
    exported = table[table["stored_frames"] > 0].set_index("expression_id")
    skipped_file = tmp_path / "megc_skipped.csv"
    skipped = pd.read_csv(skipped_file) if skipped_file.exists() else pd.DataFrame()
    assert len(sheet) == len(exported) and len(sheet) + len(skipped) == len(table)
    rows = sheet.set_index("Filename").loc[exported.index]
    assert (rows["Subject"] == exported["subject_id"]).all()
    for ours, theirs in (
        ("frame_onset", "OnsetFrame"),
        ("frame_apex", "ApexFrame"),
        ("frame_offset", "OffsetFrame"),
    ):
        assert (rows[theirs] == exported[ours].astype(int)).all()
    assert list(rows["Action Units"]) == ["+".join(map(str, a)) for a in exported["aus"]]
    assert list(rows["Estimated Emotion"]) == list(exported["emotion"])
    assert list(rows["Compound"]) == list(exported["compound"])
    for expression_id, row in rows.iterrows():
        frames = store.frames(expression_id)
        first = int(exported.loc[expression_id, "frames_first"])
        for number in (row["OnsetFrame"], row["ApexFrame"], row["OffsetFrame"]):
            path = tmp_path / "megc_frames" / row["Subject"] / expression_id / f"img{number}.png"
            image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            np.testing.assert_array_equal(image, frames[number - first])  # lossless
    me = export_megc(store_tiny, tmp_path / "me.csv", kind="ME")
    assert me.rows == int((exported["kind"] == "ME").sum()) and me.skipped.empty


def test_export_cli_reports_a_used_folder(store_tiny, tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mmhe.cli import main; main()",
            "export",
            "bids",
            str(store_tiny),
            str(tmp_path / "used"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "not empty" in done.stderr and "Traceback" not in done.stderr
