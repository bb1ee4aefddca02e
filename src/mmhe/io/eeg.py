"""Neuroscan EEG of MMHE: read any of its file formats into an MNE `Raw`, and its markers.

The recordings are 64-channel Neuroscan Quik-Cap EEG at 1000 Hz written by Curry
(`.cdt` with `.cdt.dpa` / `.cdt.ceo` sidecars), plus HEO, VEO, EKG, EMG and a Trigger
channel. The public analysis code converted them to EEGLAB `.set`; EDF, BDF and
BrainVision exports are read too. Reading is MNE's (`mne.io.read_raw_*`); this module
only picks the reader, turns broken files into `InputFileError`, sets the channel types
by name and applies the standard 10-05 montage, and extracts the stimulus markers.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Callable, Collection
from functools import cache
from pathlib import Path

import mne
import numpy as np
import pandas as pd

from mmhe.errors import InputFileError, MMHEError
from mmhe.labels import VALID_MARKERS

NEUROSCAN_64: tuple[str, ...] = tuple(
    "FP1 FPZ FP2 AF3 AF4 F7 F5 F3 F1 FZ F2 F4 F6 F8 FT7 FC5 FC3 FC1 FCZ FC2 FC4 FC6 FT8 "
    "T7 C5 C3 C1 CZ C2 C4 C6 T8 M1 TP7 CP5 CP3 CP1 CPZ CP2 CP4 CP6 TP8 M2 P7 P5 P3 P1 "
    "PZ P2 P4 P6 P8 PO7 PO5 PO3 POZ PO4 PO6 PO8 CB1 O1 OZ O2 CB2".split()
)
"""The 64 EEG channels of the Neuroscan Quik-Cap, in recording order (upper case)."""

EXTRA_CHANNELS: tuple[str, ...] = ("HEO", "VEO", "EKG", "EMG", "Trigger")
"""The five non-EEG channels recorded after the 64 EEG channels."""

SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".cdt": "Curry 8 (with .cdt.dpa and .cdt.ceo sidecars)",
    ".set": "EEGLAB (with its .fdt when the data are stored apart)",
    ".edf": "EDF / EDF+",
    ".bdf": "BDF / BDF+",
    ".vhdr": "BrainVision (with .eeg and .vmrk)",
}

_CHANNEL_TYPES: dict[str, str] = {
    **{name: "eeg" for name in NEUROSCAN_64},
    "HEO": "eog",
    "VEO": "eog",
    "EKG": "ecg",
    "ECG": "ecg",
    "EMG": "emg",
    "TRIGGER": "stim",
}

# Curry sidecars: (accepted suffixes appended to the .cdt name, what the file holds).
_CURRY_SIDECARS: tuple[tuple[tuple[str, ...], str], ...] = (
    ((".dpa", ".dpo"), "header: channel names, sampling rate, units"),
    ((".ceo", ".cef"), "events: the stimulus markers"),
)

# A marker annotation: "101", or BrainVision style "Stimulus/S101", "Stimulus/S 101",
# "Comment/101" (MNE's BrainVision export). Response markers ("R  1") are not stimuli.
_MARKER_DESCRIPTION = re.compile(r"^(?:[A-Za-z ]+/)?(?:S\s*)?(\d+)$")

_MARKER_COLUMNS = {"onset_s": "float64", "code": "int64"}

MAX_SKEW_S = 0.003
"""Longest spread (s) of the bit edges of one trigger transition on a stim channel:
parallel ports switch their bits up to ~2 ms apart."""


# ------------------------------------------------------------------ reading


def read_eeg(path: str | Path, *, preload: bool = False, montage: bool = True) -> mne.io.BaseRaw:
    """Read one EEG recording (Curry, EEGLAB, EDF, BDF or BrainVision) into an MNE Raw.

    path : the `.cdt`, `.set`, `.edf`, `.bdf` or `.vhdr` file; the reader is chosen by
        extension (case-insensitive).
    preload : load the data into memory now (else MNE reads them lazily).
    montage : apply the standard 10-05 montage (positions in metres) to the EEG channels
        whose names match case-insensitively (FP1 = Fp1); CB1/CB2 and other unmatched
        names keep no position.
    Returns the Raw with channel names as written in the file, data in volts, types set
    by name: the 64 Neuroscan channels eeg, HEO/VEO eog, EKG ecg, EMG emg, Trigger stim.
    Raises InputFileError when the file (or a Curry sidecar) is missing, the extension
    is unknown, the file is corrupt, or its data are shorter than its header and markers
    say (see `read_eeg_checked` to keep a truncated recording and get the problems).
    """
    raw, problems = read_eeg_checked(path, preload=preload, montage=montage)
    if problems:
        raise InputFileError(path, "; ".join(problems), TRUNCATED_HINT)
    return raw


TRUNCATED_HINT = "the file is truncated: copy it again from the recording computer"


def read_eeg_checked(
    path: str | Path, *, preload: bool = False, montage: bool = True
) -> tuple[mne.io.BaseRaw, list[str]]:
    """Like `read_eeg`, but a recording shorter than its header and markers say is returned
    with the problems instead of raising: (raw, problems), problems empty when complete.

    Checked: a data file that ends inside a sample (BrainVision, Curry: its size against
    channels x bytes per sample), fewer samples than the header's count (BrainVision
    ``DataPoints``, Curry ``NumSamples``; EDF/BDF records and EEGLAB `.fdt` sizes are
    checked by MNE and raise, and so does a short Curry file, which MNE cannot open), and
    markers at or beyond the last sample (any format; MNE
    drops them with only a warning, which would silently lose their trials).
    Raises InputFileError for anything unreadable, and for a recording with no samples.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        supported = "; ".join(f"{ext} {kind}" for ext, kind in SUPPORTED_EXTENSIONS.items())
        hint = "open the .set file, not its .fdt" if suffix == ".fdt" else ""
        raise InputFileError(
            path, f"unsupported EEG file extension {suffix!r}; supported: {supported}", hint
        )
    if not path.is_file():
        raise InputFileError(path, "file not found", "give the path of an existing EEG file")
    if path.stat().st_size == 0:
        raise InputFileError(path, "is empty (0 bytes)", TRUNCATED_HINT)
    problems: list[str] = []
    if suffix == ".cdt":
        _check_curry_sidecars(path)
        short = _curry_length_problems(path)
        if short:  # MNE's Curry reader cannot open a short .cdt at all
            raise InputFileError(path, "; ".join(short), TRUNCATED_HINT)
    elif suffix == ".vhdr":
        _check_brainvision_data(path)

    raw, dropped = _open_with_mne(path, suffix, preload)
    if raw.n_times == 0:
        raise InputFileError(path, "holds no samples", TRUNCATED_HINT)
    if suffix == ".vhdr":
        problems += _brainvision_length_problems(path, raw)
    else:
        problems += dropped
    _set_channel_types(raw)
    if montage:
        raw.set_montage(_standard_montage(), match_case=False, on_missing="ignore")
    return raw, problems


