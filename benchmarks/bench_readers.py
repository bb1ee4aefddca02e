"""Time the raw-file readers of `mmhe.io` against reading the same bytes plainly.

    python benchmarks/bench_readers.py [--minutes 75] [--frames 50000] [--keep DIR]

Writes, in a temporary folder, a recording shaped like the real MMHE files:

- EEG: 69 channels (64 Neuroscan EEG + HEO VEO EKG EMG Trigger) at 1000 Hz as an
  EEGLAB `.set` exported by MNE (header and channel locations), its data in a separate
  float32 `.fdt` (written in chunks, as EEGLAB stores long recordings), ~100 markers;
- BIOPAC: the 17-column AcqKnowledge MATLAB v5 export (`data`, `labels`, `units`, `isi`,
  `isi_units`, `start_sample`) of the same length, markers on the eight digital lines
  with bit skew;
- camera: `--frames` EMPTY files named `YYYY-MM-DD-HH-MM-SS-mmm-CCC-MARKER.tif` (150 fps).

Then times `read_eeg(preload=True)` + `eeg_markers` against `numpy.fromfile(.fdt)`,
`read_biopac` (marker decoding included) against `scipy.io.loadmat`, and
`FrameSequence(folder)` against `os.listdir`, and prints each time, its ratio to the
plain read, and the peak memory the reader allocated (tracemalloc, a separate run)
against the size of the data on disk.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import mne
import numpy as np
import scipy.io

from mmhe.io.biopac import MMHE_EXPORT_COLUMNS, read_biopac
from mmhe.io.eeg import EXTRA_CHANNELS, NEUROSCAN_64, eeg_markers, read_eeg

SFREQ = 1000.0
N_MARKERS = 100
BIOPAC_LABELS = list(MMHE_EXPORT_COLUMNS)
BIOPAC_UNITS = ["Volts", "Volts", "mV", "Deg F", "microsiemens", "mV", "mV", "Deg F"]
BIOPAC_UNITS += ["Volts"] * 8 + ["BPM"]


def marker_plan(n_samples: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """(start, stop, code) of ~100 markers spread over the recording, a few noise codes."""
    starts = np.linspace(0.02, 0.97, N_MARKERS) * n_samples
    codes = rng.integers(100, 149, N_MARKERS)
    codes[rng.choice(N_MARKERS, 4, replace=False)] = [77, 88, 77, 88]
    hold = int(0.4 * n_samples / N_MARKERS)  # codes held for 40 % of the spacing
    return [(int(s), int(s) + hold, int(c)) for s, c in zip(starts, codes, strict=True)]


def write_eeg(folder: Path, n_samples: int, rng: np.random.Generator) -> tuple[Path, Path]:
    """A 69-channel EEGLAB .set (MNE export of the header) with its data in a .fdt."""
    names = [*NEUROSCAN_64, *EXTRA_CHANNELS]
    types = ["eeg"] * 64 + ["eog", "eog", "ecg", "emg", "stim"]
    template = mne.io.RawArray(
        np.zeros((len(names), int(SFREQ))), mne.create_info(names, SFREQ, types), verbose="error"
    )
    set_path = folder / "Acquisition 01.set"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mne.export.export_raw(set_path, template, overwrite=True, verbose="error")
    header = {k: v for k, v in scipy.io.loadmat(set_path).items() if not k.startswith("__")}

    plan = marker_plan(n_samples, rng)
    fdt_path = set_path.with_suffix(".fdt")
    chunk = 60 * int(SFREQ)
    with open(fdt_path, "wb") as fdt:  # float32 microvolts, sample-major, chunk by chunk
        for first in range(0, n_samples, chunk):
            n = min(chunk, n_samples - first)
            block = rng.normal(0.0, 20.0, (n, len(names))).astype(np.float32)
            trigger = np.zeros(n, dtype=np.float32)
            for start, stop, code in plan:
                lo, hi = max(start - first, 0), min(stop - first, n)
                if lo < hi:
                    trigger[lo:hi] = code
            block[:, -1] = trigger
            block.tofile(fdt)
    header.update(
        data=fdt_path.name,
        datfile=fdt_path.name,
        pnts=float(n_samples),
        xmax=float((n_samples - 1) / SFREQ),
        event=np.rec.fromarrays(
            [
                np.array([str(code) for _, _, code in plan], dtype=object),
                np.array([start + 1.0 for start, _, _ in plan]),  # 1-based latencies
                np.zeros(len(plan)),
            ],
            names=["type", "latency", "duration"],
        ),
    )
    scipy.io.savemat(set_path, header)
    return set_path, fdt_path


def write_biopac(folder: Path, n_samples: int, rng: np.random.Generator) -> Path:
    """The 17-column AcqKnowledge MATLAB v5 export with markers on the digital lines."""
    t = np.arange(n_samples) / SFREQ
    data = np.empty((n_samples, len(BIOPAC_LABELS)), order="F")
    rhythms = [1.2, 0.25, 0, 0.001, 0.01, 1.2, 0, 0.001]  # Hz per analog column
    for column, hz in enumerate(rhythms):
        data[:, column] = np.sin(2 * np.pi * hz * t) + rng.normal(0.0, 0.05, n_samples)
    data[:, [3, 7]] += 92.0  # skin temperature in deg F (33 deg C): inside its range
    data[:, 4] += 5.0  # skin conductance in microsiemens: positive, as real EDA is
    data[:, 16] = 70.0 + rng.normal(0.0, 2.0, n_samples)
    code = np.zeros(n_samples, dtype=np.int64)
    for start, stop, value in marker_plan(n_samples, rng):
        code[start:stop] = value
    for bit in range(8):
        skew = int(rng.integers(0, 4))  # each line lags by 0-3 samples
        line = ((code >> bit) & 1) * 5.0
        data[skew:, 8 + bit] = line[: n_samples - skew]
        data[:skew, 8 + bit] = 0.0
    del code
    path = folder / "Untitled1 (001).mat"
    scipy.io.savemat(
        path,
        {
            "data": data,
            "labels": np.array(BIOPAC_LABELS),
            "units": np.array(BIOPAC_UNITS),
            "isi": 1.0,
            "isi_units": "ms",
            "start_sample": 0,
        },
    )
    return path


def write_frames(folder: Path, n_frames: int) -> Path:
    """EMPTY files named like XIMEA frames: 150 fps, counter wrapping at 1000, markers."""
    folder.mkdir()
    start_ms = (16 * 3600 + 45 * 60 + 38) * 1000 + 257
    for i in range(n_frames):
        ms = start_ms + (i * 1000) // 150
        hours, rest = divmod(ms, 3_600_000)
        minutes, rest = divmod(rest, 60_000)
        seconds, millis = divmod(rest, 1000)
        marker = 101 + (i // 5000) % 48
        clock = f"{hours:02d}-{minutes:02d}-{seconds:02d}-{millis:03d}"
        name = f"2023-07-21-{clock}-{i % 1000:03d}-{marker}.tif"
        os.close(os.open(folder / name, os.O_CREAT | os.O_WRONLY, 0o644))
    return folder


def timed(function: Callable[[], object]) -> tuple[float, object]:
    gc.collect()
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def peak_mb(function: Callable[[], object]) -> float:
    gc.collect()
    tracemalloc.start()
    result = function()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    gc.collect()
    return peak / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=75.0, help="recording length")
    parser.add_argument("--frames", type=int, default=50_000, help="camera frame names")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc runs")
    parser.add_argument("--keep", type=Path, help="write the files here and keep them")
    args = parser.parse_args(argv)

    n_samples = int(args.minutes * 60 * SFREQ)
    rng = np.random.default_rng(2024)
    with tempfile.TemporaryDirectory(prefix="mmhe-bench-") as temporary:
        folder = args.keep or Path(temporary)
        folder.mkdir(parents=True, exist_ok=True)
        print(f"writing {args.minutes:g} min at {SFREQ:g} Hz into {folder} ...", flush=True)
        t_write, (set_path, fdt_path) = timed(lambda: write_eeg(folder, n_samples, rng))
        print(f"  EEG .set/.fdt {fdt_path.stat().st_size / 1e6:,.0f} MB in {t_write:.1f} s")
        t_write, mat_path = timed(lambda: write_biopac(folder, n_samples, rng))
        print(f"  BIOPAC .mat {mat_path.stat().st_size / 1e6:,.0f} MB in {t_write:.1f} s")
        t_write, frames = timed(lambda: write_frames(folder / "Camera", args.frames))
        print(f"  {args.frames:,} empty frame files in {t_write:.1f} s", flush=True)

        rows = []

        def eeg() -> object:
            raw = read_eeg(set_path, preload=True)
            return raw, eeg_markers(raw)

        t_base, _ = timed(lambda: np.fromfile(fdt_path, dtype="<f4"))
        t_read, (raw, markers) = timed(eeg)
        assert raw.n_times == n_samples and len(markers) == N_MARKERS - 4
        del raw
        memory = None if args.no_memory else peak_mb(eeg)
        rows.append(
            ("read_eeg(preload) + eeg_markers", t_read, "numpy.fromfile(.fdt)", t_base, memory,
             fdt_path.stat().st_size)
        )  # fmt: skip

        t_base, _ = timed(lambda: scipy.io.loadmat(mat_path))
        t_read, recording = timed(lambda: read_biopac(mat_path))
        assert recording.n_samples == n_samples and len(recording.markers) == N_MARKERS - 4
        del recording
        memory = None if args.no_memory else peak_mb(lambda: read_biopac(mat_path))
        rows.append(
            ("read_biopac (+ marker decoding)", t_read, "scipy.io.loadmat(.mat)", t_base, memory,
             mat_path.stat().st_size)
        )  # fmt: skip

        try:
            from mmhe.io.camera import FrameSequence
        except ImportError as exc:
            print(f"FrameSequence skipped: mmhe.io.camera is not importable ({exc})")
        else:
            t_base, _ = timed(lambda: os.listdir(frames))
            t_read, sequence = timed(lambda: FrameSequence(frames))
            assert len(sequence) == args.frames
            rows.append(
                (f"FrameSequence ({args.frames:,} names)", t_read, "os.listdir", t_base, None, 0)
            )

        print()
        print(f"{'reader':<36}{'time s':>9}  {'baseline':<24}{'time s':>8}{'ratio':>8}"
              f"{'peak MB':>10}{'file MB':>9}")  # fmt: skip
        for name, t_read, base_name, t_base, memory, size in rows:
            peak = f"{memory:10,.0f}" if memory is not None else f"{'-':>10}"
            file_mb = f"{size / 1e6:9,.0f}" if size else f"{'-':>9}"
            print(
                f"{name:<36}{t_read:9.2f}  {base_name:<24}{t_base:8.2f}"
                f"{t_read / t_base:8.1f}{peak}{file_mb}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
