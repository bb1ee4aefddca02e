"""mmhe.io.biopac: .mat (v5, v7.3) and .acq files, channel naming, trigger decoding."""

from __future__ import annotations

import ctypes
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
from bioread import headers as acq_headers
from hypothesis import given, settings
from hypothesis import strategies as st

from mmhe.errors import InputFileError
from mmhe.io.biopac import (
    CANONICAL_COLUMNS,
    PhysioRecording,
    canonical_channel_names,
    decode_trigger_lines,
    digital_line_bit,
    read_biopac,
    resample_signal,
)

SFREQ = 1000.0
N_SAMPLES = 20_000
DIGITAL = [f"Digital (STP Input {k})" for k in range(8)]
LABELS = [  # the 17 columns of the real AcqKnowledge export, in its order
    "PPG, X, PPGED-R",
    "RSP, X, RSPEC-R",
    "EMG A, X, EMG2-R",
    "SKT A, X, SKT2-R",
    "EDA, X, PPGED-R",
    "ECG, X, RSPEC-R",
    "EMG B, X, EMG2-R",
    "SKT B, X, SKT2-R",
    *DIGITAL,
    "ECG rate (.5 - 35 Hz)",
]
UNITS = ["Volts", "Volts", "mV", "Deg C", "microsiemens", "mV", "mV", "Deg C"]
UNITS = [*UNITS, *["Volts"] * 8, "BPM"]
# Code held from start to stop (samples). 101 -> 102 switch without idle; 77 is noise.
PLAN = [(1000, 3000, 100), (4000, 6000, 101), (6000, 8000, 102), (9000, 9500, 77)]
PLAN += [(10_000, 12_000, 148), (13_000, 15_000, 101)]
GLITCH = (16_000, 16_002, 3)  # two samples of line 3 high while idle


def planted_lines(
    plan: list[tuple[int, int, int]], n: int, *, seed: int = 5, high: float = 5.0
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Eight 0/5 V lines carrying `plan` with 0-3 samples of skew per bit and transition.

    Returns the lines, shape (n, 8), and the expected markers (sample of the first bit
    edge of the transition, code) for every transition into a non-zero code.
    """
    rng = np.random.default_rng(seed)
    code = np.zeros(n, dtype=np.int64)
    for start, stop, value in plan:
        code[start:stop] = value
    changes = np.flatnonzero(np.diff(code)) + 1
    lines = np.zeros((n, 8))
    for bit in range(8):
        lines[:, bit] = (code[0] >> bit) & 1
    expected = []
    for change in changes:
        old, new = code[change - 1], code[change]
        skew = rng.integers(0, 4, size=8)  # bits switch up to 3 samples apart
        flipped = [bit for bit in range(8) if ((old ^ new) >> bit) & 1]
        for bit in flipped:
            lines[change + skew[bit] :, bit] = (new >> bit) & 1
        if new != 0:
            expected.append((int(change + min(skew[bit] for bit in flipped)), int(new)))
    return lines * high, expected


def export_columns(seed: int = 11) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The 17 export columns (samples x channels) with planted markers and one glitch.

    Noise within each channel's physical range (skin temperature about 33 deg C, skin
    conductance about 5 uS), so the read-time checks mask nothing."""
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(N_SAMPLES, len(LABELS)))
    data[:, [3, 7]] = 33.0 + 0.5 * data[:, [3, 7]]
    data[:, 4] = 5.0 + 0.5 * data[:, 4]
    lines, expected = planted_lines(PLAN, N_SAMPLES)
    start, stop, bit = GLITCH
    lines[start:stop, bit] = 5.0
    data[:, 8:16] = lines
    return data, expected


def write_mat_v5(path: Path, data: np.ndarray, labels=LABELS, units=UNITS, **extra) -> Path:
    variables = {
        "data": data,
        "labels": np.array(labels),  # a char matrix, rows padded with spaces
        "units": np.array(units),
        "isi": 1000.0 / SFREQ,
        "isi_units": "ms",
        "start_sample": 0,
        **extra,
    }
    scipy.io.savemat(path, variables)
    return path


