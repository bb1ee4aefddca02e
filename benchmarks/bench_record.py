"""How fast `mmhe record` stores frames: the highest frame rate with zero drops at
2048 x 1088, against the disk's sequential write bandwidth measured in the same run.

    python benchmarks/bench_record.py [--seconds 8] [--rates 150,200,250] [--dir DIR]

1. Measures the disk's sequential write bandwidth where the frames go: `--disk-mb` MB
   written in 8 MB blocks and flushed with fsync (the physical limit), before the
   recordings (the ratios use it) and again after them.
2. Runs `mmhe record` as its users do (a subprocess of the CLI) with the simulated camera
   at 2048 x 1088 (raw 8-bit Bayer frames, 2.2 MB each, as the XIMEA delivers them) and a
   trigger script holding marker 101 for `--seconds` s, at each rate of `--rates` in
   turn until one drops frames. From each run's JSON log: frames captured / written /
   dropped / lost by the camera, queue high-water mark, memory high-water mark (the
   recorder process's peak RSS), CPU time; then the time `sync` needs to put what the
   page cache still holds on the disk (the drain), and the end-to-end disk rate
   bytes / (recording + drain).
3. Prints, per rate, frames/s x frame size / disk bandwidth: above 1 the page cache
   absorbed the difference (a recording that lasts longer than the cache allows is
   limited to the disk bandwidth; the drain time says how far behind the disk was).

The machine's load (load average, CPU pressure) is printed before and after: other
programs running on the same cores change the result.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WIDTH, HEIGHT = 2048, 1088
FRAME_BYTES = WIDTH * HEIGHT


def machine_load() -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    pressure = ""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        pressure = f"; CPU pressure {line.split()[1]}"  # "avg10=..."
    except (OSError, IndexError):
        pass
    return f"load average {load} on {os.cpu_count()} cores{pressure}"


def disk_bandwidth(folder: Path, megabytes: int) -> float:
    """Sequential write MB/s into `folder`, flushed to the disk (fsync)."""
    block = os.urandom(8 << 20)
    path = folder / ".bench-disk"
    os.sync()
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for _ in range(max(1, megabytes // 8)):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - started
    path.unlink()
    return max(1, megabytes // 8) * len(block) / seconds / 1e6


def dirty_limit_mb() -> float | None:
    """The kernel's dirty-page limit (MB): what the page cache takes before writers wait."""
    try:
        ratio = int(Path("/proc/sys/vm/dirty_ratio").read_text())
        meminfo = dict(
            line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines()
        )
        available_kb = int(meminfo["MemAvailable"].split()[0])
    except (OSError, KeyError, ValueError):
        return None
    return available_kb * ratio / 100 / 1024


