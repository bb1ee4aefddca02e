"""Ingest reads the EEG once, in blocks: the session is stored once and trials are views
of it, or (without the session) every trial is cut from the blocks it spans."""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
import pytest
import zarr

from mmhe.store import participant
from mmhe.store.participant import Inspection, _write_eeg
from mmhe.store.trial_view import TrialEEG


def _raw(n: int = 5_000) -> mne.io.RawArray:
    rng = np.random.default_rng(7)
    info = mne.create_info(["Fp1", "Cz", "O2", "STI"], 1000.0, ["eeg", "eeg", "eeg", "stim"])
    data = rng.normal(0, 2e-5, (4, n))
    data[3] = 0
    return mne.io.RawArray(data, info, verbose="error")


@pytest.mark.parametrize("continuous", [True, False])
def test_trials_cut_from_blocks_equal_reading_each_trial(tmp_path, monkeypatch, continuous):
    monkeypatch.setattr(participant, "CONTINUOUS_CHUNK_SAMPLES", 700)  # trials span blocks
    monkeypatch.setattr(participant, "CONTINUOUS_READ_SAMPLES", 300)  # 3 chunks per shard
    raw = _raw()
    # overlapping trials, one inside a single block, one ending on a block edge, one empty
    starts, stops = [100, 650, 1400, 2100, 3000], [1500, 2800, 2100, 2100, 4999]
    trials = pd.DataFrame(
        {
            "trial_index": range(5),
            "code": [100, 101, 102, 103, 104],
            "category": ["a"] * 5,
            "eeg_start": starts,
            "eeg_stop": stops,
        }
    )
    found = Inspection("sub-001", files=None, raw=raw)
    group = zarr.open_group(str(tmp_path / "a.zarr"), mode="w")
    _write_eeg(group, found, trials, None, continuous)
    if continuous:  # one copy of the samples: trials are spans of the session
        assert "eeg" not in group
        eeg = TrialEEG(group["eeg_continuous"], group["eeg_start"][:], group["n_eeg_samples"][:])
    else:
        eeg = group["eeg"]
    stored = eeg[...]
    assert stored.shape == (5, 3, 2150)
    for i, (start, stop) in enumerate(zip(starts, stops, strict=True)):
        expected = raw.get_data(picks=[0, 1, 2], start=start, stop=stop).astype("float32")
        np.testing.assert_array_equal(stored[i, :, : stop - start], expected)
        assert np.isnan(stored[i, :, stop - start :]).all()
    assert trials["n_eeg_samples"].tolist() == [b - a for a, b in zip(starts, stops, strict=True)]
    assert ("eeg_continuous" in group) == continuous
    if continuous:
        np.testing.assert_array_equal(
            group["eeg_continuous"][...], raw.get_data(picks=[0, 1, 2]).astype("float32")
        )
        assert group["eeg_continuous"].attrs["sfreq"] == 1000.0
        assert group["eeg_continuous"].chunks == (3, 300)
        assert group["eeg_continuous"].shards == (3, 900)
    assert eeg.attrs["channels"] == ["Fp1", "Cz", "O2"]
    assert eeg.attrs["coordinates"] == "marker category eeg_channel_type"
    assert group["eeg_time"].shape == (2150,)


@pytest.mark.parametrize("continuous", [True, False])
def test_real_curry_recording_trials_equal_the_vendor_reader(tmp_path, monkeypatch, continuous):
    """Curry's own Float.cdt (32 channels, 250 Hz), trials from its trigger events: every
    stored or viewed trial equals the vendor reader's samples (µV there, volts here)."""
    from pathlib import Path

    from mmhe.io.eeg import read_eeg

    here = Path(__file__).resolve().parents[1]
    found = [p / "data" / "curry" for p in (here.parent / "shared", Path("/work/shared"))]
    curry = next((p for p in found if (p / "Float.cdt").is_file()), None)
    if curry is None:
        pytest.skip("the shared Curry test recording is not on this machine")
    monkeypatch.setattr(participant, "CONTINUOUS_CHUNK_SAMPLES", 1000)  # trials span shards
    monkeypatch.setattr(participant, "CONTINUOUS_READ_SAMPLES", 250)
    raw = read_eeg(curry / "Float.cdt", montage=False)
    reference = np.load(curry / "Float.reference.npy").T * 1e-6  # (32, 3750) volts
    events, _ = mne.events_from_annotations(raw, verbose="error")
    onsets = events[:, 0].tolist()
    starts, stops = onsets, [*onsets[1:], raw.n_times]  # a trial lasts to the next event
    trials = pd.DataFrame(
        {
            "trial_index": range(len(starts)),
            "code": events[:, 2],
            "category": ["a"] * len(starts),
            "eeg_start": starts,
            "eeg_stop": stops,
        }
    )
    group = zarr.open_group(str(tmp_path / "a.zarr"), mode="w")
    _write_eeg(group, Inspection("sub-001", files=None, raw=raw), trials, None, continuous)
    eeg = (
        TrialEEG(group["eeg_continuous"], group["eeg_start"][:], group["n_eeg_samples"][:])
        if continuous
        else group["eeg"]
    )
    assert len(starts) >= 5 and eeg.shape == (len(starts), 32, max(np.subtract(stops, starts)))
    for i, (start, stop) in enumerate(zip(starts, stops, strict=True)):
        np.testing.assert_allclose(
            eeg[i, :, : stop - start], reference[:, start:stop], rtol=1e-6, atol=1e-12
        )
        assert np.isnan(eeg[i, :, stop - start :]).all()
