"""Synthetic Neuroscan EEG: 64 Quik-Cap channels + HEO, VEO, EKG, EMG, Trigger at 1000 Hz.

Background: per-channel 1/f^beta noise (FFT-shaped) mixed by a Gaussian spatial kernel
over the electrode positions, plus posterior alpha. Artefacts: blinks (frontal channels
and VEO), saccades (HEO, F7/F8), the heart (EKG, a little on the mastoids), 50 Hz mains.
Class signal (per stimulus category, times `strength`): frontal alpha asymmetry for
valence (positive valence -> less left-frontal alpha, Davidson 1992) and beta/gamma
power for arousal, with trial-to-trial noise that does not depend on the strength.
Units: volts (MNE convention); the Trigger channel holds the marker value.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from functools import cache
from pathlib import Path

import mne
import numpy as np
import scipy.fft
import scipy.ndimage
import scipy.signal

from mmhe.errors import ConfigError
from mmhe.synth.design import CATEGORY_AFFECT, EEG_SFREQ, Block, Session
from mmhe.synth.files import fix_mat_header
from mmhe.synth.physio import GRID_HZ, Body, block_profile

EEG_CHANNELS: tuple[str, ...] = tuple(
    "FP1 FPZ FP2 AF3 AF4 F7 F5 F3 F1 FZ F2 F4 F6 F8 FT7 FC5 FC3 FC1 FCZ FC2 FC4 FC6 FT8 T7 C5 "
    "C3 C1 CZ C2 C4 C6 T8 M1 TP7 CP5 CP3 CP1 CPZ CP2 CP4 CP6 TP8 M2 P7 P5 P3 P1 PZ P2 P4 P6 "
    "P8 PO7 PO5 PO3 POZ PO4 PO6 PO8 CB1 O1 OZ O2 CB2".split()
)
"""The Neuroscan 64-channel Quik-Cap in recording order (data-format.md)."""
EXTRA_CHANNELS: tuple[tuple[str, str], ...] = (
    ("HEO", "eog"),
    ("VEO", "eog"),
    ("EKG", "ecg"),
    ("EMG", "emg"),
    ("Trigger", "stim"),
)
ALL_CHANNELS: tuple[str, ...] = EEG_CHANNELS + tuple(name for name, _ in EXTRA_CHANNELS)
EEG_FILE_NAMES = {
    "set": "Acquisition 01.set",
    "edf": "Acquisition 01.edf",
    "bdf": "Acquisition 01.bdf",
    "vhdr": "Acquisition 01.vhdr",
}
_STAND_INS = {"CB1": "I1", "CB2": "I2"}
"""Cerebellar CB1/CB2 are not in the 10-05 system; placed at I1/I2."""

VALENCE_GAIN = 0.35
AROUSAL_GAIN = 0.35


@cache
def electrode_positions() -> np.ndarray:
    """Positions (m) of `EEG_CHANNELS`, shape (64, 3), from MNE's colin27 10-05 montage."""
    montage = mne.channels.make_standard_montage("colin27_1005")
    positions = {name.upper(): xyz for name, xyz in montage.get_positions()["ch_pos"].items()}
    return np.array([positions[_STAND_INS.get(name, name)] for name in EEG_CHANNELS])


def _topography(centre: str, width_m: float) -> np.ndarray:
    """Gaussian weights (64,) around electrode `centre`."""
    pos = electrode_positions()
    distance = np.linalg.norm(pos - pos[EEG_CHANNELS.index(centre)], axis=1)
    return np.exp(-(distance**2) / (2 * width_m**2))


