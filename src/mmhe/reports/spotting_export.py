"""Found intervals as a coding sheet that coders confirm (`mmhe spot --export-coding`).

One row per interval found in a stimulus clip (markers of the stimulus table; rest
blocks are not coded in MMHE and are counted, not written), in the coding file's columns
(`mmhe.annotations.CODING_COLUMNS`), written by `write_coding_sheet`:

- Subject: the participant's name from the private pseudonym mapping when given (so
  `mmhe annotations agree coding_file.xlsx FOUND.xlsx` pairs the rows with the coders'),
  else the pseudonym;
- Filename: ``{category}_{clipIndex}_{marker}_{subject}_{YYYYMMDD}.avi`` with the clip
  index and session date of the coding file's rows of that participant and marker when
  there are some, else the clip's position among the participant's clips of its
  category and the date of the video's first frame;
- OnsetTime / ApexTime / OffsetTime: seconds from the clip's first frame; OnsetFrame /
  ApexFrame / OffsetFrame: ``HH-MM-SS-mmm-CCC`` from the frame's time of day and counter;
  ``dif``: onset to apex on the counter (mod 1000), inclusive;
- Estimated Emotion: pre-filled with the clip's stimulus category (coders confirm or
  change it); Action Units and Date: empty (to be coded); Macro/Micro from the length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mmhe.annotations import CODING_COLUMNS, write_coding_sheet
from mmhe.annotations.pseudonyms import PseudonymMap
from mmhe.io.frame_names import counter_difference
from mmhe.labels import STIMULUS_MARKERS, stimulus_categories


def _frame_name(time_s: float, counter: int) -> str:
    ms = round(time_s * 1000) % 86_400_000
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}-{minutes:02d}-{seconds:02d}-{millis:03d}-{int(counter) % 1000:03d}"


def _clip_facts(store, subject_id: str) -> dict[int, tuple[int, str]]:
    """{marker: (clip index, YYYYMMDD)} from the coding file's rows of a participant."""
    rows = store.expressions(participant=subject_id)
    facts: dict[int, tuple[int, str]] = {}
    for r in rows.itertuples(index=False):
        if not pd.isna(r.clip_index) and r.session_date is not None and not pd.isna(r.session_date):
            facts.setdefault(
                int(r.marker), (int(r.clip_index), pd.Timestamp(r.session_date).strftime("%Y%m%d"))
            )
    return facts


def spotted_coding_rows(
    store, intervals: pd.DataFrame, *, names: PseudonymMap | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Coding rows of the found intervals (module docstring) and a summary of what was
    written and skipped."""
    categories = stimulus_categories()
    reverse = {sid: name for name, sid in (names.assign([]).items() if names is not None else [])}
    trials = store.trials()
    rows, skipped = [], 0
    for (sid, trial), part in intervals.groupby(["participant", "trial"], sort=True):
        marker = int(part["marker"].iloc[0])
        if marker not in STIMULUS_MARKERS:
            skipped += len(part)
            continue
        video = store.video(sid, int(trial))
        category = categories.get(marker, "")
        facts = _clip_facts(store, sid)
        if marker in facts:
            clip_index, date = facts[marker]
        else:
            own = trials[(trials["subject_id"] == sid) & (trials["category"] == category)]
            clip_index = 1 + int((own["trial_index"] < int(trial)).sum())
            date = str(video.attrs.get("date", "")).replace("-", "")
        subject = reverse.get(sid, sid)
        start = float(video.time_s[0])
        for r in part.sort_values("onset").itertuples(index=False):
            onset, apex, offset = int(r.onset), int(r.apex), int(r.offset)
            apex = min(max(apex, onset), offset)
            rows.append(
                {
                    "Subject": subject,
                    "Filename": f"{category}_{clip_index}_{marker}_{subject}_{date}.avi",
                    "Marker": marker,
                    "OnsetTime": round(float(video.time_s[onset]) - start, 3),
                    "ApexTime": round(float(video.time_s[apex]) - start, 3),
                    "OffsetTime": round(float(video.time_s[offset]) - start, 3),
                    "OnsetFrame": _frame_name(video.time_s[onset], video.counter[onset]),
                    "ApexFrame": _frame_name(video.time_s[apex], video.counter[apex]),
                    "OffsetFrame": _frame_name(video.time_s[offset], video.counter[offset]),
                    "Action Units": "",
                    "Estimated Emotion": category,
                    "Macro/Micro": "Micro" if r.kind == "ME" else "Macro",
                    "Date": "",
                    "dif": counter_difference(int(video.counter[onset]), int(video.counter[apex]))
                    + 1,
                }
            )
    summary = {"rows": len(rows), "skipped_not_stimulus_clips": skipped, "names": names is not None}
    return pd.DataFrame(rows), summary


def export_coding_sheet(
    store, intervals: pd.DataFrame, path: str | Path, *, names: PseudonymMap | None = None
) -> dict[str, Any]:
    """Write the found intervals as a coding sheet (.xlsx or .csv); returns the summary."""
    rows, summary = spotted_coding_rows(store, intervals, names=names)
    if not len(rows):
        rows = pd.DataFrame(columns=CODING_COLUMNS)
    write_coding_sheet(rows, path)
    summary["path"] = str(path)
    return summary
