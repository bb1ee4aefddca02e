"""`mmhe synth OUT`: write a synthetic MMHE raw tree (thin wiring of `mmhe.synth.generate`)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mmhe.cli import app


def _kind(path: str) -> str:
    parts = path.split("/")
    if len(parts) == 1:
        return parts[0]
    return {
        "EEG": "EEG",
        "BIOPAC": "BIOPAC",
        "Camera": "camera frames (.tif)",
        "Clips": "expression clips (.avi)",
    }.get(parts[1], parts[1])


def _size(n_bytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return f"{n_bytes:.1f} TB"


@app.command("synth")
def synth(
    out: Path = typer.Argument(..., help="Output folder (empty, or an interrupted run to resume)."),
    preset: str = typer.Option("demo", help="tiny | demo | spotting | full-shape"),
    seed: int = typer.Option(0, help="Random seed: same seed and options -> identical files."),
    subjects: int | None = typer.Option(None, help="Number of participants."),
    clips: int | None = typer.Option(None, help="Stimulus clips per participant (1-48)."),
    strength: float | None = typer.Option(None, help="Class-signal strength (0 = no signal)."),
    eeg_format: str | None = typer.Option(None, help="set | edf | bdf | vhdr"),
    clean: bool = typer.Option(False, "--clean", help="No quirks in the coding file or tree."),
    long_videos: bool | None = typer.Option(
        None,
        "--long-videos/--no-long-videos",
        help="Write every frame of every run, with blinks, head moves and lighting drift "
        "(for spotting; default: the preset's choice).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty folder."),
    workers: int | None = typer.Option(None, help="Participants written in parallel (Dask)."),
    scheduler: str | None = typer.Option(
        None, help="'local' (a local Dask cluster), 'sync' or a running scheduler's address."
    ),
) -> None:
    """Write a synthetic dataset in the real MMHE file formats, with planted emotion signals."""
    from mmhe.cli._options import choice
    from mmhe.cli._options import scheduler as scheduler_value
    from mmhe.synth import generate
    from mmhe.synth.config import PRESETS

    choice(preset, tuple(PRESETS), "--preset")
    if eeg_format is not None:
        choice(eeg_format, ("set", "edf", "bdf", "vhdr"), "--eeg-format")
    if scheduler == "local" and workers is None:
        workers = 2
    scheduler = scheduler_value(scheduler)

    console = Console()
    with Progress(
        TextColumn("[bold]participants"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("", total=None)

        def progress(done: int, total: int, subject: str) -> None:
            bar.update(task, completed=done, total=total, description=subject)

        manifest = generate(
            out,
            preset=preset,
            seed=seed,
            overwrite=overwrite,
            scheduler=scheduler,
            progress=progress,
            subjects=subjects,
            clips=clips,
            strength=strength,
            eeg_format=eeg_format,
            clean=clean or None,
            long_videos=long_videos,
            workers=workers,
        )
    groups: dict[str, list[int]] = defaultdict(list)
    for path, size in manifest.files.items():
        groups[_kind(path)].append(size)
    table = Table(title=f"{manifest.out_dir} ({manifest.preset}, seed {manifest.seed})")
    for column, justify in (("files", "left"), ("count", "right"), ("size", "right")):
        table.add_column(column, justify=justify)
    for kind, sizes in sorted(groups.items()):
        table.add_row(kind, str(len(sizes)), _size(sum(sizes)))
    table.add_row(
        "[bold]total", f"[bold]{len(manifest.files)}", f"[bold]{_size(manifest.total_bytes)}"
    )
    console.print(table)
    resumed = f", {len(manifest.resumed)} resumed" if manifest.resumed else ""
    console.print(
        f"{manifest.n_participants} participants{resumed}, {manifest.n_expressions} expressions, "
        f"{manifest.seconds:.1f} s"
    )
