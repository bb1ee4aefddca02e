"""`mmhe features`: compute and cache features of every expression and trial of a store."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mmhe.cli import app
from mmhe.cli._console import make_console


@app.command("features")
def features_command(
    store: Path = typer.Argument(..., help="A store written by `mmhe ingest`."),
    modality: list[str] = typer.Option(
        ["all"],
        help="face, eeg, physio, eeg_raw (raw windows for EEGNet) or all (the first three); "
        "repeat (or separate by commas) for several.",
    ),
    flow: str = typer.Option("tvl1", help="Optical flow: tvl1 (published), dis (fast), farneback."),
    quality: str = typer.Option(
        "correlation",
        "--cardiac-quality",
        help="ECG/PPG quality: correlation (one matrix product) or templatematch "
        "(NeuroKit2's, about a third of the physiology time).",
    ),
    scheduler: str | None = typer.Option(
        None,
        help="'auto' (default: a local Dask cluster from 2 cores, else this process), "
        "'local', 'sync' or a scheduler address.",
    ),
    workers: int = typer.Option(2, help="Workers of the local cluster."),
    wait: float = typer.Option(
        0.0, help="Seconds to wait for another run writing the same store (default: refuse)."
    ),
    strict: bool = typer.Option(False, "--strict", help="Exit code 1 on warnings too."),
) -> None:
    """Face flow images, EEG band power and physiological features, cached in the store.

    Prints the store's problem list (as `mmhe validate`); exit code 1 when it has errors.
    """
    from mmhe.cli._options import at_least, choice, choices
    from mmhe.cli._options import scheduler as scheduler_value
    from mmhe.cli.store_commands import _mapping_names, _store_mapping, exit_status, print_problems
    from mmhe.features.batch import (
        ALL_MODALITIES,
        MODALITIES,
        FaceFeatureConfig,
        FeatureConfig,
        PhysioFeatureConfig,
        compute_features,
        feature_issues,
        load_features,
    )
    from mmhe.store import MMHEStore, validate_store
    from mmhe.store.problems import localise

    named = choices(modality, (*ALL_MODALITIES, "all"), "--modality")
    modalities = tuple(
        dict.fromkeys(m for name in named for m in (MODALITIES if name == "all" else (name,)))
    )
    choice(flow, ("tvl1", "dis", "farneback"), "--flow")
    choice(quality, ("correlation", "templatematch"), "--cardiac-quality")
    at_least(workers, 1, "--workers")
    at_least(wait, 0, "--wait")
    chosen = scheduler_value(scheduler)
    config = FeatureConfig(
        face=FaceFeatureConfig(method=flow), physio=PhysioFeatureConfig(quality=quality)
    )
    console = make_console()
    n = len(MMHEStore(store).participant_ids()) * len(modalities)
    with Progress(
        TextColumn("[bold]features[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("", total=n)
        folders = compute_features(
            store,
            modalities,
            config=config,
            scheduler=chosen,
            n_workers=workers,
            wait_s=wait,
            progress=lambda s: progress.update(
                task, advance=1, description=f"{s['modality']} {s['subject_id']}"
            ),
        )
        progress.update(task, completed=n)
    table = Table(title="Features")
    for column in ("modality", "samples", "shape", "problems", "folder"):
        table.add_column(column)
    for name, folder in folders.items():
        frame, array = load_features(store, name, config=config)
        shape = "table" if array is None else "x".join(map(str, array.shape))
        table.add_row(
            name, str(len(frame)), shape, str(len(feature_issues(store, name, config))), folder.name
        )
    console.print(table)
    report, problems = validate_store(store)
    print_problems(console, localise(problems, _mapping_names(_store_mapping(Path(store)))))
    raise typer.Exit(exit_status(report, strict))
