"""The store handed to MNE, xarray and PyTorch: epochs against the expressions table and
the raw EEG file, every Zarr array opened by xarray, a DataLoader batch of every modality."""

from __future__ import annotations

import mne
import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from torch.utils.data import DataLoader

from mmhe.errors import ConfigError
from mmhe.io.eeg import NEUROSCAN_64, quikcap_montage
from mmhe.store import MMHEStore

FRAME_PERIOD_S = 1 / 150


@pytest.fixture(scope="module")
def store(store_tiny):
    return MMHEStore(store_tiny)


def _raw_file(synth_tiny, store_tiny, subject_id):
    """The participant's raw EEGLAB file, read by MNE alone (the independent reference)."""
    mapping = pd.read_csv(store_tiny.parent.with_name(store_tiny.parent.name + ".pseudonyms.csv"))
    name = dict(zip(mapping["subject_id"], mapping["name"], strict=True))[subject_id]
    folder = next(p for p in synth_tiny.iterdir() if p.is_dir() and p.name.lower() == name)
    return mne.io.read_raw_eeglab(folder / "EEG" / "Acquisition 01.set", verbose="error")


def test_expression_epochs_match_the_table_and_the_raw_file(store, synth_tiny, store_tiny):
    sid = store.participant_ids()[0]
    table = store.expressions(participant=sid, located=True)
    epochs = store.expression_epochs(sid, tmin=-0.2, tmax=0.5)
    sfreq = epochs.info["sfreq"]
    assert len(epochs) == len(table) and epochs.times[0] == pytest.approx(-0.2)
    assert len(epochs.times) == round(0.7 * sfreq) + 1
    meta = epochs.metadata
    assert list(meta["expression_id"]) == list(table["expression_id"])
    for column in ("emotion", "compound", "kind", "marker", "trial_index"):
        assert list(meta[column]) == list(table[column])
    assert list(meta["aus"]) == ["+".join(map(str, a)) for a in table["aus"]]
    np.testing.assert_allclose(meta["onset_time"], table["eeg_onset"].astype(float) / sfreq)
    np.testing.assert_allclose(
        meta["apex_latency_s"], (table["eeg_apex"] - table["eeg_onset"]).astype(float) / sfreq
    )
    np.testing.assert_array_equal(meta["lock_sample"], table["eeg_onset"].astype(int))
    assert len(set(epochs.events[:, 0])) == len(epochs)
    for name in set(epochs.event_id):
        kind, emotion = name.split("/")
        assert len(epochs[name]) == int(
            ((table["kind"] == kind) & (table["emotion"] == emotion)).sum()
        )

    raw = _raw_file(synth_tiny, store_tiny, sid)
    data = epochs.get_data()
    for i, onset in enumerate(table["eeg_onset"].astype(int)):
        start = onset + round(-0.2 * sfreq)
        reference = raw.get_data(picks=epochs.ch_names, start=start, stop=start + data.shape[2])
        np.testing.assert_allclose(data[i], reference, rtol=1e-6, atol=1e-12)  # float32 store

    apex = store.expression_epochs(sid, tmin=0.0, tmax=0.1, lock="apex", picks="eeg")
    np.testing.assert_array_equal(apex.metadata["lock_sample"], table["eeg_apex"].astype(int))
    assert np.allclose(apex.metadata["apex_latency_s"], 0.0)
    assert len(apex.ch_names) == 64
    positions = np.array([ch["loc"][:3] for ch in apex.info["chs"]])
    assert np.isfinite(positions).all()  # CB1/CB2 included
    baseline = store.expression_epochs(sid, tmin=-0.2, tmax=0.2, baseline=(None, 0))
    assert np.abs(baseline.get_data()[:, :, :201].mean(axis=2)).max() < 1e-12  # -0.2 .. 0 s
    with pytest.raises(ConfigError, match="lock"):
        store.expression_epochs(sid, lock="offset")


def test_quikcap_montage_is_the_10_05_template_plus_cerebellar_leads():
    montage = quikcap_montage()
    assert montage.ch_names == list(NEUROSCAN_64)
    positions = montage.get_positions()["ch_pos"]
    name = (
        "colin27_1005" if "colin27_1005" in mne.channels.get_builtin_montages() else "standard_1005"
    )
    template = mne.channels.make_standard_montage(name).get_positions()["ch_pos"]
    np.testing.assert_allclose(positions["FP1"], template["Fp1"])
    np.testing.assert_allclose(positions["O1"], template["O1"])
    # cerebellar leads: below and lateral to O1 / O2, on the same side
    assert positions["CB1"][2] < positions["O1"][2] and positions["CB1"][0] < positions["O1"][0]
    assert positions["CB2"][2] < positions["O2"][2] and positions["CB2"][0] > positions["O2"][0]


