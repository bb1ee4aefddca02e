"""Ingest survives broken participants: every other participant is stored, every problem
is reported with its file and reason, and no expression disappears."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io
from typer.testing import CliRunner

from mmhe.annotations import read_coding_file, write_coding_sheet
from mmhe.cli import app
from mmhe.store import MMHEStore, validate


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
    result = CliRunner().invoke(
        app,
        [
            *("ingest", str(tree), "--out", str(tmp_path / "store")),
            *("--scheduler", "sync", "--pseudonyms", str(mapping)),
        ],
    )
    assert result.exit_code == 1, result.output  # the store is written, with its errors
    printed = " ".join(result.output.split())
    for code in ("eeg_unreadable", "frames_unreadable", "missing_biopac", "camera_clock_only"):
        assert code in printed
    assert bad_eeg in printed  # the console names the participant folder as on disk
    version = MMHEStore(tmp_path / "store").path
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


# ---------------------------------------------------------------- one writer per store


def _held_lock(folder, command="ingest"):
    """A lock held by a live process other than this one (a `sleep`), as another run would."""
    import json
    import socket
    import subprocess

    holder = subprocess.Popen(["sleep", "60"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".mmhe.lock").write_text(
        json.dumps(
            {"pid": holder.pid, "host": socket.gethostname(), "command": command, "run_id": "x"}
        )
    )
    return holder


def test_a_second_ingest_is_refused_with_one_line(synth_tiny, tmp_path):
    from mmhe.store import IngestConfig

    version = tmp_path / "store" / IngestConfig().version()
    holder = _held_lock(version)
    try:
        result = CliRunner().invoke(
            app,
            ["ingest", str(synth_tiny), "--out", str(tmp_path / "store"), "--scheduler", "sync"],
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1
    assert "another mmhe run is writing" in result.output and str(holder.pid) in result.output
    assert "Traceback" not in result.output
    assert not (version / "participants").exists()  # nothing written, nothing deleted


def test_features_refuse_a_store_being_written(store_tiny):
    holder = _held_lock(store_tiny, "features")
    try:
        result = CliRunner().invoke(app, ["features", str(store_tiny), "--scheduler", "sync"])
    finally:
        holder.kill()
        holder.wait()
        (store_tiny / ".mmhe.lock").unlink()
    assert result.exit_code == 1 and "mmhe features" in result.output


def test_lock_waits_takes_over_stale_locks_and_cleans_only_others_temp_folders(tmp_path):
    import time

    from mmhe.store.lock import StoreBusyError, StoreLock

    holder = _held_lock(tmp_path / "v")
    try:
        started = time.monotonic()
        with pytest.raises(StoreBusyError, match=rf"pid {holder.pid} on .*mmhe ingest"):
            StoreLock(tmp_path / "v", command="ingest", wait_s=0.4, poll_s=0.1).acquire()
        assert time.monotonic() - started >= 0.4
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale and taken over, and said so
    with StoreLock(tmp_path / "v", command="ingest") as lock:
        assert lock.took_over is not None and lock.took_over["pid"] == holder.pid
        mine = tmp_path / "v" / lock.temp_name("sub-001")
        dead = tmp_path / "v" / ".tmp-1-deadbeef-sub-002"
        mine.mkdir()
        dead.mkdir()
        assert lock.clean_leftovers(tmp_path / "v") == [dead]
        assert mine.is_dir() and not dead.exists()
    assert not (tmp_path / "v" / ".mmhe.lock").exists()


def test_pseudonyms_replace_whole_names_only():
    from mmhe.store.redact import Redactor

    redact = Redactor({"an": "sub-001", "liyan": "sub-002"})
    assert redact("cannot read /raw/an/EEG/x.set") == "cannot read /raw/sub-001/EEG/x.set"
    assert redact("LiYan20230802: frame of an_1_146_an_20230718.avi") == (
        "sub-00220230802: frame of sub-001_1_146_sub-001_20230718.avi"
    )
    assert redact("Anne and Dan") == "Anne and Dan"


# ---------------------------------------------------------------- stores with empty pieces


def test_empty_tables_keep_their_columns_and_validate_works(store_tiny, tmp_path):
    version = tmp_path / store_tiny.name
    shutil.copytree(store_tiny, version)
    participant = version / "participants" / "sub-002"
    for name in ("expressions", "events"):
        table = pd.read_parquet(participant / f"{name}.parquet")
        table.iloc[0:0].to_parquet(participant / f"{name}.parquet", index=False)
    store = MMHEStore(version)
    none = store.expressions(participant="sub-002", located=True)
    assert len(none) == 0 and "locate_problem" in none and "stored_frames" in none
    assert set(store.expressions(located=True)["subject_id"]) == {"sub-001", "sub-003"}
    report, _ = validate(version)  # a participant without markers or coding rows
    assert report.set_index("subject_id").loc["sub-002", "eeg_markers"] == 0
    nothing = MMHEStore.__new__(MMHEStore)
    nothing.path, nothing.manifest, nothing._cache = tmp_path / "nowhere", {}, {}
    assert "locate_problem" in nothing._read("expressions", [])


def test_features_complete_a_cache_when_a_participant_is_added(store_tiny, tmp_path):
    from mmhe.features.batch import compute_features, load_features

    version = tmp_path / store_tiny.name
    shutil.copytree(store_tiny, version, ignore=shutil.ignore_patterns("features"))
    later = tmp_path / "sub-003"
    shutil.move(version / "participants" / "sub-003", later)
    compute_features(version, ["physio"], scheduler="sync")
    shutil.move(later, version / "participants" / "sub-003")
    folders = compute_features(version, ["physio"], scheduler="sync")
    table, _ = load_features(version, "physio")
    assert set(table["subject_id"]) == {"sub-001", "sub-002", "sub-003"}
    assert (folders["physio"] / "complete.json").read_text().count("sub-00") == 3


def test_store_inside_the_raw_tree_is_refused(synth_tiny, tmp_path):
    tree = tmp_path / "raw"
    tree.mkdir()
    (tree / "coding_file.xlsx").write_bytes((synth_tiny / "coding_file.xlsx").read_bytes())
    result = CliRunner().invoke(app, ["ingest", str(tree), "--out", str(tree / "store")])
    assert result.exit_code == 2 and "inside the input" in result.output


# ---------------------------------------------------------------- EEG length against header


def test_curry_shorter_than_its_header_is_named(tmp_path):
    from mmhe.errors import InputFileError
    from mmhe.io.eeg import read_eeg

    here = Path(__file__).resolve().parents[1]
    found = [p / "data" / "curry" for p in (here.parent / "shared", Path("/work/shared"))]
    curry = next((p for p in found if (p / "Float.cdt").is_file()), None)
    if curry is None:
        pytest.skip("the shared Curry test files are not beside the project")
    for name in ("Float.cdt", "Float.cdt.dpo", "Float.cdt.ceo"):
        shutil.copy(curry / name, tmp_path / name)
    cdt = tmp_path / "Float.cdt"
    cdt.write_bytes(cdt.read_bytes()[: 3375 * 32 * 4])  # 90 % of the 3,750 samples
    with pytest.raises(InputFileError, match="3375 of the 3750 samples of 32 channels"):
        read_eeg(cdt)
    cdt.write_bytes(b"")
    with pytest.raises(InputFileError, match=r"Float\.cdt: is empty \(0 bytes\)"):
        read_eeg(cdt)


# ---------------------------------------------------------------- options checked at the edge


@pytest.mark.parametrize(
    "args,code,text",
    [
        (["features", "{store}", "--modality", "bogus"], 2, "'bogus' is not one of face"),
        (["features", "{store}", "--flow", "bogus"], 2, "tvl1, dis, farneback"),
        (["features", "{store}", "--scheduler", "bogus"], 2, "tcp://host:8786"),
        (
            ["benchmark", "{store}", "--out", "{tmp}/r", "--model", "ststnet", "--modality", "eeg"],
            2,
            "ststnet does not take eeg",
        ),
        (
            ["benchmark", "{store}", "--out", "{tmp}/r", "--model", "ststnet", "--task", "bogus"],
            2,
            "compound, emotion7",
        ),
        (
            ["benchmark", "{store}", "--out", "{tmp}/r", "--model", "ststnet", "--samples", "x"],
            2,
            "ME, MaE, both",
        ),
        (["benchmark", "{store}", "--out", "{tmp}/r", "--model", "nope"], 2, "ststnet"),
        (["benchmark", "{store}", "--out", ".", "--model", "ststnet"], 2, "current directory"),
        (["benchmark", "{store}", "--out", "/proc/mmhe", "--model", "ststnet"], 2, "cannot write"),
        (
            ["benchmark", "{store}", "--out", "{tmp}/r", "--config", "{tmp}/bench.yaml"],
            2,
            "modalitis: Extra inputs are not permitted",
        ),
        (["ingest", "{raw}", "--out", "{tmp}/s", "--padding", "-1"], 2, "--padding -1.0"),
        (["ingest", "{raw}", "--out", "{tmp}/s", "--frame-size", "4"], 2, "--frame-size 4"),
        (["ingest", "{raw}", "--out", "{tmp}/s", "--workers", "0"], 2, "minimum 1"),
        (["annotations", "check", "{raw}/coding_file.xlsx", "--me-max-total", "-1"], 2, "minimum"),
    ],
)
def test_bad_option_values_get_one_line_and_exit_2(
    args, code, text, store_tiny, synth_tiny, tmp_path
):
    (tmp_path / "bench.yaml").write_text("runs:\n  - model: ststnet\n    modalitis: [face]\n")
    filled = [a.format(store=store_tiny, raw=synth_tiny, tmp=tmp_path) for a in args]
    result = CliRunner().invoke(app, filled)
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output  # one line
    assert text in " ".join(lines[0].split())
    assert "Traceback" not in result.output
    assert not (tmp_path / "r" / "config.json").exists()


def test_scheduler_local_means_a_local_cluster_everywhere(monkeypatch):
    from mmhe import parallel
    from mmhe.cli._options import scheduler

    assert scheduler("local") == "local" and scheduler(None) is None
    assert scheduler("auto") is None
    assert parallel.choose_scheduler("local", 1) is None  # None = a new local cluster
    monkeypatch.setattr(parallel, "usable_cores", lambda: 1)
    assert parallel.choose_scheduler(None, 10) == "sync"  # 1 core: in this process
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    assert parallel.choose_scheduler(None, 10) is None  # 2 cores: a local cluster
    monkeypatch.setattr(parallel, "usable_cores", lambda: 8)
    assert parallel.choose_scheduler("auto", 10) is None
    assert parallel.choose_scheduler(None, 1) == "sync"  # one task: no cluster
    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    assert parallel.choose_scheduler(None, 40) is None  # training folds
    assert parallel.choose_scheduler(None, 3) == "sync"  # < 2 per worker
    assert parallel.choose_scheduler("tcp://h:8786", 1) == "tcp://h:8786"
    assert scheduler("sync") == "sync" and scheduler("tcp://10.0.0.1:8786") == "tcp://10.0.0.1:8786"
