"""`mmhe ingest` and `mmhe validate`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mmhe.cli import app
from mmhe.cli._console import make_console
from mmhe.store.problems import localise

SCHEDULER_HELP = (
    "'auto' (default: a local Dask cluster from 2 cores, else this process), 'local', "
    "'sync' (this process) or a scheduler address tcp://HOST:PORT."
)


@app.command("ingest")
def ingest_command(
    raw: Path = typer.Argument(..., help="Root of a raw MMHE tree (or one written by mmhe synth)."),
    out: Path = typer.Option(..., "--out", help="Store folder (created; re-runs resume)."),
    scheduler: str | None = typer.Option(None, help=SCHEDULER_HELP),
    workers: int = typer.Option(2, help="Workers of the local cluster."),
    layout: Path | None = typer.Option(None, help="Layout YAML for differently organised trees."),
    pseudonyms: Path | None = typer.Option(
        None, help="Private name->pseudonym CSV (default: <out>.pseudonyms.csv, beside the store)."
    ),
    padding: float = typer.Option(0.0, help="Seconds added before and after each trial."),
    frame_context: int = typer.Option(10, help="Frames kept before onset and after offset."),
    frame_size: int | None = typer.Option(None, help="Longest side of stored frames (px, > 8)."),
    grey: bool = typer.Option(False, help="Store grey frames instead of colour."),
    prefer: str | None = typer.Option(
        None, help="Extensions tried first when a folder holds several EEG/BIOPAC files (set,cdt)."
    ),
    sheet: str = typer.Option("0", help="Sheet of the coding workbook (name or 0-based number)."),
    wait: float = typer.Option(
        0.0, help="Seconds to wait for another run writing the same store (default: refuse)."
    ),
    strict: bool = typer.Option(False, "--strict", help="Exit code 1 on warnings too."),
    video_size: int | None = typer.Option(
        None,
        help="Also store every frame of every trial as SIZE x SIZE grey face crops "
        "(whole-trial videos for `mmhe spot`; e.g. 128).",
    ),
    compression: str = typer.Option(
        "fast",
        help="Array compression: fast (LZ4, default), small (Zstd, smallest frames) or none.",
    ),
) -> None:
    """Turn a raw tree into an analysis-ready store: trials, expression windows, face frames.

    Prints the store's problem list (as `mmhe validate`); exit code 1 when it has errors.
    """
    from mmhe.cli._options import at_least, config_from, output_folder
    from mmhe.cli._options import scheduler as scheduler_value
    from mmhe.store import IngestConfig, ingest, validate_store
    from mmhe.store.layout import discover

    at_least(workers, 1, "--workers")
    at_least(wait, 0, "--wait")
    from mmhe.cli._options import choice

    choice(compression, ("fast", "small", "none"), "--compression")
    config = config_from(
        IngestConfig,
        {
            "trial_padding_s": "--padding",
            "frame_context": "--frame-context",
            "frame_size": "--frame-size",
            "video_size": "--video-size",
        },
        trial_padding_s=padding,
        frame_context=frame_context,
        frame_size=frame_size,
        frame_color="grey" if grey else "rgb",
        video_size=video_size,
        compression=compression,
    )
    chosen = scheduler_value(scheduler)
    found = discover(raw, layout, prefer=prefer)
    output_folder(out, inputs=[raw])
    console = make_console()
    with Progress(
        TextColumn("[bold]ingest[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("participants", total=len(found.participants))

        def tick(summary: dict) -> None:
            progress.update(task, advance=1, description=summary["subject_id"])

        version = ingest(
            raw,
            out,
            config=config,
            layout=layout,
            pseudonyms=pseudonyms,
            scheduler=chosen,
            n_workers=workers,
            progress=tick,
            prefer=prefer,
            sheet=_sheet(sheet),
            wait_s=wait,
        )
    report, problems = validate_store(version)
    folders = _folders_of(found, pseudonyms or out.with_name(out.name + ".pseudonyms.csv"))
    _print_report(console, report, title=f"store {version}")
    print_problems(console, localise(problems, folders))
    raise typer.Exit(exit_status(report, strict))


def _sheet(value: str) -> str | int:
    return int(value) if value.strip().isdigit() else value


def _folders_of(found, mapping: Path) -> dict[str, str]:
    """{pseudonym: participant folder name on disk} (console only)."""
    from mmhe.annotations import PseudonymMap

    names = PseudonymMap.load(mapping)
    return {
        sid: files.folder.name
        for key, files in found.participants.items()
        if (sid := names.get(key)) is not None
    }


def exit_status(report, strict: bool) -> int:
    """1 when the report's TOTAL has errors (or warnings with `strict`), else 0."""
    total = report.iloc[-1]
    return 1 if int(total["errors"]) or (strict and int(total["warnings"])) else 0