def record_once(folder: Path, fps: float, seconds: float, source: Path) -> dict:
    """One `mmhe record` run; returns its log plus the drain time of `sync`."""
    script = folder / "trigger.csv"
    script.write_text(f"time_s,value\n0.0,101\n{seconds},-1\n")
    out = folder / f"Camera-{fps:g}"
    env = {**os.environ, "PYTHONPATH": str(source)}
    command = [
        sys.executable, "-c", "from mmhe.cli import main; main()", "record", str(out),
        "--trigger", str(script), "--fps", str(fps), "--width", str(WIDTH),
        "--height", str(HEIGHT),
    ]  # fmt: skip
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    logs = sorted(out.glob("record-*.json"))
    if not logs:
        raise SystemExit(f"mmhe record failed (exit {result.returncode}): {result.stderr}")
    log = json.loads(logs[-1].read_text())
    started = time.perf_counter()
    os.sync()
    log["drain_s"] = time.perf_counter() - started
    shutil.rmtree(out)
    os.sync()
    return log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="marker held (s) per run")
    parser.add_argument("--rates", default="150,200,250", help="frame rates to try, in order")
    parser.add_argument("--disk-mb", type=int, default=2048, help="MB for the disk test")
    parser.add_argument("--dir", type=Path, help="folder on the disk to test (default: temp)")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    source = Path(__file__).resolve().parents[1] / "src"

    with tempfile.TemporaryDirectory(prefix="mmhe-bench-record-", dir=args.dir) as temporary:
        folder = Path(temporary)
        print(f"before: {machine_load()}", flush=True)
        bandwidth = disk_bandwidth(folder, args.disk_mb)
        limit = dirty_limit_mb()
        print(
            f"disk sequential write (fsync'd, {args.disk_mb} MB) into {folder}: "
            f"{bandwidth:,.0f} MB/s = {bandwidth * 1e6 / FRAME_BYTES:,.1f} frames/s of "
            f"{FRAME_BYTES / 1e6:.2f} MB"
            + (f"; dirty-page limit {limit:,.0f} MB" if limit else ""),
            flush=True,
        )
        rows = []
        for fps in rates:
            log = record_once(folder, fps, args.seconds, source)
            frames = log["frames"]
            rate_mb = fps * FRAME_BYTES / 1e6
            written_mb = log["write"]["bytes"] / 1e6
            rows.append(
                {
                    "fps": fps,
                    "captured": frames["captured"],
                    "written": frames["written"],
                    "dropped": frames["dropped"],
                    "camera_lost": frames["camera_lost"],
                    "queue_hw": log["queue"]["high_water_frames"],
                    "memory_hw_mb": log["memory_high_water_mb"],
                    "cpu_s": log["machine"]["cpu_s"],
                    "rate_mb_s": rate_mb,
                    "ratio": rate_mb / bandwidth,
                    "drain_s": log["drain_s"],
                    "to_disk_mb_s": written_mb / (log["seconds"] + log["drain_s"]),
                    "load": log["machine"]["load_average_end"][0],
                }
            )
            print(
                f"  {fps:g} fps: captured {frames['captured']}, dropped {frames['dropped']}, "
                f"camera lost {frames['camera_lost']}, drain {log['drain_s']:.1f} s",
                flush=True,
            )
            if frames["dropped"] or frames["camera_lost"]:
                break
        after = disk_bandwidth(folder, args.disk_mb)
        print(f"after: {machine_load()}; disk sequential write again: {after:,.0f} MB/s")
        print()
        header = (
            f"{'fps':>6}{'captured':>10}{'dropped':>9}{'lost':>6}{'queue hw':>10}"
            f"{'mem hw MB':>11}{'CPU s':>7}{'MB/s':>7}{'/disk':>7}{'drain s':>9}"
            f"{'to disk MB/s':>14}{'load':>6}"
        )
        print(header)
        for r in rows:
            print(
                f"{r['fps']:6g}{r['captured']:10d}{r['dropped']:9d}{r['camera_lost']:6d}"
                f"{r['queue_hw']:10d}{r['memory_hw_mb']:11,.0f}{r['cpu_s']:7.1f}"
                f"{r['rate_mb_s']:7.0f}{r['ratio']:7.2f}{r['drain_s']:9.1f}"
                f"{r['to_disk_mb_s']:14,.0f}{r['load']:6.1f}"
            )
        clean = [r for r in rows if not r["dropped"] and not r["camera_lost"]]
        print()
        if clean:
            best = max(clean, key=lambda r: r["fps"])
            print(
                f"highest frame rate with zero drops at {WIDTH} x {HEIGHT} for "
                f"{args.seconds:g} s: {best['fps']:g} fps = {best['rate_mb_s']:,.0f} MB/s = "
                f"{best['ratio']:.2f} x the disk's {bandwidth:,.0f} MB/s; memory high-water "
                f"{best['memory_hw_mb']:,.0f} MB"
            )
        else:
            print(f"no rate of {rates} ran without drops")
        print(
            f"without the page cache (a recording longer than it holds) the disk sustains "
            f"{bandwidth * 1e6 / FRAME_BYTES:,.0f} frames/s of raw {WIDTH} x {HEIGHT} frames"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
