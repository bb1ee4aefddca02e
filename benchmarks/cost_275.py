"""What 275 participants cost: disk and time measured on a demo folder, then scaled.

    python benchmarks/cost_275.py [DEMO_OUT]        # default demo-out (after `make demo`)

Measured per participant of the demo (synthetic recordings written in the real formats):
raw bytes by device, store bytes by array, feature bytes, and the single-process seconds
each participant took to ingest and to compute each feature modality (``summary.json``
of every participant; the demo runs two workers, so wall time is about half the sum).

Scaled to the real MMHE recordings with the dataset's own figures (docs/data-format.md):
73.4 min of EEG (4,402,200 samples at 1 kHz), 78.6 min of BIOPAC (4,713,105 samples),
(1,536 + 7,680) / 275 = 33.5 expressions per participant, 2048 x 1088 camera frames at
150 fps, 42 trials. Each quantity is scaled by what it grows with (EEG minutes, BIOPAC
minutes, stored frame pixels, expressions); that is an extrapolation from synthetic data,
printed as such: real frames compress differently, real EEG needs more filtering, and
nothing here was measured on a real participant.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REAL_EEG_MIN = 4_402_200 / 1000 / 60
REAL_BIOPAC_MIN = 4_713_105 / 1000 / 60
REAL_EXPRESSIONS = (1536 + 7680) / 275
REAL_ME_SHARE = 1536 / (1536 + 7680)
REAL_FRAME_PIXELS = 2048 * 1088
FPS = 150.0
PARTICIPANTS = 275


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:,.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:,.0f} MB"


def _hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.0f} s"
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:,.0f} min"


def measure(out: Path) -> dict[str, float]:
    """Per-participant means of the demo in `out` (raw/, store/)."""
    from mmhe.store import MMHEStore

    store = MMHEStore(out / "store")
    people = store.participant_ids()
    n = len(people)
    raw = out / "raw"
    m: dict[str, float] = {"participants": n}
    m["raw_eeg"] = sum(_size(p) for p in raw.glob("*/EEG")) / n
    m["raw_biopac"] = sum(_size(p) for p in raw.glob("*/BIOPAC")) / n
    m["raw_camera"] = sum(_size(p) for p in raw.glob("*/Camera")) / n
    m["raw_clips"] = sum(_size(p) for p in raw.glob("*/Clips")) / n
    parts = store.path / "participants"
    for name in ("eeg_continuous", "physio", "frames"):
        m[f"store_{name}"] = sum(_size(parts / p / "arrays.zarr" / name) for p in people) / n
    m["store_total"] = _size(store.path) / n
    m["features"] = sum(_size(p) for p in (store.path / "features").glob("*")) / n
    eeg = store.eeg(people[0])
    m["eeg_min"] = eeg.session.shape[1] / float(eeg.attrs["sfreq"]) / 60
    trials = store.trials()
    m["biopac_min"] = trials.groupby("subject_id")["n_physio_samples"].sum().mean() / 60000
    expressions = store.expressions()
    m["expressions"] = len(expressions) / n
    stored = expressions[expressions["stored_frames"] > 0]
    shape = store.frame_array(stored["expression_id"].iloc[0]).shape
    m["frame_pixels"] = float(shape[1] * shape[2])
    m["frames_per_expression"] = float(stored["stored_frames"].mean())
    m["ingest_s"] = float(
        np.mean([json.loads((parts / p / "summary.json").read_text())["seconds"] for p in people])
    )
    for folder in (store.path / "features").glob("*"):
        modality = folder.name.rsplit("-", 1)[0]
        seconds = [
            json.loads(s.read_text())["seconds"] for s in folder.glob("participants/*/summary.json")
        ]
        if seconds:
            m[f"features_{modality}_s"] = float(np.mean(seconds))
    return m


def real_frames_per_expression(context: int = 10) -> float:
    """Frames an expression of the real data keeps: its duration at 150 fps plus the
    store's context frames on each side (ME 381.7 ms on average, Fig. 2(d); MaE taken
    as 1.5 s, an assumption: the paper gives no MaE duration)."""
    me, mae = 0.3817 * FPS, 1.5 * FPS
    return REAL_ME_SHARE * me + (1 - REAL_ME_SHARE) * mae + 2 * context


def scale(m: dict[str, float]) -> list[tuple[str, str, str, str]]:
    """(quantity, demo per participant, 275 real participants, scaled by) rows."""
    eeg = REAL_EEG_MIN / m["eeg_min"]
    biopac = REAL_BIOPAC_MIN / m["biopac_min"]
    frames = (REAL_EXPRESSIONS * real_frames_per_expression() * REAL_FRAME_PIXELS) / (
        m["expressions"] * m["frames_per_expression"] * m["frame_pixels"]
    )
    expressions = REAL_EXPRESSIONS / m["expressions"]
    rows = []

    def add(name: str, value: float, factor: float, why: str, kind: str = "bytes") -> None:
        show = _gb if kind == "bytes" else _hours
        rows.append(
            (name, show(value), show(value * factor * PARTICIPANTS), f"x{factor:,.1f} {why}")
        )

    add("raw EEG", m["raw_eeg"], eeg, "EEG minutes")
    add("raw BIOPAC", m["raw_biopac"], biopac, "BIOPAC minutes")
    add("store: EEG (the session; trials are views)", m["store_eeg_continuous"], eeg,
        "EEG minutes")  # fmt: skip
    add("store: physiology", m["store_physio"], biopac, "BIOPAC minutes")
    add("store: face frames", m["store_frames"], frames, "stored frame pixels")
    add("store: face frames, --frame-size 512", m["store_frames"], frames * (512 / 2048) ** 2,
        "stored frame pixels")  # fmt: skip
    add("features (all modalities)", m["features"], expressions, "expressions")
    add("ingest, one process", m["ingest_s"], eeg, "EEG minutes (reading, filtering)", "time")
    for modality, why, factor in (
        ("eeg", "EEG minutes", eeg),
        ("physio", "BIOPAC minutes", biopac),
        ("face", "expressions (landmarks + flow at 128 px)", expressions),
    ):
        key = f"features_{modality}_s"
        if key in m:
            add(f"features {modality}, one process", m[key], factor, why, "time")
    return rows


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "demo-out")
    m = measure(out)
    print(
        f"demo: {int(m['participants'])} participants, {m['eeg_min']:.1f} min EEG, "
        f"{m['biopac_min']:.1f} min BIOPAC, {m['expressions']:.1f} expressions and "
        f"{m['frames_per_expression']:.0f} stored frames of {int(m['frame_pixels']):,} px each "
        "per participant"
    )
    print(
        f"real: {REAL_EEG_MIN:.1f} min EEG, {REAL_BIOPAC_MIN:.1f} min BIOPAC, "
        f"{REAL_EXPRESSIONS:.1f} expressions, ~{real_frames_per_expression():.0f} stored frames "
        f"of {REAL_FRAME_PIXELS:,} px per expression"
    )
    print("| quantity | demo, per participant | 275 real participants | scaled by |")
    print("|---|---|---|---|")
    for row in scale(m):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
