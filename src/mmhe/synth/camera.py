"""The camera part of a synthetic session: rendered `.tif` frames and one `.avi` per expression.

Per clip run it writes the first and last frames (the marker run stays visible for
alignment), every frame of a noise-code run, and each expression's frames with
`context_frames` before and after (``expression_frames="key"``: only its coded onset,
apex and offset frames); dropped frames are skipped. Frames are rendered by
`mmhe.synth.face` (per-participant appearance, AU intensities following
`face.expression_intensity`, slow head motion, camera noise seeded per frame so the
bytes never depend on rendering order).

Layout: ``<folder>/Camera/<marker>/YYYY-MM-DD-HH-MM-SS-mmm-CCC-MARKER.tif`` and
``<folder>/Clips/<Filename stem>-<k>.avi`` (k = expression number within the clip).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from mmhe.synth import face, video
from mmhe.synth.clocks import CameraRun
from mmhe.synth.coding import clip_file_name
from mmhe.synth.config import SynthConfig
from mmhe.synth.design import Expression, Session, frame_rng, participant_rng

MEMMAP_ABOVE_BYTES = 256 * 2**20
"""Clips larger than this are assembled in a memory-mapped temporary file."""


class HeadMotion:
    """Slow head motion: two sinusoids per axis, amplitude half the renderer's margin (px)."""

    def __init__(self, rng: np.random.Generator, max_shift: float) -> None:
        self.amplitude = 0.5 * max_shift
        self.freqs = rng.uniform(0.05, 0.5, size=(2, 2))
        self.phases = rng.uniform(0, 2 * np.pi, size=(2, 2))

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """Shifts (dx, dy) in px at times `t` (s), shape (len(t), 2)."""
        waves = np.sin(2 * np.pi * self.freqs[None] * np.asarray(t)[:, None, None] + self.phases)
        return self.amplitude * (0.6 * waves[..., 0] + 0.4 * waves[..., 1])


def _au_series(expression: Expression, t: np.ndarray) -> list[dict[int, float]]:
    """AU intensities at frame times `t` (s) of one expression."""
    profile = face.expression_intensity(
        t, expression.onset_s, expression.apex_s, expression.offset_s
    )
    return [
        {
            au: float(np.clip(peak * p, 0.0, 1.0))
            for au, peak in zip(expression.aus, expression.peaks, strict=True)
        }
        for p in profile
    ]


def clip_path(folder: Path, expression: Expression, session: Session) -> Path:
    stem = clip_file_name(expression, session).removesuffix(".avi")
    return folder / "Clips" / f"{stem}-{expression.number}.avi"


def write_camera(session: Session, config: SynthConfig, seed: int, folder: Path) -> list[Path]:
    """Render and write the camera frames and expression clips of one session."""
    index = session.participant.index
    rng = participant_rng(seed, index, "camera")
    renderer = face.FaceRenderer(face.random_appearance(rng, config.width, config.height))
    motion = HeadMotion(rng, renderer.max_shift)
    written: list[Path] = []

    def render(
        run: CameraRun, position: int, grab: int, aus: dict[int, float], keep: bool = True
    ) -> np.ndarray:
        shift = motion(run.eeg_t[grab : grab + 1])[0]
        frame = renderer.render(
            aus,
            head_shift=(float(shift[0]), float(shift[1])),
            rng=frame_rng(seed, index, position, grab),
        )
        if keep:
            path = folder / "Camera" / str(run.marker) / run.file_name(grab)
            video.write_tif(path, frame)
            written.append(path)
        return frame

    for position, run in enumerate(session.runs):
        expressions = [e for e in session.expressions if e.marker == run.marker]
        covered: set[int] = set()
        for expression in expressions:
            first = max(expression.onset_frame - config.context_frames, 0)
            last = min(expression.offset_frame + config.context_frames, len(run) - 1)
            grabs = [g for g in range(first, last + 1) if run.written[g]]
            intensities = _au_series(expression, run.eeg_t[grabs])
            in_clip = [g for g in grabs if expression.onset_frame <= g <= expression.offset_frame]
            slot = {grab: i for i, grab in enumerate(in_clip)}
            key = {expression.onset_frame, expression.apex_frame, expression.offset_frame}
            if config.expression_frames == "key":  # the clip still holds every frame
                grabs, intensities = zip(
                    *[(g, a) for g, a in zip(grabs, intensities, strict=True) if g in slot],
                    strict=True,
                )
            with _clip_buffer(len(in_clip), config, folder) as buffer:
                for grab, aus in zip(grabs, intensities, strict=True):
                    keep = config.expression_frames == "all" or grab in key
                    frame = render(run, position, grab, aus, keep)
                    if grab in slot:
                        buffer[slot[grab]] = frame
                path = clip_path(folder, expression, session)
                video.write_avi(path, buffer, config.fps, codec=config.clip_codec)
                written.append(path)
            covered.update(grabs)
        if run.marker < 100:  # a noise code: the camera grabbed a frame or two
            ends = range(len(run))
        else:
            edge = min(config.edge_frames, len(run))
            ends = [*range(edge), *range(len(run) - edge, len(run))]
        for grab in sorted(set(ends) - covered):
            if run.written[grab]:
                render(run, position, grab, {})
    return written


class _clip_buffer:
    """An (n, height, width, 3) uint8 buffer: in memory, or memory-mapped when large."""

    def __init__(self, n: int, config: SynthConfig, folder: Path) -> None:
        self.shape = (n, config.height, config.width, 3)
        self.folder = folder
        self._tmp = None

    def __enter__(self) -> np.ndarray:
        if np.prod(self.shape) <= MEMMAP_ABOVE_BYTES:
            return np.zeros(self.shape, np.uint8)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._tmp = tempfile.NamedTemporaryFile(prefix=".synth-tmp-", dir=self.folder)
        return np.memmap(self._tmp, np.uint8, "w+", shape=self.shape)

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.close()
