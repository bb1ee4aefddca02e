"""`validate`: a health report of a raw tree or of a store, one row per participant."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmhe.annotations import PseudonymMap
from mmhe.store.config import IngestConfig
from mmhe.store.layout import Layout, discover
from mmhe.store.problems import (
    coding_issue_records,
    counts_by_participant,
    issue_frame,
    load_coding,
    participants_table_records,
    problem_list,
    strip_console_only,
)
from mmhe.store.redact import name_redactor

REPORT_COLUMNS = [
    "subject_id",
    "eeg",
    "physio",
    "camera",
    "eeg_markers",
    "physio_markers",
    "camera_markers",
    "physio_matched",
    "camera_matched",
    "physio_residual_ms",
    "camera_residual_ms",
    "dropped_frames",
    "coding_errors",
    "coding_warnings",
    "expressions",
    "not_located",
    "missing_or_unreadable",
    "errors",
    "warnings",
    "status",
]


def _status(errors: int, warnings: int) -> str:
    return "error" if errors else "warning" if warnings else "ok"


def _frame_findings(found_p) -> None:
    """Read the onset, apex and offset frames of every located expression (and look at the
    size of every frame of its span), so corrupt frames show before ingest."""
    frames, expressions = found_p.frames, found_p.expressions
    if frames is None or expressions is None or "frame_onset" not in expressions:
        return
    bad: dict[int, str] = {}
    for row in expressions.itertuples():
        if not pd.isna(getattr(row, "locate_problem", None)):
            continue
        points = [getattr(row, f"frame_{p}") for p in ("onset", "apex", "offset")]
        if any(pd.isna(p) for p in points):
            continue
        first, last = int(points[0]), int(points[2])
        for i in sorted({*points, *range(first, last + 1)}):
            i = int(i)
            if i in bad or i < 0 or i >= len(frames):
                continue
            path = frames.path(i)
            try:
                if path.stat().st_size == 0:
                    bad[i] = f"{path.name} is empty (0 bytes)"
                elif i in points:
                    frames.read(i)
            except Exception as exc:
                bad[i] = f"{path.name}: {exc}"
    for i, text in sorted(bad.items()):
        found_p.add("error", "frames_unreadable", f"frame {i}: {text}", frames.path(i))


def validate_raw(
    raw: str | Path,
    *,
    layout: Layout | str | Path | None = None,
    pseudonyms: str | Path | None = None,
    prefer: str | list[str] | None = None,
    sheet: str | int = 0,
) -> tuple[pd.DataFrame, list[dict]]:
    """Inspect every participant of a raw tree without writing anything.

    Returns (report: one row per participant, a ``(store)`` row for problems of no
    participant when there are any, and a ``TOTAL`` row; problems: list of dicts, the
    same list `ingest` would store, see `mmhe.store.problems`). Each problem also carries
    ``folder``, the participant's folder name on disk, for a console only.
    """
    from mmhe.store.ingest import _relative, _store_issue_records, coding_rows, orphan_rows
    from mmhe.store.participant import count_dropped_frames, inspect_participant, issue_records

    raw = Path(raw)
    found = discover(raw, layout, prefer=prefer)
    names = PseudonymMap.load(pseudonyms) if pseudonyms else PseudonymMap()
    coding, coding_problems = load_coding(found, names, sheet)
    names.assign(found.participants)
    redact = name_redactor(found, names, coding)
    table = coding_rows(coding)
    orphans = orphan_rows(table, map(names.id_for, found.participants))
    _, people_problems = participants_table_records(found)
    records = (
        _store_issue_records(found, orphans, redact)
        + coding_problems
        + people_problems
        + coding_issue_records(coding, names, redact)
    )

    def clean(finding):
        return replace(
            finding,
            message=redact(finding.message),
            file=redact(_relative(finding.file, raw)) if finding.file else "",
        )

    details = []
    for key, files in sorted(found.participants.items(), key=lambda kv: names.id_for(kv[0])):
        sid = names.id_for(key)
        found_p = inspect_participant(files, sid, table[table["subject_id"] == sid], IngestConfig())
        _frame_findings(found_p)
        found_p.clean = clean
        records += issue_records(found_p, found_p.expressions)
        align = found_p.timeline.alignments if found_p.timeline is not None else {}
        expressions = found_p.expressions
        details.append(
            {
                "subject_id": sid,
                "eeg": found_p.raw is not None,
                "physio": found_p.physio is not None,
                "camera": found_p.frames is not None,
                **{
                    f"{d}_markers": len(found_p.markers.get(d, []))
                    for d in ("eeg", "physio", "camera")
                },
                **{
                    f"{d}_matched": align[d].n_matched if d in align else 0
                    for d in ("physio", "camera")
                },
                **{
                    f"{d}_residual_ms": align[d].residual_ms_max if d in align else None
                    for d in ("physio", "camera")
                },
                "dropped_frames": (
                    count_dropped_frames(found_p.frames)[0] if found_p.frames is not None else 0
                ),
                "expressions": 0 if expressions is None else len(expressions),
                "not_located": (
                    int(expressions["locate_problem"].notna().sum())
                    if expressions is not None and "locate_problem" in expressions
                    else 0
                ),
            }
        )
    problems = problem_list(issue_frame(records))
    folders = {names.id_for(k): f.folder.name for k, f in found.participants.items()}
    for p in problems:
        p["folder"] = folders.get(p["subject_id"] or "", "")
    return _report(details, problems), problems


def _trial_eeg_mismatches(store, sid: str, trials: pd.DataFrame) -> list[str]:
    """How the participant's trial EEG disagrees with its trials table (empty: it fits)."""
    from mmhe.errors import InputFileError
    from mmhe.store.trial_view import TrialEEG

    try:
        eeg = store.eeg(sid)
    except (KeyError, InputFileError) as exc:
        return [f"the trials' EEG cannot be read ({exc}): the store is damaged"]
    shape = eeg.shape
    if shape[0] != len(trials) or shape[2] < int(trials["n_eeg_samples"].max()):
        return [f"eeg array {shape} does not fit {len(trials)} trials"]
    if isinstance(eeg, TrialEEG):
        ordered = trials.sort_values("trial_index")
        starts = ordered["eeg_start"].astype("int64").to_numpy()
        lengths = ordered["n_eeg_samples"].astype("int64").to_numpy()
        if not (np.array_equal(starts, eeg.starts) and np.array_equal(lengths, eeg.lengths)):
            return [
                "the trials table and the EEG's trial spans (eeg_start, n_eeg_samples) "
                "disagree: the store is damaged; ingest again into a new folder"
            ]
    return []


