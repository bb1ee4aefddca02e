"""Consensus of several coders' FACS coding: clusters of matched events, merged rows, ties.

Clusters (any number of coders): the pairwise one-to-one matches are edges between events;
edges are merged in order of decreasing IoU (union-find), and an edge that would put two
events of the same coder into one cluster is skipped and reported as a conflict. Every
cluster therefore holds at most one event per coder; with two coders the clusters are
exactly the pairwise matches.

Consensus of one cluster (majority voting, as used to merge the independent codings of the
CASME II / SAMM corpora):

- kept when seen by a strict majority of all coders, else left out (disagreement);
- onset / apex / offset: the median of the coders' times (seconds from the clip start); the
  frame name is that of the coder whose time is the median (odd count) or a middle coder's
  frame name shifted by the difference (even count), so times and frame names agree;
- action units coded by a strict majority of the coders who saw the event; an AU coded by
  exactly half of them is a tie: left out of the AUs and reported;
- the emotion with most votes; a tie leaves the whole event out of the consensus (reported);
- ME / MaE: the majority of the coders' Macro/Micro column; on a tie, or when no coder file
  has the column, the duration rule (`MeRule`) on the consensus times decides (a tie is
  reported).
- a value every coder of the cluster wrote the same (a time, a frame name even if it cannot
  be parsed, ``dif`` in whichever unit the file uses) is written unchanged;
- ``dif`` when coders differ: that of a coder whose onset and apex frame names the consensus
  took, else recomputed in the file's convention (frames with five-part names, milliseconds
  + 1 with four-part names).

Every consensus cell that holds a value no coder wrote (a median, a shifted frame name, a
recomputed ``dif``) is listed in `Consensus.changes`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mmhe.annotations.coding_file import CAMERA_FPS, TABLE_COLUMNS, MeRule
from mmhe.annotations.parsing import format_aus
from mmhe.io.frame_names import COUNTER_MODULUS, FrameName, FrameNameError, parse_frame_name
from mmhe.labels import compound_of

POINTS = ("onset", "apex", "offset")

DISAGREEMENT_COLUMNS = [
    "type",
    "cluster",
    "coders",
    "rows",
    "subject",
    "subject_id",
    "file",
    "marker",
    "clip_index",
    "onset_s",
    "apex_s",
    "offset_s",
    "detail",
    "reason",
    "resolution",
]
"""Columns of the disagreements table (``subject`` holds names and is dropped on output)."""

CHANGE_COLUMNS = [
    "cluster",
    "consensus_row",
    "subject_id",
    "marker",
    "column",
    "coder_values",
    "consensus_value",
    "reason",
]
"""Columns of `Consensus.changes`."""

SHEET_CELLS: dict[str, str] = {
    "OnsetTime": "onset_s",
    "ApexTime": "apex_s",
    "OffsetTime": "offset_s",
    "OnsetFrame": "onset_frame_text",
    "ApexFrame": "apex_frame_text",
    "OffsetFrame": "offset_frame_text",
    "Action Units": "aus",
    "Estimated Emotion": "emotion",
    "Macro/Micro": "kind",
    "dif": "dif",
}
"""Coding-sheet column -> consensus table column, for the list of changed cells."""

_CHANGE_REASONS = {
    "onset_s": "median of the coders' times",
    "apex_s": "median of the coders' times",
    "offset_s": "median of the coders' times",
    "onset_frame_text": "frame name moved to the median time",
    "apex_frame_text": "frame name moved to the median time",
    "offset_frame_text": "frame name moved to the median time",
    "aus": "AUs coded by a majority of the coders",
    "emotion": "majority emotion",
    "kind": "duration rule on the consensus times",
    "dif": "recomputed from the consensus frame names",
}

CONSENSUS_EXTRA_COLUMNS = [
    "cluster",
    "coders",
    "n_coders",
    "au_votes",
    "emotion_votes",
    "kind_votes",
]


@dataclass
class Consensus:
    """Result of `build_consensus`.

    table : the merged coding table (columns of `read_coding_file(...).table` plus
        `CONSENSUS_EXTRA_COLUMNS`), one row per kept cluster.
    clusters : one row per cluster: cluster, coders, n_coders, in_consensus, resolution.
    ties : disagreement rows (`DISAGREEMENT_COLUMNS`) for ties and missing frame names.
    changes : one row per consensus cell holding a value no coder wrote
        (`CHANGE_COLUMNS`: cluster, consensus row, sheet column, coders' values, consensus
        value, why).
    """

    table: pd.DataFrame
    clusters: pd.DataFrame
    ties: pd.DataFrame
    changes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=CHANGE_COLUMNS))


# ---------------------------------------------------------------- clusters


def cluster_events(events: pd.DataFrame, matches: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """Group the events of several coders into clusters of at most one event per coder.

    events : one row per coder event, index = event id, columns ``coder``, ``subject_id``,
        ``marker``, ``onset_s``.
    matches : pairwise matches, columns ``event_a``, ``event_b``, ``iou`` (every coder pair).
    Returns (cluster id per event, numbered 1.. in order of participant, marker and onset;
    skipped edges as a DataFrame with columns event_a, event_b, iou).
    """
    parent = {int(e): int(e) for e in events.index}
    coders = {int(e): {c} for e, c in events["coder"].items()}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    ordered = matches.sort_values(["iou", "event_a", "event_b"], ascending=[False, True, True])
    conflicts: list[tuple[int, int, float]] = []
    for event_a, event_b, iou in ordered[["event_a", "event_b", "iou"]].itertuples(index=False):
        root_a, root_b = find(int(event_a)), find(int(event_b))
        if root_a == root_b:
            continue
        if coders[root_a] & coders[root_b]:
            conflicts.append((int(event_a), int(event_b), float(iou)))
            continue
        parent[root_b] = root_a
        coders[root_a] |= coders.pop(root_b)
    roots = pd.Series([find(int(e)) for e in events.index], index=events.index)
    first = (
        events.assign(_root=roots)
        .groupby("_root")
        .agg(
            subject_id=("subject_id", "first"), marker=("marker", "first"), onset=("onset_s", "min")
        )
        .reset_index()
        .sort_values(["subject_id", "marker", "onset", "_root"])
    )
    number = dict(zip(first["_root"], range(1, len(first) + 1), strict=True))
    clusters = roots.map(number).astype("int64").rename("cluster")
    return clusters, pd.DataFrame(conflicts, columns=["event_a", "event_b", "iou"])


# ---------------------------------------------------------------- frame names


def shift_frame_name(text: str, shift_s: float, fps: float = CAMERA_FPS) -> str:
    """A coding-file frame name moved by `shift_s` seconds (counter by round(shift * fps)).

    >>> shift_frame_name("11-05-52-025-446", 0.02)
    '11-05-52-045-449'
    """
    frame = parse_frame_name(text)
    total_ms = round((frame.seconds_of_day + shift_s) * 1000) % 86_400_000
    seconds, millisecond = divmod(total_ms, 1000)
    counter = (
        None if frame.counter is None else (frame.counter + round(shift_s * fps)) % COUNTER_MODULUS
    )
    return FrameName(
        seconds // 3600, (seconds // 60) % 60, seconds % 60, millisecond, counter
    ).coding_name()


def _consensus_point(g: list[dict[str, Any]], point: str, fps: float) -> tuple[float, str]:
    """Median time of one point of a cluster and a frame name consistent with it.

    The frame name is taken from the coder whose time is closest to the median (the median
    coder itself for an odd count) and shifted by the difference; coders whose frame name
    cannot be read are skipped. Returns (median seconds, frame name or "" if none is readable).
    """
    times = np.array([e[f"{point}_s"] for e in g], dtype=float)
    median = float(np.median(times))
    texts = {str(e[f"{point}_frame_text"] or "") for e in g}
    if len(texts) == 1 and np.all(times == times[0]):
        return float(times[0]), texts.pop()  # every coder wrote the same: keep it as written
    for position in np.argsort(np.abs(times - median), kind="stable"):
        event = g[position]
        text = event[f"{point}_frame_text"]
        if not isinstance(text, str) or not text or math.isnan(event[f"{point}_tod_s"]):
            continue
        shift = median - times[position]
        if abs(shift) < 1e-9:
            return median, text
        try:
            return median, shift_frame_name(text, shift, fps)
        except FrameNameError:
            continue
    return median, ""


# ---------------------------------------------------------------- consensus


def event_text(event: dict[str, Any]) -> str:
    """One coder's event in words: ``A row 3: 36.310/36.860/37.750 s, AU4, AU7, anger, MaE``."""
    aus = format_aus(event["aus"]) or "no AU"
    return (
        f"{event['coder']} row {event['row']}: {event['onset_s']:.3f}/{event['apex_s']:.3f}/"
        f"{event['offset_s']:.3f} s, {aus}, {event['emotion']}, {event['kind']}"
    )


