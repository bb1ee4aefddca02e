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
    modality: str = typer.Option(
        "all", help="face, eeg, physio, eeg_raw (raw windows for EEGNet) or all (the first three)."
    ),
    flow: str = typer.Option("tvl1", help="Optical flow: tvl1 (published), dis (fast), farneback."),
    scheduler: str | None = typer.Option(
        None, help="Dask scheduler address, or 'sync'; default: a local cluster."
    ),
    workers: int = typer.Option(2, help="Workers of the local cluster."),
) -> None:
    """Face flow images, EEG band power and physiological features, cached in the store."""
    from mmhe.features.batch import (
        ALL_MODALITIES,
        MODALITIES,
        FaceFeatureConfig,
        FeatureConfig,
        compute_features,
        feature_issues,
        load_features,
    )
    from mmhe.store import MMHEStore

    modalities = MODALITIES if modality == "all" else tuple(modality.split(","))
    unknown = set(modalities) - set(ALL_MODALITIES)
    if unknown:
        raise typer.BadParameter(f"unknown modality {sorted(unknown)}; use {ALL_MODALITIES}")
    config = FeatureConfig(face=FaceFeatureConfig(method=flow))
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
            scheduler=scheduler,
            n_workers=workers,
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
