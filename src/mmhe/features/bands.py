"""The EEG frequency bands of the published baseline (a light module: no MNE import)."""

from __future__ import annotations

FIVE_BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
    "gamma": (30.0, 47.0),
}
"""The five EEG bands of the published baseline, in Hz (edges inclusive)."""
