"""The coding (annotation) file: read, normalise, validate and write it.

One row per expression, columns as in the real MMHE sheet (`CODING_COLUMNS`). Every quirk
of the real file (data-format.md) is survived: four-part frame names, apex == offset,
counter wrap, emotion words of the sheet, AU lists with any comma, Chinese coding dates,
a missing Macro/Micro column. Cell-level problems become `AnnotationIssue`s; no source
row is ever dropped silently: each is in `CodingFile.table` or has an ``error`` issue.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from mmhe.annotations.parsing import (
    CellError,
    format_aus,
    format_coding_date,
    is_blank,
    parse_aus,
    parse_clip_filename,
    parse_coding_date,
    parse_frame_cell,
    parse_int,
    parse_kind,
    parse_seconds,
    subject_key,
)
from mmhe.annotations.pseudonyms import PseudonymMap
from mmhe.errors import AnnotationError
from mmhe.io.frame_names import counter_difference
from mmhe.labels import (
    ACTION_UNITS,
    au_prototypes,
    compound_of,
    normalize_emotion,
    stimulus_categories,
)

CODING_COLUMNS: list[str] = [
    "Subject",
    "Filename",
    "Marker",
    "OnsetTime",
    "ApexTime",
    "OffsetTime",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Action Units",
    "Estimated Emotion",
    "Macro/Micro",
    "Date",
    "dif",
]
"""Columns of the real coding sheet, in order. ``Macro/Micro`` is missing in some versions."""

OPTIONAL_COLUMNS = frozenset({"Macro/Micro"})
REQUIRED_COLUMNS = [c for c in CODING_COLUMNS if c not in OPTIONAL_COLUMNS]
CAMERA_FPS = 150.0
FRAME_TOLERANCE = 2
"""Times and frame names must agree within this many frames at `CAMERA_FPS`."""

_ALIASES = {
    "subject": "Subject",
    "filename": "Filename",
    "marker": "Marker",
    "onsettime": "OnsetTime",
    "apextime": "ApexTime",
    "offsettime": "OffsetTime",
    "onsetframe": "OnsetFrame",
    "apexframe": "ApexFrame",
    "offsetframe": "OffsetFrame",
    "actionunits": "Action Units",
    "aus": "Action Units",
    "estimatedemotion": "Estimated Emotion",
    "emotion": "Estimated Emotion",
    "macro/micro": "Macro/Micro",
    "micro/macro": "Macro/Micro",
    "macromicro": "Macro/Micro",
    "date": "Date",
    "dif": "dif",
    "diff": "dif",
}
_EVENTS = ("onset", "apex", "offset")

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class MeRule:
    """The duration rule that tells micro- from macro-expressions.

    An expression is an ME when its total duration (offset - onset) is at most
    `max_total_s`, or (when `max_onset_apex_s` is set) its onset-to-apex duration is at
    most `max_onset_apex_s`.

    The default, "total <= 500 ms" alone, reproduces the dataset's published statistics
    (Figure 2(d): MMHE ME duration 381.7 ± 100.5 ms; the public sample gives 367 ± 93 ms,
    n = 434). The literature's "total <= 500 ms or onset-to-apex <= 250 ms" (CASME II,
    `MeRule.total_or_onset_apex()`) admits expressions of up to 5.45 s in the public sample
    (402 ± 272 ms). Used when the Macro/Micro column is missing, and to check it when present
    (the column wins).
    """

    max_total_s: float = 0.5
    max_onset_apex_s: float | None = None

    @classmethod
    def total_or_onset_apex(cls) -> MeRule:
        """The literature's rule: total <= 500 ms or onset-to-apex <= 250 ms."""
        return cls(0.5, 0.25)

    def kind(self, total_s: float, onset_apex_s: float) -> str:
        eps = 1e-9
        if total_s <= self.max_total_s + eps:
            return "ME"
        if self.max_onset_apex_s is not None and onset_apex_s <= self.max_onset_apex_s + eps:
            return "ME"
        return "MaE"

    def __str__(self) -> str:
        text = f"total <= {self.max_total_s * 1000:g} ms"
        if self.max_onset_apex_s is not None:
            text += f" or onset-to-apex <= {self.max_onset_apex_s * 1000:g} ms"
        return text


@dataclass(frozen=True)
class AnnotationIssue:
    """One problem found in a coding file.

    row : 1-based data row (the sheet's row number minus the header), None for the file.
    severity : ``error`` (row unusable, kept out of the table) or ``warning`` (row kept).
    `sheet_row` is the number Excel shows for that row (the header is row 1).
    """

    row: int | None
    column: str | None
    severity: Severity
    code: str
    message: str

    @property
    def sheet_row(self) -> int | None:
        return sheet_row(self.row)


