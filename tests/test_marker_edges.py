"""Markers at the first bit edge of their transition (BIOPAC digital lines, EEG stim channel).

A parallel port switches its eight bits up to ~2 ms apart. The marker's time is when
the code starts to change; taking it once the last skewed bit has switched makes each
marker late by the skew of its slowest bit, which varies from code to code and bends the
fitted clock drift.
"""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
import pytest

from mmhe.io.biopac import decode_trigger_lines
from mmhe.io.eeg import eeg_markers
from mmhe.sync import align

FS = 1000.0
OFFSET_S, DRIFT_PPM = 3.2173, 15.0  # t_eeg = offset + (1 + drift) * t_biopac


def skewed_levels(
    n: int, starts: np.ndarray, codes: np.ndarray, hold: int, rng: np.random.Generator
) -> np.ndarray:
    """Codes (n,) where each transition (on at `starts`, off `hold` samples later) has
    its bits switching 0-2 samples (0-2 ms) apart, the first changing bit at the start."""
    level = np.zeros(n, dtype=np.int64)
    for start, code in zip(starts, codes, strict=True):
        for edge, value in ((start, code), (start + hold, 0)):
            flipped = [bit for bit in range(8) if ((level[edge - 1] ^ value) >> bit) & 1]
            skew = rng.integers(0, 3, size=len(flipped))
            skew[rng.integers(len(flipped))] = 0  # the transition starts at `edge`
            for bit, lag in zip(flipped, skew, strict=True):
                if (value >> bit) & 1:
                    level[edge + lag :] |= 1 << bit
                else:
                    level[edge + lag :] &= ~(1 << bit)
    return level


def last_edge(level: np.ndarray, markers: pd.DataFrame) -> pd.DataFrame:
    """The old rule: each marker at the sample where its final code is complete."""
    onsets = []
    for onset, code in zip(markers["onset_s"], markers["code"], strict=True):
        sample = round(onset * FS)
        while level[sample] != code:
            sample += 1
        onsets.append(sample / FS)
    return markers.assign(onset_s=onsets)


def test_biopac_first_edges_recover_offset_and_drift_in_a_two_minute_test():
    rng = np.random.default_rng(7)
    n = int(125 * FS)
    starts = (2000 + 3000 * np.arange(40) + rng.integers(0, 500, 40)).astype(np.int64)
    codes = rng.integers(101, 149, 40)
    level = skewed_levels(n, starts, codes, hold=1500, rng=rng)
    lines = {bit: ((level >> bit) & 1) * 5.0 for bit in range(8)}
    biopac = decode_trigger_lines(lines, FS)
    assert biopac["code"].tolist() == codes.tolist() and biopac.attrs["dropped_codes"] == {}
    np.testing.assert_array_equal(np.rint(biopac["onset_s"] * FS), starts)
    # the reference clock: the same transitions as the stimulus computer sent them
    reference = pd.DataFrame(
        {"onset_s": OFFSET_S + (1 + DRIFT_PPM * 1e-6) * starts / FS, "code": codes}
    )
    fit = align(reference, biopac)
    assert abs(fit.offset_s - OFFSET_S) * 1e3 < 0.5
    assert abs(fit.drift_ppm - DRIFT_PPM) < 2.0
    old = align(reference, last_edge(level, biopac))  # late by the slowest bit each time
    assert abs(old.offset_s - OFFSET_S) * 1e3 > 0.5


def test_eeg_stim_channel_takes_the_first_edge_and_ignores_skew_steps():
    rng = np.random.default_rng(3)
    n = 20_000
    starts = np.array([1000, 4000, 7000, 10_000, 13_000])
    codes = np.array([101, 127, 148, 77, 112])
    level = skewed_levels(n, starts, codes, hold=1200, rng=rng)
    assert len(np.unique(level)) > len(codes) + 1  # the skew makes intermediate codes
    info = mne.create_info(["CZ", "Trigger"], FS, ["eeg", "stim"])
    raw = mne.io.RawArray(np.vstack([np.zeros(n), level]), info, verbose="error")
    markers = eeg_markers(raw)
    assert markers["code"].tolist() == [101, 127, 148, 112]
    assert markers.attrs["dropped_codes"] == {77: 1}  # noise code; no intermediate codes
    np.testing.assert_array_equal(np.rint(markers["onset_s"] * FS), starts[codes != 77])


@pytest.mark.parametrize("pulse", [1, 2])
def test_eeg_short_pulses_back_to_idle_stay_markers(pulse):
    level = np.zeros(3000, dtype=np.int64)
    level[500 : 500 + pulse] = 105
    level[2000 : 2000 + pulse] = 106
    raw = mne.io.RawArray(
        np.vstack([np.zeros(3000), level]),
        mne.create_info(["CZ", "Trigger"], FS, ["eeg", "stim"]),
        verbose="error",
    )
    markers = eeg_markers(raw)
    assert markers["code"].tolist() == [105, 106]
    assert markers["onset_s"].tolist() == [0.5, 2.0]