def validate_store(path: str | Path) -> tuple[pd.DataFrame, list[dict]]:
    """Health of a store: the per-participant report plus manifest-vs-array checks."""
    from mmhe.store.reader import MMHEStore

    store = MMHEStore(path)
    issues = store.issues()
    trials, expressions, alignment = store.trials(), store.expressions(), store.alignment()
    events = store.events()
    extra = []
    details = []
    for sid in store.participant_ids():
        counts = store.manifest["participants"].get(sid, {}).get("counts", {})
        t = trials[trials["subject_id"] == sid]
        e = expressions[expressions["subject_id"] == sid]
        mismatches = []
        if counts.get("trials", 0) != len(t):
            listed = counts.get("trials")
            mismatches.append(
                f"the table holds {len(t)} trials but manifest.json lists "
                + ("none (no trial count)" if listed is None else str(listed))
                + ": the store is damaged; ingest again into a new folder"
            )
        if len(t):
            mismatches += _trial_eeg_mismatches(store, sid, t)
        for e_row in e[e["stored_frames"] > 0].itertuples():
            try:
                n = store.frame_array(e_row.expression_id).shape[0]
            except KeyError:
                n = -1
            if n != e_row.stored_frames:
                mismatches.append(
                    f"{e_row.expression_id}: {n} frames stored, table says {e_row.stored_frames}"
                )
        extra += [
            {
                "subject_id": sid,
                "row": None,
                "severity": "error",
                "code": "store_mismatch",
                "message": text,
                "file": "",
            }
            for text in mismatches
        ]
        a = (
            alignment[alignment["subject_id"] == sid].set_index("device")
            if len(alignment)
            else pd.DataFrame()
        )
        mine = issues[issues["subject_id"] == sid]
        device_events = events[events["subject_id"] == sid]["device"]
        details.append(
            {
                "subject_id": sid,
                "eeg": len(t) > 0,
                "physio": "n_physio_samples" in t and bool(t["n_physio_samples"].gt(0).any()),
                "camera": bool(len(e) and (e["stored_frames"] > 0).any()),
                **{
                    f"{d}_markers": int((device_events == d).sum())
                    for d in ("eeg", "physio", "camera")
                },
                "physio_matched": int(a["n_matched"].get("physio", 0)) if len(a) else 0,
                "camera_matched": int(a["n_matched"].get("camera", 0)) if len(a) else 0,
                "physio_residual_ms": a["residual_ms_max"].get("physio") if len(a) else None,
                "camera_residual_ms": a["residual_ms_max"].get("camera") if len(a) else None,
                "dropped_frames": int(mine["code"].eq("dropped_frames").sum()),
                "expressions": len(e),
                "not_located": int(e["locate_problem"].notna().sum()),
            }
        )
    problems = problem_list(pd.concat([issues, issue_frame(extra)], ignore_index=True))
    return _report(details, problems), problems


