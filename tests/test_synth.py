"""Tests of `mmhe.synth`: the synthetic raw tree read back with the field's own readers.

The `tiny` preset is generated once per session (`tiny_tree`). Signals are checked with
MNE, scipy.io, tifffile, OpenCV and pandas directly, not through mmhe's readers.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import cv2
import mne
import numpy as np
import pandas as pd
import pytest
import scipy.io
import tifffile
from scipy.signal import find_peaks, welch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from typer.testing import CliRunner

from mmhe.annotations import CODING_COLUMNS, read_coding_file
from mmhe.cli import app
from mmhe.errors import ConfigError
from mmhe.io.frame_names import counter_difference, parse_frame_name
from mmhe.synth import generate, plan, resolve_config
from mmhe.synth.coding import coding_table
from mmhe.synth.participant import simulate_signals

NEUROSCAN_64 = (
    "FP1 FPZ FP2 AF3 AF4 F7 F5 F3 F1 FZ F2 F4 F6 F8 FT7 FC5 FC3 FC1 FCZ FC2 FC4 FC6 FT8 T7 C5 "
    "C3 C1 CZ C2 C4 C6 T8 M1 TP7 CP5 CP3 CP1 CPZ CP2 CP4 CP6 TP8 M2 P7 P5 P3 P1 PZ P2 P4 P6 "
    "P8 PO7 PO5 PO3 POZ PO4 PO6 PO8 CB1 O1 OZ O2 CB2"
).split()
BIOPAC_LABELS = [
    "PPG, X, PPGED-R",
    "RSP, X, RSPEC-R",
    "EMG A, X, EMG2-R",
    "SKT A, X, SKT2-R",
    "EDA, X, PPGED-R",
    "ECG, X, RSPEC-R",
    "EMG B, X, EMG2-R",
    "SKT B, X, SKT2-R",
    *[f"Digital (STP Input {i})" for i in range(8)],
    "ECG rate (.5 - 35 Hz)",
]
SHEET_EMOTIONS = {"happy", "angry", "sad", "tense", "disgust", "fear", "surprise", "contempt"}


def _hashes(root: Path, below: str = "") -> dict[str, str]:
    base = root / below if below else root
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(base.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def tiny_tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "tiny"
    manifest = generate(out, preset="tiny", seed=0)
    truth = json.loads((out / "ground_truth.json").read_text(encoding="utf-8"))
    return out, manifest, truth


# ---------------------------------------------------------------- layout and manifest


def test_tree_layout_and_manifest(tiny_tree):
    out, manifest, truth = tiny_tree
    assert manifest.n_participants == 3 == len(truth["participants"])
    on_disk = {
        p.relative_to(out).as_posix(): p.stat().st_size
        for p in out.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }
    listed = json.loads((out / "synth_manifest.json").read_text())["files"]
    assert listed == manifest.files
    assert on_disk == {**manifest.files, "synth_manifest.json": on_disk["synth_manifest.json"]}
    people = pd.read_csv(out / "participants.tsv", sep="\t")
    assert list(people.columns) == ["subject", "sex", "age"]
    assert set(people["sex"]) <= {"M", "F"} and people["age"].between(18, 30).all()
    for person in truth["participants"]:
        folder = out / person["folder"]
        assert person["folder"].startswith(person["subject"])
        assert (folder / "EEG" / "Acquisition 01.set").is_file()
        assert (folder / "BIOPAC" / "Untitled1 (001).mat").is_file()
        assert (folder / ".done").is_file()
        assert not list(folder.rglob(".synth-tmp-*"))
        clip_markers = {str(t["marker"]) for t in person["trials"]}
        assert clip_markers <= {p.name for p in (folder / "Camera").iterdir()}


# ---------------------------------------------------------------- EEG


def test_eeg_read_with_mne(tiny_tree):
    out, _, truth = tiny_tree
    for person in truth["participants"]:
        raw = mne.io.read_raw_eeglab(
            out / person["folder"] / "EEG" / "Acquisition 01.set", preload=True, verbose="error"
        )
        assert raw.ch_names == [*NEUROSCAN_64, "HEO", "VEO", "EKG", "EMG", "Trigger"]
        assert raw.info["sfreq"] == 1000.0
        assert raw.n_times == person["eeg_samples"]
        planted = sorted(person["trials"] + person["noise_codes"], key=lambda t: t["onset_s"])
        onsets = np.rint(raw.annotations.onset * 1000).astype(int)
        assert list(raw.annotations.description) == [str(t["marker"]) for t in planted]
        assert onsets.tolist() == [t["onset"]["eeg_sample"] for t in planted]
        trigger = raw.get_data(picks="Trigger")[0]
        for trial in planted:
            assert round(trigger[trial["onset"]["eeg_sample"]]) == trial["marker"]
            assert round(trigger[trial["onset"]["eeg_sample"] - 1]) == 0
        eeg = raw.get_data(picks=NEUROSCAN_64[10:32])  # central channels, volts
        rms = np.sqrt(np.mean((eeg - eeg.mean(axis=1, keepdims=True)) ** 2, axis=1))
        assert np.all((rms > 5e-6) & (rms < 60e-6)), rms
        veo = raw.get_data(picks="VEO")[0]
        assert np.ptp(veo) > 100e-6  # blinks


def test_written_eeg_equals_simulation(tiny_tree):
    out, _, truth = tiny_tree
    config = resolve_config("tiny")
    session = plan(config, 0)[0]
    _, raw, biopac, _ = simulate_signals(session, config, 0)
    folder = out / truth["participants"][0]["folder"]
    written = mne.io.read_raw_eeglab(folder / "EEG" / "Acquisition 01.set", verbose="error")
    np.testing.assert_allclose(written.get_data(), raw.get_data(), rtol=1e-6, atol=1e-12)
    mat = scipy.io.loadmat(folder / "BIOPAC" / "Untitled1 (001).mat")
    np.testing.assert_array_equal(mat["data"], biopac.data)


@pytest.mark.parametrize("fmt", ["edf", "bdf", "vhdr"])
def test_eeg_other_formats_round_trip(tmp_path, fmt):
    from mmhe.synth.eeg import write_eeg

    config = resolve_config("tiny", clips=2, expressions_per_clip=0)
    session = plan(config, 5)[0]
    _, raw, _, _ = simulate_signals(session, config, 5)
    paths = write_eeg(raw, tmp_path, fmt)
    back = mne.io.read_raw(paths[-1], preload=True, verbose="error")
    assert back.ch_names == raw.ch_names and back.n_times == raw.n_times
    codes = sorted({int(d.rsplit("S", 1)[-1]) for d in back.annotations.description})
    assert codes == sorted({b.marker for b in session.blocks + session.noise})
    np.testing.assert_array_equal(
        np.rint(back.get_data(picks="Trigger")[0]), raw.get_data(picks="Trigger")[0]
    )
    tolerance = 2e-8 if fmt == "edf" else 1e-9  # EDF stores 16 bits
    np.testing.assert_allclose(back.get_data(picks="eeg")[:64], raw.get_data()[:64], atol=tolerance)


# ---------------------------------------------------------------- BIOPAC


def test_biopac_read_with_scipy(tiny_tree):
    out, _, truth = tiny_tree
    for person in truth["participants"]:
        mat = scipy.io.loadmat(out / person["folder"] / "BIOPAC" / "Untitled1 (001).mat")
        labels = [label.strip() for label in mat["labels"]]
        assert labels[:17] == BIOPAC_LABELS  # some files add the EDA derivative channel
        assert labels[17:] in ([], ["EDA filtered, differentiated"])
        assert mat["data"].shape == (person["biopac_samples"], len(labels))
        assert mat["isi"].item() == 1.0 and mat["isi_units"].item() == "ms"
        assert mat["start_sample"].item() == 0
        digital = mat["data"][:, 8:16]
        assert set(np.unique(digital)) <= {0.0, 5.0}
        code = (digital > 2.5).astype(int) @ (1 << np.arange(8))
        for trial in person["trials"] + person["noise_codes"]:
            start = trial["onset"]["biopac_sample"]
            assert code[start + 3] == trial["marker"]  # bits rise 1-3 samples late
            assert code[start - 1] == 0
        heart_rate = mat["data"][:-200, 16]  # some files end in 0.2 s of garbage
        assert 40 < heart_rate.min() and heart_rate.max() < 140


def _qrs(ecg: np.ndarray, sfreq: float = 1000.0) -> np.ndarray:
    """QRS complexes: peaks of the 8-20 Hz slope (tall T waves and wander stay below)."""
    from scipy.signal import butter, sosfiltfilt

    band = sosfiltfilt(butter(2, [8.0, 20.0], btype="band", fs=sfreq, output="sos"), ecg)
    slope = np.abs(np.gradient(band))
    return find_peaks(slope, height=0.3 * np.percentile(slope, 99), distance=0.3 * sfreq)[0]


def test_biopac_clock_recovered_from_markers_and_heartbeats(tiny_tree):
    """Marker onsets give back the planted BIOPAC drift; the ECG shares the EEG's heart."""
    out, _, truth = tiny_tree
    for person in truth["participants"]:
        trials = person["trials"]
        eeg = np.array([t["onset"]["eeg_sample"] for t in trials]) / 1000.0
        biopac = np.array([t["onset"]["biopac_sample"] for t in trials]) / 1000.0
        slope, intercept = np.polyfit(eeg, biopac, 1)
        clock = person["clocks"]["biopac"]
        assert abs((slope - 1) * 1e6 - clock["drift_ppm"]) < 25
        assert abs(intercept - clock["offset_s"]) < 0.003
        folder = out / person["folder"]
        mat = scipy.io.loadmat(folder / "BIOPAC" / "Untitled1 (001).mat")
        raw = mne.io.read_raw_eeglab(folder / "EEG" / "Acquisition 01.set", verbose="error")
        r_eeg = _qrs(raw.get_data(picks="EKG")[0]) / 1000.0
        r_bio = _qrs(mat["data"][:-200, 5]) / 1000.0  # without a garbage tail
        mapped = (r_bio - clock["offset_s"]) / (1 + clock["drift_ppm"] * 1e-6)
        inside = mapped[(mapped > r_eeg[0] + 1) & (mapped < r_eeg[-1] - 1)]
        gaps = np.abs(inside[:, None] - r_eeg[None]).min(axis=1)
        assert len(inside) > 50 and np.median(gaps) <= 0.002


