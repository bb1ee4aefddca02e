"""The main job: raw recordings to a results table and a report, on synthetic data.

`run_demo(out)` synthesises the ``demo`` preset (real file formats), validates the raw
tree, ingests it, computes features, runs the compound-emotion benchmark (LOSO; STSTNet,
the EEG TCN, the physiology MLP and early (feature-level) fusion, with fewer epochs than
published, three seeds each, beside the majority-class and stratified-random rows),
computes the dataset statistics and renders the HTML report. Every stage caches its
output under `out`, so a second run only re-checks: synthesis skips complete
participants, validation reuses its report while no raw file changed (``.demo-cache/``,
keyed by every raw file's path, size and modification time and the mmhe version), ingest
re-checks every participant's provenance key in this process when the raw tree is the one
it last ingested (no cluster to start), features and folds are reused, and the report is
rebuilt only when the run, the store or the report code changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mmhe.evaluation.runner import BenchmarkConfig

DEMO_EPOCHS = {"ststnet": 100, "eeg_tcn": 40, "physio_mlp": 100, "early_fusion": 100}
PUBLISHED_EPOCHS = {"ststnet": 500}
DEMO_SEEDS = 3


def demo_config(seeds: int = DEMO_SEEDS) -> BenchmarkConfig:
    """The demo benchmark: compound task, MEs, LOSO, four baselines plus the chance rows,
    each with `DEMO_SEEDS` seeds."""
    runs = [
        {
            "model": "ststnet",
            "modalities": ["face"],
            "epochs": DEMO_EPOCHS["ststnet"],
            "lr": 1e-3,
            "batch_size": 32,
        },
        {"model": "eeg_tcn", "modalities": ["eeg"], "epochs": DEMO_EPOCHS["eeg_tcn"]},
        {"model": "physio_mlp", "modalities": ["physio"], "epochs": DEMO_EPOCHS["physio_mlp"]},
        {
            "model": "early_fusion",
            "modalities": ["face", "eeg", "physio"],
            "epochs": DEMO_EPOCHS["early_fusion"],
        },
    ]
    notes = [
        "Synthetic data from `mmhe synth --preset demo`: the numbers show the pipeline "
        "works and the planted signal is found, not how well anything works on MMHE.",
        "Fewer epochs than published: "
        + ", ".join(
            f"{m} {e}" + (f" (published {PUBLISHED_EPOCHS[m]})" if m in PUBLISHED_EPOCHS else "")
            for m, e in DEMO_EPOCHS.items()
        )
        + "; STSTNet with lr 1e-3 "
        "and batch 32 (published 5e-5 and 256, made for ~1,500 training MEs, not ~130).",
        "Optical flow: DIS (fast) instead of TV-L1 (published); "
        "`mmhe features STORE --flow tvl1` for parity.",
    ]
    from mmhe.features.batch import FaceFeatureConfig, FeatureConfig

    return BenchmarkConfig(
        title="mmhe demo: compound emotion (negative / positive / surprise), LOSO",
        defaults={"task": "compound", "samples": "ME", "protocol": "loso", "seed": 0},
        runs=runs,
        features=FeatureConfig(face=FaceFeatureConfig(method="dis")),
        seeds=seeds,
        notes=notes,
    )


def raw_fingerprint(raw: Path) -> str:
    """Hash of every file's path, size and modification time below `raw` (and the mmhe
    version): equal fingerprints mean nothing in the raw tree was written since."""
    from mmhe import __version__

    digest = hashlib.blake2b(__version__.encode(), digest_size=12)
    for root, dirs, files in os.walk(raw):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            stat = path.stat()
            digest.update(f"{path.relative_to(raw)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class _StageCache:
    """Small JSON records of finished stages in ``out/.demo-cache/stages.json``."""

    def __init__(self, out: Path) -> None:
        self.path = out / ".demo-cache" / "stages.json"
        self.records = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def get(self, stage: str, key: str) -> dict | None:
        record = self.records.get(stage)
        return record["value"] if record and record.get("key") == key else None

    def put(self, stage: str, key: str, value: dict) -> None:
        self.records[stage] = {"key": key, "value": value}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.records, indent=2))
        os.replace(tmp, self.path)


class _SharedCluster:
    """The one local Dask cluster of a demo run: started when a stage first needs it,
    then used by ingest, features and the benchmark (its workers import MNE, NeuroKit2,
    OpenCV and torch once, not once per stage), closed at the end."""

    def __init__(self, n_workers: int) -> None:
        self.n_workers = n_workers
        self.cluster = None

    def address(self, chosen: str | None) -> str:
        """The scheduler a stage gets: ``chosen`` ("sync" or an address) as it is, and
        instead of None (a new local cluster) this run's cluster."""
        if chosen is not None:
            return chosen
        if self.cluster is None:
            from mmhe.parallel import local_cluster

            self.cluster = local_cluster(self.n_workers)
        return self.cluster.scheduler_address

    def __enter__(self) -> _SharedCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cluster is not None:
            self.cluster.close()


