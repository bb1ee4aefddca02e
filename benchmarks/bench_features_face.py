"""Benchmark of the face half of the visual pipeline at the camera's 2048 x 1088.

Per expression (onset + apex frame), called the way `mmhe features` calls it
(`mmhe.features.flow.expression_flow` + `flow_stack`):

- ``landmarks`` (the default): 68 landmarks in both frames (detector chain on the onset,
  tracked into the apex), face-only mask of the onset, apex aligned to the onset's pose
  (landmark similarity refined by ECC), 128 px crops, flow of the masked face, rigid
  residual removed, 28 x 28 (strain, u, v) stack. Target: <= 100 ms with DIS on 2 cores.
- ``ecc`` (the previous default, run side by side as the baseline): Haar box, 128 px box
  crops, onset registered to apex by ECC, flow, rigid residual removed, stack.

Each with DIS and TV-L1. The physical floor measured in the same run: converting both
RGB frames to grey (the least work that reads every pixel once; the pipelines read far
less, the face only). On a shared machine wall times grow with the load, so the landmark
pipeline is also timed in CPU seconds with OpenCV on one thread (``cpu 1 thr``): the
work itself, which two idle cores can only shorten.

Scenes:

- ``astronaut``: scikit-image's astronaut (x4, face ~380 px as a 16 mm lens at ~1 m gives)
  on a shaded, noisy green panel. The apex is that composite; the onset is the neutral face
  seen through a head motion H: ``onset(p) = apex(H p + e(H p))``, ``e`` a planted
  expression (6 px peak). The flow's end-point error (EPE) on the face mask is measured
  against the planted ``e`` mapped into the landmark pipeline's crops, less the rigid part
  that alignment leaves (a least-squares similarity over the face where ``|e| < 0.05 px``);
  for the ECC pipeline, as before, against ``e`` at its crop's pixels in the face box
  (the mask there is computed on the apex, so the flow outside it is 0: EPE includes it).
- ``twin``: the synthetic MMHE participant (EEG cap, headphones, glasses, EOG electrodes)
  smiling (AU6 + AU12) with head motion; timing only.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_features_face.py [--repeats 10]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np
from skimage.data import astronaut

from mmhe.features import alignment, face, face_mask, flow
from mmhe.synth.face import FaceAppearance, FaceRenderer

WIDTH, HEIGHT = 2048, 1088
SCALE = 4  # astronaut pixels -> camera pixels
FLOW_SIZE = 128
TARGET_DIS = 0.100  # s per expression, landmarks pipeline, DIS, 2 cores
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


def head_matrix() -> np.ndarray:
    head = cv2.getRotationMatrix2D((WIDTH / 2, HEIGHT / 2), HEAD_MOTION["angle_deg"], 1.0)
    head[:, 2] += HEAD_MOTION["shift"]
    return head


def onset_frame(apex: np.ndarray, field) -> np.ndarray:
    """``onset(p) = apex(H p + e(H p))``: neutral face, moved head."""
    head = head_matrix()
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    hx = head[0, 0] * xx + head[0, 1] * yy + head[0, 2]
    hy = head[1, 0] * xx + head[1, 1] * yy + head[1, 2]
    ex, ey = field(hx, hy)
    return cv2.remap(
        apex, (hx + ex).astype(np.float32), (hy + ey).astype(np.float32), cv2.INTER_LINEAR
    )


def twin_pair() -> tuple[np.ndarray, np.ndarray]:
    renderer = FaceRenderer(FaceAppearance(WIDTH, HEIGHT, glasses=True))
    rng = np.random.default_rng(0)
    onset = renderer.render({}, head_shift=(8.0, -5.0), rng=rng)
    apex = renderer.render({6: 0.5, 12: 1.0}, head_shift=(-4.0, 3.0), rng=rng)
    return onset, apex


# ---------------------------------------------------------------- timed work


def run(onset: np.ndarray, apex: np.ndarray, align: str, method: str) -> flow.FaceFlow:
    """One expression, as `mmhe features` computes it."""
    result = flow.expression_flow(onset, apex, method=method, align=align, flow_size=FLOW_SIZE)
    image = flow.flow_stack(result.flow, 28, mask=result.mask)
    assert image.shape == (3, 28, 28) and np.isfinite(image).all()
    return result


def steps(onset: np.ndarray, apex: np.ndarray, method: str) -> dict[str, float]:
    """The landmark pipeline's steps, each timed alone (seconds)."""
    times = {}
    start = time.perf_counter()
    tracks, _ = alignment.track_landmarks([onset, apex])
    times["landmarks"] = time.perf_counter() - start
    start = time.perf_counter()
    face_mask.face_mask_small(onset, tracks[0])
    times["mask"] = time.perf_counter() - start
    start = time.perf_counter()
    aligned = alignment.align_expression([onset, apex], landmarks=tracks, size=FLOW_SIZE)
    times["align (incl. mask)"] = time.perf_counter() - start
    crops = aligned.masked()
    start = time.perf_counter()
    field = flow.optical_flow(crops[0], crops[1], method)
    times["flow"] = time.perf_counter() - start
    start = time.perf_counter()
    field = flow.remove_rigid_motion(field, mask=aligned.mask)[0]
    flow.flow_stack(field, 28, mask=aligned.mask)
    times["rigid+stack"] = time.perf_counter() - start
    return times


