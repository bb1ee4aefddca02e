"""`run_benchmark`: every (model, task, modality set, protocol, control) of a config, for
every seed, leakage-free, audited, resumable and reproducible, written to a run folder.

Run directory::

    RUN/config.json          the resolved config, store (absolute path, version, content
                             key), feature folders, class names, CI method, title, notes
    RUN/environment.json     Python, platform and package versions
    RUN/folds/<combo>/fold-0007.parquet   predictions of one finished fold (+ .json: info,
                             provenance key and parts, split and fit audit)
    RUN/folds.parquet        one row per fold and seed: participant(s), model, task,
                             modalities, protocol, control, n_train, n_test, metrics, seed,
                             config hash, provenance key, version, seconds
    RUN/predictions.parquet  participant, sample, y_true, y_pred, prob_<class>...,
                             missing_input, fold, model, task, modalities, protocol,
                             samples, control, seed
    RUN/results.csv / .md    one row per combination: mean over seeds, seed SD/min/max,
                             95 % CI, per-participant mean and SD, counts (`results`)
    RUN/seeds.csv            pooled metrics per combination and seed
    RUN/participants.csv     per combination, seed and participant: n, n_missing, scores
    RUN/pairwise.csv         paired permutation tests between combinations (Holm)
    RUN/pvalues_uf1.csv, RUN/pvalues_uar.csv   the Holm p-values as matrices
    RUN/audit.json           what the leakage audit measured, check by check

Every task gets a majority-class and a stratified-random row (``baselines``), fitted per
fold like any model. ``seeds`` runs each combination with seeds seed, seed + 1, ...;
``control: shuffled`` permutes labels within participants (a chance-level reference).

Resume: each fold's predictions are written as soon as it finishes, with the fold's
provenance key (`mmhe.evaluation.provenance`: settings, the bytes of its inputs, labels,
split, engine version). A re-run reuses a finished fold only when its key is unchanged;
a fold whose inputs changed is recomputed, or, with ``recompute=False``, refused with
one line naming what changed. A combination with missing folds is marked incomplete,
never reported as a result.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, Field, field_validator

from mmhe import __version__
from mmhe.errors import ConfigError, InputFileError, MMHEError
from mmhe.evaluation.audit import near_duplicates
from mmhe.evaluation.datasets import TaskData, load_task, with_shuffled_labels
from mmhe.evaluation.intervals import METHOD as INTERVAL_METHOD
from mmhe.evaluation.metrics import pooled_scores
from mmhe.evaluation.provenance import (
    array_digest,
    changed_parts,
    fold_key,
    fold_parts,
    text_digest,
)
from mmhe.evaluation.results import (
    markdown_table,
    paired_permutation_tests,
    paper_table,
    participant_table,
    pvalue_matrix,
    seed_table,
    summarise_combination,
)
from mmhe.evaluation.splits import (
    Fold,
    audit_split,
    group_kfold,
    leave_stimulus_out,
    loso,
    subject_stimulus_kfold,
    trial_kfold,
)
from mmhe.features.batch import FeatureConfig
from mmhe.parallel import dask_client

PACKAGES = (
    "mmhe",
    "numpy",
    "scipy",
    "pandas",
    "torch",
    "scikit-learn",
    "mne",
    "neurokit2",
    "opencv-contrib-python-headless",
    "dask",
    "distributed",
    "zarr",
    "pyarrow",
)
PROTOCOLS = ("loso", "group_kfold", "trial_kfold", "leave_stimulus_out", "subject_stimulus_kfold")
MODALITIES = ("face", "eeg", "physio")


class StaleResultError(MMHEError):
    """Finished folds of a run folder were made from other inputs (and no recompute)."""


class RunSpec(BaseModel):
    """One combination of the benchmark, for one seed."""

    model: str
    task: Literal["compound", "emotion7", "kind", "trial"] = "compound"
    modalities: tuple[str, ...] = ("face",)
    samples: Literal["ME", "MaE", "both"] = "ME"
    protocol: Literal[
        "loso", "group_kfold", "trial_kfold", "leave_stimulus_out", "subject_stimulus_kfold"
    ] = "loso"
    k: int = Field(5, ge=2)
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    early_stopping: bool = False
    seed: int = 0
    control: Literal["none", "shuffled"] = "none"

    @field_validator("modalities")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [m for m in value if m not in MODALITIES]
        if unknown:
            raise ValueError(f"unknown modality {unknown}; use {', '.join(MODALITIES)}")
        return value

    def key(self) -> str:
        """Folder name of this combination and seed in ``RUN/folds``."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        name = f"{self.model}-{self.task}-{self.modality_label()}-{self.protocol}"
        if self.control != "none":
            name += f"-{self.control}"
        return f"{name}-s{self.seed}-{hashlib.sha256(payload.encode()).hexdigest()[:8]}"

    def modality_label(self) -> str:
        """'face+eeg', or 'none' for the chance baselines."""
        return "+".join(self.modalities) or "none"

    def label(self) -> str:
        """'model/task/modalities/protocol' (+ '/shuffled') for messages."""
        text = f"{self.model}/{self.task}/{self.modality_label()}/{self.protocol}"
        return text + (f"/{self.control}" if self.control != "none" else "")

    def inputs(self) -> dict[str, str]:
        """{modality: input name of `load_task`}: EEG models on raw windows read
        ``eeg_raw``, every other model reads band-power ``eeg``."""
        from mmhe.models import model_spec

        raw = model_spec(self.model).input == "eeg_raw"
        return {m: ("eeg_raw" if m == "eeg" and raw else m) for m in self.modalities}


