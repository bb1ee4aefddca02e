"""Write every raw file of one participant (the unit of parallel and resumable work).

A participant folder is complete when its ``.done`` marker exists and every file it
lists is there with the listed size; `write_participant` skips such a folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mmhe.synth.biopac import BIOPAC_FILE_NAME, simulate_biopac, write_biopac
from mmhe.synth.camera import write_camera
from mmhe.synth.config import SynthConfig
from mmhe.synth.design import Session, participant_rng
from mmhe.synth.eeg import class_gains, simulate_eeg, write_eeg
from mmhe.synth.files import remove_temporaries, write_json
from mmhe.synth.long_video import write_long_camera
from mmhe.synth.physio import GRID_HZ, Body, simulate_body

DONE_MARKER = ".done"


def completed(folder: Path, key: str) -> dict[str, Any] | None:
    """The ``.done`` record of a complete participant folder made with `key`, else None."""
    marker = folder / DONE_MARKER
    if not marker.is_file():
        return None
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("key") != key:
        return None
    for name, size in record.get("files", {}).items():
        path = folder.parent / name
        if not path.is_file() or path.stat().st_size != size:
            return None
    return record


def simulate_signals(
    session: Session, config: SynthConfig, seed: int
) -> tuple[Body, Any, np.ndarray, dict[str, Any]]:
    """(body, EEG Raw, BIOPAC matrix, planted values) of one session, in memory."""
    index = session.participant.index
    strengths = config.strengths
    t0 = float(np.floor(min(0.0, session.biopac_span_s[0]))) - 1.0
    t1 = max(session.eeg_duration_s, session.biopac_span_s[1]) + 1.0
    body = simulate_body(
        session.blocks,
        t0,
        round((t1 - t0) * GRID_HZ),
        strengths["physio"],
        participant_rng(seed, index, "physio"),
    )
    eeg_rng = participant_rng(seed, index, "eeg")
    gains = class_gains(session.blocks, strengths["eeg"], eeg_rng)
    raw = simulate_eeg(session, body, gains, eeg_rng)
    biopac = simulate_biopac(session, body, participant_rng(seed, index, "biopac"))
    planted = {
        "eeg_gains": {
            str(b.marker): dict(
                zip(
                    ("alpha_left", "alpha_right", "beta_gamma"),
                    (round(float(g), 5) for g in gains[i]),
                    strict=True,
                )
            )
            for i, b in enumerate(session.blocks)
        },
        "physio_targets": {str(m): v for m, v in body.trial_targets.items()},
    }
    return body, raw, biopac, planted


def write_participant(
    session: Session, config: SynthConfig, seed: int, root: Path, key: str
) -> dict[str, Any]:
    """Write EEG, BIOPAC, camera frames and clips of `session` under `root`; return its record.

    The record (also saved as ``<folder>/.done``) holds `files` {path relative to
    `root`: size in bytes} and `planted` (values drawn while making the signals).
    """
    folder = root / session.participant.folder
    done = completed(folder, key)
    if done is not None:
        return done
    remove_temporaries(folder)
    _, raw, biopac, planted = simulate_signals(session, config, seed)
    paths = write_eeg(raw, folder / "EEG", config.eeg_format)
    del raw
    paths.append(write_biopac(biopac, folder / "BIOPAC" / BIOPAC_FILE_NAME))
    del biopac
    if config.long_videos:
        camera_paths, planted["long_video"] = write_long_camera(session, config, seed, folder)
        paths += camera_paths
    else:
        paths += write_camera(session, config, seed, folder)
    record = {
        "key": key,
        "files": {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(paths)},
        "planted": planted,
    }
    write_json(folder / DONE_MARKER, record)
    return record