# ------------------------------------------------------------------ length checks

_BRAINVISION_BYTES = {"INT_16": 2, "UINT_16": 2, "INT_32": 4, "IEEE_FLOAT_32": 4}


def _header_fields(text: str) -> dict[str, str]:
    """``key=value`` (BrainVision) and ``key = value`` (Curry) lines, keys in lower case."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith(";"):
            fields.setdefault(key.strip().lower(), value.strip())
    return fields


def _read_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def _brainvision_data_file(path: Path) -> tuple[Path, dict[str, str]]:
    fields = _header_fields(_read_text(path))
    name = fields.get("datafile") or path.with_suffix(".eeg").name
    return path.with_name(name), fields


def _check_brainvision_data(path: Path) -> None:
    data, _ = _brainvision_data_file(path)
    if data.is_file() and data.stat().st_size == 0:
        raise InputFileError(
            data, f"the data file of {path.name} is empty (0 bytes)", TRUNCATED_HINT
        )


def _brainvision_length_problems(path: Path, raw: mne.io.BaseRaw) -> list[str]:
    data, fields = _brainvision_data_file(path)
    problems = []
    n_channels = int(fields.get("numberofchannels", "0") or 0)
    width = _BRAINVISION_BYTES.get(fields.get("binaryformat", "").upper())
    if fields.get("dataformat", "BINARY").upper() == "BINARY" and width and n_channels:
        size, frame = data.stat().st_size, n_channels * width
        if size % frame:
            problems.append(
                f"{data.name} ends inside a sample ({size} bytes is not a whole number of "
                f"{n_channels} channels x {width} bytes)"
            )
    declared = fields.get("datapoints")
    if declared and declared.isdigit() and int(declared) > raw.n_times:
        problems.append(
            f"the header promises {int(declared)} samples, {data.name} holds {raw.n_times}"
        )
    marker_file = path.with_name(fields.get("markerfile") or path.with_suffix(".vmrk").name)
    if marker_file.is_file():
        beyond = []
        for match in _VMRK_LINE.finditer(_read_text(marker_file)):
            position, size = int(match["position"]), int(match["size"] or 1)
            if position > raw.n_times or (size > 1 and position + size - 1 > raw.n_times):
                beyond.append((match["description"].strip(), position, size))
        if beyond:
            shown = ", ".join(
                f"{d or '?'} at sample {p}" + (f" (+{s - 1})" if s > 1 else "")
                for d, p, s in beyond[:5]
            )
            problems.append(
                f"{len(beyond)} marker(s) in {marker_file.name} lie at or run past the end of "
                f"the data (sample {raw.n_times}): {shown}"
            )
    return problems


# Mk<n>=<type>,<description>,<position>,<size>,<channel>[,<date>]
_VMRK_LINE = re.compile(
    r"^Mk\d+=(?P<type>[^,]*),(?P<description>[^,]*),(?P<position>\d+),(?P<size>\d*)",
    re.MULTILINE,
)


def _curry_header(path: Path) -> Path | None:
    for suffix in (".dpa", ".dpo"):
        header = path.with_name(path.name + suffix)
        if header.is_file():
            return header
    return None


def _curry_length_problems(path: Path) -> list[str]:
    """The .cdt size against the header's samples x channels (binary formats only)."""
    header = _curry_header(path)
    if header is None:
        return []
    fields = _header_fields(_read_text(header))
    try:
        n_samples = int(fields["numsamples"]) * max(1, int(fields.get("numtrials", "1")))
        n_channels = int(fields["numchannels"])
    except (KeyError, ValueError):
        return []  # MNE reports a header it cannot use
    if fields.get("databyteorder", "").upper() == "ASCII":
        return []
    expected = n_samples * n_channels * 4
    size = path.stat().st_size
    if size < expected:
        held = size // (n_channels * 4)
        return [
            f"{path.name} holds {size} bytes = {held} of the {n_samples} samples of "
            f"{n_channels} channels that {header.name} promises"
        ]
    return []


