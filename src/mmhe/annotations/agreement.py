"""Inter-coder agreement of FACS coding files, and their consensus.

Two or more coders code the same videos independently (one coding file each, read with
`read_coding_file` so every quirk is handled the same way). This module

1. matches their expressions: same participant (pseudonymous ``subject_id`` from ONE shared
   `PseudonymMap`), same clip (marker; clip index and session date when both rows have
   them), onset-offset intervals with IoU >= a threshold, one-to-one assignment maximising
   the total IoU per participant and marker (Hungarian algorithm,
   `scipy.optimize.linear_sum_assignment`); with more than two coders every pair is matched
   and the events are grouped into clusters (`mmhe.annotations.consensus`);
2. computes agreement, overall and per participant and per emotion: detection precision /
   recall / F1, timing differences in frames, the AU reliability of the micro-expression
   corpora R = 2|AU(A) & AU(B)| / (|AU(A)| + |AU(B)|) (CASME II, Yan et al. 2014), per-AU
   and emotion Cohen's kappa (Cohen 1960) for pairs and Fleiss' kappa (Fleiss 1971) for
   three or more coders, confusion matrices, the same for ME / MaE;
3. merges the coders into a consensus coding file and lists every disagreement.

Comparability: an event of coder X can only be missed by coder Y when Y's file has the
same participant (and session date, when known) and no rejected row of Y overlaps it; the
other events are "not comparable" for that pair, reported with their reason and left out
of the detection figures.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmhe.annotations.coding_file import (
    CAMERA_FPS,
    CODING_COLUMNS,
    CodingFile,
    MeRule,
    canonical_columns,
    load_sheet,
    normalise_xlsx,
    read_coding_file,
    to_coding_rows,
)
from mmhe.annotations.consensus import (
    DISAGREEMENT_COLUMNS,
    POINTS,
    build_consensus,
    cluster_events,
    cluster_fields,
)
from mmhe.annotations.parsing import (
    CellError,
    format_aus,
    is_blank,
    parse_clip_filename,
    parse_int,
    parse_seconds,
    subject_key,
)
from mmhe.annotations.pseudonyms import PseudonymMap
from mmhe.errors import ConfigError
from mmhe.labels import ACTION_UNITS, EMOTIONS

IOU_THRESHOLD = 0.5
KINDS = ("ME", "MaE")
_IOU_EPS = 1e-9
_COMPARABLE = ("matched", "missed")
ALL = "all"
"""``coder_a`` / ``coder_b`` of the rows holding Fleiss' figures over all coders."""


# ---------------------------------------------------------------- statistics


def interval_iou(
    onset_a: np.ndarray, offset_a: np.ndarray, onset_b: np.ndarray, offset_b: np.ndarray
) -> np.ndarray:
    """Intersection over union of every interval of A with every interval of B.

    onset_a, offset_a : shape (n_a,), seconds; onset_b, offset_b : shape (n_b,), seconds.
    Returns shape (n_a, n_b) in [0, 1]. Two zero-length intervals have IoU 1 when they
    coincide, else 0.
    """
    a0, a1 = np.asarray(onset_a, float)[:, None], np.asarray(offset_a, float)[:, None]
    b0, b1 = np.asarray(onset_b, float)[None, :], np.asarray(offset_b, float)[None, :]
    inter = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0.0, None)
    union = (a1 - a0) + (b1 - b0) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return np.where((union <= 0) & (a0 == b0), 1.0, iou)


def au_reliability(aus_a: Sequence[int], aus_b: Sequence[int]) -> float:
    """AU reliability of one event: R = 2 |A & B| / (|A| + |B|) (Yan et al. 2014, CASME II).

    NaN when neither coder coded an AU.

    >>> au_reliability((4, 7), (4,))
    0.6666666666666666
    """
    a, b = set(aus_a), set(aus_b)
    if not a and not b:
        return math.nan
    return 2 * len(a & b) / (len(a) + len(b))


def _label_order(values: Sequence[Any]) -> list[Any]:
    known = [*EMOTIONS, *KINDS]
    present = set(values)
    ordered = [v for v in known if v in present]
    return ordered + sorted(present - set(ordered), key=str)


def confusion_matrix(
    labels_a: Sequence[Any], labels_b: Sequence[Any], labels: Sequence[Any] | None = None
) -> pd.DataFrame:
    """Counts of (label by coder A, label by coder B) over the same events.

    Rows: A's labels; columns: B's labels, both in `labels` order (default: canonical
    emotions, then ME/MaE, then any other label sorted).
    """
    a, b = list(labels_a), list(labels_b)
    if len(a) != len(b):
        raise ConfigError(f"two label lists of different lengths ({len(a)} and {len(b)})")
    order = _label_order(a + b) if labels is None else list(labels)
    index = {label: i for i, label in enumerate(order)}
    unknown = {x for x in a + b if x not in index}
    if unknown:
        raise ConfigError(f"labels {sorted(map(str, unknown))} are not in the given labels")
    counts = np.zeros((len(order), len(order)), dtype=np.int64)
    if a:
        np.add.at(counts, ([index[x] for x in a], [index[x] for x in b]), 1)
    return pd.DataFrame(counts, index=pd.Index(order, name="a"), columns=pd.Index(order, name="b"))


def cohen_kappa(
    labels_a: Sequence[Any], labels_b: Sequence[Any], labels: Sequence[Any] | None = None
) -> float:
    """Cohen's kappa (Cohen 1960) of two coders' labels of the same events.

    kappa = (p_o - p_e) / (1 - p_e), p_o the observed agreement, p_e the agreement expected
    from the two coders' label frequencies. NaN without events or when p_e = 1 (both coders
    used one and the same label). Equals `sklearn.metrics.cohen_kappa_score`.
    """
    counts = confusion_matrix(labels_a, labels_b, labels).to_numpy(dtype=float)
    n = counts.sum()
    if n == 0:
        return math.nan
    observed = np.trace(counts) / n
    expected = float(counts.sum(axis=1) @ counts.sum(axis=0)) / n**2
    if expected >= 1.0 - 1e-12:
        return math.nan
    return float((observed - expected) / (1.0 - expected))


