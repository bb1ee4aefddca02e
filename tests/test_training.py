"""Training engine: planted signals, chance with shuffled labels, fusion, exactness of the
multi-fold engine, determinism, leakage guards, Dask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmhe.errors import ConfigError
from mmhe.evaluation import (
    bootstrap_ci,
    epoch_permutation,
    fit_predict,
    loso,
    pooled_scores,
    run_folds,
)
from mmhe.evaluation.training import _StackedAdam, shared_batches

N_PEOPLE, PER_PERSON = 8, 12


def planted(seed: int = 0) -> dict:
    """Balanced 3-class data of 8 participants with a planted class signal per modality."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(N_PEOPLE), PER_PERSON)
    y = np.concatenate([rng.permutation(np.arange(PER_PERSON) % 3) for _ in range(N_PEOPLE)])
    n = y.size
    face = rng.normal(size=(n, 3, 28, 28)).astype(np.float32)
    face += rng.normal(size=(N_PEOPLE, 3, 1, 1)).astype(np.float32)[groups]  # person offsets
    for c in range(3):  # class-dependent motion blob in the horizontal flow
        face[y == c, 1, 3 + 8 * c : 9 + 8 * c, 8:20] += 1.5
    eeg = rng.normal(size=(n, 4, 10)).astype(np.float32)
    eeg[np.arange(n), :, 2 * y] += 1.5  # class-dependent band power
    physio = rng.normal(size=(n, 6)).astype(np.float32) + np.eye(3, 6, dtype=np.float32)[y] * 3
    return {"groups": groups, "y": y, "face": face, "eeg": eeg, "physio": physio}


DATA = planted()
FOLDS = list(loso(DATA["groups"]))
CASES = {
    "face": ("ststnet", {"epochs": 12, "lr": 1e-2, "batch_size": 32, "folds_per_group": 8}),
    "eeg": (
        "eeg_tcn",
        {"epochs": 30, "lr": 3e-3, "batch_size": 32, "model_kw": {"hidden": 16, "depth": 2}},
    ),
    "physio": (
        "physio_mlp",
        {"epochs": 30, "lr": 1e-2, "batch_size": 32, "model_kw": {"hidden": (16,)}},
    ),
}


@pytest.mark.parametrize("modality", list(CASES))
def test_planted_signal_is_learned_and_shuffled_labels_give_chance(modality):
    name, kw = CASES[modality]
    x, y, g = DATA[modality], DATA["y"], DATA["groups"]
    real = run_folds(name, x, y, g, FOLDS, seed=0, **kw)
    assert len(real) == y.size and set(real.fold) == set(range(N_PEOPLE))
    scores = pooled_scores(real.y_true, real.y_pred)
    ci = bootstrap_ci(real.y_true, real.y_pred, real.participant, "accuracy", n_boot=300)
    assert scores["accuracy"] > 0.8 and ci["low"] > 0.5, scores
    # Shuffle within participants: a global shuffle would unbalance participants, and
    # LOSO then predicts systematically BELOW chance (the held-out participant's surplus
    # class is the training set's deficit).
    rng = np.random.default_rng(1)
    shuffled_y = y.copy()
    for person in np.unique(g):
        own = np.flatnonzero(g == person)
        shuffled_y[own] = rng.permutation(y[own])
    null = run_folds(name, x, shuffled_y, g, FOLDS, seed=0, **kw)
    null_ci = bootstrap_ci(null.y_true, null.y_pred, null.participant, "accuracy", n_boot=300)
    assert null_ci["low"] <= 1 / 3 <= null_ci["high"], null_ci
    assert null_ci["estimate"] < 0.55


