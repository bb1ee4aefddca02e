"""`mmhe demo` end to end on the tiny preset; a second run reuses every cache."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from mmhe.cli import app
from mmhe.demo import DEMO_SEEDS, demo_config
from mmhe.models import CHANCE_BASELINES


def test_demo_runs_end_to_end_then_reuses_caches(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--preset", "tiny", "--scheduler", "sync", "--seeds", "1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for stage in ("synth", "validate", "ingest", "features", "benchmark", "stats", "report"):
        assert f"  {stage}: " in result.output
    assert "Fewer epochs than published" in result.output
    results = pd.read_csv(out / "run" / "results.csv")
    models = [run["model"] for run in demo_config().runs]
    assert results["model"].tolist() == [*models, *CHANCE_BASELINES]
    assert results["complete"].all() and (results["n_seeds"] == 1).all()
    assert demo_config().seeds == DEMO_SEEDS == 3
    assert "Paired permutation tests" in result.output and "seeds" in result.output
    assert (out / "report.html").stat().st_size > 50_000
    assert (out / "stats" / "figure2.png").is_file()
    assert str(out / "report.html") in result.output.replace("\n", "")

    cached = {
        p: p.stat().st_mtime_ns
        for pattern in (
            "raw/*/EEG/*",
            "store/*/participants/*/summary.json",
            "store/*/features/*/participants/*/summary.json",
            "run/folds/*/fold-*.parquet",
        )
        for p in out.glob(pattern)
    }
    # 3 EEG files, 3 participants, 9 feature parts, 6 rows x 3 folds
    assert len(cached) >= 3 + 3 + 9 + 18
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in cached} == cached  # nothing recomputed
    pd.testing.assert_frame_equal(results, pd.read_csv(out / "run" / "results.csv"))


def test_demo_stages_share_one_local_cluster():
    """Ingest, features and training get the same scheduler address; "sync" and given
    addresses pass through; the cluster is closed at the end."""
    from distributed import Client

    from mmhe.demo import _SharedCluster

    with _SharedCluster(1) as shared:
        assert shared.address("sync") == "sync" and shared.cluster is None  # nothing started
        first = shared.address(None)
        assert first.startswith("tcp://") and shared.address(None) == first
        assert shared.address("tcp://elsewhere:8786") == "tcp://elsewhere:8786"
        with Client(first) as client:
            assert len(client.scheduler_info()["workers"]) == 1
    assert shared.cluster.status.name == "closed"
