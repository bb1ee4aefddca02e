"""Frame names of the XIMEA camera and of the coding file.

Three shapes occur in MMHE:

- file names ``YYYY-MM-DD-HH-MM-SS-mmm-CCC-MARKER.tif`` (date, time of day to the
  millisecond, frame counter wrapping at 1000, DB25 trigger value);
- coding-file frame names ``HH-MM-SS-mmm-CCC`` (time of day and counter);
- coding-file frame names ``HH-MM-SS-mmm`` (about 30 % of rows: no counter).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from mmhe.errors import MMHEError

COUNTER_MODULUS = 1000
"""The camera's frame counter wraps at 1000."""

_EXTENSION = re.compile(r"\.(tiff?|png|jpe?g|bmp)$", re.IGNORECASE)
_FIELD = re.compile(r"^\d+$")


class FrameNameError(MMHEError, ValueError):
    """A frame name that does not parse; the message quotes it and says what was expected."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(
            f"frame name {name!r}: {problem} (expected HH-MM-SS-mmm, HH-MM-SS-mmm-CCC or "
            "YYYY-MM-DD-HH-MM-SS-mmm-CCC-MARKER.tif)"
        )


@dataclass(frozen=True)
class FrameName:
    """A parsed frame name. `date`, `counter` and `marker` are None when the name lacks them."""

    hour: int
    minute: int
    second: int
    millisecond: int
    counter: int | None = None
    marker: int | None = None
    date: dt.date | None = None

    @property
    def seconds_of_day(self) -> float:
        """Time of day in seconds since midnight (millisecond resolution)."""
        return self.hour * 3600 + self.minute * 60 + self.second + self.millisecond / 1000.0

    @property
    def timestamp(self) -> dt.datetime | None:
        """Full date and time when the name carries a date, else None."""
        if self.date is None:
            return None
        return dt.datetime.combine(
            self.date,
            dt.time(self.hour, self.minute, self.second, self.millisecond * 1000),
        )

    def coding_name(self) -> str:
        """The coding-file form: ``HH-MM-SS-mmm-CCC`` (or four parts without a counter)."""
        text = f"{self.hour:02d}-{self.minute:02d}-{self.second:02d}-{self.millisecond:03d}"
        return text if self.counter is None else f"{text}-{self.counter:03d}"

    def file_name(self) -> str:
        """The camera's file name ``YYYY-MM-DD-HH-MM-SS-mmm-CCC-MARKER.tif``."""
        if self.date is None or self.counter is None or self.marker is None:
            raise FrameNameError(self.coding_name(), "a file name needs date, counter and marker")
        return f"{self.date:%Y-%m-%d}-{self.coding_name()}-{self.marker}.tif"


def parse_frame_name(name: str) -> FrameName:
    """Parse a camera file name or a coding-file frame name.

    Raises `FrameNameError` (an `MMHEError` and `ValueError`) naming the text and the problem.

    >>> parse_frame_name("2023-07-21-16-45-38-257-410-112.tif").marker
    112
    >>> parse_frame_name("15-10-22-548").counter is None
    True
    """
    if not isinstance(name, str):
        raise FrameNameError(str(name), f"not text but {type(name).__name__}")
    text = _EXTENSION.sub("", name.strip().rsplit("/", 1)[-1]).strip()
    parts = [p.strip() for p in text.split("-")]
    if not all(_FIELD.match(p) for p in parts):
        raise FrameNameError(name, "every field must be digits separated by '-'")
    values = [int(p) for p in parts]
    date = counter = marker = None
    if len(values) == 9:
        try:
            date = dt.date(values[0], values[1], values[2])
        except ValueError as exc:
            raise FrameNameError(name, f"invalid date ({exc})") from None
        hour, minute, second, ms, counter, marker = values[3:]
    elif len(values) == 5:
        hour, minute, second, ms, counter = values
    elif len(values) == 4:
        hour, minute, second, ms = values
    else:
        raise FrameNameError(name, f"{len(values)} fields")
    if hour > 23 or minute > 59 or second > 60 or ms > 999:
        raise FrameNameError(name, "time of day out of range")
    if len(parts) >= 4 and len(parts[3 if len(values) < 9 else 6]) != 3:
        raise FrameNameError(name, "milliseconds must have three digits")
    if counter is not None and counter >= COUNTER_MODULUS:
        raise FrameNameError(name, f"frame counter {counter} is not below {COUNTER_MODULUS}")
    if marker is not None and marker > 255:
        raise FrameNameError(name, f"trigger value {marker} does not fit 8 bits")
    return FrameName(hour, minute, second, ms, counter, marker, date)


def counter_difference(start: int, end: int) -> int:
    """Frames from `start` to `end` on a counter that wraps at 1000 (0..999)."""
    return (end - start) % COUNTER_MODULUS
