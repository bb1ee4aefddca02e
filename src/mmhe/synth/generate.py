"""`generate()`: write a complete synthetic MMHE raw tree.

Layout (read by `mmhe`'s raw readers without configuration)::

    OUT/
      coding_file.xlsx        one row per planted expression (real columns and quirks)
      participants.tsv        subject, sex, age
      ground_truth.json       every planted quantity (see `truth`)
      synth_manifest.json     files and sizes (deterministic: no timing inside)
      .mmhe-synth.json        the run's configuration (for resuming)
      <subject>/EEG/Acquisition 01.set    (.edf / .bdf / .vhdr on request)
      <subject>/BIOPAC/Untitled1 (001).mat
      <subject>/Camera/<marker>/YYYY-MM-DD-HH-MM-SS-mmm-CCC-MARKER.tif
      <subject>/Clips/<Filename stem>-<k>.avi
      <subject>/.done         written last: the participant is complete

The plan (participants, sessions, clocks, expressions) is made up front from the
seed; participants are then written independently (in parallel through Dask when
``workers > 1`` or a scheduler address is given) and skipped when already complete.
"""

from __future__ import annotations

import filecmp
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mmhe.annotations import write_coding_sheet
from mmhe.errors import ConfigError
from mmhe.parallel import run_tasks
from mmhe.synth.coding import coding_table
from mmhe.synth.config import SynthConfig, resolve_config
from mmhe.synth.design import Session, make_participants, plan_session, stimulus_durations
from mmhe.synth.files import write_json, write_text
from mmhe.synth.participant import completed, write_participant
from mmhe.synth.truth import ground_truth, jsonable

RUN_MARKER = ".mmhe-synth.json"
TOP_LEVEL_FILES = (
    "coding_file.xlsx",
    "participants.tsv",
    "ground_truth.json",
    "synth_manifest.json",
    RUN_MARKER,
)
Progress = Callable[[int, int, str], None]
"""progress(participants_done, participants_total, subject_just_finished)."""


@dataclass
class SynthManifest:
    """What `generate` wrote: `files` maps paths relative to `out_dir` to sizes in bytes."""

    out_dir: Path
    preset: str
    seed: int
    n_participants: int
    n_expressions: int
    files: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    resumed: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())

    def to_json(self) -> dict[str, Any]:
        """The manifest without run-dependent fields (time, resumed), for the tree."""
        data = asdict(self)
        data["out_dir"] = "."
        for key in ("seconds", "resumed"):
            data.pop(key)
        return data


LONG_VIDEO_FIELDS = frozenset(
    {"long_videos", "blinks_per_min", "head_moves_per_min", "lighting_drift"}
)
"""Fields that change nothing unless ``long_videos``: left out of the identity then, so
trees written before they existed keep theirs (and resume)."""


def _identity(config: SynthConfig, seed: int) -> dict[str, Any]:
    exclude = {"workers"} | (set() if config.long_videos else set(LONG_VIDEO_FIELDS))
    return {"seed": seed, "config": config.model_dump(mode="json", exclude=exclude)}


def _key(identity: dict[str, Any]) -> str:
    text = json.dumps(identity, sort_keys=True).encode()
    return hashlib.sha256(text).hexdigest()[:16]