class BenchmarkConfig(BaseModel):
    """A benchmark: runs (each may leave fields to `defaults`), features, seeds, controls.

    seeds : each run is repeated with seeds seed, seed + 1, ..., seed + seeds - 1.
    baselines : add the majority-class and stratified-random rows to every task.
    impute : score samples without input (with the training class frequencies) instead
        of reporting them apart.
    n_perm : permutations of the paired tests between models.
    """

    title: str = "mmhe benchmark"
    defaults: dict[str, Any] = Field(default_factory=dict)
    runs: list[dict[str, Any]]
    features: FeatureConfig = FeatureConfig()
    seeds: int = Field(1, ge=1)
    baselines: bool = True
    impute: bool = False
    n_perm: int = Field(10000, ge=100)
    notes: list[str] = Field(default_factory=list)

    def specs(self) -> list[RunSpec]:
        """Every (run, seed), then the chance baselines of each task and protocol."""
        from mmhe.models import CHANCE_BASELINES

        try:
            bases = [RunSpec(**{**self.defaults, **run}) for run in self.runs]
        except ValueError as exc:
            raise ConfigError(f"not a valid benchmark run: {exc}") from exc
        bases = [
            b.model_copy(update={"modalities": ()}) if b.model in CHANCE_BASELINES else b
            for b in bases
        ]
        if self.baselines:
            have = {(b.model, *_group(b)) for b in bases}
            for group in dict.fromkeys(_group(b) for b in bases):
                template = next(b for b in bases if _group(b) == group)
                for name in CHANCE_BASELINES:
                    if (name, *group) not in have:
                        bases.append(
                            RunSpec(
                                model=name,
                                task=template.task,
                                modalities=(),
                                samples=template.samples,
                                protocol=template.protocol,
                                k=template.k,
                                seed=template.seed,
                                control=template.control,
                            )
                        )
        return [
            base.model_copy(update={"seed": base.seed + i})
            for base in bases
            for i in range(self.seeds)
        ]

    @classmethod
    def load(cls, path: str | Path) -> BenchmarkConfig:
        path = Path(path)
        if not path.is_file():
            raise InputFileError(path, "benchmark config not found")
        try:
            return cls.model_validate(yaml.safe_load(path.read_text()))
        except Exception as exc:  # yaml or validation errors, reported with the file
            raise ConfigError(f"{path}: not a valid benchmark config: {exc}") from exc

    def digest(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]


def _group(spec: RunSpec) -> tuple:
    return (spec.task, spec.samples, spec.protocol, spec.k, spec.control)