def sheet_row(row: int | None) -> int | None:
    """The row number a spreadsheet shows for 1-based data row `row` (header = row 1)."""
    return None if row is None else int(row) + 1


@dataclass
class CodingFile:
    """A parsed coding file: `table` (one row per usable expression) and `issues`."""

    path: Path
    table: pd.DataFrame
    issues: list[AnnotationIssue]
    rows_read: int
    has_kind_column: bool
    pseudonyms: PseudonymMap = field(repr=False, default_factory=PseudonymMap)
    row_subjects: dict[int, str] = field(repr=False, default_factory=dict)
    """Subject cell of every data row, rejected rows included (to attribute their issues)."""
    time_resolution_s: float = 0.01
    """The step the file writes its times in (`time_resolution`)."""

    @property
    def errors(self) -> list[AnnotationIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[AnnotationIssue]:
        return [i for i in self.issues if i.severity == "warning"]

    def issues_frame(self) -> pd.DataFrame:
        """The issues as a DataFrame (columns row, sheet_row, column, severity, code, message;
        `sheet_row` is the row number a spreadsheet shows)."""
        columns = ["row", "column", "severity", "code", "message"]
        frame = pd.DataFrame([asdict(i) for i in self.issues], columns=columns)
        frame["row"] = frame["row"].astype("Int64")
        frame.insert(1, "sheet_row", (frame["row"] + 1).astype("Int64"))
        return frame

    def summary(self, examples: int = 5) -> dict[str, Any]:
        """Rows read, kept and rejected; issues by code with example rows; emotion x kind."""
        rejected = {i.row for i in self.errors if i.row is not None}
        by_code: dict[str, dict[str, Any]] = {}
        for issue in self.issues:
            entry = by_code.setdefault(
                issue.code,
                {
                    "severity": issue.severity,
                    "count": 0,
                    "rows": [],
                    "sheet_rows": [],
                    "example": "",
                },
            )
            entry["count"] += 1
            if issue.row is not None and len(entry["rows"]) < examples:
                entry["rows"].append(issue.row)
                entry["sheet_rows"].append(issue.sheet_row)
            if not entry["example"]:
                entry["example"] = issue.message
        counts = (
            self.table.groupby(["emotion", "kind"]).size().unstack(fill_value=0)
            if len(self.table)
            else pd.DataFrame()
        )
        expressions = {
            str(emotion): {str(k): int(v) for k, v in row.items()}
            for emotion, row in counts.iterrows()
        }
        return {
            "file": str(self.path),
            "rows_read": self.rows_read,
            "rows_kept": len(self.table),
            "rows_rejected": len(rejected),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "kind_column": self.has_kind_column,
            "time_resolution_s": self.time_resolution_s,
            "time_tolerance_ms": round(time_tolerance(self.time_resolution_s) * 1000, 1),
            "dif_units": {str(k): int(v) for k, v in self.table["dif_unit"].value_counts().items()}
            if len(self.table)
            else {},
            "me_rule_disagreements": len(self.rule_disagreements()),
            "issues_by_code": dict(sorted(by_code.items())),
            "expressions": expressions,
        }

    def rule_disagreements(self, rules: tuple[MeRule, MeRule] | None = None) -> pd.DataFrame:
        """Expressions two ME rules classify differently (default: "total <= 500 ms" and
        "total <= 500 ms or onset-to-apex <= 250 ms"): row, sheet_row, subject_id, marker,
        duration_ms, onset_apex_ms, the kind by each rule, and the kind used."""
        first, second = rules or (MeRule(), MeRule.total_or_onset_apex())
        columns = [
            "row",
            "sheet_row",
            "subject_id",
            "marker",
            "duration_ms",
            "onset_apex_ms",
            "rule_a",
            "rule_b",
            "kind",
            "kind_source",
        ]
        if not len(self.table):
            return pd.DataFrame(columns=columns)
        t = self.table
        a = [first.kind(d, o) for d, o in zip(t["duration_s"], t["onset_apex_s"], strict=True)]
        b = [second.kind(d, o) for d, o in zip(t["duration_s"], t["onset_apex_s"], strict=True)]
        out = pd.DataFrame(
            {
                "row": t["row"],
                "sheet_row": t["row"] + 1,
                "subject_id": t["subject_id"],
                "marker": t["marker"],
                "duration_ms": (t["duration_s"] * 1000).round(0),
                "onset_apex_ms": (t["onset_apex_s"] * 1000).round(0),
                "rule_a": a,
                "rule_b": b,
                "kind": t["kind"],
                "kind_source": t["kind_source"],
            }
        )
        out = out[out["rule_a"] != out["rule_b"]].reset_index(drop=True)
        out.attrs["rules"] = (str(first), str(second))
        return out

    def deidentified(self) -> pd.DataFrame:
        """`table` without participant names: `subject` dropped, names in `file` replaced."""
        table = self.table.drop(columns=["subject"])
        table["file"] = [
            _replace_subject(f, sid)
            for f, sid in zip(table["file"], table["subject_id"], strict=True)
        ]
        return table


# ---------------------------------------------------------------- reading


_SEPARATORS = (",", ";", "\t", "|")


def _csv_separator(path: Path, encoding: str) -> str:
    """The separator whose split of the first line names most coding columns (``,`` on a tie)."""
    with path.open(encoding=encoding, newline="") as handle:
        first = handle.readline()

    def known(sep: str) -> int:
        return sum("".join(c.split()).casefold() in _ALIASES for c in first.split(sep))

    return max(_SEPARATORS, key=known)


def _read_csv(path: Path) -> pd.DataFrame:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            sep = _csv_separator(path, encoding)
            return pd.read_csv(
                path, dtype=object, encoding=encoding, keep_default_na=False, sep=sep
            )
        except UnicodeDecodeError:
            continue
    raise AnnotationError(
        path,
        "is neither UTF-8 nor GB18030 text",
        "open it in a spreadsheet and save it as .xlsx or as CSV UTF-8",
    )


def load_sheet(path: Path, sheet: str | int) -> pd.DataFrame:
    """The raw cells of a coding sheet (.xlsx / .csv), as objects; `AnnotationError` when
    the file is missing, unreadable or empty. CSV: UTF-8 or GB18030, separated by ``,``,
    ``;``, tab or ``|`` (the one that splits the header into coding columns)."""
    if not path.is_file():
        raise AnnotationError(path, "file not found", "give the path of the coding .xlsx or .csv")
    suffix = path.suffix.lower()
    try:
        if suffix in {".xlsx", ".xlsm"}:
            frame = pd.read_excel(path, sheet_name=sheet, dtype=object, engine="openpyxl")
        elif suffix == ".csv":
            frame = _read_csv(path)
        else:
            raise AnnotationError(path, f"unsupported extension {suffix!r}", "use .xlsx or .csv")
    except AnnotationError:
        raise
    except (ValueError, KeyError, OSError, zipfile.BadZipFile, pd.errors.ParserError) as exc:
        if suffix in {".xlsx", ".xlsm"} and isinstance(exc, (ValueError, KeyError)):
            names = _sheet_names(path)
            if names and (sheet not in names if isinstance(sheet, str) else sheet >= len(names)):
                raise AnnotationError(
                    path, f"has no sheet {sheet!r}", f"its sheets are {names}; pass --sheet NAME"
                ) from exc
        raise AnnotationError(
            path,
            f"cannot be read as a coding sheet: {type(exc).__name__}: {exc}",
            "is it really an .xlsx workbook or a CSV text file? Open and save it again",
        ) from exc
    if frame.shape[1] == 0:
        raise AnnotationError(path, "the sheet is empty", "the first row must hold column names")
    return frame


def _sheet_names(path: Path) -> list[str]:
    try:
        from openpyxl import load_workbook

        book = load_workbook(path, read_only=True)
        try:
            return list(book.sheetnames)
        finally:
            book.close()
    except Exception:  # not a workbook: the caller reports the original problem
        return []


def _formula_cells(
    path: Path, sheet: str | int, columns: list[object]
) -> dict[tuple[int, str], str]:
    """{(data row, column): formula} of the formula cells of an .xlsx sheet (Excel writes
    each formula's last value beside it; files written by scripts often have none)."""
    if path.suffix.lower() not in {".xlsx", ".xlsm"}:
        return {}
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=False)
    except Exception:
        return {}
    try:
        ws = book[sheet] if isinstance(sheet, str) else book.worksheets[sheet]
        found = {}
        for position, values in enumerate(ws.iter_rows(min_row=2, values_only=True), start=1):
            for column, value in zip(columns, values, strict=False):
                if isinstance(value, str) and value.startswith("="):
                    found[(position, str(column))] = value
        return found
    finally:
        book.close()


