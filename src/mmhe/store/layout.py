"""Discovery: find participants, their device files and the coding file in a raw tree.

The patterns live in a small YAML layout file (`mmhe/data/layout.yaml` by default) so
trees laid out differently need no code. Missing pieces are findings, never crashes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from mmhe.annotations.parsing import subject_key
from mmhe.errors import ConfigError, InputFileError


class Layout(BaseModel):
    """Glob patterns, tried in order, for each piece of a raw tree."""

    coding_file: list[str]
    participants_table: list[str]
    participant_dirs: list[str]
    eeg: list[str]
    biopac: list[str]
    camera: list[str]
    clips: list[str]

    @classmethod
    def load(cls, path: str | Path | None = None) -> Layout:
        """Read a layout YAML; None loads the default shipped with mmhe."""
        source = (
            Path(str(resources.files("mmhe") / "data" / "layout.yaml"))
            if path is None
            else Path(path)
        )
        if not source.is_file():
            raise InputFileError(source, "layout file not found")
        try:
            return cls.model_validate(yaml.safe_load(source.read_text()))
        except (yaml.YAMLError, ValidationError) as exc:
            raise ConfigError(f"{source}: not a valid layout file: {exc}") from exc


@dataclass
class ParticipantFiles:
    """The raw files of one participant; None where a piece is missing (see `problems`)."""

    key: str
    folder: Path
    eeg: Path | None = None
    biopac: Path | None = None
    camera: Path | None = None
    clips: Path | None = None
    problems: list[str] = field(default_factory=list)
    candidates: dict[str, list[Path]] = field(default_factory=dict)
    """Every file matching the `eeg` / `biopac` patterns, in the order they are tried
    (the `prefer` order, then the layout's); more than one is a conflict to report."""
    preferred: bool = False
    """True when a `prefer` rule put the chosen file first."""

    def inputs(self) -> list[Path]:
        return [p for p in (self.eeg, self.biopac) if p is not None]


@dataclass
class Discovery:
    """What a raw tree holds."""

    root: Path
    coding_file: Path | None
    participants_table: Path | None
    participants: dict[str, ParticipantFiles]
    problems: list[str] = field(default_factory=list)


def _first(base: Path, patterns: list[str], *, dirs: bool = False) -> Path | None:
    for pattern in patterns:
        hits = sorted(p for p in base.glob(pattern) if (p.is_dir() if dirs else p.is_file()))
        if hits:
            return hits[0]
    return None


def _all(base: Path, patterns: list[str], prefer: tuple[str, ...]) -> list[Path]:
    """Every file matching `patterns` (pattern order, then name), files whose extension is
    in `prefer` first (in `prefer` order)."""
    hits: list[Path] = []
    for pattern in patterns:
        hits += [p for p in sorted(base.glob(pattern)) if p.is_file() and p not in hits]

    def rank(path: Path) -> int:
        suffix = path.suffix.lower()
        return prefer.index(suffix) if suffix in prefer else len(prefer)

    return sorted(hits, key=rank)  # stable: the layout order within one rank


def normalise_prefer(prefer: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"set,cdt"`` or ``[".set", "cdt"]`` -> ``(".set", ".cdt")``."""
    if prefer is None:
        return ()
    items = prefer.split(",") if isinstance(prefer, str) else list(prefer)
    return tuple(
        ("." + item.strip().lstrip(".")).lower() for item in items if item.strip().lstrip(".")
    )


def discover(
    root: str | Path,
    layout: Layout | str | Path | None = None,
    *,
    prefer: str | list[str] | tuple[str, ...] | None = None,
) -> Discovery:
    """Find the coding file and every participant folder with its device files.

    A participant folder is any folder matching `participant_dirs` that holds at least one
    device file or camera folder; its key is the normalised folder name (`subject_key`,
    so ``liyan20230802`` and ``LiYan`` are both ``liyan``).
    prefer : file extensions tried first when a folder holds several EEG or BIOPAC files
        (e.g. ``".set"``); every candidate is kept in `ParticipantFiles.candidates`, so
        the conflict is still reported.
    """
    order = normalise_prefer(prefer)
    root = Path(root)
    if not root.is_dir():
        raise InputFileError(root, "raw folder not found", "give the root of a raw MMHE tree")
    layout = layout if isinstance(layout, Layout) else Layout.load(layout)
    found = Discovery(
        root=root,
        coding_file=_first(root, layout.coding_file),
        participants_table=_first(root, layout.participants_table),
        participants={},
    )
    if found.coding_file is None:
        found.problems.append(f"no coding file matching {layout.coding_file}")
    folders = sorted(
        {
            p
            for pattern in layout.participant_dirs
            for p in root.glob(pattern)
            if p.is_dir() and not p.name.startswith(".")
        }
    )
    for folder in folders:
        eeg = _all(folder, layout.eeg, order)
        biopac = _all(folder, layout.biopac, order)
        files = ParticipantFiles(
            key=subject_key(folder.name),
            folder=folder,
            eeg=eeg[0] if eeg else None,
            biopac=biopac[0] if biopac else None,
            camera=_first(folder, layout.camera, dirs=True),
            clips=_first(folder, layout.clips, dirs=True),
            candidates={"eeg": eeg, "biopac": biopac},
            preferred=any(p.suffix.lower() in order for p in eeg + biopac),
        )
        if files.eeg is None and files.biopac is None and files.camera is None:
            continue  # not a participant folder
        for piece in ("eeg", "biopac", "camera"):
            if getattr(files, piece) is None:
                files.problems.append(f"no {piece} data found")
        if files.key in found.participants:
            found.problems.append(
                f"two folders for one participant: {found.participants[files.key].folder.name} "
                f"and {folder.name} (kept the first); merge or rename one"
            )
            continue
        found.participants[files.key] = files
    if not found.participants:
        found.problems.append("no participant folder with device files")
    return found
