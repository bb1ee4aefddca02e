"""Camera frames (.tif named by time, counter and marker) and .avi clips."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pytest
import tifffile

from mmhe.errors import InputFileError
from mmhe.io.camera import (
    FrameName,
    FrameNameError,
    FrameSequence,
    clip_fps,
    parse_frame_name,
    read_clip,
)

FPS = 150.0
DAY = "2023-07-21"


def frame_file_name(time_ms: int, counter: int, marker: int, date: str = DAY) -> str:
    """Camera file name for a time of day given in integer milliseconds."""
    seconds, ms = divmod(time_ms, 1000)
    hour, rest = divmod(seconds, 3600)
    minute, second = divmod(rest, 60)
    return f"{date}-{hour:02d}-{minute:02d}-{second:02d}-{ms:03d}-{counter % 1000:03d}-{marker}.tif"


def frame_pixels(k: int, rgb: bool) -> np.ndarray:
    """A 12 x 16 frame whose values identify frame k."""
    base = (np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) + 97 * k) % 4096
    if rgb:
        return np.stack([base % 256, (base + 1) % 256, (base + 2) % 256], axis=-1).astype(np.uint8)
    return base


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two clip folders: marker 112 (grey, 20 frames, counter 990 -> 009 wrapping, frame 7
    dropped) and marker 113 (RGB, 10 frames, 5 s later, two marker-0 frames before it)."""
    root = tmp_path_factory.mktemp("Camera")
    start_ms = (16 * 3600 + 45 * 60 + 38) * 1000 + 257
    written = []  # (time_ms, counter, marker, pixels) in time order

    def write(folder: Path, k: int, offset_ms: int, counter: int, marker: int, rgb: bool) -> None:
        time_ms = start_ms + offset_ms + round(k * 1000 / FPS)
        pixels = frame_pixels(len(written), rgb)
        folder.mkdir(exist_ok=True)
        tifffile.imwrite(folder / frame_file_name(time_ms, counter, marker), pixels)
        written.append((time_ms, counter % 1000, marker, pixels))

    for k in range(20):
        if k != 7:
            write(root / "112", k, 0, 990 + k, 112, rgb=False)
    for k in range(2):
        write(root / "0", k, 4800, 10 + k, 0, rgb=True)
    for k in range(10):
        write(root / "113", k, 5000, 12 + k, 113, rgb=True)
    return {"root": root, "written": written, "start_ms": start_ms}


def test_index_is_sorted_and_holds_the_name_fields(camera: dict) -> None:
    frames = FrameSequence(camera["root"])
    written = camera["written"]
    assert len(frames) == len(written) == 31
    assert list(frames.index.columns) == ["path", "time_s", "date", "counter", "marker"]
    np.testing.assert_allclose(frames.index["time_s"], [w[0] / 1000 for w in written], atol=1e-9)
    assert frames.index["counter"].tolist() == [w[1] for w in written]
    assert frames.index["marker"].tolist() == [w[2] for w in written]
    assert (frames.index["date"] == np.datetime64(DAY)).all()
    assert Path(frames.index["path"].iloc[0]).name == frame_file_name(written[0][0], 990, 112)
    assert np.all(np.diff(frames.times) > 0)


def test_dropped_frames_by_counter_and_time_ignore_the_counter_wrap(camera: dict) -> None:
    gaps = FrameSequence(camera["root"], fps=FPS).dropped_frames()
    # frame 7 of marker 112 is missing: the gap follows row 6; the wrap 999 -> 000 is no gap
    lost = gaps[~gaps["marker_change"]]
    assert lost["after_index"].tolist() == [6]
    assert lost["missing_by_counter"].tolist() == [1]
    assert lost["missing_by_time"].tolist() == [1]
    assert lost["gap_s"].iloc[0] == pytest.approx(2 / FPS, abs=1e-3)
    # the pause before the marker-0 frames is a marker change, not a loss of counters
    pause = gaps[gaps["marker_change"]]
    assert pause["after_index"].tolist() == [18, 20]
    assert pause["missing_by_counter"].tolist() == [0, 0]
    assert pause["missing_by_time"].tolist() == [round(4.8 * FPS) - 20, round(0.2 * FPS) - 2]


