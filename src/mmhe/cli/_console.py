"""Rich output shared by the commands: one console (the terminal's width, or 120 columns
in a pipe or log) and DataFrames printed as tables."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table


def make_console(*, stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=120)


def print_frame(console: Console, frame: pd.DataFrame, title: str) -> None:
    """Print a DataFrame as a Rich table (floats with two decimals)."""
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column), justify="right")
    for row in frame.itertuples(index=False):
        table.add_row(*[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)