# ---------------------------------------------------------------- camera


def test_frame_names_parse_and_follow_the_camera_clock(tiny_tree):
    out, _, truth = tiny_tree
    for person in truth["participants"]:
        folder = out / person["folder"]
        date = person["session_date"]
        names = sorted(p.name for p in folder.rglob("*.tif"))
        assert len(names) == len(set(names)) > 0
        for path in folder.rglob("*.tif"):
            frame = parse_frame_name(path.name)
            assert frame.date.isoformat() == date
            assert str(frame.marker) == path.parent.name
        for trial in person["trials"]:
            camera = trial["camera"]
            first = parse_frame_name(camera["first_frame"])
            last = parse_frame_name(camera["last_frame"])
            marker_dir = folder / "Camera" / str(trial["marker"])
            assert (marker_dir / camera["first_frame"]).is_file()
            assert (marker_dir / camera["last_frame"]).is_file()
            grabbed = camera["frames_grabbed"]
            assert counter_difference(first.counter, last.counter) == (grabbed - 1) % 1000
            elapsed = last.seconds_of_day - first.seconds_of_day
            assert abs(elapsed - (grabbed - 1) / 150.0) < 0.0065  # jitter, drift
            clock = person["clocks"]["camera"]
            expected = clock["offset_s"] + trial["onset_s"] * (1 + clock["drift_ppm"] * 1e-6)
            assert -0.004 <= first.seconds_of_day - expected <= 1 / 150 + 0.003
            for counter in camera["dropped_counters"]:
                assert not list(marker_dir.glob(f"*-{counter:03d}-{trial['marker']}.tif"))