def _check_spec(spec: RunSpec) -> None:
    """Refuse impossible combinations before any work, with what to do instead."""
    from mmhe.models import CHANCE_BASELINES, model_spec

    model = model_spec(spec.model)  # unknown names fail here
    if spec.model in CHANCE_BASELINES:
        return
    if not spec.modalities:
        raise ConfigError(f"{spec.label()}: give the modalities the model reads")
    wrong = [m for m in spec.modalities if m not in model.modalities]
    if wrong:
        raise ConfigError(
            f"{spec.model} does not take {'+'.join(wrong)} (it takes "
            f"{', '.join(model.modalities)}); see `mmhe models`"
        )
    if model.input != "multimodal" and len(spec.modalities) != 1:
        raise ConfigError(
            f"{spec.model} takes one modality; use a fusion model for {'+'.join(spec.modalities)}"
        )
    if spec.task == "trial" and "face" in spec.modalities:
        raise ConfigError("the trial task has no face input (faces are per expression)")


def _folds(spec: RunSpec, data: TaskData) -> list[Fold]:
    if spec.protocol == "loso":
        return list(loso(data.groups))
    if spec.protocol == "group_kfold":
        return list(group_kfold(data.groups, spec.k, spec.seed))
    if spec.protocol == "trial_kfold":
        return list(trial_kfold(data.trials, spec.k, spec.seed, groups=data.groups))
    if data.stimuli is None or (np.asarray(data.stimuli) < 0).any():
        raise ConfigError(f"{spec.protocol} needs the stimulus clip of every sample")
    if spec.protocol == "leave_stimulus_out":
        return list(leave_stimulus_out(data.stimuli))
    return list(subject_stimulus_kfold(data.groups, data.stimuli, spec.k, spec.seed))


def _audit_units(spec: RunSpec, data: TaskData) -> dict[str, Any]:
    """`audit_split` / `run_folds` arguments naming what the protocol keeps apart."""
    if spec.protocol == "trial_kfold":
        return {"trials": data.trials}
    if spec.protocol == "leave_stimulus_out":
        return {"trials": data.trials, "stimuli": data.stimuli, "participants_disjoint": False}
    if spec.protocol == "subject_stimulus_kfold":
        return {"stimuli": data.stimuli, "participants_disjoint": True}
    return {}


def _inputs(spec: RunSpec, data: TaskData) -> Any:
    from mmhe.models import model_spec

    names = spec.inputs()
    if not names:  # chance baselines ignore their input
        return np.zeros((len(data.y), 1), np.float32)
    if model_spec(spec.model).input == "multimodal":
        return {m: data.X[name] for m, name in names.items()}
    return data.X[next(iter(names.values()))]


def environment() -> dict[str, Any]:
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": packages}


def _labels_digest(data: TaskData) -> str:
    return text_digest(
        [
            array_digest(data.y),
            array_digest(data.groups),
            array_digest(data.trials),
            array_digest(data.sample_ids),
            None if data.stimuli is None else array_digest(data.stimuli),
            list(data.class_names),
        ]
    )


def _finished(folder: Path, keys: dict[int, str]) -> tuple[set[int], dict[int, dict]]:
    """Fold indices finished with the current key, and the stale folds' records."""
    done, stale = set(), {}
    for info_file in sorted(folder.glob("fold-*.json")):
        index = int(info_file.stem.split("-")[1])
        record = json.loads(info_file.read_text())
        table = info_file.with_suffix(".parquet")
        if index not in keys:  # the split has fewer folds now
            stale[index] = record
        elif table.is_file() and record.get("provenance", {}).get("key") == keys[index]:
            done.add(index)
        elif table.is_file():
            stale[index] = record
    return done, stale


