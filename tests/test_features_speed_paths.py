"""The fast feature paths give the values of the paths they replace, on the same store."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd

from mmhe.features import batch
from mmhe.features.batch import PhysioFeatureConfig
from mmhe.store import MMHEStore


def test_physio_features_with_shared_steps_equal_each_step_run_separately(store_tiny, monkeypatch):
    """Trial features and event series share their NeuroKit2 steps (`shared_steps`):
    every value equals the previous path, where each step ran again for the series."""
    store = MMHEStore(store_tiny)
    sid = store.participants()["subject_id"].iloc[0]
    expressions = store.expressions(participant=sid, located=True)
    config = PhysioFeatureConfig()
    fast = batch._physio(store, sid, expressions, config)
    calls = {"n": 0}
    from mmhe.features import cardiac

    original = cardiac.detect_beats.__wrapped__

    def counted(*args):
        calls["n"] += 1
        return original(*args)

    monkeypatch.setattr(cardiac, "detect_beats", counted)
    monkeypatch.setattr("mmhe.features.physio_events.detect_beats", counted)
    monkeypatch.setattr(
        "mmhe.features._physio_common.shared_steps", lambda: contextlib.nullcontext()
    )
    slow = batch._physio(store, sid, expressions, config)
    assert calls["n"] > 0  # the reference path really ran the steps again
    for got, want in zip(fast[:2], slow[:2], strict=True):
        assert len(got) and list(got.columns) == list(want.columns)
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12, atol=0)
    assert fast[2] == slow[2]
    numeric = fast[0].select_dtypes("number")
    assert np.isfinite(numeric.to_numpy()).any()
