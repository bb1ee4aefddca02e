"""`ingest`: a raw MMHE tree -> an analysis-ready, pseudonymised, versioned store.

Store layout::

    STORE/
      latest.json                  {"version": "v-..."}: the version written last
      v-<hash of parameters>/      one folder per parameter set, never mixed
        manifest.json              mmhe version, parameters, inputs (sizes, hashes), counts, time
        participants.parquet       one row per participant (pseudonyms only)
        issues.parquet             coding-file and store-level problems
        participants/sub-001/      written atomically (temporary name, then rename)
          trials|expressions|events|alignment|issues|action_units.parquet, arrays.zarr

Participants run in parallel through Dask: a local cluster by default, or an existing
scheduler (``scheduler="tcp://host:8786"``); ``scheduler="sync"`` runs in this process.
A participant folder that exists is complete (it was renamed into place at the end).
Its ``summary.json`` holds its provenance key (`mmhe.store.provenance`: raw file
hashes, camera listing, coding rows, parameters, ingest code version): a re-run skips a
participant whose key is unchanged, recomputes one whose inputs changed (the new folder
replaces the old), and removes the folder of a participant no longer in the raw tree.
The manifest records every participant's key and the store's ``content_key``, which the
feature cache and the benchmark key on. One run writes a store version at a time
(`StoreLock`, ``.mmhe.lock`` with the holder's pid and host); temporary folders carry the
run's id, and leftovers of killed runs are removed only while holding the lock.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from mmhe import __version__
from mmhe.annotations import PseudonymMap
from mmhe.annotations.coding_file import TABLE_COLUMNS
from mmhe.annotations.parsing import subject_key
from mmhe.errors import ConfigError
from mmhe.parallel import run_tasks
from mmhe.store.config import STORE_FORMAT, IngestConfig, content_parameters
from mmhe.store.layout import Discovery, Layout, ParticipantFiles, discover
from mmhe.store.lock import StoreLock
from mmhe.store.participant import file_digest, inspect_participant, write_participant
from mmhe.store.problems import (
    coding_issue_records,
    issue_frame,
    load_coding,
    participants_table_records,
)
from mmhe.store.provenance import content_key, input_fingerprints, participant_key
from mmhe.store.redact import Redactor, name_redactor


def _relative(path: Path | str, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _ingest_one(
    files: ParticipantFiles,
    subject_id: str,
    rows: pd.DataFrame,
    config: IngestConfig,
    version_dir: Path,
    root: Path,
    redact: Redactor,
    tmp_name: str,
) -> dict[str, Any]:
    """Inspect and write one participant (unless its provenance key is unchanged); runs
    on a Dask worker. Returns its summary.

    tmp_name : this run's temporary folder name (see `StoreLock.temp_name`), renamed into
        place when the participant is complete.
    """
    final = version_dir / "participants" / subject_id
    previous = None
    if (final / "summary.json").is_file():
        previous = json.loads((final / "summary.json").read_text())

    def fingerprints() -> list[dict[str, Any]]:
        return input_fingerprints(
            files.inputs(),
            files.camera,
            lambda p: redact(_relative(p, root)),
            None if previous is None else previous.get("inputs"),
        )

    started = time.perf_counter()
    if previous is not None:  # the key decides whether anything is read at all
        inputs = fingerprints()
        key = participant_key(subject_id, inputs, rows, content_parameters(config), STORE_FORMAT)
        if previous.get("input_key") == key:
            return previous
        found = inspect_participant(files, subject_id, rows, config)
    else:  # hash the raw files in a thread while they are parsed (hashlib frees the GIL)
        with ThreadPoolExecutor(1, thread_name_prefix="mmhe-digest") as pool:
            hashing = pool.submit(fingerprints)
            found = inspect_participant(files, subject_id, rows, config)
            inputs = hashing.result()
        key = participant_key(subject_id, inputs, rows, content_parameters(config), STORE_FORMAT)
    found.clean = lambda f: replace(
        f, message=redact(f.message), file=redact(_relative(f.file, root)) if f.file else ""
    )
    if found.expressions is not None and "locate_problem" in found.expressions:
        found.expressions["locate_problem"] = found.expressions["locate_problem"].map(
            lambda t: t if pd.isna(t) else redact(t)
        )
    tmp = version_dir / "participants" / tmp_name
    counts = write_participant(found, tmp, config)
    summary = {
        "subject_id": subject_id,
        "input_key": key,
        "status": "error" if found.has_errors else "ok",
        "modalities": [
            m
            for m, ok in (
                ("eeg", found.raw is not None and found.trials is not None),
                ("physio", found.physio is not None),
                ("camera", found.frames is not None),
            )
            if ok
        ],
        "eeg_sfreq": float(found.raw.info["sfreq"]) if found.raw is not None else None,
        "physio_sfreq": float(found.physio.sfreq) if found.physio is not None else None,
        "inputs": inputs,
        "counts": counts,
        "seconds": round(time.perf_counter() - started, 3),
        "errors": sum(f.severity == "error" for f in found.findings),
        "warnings": sum(f.severity == "warning" for f in found.findings),
    }
    (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
    if final.exists():  # inputs changed: the new folder replaces the old one
        stale = final.with_name(f".old-{subject_id}-{os.getpid()}")
        os.replace(final, stale)
        os.replace(tmp, final)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return summary


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically (temporary name in the same folder, then rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)


def ingest(
    raw: str | Path,
    out: str | Path,
    *,
    config: IngestConfig | None = None,
    layout: Layout | str | Path | None = None,
    pseudonyms: str | Path | None = None,
    scheduler: str | None = None,
    n_workers: int = 2,
    progress: Callable[[dict[str, Any]], None] | None = None,
    prefer: str | list[str] | None = None,
    sheet: str | int = 0,
    wait_s: float = 0.0,
) -> Path:
    """Ingest the raw tree `raw` into the store `out`; returns the version folder.

    pseudonyms : private name -> pseudonym CSV, read and extended (default: beside the store,
        ``<out>.pseudonyms.csv``, never inside it).
    prefer : extensions tried first when a folder holds several EEG or BIOPAC files
        (the conflict is reported either way); sheet : the coding file's sheet.
    wait_s : seconds to wait when another run writes the same store version (then
        `StoreBusyError`); a store version has one writer at a time (`StoreLock`).
    Participants with problems are still written with what could be read; every problem is
    in the `issues` tables and no coding-file expression disappears: expressions in the
    coding file = stored + reported as not located, and rejected coding rows are issues.
    """
    raw, out = Path(raw), Path(out)
    config = config or IngestConfig()
    started = time.perf_counter()
    found: Discovery = discover(raw, layout, prefer=prefer)
    _check_out(raw, out)
    version_dir = out / config.version()
    with StoreLock(version_dir, command="ingest", wait_s=wait_s) as lock:
        mapping_path = (
            Path(pseudonyms) if pseudonyms else out.with_name(out.name + ".pseudonyms.csv")
        )
        names = PseudonymMap.load(mapping_path)
        coding, coding_problems = load_coding(found, names, sheet)
        names.assign(found.participants)
        names.save(mapping_path)
        sid_of = {key: names.id_for(key) for key in found.participants}
        redact = name_redactor(found, names, coding)

        (version_dir / "participants").mkdir(parents=True, exist_ok=True)
        lock.clean_leftovers(version_dir / "participants")
        for leftover in (version_dir / "participants").glob(".old-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        current = set(sid_of.values())
        for folder in (version_dir / "participants").iterdir():
            if folder.is_dir() and not folder.name.startswith(".") and folder.name not in current:
                shutil.rmtree(folder)  # no longer in the raw tree: derived data, removed
        table = coding_rows(coding)
        orphans = orphan_rows(table, sid_of.values())
        tasks = []
        for key, files in sorted(found.participants.items(), key=lambda kv: sid_of[kv[0]]):
            sid = sid_of[key]
            rows = table[table["subject_id"] == sid].reset_index(drop=True)
            tasks.append(
                (
                    _ingest_one,
                    files,
                    sid,
                    rows,
                    config,
                    version_dir,
                    raw,
                    redact,
                    lock.temp_name(sid),
                )
            )
        summaries = run_tasks(tasks, scheduler, n_workers, progress)
        summaries.sort(key=lambda s: s["subject_id"])

        people, people_problems = participants_table_records(found)
        store_issues = issue_frame(
            _store_issue_records(found, orphans, redact)
            + coding_problems
            + people_problems
            + coding_issue_records(coding, names, redact)
        )
        store_issues.to_parquet(version_dir / "issues.parquet", index=False)
        _participants_table(people, summaries, sid_of).to_parquet(
            version_dir / "participants.parquet", index=False
        )
        write_json(
            version_dir / "manifest.json",
            _manifest(version_dir, config, found, raw, coding, summaries, orphans, started),
        )
        write_json(out / "latest.json", {"version": version_dir.name})
    return version_dir


def _check_out(raw: Path, out: Path) -> None:
    """Refuse a store inside the raw tree (raw data are never modified) or a raw tree
    inside the store."""
    raw_r, out_r = raw.resolve(), out.resolve()
    if out_r == raw_r or raw_r in out_r.parents:
        raise ConfigError(
            f"--out {out} lies inside the raw tree {raw}: raw data are never modified; "
            "choose a store folder outside it"
        )
    if out_r in raw_r.parents:
        raise ConfigError(f"the raw tree {raw} lies inside the store folder {out}: choose another")


def _manifest(version_dir, config, found, raw, coding, summaries, orphans, started) -> dict:
    not_located = int(sum(s["counts"].get("not_located", 0) for s in summaries))
    return {
        "mmhe_version": __version__,
        "store_format": STORE_FORMAT,
        "version": version_dir.name,
        "parameters": config.model_dump(),
        "coding_file": None
        if found.coding_file is None
        else {
            "path": _relative(found.coding_file, raw),
            "bytes": found.coding_file.stat().st_size,
            "sha256": file_digest(found.coding_file),
        },
        "content_key": content_key({s["subject_id"]: s["input_key"] for s in summaries}),
        "participants": {
            s["subject_id"]: {
                k: s[k]
                for k in (
                    "input_key",
                    "status",
                    "modalities",
                    "counts",
                    "inputs",
                    "errors",
                    "warnings",
                )
            }
            for s in summaries
        },
        "counts": {
            "participants": len(summaries),
            "coding_rows": 0 if coding is None else coding.rows_read,
            "coding_rows_rejected": 0 if coding is None else coding.summary()["rows_rejected"],
            "expressions": int(sum(s["counts"].get("expressions", 0) for s in summaries)),
            "expressions_not_located": not_located + len(orphans),
            "expressions_stored": int(sum(s["counts"].get("expressions", 0) for s in summaries))
            - not_located,
            "trials": int(sum(s["counts"].get("trials", 0) for s in summaries)),
        },
        "seconds": round(time.perf_counter() - started, 2),
    }


def coding_rows(coding) -> pd.DataFrame:
    """The coding file's expressions without names (an empty table of the same columns
    without a coding file)."""
    if coding is None:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in TABLE_COLUMNS if c != "subject"})
    return coding.deidentified()


def orphan_rows(table: pd.DataFrame, subject_ids) -> pd.DataFrame:
    """Expressions of participants that have no raw folder (they cannot be located)."""
    return table[~table["subject_id"].isin(set(subject_ids))]


def _store_issue_records(
    found: Discovery, orphans: pd.DataFrame, redact: Redactor
) -> list[dict[str, Any]]:
    rows = [
        {
            "subject_id": None,
            "row": None,
            "severity": "warning",
            "code": "discovery",
            "message": redact(p),
            "file": "",
        }
        for p in found.problems
    ]
    for row in orphans.itertuples():
        rows.append(
            {
                "subject_id": row.subject_id,
                "row": row.row,
                "severity": "error",
                "code": "expression_not_located",
                "message": "no raw folder for this participant",
                "file": "",
            }
        )
    return rows


def _participants_table(
    people: pd.DataFrame | None, summaries: list[dict[str, Any]], sid_of: dict[str, str]
) -> pd.DataFrame:
    demographics = pd.DataFrame(columns=["key", "sex", "age"])
    if people is not None:
        name_column = next(
            (c for c in ("subject", "participant_id", "name") if c in people), people.columns[0]
        )
        demographics = pd.DataFrame(
            {
                "key": people[name_column].map(subject_key),
                "sex": people.get("sex", pd.Series(dtype=str)),
                "age": pd.to_numeric(people.get("age", pd.Series(dtype=str)), errors="coerce"),
            }
        ).drop_duplicates("key")
    by_key = demographics.set_index("key")
    records = []
    for summary in summaries:
        key = next(k for k, s in sid_of.items() if s == summary["subject_id"])
        records.append(
            {
                "subject_id": summary["subject_id"],
                "sex": by_key["sex"].get(key) if key in by_key.index else None,
                "age": by_key["age"].get(key) if key in by_key.index else None,
                "status": summary["status"],
                "modalities": ",".join(summary["modalities"]),
                "n_trials": summary["counts"].get("trials", 0),
                "n_expressions": summary["counts"].get("expressions", 0),
                "n_not_located": summary["counts"].get("not_located", 0),
                "eeg_sfreq": summary["eeg_sfreq"],
                "physio_sfreq": summary["physio_sfreq"],
                "errors": summary["errors"],
                "warnings": summary["warnings"],
            }
        )
    return pd.DataFrame(
        records,
        columns=[
            "subject_id",
            "sex",
            "age",
            "status",
            "modalities",
            "n_trials",
            "n_expressions",
            "n_not_located",
            "eeg_sfreq",
            "physio_sfreq",
            "errors",
            "warnings",
        ],
    )