def _fleiss_parts(counts: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] == 0:
        raise ConfigError("Fleiss' kappa needs a (n_subjects, n_categories) table of counts")
    raters = counts.sum(axis=1)
    if np.any(raters != raters[0]) or raters[0] < 2:
        raise ConfigError(
            "Fleiss' kappa needs the same number (>= 2) of ratings for every subject; "
            f"got {sorted(set(raters.astype(int).tolist()))}"
        )
    n = int(raters[0])
    shares = counts.sum(axis=0) / (counts.shape[0] * n)
    return counts, n, shares


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa (Fleiss 1971) of N subjects each rated by n raters into k categories.

    counts : shape (N, k), counts[i, j] = raters who put subject i into category j; every
        row sums to the same n >= 2.
    kappa = (P_bar - P_e) / (1 - P_e), P_bar the mean pairwise agreement per subject,
    P_e = sum_j p_j^2. NaN when P_e = 1 (one category only).
    """
    counts, n, shares = _fleiss_parts(counts)
    per_subject = ((counts**2).sum(axis=1) - n) / (n * (n - 1))
    expected = float((shares**2).sum())
    if expected >= 1.0 - 1e-12:
        return math.nan
    return float((per_subject.mean() - expected) / (1.0 - expected))


def fleiss_category_kappa(counts: np.ndarray) -> np.ndarray:
    """Fleiss' (1971) kappa of each category j: 1 - sum_i n_ij (n - n_ij) / (N n (n-1) p_j q_j).

    counts : shape (N, k) as in `fleiss_kappa`. Returns shape (k,); NaN for a category
    nobody or everybody used.
    """
    counts, n, shares = _fleiss_parts(counts)
    disagreement = (counts * (n - counts)).sum(axis=0)
    spread = counts.shape[0] * n * (n - 1) * shares * (1.0 - shares)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(spread > 0, 1.0 - disagreement / np.where(spread > 0, spread, 1.0), np.nan)


def _mean(values: Any) -> float:
    array = np.asarray(values, dtype=float)
    array = array[~np.isnan(array)]
    return float(array.mean()) if array.size else math.nan


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


# ---------------------------------------------------------------- matching


def _date_ordinals(dates: pd.Series) -> np.ndarray:
    return np.array(
        [d.toordinal() if hasattr(d, "toordinal") and not pd.isna(d) else np.nan for d in dates],
        dtype=float,
    )


def _conflicting(values_a: np.ndarray, values_b: np.ndarray) -> np.ndarray:
    """True where both values are known and differ; shape (n_a, n_b)."""
    a, b = values_a[:, None], values_b[None, :]
    return ~np.isnan(a) & ~np.isnan(b) & (a != b)


def _pair_iou(ga: pd.DataFrame, gb: pd.DataFrame) -> np.ndarray:
    """IoU of the events of one participant and marker, 0 where clip index or date differ."""
    iou = interval_iou(ga["onset_s"], ga["offset_s"], gb["onset_s"], gb["offset_s"])
    clip_a = ga["clip_index"].to_numpy(dtype=float, na_value=np.nan)
    clip_b = gb["clip_index"].to_numpy(dtype=float, na_value=np.nan)
    other = _conflicting(clip_a, clip_b) | _conflicting(
        _date_ordinals(ga["session_date"]), _date_ordinals(gb["session_date"])
    )
    return np.where(other, 0.0, iou)


def _match_pair(
    a: pd.DataFrame, b: pd.DataFrame, threshold: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Matches (event_a, event_b, iou) and each event's best overlap with the other coder."""
    from scipy.optimize import linear_sum_assignment  # here, not at import: CLI start-up

    matches: list[tuple[int, int, float]] = []
    best: list[tuple[int, int, float]] = []
    groups_b = dict(tuple(b.groupby(["subject_id", "marker"], sort=False)))
    for key, ga in a.groupby(["subject_id", "marker"], sort=False):
        gb = groups_b.get(key)
        if gb is None:
            continue
        iou = _pair_iou(ga, gb)
        for events, others, matrix in ((ga.index, gb.index, iou), (gb.index, ga.index, iou.T)):
            top = matrix.argmax(axis=1)
            best.extend(
                (int(e), int(others[t]), float(matrix[i, t]))
                for i, (e, t) in enumerate(zip(events, top, strict=True))
            )
        valid = iou >= threshold - _IOU_EPS
        rows, cols = linear_sum_assignment(np.where(valid, iou, 0.0), maximize=True)
        keep = valid[rows, cols]
        matches.extend(
            (int(ga.index[r]), int(gb.index[c]), float(iou[r, c]))
            for r, c in zip(rows[keep], cols[keep], strict=True)
        )
    return (
        pd.DataFrame(matches, columns=["event_a", "event_b", "iou"]),
        pd.DataFrame(best, columns=["event", "other_event", "iou"]).set_index("event"),
    )


def match_events(a: pd.DataFrame, b: pd.DataFrame, *, iou: float = IOU_THRESHOLD) -> pd.DataFrame:
    """One-to-one matching of two coders' expressions.

    a, b : coding tables (`read_coding_file(...).table`) whose ``subject_id`` come from one
        shared `PseudonymMap`.
    iou : minimum intersection over union of the onset-offset intervals (seconds).
    Same participant and marker; clip index and session date must agree when both rows have
    them. Among the pairs with IoU >= `iou`, the assignment maximising the total IoU per
    participant and marker (`scipy.optimize.linear_sum_assignment`).
    Returns DataFrame(index_a, index_b, iou): index labels of `a` and `b`, one row per match.
    """
    _check_threshold(iou)
    matches, _ = _match_pair(a, b, iou)
    return matches.rename(columns={"event_a": "index_a", "event_b": "index_b"})


def _check_threshold(iou: float) -> None:
    if not 0.0 < iou <= 1.0:
        raise ConfigError(f"IoU threshold {iou} is not in (0, 1]; 0.5 is the usual choice")


# ---------------------------------------------------------------- inputs


def _coder_names(paths: list[Path], coders: Sequence[str] | None) -> list[str]:
    if coders is not None:
        names = [str(c).strip() for c in coders]
        if len(names) != len(paths) or len(set(names)) != len(names) or "" in names:
            raise ConfigError(
                f"{len(names)} coder names for {len(paths)} files; give one distinct name per file"
            )
        if ALL in names:
            raise ConfigError(f"{ALL!r} is reserved; choose another coder name")
        return names
    names = [p.stem for p in paths]
    if len(set(names)) < len(names):
        names = [f"{p.parent.name}/{p.stem}" if p.parent.name else p.stem for p in paths]
    if len(set(names)) < len(names) or ALL in names:
        names = [f"{n}#{i}" for i, n in enumerate(names, start=1)]
    return names


