"""`export_bids`: a store -> a BIDS EEG dataset (mne-bids) with physiology and events.

Per participant (BIDS subject label = the pseudonym without ``sub-``)::

    sub-001/eeg/sub-001_task-hiddenemotion_eeg.vhdr|.eeg|.vmrk (or _eeg.edf)
                sub-001_task-hiddenemotion_eeg.json, _channels.tsv, _electrodes.tsv,
                _coordsystem.json                        (mne-bids)
                sub-001_task-hiddenemotion_events.tsv|.json   stimulus trials and
                    expressions: onset, duration, trial_type, value, sample, marker,
                    category, expression_id, kind, emotion, compound, action_units,
                    apex, offset
                sub-001_task-hiddenemotion_recording-biopac_physio.tsv.gz|.json
    participants.tsv|.json   pseudonyms, sex, age (no names: the store holds none)
    dataset_description.json, README

EEG is the store's continuous session (`MMHEStore.raw`), written by
`mne_bids.write_raw_bids` as BrainVision (default) or EDF. Physiology: the BIOPAC
channels of every stored trial put back on one time line (samples the store does not
hold, e.g. before the first marker, are ``n/a``); ``StartTime`` is its first sample on
the EEG clock and ``SamplingFrequency`` the BIOPAC rate as seen by the EEG clock
(nominal rate / (1 + drift)), so every physio sample lands at the right EEG time.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from mmhe import __version__
from mmhe.errors import ConfigError, InputFileError

TASK = "hiddenemotion"

EVENT_COLUMNS: dict[str, dict[str, Any]] = {
    "onset": {"Description": "Start of the event on the EEG clock", "Units": "s"},
    "duration": {
        "Description": "Trials: marker to next marker; expressions: onset to offset",
        "Units": "s",
    },
    "trial_type": {
        "Description": "trial/<category>/<marker> for stimulus clips; <kind>/<emotion> for "
        "FACS-coded expressions (kind ME = micro-, MaE = macro-expression)"
    },
    "value": {
        "Description": "Trials: the stimulus marker; expressions: 10 * kind + emotion "
        "(kind 1 ME, 2 MaE; emotion 0..8 = happiness, disgust, fear, anger, surprise, "
        "sadness, contempt, tension, calm; 9 unknown)"
    },
    "sample": {"Description": "Onset as an EEG sample index (0 = first sample)"},
    "marker": {"Description": "Stimulus marker (101..148 clips, 100 rest) of the trial"},
    "category": {"Description": "Stimulus category of the trial's film clip"},
    "expression_id": {"Description": "Expression identifier in the mmhe store"},
    "kind": {
        "Description": "ME (micro-expression) or MaE (macro-expression)",
        "Levels": {"ME": "micro-expression", "MaE": "macro-expression"},
    },
    "emotion": {"Description": "Estimated emotion of the expression (coders' label)"},
    "compound": {
        "Description": "Compound class (MEGC 2019 composite)",
        "Levels": {"negative": "negative", "positive": "positive", "surprise": "surprise"},
    },
    "action_units": {"Description": "FACS action units, '+'-separated (e.g. 4+7)"},
    "apex": {"Description": "Apex of the expression on the EEG clock", "Units": "s"},
    "offset": {"Description": "Offset of the expression on the EEG clock", "Units": "s"},
}


@dataclass
class BIDSExport:
    """What `export_bids` wrote and every problem it met (one line each)."""

    root: Path
    subjects: list[str] = field(default_factory=list)
    files: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def bids_label(subject_id: str) -> str:
    """BIDS subject label of a pseudonym: ``sub-001`` -> ``001`` (alphanumerics only)."""
    label = re.sub(r"[^A-Za-z0-9]", "", re.sub(r"^sub-", "", str(subject_id)))
    if not label:
        raise ConfigError(f"pseudonym {subject_id!r} gives no BIDS subject label")
    return label


def _na(value: Any) -> Any:
    return "n/a" if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def events_table(store, subject_id: str, sfreq: float) -> pd.DataFrame:
    """Trials and located expressions of one participant as BIDS events rows."""
    from mmhe.store.mne_view import aus_text, expression_event_name, expression_event_value

    rows = []
    for t in store.trials(participant=subject_id).itertuples(index=False):
        rows.append(
            {
                "onset": float(t.onset_s),
                "duration": float(t.end_s) - float(t.onset_s),
                "trial_type": f"trial/{t.category}/{int(t.code)}",
                "value": int(t.code),
                "sample": round(float(t.onset_s) * sfreq),
                "marker": int(t.code),
                "category": t.category,
            }
        )
    for e in store.expressions(participant=subject_id, located=True).itertuples(index=False):
        if pd.isna(e.eeg_onset):
            continue
        rows.append(
            {
                "onset": int(e.eeg_onset) / sfreq,
                "duration": (int(e.eeg_offset) - int(e.eeg_onset)) / sfreq,
                "trial_type": expression_event_name(e.kind, e.emotion),
                "value": expression_event_value(e.kind, e.emotion),
                "sample": int(e.eeg_onset),
                "marker": int(e.marker),
                "category": e.category,
                "expression_id": e.expression_id,
                "kind": e.kind,
                "emotion": e.emotion,
                "compound": e.compound,
                "action_units": aus_text(e.aus),
                "apex": int(e.eeg_apex) / sfreq,
                "offset": int(e.eeg_offset) / sfreq,
            }
        )
    table = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    return table.sort_values(["onset", "sample"], kind="stable").reset_index(drop=True)


def _write_tsv(table: pd.DataFrame, path: Path) -> None:
    table.map(_na).to_csv(path, sep="\t", index=False, lineterminator="\n", float_format="%.6f")


def _physio_session(store, subject_id: str) -> tuple[np.ndarray, int] | None:
    """(samples x channels float64 with NaN where not stored, first physio sample)."""
    trials = store.trials(participant=subject_id)
    if "physio_start" not in trials or trials["physio_start"].isna().all():
        return None
    array = store.physio(subject_id)
    have = trials[trials["physio_start"].notna() & (trials["n_physio_samples"] > 0)]
    lo = int(have["physio_start"].min())
    hi = int((have["physio_start"] + have["n_physio_samples"]).max())
    out = np.full((hi - lo, array.shape[1]), np.nan)
    for t in have.itertuples(index=False):
        start, n = int(t.physio_start) - lo, int(t.n_physio_samples)
        out[start : start + n] = np.asarray(array[int(t.trial_index), :, :n], dtype=np.float64).T
    return out, lo


def write_physio(store, subject_id: str, folder: Path, stem: str) -> Path | None:
    """The BIOPAC signals as ``<stem>_recording-biopac_physio.tsv.gz`` + JSON; None if the
    participant has no stored physiology."""
    session = _physio_session(store, subject_id)
    if session is None:
        return None
    data, first = session
    array = store.physio(subject_id)
    sfreq = float(array.attrs["sfreq"])
    alignment = store.alignment()
    mine = alignment[(alignment["subject_id"] == subject_id) & (alignment["device"] == "physio")]
    if not len(mine):
        raise InputFileError(
            store.path, f"{subject_id}: physiology stored without a BIOPAC alignment"
        )
    offset_s, drift_ppm = float(mine["offset_s"].iloc[0]), float(mine["drift_ppm"].iloc[0])
    slope = 1.0 + drift_ppm * 1e-6
    channels = list(array.attrs["channels"])
    units = list(array.attrs.get("units", [""] * len(channels)))
    base = folder / f"{stem}_recording-biopac_physio"
    text = pd.DataFrame(data).to_csv(
        sep="\t", header=False, index=False, na_rep="n/a", float_format="%.7g"
    )
    # no file name and no time in the gzip header (BIDS privacy rule), so the bytes
    # depend on the data only
    with (
        base.with_suffix(".tsv.gz").open("wb") as raw_file,
        gzip.GzipFile(filename="", fileobj=raw_file, mode="wb", mtime=0) as handle,
    ):
        handle.write(text.encode())
    sidecar: dict[str, Any] = {
        "SamplingFrequency": sfreq / slope,
        "StartTime": offset_s + slope * first / sfreq,
        "Columns": channels,
        "Manufacturer": "BIOPAC Systems",
        "ManufacturersModelName": "MP160",
        "SoftwareVersions": "AcqKnowledge 5",
    }
    for name, unit in zip(channels, units, strict=True):
        sidecar[name] = {"Description": f"BIOPAC channel {name}", "Units": unit or "n/a"}
    base.with_suffix(".json").write_text(json.dumps(sidecar, indent=2))
    return base.with_suffix(".tsv.gz")


def _participants(store, out: Path, labels: dict[str, str]) -> None:
    people = store.participants()
    people = people[people["subject_id"].isin(labels)]
    table = pd.DataFrame(
        {
            "participant_id": ["sub-" + labels[s] for s in people["subject_id"]],
            "age": people["age"] if "age" in people else np.nan,
            "sex": people["sex"] if "sex" in people else None,
        }
    )
    _write_tsv(table, out / "participants.tsv")
    (out / "participants.json").write_text(
        json.dumps(
            {
                "participant_id": {"Description": "Pseudonym (the store's subject id)"},
                "age": {"Description": "Age at recording", "Units": "year"},
                "sex": {
                    "Description": "Sex as recorded by the lab",
                    "Levels": {"M": "male", "F": "female"},
                },
            },
            indent=2,
        )
    )


def export_bids(
    store_path: str | Path,
    out: str | Path,
    *,
    eeg_format: Literal["BrainVision", "EDF"] = "BrainVision",
    participants: list[str] | None = None,
    overwrite: bool = False,
    progress=None,
) -> BIDSExport:
    """Write the store `store_path` as a BIDS dataset in `out` (see the module docstring).

    eeg_format : "BrainVision" (lossless float32) or "EDF" (16-bit, scaled per channel).
    participants : pseudonyms to export (default every participant).
    overwrite : replace an existing `out`; otherwise a non-empty `out` is an error.
    Returns a `BIDSExport`; a participant that cannot be exported is a line of
    ``problems`` and the others are still written.
    """
    import mne_bids

    from mmhe.store import MMHEStore

    store = MMHEStore(store_path)
    out = Path(out)
    if eeg_format not in ("BrainVision", "EDF"):
        raise ConfigError(f"eeg_format must be 'BrainVision' or 'EDF', got {eeg_format!r}")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"{out}: output folder is not empty; choose a new folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    report = BIDSExport(root=out)
    ids = participants or store.participant_ids()
    unknown = sorted(set(ids) - set(store.participant_ids()))
    if unknown:
        raise ConfigError(f"no participant {unknown} in {store.path}")
    labels = {sid: bids_label(sid) for sid in ids}
    for sid in ids:
        try:
            _export_one(store, sid, labels[sid], out, eeg_format, report, mne_bids)
        except (InputFileError, ConfigError, KeyError, ValueError) as exc:
            report.problems.append(f"{sid}: not exported: {exc}")
        if progress is not None:
            progress(sid)
    _participants(store, out, {s: labels[s] for s in report.subjects})
    mne_bids.make_dataset_description(
        path=out,
        name="MMHE multimodal hidden-emotion dataset (exported by mmhe)",
        dataset_type="raw",
        generated_by=[{"Name": "mmhe", "Version": __version__}],
        overwrite=True,
        verbose="error",
    )
    (out / "README").write_text(
        "MMHE multimodal hidden-emotion data: 64-channel Neuroscan EEG, BIOPAC physiology "
        "(physio.tsv.gz) and FACS-coded micro- and macro-expressions (events.tsv),\n"
        f"exported from the mmhe store version {store.path.name} by mmhe {__version__}.\n"
        "Participants are pseudonymised; face video is not part of this export.\n"
    )
    report.files = sum(1 for p in out.rglob("*") if p.is_file())
    return report


def _export_one(
    store, sid: str, label: str, out: Path, eeg_format: str, report: BIDSExport, mne_bids
) -> None:
    raw = store.raw(sid)
    raw.set_annotations(None)  # events.tsv is written below, with every column
    bids_path = mne_bids.BIDSPath(subject=label, task=TASK, datatype="eeg", root=out)
    events = events_table(store, sid, raw.info["sfreq"])
    mne_bids.write_raw_bids(
        raw,
        bids_path,
        events=events[["sample"]].assign(zero=0, value=events["value"]).to_numpy(np.int64),
        event_id={
            name: int(v) for name, v in zip(events["trial_type"], events["value"], strict=True)
        },
        format=eeg_format,
        allow_preload=True,
        overwrite=True,
        verbose="error",
    )
    folder = bids_path.directory
    stem = f"sub-{label}_task-{TASK}"
    _write_tsv(events, folder / f"{stem}_events.tsv")
    levels = {name: name for name in sorted(set(events["trial_type"]))}
    columns = json.loads(json.dumps(EVENT_COLUMNS))
    columns["trial_type"]["Levels"] = levels
    (folder / f"{stem}_events.json").write_text(json.dumps(columns, indent=2))
    if write_physio(store, sid, folder, stem) is None:
        report.notes.append(f"{sid}: no physiology stored; no physio.tsv.gz")
    located = store.expressions(participant=sid, located=True)
    missing = len(store.expressions(participant=sid)) - int(located["eeg_onset"].notna().sum())
    if missing:
        report.notes.append(
            f"{sid}: {missing} expression(s) without an EEG time are not in events.tsv "
            "(see the store's issues table)"
        )
    report.subjects.append(sid)