def _h5_char(group: h5py.Group, name: str, texts: list[str]) -> None:
    """A MATLAB char matrix (rows padded) as MATLAB v7.3 stores it: uint16, transposed."""
    width = max(len(text) for text in texts)
    codes = np.array([[ord(c) for c in text.ljust(width)] for text in texts], dtype=np.uint16)
    dataset = group.create_dataset(name, data=codes.T)
    dataset.attrs["MATLAB_class"] = np.bytes_("char")
    dataset.attrs["MATLAB_int_decode"] = np.int32(2)


def _h5_double(group: h5py.Group, name: str, value: np.ndarray) -> None:
    dataset = group.create_dataset(name, data=np.asarray(value, dtype=np.float64).T)
    dataset.attrs["MATLAB_class"] = np.bytes_("double")


def write_mat_v73(path: Path, data: np.ndarray, labels=LABELS, units=UNITS) -> Path:
    """An HDF5 file laid out as MATLAB's `save -v7.3` writes it (labels as a cell array)."""
    with h5py.File(path, "w", userblock_size=512) as mat:
        _h5_double(mat, "data", data)  # stored transposed: (channels, samples)
        refs = mat.create_group("#refs#")
        cells = []
        for index, label in enumerate(labels):
            _h5_char(refs, f"label{index}", [label])
            cells.append(refs[f"label{index}"].ref)
        cell = mat.create_dataset(
            "labels", data=np.array([cells], dtype=h5py.ref_dtype).T, dtype=h5py.ref_dtype
        )
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
        _h5_char(mat, "units", units)
        _h5_double(mat, "isi", [[1000.0 / SFREQ]])
        _h5_char(mat, "isi_units", ["ms"])
        _h5_double(mat, "start_sample", [[0.0]])
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024"
    header += b" HDF5 schema 1.00 ."
    with open(path, "r+b") as handle:
        handle.write(header.ljust(116) + b"\0" * 8 + b"\x00\x02IM")
    return path


ACQ_REVISION = 132  # AcqKnowledge 5


def _acq_struct(header_class: type, **values: object) -> ctypes.Structure:
    header = header_class.for_revision(ACQ_REVISION, "<")
    struct = header._struct_class()
    for name, value in values.items():
        setattr(struct, name, value)
    return struct