def _check_curry_sidecars(path: Path) -> None:
    for suffixes, content in _CURRY_SIDECARS:
        candidates = [path.with_name(path.name + suffix) for suffix in suffixes]
        if not any(candidate.is_file() for candidate in candidates):
            raise InputFileError(
                path,
                f"Curry sidecar {candidates[0].name!r} is missing ({content})",
                f"copy the {candidates[0].name} recorded with this file next to it "
                f"(also accepted: {', '.join(c.name for c in candidates[1:])})",
            )


def _mne_reader(suffix: str) -> Callable[..., mne.io.BaseRaw]:
    return {
        ".cdt": mne.io.read_raw_curry,
        ".set": mne.io.read_raw_eeglab,
        ".edf": mne.io.read_raw_edf,
        ".bdf": mne.io.read_raw_bdf,
        ".vhdr": mne.io.read_raw_brainvision,
    }[suffix]


def _open_with_mne(path: Path, suffix: str, preload: bool) -> tuple[mne.io.BaseRaw, list[str]]:
    """Open with MNE; any failure of MNE's reader on this file becomes an InputFileError.

    Returns (raw, problems): MNE's warnings that markers outside the data were dropped or
    cut short become problems (a sign of a truncated data file).
    """
    reader = _mne_reader(suffix)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # MNE only warns when an EDF/BDF is shorter than its header says (it then
            # keeps the records present): a truncated file is an error here.
            warnings.filterwarnings(
                "error", message="Number of records from the header does not match"
            )
            raw = reader(path, preload=preload, verbose="warning")
            if not isinstance(raw, mne.io.BaseRaw):
                raise InputFileError(path, "holds epoched data, not a continuous recording")
            if not preload and raw.n_times > 0:
                # Reading the last sample finds a data file shorter than its header.
                raw.get_data(start=raw.n_times - 1, stop=raw.n_times)
    except MMHEError:
        raise
    except Exception as exc:  # MNE raises whatever a broken file triggers (see below)
        # Seen in practice: AttributeError (truncated .set), RuntimeError (short .fdt),
        # ValueError/OSError/KeyError/struct.error (bad headers), FileNotFoundError
        # (a missing .fdt/.eeg), RuntimeWarning (short EDF/BDF).
        raise InputFileError(
            path,
            f"cannot be read as {SUPPORTED_EXTENSIONS[suffix]}: {type(exc).__name__}: {exc}",
            "the file is truncated, corrupt or incomplete (check its companion files)",
        ) from exc
    problems = []
    for warning in caught:
        text = str(warning.message)
        if "outside data range" in text or "outside the data range" in text:
            problems.append(
                f"MNE: {text.rstrip('.')} (markers at or past sample {raw.n_times}: "
                "their trials are missing from the data)"
            )
    for warning in caught:  # everything else is passed on as MNE meant it
        if not any(str(warning.message).rstrip(".") in p for p in problems):
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return raw, problems