def test_fps_estimate_survives_millisecond_rounding(camera: dict) -> None:
    assert FrameSequence(camera["root"]).fps_estimate == pytest.approx(FPS, rel=0.01)


def test_markers_are_runs_of_nonzero_trigger_values(camera: dict) -> None:
    frames = FrameSequence(camera["root"])
    runs = frames.markers()
    start = camera["start_ms"] / 1000
    assert runs["code"].tolist() == [112, 113]
    assert runs["first_index"].tolist() == [0, 21]
    assert runs["last_index"].tolist() == [18, 30]
    assert runs["n_frames"].tolist() == [19, 10]
    np.testing.assert_allclose(runs["onset_s"], [start, start + 5.0], atol=1e-9)
    np.testing.assert_allclose(runs["last_s"], frames.times[[18, 30]])


def test_marker_runs_split_on_gaps_only_when_asked(camera: dict) -> None:
    frames = FrameSequence(camera["root"])
    # marker 112 has a 2-frame gap (a dropped frame) after row 6
    assert frames.markers()["code"].tolist() == [112, 113]
    split = frames.markers(max_gap_s=1.5 / FPS)
    assert split["code"].tolist() == [112, 112, 113]
    assert split["first_index"].tolist() == [0, 7, 21]


def test_frame_at_finds_the_nearest_frame(camera: dict) -> None:
    frames = FrameSequence(camera["root"])
    t = frames.times
    assert frame_at_is_int(frames.frame_at(t[5]))
    assert frames.frame_at(t[5]) == 5
    middle = (t[9] + t[10]) / 2
    assert frames.frame_at(middle - 1e-4) == 9 and frames.frame_at(middle + 1e-4) == 10
    query = np.array([[t[0] - 10, t[30] + 10], [t[21] + 1e-3, t[20] - 1e-3]])
    np.testing.assert_array_equal(frames.frame_at(query), [[0, 30], [21, 20]])


def frame_at_is_int(value: object) -> bool:
    return isinstance(value, int)


def test_read_and_read_range_return_the_written_pixels(camera: dict) -> None:
    frames = FrameSequence(camera["root"])
    written = camera["written"]
    np.testing.assert_array_equal(frames.read(3), written[3][3])
    assert frames.read(3).dtype == np.uint16 and frames.read(3).shape == (12, 16)
    rgb = frames.read(-1)
    assert rgb.shape == (12, 16, 3)
    np.testing.assert_array_equal(rgb, written[-1][3])
    stack = frames.read_range(21, 31)
    assert stack.shape == (10, 12, 16, 3)
    np.testing.assert_array_equal(stack, np.stack([w[3] for w in written[21:31]]))
    with pytest.raises(ValueError, match="empty frame range"):
        frames.read_range(5, 5)


def test_read_range_refuses_frames_of_different_shape(camera: dict) -> None:
    frames = FrameSequence(camera["root"])
    with pytest.raises(InputFileError, match="the first of the range"):
        frames.read_range(17, 21)  # grey frames then RGB frames


def test_unreadable_frames_name_the_file(tmp_path: Path) -> None:
    names = [frame_file_name(40_000_000 + 7 * k, k, 101) for k in range(3)]
    (tmp_path / names[0]).write_bytes(b"II*\x00garbage, not a tiff")
    (tmp_path / names[1]).write_bytes(b"not a tiff at all")
    tifffile.imwrite(tmp_path / names[2], frame_pixels(0, rgb=False))
    truncated = (tmp_path / names[2]).read_bytes()[:200]
    (tmp_path / names[2]).write_bytes(truncated)
    frames = FrameSequence(tmp_path)
    for k, name in enumerate(names):
        with pytest.raises(InputFileError, match=re.escape(name)):
            frames.read(k)