@app.command("validate")
def validate_command(
    path: Path = typer.Argument(..., help="A raw tree or a store."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the report as JSON."),
    html_out: Path | None = typer.Option(None, "--html", help="Write the report as HTML."),
    layout: Path | None = typer.Option(None, help="Layout YAML (raw trees only)."),
    pseudonyms: Path | None = typer.Option(
        None, help="Private name->pseudonym CSV (raw trees; for a store: shows folder names)."
    ),
    prefer: str | None = typer.Option(
        None, help="Extensions tried first when a folder holds several EEG/BIOPAC files."
    ),
    sheet: str = typer.Option("0", help="Sheet of the coding workbook (name or 0-based number)."),
    strict: bool = typer.Option(False, "--strict", help="Exit code 1 on warnings too."),
    rows: int = typer.Option(40, "--rows", help="Problems shown in the terminal."),
) -> None:
    """Health report, one row per participant, and every problem (file, participant folder,
    spreadsheet row); exit code 1 when there are errors (or warnings with --strict)."""
    from mmhe.store import validate, write_report

    if not path.exists():
        raise typer.BadParameter(f"{path} does not exist", param_hint="PATH")
    is_store = (path / "latest.json").is_file() or (path / "manifest.json").is_file()
    kwargs = {} if is_store else {"layout": layout, "pseudonyms": pseudonyms, "prefer": prefer}
    if not is_store:
        kwargs["sheet"] = _sheet(sheet)
    report, problems = validate(path, **kwargs)
    console = make_console()
    _print_report(console, report, title=str(path))
    if is_store:
        mapping = pseudonyms or _store_mapping(path)
        problems_shown = localise(problems, _mapping_names(mapping))
    else:
        problems_shown = localise(  # each problem carries its folder: messages back to names
            problems, {p["subject_id"]: p["folder"] for p in problems if p.get("folder")}
        )
    print_problems(console, problems_shown, limit=rows)
    write_report(report, problems, json_path=json_out)
    if html_out is not None:
        from mmhe.reports.validation_report import write_validation_html

        write_validation_html(report, problems, html_out, source=str(path))
    raise typer.Exit(exit_status(report, strict))


def _store_mapping(path: Path) -> Path | None:
    root = path if (path / "latest.json").is_file() else path.parent
    mapping = root.with_name(root.name + ".pseudonyms.csv")
    return mapping if mapping.is_file() else None


def _mapping_names(mapping: Path | None) -> dict[str, str]:
    """{pseudonym: name} from a private mapping file (console only)."""
    if mapping is None or not Path(mapping).is_file():
        return {}
    import pandas as pd

    table = pd.read_csv(mapping, dtype=str)
    return dict(zip(table["subject_id"], table["name"], strict=True))


def print_problems(console: Console, problems: list[dict], limit: int = 40) -> None:
    """The problem list: participant folder, severity, code, file, sheet row, message."""
    if not problems:
        console.print("no problems found")
        return
    errors = sum(p["severity"] == "error" for p in problems)
    table = Table(
        title=f"Problems: {errors} errors, {len(problems) - errors} warnings",
        box=box.SIMPLE_HEAD,
    )
    for column in ("participant", "severity", "code", "file", "row"):
        table.add_column(column, no_wrap=column in ("severity", "code", "row"), overflow="fold")
    table.add_column("message", overflow="fold", ratio=1)
    for p in problems[:limit]:
        style = "red" if p["severity"] == "error" else "yellow"
        who = p.get("folder") or p.get("subject_id") or ""
        if p.get("folder") and p.get("subject_id"):
            who = f"{p['folder']} ({p['subject_id']})"
        table.add_row(
            str(who),
            f"[{style}]{p['severity']}[/]",
            str(p["code"]),
            str(p.get("file") or ""),
            "" if p.get("sheet_row") is None else str(p["sheet_row"]),
            str(p["message"]),
        )
    console.print(table)
    if len(problems) > limit:
        console.print(f"... {len(problems) - limit} more (--rows N, or see --json / --html)")


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
        if row.subject_id in ("TOTAL", "(store)"):
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
