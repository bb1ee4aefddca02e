"""The coding file of a synthetic tree: one row per planted expression, spelled as the real sheet.

Unless `clean`, the real sheet's quirks (data-format.md) are planted: about 30 % of frame
names without the counter, about 45 % of rows with ApexTime == OffsetTime (the apex
frame repeated as offset frame), AU lists joined by ", " or "," and now and then a
full-width "，". Always: the sheet's emotion words (happy, angry, sad, tense, ...),
Chinese coding dates and ``dif`` = frames from onset to apex inclusive, counted on the
camera counter modulo 1000 (so it survives the counter wrap).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from mmhe.annotations import CODING_COLUMNS
from mmhe.io.frame_names import counter_difference
from mmhe.synth.design import Expression, Participant, Session, participant_rng

SHEET_WORDS: dict[str, str] = {
    "happiness": "happy",
    "anger": "angry",
    "sadness": "sad",
    "tension": "tense",
    "disgust": "disgust",
    "fear": "fear",
    "surprise": "surprise",
    "contempt": "contempt",
}
"""Canonical emotion -> the word the real coding sheet uses."""
FOUR_PART_SHARE = 0.30
APEX_IS_OFFSET_SHARE = 0.45


def clip_file_name(expression: Expression, session: Session) -> str:
    """``{emotion}_{clipIndex}_{marker}_{subject}_{YYYYMMDD}.avi`` of an expression."""
    block = next(b for b in session.clips if b.marker == expression.marker)
    person: Participant = session.participant
    return (
        f"{SHEET_WORDS[expression.emotion]}_{block.clip_index}_{expression.marker}_"
        f"{person.subject}_{person.session_date:%Y%m%d}.avi"
    )


def _au_text(aus: tuple[int, ...], clean: bool, rng: np.random.Generator) -> str:
    separator = ", "
    if not clean:
        separator = str(rng.choice([", ", ",", "，"], p=[0.6, 0.3, 0.1]))
    return separator.join(f"AU{a}" for a in aus)


def _coding_date(rng: np.random.Generator) -> str:
    when = dt.datetime(2024, 3, 1, 9) + dt.timedelta(
        days=int(rng.integers(0, 100)), minutes=int(rng.integers(0, 12 * 60))
    )
    return f"{when:%Y}年{when:%m}月{when:%d}日-{when:%H}时{when:%M}分"


def expression_rows(session: Session, seed: int, clean: bool) -> list[dict[str, object]]:
    """The raw coding rows (dicts keyed by `CODING_COLUMNS`) of one session, in time order."""
    rng = participant_rng(seed, session.participant.index, "coding")
    rows = []
    for expression in session.expressions:
        run = session.run(expression.marker)
        apex_is_offset = not clean and rng.random() < APEX_IS_OFFSET_SHARE
        coded = {
            "onset": expression.onset_frame,
            "apex": expression.apex_frame,
            "offset": expression.apex_frame if apex_is_offset else expression.offset_frame,
        }
        first = run.stamp_ms[0]
        times = {
            e: round((int(run.stamp_ms[i]) - int(first)) / 1000.0, 2) for e, i in coded.items()
        }
        names = {
            e: run.coding_name(i, counter=clean or rng.random() >= FOUR_PART_SHARE)
            for e, i in coded.items()
        }
        if apex_is_offset:
            names["offset"] = names["apex"]
        dif = (
            counter_difference(int(run.counter[coded["onset"]]), int(run.counter[coded["apex"]]))
            + 1
        )
        rows.append(
            {
                "Subject": session.participant.subject,
                "Filename": clip_file_name(expression, session),
                "Marker": expression.marker,
                "OnsetTime": times["onset"],
                "ApexTime": times["apex"],
                "OffsetTime": times["offset"],
                "OnsetFrame": names["onset"],
                "ApexFrame": names["apex"],
                "OffsetFrame": names["offset"],
                "Action Units": _au_text(expression.aus, clean, rng),
                "Estimated Emotion": SHEET_WORDS[expression.emotion],
                "Macro/Micro": "Micro" if expression.kind == "ME" else "Macro",
                "Date": _coding_date(rng),
                "dif": dif,
            }
        )
    return rows


def coding_table(sessions: list[Session], seed: int, clean: bool) -> pd.DataFrame:
    """All coding rows of a dataset, shape (n_expressions, len(CODING_COLUMNS))."""
    rows = [row for s in sessions for row in expression_rows(s, seed, clean)]
    return pd.DataFrame(rows, columns=CODING_COLUMNS)