def test_frames_after_midnight_keep_time_monotonic(tmp_path: Path) -> None:
    names = [
        frame_file_name(86_399_990, 998, 120, date="2023-07-21"),
        frame_file_name(86_399_997, 999, 120, date="2023-07-21"),
        frame_file_name(3, 0, 120, date="2023-07-22"),
        frame_file_name(10, 1, 120, date="2023-07-22"),
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    frames = FrameSequence(tmp_path)
    np.testing.assert_allclose(frames.times, [86399.990, 86399.997, 86400.003, 86400.010])
    assert [Path(p).name for p in frames.index["path"]] == names
    assert frames.dropped_frames().empty
    assert len(frames.markers()) == 1


def test_names_that_do_not_parse_are_all_counted(tmp_path: Path) -> None:
    (tmp_path / frame_file_name(40_000_000, 5, 101)).write_bytes(b"")
    bad = [
        "snapshot.tif",
        "2023-07-21-16-45-38-257-410-1112.tif",
        "2023-02-30-16-45-38-257-410-112.tif",
    ]
    for name in bad:
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(InputFileError) as caught:
        FrameSequence(tmp_path)
    message = str(caught.value)
    assert str(tmp_path) in message and "3 of 4 frame file names do not parse" in message
    assert all(name in message for name in bad)
    assert "does not fit 8 bits" in message and "invalid date" in message
    assert len(caught.value.bad_files) == 3


def test_irregular_but_valid_names_go_through_the_parser(tmp_path: Path) -> None:
    (tmp_path / "2023-7-21-16-45-38-257-5-112.TIFF").write_bytes(b"")
    frames = FrameSequence(tmp_path)
    row = frames.index.iloc[0]
    assert (row["counter"], row["marker"]) == (5, 112)
    assert row["time_s"] == pytest.approx(16 * 3600 + 45 * 60 + 38.257)
    assert row["date"] == np.datetime64("2023-07-21")


def test_empty_or_missing_folder_raises(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no frames here")
    with pytest.raises(InputFileError, match=r"no \.tif/\.tiff frames"):
        FrameSequence(tmp_path)
    with pytest.raises(InputFileError, match="camera folder not found"):
        FrameSequence(tmp_path / "absent")


def test_non_recursive_index_ignores_subfolders(camera: dict) -> None:
    with pytest.raises(InputFileError, match=r"no \.tif"):
        FrameSequence(camera["root"], recursive=False)
    assert len(FrameSequence(camera["root"] / "113", recursive=False)) == 10


def test_frame_names_are_re_exported() -> None:
    name = parse_frame_name("11-05-52-025")
    assert isinstance(name, FrameName) and name.counter is None
    assert name.seconds_of_day == pytest.approx(11 * 3600 + 5 * 60 + 52.025)
    with pytest.raises(FrameNameError):
        parse_frame_name("11-05")


def write_ffv1_clip(path: Path, frames: np.ndarray, fps: int) -> None:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "bgr0"
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_read_clip_returns_the_encoded_rgb_frames(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 256, size=(9, 24, 32, 3), dtype=np.uint8)
    path = tmp_path / "angry_1_146_s01_20230718-1.avi"
    write_ffv1_clip(path, frames, fps=150)
    clip = read_clip(path)
    assert clip.dtype == np.uint8 and clip.shape == (9, 24, 32, 3)
    np.testing.assert_array_equal(clip, frames)  # ffv1 is lossless
    assert clip_fps(path) == pytest.approx(150.0)


def test_corrupt_or_missing_clip_raises(tmp_path: Path) -> None:
    corrupt = tmp_path / "broken.avi"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00AVI garbage" * 10)
    with pytest.raises(InputFileError, match=r"broken\.avi"):
        read_clip(corrupt)
    with pytest.raises(InputFileError, match="not found"):
        read_clip(tmp_path / "absent.avi")
    with pytest.raises(InputFileError, match=r"broken\.avi"):
        clip_fps(corrupt)
