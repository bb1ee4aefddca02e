"""`mmhe ingest` and `mmhe validate`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mmhe.cli import app
from mmhe.cli._console import make_console


@app.command("ingest")
def ingest_command(
    raw: Path = typer.Argument(..., help="Root of a raw MMHE tree (or one written by mmhe synth)."),
    out: Path = typer.Option(..., "--out", help="Store folder (created; re-runs resume)."),
    scheduler: str | None = typer.Option(
        None,
        help="Dask scheduler address (tcp://...), or 'sync' to run in this process; "
        "default: a local cluster.",
    ),
    workers: int = typer.Option(2, help="Workers of the local cluster."),
    layout: Path | None = typer.Option(None, help="Layout YAML for differently organised trees."),
    pseudonyms: Path | None = typer.Option(
        None, help="Private name->pseudonym CSV (default: <out>.pseudonyms.csv, beside the store)."
    ),
    padding: float = typer.Option(0.0, help="Seconds added before and after each trial."),
    frame_context: int = typer.Option(10, help="Frames kept before onset and after offset."),
    frame_size: int | None = typer.Option(None, help="Longest side of stored frames (px)."),
    grey: bool = typer.Option(False, help="Store grey frames instead of colour."),
    video_size: int | None = typer.Option(
        None,
        help="Also store every frame of every trial as SIZE x SIZE grey face crops "
        "(whole-trial videos for `mmhe spot`; e.g. 128).",
    ),
) -> None:
    """Turn a raw tree into an analysis-ready store: trials, expression windows, face frames."""
    from mmhe.store import IngestConfig, ingest, validate_store

    config = IngestConfig(
        trial_padding_s=padding,
        frame_context=frame_context,
        frame_size=frame_size,
        frame_color="grey" if grey else "rgb",
        video_size=video_size,
    )
    console = make_console()
    with Progress(
        TextColumn("[bold]ingest[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("participants", total=None)

        def tick(summary: dict) -> None:
            progress.update(task, advance=1, description=summary["subject_id"])

        from mmhe.store.layout import discover

        progress.update(task, total=len(discover(raw, layout).participants))
        version = ingest(
            raw,
            out,
            config=config,
            layout=layout,
            pseudonyms=pseudonyms,
            scheduler=scheduler,
            n_workers=workers,
            progress=tick,
        )
    report, _ = validate_store(version)
    _print_report(console, report, title=f"store {version}")


@app.command("validate")
def validate_command(
    path: Path = typer.Argument(..., help="A raw tree or a store."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the report as JSON."),
    html_out: Path | None = typer.Option(None, "--html", help="Write the report as HTML."),
    layout: Path | None = typer.Option(None, help="Layout YAML (raw trees only)."),
) -> None:
    """Health report, one row per participant; exit code 1 when any participant has errors."""
    from mmhe.store import validate, write_report

    kwargs = {"layout": layout} if layout else {}
    report, problems = validate(path, **kwargs)
    console = make_console()
    _print_report(console, report, title=str(path))
    if problems:
        table = Table(title=f"Problems ({len(problems)})")
        for column in ("subject_id", "severity", "code", "message"):
            table.add_column(column, overflow="fold")
        for p in problems[:40]:
            table.add_row(
                str(p.get("subject_id") or ""),
                str(p["severity"]),
                str(p["code"]),
                str(p["message"]),
            )
        console.print(table)
        if len(problems) > 40:
            console.print(f"... {len(problems) - 40} more (see --json / --html)")
    write_report(report, problems, json_path=json_out, html_path=html_out)
    raise typer.Exit(1 if int(report.iloc[-1]["errors"]) else 0)


def _print_report(console: Console, report, title: str) -> None:
    """The health report, narrow enough for an 80-column terminal."""

    def ms(value) -> str:
        return "" if value is None or value != value else f"{float(value):.1f}"

    table = Table(
        title=f"Health report: {title}",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        caption="dev: E=EEG P=BIOPAC C=camera; markers and matches per device "
        "(e/p/c); residual = max alignment residual (ms); lost = not located",
    )
    for column in (
        "id",
        "dev",
        "markers",
        "match",
        "resid",
        "drop",
        "expr",
        "lost",
        "err",
        "warn",
        "status",
    ):
        table.add_column(column, justify="right", no_wrap=True)
    for row in report.itertuples(index=False):
        devices = "".join(
            letter if bool(flag) else "-"
            for letter, flag in (("E", row.eeg), ("P", row.physio), ("C", row.camera))
        )
        if row.subject_id == "TOTAL":
            devices = ""
        style = {"error": "red", "warning": "yellow"}.get(row.status, "green")
        table.add_row(
            str(row.subject_id),
            devices,
            f"{row.eeg_markers}/{row.physio_markers}/{row.camera_markers}",
            f"{row.physio_matched}/{row.camera_matched}",
            f"{ms(row.physio_residual_ms)}/{ms(row.camera_residual_ms)}",
            str(row.dropped_frames),
            str(row.expressions),
            str(row.not_located),
            str(row.errors),
            str(row.warnings),
            f"[{style}]{row.status}[/]",
        )
    console.print(table)
