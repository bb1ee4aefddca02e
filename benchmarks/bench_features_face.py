"""Benchmark of the face half of the visual pipeline at the camera's 2048 x 1088.

Per expression (onset + apex frame): segment the green screen, detect the face, crop
256 x 256 (the published crop), register onset to apex, optical flow (on the 128 px
working crop), 28 x 28 (strain, u, v) stack. Timed with TV-L1 (target <= 0.7 s) and
DIS (target <= 60 ms), and the flow's end-point error is measured against the known
planted warp.

Frames: scikit-image's astronaut photograph (head and shoulders, scaled x4 so the face is
~380 px, as a 16 mm lens at ~1 m gives) composited on a shaded, noisy green panel. The
apex frame is that composite; the onset frame is the neutral face seen through a head
motion H (shift and rotation): ``onset(p) = apex(H p + e(H p))`` where ``e`` is the
expression's displacement field. After ideal registration the flow onset -> apex is
exactly ``e``, which is what the error is measured against (inside the face box).

Run: ``.venv/bin/python benchmarks/bench_features_face.py [--repeats 10]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np
from skimage.data import astronaut

from mmhe.features import face, flow

WIDTH, HEIGHT = 2048, 1088
SCALE = 4  # astronaut pixels -> camera pixels
FLOW_SIZE = 128
CROP_SIZE = 256
MARGIN = 0.15
TARGETS = {"tvl1": 0.7, "dis": 0.060}
HEAD_MOTION = {"shift": (4.6, -3.4), "angle_deg": 0.8}


def green_screen_apex(seed: int = 0) -> np.ndarray:
    """The astronaut's head and shoulders, x4, centred on a 2048 x 1088 green panel."""
    photo = astronaut()[:272, 60:400]  # head and shoulders, 340 x 272
    person = cv2.resize(photo, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_CUBIC)
    height, width = person.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width] / SCALE
    xx = xx + 60  # back to astronaut coordinates
    head = ((xx - 222) / 72.0) ** 2 + ((yy - 128) / 112.0) ** 2 <= 1
    shoulders = ((xx - 250) / 240.0) ** 2 + ((yy - 530) / 300.0) ** 2 <= 1
    mask = head | shoulders
    rng = np.random.default_rng(seed)
    fx = np.mgrid[0:HEIGHT, 0:WIDTH][1]
    shade = 0.75 + 0.35 * fx / WIDTH
    frame = np.array([40.0, 170.0, 70.0]) * shade[..., None]
    frame = np.clip(frame + rng.normal(0.0, 4.0, frame.shape), 0, 255).astype(np.uint8)
    left = (WIDTH - width) // 2
    region = frame[HEIGHT - height :, left : left + width]
    region[mask] = person[mask]
    return frame


def _bump(xx, yy, centre, sigma):
    return np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma**2))