def cpu_seconds(onset: np.ndarray, apex: np.ndarray, method: str, repeats: int) -> float:
    """Median CPU time of one expression (landmark pipeline), OpenCV on one thread."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        times = []
        for _ in range(repeats if method == "dis" else max(3, repeats // 3)):
            start = time.process_time()
            run(onset, apex, "landmarks", method)
            times.append(time.process_time() - start)
    finally:
        cv2.setNumThreads(threads)
    return statistics.median(times)


def floor(onset: np.ndarray, apex: np.ndarray) -> float:
    start = time.perf_counter()
    cv2.cvtColor(onset, cv2.COLOR_RGB2GRAY)
    cv2.cvtColor(apex, cv2.COLOR_RGB2GRAY)
    return time.perf_counter() - start


# ---------------------------------------------------------------- accuracy


def _similarity_residual(points: np.ndarray, vectors: np.ndarray, static: np.ndarray) -> np.ndarray:
    """``vectors`` minus the least-squares similarity motion fitted on the static points."""
    matrix = alignment.similarity_transform(points[static], points[static] + vectors[static])
    rigid = points @ matrix[:, :2].T + matrix[:, 2] - points
    return vectors - rigid


def end_point_error(result: flow.FaceFlow, field) -> tuple[float, float]:
    """Landmark pipeline: mean EPE on the face mask, in 128 px crop pixels, and the mean
    true |e| there. The flow's grid is the onset crop: crop pixel c is onset pixel
    p = M0^-1 c, which the head moved to H p and the expression to q = H p + e(H p), seen
    at M1 q in the apex crop; truth = M1 q - c, less the rigid part alignment left."""
    yy, xx = np.mgrid[0:FLOW_SIZE, 0:FLOW_SIZE].astype(np.float64)
    crop_points = np.stack([xx.ravel(), yy.ravel()], axis=1)
    head = head_matrix()
    to_onset = cv2.invertAffineTransform(result.alignment.matrices[0])
    to_apex_crop = result.alignment.matrices[1]
    onset_points = crop_points @ to_onset[:, :2].T + to_onset[:, 2]
    moved = onset_points @ head[:, :2].T + head[:, 2]
    ex, ey = field(moved[:, 0], moved[:, 1])
    apex_points = moved + np.stack([ex, ey], axis=1)
    truth = apex_points @ to_apex_crop[:, :2].T + to_apex_crop[:, 2] - crop_points
    expression = np.hypot(ex, ey) * np.sqrt(abs(np.linalg.det(to_apex_crop[:, :2])))
    on_face = result.mask.ravel()
    truth = _similarity_residual(crop_points, truth, on_face & (expression < 0.05))
    error = np.hypot(*(result.flow.reshape(-1, 2) - truth).T)[on_face]
    return float(error.mean()), float(np.hypot(*truth.T)[on_face].mean())


def end_point_error_box(estimated: np.ndarray, box: face.FaceBox, field) -> tuple[float, float]:
    """ECC pipeline (the previous benchmark's measure): mean EPE inside the face box, in
    128 px crop pixels, against ``e`` at the crop's pixels (ideal registration assumed),
    and the mean true |e| there."""
    x0, y0, side = face.square_region(box, margin=flow.BOX_MARGIN)
    ratio = side / FLOW_SIZE
    yy, xx = np.mgrid[0:FLOW_SIZE, 0:FLOW_SIZE].astype(np.float64)
    ex, ey = field(x0 + (xx + 0.5) * ratio - 0.5, y0 + (yy + 0.5) * ratio - 0.5)
    ex, ey = ex / ratio, ey / ratio
    inner = round(FLOW_SIZE / (1 + 2 * flow.BOX_MARGIN))
    lo = (FLOW_SIZE - inner) // 2
    window = (slice(lo, lo + inner), slice(lo, lo + inner))
    error = np.hypot(estimated[..., 0] - ex, estimated[..., 1] - ey)[window]
    return float(error.mean()), float(np.hypot(ex, ey)[window].mean())


# ---------------------------------------------------------------- report


def _median_ms(values: list[float]) -> float:
    return 1000.0 * statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    apex = green_screen_apex()
    print(
        f"frames {WIDTH} x {HEIGHT} RGB; flow at {FLOW_SIZE} px; OpenCV {cv2.__version__}, "
        f"{cv2.getNumThreads()} threads, {os.cpu_count()} cores; load average "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}"
    )
    scenes = {
        kind: (onset_frame(apex, expression_field(kind)), apex, expression_field(kind))
        for kind in ("smile (AU12)", "frown (AU4)")
    }
    scenes["twin AU6+12"] = (*twin_pair(), None)
    print(
        f"{'scene':<14} {'pipeline':<10} {'method':<6} {'median ms':>9} {'min ms':>7} "
        f"{'x floor':>8} {'EPE px':>7} {'|e| px':>7} {'cpu 1 thr':>9}  notes"
    )
    for scene, (onset, apex_frame, field) in scenes.items():
        run(onset, apex_frame, "landmarks", "dis")  # warm-up: model load, cascades
        floors = [floor(onset, apex_frame) for _ in range(args.repeats)]
        floor_ms = _median_ms(floors)
        print(f"{scene:<14} {'floor':<10} {'':<6} {floor_ms:>9.2f}  (RGB -> grey of both frames)")
        medians = {}
        for align in ("landmarks", "ecc"):
            for method in ("dis", "tvl1"):
                times = []
                for _ in range(args.repeats if method == "dis" else max(3, args.repeats // 3)):
                    start = time.perf_counter()
                    result = run(onset, apex_frame, align, method)
                    times.append(time.perf_counter() - start)
                medians[align, method] = statistics.median(times)
                if field is not None and align == "landmarks":
                    epe, truth = end_point_error(result, field)
                    accuracy = f"{epe:>7.3f} {truth:>7.3f}"
                elif field is not None:
                    box = face.detect_face(apex_frame, eyes=False)
                    epe, truth = end_point_error_box(result.flow, box, field)
                    accuracy = f"{epe:>7.3f} {truth:>7.3f}"
                else:
                    accuracy = f"{'-':>7} {'-':>7}"
                notes, cpu = "", f"{'-':>9}"
                if align == "landmarks":
                    cpu = f"{1000 * cpu_seconds(onset, apex_frame, method, args.repeats):>9.1f}"
                    quality = result.alignment.quality
                    notes = f"head motion {quality.head_motion_px:.1f} px, flags {quality.flags}"
                    if method == "dis":
                        verdict = "ok" if medians[align, method] <= TARGET_DIS else "SLOW"
                        notes += f"; target {1000 * TARGET_DIS:.0f} ms wall: {verdict}"
                print(
                    f"{scene:<14} {align:<10} {method:<6} {_median_ms(times):>9.1f} "
                    f"{1000 * min(times):>7.1f} {medians[align, method] / (floor_ms / 1000):>8.1f} "
                    f"{accuracy} {cpu}  {notes}"
                )
        breakdown = [steps(onset, apex_frame, "dis") for _ in range(args.repeats)]
        print(
            f"{'':<14} landmarks steps, median ms: "
            + ", ".join(f"{k} {_median_ms([b[k] for b in breakdown]):.1f}" for k in breakdown[0])
        )
        print(
            f"{'':<14} ratio landmarks / ecc: DIS "
            f"{medians['landmarks', 'dis'] / medians['ecc', 'dis']:.2f}, TV-L1 "
            f"{medians['landmarks', 'tvl1'] / medians['ecc', 'tvl1']:.2f}"
        )


if __name__ == "__main__":
    main()
