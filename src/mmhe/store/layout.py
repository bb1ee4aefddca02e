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


def discover(root: str | Path, layout: Layout | str | Path | None = None) -> Discovery:
    """Find the coding file and every participant folder with its device files.

    A participant folder is any folder matching `participant_dirs` that holds at least one
    device file or camera folder; its key is the normalised folder name (`subject_key`,
    so ``liyan20230802`` and ``LiYan`` are both ``liyan``).
    """
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
        files = ParticipantFiles(
            key=subject_key(folder.name),
            folder=folder,
            eeg=_first(folder, layout.eeg),
            biopac=_first(folder, layout.biopac),
            camera=_first(folder, layout.camera, dirs=True),
            clips=_first(folder, layout.clips, dirs=True),
        )
        if files.eeg is None and files.biopac is None and files.camera is None:
            continue  # not a participant folder
        for piece in ("eeg", "biopac", "camera"):
            if getattr(files, piece) is None:
                files.problems.append(f"no {piece} data found")
        if files.key in found.participants:
            found.problems.append(f"two folders for one participant: {folder.name}")
            continue
        found.participants[files.key] = files
    if not found.participants:
        found.problems.append("no participant folder with device files")
    return found