def test_expression_clips_and_frames(tiny_tree):
    out, _, truth = tiny_tree
    import av

    expressions = [e for p in truth["participants"] for e in p["expressions"]]
    assert expressions
    for person in truth["participants"]:
        for expression in person["expressions"]:
            marker_dir = out / person["folder"] / "Camera" / str(expression["marker"])
            for event in ("onset", "apex", "offset"):
                assert (marker_dir / expression["true"][event]["frame"]).is_file()
            onset = parse_frame_name(expression["true"]["onset"]["frame"])
            offset = parse_frame_name(expression["true"]["offset"]["frame"])
            with av.open(str(out / expression["clip"])) as clip:
                n_frames = sum(1 for _ in clip.decode(video=0))
            span = counter_difference(onset.counter, offset.counter) + 1
            assert span - 3 <= n_frames <= span  # dropped frames are missing
            duration = expression["true"]["offset"]["t_s"] - expression["true"]["onset"]["t_s"]
            if expression["kind"] == "ME":
                assert duration <= 0.5
            else:
                assert 0.5 < duration <= 4.0


def test_haar_cascade_finds_the_face_of_every_participant(tiny_tree):
    out, _, truth = tiny_tree
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    for person in truth["participants"]:
        frames = [
            out / person["folder"] / "Camera" / str(t["marker"]) / t["camera"]["first_frame"]
            for t in person["trials"]
        ]
        frames += [
            out / person["folder"] / "Camera" / str(e["marker"]) / e["true"]["apex"]["frame"]
            for e in person["expressions"]
        ]
        for path in frames:
            image = tifffile.imread(path)
            assert image.shape == (120, 160, 3) and image.dtype == np.uint8
            faces = cascade.detectMultiScale(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 1.1, 3)
            assert len(faces) >= 1, path


