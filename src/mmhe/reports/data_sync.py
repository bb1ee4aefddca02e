"""Synchronisation of each participant's devices: the fitted clock drift and offset, and
the residual of every matched marker, against the tolerance of the fit.

The store keeps the fit per participant and device (``alignment`` table: offset_s,
drift_ppm, n_matched, residual summary) and every device's markers (``events``). The
residual of each matched marker is recomputed here with the ingest's own fit
(`mmhe.sync.align` on the stored markers, the camera's runs shifted by half a frame as in
`mmhe.sync.build_timeline`), and the recomputed offset and drift are checked against the
stored ones: a difference is reported, never hidden.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mmhe.annotations.coding_file import CAMERA_FPS

TOLERANCE_MS = 5.0
"""The ingest's tolerance of a fit (`mmhe.sync.build_timeline` ``max_residual_ms``): a
larger residual raises a poor-fit warning."""
DEVICES = ("physio", "camera")


def tolerance_ms(device: str, fps: float = CAMERA_FPS) -> float:
    """Residual above which the ingest warns: 5 ms, one frame period for the camera."""
    return max(TOLERANCE_MS, 1000.0 / fps) if device == "camera" else TOLERANCE_MS


@dataclass(frozen=True)
class SyncSummary:
    """``fits``: one row per participant and device (subject_id, device, drift_ppm,
    offset_s, n_matched, n_unmatched, residual_ms_median, residual_ms_max, tolerance_ms,
    warnings); ``residuals``: one row per matched marker (subject_id, device, code,
    residual_ms); ``mismatches``: lines where the recomputed fit differs from the stored
    one."""

    fits: pd.DataFrame
    residuals: pd.DataFrame
    mismatches: list[str] = field(default_factory=list)


def sync_summary(store, fps: float = CAMERA_FPS) -> SyncSummary:
    """The `SyncSummary` of a store."""
    from mmhe.errors import MMHEError
    from mmhe.sync import align

    fits = store.alignment()
    events = store.events()
    fits = fits[fits["device"].isin(DEVICES)].reset_index(drop=True)
    residuals, mismatches = [], []
    for row in fits.itertuples(index=False):
        mine = events[events["subject_id"] == row.subject_id]
        eeg = mine[mine["device"] == "eeg"][["onset_s", "code"]].reset_index(drop=True)
        other = mine[mine["device"] == row.device][["onset_s", "code"]].reset_index(drop=True)
        if row.device == "camera":
            other = other.assign(onset_s=other["onset_s"] - 0.5 / fps)
        try:
            fit = align(eeg, other, max_residual_ms=tolerance_ms(row.device, fps))
        except MMHEError as exc:
            mismatches.append(f"{row.subject_id} {row.device}: could not refit ({exc})")
            continue
        if not (
            math.isclose(fit.offset_s, row.offset_s, abs_tol=1e-6)
            and math.isclose(fit.drift_ppm, row.drift_ppm, abs_tol=1e-3)
        ):
            mismatches.append(
                f"{row.subject_id} {row.device}: refit offset {fit.offset_s:.6f} s, drift "
                f"{fit.drift_ppm:.3f} ppm; stored {row.offset_s:.6f} s, {row.drift_ppm:.3f} ppm"
            )
        residuals.append(
            pd.DataFrame(
                {
                    "subject_id": row.subject_id,
                    "device": row.device,
                    "code": fit.matched["code"].to_numpy(),
                    "residual_ms": fit.matched["residual_ms"].to_numpy(),
                }
            )
        )
    fits = fits.assign(tolerance_ms=[tolerance_ms(d, fps) for d in fits["device"]])
    columns = [
        "subject_id",
        "device",
        "drift_ppm",
        "offset_s",
        "n_matched",
        "n_unmatched",
        "residual_ms_median",
        "residual_ms_max",
        "tolerance_ms",
        "warnings",
    ]
    return SyncSummary(
        fits.reindex(columns=columns),
        pd.concat(residuals, ignore_index=True)
        if residuals
        else pd.DataFrame(columns=["subject_id", "device", "code", "residual_ms"]),
        mismatches,
    )


DEVICE_NAMES = {"physio": "BIOPAC", "camera": "camera"}
DEVICE_COLORS = {"physio": "#3B6EA8", "camera": "#D9822B"}


def drift_figure(summary: SyncSummary, *, narrow: bool = False):
    """(a) clock drift (ppm) of each device against the EEG, (b) the BIOPAC's and (c) the
    camera's clock offset (s; each device's clock has its own zero), one dot per
    participant (participants in id order on the x axis)."""
    import matplotlib.pyplot as plt

    fits = summary.fits
    people = sorted(fits["subject_id"].unique())
    position = {p: i for i, p in enumerate(people)}
    devices = [d for d in DEVICES if (fits["device"] == d).any()]
    n = 1 + len(devices)
    fig, axes = plt.subplots(
        n if narrow else 1,
        1 if narrow else n,
        figsize=(5.0, 2.6 * n) if narrow else (10.5, 3.0),
        layout="constrained",
        squeeze=False,
    )
    axes = axes.ravel()
    panels = [(axes[0], "drift_ppm", devices, "(a) clock drift against the EEG", "ppm")]
    for k, device in enumerate(devices):
        panels.append(
            (
                axes[1 + k],
                "offset_s",
                [device],
                f"({'bc'[k]}) {DEVICE_NAMES[device]} clock offset",
                "s",
            )
        )
    size = 18 if len(people) < 60 else 7
    for ax, column, shown, title, unit in panels:
        for device in shown:
            rows = fits[fits["device"] == device]
            ax.scatter(
                rows["subject_id"].map(position),
                rows[column],
                s=size,
                color=DEVICE_COLORS[device],
                label=DEVICE_NAMES[device],
                zorder=3,
            )
        if column == "drift_ppm":
            ax.axhline(0, color="#bbb", linewidth=0.7)
            ax.legend(fontsize=8, frameon=False)
        ax.set_title(title, loc="left", fontsize=9)
        ax.set_ylabel(unit)
        if len(people) <= 20:
            ax.set_xticks(range(len(people)), people, rotation=90, fontsize=7)
        else:
            ax.set_xticks([])
            ax.set_xlabel(f"{len(people)} participants (id order)")
    return fig


def residual_figure(summary: SyncSummary):
    """Residual of every matched marker per device (box and dots), with the tolerance of
    the fit as dashed lines (±)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.0), layout="constrained")
    devices = [d for d in DEVICES if (summary.residuals["device"] == d).any()]
    rng = np.random.default_rng(0)
    top = 0.0
    for i, device in enumerate(devices):
        values = summary.residuals.loc[
            summary.residuals["device"] == device, "residual_ms"
        ].to_numpy(float)
        ax.boxplot(
            values,
            positions=[i],
            widths=0.5,
            orientation="horizontal",
            showfliers=False,
            medianprops={"color": "#222"},
        )
        ax.scatter(
            values,
            i + rng.uniform(-0.18, 0.18, values.size),
            s=6,
            alpha=0.5,
            color=DEVICE_COLORS[device],
            zorder=3,
        )
        tolerance = float(
            summary.fits.loc[summary.fits["device"] == device, "tolerance_ms"].iloc[0]
        )
        ax.vlines([-tolerance, tolerance], i - 0.4, i + 0.4, colors="#C0392B", linestyles="--")
        ax.text(
            tolerance,
            i + 0.42,
            f" ±{tolerance:.1f} ms tolerance",
            color="#C0392B",
            fontsize=7,
            va="bottom",
            ha="right",
        )
        top = max(top, tolerance, float(np.abs(values).max()) if values.size else 0.0)
    ax.set_yticks(
        range(len(devices)),
        [
            f"{DEVICE_NAMES[d]}\n({(summary.residuals['device'] == d).sum():,} markers)"
            for d in devices
        ],
    )
    ax.set_xlim(-1.15 * top, 1.15 * top)
    ax.set_ylim(-0.6, len(devices) - 0.2)
    ax.set_xlabel("residual of each matched marker after the drift fit, ms")
    ax.axvline(0, color="#bbb", linewidth=0.7)
    return fig