def _prepare(out_dir: Path, identity: dict[str, Any], overwrite: bool) -> None:
    """Check the output folder before anything is written (see `generate`)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} exists and is not a folder; give a folder path")
    if not out_dir.exists() or not any(out_dir.iterdir()):
        return
    marker = out_dir / RUN_MARKER
    previous = None
    if marker.is_file():
        try:
            previous = json.loads(marker.read_text(encoding="utf-8"))
        except ValueError:
            previous = None
    if previous is not None and previous.get("identity") == identity and not overwrite:
        return  # same run: resume
    if not overwrite:
        what = (
            "a synthetic tree made with other parameters" if previous is not None else "not empty"
        )
        raise ConfigError(
            f"output folder {out_dir} is {what}; pass overwrite=True (--overwrite) to replace "
            "it, or choose an empty folder"
        )
    if previous is not None:  # remove only what the previous run wrote
        for folder in previous.get("folders", []):
            shutil.rmtree(out_dir / folder, ignore_errors=True)
        for name in TOP_LEVEL_FILES:
            (out_dir / name).unlink(missing_ok=True)


def plan(config: SynthConfig, seed: int) -> list[Session]:
    """The sessions of every participant (cheap; no signal is made)."""
    durations = stimulus_durations(config, seed)
    return [plan_session(config, seed, p, durations) for p in make_participants(config, seed)]


def _participant_task(
    session: Session, config: SynthConfig, seed: int, out_dir: Path, key: str
) -> tuple[int, str, dict[str, Any]]:
    record = write_participant(session, config, seed, out_dir, key)
    return session.participant.index, session.participant.subject, record


def _run_tasks(
    sessions: list[Session],
    config: SynthConfig,
    seed: int,
    out_dir: Path,
    key: str,
    scheduler: str | None,
    progress: Progress | None,
) -> dict[int, dict[str, Any]]:
    """Write every participant through `mmhe.parallel.run_tasks`; records by index.

    Complete participants (`completed`) are read here, so a resumed run with nothing left
    to write starts no cluster."""
    if scheduler is None and config.workers == 1:
        scheduler = "sync"
    records: dict[int, dict[str, Any]] = {}
    todo = []
    for session in sessions:
        record = completed(out_dir / session.participant.folder, key)
        if record is None:
            todo.append(session)
        else:
            records[session.participant.index] = record
    tasks = [(_participant_task, s, config, seed, out_dir, key) for s in todo]
    done: list[str] = [s.participant.subject for s in sessions if s not in todo]

    def finished(result: tuple[int, str, dict[str, Any]]) -> None:
        done.append(result[1])
        if progress is not None:
            progress(len(done), len(sessions), result[1])

    results = run_tasks(tasks, scheduler=scheduler, n_workers=config.workers, progress=finished)
    return records | {index: record for index, _, record in results}


def _write_unless_equal(path: Path, write: Callable[[Path], Any]) -> None:
    """`write(temporary path)`, then replace `path` only when the bytes differ (a resumed
    run leaves identical files, and their modification times, alone)."""
    tmp = path.with_name(f".new-{path.name}")
    write(tmp)
    if path.is_file() and filecmp.cmp(tmp, path, shallow=False):
        tmp.unlink()
    else:
        os.replace(tmp, path)


def generate(
    out_dir: str | Path,
    *,
    preset: str = "demo",
    seed: int = 0,
    overwrite: bool = False,
    scheduler: str | None = None,
    progress: Progress | None = None,
    **overrides: Any,
) -> SynthManifest:
    """Write a synthetic MMHE raw tree to `out_dir` and return its manifest.

    preset : ``tiny``, ``demo`` or ``full-shape`` (`config.PRESETS`); `overrides` set
        any `SynthConfig` field (subjects, clips, strength, eeg_strength, physio_strength,
        face_strength, width, height, eeg_format, clean, workers, ...).
    seed : everything is determined by (preset, overrides, seed): byte-identical files.
    overwrite : start afresh in a non-empty `out_dir` (a previous synthetic tree there is
        removed; other files are left alone). Without it, a non-empty folder is refused
        unless it holds an interrupted run with the same parameters, which is resumed
        (complete participants are skipped).
    scheduler : address of a running Dask scheduler; default a local cluster of
        `workers` processes when workers > 1 (Dask spawns them: a script calling
        `generate` with workers > 1 needs an ``if __name__ == "__main__":`` guard),
        else in-process.
    Raises `ConfigError` before writing anything when a parameter is impossible.
    """
    started = time.perf_counter()
    config = resolve_config(preset, **overrides)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed must be a whole number >= 0, got {seed!r}")
    out_dir = Path(out_dir)
    identity = _identity(config, seed)
    _prepare(out_dir, identity, overwrite)
    sessions = plan(config, seed)
    key = _key(identity)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        out_dir / RUN_MARKER,
        {"identity": identity, "folders": [s.participant.folder for s in sessions]},
    )
    before = {
        s.participant.index
        for s in sessions
        if completed(out_dir / s.participant.folder, key) is not None
    }
    records = _run_tasks(sessions, config, seed, out_dir, key, scheduler, progress)

    files: dict[str, int] = {}
    for session in sessions:
        files.update(records[session.participant.index]["files"])
    coding = coding_table(sessions, seed, config.clean)
    _write_unless_equal(out_dir / "coding_file.xlsx", lambda path: write_coding_sheet(coding, path))
    people = ["subject\tsex\tage"] + [
        f"{s.participant.subject}\t{s.participant.sex}\t{s.participant.age}" for s in sessions
    ]
    write_text(out_dir / "participants.tsv", "\n".join(people) + "\n")
    extras = {i: r["planted"] for i, r in records.items()}
    write_json(
        out_dir / "ground_truth.json", jsonable(ground_truth(config, seed, sessions, extras))
    )
    for name in ("coding_file.xlsx", "participants.tsv", "ground_truth.json"):
        files[name] = (out_dir / name).stat().st_size
    manifest = SynthManifest(
        out_dir=out_dir,
        preset=config.preset,
        seed=seed,
        n_participants=len(sessions),
        n_expressions=len(coding),
        files=dict(sorted(files.items())),
        resumed=sorted(s.participant.subject for s in sessions if s.participant.index in before),
    )
    write_json(out_dir / "synth_manifest.json", manifest.to_json())
    manifest.seconds = time.perf_counter() - started
    return manifest