def _set_channel_types(raw: mne.io.BaseRaw) -> None:
    mapping = {
        name: _CHANNEL_TYPES[name.upper()]
        for name in raw.ch_names
        if name.upper() in _CHANNEL_TYPES
    }
    if mapping:
        raw.set_channel_types(mapping, on_unit_change="ignore", verbose="error")


@cache
def _standard_montage_name() -> str:
    # MNE 1.13 renamed the 10-05 template 'standard_1005' to 'colin27_1005'.
    builtin = mne.channels.get_builtin_montages()
    return "colin27_1005" if "colin27_1005" in builtin else "standard_1005"


@cache
def _cached_montage() -> mne.channels.DigMontage:
    return mne.channels.make_standard_montage(_standard_montage_name())


def _standard_montage() -> mne.channels.DigMontage:
    return _cached_montage().copy()


# ------------------------------------------------------------------ markers


def eeg_markers(raw: mne.io.BaseRaw, *, valid: Collection[int] = VALID_MARKERS) -> pd.DataFrame:
    """Stimulus markers of an EEG recording, one row per marker.

    raw : an MNE Raw (from `read_eeg` or any MNE reader).
    valid : the marker codes to keep (default 100..148); other codes (77, 88, ...) are
        device noise: dropped and counted.
    Returns a DataFrame with columns `onset_s` (float, seconds from the first sample)
    and `code` (int), sorted by onset. Source: the annotations whose description is an
    integer ("101"; BrainVision "Stimulus/S101" or "Comment/101"), or, when there is
    none, the stim channel (the one named Trigger if several): every change of its value
    to a non-idle level is one marker, as `mne.find_events(consecutive=True)` with no
    minimum duration, except the intermediate levels of a skewed transition (see
    `_stim_markers`): the marker then starts at the transition's first bit edge. The
    idle level is the value the channel holds longest, which removes a constant offset
    (Curry trigger channels can carry one); values read in volts from a channel stored
    in microvolts (Curry, EEGLAB) are scaled back to codes.
    `frame.attrs`: "source" ("annotations", "stim channel" or "none"), "dropped_codes"
    ({code: count}), "ignored_descriptions" ({text: count} of the annotations that are
    not integer codes, e.g. "boundary"), "stim_channel" and "idle_level" (stim channel
    only), "message" (when there are no markers at all).
    """
    valid_codes = np.fromiter(valid, dtype=np.int64)
    annotations = raw.annotations
    codes = [_description_code(text) for text in annotations.description]
    ignored = dict(
        Counter(
            str(text)
            for text, code in zip(annotations.description, codes, strict=True)
            if code is None
        )
    )
    if any(code is not None for code in codes):
        keep = np.array([code is not None for code in codes])
        onsets = np.asarray(annotations.onset)[keep] - raw.first_time
        marker_codes = np.array([code for code in codes if code is not None], dtype=np.int64)
        frame = _marker_frame(onsets, marker_codes, valid_codes, "annotations", ignored)
        return frame

    stim = _stim_channel(raw)
    if stim is None:
        frame = _marker_frame(np.empty(0), np.empty(0, np.int64), valid_codes, "none", ignored)
        frame.attrs["message"] = (
            "no integer-coded annotations and no stim channel: this recording has no markers"
        )
        return frame
    values = raw.get_data(picks=[stim])[0]
    levels, idle = _trigger_levels(values, raw, stim)
    max_step = max(1, round(MAX_SKEW_S * raw.info["sfreq"]))
    starts, codes = _stim_markers(levels, max_step)
    onsets = starts / raw.info["sfreq"]
    frame = _marker_frame(onsets, codes, valid_codes, "stim channel", ignored)
    frame.attrs["stim_channel"] = stim
    frame.attrs["idle_level"] = int(idle)
    return frame


def _stim_markers(levels: np.ndarray, max_step: int) -> tuple[np.ndarray, np.ndarray]:
    """(first sample, code) of each marker on a stim channel of integer levels (0 = idle).

    Every change to a non-idle level is a marker, except the intermediate levels of one
    skewed transition: a run shorter than `max_step` samples between two different
    levels is a step of the bits switching a few samples apart (0 -> 64 -> 96 -> 101),
    not a marker; the marker it leads to starts at the transition's first edge.
    """
    n = levels.size
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    run_starts = np.concatenate(([0], np.flatnonzero(np.diff(levels)) + 1))
    lengths = np.diff(np.append(run_starts, n))
    values = levels[run_starts]
    before = np.concatenate(([0], values[:-1]))  # idle assumed before the recording
    after = np.concatenate((values[1:], [values[-1]]))
    index = np.arange(run_starts.size)
    step = (lengths < max_step) & (before != after) & (index < run_starts.size - 1)
    last_non_step = np.maximum.accumulate(np.where(step, -1, index))
    first_edge = run_starts.copy()
    led = np.flatnonzero(np.concatenate(([False], step[:-1])))  # runs right after a step
    first_edge[led] = run_starts[last_non_step[led - 1] + 1]
    keep = ~step & (values != 0)
    return first_edge[keep], values[keep].astype(np.int64)


