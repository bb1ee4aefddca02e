"""Benchmark: spotting speed in video frames per second against real time (150 fps).

Measured side by side on the same stored trial videos (128 x 128 grey face crops, the
spotting resolution of `mmhe ingest --video-size 128`):

- limit: reading every frame from the store (Zarr, Zstandard), nothing else: no spotter
  that reads the store can be faster;
- baseline: the published MEGC-style optical-flow spotter done plainly: dense optical
  flow (OpenCV DIS, MEDIUM preset as `mmhe.features.flow` uses it) of every frame
  against the frame 0.2 s before, region means (MDMD's computation per frame), one
  process;
- ours, 1 process: `frame_scores` (block averaging to 30 Hz, Lucas-Kanade on the
  regions, six lags), as `mmhe spot --scheduler sync` runs it;
- ours, 2 workers: `compute_frame_scores` through a local Dask cluster of two
  single-threaded processes, as `mmhe spot` runs it by default (cluster start included).

Ratios are reported against real time (150 frames per second of video) and against the
baseline; all numbers come from one run, so load from other processes shifts them alike.

Run: ``.venv/bin/python benchmarks/bench_spotting.py --store STORE`` (a store ingested
with ``--video-size 128``); without ``--store`` a small synthetic one is made first
(``mmhe synth --preset spotting``, 2 participants, then ingest).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from mmhe.evaluation.spot_run import compute_frame_scores, video_id
from mmhe.features.spotting import FlowSpotConfig, facial_regions, frame_scores
from mmhe.store import IngestConfig, MMHEStore, ingest
from mmhe.store.videos import stored_videos

REAL_TIME_FPS = 150.0


def _store(path: str | None, work: Path) -> MMHEStore:
    if path:
        return MMHEStore(path)
    from mmhe.synth import generate

    generate(work / "raw", preset="spotting", subjects=2, clips=2, workers=1)
    return MMHEStore(ingest(work / "raw", work / "store", scheduler="sync",
                            config=IngestConfig(video_size=128)))  # fmt: skip


def read_only(store: MMHEStore, videos) -> float:
    started = time.perf_counter()
    for row in videos.itertuples():
        video = store.video(row.subject_id, row.trial_index)
        for chunk in video.chunks(1500):
            chunk.sum()
    return time.perf_counter() - started


def baseline(store: MMHEStore, videos) -> float:
    """Dense DIS flow of every frame against the frame 0.2 s before; region means."""
    cv2.setNumThreads(1)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    started = time.perf_counter()
    for row in videos.itertuples():
        video = store.video(row.subject_id, row.trial_index)
        frames = np.asarray(video.frames[...])
        lag = round(0.2 * video.fps)
        boxes = list(facial_regions(frames.shape[1]).values())
        for t in range(lag, len(frames)):
            flow = dis.calc(frames[t - lag], frames[t], None)
            [flow[y0:y1, x0:x1].mean(axis=(0, 1)) for x0, y0, x1, y1 in boxes]
    return time.perf_counter() - started


def ours_one_process(store: MMHEStore, videos) -> float:
    cv2.setNumThreads(1)
    started = time.perf_counter()
    for row in videos.itertuples():
        video = store.video(row.subject_id, row.trial_index)
        frame_scores(video.frames, video.fps)
    return time.perf_counter() - started


def ours_two_workers(store: MMHEStore, videos) -> float:
    config = FlowSpotConfig()
    folder = store.path / "features"
    before = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    # a fresh cache: a unique block rate gives a new cache key with the same results
    fresh = config.model_copy(update={"block_hz": config.block_hz * (1 + 1e-9)})
    started = time.perf_counter()
    target, _ = compute_frame_scores(store, videos, fresh, scheduler=None, n_workers=2)
    seconds = time.perf_counter() - started
    if target.name not in before:
        shutil.rmtree(target, ignore_errors=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="a store ingested with --video-size 128")
    parser.add_argument("--baseline-videos", type=int, default=4,
                        help="videos the (slow) baseline runs on")  # fmt: skip
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-spot-"))
    try:
        store = _store(args.store, work)
        videos = stored_videos(store)
        videos.insert(
            0,
            "video",
            [video_id(s, t) for s, t in zip(videos.subject_id, videos.trial_index, strict=True)],
        )
        n_frames = int(videos["n_frames"].sum())
        some = videos.iloc[: args.baseline_videos]
        n_some = int(some["n_frames"].sum())
        size = int(videos["size"].iloc[0])
        print(f"{len(videos)} videos, {n_frames} frames ({n_frames / REAL_TIME_FPS:.0f} s of video)"
              f" at {size} x {size}, {videos['subject_id'].nunique()} participants")  # fmt: skip
        rows = [
            ("limit: read the frames", read_only(store, videos), n_frames),
            ("baseline: dense DIS per frame", baseline(store, some), n_some),
            ("ours, 1 process", ours_one_process(store, videos), n_frames),
            ("ours, 2 workers (Dask)", ours_two_workers(store, videos), n_frames),
        ]
        base_fps = rows[1][2] / rows[1][1]
        print(f"{'':32s} {'frames/s':>10s} {'x real time':>12s} {'x baseline':>11s}")
        for name, seconds, frames in rows:
            fps = frames / seconds
            print(f"{name:32s} {fps:10.0f} {fps / REAL_TIME_FPS:12.1f} {fps / base_fps:11.1f}")
        print("target: >= 10x real time on 2 cores")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
