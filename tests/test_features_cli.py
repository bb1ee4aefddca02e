"""`mmhe features --modality`: every repeated value counts, not only the last."""

from __future__ import annotations

import shutil

from typer.testing import CliRunner

from mmhe.cli import app


def _computed(version) -> set[str]:
    return {p.name.split("-")[0] for p in (version / "features").iterdir() if p.is_dir()}


def test_repeated_modality_options_compute_each_one(store_tiny, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(store_tiny.parent, root, ignore=shutil.ignore_patterns("features"))
    version = root / store_tiny.name
    args = ["features", str(root), "--scheduler", "sync", "--flow", "dis"]
    result = CliRunner().invoke(app, [*args, "--modality", "physio", "--modality", "eeg"])
    assert result.exit_code in (0, 1), result.output  # 1: the tiny store's planted problems
    assert "Traceback" not in result.output
    assert _computed(version) == {"physio", "eeg"}
    bad = CliRunner().invoke(app, [*args, "--modality", "physio", "--modality", "eg"])
    assert bad.exit_code == 2 and "eg" in bad.output and "Traceback" not in bad.output
