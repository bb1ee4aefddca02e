"""The `mmhe` command: thin wiring of verbs to library functions (Typer + Rich).

Each topic lives in its own module under `mmhe.cli` and is registered here.
"""

from __future__ import annotations

import typer

from mmhe import __version__
from mmhe.cli._errors import OneLineErrorGroup

app = typer.Typer(
    name="mmhe",
    help="Read, align, featurise and benchmark the MMHE multimodal hidden-emotion dataset.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineErrorGroup,  # a usage error is one line, not a box
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mmhe {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """mmhe: raw recordings -> one timeline -> features -> leakage-free benchmarks -> reports."""


# Topic modules register their commands on `app` when imported (one line each).
from mmhe.cli import agreement_commands as _agreement_commands  # noqa: E402,F401
from mmhe.cli import annotation_commands as _annotation_commands  # noqa: E402,F401
from mmhe.cli import benchmark_commands as _benchmark_commands  # noqa: E402,F401
from mmhe.cli import demo_commands as _demo_commands  # noqa: E402,F401
from mmhe.cli import export_commands as _export_commands  # noqa: E402,F401
from mmhe.cli import feature_commands as _feature_commands  # noqa: E402,F401
from mmhe.cli import record_commands as _record_commands  # noqa: E402,F401
from mmhe.cli import report_commands as _report_commands  # noqa: E402,F401
from mmhe.cli import spot_commands as _spot_commands  # noqa: E402,F401
from mmhe.cli import store_commands as _store_commands  # noqa: E402,F401
from mmhe.cli import synth as _synth  # noqa: E402,F401
from mmhe.cli._errors import install as _install_clean_errors  # noqa: E402

_install_clean_errors(app)  # one line and an exit code instead of a traceback, every command


def main() -> None:
    """Entry point of the `mmhe` console script."""
    from mmhe.cli._errors import run_with_clean_errors
    from mmhe.parallel import tune_allocator

    tune_allocator()  # the Dask workers' allocator settings (see its docstring)
    run_with_clean_errors(app)
