"""`ground_truth.json`: every planted quantity of a synthetic tree, for recovery tests.

Times are seconds on the EEG clock; device samples follow
``round((offset_s + t * (1 + drift_ppm * 1e-6)) * rate_hz)`` (see `clocks`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmhe.synth import face
from mmhe.synth.camera import clip_path
from mmhe.synth.config import SynthConfig
from mmhe.synth.design import CATEGORY_AFFECT, Block, Expression, Session, participant_rng

FORMAT = "mmhe-synth-ground-truth/1"
CLOCK_MODEL = (
    "device_time_s = offset_s + t_s * (1 + drift_ppm * 1e-6); sample = round(device_time_s * "
    "rate_hz); t_s = seconds on the EEG clock (EEG sample / 1000); the camera's device time is "
    "the PC time of day written in the frame names"
)


def _samples(session: Session, t: float) -> dict[str, int]:
    return {
        "eeg_sample": int(session.clocks["eeg"].sample(t)),
        "biopac_sample": int(session.clocks["biopac"].sample(t)),
    }


def _trial(session: Session, block: Block) -> dict[str, Any]:
    runs = [r for r in session.runs if r.marker == block.marker]
    run = min(runs, key=lambda r: abs(r.eeg_t[0] - block.onset_s))
    return {
        "marker": block.marker,
        "category": block.category,
        "order": block.order,
        "clip_index": block.clip_index,
        "onset_s": round(block.onset_s, 6),
        "offset_s": round(block.offset_s, 6),
        "onset": _samples(session, block.onset_s),
        "offset": _samples(session, block.offset_s),
        "camera": {
            "first_frame": run.file_name(0),
            "last_frame": run.file_name(len(run) - 1),
            "frames_grabbed": len(run),
            "dropped_counters": [int(c) for c in run.counter[~run.written]],
        },
    }


def _expression(session: Session, expression: Expression, row: int) -> dict[str, Any]:
    run = session.run(expression.marker)
    times = {"onset": expression.onset_s, "apex": expression.apex_s, "offset": expression.offset_s}
    frames = {
        "onset": expression.onset_frame,
        "apex": expression.apex_frame,
        "offset": expression.offset_frame,
    }
    folder = session.participant.folder
    return {
        "coding_row": row,
        "marker": expression.marker,
        "number_in_clip": expression.number,
        "emotion": expression.emotion,
        "kind": expression.kind,
        "aus": list(expression.aus),
        "au_peak_intensity": list(expression.peaks),
        "true": {
            event: {
                "t_s": round(t, 6),
                **_samples(session, t),
                "frame": run.file_name(frames[event]),
                "frame_t_s": round(float(run.eeg_t[frames[event]]), 6),
            }
            for event, t in times.items()
        },
        "clip": clip_path(Path(folder), expression, session).as_posix(),
    }


def _face_region(config: SynthConfig, seed: int, index: int) -> dict[str, Any]:
    """The participant's face region as `camera.write_camera` renders it (same appearance
    draw: the first draws of the participant's camera generator)."""
    rng = participant_rng(seed, index, "camera")
    appearance = face.random_appearance(rng, config.width, config.height)
    return face.FaceRenderer(appearance).face_region_truth()


def ground_truth(
    config: SynthConfig,
    seed: int,
    sessions: list[Session],
    extras: dict[int, dict[str, Any]],
) -> dict[str, Any]:
    """The ground-truth document. `extras[index]` = values drawn while making the signals."""
    participants = []
    row = 0
    for session in sessions:
        person = session.participant
        expressions = []
        for expression in session.expressions:
            row += 1
            expressions.append(_expression(session, expression, row))
        participants.append(
            {
                "subject": person.subject,
                "folder": person.folder,
                "sex": person.sex,
                "age": person.age,
                "session_date": person.session_date.isoformat(),
                "clocks": {name: clock.to_json() for name, clock in session.clocks.items()},
                "camera_jitter_ms": 1.0,
                "eeg_samples": session.eeg_samples,
                "biopac_samples": session.biopac_samples,
                "biopac_start_s": round(float(session.biopac_span_s[0]), 6),
                "trials": [_trial(session, b) for b in session.blocks],
                "noise_codes": [_trial(session, b) for b in session.noise],
                "expressions": expressions,
                "face_region": _face_region(config, seed, person.index),
                **extras.get(person.index, {}),
            }
        )
    return {
        "format": FORMAT,
        "seed": seed,
        "preset": config.preset,
        "config": config.model_dump(mode="json", exclude={"workers"}),
        "strengths": config.strengths,
        "category_affect": {
            k: {"valence": v, "arousal": a} for k, (v, a) in CATEGORY_AFFECT.items()
        },
        "clock_model": CLOCK_MODEL,
        "participants": participants,
    }


def jsonable(value: Any) -> Any:
    """NumPy scalars and arrays -> plain Python (for JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value
