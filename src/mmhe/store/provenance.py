"""Provenance keys of stored participants: what a participant folder was made from.

A participant's key is a hash of everything its folder depends on: the content of its
raw device files (every file of a recording, sidecars included: ``.set`` + ``.fdt``,
``.cdt`` + ``.cdt.dpa`` / ``.cdt.ceo``), the listing of its camera folder (names, sizes
and modification times: hashing ~400,000 frames per participant would cost more than
reading them), its rows of the coding file, the ingest parameters and the version of
the ingest code. A re-run recomputes a participant exactly when its key changed.

Content hashes are SHA-256 of every byte (`file_digest`). To keep re-runs cheap, a file
whose size, modification time and first and last 64 KiB equal those recorded last time
reuses the recorded hash (the idea of git's index); any other file is hashed again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from mmhe.store.participant import file_digest

INGEST_CODE = 1
"""Bumped when ingest writes different content for the same inputs and parameters."""
EDGE_BYTES = 64 << 10


def _edges_digest(path: Path) -> str:
    """BLAKE2b of the first and last 64 KiB (the cheap part of a fingerprint)."""
    digest = hashlib.blake2b(digest_size=8)
    with path.open("rb") as handle:
        digest.update(handle.read(EDGE_BYTES))
        size = path.stat().st_size
        if size > EDGE_BYTES:
            handle.seek(max(EDGE_BYTES, size - EDGE_BYTES))
            digest.update(handle.read(EDGE_BYTES))
    return digest.hexdigest()


def recording_files(path: Path) -> list[Path]:
    """A device file and its sidecars: files beside it named ``<name>.*`` or ``<stem>.*``."""
    path = Path(path)
    siblings = [
        p
        for p in path.parent.iterdir()
        if p.is_file() and p != path and (p.name.startswith(path.name + ".") or p.stem == path.stem)
    ]
    return [path, *sorted(siblings)]


def file_fingerprint(path: Path, label: str, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """{"path", "bytes", "mtime_ns", "edges", "sha256"}; the hash is reused from
    ``previous`` (last run's entry for this path) when size, mtime and edges agree."""
    stat = path.stat()
    entry = {
        "path": label,
        "bytes": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "edges": _edges_digest(path),
    }
    same = (
        previous is not None
        and "sha256" in previous  # older entries hold a BLAKE2b: hash again
        and all(previous.get(k) == entry[k] for k in ("bytes", "mtime_ns", "edges"))
    )
    entry["sha256"] = previous["sha256"] if same else file_digest(path)  # type: ignore[index]
    return entry


def folder_fingerprint(folder: Path, label: str) -> dict[str, Any]:
    """{"path", "bytes", "listing_blake2b"}: hash of the sorted (name, size, mtime) listing."""
    digest = hashlib.blake2b(digest_size=16)
    total = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            total += stat.st_size
            digest.update(
                f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode()
            )
    return {"path": label, "bytes": total, "listing_blake2b": digest.hexdigest()}


def input_fingerprints(
    device_files: list[Path],
    camera: Path | None,
    label: Callable[[Path], str],
    previous: list[dict[str, Any]] | None,
) -> list[dict[str, Any]]:
    """Fingerprints of a participant's raw inputs (device files with sidecars, camera)."""
    before = {entry["path"]: entry for entry in previous or []}
    inputs = []
    for device_file in device_files:
        for path in recording_files(device_file):
            name = label(path)
            inputs.append(file_fingerprint(path, name, before.get(name)))
    if camera is not None:
        inputs.append(folder_fingerprint(camera, label(camera)))
    return inputs


def table_digest(table: pd.DataFrame) -> str:
    """BLAKE2b of a table's columns, types and values (JSON, so any cell type hashes)."""
    payload = table.to_json(orient="split", index=False, date_format="iso", default_handler=str)
    text = json.dumps([list(map(str, table.columns)), list(map(str, table.dtypes))]) + payload
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def participant_key(
    subject_id: str,
    inputs: list[dict[str, Any]],
    coding_rows: pd.DataFrame,
    parameters: Mapping[str, Any],
    store_format: int,
) -> str:
    """The provenance key of one stored participant (20 hex digits)."""
    payload = {
        "subject_id": subject_id,
        "ingest_code": INGEST_CODE,
        "store_format": store_format,
        "parameters": dict(parameters),
        "inputs": [
            [e["path"], e.get("sha256") or e.get("listing_blake2b")]
            for e in sorted(inputs, key=lambda e: e["path"])
        ],
        "coding_rows": table_digest(coding_rows),
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


def content_key(participant_keys: Mapping[str, str]) -> str:
    """Key of a whole store version: its participants and their keys (20 hex digits)."""
    text = json.dumps(sorted(participant_keys.items()))
    return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()