def _run_combination(
    spec: RunSpec,
    data: TaskData,
    run_dir: Path,
    client: Any,
    config_hash: str,
    progress: Callable[[dict], None],
    max_folds: int | None = None,
    recompute: bool = True,
) -> dict[str, Any]:
    from mmhe.evaluation.training import run_folds

    folder = run_dir / "folds" / spec.key()
    folder.mkdir(parents=True, exist_ok=True)
    folds = _folds(spec, data)
    units = _audit_units(spec, data)
    audits = {f.index: audit_split(f, data.groups, **units) for f in folds}  # raises on a leak
    inputs = {name: array_digest(data.X[name]) for name in spec.inputs().values()}
    labels = _labels_digest(data)
    spec_payload = spec.model_dump(mode="json")
    parts = {
        f.index: fold_parts(spec_payload, inputs, labels, f.train_idx, f.test_idx) for f in folds
    }
    keys = {index: fold_key(p) for index, p in parts.items()}
    done, stale = _finished(folder, keys)
    if stale:
        changed = sorted({c for i, r in stale.items() for c in _changes(r, parts.get(i))})
        if not recompute:
            raise StaleResultError(
                f"{run_dir}: {len(stale)} finished folds of {spec.label()} seed {spec.seed} "
                f"were made from other inputs (changed: {', '.join(changed)}); run again "
                "without --no-recompute to recompute them, or use a new --out folder"
            )
        for index in stale:
            for suffix in (".parquet", ".json"):
                (folder / f"fold-{index:04d}{suffix}").unlink(missing_ok=True)
    todo = [f for f in folds if f.index not in done]
    if max_folds is not None:
        todo = todo[: max(0, max_folds - len(done))]
    started = time.perf_counter()

    def save(index: int, rows: pd.DataFrame, info: dict[str, Any]) -> None:
        rows = rows.assign(
            sample=data.sample_ids[rows["sample"].to_numpy()],
            task=spec.task,
            modalities=spec.modality_label(),
            protocol=spec.protocol,
            samples=spec.samples,
            control=spec.control,
            seed=spec.seed,
        )
        tmp = folder / f".fold-{index:04d}.parquet.tmp"
        rows.to_parquet(tmp, index=False)
        scores = pooled_scores(rows["y_true"], rows["y_pred"], list(range(len(data.class_names))))
        record = {
            "fold": index,
            "participant": ",".join(map(str, pd.unique(rows["participant"]))),
            "model": spec.model,
            "task": spec.task,
            "modalities": spec.modality_label(),
            "protocol": spec.protocol,
            "samples": spec.samples,
            "control": spec.control,
            "n_train": int(info.get("n_train", 0)),
            "n_test": len(rows),
            "n_missing_input": int(rows["missing_input"].sum()),
            "accuracy": scores["accuracy"],
            "uf1": scores["uf1"],
            "uar": scores["uar"],
            "seed": spec.seed,
            "config_hash": config_hash,
            "provenance_key": keys[index],
            "mmhe_version": __version__,
            "seconds": float(info.get("seconds", 0.0)),
            "epochs_trained": info.get("epochs_trained"),
            "epochs_set": info.get("epochs_set"),
            "n_validation": int(info.get("n_validation", 0) or 0),
            "provenance": {"key": keys[index], "parts": parts[index]},
            "audit": audits[index],
            "fit_audit": info.get("fit_audit", {"passed": True, "failures": [], "fits": []}),
        }
        info_tmp = folder / f".fold-{index:04d}.json.tmp"
        info_tmp.write_text(json.dumps(record, default=str))
        info_tmp.replace(folder / f"fold-{index:04d}.json")
        tmp.replace(folder / f"fold-{index:04d}.parquet")
        progress(record)

    if todo:
        from mmhe.evaluation.training import resolve_settings

        settings = resolve_settings(
            spec.model, epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr
        )

        def saved(index: int, rows: pd.DataFrame, info: dict[str, Any]) -> None:
            save(index, rows, info | {"epochs_set": settings.epochs})

        run_folds(
            spec.model,
            _inputs(spec, data),
            data.y,
            data.groups,
            todo,
            n_classes=len(data.class_names),
            class_names=data.class_names,
            epochs=spec.epochs,
            batch_size=spec.batch_size,
            lr=spec.lr,
            seed=spec.seed,
            early_stopping=spec.early_stopping,
            client=client,
            on_fold_done=saved,
            **units,
        )
    finished = [folder / f"fold-{f.index:04d}.parquet" for f in folds]
    return {
        "spec": spec,
        "folds": folds,
        "finished": [p for p in finished if p.is_file()],
        "seconds": time.perf_counter() - started,
    }


def _changes(record: dict, parts_now: dict[str, str] | None) -> list[str]:
    if parts_now is None:
        return ["split (fewer folds)"]
    return changed_parts(record.get("provenance", {}).get("parts"), parts_now)


