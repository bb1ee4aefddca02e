"""TrialEEG (trials as views of the continuous session) indexes like the padded array."""

from __future__ import annotations

import numpy as np
import pytest

from mmhe.errors import InputFileError
from mmhe.store.trial_view import TrialEEG


class _Session(np.ndarray):
    """A NumPy session with ``attrs``, counting the samples each read returns."""

    attrs: dict
    samples_read: list


def _session(n_channels: int = 4, n_samples: int = 3_000) -> _Session:
    data = np.random.default_rng(3).normal(size=(n_channels, n_samples)).astype("float32")
    session = data.view(_Session)
    session.attrs = {"sfreq": 1000.0, "channels": list("ABCD")[:n_channels]}
    return session


STARTS, LENGTHS = [0, 400, 2000, 2900, 1000], [500, 1200, 1000, 0, 100]


def _padded(session: np.ndarray) -> np.ndarray:
    """The reference: the trials x channels x samples array, NaN after each trial's end."""
    out = np.full((len(STARTS), session.shape[0], max(LENGTHS)), np.nan, np.float32)
    for i, (start, length) in enumerate(zip(STARTS, LENGTHS, strict=True)):
        out[i, :, :length] = session[:, start : start + length]
    return out


KEYS = [
    (...,),
    (1,),
    (-1,),
    (slice(1, 4),),
    (2, 3),
    (0, slice(None), slice(100, 900)),
    (1, slice(None), slice(1190, 1300)),  # past the trial's end: NaN
    (slice(None), [3, 0], slice(None, None, 7)),
    ([4, 0, 2], slice(1, 3), 50),
    (..., 17),
    (-2, -1, -3),
    (slice(None, None, -1), 0, slice(5, 9)),
    (1, ..., slice(1100, 1100)),  # empty
    (np.array([2, 2]), 1, slice(995, 1003)),
]


@pytest.mark.parametrize("key", KEYS, ids=[repr(k) for k in KEYS])
def test_view_indexes_like_the_padded_array(key):
    session = _session()
    view = TrialEEG(session, np.array(STARTS), np.array(LENGTHS))
    expected = _padded(np.asarray(session))[key]
    got = view[key]
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got, expected)


def test_lists_in_several_places_select_orthogonally_as_zarr_oindex():
    session = _session()
    view = TrialEEG(session, STARTS, LENGTHS)
    trials, channels, times = [4, 1], [2, 0, 3], [0, 99, 150]
    expected = _padded(np.asarray(session))[np.ix_(trials, channels, times)]
    np.testing.assert_array_equal(view[trials, channels, times], expected)
    # an integer and a list apart: NumPy moves the list's axis first, Zarr and we do not
    times = np.array([499, 0, 5, 700])
    expected = _padded(np.asarray(session))[0][:, times]
    np.testing.assert_array_equal(view[0, :, times], expected)


def test_view_shape_attrs_and_array():
    session = _session()
    view = TrialEEG(session, STARTS, LENGTHS)
    assert view.shape == (5, 4, 1200) and view.ndim == 3 and len(view) == 5
    assert view.attrs["sfreq"] == 1000.0
    assert view.attrs["coordinates"] == "marker category eeg_channel_type"
    np.testing.assert_array_equal(np.asarray(view), _padded(np.asarray(session)))


def test_view_reads_only_the_asked_samples():
    session = _session()
    reads = []

    class Counting:
        shape, dtype, attrs = session.shape, session.dtype, session.attrs

        def __getitem__(self, key):
            block = np.asarray(session)[key]
            reads.append(block.shape)
            return block

    view = TrialEEG(Counting(), STARTS, LENGTHS)
    view[1, :, 100:300]
    view[3]  # an empty trial reads nothing
    view[0, :, 600:900]  # after the trial's end: nothing to read
    assert reads == [(4, 200)]


def test_trial_outside_the_session_is_a_damaged_store():
    with pytest.raises(InputFileError, match=r"trial\(s\) \[1\] do not lie inside the 3000"):
        TrialEEG(_session(), [0, 2900], [10, 200], "sub-001/arrays.zarr")


@pytest.mark.parametrize("key", [(0, 0, 0, 0), (..., ...), (0.5,), ("a",), ([[0, 1]],)])
def test_bad_keys_raise_index_error(key):
    with pytest.raises(IndexError):
        TrialEEG(_session(), STARTS, LENGTHS)[key]


def test_validate_store_reports_trial_spans_that_do_not_fit(store_tiny, tmp_path):
    import shutil

    import pandas as pd
    import zarr

    from mmhe.store.validate import validate_store

    damaged = tmp_path / store_tiny.name
    shutil.copytree(store_tiny, damaged)
    _, problems = validate_store(damaged)
    assert not [p for p in problems if p["code"] == "store_mismatch"]
    first, second = sorted(p.name for p in (damaged / "participants").iterdir())[:2]
    # the table moved one trial by a sample; the stored span of another runs off the session
    table = damaged / "participants" / first / "trials.parquet"
    trials = pd.read_parquet(table)
    trials.loc[0, "eeg_start"] += 1
    trials.to_parquet(table, index=False)
    group = zarr.open_group(str(damaged / "participants" / second / "arrays.zarr"), mode="r+")
    group["n_eeg_samples"][1] = group["eeg_continuous"].shape[1] + 1
    _, problems = validate_store(damaged)
    found = {p["subject_id"]: p["message"] for p in problems if p["code"] == "store_mismatch"}
    assert set(found) == {first, second}
    assert "trial spans (eeg_start, n_eeg_samples) disagree" in found[first]
    assert "trial(s) [1] do not lie inside" in found[second]
