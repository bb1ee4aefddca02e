"""The HTML page of `mmhe annotations agree --out`: inter-coder agreement of FACS coding.

Headline figures (kappas, AU reliability, clusters, disagreements) as cards, then every
table of `AgreementReport.tables` (detection, timing in frames, labels, confusion
matrices, per-AU kappa, per participant and emotion, unmatched events, disagreements,
matches), numbers formatted for people. Participants are pseudonyms unless ``names``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from mmhe.reports.html import MISSING, html_table, number, render_page

ROW_LIMIT = 200
"""Rows shown per table (all rows are in the CSV beside the page)."""
THREE_DECIMALS = ("kappa", "precision", "recall", "f1", "iou", "reliability", "agreement", "r")


def _digits(column: str) -> int:
    words = str(column).lower().replace("_", " ").split()
    return 3 if any(w in THREE_DECIMALS or w.startswith("kappa") for w in words) else 1


def _value(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return number(value, 3)


def _table(frame: pd.DataFrame):
    formats = {c: _digits(c) for c in frame.columns if pd.api.types.is_float_dtype(frame[c])}
    wrap = (
        [
            c
            for c in frame.columns
            if frame[c].dtype == object and frame[c].astype(str).str.len().max() > 40
        ]
        if len(frame)
        else []
    )
    shown = frame.rename(columns=lambda c: str(c).replace("_", " "))
    formats = {str(c).replace("_", " "): f for c, f in formats.items()}
    wrap = [str(c).replace("_", " ") for c in wrap]
    return html_table(shown, formats=formats, wrap=wrap, limit=ROW_LIMIT)


def _short(title: str) -> str:
    """A contents entry: 'Confusion matrix: emotion, rows A, columns B' -> 'Confusion
    matrix (emotion)', other titles up to their colon."""
    head, _, rest = title.partition(": ")
    if head == "Confusion matrix" and rest:
        return f"{head} ({rest.split(',')[0]})"
    return head


def write_agreement_html(report, out: str | Path, *, names: bool = False) -> Path:
    """Write ``agreement.html`` of an `AgreementReport` into folder `out` (created)."""
    out = Path(out)
    scrub = report.scrubber(names)
    tables = report.tables(names=names)
    summary = report.summary()
    method = "Cohen" if report.kappa_method == "cohen" else "Fleiss"
    cards = [
        (_value(report.emotion_kappa), f"emotion kappa ({method})"),
        (_value(report.kind_kappa), f"ME / MaE kappa ({method})"),
        (_value(report.au_reliability), "AU reliability R (mean)"),
        (f"{summary['clusters_seen_by_all']:,} / {summary['clusters']:,}", "events seen by all"),
        (number(len(report.disagreements)), "disagreements"),
        (number(summary["consensus_rows"]), "consensus rows"),
    ]
    titles = {
        "files": "Coder files",
        "detection": "Detection: precision, recall and F1 of each coder against the reference",
        "timing": f"Timing differences in frames at {report.fps:g} fps (coder B − coder A)",
        "labels": "Emotion and ME / MaE agreement",
        **{
            f"confusion_{target}_{a}_vs_{b}": f"Confusion matrix: {target}, rows {a}, columns {b}"
            for target, a, b in report.confusion
        },
        "au_kappa": "Action units: kappa of present / absent on matched events",
        "participants": "Per participant",
        "emotions": "Per emotion",
        "unmatched": "Events only some coders saw",
        "disagreements": "Disagreements for adjudication",
        "matches": "Matched events",
    }
    sections = [
        {
            "id": key.replace("_", "-"),
            "title": title,
            "table": _table(tables[key]),
            "rows": len(tables[key]),
        }
        for key, title in titles.items()
        if key in tables
    ]
    return render_page(
        "agreement.html.j2",
        out / "agreement.html",
        title="Inter-coder agreement of FACS coding",
        kind="inter-coder agreement",
        source=scrub(", ".join(p.name for p in report.files)),
        summary=cards,
        coders=scrub(", ".join(report.coders)),
        iou=f"{report.iou_threshold:g}",
        fps=f"{report.fps:g}",
        sections=sections,
        toc=[(s["id"], _short(s["title"])) for s in sections],
    )