def canonical_columns(
    path: Path, frame: pd.DataFrame, sheet: str | int | None = None
) -> pd.DataFrame:
    """Rename known spellings of the coding columns; `AnnotationError` if one is missing
    (naming the sheet that has them, when another sheet of the workbook does)."""
    rename: dict[Any, str] = {}
    for column in frame.columns:
        key = "".join(str(column).split()).casefold()
        if key in _ALIASES and _ALIASES[key] not in rename.values():
            rename[column] = _ALIASES[key]
    frame = frame.rename(columns=rename)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        hint = f"a coding file has the columns {CODING_COLUMNS}"
        where = ""
        if path.suffix.lower() in {".xlsx", ".xlsm"} and sheet is not None:
            names = _sheet_names(path)
            shown = names[sheet] if isinstance(sheet, int) and sheet < len(names) else sheet
            where = f" on sheet {shown!r}"
            for other in names:
                if other == sheet or (isinstance(sheet, int) and names.index(other) == sheet):
                    continue
                try:
                    head = pd.read_excel(path, sheet_name=other, nrows=0, engine="openpyxl")
                except Exception:
                    continue
                keys = {"".join(str(c).split()).casefold() for c in head.columns}
                if all(any(_ALIASES.get(k) == column for k in keys) for column in REQUIRED_COLUMNS):
                    hint = f"sheet {other!r} has them: pass --sheet {other!r}"
                    break
        if len(missing) == len(REQUIRED_COLUMNS) and path.suffix.lower() == ".csv":
            hint += "; is the CSV separated by something other than , ; tab or |?"
        raise AnnotationError(path, f"missing required column(s){where} {missing}", hint)
    return frame


