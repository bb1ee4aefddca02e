"""Controls, protocols and options of `mmhe benchmark`: the shuffled-label control at
chance, stimulus-held-out protocols, EEGNet on raw EEG windows, seeds, missing input,
Holm, CLI parity with the YAML and `mmhe models`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from mmhe.cli import app
from mmhe.evaluation.datasets import TaskData, with_shuffled_labels
from mmhe.evaluation.results import holm, summarise_combination
from mmhe.evaluation.runner import BenchmarkConfig, RunSpec, _run_combination


def _planted_task(n_people=8, per=30, seed=0) -> TaskData:
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"sub-{i:03d}" for i in range(n_people)], per)
    y = rng.integers(0, 3, groups.size)
    X = rng.normal(size=(groups.size, 12)).astype(np.float32)
    X[:, :3] += 2.5 * np.eye(3)[y]  # a class signal in three features
    ids = np.array([f"s{i:04d}" for i in range(groups.size)])
    return TaskData(
        "compound",
        ["negative", "positive", "surprise"],
        y,
        groups,
        np.char.add(groups, "/101"),
        ids,
        {"physio": X},
        np.full(groups.size, 101),
    )


def _run(data, control, seeds, tmp_path):
    parts = []
    for seed in seeds:
        spec = RunSpec(model="logreg", modalities=("physio",), control=control, seed=seed)
        task = with_shuffled_labels(data, seed) if control == "shuffled" else data
        outcome = _run_combination(spec, task, tmp_path, None, "test", lambda r: None)
        parts += [pd.read_parquet(p) for p in outcome["finished"]]
    return summarise_combination(pd.concat(parts), data.class_names)


def test_shuffled_control_lands_at_chance_on_a_planted_set(tmp_path):
    data = _planted_task()
    shuffled = with_shuffled_labels(data, 0)
    for person in np.unique(data.groups):  # each participant keeps their class counts
        own = data.groups == person
        assert np.array_equal(
            np.bincount(data.y[own], minlength=3), np.bincount(shuffled.y[own], minlength=3)
        )
    assert (shuffled.y != data.y).mean() > 0.5
    real = _run(data, "none", [0], tmp_path)
    control = _run(data, "shuffled", [0, 1, 2], tmp_path)
    assert real["uar_low"] > 0.8
    assert control["uar_low"] <= 1 / 3 <= control["uar_high"]
    assert abs(control["uar"] - 1 / 3) < 0.08 and control["n_seeds"] == 3
    assert control["uar_seed_sd"] > 0  # another permutation per seed


def test_holm_closed_form():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])


def test_missing_input_is_reported_apart_unless_imputed():
    rng = np.random.default_rng(5)
    rows = pd.DataFrame(
        {
            "participant": np.repeat(["a", "b", "c"], 10),
            "y_true": rng.integers(0, 2, 30),
            "seed": 0,
            "missing_input": np.arange(30) % 5 == 0,
        }
    )
    rows["y_pred"] = np.where(rows["missing_input"], 1 - rows["y_true"], rows["y_true"])
    apart = summarise_combination(rows, ["x", "y"])
    assert apart["n_samples"] == 24 and apart["n_missing"] == 6 and apart["accuracy"] == 1.0
    imputed = summarise_combination(rows, ["x", "y"], impute=True)
    assert imputed["n_samples"] == 30 and imputed["accuracy"] == pytest.approx(0.8)


def _invoke(*args):
    return CliRunner().invoke(app, ["benchmark", *map(str, args)])


def test_eegnet_runs_loso_on_raw_eeg_windows(store_tiny, tmp_path):
    result = _invoke(
        store_tiny, "--model", "eegnet", "--modality", "eeg", "--epochs", "2",
        "--no-baselines", "--out", tmp_path / "eegnet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    results = pd.read_csv(tmp_path / "eegnet" / "results.csv")
    assert results.loc[0, "model"] == "eegnet" and bool(results.loc[0, "complete"])
    config = json.loads((tmp_path / "eegnet" / "config.json").read_text())
    assert set(config["features"]) == {"eeg_raw"}
    folds = pd.read_parquet(tmp_path / "eegnet" / "folds.parquet")
    assert len(folds) == 3 and (folds["epochs_trained"] == 2).all()
    from mmhe.features.batch import load_features

    table, windows = load_features(store_tiny, "eeg_raw")
    assert windows.shape[1:] == (1, 62, 256) and table["ok"].all()  # 2 s at 128 Hz


def test_stimulus_protocols_hold_clips_out(store_tiny, tmp_path):
    for protocol, extra in (("leave_stimulus_out", []), ("subject_stimulus_kfold", ["--k", 2])):
        out = tmp_path / protocol
        result = _invoke(
            store_tiny, "--model", "logreg", "--modality", "eeg", "--protocol", protocol,
            *extra, "--no-baselines", "--out", out,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        audit = json.loads((out / "audit.json").read_text())
        assert audit["passed"]
        assert any("stimulus clips disjoint" in c["check"] for c in audit["checks"])
        for info in (out / "folds").glob("logreg-*/fold-*.json"):
            record = json.loads(info.read_text())
            assert record["audit"]["checks"]["stimuli_disjoint"]


def test_cli_options_equal_the_yaml_config(store_tiny, tmp_path):
    options = ["--lr", "0.01", "--batch-size", "16", "--epochs", "3", "--early-stopping"]
    options += ["--seeds", "2", "--control", "shuffled", "--no-baselines"]
    by_cli = _invoke(
        store_tiny, "--model", "physio_mlp", "--modality", "physio", *options,
        "--out", tmp_path / "cli",
    )  # fmt: skip
    assert by_cli.exit_code == 0, by_cli.output
    config = {
        "runs": [
            {
                "model": "physio_mlp",
                "modalities": ["physio"],
                "lr": 0.01,
                "batch_size": 16,
                "epochs": 3,
                "early_stopping": True,
                "control": "shuffled",
            }
        ],
        "seeds": 2,
        "baselines": False,
    }
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(config))
    by_yaml = _invoke(store_tiny, "--config", tmp_path / "bench.yaml", "--out", tmp_path / "yaml")
    assert by_yaml.exit_code == 0, by_yaml.output
    a = pd.read_parquet(tmp_path / "cli" / "predictions.parquet")
    b = pd.read_parquet(tmp_path / "yaml" / "predictions.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert sorted(a["seed"].unique()) == [0, 1] and set(a["control"]) == {"shuffled"}
    recorded = BenchmarkConfig(
        **json.loads((tmp_path / "cli" / "config.json").read_text())["config"]
    )
    spec = recorded.specs()[0]
    assert (spec.lr, spec.batch_size, spec.epochs, spec.early_stopping) == (0.01, 16, 3, True)
    folds = pd.read_parquet(tmp_path / "cli" / "folds.parquet")
    assert (folds["n_validation"] > 0).all() and (folds["epochs_trained"] <= 3).all()
    assert "| physio_mlp (shuffled labels) |" in (tmp_path / "cli" / "results.md").read_text()


def test_repeated_model_options_run_each_model_with_paired_tests(store_tiny, tmp_path):
    out = tmp_path / "two"
    result = _invoke(
        store_tiny, "--model", "logreg", "--model", "physio_mlp", "--modality", "physio",
        "--epochs", "2", "--no-baselines", "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out / "results.csv")["model"].tolist() == ["logreg", "physio_mlp"]
    pairs = pd.read_csv(out / "pairwise.csv")
    uf1 = pairs[pairs["metric"] == "uf1"]
    assert len(uf1) == 1
    assert {uf1.iloc[0]["a"], uf1.iloc[0]["b"]} == {"logreg (physio)", "physio_mlp (physio)"}
    assert 0 < uf1.iloc[0]["p_value"] <= 1


def test_run_options_beside_a_config_are_refused_not_ignored(store_tiny, tmp_path):
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump({"runs": [{"model": "logreg"}]}))
    result = _invoke(
        store_tiny, "--config", tmp_path / "bench.yaml", "--task", "kind", "--modality", "eeg",
        "--out", tmp_path / "run",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--task, --modality describe a run without a file" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


def test_models_command_lists_modalities_defaults_and_sources():
    import io

    from mmhe.models import list_models

    result = CliRunner().invoke(app, ["models", "--csv"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(io.StringIO(result.output)).set_index("name")
    assert table.index.tolist() == list_models()
    assert table.loc["ststnet", "defaults"] == "500 epochs, batch 256, lr 5e-05, adam"
    assert table.loc["ststnet", "modalities"] == "face"
    assert table.loc["eegnet", "source"] == "Lawhern et al., J. Neural Eng. 2018"
    assert table.loc["eegnet", "input"].startswith("raw EEG windows at 128 Hz")
    assert table.loc["majority", "modalities"] == "none (chance reference)"
    assert CliRunner().invoke(app, ["models"]).exit_code == 0