def _rejected_rows(coder: str, coding: CodingFile, pseudonyms: PseudonymMap) -> pd.DataFrame:
    """Rows of a coder file with errors: what could still be read of them, and why."""
    columns = ["coder", "row", "subject", "subject_id", "file", "marker", "onset_s", "offset_s"]
    by_row: dict[int, list] = {}
    for issue in coding.errors:
        if issue.row is not None:
            by_row.setdefault(issue.row, []).append(issue)
    if not by_row:
        return pd.DataFrame(columns=[*columns, "codes", "message"])
    sheet = canonical_columns(coding.path, load_sheet(coding.path, 0))
    records = []
    for row, issues in sorted(by_row.items()):
        cells = sheet.iloc[row - 1] if row - 1 < len(sheet) else pd.Series(dtype=object)
        subject = "" if is_blank(cells.get("Subject")) else str(cells["Subject"]).strip()
        file = "" if is_blank(cells.get("Filename")) else str(cells["Filename"]).strip()
        values = {}
        for name, parser, column in (
            ("marker", parse_int, "Marker"),
            ("onset_s", parse_seconds, "OnsetTime"),
            ("offset_s", parse_seconds, "OffsetTime"),
        ):
            try:
                values[name] = parser(cells.get(column), column)
            except CellError:
                values[name] = None
        if values["marker"] is None and file:
            try:
                values["marker"] = parse_clip_filename(file).marker
            except CellError:
                pass
        records.append(
            {
                "coder": coder,
                "row": row,
                "subject": subject,
                "subject_id": pseudonyms.id_for(subject) if subject_key(subject) else None,
                "file": file,
                **values,
                "codes": ", ".join(sorted({i.code for i in issues})),
                "message": "; ".join(i.message for i in issues),
            }
        )
    return pd.DataFrame(records, columns=[*columns, "codes", "message"])


def _events(codings: dict[str, CodingFile]) -> pd.DataFrame:
    frames = []
    for index, (coder, coding) in enumerate(codings.items()):
        table = coding.table.copy()
        table.insert(0, "coder_index", index)
        table.insert(0, "coder", coder)
        frames.append(table)
    events = pd.concat(frames, ignore_index=True)
    events["session_date"] = [None if pd.isna(d) else d for d in events["session_date"]]
    events.index.name = "event"
    return events


# ---------------------------------------------------------------- pairwise status


def _coverage(events: pd.DataFrame) -> dict[str, dict[str, set]]:
    coverage: dict[str, dict[str, set]] = {}
    for coder, sid, date in events[["coder", "subject_id", "session_date"]].itertuples(index=False):
        coverage.setdefault(coder, {}).setdefault(sid, set()).add(date)
    return coverage


def _covers(dates: set | None, date: Any) -> bool:
    return bool(dates) and (date is None or None in dates or date in dates)


def _blockers(rejected: pd.DataFrame) -> dict[tuple, list[dict[str, Any]]]:
    """Rejected rows with a participant, marker and times, by (coder, subject_id, marker)."""
    usable = rejected.dropna(subset=["subject_id", "marker", "onset_s", "offset_s"])
    # a duplicate is the same expression as a kept row: it hides nothing from comparison
    usable = usable[~usable["codes"].isin(["duplicate_row", "empty_row"])]
    blockers: dict[tuple, list[dict[str, Any]]] = {}
    for r in usable.to_dict("records"):
        blockers.setdefault((r["coder"], r["subject_id"], int(r["marker"])), []).append(r)
    return blockers


def _missed_reason(
    e: dict[str, Any],
    other: str,
    near: tuple[int, float] | None,
    in_clip: int,
    row_of: dict[int, int],
    threshold: float,
) -> tuple[int | None, int | None, float, str]:
    """Why `other` has no match for event `e`: its closest overlap, or an empty clip."""
    if near is not None and near[1] > 0:
        other_event, iou = near
        other_row = row_of[other_event]
        if iou >= threshold - _IOU_EPS:
            reason = (
                f"{other}'s row {other_row} overlaps it (IoU {iou:.2f}) but was matched "
                "to a better-overlapping expression"
            )
        else:
            reason = (
                f"{other}'s closest expression (row {other_row}) overlaps it with "
                f"IoU {iou:.2f} < {threshold}"
            )
        return other_event, other_row, iou, reason
    if in_clip:
        return (
            None,
            None,
            0.0,
            f"none of {other}'s {in_clip} expression(s) in this clip overlaps it",
        )
    return None, None, 0.0, f"{other} coded no expression in this clip (marker {e['marker']})"


def _pair_status(
    events: pd.DataFrame,
    coders: list[str],
    matches: pd.DataFrame,
    best: dict[tuple[str, str], pd.DataFrame],
    rejected: pd.DataFrame,
    threshold: float,
) -> pd.DataFrame:
    """For every event and every other coder: matched, missed or not comparable, and why."""
    coverage = _coverage(events)
    row_of = events["row"].to_dict()
    coder_of = events["coder"].to_dict()
    partner: dict[tuple[int, str], tuple[int, float]] = {}
    for ea, eb, iou in matches[["event_a", "event_b", "iou"]].itertuples(index=False):
        partner[(int(ea), coder_of[eb])] = (int(eb), float(iou))
        partner[(int(eb), coder_of[ea])] = (int(ea), float(iou))
    nearest = {
        pair: dict(
            zip(frame.index, zip(frame["other_event"], frame["iou"], strict=True), strict=True)
        )
        for pair, frame in best.items()
    }
    clip_counts = events.groupby(["coder", "subject_id", "marker"]).size().to_dict()
    blockers = _blockers(rejected)
    rejected_per_subject = (
        rejected.groupby(["coder", "subject_id"]).size().to_dict() if len(rejected) else {}
    )
    records = []
    for e in events.reset_index().to_dict("records"):
        event, sid, marker = int(e["event"]), e["subject_id"], int(e["marker"])
        for other in coders:
            if other == e["coder"]:
                continue
            record = {"event": event, "coder": e["coder"], "other": other}
            hit = partner.get((event, other))
            if hit is not None:
                row = row_of[hit[0]]
                records.append(
                    {
                        **record,
                        "status": "matched",
                        "other_event": hit[0],
                        "other_row": row,
                        "iou": hit[1],
                        "reason": f"matched {other} row {row} (IoU {hit[1]:.2f})",
                    }
                )
                continue
            candidates = blockers.get((other, sid, marker), [])
            if candidates:
                overlap = interval_iou(
                    [e["onset_s"]],
                    [e["offset_s"]],
                    [b["onset_s"] for b in candidates],
                    [b["offset_s"] for b in candidates],
                )[0]
                if overlap.max() >= threshold - _IOU_EPS:
                    blocker = candidates[int(overlap.argmax())]
                    records.append(
                        {
                            **record,
                            "status": "not_comparable",
                            "other_event": None,
                            "other_row": int(blocker["row"]),
                            "iou": float(overlap.max()),
                            "reason": f"not comparable: {other}'s row {blocker['row']} overlaps it "
                            f"(IoU {overlap.max():.2f}) but was rejected ({blocker['codes']})",
                        }
                    )
                    continue
            dates = coverage.get(other, {}).get(sid)
            if not _covers(dates, e["session_date"]):
                n_rejected = rejected_per_subject.get((other, sid), 0)
                where = sid + (
                    f" on {e['session_date']:%Y-%m-%d}" if dates and e["session_date"] else ""
                )
                records.append(
                    {
                        **record,
                        "status": "not_comparable",
                        "other_event": None,
                        "other_row": None,
                        "iou": math.nan,
                        "reason": f"not comparable: {other}'s file has no usable expression of "
                        f"{where}" + (f" ({n_rejected} rejected row(s))" if n_rejected else ""),
                    }
                )
                continue
            other_event, other_row, iou, reason = _missed_reason(
                e,
                other,
                nearest.get((e["coder"], other), {}).get(event),
                clip_counts.get((other, sid, marker), 0),
                row_of,
                threshold,
            )
            records.append(
                {
                    **record,
                    "status": "missed",
                    "other_event": other_event,
                    "other_row": other_row,
                    "iou": iou,
                    "reason": reason,
                }
            )
    columns = ["event", "coder", "other", "status", "other_event", "other_row", "iou", "reason"]
    status = pd.DataFrame(records, columns=columns)
    for column in ("other_event", "other_row"):
        status[column] = pd.array(status[column].tolist(), dtype="Int64")
    return status


