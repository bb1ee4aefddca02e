"""Synthetic BIOPAC MP160 recording, written as AcqKnowledge's MATLAB export.

The file ``Untitled1 (001).mat`` (MATLAB v5, uncompressed) holds `data` (samples x 17,
float64), `labels` and `units` (char matrices, one row per column), `isi` (1),
`isi_units` (``ms``) and `start_sample` (0). Columns, in order, as in data-format.md:
PPG, RSP, EMG A, SKT A, EDA, ECG, EMG B, SKT B, the eight digital STP inputs (bit i of
the marker on the trigger line, 0 or 5 V, each bit rising and falling 1-3 samples
after the trigger: a little bit skew) and the heart rate computed from the ECG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

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


def simulate_biopac(session: Session, body: Body, rng: np.random.Generator) -> np.ndarray:
    """The BIOPAC data matrix of one session, shape (n_samples, 17), float64.

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
    return data


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


def write_biopac(data: np.ndarray, path: Path) -> Path:
    """Write `data` (n x 17) as an AcqKnowledge-style MATLAB v5 export (atomic, deterministic)."""
    content = {
        "data": np.ascontiguousarray(data, dtype=np.float64),
        "labels": _char_matrix(BIOPAC_COLUMNS),
        "units": _char_matrix(BIOPAC_UNITS),
        "isi": np.array([[1000.0 / BIOPAC_SFREQ]]),
        "isi_units": "ms",
        "start_sample": np.array([[0.0]]),
    }

    def write(tmp: Path) -> None:
        scipy.io.savemat(tmp, content, do_compression=False, oned_as="column")
        fix_mat_header(tmp)

    return write_atomic(path, write)
