"""Every stage of `mmhe demo` against its fair anchor and its physical limit, in one run.

    python benchmarks/bench_stages.py [--raw RAW] [--participants 2] [--trials 10] [--repeats 3]

One row per stage: our seconds, the anchor's (the standard tool called the way its users
call it), the limit's (the least any implementation must spend), and the two ratios.
Everything is timed in this run, on this machine, one core (BLAS/FFT threads limited to
one; CPU seconds, which other jobs on a shared machine disturb much less than wall time).

======================  ===============================  ==================================
stage                   anchor                           limit
======================  ===============================  ==================================
ingest (N people)       ``mne.io.read_raw(preload=True)`` ``cat`` of every EEG and BIOPAC
                        of the same EEG files, in a new  file + decoding them (EEG samples
                        process (MNE's import included,  as float32, the BIOPAC .mat with
                        as ingest's own imports are)     scipy.io.loadmat); frames left out;
                                                         + writing as many incompressible
                                                         bytes as the store holds (16 MB
                                                         files): a store must be written
EEG preprocessing       MNE's ``Raw.notch_filter`` +     the rfft + irfft of the cheapest
(continuous session)    ``Raw.filter`` + average ref. on  overlap-add for the same FIR
                        the continuous Raw               length (FFT size chosen as MNE's)
EEG band power + DE     ``psd_array_welch`` on chunks    one rfft of all 1-s windows
                        under 10 MB (its fallback
                        threshold), ``average=None``
physiology (trials)     NeuroKit2 ``*_process`` per      one zero-phase Butterworth pass
                        signal (ecg, ppg, rsp, eda, emg)  over every channel
EEG TCN training step   the full evaluation (every       the step's FLOPs at the measured
(T = 8, batch 64)       block at every window) with      peak of a float32 matmul
                        ``torch.optim.Adam()`` defaults
======================  ===============================  ==================================

The ingest row also prints what zarr-python alone spends writing the ingested store's
arrays from memory (`zarr_alone`): with the store's own layout, and as the same bytes in
three arrays per participant; that is the part of ingest the store format sets.

Ingest runs ``mmhe ingest RAW --out STORE --scheduler sync`` (the console script's
entry, allocator settings included) in a child process on a
synthetic raw tree (``--raw`` reuses one; otherwise ``--participants`` of the demo
preset are generated first, ~20 s each). The other rows run in this process on
synthetic signals shaped like the demo's (64 EEG channels at 1000 Hz, BIOPAC at 1000 Hz),
pinned to one core (`one_core`).
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

INGEST = """
import sys
from mmhe.cli import main
sys.argv = ["mmhe", "ingest", sys.argv[1], "--out", sys.argv[2], "--scheduler", "sync"]
try:
    main()
except SystemExit as end:
    if end.code not in (0, 1, None):  # 1: the store lists problems (the twin plants some)
        raise
"""
MNE_READ = """
import sys, mne
for path in sys.argv[1:]:
    mne.io.read_raw(path, preload=True, verbose="error")
"""
WRITE_BYTES = """
import os, sys
from pathlib import Path
out, left = Path(sys.argv[1]), int(sys.argv[2])
out.mkdir()
block = os.urandom(16 * 2**20)
for i in range(0, left, len(block)):
    (out / str(i)).write_bytes(block[: min(len(block), left - i)])
"""
CAT_DECODE = """
import sys, numpy as np, scipy.io
from pathlib import Path
for path in map(Path, sys.argv[1:]):
    data = path.read_bytes()
    if path.suffix == ".fdt":
        np.frombuffer(data, dtype="<f4").sum()
    elif path.suffix == ".mat":
        scipy.io.loadmat(path)
"""

ZARR_ALONE = """
import sys, resource
from pathlib import Path
import numpy as np, zarr
from mmhe.store.participant import frames_per_chunk
store, out, fewest = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "fewest"
plan = []  # (participant, array path, values, the stored array)
for group_path in sorted(store.glob("participants/*/arrays.zarr")):
    nodes = [("", zarr.open_group(str(group_path), mode="r"))]
    while nodes:
        prefix, group = nodes.pop()
        plan += [(group_path.parent.name, prefix + name, a[...], a) for name, a in group.arrays()]
        nodes += [(prefix + name + "/", g) for name, g in group.groups()]
