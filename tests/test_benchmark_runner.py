"""`mmhe benchmark` on an ingested synthetic store: run directory contents, resume,
incomplete runs, the leakage audit and the report rendered in headless Chromium."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

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


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    """`mmhe report` of the run (with its data section from store_tiny, one face sample
    per emotion), rendered once for the report tests."""
    out = tmp_path_factory.mktemp("report") / "report.html"
    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(out), "--faces", "1"])
    assert result.exit_code == 0, result.output
    return out


def _cells(html: str, section: str) -> list[list[str]]:
    """Text of every row of the first table of `section` (tags stripped)."""
    import re

    body = html.split(f'id="{section}"', 1)[1]
    table = body.split("<table", 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)
    strip = lambda text: re.sub(r"<[^>]+>", "", text).strip()  # noqa: E731
    return [[strip(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)] for r in rows]


def test_report_renders_in_headless_chromium(report):
    from chromium import assert_readable, probe, screenshot

    text = report.read_text()
    assert 'src="http' not in text and "<link" not in text and "<script" not in text
    measured = probe(report)
    # scores + participants, 6 confusions, Figure 2, 2 EEG maps, physiology, 2 sync, faces
    assert_readable(measured, min_images=2 + 6 + 1 + 2 + 1 + 2 + 3)
    assert measured[400]["gifs"] >= 3 and measured[400]["height"] > measured[1400]["height"]
    # on a laptop the p-value and audit matrices fit without scrolling sideways
    scrolling = measured[1400]["scrolling_tables"]  # "section:table class" of each
    assert not [t for t in scrolling if t.startswith("comparisons:") or t == "audit:matrix"]
    pixels = screenshot(report, 400)
    assert pixels.std() > 20 and (pixels < 200).mean() > 0.05  # not a blank page
    figures = report.parent / "figures"
    gifs = sorted(figures.glob("face-*.gif"))
    assert len(gifs) == measured[400]["gifs"]
    for gif in gifs:
        with Image.open(gif) as image:
            assert image.is_animated and image.n_frames > 1
    for png in figures.glob("*.png"):
        assert (png.with_suffix(".svg")).stat().st_size > 1000
        assert (png.with_suffix(".pdf")).read_bytes()[:5] == b"%PDF-"


def test_report_sections_hold_the_run_numbers(report, run_dir):
    """Per-class scores equal scikit-learn's, confusion rows sum to 100 %, markers, chance
    and majority lines labelled, the data section, what was run and its deviations."""
    from sklearn.metrics import precision_recall_fscore_support

    html = report.read_text()
    for section in ("results", "comparisons", "per-class", "confusion", "participants",
                    "seeds", "data", "audit", "run"):  # fmt: skip
        assert f'<section id="{section}">' in html
    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    rows = _cells(html, "per-class")
    assert rows[0][:5] == ["model", "class", "precision %", "recall %", "F1 %"]
    shown = {(r[0], r[1]): r for r in rows[1:]}
    for model in ("ststnet", "majority"):
        mine = predictions[(predictions["model"] == model) & ~predictions["missing_input"]]
        per_seed = [
            precision_recall_fscore_support(
                g["y_true"], g["y_pred"], labels=[0, 1, 2], zero_division=np.nan
            )
            for _, g in mine.groupby("seed")
        ]
        recall = np.mean([r[1] for r in per_seed], axis=0)
        label = f"{model} ({mine['modalities'].iloc[0]})"
        assert shown[(label, "negative")][3] == f"{100 * recall[0]:.1f}"
    assert "▲" in html and "highest UF1" in html
    scores = (report.parent / "figures" / "scores-compound-loso-ME-none.svg").read_text()
    assert "majority-class baseline" in scores and "uniform guess, 1/K" in scores
    assert "chance UAR" not in html
    strip = (report.parent / "figures" / "participants-compound-loso-ME-none.svg").read_text()
    assert "held-out participants" in strip and "majority-class baseline" in strip
    for part in ("data-faces", "data-eeg", "data-physio", "data-sync", "data-stats"):
        assert f'id="{part}"' in html
    assert "eeg-change-to-rest" in html and "sync-residuals" in html
    # the configuration: a short table, the raw block folded away, deviations computed
    run = _cells(html, "run")
    assert ["model ststnet", "face; epochs 3"] in run
    assert "<details><summary>Full configuration (config.json)</summary>" in html
    markdown = (report.with_suffix(".md")).read_text()
    assert "| ststnet | epochs | 3 | 500 |" in markdown
    import re

    visible = re.sub(r"data:image/[^\"\s]+", "", html)
    assert not re.search(r">\s*(nan|NaN|None)\s*<|_Scaler", visible)  # no raw values


def test_pvalue_matrix_equals_paired_permutation_test(report, run_dir):
    """Every p-value shown equals `paired_permutation_test` called directly on the
    predictions (seeds stacked, participants swapped), Holm-adjusted here by hand."""
    from itertools import combinations

    from mmhe.evaluation.metrics import paired_permutation_test

    predictions = pd.read_parquet(run_dir / "predictions.parquet")
    config = json.loads((run_dir / "config.json").read_text())
    labels = {m: f"{m} ({g['modalities'].iloc[0]})" for m, g in predictions.groupby("model")}
    raw = {}
    for a, b in combinations(list(dict.fromkeys(predictions["model"])), 2):
        pa = predictions[predictions["model"] == a]
        pb = predictions[predictions["model"] == b]
        both = pa.merge(pb, on=["seed", "sample"], suffixes=("_a", "_b"))
        both = both[~both["missing_input_a"] & ~both["missing_input_b"]]
        raw[(labels[a], labels[b])] = paired_permutation_test(
            both["y_true_a"], both["y_pred_a"], both["y_pred_b"], both["participant_a"],
            metric="uf1", n_perm=config["config"]["n_perm"], seed=0, labels=[0, 1, 2],
        )["p_value"]  # fmt: skip
    order = sorted(raw, key=raw.get)
    holm, running = {}, 0.0
    for rank, pair in enumerate(order):  # Holm's step-down, written out
        running = max(running, (len(order) - rank) * raw[pair])
        holm[pair] = min(1.0, running)
    table = _cells(report.read_text(), "comparisons")
    names = table[0][1:]
    for row in table[1:]:
        for name, cell in zip(names, row[1:], strict=True):
            if name == row[0]:
                assert cell == "–"
                continue
            p = holm.get((row[0], name), holm.get((name, row[0])))
            assert cell == ("< 0.001" if p < 0.001 else f"{p:.3f}"), (row[0], name)
    matrix = pd.read_csv(run_dir / "pvalues_uf1.csv", index_col=list(range(5)))
    for (a, b), p in holm.items():
        assert matrix.xs(a, level="model")[b].iloc[0] == pytest.approx(p, abs=1e-4)


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
