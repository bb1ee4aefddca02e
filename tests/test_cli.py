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