if fewest:  # the same bytes in three arrays per participant: frames concatenated
    merged = {}
    for sid, name, values, like in plan:
        kind = "frames" if name.endswith("/image") else name
        if kind in ("eeg_continuous", "physio", "frames"):
            merged.setdefault((sid, kind), (like, []))[1].append(values)
    plan = [(sid, kind, np.concatenate(v), like) for (sid, kind), (like, v) in merged.items()]
started = resource.getrusage(resource.RUSAGE_SELF)
groups = {}
for sid, name, values, like in plan:
    if sid not in groups:  # (a Group's truth value lists its members: not used)
        groups[sid] = zarr.open_group(str(out / sid), mode="w")
    group = groups[sid]
    *parents, leaf = name.split("/")
    for parent in parents:
        group = group.require_group(parent)
    chunks, shards = like.chunks, like.shards
    if fewest and name == "frames":  # all expressions in one array, ingest's chunk size
        chunks, shards = (frames_per_chunk(values.shape), *values.shape[1:]), None
    array = group.create_array(
        leaf, shape=values.shape, dtype=values.dtype, chunks=chunks,
        shards=shards, compressors=like.compressors, fill_value=like.fill_value,
        dimension_names=like.metadata.dimension_names, attributes=dict(like.attrs),
        config={"write_empty_chunks": True},
    )
    array[...] = values
ended = resource.getrusage(resource.RUSAGE_SELF)
print(len(plan), (ended.ru_utime - started.ru_utime) + (ended.ru_stime - started.ru_stime))
"""


def zarr_alone(store: Path, work: Path, repeats: int = 3) -> dict[str, tuple[int, float]]:
    """{"as stored", "fewest"}: (arrays, least CPU seconds of `repeats` runs) zarr-python
    alone spends writing a store's arrays from memory, the reading of the store into memory
    not counted: with the store's own layout (shapes, chunks, shards, codecs, dimension
    names, attributes; consolidation not counted), and as the same bytes in three arrays
    per participant (EEG session, physiology, every expression's frames concatenated).
    What the store format costs, apart from anything ingest itself does."""
    found: dict[str, tuple[int, float]] = {}
    for layout in ("as stored", "fewest"):
        best, count = float("inf"), 0
        for _ in range(repeats):
            shutil.rmtree(work / "zarr-alone", ignore_errors=True)
            out = subprocess.run(
                [sys.executable, "-c", ZARR_ALONE, str(store), str(work / "zarr-alone"), layout],
                check=True, capture_output=True, text=True,
            ).stdout.split()  # fmt: skip
            count, best = int(out[0]), min(best, float(out[1]))
        found[layout] = (count, best)
    shutil.rmtree(work / "zarr-alone", ignore_errors=True)
    return found


def _cpu() -> float:
    return time.process_time()


def _child_cpu(code: str, *args: str) -> float:
    """CPU seconds (user + system) of a new interpreter running `code`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _best(function: Callable[[], object], repeats: int = 3) -> float:
    """Least CPU seconds of `repeats` calls (first call's caches warmed by a call before)."""
    function()
    best = float("inf")
    for _ in range(repeats):
        started = _cpu()
        function()
        best = min(best, _cpu() - started)
    return best


# ---------------------------------------------------------------- rows


@contextmanager
def one_core() -> Iterator[None]:
    """Run the block on one core (CPU affinity): our own threaded steps (the EEG session
    filter's FFTs use `mmhe.parallel.task_threads`) then run as in a single-threaded Dask
    worker, the way `mmhe features` runs them, and their CPU time stops varying with how
    two threads meet (0.7-2.4 CPU-s for the same EEG preprocessing call on 2 cores)."""
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, cores)


