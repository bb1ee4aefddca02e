"""`validate`: a health report of a raw tree or of a store, one row per participant."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from mmhe.annotations import PseudonymMap, read_coding_file
from mmhe.store.config import IngestConfig
from mmhe.store.layout import Layout, discover
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


def validate_raw(
    raw: str | Path,
    *,
    layout: Layout | str | Path | None = None,
    pseudonyms: str | Path | None = None,
) -> tuple[pd.DataFrame, list[dict]]:
    """Inspect every participant of a raw tree without writing anything.

    Returns (report: one row per participant + a ``TOTAL`` row, problems: list of dicts).
    """
    from mmhe.store.ingest import coding_rows, orphan_rows
    from mmhe.store.participant import count_dropped_frames, inspect_participant

    found = discover(raw, layout)
    names = PseudonymMap.load(pseudonyms) if pseudonyms else PseudonymMap()
    coding = read_coding_file(found.coding_file, pseudonyms=names) if found.coding_file else None
    names.assign(found.participants)
    redact = name_redactor(found, names, coding)
    table = coding_rows(coding)
    coding_issues = pd.DataFrame()
    if coding is not None:
        sid_by_row = dict(zip(coding.table["row"], coding.table["subject_id"], strict=True))
        coding_issues = coding.issues_frame().assign(subject_id=lambda f: f["row"].map(sid_by_row))
    problems = [
        {"subject_id": None, "severity": "warning", "code": "discovery", "message": redact(p)}
        for p in found.problems
    ]
    rows = []
    for key, files in sorted(found.participants.items(), key=lambda kv: names.id_for(kv[0])):
        sid = names.id_for(key)
        found_p = inspect_participant(files, sid, table[table["subject_id"] == sid], IngestConfig())
        mine = (
            coding_issues[coding_issues["subject_id"] == sid]
            if len(coding_issues)
            else coding_issues
        )
        align = found_p.timeline.alignments if found_p.timeline is not None else {}
        dropped = count_dropped_frames(found_p.frames)[0] if found_p.frames is not None else 0
        not_located = (
            int(found_p.expressions["locate_problem"].notna().sum())
            if found_p.expressions is not None and "locate_problem" in found_p.expressions
            else 0
        )
        errors = sum(f.severity == "error" for f in found_p.findings) + not_located
        warnings = sum(f.severity == "warning" for f in found_p.findings)
        rows.append(
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
                "dropped_frames": dropped,
                "coding_errors": int((mine["severity"] == "error").sum()) if len(mine) else 0,
                "coding_warnings": int((mine["severity"] == "warning").sum()) if len(mine) else 0,
                "expressions": 0 if found_p.expressions is None else len(found_p.expressions),
                "not_located": not_located,
                "missing_or_unreadable": sum(
                    f.code.startswith(
                        ("missing", "eeg_unreadable", "biopac_unreadable", "camera_unreadable")
                    )
                    for f in found_p.findings
                ),
                "errors": errors,
                "warnings": warnings,
                "status": _status(errors, warnings),
            }
        )
        problems += [
            {
                "subject_id": sid,
                "severity": f.severity,
                "code": f.code,
                "message": redact(f.message),
            }
            for f in found_p.findings
        ]
        if found_p.expressions is not None and "locate_problem" in found_p.expressions:
            for r in found_p.expressions[
                found_p.expressions["locate_problem"].notna()
            ].itertuples():
                problems.append(
                    {
                        "subject_id": sid,
                        "severity": "error",
                        "code": "expression_not_located",
                        "message": f"coding row {r.row}: {redact(r.locate_problem)}",
                    }
                )
    for r in orphan_rows(table, map(names.id_for, found.participants)).itertuples():
        problems.append(
            {
                "subject_id": r.subject_id,
                "severity": "error",
                "code": "expression_not_located",
                "message": f"coding row {r.row}: no raw folder for this participant",
            }
        )
    return _with_total(pd.DataFrame(rows, columns=REPORT_COLUMNS)), problems


def validate_store(path: str | Path) -> tuple[pd.DataFrame, list[dict]]:
    """Health of a store: the per-participant report plus manifest-vs-array checks."""
    from mmhe.store.reader import MMHEStore

    store = MMHEStore(path)
    issues = store.issues()
    problems = issues.astype(object).where(issues.notna(), None).to_dict("records")
    trials, expressions, alignment = store.trials(), store.expressions(), store.alignment()
    rows = []
    for sid in store.participant_ids():
        counts = store.manifest["participants"].get(sid, {}).get("counts", {})
        t = trials[trials["subject_id"] == sid] if len(trials) else trials
        e = expressions[expressions["subject_id"] == sid] if len(expressions) else expressions
        mismatches = []
        if counts.get("trials", 0) != len(t):
            mismatches.append(f"manifest lists {counts.get('trials')} trials, table {len(t)}")
        if len(t):
            shape = store.eeg(sid).shape
            if shape[0] != len(t) or shape[2] < int(t["n_eeg_samples"].max()):
                mismatches.append(f"eeg array {shape} does not fit {len(t)} trials")
        for e_row in e[e["stored_frames"] > 0].itertuples():
            try:
                n = store.frame_array(e_row.expression_id).shape[0]
            except KeyError:
                n = -1
            if n != e_row.stored_frames:
                mismatches.append(
                    f"{e_row.expression_id}: {n} frames stored, table says {e_row.stored_frames}"
                )
        for text in mismatches:
            problems.append(
                {"subject_id": sid, "severity": "error", "code": "store_mismatch", "message": text}
            )
        mine = issues[issues["subject_id"] == sid]
        a = (
            alignment[alignment["subject_id"] == sid].set_index("device")
            if len(alignment)
            else pd.DataFrame()
        )
        errors = int((mine["severity"] == "error").sum()) + len(mismatches)
        warnings = int((mine["severity"] == "warning").sum())
        rows.append(
            {
                "subject_id": sid,
                "eeg": len(t) > 0,
                "physio": "n_physio_samples" in t and bool(t["n_physio_samples"].gt(0).any()),
                "camera": bool(len(e) and (e["stored_frames"] > 0).any()),
                "eeg_markers": int(
                    (store.events().query("subject_id == @sid and device == 'eeg'")).shape[0]
                ),
                "physio_markers": int(
                    store.events().query("subject_id == @sid and device == 'physio'").shape[0]
                ),
                "camera_markers": int(
                    store.events().query("subject_id == @sid and device == 'camera'").shape[0]
                ),
                "physio_matched": int(a["n_matched"].get("physio", 0)) if len(a) else 0,
                "camera_matched": int(a["n_matched"].get("camera", 0)) if len(a) else 0,
                "physio_residual_ms": a["residual_ms_max"].get("physio") if len(a) else None,
                "camera_residual_ms": a["residual_ms_max"].get("camera") if len(a) else None,
                "dropped_frames": int(mine["code"].eq("dropped_frames").sum()),
                "coding_errors": int(
                    (mine["code"].str.startswith("coding_") & (mine["severity"] == "error")).sum()
                ),
                "coding_warnings": int(
                    (mine["code"].str.startswith("coding_") & (mine["severity"] == "warning")).sum()
                ),
                "expressions": len(e),
                "not_located": int(e["locate_problem"].notna().sum()),
                "missing_or_unreadable": int(
                    mine["code"]
                    .str.startswith(
                        ("missing", "eeg_unreadable", "biopac_unreadable", "camera_unreadable")
                    )
                    .sum()
                ),
                "errors": errors,
                "warnings": warnings,
                "status": _status(errors, warnings),
            }
        )
    return _with_total(pd.DataFrame(rows, columns=REPORT_COLUMNS)), problems


def _with_total(report: pd.DataFrame) -> pd.DataFrame:
    numeric = [
        c
        for c in REPORT_COLUMNS
        if c not in {"subject_id", "status"} and not c.endswith("_residual_ms")
    ]
    total: dict[str, Any] = {c: report[c].sum() if len(report) else 0 for c in numeric}
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
    html_path: Path | None = None,
) -> None:
    """Write the health report as JSON and/or a self-contained HTML page."""
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
    if html_path is not None:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        problem_table = pd.DataFrame(
            problems, columns=["subject_id", "severity", "code", "message"]
        )
        html_path.write_text(
            "<!doctype html><html><head><meta charset='utf-8'><title>mmhe health report</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}"
            "th{background:#eee}</style></head><body><h1>mmhe health report</h1>"
            f"<h2>Participants</h2>{report.to_html(index=False, na_rep='')}"
            f"<h2>Problems ({len(problems)})</h2>{problem_table.to_html(index=False)}"
            "</body></html>",
            encoding="utf-8",
        )
