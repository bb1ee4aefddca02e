"""Bring your own model and device: registered torch and scikit-learn models run LOSO end
to end, predictions carry class names, devices resolve without CPU-only assumptions."""

from __future__ import annotations

from typing import ClassVar

import cloudpickle
import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mmhe.errors import ConfigError
from mmhe.evaluation.device import resolve_device
from mmhe.evaluation.folds import run_folds
from mmhe.evaluation.runner import BenchmarkConfig, run_benchmark
from mmhe.evaluation.settings import resolve_settings
from mmhe.evaluation.splits import loso
from mmhe.evaluation.training import fit_predict
from mmhe.models import list_models, model_spec, register, unregister


class TinyNet(torch.nn.Module):
    """A linear layer over the flattened input; records where its inputs live."""

    seen_devices: ClassVar[set[str]] = set()

    def __init__(self, n_classes: int, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(int(np.prod(input_shape)), n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        TinyNet.seen_devices.add(str(x.device))
        assert x.device == self.linear.weight.device
        return self.linear(x.flatten(1))


def logistic_pipeline():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


@pytest.fixture
def registered():
    register("tiny_net", TinyNet, ["eeg"], {"epochs": 4, "lr": 1e-2, "batch_size": 8})
    register("user_logreg", logistic_pipeline, ["physio"], description="LR pipeline")
    yield
    unregister("tiny_net")
    unregister("user_logreg")


def test_registered_models_run_loso_end_to_end(registered, store_tiny, tmp_path):
    config = BenchmarkConfig(
        runs=[
            {"model": "tiny_net", "modalities": ["eeg"]},
            {"model": "user_logreg", "modalities": ["physio"]},
        ],
        baselines=False,
    )
    results = run_benchmark(store_tiny, config, tmp_path / "run", scheduler="sync", device="cpu")
    assert results["complete"].all() and list(results["model"]) == ["tiny_net", "user_logreg"]
    predictions = pd.read_parquet(tmp_path / "run" / "predictions.parquet")
    assert predictions.groupby("model")["participant"].nunique().eq(3).all()  # every LOSO fold
    classes = ["negative", "positive", "surprise"]
    present = [c for c in classes if f"prob_{c}" in predictions]
    assert (predictions["true_class"] == [present[i] for i in predictions["y_true"]]).all()
    assert (predictions["pred_class"] == [present[i] for i in predictions["y_pred"]]).all()
    probabilities = predictions[[f"prob_{c}" for c in present]].to_numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    folds = pd.read_parquet(tmp_path / "run" / "folds.parquet")
    assert set(folds["device"]) == {"cpu"}
    assert TinyNet.seen_devices == {"cpu"}
    assert model_spec("user_logreg").kind == "auto" and "user_logreg" in list_models()
    assert model_spec("tiny_net").source.endswith("TinyNet")


def test_registered_pipeline_is_fit_as_given(registered):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    y = (X[:, 0] > 0).astype(int)
    X[:, 0] *= 1e3  # scaling is the pipeline's job, and the pipeline has a scaler
    result = fit_predict("user_logreg", X[:40], y[:40], X[40:], n_classes=2, normalize=False)
    reference = logistic_pipeline().fit(X[:40], y[:40]).predict_proba(X[40:])
    np.testing.assert_allclose(result.proba, reference, rtol=1e-6)


def test_register_refuses_what_it_cannot_run(registered, store_tiny, tmp_path):
    with pytest.raises(ConfigError, match="baseline"):
        register("ststnet", TinyNet, ["face"])
    with pytest.raises(ConfigError, match="modalities"):
        register("x", TinyNet, ["audio"])
    with pytest.raises(ConfigError, match="training defaults"):
        register("x", TinyNet, ["eeg"], {"epoch": 3})
    with pytest.raises(ConfigError, match="already registered"):
        register("tiny_net", TinyNet, ["eeg"])
    with pytest.raises(ValidationError, match="tiny_net does not take face"):
        BenchmarkConfig(runs=[{"model": "tiny_net", "modalities": ["face"]}])
    register("not_a_model", lambda: object(), ["eeg"])
    try:
        with pytest.raises(ConfigError, match="returned object"):
            fit_predict("not_a_model", np.zeros((4, 2)), np.array([0, 1, 0, 1]), np.zeros((2, 2)))
    finally:
        unregister("not_a_model")


def test_devices_resolve_and_fail_loudly(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")
    # With a GPU, "auto" trains one fold at a time and the fused STSTNet trainer (CPU
    # only) refuses, before training.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_settings("ststnet", device="cuda").engine == "sequential"
    assert resolve_settings("ststnet", device="cpu").engine == "stacked"
    groups = np.repeat(["a", "b"], 4)
    X = np.zeros((8, 3, 28, 28), np.float32)
    with pytest.raises(ConfigError, match="CPU only"):
        run_folds(
            "ststnet",
            X,
            np.arange(8) % 2,
            groups,
            list(loso(groups)),
            engine="fused",
            device="cuda",
        )


def test_registered_model_reaches_a_fresh_worker_process(registered):
    """A Dask worker process has never seen the user's register() call: the fold task
    carries the spec (pickled as Dask pickles it) and registers it there first."""
    from mmhe.evaluation.folds import _run_fold_group

    rng = np.random.default_rng(1)
    X = rng.normal(size=(24, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    groups = np.repeat(["a", "b", "c"], 8)
    folds = list(loso(groups))
    local = run_folds("tiny_net", X, y, groups, folds, n_classes=2, seed=3)
    shipped = cloudpickle.loads(cloudpickle.dumps(model_spec("tiny_net")))
    settings = resolve_settings("tiny_net", seed=3)
    unregister("tiny_net")  # as in a worker that never imported the user's module
    with pytest.raises(ConfigError, match="unknown model"):
        model_spec("tiny_net")
    remote = _run_fold_group("tiny_net", X, y, groups, folds, 2, settings, registered=shipped)
    for (index, proba, _), fold in zip(remote, folds, strict=True):
        mine = local[local["fold"] == index].sort_values("sample")
        assert index == fold.index
        np.testing.assert_allclose(proba[:, 1], mine["prob_1"], rtol=1e-6)


class LazyNet(torch.nn.Module):
    """A registered model whose layer sizes come from its first input (lazy modules)."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.LazyLinear(8), torch.nn.ReLU())
        self.head = torch.nn.Linear(8, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.flatten(1)))


def test_lazy_modules_are_initialised_under_each_folds_seed():
    """Lazy parameters exist before folds are stacked, drawn under the fold's own seed:
    stacked and one-at-a-time training give the same predictions."""
    register("lazy_net", LazyNet, ["physio"], {"epochs": 3, "lr": 1e-2, "batch_size": 8})
    try:
        rng = np.random.default_rng(4)
        X = rng.normal(size=(36, 5)).astype(np.float32)
        y = (X[:, 0] > 0).astype(int)
        groups = np.repeat(["a", "b", "c"], 12)
        folds = list(loso(groups))
        kw = {"n_classes": 2, "seed": 1}
        stacked = run_folds("lazy_net", X, y, groups, folds, folds_per_group=3, **kw)
        alone = run_folds("lazy_net", X, y, groups, folds, engine="sequential", **kw)
        assert stacked.attrs["settings"]["folds_per_group"] == 3
        assert alone.attrs["settings"]["folds_per_group"] == 1
        np.testing.assert_allclose(stacked["prob_1"], alone["prob_1"], rtol=1e-5, atol=1e-6)
        assert all(a["passed"] for a in stacked.attrs["audit"])
    finally:
        unregister("lazy_net")
