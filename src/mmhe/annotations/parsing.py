"""Parsers for the cells of a coding file. Each returns a value or raises `CellError`.

`CellError` carries an issue code and a message; `read_coding_file` turns it into an
`AnnotationIssue`. No parser raises anything else, whatever the input (property-tested).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from mmhe.io.frame_names import FrameName, FrameNameError, parse_frame_name
from mmhe.labels import normalize_emotion


class CellError(ValueError):
    """A cell that cannot be used; `code` names the rule (e.g. ``malformed_au``)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


def is_blank(value: object) -> bool:
    """True for None, NaN, NaT and strings that are empty after stripping."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if str(value) == "NaT":  # pandas.NaT
        return True
    return isinstance(value, str) and not value.strip()


def _text(value: object) -> str:
    return "" if is_blank(value) else str(value).strip()


# ---------------------------------------------------------------- numbers


def parse_seconds(value: object, column: str) -> float:
    """A time in seconds from the start of the clip (a number >= 0)."""
    text = _text(value)
    if not text:
        raise CellError("missing_time", f"{column} is empty")
    try:
        seconds = float(text.replace("，", ".").replace(",", "."))
    except ValueError:
        raise CellError("bad_time", f"{column} {text!r} is not a number of seconds") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise CellError("bad_time", f"{column} {text!r} is not a time >= 0 s")
    return seconds


def parse_int(value: object, column: str) -> int:
    """A whole number (accepts ``146``, ``146.0``, `` 146 ``)."""
    text = _text(value)
    if not text:
        raise CellError("missing_value", f"{column} is empty")
    try:
        number = float(text)
    except ValueError:
        raise CellError("bad_number", f"{column} {text!r} is not a whole number") from None
    if not math.isfinite(number) or number != int(number):
        raise CellError("bad_number", f"{column} {text!r} is not a whole number")
    return int(number)


# ---------------------------------------------------------------- frames


def parse_frame_cell(value: object, column: str) -> FrameName:
    """A coding-file frame name ``HH-MM-SS-mmm-CCC`` or ``HH-MM-SS-mmm``."""
    text = _text(value)
    if not text:
        raise CellError("missing_frame", f"{column} is empty")
    try:
        frame = parse_frame_name(text)
    except FrameNameError as exc:
        raise CellError("malformed_frame_name", f"{column} {text!r}: {exc.problem}") from None
    return frame


# ---------------------------------------------------------------- action units

_AU_SEPARATORS = re.compile(r"[,，;；+、/]+|\s+(?=[A-Za-z]*\d)")
_AU_TOKEN = re.compile(r"^(?P<side>[LRTBU])?\s*(?:AU)?\s*(?P<number>\d{1,3})(?P<intensity>[A-E])?$")


def parse_aus(value: object) -> tuple[tuple[int, ...], list[str]]:
    """AU numbers of an ``Action Units`` cell, and the tokens that did not parse.

    Accepts ``AU4, AU7``, ``AU4,AU7``, full-width commas ``AU4，AU7``, ``4+7``, ``AU 12``,
    laterality prefixes (``L12``, ``R14``) and intensity suffixes (``AU12C``). Returns the
    sorted unique numbers and the malformed tokens (empty when all parsed).

    >>> parse_aus("AU4， AU7,AU4")
    ((4, 7), [])
    """
    text = _text(value)
    if not text:
        return (), []
    numbers: set[int] = set()
    bad: list[str] = []
    text = re.sub(r"AU\s+(?=\d)", "AU", text.upper())
    for token in _AU_SEPARATORS.split(text):
        token = token.strip()
        if not token:
            continue
        match = _AU_TOKEN.match(token)
        if match is None or int(match["number"]) == 0:
            bad.append(token)
        else:
            numbers.add(int(match["number"]))
    return tuple(sorted(numbers)), bad


def format_aus(aus: tuple[int, ...] | list[int]) -> str:
    """The coding-file spelling: ``AU4, AU7``."""
    return ", ".join(f"AU{int(a)}" for a in aus)


# ---------------------------------------------------------------- dates

_CHINESE_DATE = re.compile(
    r"^(?P<y>\d{4})\s*年\s*(?P<mo>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*日"
    r"(?:\s*[-－—]?\s*(?P<h>\d{1,2})\s*[时時:]\s*(?P<mi>\d{1,2})\s*分?)?$"
)
_ISO_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y/%m/%d %H:%M", "%Y/%m/%d")


def parse_coding_date(value: object) -> dt.datetime:
    """When a row was coded: ``2024年05月15日-19时54分`` (also ISO text or an Excel date cell)."""
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime.combine(value, dt.time())
    text = _text(value)
    if not text:
        raise CellError("missing_date", "Date is empty")
    match = _CHINESE_DATE.match(text)
    try:
        if match:
            return dt.datetime(
                int(match["y"]),
                int(match["mo"]),
                int(match["d"]),
                int(match["h"] or 0),
                int(match["mi"] or 0),
            )
        for fmt in _ISO_FORMATS:
            try:
                return dt.datetime.strptime(text, fmt)
            except ValueError:
                continue
    except ValueError:
        pass
    raise CellError("bad_date", f"Date {text!r} is not like 2024年05月15日-19时54分")


def format_coding_date(when: dt.datetime) -> str:
    """The coding-file spelling of a coding date: ``2024年05月15日-19时54分``."""
    return f"{when:%Y}年{when:%m}月{when:%d}日-{when:%H}时{when:%M}分"


# ---------------------------------------------------------------- file names

_FILENAME = re.compile(
    r"^(?P<emotion>[^_]+)_(?P<clip>\d+)_(?P<marker>\d+)_(?P<subject>.+)_(?P<date>\d{8})"
    r"\s*\.\s*avi$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ClipFileName:
    """Fields of ``{emotion}_{clipIndex}_{marker}_{subject}_{YYYYMMDD}.avi``."""

    emotion_word: str
    emotion: str | None
    clip_index: int
    marker: int
    subject: str
    session_date: dt.date


def parse_clip_filename(value: object) -> ClipFileName:
    """Parse a ``Filename`` cell (tolerates spaces such as ``... _20230802. avi``)."""
    text = _text(value)
    if not text:
        raise CellError("missing_filename", "Filename is empty")
    match = _FILENAME.match(text)
    if match is None:
        raise CellError(
            "malformed_filename",
            f"Filename {text!r} is not like angry_1_146_subject_20230718.avi",
        )
    try:
        date = dt.datetime.strptime(match["date"], "%Y%m%d").date()
    except ValueError:
        raise CellError("malformed_filename", f"Filename {text!r}: invalid date") from None
    word = match["emotion"].strip()
    return ClipFileName(
        word,
        normalize_emotion(word),
        int(match["clip"]),
        int(match["marker"]),
        match["subject"].strip(),
        date,
    )


# ---------------------------------------------------------------- ME / MaE

_KIND_WORDS = {
    "micro": "ME",
    "me": "ME",
    "microexpression": "ME",
    "micro-expression": "ME",
    "macro": "MaE",
    "mae": "MaE",
    "macroexpression": "MaE",
    "macro-expression": "MaE",
}


def parse_kind(value: object) -> str:
    """``Micro``/``Macro`` (and ME/MaE spellings) -> ``ME`` or ``MaE``."""
    text = re.sub(r"\s+", "", _text(value)).casefold()
    if not text:
        raise CellError("kind_missing", "Macro/Micro is empty")
    if text not in _KIND_WORDS:
        raise CellError("kind_unknown", f"Macro/Micro {text!r} is neither Macro nor Micro")
    return _KIND_WORDS[text]


def subject_key(name: object) -> str:
    """Normalised participant name: case and spaces ignored, a trailing YYYYMMDD removed.

    >>> subject_key(" LiYan20230802 ")
    'liyan'
    """
    text = re.sub(r"\s+", "", _text(name)).casefold()
    return re.sub(r"_?(19|20)\d{6}$", "", text)
