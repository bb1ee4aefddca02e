"""Where the features stage spends its time: mmhe's own code or the libraries it calls.

    python benchmarks/features_boundary.py STORE [--modality face eeg physio] [--rate 100]

For each modality, a child process computes the features of every participant of STORE
(`mmhe.features.batch.compute_features`, in-process, twice) under py-spy with native
frames (compiled libraries such as dlib and OpenCV show as theirs), sampling every
thread. Each sample inside `compute_features` is charged to the first call that leaves
mmhe for a third-party package (NeuroKit2, dlib, OpenCV, SciPy, MNE, pandas, ...; the
standard library is looked through), or to mmhe when the sample is in its own code.
The libraries whose outputs the features use as they are (NeuroKit2's steps, dlib's
landmark predictor, OpenCV's detectors and optical flow, SciPy's FFTs) are the part no
change in mmhe can remove without changing the values.

Native unwinding slows the sampled process several times over (the demo store: 6.8 min
for the three modalities against 1.3 min without native frames), so read the shares, not
the seconds. Measured on the demo store (`python benchmarks/features_boundary.py
demo-out/store`): face cv2 34.9 %, dlib 28.3 %, numpy 14.1 %, pandas 12.1 %, zarr 5.4 %,
mmhe 4.1 %; EEG pandas 30.0 %, scipy 25.0 %, numpy 24.4 %, mne 13.8 %, zarr 4.1 %, mmhe
1.9 %; physiology NeuroKit2 82.8 %, pandas 8.5 %, numpy 4.9 %, mmhe 1.9 %, zarr 1.2 %.

Needs py-spy (``pip install py-spy``; it samples another process, so it needs ptrace
rights, e.g. root or ``kernel.yama.ptrace_scope = 0``). The features stage of STORE is
deleted and recomputed: run it on a copy (e.g. the demo's store).
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from functools import cache
from pathlib import Path

CHILD = """
import json, shutil, sys
from pathlib import Path
from mmhe.demo import demo_config
from mmhe.features.batch import compute_features
store, modality = Path(sys.argv[1]), sys.argv[2]
latest = store / "latest.json"
version = store / json.loads(latest.read_text())["version"] if latest.exists() else store
for _ in range(2):
    shutil.rmtree(version / "features", ignore_errors=True)
    compute_features(version, (modality,), config=demo_config().features, scheduler="sync")
"""
ROOT = "compute_features"
STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


@cache
def package_of(path: str) -> str:
    """The owner of a frame's file (a Python file, or the compiled library of a native
    frame): "mmhe", "stdlib", a third-party package's name, or "other"."""
    if path.startswith("<"):
        return "stdlib"  # <frozen importlib...>
    if ".so" in path:  # cv2/cv2.abi3.so, numpy.libs/libscipy_openblas..., _dlib_pybind11...
        if "/" in path:
            return path.split("/")[0].split(".")[0]
        name = path.split(".")[0].lstrip("_").split("_")[0]
        return name if importlib.util.find_spec(name) is not None else "other"
    top = path.split("/")[0].removesuffix(".py")
    if top == "mmhe":
        return "mmhe"
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    if origin is None:
        return "other"
    if "site-packages" in origin.parts:
        return top
    return "stdlib" if origin.is_relative_to(STDLIB) else "other"


def charge(stack: list[str]) -> str | None:
    """The package a sample is charged to (None outside `compute_features`)."""
    files = [frame.rsplit(" (", 1)[-1].split(":")[0] for frame in stack]
    names = [frame.split(" (")[0] for frame in stack]
    if ROOT not in names:
        return None
    for path in files[names.index(ROOT) :]:
        owner = package_of(path)
        if owner not in ("mmhe", "stdlib"):
            return owner
    return "mmhe"


def profile(store: Path, modality: str, rate: int, work: Path) -> collections.Counter:
    """Samples of one modality's features, by the package they are charged to."""
    raw = work / f"{modality}.txt"
    command = ["py-spy", "record", "--native", "--rate", str(rate), "--format", "raw"]
    command += ["--output", str(raw), "--", sys.executable, "-c", CHILD, str(store), modality]
    subprocess.run(command, check=True, capture_output=True)
    counts: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        owner = charge(stack.split(";"))
        if owner is not None:
            counts[owner] += int(n)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", type=Path)
    modalities = ["face", "eeg", "physio"]
    parser.add_argument("--modality", nargs="+", default=modalities, choices=modalities)
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        parser.error("py-spy is not on PATH (pip install py-spy)")
    if not (args.store / "latest.json").exists() and not (args.store / "manifest.json").exists():
        parser.error(f"{args.store} is not an mmhe store (no latest.json or manifest.json)")
    with tempfile.TemporaryDirectory() as work:
        for modality in args.modality:
            counts = profile(args.store, modality, args.rate, Path(work))
            total = sum(counts.values())
            shares = ", ".join(
                f"{name} {100 * n / total:.1f} %" for name, n in counts.most_common()
            )
            print(f"{modality}: {total / args.rate:.1f} s sampled (two passes); {shares}")


if __name__ == "__main__":
    main()
