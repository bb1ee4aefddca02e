"""`mmhe annotations ...`: check a coding file (and, with issue 5, coder agreement)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from mmhe.annotations import MeRule, read_coding_file
from mmhe.cli import app
from mmhe.cli._console import make_console

annotations_app = typer.Typer(
    help="Coding (annotation) files: check them, compare coders.", no_args_is_help=True
)
app.add_typer(annotations_app, name="annotations")


@annotations_app.command("check")
def check(
    file: Path = typer.Argument(..., help="Coding file (.xlsx or .csv)."),
    json_out: Path | None = typer.Option(
        None, "--json", help="Write summary, issues, counts here."
    ),
    strict: bool = typer.Option(False, "--strict", help="Exit non-zero on warnings too."),
    stimuli: Path | None = typer.Option(None, help="Stimulus table CSV (marker,category)."),
    pseudonyms: Path | None = typer.Option(
        None, help="Private name->pseudonym CSV to use and extend (kept outside any output)."
    ),
    me_max_total: float = typer.Option(0.5, help="ME rule: max total duration (s)."),
    me_max_onset_apex: float = typer.Option(0.25, help="ME rule: max onset-to-apex (s)."),
) -> None:
    """Validate a coding file: counts per emotion x ME/MaE and issues grouped by code.

    Exit code 0 unless there are errors (or warnings with --strict).
    """
    coding = read_coding_file(
        file,
        stimuli=stimuli,
        pseudonyms=pseudonyms,
        me_rule=MeRule(me_max_total, me_max_onset_apex),
    )
    if pseudonyms is not None:
        coding.pseudonyms.save(pseudonyms)
    summary = coding.summary()
    console = make_console()
    console.print(
        f"[bold]{file}[/]: {summary['rows_read']} rows read, {summary['rows_kept']} kept, "
        f"{summary['rows_rejected']} rejected, {summary['errors']} errors, "
        f"{summary['warnings']} warnings"
    )
    counts = Table(title="Expressions per emotion")
    counts.add_column("emotion")
    for kind in ("ME", "MaE", "total"):
        counts.add_column(kind, justify="right")
    for emotion, by_kind in summary["expressions"].items():
        me, mae = by_kind.get("ME", 0), by_kind.get("MaE", 0)
        counts.add_row(emotion, str(me), str(mae), str(me + mae))
    console.print(counts)
    if summary["issues_by_code"]:
        issues = Table(title="Issues by code")
        for column in ("code", "severity", "count", "sheet rows", "example"):
            issues.add_column(column, overflow="fold")
        for code, entry in summary["issues_by_code"].items():
            style = "red" if entry["severity"] == "error" else "yellow"
            issues.add_row(
                f"[{style}]{code}[/]",
                entry["severity"],
                str(entry["count"]),
                ", ".join(map(str, entry["sheet_rows"])),
                entry["example"],
            )
        console.print(issues)
    if json_out is not None:
        payload = {
            "summary": summary,
            "issues": coding.issues_frame()
            .astype(object)
            .where(coding.issues_frame().notna(), None)
            .to_dict("records"),
        }
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
        console.print(f"summary written to {json_out}")
    failing = summary["errors"] > 0 or (strict and summary["warnings"] > 0)
    raise typer.Exit(1 if failing else 0)
