"""Long synthetic trials for expression spotting: every frame of every run, with distractors.

With ``long_videos=True`` (the ``spotting`` preset) the camera writes what the real
recorder writes: every grabbed frame while a marker is on (the rest block, every clip,
the noise codes), not only the frames around the coded expressions. The planted
expressions (`design.Expression`, the coding file's rows) are rendered inside these long
trials together with the things a spotter must not report:

- blinks: AU45 (eyes closed at the apex), 150-350 ms, closing faster than opening
  (apex at 35 %), at `SynthConfig.blinks_per_min` (spontaneous blinking is 10-20 per
  minute at rest and lower while watching films);
- head moves: a translation of the whole head there and back (a raised-cosine bump,
  0.4-1.5 s, up to 0.45 of the renderer's head margin) at `head_moves_per_min`, on top
  of the slow sinusoidal head drift every synthetic participant has (`camera.HeadMotion`);
- lighting drift: a slow sinusoidal gain of the whole frame, amplitude `lighting_drift`
  (fraction), period 20-60 s.

Distractors follow a Poisson process per run (seeded per participant, stream
``"distractors"``), independent of the expressions, and are written to
``ground_truth.json`` (``long_video.distractors``) with their frames, so tests can check
that a spotter ignores them. The frames of one participant look exactly as in
`camera.write_camera` (same appearance, head drift and per-frame noise seeds).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mmhe.synth import face, video
from mmhe.synth.camera import HeadMotion, _clip_buffer, clip_path
from mmhe.synth.clocks import CameraRun
from mmhe.synth.config import SynthConfig
from mmhe.synth.design import Expression, Session, frame_rng, participant_rng

BLINK_AU = 45
_BLINK_S = (0.15, 0.35)
_BLINK_APEX = 0.35
_BLINK_REFRACTORY_S = 0.6
_HEAD_MOVE_S = (0.4, 1.5)
_HEAD_MOVE_FRACTION = (0.2, 0.45)
_LIGHT_PERIOD_S = (20.0, 60.0)


@dataclass(frozen=True)
class Distractor:
    """One planted non-expression event of a run (times on the EEG clock, s).

    kind : ``"blink"`` or ``"head_move"``.
    onset_frame, apex_frame, offset_frame : grab indices in the run (`CameraRun`).
    amplitude : AU45 intensity (0..1) of a blink; the head shift (px) at the apex of a move.
    direction : unit (dx, dy) of a head move ((0, 0) for a blink).
    """

    kind: str
    marker: int
    onset_s: float
    apex_s: float
    offset_s: float
    onset_frame: int
    apex_frame: int
    offset_frame: int
    amplitude: float
    direction: tuple[float, float] = (0.0, 0.0)


def _poisson_times(
    rng: np.random.Generator, rate_per_s: float, start: float, stop: float, gap: float
) -> list[float]:
    """Event times of a Poisson process on [start, stop) with a refractory `gap` (s)."""
    times: list[float] = []
    if rate_per_s <= 0 or stop <= start:
        return times
    t = start
    while True:
        t += gap + float(rng.exponential(1.0 / rate_per_s))
        if t >= stop:
            return times
        times.append(t)


def plan_distractors(
    config: SynthConfig, session: Session, seed: int, max_shift: float
) -> list[Distractor]:
    """Blinks and head moves of every run of `session` (deterministic in `seed`)."""
    rng = participant_rng(seed, session.participant.index, "distractors")
    out: list[Distractor] = []
    for run in session.runs:
        if run.marker < 100 or len(run) < 2:
            continue
        start, stop = float(run.eeg_t[0]), float(run.eeg_t[-1])
        for t in _poisson_times(rng, config.blinks_per_min / 60, start, stop, _BLINK_REFRACTORY_S):
            length = float(rng.uniform(*_BLINK_S))
            if t + length > stop:
                continue
            times = (t, t + _BLINK_APEX * length, t + length)
            frames = [run.nearest_written(x) for x in times]
            amplitude = float(rng.uniform(0.7, 1.0))
            out.append(Distractor("blink", run.marker, *times, *frames, amplitude))
        for t in _poisson_times(rng, config.head_moves_per_min / 60, start, stop, 1.0):
            length = float(rng.uniform(*_HEAD_MOVE_S))
            if t + length > stop:
                continue
            times = (t, t + 0.5 * length, t + length)
            frames = [run.nearest_written(x) for x in times]
            angle = float(rng.uniform(0, 2 * np.pi))
            shift = float(rng.uniform(*_HEAD_MOVE_FRACTION)) * max_shift
            out.append(
                Distractor(
                    "head_move",
                    run.marker,
                    *times,
                    *frames,
                    shift,
                    (float(np.cos(angle)), float(np.sin(angle))),
                )
            )
    return out


class LongTrialRenderer:
    """Render any grabbed frame of a session's runs, expressions and distractors included.

    >>> renderer = LongTrialRenderer(session, config, seed)     # doctest: +SKIP
    >>> frame = renderer.frame(position, grab)                  # (height, width, 3) uint8 RGB
    """

    def __init__(self, session: Session, config: SynthConfig, seed: int) -> None:
        index = session.participant.index
        rng = participant_rng(seed, index, "camera")  # the draws of camera.write_camera
        self.renderer = face.FaceRenderer(face.random_appearance(rng, config.width, config.height))
        self.motion = HeadMotion(rng, self.renderer.max_shift)
        self.session, self.config, self.seed = session, config, seed
        self.distractors = plan_distractors(config, session, seed, self.renderer.max_shift)
        light = participant_rng(seed, index, "distractors").spawn(1)[0]
        self.light_period_s = float(light.uniform(*_LIGHT_PERIOD_S))
        self.light_phase = float(light.uniform(0, 2 * np.pi))
        self._levels = np.arange(256, dtype=np.float64)

    def _events(self, marker: int) -> tuple[list[Expression], list[Distractor]]:
        expressions = [e for e in self.session.expressions if e.marker == marker]
        return expressions, [d for d in self.distractors if d.marker == marker]

    def state(
        self, run: CameraRun, grab: int
    ) -> tuple[dict[int, float], tuple[float, float], float]:
        """(AU intensities, head shift (dx, dy) px, lighting gain) at grab `grab` of `run`."""
        t = float(run.eeg_t[grab])
        expressions, distractors = self._events(run.marker)
        aus: dict[int, float] = {}
        for e in expressions:
            if e.onset_s <= t <= e.offset_s + 0.1:
                level = float(face.expression_intensity(t, e.onset_s, e.apex_s, e.offset_s))
                for au, peak in zip(e.aus, e.peaks, strict=True):
                    aus[au] = max(aus.get(au, 0.0), float(np.clip(peak * level, 0.0, 1.0)))
        shift = self.motion(np.array([t]))[0].astype(float)
        for d in distractors:
            if not d.onset_s <= t <= d.offset_s:
                continue
            level = float(face.expression_intensity(t, d.onset_s, d.apex_s, d.offset_s))
            if d.kind == "blink":
                aus[BLINK_AU] = max(aus.get(BLINK_AU, 0.0), d.amplitude * level)
            else:
                shift += d.amplitude * level * np.asarray(d.direction)
        limit = self.renderer.max_shift
        shift = np.clip(shift, -limit, limit)
        gain = 1.0 + self.config.lighting_drift * np.sin(
            2 * np.pi * t / self.light_period_s + self.light_phase
        )
        return aus, (float(shift[0]), float(shift[1])), float(gain)

    def frame(self, position: int, grab: int) -> np.ndarray:
        """Grab `grab` of run number `position` of the session: (height, width, 3) uint8 RGB."""
        run = self.session.runs[position]
        aus, shift, gain = self.state(run, grab)
        index = self.session.participant.index
        image = self.renderer.render(
            aus, head_shift=shift, rng=frame_rng(self.seed, index, position, grab)
        )
        if gain != 1.0:
            lut = np.clip(np.rint(self._levels * gain), 0, 255).astype(np.uint8)
            image = cv2.LUT(image, lut)
        return image

    def planted(self) -> dict[str, Any]:
        """The distractors and the lighting drift, for ``ground_truth.json``."""
        runs = {r.marker: r for r in self.session.runs}
        return {
            "lighting": {
                "amplitude": self.config.lighting_drift,
                "period_s": round(self.light_period_s, 6),
                "phase_rad": round(self.light_phase, 6),
                "model": "gain = 1 + amplitude * sin(2 pi t / period_s + phase_rad), t on the "
                "EEG clock (s)",
            },
            "distractors": [
                {
                    "kind": d.kind,
                    "marker": d.marker,
                    "amplitude": round(d.amplitude, 6),
                    "direction": [round(c, 6) for c in d.direction],
                    **{
                        event: {
                            "t_s": round(t, 6),
                            "frame": runs[d.marker].file_name(frame),
                        }
                        for event, t, frame in (
                            ("onset", d.onset_s, d.onset_frame),
                            ("apex", d.apex_s, d.apex_frame),
                            ("offset", d.offset_s, d.offset_frame),
                        )
                    },
                }
                for d in self.distractors
            ],
        }


def write_long_camera(
    session: Session, config: SynthConfig, seed: int, folder: Path
) -> tuple[list[Path], dict[str, Any]]:
    """Write every grabbed frame of every run and one `.avi` per expression.

    Returns the written paths and the planted distractors (`LongTrialRenderer.planted`).
    """
    renderer = LongTrialRenderer(session, config, seed)
    written: list[Path] = []
    for position, run in enumerate(session.runs):
        expressions = [e for e in session.expressions if e.marker == run.marker]
        buffers = {}
        for expression in expressions:
            span = range(expression.onset_frame, expression.offset_frame + 1)
            kept = [g for g in span if run.written[g]]
            buffers[expression.number] = (
                {g: i for i, g in enumerate(kept)},
                _clip_buffer(len(kept), config, folder),
            )
        arrays = {number: buffer.__enter__() for number, (_, buffer) in buffers.items()}
        try:
            for grab in np.flatnonzero(run.written):
                image = renderer.frame(position, int(grab))
                path = folder / "Camera" / str(run.marker) / run.file_name(int(grab))
                video.write_tif(path, image)
                written.append(path)
                for number, (slots, _) in buffers.items():
                    if grab in slots:
                        arrays[number][slots[grab]] = image
            for expression in expressions:
                path = clip_path(folder, expression, session)
                video.write_avi(
                    path, arrays[expression.number], config.fps, codec=config.clip_codec
                )
                written.append(path)
        finally:
            for _, buffer in buffers.values():
                buffer.__exit__(None, None, None)
    return written, renderer.planted()
