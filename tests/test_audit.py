"""The leakage audit measures: every injected leak is caught, clean runs pass."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mmhe.cli import app
from mmhe.evaluation import audit_fits, loso, near_duplicates, run_folds, training
from mmhe.evaluation.splits import Fold


def _planted(n_people=6, per=20, width=6, seed=0):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_people), per)
    y = rng.integers(0, 3, groups.size)
    X = rng.normal(size=(groups.size, width)).astype(np.float32)
    X[:, 0] += 2.0 * y + groups  # a signal, and participants with different means
    return X, y, groups


def _leaky_prepare(report_test_rows: bool):
    """A z-score fitted on training + test rows (the leak), reporting or hiding them."""
    original = training.prepare

    def prepare(spec, X_train, X_test, normalize, fit_rows):
        both = np.concatenate([X_train, X_test])
        rows = np.concatenate([fit_rows, len(X_train) + np.arange(len(X_test))])
        prepared = original(spec, both, X_test, normalize, rows)
        prepared.train = prepared.train[: len(X_train)]
        prepared.present_train = prepared.present_train[: len(X_train)]
        if not report_test_rows:
            prepared.fits[0]["rows"] = np.asarray(fit_rows)
        return prepared

    return prepare


def test_fit_records_of_a_clean_run_pass_and_are_measured():
    X, y, groups = _planted()
    predictions = run_folds("physio_mlp", X, y, groups, list(loso(groups)), epochs=2)
    for record in predictions.attrs["audit"]:
        fits = record["fits"]
        assert fits["passed"] and record["passed"]
        kinds = [f["what"] for f in fits["fits"]]
        assert kinds[0].startswith("z-score") and "model" in kinds
        scaler = fits["fits"][0]
        assert scaler["mean_matches_rows"] and scaler["n_rows"] == 100
        assert scaler["test_rows_used"] == 0 and scaler["rows_outside_training"] == 0


@pytest.mark.parametrize("report_test_rows", [True, False], ids=["reported", "hidden"])
def test_train_plus_test_zscore_is_caught(monkeypatch, report_test_rows):
    X, y, groups = _planted()
    monkeypatch.setattr(training, "prepare", _leaky_prepare(report_test_rows))
    predictions = run_folds("physio_mlp", X, y, groups, list(loso(groups)), epochs=2)
    audits = predictions.attrs["audit"]
    assert not any(a["passed"] for a in audits)
    failures = " ".join(f for a in audits for f in a["fits"]["failures"])
    assert "statistics differ" in failures  # the mean was recomputed from the rows
    if report_test_rows:
        assert "outside the training set" in failures


def _early_stops(predictions):
    return [
        f
        for a in predictions.attrs["audit"]
        for f in a["fits"]["fits"]
        if f["what"].startswith("early stopping")
    ]


def test_early_stopping_on_the_test_fold_is_caught(monkeypatch):
    """The fused STSTNet trainer splits validation rows from all of X: a split that
    hands it the test fold is caught. The stacked engine only ever sees a fold's
    training rows; a split there that also trains on its validation rows is caught."""
    from mmhe.evaluation import fused_ststnet

    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(4), 12)
    X = rng.normal(size=(groups.size, 3, 28, 28)).astype(np.float32)
    y = rng.integers(0, 3, groups.size)
    folds = list(loso(groups))
    kw = {"epochs": 2, "early_stopping": True}

    def validation_is_the_test_fold(train_rows, groups_, fraction, seed):
        return np.asarray(train_rows), np.setdiff1d(np.arange(len(groups_)), train_rows)

    def validation_is_also_trained_on(train_rows, groups_, fraction, seed):
        rows = np.asarray(train_rows)
        return rows, rows[groups_[rows] == groups_[rows][0]]

    for engine in ("stacked", "fused"):
        clean = run_folds("ststnet", X, y, groups, folds, engine=engine, **kw)
        assert all(a["passed"] for a in clean.attrs["audit"]), engine
        assert len(_early_stops(clean)) == len(folds), engine
    monkeypatch.setattr(fused_ststnet, "inner_validation_split", validation_is_the_test_fold)
    leaky = run_folds("ststnet", X, y, groups, folds, engine="fused", **kw)
    assert not any(a["passed"] for a in leaky.attrs["audit"])
    stops = _early_stops(leaky)
    assert stops and all(f["test_rows_used"] == 12 for f in stops)
    monkeypatch.setattr(training, "inner_validation_split", validation_is_also_trained_on)
    leaky = run_folds("ststnet", X, y, groups, folds, engine="stacked", **kw)
    assert not any(a["passed"] for a in leaky.attrs["audit"])
    stops = _early_stops(leaky)
    assert stops and all(f["validation_participants_also_fitted"] == 1 for f in stops)


def test_audit_fits_flags_shared_participants_and_validation_overlap():
    groups = np.repeat(np.arange(3), 4)
    fold = Fold(0, np.arange(4, 12), np.arange(0, 4), (0,))
    clean = [{"what": "model", "rows": np.arange(4, 12)}]
    assert audit_fits(fold, clean, None, groups)["passed"]
    overlap = [
        {"what": "model", "rows": np.arange(4, 12)},
        {"what": "early stopping (validation loss)", "rows": np.arange(8, 12)},
    ]
    result = audit_fits(fold, overlap, None, groups)
    assert not result["passed"] and "also trained on" in result["failures"][0]
    trial_fold = Fold(0, np.array([0, 1, 4, 5]), np.array([2, 3]), ("t1",))
    trials = np.array(["t0", "t0", "t1", "t1", "t2", "t2", "t3", "t3", "t4", "t4", "t5", "t5"])
    shared = [{"what": "model", "rows": np.array([0, 1, 4, 5, 3])}]  # row 3 is a test row
    result = audit_fits(trial_fold, shared, None, groups, {"trials": trials})
    assert not result["passed"] and result["fits"][0]["shared_units"] == {"trials": ["t1"]}


def test_near_duplicates_find_one_person_under_two_ids():
    rng = np.random.default_rng(2)
    groups = np.repeat(["sub-001", "sub-002", "sub-003", "sub-004"], 25)
    X = rng.normal(size=(100, 3, 14, 14)).astype(np.float32)  # wider than 256: projected
    assert near_duplicates(X, groups) == []
    X[75:100] = X[0:25] + rng.normal(scale=1e-4, size=(25, 3, 14, 14)).astype(np.float32)
    X[80] = np.nan  # a missing sample is skipped, not matched
    pairs = near_duplicates(X, groups)
    assert len(pairs) == 1
    assert (pairs[0]["participant_a"], pairs[0]["participant_b"]) == ("sub-001", "sub-004")
    assert pairs[0]["n_pairs"] == 24 and pairs[0]["min_distance"] < 0.01
    table = rng.normal(size=(100, 30))  # narrow features: no projection
    table[50:60] = table[0:10]
    assert near_duplicates(table, groups)[0]["n_pairs"] == 10


def _cli_run(store, out):
    args = ["benchmark", str(store), "--model", "physio_mlp", "--modality", "physio"]
    args += ["--epochs", "2", "--no-baselines", "--out", str(out)]
    return CliRunner().invoke(app, args)


def test_benchmark_fails_its_audit_on_an_injected_zscore_leak(store_tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(training, "prepare", _leaky_prepare(False))
    result = _cli_run(store_tiny, tmp_path / "leak")
    assert result.exit_code == 1, result.output
    assert "leakage audit FAILED" in result.output
    audit = json.loads((tmp_path / "leak" / "audit.json").read_text())
    failed = [c for c in audit["checks"] if not c["passed"]]
    assert not audit["passed"] and len(failed) == 1
    assert "fitted piece" in failed[0]["check"] and "statistics differ" in failed[0]["detail"]


def test_benchmark_fails_its_audit_on_one_person_under_two_ids(store_tiny, tmp_path, monkeypatch):
    from mmhe.evaluation import runner

    original = runner.load_task

    def twin_participants(*args, **kwargs):
        data = original(*args, **kwargs)
        first = np.flatnonzero(data.groups == data.groups[0])
        other = np.flatnonzero(data.groups != data.groups[0])
        n = min(first.size, other.size)
        for X in data.X.values():
            X[other[:n]] = X[first[:n]]  # the same recordings under another ID
        return data

    monkeypatch.setattr(runner, "load_task", twin_participants)
    result = _cli_run(store_tiny, tmp_path / "twins")
    assert result.exit_code == 1, result.output
    audit = json.loads((tmp_path / "twins" / "audit.json").read_text())
    failed = [c for c in audit["checks"] if not c["passed"]]
    assert len(failed) == 1 and "near-identical physio" in failed[0]["check"]
    assert "same person under two IDs" in failed[0]["detail"]
