"""Synthetic BIOPAC MP160 recording, written as AcqKnowledge's MATLAB export.

The file ``Untitled1 (001).mat`` (MATLAB v5, uncompressed) holds `data` (samples x 17,
float64), `labels` and `units` (char matrices, one row per column), `isi` (1),
`isi_units` (``ms``) and `start_sample` (0). Columns, in order, as in data-format.md:
PPG, RSP, EMG A, SKT A, EDA, ECG, EMG B, SKT B, the eight digital STP inputs (bit i of
the marker on the trigger line, 0 or 5 V, each bit rising and falling 1-3 samples
after the trigger: a little bit skew) and the heart rate computed from the ECG.

Like real recordings, some participants' files (`Body.eda_derivative`) carry an 18th
channel "EDA filtered, differentiated" (uS/s, an AcqKnowledge calculation channel), and
some (`Body.garbage_tail`) end in 0.2 s of garbage on every analog channel (held values
up to 1e306, as AcqKnowledge 3.8 files do); the digital lines stay clean.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.io
from scipy.ndimage import uniform_filter1d

from mmhe.io.biopac import MMHE_EXPORT_COLUMNS
from mmhe.synth.design import BIOPAC_SFREQ, Session
from mmhe.synth.files import fix_mat_header, write_atomic
from mmhe.synth.physio import GRID_HZ, Body

BIOPAC_FILE_NAME = "Untitled1 (001).mat"
BIOPAC_COLUMNS = MMHE_EXPORT_COLUMNS
BIOPAC_UNITS: tuple[str, ...] = (
    "Volts",
    "Volts",
    "mV",
    "Deg C",
    "microsiemens",
    "mV",
    "mV",
    "Deg C",
    *("Volts",) * 8,
    "BPM",
)
_BODY_COLUMNS = ("ppg", "rsp", "emg_a", "skt_a", "eda", "ecg", "emg_b", "skt_b")
DIGITAL_HIGH_V = 5.0


EDA_DERIVATIVE_LABEL = "EDA filtered, differentiated"
GARBAGE_TAIL_S = 0.2


class SimulatedBiopac(NamedTuple):
    """The export's `data` (n_samples x channels), its `labels` and `units`."""

    data: np.ndarray
    labels: tuple[str, ...]
    units: tuple[str, ...]


def simulate_biopac(session: Session, body: Body, rng: np.random.Generator) -> SimulatedBiopac:
    """The BIOPAC export of one session: data shape (n_samples, 17 or 18), float64.

    Analogue columns are the body signals read at the BIOPAC clock's sample times.
    """
    clock = session.clocks["biopac"]
    n = session.biopac_samples
    eeg_t = clock.eeg_time(np.arange(n) / BIOPAC_SFREQ)
    data = np.zeros((n, len(BIOPAC_COLUMNS)))
    for column, name in enumerate(_BODY_COLUMNS):
        data[:, column] = body.sample(name, eeg_t)
    nearest = np.clip(np.rint((eeg_t - body.t0_s) * GRID_HZ).astype(int), 0, body.n - 1)
    data[:, -1] = body.heart_rate[nearest]  # a step function: no interpolation
    data[:, 8:16] = digital_lines(session, n, rng)
    labels, units = BIOPAC_COLUMNS, BIOPAC_UNITS
    if body.eda_derivative:
        smooth = uniform_filter1d(data[:, 4], max(1, round(0.1 * BIOPAC_SFREQ)))
        data = np.column_stack([data, np.gradient(smooth) * BIOPAC_SFREQ])
        labels, units = (*labels, EDA_DERIVATIVE_LABEL), (*units, "microsiemens/sec")
    if body.garbage_tail:
        _garble_tail(data, [j for j in range(data.shape[1]) if not 8 <= j < 16], rng)
    return SimulatedBiopac(data, labels, units)


def _garble_tail(data: np.ndarray, columns: list[int], rng: np.random.Generator) -> None:
    """Overwrite the last `GARBAGE_TAIL_S` of `columns` with held garbage (in place)."""
    n_tail = min(round(GARBAGE_TAIL_S * BIOPAC_SFREQ), data.shape[0])
    start = data.shape[0] - n_tail
    for j in columns:
        values = rng.choice([-1e306, 1e306, 6e-260, -45.5, 28.8, 0.158], size=n_tail // 4 + 1)
        data[start:, j] = np.repeat(values, 4)[:n_tail]


def digital_lines(session: Session, n: int, rng: np.random.Generator) -> np.ndarray:
    """The eight STP inputs, shape (n, 8): bit i of each marker, 0 / 5 V.

    Each bit's edges come 1-3 samples after the trigger, independently (bit skew).
    """
    clock = session.clocks["biopac"]
    lines = np.zeros((n, 8))
    for block in session.blocks + session.noise:
        start, stop = clock.sample([block.onset_s, block.offset_s])
        for bit in range(8):
            if block.marker >> bit & 1:
                on, off = start + rng.integers(1, 4), stop + rng.integers(1, 4)
                lines[max(on, 0) : min(max(off, on + 1), n), bit] = DIGITAL_HIGH_V
    return lines


def _char_matrix(texts: tuple[str, ...]) -> np.ndarray:
    width = max(len(t) for t in texts)
    return np.array([t.ljust(width) for t in texts])


def write_biopac(export: SimulatedBiopac | np.ndarray, path: Path) -> Path:
    """Write an export (or a bare n x 17 matrix) as an AcqKnowledge-style MATLAB v5 file
    (atomic, deterministic)."""
    if not isinstance(export, SimulatedBiopac):
        export = SimulatedBiopac(np.asarray(export), BIOPAC_COLUMNS, BIOPAC_UNITS)
    content = {
        "data": np.ascontiguousarray(export.data, dtype=np.float64),
        "labels": _char_matrix(export.labels),
        "units": _char_matrix(export.units),
        "isi": np.array([[1000.0 / BIOPAC_SFREQ]]),
        "isi_units": "ms",
        "start_sample": np.array([[0.0]]),
    }

    def write(tmp: Path) -> None:
        scipy.io.savemat(tmp, content, do_compression=False, oned_as="column")
        fix_mat_header(tmp)

    return write_atomic(path, write)