def _stimulus_table(stimuli: str | Path | Mapping[int, str] | None) -> dict[int, str]:
    if isinstance(stimuli, Mapping):
        return {int(k): str(v) for k, v in stimuli.items()}
    return stimulus_categories(stimuli)


def _cell_key(value: object) -> str:
    if is_blank(value):
        return ""
    if isinstance(value, float) and value == int(value):
        return str(int(value))
    return " ".join(str(value).split())


class _RowChecker:
    """Parses one row into a record, collecting its issues."""

    def __init__(
        self,
        row: int,
        cells: Mapping[str, object],
        formulas: Mapping[tuple[int, str], str] | None = None,
    ) -> None:
        self.row = row
        self.cells = cells
        self.formulas = formulas or {}
        self.issues: list[AnnotationIssue] = []

    def add(self, column: str | None, severity: Severity, code: str, message: str) -> None:
        self.issues.append(AnnotationIssue(self.row, column, severity, code, message))

    def cell(self, parser, column: str, *args, severity: Severity = "error"):
        try:
            return parser(self.cells.get(column), *args)
        except CellError as exc:
            formula = self.formulas.get((self.row, column))
            if formula is not None and is_blank(self.cells.get(column)):
                self.add(
                    column,
                    severity,
                    "formula_without_value",
                    f"{column} holds the formula {formula!r} but no saved value: open the "
                    "file in Excel or LibreOffice and save it, so the values are stored",
                )
            else:
                self.add(column, severity, exc.code, str(exc))
            return None

    @property
    def rejected(self) -> bool:
        return any(i.severity == "error" for i in self.issues)


def _dif_unit(
    c: _RowChecker, dif: int, counters: dict[str, int | None], tod: dict[str, float]
) -> str | None:
    """The unit of a row's ``dif``: ``frames`` (counter difference + 1, modulo 1000) with
    five-part frame names, ``ms`` (milliseconds + 1) with four-part names, as the real file
    writes them; a ``dif_mismatch`` warning (with both readings) when neither fits."""
    span = tod["apex"] - tod["onset"]
    if counters["onset"] is not None and counters["apex"] is not None:
        frames_expected = counter_difference(counters["onset"], counters["apex"]) + 1
        if dif == frames_expected:
            return "frames"
        c.add(
            "dif",
            "warning",
            "dif_mismatch",
            f"dif {dif} but the frame counters give {frames_expected} frames from onset to "
            "apex (counter difference + 1, modulo 1000)",
        )
        return None
    if math.isnan(span):
        return None
    ms_expected = round(span * 1000) + 1
    frames_expected = round(span * CAMERA_FPS) + 1
    if abs(dif - ms_expected) <= 1:
        return "ms"
    if abs(dif - frames_expected) <= FRAME_TOLERANCE:
        return "frames"
    c.add(
        "dif",
        "warning",
        "dif_mismatch",
        f"dif {dif} but the frame names (no counter) give {ms_expected} (milliseconds + 1, "
        f"the convention of four-part names) or {frames_expected} frames from onset to apex",
    )
    return None


def time_resolution(values: pd.Series | list[object]) -> float:
    """The step times are written in (s): the coarsest of 1, 0.1, 0.01, 0.001 s that at
    least 95 % of the numeric values are multiples of (0.001 when none is)."""
    numbers = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").dropna()
    numbers = numbers[numbers > 0].to_numpy(dtype=float)
    if not numbers.size:
        return 0.001
    for step in (1.0, 0.1, 0.01, 0.001):
        ratio = numbers / step
        if (abs(ratio - ratio.round()) < 1e-6).mean() >= 0.95:
            return step
    return 0.001


def time_tolerance(resolution_s: float, fps: float = CAMERA_FPS) -> float:
    """How far an onset->apex (or offset) duration by the times may differ from the same
    duration by the frame names from rounding alone: each of the two times is rounded to
    `resolution_s` (up to one step together), and each frame name is quantised to a
    frame, with a ~50 % margin: 2.5 steps of the resolution, at least `FRAME_TOLERANCE`
    frames. Times written to 10 ms give 25 ms (data-format.md)."""
    return max(2.5 * resolution_s, FRAME_TOLERANCE / fps) + 0.0015