MISSING_CODES = ("missing", "eeg_unreadable", "biopac_unreadable", "camera_unreadable")


def _report(details: list[dict[str, Any]], problems: list[dict]) -> pd.DataFrame:
    """Per-participant rows with error and warning counts taken from `problems`, a
    ``(store)`` row for problems of no participant, and a TOTAL row: totals = the list."""
    counts = counts_by_participant(problems)
    missing: dict[str | None, int] = {}
    for p in problems:
        if str(p["code"]).startswith(MISSING_CODES):
            missing[p["subject_id"]] = missing.get(p["subject_id"], 0) + 1
    rows = []
    zero = {"errors": 0, "warnings": 0, "coding_errors": 0, "coding_warnings": 0}
    for detail in details:
        mine = counts.get(detail["subject_id"], zero)
        rows.append(
            {
                **detail,
                **mine,
                "missing_or_unreadable": missing.get(detail["subject_id"], 0),
                "status": _status(mine["errors"], mine["warnings"]),
            }
        )
    known = {d["subject_id"] for d in details}
    other = {"errors": 0, "warnings": 0, "coding_errors": 0, "coding_warnings": 0}
    for sid, c in counts.items():
        if sid not in known:
            for k in other:
                other[k] += c[k]
    if other["errors"] or other["warnings"]:
        rows.append(
            {
                "subject_id": STORE_ROW,
                **{c: 0 for c in REPORT_COLUMNS if c not in {"subject_id", "status"}},
                "eeg": False,
                "physio": False,
                "camera": False,
                "physio_residual_ms": None,
                "camera_residual_ms": None,
                **other,
                "missing_or_unreadable": sum(v for k, v in missing.items() if k not in known),
                "status": _status(other["errors"], other["warnings"]),
            }
        )
    return _with_total(pd.DataFrame(rows, columns=REPORT_COLUMNS))


STORE_ROW = "(store)"
"""Report row of the problems that belong to no participant (coding file, discovery,
expressions of participants without a raw folder)."""


def _with_total(report: pd.DataFrame) -> pd.DataFrame:
    numeric = [
        c
        for c in REPORT_COLUMNS
        if c not in {"subject_id", "status"} and not c.endswith("_residual_ms")
    ]
    total: dict[str, Any] = {c: int(report[c].sum()) if len(report) else 0 for c in numeric}
    total.update(subject_id="TOTAL", status=_status(int(total["errors"]), int(total["warnings"])))
    return pd.concat([report, pd.DataFrame([total])], ignore_index=True)


def validate(path: str | Path, **kwargs: Any) -> tuple[pd.DataFrame, list[dict]]:
    """Health report of a store (if `path` holds one) or of a raw tree."""
    path = Path(path)
    if (path / "latest.json").is_file() or (path / "manifest.json").is_file():
        return validate_store(path)
    return validate_raw(path, **kwargs)


def write_report(
    report: pd.DataFrame,
    problems: list[dict],
    *,
    json_path: Path | None = None,
) -> None:
    """Write the health report as JSON (pseudonyms only: the console-only ``folder`` of
    each problem is left out). The HTML page: `mmhe.reports.validation_report`."""
    problems = strip_console_only(problems)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(
            json.dumps(
                {
                    "participants": report.astype(object)
                    .where(report.notna(), None)
                    .to_dict("records"),
                    "problems": problems,
                },
                indent=2,
                default=str,
            )
        )
