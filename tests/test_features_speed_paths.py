"""The fast feature paths give the values of the paths they replace, on the same store."""

from __future__ import annotations

import contextlib
import functools

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


_BUTTER_CALLS = [
    ((5, 0.5), {"btype": "highpass", "output": "sos", "fs": 1000}),  # NeuroKit2's form
    ((4, [0.05, 3.0]), {"btype": "bandpass", "output": "sos", "fs": 250.0}),
    ((), {"N": 2, "Wn": 0.1, "btype": "highpass", "analog": False}),  # b, a
    ((3, np.array([0.1, 0.4]), "bandstop"), {"output": "zpk"}),
    ((4, np.float64(0.3)), {}),
    ((2, 10.0), {"analog": True, "output": "ba"}),
]


@pytest.mark.parametrize(("args", "kwargs"), _BUTTER_CALLS)
def test_memoised_butter_gives_scipys_designs_as_fresh_copies(args, kwargs):
    import scipy.signal

    from mmhe.features._physio_common import memoised_butter

    original = scipy.signal.butter
    want = original(*args, **kwargs)
    with memoised_butter():
        assert scipy.signal.butter is not original
        first = scipy.signal.butter(*args, **kwargs)
        second = scipy.signal.butter(*args, **kwargs)
    assert scipy.signal.butter is original
    want_parts = want if isinstance(want, tuple) else (want,)
    for got in (first, second):
        parts = got if isinstance(got, tuple) else (got,)
        assert len(parts) == len(want_parts)
        for part, expected in zip(parts, want_parts, strict=True):
            np.testing.assert_array_equal(part, expected, strict=True)
    for part in first if isinstance(first, tuple) else (first,):
        if isinstance(part, np.ndarray):
            part[...] = 0  # a caller may change its copy: the memo is not touched
    for part, expected in zip(
        second if isinstance(second, tuple) else (second,), want_parts, strict=True
    ):
        np.testing.assert_array_equal(part, expected)


def test_memoised_butter_passes_errors_and_is_undone_after_nested_blocks_and_threads():
    import threading

    import scipy.signal

    from mmhe.features._physio_common import memoised_butter

    original = scipy.signal.butter
    with pytest.raises(ValueError, match="Digital filter critical frequencies"):
        with memoised_butter():
            scipy.signal.butter(4, 600.0, fs=1000.0)  # above Nyquist: scipy's own error
    assert scipy.signal.butter is original
    with memoised_butter():
        with memoised_butter():
            pass
        assert scipy.signal.butter is not original  # the outer block still holds it
    assert scipy.signal.butter is original
    barrier = threading.Barrier(4)
    results = []

    def work():
        barrier.wait()
        for _ in range(50):
            with memoised_butter():
                results.append(scipy.signal.butter(4, [1.0, 40.0], "bandpass", fs=500.0)[0])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert scipy.signal.butter is original and len(results) == 200
    want = original(4, [1.0, 40.0], "bandpass", fs=500.0)[0]
    assert all(np.array_equal(b, want) for b in results)


def test_physio_features_with_memoised_designs_equal_scipys_designs(store_tiny, monkeypatch):
    """NeuroKit2 under `memoised_butter` (every physiology feature) gives exactly the
    values it gives with scipy's butter designing each filter anew, with far fewer designs."""
    import scipy.signal

    from mmhe.features import _physio_common

    store = MMHEStore(store_tiny)
    sid = store.participants()["subject_id"].iloc[0]
    expressions = store.expressions(participant=sid, located=True)
    config = PhysioFeatureConfig()
    original = scipy.signal.butter
    designs = {"n": 0}

    @functools.wraps(original)
    def counted(*args, **kwargs):
        designs["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(scipy.signal, "butter", counted)
    monkeypatch.setattr(_physio_common, "_BUTTER_DESIGNS", {})
    fast = batch._physio(store, sid, expressions, config)
    memoised = designs["n"]
    monkeypatch.setattr(_physio_common, "memoised_butter", lambda: contextlib.nullcontext())
    designs["n"] = 0
    slow = batch._physio(store, sid, expressions, config)
    assert 0 < memoised <= 20 and designs["n"] > 5 * memoised
    for got, want in zip(fast[:2], slow[:2], strict=True):
        assert len(got) and list(got.columns) == list(want.columns)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert fast[2] == slow[2]


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_one_blas_thread_limits_blas_and_restores_it_after_nested_and_threaded_blocks():
    import threading

    from threadpoolctl import threadpool_limits

    from mmhe import parallel
    from mmhe.parallel import one_blas_thread

    with threadpool_limits(limits=2, user_api="blas"):  # as on a 2-core machine
        before = _blas_threads()
        assert before and max(before) == 2
        with one_blas_thread():
            assert _blas_threads() == [1] * len(before)
            with one_blas_thread():
                pass
            assert _blas_threads() == [1] * len(before)  # the outer block still holds
        assert _blas_threads() == before
        barrier, done = threading.Barrier(3), []

        def task():  # overlapping blocks in threads: the last one out restores
            barrier.wait()
            for _ in range(5):
                with one_blas_thread():
                    done.append(parallel._ONE_BLAS_THREAD.blocks >= 1)

        threads = [threading.Thread(target=task) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert done == [True] * 15 and parallel._ONE_BLAS_THREAD.blocks == 0
        assert _blas_threads() == before


def test_physio_features_on_one_blas_thread_equal_those_on_two(store_tiny, tmp_path, monkeypatch):
    """A feature task runs BLAS on one thread (`one_blas_thread`): the same values as with
    two threads, and the limit is active inside the task."""
    from threadpoolctl import threadpool_limits

    store = MMHEStore(store_tiny)
    sid = store.participants()["subject_id"].iloc[0]
    expressions = store.expressions(participant=sid, located=True)
    config = PhysioFeatureConfig()
    inside = []
    original = batch._physio

    def spy(*args):
        inside.append(max(_blas_threads()))
        return original(*args)

    monkeypatch.setattr(batch, "_physio", spy)
    with threadpool_limits(limits=2, user_api="blas"):
        summary = batch._participant(
            str(store_tiny), sid, "physio", batch.FeatureConfig(), str(tmp_path), "k"
        )
        two = original(store, sid, expressions, config)
    assert inside == [1] and summary["samples"] == len(expressions)
    folder = tmp_path / "participants" / sid
    want = two[0].set_index("expression_id")
    got = pd.read_parquet(folder / "physio.parquet").set_index("expression_id")[want.columns]
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12, atol=0)
    want_trials = two[1].reset_index(drop=True)
    got_trials = pd.read_parquet(folder / "physio_trial.parquet")[want_trials.columns]
    assert len(want_trials) and np.isfinite(got_trials["SKT_A_slope_per_s"]).any()
    pd.testing.assert_frame_equal(got_trials, want_trials, check_exact=False, rtol=1e-12, atol=0)