def _parse_row(
    checker: _RowChecker,
    categories: Mapping[int, str],
    me_rule: MeRule,
    has_kind_column: bool,
    time_tolerance_s: float = FRAME_TOLERANCE / CAMERA_FPS + 0.0015,
) -> dict[str, Any]:
    c = checker
    subject = "" if is_blank(c.cells.get("Subject")) else str(c.cells["Subject"]).strip()
    if not subject:
        c.add("Subject", "error", "missing_subject", "Subject is empty")

    clip = c.cell(parse_clip_filename, "Filename", severity="warning")
    marker = c.cell(parse_int, "Marker", "Marker", severity="warning" if clip else "error")
    if marker is None and clip is not None:
        marker = clip.marker
        c.add("Marker", "warning", "marker_from_filename", f"Marker taken from Filename ({marker})")
    if marker is not None and marker not in categories:
        c.add(
            "Marker",
            "error",
            "unknown_marker",
            f"marker {marker} is not in the stimulus table (markers {min(categories)}.."
            f"{max(categories)}); pass stimuli= with a table that lists it",
        )
    if clip is not None:
        if marker is not None and clip.marker != marker:
            c.add(
                "Filename",
                "warning",
                "filename_mismatch",
                f"Filename marker {clip.marker} differs from Marker {marker}",
            )
        if subject and subject_key(clip.subject) != subject_key(subject):
            c.add(
                "Filename",
                "warning",
                "filename_mismatch",
                "the participant named in Filename differs from the Subject column",
            )

    times = {
        e: c.cell(parse_seconds, f"{e.capitalize()}Time", f"{e.capitalize()}Time") for e in _EVENTS
    }
    frames = {
        e: c.cell(
            parse_frame_cell, f"{e.capitalize()}Frame", f"{e.capitalize()}Frame", severity="warning"
        )
        for e in _EVENTS
    }
    tod = {e: (frames[e].seconds_of_day if frames[e] else math.nan) for e in _EVENTS}
    if tod["onset"] == tod["onset"]:  # frames crossing midnight stay monotonic
        for e in ("apex", "offset"):
            if tod[e] == tod[e] and tod[e] < tod["onset"] - 43200:
                tod[e] += 86400.0

    if None not in times.values() and not (times["onset"] <= times["apex"] <= times["offset"]):
        c.add(
            "OnsetTime",
            "error",
            "order",
            f"onset {times['onset']} s, apex {times['apex']} s, offset {times['offset']} s "
            "are not in order (onset <= apex <= offset)",
        )
    for e in ("apex", "offset"):
        if (
            times[e] is not None
            and times["onset"] is not None
            and not math.isnan(tod[e] - tod["onset"])
        ):
            gap = abs((times[e] - times["onset"]) - (tod[e] - tod["onset"]))
            if gap > time_tolerance_s:
                c.add(
                    f"{e.capitalize()}Frame",
                    "warning",
                    "time_frame_mismatch",
                    f"onset->{e} is {times[e] - times['onset']:.3f} s by the times but "
                    f"{tod[e] - tod['onset']:.3f} s by the frame names ({gap * 1000:.0f} ms "
                    f"apart; rounding allows {time_tolerance_s * 1000:.0f} ms)",
                )

    counters = {e: (frames[e].counter if frames[e] else None) for e in _EVENTS}
    dif = (
        c.cell(parse_int, "dif", "dif", severity="warning")
        if not is_blank(c.cells.get("dif"))
        else None
    )
    dif_unit = None
    if dif is not None:
        dif_unit = _dif_unit(c, dif, counters, tod)

    aus, bad_tokens = parse_aus(c.cells.get("Action Units"))
    for token in bad_tokens:
        c.add("Action Units", "warning", "malformed_au", f"AU token {token!r} is not an AU code")
    for number in aus:
        if number not in ACTION_UNITS:
            c.add(
                "Action Units", "warning", "unknown_au", f"AU{number} is not in the FACS catalogue"
            )
    if not aus and not bad_tokens:
        c.add("Action Units", "warning", "no_aus", "no action unit coded")

    emotion_raw = (
        ""
        if is_blank(c.cells.get("Estimated Emotion"))
        else str(c.cells["Estimated Emotion"]).strip()
    )
    emotion = normalize_emotion(emotion_raw)
    if emotion is None:
        c.add(
            "Estimated Emotion",
            "error",
            "unknown_emotion",
            f"emotion {emotion_raw!r} is not known (see mmhe.labels.EMOTIONS)",
        )
    else:
        category = categories.get(marker) if marker is not None else None
        if category is not None and category != emotion and category != "rest":
            c.add(
                "Estimated Emotion",
                "warning",
                "emotion_stimulus_mismatch",
                f"emotion {emotion} coded during a {category} clip (marker {marker})",
            )
        typical = au_prototypes().get(emotion, frozenset())
        if aus and typical and not set(aus) & typical:
            c.add(
                "Action Units",
                "warning",
                "implausible_aus",
                f"{format_aus(aus)} contains none of the AUs typical of {emotion}",
            )
        if clip is not None and clip.emotion is not None and clip.emotion != emotion:
            c.add(
                "Filename",
                "warning",
                "filename_mismatch",
                f"Filename says {clip.emotion_word!r} but the emotion is {emotion_raw!r}",
            )

    onset_apex = total = math.nan
    kind = kind_source = None
    if None not in times.values():
        onset_apex = times["apex"] - times["onset"]
        total = times["offset"] - times["onset"]
        rule_kind = me_rule.kind(total, onset_apex)
        column_kind = (
            c.cell(parse_kind, "Macro/Micro", severity="warning") if has_kind_column else None
        )
        if column_kind is None:
            kind, kind_source = rule_kind, "duration_rule"
        else:
            kind, kind_source = column_kind, "column"
            if column_kind != rule_kind:
                c.add(
                    "Macro/Micro",
                    "warning",
                    "kind_rule_mismatch",
                    f"marked {column_kind} but the duration rule says {rule_kind} "
                    f"(total {total * 1000:.0f} ms, onset->apex {onset_apex * 1000:.0f} ms)",
                )

    coded_at = c.cell(parse_coding_date, "Date", severity="warning")

    record: dict[str, Any] = {
        "row": checker.row,
        "subject": subject,
        "file": "" if is_blank(c.cells.get("Filename")) else str(c.cells["Filename"]).strip(),
        "marker": marker,
        "clip_index": clip.clip_index if clip else None,
        "session_date": clip.session_date if clip else None,
        "category": categories.get(marker) if marker is not None else None,
    }
    for e in _EVENTS:
        record[f"{e}_s"] = times[e] if times[e] is not None else math.nan
    for e in _EVENTS:
        f = frames[e]
        record[f"{e}_frame"] = (
            dt.time(f.hour, f.minute, min(f.second, 59), f.millisecond * 1000) if f else None
        )
        record[f"{e}_frame_text"] = _cell_key(c.cells.get(f"{e.capitalize()}Frame"))
        record[f"{e}_tod_s"] = tod[e]
        record[f"{e}_counter"] = counters[e]
    record.update(
        aus=aus,
        emotion=emotion,
        emotion_raw=emotion_raw,
        compound=compound_of(emotion),
        kind=kind,
        kind_source=kind_source,
        coded_at=coded_at,
        dif=dif,
        dif_unit=dif_unit,
        duration_s=total,
        onset_apex_s=onset_apex,
    )
    return record