def shaped_noise(rng: np.random.Generator, n_signals: int, n: int, spectrum) -> np.ndarray:
    """Gaussian noise (n_signals, n), float32, with amplitude spectrum `spectrum(freqs_hz)`.

    Each row has unit variance. Drawn directly in the frequency domain (complex Gaussian
    coefficients times the spectrum, one inverse FFT per row) on a fast FFT length.
    """
    n_fft = scipy.fft.next_fast_len(n, real=True)
    freqs = scipy.fft.rfftfreq(n_fft, 1.0 / EEG_SFREQ)
    gain = np.asarray(spectrum(freqs), dtype=np.float64)
    gain /= np.sqrt(np.sum(gain**2) * 2.0 / n_fft) or 1.0
    gain = (gain * np.sqrt(n_fft / 2.0)).astype(np.float32)
    out = np.empty((n_signals, n), dtype=np.float32)
    for row in range(n_signals):  # one signal at a time keeps memory at O(n)
        coefficients = rng.standard_normal((2, len(freqs)), dtype=np.float32)
        spectrum_row = (coefficients[0] + 1j * coefficients[1]) * gain
        out[row] = scipy.fft.irfft(spectrum_row, n_fft)[:n]
    return out


def _band(low: float, high: float, edge: float = 1.0):
    """Amplitude spectrum of a band with smooth (Gaussian) edges."""

    def spectrum(f: np.ndarray) -> np.ndarray:
        inside = ((f >= low) & (f <= high)).astype(float)
        below = np.exp(-((f - low) ** 2) / (2 * edge**2)) * (f < low)
        above = np.exp(-((f - high) ** 2) / (2 * edge**2)) * (f > high)
        return inside + below + above

    return spectrum