# ---------------------------------------------------------------- figures


def _matched_table(
    events: pd.DataFrame, coder_a: str, coder_b: str, pairs: pd.DataFrame, fps: float
) -> pd.DataFrame:
    """One row per matched event of a coder pair: times differences (frames), R, labels."""
    a = events.loc[pairs["event_a"]].reset_index(drop=True)
    b = events.loc[pairs["event_b"]].reset_index(drop=True)
    table = pd.DataFrame(
        {
            "coder_a": coder_a,
            "coder_b": coder_b,
            "event_a": pairs["event_a"].to_numpy(),
            "event_b": pairs["event_b"].to_numpy(),
            "row_a": a["row"],
            "row_b": b["row"],
            "subject": a["subject"],
            "subject_id": a["subject_id"],
            "file": a["file"],
            "marker": a["marker"],
            "clip_index": a["clip_index"],
            "iou": pairs["iou"].to_numpy(),
        }
    )
    for point in POINTS:
        table[f"{point}_diff_frames"] = (b[f"{point}_s"] - a[f"{point}_s"]).to_numpy() * fps
    table["aus_a"] = [format_aus(x) for x in a["aus"]]
    table["aus_b"] = [format_aus(x) for x in b["aus"]]
    table["au_reliability"] = [
        au_reliability(x, y) for x, y in zip(a["aus"], b["aus"], strict=True)
    ]
    for column in ("emotion", "kind"):
        table[f"{column}_a"] = a[column].to_numpy()
        table[f"{column}_b"] = b[column].to_numpy()
    table["_aus_a"] = a["aus"].to_numpy()
    table["_aus_b"] = b["aus"].to_numpy()
    return table


def _timing_rows(m: pd.DataFrame, coder_a: str, coder_b: str) -> list[dict[str, Any]]:
    rows = []
    for point in POINTS:
        diff = m[f"{point}_diff_frames"].to_numpy(dtype=float)
        absolute = np.abs(diff)
        rows.append(
            {
                "coder_a": coder_a,
                "coder_b": coder_b,
                "point": point,
                "n": int(diff.size),
                "mean_frames": float(diff.mean()) if diff.size else math.nan,
                "mean_abs_frames": float(absolute.mean()) if diff.size else math.nan,
                "median_abs_frames": float(np.median(absolute)) if diff.size else math.nan,
                "p95_abs_frames": float(np.percentile(absolute, 95)) if diff.size else math.nan,
                "max_abs_frames": float(absolute.max()) if diff.size else math.nan,
            }
        )
    return rows


def _label_figures(m: pd.DataFrame) -> dict[str, float]:
    figures: dict[str, float] = {"au_reliability": _mean(m["au_reliability"])}
    for target in ("emotion", "kind"):
        a, b = m[f"{target}_a"].tolist(), m[f"{target}_b"].tolist()
        figures[f"{target}_agreement"] = _mean([x == y for x, y in zip(a, b, strict=True)])
        figures[f"{target}_kappa"] = cohen_kappa(a, b) if a else math.nan
    for point in POINTS:
        figures[f"{point}_mean_abs_frames"] = _mean(np.abs(m[f"{point}_diff_frames"]))
    return figures


def _detection(n_a: int, n_b: int, matched: int) -> dict[str, float]:
    return {
        "precision": _ratio(matched, n_b),
        "recall": _ratio(matched, n_a),
        "f1": _ratio(2 * matched, n_a + n_b),
    }


def _au_kappa_rows(m: pd.DataFrame, coder_a: str, coder_b: str) -> list[dict[str, Any]]:
    aus = sorted({a for x in m["_aus_a"] for a in x} | {a for x in m["_aus_b"] for a in x})
    rows = []
    for au in aus:
        has_a = [int(au in x) for x in m["_aus_a"]]
        has_b = [int(au in x) for x in m["_aus_b"]]
        rows.append(
            {
                "coder_a": coder_a,
                "coder_b": coder_b,
                "au": au,
                "name": ACTION_UNITS[au].name if au in ACTION_UNITS else "",
                "n_events": len(has_a),
                "n_a": sum(has_a),
                "n_b": sum(has_b),
                "n_both": sum(x & y for x, y in zip(has_a, has_b, strict=True)),
                "kappa": cohen_kappa(has_a, has_b, labels=[0, 1]),
                "method": "cohen",
            }
        )
    return rows


def _per_emotion_rows(
    a_status: pd.DataFrame, b_status: pd.DataFrame, m: pd.DataFrame, coder_a: str, coder_b: str
) -> list[dict[str, Any]]:
    """Detection and label agreement by emotion (detection by each coder's own label)."""
    emotions = _label_order(
        list(a_status["emotion"]) + list(b_status["emotion"]) + list(m["emotion_b"])
    )
    rows = []
    for emotion in emotions:
        a_e = a_status[a_status["emotion"] == emotion]
        b_e = b_status[b_status["emotion"] == emotion]
        matched_a = int((a_e["status"] == "matched").sum())
        matched_b = int((b_e["status"] == "matched").sum())
        precision, recall = _ratio(matched_b, len(b_e)), _ratio(matched_a, len(a_e))
        on_a = m[m["emotion_a"] == emotion]
        is_a = (m["emotion_a"] == emotion).astype(int).tolist()
        is_b = (m["emotion_b"] == emotion).astype(int).tolist()
        both = sum(x & y for x, y in zip(is_a, is_b, strict=True))
        rows.append(
            {
                "coder_a": coder_a,
                "coder_b": coder_b,
                "emotion": emotion,
                "n_a": len(a_e),
                "n_b": len(b_e),
                "matched_a": matched_a,
                "matched_b": matched_b,
                "precision": precision,
                "recall": recall,
                "f1": _ratio(2 * precision * recall, precision + recall)
                if not (math.isnan(precision) or math.isnan(recall))
                else math.nan,
                "specific_agreement": _ratio(2 * both, sum(is_a) + sum(is_b)),
                "kappa": cohen_kappa(is_a, is_b, labels=[0, 1]) if is_a else math.nan,
                "au_reliability": _mean(on_a["au_reliability"]),
                **{f"{p}_mean_abs_frames": _mean(np.abs(on_a[f"{p}_diff_frames"])) for p in POINTS},
                "method": "cohen",
            }
        )
    return rows


