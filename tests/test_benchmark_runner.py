"""`mmhe benchmark` on an ingested synthetic store: run directory contents, resume,
incomplete runs, the leakage audit and the report rendered in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import balanced_accuracy_score, f1_score
from typer.testing import CliRunner

from mmhe.cli import app
from mmhe.evaluation.runner import BenchmarkConfig, run_benchmark
from mmhe.models import CHANCE_BASELINES as BASELINES

CONFIG = {
    "title": "runner test",
    "defaults": {"task": "compound", "epochs": 3, "seed": 1},
    "runs": [
        {"model": "ststnet", "modalities": ["face"]},
        {"model": "physio_mlp", "modalities": ["physio"]},
        {"model": "late_fusion", "modalities": ["face", "eeg", "physio"]},
    ],
    "n_perm": 500,
}


@pytest.fixture(scope="module")
def run_dir(store_tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "full"
    run_benchmark(store_tiny, BenchmarkConfig(**CONFIG), out, scheduler="sync")
    return out


def test_run_directory_holds_every_documented_file(run_dir):
    for name in (
        "config.json",
        "environment.json",
        "folds.parquet",
        "predictions.parquet",
        "audit.json",
        "results.csv",
        "results.md",
        "seeds.csv",
        "participants.csv",
        "pairwise.csv",
        "pvalues_uf1.csv",
        "pvalues_uar.csv",
    ):
        assert (run_dir / name).stat().st_size > 0
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    assert {"participant", "y_true", "y_pred", "fold", "model", "prob_negative"} <= set(
        predictions.columns
    )
    results = pd.read_csv(run_dir / "results.csv")
    assert results["complete"].all() and results["audit_passed"].all()
    assert results["model"].tolist() == ["ststnet", "physio_mlp", "late_fusion", *BASELINES]
    for row in results.itertuples():
        mine = predictions[(predictions["model"] == row.model) & ~predictions["missing_input"]]
        assert (
            row.n_samples == len(mine)
            and row.n_missing
            == predictions[predictions["model"] == row.model]["missing_input"].sum()
        )
        labels = sorted(set(mine["y_true"]) | set(mine["y_pred"]))
        assert row.uf1 == pytest.approx(
            round(f1_score(mine["y_true"], mine["y_pred"], average="macro", labels=labels), 3),
            abs=0.0015,
        )
        assert row.uar == pytest.approx(
            round(balanced_accuracy_score(mine["y_true"], mine["y_pred"]), 3), abs=0.0015
        )
    # every model is tested on exactly the same samples
    samples = predictions.groupby("model")["sample"].apply(lambda s: tuple(sorted(s)))
    assert samples.nunique() == 1
    audit = json.loads((run_dir / "audit.json").read_text())
    assert audit["passed"] and len(audit["checks"]) == 3 + 5 * 5  # inputs + 5 per row
    folds = pd.read_parquet(run_dir / "folds.parquet")
    assert len(folds) == 5 * 3 and (folds["n_train"] > 0).all()
    assert folds["mmhe_version"].nunique() == 1 and folds["config_hash"].nunique() == 1
    assert folds["provenance_key"].nunique() == len(folds)
    text = (run_dir / "results.md").read_text()
    assert "| ststnet | compound | loso | face |" in text and "Holm" in text
    # the majority row predicts the training fold's most frequent class
    majority = predictions[predictions["model"] == "majority"]
    for _, fold in majority.groupby("fold"):
        train = predictions[
            (predictions["model"] == "majority") & (predictions["fold"] != fold["fold"].iloc[0])
        ]
        assert (fold["y_pred"] == train["y_true"].mode().min()).all()
    tests = pd.read_csv(run_dir / "pairwise.csv")
    assert len(tests) == 2 * 10 and tests["p_holm"].ge(tests["p_value"]).all()


def test_same_seed_gives_the_same_numbers(run_dir, store_tiny, tmp_path):
    again = tmp_path / "again"
    run_benchmark(store_tiny, BenchmarkConfig(**CONFIG), again, scheduler="sync")
    a = pd.read_parquet(run_dir / "predictions.parquet")
    b = pd.read_parquet(again / "predictions.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_partial_run_is_incomplete_then_resumes(run_dir, store_tiny, tmp_path):
    out = tmp_path / "partial"
    partial = run_benchmark(
        store_tiny, BenchmarkConfig(**CONFIG), out, scheduler="sync", max_folds=1
    )
    assert not partial["complete"].any() and not partial["audit_passed"].any()
    assert "| NO | FAILED |" in (out / "results.md").read_text()
    assert not json.loads((out / "audit.json").read_text())["passed"]
    finished = run_benchmark(store_tiny, BenchmarkConfig(**CONFIG), out, scheduler="sync")
    assert finished["complete"].all()
    pd.testing.assert_frame_equal(
        pd.read_parquet(run_dir / "predictions.parquet"),
        pd.read_parquet(out / "predictions.parquet"),
    )


def test_killed_run_resumes_to_the_same_results(run_dir, store_tiny, tmp_path):
    out = tmp_path / "killed"
    config = tmp_path / "bench.yaml"
    import yaml

    config.write_text(yaml.safe_dump(CONFIG))
    script = (
        "import sys; from mmhe.evaluation.runner import BenchmarkConfig, run_benchmark; "
        "run_benchmark(sys.argv[1], BenchmarkConfig.load(sys.argv[2]), sys.argv[3])"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(store_tiny), str(config), str(out)]
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if len(list(out.glob("folds/*/fold-*.parquet"))) >= 2:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "results.csv").exists()
    result = CliRunner().invoke(
        app, ["benchmark", str(store_tiny), "--config", str(config), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "runner test" in result.output and "ststnet" in result.output
    pd.testing.assert_frame_equal(
        pd.read_parquet(run_dir / "predictions.parquet"),
        pd.read_parquet(out / "predictions.parquet"),
    )


def test_cli_runs_one_combination(store_tiny, tmp_path):
    out = tmp_path / "one"
    result = CliRunner().invoke(
        app,
        [
            "benchmark",
            str(store_tiny),
            "--model",
            "logreg",
            "--modality",
            "physio",
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    results = pd.read_csv(out / "results.csv")
    assert results.loc[0, "model"] == "logreg" and bool(results.loc[0, "complete"])
    assert json.loads((out / "environment.json").read_text())["device"] == "cpu"
    if not torch.cuda.is_available():  # a missing device fails before any work
        args = ["benchmark", str(store_tiny), "--model", "ststnet", "--out", str(out / "x")]
        result = CliRunner().invoke(app, [*args, "--device", "cuda"])
        assert result.exit_code == 2, result.output  # one line, no traceback
        assert "no CUDA GPU" in result.output and not (out / "x").exists()


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:  # the test set-up installs Debian's chromium when it is missing
        subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
        done = subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"],
            capture_output=True,
            text=True,
            check=False,
        )
        path = shutil.which("chromium")
        if path is None:
            pytest.fail(f"chromium is missing and could not be installed: {done.stderr[-500:]}")
    return path


def _chromium_args(profile: Path) -> list[str]:
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]


def test_report_renders_in_headless_chromium(run_dir, tmp_path):
    result = CliRunner().invoke(
        app, ["report", str(run_dir), "--out", str(tmp_path / "report.html")]
    )
    assert result.exit_code == 0, result.output
    html = tmp_path / "report.html"
    text = html.read_text()
    assert 'src="http' not in text and "<link" not in text  # self-contained
    assert (tmp_path / "report.md").read_text().count("| ststnet |") == 1
    chromium = _chromium()
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            chromium,
            *_chromium_args(tmp_path / "p1"),
            "--window-size=1200,2400",
            f"--screenshot={shot}",
            html.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 20  # not blank
    assert (pixels < 200).mean() > 0.05  # text, tables and figures, not a white page
    dom = subprocess.run(
        [
            chromium,
            *_chromium_args(tmp_path / "p2"),
            "--virtual-time-budget=5000",
            "--dump-dom",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert 'data-images-loaded="all"' in dom
    count = int(dom.split('data-image-count="')[1].split('"')[0])
    assert count >= 3 + 3  # modality chart, participants, dataset + one confusion per model


def test_folds_run_on_an_existing_dask_cluster(run_dir, store_tiny, tmp_path):
    from distributed import LocalCluster

    config = BenchmarkConfig(**{**CONFIG, "runs": CONFIG["runs"][:2]})
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        results = run_benchmark(
            store_tiny, config, tmp_path / "dask", scheduler=cluster.scheduler_address
        )
    assert results["complete"].all()
    local = pd.read_parquet(tmp_path / "dask" / "predictions.parquet")
    reference = pd.read_parquet(run_dir / "predictions.parquet")
    reference = reference[reference["model"].isin(local["model"].unique())]
    keys = ["model", "sample"]
    local, reference = (f.sort_values(keys).reset_index(drop=True) for f in (local, reference))
    pd.testing.assert_frame_equal(local[[*keys, "y_true"]], reference[[*keys, "y_true"]])
    probabilities = [c for c in local.columns if c.startswith("prob_")]
    np.testing.assert_allclose(local[probabilities], reference[probabilities], atol=1e-4)
