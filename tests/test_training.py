"""Training: planted signals, chance with shuffled labels, fusion, stacked folds equal to
each fold trained alone, determinism, leakage guards, devices, Dask."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch

from mmhe.errors import ConfigError
from mmhe.evaluation import (
    Member,
    bootstrap_ci,
    fit_predict,
    fold_seeds,
    loso,
    pooled_scores,
    resolve_settings,
    run_folds,
    train_models,
)
from mmhe.evaluation.dropout import DropoutMasks, draw_masks, dropout_calls
from mmhe.evaluation.planning import batch_order, batches, steps_per_epoch
from mmhe.evaluation.scaling import prepare
from mmhe.evaluation.settings import torch_threads
from mmhe.models import build_model, model_spec
from mmhe.parallel import task_threads, usable_cores

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
    eeg_raw = rng.normal(size=(n, 1, 8, 64)).astype(np.float32)  # (N, 1, channels, samples)
    eeg_raw[:, 0, y + 2, :] += np.sin(np.arange(64) * (1 + y[:, None]) / 4)
    data = {"groups": groups, "y": y, "face": face, "eeg": eeg, "physio": physio}
    return data | {"eeg_raw": eeg_raw}


DATA = planted()
FOLDS = list(loso(DATA["groups"]))
CASES = {
    "face": ("ststnet", {"epochs": 12, "lr": 1e-2, "batch_size": 32}),
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


def _textbook_fold(name, X, y, fold, n_classes, settings):
    """One fold trained alone by an ordinary PyTorch loop: the fold's z-scoring, the
    model built under its init seed, `torch.optim`, its shuffled batches and its dropout
    masks (drawn from its own generator, the engine's contract). Test probabilities."""
    spec = model_spec(name)
    seeds = fold_seeds(settings.seed, fold.index)
    take = (lambda a, i: {m: v[i] for m, v in a.items()}) if isinstance(X, dict) else None
    x_tr = take(X, fold.train_idx) if take else X[fold.train_idx]
    x_te = take(X, fold.test_idx) if take else X[fold.test_idx]
    del take
    prepared = prepare(spec, x_tr, x_te, True, np.arange(fold.train_idx.size))
    with torch_threads(1):  # the engine's thread count: the same summation order
        return _textbook_loop(name, spec, prepared, y, fold, n_classes, settings, seeds)


def _textbook_loop(name, spec, prepared, y, fold, n_classes, settings, seeds):
    take = isinstance(prepared.train, dict)

    def tensors(arrays, n):
        if isinstance(arrays, dict):
            out = {m: torch.from_numpy(v) for m, v in arrays.items()}
            out["present"] = torch.ones(n, len(arrays))
            return out
        return torch.from_numpy(arrays)

    x_fit = tensors(prepared.train, fold.train_idx.size)
    x_test = tensors(prepared.test, fold.test_idx.size)
    shape = {m: v.shape for m, v in prepared.train.items()} if take else prepared.train.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeds[0])
        model = build_model(
            name, n_classes=n_classes, **spec.shape_kwargs(shape), **settings.model_kw
        )
    assert settings.optimizer == "adam"
    optimizer = torch.optim.Adam(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    generator = torch.Generator().manual_seed(seeds[2])
    y_fit = torch.from_numpy(y[fold.train_idx])
    n = fold.train_idx.size
    for epoch_batches in batch_order(seeds[1], n, settings.batch_size, settings.epochs):
        for rows in epoch_batches:
            index = torch.from_numpy(rows)
            xb = {m: v[index] for m, v in x_fit.items()} if take else x_fit[index]
            masks = draw_masks(dropout_calls(model, xb, y_fit[index]), generator, "cpu")
            model.train()
            with DropoutMasks(masks):
                loss = torch.nn.functional.cross_entropy(model(xb), y_fit[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if hasattr(model, "apply_constraints"):
                model.apply_constraints()
    model.eval()
    with torch.no_grad():
        return torch.softmax(model(x_test), dim=1).double().numpy()


@pytest.mark.parametrize("group", [3, 1])
@pytest.mark.parametrize(
    ("name", "data", "kw"),
    [
        ("ststnet", "face", {}),
        ("eeg_tcn", "eeg", {"model_kw": {"hidden": 8, "depth": 2}}),
        ("early_fusion", "fusion", {"model_kw": {"hidden": (16,)}}),
    ],
)
def test_stacked_folds_equal_each_fold_trained_alone(name, data, kw, group):
    """Fold by fold, the engine's predictions with 3 folds stacked into one vmapped model,
    or with each fold in a group of its own (the module trained in place), equal an
    ordinary PyTorch loop training each fold alone with the same seed."""
    x = {"face": DATA["physio"], "eeg": DATA["eeg"]} if data == "fusion" else DATA[data]
    y, g = DATA["y"], DATA["groups"]
    kw = {"epochs": 3, "lr": 5e-3, "batch_size": 16, "seed": 2, **kw}
    folds = FOLDS[:3]
    stacked = run_folds(name, x, y, g, folds, folds_per_group=group, device="cpu", **kw)
    assert {info["folds_in_group"] for info in stacked.attrs["folds"]} == {group}
    settings = resolve_settings(name, **{k: v for k, v in kw.items() if k != "seed"}, seed=2)
    probs = [c for c in stacked if c.startswith("prob_")]
    for fold in folds:
        alone = _textbook_fold(name, x, y, fold, 3, settings)
        ours = stacked.loc[stacked.fold == fold.index, probs].to_numpy()
        # a STSTNet group of one is fed channels-last (another summation order in oneDNN)
        atol = 1e-4 if (name, group) == ("ststnet", 1) else 2e-5
        np.testing.assert_allclose(ours, alone, atol=atol)
    assert np.ptp(stacked[probs].to_numpy(), axis=0).max() > 0.05  # the models did learn


def test_stacked_eegnet_keeps_its_max_norm_constraints_per_fold():
    """EEGNet's ``apply_constraints`` runs on every stacked member after every step.
    Its first BatchNorm's scale and shift are followed by another BatchNorm, so their
    gradients are zero up to rounding, which Adam turns into steps of up to lr: stacked
    (grouped convolutions) and alone then agree to about 1e-3, not to float precision."""
    x, y, g = DATA["eeg_raw"], DATA["y"], DATA["groups"]
    kw = {"epochs": 2, "lr": 5e-3, "batch_size": 16, "device": "cpu"}
    kw["model_kw"] = {"kernel_length": 16, "f1": 4, "f2": 8}
    stacked = run_folds("eegnet", x, y, g, FOLDS[:3], folds_per_group=3, **kw)
    alone = run_folds("eegnet", x, y, g, FOLDS[:3], folds_per_group=1, **kw)
    probs = [c for c in stacked if c.startswith("prob_")]
    np.testing.assert_allclose(stacked[probs].to_numpy(), alone[probs].to_numpy(), atol=3e-3)
    settings = resolve_settings("eegnet", **{k: v for k, v in kw.items() if k != "device"})
    members = [
        Member(torch.from_numpy(x[f.train_idx]), torch.from_numpy(y[f.train_idx]), fold_seeds(0, i))
        for i, f in enumerate(FOLDS[:3])
    ]
    factory = partial(build_model, "eegnet", n_classes=3, n_channels=8, n_samples=64)
    for trained in train_models(factory, members, replace(settings, folds_per_group=3)):
        model = trained.model
        assert model.spatial.weight.flatten(1).norm(dim=1).max() <= 1 + 1e-6
        assert model.classifier.weight.norm(dim=1).max() <= 0.25 + 1e-6
        assert trained.info["folds_in_group"] == 3


def test_dropout_masks_have_the_dropout_distribution():
    """Masks keep with probability 1 - p and scale kept values by 1 / (1 - p); channel
    dropout drops whole channels; attention dropout inside nn.MultiheadAttention is
    reported as not controlled."""
    model = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Dropout2d(0.5)).train()
    x = torch.ones(64, 8, 5, 5)
    recorder = DropoutMasks()
    with recorder:
        model(x)
    calls = recorder.calls
    assert [(c.kind, c.shape, c.p) for c in calls] == [
        ("elementwise", (64, 8, 5, 5), 0.3),
        ("channel", (64, 8, 1, 1), 0.5),
    ]
    first, second = draw_masks(calls, torch.Generator().manual_seed(0), "cpu")
    np.testing.assert_allclose(first.unique().numpy(), [0.0, 1 / 0.7], rtol=1e-6)
    assert abs((first == 0).float().mean().item() - 0.3) < 0.01  # 12,800 draws: SE 0.004
    with DropoutMasks([first, second]):
        out = model(x)
    torch.testing.assert_close(out, first * second)
    attention = torch.nn.MultiheadAttention(8, 2, dropout=0.1, batch_first=True).train()
    recorder = DropoutMasks()
    with recorder:
        tokens = torch.ones(4, 5, 8)
        attention(tokens, tokens, tokens, need_weights=False)
    assert recorder.uncontrolled == ["multi_head_attention_forward"]


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


@pytest.mark.parametrize("folds_per_group", [1, 2])
def test_test_samples_never_influence_training(folds_per_group):
    """Changing the other test samples of a fold (values and labels) leaves the
    prediction of one test sample unchanged: no normalisation, batch statistic or
    early-stopping decision sees the test fold, also when it shares a stacked group with
    a fold that trains on those samples."""
    x, y, g = DATA["face"].copy(), DATA["y"].copy(), DATA["groups"]
    fold = FOLDS[0]
    kw = {"epochs": 3, "batch_size": 16, "early_stopping": True, "patience": 2}
    kw["folds_per_group"] = folds_per_group
    before = run_folds("ststnet", x, y, g, FOLDS[:2], **kw)
    others = fold.test_idx[1:]
    x[others] = x[others] * 50 + 9
    y[others] = (y[others] + 1) % 3
    after = run_folds("ststnet", x, y, g, FOLDS[:2], **kw)
    probs = [c for c in before if c.startswith("prob_")]
    np.testing.assert_allclose(before[probs].iloc[0], after[probs].iloc[0], atol=1e-6)
    assert before.attrs["folds"][0]["folds_in_group"] == folds_per_group
    info = before.attrs["folds"][0]
    assert info["n_validation"] > 0
    assert info["n_fit"] + info["n_validation"] == fold.train_idx.size


@pytest.mark.parametrize("folds_per_group", [1, 4])
def test_fold_seconds_add_up_to_the_run(folds_per_group):
    """In one process the folds' recorded seconds share out the run's wall time: their
    sum is at most the run's and at least half of it (training dominates). Each fold
    once counted its training twice (the engine's share plus a clock that included it)."""
    import time

    kw = {"epochs": 8, "batch_size": 16, "folds_per_group": folds_per_group}
    started = time.perf_counter()
    out = run_folds("physio_mlp", DATA["physio"], DATA["y"], DATA["groups"], FOLDS[:4], **kw)
    wall = time.perf_counter() - started
    seconds = [info["seconds"] for info in out.attrs["folds"]]
    assert all(s > 0 for s in seconds)
    assert 0.5 * wall < sum(seconds) <= wall


def test_folds_are_cut_into_tasks_of_equal_size():
    from mmhe.evaluation.folds import even_chunks

    assert [len(c) for c in even_chunks(list(range(10)), 8)] == [5, 5]
    assert [len(c) for c in even_chunks(list(range(10)), 3)] == [2, 3, 2, 3]
    assert [len(c) for c in even_chunks(list(range(4)), 1)] == [1, 1, 1, 1]
    assert [i for c in even_chunks(list(range(17)), 4) for i in c] == list(range(17))
    x, y, g = DATA["physio"], DATA["y"], DATA["groups"]
    out = run_folds("physio_mlp", x, y, g, FOLDS[:5], epochs=1, folds_per_group=4)
    assert [info["folds_in_group"] for info in out.attrs["folds"]] == [2, 2, 3, 3, 3]


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


def test_batches_of_a_shuffled_loop():
    """Consecutive batches of the permutation; a final single sample joins the previous
    batch (BatchNorm needs two); every sample once per epoch; same seed, same order."""
    for n, batch in [(33, 16), (32, 16), (17, 16), (5, 16), (1, 16)]:
        sizes = [len(b) for b in batches(np.arange(n), batch)]
        assert sum(sizes) == n and len(sizes) == steps_per_epoch(n, batch)
        assert min(sizes) >= min(2, n) and max(sizes) <= batch + 1
    assert [len(b) for b in batches(np.arange(33), 16)] == [16, 17]
    a = [np.concatenate(e) for e in batch_order(4, 50, 8, 3)]
    b = [np.concatenate(e) for e in batch_order(4, 50, 8, 3)]
    assert all(np.array_equal(np.sort(e), np.arange(50)) for e in a)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not np.array_equal(a[0], a[1])


def test_bad_inputs_raise_config_errors():
    with pytest.raises(ConfigError, match="samples"):
        run_folds("physio_mlp", DATA["physio"][:10], DATA["y"], DATA["groups"], FOLDS)
    with pytest.raises(ConfigError, match="folds_per_group"):
        run_folds("physio_mlp", DATA["physio"], DATA["y"], DATA["groups"], FOLDS, folds_per_group=0)
    with pytest.raises(ConfigError, match="unknown device"):
        fit_predict("physio_mlp", DATA["physio"], DATA["y"], DATA["physio"], device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            fit_predict("physio_mlp", DATA["physio"], DATA["y"], DATA["physio"], device="cuda")
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
        # a task in a single-threaded worker uses one thread (in this process: every core)
        threads = client.gather([client.submit(task_threads, pure=False) for _ in range(4)])
        assert threads == [1, 1, 1, 1]
    assert task_threads() == usable_cores()
    assert sorted(done) == [0, 1, 2, 3]
    probs = [c for c in local if c.startswith("prob_")]
    np.testing.assert_allclose(local[probs].to_numpy(), remote[probs].to_numpy(), atol=1e-5)
