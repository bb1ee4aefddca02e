"""One problem list for `validate`, `ingest` and `features`: every issue of a raw tree or
store as a row naming participant, file and spreadsheet row, the same wherever it is shown.

Issues are kept as rows of the store's `issues` tables (``ISSUE_COLUMNS``: ``row`` is the
1-based data row of the coding file). `problem_list` turns such rows into the problems a
user reads (``PROBLEM_COLUMNS``: ``sheet_row`` is the row number a spreadsheet shows).
Everything here carries pseudonyms; a console may show participant folder names instead
(`localise`), files written never do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from mmhe.annotations import CodingFile, PseudonymMap, read_coding_file
from mmhe.errors import MMHEError
from mmhe.store.layout import Discovery
from mmhe.store.redact import Redactor

ISSUE_COLUMNS = ["subject_id", "row", "severity", "code", "message", "file"]
PROBLEM_COLUMNS = ["subject_id", "severity", "code", "file", "sheet_row", "message"]
CONSOLE_ONLY = ("folder",)
"""Keys of a problem that hold names: shown in a console, never written to a file."""


def issue_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Issue rows as a typed table (``row`` nullable Int64)."""
    frame = pd.DataFrame(list(records), columns=ISSUE_COLUMNS)
    frame["row"] = frame["row"].astype("Int64")
    return frame


def load_coding(
    found: Discovery, names: PseudonymMap, sheet: str | int = 0
) -> tuple[CodingFile | None, list[dict[str, Any]]]:
    """The raw tree's coding file, or None with an error issue when it cannot be used at all
    (a batch goes on without expressions instead of stopping)."""
    if found.coding_file is None:
        return None, []
    try:
        return read_coding_file(found.coding_file, pseudonyms=names, sheet=sheet), []
    except MMHEError as exc:
        return None, [
            {
                "subject_id": None,
                "row": None,
                "severity": "error",
                "code": "coding_unreadable",
                "message": f"{exc}; no expression can be stored until it is fixed",
                "file": found.coding_file.name,
            }
        ]


def coding_issue_records(
    coding: CodingFile | None, names: PseudonymMap, redact: Redactor
) -> list[dict[str, Any]]:
    """Every issue of the coding file, attributed to its participant (rejected rows too)."""
    if coding is None:
        return []
    sid_by_row = dict(zip(coding.table["row"], coding.table["subject_id"], strict=True))
    records = []
    for issue in coding.issues:
        sid = sid_by_row.get(issue.row)
        if sid is None and issue.row is not None:
            sid = names.get(coding.row_subjects.get(issue.row, "")) or None
        records.append(
            {
                "subject_id": sid,
                "row": issue.row,
                "severity": issue.severity,
                "code": f"coding_{issue.code}",
                "message": redact(issue.message),
                "file": coding.path.name,
            }
        )
    return records


def participants_table_records(found: Discovery) -> tuple[pd.DataFrame | None, list[dict]]:
    """participants.tsv/.csv read as text, or None with an error issue when it is unusable."""
    path = found.participants_table
    if path is None:
        return None, []
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        people = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
        if people.shape[1] < 2:
            raise ValueError(
                f"one column only ({list(people.columns)}); expected {sep!r}-separated "
                "columns such as participant_id, sex, age"
            )
        return people, []
    except Exception as exc:
        return None, [
            {
                "subject_id": None,
                "row": None,
                "severity": "warning",
                "code": "participants_table_unreadable",
                "message": f"{path.name}: {type(exc).__name__}: {exc}; sex and age left empty",
                "file": path.name,
            }
        ]


def problem_list(issues: pd.DataFrame) -> list[dict[str, Any]]:
    """Issue rows -> problems (``PROBLEM_COLUMNS``), errors first, then by participant."""
    if not len(issues):
        return []
    frame = issues.reindex(columns=ISSUE_COLUMNS).copy()
    frame["sheet_row"] = (frame["row"].astype("Int64") + 1).astype("Int64")
    frame["_order"] = frame["severity"].map({"error": 0, "warning": 1}).fillna(2)
    frame["_sid"] = frame["subject_id"].fillna("")
    frame = frame.sort_values(["_order", "_sid"], kind="stable")
    out = frame[PROBLEM_COLUMNS].astype(object)
    out = out.where(out.notna(), None)
    records = out.to_dict("records")
    for record in records:
        record["file"] = _printable(record["file"] or "")
        record["message"] = _printable(record["message"])
        if record["sheet_row"] is not None:
            record["sheet_row"] = int(record["sheet_row"])
    return records


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffd]+")


def _printable(text: object) -> str:
    """`text` with control characters (from a garbage file quoted in a message) shown as
    ``?``: they would garble a terminal, a log or a JSON reader."""
    return _CONTROL.sub("?", str(text))


def counts_by_participant(problems: list[dict[str, Any]]) -> dict[str | None, dict[str, int]]:
    """{subject_id or None: {"errors": n, "warnings": n, "coding_errors": n, ...}}."""
    counts: dict[str | None, dict[str, int]] = {}
    for p in problems:
        entry = counts.setdefault(
            p["subject_id"],
            {"errors": 0, "warnings": 0, "coding_errors": 0, "coding_warnings": 0},
        )
        kind = "errors" if p["severity"] == "error" else "warnings"
        entry[kind] += 1
        if str(p["code"]).startswith("coding_"):
            entry[f"coding_{kind}"] += 1
    return counts


def localise(problems: list[dict[str, Any]], folders: Mapping[str, str]) -> list[dict[str, Any]]:
    """Problems for a console: each gets ``folder`` (the participant folder name as on disk)
    and pseudonyms in its file and message turned back into folder names."""
    pattern = (
        re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, folders)) + r")(?!\w)")
        if folders
        else None
    )

    def back(text: str) -> str:
        return pattern.sub(lambda m: folders[m.group(1)], text) if pattern else text

    out = []
    for p in problems:
        local = dict(p)
        local["folder"] = folders.get(p["subject_id"] or "", "")
        local["file"] = back(p["file"]) if p["file"] else ""
        local["message"] = back(p["message"])
        out.append(local)
    return out


def strip_console_only(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in p.items() if k not in CONSOLE_ONLY} for p in problems]