def run_benchmark(
    store: str | Path,
    config: BenchmarkConfig,
    out: str | Path,
    *,
    scheduler: str | None = "sync",
    n_workers: int = 2,
    progress: Callable[[dict], None] | None = None,
    max_folds: int | None = None,
    recompute: bool = True,
) -> pd.DataFrame:
    """Run every combination and seed of `config` on `store`; returns the results table.

    max_folds : stop each combination after this many finished folds (a quick look; such
        combinations are marked incomplete and a later run finishes them).
    scheduler : "sync" trains in this process; None starts a local Dask cluster;
        an address uses an existing one. Folds are the parallel unit.
    recompute : False refuses (`StaleResultError`) to replace finished folds whose
        inputs changed, instead of recomputing them.
    """
    from mmhe.features.batch import compute_features, feature_dir
    from mmhe.store import MMHEStore

    opened = MMHEStore(store)
    store_path = opened.path.resolve()
    run_dir = Path(out)
    run_dir.mkdir(parents=True, exist_ok=True)
    specs = config.specs()
    for spec in specs:
        _check_spec(spec)
    needed = sorted({name for s in specs for name in s.inputs().values()})
    compute_features(
        store_path,
        needed,
        config=config.features,
        scheduler="sync" if scheduler == "sync" else scheduler,
        n_workers=n_workers,
    )
    config_hash = config.digest()
    progress = progress or (lambda record: None)
    tasks: dict[tuple, TaskData] = {}
    outcomes = []
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: intra-op threads only spin; folds are the
    # parallel unit (Dask workers get one thread each too)
    with ExitStack() as stack:
        stack.callback(torch.set_num_threads, threads)
        client = (
            None if scheduler == "sync" else stack.enter_context(dask_client(scheduler, n_workers))
        )
        for spec in specs:
            key = (spec.task, spec.samples)
            if key not in tasks:
                tasks[key] = load_task(
                    store_path,
                    spec.task,
                    tuple(inputs_for(specs, key)),
                    samples=spec.samples,
                    config=config.features,
                )
            data = tasks[key]
            if spec.control == "shuffled":
                data = with_shuffled_labels(data, spec.seed)
            outcomes.append(
                _run_combination(
                    spec, data, run_dir, client, config_hash, progress, max_folds, recompute
                )
            )
    provenance = {
        "store": str(store_path),
        "store_version": store_path.name,
        "store_content_key": opened.manifest.get("content_key"),
        "features": {name: feature_dir(opened, name, config.features).name for name in needed},
    }
    return write_results(run_dir, config, provenance, outcomes, tasks, config_hash)


def inputs_for(specs: list[RunSpec], key: tuple[str, str]) -> list[str]:
    """Every input any run of one (task, samples) reads."""
    return sorted({n for s in specs if (s.task, s.samples) == key for n in s.inputs().values()})


def _duplicate_checks(tasks: dict[tuple, TaskData]) -> tuple[list[dict], set[tuple]]:
    """Near-duplicate samples across participants, per task and input."""
    checks, failed = [], set()
    for (task, samples), data in tasks.items():
        for name, X in data.X.items():
            pairs = near_duplicates(X, data.groups)
            if pairs:
                failed.add((task, samples))
            detail = (
                "; ".join(
                    f"{p['participant_a']} and {p['participant_b']} share {p['n_pairs']} "
                    f"near-identical samples (distance {p['min_distance']:.1e} SD)"
                    for p in pairs[:5]
                )
                + " -- the same person under two IDs, or one recording ingested twice?"
                if pairs
                else f"{len(data.y)} samples of {np.unique(data.groups).size} participants: "
                "no two participants share a sample closer than 0.02 SD (RMS per feature)"
            )
            checks.append(
                {
                    "check": f"{task}/{samples}: no near-identical {name} samples across "
                    "participants",
                    "passed": not pairs,
                    "detail": detail,
                }
            )
    return checks, failed