def test_trial_epochs_keep_every_trial_whole(store):
    sid = store.participant_ids()[0]
    trials = store.trials(participant=sid).sort_values("trial_index")
    epochs = store.trial_epochs(sid)
    sfreq = epochs.info["sfreq"]
    lengths = trials["n_eeg_samples"].to_numpy()
    assert len(epochs) == len(trials) and len(epochs.times) == lengths.max()
    data = epochs.get_data()
    for i, trial in enumerate(trials.itertuples()):
        n = int(trial.n_eeg_samples)
        np.testing.assert_array_equal(data[i, :, :n], store.eeg_trial(sid, trial.trial_index))
        assert not data[i, :, n:].any()  # zeros after the trial's end
        assert epochs.metadata["samples_zero_filled"].iloc[i] == lengths.max() - n
    np.testing.assert_allclose(epochs.metadata["duration_s"], lengths / sfreq)
    assert sorted(epochs.event_id) == sorted(
        f"{c}/{m}" for c, m in zip(trials["category"], trials["code"], strict=True)
    )
    recorded = store.trial_epochs(sid, tmin=-0.5, tmax=2.0, pad="recording")
    continuous = store.raw(sid).get_data()
    first = round(trials["onset_s"].iloc[1] * sfreq) - 500
    np.testing.assert_array_equal(recorded.get_data()[1], continuous[:, first : first + 2501])
    assert store.to_epochs(sid).get_data().shape == data.shape  # the old name


def test_continuous_raw_holds_every_trial_and_annotation(store):
    sid = store.participant_ids()[1]
    raw = store.raw(sid)
    trials = store.trials(participant=sid)
    located = store.expressions(participant=sid, located=True)
    for trial in trials.itertuples():
        n = int(trial.n_eeg_samples)
        np.testing.assert_array_equal(
            raw.get_data(start=int(trial.eeg_start), stop=int(trial.eeg_start) + n),
            store.eeg_trial(sid, trial.trial_index),
        )
    names = list(raw.annotations.description)
    assert sum(n.startswith("trial/") for n in names) == len(trials)
    assert sum(not n.startswith("trial/") for n in names) == int(located["eeg_onset"].notna().sum())
    assert raw.info["line_freq"] == 50.0


def _arrays(group, prefix=""):
    for name, array in group.arrays():
        yield prefix + name, array
    for name, sub in group.groups():
        yield from _arrays(sub, f"{prefix}{name}/")


def test_xarray_opens_every_array_with_names_and_coordinates(store):
    import xarray as xr

    for sid in store.participant_ids():
        path = store.path / "participants" / sid / "arrays.zarr"
        tree = xr.open_datatree(path, engine="zarr")
        opened = {
            f"{node.path.strip('/')}/{name}".lstrip("/")
            for node in tree.subtree
            for name in node.to_dataset(inherit=False).variables
        }
        stored = {name for name, _ in _arrays(zarr.open_group(str(path), mode="r"))}
        assert stored and stored == opened
        ds = store.to_xarray(sid)
        eeg = store.eeg(sid)
        assert ds["eeg"].dims == ("trial", "eeg_channel", "eeg_time")
        assert list(ds["eeg_channel"].values) == list(eeg.attrs["channels"])
        assert ds["eeg_time"].values[1] == pytest.approx(1 / eeg.attrs["sfreq"])
        trials = store.trials(participant=sid)
        assert list(ds["marker"].values) == list(trials["code"])
        np.testing.assert_array_equal(
            ds["eeg"].sel(trial=1, eeg_channel="CZ").values[: int(trials["n_eeg_samples"].iloc[1])],
            store.eeg_trial(sid, 1)[list(eeg.attrs["channels"]).index("CZ")],
        )
        assert list(ds["physio_channel"].values) == list(store.physio(sid).attrs["channels"])
        for row in store.expressions(participant=sid, located=True).itertuples():
            frames = store.to_xarray(sid, row.expression_id)
            assert frames["frame"].values[0] == row.frames_first
            assert frames["image"].shape == store.frames(row.expression_id).shape
            # the onset frame's time on the EEG clock is where the EEG onset is
            onset_time = float(frames["time"].sel(frame=row.frame_onset))
            assert abs(onset_time - row.eeg_onset / eeg.attrs["sfreq"]) <= FRAME_PERIOD_S + 0.003