# ---------------------------------------------------------------- coding file


def test_coding_file_columns_and_spelling(tiny_tree):
    out, manifest, truth = tiny_tree
    sheet = pd.read_excel(out / "coding_file.xlsx", dtype=str)
    assert list(sheet.columns) == CODING_COLUMNS
    assert len(sheet) == manifest.n_expressions
    pattern = re.compile(r"^([a-z]+)_(\d+)_(\d{3})_([a-z]+)_(\d{8})\.avi$")
    rows = [e for p in truth["participants"] for e in p["expressions"]]
    for (_, row), expression in zip(sheet.iterrows(), rows, strict=True):
        match = pattern.match(row["Filename"])
        assert match and match[1] == row["Estimated Emotion"] and match[3] == row["Marker"]
        assert row["Estimated Emotion"] in SHEET_EMOTIONS
        assert row["Macro/Micro"] == {"ME": "Micro", "MaE": "Macro"}[expression["kind"]]
        assert re.fullmatch(r"\d{4}年\d{2}月\d{2}日-\d{2}时\d{2}分", row["Date"])
        onset, apex = parse_frame_name(row["OnsetFrame"]), parse_frame_name(row["ApexFrame"])
        assert onset.coding_name() in expression["true"]["onset"]["frame"]
        assert apex.coding_name() in expression["true"]["apex"]["frame"]
        true_onset = parse_frame_name(expression["true"]["onset"]["frame"])
        true_apex = parse_frame_name(expression["true"]["apex"]["frame"])
        assert int(row["dif"]) == counter_difference(true_onset.counter, true_apex.counter) + 1
    coding = read_coding_file(out / "coding_file.xlsx")
    assert len(coding.table) == len(sheet) and not coding.errors


def test_coding_quirks_and_clean_mode():
    config = resolve_config("demo")
    sessions = plan(config, 3)
    quirky = coding_table(sessions, 3, clean=False)
    frames = pd.concat([quirky[c] for c in ("OnsetFrame", "ApexFrame", "OffsetFrame")])
    four_part = frames.str.count("-").eq(3).mean()
    apex_is_offset = (quirky["ApexTime"] == quirky["OffsetTime"]).mean()
    assert 0.2 < four_part < 0.4 and 0.3 < apex_is_offset < 0.6
    assert (
        quirky["ApexFrame"][quirky["ApexTime"] == quirky["OffsetTime"]]
        == quirky["OffsetFrame"][quirky["ApexTime"] == quirky["OffsetTime"]]
    ).all()
    assert quirky["Action Units"].str.contains("，").any()
    assert quirky["Action Units"].str.contains(r",AU").any()
    wrapped = [
        int(apex[-3:]) < int(onset[-3:])
        for onset, apex in zip(quirky["OnsetFrame"], quirky["ApexFrame"], strict=True)
        if onset.count("-") == apex.count("-") == 4
    ]
    assert any(wrapped)  # the counter wraps inside some expressions
    clean_config = resolve_config("demo", clean=True)
    clean = coding_table(plan(clean_config, 3), 3, clean=True)
    assert clean["OnsetFrame"].str.count("-").eq(4).all()
    assert (clean["ApexTime"] < clean["OffsetTime"]).all()
    assert not clean["Action Units"].str.contains("，|,AU").any()


