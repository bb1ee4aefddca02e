"""Turn `MMHEError`s into one clear line on stderr and exit code 2, not a traceback."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from mmhe.errors import MMHEError


def run_with_clean_errors(app: typer.Typer) -> None:
    try:
        app(standalone_mode=True)
    except MMHEError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
