"""`mmhe spot`: find micro- and macro-expressions in the stored trial videos (MEGC protocol)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mmhe.cli import app
from mmhe.cli._console import make_console, print_frame


@app.command("spot")
def spot_command(
    store: Path = typer.Argument(..., help="A store ingested with --video-size."),
    out: Path = typer.Option(..., "--out", help="Run directory for the results and report."),
    method: str = typer.Option("flow", help="flow (training-free) or learned (temporal CNN)."),
    protocol: str = typer.Option("loso", help="loso (thresholds chosen per fold on training)."),
    recognise: bool = typer.Option(
        False, "--recognise", help="Also recognise each found interval (STSTNet) and report STRS."
    ),
    export_coding: Path | None = typer.Option(
        None, "--export-coding", help="Write the found intervals as a coding sheet (.xlsx/.csv)."
    ),
    pseudonyms: Path | None = typer.Option(
        None,
        help="Private name->pseudonym CSV for --export-coding (default: <store>.pseudonyms.csv "
        "if it exists; without it the sheet names pseudonyms).",
    ),
    scheduler: str | None = typer.Option(
        None,
        help="'auto' (default: a local cluster from 2 cores, else this process), 'local', "
        "'sync' or an address.",
    ),
    workers: int = typer.Option(2, help="Workers of the local cluster."),
    seed: int = typer.Option(0, help="Seed of the learned spotter and the recogniser."),
) -> None:
    """Spot expressions in every trial video, leave-one-subject-out, and write the report."""
    from mmhe.annotations.pseudonyms import PseudonymMap
    from mmhe.errors import ConfigError
    from mmhe.evaluation.spot_run import SpotConfig, spot_store
    from mmhe.reports.spotting_export import export_coding_sheet
    from mmhe.reports.spotting_report import render_spotting_report
    from mmhe.store.reader import MMHEStore

    if method not in ("flow", "learned"):
        raise typer.BadParameter(f"--method must be flow or learned, got {method!r}")
    if protocol != "loso":
        raise typer.BadParameter(f"--protocol must be loso, got {protocol!r}")
    if export_coding is not None and export_coding.suffix.lower() not in (".xlsx", ".csv"):
        raise typer.BadParameter("--export-coding must end in .xlsx or .csv")
    if pseudonyms is not None and not pseudonyms.is_file():
        raise ConfigError(f"{pseudonyms}: pseudonym mapping not found")
    config = SpotConfig(method=method, protocol=protocol, recognise=recognise, seed=seed)
    opened = MMHEStore(store)
    console = make_console()
    with Progress(
        TextColumn("[bold]spot[/] {task.fields[stage]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        n_people = len(opened.participant_ids())
        scores_task = progress.add_task("", total=None, stage="frame scores")
        folds_task = progress.add_task("", total=n_people, stage="folds")

        def tick(stage: str, record: dict) -> None:
            if stage == "scores":
                progress.update(scores_task, advance=1, description=record["subject_id"])
            else:
                progress.update(folds_task, advance=1, description=f"test {record['test_subject']}")

        summary = spot_store(
            opened, out, config, scheduler=scheduler, n_workers=workers, progress=tick
        )
    import pandas as pd

    print_frame(console, pd.read_csv(out / "results.csv"), f"spotting ({method}, {protocol})")
    print_frame(console, pd.read_csv(out / "control.csv"), "no-expression control")
    if summary.get("recognition"):
        console.print(f"STRS {summary['recognition']['strs']:.3f}")
    report = render_spotting_report(out)
    audit = "passed" if summary["audit_passed"] else "FAILED"
    console.print(f"intervals: {out / 'intervals.csv'}; report: {report}; audit: {audit}")
    if summary["expressions_not_placed"]:
        console.print(
            f"[yellow]{summary['expressions_not_placed']} coded expressions could not be placed "
            f"in a video: see {out / 'issues.csv'}[/]"
        )
    on_box = summary["frame_scores"].get("videos_on_box_regions", 0)
    if summary["frame_scores"].get("regions") == "landmarks" and on_box:
        console.print(
            f"[yellow]{on_box} of {summary['videos']} videos had no face landmarks on their "
            "first frames: their regions follow the face-box layout instead[/]"
        )
    if export_coding is not None:
        mapping = pseudonyms or opened.path.parent.with_name(
            opened.path.parent.name + ".pseudonyms.csv"
        )
        names = PseudonymMap.load(mapping) if mapping.is_file() else None
        written = export_coding_sheet(
            opened, pd.read_csv(out / "intervals.csv"), export_coding, names=names
        )
        who = "names" if names is not None else "pseudonyms (no mapping found)"
        console.print(
            f"coding sheet: {written['path']} ({written['rows']} rows, subjects as {who}; "
            f"{written['skipped_not_stimulus_clips']} intervals in rest blocks not written)"
        )