def test_clean_tree_reads_without_issues(tmp_path):
    generate(tmp_path / "clean", preset="tiny", seed=4, subjects=1, clips=3, clean=True)
    coding = read_coding_file(tmp_path / "clean" / "coding_file.xlsx")
    assert len(coding.table) > 0 and coding.issues == []
    assert [p.name for p in (tmp_path / "clean").iterdir() if p.is_dir()] == [
        coding.table["subject"].iloc[0]
    ]


# ---------------------------------------------------------------- determinism, resume


def test_same_seed_same_bytes_and_resume(tiny_tree, tmp_path):
    out, _, truth = tiny_tree
    first = truth["participants"][0]["folder"]
    one = generate(tmp_path / "a", preset="tiny", seed=0, subjects=1)
    again = generate(tmp_path / "b", preset="tiny", seed=0, subjects=1)
    hashes = _hashes(tmp_path / "a")
    assert hashes == _hashes(tmp_path / "b")
    assert one.files == again.files
    alone, among_three = _hashes(tmp_path / "a", first), _hashes(out, first)
    for hashes_ in (alone, among_three):  # the .done record names the run's parameters
        hashes_.pop(f"{first}/.done")
    assert alone == among_three  # a participant does not depend on the others
    # interrupt: remove a frame and the participant marker, leave a temporary file
    frame = next((tmp_path / "a" / first / "Camera").rglob("*.tif"))
    frame.unlink()
    (tmp_path / "a" / first / ".done").unlink()
    (tmp_path / "a" / first / "EEG" / ".synth-tmp-123-x.set").write_bytes(b"half")
    resumed = generate(tmp_path / "a", preset="tiny", seed=0, subjects=1)
    assert resumed.resumed == [] and _hashes(tmp_path / "a") == hashes
    assert generate(tmp_path / "a", preset="tiny", seed=0, subjects=1).resumed == [
        truth["participants"][0]["subject"]
    ]


def test_different_seed_different_data(tiny_tree, tmp_path):
    out, _, truth = tiny_tree
    generate(tmp_path / "other", preset="tiny", seed=1, subjects=1, clips=2)
    other = json.loads((tmp_path / "other" / "ground_truth.json").read_text())["participants"][0]
    mine = truth["participants"][0]
    assert other["subject"] != mine["subject"]
    a = mne.io.read_raw_eeglab(
        out / mine["folder"] / "EEG" / "Acquisition 01.set", verbose="error"
    ).get_data(stop=5000)
    b = mne.io.read_raw_eeglab(
        tmp_path / "other" / other["folder"] / "EEG" / "Acquisition 01.set", verbose="error"
    ).get_data(stop=5000)
    assert np.corrcoef(a[:64].ravel(), b[:64].ravel())[0, 1] < 0.1


# ---------------------------------------------------------------- planted class signal

BANDS = ((1, 4), (4, 8), (8, 13), (13, 30), (30, 47))
CLASSES = ("happiness", "calm", "sadness", "fear")