def _blinks_and_saccades(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertical (blink) and horizontal (saccade) eye signals in volts, shape (n,) each."""
    blink_times = np.flatnonzero(rng.random(n) < rng.uniform(12, 20) / 60.0 / EEG_SFREQ)
    spikes = np.zeros(n)
    spikes[blink_times] = rng.uniform(80e-6, 150e-6, len(blink_times))
    width = int(0.3 * EEG_SFREQ)
    kernel = np.sin(np.linspace(0, np.pi, width)) ** 2
    vertical = scipy.signal.oaconvolve(spikes, kernel)[:n]
    fixations = np.flatnonzero(rng.random(n) < 0.5 / EEG_SFREQ)
    gaze = rng.normal(0.0, 40e-6, len(fixations) + 1)
    horizontal = gaze[np.searchsorted(fixations, np.arange(n), side="right")]
    horizontal = scipy.ndimage.uniform_filter1d(horizontal, int(0.03 * EEG_SFREQ))
    return vertical, horizontal


def simulate_eeg(
    session: Session, body: Body, gains: np.ndarray, rng: np.random.Generator
) -> mne.io.RawArray:
    """The EEG recording of one session as an MNE `RawArray` (volts, 69 channels).

    gains : class-signal amplitude gains per block of `session.blocks`, shape
        (n_blocks, 3), from `class_gains`.
    `body` gives the EKG channel (same heart as the BIOPAC). Annotations: one per
    marker (description = marker code, duration = how long it was on).
    """
    n = session.eeg_samples
    pos = electrode_positions()
    beta = rng.uniform(1.2, 2.0)
    background = shaped_noise(
        rng, 64, n, lambda f: 1.0 / np.maximum(f, 0.5) ** (beta / 2) * (f > 0.1)
    )
    distance = np.linalg.norm(pos[:, None] - pos[None], axis=2)
    mixing = np.linalg.cholesky(np.exp(-(distance**2) / (2 * 0.03**2)) + 1e-6 * np.eye(64))
    mixing /= np.linalg.norm(mixing, axis=1, keepdims=True)
    data = (mixing.astype(np.float32) @ background) * np.float32(rng.uniform(8e-6, 14e-6))
    del background

    alpha_peak = rng.uniform(9.0, 11.5)
    alpha = shaped_noise(rng, 2, n, _band(alpha_peak - 1, alpha_peak + 1, 0.7))
    for source, centre in zip(alpha, ("O1", "O2"), strict=True):
        data += np.outer((_topography(centre, 0.05) * 10e-6).astype(np.float32), source)

    _add_class_signal(data, session.blocks, gains, rng)

    vertical, horizontal = _blinks_and_saccades(rng, n)
    blink_topo = np.exp(-np.linalg.norm(pos - pos[EEG_CHANNELS.index("FPZ")], axis=1) / 0.03)
    data += np.outer(blink_topo.astype(np.float32), vertical.astype(np.float32))
    data[[EEG_CHANNELS.index("F7"), EEG_CHANNELS.index("F8")]] += np.outer(
        np.float32([0.3, -0.3]), horizontal.astype(np.float32)
    )
    t = np.arange(n) / EEG_SFREQ
    ekg = body.ecg[_grid_index(body, n)] * 1e-3
    mastoids = [EEG_CHANNELS.index("M1"), EEG_CHANNELS.index("M2")]
    data[mastoids] += (ekg * 3e-3).astype(np.float32)
    data += (0.3e-6 * np.sin(2 * np.pi * 50.0 * t)).astype(np.float32)

    out = np.empty((len(ALL_CHANNELS), n))
    out[:64] = data
    out[64] = horizontal + 3e-6 * rng.standard_normal(n)  # HEO
    out[65] = 2.0 * vertical + 0.3 * data[EEG_CHANNELS.index("FP1")] + 3e-6 * rng.standard_normal(n)
    out[66] = ekg
    out[67] = 0.5e-3 * body.emg_a[_grid_index(body, n)] + 2e-6 * rng.standard_normal(n)
    out[68] = _trigger_channel(session, n)
    del data
    info = mne.create_info(
        list(ALL_CHANNELS), EEG_SFREQ, ["eeg"] * 64 + [kind for _, kind in EXTRA_CHANNELS]
    )
    raw = mne.io.RawArray(out, info, copy="info", verbose="error")
    raw.set_montage(_montage(), verbose="error")
    date = session.participant.session_date
    start = dt.datetime.combine(date, dt.time(), dt.UTC) + dt.timedelta(
        seconds=round(session.clocks["camera"].offset_s)
    )
    raw.set_meas_date(start)
    markers = sorted(session.blocks + session.noise, key=lambda b: b.onset_s)
    raw.set_annotations(
        mne.Annotations(
            onset=[round(b.onset_s, 3) for b in markers],
            duration=[round(b.duration_s, 3) for b in markers],
            description=[str(b.marker) for b in markers],
            orig_time=start,
        )
    )
    return raw


def _grid_index(body: Body, n: int) -> np.ndarray:
    """Indices of the body grid at EEG samples 0..n-1 (the grid is on the EEG clock)."""
    return np.rint(-body.t0_s * GRID_HZ).astype(int) + np.arange(n)


def _trigger_channel(session: Session, n: int) -> np.ndarray:
    trigger = np.zeros(n)
    for block in session.blocks + session.noise:
        i, j = session.clocks["eeg"].sample([block.onset_s, block.offset_s])
        trigger[i : max(j, i + 1)] = block.marker
    return trigger


def class_gains(blocks: list[Block], strength: float, rng: np.random.Generator) -> np.ndarray:
    """Amplitude gains per block, shape (n_blocks, 3): left alpha, right alpha, beta/gamma.

    log gain = (-0.35 valence, +0.35 valence, +0.35 arousal) * strength + N(0, 0.08).
    """
    affect = np.array([CATEGORY_AFFECT[b.category] for b in blocks]).reshape(-1, 2)
    valence, arousal = affect[:, 0] * strength, affect[:, 1] * strength
    noise = rng.normal(0.0, 0.08, (len(blocks), 3))
    return np.exp(
        np.column_stack(
            [
                -VALENCE_GAIN * valence,
                VALENCE_GAIN * valence,
                AROUSAL_GAIN * arousal,
            ]
        )
        + noise
    )


def _add_class_signal(data: np.ndarray, blocks: list[Block], gains: np.ndarray, rng) -> None:
    """Frontal alpha sources at F3/F4 and beta/gamma sources at 8 lateral sites, gated per block."""
    n = data.shape[1]
    envelopes = [block_profile(n, 0.0, blocks, list(gains[:, k]), 0.5, 1.0) for k in range(3)]
    frontal = shaped_noise(rng, 2, n, _band(8.0, 13.0))
    for source, centre, envelope in zip(frontal, ("F3", "F4"), envelopes[:2], strict=True):
        source *= envelope.astype(np.float32)
        data += np.outer((_topography(centre, 0.035) * 6e-6).astype(np.float32), source)
    fast = shaped_noise(rng, 8, n, _band(14.0, 45.0, 2.0))
    centres = ("T7", "T8", "FT7", "FT8", "C3", "C4", "F7", "F8")
    topographies = np.array([_topography(c, 0.04) for c in centres]) * 3e-6
    data += (topographies.T.astype(np.float32) @ fast) * envelopes[2].astype(np.float32)


def _montage() -> mne.channels.DigMontage:
    return mne.channels.make_dig_montage(
        ch_pos=dict(zip(EEG_CHANNELS, electrode_positions(), strict=True)), coord_frame="head"
    )


# ---------------------------------------------------------------- writing


def write_eeg(raw: mne.io.BaseRaw, folder: Path, fmt: str) -> list[Path]:
    """Write `raw` as ``Acquisition 01.<ext>`` in `folder` through MNE's exporters.

    fmt : ``set`` (EEGLAB, data inside the .set), ``edf``, ``bdf`` or ``vhdr`` (BrainVision).
    Atomic: written in a temporary folder, then moved (sidecars first, header last).
    Deterministic: the MATLAB header's creation date is replaced by a fixed text.
    Returns the written paths.
    """
    if fmt not in EEG_FILE_NAMES:
        raise ConfigError(f"unknown EEG format {fmt!r}; choose one of {sorted(EEG_FILE_NAMES)}")
    folder.mkdir(parents=True, exist_ok=True)
    name = EEG_FILE_NAMES[fmt]
    with tempfile.TemporaryDirectory(prefix=".synth-tmp-", dir=folder) as tmp:
        target = Path(tmp) / name
        if fmt == "vhdr":  # BrainVision convention: "Stimulus/S101"
            raw = raw.copy().set_annotations(
                raw.annotations.copy().rename(
                    {d: f"Stimulus/S{int(d):3d}" for d in set(raw.annotations.description)}
                )
            )
        export_fmt = {"set": "eeglab", "vhdr": "brainvision"}.get(fmt, fmt)
        mne.export.export_raw(target, raw, fmt=export_fmt, overwrite=True, verbose="error")
        if fmt == "set":
            fix_mat_header(target)
        if fmt in ("edf", "bdf"):
            _trigger_as_codes(target, fmt)
        written = sorted(Path(tmp).iterdir(), key=lambda p: (p.name == name, p.name))
        finals = []
        for path in written:
            os.replace(path, folder / path.name)
            finals.append(folder / path.name)
    return finals


def _trigger_as_codes(path: Path, fmt: str) -> None:
    """Store the EDF/BDF Trigger channel with digital value == marker code.

    MNE's EDF/BDF readers take a trigger channel's digital values (BDF: 24-bit Status
    style); the exporter would have scaled the codes into the full digital range.
    """
    import edfio

    record = edfio.read_bdf(path) if fmt == "bdf" else edfio.read_edf(path)
    trigger = record.get_signal("Trigger")
    bits = 24 if fmt == "bdf" else 16
    full = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    signal_class = edfio.BdfSignal if fmt == "bdf" else edfio.EdfSignal
    record.drop_signals(["Trigger"])
    record.append_signals(
        signal_class(
            np.rint(trigger.data),
            trigger.sampling_frequency,
            label="Trigger",
            physical_range=full,
            digital_range=full,
        )
    )
    record.write(path)
