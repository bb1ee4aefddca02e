"""XDF (Lab Streaming Layer) recordings: real example files, planted clocks, LSL round trip."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from mmhe.errors import InputFileError
from mmhe.io.eeg import eeg_markers
from mmhe.io.xdf import read_xdf, read_xdf_eeg, read_xdf_physio, xdf_alignment_rows, xdf_markers
from mmhe.sync import align
from xdf_writer import Stream, write_xdf

XDF = Path(__file__).resolve().parents[2] / "shared" / "data" / "xdf"
if not XDF.is_dir():  # a worktree at /work/wt/NAME, or a clone at /work/main
    XDF = Path("/work/shared/data/xdf")


def test_minimal_file_streams_values_and_clock_offset():
    recording = read_xdf(XDF / "minimal.xdf")
    assert [(s.name, s.type, s.n_samples) for s in recording.streams] == [
        ("SendDataC", "EEG", 9),
        ("SendDataString", "StringMarker", 9),
    ]
    eeg = recording.stream("SendDataC")
    np.testing.assert_array_equal(eeg.values()[:2], [[192, 255, 238], [12, 22, 32]])
    # the file's two clock-offset measurements say -0.1 s: stamps 5.1 .. 5.9 become 5.0 .. 5.8
    np.testing.assert_allclose(eeg.time_stamps, 5.0 + 0.1 * np.arange(9), atol=1e-9)
    assert eeg.clock_offset_ms == pytest.approx(-100.0)
    table = recording.alignment()
    assert table["n_samples"].tolist() == [9, 9] and table["problem"].isna().all()
    markers = xdf_markers(recording, valid=range(1000))
    assert markers.empty and markers.attrs["ignored"]["Hello"] == 2  # words, not codes


def test_clock_reset_is_handled_per_segment():
    recording = read_xdf(XDF / "clock_resets.xdf")
    assert len(recording.streams) == 2
    markers, eeg = recording.stream("MyMarkerStream"), recording.stream("BioSemi")
    assert (markers.n_samples, eeg.n_samples) == (175, 27815)
    assert markers.clock_segments == eeg.clock_segments == 2
    assert sum("clock reset" in p for p in recording.problems) == 2
    # the raw clocks jump by ~650,000 s at the reset; corrected, both streams share one
    # monotonic time line and every marker falls inside the EEG's span
    assert np.all(np.diff(eeg.time_stamps) > 0)
    assert eeg.time_stamps[0] - 5 < markers.time_stamps.min()
    assert markers.time_stamps.max() < eeg.time_stamps[-1] + 5
    assert (recording.alignment()["clock_segments"] == 2).all()


def test_empty_streams_are_reported_not_dropped():
    recording = read_xdf(XDF / "empty_streams.xdf")
    table = recording.alignment()
    assert len(table) == 4
    empty = table[table["n_samples"] == 0]
    assert sorted(empty["stream"]) == [
        "Empty data stream: test stream 0 counter",
        "Empty marker stream: test stream 0 counter",
    ]
    assert (empty["problem"] == "empty stream: no samples").all()
    assert sum("empty stream" in p for p in recording.problems) == 2
    with pytest.raises(InputFileError, match="no EEG stream"):
        read_xdf_eeg(XDF / "empty_streams.xdf")


# planted session: EEG, physiology and a marker stream on three clocks
EEG_RATE, EEG_DRIFT_PPM, EEG_OFFSET, JITTER_S = 500.0, 30.0, 12.345, 0.2e-3
PHYSIO_RATE, PHYSIO_OFFSET, MARKER_OFFSET = 1000.0, 7.5, -3.2
MARKER_TIMES = 1000.0 + np.array([0.1, 0.9, 1.5, 4.0, 9.25, 15.5])  # recorder's LSL clock
MARKER_CODES = [101, 102, 103, 77, 104, 105]


def planted_session(path: Path, duration_s: float = 40.0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t_start = 999.5  # recorder clock when the devices start
    true_rate = EEG_RATE * (1 + EEG_DRIFT_PPM * 1e-6)
    n = int(duration_s * EEG_RATE)
    eeg_stamps = (t_start - EEG_OFFSET) + np.arange(n) / true_rate + rng.normal(0, JITTER_S, n)
    eeg_uv = rng.normal(0, 10, (n, 4)).astype(np.float32)
    m = int(duration_s * PHYSIO_RATE)
    physio_stamps = (t_start - PHYSIO_OFFSET) + np.arange(m) / PHYSIO_RATE
    physio = np.column_stack([np.sin(np.arange(m) / 100), np.full(m, 2.0), np.zeros(m)])

    def offsets(offset: float, clock_start: float) -> list[tuple[float, float]]:
        when = clock_start + np.arange(0, duration_s, 2.0)
        return [(float(w), offset + float(rng.normal(0, 10e-6))) for w in when]

    streams = [
        Stream("ActiChamp", "EEG", "float32", EEG_RATE, eeg_stamps, eeg_uv,
               offsets(EEG_OFFSET, t_start - EEG_OFFSET), ["FP1", "FPZ", "FP2", "CZ"],
               ["microvolts"] * 4),
        Stream("BIOPAC MP160", "Physio", "double64", PHYSIO_RATE, physio_stamps, physio,
               offsets(PHYSIO_OFFSET, t_start - PHYSIO_OFFSET), ["PPG", "EDA", "ECG"],
               ["V", "uS", "mV"]),
        Stream("Stimuli", "Markers", "string", 0.0, MARKER_TIMES - MARKER_OFFSET,
               [str(c) for c in MARKER_CODES], offsets(MARKER_OFFSET, t_start - MARKER_OFFSET)),
    ]  # fmt: skip
    return write_xdf(path, streams)


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    return planted_session(tmp_path_factory.mktemp("xdf") / "session.xdf")


def test_markers_land_on_the_eeg_sample_of_their_lsl_time(session):
    raw = read_xdf_eeg(session)
    assert raw.ch_names == ["FP1", "FPZ", "FP2", "CZ"] and raw.info["sfreq"] == EEG_RATE
    recording = read_xdf(session)
    np.testing.assert_allclose(
        raw.get_data()[:, :5], recording.stream("ActiChamp").values()[:5].T * 1e-6, rtol=1e-6
    )
    markers = eeg_markers(raw)
    assert markers["code"].tolist() == [101, 102, 103, 104, 105]
    assert markers.attrs["dropped_codes"] == {77: 1}
    valid = np.array([c != 77 for c in MARKER_CODES])
    t_start_eeg = 999.5  # sample 0 on the recorder clock; the EEG clock runs 30 ppm fast
    expected = (MARKER_TIMES[valid] - t_start_eeg) * (1 + EEG_DRIFT_PPM * 1e-6)
    np.testing.assert_allclose(markers["onset_s"], expected, atol=1e-4)  # within 0.1 ms


def test_jitter_and_offsets_are_measured_per_stream(session):
    table = read_xdf(session).alignment().set_index("stream")
    eeg = table.loc["ActiChamp"]
    # |N(0, 0.2 ms)| has median 0.135 ms; its max over 20,000 samples is ~0.8 ms
    assert 0.12 < eeg["jitter_ms_median"] < 0.15 and 0.5 < eeg["jitter_ms_max"] < 1.2
    assert eeg["effective_srate"] == pytest.approx(EEG_RATE * (1 + 30e-6), rel=2e-6)
    assert eeg["clock_offset_ms"] == pytest.approx(EEG_OFFSET * 1e3, abs=0.1)
    assert table["offset_residual_ms_max"].max() < 0.05  # planted 10 us scatter
    assert table.loc["BIOPAC MP160", "jitter_ms_max"] < 1e-3  # no jitter planted
    rows = {row["device"]: row for row in xdf_alignment_rows(session)}
    assert rows["lsl:ActiChamp"]["offset_s"] == 0.0
    assert rows["lsl:BIOPAC MP160"]["drift_ppm"] == pytest.approx(30.0, abs=1.0)


def test_physiology_stream_aligns_to_the_eeg_at_sub_millisecond(session):
    physio = read_xdf_physio(session)
    assert list(physio.signals.columns) == ["PPG", "EDA", "ECG"] and physio.sfreq == PHYSIO_RATE
    assert physio.markers["code"].tolist() == [101, 102, 103, 104, 105]
    fit = align(eeg_markers(read_xdf_eeg(session)), physio.markers)
    assert fit.n_matched == 5
    assert fit.drift_ppm == pytest.approx(EEG_DRIFT_PPM, abs=1.0)
    assert fit.offset_s == pytest.approx(0.0, abs=1e-4)  # both start at 999.5 on LSL's clock
    assert fit.residual_ms_max < 0.1


def test_lsl_outlet_to_inlet_round_trip_on_localhost(tmp_path):
    import pylsl

    from mmhe.record.lsl import LSLPublisher
    from mmhe.record.triggers import open_trigger

    publisher = LSLPublisher(150.0, tmp_path, name=f"mmhe-test-{time.monotonic_ns()}")
    markers_name, frames_name = publisher.names
    inlets = {}
    for name in (markers_name, frames_name):
        found = pylsl.resolve_byprop("name", name, minimum=1, timeout=10)
        assert found, f"LSL stream {name} not resolved on localhost"
        inlets[name] = pylsl.StreamInlet(found[0])
        inlets[name].open_stream(timeout=10)
    trigger = open_trigger(f"lsl:{markers_name}")
    time.sleep(0.5)  # let the inlets connect before pushing
    now = time.monotonic()
    publisher.push_marker(112, now)
    for k in range(5):
        publisher.push_frame(k, k, 112, now + k / 150.0)
    sample, stamp = inlets[markers_name].pull_sample(timeout=5)
    assert sample == [112]
    assert stamp == pytest.approx(now + publisher.offset_s, abs=1e-9)
    frames, stamps = [], []
    deadline = time.monotonic() + 5
    while len(frames) < 5 and time.monotonic() < deadline:
        chunk, chunk_stamps = inlets[frames_name].pull_chunk(timeout=0.5)
        frames += chunk
        stamps += chunk_stamps
    assert frames == [[k, k, 112] for k in range(5)]
    np.testing.assert_allclose(np.diff(stamps), 1 / 150.0, atol=1e-9)
    deadline = time.monotonic() + 5
    while trigger.read() != 112 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert trigger.read() == 112  # the LSL trigger source sees the marker
    assert trigger.read(at=now - 0.01) == 0  # ... from its time stamp on, not before
    assert trigger.read(at=now + 0.001) == 112
    info = inlets[frames_name].info(timeout=5)
    assert info.type() == "FrameCounter" and info.nominal_srate() == 150.0
    trigger.close()
    publisher.close()
