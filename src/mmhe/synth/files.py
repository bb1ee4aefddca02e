"""Atomic, deterministic file writing for the synthetic tree.

Every file is written under a temporary name in its final folder and renamed with
`os.replace`, so an interrupted run never leaves a half-written file under a final name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

TMP_PREFIX = ".synth-tmp-"
MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: posix, Created by: mmhe.synth"
"""Fixed MATLAB v5 header text (scipy writes the creation time there otherwise)."""


def temporary_path(path: Path) -> Path:
    """A temporary name next to `path`, keeping its extension (writers infer formats)."""
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{path.name}")


def write_atomic(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call `write(temporary_path)` then rename the result to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text(path: Path, text: str) -> Path:
    """Write UTF-8 text atomically (LF line ends); a file already holding exactly these
    bytes is left alone (a resumed run keeps its modification time)."""
    data = text.encode("utf-8")
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return path
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_json(path: Path, data: Any) -> Path:
    """Write JSON atomically: sorted keys, 1-space indent, deterministic."""
    return write_text(path, json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def fix_mat_header(path: Path) -> None:
    """Replace the 116-byte text header of a MATLAB v5 file by `MAT_HEADER` (in place)."""
    with open(path, "r+b") as handle:
        if not handle.read(10).startswith(b"MATLAB 5.0"):
            raise ValueError(f"{path} is not a MATLAB 5.0 file")
        handle.seek(0)
        handle.write(MAT_HEADER.ljust(116, b" "))


def remove_temporaries(folder: Path) -> None:
    """Delete files an interrupted run left under temporary names below `folder`.

    Matches this module's ``.synth-tmp-*`` and `mmhe.synth.video`'s ``.*.part`` names only.
    """
    if not folder.is_dir():
        return
    leftovers = [*folder.rglob(f"{TMP_PREFIX}*"), *folder.rglob(".*.part")]
    for path in sorted(leftovers, reverse=True):
        if path.is_dir():
            for child in sorted(path.rglob("*"), reverse=True):
                child.rmdir() if child.is_dir() else child.unlink()
            path.rmdir()
        elif path.exists():
            path.unlink()
