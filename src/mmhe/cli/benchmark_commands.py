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
        "auto", help="Where torch models train: auto (CUDA when present), cpu or cuda."
    ),
    models_from: list[str] = typer.Option(
        [],
        "--models-from",
        help="Import this Python module first (repeat); it registers models with "
        "mmhe.models.register.",
    ),
) -> None:
    """Run a config (or one model/task/modality) and print the paper-style table."""
    import importlib

    from pydantic import ValidationError

    from mmhe.cli._options import at_least, choice, choices, output_folder
    from mmhe.cli._options import scheduler as scheduler_value
    from mmhe.errors import ConfigError
    from mmhe.evaluation.results import paper_table
    from mmhe.evaluation.runner import BenchmarkConfig, _one_line, run_benchmark
    from mmhe.models import list_models
    from mmhe.store import MMHEStore

    at_least(epochs, 1, "--epochs")
    at_least(workers, 1, "--workers")
    chosen = scheduler_value(scheduler)

    for module in models_from:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"--models-from {module}: cannot import it: {exc}") from exc
    if config is not None:
        bench = BenchmarkConfig.load(config)
    elif model is not None:
        choice(model, list_models(), "--model")
        choice(task, ("compound", "emotion7", "kind", "trial"), "--task")
        choice(samples, ("ME", "MaE", "both"), "--samples")
        choice(protocol, ("loso", "group_kfold", "trial_kfold"), "--protocol")
        modalities = choices(modality, ("face", "eeg", "physio"), "--modality")
        try:
            bench = BenchmarkConfig(
                runs=[
                    {
                        "model": model,
                        "task": task,
                        "modalities": modalities,
                        "samples": samples,
                        "protocol": protocol,
                        "epochs": epochs,
                        "seed": seed,
                    }
                ]
            )
        except ValidationError as exc:
            raise typer.BadParameter(_one_line(exc), param_hint="--model/--modality") from None
    else:
        raise typer.BadParameter("give --config FILE.yaml or --model NAME")
    store_path = MMHEStore(store).path
    output_folder(out, inputs=[store_path])
    is_run = (out / "config.json").is_file() or (out / "folds").is_dir()
    if not is_run and any(out.iterdir()):
        raise ConfigError(
            f"--out {out} holds other files and is not a benchmark run: give a new folder "
            "(an existing run folder resumes)"
        )
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
            scheduler=chosen,
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
