"""`mmhe demo`: the whole path from raw recordings to a report, on synthetic data."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from mmhe.cli import app
from mmhe.cli._console import make_console


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("demo-out"), "--out", help="Folder for every output."),
    preset: str = typer.Option("demo", help="Synthetic preset: tiny or demo."),
    seed: int = typer.Option(0, help="Seed of the synthetic data and of training."),
    seeds: int = typer.Option(3, min=1, help="Training seeds per model."),
    scheduler: str | None = typer.Option(
        "auto",
        help="'auto' (a local Dask cluster of 2 workers from 2 cores, else this process), "
        "'local', 'sync' (this process) or an address.",
    ),
) -> None:
    """Synthesise -> validate -> ingest -> features -> benchmark -> stats -> report."""
    from mmhe.cli._options import choice
    from mmhe.cli._options import scheduler as scheduler_value
    from mmhe.demo import run_demo

    choice(preset, ("tiny", "demo"), "--preset")
    chosen = scheduler_value(scheduler)

    console = make_console()
    started = time.perf_counter()
    result = run_demo(
        out,
        preset=preset,
        seed=seed,
        seeds=seeds,
        scheduler=chosen,
        say=lambda text: console.print(text, highlight=False),
    )
    from mmhe.cli.benchmark_commands import print_results, print_tests
    from mmhe.demo import demo_config

    title = "Compound emotion (negative / positive / surprise), pooled: mean ±seed SD [95 % CI]"
    print_results(console, result.results, title)
    print_tests(console, result.run)

    for note in demo_config().notes:
        console.print(f"[dim]note:[/] {note}", highlight=False)
    console.print(
        f"report: {result.report}\nresults: {result.run / 'results.md'}\n"
        f"statistics: {result.stats}\n"
        f"total: {time.perf_counter() - started:.1f} s",
        highlight=False,
    )