def expression_field(kind: str) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, ...]]:
    """Displacement e(x, y) in camera pixels of a planted expression (6 px peak)."""
    left = (WIDTH - 340 * SCALE) // 2 - 60 * SCALE  # astronaut x -> camera x offset
    top = HEIGHT - 272 * SCALE

    def cam(x: float, y: float) -> tuple[float, float]:
        return (left + SCALE * x, top + SCALE * y)

    sigma = 12.0 * SCALE
    if kind == "smile (AU12)":  # lip corners up and out
        spots = [(cam(205, 143), (-0.5, -1.0)), (cam(245, 143), (0.5, -1.0))]
    elif kind == "frown (AU4)":  # inner brows down and together
        spots = [(cam(207, 92), (0.6, 0.8)), (cam(243, 92), (-0.6, 0.8))]
    else:
        raise ValueError(kind)

    def field(xx: np.ndarray, yy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ex = np.zeros_like(xx)
        ey = np.zeros_like(yy)
        for centre, (dx, dy) in spots:
            bump = 6.0 * _bump(xx, yy, centre, sigma)
            ex += dx * bump
            ey += dy * bump
        return ex, ey

    return field


def onset_frame(apex: np.ndarray, field) -> np.ndarray:
    """``onset(p) = apex(H p + e(H p))``: neutral face, moved head."""
    centre = (WIDTH / 2, HEIGHT / 2)
    head = cv2.getRotationMatrix2D(centre, HEAD_MOTION["angle_deg"], 1.0)
    head[:, 2] += HEAD_MOTION["shift"]
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    hx = head[0, 0] * xx + head[0, 1] * yy + head[0, 2]
    hy = head[1, 0] * xx + head[1, 1] * yy + head[1, 2]
    ex, ey = field(hx, hy)
    return cv2.remap(
        apex, (hx + ex).astype(np.float32), (hy + ey).astype(np.float32), cv2.INTER_LINEAR
    )


def pipeline(onset: np.ndarray, apex: np.ndarray, method: str) -> tuple:
    """The timed work of one expression.

    Returns (flow at 128 px, 28 px image, face box, {step: seconds}).
    """
    clock = [time.perf_counter()]
    steps: dict[str, float] = {}

    def lap(name: str) -> None:
        clock.append(time.perf_counter())
        steps[name] = clock[-1] - clock[-2]

    mask = face.segment_face(apex)
    lap("segment")
    box = face.detect_face(apex, mask=mask, eyes=False)
    lap("detect")
    onset_crop = face.crop(onset, box, CROP_SIZE, margin=MARGIN)
    apex_crop = face.crop(apex, box, CROP_SIZE, margin=MARGIN)
    lap("crop")
    # register + flow + rigid-motion removal on the 128 px working crop of the 256 crop
    face_flow = flow.face_flow(
        onset_crop,
        apex_crop,
        method=method,
        box=face.box_in_crop(CROP_SIZE, margin=MARGIN),
        margin=MARGIN,
        flow_size=FLOW_SIZE,
    )
    lap("register+flow")
    image = flow.flow_stack(face_flow, 28)
    lap("stack")
    return face_flow, image, box, steps


def end_point_error(estimated: np.ndarray, box: face.FaceBox, field) -> tuple[float, float]:
    """Mean EPE inside the face box, in 128 px crop pixels, and the mean true |e| there."""
    x0, y0, side = face.square_region(box, margin=MARGIN)
    ratio = side / FLOW_SIZE
    yy, xx = np.mgrid[0:FLOW_SIZE, 0:FLOW_SIZE].astype(np.float64)
    ex, ey = field(x0 + (xx + 0.5) * ratio - 0.5, y0 + (yy + 0.5) * ratio - 0.5)
    ex, ey = ex / ratio, ey / ratio
    inner = round(FLOW_SIZE / (1 + 2 * MARGIN))
    lo = (FLOW_SIZE - inner) // 2
    window = (slice(lo, lo + inner), slice(lo, lo + inner))
    error = np.hypot(estimated[..., 0] - ex, estimated[..., 1] - ey)[window]
    return float(error.mean()), float(np.hypot(ex, ey)[window].mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    apex = green_screen_apex()
    print(
        f"frames {WIDTH} x {HEIGHT} RGB; head motion {HEAD_MOTION}; crop {CROP_SIZE}, "
        f"flow at {FLOW_SIZE} px; OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads"
    )
    print(
        f"{'expression':<14} {'method':<6} {'median s':>9} {'min s':>8} {'target':>7} "
        f"{'EPE px128':>10} {'|e| px128':>10} {'EPE px cam':>11}"
    )
    for kind in ("smile (AU12)", "frown (AU4)"):
        field = expression_field(kind)
        onset = onset_frame(apex, field)
        for method in ("tvl1", "dis"):
            pipeline(onset, apex, method)  # warm-up (cascade loading, first-call costs)
            times, step_times = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                estimated, image, box, steps = pipeline(onset, apex, method)
                times.append(time.perf_counter() - start)
                step_times.append(steps)
            assert image.shape == (3, 28, 28)
            epe, truth = end_point_error(estimated, box, field)
            side = face.square_region(box, margin=MARGIN)[2]
            median = statistics.median(times)
            verdict = "ok" if median <= TARGETS[method] else "SLOW"
            print(
                f"{kind:<14} {method:<6} {median:>9.4f} {min(times):>8.4f} "
                f"{TARGETS[method]:>7.3f} {epe:>10.3f} {truth:>10.3f} "
                f"{epe * side / FLOW_SIZE:>11.2f}  {verdict} (box {box.box}, {box.source})"
            )
            breakdown = ", ".join(
                f"{name} {1000 * statistics.median(s[name] for s in step_times):.1f}"
                for name in step_times[0]
            )
            print(f"{'':<21} median ms per step: {breakdown}")


if __name__ == "__main__":
    main()
