"""Feature extraction speed: runs the EEG and the face benchmarks in one go.

    python benchmarks/bench_features.py

EEG: band power + DE for 42 one-minute trials x 64 channels at 1000 Hz against MNE's
psd_array_welch and a per-band Butterworth DE (bench_features_eeg.py). Faces: landmarks,
face-only mask, alignment, flow and the 28 x 28 stack per expression at 2048 x 1088, DIS
and TV-L1, beside the previous box + ECC pipeline, with the flow error on a planted
expression (bench_features_face.py). Physiology: CPU seconds per
participant-hour against NeuroKit2's *_process pipelines (bench_features_physio.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

if __name__ == "__main__":
    here = Path(__file__).parent
    for script in ("bench_features_eeg.py", "bench_features_face.py", "bench_features_physio.py"):
        print(f"== {script}", flush=True)
        subprocess.run([sys.executable, str(here / script), *sys.argv[1:]], check=True)