def _combination_checks(
    label: str,
    outcomes: list[dict],
    infos: list[list[dict]],
    data: TaskData,
    complete: bool,
    tested_once: bool,
) -> list[dict]:
    """Audit entries of one combination (all its seeds), each computed from fold records."""
    spec: RunSpec = outcomes[0]["spec"]
    records = [i for per_seed in infos for i in per_seed]
    unit = {
        "loso": "participants",
        "group_kfold": "participants",
        "trial_kfold": "trials",
        "leave_stimulus_out": "trials and stimulus clips",
        "subject_stimulus_kfold": "participants and stimulus clips",
    }[spec.protocol]
    split_ok = all(bool(r["audit"].get("passed", False)) for r in records)
    fits = [r.get("fit_audit", {}) for r in records]
    failures = [f for fa in fits for f in fa.get("failures", [])]
    n_fits = sum(len(fa.get("fits", [])) for fa in fits)
    kinds = sorted({f["what"] for fa in fits for f in fa.get("fits", [])})
    recomputed = sum(
        1 for fa in fits for f in fa.get("fits", []) if f.get("mean_matches_rows") is not None
    )
    checks = [
        {
            "check": f"{label}: train and test {unit} disjoint in every fold",
            "passed": split_ok,
            "detail": f"{len(records)} folds over {len(outcomes)} seeds, from their index sets",
        },
        {
            "check": f"{label}: every fitted piece used training rows only",
            "passed": not failures and len(records) > 0,
            "detail": (
                "; ".join(failures[:5])
                if failures
                else f"{n_fits} fits checked ({', '.join(kinds)}): rows recorded by the "
                f"engine are training rows sharing no {unit.split(' and ')[0]} with the test "
                f"rows; {recomputed} scaler statistics recomputed from those rows and equal"
            ),
        },
    ]
    fixed = [
        r
        for r in records
        if r.get("epochs_set") is not None and r.get("epochs_trained") is not None
    ]
    short = [r for r in fixed if int(r["epochs_trained"]) != int(r["epochs_set"])]
    if spec.early_stopping:
        validation = [
            f for fa in fits for f in fa.get("fits", []) if f["what"].startswith("early stopping")
        ]
        ok = bool(validation) and all(
            not f["test_rows_used"]
            and not f["rows_outside_training"]
            and not f["shared_units"]
            and not f.get("validation_participants_also_fitted")
            for f in validation
        )
        detail = (
            f"early stopping on inner validation participants in {len(validation)} folds: "
            "none of their rows is a test row or shares a test unit, none was also fitted"
        )
    else:
        ok = not short
        detail = (
            f"fixed epochs: all {len(fixed)} trained folds ran the set number of epochs"
            if fixed
            else "no epoch-based training (fitted once per fold)"
        )
        if short:
            detail = f"{len(short)} folds stopped before the set number of epochs"
    checks.append(
        {"check": f"{label}: no model selection on test data", "passed": ok, "detail": detail}
    )
    checks.append(
        {
            "check": f"{label}: tested on every sample of the task once per seed",
            "passed": tested_once,
            "detail": f"{len(data.sample_ids)} samples x {len(outcomes)} seeds",
        }
    )
    n_folds = len(outcomes[0]["folds"])
    checks.append(
        {
            "check": f"{label}: all {n_folds} folds finished for every seed",
            "passed": complete,
            "detail": f"{sum(len(o['finished']) for o in outcomes)} of "
            f"{sum(len(o['folds']) for o in outcomes)} fold runs",
        }
    )
    return checks


