"""Ingest a synthetic raw tree into a store, validate it, read it back."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from typer.testing import CliRunner

from mmhe.cli import app
from mmhe.errors import InputFileError
from mmhe.io.camera import FrameSequence
from mmhe.store import MMHEStore, discover, ingest, validate

# The camera is the only link between a coded frame and the EEG clock. A coded frame is
# within half a frame (3.3 ms) of the true event, and the camera clock is aligned from
# clip onsets that lag their markers by U(0, 1/150 s) (the recorder polls the trigger
# line; the mean lag is removed). So one frame period plus 2 ms bounds every event, and
# the typical error is a sample or two.
CAMERA_LIMITED_TOLERANCE_MS = 9
MEDIAN_TOLERANCE_MS = 2


def names_of(raw: Path) -> list[str]:
    people = pd.read_csv(raw / "participants.tsv", sep="\t")
    return [str(n) for n in people["subject"]]


def pseudonym_map(store_root: Path) -> dict[str, str]:
    mapping = pd.read_csv(store_root.with_name(store_root.name + ".pseudonyms.csv"))
    return dict(zip(mapping["name"], mapping["subject_id"], strict=True))


def test_discovery_finds_every_participant(synth_tiny):
    found = discover(synth_tiny)
    assert found.coding_file.name == "coding_file.xlsx"
    assert sorted(found.participants) == sorted(n.lower() for n in names_of(synth_tiny))
    for files in found.participants.values():
        assert files.eeg.suffix == ".set" and files.biopac.suffix == ".mat"
        assert files.camera.name == "Camera" and not files.problems


def test_ingest_then_validate_is_clean(synth_tiny, store_tiny):
    store = MMHEStore(store_tiny.parent)
    assert store.path == store_tiny
    report, problems = validate(store_tiny.parent)
    assert (report["errors"] == 0).all(), problems
    assert report.iloc[-1]["subject_id"] == "TOTAL"
    raw_report, raw_problems = validate(synth_tiny)
    assert int(raw_report.iloc[-1]["errors"]) == 0, raw_problems
    assert CliRunner().invoke(app, ["validate", str(store_tiny.parent)]).exit_code == 0
    participants = store.participants()
    assert len(participants) == 3 and set(participants["modalities"]) == {"eeg,physio,camera"}
    assert set(participants["sex"]) <= {"M", "F"}
    manifest = store.manifest
    assert manifest["counts"]["expressions"] == len(store.expressions())
    assert manifest["parameters"]["frame_context"] == 10
    hashed = [
        entry
        for p in manifest["participants"].values()
        for entry in p["inputs"]
        if "listing_blake2b" not in entry  # the camera folder is hashed by its listing
    ]
    assert len(hashed) >= 2 * len(participants)  # EEG and BIOPAC files of everyone
    names = {e["path"] for e in hashed}
    assert any(n.endswith(".set") for n in names) and any(n.endswith(".mat") for n in names)
    names_of = {sid: name for name, sid in pseudonym_map(store_tiny.parent).items()}
    for entry in hashed:  # the recorded content hash is the SHA-256 of the raw file's bytes
        sid, *rest = Path(entry["path"]).parts  # labels name the participant by pseudonym
        data = synth_tiny.joinpath(names_of[sid], *rest).read_bytes()
        assert entry["bytes"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    coding = manifest["coding_file"]
    assert (
        coding["sha256"] == hashlib.sha256((synth_tiny / coding["path"]).read_bytes()).hexdigest()
    )


def test_expression_windows_match_the_ground_truth(synth_tiny, store_tiny):
    truth = json.loads((synth_tiny / "ground_truth.json").read_text())
    ids = pseudonym_map(store_tiny.parent)
    store = MMHEStore(store_tiny)
    table = store.expressions().set_index(["subject_id", "row"])
    coded = pd.read_excel(synth_tiny / "coding_file.xlsx")
    errors = []
    for person in truth["participants"]:
        sid = ids[person["subject"].lower()]
        frames = FrameSequence(synth_tiny / person["folder"] / "Camera")
        names = [Path(p).name for p in frames.index["path"]]
        for expression in person["expressions"]:
            row = table.loc[(sid, expression["coding_row"])]
            sheet = coded.iloc[expression["coding_row"] - 1]
            events = ["onset", "apex"]
            if sheet["ApexTime"] != sheet["OffsetTime"]:  # else the offset was not coded
                events.append("offset")
            for event in events:
                true = expression["true"][event]
                errors.append(
                    (
                        int(row[f"eeg_{event}"]) - true["eeg_sample"],
                        int(row[f"physio_{event}"]) - true["biopac_sample"],
                    )
                )
                located = names.index(true["frame"])
                assert abs(int(row[f"frame_{event}"]) - located) <= 1
            stored = store.frames(row["expression_id"])
            assert stored.shape[0] == row["stored_frames"] > 0
            assert stored.shape[1:] == frames.read(0).shape
            first = int(row["frames_first"])
            np.testing.assert_array_equal(stored[0], frames.read(first))
    errors = np.abs(np.array(errors))  # samples at 1000 Hz = ms
    assert len(errors) >= 30
    assert errors.max() <= CAMERA_LIMITED_TOLERANCE_MS
    assert np.median(errors, axis=0).max() <= MEDIAN_TOLERANCE_MS


def test_store_holds_no_participant_name(synth_tiny, store_tiny):
    names = [n.lower() for n in names_of(synth_tiny)]
    root = store_tiny.parent
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        blob = path.read_bytes().lower()
        for name in names:
            assert name.encode() not in blob, f"{name} in {path}"
        if path.suffix == ".parquet":
            text = pd.read_parquet(path).astype(str).to_csv().lower()
            for name in names:
                assert name not in text, f"{name} in {path}"
    mapping = pseudonym_map(root)  # the mapping lives beside the store, not in it
    assert sorted(mapping) == sorted(names)


def _tables(version: Path) -> dict[str, pd.DataFrame]:
    store = MMHEStore(version)
    return {
        "trials": store.trials(),
        "expressions": store.expressions(),
        "events": store.events(),
        "alignment": store.alignment(),
        "issues": store.issues(),
        "participants": store.participants(),
    }


def _assert_same_store(a: Path, b: Path) -> None:
    ta, tb = _tables(a), _tables(b)
    for name in ta:
        pd.testing.assert_frame_equal(ta[name], tb[name], check_dtype=False)
    for sid in MMHEStore(a).participant_ids():
        ga = zarr.open_group(str(a / "participants" / sid / "arrays.zarr"), mode="r")
        gb = zarr.open_group(str(b / "participants" / sid / "arrays.zarr"), mode="r")
        assert "eeg" not in ga  # the trials' EEG is a view of the session, stored once
        for key in ("physio", "eeg_continuous", "eeg_start", "n_eeg_samples"):
            np.testing.assert_array_equal(ga[key][...], gb[key][...])
        np.testing.assert_array_equal(MMHEStore(a).eeg(sid)[...], MMHEStore(b).eeg(sid)[...])
        keys = sorted(ga["frames"].group_keys())
        assert keys and keys == sorted(gb["frames"].group_keys())
        for key in keys:
            for name in ("image", "frame", "time"):
                np.testing.assert_array_equal(
                    ga["frames"][key][name][...], gb["frames"][key][name][...]
                )


def test_killed_ingest_resumes_to_the_same_store(synth_tiny, store_tiny, tmp_path):
    out = tmp_path / "store"
    script = (
        "import sys; from mmhe.store import ingest; "
        "ingest(sys.argv[1], sys.argv[2], scheduler='sync')"
    )
    process = subprocess.Popen([sys.executable, "-c", script, str(synth_tiny), str(out)])
    participants = out / store_tiny.name / "participants"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if any(p.name.startswith("sub-") for p in participants.glob("sub-*")):
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = [p.name for p in participants.glob("sub-*")]
    assert 1 <= len(done) < 3, "the kill should land between participants"
    assert not (out / store_tiny.name / "manifest.json").exists()
    resumed = ingest(synth_tiny, out, scheduler="sync")
    assert not list(participants.glob(".tmp-*"))
    _assert_same_store(store_tiny, resumed)


def test_dask_local_cluster_gives_the_same_store(synth_tiny, store_tiny, tmp_path):
    version = ingest(synth_tiny, tmp_path / "store", n_workers=2)
    _assert_same_store(store_tiny, version)


def test_other_parameters_make_a_new_version(synth_tiny, store_tiny, tmp_path):
    from mmhe.store import IngestConfig

    out = tmp_path / "store"
    shutil.copytree(store_tiny.parent, out)
    shutil.copy(
        store_tiny.parent.with_name(store_tiny.parent.name + ".pseudonyms.csv"),
        out.with_name("store.pseudonyms.csv"),
    )
    grey = ingest(
        synth_tiny,
        out,
        config=IngestConfig(frame_color="grey", frame_size=64, keep_continuous_eeg=False),
        scheduler="sync",
    )
    assert grey.name != store_tiny.name and (out / store_tiny.name).is_dir()
    frames = MMHEStore(grey).frames(MMHEStore(grey).expressions()["expression_id"][0])
    assert frames.shape[-1] == 1 and max(frames.shape[1:3]) == 64
    # without the continuous EEG: the trials stored, equal to the views of the session;
    # trial epochs from the trials, a clear line for raw()
    sid = MMHEStore(grey).participant_ids()[0]
    stored, view = MMHEStore(grey).eeg(sid), MMHEStore(out, version=store_tiny.name).eeg(sid)
    assert type(stored).__name__ == "Array" and type(view).__name__ == "TrialEEG"
    np.testing.assert_array_equal(stored[...], view[...])
    assert dict(stored.attrs) == view.attrs
    np.testing.assert_array_equal(
        MMHEStore(grey).trial_epochs(sid).get_data(),
        MMHEStore(out, version=store_tiny.name).trial_epochs(sid).get_data(),
    )
    with pytest.raises(InputFileError, match="keep_continuous_eeg"):
        MMHEStore(grey).raw(sid)
    assert MMHEStore(out).path == grey  # latest
    assert MMHEStore(out, version=store_tiny.name).path == out / store_tiny.name


def test_epochs_and_torch_view_shapes(store_tiny):
    store = MMHEStore(store_tiny)
    sid = store.participant_ids()[0]
    epochs = store.to_epochs(sid)
    trials = store.trials(participant=sid)
    assert len(epochs) == len(trials)
    assert epochs.info["sfreq"] == 1000.0
    assert set(epochs.events[:, 2]) == set(trials["code"])
    assert len(epochs.ch_names) == 68  # 64 EEG + HEO, VEO, EKG, EMG (Trigger excluded)
    data = store.eeg_trial(sid, 1)
    assert data.shape == (68, int(trials.set_index("trial_index").loc[1, "n_eeg_samples"]))
    assert not np.isnan(data).any()

    dataset = store.torch_dataset(kind=None, label="compound")
    assert len(dataset) == int(store.expressions()["compound"].notna().sum())
    item = dataset[0]
    assert item["eeg"].shape == (68, 2000)  # -1 s .. +1 s around onset at 1000 Hz
    assert item["physio"].shape[1] == 8000  # -2 s .. +6 s
    assert item["face"].ndim == 4 and item["face"].shape[1] == 3
    assert float(item["face"].max()) <= 1.0
    assert item["present"] == {"face": True, "eeg": True, "physio": True}
    assert int(item["label"]) in (0, 1, 2)
