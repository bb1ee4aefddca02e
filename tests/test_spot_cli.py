"""Long synthetic trials -> whole-trial videos in the store -> `mmhe spot` end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile
from typer.testing import CliRunner

from mmhe.annotations import read_coding_file
from mmhe.annotations.pseudonyms import PseudonymMap
from mmhe.cli import app
from mmhe.io.camera import FrameSequence
from mmhe.store import IngestConfig, MMHEStore, ingest
from mmhe.store.videos import stored_videos
from mmhe.synth import generate


@pytest.fixture(scope="module")
def long_tree(tmp_path_factory):
    """3 participants x (2 s rest + 2 clips of ~6 s), every frame written, distractors on;
    ingested with 96-px whole-trial videos."""
    root = tmp_path_factory.mktemp("spot")
    raw = root / "raw"
    generate(raw, preset="spotting", seed=0, subjects=3, clips=2, clip_s=6.0, rest_s=2.0,
             width=160, height=120, workers=1)  # fmt: skip
    version = ingest(raw, root / "store", scheduler="sync", config=IngestConfig(video_size=96))
    return raw, version


def test_synth_writes_every_frame_and_the_distractors(long_tree):
    raw, _ = long_tree
    truth = json.loads((raw / "ground_truth.json").read_text())
    assert truth["config"]["long_videos"] is True
    person = truth["participants"][0]
    frames = FrameSequence(raw / person["folder"] / "Camera")
    for trial in person["trials"]:  # every grabbed frame of every run is on disk
        run = frames.markers()
        row = run[run["code"] == trial["marker"]].iloc[0]
        assert row["n_frames"] == trial["camera"]["frames_grabbed"]
    kinds = {d["kind"] for p in truth["participants"] for d in p["long_video"]["distractors"]}
    assert kinds == {"blink", "head_move"}
    for d in person["long_video"]["distractors"]:
        marker = str(d["marker"])
        for event in ("onset", "apex", "offset"):
            assert (raw / person["folder"] / "Camera" / marker / d[event]["frame"]).is_file()
    assert person["long_video"]["lighting"]["amplitude"] == 0.05


def test_stored_video_is_the_raw_frames_cropped(long_tree):
    raw, version = long_tree
    store = MMHEStore(version)
    videos = stored_videos(store)
    trials = store.trials()
    assert len(videos) == len(trials) and (videos["size"] == 96).all()
    trial = trials.iloc[1]
    video = store.video(trial["subject_id"], int(trial["trial_index"]))
    assert len(video) == int(trial["frame_stop"]) - int(trial["frame_start"])
    assert video.frames.metadata.dimension_names == ("frame", "y", "x")
    assert video.valid.all() and np.all(np.diff(video.time_s) > 0)
    # an independent crop of one raw frame: square of side 1.3 x the box, INTER_AREA, grey
    mapping = PseudonymMap.load(version.parent.with_name(version.parent.name + ".pseudonyms.csv"))
    name = next(k for k, v in mapping.assign([]).items() if v == trial["subject_id"])
    folder = next(p for p in raw.iterdir() if p.is_dir() and p.name.startswith(name))
    sequence = FrameSequence(folder / "Camera")
    i = 40
    rgb = tifffile.imread(sequence.path(int(trial["frame_start"]) + i))
    x, y, w, h = video.box
    side = round(max(w, h) * 1.3)
    x0, y0 = round(x + w / 2 - side / 2), round(y + h / 2 - side / 2)
    patch = rgb[max(y0, 0) : y0 + side, max(x0, 0) : x0 + side]
    assert patch.shape[:2] == (side, side)  # the synthetic face is inside the frame
    reference = cv2.cvtColor(
        cv2.resize(patch, (96, 96), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY
    )
    assert np.abs(video.frames[i].astype(int) - reference.astype(int)).max() <= 1
    np.testing.assert_allclose(
        video.time_s, sequence.times[int(trial["frame_start"]) : int(trial["frame_stop"])]
    )


def test_mmhe_spot_end_to_end(long_tree, tmp_path):
    _raw, version = long_tree
    out = tmp_path / "run"
    sheet = tmp_path / "found.xlsx"
    runner = CliRunner()
    args = [
        "spot",
        str(version),
        "--out",
        str(out),
        "--scheduler",
        "sync",
        "--export-coding",
        str(sheet),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in (
        "intervals.csv",
        "results.csv",
        "control.csv",
        "audit.json",
        "spotting.html",
        "summary.json",
    ):
        assert (out / name).is_file(), name
    results = pd.read_csv(out / "results.csv")
    truth = pd.read_csv(out / "truth.csv")
    assert results["kind"].tolist() == ["ME", "MaE", "overall"]
    for row in results.itertuples():
        n_true = len(truth) if row.kind == "overall" else int((truth["kind"] == row.kind).sum())
        assert row.tp + row.fn == n_true
    intervals = pd.read_csv(out / "intervals.csv")
    assert {"participant", "trial", "onset", "offset", "kind", "score"} <= set(intervals.columns)
    assert row.tp + row.fp == len(intervals)
    audit = json.loads((out / "audit.json").read_text())
    assert audit["passed"] and len(audit["folds"]) == 3
    assert all(f["test_subject"] not in f["read_while_training"] for f in audit["folds"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frame_scores"]["computed_participants"] == 3
    assert summary["truth"]["ME"] + summary["truth"]["MaE"] == len(truth)
    assert "Score curves" in (out / "spotting.html").read_text()
    # the coding sheet reads back through the coding-file reader, one row per interval
    coding = read_coding_file(sheet)
    stimulus = intervals[intervals["marker"] != 100]
    assert coding.rows_read == len(stimulus) and len(coding.table) == len(stimulus)
    assert not [i for i in coding.issues if i.severity == "error"]
    # a second run reuses the cached frame scores
    again = runner.invoke(
        app, ["spot", str(version), "--out", str(tmp_path / "again"), "--scheduler", "sync"]
    )
    assert again.exit_code == 0
    assert (
        json.loads((tmp_path / "again" / "summary.json").read_text())["frame_scores"][
            "computed_participants"
        ]
        == 0
    )
    pd.testing.assert_frame_equal(intervals, pd.read_csv(tmp_path / "again" / "intervals.csv"))


def test_mmhe_spot_on_a_store_without_videos(store_tiny, tmp_path):
    command = ["spot", str(store_tiny), "--out", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-c", "from mmhe.cli import main; main()", *command],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr  # a data error (exit 1)
    assert "no whole-trial videos" in done.stderr and "--video-size" in done.stderr
