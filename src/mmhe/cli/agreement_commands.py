"""`mmhe annotations agree`: inter-coder agreement and consensus of FACS coding files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from mmhe.cli._console import make_console
from mmhe.cli.annotation_commands import _me_rule, annotations_app

if TYPE_CHECKING:  # the agreement module (SciPy's optimiser) loads when the command runs
    from mmhe.annotations.agreement import AgreementReport


def _cell(value: object) -> str:
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _table(title: str, frame: pd.DataFrame, columns: list[str], max_rows: int) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column]) if column in frame else False
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for values in frame[columns].head(max_rows).itertuples(index=False, name=None):
        table.add_row(*(_cell(v) for v in values))
    if len(frame) > max_rows:
        table.caption = f"first {max_rows} of {len(frame)} rows"
    return table


def print_report(report: AgreementReport, console: Console, *, names: bool, max_rows: int) -> None:
    """The report as Rich tables (pseudonyms unless `names`)."""
    tables = report.tables(names=names)
    method = "Cohen" if report.kappa_method == "cohen" else "Fleiss"
    summary = report.summary()
    console.print(
        f"[bold]{len(report.coders)} coders[/] ({', '.join(report.coders)}), IoU >= "
        f"{report.iou_threshold:g}: {summary['clusters']} events, "
        f"{summary['clusters_seen_by_all']} seen by all, {summary['consensus_rows']} in the "
        f"consensus ({summary['consensus_cells_changed']} cells hold a value no coder wrote: "
        f"consensus_changes), {len(report.disagreements)} disagreements"
    )
    console.print(
        f"emotion kappa ({method}) [bold]{_cell(report.emotion_kappa)}[/]   "
        f"ME/MaE kappa ({method}) [bold]{_cell(report.kind_kappa)}[/]   "
        f"AU reliability R [bold]{_cell(report.au_reliability)}[/]"
    )
    console.print(
        _table(
            "Coder files",
            tables["files"],
            ["coder", "file", "rows_read", "rows_kept", "rows_rejected", "participants"],
            max_rows,
        )
    )
    console.print(
        _table(
            "Detection (coder against reference)",
            tables["detection"],
            [
                "reference",
                "coder",
                "n_reference",
                "n_coder",
                "matched",
                "precision",
                "recall",
                "f1",
            ],
            max_rows,
        )
    )
    console.print(
        _table(
            f"Timing differences (frames at {report.fps:g} fps, B - A)",
            tables["timing"],
            [
                "coder_a",
                "coder_b",
                "point",
                "n",
                "mean_frames",
                "median_abs_frames",
                "p95_abs_frames",
            ],
            max_rows,
        )
    )
    console.print(
        _table(
            "Labels",
            tables["labels"],
            ["coder_a", "coder_b", "target", "n", "agreement", "kappa", "method"],
            max_rows,
        )
    )
    for (target, a, b), matrix in report.confusion.items():
        if target != "emotion":
            continue
        frame = matrix.reset_index().rename(columns={"a": f"{a} \\ {b}"})
        frame.columns = [str(c) for c in frame.columns]
        console.print(_table(f"Emotions: {a} (rows) vs {b}", frame, list(frame.columns), max_rows))
    console.print(
        _table(
            "Per-AU kappa (present/absent on matched events)",
            tables["au_kappa"],
            ["coder_a", "coder_b", "au", "n_events", "n_a", "n_b", "kappa", "method"],
            max_rows,
        )
    )
    console.print(
        _table(
            "Per participant",
            tables["participants"],
            [
                "coder_a",
                "coder_b",
                "subject_id",
                "matched",
                "f1",
                "au_reliability",
                "emotion_kappa",
                "onset_mean_abs_frames",
            ],
            max_rows,
        )
    )
    console.print(
        _table(
            "Per emotion",
            tables["emotions"],
            ["coder_a", "coder_b", "emotion", "n_a", "n_b", "f1", "specific_agreement", "kappa"],
            max_rows,
        )
    )
    if len(report.consensus_changes):
        console.print(
            _table(
                "Consensus cells holding a value no coder wrote",
                tables["consensus_changes"],
                ["consensus_row", "column", "coder_values", "consensus_value", "reason"],
                max_rows,
            )
        )
    if len(report.disagreements):
        counts = (
            tables["disagreements"]
            .groupby("type")
            .agg(n=("type", "size"), example=("resolution", "first"))
            .reset_index()
        )
        console.print(
            _table("Disagreements (for adjudication)", counts, ["type", "n", "example"], max_rows)
        )


@annotations_app.command("agree")
def agree(
    files: list[Path] = typer.Argument(
        ..., help="Two or more coding files of the same videos, one per coder (.xlsx or .csv)."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Write CSV tables, consensus.xlsx, agreement.html/.json here."
    ),
    iou: float = typer.Option(0.5, "--iou", help="Minimum IoU of onset-offset intervals."),
    coder: list[str] | None = typer.Option(
        None, "--coder", help="Coder name, once per file in order (default: file names)."
    ),
    names: bool = typer.Option(
        False, "--names", help="Show participant names (default: pseudonyms only)."
    ),
    pseudonyms: Path | None = typer.Option(
        None, help="Private name->pseudonym CSV shared by every file (used and extended)."
    ),
    stimuli: Path | None = typer.Option(None, help="Stimulus table CSV (marker,category)."),
    fps: float = typer.Option(150.0, help="Camera frame rate for timing in frames."),
    me_max_total: float = typer.Option(
        0.5, help="ME rule: max total duration (s); the default reproduces the paper's Fig. 2(d)."
    ),
    me_max_onset_apex: float | None = typer.Option(
        None,
        help="ME rule: also an ME when onset-to-apex <= this (s); the literature uses 0.25. "
        "Off by default. The Macro/Micro column wins when present.",
    ),
    rows: int = typer.Option(20, "--rows", help="Rows shown per table in the terminal."),
) -> None:
    """Agreement of several coders' FACS coding of the same videos, and their consensus.

    Events match when they share participant and clip and their onset-offset
    IoU reaches --iou (one-to-one, maximising the total IoU).
    Prints detection, timing, AU and label agreement as tables.
    --out writes every table (CSV), consensus.xlsx and agreement.html/.json.
    """
    from mmhe.annotations.agreement import agreement

    report = agreement(
        files,
        iou=iou,
        coders=coder or None,
        fps=fps,
        pseudonyms=pseudonyms,
        stimuli=stimuli,
        me_rule=_me_rule(me_max_total, me_max_onset_apex),
    )
    if pseudonyms is not None:  # like `check`: keep the ids of new participants
        next(iter(report.codings.values())).pseudonyms.save(pseudonyms)
    console = make_console()
    print_report(report, console, names=names, max_rows=rows)
    if out is not None:
        from mmhe.reports.agreement_report import write_agreement_html

        written = report.write(out, names=names)
        written["agreement.html"] = write_agreement_html(report, out, names=names)
        console.print(
            f"{len(written)} files written to {out} (consensus.xlsx, agreement.html, "
            "agreement.json, CSV tables)"
        )
