"""Sample expressions per emotion as animations: the aligned face crop from onset through
apex to offset, with the optical flow and strain of onset -> apex beside it.

Like the animated samples on the dataset's own page, but made from the store: the stored
face frames of an expression (`MMHEStore.frames`), aligned on the onset frame's
landmarks (`mmhe.features.alignment.align_expression`, the authors' alignment) and the
flow of the benchmark's visual input (`mmhe.features.flow.expression_flow`,
`optical_strain`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

PANEL = 144
"""Side in pixels of each of the three panels of an animation frame."""
TIMELINE_PX = 10
MAX_STEPS = 12
"""Frames shown between onset and apex, and again between apex and offset (at most)."""
FRAME_MS = 90
HOLD_MS = 450


@dataclass(frozen=True)
class FaceSample:
    """One animated sample: ``frames`` (n, H, W, 3) uint8 and ``durations`` (ms) of the
    GIF, with what it shows."""

    expression_id: str
    subject_id: str
    emotion: str
    kind: str
    aus: tuple[int, ...]
    duration_ms: float
    frames: np.ndarray
    durations: list[int]
    head_motion: float


def choose_samples(
    expressions: pd.DataFrame, per_emotion: int = 2, classes: str = "emotion"
) -> pd.DataFrame:
    """Up to `per_emotion` expressions of each class with stored frames: micro-expressions
    first, one participant at a time (round robin), in expression-id order."""
    usable = expressions[
        (expressions["stored_frames"] > 0)
        & expressions["frames_first"].notna()
        & expressions["frame_onset"].notna()
        & expressions["frame_apex"].notna()
        & expressions[classes].notna()
    ].copy()
    usable["_micro"] = (usable["kind"] != "ME").astype(int)
    usable = usable.sort_values(["_micro", "subject_id", "expression_id"], kind="stable")
    picked = []
    for _, group in usable.groupby(classes, sort=False):
        rank = group.groupby("subject_id").cumcount()
        ordered = group.assign(_rank=rank).sort_values(["_micro", "_rank", "subject_id"])
        picked.append(ordered.head(per_emotion))
    if not picked:
        return usable.iloc[0:0]
    from mmhe.labels import SEVEN_EMOTIONS

    order = {name: i for i, name in enumerate(SEVEN_EMOTIONS)}
    chosen = pd.concat(picked).drop(columns=["_micro", "_rank"], errors="ignore")
    rank = chosen[classes].map(lambda name: order.get(name, len(order)))
    return (
        chosen.assign(_order=rank)
        .sort_values(["_order", classes], kind="stable")
        .drop(columns="_order")
    )


def _positions(first: int, apex: int, last: int) -> list[int]:
    """Frame indices onset -> apex -> offset, at most MAX_STEPS per half."""
    up = np.unique(np.linspace(first, apex, min(MAX_STEPS, apex - first + 1)).round())
    down = np.unique(np.linspace(apex, last, min(MAX_STEPS, last - apex + 1)).round())
    return [int(i) for i in up] + [int(i) for i in down[1:]]


def flow_colour(flow: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(S, S, 2) flow -> (S, S, 3) uint8: hue = direction, brightness = magnitude (scaled
    to its 99th percentile on the face), the usual colour coding of optical flow."""
    import cv2

    u, v = flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32)
    magnitude, angle = cv2.cartToPolar(u, v, angleInDegrees=True)
    region = magnitude[mask] if mask is not None and mask.any() else magnitude
    top = float(np.percentile(region, 99)) if region.size else 0.0
    value = np.clip(magnitude / top, 0, 1) if top > 0 else np.zeros_like(magnitude)
    hsv = np.stack(
        [
            (angle / 2).astype(np.uint8),
            np.full_like(magnitude, 255, np.uint8),
            (value * 255).astype(np.uint8),
        ],
        axis=-1,
    )
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def strain_colour(strain: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(S, S) optical strain -> (S, S, 3) uint8 with the 'magma' colour map (0 to its 99th
    percentile on the face)."""
    from matplotlib import colormaps

    region = strain[mask] if mask is not None and mask.any() else strain
    top = float(np.percentile(region, 99)) if region.size else 0.0
    scaled = np.clip(strain / top, 0, 1) if top > 0 else np.zeros_like(strain)
    return (colormaps["magma"](scaled)[..., :3] * 255).astype(np.uint8)


def _resize(image: np.ndarray, side: int) -> np.ndarray:
    import cv2

    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    interpolation = cv2.INTER_AREA if image.shape[0] > side else cv2.INTER_LINEAR
    return cv2.resize(image, (side, side), interpolation=interpolation)


def _timeline(position: float, apex: float, width: int) -> np.ndarray:
    """A thin bar under the face: grey track, apex tick, the current frame in blue."""
    bar = np.full((TIMELINE_PX, width, 3), 255, np.uint8)
    bar[4:6, 4 : width - 4] = 200
    x_apex = round(4 + apex * (width - 9))
    bar[1:9, x_apex - 1 : x_apex + 1] = (192, 57, 43)
    x = round(4 + position * (width - 9))
    bar[2:8, max(0, x - 3) : x + 3] = (11, 92, 173)
    return bar


def expression_animation(store, row, *, method: str = "dis") -> FaceSample:
    """The animation of one expression (a row of `MMHEStore.expressions`).

    Frames onset -> apex -> offset of the stored face frames, aligned on the onset frame
    (landmarks + ECC, 144 px crop); beside them the flow and the strain of onset -> apex
    (`expression_flow` with `method`, the face mask on). Holds a moment at onset, apex and
    offset. Raises the feature code's errors (no landmarks, no frames).
    """
    from mmhe.features.alignment import align_expression
    from mmhe.features.flow import expression_flow, optical_strain

    frames = store.frames(row.expression_id)
    first = int(row.frames_first)
    onset = int(row.frame_onset) - first
    apex = int(row.frame_apex) - first
    last = int(row.frame_offset) - first if not pd.isna(row.frame_offset) else apex
    last = min(max(last, apex), len(frames) - 1)
    onset, apex = max(0, min(onset, len(frames) - 1)), max(0, min(apex, len(frames) - 1))
    positions = _positions(onset, apex, last)
    aligned = align_expression(
        [frames[i] for i in positions],
        apex_index=positions.index(apex),
        size=PANEL,
        mask=False,
    )
    face = expression_flow(frames[onset], frames[apex], method=method, flow_size=PANEL)
    flow_panel = flow_colour(face.flow, face.mask)
    strain_panel = strain_colour(optical_strain(face.flow), face.mask)
    span = max(last - onset, 1)
    out, durations = [], []
    for index, crop in zip(positions, aligned.frames, strict=True):
        top = np.concatenate([_resize(crop, PANEL), flow_panel, strain_panel], axis=1)
        bar = np.full((TIMELINE_PX, top.shape[1], 3), 255, np.uint8)
        bar[:, :PANEL] = _timeline((index - onset) / span, (apex - onset) / span, PANEL)
        out.append(np.concatenate([top, bar], axis=0))
        hold = index in (onset, apex, last)
        durations.append(HOLD_MS if hold else FRAME_MS)
    motion = aligned.quality.head_motion
    return FaceSample(
        expression_id=str(row.expression_id),
        subject_id=str(row.subject_id),
        emotion=str(row.emotion),
        kind=str(row.kind),
        aus=tuple(int(a) for a in row.aus),
        duration_ms=float(row.duration_s) * 1000.0 if not pd.isna(row.duration_s) else math.nan,
        frames=np.stack(out),
        durations=durations,
        head_motion=float(motion),
    )
