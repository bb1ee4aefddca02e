"""Physiology feature speed per participant-hour, against NeuroKit2's own pipelines.

    python benchmarks/bench_features_physio.py [--minutes 10]

A synthetic participant (`mmhe.synth.physio.simulate_body`: ECG with tall T waves,
ectopic and missed beats, PPG, RSP, EDA, two EMG, two SKT at 1000 Hz) is cut into
one-minute trials, as MMHE's clips are. Timed side by side on the same trials:

- ours: `physio_features` + `trial_series` per trial, as `mmhe features` runs them
  (default cheap quality, and quality="templatematch");
- anchor: NeuroKit2's ``*_process`` pipelines a user would call (ecg_process,
  ppg_process, rsp_process, eda_process, emg_process x2) on the same trials;
- limit: one zero-phase 4th-order Butterworth pass over every channel (no feature can
  cost less than reading the samples once through a filter).

Prints seconds per participant-hour (60 one-minute trials) and the ratios.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

COLUMNS = ("ppg", "rsp", "eda", "ecg", "emg_a", "emg_b", "skt_a", "skt_b")


def _trials(minutes: int) -> list[pd.DataFrame]:
    from mmhe.synth.design import Block
    from mmhe.synth.physio import GRID_HZ, simulate_body

    blocks = [Block(101 + k, "sadness", 5.0 + 60 * k, 65.0 + 60 * k, k + 1) for k in range(minutes)]
    n = int((minutes * 60 + 10) * GRID_HZ)
    body = simulate_body(blocks, 0.0, n, 1.0, np.random.default_rng(0))
    frame = pd.DataFrame({c.upper(): getattr(body, c) for c in COLUMNS})
    return [frame.iloc[int(b.onset_s * GRID_HZ) : int(b.offset_s * GRID_HZ)] for b in blocks]


def _ours(trials: list[pd.DataFrame], quality: str) -> None:
    from mmhe.features.physio import physio_features
    from mmhe.features.physio_events import trial_series

    for trial in trials:
        physio_features(trial, 1000.0, quality=quality)
        trial_series(trial, 1000.0)


def _neurokit(trials: list[pd.DataFrame]) -> None:
    import neurokit2 as nk

    for trial in trials:
        nk.ecg_process(trial["ECG"].to_numpy(), sampling_rate=1000)
        nk.ppg_process(trial["PPG"].to_numpy(), sampling_rate=1000)
        nk.rsp_process(trial["RSP"].to_numpy(), sampling_rate=1000)
        nk.eda_process(trial["EDA"].to_numpy(), sampling_rate=1000)
        nk.emg_process(trial["EMG_A"].to_numpy(), sampling_rate=1000)
        nk.emg_process(trial["EMG_B"].to_numpy(), sampling_rate=1000)


def _limit(trials: list[pd.DataFrame]) -> None:
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, [0.5, 40.0], btype="band", fs=1000.0, output="sos")
    for trial in trials:
        sosfiltfilt(sos, trial.to_numpy().T, axis=1)


def _timed(function, *args) -> float:
    started = time.process_time()
    function(*args)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10, help="one-minute trials to time")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    trials = _trials(args.minutes)
    _ours(trials[:1], "correlation")  # imports and NeuroKit2 caches out of the timing
    per_hour = 60.0 / len(trials)
    rows = {
        "mmhe (quality=correlation)": _timed(_ours, trials, "correlation"),
        "mmhe (quality=templatematch)": _timed(_ours, trials, "templatematch"),
        "NeuroKit2 *_process (anchor)": _timed(_neurokit, trials),
        "one filter pass (limit)": _timed(_limit, trials),
    }
    ours = rows["mmhe (quality=correlation)"]
    print(f"{len(trials)} one-minute trials x 8 channels at 1000 Hz; CPU seconds (process time)")
    print(f"{'':32s} {'s / participant-hour':>22s} {'x ours':>8s}")
    for name, seconds in rows.items():
        print(f"{name:32s} {seconds * per_hour:22.1f} {seconds / ours:8.2f}")


if __name__ == "__main__":
    main()
