"""Stable participant pseudonyms (``sub-001`` ...) kept in a private mapping file.

The mapping is the only place a participant's name and pseudonym meet. `mmhe` writes
pseudonyms into everything it derives; the mapping file stays wherever the user keeps it
(never inside a store).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path

from mmhe.annotations.parsing import subject_key
from mmhe.errors import InputFileError


class PseudonymMap:
    """Name -> pseudonym. New names get the next free number; known names keep theirs.

    Without a file, pseudonyms follow the sorted order of the normalised names, so the same
    dataset always gets the same ids. With a file, ids persist across datasets and runs.
    """

    def __init__(self, mapping: dict[str, str] | None = None, prefix: str = "sub-") -> None:
        self.prefix = prefix
        self._ids: dict[str, str] = dict(mapping or {})

    @classmethod
    def load(cls, path: str | Path) -> PseudonymMap:
        """Read a mapping CSV (columns ``name``, ``subject_id``); a missing file is empty."""
        path = Path(path)
        if not path.exists():
            return cls()
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                rows = list(csv.DictReader(handle))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise InputFileError(path, f"cannot read the pseudonym mapping: {exc}") from exc
        if rows and not {"name", "subject_id"} <= set(rows[0]):
            raise InputFileError(path, "mapping needs the columns name, subject_id")
        return cls({subject_key(r["name"]): r["subject_id"] for r in rows})

    def save(self, path: str | Path) -> None:
        """Write the mapping CSV, readable by its owner only (mode 600), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["name", "subject_id"])
            for name, sid in sorted(self._ids.items(), key=lambda kv: kv[1]):
                writer.writerow([name, sid])
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    def assign(self, names: Iterable[object]) -> dict[str, str]:
        """Give every new (normalised) name the next id, in sorted order; return {key: id}."""
        used = {
            int(s[len(self.prefix) :])
            for s in self._ids.values()
            if s.startswith(self.prefix) and s[len(self.prefix) :].isdigit()
        }
        next_number = max(used, default=0) + 1
        for key in sorted({subject_key(n) for n in names} - set(self._ids) - {""}):
            self._ids[key] = f"{self.prefix}{next_number:03d}"
            next_number += 1
        return dict(self._ids)

    def id_for(self, name: object) -> str:
        """Pseudonym of one name (assigned on first sight)."""
        key = subject_key(name)
        if key not in self._ids:
            self.assign([key])
        return self._ids[key]

    def get(self, name: object) -> str | None:
        """Pseudonym of a name already in the map, else None (nothing is assigned)."""
        return self._ids.get(subject_key(name))

    def __len__(self) -> int:
        return len(self._ids)