TABLE_COLUMNS = [
    "row",
    "subject",
    "subject_id",
    "file",
    "marker",
    "clip_index",
    "session_date",
    "category",
    "onset_s",
    "apex_s",
    "offset_s",
    "onset_frame",
    "apex_frame",
    "offset_frame",
    "onset_frame_text",
    "apex_frame_text",
    "offset_frame_text",
    "onset_tod_s",
    "apex_tod_s",
    "offset_tod_s",
    "onset_counter",
    "apex_counter",
    "offset_counter",
    "aus",
    "emotion",
    "emotion_raw",
    "compound",
    "kind",
    "kind_source",
    "coded_at",
    "dif",
    "dif_unit",
    "duration_s",
    "onset_apex_s",
]


def _typed_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame.from_records(
        records, columns=[c for c in TABLE_COLUMNS if c != "subject_id"]
    )
    for column in ("row", "marker"):
        table[column] = table[column].astype("int64")
    for column in ("clip_index", "onset_counter", "apex_counter", "offset_counter", "dif"):
        table[column] = pd.array(table[column].tolist(), dtype="Int64")
    for column in (
        "onset_s",
        "apex_s",
        "offset_s",
        "onset_tod_s",
        "apex_tod_s",
        "offset_tod_s",
        "duration_s",
        "onset_apex_s",
    ):
        table[column] = table[column].astype("float64")
    table["coded_at"] = pd.to_datetime(table["coded_at"])
    return table