def write_acq(
    path: Path,
    channels: list[tuple[str, str, int, np.ndarray]],
    base_rate: float,
    markers: list[tuple[int, str, int, str]] = (),
) -> Path:
    """An uncompressed AcqKnowledge 5 file built from bioread's own header structures.

    channels : (name, units, frequency divider, samples at base_rate / divider).
    markers : (sample at base rate, text, channel order number or -1, style code).
    """
    graph = _acq_struct(
        acq_headers.GraphHeader,
        lVersion=ACQ_REVISION,
        nChannels=len(channels),
        dSampleTime=1000.0 / base_rate,
    )
    graph.lExtItemHeaderLen = graph.nItemHeaderLen = ctypes.sizeof(graph)
    parts = [bytes(graph)]
    for order, (name, units, divider, samples) in enumerate(channels):
        header = _acq_struct(
            acq_headers.ChannelHeader,
            nNum=order,
            szCommentText=name.encode(),
            szUnitsText=units.encode(),
            lBufLength=len(samples),
            dAmplScale=1.0,
            nChanOrder=order,
            nVarSampleDivider=divider,
        )
        header.lChanHeaderLen = ctypes.sizeof(header)
        parts.append(bytes(header))
    foreign = _acq_struct(acq_headers.ForeignHeader)
    foreign.lLength = ctypes.sizeof(foreign)
    parts.append(bytes(foreign))
    parts += [bytes(_acq_struct(acq_headers.ChannelDTypeHeader, nSize=8, nType=1))] * len(channels)
    # Interleaved samples: at base sample t, every channel whose divider divides t.
    dividers = np.array([divider for _, _, divider, _ in channels])
    n_base = max(len(samples) * divider for _, _, divider, samples in channels)
    times, owners = np.nonzero(np.arange(n_base)[:, None] % dividers[None, :] == 0)
    stream = np.empty(times.size)
    for order, (_, _, divider, samples) in enumerate(channels):
        mine = owners == order
        stream[mine] = np.asarray(samples, dtype=float)[times[mine] // divider]
    parts.append(stream.astype("<f8").tobytes())
    marker_header = _acq_struct(
        acq_headers.MarkerHeader, lMarkersExtra=len(markers) + 1, lMarkers=len(markers)
    )
    marker_header.lLength = ctypes.sizeof(marker_header)
    parts.append(bytes(marker_header))
    for sample, text, channel, style in markers:
        encoded = text.encode() + b"\0"
        item = _acq_struct(
            acq_headers.MarkerItemHeader,
            lSample=sample,
            nChannel=channel,
            sMarkerStyle=style.encode(),
            nTextLength=len(encoded),
        )
        parts.append(bytes(item) + encoded)
    parts.append(bytes(_acq_struct(acq_headers.JournalLengthHeader, lJournalDataLen=4)))
    path.write_bytes(b"".join(parts))
    return path


def assert_planted_markers(recording: PhysioRecording, expected: list[tuple[int, int]]) -> None:
    markers = recording.markers
    kept = [(sample, code) for sample, code in expected if code != 77]
    assert markers["code"].tolist() == [code for _, code in kept]
    np.testing.assert_allclose(
        markers["onset_s"], [sample / SFREQ for sample, _ in kept], atol=1.0 / SFREQ
    )
    assert markers.attrs["glitches"] == 1
    assert markers.attrs["dropped_codes"] == {77: 1}


# ------------------------------------------------------------------ .mat exports


def test_mat_v5_export(tmp_path: Path) -> None:
    data, expected = export_columns()
    recording = read_biopac(write_mat_v5(tmp_path / "Untitled1 (001).mat", data))

    assert recording.sfreq == SFREQ and recording.has_trigger_lines
    assert list(recording.signals.columns) == [
        "PPG", "RSP", "EMG_A", "SKT_A", "EDA", "ECG", "EMG_B", "SKT_B", "ECG_RATE"
    ]  # fmt: skip
    assert set(recording.signals.columns) == set(CANONICAL_COLUMNS)
    analog = [j for j, label in enumerate(LABELS) if label not in DIGITAL]
    np.testing.assert_array_equal(recording.signals.to_numpy(), data[:, analog])
    assert recording.file_units["EDA"] == "microsiemens" and recording.units["EDA"] == "uS"
    assert recording.units["ECG_RATE"] == "BPM" and recording.bad_segments.empty
    assert recording.channel_labels["EMG_B"] == "EMG B, X, EMG2-R"
    assert recording.original_rates == dict.fromkeys(CANONICAL_COLUMNS, SFREQ)
    assert recording.events.empty and list(recording.events.columns) == [
        "onset_s", "text", "type", "channel"
    ]  # fmt: skip
    assert_planted_markers(recording, expected)
    # The plan's transitions really are skewed, and without the stability rule the skew
    # would produce intermediate false codes.
    assert [code for _, code in expected] == [100, 101, 102, 77, 148, 101]
    skews = [sample - start for (sample, _), (start, _, _) in zip(expected, PLAN, strict=True)]
    assert max(skews) <= 3 and min(skews) >= 0  # first edges: 0-3 samples after the change
    lines = {k: data[:, 8 + k] for k in range(8)}
    naive = decode_trigger_lines(lines, SFREQ, min_stable_samples=1, valid=range(256))
    assert len(naive) > len(expected) + 1


def test_mat_v73_export_equals_v5(tmp_path: Path) -> None:
    data, expected = export_columns()
    v73 = read_biopac(write_mat_v73(tmp_path / "export73.mat", data))
    v5 = read_biopac(write_mat_v5(tmp_path / "export5.mat", data))

    assert h5py.is_hdf5(tmp_path / "export73.mat")
    pd.testing.assert_frame_equal(v73.signals, v5.signals)
    assert v73.units == v5.units and v73.sfreq == v5.sfreq
    pd.testing.assert_frame_equal(v73.markers, v5.markers)
    assert_planted_markers(v73, expected)


def test_mat_v5_signals_are_views_not_copies(tmp_path: Path) -> None:
    data, _ = export_columns()
    recording = read_biopac(write_mat_v5(tmp_path / "a.mat", data))

    def owner(array: np.ndarray) -> np.ndarray:
        while isinstance(array.base, np.ndarray):
            array = array.base
        return array

    owners = [owner(recording.signals[name].to_numpy()) for name in recording.signals]
    assert all(array is owners[0] for array in owners)  # all inside the one loaded array
    assert owners[0].size == data.size


def test_mat_with_cell_labels_and_start_sample(tmp_path: Path) -> None:
    data, _ = export_columns()
    cell_labels = np.empty((1, len(LABELS)), dtype=object)
    cell_labels[0, :] = LABELS
    path = write_mat_v5(tmp_path / "cells.mat", data, labels=cell_labels, start_sample=250)
    recording = read_biopac(path)
    assert list(recording.signals.columns)[:3] == ["PPG", "RSP", "EMG_A"]
    assert recording.start_sample == 250


def test_mat_without_trigger_columns(tmp_path: Path) -> None:
    data, _ = export_columns()
    analog = [j for j, label in enumerate(LABELS) if label not in DIGITAL]
    path = write_mat_v5(
        tmp_path / "no_digital.mat",
        data[:, analog],
        labels=[LABELS[j] for j in analog],
        units=[UNITS[j] for j in analog],
    )
    recording = read_biopac(path)
    assert not recording.has_trigger_lines and recording.markers.empty
    assert "no 'Digital (STP Input k)' lines" in recording.markers.attrs["message"]
    with pytest.raises(InputFileError, match=r"no_digital\.mat: no trigger columns"):
        read_biopac(path, require_trigger_lines=True)


@pytest.mark.parametrize("writer", [write_mat_v5, write_mat_v73])
def test_mat_without_data_or_labels(tmp_path: Path, writer) -> None:
    data, _ = export_columns()
    path = writer(tmp_path / "partial.mat", data)
    if writer is write_mat_v5:
        scipy.io.savemat(path, {"labels": np.array(LABELS), "isi": 1.0})
        missing = r"\['data'\]"
    else:
        with h5py.File(path, "a") as mat:
            del mat["labels"]
        missing = r"\['labels'\]"
    with pytest.raises(InputFileError, match=rf"partial\.mat: .*missing variable\(s\) {missing}"):
        read_biopac(path)


def test_mat_label_count_must_match_columns(tmp_path: Path) -> None:
    data, _ = export_columns()
    path = write_mat_v5(tmp_path / "mismatch.mat", data[:, :10])
    with pytest.raises(InputFileError, match=r"mismatch\.mat: 'data' has 10 columns"):
        read_biopac(path)


# ------------------------------------------------------------------ .acq files


def test_multi_rate_acq_with_module_names_and_events(tmp_path: Path) -> None:
    base = 2000.0
    n_base = 8000  # 4 s
    lines, expected = planted_lines([(2000, 5000, 123)], n_base)
    ramp = 2.0 + np.arange(n_base // 2) / 1000.0  # EDA at 1000 Hz: 2, 2.001, ... uS
    channels = [
        ("ECG - ECG100C", "mV", 1, np.sin(np.arange(n_base) / 50.0)),
        ("EDA100C", "microsiemens", 2, ramp),
        ("RSP100C", "Volts", 500, np.array([0.0, 4.0, -2.0, 6.0, 1.0, 3.0, 5.0, 2.0] * 2)),
        ("SKT100C", "Deg C", 4, np.full(n_base // 4, 33.0)),
        ("SKT100C", "Deg C", 4, np.full(n_base // 4, 34.0)),
        ("EMG100C", "mV", 1, np.zeros(n_base)),
        *[(name, "Volts", 1, lines[:, k]) for k, name in enumerate(DIGITAL)],
        ("Pressure", "mmHg", 1, np.full(n_base, 80.0)),
    ]
    markers = [(1000, "start of clip", -1, "flag"), (3000, "movement", 1, "defl")]
    recording = read_biopac(write_acq(tmp_path / "session.acq", channels, base, markers))

    assert recording.sfreq == base  # the highest rate
    assert list(recording.signals.columns) == [
        "ECG", "EDA", "RSP", "SKT_A", "SKT_B", "EMG_A", "Pressure"
    ]  # fmt: skip
    assert recording.original_rates == {
        "ECG": 2000.0, "EDA": 1000.0, "RSP": 4.0, "SKT_A": 500.0, "SKT_B": 500.0,
        "EMG_A": 2000.0, "Pressure": 2000.0,
    }  # fmt: skip
    assert recording.n_samples == n_base
    signals = recording.signals
    # Linear interpolation: exact at the original sample instants, a ramp stays a ramp.
    np.testing.assert_allclose(signals["EDA"][: n_base - 1], 2.0 + np.arange(n_base - 1) / 2000.0)
    np.testing.assert_array_equal(signals["RSP"][::500], channels[2][3])
    np.testing.assert_allclose(signals["RSP"][250], 2.0)  # halfway between 0 and 4
    assert (signals["SKT_A"] == 33.0).all() and (signals["SKT_B"] == 34.0).all()
    np.testing.assert_array_equal(signals["ECG"], channels[0][3])
    assert recording.units["RSP"] == "Volts" and recording.units["Pressure"] == "mmHg"
    # the EMG channel is all zeros: a flat line, masked and reported, nothing else is
    assert signals["EMG_A"].isna().all() and not signals.drop(columns="EMG_A").isna().any().any()
    bad = recording.bad_segments
    assert bad["channel"].tolist() == ["EMG_A"] and "flat line" in bad["reason"].iloc[0]
    assert recording.unknown_channels == ["Pressure"]

    assert recording.markers["code"].tolist() == [123]
    assert abs(recording.markers["onset_s"][0] - expected[0][0] / base) <= 1 / base
    assert recording.markers.attrs["glitches"] == 0
    events = recording.events
    assert events["text"].tolist() == ["start of clip", "movement"]
    np.testing.assert_allclose(events["onset_s"], [0.5, 1.5])
    assert events["type"].tolist() == ["Flag", "Default"]
    assert events["channel"].tolist() == ["", "EDA"]


def test_acq_resampled_to_a_chosen_rate(tmp_path: Path) -> None:
    t = np.arange(4000) / 2000.0
    channels = [
        ("ECG100C", "mV", 1, np.sin(2 * np.pi * 3.0 * t)),
        ("RSP100C", "Volts", 2, np.sin(2 * np.pi * 0.5 * t[::2])),
    ]
    recording = read_biopac(write_acq(tmp_path / "r.acq", channels, 2000.0), sfreq=500.0)
    assert recording.sfreq == 500.0 and recording.n_samples == 1000
    expected = np.sin(2 * np.pi * 3.0 * np.arange(1000) / 500.0)
    np.testing.assert_allclose(recording.signals["ECG"][50:-50], expected[50:-50], atol=1e-3)
    assert not recording.has_trigger_lines


def test_truncated_acq(tmp_path: Path) -> None:
    channels = [("ECG100C", "mV", 1, np.zeros(5000)), ("EDA100C", "uS", 1, np.zeros(5000))]
    path = write_acq(tmp_path / "cut.acq", channels, 1000.0)
    path.write_bytes(path.read_bytes()[:20_000])
    with pytest.raises(InputFileError, match=r"cut\.acq: cannot be read as an AcqKnowledge"):
        read_biopac(path)


# ------------------------------------------------------------------ naming


def test_module_names_are_recognised() -> None:
    assert canonical_channel_names(["ECG100C", "RSP100C", "GSR100C", "PPG100C"]) == [
        "ECG", "RSP", "EDA", "PPG"
    ]  # fmt: skip
    assert canonical_channel_names(["ERS100C"]) == ["ECG"]
    assert canonical_channel_names(["EKG"]) == ["ECG"]
    assert canonical_channel_names(["RESP"]) == ["RSP"]
    assert canonical_channel_names(["EDA100C"]) == ["EDA"]
    assert canonical_channel_names(["SKT100C", "EMG100C", "SKT100C", "EMG100C"]) == [
        "SKT_A", "EMG_A", "SKT_B", "EMG_B"
    ]  # fmt: skip
    # Written letters win; unlettered channels of the kind take the next free letter.
    assert canonical_channel_names(["EMG B, X, EMG2-R", "EMG100C"]) == ["EMG_B", "EMG_A"]
    assert canonical_channel_names(["ECG - ECG100C", "ECG rate (.5 - 35 Hz)"]) == [
        "ECG", "ECG_RATE"
    ]  # fmt: skip
    # two raw channels of one role: the first keeps the role's name
    assert canonical_channel_names(["ECG100C", "EKG"]) == ["ECG", "ECG_2"]
    assert canonical_channel_names(["Custom, X, RSPEC-R", "Custom, X, RSPEC-R"]) == [
        "Custom, X, RSPEC-R", "Custom, X, RSPEC-R (2)"
    ]  # fmt: skip


def test_digital_line_labels() -> None:
    assert [digital_line_bit(label) for label in DIGITAL] == list(range(8))
    assert digital_line_bit("ECG rate (.5 - 35 Hz)") is None
    assert digital_line_bit("PPG, X, PPGED-R") is None


# ------------------------------------------------------------------ decoding


def _lines(code: np.ndarray) -> dict[int, np.ndarray]:
    return {bit: ((code >> bit) & 1) * 5.0 for bit in range(8)}


def test_identical_codes_across_a_dropout_are_one_marker() -> None:
    code = np.zeros(3000, dtype=np.int64)
    code[500:2500] = 101
    code[1200:1202] = 0  # a 2-sample dropout of every line: a glitch inside the code
    markers = decode_trigger_lines(_lines(code), SFREQ)
    assert markers["code"].tolist() == [101] and markers["onset_s"].tolist() == [0.5]
    assert markers.attrs["glitches"] == 1


def test_short_codes_are_glitches_and_min_stable_is_respected() -> None:
    code = np.zeros(3000, dtype=np.int64)
    code[500:504] = 120  # 4 samples: shorter than 5 ms at 1 kHz
    code[1000:1010] = 130
    markers = decode_trigger_lines(_lines(code), SFREQ)
    assert markers["code"].tolist() == [130] and markers.attrs["glitches"] == 1
    assert decode_trigger_lines(_lines(code), SFREQ, min_stable_samples=3)["code"].tolist() == [
        120,
        130,
    ]
    assert decode_trigger_lines(_lines(code), SFREQ, min_stable_samples=20).empty


def test_onset_is_the_first_appearance_of_the_final_code() -> None:
    code = np.zeros(1000, dtype=np.int64)
    code[100:102] = 101  # appears, bounces to 100 for one sample, then holds
    code[102] = 100
    code[103:600] = 101
    markers = decode_trigger_lines(_lines(code), SFREQ)
    assert markers["onset_s"].tolist() == [0.1] and markers.attrs["glitches"] == 0


@settings(max_examples=60, deadline=None)
@given(
    segments=st.lists(st.tuples(st.integers(0, 255), st.integers(10, 40)), min_size=1, max_size=12),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_skewed_code_sequence_decodes_exactly(
    segments: list[tuple[int, int]], seed: int
) -> None:
    """Codes held >= 10 samples with up to 3 samples of skew per bit decode exactly."""
    plan, start = [], 20
    for code, duration in segments:
        plan.append((start, start + duration, code))
        start += duration
    lines, expected = planted_lines(plan, start + 20, seed=seed)
    markers = decode_trigger_lines(dict(enumerate(lines.T)), SFREQ, valid=range(1, 256))
    onsets = np.rint(markers["onset_s"].to_numpy() * SFREQ).astype(int).tolist()
    assert list(zip(onsets, markers["code"].tolist(), strict=True)) == expected
    assert markers.attrs["glitches"] == 0


def test_threshold_is_half_the_high_level() -> None:
    code = np.zeros(1000, dtype=np.int64)
    code[100:600] = 105
    lines = {bit: line / 5.0 * 3.3 + 0.2 for bit, line in _lines(code).items()}  # 0.2/3.5 V
    assert decode_trigger_lines(lines, SFREQ)["code"].tolist() == [105]


# ------------------------------------------------------------------ resampling


def test_resample_signal_methods() -> None:
    x = np.sin(2 * np.pi * 10.0 * np.arange(2000) / 1000.0)
    same = resample_signal(x, 1000.0, 1000.0)
    assert np.shares_memory(same, x)
    down = resample_signal(x, 1000.0, 250.0)
    assert down.shape == (500,)
    np.testing.assert_allclose(
        down[20:-20], np.sin(2 * np.pi * 10.0 * np.arange(500) / 250.0)[20:-20], atol=2e-3
    )
    up = resample_signal(np.array([0.0, 1.0, 3.0]), 4.0, 16.0)
    np.testing.assert_allclose(up, [0, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3, 3, 3])


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("name", ["gone.mat", "gone.acq"])
def test_missing_file(tmp_path: Path, name: str) -> None:
    with pytest.raises(InputFileError, match=rf"{name.replace('.', '[.]')}: file not found"):
        read_biopac(tmp_path / name)


def test_unsupported_extension(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"physio\.csv: unsupported BIOPAC"):
        read_biopac(tmp_path / "physio.csv")


@pytest.mark.parametrize("name", ["garbage.mat", "garbage.acq"])
def test_corrupt_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(InputFileError, match=rf"{name.replace('.', '[.]')}: cannot be read"):
        read_biopac(path)


def test_truncated_mat_files(tmp_path: Path) -> None:
    data, _ = export_columns()
    for path in (
        write_mat_v5(tmp_path / "t5.mat", data),
        write_mat_v73(tmp_path / "t73.mat", data),
    ):
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        with pytest.raises(InputFileError, match=rf"{path.stem}\.mat: cannot be read"):
            read_biopac(path)


# ------------------------------------------------------------------ roles and checks

BIOREAD_DATA = Path(__file__).parent / "data" / "bioread"  # real AcqKnowledge files, MIT


def test_two_eda_channels_the_raw_one_wins_and_the_choice_is_recorded() -> None:
    recording = read_biopac(BIOREAD_DATA / "physio-5.0.1-c.acq")
    assert list(recording.signals.columns) == ["EDA_DIFF", "ECG", "RSP", "EDA"]
    assert recording.channel_labels["EDA"] == "EDA - GSR100C"
    assert recording.chosen == {"ECG": "ECG", "RSP": "RSP", "EDA": "EDA"}
    assert recording.roles["EDA_DIFF"] == "EDA" and not recording.unknown_channels
    assert recording.channel_notes == [
        "EDA: 2 channels fit; using raw 'EDA - GSR100C' as EDA, keeping "
        "'EDA filtered, differentiated' as EDA_DIFF"
    ]
    assert recording.original_rates == {
        "EDA_DIFF": 2000.0, "ECG": 1000.0, "RSP": 3.90625, "EDA": 2000.0
    }  # fmt: skip
    assert recording.bad_segments.empty


def test_garbage_tail_of_a_real_acqknowledge_38_file_is_masked_in_every_channel() -> None:
    recording = read_biopac(BIOREAD_DATA / "physio-3.8.1-c.acq")  # last 0.2 s: up to 1e306
    signals = recording.signals
    tail = signals.index >= round(61.696 * recording.sfreq)
    assert signals.loc[tail, ["EDA", "ECG", "EDA_DIFF"]].isna().all().all()
    assert not signals.loc[~tail].isna().any().any()
    bad = recording.bad_segments
    assert set(bad["channel"]) == {"EDA", "ECG", "EDA_DIFF"} and bad["masked"].all()
    assert any("outside 0.05-100 uS" in reason for reason in bad["reason"])
    assert any(reason.startswith("garbage tail") for reason in bad["reason"])
    assert np.nanmax(np.abs(signals.to_numpy())) < 200


def test_eeg_auxiliary_and_module_labels_have_roles() -> None:
    from mmhe.io.channel_roles import assign_channels, channel_role

    assert [channel_role(x).name for x in ("HEO", "VEO", "EKG", "EMG", "Trigger")] == [
        "HEO", "VEO", "ECG", "EMG", "TRIGGER"
    ]  # fmt: skip
    assert channel_role("FP1") is None and channel_role("CH4 Input") is None
    only_derived = assign_channels(["EDA filtered, differentiated", "EKG - ERS100C"])
    assert "EDA" not in only_derived.chosen
    assert only_derived.notes == [
        "EDA: only derived channel(s) 'EDA filtered, differentiated' (EDA_DIFF); "
        "EDA features need the raw signal"
    ]


def test_a_replaced_role_table_is_used(tmp_path: Path) -> None:
    table = tmp_path / "roles.csv"
    table.write_text('pattern,role,name,raw\n"^pressure",PPG,PPG,1\n"gsr",EDA,EDA,1\n')
    data = np.column_stack([np.full(4000, 80.0) + np.sin(np.arange(4000)), np.full(4000, 5.0)])
    path = write_mat_v5(tmp_path / "r.mat", data, labels=["Pressure", "GSR"], units=["V", "uS"])
    recording = read_biopac(path, roles=table)
    assert list(recording.signals.columns) == ["PPG", "EDA"]
    bad = tmp_path / "bad.csv"
    bad.write_text("pattern,role,name,raw\nx,HEART,ECG,1\n")
    with pytest.raises(InputFileError, match="role 'HEART'"):
        read_biopac(path, roles=bad)


def test_implausible_values_are_masked_and_reported(tmp_path: Path) -> None:
    """Negative conductance, a flat ECG, a NaN run, a Fahrenheit skin temperature."""
    n = 20_000
    t = np.arange(n) / SFREQ
    eda = 5.0 + 0.1 * np.sin(t)
    eda[2000:3000] = -0.5  # negative skin conductance
    ecg = np.sin(2 * np.pi * 1.2 * t)
    ecg[8000:10_000] = 0.25  # 2 s flat line (lead off)
    ppg = np.sin(2 * np.pi * 1.1 * t)
    ppg[12_000:12_500] = np.nan
    skt_f = 92.0 + 0.01 * np.sin(t)  # 33.3 deg C written in deg F
    path = write_mat_v5(
        tmp_path / "bad.mat",
        np.column_stack([eda, ecg, ppg, skt_f]),
        labels=["EDA - GSR100C", "EKG - ERS100C", "PPG100C", "SKT100C"],
        units=["microsiemens", "mV", "Volts", "Deg F"],
    )
    recording = read_biopac(path)
    signals, bad = recording.signals, recording.bad_segments
    assert signals["EDA"].isna().sum() == 1000 and signals["EDA"].min() > 4.8
    assert signals["ECG"].isna().sum() == 2000
    assert signals["PPG"].isna().sum() == 500
    assert signals["SKT_A"].to_numpy() == pytest.approx((skt_f - 32.0) * 5.0 / 9.0)
    assert recording.units["SKT_A"] == "degC" and recording.file_units["SKT_A"] == "Deg F"
    reasons = dict(zip(bad["channel"], bad["reason"], strict=True))
    assert reasons["EDA"] == "outside 0.05-100 uS"
    assert reasons["ECG"] == "flat line (>= 1 s)"
    assert reasons["PPG"].startswith("non-finite")
    eda_span = bad.set_index("channel").loc["EDA", ["start_s", "stop_s"]].astype(float)
    np.testing.assert_allclose(eda_span, [2.0, 3.0])


def test_validate_reports_masked_segments_per_file(store_tiny, synth_tiny) -> None:
    """The synthetic twin writes a garbage tail in some BIOPAC files: `mmhe validate`
    lists it per file, and the store keeps it masked."""
    import json

    from mmhe.store.validate import validate_store

    truth = json.loads((synth_tiny / "ground_truth.json").read_text())
    garbled = []
    for person in truth["participants"]:
        mat = scipy.io.loadmat(synth_tiny / person["folder"] / "BIOPAC" / "Untitled1 (001).mat")
        if np.abs(mat["data"][-200:, :8]).max() > 1e300:
            garbled.append(person["folder"])
    assert garbled  # the tiny twin has at least one
    report, problems = validate_store(store_tiny)
    bad = [p for p in problems if p["code"] == "physio_bad_segment"]
    assert len({p["subject_id"] for p in bad}) == len(garbled)
    assert all(p["message"].startswith("Untitled1 (001).mat: ") for p in bad)
    assert any("garbage tail" in p["message"] for p in bad)
    assert (report.set_index("subject_id").loc["TOTAL", "warnings"]) >= len(bad)
