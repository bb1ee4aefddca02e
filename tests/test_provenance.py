"""Stale resume: after any input change, a re-run equals a fresh run (or is refused).

One private copy of the tiny raw tree and store; each test changes one kind of input
(raw EEG bytes + a coding-file cell, the EEG band table, the ingest options) and checks
that exactly the dependent pieces are recomputed and that the re-run run folder holds
the same predictions as a fresh run folder.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import openpyxl
import pandas as pd
import pytest

from mmhe.evaluation.runner import BenchmarkConfig, StaleResultError, run_benchmark
from mmhe.features.batch import EEGFeatureConfig, FeatureConfig
from mmhe.store import IngestConfig, MMHEStore, ingest

CHEAP = EEGFeatureConfig(notch=None)  # no 50 Hz notch: a third of the filtering time
RUN = {
    "title": "provenance",
    "runs": [{"model": "logreg", "task": "compound", "modalities": ["eeg"]}],
    "features": FeatureConfig(eeg=CHEAP),
    "baselines": False,
    "n_perm": 200,
}


@pytest.fixture(scope="module")
def world(synth_tiny, store_tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("provenance")
    raw, store = root / "raw", root / "store"
    shutil.copytree(synth_tiny, raw)  # copy2 keeps sizes and modification times
    shutil.copytree(store_tiny.parent, store)
    pseudonyms = store_tiny.parent.with_name(store_tiny.parent.name + ".pseudonyms.csv")
    shutil.copy(pseudonyms, root / "store.pseudonyms.csv")
    names = pd.read_csv(pseudonyms)
    return {
        "raw": raw,
        "store": store,
        "run": root / "run",
        "root": root,
        "ids": dict(zip(names["name"], names["subject_id"], strict=True)),
    }


def _summaries(version):
    return {
        p.parent.name: (p.stat().st_mtime_ns, json.loads(p.read_text())["input_key"])
        for p in (version / "participants").glob("*/summary.json")
    }


def _same_as_fresh(world, config, name):
    """Re-run into the shared run folder and into a fresh one: the same predictions."""
    rerun = run_benchmark(world["store"], config, world["run"])
    fresh = run_benchmark(world["store"], config, world["root"] / name)
    keys = ["model", "sample"]
    a = pd.read_parquet(world["run"] / "predictions.parquet").sort_values(keys)
    b = pd.read_parquet(world["root"] / name / "predictions.parquet").sort_values(keys)
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    pd.testing.assert_frame_equal(rerun, fresh)
    return rerun


def _fold_keys(run_dir):
    files = run_dir.glob("folds/*/*.json")
    return {p.name: json.loads(p.read_text())["provenance"]["key"] for p in files}


def _scale_eeg(path, factor):
    """A gain error in a raw EEGLAB file: its 64 EEG channels x ``factor``, edited in place
    (the MAT file is uncompressed; the data block is found by its first bytes)."""
    from scipy.io import loadmat

    data = loadmat(path, variable_names=["data"])["data"]  # (channels, samples) float32
    raw = bytearray(path.read_bytes())
    start = raw.find(data.tobytes(order="F")[:4096])
    assert start > 0
    block = np.frombuffer(raw, np.float32, data.size, start).reshape(data.shape, order="F")
    block = block.copy()
    block[:64] *= factor
    raw[start : start + data.nbytes] = block.tobytes(order="F")
    path.write_bytes(bytes(raw))


def test_unchanged_inputs_are_reused(world):
    version = MMHEStore(world["store"]).path
    before = _summaries(version)
    ingest(world["raw"], world["store"], scheduler="sync")
    assert _summaries(version) == before  # same raw files (copied with their times): skipped
    run_benchmark(world["store"], BenchmarkConfig(**RUN), world["run"])
    folds = {p: p.stat().st_mtime_ns for p in world["run"].glob("folds/*/*.parquet")}
    run_benchmark(world["store"], BenchmarkConfig(**RUN), world["run"])
    assert {p: p.stat().st_mtime_ns for p in folds} == folds


def test_changed_raw_eeg_and_coding_cell_recompute_exactly_those_participants(world, tmp_path):
    config = BenchmarkConfig(**RUN)
    run_benchmark(world["store"], config, world["run"])
    version = MMHEStore(world["store"]).path
    before = _summaries(version)
    keys_before = _fold_keys(world["run"])
    names = sorted(world["ids"], key=world["ids"].get)
    eeg_person, coding_person, untouched = names[1], names[0], names[2]
    _scale_eeg(next((world["raw"] / eeg_person / "EEG").glob("*.set")), 1.5)
    # one coding cell: an expression of another participant changes its emotion
    book = openpyxl.load_workbook(world["raw"] / "coding_file.xlsx")
    sheet = book.worksheets[0]
    header = [c.value for c in sheet[1]]
    subject, emotion = header.index("Subject"), header.index("Estimated Emotion")
    rows = [r for r in sheet.iter_rows(min_row=2) if r[subject].value == coding_person]
    cells = [r[emotion].value for r in sheet.iter_rows(min_row=2)]
    happy = next(c for c in cells if "happ" in str(c))
    target = next(r for r in rows if "happ" not in str(r[emotion].value))
    target[emotion].value = happy
    book.save(world["raw"] / "coding_file.xlsx")

    ingest(world["raw"], world["store"], scheduler="sync")
    after = _summaries(version)
    ids = world["ids"]
    assert after[ids[untouched]] == before[ids[untouched]]  # not recomputed
    for person in (eeg_person, coding_person):
        assert after[ids[person]][1] != before[ids[person]][1]  # new provenance key
    # the incrementally updated store equals a fresh ingest of the changed raw tree
    fresh_root = tmp_path / "fresh"
    shutil.copy(world["root"] / "store.pseudonyms.csv", tmp_path / "fresh.pseudonyms.csv")
    fresh = ingest(world["raw"], fresh_root, scheduler="sync")
    a, b = MMHEStore(version), MMHEStore(fresh)
    for table in ("expressions", "trials"):
        pd.testing.assert_frame_equal(getattr(a, table)(), getattr(b, table)())
    for sid in a.participant_ids():
        np.testing.assert_array_equal(a.eeg(sid)[...], b.eeg(sid)[...])
    assert a.manifest["content_key"] == b.manifest["content_key"]
    changed = a.expressions(participant=ids[coding_person])
    assert "happiness" in set(changed["emotion"])

    with pytest.raises(StaleResultError, match=r"data:eeg.*labels|labels.*data:eeg"):
        run_benchmark(world["store"], config, world["run"], recompute=False)
    _same_as_fresh(world, config, "fresh-raw")
    assert set(_fold_keys(world["run"]).values()).isdisjoint(keys_before.values())
    recorded = json.loads((world["run"] / "config.json").read_text())["features"]["eeg"]
    part = version / "features" / recorded / "participants"
    for person in names:  # each feature part was made from its participant's current key
        summary = json.loads((part / ids[person] / "summary.json").read_text())
        assert summary["store_key"] == after[ids[person]][1]


def test_changed_band_table_recomputes(world):
    run_benchmark(world["store"], BenchmarkConfig(**RUN), world["run"])
    two_bands = {"theta": (4.0, 8.0), "alpha": (8.0, 13.0)}
    bands = CHEAP.model_copy(update={"bands": two_bands})
    config = BenchmarkConfig(**{**RUN, "features": FeatureConfig(eeg=bands)})
    with pytest.raises(StaleResultError, match="data:eeg"):
        run_benchmark(world["store"], config, world["run"], recompute=False)
    _same_as_fresh(world, config, "fresh-bands")
    recorded = json.loads((world["run"] / "config.json").read_text())
    eeg_folder = MMHEStore(world["store"]).path / "features" / recorded["features"]["eeg"]
    assert json.loads((eeg_folder / "config.json").read_text())["params"]["bands"] == {
        k: list(v) for k, v in two_bands.items()
    }


def test_reingest_with_other_options_recomputes(world):
    config = BenchmarkConfig(**RUN)
    run_benchmark(world["store"], config, world["run"])
    padded = ingest(
        world["raw"], world["store"], config=IngestConfig(trial_padding_s=1.0), scheduler="sync"
    )
    with pytest.raises(StaleResultError, match="data:eeg"):
        run_benchmark(world["store"], config, world["run"], recompute=False)
    _same_as_fresh(world, config, "fresh-padded")
    recorded = json.loads((world["run"] / "config.json").read_text())
    assert recorded["store"] == str(padded.resolve()) and recorded["store_version"] == padded.name
    assert recorded["store_content_key"] == MMHEStore(padded).manifest["content_key"]


def test_file_fingerprint_reuses_only_a_recorded_sha256(tmp_path):
    """A file whose size, time and edges are unchanged keeps last run's SHA-256; an entry
    written before SHA-256 (a BLAKE2b) is hashed again, as is a changed file."""
    import hashlib
    import os

    from mmhe.store.provenance import file_fingerprint

    path = tmp_path / "a.fdt"
    path.write_bytes(np.random.default_rng(0).bytes(300_000))
    truth = hashlib.sha256(path.read_bytes()).hexdigest()
    fresh = file_fingerprint(path, "a.fdt", None)
    assert fresh["sha256"] == truth and fresh["bytes"] == 300_000
    recorded = dict(fresh, sha256="f" * 64)  # as if recorded last run
    assert file_fingerprint(path, "a.fdt", recorded)["sha256"] == "f" * 64  # reused
    old = {k: v for k, v in fresh.items() if k != "sha256"} | {"blake2b": "0" * 32}
    assert file_fingerprint(path, "a.fdt", old)["sha256"] == truth  # hashed again
    data = bytearray(path.read_bytes())
    data[150_000] ^= 1  # one bit inside, edges and size unchanged, time kept
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    changed = file_fingerprint(path, "a.fdt", recorded)
    assert changed["sha256"] == hashlib.sha256(bytes(data)).hexdigest() != truth
