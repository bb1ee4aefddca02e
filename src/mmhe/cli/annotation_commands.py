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


def _me_rule(max_total: float, max_onset_apex: float | None) -> MeRule:
    from mmhe.cli._options import at_least

    at_least(max_total, 0.0, "--me-max-total")
    at_least(max_onset_apex, 0.0, "--me-max-onset-apex")
    return MeRule(max_total, max_onset_apex)


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
    sheet: str = typer.Option("0", help="Sheet of the workbook (name or 0-based number)."),
    me_max_total: float = typer.Option(
        0.5, help="ME rule: max total duration (s); the default reproduces the paper's Fig. 2(d)."
    ),
    me_max_onset_apex: float | None = typer.Option(
        None,
        help="ME rule: also an ME when onset-to-apex <= this (s); the literature uses 0.25. "
        "Off by default. The Macro/Micro column wins when present.",
    ),
) -> None:
    """Validate a coding file: counts per emotion x ME/MaE and issues grouped by code.

    Exit code 0 unless there are errors (or warnings with --strict).
    """
    rule = _me_rule(me_max_total, me_max_onset_apex)
    coding = read_coding_file(
        file,
        stimuli=stimuli,
        pseudonyms=pseudonyms,
        me_rule=rule,
        sheet=int(sheet) if sheet.strip().isdigit() else sheet,
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
    units = ", ".join(f"{n} in {unit}" for unit, n in summary["dif_units"].items()) or "none read"
    console.print(
        f"times written in {summary['time_resolution_s'] * 1000:g} ms steps: times and frame "
        f"names may differ by {summary['time_tolerance_ms']:g} ms from rounding; dif: {units}; "
        f"ME rule: {rule}" + (" (the Macro/Micro column decides)" if coding.has_kind_column else "")
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
    other = (
        MeRule.total_or_onset_apex() if rule.max_onset_apex_s is None else MeRule(rule.max_total_s)
    )
    differ = coding.rule_disagreements((rule, other))
    if len(differ):
        table = Table(
            title=f"{len(differ)} expression(s) the rules '{rule}' and '{other}' classify "
            "differently"
        )
        for column in ("sheet row", "participant", "marker", "total ms", "onset-apex ms"):
            table.add_column(column, justify="right")
        table.add_column(str(rule))
        table.add_column(str(other))
        table.add_column("used")
        for r in differ.head(40).itertuples():
            table.add_row(
                str(r.sheet_row),
                str(r.subject_id),
                str(r.marker),
                f"{r.duration_ms:.0f}",
                f"{r.onset_apex_ms:.0f}",
                r.rule_a,
                r.rule_b,
                f"{r.kind} ({r.kind_source})",
            )
        console.print(table)
        if len(differ) > 40:
            console.print(f"... {len(differ) - 40} more (see --json)")
    if json_out is not None:
        payload = {
            "summary": summary,
            "issues": coding.issues_frame()
            .astype(object)
            .where(coding.issues_frame().notna(), None)
            .to_dict("records"),
            "rule_disagreements": differ.astype(object)
            .where(differ.notna(), None)
            .to_dict("records"),
        }
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str))
        console.print(f"summary written to {json_out}")
    failing = summary["errors"] > 0 or (strict and summary["warnings"] > 0)
    raise typer.Exit(1 if failing else 0)
