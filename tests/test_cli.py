"""The `mmhe` command itself."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from mmhe import __version__
from mmhe.cli import app


def test_help_and_version():
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "annotations" in result.output
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"mmhe {__version__}"


def test_console_script_reports_mmhe_errors_cleanly(tmp_path):
    missing = tmp_path / "nope.xlsx"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from mmhe.cli import main; main()",
            "annotations",
            "check",
            str(missing),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert "nope.xlsx" in done.stderr and "file not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_every_preset_protocol_and_task_the_library_knows_passes_the_cli(tmp_path):
    """The CLI's choices come from the library, so none can drift out of it (a merge once
    dropped 'spotting' from `mmhe synth --preset`). A later option is made invalid so the
    command stops right after the checked one, naming the later option."""
    from typing import get_args

    from mmhe.evaluation.datasets import Task
    from mmhe.evaluation.runner import PROTOCOLS
    from mmhe.synth.config import PRESETS

    runner = CliRunner()
    assert "spotting" in PRESETS
    for preset in PRESETS:
        out = tmp_path / f"synth-{preset}"
        result = runner.invoke(app, ["synth", str(out), "--preset", preset, "--eeg-format", "x"])
        assert result.exit_code == 2, (preset, result.output)
        assert "--eeg-format" in result.output and "--preset" not in result.output
    store = tmp_path / "store"
    store.mkdir()
    for task in get_args(Task):
        for protocol in PROTOCOLS:
            args = ["benchmark", str(store), "--out", str(tmp_path / "run"), "--model", "ststnet"]
            args += ["--task", task, "--protocol", protocol, "--samples", "x"]
            result = runner.invoke(app, args)
            assert result.exit_code == 2, (task, protocol, result.output)
            assert "--samples" in result.output, (task, protocol, result.output)
            assert "--task" not in result.output and "--protocol" not in result.output


def test_ingest_path_imports_no_heavy_library_it_does_not_use():
    """Issue 21, imports off the start-up path: the modules `mmhe ingest` runs import
    neither scipy.stats (0.6-0.8 s) nor scipy.signal (0.9 s), which MNE's own read of the
    EEG does not import either, nor the feature and model libraries."""
    code = (
        "import sys\n"
        "import mmhe.cli, mmhe.store.ingest, mmhe.store.participant, mmhe.store.validate\n"
        "import mmhe.io.biopac, mmhe.io.camera, mmhe.io.eeg, mmhe.sync\n"
        "heavy = ('scipy.stats', 'scipy.signal', 'torch', 'sklearn', 'neurokit2', 'matplotlib')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