def _fleiss_counts(full: pd.DataFrame, column: str, categories: list[Any]) -> np.ndarray:
    table = pd.crosstab(full["cluster"], full[column]).reindex(columns=categories, fill_value=0)
    return table.to_numpy()


def _fleiss_or_nan(counts: np.ndarray) -> float:
    return fleiss_kappa(counts) if counts.shape[0] else math.nan


# ---------------------------------------------------------------- report


@dataclass
class AgreementReport:
    """Inter-coder agreement of two or more coding files of the same videos.

    Headline figures: `emotion_kappa` and `kind_kappa` (Cohen's for two coders, Fleiss' on
    the events every coder saw for more), `au_reliability` (mean R over matched events of
    every coder pair). Tables (DataFrames, participants as ``subject_id``; the ``subject``
    columns hold names and are dropped by `tables()` unless names=True):

    detection : precision / recall / F1 of ``coder`` against ``reference`` (both orders).
    timing : onset / apex / offset differences (B - A) in frames per pair: mean, and mean,
        median, 95th percentile and max of the absolute differences.
    matches : one row per pairwise matched event (IoU, differences in frames, R, labels).
    labels : emotion and ME/MaE agreement per pair (Cohen) and over all coders (Fleiss).
    au_kappa : per-AU kappa (present / absent) over matched events.
    confusion : {(target, coder_a, coder_b): confusion matrix}, target emotion or kind.
    participants, emotions : the figures per participant and per emotion.
    events : every coder event with its ``cluster``; pair_status : every event against
        every other coder (matched, missed, not comparable) with the reason.
    unmatched : one row per event only some coders saw (``coder``, ``missed_by``, reason).
    consensus : the merged coding table; disagreements : what needs adjudication.
    """

    coders: list[str]
    files: list[Path]
    iou_threshold: float
    fps: float
    emotion_kappa: float
    kind_kappa: float
    au_reliability: float
    detection: pd.DataFrame
    timing: pd.DataFrame
    matches: pd.DataFrame
    labels: pd.DataFrame
    au_kappa: pd.DataFrame
    confusion: dict[tuple[str, str, str], pd.DataFrame]
    participants: pd.DataFrame
    emotions: pd.DataFrame
    events: pd.DataFrame
    pair_status: pd.DataFrame
    unmatched: pd.DataFrame
    consensus: pd.DataFrame
    disagreements: pd.DataFrame
    file_summary: pd.DataFrame
    codings: dict[str, CodingFile] = field(repr=False, default_factory=dict)
    consensus_changes: pd.DataFrame = field(default_factory=pd.DataFrame)
    """Consensus cells holding a value no coder wrote (`Consensus.changes`)."""

    @property
    def kappa_method(self) -> str:
        """``cohen`` for two coders, ``fleiss`` for more."""
        return "cohen" if len(self.coders) == 2 else "fleiss"

    def tables(self, *, names: bool = False) -> dict[str, pd.DataFrame]:
        """Every table, ready to write: names removed unless `names` (AU tuples as text)."""
        tables = {
            "files": self.file_summary,
            "detection": self.detection,
            "timing": self.timing,
            "labels": self.labels,
            "au_kappa": self.au_kappa,
            "participants": self.participants,
            "emotions": self.emotions,
            "matches": self.matches,
            "unmatched": self.unmatched,
            "disagreements": self.disagreements,
            "consensus": self.consensus,
            "consensus_changes": self.consensus_changes,
            "events": self.events.drop(columns=["coder_index"]),
        }
        for (target, a, b), matrix in self.confusion.items():
            tables[f"confusion_{target}_{a}_vs_{b}"] = matrix.reset_index().rename(
                columns={"a": f"{a} \\ {b}"}
            )
        scrub = None if names else _name_scrubber(self)
        return {key: _output_frame(frame, scrub) for key, frame in tables.items()}

    def summary(self) -> dict[str, Any]:
        """Headline figures and counts, JSON-ready (no names)."""
        seen_by = self.events.groupby("cluster")["coder"].nunique()
        kinds = self.disagreements["type"].value_counts().sort_index()
        return _json_ready(
            {
                "coders": self.coders,
                "files": [p.name for p in self.files],
                "iou_threshold": self.iou_threshold,
                "fps": self.fps,
                "kappa_method": self.kappa_method,
                "emotion_kappa": self.emotion_kappa,
                "kind_kappa": self.kind_kappa,
                "au_reliability": self.au_reliability,
                "events": self.events.groupby("coder").size().reindex(self.coders).to_dict(),
                "clusters": int(seen_by.size),
                "clusters_seen_by_all": int((seen_by == len(self.coders)).sum()),
                "consensus_rows": len(self.consensus),
                "consensus_cells_changed": len(self.consensus_changes),
                "unmatched_events": len(self.unmatched),
                "disagreements": {str(k): int(v) for k, v in kinds.items()},
                "detection": self.detection.to_dict("records"),
                "timing": self.timing.to_dict("records"),
                "labels": self.labels.to_dict("records"),
                "file_summary": self.file_summary.to_dict("records"),
            }
        )

    def write(self, out: str | Path, *, names: bool = False) -> dict[str, Path]:
        """Write every table as CSV, ``consensus.xlsx`` (with a ``disagreements`` sheet)
        and ``agreement.json`` into `out`. Returns {name: path}. (The HTML page:
        `mmhe.reports.agreement_report.write_agreement_html`.)

        Participants appear as pseudonyms unless `names` is True.
        """
        return write_agreement(self, out, names=names)

    def scrubber(self, names: bool = False):
        """The function applied to text written to files: identity with `names`, else
        one that replaces every participant name by its pseudonym."""
        return (lambda text: text) if names else _name_scrubber(self)