def read_coding_file(
    path: str | Path,
    *,
    stimuli: str | Path | Mapping[int, str] | None = None,
    me_rule: MeRule | None = None,
    pseudonyms: PseudonymMap | str | Path | None = None,
    sheet: str | int = 0,
) -> CodingFile:
    """Read a coding file (``.xlsx`` or ``.csv``) shaped like MMHE's.

    stimuli : stimulus table (CSV path or {marker: category}); default the packaged one.
    me_rule : duration rule for ME vs MaE (`MeRule`); used when Macro/Micro is missing
        and to check it when present.
    pseudonyms : a `PseudonymMap` or the path of its private CSV (read and extended, not
        written: call ``coding.pseudonyms.save(path)`` to keep new ids). Default: ids by
        sorted normalised name, stable for one dataset.
    Raises `AnnotationError` when the file is missing, unreadable, empty or lacks a
    required column. Cell problems never raise: see `CodingFile.issues`.
    """
    path = Path(path)
    me_rule = me_rule or MeRule()
    categories = _stimulus_table(stimuli)
    if isinstance(pseudonyms, (str, Path)):
        pseudonyms = PseudonymMap.load(pseudonyms)
    pseudonyms = pseudonyms if pseudonyms is not None else PseudonymMap()

    raw_frame = load_sheet(path, sheet)
    formulas = _formula_cells(path, sheet, list(raw_frame.columns))
    frame = canonical_columns(path, raw_frame, sheet)
    if formulas:  # keyed by the canonical column names
        renamed = dict(zip(map(str, raw_frame.columns), map(str, frame.columns), strict=True))
        formulas = {(r, renamed.get(c, c)): f for (r, c), f in formulas.items()}
    has_kind_column = "Macro/Micro" in frame.columns
    blank = frame.apply(lambda col: col.map(is_blank)).all(axis=1)
    last = int(blank[~blank].index.max()) if (~blank).any() else -1
    frame = frame.iloc[: last + 1]
    if frame.empty:
        raise AnnotationError(path, "the sheet has no data rows", "is this the right sheet?")

    resolution = time_resolution(
        [v for col in ("OnsetTime", "ApexTime", "OffsetTime") for v in frame[col].tolist()]
    )
    tolerance_s = time_tolerance(resolution)
    issues: list[AnnotationIssue] = []
    if not has_kind_column:
        issues.append(
            AnnotationIssue(
                None,
                "Macro/Micro",
                "warning",
                "kind_column_missing",
                f"no Macro/Micro column: ME/MaE from the duration rule {me_rule}",
            )
        )
    records: list[dict[str, Any]] = []
    first_seen: dict[tuple[str, ...], int] = {}
    row_subjects: dict[int, str] = {}
    key_columns = [c for c in frame.columns if c in CODING_COLUMNS and c != "Date"]
    for position, cells in enumerate(frame.to_dict("records"), start=1):
        row_subjects[position] = (
            "" if is_blank(cells.get("Subject")) else str(cells["Subject"]).strip()
        )
        checker = _RowChecker(position, cells, formulas)
        if blank.iloc[position - 1]:
            checker.add(None, "error", "empty_row", "the row is empty")
            issues.extend(checker.issues)
            continue
        key = tuple(_cell_key(cells.get(col)) for col in key_columns)
        if key in first_seen:
            checker.add(
                None,
                "error",
                "duplicate_row",
                f"same expression as sheet row {sheet_row(first_seen[key])} (kept there)",
            )
            issues.extend(checker.issues)
            continue
        first_seen[key] = position
        record = _parse_row(checker, categories, me_rule, has_kind_column, tolerance_s)
        issues.extend(checker.issues)
        if not checker.rejected:
            records.append(record)

    table = _typed_table(records)
    issues += overlap_issues(table)
    pseudonyms.assign(table["subject"])
    table.insert(2, "subject_id", [pseudonyms.id_for(s) for s in table["subject"]])
    issues.sort(key=lambda i: (i.row is not None, i.row or 0))
    return CodingFile(
        path,
        table,
        issues,
        len(frame),
        has_kind_column,
        pseudonyms,
        row_subjects,
        time_resolution_s=resolution,
    )


def overlap_issues(table: pd.DataFrame) -> list[AnnotationIssue]:
    """A warning on each expression whose onset-offset interval overlaps an earlier one of
    the same participant and clip (same Filename, else same marker)."""
    if not len(table):
        return []
    clip = table["file"].where(table["file"].astype(bool), table["marker"].astype(str))
    keys = table["subject"].map(subject_key) + "\x00" + clip.astype(str)
    issues = []
    for _, group in table.assign(_key=keys).groupby("_key", sort=False):
        group = group.sort_values(["onset_s", "row"], kind="stable")
        latest_end, latest_row = -math.inf, None
        for r in group.itertuples():
            if latest_row is not None and r.onset_s < latest_end:
                issues.append(
                    AnnotationIssue(
                        int(r.row),
                        "OnsetTime",
                        "warning",
                        "overlap",
                        f"{r.onset_s:.3f}-{r.offset_s:.3f} s overlaps sheet row "
                        f"{sheet_row(latest_row)} (until {latest_end:.3f} s) in the same clip",
                    )
                )
            if r.offset_s > latest_end:
                latest_end, latest_row = float(r.offset_s), int(r.row)
    return issues


# ---------------------------------------------------------------- writing