@dataclass
class DemoResult:
    """Where everything went, the results table and the seconds each stage took."""

    raw: Path
    store: Path
    run: Path
    stats: Path
    report: Path
    results: pd.DataFrame
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(
    out: str | Path,
    *,
    preset: str = "demo",
    seed: int = 0,
    seeds: int = DEMO_SEEDS,
    scheduler: str | None = None,
    n_workers: int = 2,
    say: Callable[[str], None] = print,
) -> DemoResult:
    """Run (or resume) the whole demo in `out`; returns its `DemoResult`.

    scheduler : None / "auto" (default) chooses as measured (`mmhe.parallel`): from 2
        cores one local Dask cluster of ``n_workers`` single-threaded processes for
        ingest, features and the benchmark's folds (1.09x, 1.24x and 1.8x faster than
        this process); "local" forces the cluster, "sync" this process, an address an
        existing cluster.
    seeds : training seeds per model (the demo's default: `DEMO_SEEDS`).
    """
    from mmhe.evaluation.runner import run_benchmark
    from mmhe.features.batch import compute_features
    from mmhe.reports.figures import write_stats
    from mmhe.reports.run_report import render_report
    from mmhe.reports.stats import dataset_stats
    from mmhe.store import ingest, validate
    from mmhe.synth import generate

    out = Path(out)
    raw, store_root, run_dir, stats_dir = out / "raw", out / "store", out / "run", out / "stats"
    seconds: dict[str, float] = {}

    def stage(name: str, started: float) -> None:
        seconds[name] = round(time.perf_counter() - started, 2)
        say(f"  {name}: {seconds[name]:.1f} s")

    started = time.perf_counter()
    say(f"1/7 synthesising the {preset!r} preset into {raw}")
    generate(raw, preset=preset, seed=seed)  # resumes a previous tree of the same preset
    stage("synth", started)
    from mmhe.parallel import choose_scheduler

    def where(chosen: str | None) -> str:
        return "this process" if chosen == "sync" else chosen or "a local Dask cluster"

    n_participants = sum(1 for p in raw.iterdir() if p.is_dir())
    data_scheduler = choose_scheduler(scheduler, n_participants, n_workers)
    say(f"  ingest and features run in {where(data_scheduler)}")

    started = time.perf_counter()
    say("2/7 validating the raw tree")
    cache = _StageCache(out)
    fingerprint = raw_fingerprint(raw)
    total = cache.get("validate", fingerprint)
    if total is None:
        report, _ = validate(raw)
        total = {k: int(report.iloc[-1][k]) for k in ("expressions", "errors", "warnings")}
        cache.put("validate", fingerprint, total)
    else:
        say("  no raw file changed since the last validation: its report is reused")
    say(
        f"  {total['expressions']} expressions, {total['errors']} errors, "
        f"{total['warnings']} warnings"
    )
    stage("validate", started)

    with _SharedCluster(n_workers) as cluster:
        started = time.perf_counter()
        say(f"3/7 ingesting into {store_root}")
        unchanged = (
            cache.get("ingest", fingerprint) is not None and (store_root / "latest.json").is_file()
        )
        version = ingest(
            raw,
            store_root,
            # the same raw tree as last time: every participant's provenance key is still
            # checked, in this process (no cluster to start for a check)
            scheduler="sync" if unchanged else cluster.address(data_scheduler),
            n_workers=n_workers,
        )
        cache.put("ingest", fingerprint, {"version": version.name})
        stage("ingest", started)

        config = demo_config(seeds)
        started = time.perf_counter()
        say("4/7 features (face flow, EEG band power, physiology)")
        compute_features(
            version,
            ("face", "eeg", "physio"),
            config=config.features,
            scheduler=cluster.address(data_scheduler),
            n_workers=n_workers,
        )
        stage("features", started)

        started = time.perf_counter()
        say("5/7 benchmark (compound task, LOSO)")
        folds = n_participants * len(config.runs) * seeds
        train_scheduler = choose_scheduler(scheduler, folds, n_workers)
        say(f"  training runs in {where(train_scheduler)}")
        results = run_benchmark(
            version,
            config,
            run_dir,
            scheduler=cluster.address(train_scheduler),
            n_workers=n_workers,
        )
        stage("benchmark", started)

    started = time.perf_counter()
    say("6/7 dataset statistics")
    write_stats(dataset_stats(version, dataset_name="demo store"), stats_dir)
    stage("stats", started)

    started = time.perf_counter()
    say("7/7 report")
    html, _ = render_report(run_dir, out / "report.html", store=version)
    stage("report", started)
    return DemoResult(raw, version, run_dir, stats_dir, html, results, seconds)