def agreement(
    files: Sequence[str | Path],
    *,
    iou: float = IOU_THRESHOLD,
    coders: Sequence[str] | None = None,
    fps: float = CAMERA_FPS,
    pseudonyms: PseudonymMap | str | Path | None = None,
    stimuli: str | Path | None = None,
    me_rule: MeRule | None = None,
) -> AgreementReport:
    """Agreement between two or more coders' coding files of the same videos.

    files : one coding file (.xlsx / .csv, the layout of `CODING_COLUMNS`) per coder.
    iou : IoU threshold (0, 1] on the onset-offset intervals for two events to match.
    coders : names of the coders, in file order (default: the file names).
    fps : camera frame rate (Hz) for timing differences in frames (MMHE: 150).
    pseudonyms : a `PseudonymMap` or its private CSV; one map is shared by every file so a
        participant has the same ``subject_id`` everywhere (not saved here).
    Returns an `AgreementReport`. Raises `ConfigError` for fewer than two files or a bad
    threshold, `AnnotationError` for a file that cannot be read at all.
    """
    paths = [Path(f) for f in files]
    if len(paths) < 2:
        raise ConfigError(f"agreement needs two or more coding files, got {len(paths)}")
    _check_threshold(iou)
    if not fps > 0:
        raise ConfigError(f"frame rate {fps} must be positive")
    names = _coder_names(paths, coders)
    if isinstance(pseudonyms, (str, Path)):
        pseudonyms = PseudonymMap.load(pseudonyms)
    shared = pseudonyms if pseudonyms is not None else PseudonymMap()
    codings = {
        name: read_coding_file(path, stimuli=stimuli, me_rule=me_rule, pseudonyms=shared)
        for name, path in zip(names, paths, strict=True)
    }
    rejected_parts = [_rejected_rows(name, coding, shared) for name, coding in codings.items()]
    rejected = pd.concat(
        [r for r in rejected_parts if len(r)] or rejected_parts[:1], ignore_index=True
    )
    events = _events(codings)

    pair_matches, best, matched_tables = [], {}, {}
    for a, b in combinations(names, 2):
        side_a, side_b = events[events["coder"] == a], events[events["coder"] == b]
        found, overlaps = _match_pair(side_a, side_b, iou)
        pair_matches.append(found)
        best[(a, b)] = overlaps.loc[overlaps.index.isin(side_a.index)]
        best[(b, a)] = overlaps.loc[overlaps.index.isin(side_b.index)]
        matched_tables[(a, b)] = _matched_table(events, a, b, found, fps)
    matches = pd.concat(pair_matches, ignore_index=True)
    status = _pair_status(events, names, matches, best, rejected, iou)
    status = status.join(events[["subject_id", "emotion"]], on="event")

    clusters, conflicts = cluster_events(events, matches)
    events = events.assign(cluster=clusters)
    consensus = build_consensus(events, len(names), me_rule=me_rule, fps=fps)

    figures = _figures(events, names, status, matched_tables, fps)
    unmatched = _unmatched(events, names, status, conflicts)
    disagreements = _disagreements(events, names, unmatched, consensus, conflicts, rejected)
    file_summary = pd.DataFrame(
        [
            {
                "coder": name,
                "file": codings[name].path.name,
                "rows_read": codings[name].rows_read,
                "rows_kept": len(codings[name].table),
                "rows_rejected": int((rejected["coder"] == name).sum()) if len(rejected) else 0,
                "warnings": len(codings[name].warnings),
                "participants": codings[name].table["subject_id"].nunique(),
                "events": len(codings[name].table),
            }
            for name in names
        ]
    )
    matched_all = pd.concat(matched_tables.values(), ignore_index=True)
    return AgreementReport(
        coders=names,
        files=paths,
        iou_threshold=iou,
        fps=fps,
        emotion_kappa=figures["emotion_kappa"],
        kind_kappa=figures["kind_kappa"],
        au_reliability=_mean(matched_all["au_reliability"]),
        detection=figures["detection"],
        timing=figures["timing"],
        matches=matched_all.drop(columns=["_aus_a", "_aus_b"]),
        labels=figures["labels"],
        au_kappa=figures["au_kappa"],
        confusion=figures["confusion"],
        participants=figures["participants"],
        emotions=figures["emotions"],
        events=events,
        pair_status=status,
        unmatched=unmatched,
        consensus=consensus.table,
        disagreements=disagreements,
        file_summary=file_summary,
        codings=codings,
        consensus_changes=consensus.changes,
    )


def _figures(
    events: pd.DataFrame,
    coders: list[str],
    status: pd.DataFrame,
    matched_tables: dict[tuple[str, str], pd.DataFrame],
    fps: float,
) -> dict[str, Any]:
    comparable = status[status["status"].isin(_COMPARABLE)]
    detection, timing, labels, au_rows, participants, emotions = [], [], [], [], [], []
    confusion: dict[tuple[str, str, str], pd.DataFrame] = {}
    for (a, b), m in matched_tables.items():
        a_side = comparable[(comparable["coder"] == a) & (comparable["other"] == b)]
        b_side = comparable[(comparable["coder"] == b) & (comparable["other"] == a)]
        for reference, coder, ref_side, coder_side in (
            (a, b, a_side, b_side),
            (b, a, b_side, a_side),
        ):
            n_ref, n_coder = len(ref_side), len(coder_side)
            detection.append(
                {
                    "reference": reference,
                    "coder": coder,
                    "n_reference": n_ref,
                    "n_coder": n_coder,
                    "matched": len(m),
                    **_detection(n_ref, n_coder, len(m)),
                    "not_comparable_reference": int(
                        ((status["coder"] == reference) & (status["other"] == coder)).sum() - n_ref
                    ),
                    "not_comparable_coder": int(
                        ((status["coder"] == coder) & (status["other"] == reference)).sum()
                        - n_coder
                    ),
                }
            )
        timing.extend(_timing_rows(m, a, b))
        for target in ("emotion", "kind"):
            la, lb = m[f"{target}_a"].tolist(), m[f"{target}_b"].tolist()
            labels.append(
                {
                    "coder_a": a,
                    "coder_b": b,
                    "target": target,
                    "n": len(la),
                    "agreement": _mean([x == y for x, y in zip(la, lb, strict=True)]),
                    "kappa": cohen_kappa(la, lb) if la else math.nan,
                    "method": "cohen",
                }
            )
            confusion[(target, a, b)] = confusion_matrix(la, lb)
        au_rows.extend(_au_kappa_rows(m, a, b))
        count_a = a_side["subject_id"].value_counts().to_dict()
        count_b = b_side["subject_id"].value_counts().to_dict()
        by_subject = dict(tuple(m.groupby("subject_id", sort=False)))
        for sid in sorted(set(count_a) | set(count_b)):
            n_a, n_b = count_a.get(sid, 0), count_b.get(sid, 0)
            ms = by_subject.get(sid, m.iloc[:0])
            participants.append(
                {
                    "coder_a": a,
                    "coder_b": b,
                    "subject_id": sid,
                    "n_a": n_a,
                    "n_b": n_b,
                    "matched": len(ms),
                    **_detection(n_a, n_b, len(ms)),
                    **_label_figures(ms),
                    "method": "cohen",
                }
            )
        emotions.extend(_per_emotion_rows(a_side, b_side, m, a, b))

    if len(coders) > 2:
        seen_by = events.groupby("cluster")["coder"].transform("nunique")
        full = events[seen_by == len(coders)]
        pooled = pd.concat(matched_tables.values(), ignore_index=True)
        for target, categories in (
            ("emotion", _label_order(events["emotion"].tolist())),
            ("kind", list(KINDS)),
        ):
            counts = _fleiss_counts(full, target, categories)
            labels.append(
                {
                    "coder_a": ALL,
                    "coder_b": ALL,
                    "target": target,
                    "n": counts.shape[0],
                    "agreement": _fleiss_observed(counts, len(coders)),
                    "kappa": _fleiss_or_nan(counts),
                    "method": "fleiss",
                }
            )
        emotion_kappa = labels[-2]["kappa"]
        kind_kappa = labels[-1]["kappa"]
        au_rows.extend(_fleiss_au_rows(full, len(coders)))
        participants.extend(_fleiss_participant_rows(full, pooled, len(coders)))
        emotions.extend(_fleiss_emotion_rows(full, len(coders)))
    else:
        emotion_kappa = labels[0]["kappa"]
        kind_kappa = labels[1]["kappa"]
    return {
        "emotion_kappa": emotion_kappa,
        "kind_kappa": kind_kappa,
        "detection": pd.DataFrame(detection),
        "timing": pd.DataFrame(timing),
        "labels": pd.DataFrame(labels),
        "au_kappa": pd.DataFrame(
            au_rows,
            columns=[
                "coder_a",
                "coder_b",
                "au",
                "name",
                "n_events",
                "n_a",
                "n_b",
                "n_both",
                "kappa",
                "method",
            ],
        ),
        "confusion": confusion,
        "participants": pd.DataFrame(participants),
        "emotions": pd.DataFrame(emotions),
    }


