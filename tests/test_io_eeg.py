"""mmhe.io.eeg: every EEG format read through MNE, channel typing, montage and markers."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import mne
import numpy as np
import pyedflib
import pytest
import scipy.io

from mmhe.errors import InputFileError
from mmhe.io.eeg import EXTRA_CHANNELS, NEUROSCAN_64, eeg_markers, read_eeg

SFREQ = 1000.0
N_TIMES = 4000
CHANNELS = [*NEUROSCAN_64, *EXTRA_CHANNELS]
TYPES = ["eeg"] * 64 + ["eog", "eog", "ecg", "emg", "stim"]
# (onset s, description): 77 and 88 are device noise, "boundary" is not a marker.
ANNOTATIONS = [
    (0.5, "101"),
    (1.25, "77"),
    (2.0, "102"),
    (2.6, "88"),
    (3.1, "148"),
    (3.5, "boundary"),
]
PYEDFLIB_DATA = Path(pyedflib.__file__).parent / "tests" / "data"
# MNE's EEGLAB reader rightly warns about the "boundary" annotation planted above.
BOUNDARY_WARNING = "ignore:The data contains 'boundary' events:RuntimeWarning"
pytestmark = pytest.mark.filterwarnings(BOUNDARY_WARNING)


def _synthetic_raw(*, trigger: np.ndarray | None = None, annotate: bool = True) -> mne.io.Raw:
    """69 channels as recorded (64 EEG + HEO VEO EKG EMG Trigger), volts, seeded noise."""
    rng = np.random.default_rng(7)
    data = rng.normal(0.0, 20e-6, (len(CHANNELS), N_TIMES))
    data[-1] = 0.0 if trigger is None else trigger
    raw = mne.io.RawArray(data, mne.create_info(CHANNELS, SFREQ, TYPES), verbose="error")
    if annotate:
        onsets, descriptions = zip(*ANNOTATIONS, strict=True)
        raw.set_annotations(mne.Annotations(list(onsets), 0.0, list(descriptions)))
    return raw


def _export(raw: mne.io.BaseRaw, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pybv: "Converting to float32"
        mne.export.export_raw(path, raw, overwrite=True, verbose="error")
    return path


def _move_data_to_fdt(set_path: Path) -> Path:
    """Store an exported .set's data in a separate .fdt, as EEGLAB's pop_saveset does."""
    mat = scipy.io.loadmat(set_path, appendmat=False)
    variables = {k: v for k, v in mat.items() if not k.startswith("__")}
    fdt = set_path.with_suffix(".fdt")
    # .fdt: float32, (nbchan x pnts) column-major = all channels of sample 1, then 2, ...
    np.asarray(variables["data"], dtype="<f4").T.tofile(fdt)
    variables["data"] = fdt.name
    variables["datfile"] = fdt.name
    scipy.io.savemat(set_path, variables, appendmat=False)
    return fdt


def _write_curry8(path: Path, data_uv: np.ndarray, events: list[tuple[int, int]]) -> Path:
    """A minimal Curry 8 recording: float32 .cdt, .cdt.dpa header, .cdt.ceo events."""
    n_channels, n_times = data_uv.shape
    np.ascontiguousarray(data_uv.T, dtype="<f4").tofile(path)  # sample-major (SAMP order)
    labels = "\n".join(CHANNELS)
    sensors = "\n".join(f"{i}\t0\t0" for i in range(n_channels))
    Path(f"{path}.dpa").write_text(
        "DATA_PARAMETERS START\n"
        "   DataGuid             = {0B86B22B-1A49-411A-9657-4A4BDA3D3ED8}\n"
        "   DataByteOrder        = INTEL\n   DataSampOrder        = SAMP\n"
        "   AmplifierInfo        = \n   FileVersion          =  800\n"
        "   DataFormat           =  6\n"
        f"   NumSamples           =  {n_times}\n   NumTrials            =  1\n"
        f"   NumChannels          =  {n_channels}\n   NumGroups            =  1\n"
        "   StartYear            =  2023\n   StartMonth           =  7\n"
        "   StartDay             =  21\n   StartHour            =  16\n"
        "   StartMin             =  45\n   StartSec             =  38\n"
        "   StartMillisec        =  257\n"
        f"   SampleTimeUsec       =  {1e6 / SFREQ:g}\n   SampleFreqHz         =  {SFREQ:g}\n"
        "   TriggerOffsetUsec    =  0\nDATA_PARAMETERS END\n\n"
        "DEVICE_PARAMETERS START\n   DataUnit             = uV\n"
        f"   NumChanThisGroup     =  {n_channels}\nDEVICE_PARAMETERS END\n\n"
        "LABELS START\n   ListDescription      = SensorLabels\nLABELS END\n\n"
        f"LABELS START_LIST\t# Do not edit!\n{labels}\nLABELS END_LIST\n\n"
        "SENSORS START\n   ListDescription      = Sensors\nSENSORS END\n\n"
        f"SENSORS START_LIST\t# Do not edit!\n{sensors}\nSENSORS END_LIST\n\n"
    )
    rows = "\n".join(f"  {s}\t 0\t {c}\t-1\t {s}\t {s}\t 0\t 0\t 0\t 0\t 0" for s, c in events)
    Path(f"{path}.ceo").write_text(
        "NUMBER_LIST START\n   ListDescription      = event numbers\nNUMBER_LIST END\n\n"
        f"NUMBER_LIST START_LIST\t# Do not edit!\n{rows}\nNUMBER_LIST END_LIST\n\n"
        "REMARK_LIST START\n   ListDescription      = event annotations\nREMARK_LIST END\n\n"
        "REMARK_LIST START_LIST\t# Do not edit!\n" + "\n" * len(events) + "REMARK_LIST END_LIST\n"
    )
    return path


def _truncate(path: Path, fraction: float = 0.5) -> None:
    content = path.read_bytes()
    path.write_bytes(content[: int(len(content) * fraction)])


def _assert_neuroscan_layout(raw: mne.io.BaseRaw) -> None:
    assert raw.ch_names == CHANNELS  # names kept as written (upper case)
    assert raw.get_channel_types() == TYPES
    positions = {ch["ch_name"]: ch["loc"][:3] for ch in raw.info["chs"]}
    # Reference: MNE placing the template's own spellings (Fp1, POz) in head coordinates.
    name = (
        "colin27_1005" if "colin27_1005" in mne.channels.get_builtin_montages() else "standard_1005"
    )
    reference = mne.create_info(["Fp1", "POz"], SFREQ, "eeg")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # standard_1005 renamed in MNE 1.13
        reference.set_montage(mne.channels.make_standard_montage(name))
    montage = {ch["ch_name"]: ch["loc"][:3] for ch in reference["chs"]}
    np.testing.assert_allclose(positions["FP1"], montage["Fp1"])
    np.testing.assert_allclose(positions["POZ"], montage["POz"])
    assert np.isnan(positions["CB1"]).all() and np.isnan(positions["CB2"]).all()
    placed = [name for name in NEUROSCAN_64 if np.isfinite(positions[name]).all()]
    assert len(placed) == 62


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize(
    ("suffix", "atol"),
    [(".set", 1e-11), (".edf", 1e-8), (".bdf", 1e-10), (".vhdr", 1e-11)],
)
def test_round_trip_through_mne_export(tmp_path: Path, suffix: str, atol: float) -> None:
    raw = _synthetic_raw()
    path = _export(raw, tmp_path / f"Acquisition 01{suffix}")

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading is warning-free (but for MNE's boundary note)
        warnings.filterwarnings("ignore", message="The data contains 'boundary' events")
        read = read_eeg(path)
        markers = eeg_markers(read)

    _assert_neuroscan_layout(read)
    eeg = [CHANNELS.index(name) for name in NEUROSCAN_64]
    np.testing.assert_allclose(read.get_data(picks=eeg), raw.get_data(picks=eeg), atol=atol)
    assert markers["code"].tolist() == [101, 102, 148]
    np.testing.assert_allclose(markers["onset_s"], [0.5, 2.0, 3.1], atol=1 / SFREQ)
    assert markers.dtypes.to_dict() == {"onset_s": np.float64, "code": np.int64}
    assert markers.attrs["source"] == "annotations"
    assert markers.attrs["dropped_codes"] == {77: 1, 88: 1}
    assert sum(markers.attrs["ignored_descriptions"].values()) == 1  # "boundary"


def test_preload_reads_the_same_data(tmp_path: Path) -> None:
    path = _export(_synthetic_raw(), tmp_path / "a.set")
    lazy, loaded = read_eeg(path), read_eeg(path, preload=True)
    assert loaded.preload and not lazy.preload
    np.testing.assert_array_equal(lazy.get_data(), loaded.get_data())


def test_set_with_separate_fdt(tmp_path: Path) -> None:
    raw = _synthetic_raw()
    path = _export(raw, tmp_path / "a.set")
    _move_data_to_fdt(path)
    read = read_eeg(path)
    np.testing.assert_allclose(read.get_data(), raw.get_data(), atol=1e-11)
    assert eeg_markers(read)["code"].tolist() == [101, 102, 148]


def test_markers_from_a_stim_channel_with_a_constant_offset(tmp_path: Path) -> None:
    offset = 65280.0  # a trigger channel that idles at a constant non-zero level
    trigger = np.full(N_TIMES, offset)
    # (start, stop, code): 101 -> 102 without idle between, 77 is noise, 101 again later.
    plan = [(500, 1000, 101), (1000, 1500, 102), (2000, 2300, 77), (2500, 3000, 101)]
    plan.append((3200, 3600, 148))
    for start, stop, code in plan:
        trigger[start:stop] = offset + code
    path = _export(_synthetic_raw(trigger=trigger, annotate=False), tmp_path / "stim.set")

    markers = eeg_markers(read_eeg(path))

    assert markers.attrs["source"] == "stim channel"
    assert markers.attrs["stim_channel"] == "Trigger"
    assert markers.attrs["idle_level"] == offset
    assert markers["code"].tolist() == [101, 102, 101, 148]
    np.testing.assert_allclose(markers["onset_s"], [0.5, 1.0, 2.5, 3.2])
    assert markers.attrs["dropped_codes"] == {77: 1}


def test_markers_with_valid_codes_chosen_by_the_caller() -> None:
    markers = eeg_markers(_synthetic_raw(), valid=[77, 101])
    assert markers["code"].tolist() == [101, 77]
    assert markers.attrs["dropped_codes"] == {88: 1, 102: 1, 148: 1}


def test_no_markers_at_all_says_so() -> None:
    raw = _synthetic_raw(annotate=False).drop_channels(["Trigger"])
    markers = eeg_markers(raw)
    assert markers.empty and markers.attrs["source"] == "none"
    assert "no markers" in markers.attrs["message"]


def test_curry_recording_with_sidecars(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data_uv = rng.normal(0.0, 20.0, (len(CHANNELS), N_TIMES)).astype(np.float32)
    offset = 3840.0  # Curry trigger channel idling at a constant offset (microvolt units)
    data_uv[-1] = offset
    data_uv[-1, 500:900] += 101
    data_uv[-1, 1250:1300] += 77
    data_uv[-1, 2000:2600] += 102
    path = _write_curry8(
        tmp_path / "Acquisition 01.cdt", data_uv, [(500, 101), (1250, 77), (2000, 102)]
    )

    raw = read_eeg(path)

    _assert_neuroscan_layout(raw)
    np.testing.assert_allclose(raw.get_data(picks="eeg"), data_uv[:64] * 1e-6, rtol=1e-6)
    markers = eeg_markers(raw)
    assert markers.attrs["source"] == "annotations"  # from the .cdt.ceo events
    assert markers["code"].tolist() == [101, 102]
    np.testing.assert_allclose(markers["onset_s"], [0.5, 2.0])
    assert markers.attrs["dropped_codes"] == {77: 1}

    # The same markers from the Trigger channel: microvolt units and offset undone.
    from_stim = eeg_markers(raw.set_annotations(None))
    assert from_stim.attrs["source"] == "stim channel"
    assert from_stim.attrs["idle_level"] == offset
    assert from_stim["code"].tolist() == [101, 102]
    np.testing.assert_allclose(from_stim["onset_s"], [0.5, 2.0])


@pytest.mark.parametrize(("sidecar", "kind"), [(".dpa", "header"), (".ceo", "events")])
def test_curry_without_a_sidecar_names_it(tmp_path: Path, sidecar: str, kind: str) -> None:
    data_uv = np.zeros((len(CHANNELS), 100), dtype=np.float32)
    path = _write_curry8(tmp_path / "Acquisition 01.cdt", data_uv, [(10, 101)])
    Path(f"{path}{sidecar}").unlink()
    with pytest.raises(InputFileError, match=rf"Acquisition 01\.cdt{sidecar}.*{kind}") as info:
        read_eeg(path)
    assert info.value.path == path


# ------------------------------------------------------------------ pyedflib's files


def test_pyedflib_edf_matches_pyedflib_reader() -> None:
    path = PYEDFLIB_DATA / "test_generator.edf"
    raw = read_eeg(path, preload=True)
    with pyedflib.EdfReader(str(path)) as reference:
        assert raw.ch_names == reference.getSignalLabels()
        assert raw.info["sfreq"] == reference.getSampleFrequency(0)
        for index in range(reference.signals_in_file):
            assert reference.getPhysicalDimension(index) == "uV"
            expected = reference.readSignal(index) * 1e-6
            np.testing.assert_allclose(raw.get_data(picks=[index])[0], expected, atol=1e-15)
        _, _, descriptions = reference.readAnnotations()
    markers = eeg_markers(raw)
    assert markers.empty and markers.attrs["source"] == "none"
    assert markers.attrs["ignored_descriptions"] == dict(Counter(descriptions))


def test_pyedflib_bdf_and_utf8_annotations() -> None:
    bdf = PYEDFLIB_DATA / "test_generator.bdf"
    raw = read_eeg(bdf, preload=True)
    with pyedflib.EdfReader(str(bdf)) as reference:
        top = int(np.argmax(reference.getSampleFrequencies()))
        assert raw.info["sfreq"] == reference.getSampleFrequency(top)
        expected = reference.readSignal(top) * 1e-6
    np.testing.assert_allclose(raw.get_data(picks=[top])[0], expected, atol=1e-15)

    utf8 = PYEDFLIB_DATA / "test_utf8.edf"
    with pyedflib.EdfReader(str(utf8)) as reference:
        onsets, _, descriptions = reference.readAnnotations()
    raw = read_eeg(utf8)
    assert raw.get_channel_types() == ["eeg"] and np.isfinite(raw.info["chs"][0]["loc"][:3]).all()
    np.testing.assert_allclose(raw.annotations.onset, onsets, atol=1e-6)
    assert eeg_markers(raw).attrs["ignored_descriptions"] == dict(Counter(descriptions))


# ------------------------------------------------------------------ bad input


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match=r"nothere\.set: file not found"):
        read_eeg(tmp_path / "nothere.set")


def test_unknown_extension_lists_the_supported_ones(tmp_path: Path) -> None:
    path = tmp_path / "recording.xyz"
    path.write_bytes(b"\0" * 16)
    with pytest.raises(InputFileError, match=r"recording\.xyz") as info:
        read_eeg(path)
    for suffix in (".cdt", ".set", ".edf", ".bdf", ".vhdr"):
        assert suffix in str(info.value)
    with pytest.raises(InputFileError, match=r"open the \.set file"):
        read_eeg(tmp_path / "data.fdt")


def test_truncated_set(tmp_path: Path) -> None:
    path = _export(_synthetic_raw(), tmp_path / "cut.set")
    _truncate(path)
    with pytest.raises(InputFileError, match=r"cut\.set: cannot be read as EEGLAB"):
        read_eeg(path)


@pytest.mark.parametrize("preload", [False, True])
def test_truncated_fdt(tmp_path: Path, preload: bool) -> None:
    path = _export(_synthetic_raw(), tmp_path / "short.set")
    _truncate(_move_data_to_fdt(path))
    with pytest.raises(InputFileError, match=r"short\.set: cannot be read"):
        read_eeg(path, preload=preload)


@pytest.mark.parametrize("suffix", [".edf", ".bdf"])
def test_truncated_edf_bdf(tmp_path: Path, suffix: str) -> None:
    path = _export(_synthetic_raw(), tmp_path / f"short{suffix}")
    _truncate(path, 0.7)
    with pytest.raises(InputFileError, match=rf"short\{suffix}: cannot be read"):
        read_eeg(path)


def test_corrupt_curry_header(tmp_path: Path) -> None:
    data_uv = np.zeros((len(CHANNELS), 100), dtype=np.float32)
    path = _write_curry8(tmp_path / "bad.cdt", data_uv, [(10, 101)])
    Path(f"{path}.dpa").write_text("not a Curry header\n")
    with pytest.raises(InputFileError, match=r"bad\.cdt: cannot be read as Curry"):
        read_eeg(path)
