"""`mmhe stats` and `mmhe report`."""

from __future__ import annotations

from pathlib import Path

import typer

from mmhe.cli import app
from mmhe.cli._console import make_console, print_frame


@app.command("stats")
def stats_command(
    source: Path = typer.Argument(..., help="A store folder or a coding file (.xlsx/.csv)."),
    out: Path | None = typer.Option(None, "--out", help="Write CSV tables and figures here."),
) -> None:
    """Table 1 (AU counts) and Figure 2 (emotions, compound shares, size, ME durations)."""
    from mmhe.reports.figures import write_stats
    from mmhe.reports.stats import dataset_stats

    stats = dataset_stats(source)
    console = make_console()
    print_frame(console, stats.au_counts, "Table 1: action units")
    print_frame(console, stats.emotion_counts, "Figure 2(a): expressions per emotion")
    print_frame(console, stats.compound_shares, "Figure 2(b): compound classes (%)")
    print_frame(console, stats.overview, "Figure 2(c): dataset")
    print_frame(console, stats.durations, "Figure 2(d): ME duration (ms)")
    for note in stats.notes:
        console.print(f"[yellow]note:[/] {note}")
    if out is not None:
        written = write_stats(stats, out)
        console.print(f"{len(written)} files written to {out}")


@app.command("report")
def report_command(
    run: Path = typer.Argument(..., help="A run directory written by `mmhe benchmark`."),
    out: Path | None = typer.Option(None, "--out", help="HTML file (default RUN/report.html)."),
    store: Path | None = typer.Option(
        None, help="Store for the data section (default: the run's store)."
    ),
    data: bool = typer.Option(
        True, "--data/--no-data", help="Build the data section from the store."
    ),
    faces: int = typer.Option(2, min=0, help="Animated sample expressions per emotion."),
) -> None:
    """Self-contained HTML report (plus Markdown, and every figure as SVG and PDF in
    figures/ beside it) of a benchmark run."""
    from mmhe.reports.run_report import render_report

    if store is not None and not store.exists():
        raise typer.BadParameter(f"{store} does not exist", param_hint="--store")
    html, markdown = render_report(run, out, store=store, data=data, faces=faces)
    console = make_console()
    console.print(f"report: {html}\nmarkdown: {markdown}\nfigures: {html.parent / 'figures'}")