def _trial_features(strength: float, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Per-trial EEG log band powers and BIOPAC column means (z-scored per participant)."""
    config = resolve_config(
        "tiny",
        subjects=6,
        clips=16,
        clip_s=6.0,
        rest_s=2.0,
        expressions_per_clip=0,
        strength=strength,
    )
    eeg_rows, physio_rows, labels, groups = [], [], [], []
    for session in plan(config, seed):
        _, raw, biopac, _ = simulate_signals(session, config, seed)
        eeg = raw.get_data(picks=NEUROSCAN_64)
        eeg_f, physio_f = [], []
        for block in session.clips:
            if block.category not in CLASSES:
                continue
            i, j = session.clocks["eeg"].sample([block.onset_s, block.offset_s])
            freqs, psd = welch(eeg[:, i:j], fs=1000.0, nperseg=1000)
            eeg_f.append(
                np.log(
                    [psd[:, (freqs >= lo) & (freqs < hi)].mean(axis=1) for lo, hi in BANDS]
                ).ravel()
            )
            i, j = session.clocks["biopac"].sample([block.onset_s, block.offset_s])
            physio_f.append(biopac.data[i:j][:, [0, 1, 2, 3, 4, 5, 6, 7, 16]].mean(axis=0))
            labels.append(block.category)
            groups.append(session.participant.index)
        for rows, features in ((eeg_rows, eeg_f), (physio_rows, physio_f)):
            features = np.array(features)
            rows.extend((features - features.mean(0)) / (features.std(0) + 1e-12))
    return np.array(eeg_rows), np.array(physio_rows), np.array(labels), np.array(groups)


def _loso_balanced_accuracy(features, labels, groups) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    predicted = cross_val_predict(model, features, labels, groups=groups, cv=LeaveOneGroupOut())
    return balanced_accuracy_score(labels, predicted)


@pytest.mark.parametrize("strength", [1.0, 0.0])
def test_planted_signal_learnable_only_with_strength(strength):
    eeg, physio, labels, groups = _trial_features(strength)
    assert len(labels) == 6 * 8 and len(set(labels)) == 4  # chance = 0.25
    for features in (eeg, physio):
        score = _loso_balanced_accuracy(features, labels, groups)
        if strength > 0:
            assert score > 0.7, score
        else:
            assert score < 0.45, score


# ---------------------------------------------------------------- bad input, CLI


@pytest.mark.parametrize(
    "overrides",
    [
        {"subjects": -1},
        {"clips": 0},
        {"clips": 49},
        {"micro_max_s": 0.6},
        {"strength": -1.0},
        {"eeg_format": "cdt"},
        {"no_such_option": 1},
        {"width": 10},
    ],
)
def test_bad_parameters_raise_before_writing(tmp_path, overrides):
    with pytest.raises(ConfigError):
        generate(tmp_path / "out", preset="tiny", **overrides)
    assert not (tmp_path / "out").exists()


def test_bad_preset_seed_and_non_empty_folder(tmp_path):
    with pytest.raises(ConfigError, match="preset"):
        generate(tmp_path / "x", preset="huge")
    with pytest.raises(ConfigError, match="seed"):
        generate(tmp_path / "x", preset="tiny", seed=-3)
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        generate(tmp_path / "x", preset="tiny")
    assert [p.name for p in (tmp_path / "x").iterdir()] == ["notes.txt"]


def test_cli_synth(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(
        app,
        [
            "synth",
            str(out),
            "--preset",
            "tiny",
            "--subjects",
            "1",
            "--clips",
            "1",
            "--seed",
            "2",
            "--eeg-format",
            "edf",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "1 participants" in result.output and "total" in result.output
    assert len(list(out.glob("*/EEG/Acquisition 01.edf"))) == 1
    again = runner.invoke(app, ["synth", str(out), "--preset", "tiny", "--seed", "3"])
    # a ConfigError: one line and exit code 2 (usage), no traceback
    assert again.exit_code == 2 and "error:" in again.output and "Traceback" not in again.output


def test_key_frames_mode_and_overwrite(tmp_path):
    out = tmp_path / "key"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        generate(out, preset="tiny", subjects=1, clips=2, seed=6)
    generate(
        out, preset="tiny", subjects=1, clips=2, seed=6, overwrite=True, expression_frames="key"
    )
    truth = json.loads((out / "ground_truth.json").read_text())["participants"][0]
    camera = out / truth["folder"] / "Camera"
    expected = {
        e["true"][k]["frame"] for e in truth["expressions"] for k in ("onset", "apex", "offset")
    }
    expected |= {t["camera"][k] for t in truth["trials"] for k in ("first_frame", "last_frame")}
    clips = {t["marker"] for t in truth["trials"]}
    written = {p.name for p in camera.rglob("*.tif") if int(p.parent.name) in clips}
    assert truth["expressions"] and written == expected
    generate(out, preset="tiny", subjects=1, clips=1, seed=7, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / truth["folder"]).exists() or truth["folder"] in {
        p["folder"] for p in json.loads((out / "ground_truth.json").read_text())["participants"]
    }
