"""`export_megc`: the sample sheet and frame folders micro-expression tools read.

The sheet follows CASME II / MEGC 2019 composite conventions (one row per expression)::

    Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Action Units,
    Estimated Emotion, Compound, Kind, Marker, Duration_ms

``Filename`` is the expression id (its folder), frame numbers are camera frame indices
(the store's ``frame_onset`` / ``frame_apex`` / ``frame_offset``), ``Action Units`` is
CASME style (``4+7``), ``Compound`` the three-class label (negative / positive /
surprise). Beside the sheet, ``<sheet stem>_frames/<Subject>/<Filename>/img<frame>.png``
holds the onset and apex frames (and the offset frame, ``--frames all`` every stored
frame), the layout of CASME II's ``sub01/EP02_01f/img46.jpg`` that STSTNet-style code
reads with ``f"{root}/{subject}/{filename}/img{onset}.png"``. PNG is lossless, so
optical flow sees the camera's pixels. Expressions without stored frames are listed in
``<sheet stem>_skipped.csv`` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from mmhe.errors import ConfigError, InputFileError

SHEET_COLUMNS = (
    "Subject",
    "Filename",
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    "Action Units",
    "Estimated Emotion",
    "Compound",
    "Kind",
    "Marker",
    "Duration_ms",
)


@dataclass
class MEGCExport:
    """What `export_megc` wrote: the sheet, the frame folder, counts, skipped rows."""

    sheet: Path
    frames_dir: Path
    rows: int = 0
    images: int = 0
    skipped: pd.DataFrame = field(default_factory=pd.DataFrame)


def _write_image(path: Path, frame: np.ndarray) -> None:
    import cv2

    image = frame[..., 0] if frame.shape[-1] == 1 else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image):
        raise InputFileError(path, "could not write the image", "check the disk and folder")


def export_megc(
    store_path: str | Path,
    sheet: str | Path,
    *,
    kind: str | None = None,
    frames: Literal["key", "all"] = "key",
    progress=None,
) -> MEGCExport:
    """Write the MEGC-style sample sheet `sheet` (.csv) and its frame folders.

    kind : "ME" or "MaE" to export one kind (default both).
    frames : "key" writes the onset, apex and offset frames; "all" every stored frame
        (the coded expression plus the store's context frames).
    """
    from mmhe.store import MMHEStore
    from mmhe.store.mne_view import aus_text

    if frames not in ("key", "all"):
        raise ConfigError(f"frames must be 'key' or 'all', got {frames!r}")
    sheet = Path(sheet)
    if sheet.suffix.lower() != ".csv":
        raise ConfigError(f"{sheet}: the sample sheet must be a .csv file")
    store = MMHEStore(store_path)
    frames_dir = sheet.with_name(f"{sheet.stem}_frames")
    table = store.expressions(kind=kind)
    rows, skipped, images = [], [], 0
    for e in table.itertuples(index=False):
        reason = None
        if not pd.isna(e.locate_problem):
            reason = f"not located: {e.locate_problem}"
        elif not e.stored_frames:
            reason = "no stored face frames"
        if reason is not None:
            skipped.append({"expression_id": e.expression_id, "reason": reason})
            continue
        first = int(e.frames_first)
        key = [int(e.frame_onset), int(e.frame_apex), int(e.frame_offset)]
        stored = store.frames(e.expression_id)
        wanted = sorted(set(key)) if frames == "key" else range(first, first + len(stored))
        folder = frames_dir / e.subject_id / e.expression_id
        folder.mkdir(parents=True, exist_ok=True)
        for number in wanted:
            _write_image(folder / f"img{number}.png", stored[number - first])
            images += 1
        rows.append(
            {
                "Subject": e.subject_id,
                "Filename": e.expression_id,
                "OnsetFrame": key[0],
                "ApexFrame": key[1],
                "OffsetFrame": key[2],
                "Action Units": aus_text(e.aus),
                "Estimated Emotion": e.emotion,
                "Compound": e.compound,
                "Kind": e.kind,
                "Marker": int(e.marker),
                "Duration_ms": round(float(e.duration_s) * 1000.0, 3),
            }
        )
        if progress is not None:
            progress(e.expression_id)
    sheet.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(SHEET_COLUMNS)).to_csv(sheet, index=False)
    skipped_table = pd.DataFrame(skipped, columns=["expression_id", "reason"])
    skipped_path = sheet.with_name(f"{sheet.stem}_skipped.csv")
    if len(skipped_table):
        skipped_table.to_csv(skipped_path, index=False)
    elif skipped_path.exists():
        skipped_path.unlink()
    return MEGCExport(sheet, frames_dir, len(rows), images, skipped_table)