def complementary(seed: int = 0) -> dict:
    """Face separates class 0 from {1, 2}; EEG separates 1 from 2 (class 0 random sign)."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(N_PEOPLE), PER_PERSON)
    y = np.concatenate([rng.permutation(np.arange(PER_PERSON) % 3) for _ in range(N_PEOPLE)])
    n = y.size
    face = rng.normal(size=(n, 6)).astype(np.float32)
    face[:, 0] += np.where(y == 0, 2.5, -1.0)
    sign = np.where(y == 1, 1.0, np.where(y == 2, -1.0, rng.choice([-1.0, 1.0], n)))
    eeg = rng.normal(size=(n, 3, 5)).astype(np.float32)
    eeg[:, :, 0] += 2.5 * sign[:, None]
    return {"groups": groups, "y": y, "face": face, "eeg": eeg}


def test_fusion_beats_the_best_single_modality():
    d = complementary()
    y, g = d["y"], d["groups"]
    single = {
        "face": run_folds("physio_mlp", d["face"], y, g, FOLDS, epochs=25),
        "eeg": run_folds(
            "eeg_tcn", d["eeg"], y, g, FOLDS, epochs=25, model_kw={"hidden": 16, "depth": 2}
        ),
    }
    best_single = max(pooled_scores(p.y_true, p.y_pred)["uf1"] for p in single.values())
    assert best_single < 0.8  # each modality alone cannot separate all three classes
    both = {"face": d["face"], "eeg": d["eeg"]}
    early = run_folds("early_fusion", both, y, g, FOLDS, epochs=40, model_kw={"hidden": (32,)})
    late = run_folds(
        "late_fusion",
        both,
        y,
        g,
        FOLDS,
        epochs=25,
        model_kw={
            "members": {"face": "physio_mlp", "eeg": "eeg_tcn"},
            "member_kw": {"eeg": {"hidden": 16, "depth": 2}},
        },
    )
    for fused in (early, late):
        assert pooled_scores(fused.y_true, fused.y_pred)["uf1"] > best_single + 0.1


def test_stacking_uses_inner_training_folds_and_beats_chance():
    d = complementary(1)
    both = {"face": d["face"], "eeg": d["eeg"]}
    folds = FOLDS[:3]
    stacked = run_folds(
        "stacking",
        both,
        d["y"],
        d["groups"],
        folds,
        epochs=15,
        model_kw={"members": {"face": "logreg", "eeg": "logreg"}, "inner_folds": 3},
    )
    assert all(info["inner_folds"] == 3 for info in stacked.attrs["folds"])
    assert pooled_scores(stacked.y_true, stacked.y_pred)["accuracy"] > 0.7


def test_multifold_grouping_gives_the_same_predictions():
    """Exact equivalence (up to float rounding): a fold's predictions do not depend on
    which folds share its group, because every random choice is keyed by the fold."""
    kw = {"epochs": 4, "lr": 5e-3, "batch_size": 16, "seed": 3}
    x, y, g = DATA["face"], DATA["y"], DATA["groups"]
    together = run_folds("ststnet", x, y, g, FOLDS[:4], folds_per_group=4, **kw)
    alone = run_folds("ststnet", x, y, g, FOLDS[:4], folds_per_group=1, **kw)
    probs = [c for c in together if c.startswith("prob_")]
    np.testing.assert_allclose(together[probs].to_numpy(), alone[probs].to_numpy(), atol=1e-4)
    assert (together.y_pred == alone.y_pred).all()


@pytest.mark.parametrize("name", ["ststnet", "physio_mlp"])
def test_same_seed_same_predictions(name):
    x = DATA["face"] if name == "ststnet" else DATA["physio"]
    kw = {"epochs": 3, "batch_size": 16}
    a = run_folds(name, x, DATA["y"], DATA["groups"], FOLDS[:2], seed=5, **kw)
    b = run_folds(name, x, DATA["y"], DATA["groups"], FOLDS[:2], seed=5, **kw)
    c = run_folds(name, x, DATA["y"], DATA["groups"], FOLDS[:2], seed=6, **kw)
    probs = [col for col in a if col.startswith("prob_")]
    np.testing.assert_array_equal(a[probs].to_numpy(), b[probs].to_numpy())
    assert not np.allclose(a[probs].to_numpy(), c[probs].to_numpy())


@pytest.mark.parametrize("engine", ["multifold", "sequential"])
def test_test_samples_never_influence_training(engine):
    """Changing the other test samples of a fold (values and labels) leaves the
    prediction of one test sample unchanged: no normalisation, batch statistic or
    early-stopping decision sees the test fold."""
    x, y, g = DATA["face"].copy(), DATA["y"].copy(), DATA["groups"]
    fold = FOLDS[0]
    kw = {"epochs": 3, "batch_size": 16, "engine": engine, "early_stopping": True, "patience": 2}
    before = run_folds("ststnet", x, y, g, [fold], **kw)
    others = fold.test_idx[1:]
    x[others] = x[others] * 50 + 9
    y[others] = (y[others] + 1) % 3
    after = run_folds("ststnet", x, y, g, [fold], **kw)
    probs = [c for c in before if c.startswith("prob_")]
    np.testing.assert_allclose(before[probs].iloc[0], after[probs].iloc[0], atol=1e-6)
    info = before.attrs["folds"][0]
    assert info["n_validation"] > 0
    assert info["n_fit"] + info["n_validation"] == fold.train_idx.size


def test_missing_inputs_are_predicted_not_dropped():
    x, y, g = DATA["physio"].copy(), DATA["y"], DATA["groups"]
    x[[0, 1, 65]] = np.nan  # samples 0, 1 are in fold 0's test set, 65 in training
    out = run_folds("physio_mlp", x, y, g, FOLDS[:2], epochs=2)
    assert len(out) == FOLDS[0].test_idx.size + FOLDS[1].test_idx.size
    missing = out[out.missing_input]
    assert list(missing["sample"]) == [0, 1]
    assert out.attrs["folds"][0]["n_train_without_input"] == 1
    # no input: the class frequencies of the training labels
    train_y = y[FOLDS[0].train_idx]
    prior = np.bincount(train_y, minlength=3) / train_y.size
    np.testing.assert_allclose(missing[["prob_0", "prob_1", "prob_2"]].iloc[0], prior)
    # fusion: a sample missing one modality is predicted by the fusion policy
    both = {"face": DATA["physio"].copy(), "eeg": DATA["eeg"].copy()}
    both["eeg"][[0, 30]] = np.nan
    fused = run_folds("early_fusion", both, y, g, FOLDS[:1], epochs=2)
    assert len(fused) == FOLDS[0].test_idx.size and not fused.missing_input.any()


def test_shared_batches_reproduce_plain_loop_batches():
    rng = np.random.default_rng(0)
    n, batch = 200, 16
    member = rng.random((3, n)) < np.array([[0.9], [0.6], [0.95]])
    order = epoch_permutation(0, 0, n)
    rows = member[:, order]
    seen = [[] for _ in range(3)]
    for lo, hi, mask in shared_batches(rows, batch):
        for f in range(3):
            seen[f].append(order[lo:hi][mask[:, f]])
    for f in range(3):
        expected = order[rows[f]]  # fold f's training samples in the shared order
        batches = [b for b in seen[f] if b.size]
        sizes = [b.size for b in batches]
        assert np.array_equal(np.concatenate(batches), expected)
        n_f = expected.size
        if n_f % batch == 1:
            assert sizes == [batch] * (n_f // batch - 1) + [batch + 1]
        else:
            assert sizes == [batch] * (n_f // batch) + ([n_f % batch] if n_f % batch else [])


def test_stacked_adam_equals_separate_torch_adams():
    torch.manual_seed(0)
    init = torch.randn(3, 4, 5)
    stacked = torch.nn.Parameter(init.clone())
    separate = [torch.nn.Parameter(init[f].clone()) for f in range(3)]
    ours = _StackedAdam([stacked], 3, lr=0.01, weight_decay=0.1)
    theirs = [torch.optim.Adam([p], lr=0.01, weight_decay=0.1) for p in separate]
    for step in range(6):
        grads = torch.randn(3, 4, 5)
        active = torch.tensor([True, step % 2 == 0, step != 3])
        stacked.grad = grads.clone()
        ours.step(active)
        for f in range(3):
            if active[f]:
                separate[f].grad = grads[f].clone()
                theirs[f].step()
    for f in range(3):
        torch.testing.assert_close(stacked.data[f], separate[f].data)


def test_bad_inputs_raise_config_errors():
    with pytest.raises(ConfigError, match="samples"):
        run_folds("physio_mlp", DATA["physio"][:10], DATA["y"], DATA["groups"], FOLDS)
    with pytest.raises(ConfigError, match="multi-fold engine"):
        run_folds(
            "physio_mlp", DATA["physio"], DATA["y"], DATA["groups"], FOLDS, engine="multifold"
        )
    with pytest.raises(ConfigError, match="early stopping needs"):
        fit_predict("physio_mlp", DATA["physio"], DATA["y"], DATA["physio"], early_stopping=True)


def test_dask_local_cluster_gives_the_in_process_result():
    distributed = pytest.importorskip("distributed")
    x, y, g = DATA["face"], DATA["y"], DATA["groups"]
    kw = {"epochs": 2, "batch_size": 16, "folds_per_group": 2, "seed": 1}
    local = run_folds("ststnet", x, y, g, FOLDS[:4], **kw)
    done = []
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = run_folds(
            "ststnet",
            x,
            y,
            g,
            FOLDS[:4],
            client=client,
            on_fold_done=lambda index, table, info: done.append(index),
            **kw,
        )
    assert sorted(done) == [0, 1, 2, 3]
    probs = [c for c in local if c.startswith("prob_")]
    np.testing.assert_allclose(local[probs].to_numpy(), remote[probs].to_numpy(), atol=1e-5)
