"""`mmhe export bids|megc`: hand a store to BIDS tools and micro-expression tools."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mmhe.cli import app
from mmhe.cli._console import make_console

export_app = typer.Typer(help="Write a store in other tools' formats.", no_args_is_help=True)
app.add_typer(export_app, name="export")


def _progress(console, label: str) -> Progress:
    return Progress(
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
    )


@export_app.command("bids")
def bids_command(
    store: Path = typer.Argument(..., help="A store written by `mmhe ingest`."),
    out: Path = typer.Argument(..., help="BIDS dataset folder to write (new or empty)."),
    eeg_format: str = typer.Option("BrainVision", "--format", help="BrainVision or EDF."),
    participant: list[str] | None = typer.Option(
        None, help="Pseudonym to export (repeat; default every participant)."
    ),
    overwrite: bool = typer.Option(False, help="Replace a non-empty OUT."),
) -> None:
    """EEG (mne-bids), physiology (physio.tsv.gz), trials and expressions (events.tsv).

    Exit code 1 when a participant could not be exported (each is named).
    """
    from mmhe.export import export_bids
    from mmhe.store import MMHEStore

    if eeg_format not in ("BrainVision", "EDF"):
        raise typer.BadParameter("--format must be BrainVision or EDF")
    console = make_console()
    n = len(participant or MMHEStore(store).participant_ids())
    with _progress(console, "export bids") as progress:
        task = progress.add_task("", total=n)
        report = export_bids(
            store,
            out,
            eeg_format=eeg_format,
            participants=participant or None,
            overwrite=overwrite,
            progress=lambda sid: progress.update(task, advance=1, description=sid),
        )
    for line in report.notes:
        console.print(f"note: {line}", highlight=False)
    for line in report.problems:
        console.print(f"[bold red]error:[/] {line}", highlight=False)
    console.print(f"{len(report.subjects)} participant(s), {report.files} files in {out}")
    raise typer.Exit(1 if report.problems else 0)


@export_app.command("megc")
def megc_command(
    store: Path = typer.Argument(..., help="A store written by `mmhe ingest`."),
    sheet: Path = typer.Argument(..., help="Sample sheet to write (.csv); frames go beside it."),
    kind: str | None = typer.Option(None, help="ME or MaE (default both)."),
    frames: str = typer.Option("key", help="key (onset, apex, offset) or all stored frames."),
) -> None:
    """CASME II / MEGC-style sample sheet plus <sheet>_frames/<Subject>/<Filename>/img<N>.png."""
    from mmhe.export import export_megc
    from mmhe.store import MMHEStore

    if kind not in (None, "ME", "MaE"):
        raise typer.BadParameter("--kind must be ME or MaE")
    if frames not in ("key", "all"):
        raise typer.BadParameter("--frames must be key or all")
    console = make_console()
    n = len(MMHEStore(store).expressions(kind=kind))
    with _progress(console, "export megc") as progress:
        task = progress.add_task("", total=n)
        report = export_megc(
            store,
            sheet,
            kind=kind,
            frames=frames,
            progress=lambda e: progress.update(task, advance=1, description=e),
        )
        progress.update(task, completed=n)
    for row in report.skipped.itertuples(index=False):
        console.print(f"skipped {row.expression_id}: {row.reason}", highlight=False)
    console.print(
        f"{report.rows} expressions, {report.images} images: {report.sheet}, {report.frames_dir}"
        + (
            f"; {len(report.skipped)} skipped (listed beside the sheet)"
            if len(report.skipped)
            else ""
        )
    )