def _replace_subject(file_name: str, subject_id: str) -> str:
    try:
        clip = parse_clip_filename(file_name)
    except CellError:
        return ""
    return (
        f"{clip.emotion_word}_{clip.clip_index}_{clip.marker}_{subject_id}_"
        f"{clip.session_date:%Y%m%d}.avi"
    )


def _plain(value: object) -> object:
    """Python scalars for openpyxl: NA -> None, numpy numbers -> int/float."""
    if is_blank(value) or value is pd.NA:
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


_MODIFIED = re.compile(rb"<dcterms:modified([^>]*)>[^<]*</dcterms:modified>")


def normalise_xlsx(path: Path) -> None:
    """Make an openpyxl workbook byte-reproducible: fixed zip member times, and the
    ``dcterms:modified`` stamp (openpyxl writes the save time) pinned to 2024-01-01."""
    with zipfile.ZipFile(path) as source:
        members = [(info, source.read(info.filename)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info, data in members:
            if info.filename == "docProps/core.xml":
                data = _MODIFIED.sub(
                    rb"<dcterms:modified\1>2024-01-01T00:00:00Z"
                    rb"</dcterms:modified>",
                    data,
                )
            fixed = zipfile.ZipInfo(info.filename, date_time=_FIXED_ZIP_TIME)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o600 << 16
            target.writestr(fixed, data)


def write_coding_sheet(rows: pd.DataFrame, path: str | Path) -> Path:
    """Write raw coding rows (columns from `CODING_COLUMNS`, in that order) as .xlsx or .csv.

    The write is atomic (temporary name, then rename) and deterministic: the same rows
    give byte-identical files. Values are written as given (text stays text).
    """
    path = Path(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise AnnotationError(path, f"rows lack the column(s) {missing}", "see CODING_COLUMNS")
    columns = [c for c in CODING_COLUMNS if c in rows.columns]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows[columns].to_csv(tmp, index=False, encoding="utf-8-sig", lineterminator="\n")
    elif suffix in {".xlsx", ".xlsm"}:
        from openpyxl import Workbook

        book = Workbook()
        sheet = book.active
        sheet.title = "Sheet1"
        sheet.append(columns)
        for values in rows[columns].itertuples(index=False, name=None):
            sheet.append([_plain(v) for v in values])
        fixed = dt.datetime(2024, 1, 1)
        book.properties.created = book.properties.modified = fixed
        book.properties.creator = "mmhe"
        book.save(tmp)
        normalise_xlsx(tmp)
    else:
        raise AnnotationError(path, f"unsupported extension {suffix!r}", "use .xlsx or .csv")
    os.replace(tmp, path)
    return path


def to_coding_rows(table: pd.DataFrame, *, names: bool = True) -> pd.DataFrame:
    """Turn a parsed table back into raw coding rows (`CODING_COLUMNS`).

    names=False writes pseudonyms instead of participant names (Subject and Filename).
    The Macro/Micro column is written where the kind came from that column.
    """

    def frame_text(row: pd.Series, event: str) -> str:
        text = row.get(f"{event}_frame_text")
        return "" if is_blank(text) else str(text)

    out = pd.DataFrame(
        {
            "Subject": table["subject"] if names else table["subject_id"],
            "Filename": table["file"]
            if names
            else [
                _replace_subject(f, s)
                for f, s in zip(table["file"], table["subject_id"], strict=True)
            ],
            "Marker": table["marker"],
            "OnsetTime": table["onset_s"],
            "ApexTime": table["apex_s"],
            "OffsetTime": table["offset_s"],
            "OnsetFrame": [frame_text(r, "onset") for _, r in table.iterrows()],
            "ApexFrame": [frame_text(r, "apex") for _, r in table.iterrows()],
            "OffsetFrame": [frame_text(r, "offset") for _, r in table.iterrows()],
            "Action Units": [format_aus(a) for a in table["aus"]],
            "Estimated Emotion": [
                raw or emo for raw, emo in zip(table["emotion_raw"], table["emotion"], strict=True)
            ],
            "Macro/Micro": [
                ("Micro" if k == "ME" else "Macro") if s == "column" else ""
                for k, s in zip(table["kind"], table["kind_source"], strict=True)
            ],
            "Date": ["" if pd.isna(t) else format_coding_date(t) for t in table["coded_at"]],
            "dif": table["dif"],
        }
    )
    if not (table["kind_source"] == "column").any():
        out = out.drop(columns=["Macro/Micro"])
    return out


def write_coding_file(
    coding: CodingFile | pd.DataFrame, path: str | Path, *, names: bool = True
) -> Path:
    """Write a parsed coding file (or its table) back in the real layout (round trip)."""
    table = coding.table if isinstance(coding, CodingFile) else coding
    return write_coding_sheet(to_coding_rows(table, names=names), path)
