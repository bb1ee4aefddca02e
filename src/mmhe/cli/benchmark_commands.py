"""`mmhe benchmark`: train and evaluate baselines on a store, leakage-free."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from mmhe.cli import app
from mmhe.cli._console import make_console, print_frame


@app.command("benchmark")
def benchmark_command(
    store: Path = typer.Argument(..., help="A store written by `mmhe ingest`."),
    out: Path = typer.Option(..., "--out", help="Run directory (re-runs resume)."),
    config: Path | None = typer.Option(None, "--config", help="Benchmark YAML (runs, defaults)."),
    model: str | None = typer.Option(None, help="One model (see `mmhe.models.list_models`)."),
    task: str = typer.Option("compound", help="compound, emotion7, kind or trial."),
    modality: list[str] = typer.Option(["face"], help="Modality (repeat for fusion)."),
    samples: str = typer.Option("ME", help="ME, MaE or both."),
    protocol: str = typer.Option("loso", help="loso, group_kfold or trial_kfold."),
    epochs: int | None = typer.Option(None, help="Epochs (default: the model's published)."),
    seed: int = typer.Option(0, help="Seed of every fold."),
    scheduler: str | None = typer.Option(
        "sync",
        help="'sync' (this process), a Dask scheduler address, or 'local' for a local cluster.",
    ),
    workers: int = typer.Option(2, help="Workers of a local cluster."),
    device: str = typer.Option(
        "auto", help="Where torch models train: auto (CUDA when available), cpu or cuda."
    ),
) -> None:
    """Run a config (or one model/task/modality) and print the paper-style table."""
    from mmhe.evaluation.results import paper_table
    from mmhe.evaluation.runner import BenchmarkConfig, run_benchmark

    if config is not None:
        bench = BenchmarkConfig.load(config)
    elif model is not None:
        bench = BenchmarkConfig(
            runs=[
                {
                    "model": model,
                    "task": task,
                    "modalities": modality,
                    "samples": samples,
                    "protocol": protocol,
                    "epochs": epochs,
                    "seed": seed,
                }
            ]
        )
    else:
        raise typer.BadParameter("give --config FILE.yaml or --model NAME")
    console = make_console()
    with Progress(
        TextColumn("[bold]benchmark[/]"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task("", total=None)
        results = run_benchmark(
            store,
            bench,
            out,
            scheduler=None if scheduler == "local" else scheduler,
            n_workers=workers,
            device=device,
            progress=lambda r: progress.update(
                bar, advance=1, description=f"{r['model']} {r['modalities']} fold {r['fold']}"
            ),
        )
    print_frame(console, paper_table(results), bench.title)
    console.print(
        f"results: {out / 'results.md'}, {out / 'results.csv'}; "
        f"predictions: {out / 'predictions.parquet'}; audit: {out / 'audit.json'}"
    )