def ingest_row(raw: Path, work: Path, repeats: int = 3) -> tuple[float, float, float, str]:
    """Least CPU seconds of `repeats` runs each of ingest, the anchor and the limit's parts
    (their system time, mostly page-cache work for the writes, varies by up to 1.5x from
    run to run on this machine)."""
    from mmhe.store.layout import discover

    found = discover(raw)
    device_files = []
    for files in found.participants.values():
        for path in files.inputs():
            device_files += [path, *sorted(path.parent.glob(path.stem + ".fdt"))]
    eeg_files = [str(f.eeg) for f in found.participants.values() if f.eeg is not None]
    subprocess.run(["cat", *map(str, device_files)], check=True, stdout=subprocess.DEVNULL)
    ours = anchor = cat = decode = write = float("inf")
    for _ in range(repeats):
        shutil.rmtree(work / "store", ignore_errors=True)
        ours = min(ours, _child_cpu(INGEST, str(raw), str(work / "store")))
        anchor = min(anchor, _child_cpu(MNE_READ, *eeg_files))
        started = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(["cat", *map(str, device_files)], check=True, stdout=subprocess.DEVNULL)
        ended = resource.getrusage(resource.RUSAGE_CHILDREN)
        cat = min(cat, (ended.ru_utime - started.ru_utime) + (ended.ru_stime - started.ru_stime))
        decode = min(decode, _child_cpu(CAT_DECODE, *map(str, device_files)))
        store = [f for f in (work / "store").rglob("*") if f.is_file()]
        written = sum(f.stat().st_size for f in store)
        write = min(write, _child_cpu(WRITE_BYTES, str(work / "write-limit"), str(written)))
        shutil.rmtree(work / "write-limit")
    print(
        f"ingest limit: cat {cat:.2f} + decode {decode:.2f} + write {write:.2f} CPU-s "
        f"({written / 1e6:.0f} MB, the store's size, {len(store)} files in ours; "
        f"least of {repeats} runs each)"
    )
    for layout, (count, seconds) in zarr_alone(next((work / "store").glob("v-*")), work).items():
        print(
            f"zarr-python alone writing the store's arrays from memory, {layout} "
            f"({count} arrays): {seconds:.2f} CPU-s = {seconds / anchor:.2f} x the anchor"
        )
    return ours, anchor, cat + decode + write, f"ingest ({len(found.participants)} participants)"


