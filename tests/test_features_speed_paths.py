"""The fast feature paths give the values of the paths they replace, on the same store."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pytest

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


def test_eeg_filtered_once_per_session_equals_mne_on_the_continuous_recording(store_tiny):
    """Trials cut from the session filtered once (one pass of MNE's two designs) equal
    MNE's own notch + band-pass + average reference of the whole continuous session."""
    import mne

    from mmhe.features.batch import EEGFeatureConfig
    from mmhe.features.eeg import preprocess
    from mmhe.features.eeg_filter import session_kernel

    store = MMHEStore(store_tiny)
    sid = store.participants()["subject_id"].iloc[0]
    config = EEGFeatureConfig()
    produced = batch._filtered_trials(store, sid, config)
    _, channels = next(produced)
    got = list(produced)
    session = store._group(sid)["eeg_continuous"]
    names = list(session.attrs["channels"])
    picks = [names.index(c) for c in channels]
    sfreq = float(session.attrs["sfreq"])
    raw = mne.io.RawArray(
        np.asarray(session[...], np.float64)[picks],
        mne.create_info(channels, sfreq, "eeg"),
        verbose="error",
    )
    reference = preprocess(raw).get_data()
    edge = session_kernel(sfreq).size  # MNE pads each of its two passes at the ends
    trials = store.trials(participant=sid)
    assert [t.trial_index for t, _ in got] == list(trials["trial_index"])
    scale = np.abs(reference).max()
    compared = 0
    for trial, data in got:
        start = int(trial.eeg_start)
        want = reference[:, start : start + int(trial.n_eeg_samples)]
        assert data.shape == want.shape
        keep = np.arange(start, start + data.shape[1])
        inner = (keep >= edge) & (keep < reference.shape[1] - edge)
        np.testing.assert_allclose(data[:, inner], want[:, inner], rtol=0, atol=1e-9 * scale)
        compared += int(inner.sum())
    assert compared > 0.5 * sum(int(t.n_eeg_samples) for t in trials.itertuples())


def test_eeg_filter_on_several_threads_gives_the_values_of_one(monkeypatch):
    """The session filter's FFTs run on `task_threads` threads: bit-identical output."""
    from mmhe.features.eeg_filter import filter_with_context, session_kernel

    x = np.random.default_rng(3).standard_normal((8, 30_000))
    kernel = session_kernel(1000.0)
    results = []
    for threads in (1, 2):
        monkeypatch.setattr("mmhe.parallel.task_threads", lambda n=threads: n)
        results.append(filter_with_context(x, kernel, 500, 700))
    assert results[0].shape == (8, 30_000 - 1_200)
    np.testing.assert_array_equal(results[0], results[1])


def test_session_kernel_is_designed_once_and_read_only():
    """Issue 21: a participant's EEG features reuse the process's kernel design; a caller
    cannot change the shared kernel, and it equals a fresh design."""
    from mmhe.features.eeg_filter import session_kernel

    first = session_kernel(1000.0, l_freq=1.0, h_freq=47.0, notch=50.0)
    assert session_kernel(1000.0, l_freq=1.0, h_freq=47.0, notch=50.0) is first
    np.testing.assert_array_equal(first, session_kernel.__wrapped__(1000.0))
    with pytest.raises(ValueError):
        first[0] = 0.0
    assert session_kernel(500.0) is not first and session_kernel(500.0).size < first.size


def test_face_features_run_opencv_on_the_task_threads(monkeypatch):
    """Issue 21: in a one-thread worker OpenCV uses one thread for the face features,
    and the process's setting is restored afterwards; a task may ask for a count."""
    import cv2

    from mmhe import parallel

    seen = []
    before = cv2.getNumThreads()
    monkeypatch.setattr(parallel, "task_threads", lambda: 1)
    monkeypatch.setattr(batch, "_face_images", lambda *a: seen.append(cv2.getNumThreads()))
    batch._face(None, "sub-001", pd.DataFrame(), batch.FaceFeatureConfig())
    with parallel.opencv_threads(1):
        seen.append(cv2.getNumThreads())
    assert seen == [1, 1] and cv2.getNumThreads() == before
