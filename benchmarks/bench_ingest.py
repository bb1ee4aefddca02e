"""Ingest speed and memory: seconds per participant, MB/s of raw input, the ratio to
just reading the raw bytes, and peak memory for 2 vs 8 participants.

    python benchmarks/bench_ingest.py [--work DIR] [--counts 2 8] [--phases]

Each ingest runs in a fresh child process (scheduler "sync": one participant at a time)
that reports its own peak resident memory (``ru_maxrss``). Peak memory
must not grow with the number of participants: ingest streams one participant at a time.

``--phases`` then ingests the largest tree once more, with the allocator settings of the
``mmhe`` command, and prints where the time goes: each phase's wall seconds and the CPU
seconds of the thread that runs it (hashing runs in its own thread while the files are
parsed; Zarr compresses and writes in its own threads, so a write phase's wall time can
exceed its thread's CPU time), summed over participants.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, time
from mmhe.store import ingest
started = time.perf_counter()
ingest(sys.argv[1], sys.argv[2], scheduler="sync")
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

READ = """
import json, sys, time
from pathlib import Path
started = time.perf_counter()
total = 0
for path in sorted(Path(sys.argv[1]).rglob("*")):
    if path.is_file():
        total += len(path.read_bytes())
print(json.dumps({"seconds": time.perf_counter() - started, "bytes": total}))
"""


PHASES = """
import importlib, json, sys, time, resource
from collections import Counter
from mmhe.parallel import tune_allocator
tune_allocator()
ingest_module = importlib.import_module("mmhe.store.ingest")
participant = importlib.import_module("mmhe.store.participant")
cpu, wall = Counter(), Counter()

def timed(module, name):
    function = getattr(module, name)
    def run(*args, **kwargs):
        c, t = time.thread_time(), time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            cpu[name] += time.thread_time() - c
            wall[name] += time.perf_counter() - t
    setattr(module, name, run)

for name in ("inspect_participant", "input_fingerprints", "write_participant"):
    timed(ingest_module, name)
for name in ("_write_eeg", "_write_physio", "_write_frames", "_tables"):
    timed(participant, name)
before = resource.getrusage(resource.RUSAGE_SELF)
started = time.perf_counter()
ingest_module.ingest(sys.argv[1], sys.argv[2], scheduler="sync")
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"wall": time.perf_counter() - started,
                  "user": after.ru_utime - before.ru_utime,
                  "system": after.ru_stime - before.ru_stime,
                  "cpu": dict(cpu), "phase_wall": dict(wall)}))
"""

PHASE_NAMES = {
    "inspect_participant": "read + validate every file (EEG through MNE)",
    "input_fingerprints": "hash the raw files (own thread)",
    "write_participant": "write the participant (all below)",
    "_write_eeg": "  EEG session (+ trials without it)",
    "_write_physio": "  physiology trials",
    "_write_frames": "  expressions' frames (+ coordinates)",
    "_tables": "  tables (parquet)",
}


def child(code: str, *args: str) -> dict:
    """Run `code` in a new interpreter; returns the JSON it printed last."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--counts", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--phases", action="store_true", help="also time ingest's phases")
    args = parser.parse_args()
    from mmhe.synth import generate

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    rows = []
    for count in args.counts:
        raw = work / f"raw-{count}"
        if not raw.exists():
            generate(raw, preset="demo", seed=0, subjects=count)
        out = work / f"store-{count}"
        shutil.rmtree(out, ignore_errors=True)
        read = child(READ, str(raw))
        ingested = child(CHILD, str(raw), str(out))
        megabytes = read["bytes"] / 1e6
        rows.append((count, megabytes, ingested["seconds"], read["seconds"], ingested["peak_mb"]))
    print(
        f"{'participants':>12} {'raw MB':>8} {'ingest s':>9} {'s/part.':>8} {'MB/s':>7} "
        f"{'x read':>7} {'peak RSS MB':>12}"
    )
    for count, megabytes, seconds, read_seconds, peak in rows:
        print(
            f"{count:>12} {megabytes:>8.1f} {seconds:>9.2f} {seconds / count:>8.2f} "
            f"{megabytes / seconds:>7.1f} {seconds / read_seconds:>7.1f} {peak:>12.0f}"
        )
    if len(rows) >= 2:
        growth = rows[-1][4] / rows[0][4]
        print(
            f"peak memory {rows[-1][0]} vs {rows[0][0]} participants: x{growth:.2f} "
            f"({'flat: streaming per participant' if growth < 1.25 else 'GROWS'})"
        )
    if args.phases:
        count = args.counts[-1]
        out = work / f"store-{count}-phases"
        shutil.rmtree(out, ignore_errors=True)
        report = child(PHASES, str(work / f"raw-{count}"), str(out))
        print(
            f"\n{count} participants in one process: {report['wall']:.2f} s wall, "
            f"{report['user']:.2f} s user + {report['system']:.2f} s system CPU"
        )
        print(f"{'phase':46s} {'wall s':>7s} {'its thread CPU s':>17s}")
        for name, label in PHASE_NAMES.items():
            print(f"{label:46s} {report['phase_wall'][name]:7.2f} {report['cpu'][name]:17.2f}")
    print(f"(work folder {work})")


if __name__ == "__main__":
    main()
