"""`mmhe record`: trigger-gated capture from the simulated camera, drops, signals, sources."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from mmhe.errors import ConfigError, DeviceError, InputFileError
from mmhe.io import bayer
from mmhe.io.camera import FrameSequence
from mmhe.io.frame_names import parse_frame_name
from mmhe.record import (
    RecordConfig,
    ScriptTrigger,
    SerialTrigger,
    SimulatedCamera,
    TiffFrameWriter,
    open_camera,
    open_trigger,
    record,
)
from mmhe.record.cameras import stamped_number

FPS = 100.0
WIDTH, HEIGHT = 160, 128
# (code, on_s, off_s): three clips with pauses, as the trigger line of a session
PLAN = [(101, 0.10, 0.70), (102, 0.90, 1.30), (103, 1.50, 1.80)]
SRC = Path(__file__).resolve().parents[1] / "src"


def write_script(path: Path, plan=PLAN, end: int = -1) -> Path:
    rows = []
    for code, on, off in plan:
        rows += [(on, code), (off, 0)]
    rows[-1] = (rows[-1][0], end)
    pd.DataFrame(rows, columns=["time_s", "value"]).to_csv(path, index=False)
    return path


def tif_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".tif")


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> dict:
    """A 1.8 s scripted recording: 3 marker segments at 100 fps, 160 x 128 raw Bayer."""
    root = tmp_path_factory.mktemp("record")
    script = write_script(root / "trigger.csv")
    # a deep camera buffer: on a loaded test machine the capture thread may stall for
    # longer than a real camera's buffer lasts; the recorder's logic is what is tested
    camera = SimulatedCamera(WIDTH, HEIGHT, FPS, pool_size=8, seed=3, buffers=1000)
    log = record(root / "Camera", camera, ScriptTrigger(script), RecordConfig(lsl=True))
    return {"root": root, "folder": root / "Camera", "log": log}


def test_frames_per_code_follow_the_trigger_and_none_is_dropped(recording):
    log = recording["log"]
    frames = log["frames"]
    assert log["stopped_by"] == "end of trigger script"
    assert frames["dropped"] == 0 and frames["camera_lost"] == 0 and log["errors"] == []
    assert frames["written"] == frames["captured"] == len(tif_names(recording["folder"]))
    by_code = {row["code"]: row for row in log["codes"]}
    assert sorted(by_code) == [101, 102, 103]
    for code, on, off in PLAN:  # the script is read at each frame's capture time
        assert abs(by_code[code]["captured"] - FPS * (off - on)) <= 1, code
        assert by_code[code]["written"] == by_code[code]["captured"]
        assert by_code[code]["segments"] == 1
    assert [s["code"] for s in log["segments"]] == [101, 102, 103]
    assert log["lsl"]["frames_sent"] == frames["captured"] and log["lsl"]["markers_sent"] == 6
    saved = json.loads(Path(log["log"]).read_text())
    assert saved["status"] == "complete" and saved["frames"] == frames


def test_names_parse_and_pair_each_image_with_its_trigger_value(recording):
    names = tif_names(recording["folder"])
    parsed = [parse_frame_name(name) for name in names]
    order = np.argsort([p.counter for p in parsed])
    parsed = [parsed[i] for i in order]
    names = [names[i] for i in order]
    counters = np.array([p.counter for p in parsed])
    np.testing.assert_array_equal(counters, np.arange(len(parsed)))  # every frame, in order
    times = np.array([p.seconds_of_day for p in parsed])
    markers = np.array([p.marker for p in parsed])
    numbers = np.array([stamped_number(tifffile.imread(recording["folder"] / n)) for n in names])
    for code in (101, 102, 103):
        inside = markers == code
        gaps = np.diff(times[inside])
        assert np.all(np.abs(gaps - 1 / FPS) <= 0.0011)  # 10 ms apart, to the millisecond
        step = np.diff(numbers[inside])
        np.testing.assert_array_equal(step, 1)  # consecutive camera frames, names in order
    # between segments the camera kept running: the pause shows in its frame numbers
    pause = np.diff(numbers)[np.diff(markers) != 0]
    assert np.all(np.abs(pause - FPS * 0.2) <= 2)


def test_frame_sequence_reads_the_recording_and_demosaics_raw_frames(recording):
    frames = FrameSequence(recording["folder"], fps=FPS)
    runs = frames.markers()
    assert runs["code"].tolist() == [101, 102, 103]
    by_code = {row["code"]: row["captured"] for row in recording["log"]["codes"]}
    assert runs["n_frames"].tolist() == [by_code[c] for c in (101, 102, 103)]
    gaps = frames.dropped_frames()
    assert len(gaps) == 2 and gaps["marker_change"].all()  # only the pauses between clips
    assert abs(frames.fps_estimate - FPS) < 1.0
    with tifffile.TiffFile(frames.path(0)) as tif:
        assert tif.pages.first.photometric == bayer.CFA_PHOTOMETRIC
    # the same camera delivering RGB renders the same pool: RGB = demosaic(mosaic(RGB))
    rgb_pool = SimulatedCamera(WIDTH, HEIGHT, FPS, pixel_format="rgb", pool_size=8, seed=3)._pool
    for i in (0, len(frames) // 2, len(frames) - 1):
        number = stamped_number(tifffile.imread(frames.path(i)))
        image = frames.read(i)
        assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
        source = rgb_pool[number % 8]
        expected = bayer.demosaic(bayer.mosaic(source, "RGGB"), "RGGB")
        np.testing.assert_array_equal(image[4:], expected[4:])  # below the stamped pixels
        assert np.abs(image[4:].astype(int) - source[4:]).mean() < 6


def test_bayer_mosaic_round_trip_keeps_flat_colours():
    for pattern in bayer.BAYER_PATTERNS:
        rgb = np.zeros((8, 10, 3), np.uint8)
        rgb[:] = (200, 100, 30)
        raw = bayer.mosaic(rgb, pattern)
        assert raw[0, 0] == {"R": 200, "G": 100, "B": 30}[pattern[0]]
        np.testing.assert_array_equal(bayer.demosaic(raw, pattern)[2:-2, 2:-2], rgb[2:-2, 2:-2])
        assert bayer.pattern_from_tags((2, 2), bayer.cfa_tags(pattern)[1][3]) == pattern


class SlowWriter(TiffFrameWriter):
    """A writer slower than the camera (30 ms per frame at 100 fps)."""

    def write(self, image, name):
        time.sleep(0.03)
        return super().write(image, name)


def test_slow_writer_fills_the_queue_and_every_drop_is_counted(tmp_path):
    script = write_script(tmp_path / "t.csv", [(101, 0.05, 0.85)])
    camera = SimulatedCamera(64, 64, FPS, pool_size=2, buffers=1000)
    folder = tmp_path / "Camera"
    capacity = 4
    config = RecordConfig(writers=1, buffer_mb=capacity * 64 * 64 / 1e6)
    log = record(folder, camera, ScriptTrigger(script), config,
                 writer=SlowWriter(folder, "RGGB"))  # fmt: skip
    frames = log["frames"]
    assert log["queue"]["capacity_frames"] == capacity
    assert log["queue"]["high_water_frames"] == capacity
    assert frames["dropped"] == frames["dropped_queue_full"] > 20
    assert frames["written"] + frames["dropped"] == frames["captured"]
    assert frames["camera_lost"] == 0
    on_disk = {parse_frame_name(n).counter for n in tif_names(folder)}
    dropped = {row["counter"] for row in log["dropped_frames"]}
    assert len(on_disk) == frames["written"] and len(dropped) == frames["dropped"]
    assert on_disk.isdisjoint(dropped)
    assert on_disk | dropped == set(range(frames["captured"]))  # each frame exactly once
    assert log["codes"][0]["dropped"] == frames["dropped"]


class FullDiskWriter(TiffFrameWriter):
    """A disk that fills up after 5 frames."""

    written = 0

    def write(self, image, name):
        if self.written >= 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.written += 1
        return super().write(image, name)


def test_full_disk_stops_capture_cleanly(tmp_path):
    script = write_script(tmp_path / "t.csv", [(101, 0.0, 5.0)])
    folder = tmp_path / "Camera"
    started = time.monotonic()
    log = record(folder, SimulatedCamera(64, 64, FPS, pool_size=2), ScriptTrigger(script),
                 writer=FullDiskWriter(folder, "RGGB"))  # fmt: skip
    assert time.monotonic() - started < 3.0  # stopped long before the script's end
    frames = log["frames"]
    assert log["stopped_by"] == "disk full" and frames["written"] == 5
    assert frames["written"] + frames["dropped"] == frames["captured"]
    assert frames["dropped_write_failed"] == frames["dropped"] >= 1
    assert any("disk full" in e for e in log["errors"])
    assert len(tif_names(folder)) == 5 and not list(folder.glob(".*.part"))


def test_sigterm_flushes_every_captured_frame(tmp_path):
    script = write_script(tmp_path / "t.csv", [(121, 0.0, 60.0)])
    folder = tmp_path / "Camera"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    command = [sys.executable, "-c", "from mmhe.cli import main; main()", "record",
               str(folder), "--trigger", str(script), "--width", "96", "--height", "64",
               "--fps", "100"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not folder.is_dir() or len(tif_names(folder)) < 40):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err.decode()
    log = json.loads(next(folder.glob("record-*.json")).read_text())
    frames = log["frames"]
    assert log["status"] == "complete" and log["stopped_by"] == "SIGTERM"
    assert frames["captured"] >= 40 and frames["dropped"] == 0
    names = tif_names(folder)
    assert len(names) == frames["written"] == frames["captured"]
    counters = {parse_frame_name(n).counter for n in names}  # frames the camera lost
    assert len(counters) == len(names)  # (a loaded machine) advance the counter: skip them
    assert max(counters) == frames["captured"] + frames["camera_lost"] - 1
    assert not list(folder.glob(".*.part"))


def test_trigger_script_reports_every_bad_row(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("time_s,value\n0,101\nx,102\n0.5,300\n0.2,1.5\n")
    with pytest.raises(InputFileError) as info:
        ScriptTrigger(path)
    message = str(info.value)
    assert "4 bad row(s)" in message and "bad.csv" in message
    for fragment in ("row 3: time_s 'x'", "row 4: value 300", "row 5: time_s 0.2 goes back",
                     "row 5: value '1.5'"):  # fmt: skip
        assert fragment in message
    (tmp_path / "cols.csv").write_text("t,v\n0,1\n")
    with pytest.raises(InputFileError, match="missing column"):
        ScriptTrigger(tmp_path / "cols.csv")
    trigger = ScriptTrigger(write_script(tmp_path / "ok.csv"))
    assert [trigger.value_at(t) for t in (0.0, 0.1, 0.69, 0.7, 1.0, 1.79, 1.8)] == [
        0, 101, 101, 0, 102, 103, -1
    ]  # fmt: skip


def test_serial_trigger_reads_the_newest_byte():
    master, slave = os.openpty()
    try:
        trigger = open_trigger(f"serial:{os.ttyname(slave)}@9600")
        assert isinstance(trigger, SerialTrigger) and trigger.read() == 0
        os.write(master, bytes([101, 0, 112]))
        deadline = time.monotonic() + 2
        while trigger.read() != 112 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert trigger.read() == 112
        os.write(master, bytes([0]))
        time.sleep(0.05)
        assert trigger.read() == 0
        trigger.close()
    finally:
        os.close(master)
        os.close(slave)


def test_unavailable_devices_say_what_to_do(tmp_path):
    with pytest.raises(DeviceError, match="pip install xiapipy"):
        open_camera("ximea")
    with pytest.raises(DeviceError, match="pip install pyparallel"):
        open_trigger("parallel:0")
    with pytest.raises(ConfigError, match="unknown camera"):
        open_camera("webcam")
    with pytest.raises(ConfigError, match="unknown trigger"):
        open_trigger("db25")
    with pytest.raises(DeviceError, match="cannot open"):
        open_trigger("serial:/dev/does-not-exist")
    with pytest.raises(DeviceError, match="OpenCV cannot open"):
        open_camera(f"opencv:{tmp_path / 'missing.avi'}")


def test_opencv_source_reads_a_video_as_rgb_frames(tmp_path):
    from mmhe.synth.video import write_avi

    rgb = np.zeros((5, 64, 96, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 2] = np.arange(5)[:, None, None] * 40
    write_avi(tmp_path / "clip.avi", rgb, 25.0)
    camera = open_camera(f"opencv:{tmp_path / 'clip.avi'}")
    assert (camera.width, camera.height, camera.pixel_format) == (96, 64, "rgb")
    buffer = np.empty(camera.frame_shape, np.uint8)
    frames = [camera.grab(buffer if k % 2 else None) for k in range(5)]
    camera.stop()
    assert [f.number for f in frames] == list(range(5))
    assert frames[1].image is buffer
    for k, frame in enumerate(frames[::2]):
        np.testing.assert_allclose(frame.image[..., 0].mean(), 200, atol=2)
        np.testing.assert_allclose(frame.image[..., 2].mean(), 80 * k, atol=2)


def test_ingest_reads_a_recording_and_its_lsl_session_unchanged(recording, tmp_path):
    """A camera folder from `record` + an XDF session (EEG, physiology, stimulus markers
    at the trigger script's times) is one participant of a raw tree: ingest aligns all."""
    import shutil

    from mmhe.store import ingest
    from xdf_writer import Stream, write_xdf

    person = tmp_path / "raw" / "s01"
    shutil.copytree(recording["folder"], person / "Camera")
    rng = np.random.default_rng(1)
    start, eeg_rate, physio_rate, seconds = 500.0, 500.0, 1000.0, 4.0
    onsets = start + 1.0 + np.array([on for _, on, _ in PLAN])  # EEG starts 1 s before
    n, m = int(seconds * eeg_rate), int(seconds * physio_rate)
    streams = [
        Stream("EEG", "EEG", "float32", eeg_rate, start + np.arange(n) / eeg_rate,
               rng.normal(0, 10, (n, 3)), [(start, 0.0), (start + 2, 0.0), (start + 4, 0.0)],
               ["FZ", "CZ", "PZ"], ["microvolts"] * 3),
        Stream("BIOPAC", "Physio", "float32", physio_rate, start + 0.25 + np.arange(m) / 1e3,
               rng.normal(0, 1, (m, 2)), [], ["PPG", "EDA"]),
        Stream("Stimuli", "Markers", "string", 0.0, onsets, [str(c) for c, _, _ in PLAN]),
    ]  # fmt: skip
    write_xdf(person / "session.xdf", streams)
    version = ingest(tmp_path / "raw", tmp_path / "store", scheduler="sync")
    folder = version / "participants" / "sub-001"
    trials = pd.read_parquet(folder / "trials.parquet")
    runs = FrameSequence(person / "Camera").markers()
    assert trials["code"].tolist() == [101, 102, 103]
    assert trials["frame_start"].tolist() == runs["first_index"].tolist()
    assert trials["frame_stop"].tolist() == (runs["last_index"] + 1).tolist()
    np.testing.assert_array_equal(trials["eeg_start"], np.rint((onsets - start) * eeg_rate))
    np.testing.assert_array_equal(
        trials["physio_start"], np.rint((onsets - start - 0.25) * physio_rate)
    )
    alignment = pd.read_parquet(folder / "alignment.parquet").set_index("device")
    assert alignment.loc["camera", "n_matched"] == 3
    assert alignment.loc["camera", "residual_ms_max"] <= 1000 / FPS  # polling: < 1 frame
    assert alignment.loc["physio", "residual_ms_max"] < 0.01  # one LSL clock
    assert alignment.loc["physio", "offset_s"] == pytest.approx(0.25, abs=1e-6)
    lsl = alignment.loc[["lsl:EEG", "lsl:BIOPAC", "lsl:Stimuli"]]
    assert lsl.loc["lsl:BIOPAC", "offset_s"] == pytest.approx(0.25, abs=1e-6)
    assert (lsl["residual_ms_max"] < 1e-3).all()  # no jitter planted