def write_results(
    run_dir: Path,
    config: BenchmarkConfig,
    provenance: dict[str, Any],
    outcomes: list[dict[str, Any]],
    tasks: dict[tuple, TaskData],
    config_hash: str,
) -> pd.DataFrame:
    """Write every table of the run folder (module docstring); returns ``results``."""
    by_combo: dict[str, list[dict]] = {}
    for outcome in outcomes:
        spec: RunSpec = outcome["spec"]
        combo = json.dumps(spec.model_copy(update={"seed": 0}).model_dump(mode="json"))
        by_combo.setdefault(combo, []).append(outcome)
    predictions, fold_rows, results = [], [], []
    checks, duplicate_failed = _duplicate_checks(tasks)
    for group in by_combo.values():
        spec = group[0]["spec"]
        data = tasks[(spec.task, spec.samples)]
        infos, parts = [], []
        tested_once, complete = True, True
        for outcome in group:
            seed_parts = [pd.read_parquet(p) for p in outcome["finished"]]
            seed_infos = [
                json.loads(p.with_suffix(".json").read_text()) for p in outcome["finished"]
            ]
            infos.append(seed_infos)
            fold_rows += [
                {k: v for k, v in i.items() if k not in ("audit", "fit_audit", "provenance")}
                for i in seed_infos
            ]
            done = len(seed_parts) == len(outcome["folds"])
            complete &= done
            if seed_parts:
                pred = pd.concat(seed_parts, ignore_index=True)
                parts.append(pred)
                tested_once &= done and sorted(pred["sample"]) == sorted(data.sample_ids)
            else:
                tested_once = False
        label = spec.label()
        combo_checks = _combination_checks(label, group, infos, data, complete, tested_once)
        checks += combo_checks
        if not parts:
            continue
        pred = pd.concat(parts, ignore_index=True)
        predictions.append(pred)
        audit_ok = all(c["passed"] for c in combo_checks) and (
            (spec.task, spec.samples) not in duplicate_failed
        )
        results.append(
            {
                "model": spec.model,
                "task": spec.task,
                "modalities": spec.modality_label(),
                "protocol": spec.protocol,
                "samples": spec.samples,
                "control": spec.control,
                "complete": complete,
                "audit_passed": audit_ok,
                "epochs": spec.epochs,
                "config_hash": config_hash,
                **summarise_combination(pred, data.class_names, impute=config.impute),
            }
        )
    results_frame = pd.DataFrame(results)
    all_predictions = pd.concat(predictions, ignore_index=True)
    all_predictions.to_parquet(run_dir / "predictions.parquet", index=False)
    pd.DataFrame(fold_rows).to_parquet(run_dir / "folds.parquet", index=False)
    classes = {key: d.class_names for key, d in tasks.items()}
    by_task = list(all_predictions.groupby(["task", "samples"], sort=False))
    seeds = pd.concat(
        [seed_table(g, len(classes[key]), config.impute) for key, g in by_task],
        ignore_index=True,
    )
    people = pd.concat(
        [participant_table(g, len(classes[key]), config.impute) for key, g in by_task],
        ignore_index=True,
    )
    seeds.round(4).to_csv(run_dir / "seeds.csv", index=False)
    people.round(4).to_csv(run_dir / "participants.csv", index=False)
    tests = paired_permutation_tests(
        all_predictions, classes, impute=config.impute, n_perm=config.n_perm
    )
    tests.to_csv(run_dir / "pairwise.csv", index=False)
    for metric in ("uf1", "uar"):
        pvalue_matrix(tests, metric).round(4).to_csv(run_dir / f"pvalues_{metric}.csv")
    (run_dir / "audit.json").write_text(
        json.dumps(
            {
                "passed": all(c["passed"] for c in checks),
                "not_checked": "hyper-parameters chosen by looking at test results (no audit "
                "can see them: fix them before the run or choose them on a nested split)",
                "checks": checks,
            },
            indent=2,
            default=str,
        )
    )
    (run_dir / "config.json").write_text(
        json.dumps(
            {
                "title": config.title,
                **provenance,
                "config_hash": config_hash,
                "config": config.model_dump(mode="json"),
                "classes": {task: names for (task, _), names in classes.items()},
                "interval": f"95 % {INTERVAL_METHOD}",
                "notes": config.notes,
            },
            indent=2,
        )
    )
    (run_dir / "environment.json").write_text(json.dumps(environment(), indent=2))
    results_frame.round(4).to_csv(run_dir / "results.csv", index=False)
    (run_dir / "results.md").write_text(results_markdown(config, results_frame, tests))
    return results_frame


def results_markdown(config: BenchmarkConfig, results: pd.DataFrame, tests: pd.DataFrame) -> str:
    """The run's Markdown summary: the paper table and the UF1 p-value matrix."""
    seeds = f"{config.seeds} seeds (mean ±SD over seeds)" if config.seeds > 1 else "one seed"
    text = (
        f"# {config.title}\n\nPooled over all folds (MEGC convention), {seeds}; 95 % CIs: "
        f"{INTERVAL_METHOD}; per-participant scores are mean ± SD over participants. "
        "Samples without input are "
        + ("scored with the training class frequencies" if config.impute else "counted apart")
        + ".\n\n"
        + markdown_table(paper_table(results))
        + "\n"
    )
    matrix = pvalue_matrix(tests, "uf1")
    if not matrix.empty:
        text += (
            "\nPaired permutation tests over participants (UF1, Holm-adjusted p-values):\n\n"
            + markdown_table(matrix.reset_index().drop(columns=["samples"]))
            + "\n"
        )
    return text
