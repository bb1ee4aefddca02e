"""`mmhe demo`: the whole path from raw recordings to a report, on synthetic data."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from mmhe.cli import app
from mmhe.cli._console import make_console, print_frame


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for every output."),
    preset: str = typer.Option("demo", help="Synthetic preset: tiny or demo."),
    seed: int = typer.Option(0, help="Seed of the synthetic data and of training."),
    scheduler: str | None = typer.Option(
        "sync", help="'sync' (this process), 'local' (a local Dask cluster) or an address."
    ),
) -> None:
    """Synthesise -> validate -> ingest -> features -> benchmark -> stats -> report."""
    from mmhe.cli._options import choice
    from mmhe.cli._options import scheduler as scheduler_value
    from mmhe.demo import run_demo
    from mmhe.evaluation.results import paper_table

    choice(preset, ("tiny", "demo"), "--preset")
    chosen = scheduler_value(scheduler)

    console = make_console()
    started = time.perf_counter()
    result = run_demo(
        out,
        preset=preset,
        seed=seed,
        scheduler=chosen,
        say=lambda text: console.print(text, highlight=False),
    )
    title = "Compound emotion (negative / positive / surprise), LOSO, pooled"
    print_frame(console, paper_table(result.results), title)
    from mmhe.demo import demo_config

    for note in demo_config().notes:
        console.print(f"[dim]note:[/] {note}", highlight=False)
    console.print(
        f"report: {result.report}\nresults: {result.run / 'results.md'}\n"
        f"statistics: {result.stats}\n"
        f"total: {time.perf_counter() - started:.1f} s",
        highlight=False,
    )