def _fleiss_observed(counts: np.ndarray, n: int) -> float:
    if not counts.shape[0]:
        return math.nan
    return float((((counts**2).sum(axis=1) - n) / (n * (n - 1))).mean())


def _fleiss_au_rows(full: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    rows = []
    aus = sorted({a for x in full["aus"] for a in x})
    present = {au: full.assign(_has=[au in x for x in full["aus"]]) for au in aus}
    for au in aus:
        votes = present[au].groupby("cluster")["_has"].sum().to_numpy()
        counts = np.column_stack([votes, n - votes])
        rows.append(
            {
                "coder_a": ALL,
                "coder_b": ALL,
                "au": au,
                "name": ACTION_UNITS[au].name if au in ACTION_UNITS else "",
                "n_events": int(votes.size),
                "n_a": int(votes.sum()),
                "n_b": math.nan,
                "n_both": int((votes == n).sum()),
                "kappa": _fleiss_or_nan(counts),
                "method": "fleiss",
            }
        )
    return rows


def _fleiss_participant_rows(
    full: pd.DataFrame, pooled: pd.DataFrame, n: int
) -> list[dict[str, Any]]:
    if full.empty:
        return []
    emotion_counts = pd.crosstab(full["cluster"], full["emotion"]).reindex(
        columns=_label_order(full["emotion"].tolist()), fill_value=0
    )
    kind_counts = pd.crosstab(full["cluster"], full["kind"]).reindex(
        columns=list(KINDS), fill_value=0
    )
    subject_of = full.groupby("cluster")["subject_id"].first().reindex(emotion_counts.index)
    reliability = pooled.groupby("subject_id")["au_reliability"].agg(_mean).to_dict()
    rows = []
    for sid in sorted(set(subject_of)):
        mask = (subject_of == sid).to_numpy()
        emotions, kinds = emotion_counts.to_numpy()[mask], kind_counts.to_numpy()[mask]
        rows.append(
            {
                "coder_a": ALL,
                "coder_b": ALL,
                "subject_id": sid,
                "matched": int(mask.sum()),
                "au_reliability": reliability.get(sid, math.nan),
                "emotion_agreement": _fleiss_observed(emotions, n),
                "emotion_kappa": _fleiss_or_nan(emotions),
                "kind_agreement": _fleiss_observed(kinds, n),
                "kind_kappa": _fleiss_or_nan(kinds),
                "method": "fleiss",
            }
        )
    return rows


def _fleiss_emotion_rows(full: pd.DataFrame, n: int) -> list[dict[str, Any]]:
    categories = _label_order(full["emotion"].tolist())
    if not categories:
        return []
    counts = _fleiss_counts(full, "emotion", categories)
    kappas = fleiss_category_kappa(counts)
    return [
        {
            "coder_a": ALL,
            "coder_b": ALL,
            "emotion": emotion,
            "n_a": int(counts[:, j].sum()),
            "kappa": float(kappas[j]),
            "method": "fleiss",
        }
        for j, emotion in enumerate(categories)
    ]


# ---------------------------------------------------------------- unmatched and disagreements

UNMATCHED_COLUMNS = [
    "coder",
    "row",
    "subject",
    "subject_id",
    "file",
    "marker",
    "clip_index",
    "onset_s",
    "apex_s",
    "offset_s",
    "aus",
    "emotion",
    "kind",
    "cluster",
    "seen_by",
    "missed_by",
    "comparable",
    "reason",
]


def _unmatched(
    events: pd.DataFrame, coders: list[str], status: pd.DataFrame, conflicts: pd.DataFrame
) -> pd.DataFrame:
    """One row per event in a cluster that some coder lacks, with the reason per coder."""
    seen_by: dict[int, list[str]] = {}
    for cluster, coder in zip(events["cluster"], events["coder"], strict=True):
        seen_by.setdefault(int(cluster), []).append(coder)
    incomplete = {c for c, seen in seen_by.items() if len(seen) < len(coders)}
    partial = events[events["cluster"].isin(incomplete)]
    status_of = {
        (r["event"], r["other"]): r
        for r in status[status["event"].isin(partial.index)].to_dict("records")
    }
    conflict_events = set(conflicts["event_a"]) | set(conflicts["event_b"])
    records = []
    for e in partial.reset_index().to_dict("records"):
        seen = seen_by[int(e["cluster"])]
        missing = [c for c in coders if c not in seen]
        reasons, comparable = [], True
        for other in missing:
            s = status_of[(e["event"], other)]
            reason = s["reason"]
            if s["status"] == "matched":
                reason = (
                    f"{other}'s row {s['other_row']} was matched to it pairwise but sits in "
                    "another cluster (conflicting pairwise matches)"
                )
            elif s["status"] == "not_comparable":
                comparable = False
            reasons.append(reason)
        if e["event"] in conflict_events:
            reasons.append("conflicting pairwise matches (see disagreements)")
        records.append(
            {
                **{c: e[c] for c in UNMATCHED_COLUMNS if c in e and c != "aus"},
                "aus": format_aus(e["aus"]),
                "seen_by": ", ".join(seen),
                "missed_by": ", ".join(missing),
                "comparable": comparable,
                "reason": "; ".join(reasons),
            }
        )
    return pd.DataFrame(records, columns=UNMATCHED_COLUMNS)


def _disagreements(
    events: pd.DataFrame,
    coders: list[str],
    unmatched: pd.DataFrame,
    consensus: Any,
    conflicts: pd.DataFrame,
    rejected: pd.DataFrame,
) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    resolution = consensus.clusters.set_index("cluster")["resolution"]
    members: dict[int, list[dict[str, Any]]] = {}
    partial = events[events["cluster"].isin(set(unmatched["cluster"]))]
    for e in partial.sort_values(["cluster", "coder_index"]).to_dict("records"):
        members.setdefault(int(e["cluster"]), []).append(e)
    for cluster, group in unmatched.groupby("cluster", sort=True):
        g = members[int(cluster)]
        rows.append(
            {
                **cluster_fields(g),
                "type": "seen_by_some" if group["comparable"].all() else "not_comparable",
                "reason": f"seen by {group['seen_by'].iloc[0]}; missed by "
                f"{group['missed_by'].iloc[0]} ({group['reason'].iloc[0]})",
                "resolution": resolution[cluster],
            }
        )
    rows.extend(consensus.ties.to_dict("records"))
    for event_a, event_b, iou in conflicts.itertuples(index=False):
        g = events.loc[[event_a, event_b]].to_dict("records")
        rows.append(
            {
                **cluster_fields(g),
                "cluster": None,
                "type": "conflicting_match",
                "reason": f"pairwise match (IoU {iou:.2f}) would put two events of one coder in "
                f"one cluster (clusters {events.at[event_a, 'cluster']} and "
                f"{events.at[event_b, 'cluster']})",
                "resolution": "pairwise match ignored for the consensus: adjudicate",
            }
        )
    for r in rejected.itertuples(index=False):
        rows.append(
            {
                "type": "rejected_row",
                "cluster": None,
                "coders": r.coder,
                "rows": f"{r.coder}:{r.row}",
                "subject": r.subject,
                "subject_id": r.subject_id,
                "file": r.file,
                "marker": r.marker,
                "clip_index": None,
                "onset_s": r.onset_s,
                "apex_s": None,
                "offset_s": r.offset_s,
                "detail": r.message,
                "reason": f"row could not be compared ({r.codes})",
                "resolution": "left out of the agreement and the consensus: fix the row",
            }
        )
    table = pd.DataFrame(rows, columns=DISAGREEMENT_COLUMNS)
    if len(table):
        table = table.sort_values(
            ["subject_id", "marker", "onset_s", "type"], na_position="last", kind="stable"
        ).reset_index(drop=True)
    table["cluster"] = pd.array(table["cluster"].tolist(), dtype="Int64")
    table["clip_index"] = pd.array(
        [None if is_blank(v) or v is pd.NA else int(v) for v in table["clip_index"]],
        dtype="Int64",
    )
    return table


# ---------------------------------------------------------------- output


def _name_scrubber(report: AgreementReport):
    """A function that replaces every participant name in a text by its pseudonym."""
    names: dict[str, str] = {}
    sources = [report.events[["subject", "subject_id"]]]
    if "subject" in report.disagreements:
        sources.append(report.disagreements[["subject", "subject_id"]].dropna())
    for frame in sources:
        for subject, sid in frame.itertuples(index=False):
            for variant in {str(subject).strip(), subject_key(subject)}:
                if len(variant) >= 2:
                    names[variant.casefold()] = sid
    if not names:
        return lambda text: text
    pattern = re.compile(
        r"(?<![A-Za-z])("
        + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
        + r")(?![A-Za-z])",
        re.IGNORECASE,
    )
    return lambda text: pattern.sub(lambda m: names[m.group(1).casefold()], text)


def _pseudonymous_file(file: object, subject_id: object) -> str:
    try:
        clip = parse_clip_filename(file)
    except CellError:
        return ""
    return (
        f"{clip.emotion_word}_{clip.clip_index}_{clip.marker}_{subject_id}_"
        f"{clip.session_date:%Y%m%d}.avi"
    )


def _output_frame(frame: pd.DataFrame, scrub) -> pd.DataFrame:
    out = frame.copy()
    if "aus" in out:
        out["aus"] = [format_aus(a) if isinstance(a, tuple) else a for a in out["aus"]]
    for column in ("onset_frame", "apex_frame", "offset_frame"):
        if column in out:
            out[column] = [None if v is None else str(v) for v in out[column]]
    if scrub is None:
        return out
    if "file" in out and "subject_id" in out:
        out["file"] = [
            _pseudonymous_file(f, s) if isinstance(f, str) and f else f
            for f, s in zip(out["file"], out["subject_id"], strict=True)
        ]
    out = out.drop(columns=["subject"], errors="ignore")
    for column in out.columns:
        if out[column].dtype == object:
            texts = {v for v in out[column] if isinstance(v, str)}
            cleaned = {v: scrub(v) for v in texts}
            out[column] = [cleaned[v] if isinstance(v, str) else v for v in out[column]]
    return out


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def _write_consensus_xlsx(
    consensus: pd.DataFrame, disagreements: pd.DataFrame, path: Path, names: bool
) -> None:
    """The consensus in the coding-file layout (`to_coding_rows`, first sheet) plus a
    ``disagreements`` sheet, written in one pass (openpyxl write-only), atomically."""
    from openpyxl import Workbook

    rows = to_coding_rows(consensus, names=names)
    columns = [c for c in CODING_COLUMNS if c in rows.columns]
    book = Workbook(write_only=True)
    for title, frame, header in (
        ("Sheet1", rows[columns], columns),
        ("disagreements", disagreements, list(disagreements.columns)),
    ):
        sheet = book.create_sheet(title)
        sheet.append(header)
        for values in frame.itertuples(index=False, name=None):
            sheet.append([_plain(v) for v in values])
    book.properties.creator = "mmhe"
    book.properties.created = book.properties.modified = dt.datetime(2024, 1, 1)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    book.save(tmp)
    normalise_xlsx(tmp)  # equal content gives equal bytes
    os.replace(tmp, path)


def write_agreement(
    report: AgreementReport, out: str | Path, *, names: bool = False
) -> dict[str, Path]:
    """Write the report into directory `out` (created): one CSV per table,
    ``consensus.xlsx`` (coding-file layout + ``disagreements`` sheet) and
    ``agreement.json``. Names only with `names`. Returns {name: path}. The HTML page is
    written by `mmhe.reports.agreement_report.write_agreement_html` (`mmhe annotations
    agree --out` writes both)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tables = report.tables(names=names)
    written: dict[str, Path] = {}
    for key, frame in tables.items():
        path = out / f"{_safe(key)}.csv"
        frame.to_csv(path, index=False, lineterminator="\n")
        written[key] = path
    written["consensus.xlsx"] = out / "consensus.xlsx"
    _write_consensus_xlsx(
        report.consensus, tables["disagreements"], written["consensus.xlsx"], names
    )
    scrub = report.scrubber(names)
    written["agreement.json"] = out / "agreement.json"
    summary = _scrub_values(report.summary(), scrub)
    written["agreement.json"].write_text(
        json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8"
    )
    return written


def _scrub_values(value: Any, scrub) -> Any:
    """`value` (nested dicts / lists) with `scrub` applied to every string value."""
    if isinstance(value, dict):
        return {k: _scrub_values(v, scrub) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_values(v, scrub) for v in value]
    return scrub(value) if isinstance(value, str) else value


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