def _description_code(text: str) -> int | None:
    match = _MARKER_DESCRIPTION.match(str(text).strip())
    return int(match.group(1)) if match else None


def _stim_channel(raw: mne.io.BaseRaw) -> str | None:
    stims = [raw.ch_names[i] for i in mne.pick_types(raw.info, meg=False, stim=True)]
    if not stims:
        return None
    named = [name for name in stims if name.upper() == "TRIGGER"]
    return (named or stims)[0]


def _trigger_levels(
    values: np.ndarray, raw: mne.io.BaseRaw, channel: str
) -> tuple[np.ndarray, int]:
    """Integer trigger levels relative to the idle level, and the idle level itself."""
    codes = None
    for scale in (1.0, 1e6):  # as read, or a channel stored in microvolts read as volts
        scaled = values * scale
        rounded = np.rint(scaled)
        integral = bool(np.all(np.abs(scaled - rounded) <= 0.05))
        if integral and (np.ptp(rounded) > 0 or np.ptp(values) == 0):
            codes = rounded.astype(np.int64)
            break
    if codes is None:
        filename = raw.filenames[0] if raw.filenames and raw.filenames[0] else "<in memory>"
        raise InputFileError(
            filename,
            f"stim channel {channel!r} holds non-integer values, not trigger codes",
            "check that this channel is the digital trigger line",
        )
    starts = np.concatenate(([0], np.flatnonzero(np.diff(codes)) + 1))
    durations = np.diff(np.append(starts, codes.size))
    run_values = codes[starts]
    held = pd.Series(durations).groupby(run_values).sum()
    idle = int(held.idxmax()) if len(held) else 0
    return codes - idle, idle


def _marker_frame(
    onsets: np.ndarray,
    codes: np.ndarray,
    valid_codes: np.ndarray,
    source: str,
    ignored: dict[str, int],
) -> pd.DataFrame:
    codes = np.asarray(codes, dtype=np.int64)
    is_valid = np.isin(codes, valid_codes)
    order = np.argsort(np.asarray(onsets)[is_valid], kind="stable")
    frame = pd.DataFrame(
        {
            "onset_s": np.asarray(onsets, dtype=np.float64)[is_valid][order],
            "code": codes[is_valid][order],
        }
    ).astype(_MARKER_COLUMNS)
    dropped = Counter(int(code) for code in codes[~is_valid])
    frame.attrs["source"] = source
    frame.attrs["dropped_codes"] = dict(sorted(dropped.items()))
    frame.attrs["ignored_descriptions"] = ignored
    return frame


# ------------------------------------------------------------------ montage


@cache
def _quikcap_positions() -> dict[str, np.ndarray]:
    standard = _cached_montage().get_positions()["ch_pos"]
    primed = mne.channels.make_standard_montage("colin27_primed").get_positions()["ch_pos"]
    by_upper = {name.upper(): pos for name, pos in standard.items()}
    by_upper["CB1"], by_upper["CB2"] = primed["Cb1"], primed["Cb2"]
    return {name: by_upper[name] for name in NEUROSCAN_64}


def quikcap_montage() -> mne.channels.DigMontage:
    """The Neuroscan 64-channel Quik-Cap on MNE's colin27 template head (metres).

    62 positions are the 10-05 template's (`colin27_1005`, the standard_1005 of older
    MNE); CB1/CB2, the cerebellar leads outside the 10-05 system, take the `Cb1`/`Cb2`
    positions of MNE's `colin27_primed` template, which shares the colin27 head and
    coordinate frame (its O1, Oz, Cz, M1 ... are the same points). Channel names are the
    cap's upper-case names (FP1 ... CB2); apply with ``raw.set_montage(quikcap_montage(),
    match_case=False)``.
    """
    positions = _quikcap_positions()
    fiducials = _cached_montage().get_positions()
    return mne.channels.make_dig_montage(
        ch_pos={name: pos.copy() for name, pos in positions.items()},
        nasion=fiducials["nasion"],
        lpa=fiducials["lpa"],
        rpa=fiducials["rpa"],
        coord_frame=fiducials["coord_frame"],
    )