def cluster_fields(g: list[dict[str, Any]]) -> dict[str, Any]:
    """Fields shared by every disagreement row about one group of events (median times).

    g : the events (records of the events table, in coder order).
    """
    first = g[0]
    return {
        "cluster": first.get("cluster"),
        "coders": ", ".join(e["coder"] for e in g),
        "rows": "; ".join(f"{e['coder']}:{e['row']}" for e in g),
        "subject": first["subject"],
        "subject_id": first["subject_id"],
        "file": first["file"],
        "marker": int(first["marker"]),
        "clip_index": first["clip_index"],
        **{f"{p}_s": float(np.median([e[f"{p}_s"] for e in g])) for p in POINTS},
        "detail": " | ".join(event_text(e) for e in g),
    }


def _votes(counter: Counter) -> str:
    return ", ".join(f"{k}:{v}" for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def _dif(frames: dict[str, FrameName | None], times: dict[str, float], fps: float) -> int:
    """Onset to apex, inclusive, in the coding file's convention: frames (counters modulo
    1000) when both names have a counter, milliseconds + 1 for four-part names, frames from
    the times when a name is missing."""
    onset, apex = frames["onset"], frames["apex"]
    if onset is not None and apex is not None:
        if onset.counter is not None and apex.counter is not None:
            return (apex.counter - onset.counter) % COUNTER_MODULUS + 1
        gap = (apex.seconds_of_day - onset.seconds_of_day) % 86400
        return round(gap * 1000) + 1
    return round((times["apex"] - times["onset"]) * fps) + 1


def _parsed(text: str) -> FrameName | None:
    """The frame name, or None for an empty name or one no parser reads (kept as text)."""
    try:
        return parse_frame_name(text) if text else None
    except FrameNameError:
        return None


def _consensus_dif(g: list[dict[str, Any]], texts: dict[str, str], frames, times, fps) -> Any:
    """A ``dif`` every coder agrees on, or that of a coder whose onset and apex frame names
    the consensus kept, else recomputed (`_dif`)."""
    values = {None if pd.isna(e["dif"]) else int(e["dif"]) for e in g}
    if len(values) == 1:
        return values.pop()
    for e in g:
        same = all(str(e[f"{p}_frame_text"] or "") == texts[p] for p in ("onset", "apex"))
        if same and not pd.isna(e["dif"]):
            return int(e["dif"])
    return _dif(frames, times, fps)


def _unit_of(g: list[dict[str, Any]], texts: dict[str, str]) -> Any:
    units = {e.get("dif_unit") for e in g if not pd.isna(e.get("dif_unit"))}
    if len(units) == 1:
        return units.pop()
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) < 1e-9
    if a is None or (isinstance(a, float) and math.isnan(a)) or a is pd.NA:
        return b is None or (isinstance(b, float) and math.isnan(b)) or b is pd.NA
    return a == b


