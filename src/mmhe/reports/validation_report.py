"""The HTML page of `mmhe validate --html`: the health report of a raw tree or a store.

One row per participant (devices found, markers and matches per device, the largest
alignment residual, dropped frames, coding problems, expressions not located) and every
problem with its file, spreadsheet row and message. Pseudonyms only: the console-only
``folder`` of a problem is never written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mmhe.reports.html import MISSING, html_table, number, render_page
from mmhe.store.problems import PROBLEM_COLUMNS, strip_console_only

SPECIAL_ROWS = ("TOTAL", "(store)")


def _devices(row: pd.Series) -> str:
    if row["subject_id"] in SPECIAL_ROWS:
        return ""
    names = [
        name
        for key, name in (("eeg", "EEG"), ("physio", "BIOPAC"), ("camera", "camera"))
        if bool(row.get(key))
    ]
    return ", ".join(names) or "none"


def _ms(value: Any) -> str:
    return MISSING if value is None or pd.isna(value) else f"{float(value):.2f}"


def participant_table(report: pd.DataFrame) -> pd.DataFrame:
    """The health report as people read it (one row per participant, TOTAL last)."""
    return pd.DataFrame(
        {
            "participant": report["subject_id"],
            "devices": [_devices(r) for _, r in report.iterrows()],
            "markers EEG / BIOPAC / camera": [
                f"{number(r.eeg_markers)} / {number(r.physio_markers)} / {number(r.camera_markers)}"
                for r in report.itertuples()
            ],
            "matched BIOPAC / camera": [
                f"{number(r.physio_matched)} / {number(r.camera_matched)}"
                for r in report.itertuples()
            ],
            "max residual BIOPAC / camera, ms": [
                f"{_ms(r.physio_residual_ms)} / {_ms(r.camera_residual_ms)}"
                if r.subject_id not in SPECIAL_ROWS
                else ""
                for r in report.itertuples()
            ],
            "dropped frames": report["dropped_frames"],
            "expressions": report["expressions"],
            "not located": report["not_located"],
            "coding errors / warnings": [
                f"{number(r.coding_errors)} / {number(r.coding_warnings)}"
                for r in report.itertuples()
            ],
            "files missing": report["missing_or_unreadable"],
            "errors": report["errors"],
            "warnings": report["warnings"],
            "status": report["status"],
        }
    )


def _status_class(column: str, value: Any) -> str | None:
    if column == "status":
        return {"error": "bad", "warning": "warn-cell", "ok": "ok"}.get(str(value))
    if column in ("errors",) and isinstance(value, int | float) and value > 0:
        return "bad"
    return None


def write_validation_html(
    report: pd.DataFrame, problems: list[dict], out: str | Path, *, source: str = ""
) -> Path:
    """Write the health report (`mmhe.store.validate` output) as one self-contained page."""
    problems = strip_console_only(problems)
    table = pd.DataFrame(problems, columns=PROBLEM_COLUMNS)
    table = table.rename(columns={"subject_id": "participant", "sheet_row": "sheet row"}).fillna("")
    table["sheet row"] = [
        str(int(v)) if isinstance(v, int | float) and v != "" else str(v)
        for v in table["sheet row"]
    ]
    total = report.iloc[-1] if len(report) else pd.Series(dtype=object)
    people = report[~report["subject_id"].isin(SPECIAL_ROWS)]
    errors = int(total.get("errors", 0) or 0)
    warnings = int(total.get("warnings", 0) or 0)
    summary = [
        (number(len(people)), "participants"),
        (number(int(total.get("expressions", 0) or 0)), "expressions"),
        (number(errors), "errors"),
        (number(warnings), "warnings"),
        (str(total.get("status", "ok")), "status"),
    ]
    by_code = (
        table.groupby(["severity", "code"])
        .size()
        .rename("problems")
        .reset_index()
        .sort_values(["severity", "problems"], ascending=[True, False])
        if len(table)
        else pd.DataFrame(columns=["severity", "code", "problems"])
    )
    return render_page(
        "validation.html.j2",
        out,
        title="mmhe health report",
        kind="health report",
        source=source,
        summary=summary,
        status=str(total.get("status", "ok")),
        participants=html_table(participant_table(report), cell_class=_status_class),
        by_code=html_table(by_code, cell_class=lambda c, v: "bad" if v == "error" else None)
        if len(by_code)
        else None,
        problems=html_table(
            table[["participant", "severity", "code", "file", "sheet row", "message"]],
            wrap=["message", "file"],
            cell_class=lambda c, v: "bad" if (c == "severity" and v == "error") else None,
        )
        if len(table)
        else None,
        n_problems=len(table),
    )