def _session(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """64 channels of EEG-like noise with 50 Hz mains, volts, shape (64, n)."""
    n = int(seconds * 1000)
    t = np.arange(n) / 1000.0
    return rng.standard_normal((64, n)) * 1e-5 + 2e-5 * np.sin(2 * np.pi * 50.0 * t)


def preprocessing_row(rng: np.random.Generator, minutes: int) -> tuple[float, float, float, str]:
    import mne
    import scipy.fft

    from mmhe.features.eeg import preprocess
    from mmhe.features.eeg_filter import filtered_trials, session_kernel

    x = _session(rng, minutes * 60 + 10)
    spans = [(5000 + 60000 * k, 65000 + 60000 * k) for k in range(minutes)]
    info = mne.create_info(64, 1000.0, "eeg")

    def ours() -> None:
        kernel = session_kernel.__wrapped__(1000.0)  # designed on every call, as MNE's
        for _ in filtered_trials(lambda a, b: x[:, a:b], x.shape[1], spans, kernel, 1000.0):
            pass

    def anchor() -> None:
        preprocess(mne.io.RawArray(x, info, verbose="error"))

    taps = session_kernel(1000.0).size
    n_fft = min(
        (2**k for k in range(int(np.ceil(np.log2(2 * taps))), 24)),
        key=lambda n: np.ceil(x.shape[1] / (n - taps + 1)) * n * np.log2(n),
    )
    blocks = np.zeros((x.shape[0], int(np.ceil(x.shape[1] / (n_fft - taps + 1))), n_fft))

    def limit() -> None:  # the transforms of the cheapest overlap-add for this kernel
        scipy.fft.irfft(scipy.fft.rfft(blocks, axis=-1), n_fft, axis=-1)

    label = f"EEG preprocessing ({minutes} min session)"
    return _best(ours), _best(anchor, 1), _best(limit), label


def band_power_row(rng: np.random.Generator, trials: int) -> tuple[float, float, float, str]:
    from bench_features_eeg import fft_limit, mne_band_power, synthetic_trial

    from mmhe.features import eeg

    data = [synthetic_trial(rng) for _ in range(min(trials, 4))]

    def run(function: Callable[[np.ndarray], object]) -> Callable[[], None]:
        return lambda: [function(trial) for trial in data]

    ours = _best(run(lambda t: (eeg.band_power(t, 1000.0), eeg.differential_entropy(t, 1000.0))))
    scale = trials / len(data)
    return (
        ours * scale,
        _best(run(mne_band_power)) * scale,
        _best(run(fft_limit)) * scale,
        f"EEG band power + DE ({trials} one-minute trials)",
    )


def physiology_row(trials: int) -> tuple[float, float, float, str]:
    from bench_features_physio import _limit, _neurokit, _trials

    from mmhe.features._physio_common import shared_steps
    from mmhe.features.physio import physio_features
    from mmhe.features.physio_events import trial_series

    data = _trials(trials)

    def ours() -> None:
        for trial in data:
            with shared_steps():  # as `mmhe features` runs them
                physio_features(trial, 1000.0)
                trial_series(trial, 1000.0)

    return (
        _best(ours, 1),
        _best(lambda: _neurokit(data), 1),
        _best(lambda: _limit(data), 1),
        f"physiology ({trials} one-minute trials)",
    )


def matmul_peak_flops() -> float:
    """Floating-point operations per second of a 512 x 512 float32 matmul, one thread."""
    import torch

    a, b = torch.randn(512, 512), torch.randn(512, 512)
    seconds = _best(lambda: [a @ b for _ in range(50)])
    return 50 * 2 * 512**3 / seconds


def training_row(steps: int) -> tuple[float, float, float, str]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from mmhe.models.eeg import EEGTCN

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = torch.randn(64, 8, 320), torch.randint(0, 3, (64,))

    def stepper(pruned: bool, fused: bool) -> Callable[[], None]:
        model = EEGTCN(n_features=320).train()
        forward = model.forward if pruned else model.full_forward
        optimiser = torch.optim.Adam(
            model.parameters(), lr=1e-3, **({"fused": True} if fused else {})
        )

        def run() -> None:
            for _ in range(steps):
                optimiser.zero_grad()
                torch.nn.functional.cross_entropy(forward(x), y).backward()
                optimiser.step()

        return run

    model = EEGTCN(n_features=320).train()
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    flops = counter.get_total_flops() * steps
    return (
        _best(stepper(True, True)),
        _best(stepper(False, False)),
        flops / matmul_peak_flops(),
        f"EEG TCN training ({steps} steps, batch 64, T = 8)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, help="a raw tree to ingest (default: generated)")
    parser.add_argument("--participants", type=int, default=2)
    parser.add_argument("--trials", type=int, default=10, help="one-minute trials per row")
    parser.add_argument("--steps", type=int, default=20, help="TCN training steps")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="ingest runs (least kept)")
    args = parser.parse_args()
    if args.raw is not None and not args.raw.is_dir():
        parser.error(f"--raw {args.raw}: not a folder (give the root of a raw MMHE tree)")
    warnings.simplefilter("ignore")
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        work = Path(tmp)
        if not args.skip_ingest:
            raw = args.raw
            if raw is None:
                from mmhe.synth import generate

                raw = work / "raw"
                generate(raw, preset="demo", seed=0, subjects=args.participants)
            rows.append(ingest_row(raw, work, args.repeats))
        with one_core(), threadpool_limits(limits=1):
            rows.append(preprocessing_row(rng, args.trials))
            rows.append(band_power_row(rng, args.trials))
            rows.append(physiology_row(args.trials))
            rows.append(training_row(args.steps))
    print(f"CPU seconds, one core; load average {os.getloadavg()[0]:.1f}")
    header = (
        f"{'stage':48s} {'ours':>8s} {'anchor':>8s} {'limit':>8s} {'x anchor':>9s} {'x limit':>8s}"
    )
    print(header)
    for ours, anchor, limit, label in rows:
        print(
            f"{label:48s} {ours:8.2f} {anchor:8.2f} {limit:8.3f} {ours / anchor:9.2f} "
            f"{ours / limit:8.2f}"
        )
    names = ("ours", "anchor", "limit", "stage")
    print(json.dumps([dict(zip(names, row, strict=True)) for row in rows]))


if __name__ == "__main__":
    main()
