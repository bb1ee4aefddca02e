"""Feature drivers over an ingested synthetic store: caching, shapes, and recovery of the
quantities the generator planted (ground_truth.json)."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from mmhe.features.batch import (
    FaceFeatureConfig,
    FeatureConfig,
    compute_features,
    eeg_feature_channels,
    feature_issues,
    load_features,
)
from mmhe.store import MMHEStore


@pytest.fixture(scope="module")
def featured(store_tiny):
    compute_features(store_tiny, scheduler="sync")
    return store_tiny


def _truth_by_trial(synth_tiny, store_tiny, key):
    truth = json.loads((synth_tiny / "ground_truth.json").read_text())
    mapping = pd.read_csv(store_tiny.parent.with_name(store_tiny.parent.name + ".pseudonyms.csv"))
    ids = dict(zip(mapping["name"], mapping["subject_id"], strict=True))
    return pd.DataFrame(
        [
            {"subject_id": ids[p["subject"].lower()], "code": int(code), **values}
            for p in truth["participants"]
            for code, values in p[key].items()
        ]
    )


def test_shapes_cache_and_new_parameters(featured):
    store = MMHEStore(featured)
    n = len(store.expressions(located=True))
    face_table, face = load_features(featured, "face")
    assert face.shape == (n, 3, 28, 28) and face_table["ok"].all()
    assert np.isfinite(face).all() and np.abs(face).max() <= 1.0 + 1e-6
    eeg_table, eeg = load_features(featured, "eeg")
    assert eeg.shape[:2] == (n, 8) and eeg.shape[2:] == (62, 5)  # M1, M2 excluded
    assert "M1" not in eeg_feature_channels(featured)
    clipped = feature_issues(featured, "eeg")["code"].eq("eeg_window_clipped").sum()
    assert (eeg_table["n_windows"] >= 1).all()  # >= 2 s: onset - 1 s .. offset + 1 s
    assert (eeg_table["n_windows"] < 2).sum() <= clipped
    first = eeg_table["n_windows"].iloc[0]
    assert np.isfinite(eeg[0, :first]).all() and np.isnan(eeg[0, first:]).all()
    physio, none = load_features(featured, "physio")
    assert none is None and len(physio) == n
    assert physio["ECG_rate_bpm"].between(40, 120).all()
    trials, trial_eeg = load_features(featured, "eeg", trial=True)
    assert len(trials) == len(store.trials()) == trial_eeg.shape[0]

    started = time.perf_counter()
    compute_features(featured, scheduler="sync")  # unchanged parameters: reused
    assert time.perf_counter() - started < 1.0
    dis = FeatureConfig(face=FaceFeatureConfig(method="dis"))
    folders = compute_features(featured, ("face",), config=dis, scheduler="sync")
    assert folders["face"].name != load_features.__name__
    _, face_dis = load_features(featured, "face", config=dis)
    assert face_dis.shape == face.shape and not np.allclose(face_dis, face)
    face_issues = feature_issues(featured, "face")
    assert set(face_issues["code"]) <= {"no_frames", "face_head_motion"}
    # the twin's head sways by up to 4 % of its height: the flag follows the measured motion
    flagged = face_table["expression_id"].isin(
        face_issues.loc[face_issues["code"] == "face_head_motion", "sample"]
    )
    assert (face_table.loc[flagged, "head_motion"] > 0.1).all()
    assert (face_table.loc[~flagged, "head_motion"] <= 0.1).all()
    assert (face_table["landmarks_missing"] == 0).all() and not face_table["out_of_frame"].any()
    assert (face_table["fit_residual"] < 0.05).all()  # the twin's head only translates


def test_physiology_recovers_planted_rates(featured, synth_tiny):
    truth = _truth_by_trial(synth_tiny, featured, "physio_targets")
    measured, _ = load_features(featured, "physio", trial=True)
    both = truth.merge(measured, on=["subject_id", "code"])
    assert len(both) >= 12
    assert np.abs(both["ECG_rate_bpm"] - both["heart_rate"]).median() < 2.0
    assert np.corrcoef(both["ECG_rate_bpm"], both["heart_rate"])[0, 1] > 0.9
    assert np.corrcoef(both["PPG_rate_bpm"], both["heart_rate"])[0, 1] > 0.9
    rsp = both.dropna(subset=["RSP_rate_per_min"])
    assert np.abs(rsp["RSP_rate_per_min"] - rsp["breathing_rate"]).median() < 1.5
    assert np.corrcoef(both["SKT_A_mean"], both["skin_temperature"])[0, 1] > 0.8
    assert np.corrcoef(both["EDA_scr_count"], both["scr_per_min"])[0, 1] > 0.4


def test_eeg_band_power_recovers_planted_gains(featured, synth_tiny):
    truth = _truth_by_trial(synth_tiny, featured, "eeg_gains")
    table, power = load_features(featured, "eeg", trial=True)
    channels = eeg_feature_channels(featured)
    mean = np.nanmean(power, axis=1)  # trials x channels x bands (log10 V^2/Hz)
    table = table.assign(
        asymmetry=mean[:, channels.index("F3"), 2] - mean[:, channels.index("F4"), 2],
        fast=mean[:, [channels.index(c) for c in ("T7", "T8", "FT7", "FT8")], 3:].mean(axis=(1, 2)),
    )
    both = truth.merge(table, on=["subject_id", "code"])
    # compare within participants: remove each participant's mean
    centred = both.groupby("subject_id")[
        ["asymmetry", "fast", "alpha_left", "alpha_right", "beta_gamma"]
    ].transform(lambda c: c - c.mean())
    planted_asymmetry = np.log10(both["alpha_left"] / both["alpha_right"])
    planted_asymmetry -= planted_asymmetry.groupby(both["subject_id"]).transform("mean")
    assert np.corrcoef(centred["asymmetry"], planted_asymmetry)[0, 1] > 0.6
    planted_fast = np.log10(both["beta_gamma"])
    planted_fast -= planted_fast.groupby(both["subject_id"]).transform("mean")
    assert np.corrcoef(centred["fast"], planted_fast)[0, 1] > 0.6


def test_labelled_features_name_every_axis(featured):
    import xarray as xr

    eeg = load_features(featured, "eeg", labelled=True)
    table, array = load_features(featured, "eeg")
    assert isinstance(eeg, xr.DataArray)
    assert eeg.dims == ("sample", "window", "channel", "band")
    np.testing.assert_array_equal(eeg.values, array)
    assert list(eeg["channel"].values) == eeg_feature_channels(featured)
    assert list(eeg["band"].values) == ["delta", "theta", "alpha", "beta", "gamma"]
    assert list(eeg["band_low_hz"].values) == [1.0, 4.0, 8.0, 13.0, 30.0]
    assert list(eeg["sample"].values) == list(table["expression_id"])
    assert list(eeg["compound"].values) == list(table["compound"])
    negative = eeg.sel(sample=eeg["compound"] == "negative")
    assert negative.sizes["sample"] == int((table["compound"] == "negative").sum())
    alpha_f3 = eeg.sel(channel="F3", band="alpha").values
    np.testing.assert_array_equal(
        alpha_f3, array[:, :, eeg_feature_channels(featured).index("F3"), 2]
    )

    face = load_features(featured, "face", labelled=True)
    assert face.dims == ("sample", "flow", "y", "x")
    assert list(face["flow"].values) == ["strain", "horizontal", "vertical"]
    physio_table, _ = load_features(featured, "physio")
    physio = load_features(featured, "physio", labelled=True)
    assert physio.dims == ("sample", "feature")
    np.testing.assert_array_equal(
        physio.sel(feature="ECG_rate_bpm").values, physio_table["ECG_rate_bpm"].to_numpy()
    )
    trials = load_features(featured, "eeg", trial=True, labelled=True)
    assert trials["sample"].values[0] == "sub-001/0"
    assert trials.attrs["level"] == "trial" and trials.attrs["units"] == "log10(V^2/Hz)"