def test_dataloader_batches_every_modality(store):
    data = store.torch_dataset(kind=None, label="emotion7", frames=8)
    assert data.classes == (
        "happiness",
        "disgust",
        "fear",
        "anger",
        "surprise",
        "sadness",
        "contempt",
    )
    batch = next(iter(DataLoader(data, batch_size=4, collate_fn=data.collate)))
    assert batch["face"].shape[:3] == (4, 8, 3) and batch["face"].dtype == torch.float32
    assert batch["eeg"].shape == (4, 68, 2000) and batch["physio"].shape == (4, 9, 8000)
    assert batch["label"].shape == (4,) and all(batch["present"][m].all() for m in data.modalities)
    first = data.table.iloc[0]
    frames = store.frames(first["expression_id"])
    onset, offset = (
        int(first["frame_onset"] - first["frames_first"]),
        int(first["frame_offset"] - first["frames_first"]),
    )
    expected = (
        frames[np.rint(np.linspace(onset, offset, 8)).astype(int)].transpose(0, 3, 1, 2) / 255.0
    )
    np.testing.assert_allclose(batch["face"][0].numpy(), expected, rtol=1e-6)
    trial = (
        store.trials(participant=first["subject_id"])
        .set_index("trial_index")
        .loc[int(first["trial_index"])]
    )
    at = int(first["eeg_onset"]) - int(trial["eeg_start"])
    np.testing.assert_array_equal(
        batch["eeg"][0].numpy(),
        store.eeg(first["subject_id"])[int(first["trial_index"]), :, at - 1000 : at + 1000],
    )
    assert data.classes[int(batch["label"][0])] == first["emotion"]

    smooth = store.torch_dataset(kind=None, frames=3, sampling="interpolate", modalities=["face"])
    row = smooth.table.iloc[0]
    frames = store.frames(row["expression_id"]).astype(np.float32)
    a, b = (
        int(row["frame_onset"] - row["frames_first"]),
        int(row["frame_offset"] - row["frames_first"]),
    )
    middle = (a + b) / 2
    low = int(np.floor(middle))
    w = middle - low
    blend = (1 - w) * frames[low] + w * frames[min(low + 1, len(frames) - 1)]
    np.testing.assert_allclose(
        smooth[0]["face"][1].numpy(), blend.transpose(2, 0, 1) / 255.0, rtol=1e-5
    )
    assert set(smooth[0]) == {"face", "present", "label", "subject_id", "expression_id"}

    flipped = store.torch_dataset(modalities=["eeg"], transform={"eeg": lambda x: -x})
    plain = store.torch_dataset(modalities=["eeg"])
    assert torch.equal(flipped[0]["eeg"], -plain[0]["eeg"])


def test_torch_dataset_refuses_unknown_names(store):
    with pytest.raises(ConfigError, match="emotion7"):
        store.torch_dataset(label="emotion")
    with pytest.raises(ConfigError, match="audio"):
        store.torch_dataset(modalities=["face", "audio"])
    with pytest.raises(ConfigError, match="sampling"):
        store.torch_dataset(sampling="cubic")
    whole = store.torch_dataset(kind=None, frames=None, modalities=["face"])
    lengths = whole.table["stored_frames"]
    i, j = int(lengths.idxmin()), int(lengths.idxmax())
    assert whole[i]["face"].shape[0] == lengths[i] < lengths[j] == whole[j]["face"].shape[0]
    with pytest.raises(ConfigError, match="frames=N"):
        whole.collate([whole[i], whole[j]])


def test_readme_notebook_snippet_runs(store_tiny):
    """The README's store -> Epochs / xarray / DataLoader snippet, run as a user would."""
    import re
    from pathlib import Path

    from mmhe.features.batch import compute_features

    compute_features(store_tiny, ("eeg",), scheduler="sync")  # cached by earlier tests
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    snippet = re.search(r"### In a notebook.*?```python\n(.*?)```", readme, re.S).group(1)
    namespace: dict = {}
    exec(snippet.replace('"STORE"', repr(str(store_tiny))), namespace)
    assert namespace["batch"]["face"].shape[:2] == (4, 16)
    assert namespace["power"].dims == ("sample", "window", "channel", "band")
    assert len(namespace["epochs"]) == len(
        MMHEStore(store_tiny).expressions(participant="sub-001", located=True)
    )