def changed_cells(g: list[dict[str, Any]], record: dict[str, Any]) -> list[dict[str, Any]]:
    """The consensus cells of one cluster holding a value no coder of it wrote."""
    out = []
    for column, key in SHEET_CELLS.items():
        value = record[key]
        written = [e[key] for e in g]
        if any(_same(value, w) for w in written):
            continue
        shown = [format_aus(w) if key == "aus" else w for w in written]
        out.append(
            {
                "cluster": record["cluster"],
                "subject_id": record["subject_id"],
                "marker": record["marker"],
                "column": column,
                "coder_values": "; ".join(
                    f"{e['coder']}: {'' if v is None else v}" for e, v in zip(g, shown, strict=True)
                ),
                "consensus_value": format_aus(value) if key == "aus" else value,
                "reason": _CHANGE_REASONS[key],
            }
        )
    return out


def _merge_cluster(
    g: list[dict[str, Any]], me_rule: MeRule, fps: float, ties: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The consensus record of one cluster (events in coder order), None on an emotion tie."""
    n_seen = len(g)
    base = cluster_fields(g)

    emotions = Counter(e["emotion"] for e in g)
    top = emotions.most_common()
    if len(top) > 1 and top[0][1] == top[1][1]:
        tied = " or ".join(sorted(e for e, v in top if v == top[0][1]))
        ties.append(
            {
                **base,
                "type": "emotion_tie",
                "reason": f"emotion tie: {_votes(emotions)}",
                "resolution": f"left out of the consensus: adjudicate the emotion ({tied})",
            }
        )
        return None
    emotion = top[0][0]

    times: dict[str, float] = {}
    texts: dict[str, str] = {}
    for point in POINTS:
        times[point], texts[point] = _consensus_point(g, point, fps)
    unreadable = [p for p in POINTS if not texts[p]]
    if unreadable:
        ties.append(
            {
                **base,
                "type": "frame_name",
                "reason": f"no coder's {'/'.join(unreadable)} frame name can be read",
                "resolution": ", ".join(f"{p.capitalize()}Frame" for p in unreadable)
                + " left empty in the consensus (times kept)",
            }
        )
    frames: dict[str, FrameName | None] = {p: _parsed(t) for p, t in texts.items()}

    au_counts = Counter(a for e in g for a in e["aus"])
    aus = tuple(sorted(a for a, v in au_counts.items() if 2 * v > n_seen))
    for au in sorted(a for a, v in au_counts.items() if 2 * v == n_seen):
        who = ", ".join(e["coder"] for e in g if au in e["aus"])
        ties.append(
            {
                **base,
                "type": "au_tie",
                "reason": f"AU{au} coded by {au_counts[au]} of {n_seen} coders ({who})",
                "resolution": f"AU{au} left out of the consensus AUs: adjudicate",
            }
        )

    total = times["offset"] - times["onset"]
    onset_apex = times["apex"] - times["onset"]
    rule_kind = me_rule.kind(total, onset_apex)
    column_kinds = Counter(e["kind"] for e in g if e["kind_source"] == "column")
    kind, kind_source = rule_kind, "duration_rule"
    if column_kinds:
        kind_source = "column"
        ranked = column_kinds.most_common()
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            ties.append(
                {
                    **base,
                    "type": "kind_tie",
                    "reason": f"Macro/Micro tie: {_votes(column_kinds)}",
                    "resolution": f"{rule_kind} by the duration rule on the consensus times",
                }
            )
        else:
            kind = ranked[0][0]

    files = Counter(e["file"] for e in g).most_common()
    file = files[0][0] if len(files) == 1 or files[0][1] > files[1][1] else g[0]["file"]
    coded = [e["coded_at"] for e in g if not pd.isna(e["coded_at"])]
    clip_indices = [e["clip_index"] for e in g if not pd.isna(e["clip_index"])]
    record: dict[str, Any] = {
        "subject": g[0]["subject"],
        "subject_id": base["subject_id"],
        "file": file,
        "marker": base["marker"],
        "clip_index": clip_indices[0] if clip_indices else None,
        "session_date": next((e["session_date"] for e in g if e["session_date"]), None),
        "category": g[0]["category"],
        "aus": aus,
        "emotion": emotion,
        "emotion_raw": next(e["emotion_raw"] for e in g if e["emotion"] == emotion),
        "compound": compound_of(emotion),
        "kind": kind,
        "kind_source": kind_source,
        "coded_at": max(coded) if coded else pd.NaT,
        "dif": _consensus_dif(g, texts, frames, times, fps),
        "dif_unit": _unit_of(g, texts),
        "duration_s": total,
        "onset_apex_s": onset_apex,
        "cluster": base["cluster"],
        "coders": base["coders"],
        "n_coders": n_seen,
        "au_votes": ", ".join(f"AU{a}:{v}" for a, v in sorted(au_counts.items())),
        "emotion_votes": _votes(emotions),
        "kind_votes": _votes(Counter(e["kind"] for e in g)),
    }
    for point in POINTS:
        frame = frames[point]
        record[f"{point}_s"] = times[point]
        record[f"{point}_frame"] = (
            dt.time(frame.hour, frame.minute, min(frame.second, 59), frame.millisecond * 1000)
            if frame
            else None
        )
        record[f"{point}_frame_text"] = texts[point]
        record[f"{point}_tod_s"] = frame.seconds_of_day if frame else math.nan
        record[f"{point}_counter"] = frame.counter if frame else None
    return record


def _typed(records: list[dict[str, Any]]) -> pd.DataFrame:
    columns = TABLE_COLUMNS + CONSENSUS_EXTRA_COLUMNS
    table = pd.DataFrame.from_records(records, columns=[c for c in columns if c != "row"])
    table.insert(0, "row", np.arange(1, len(table) + 1, dtype="int64"))
    for column in ("marker", "cluster", "n_coders"):
        table[column] = table[column].astype("int64")
    for column in ("clip_index", "onset_counter", "apex_counter", "offset_counter", "dif"):
        table[column] = pd.array(table[column].tolist(), dtype="Int64")
    for column in ("onset_s", "apex_s", "offset_s", "onset_tod_s", "apex_tod_s", "offset_tod_s"):
        table[column] = table[column].astype("float64")
    table["duration_s"] = table["duration_s"].astype("float64")
    table["onset_apex_s"] = table["onset_apex_s"].astype("float64")
    table["coded_at"] = pd.to_datetime(table["coded_at"])
    return table


def build_consensus(
    events: pd.DataFrame,
    n_coders: int,
    *,
    me_rule: MeRule | None = None,
    fps: float = CAMERA_FPS,
) -> Consensus:
    """Merge the clustered events of `n_coders` coders into one consensus coding table.

    events : coder events with a ``cluster`` column (see `cluster_events`), the columns of
        `read_coding_file(...).table` and ``coder``, ``coder_index``.
    n_coders : number of coders compared (a cluster is kept when seen by more than half).
    fps : camera frame rate (Hz), used to shift frame counters.
    Rules in the module docstring. Returns a `Consensus` (table, clusters, ties).
    """
    me_rule = me_rule or MeRule()
    records: list[dict[str, Any]] = []
    ties: list[dict[str, Any]] = []
    status: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    groups: dict[int, list[dict[str, Any]]] = {}
    for event in events.sort_values(["cluster", "coder_index"]).to_dict("records"):
        groups.setdefault(int(event["cluster"]), []).append(event)
    for cluster, g in sorted(groups.items()):
        seen = len(g)
        entry = {
            "cluster": cluster,
            "subject_id": g[0]["subject_id"],
            "marker": int(g[0]["marker"]),
            "coders": ", ".join(e["coder"] for e in g),
            "n_coders": seen,
        }
        if 2 * seen <= n_coders:
            status.append(
                {
                    **entry,
                    "in_consensus": False,
                    "resolution": f"left out of the consensus: seen by {seen} of {n_coders} coders",
                }
            )
            continue
        record = _merge_cluster(g, me_rule, fps, ties)
        if record is None:
            resolution = "left out of the consensus: emotion tie"
        elif seen < n_coders:
            resolution = f"kept in the consensus: seen by {seen} of {n_coders} coders (majority)"
        else:
            resolution = "kept in the consensus"
        status.append({**entry, "in_consensus": record is not None, "resolution": resolution})
        if record is not None:
            records.append(record)
            changes += [{**c, "consensus_row": len(records)} for c in changed_cells(g, record)]
    table = _typed(records)
    clusters = pd.DataFrame(
        status,
        columns=[
            "cluster",
            "subject_id",
            "marker",
            "coders",
            "n_coders",
            "in_consensus",
            "resolution",
        ],
    )
    return Consensus(
        table,
        clusters,
        pd.DataFrame(ties, columns=DISAGREEMENT_COLUMNS),
        pd.DataFrame(changes, columns=CHANGE_COLUMNS),
    )
