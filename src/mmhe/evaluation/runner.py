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
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mmhe import __version__
from mmhe.errors import ConfigError, InputFileError, MMHEError
from mmhe.evaluation.datasets import TaskData, load_task, with_shuffled_labels
from mmhe.evaluation.metrics import pooled_scores
from mmhe.evaluation.provenance import (
    array_digest,
    changed_parts,
    fold_key,
    fold_parts,
    text_digest,
)
from mmhe.evaluation.run_folder import write_results
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
from mmhe.parallel import choose_scheduler, dask_client

PROTOCOLS = ("loso", "group_kfold", "trial_kfold", "leave_stimulus_out", "subject_stimulus_kfold")
MODALITIES = ("face", "eeg", "physio")
COMBINATIONS_IN_FLIGHT = 2
"""Combinations (model x seed) whose folds are queued on a cluster at once: when the
last folds of one run, the next one's fill the idle workers (the demo's benchmark:
workers busy 93 % of the time one at a time)."""


class StaleResultError(MMHEError):
    """Finished folds of a run folder were made from other inputs (and no recompute)."""


class RunSpec(BaseModel):
    """One combination of the benchmark, for one seed (unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid")

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

    @model_validator(mode="after")
    def _consistent(self) -> RunSpec:
        try:
            _check_spec(self)  # unknown model, modalities it cannot take, trial + face
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

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

    Unknown keys are refused, at the top, in `features` and in every run (a typo such as
    ``modalitis:`` would otherwise be ignored); every run is checked when the config is made.
    """

    model_config = ConfigDict(extra="forbid")

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

    @model_validator(mode="after")
    def _runs_valid(self) -> BenchmarkConfig:
        if not self.runs:
            raise ValueError("runs: give at least one run")
        for number, run in enumerate(self.runs, start=1):
            try:
                RunSpec(**{**self.defaults, **run})
            except ValidationError as exc:
                raise ValueError(f"run {number}: {_one_line(exc)}") from None
            except ConfigError as exc:
                raise ValueError(f"run {number}: {exc}") from None
        return self

    @classmethod
    def load(cls, path: str | Path) -> BenchmarkConfig:
        path = Path(path)
        if not path.is_file():
            raise InputFileError(path, "benchmark config not found")
        try:
            return cls.model_validate(yaml.safe_load(path.read_text()))
        except ValidationError as exc:
            raise ConfigError(f"{path}: not a valid benchmark config: {_one_line(exc)}") from None
        except Exception as exc:  # yaml errors, reported with the file
            raise ConfigError(f"{path}: not a valid benchmark config: {exc}") from exc

    def digest(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]


def _one_line(exc: ValidationError) -> str:
    """A pydantic error as one line: ``where: what`` for each problem."""
    parts = []
    for e in exc.errors():
        where = ".".join(map(str, e["loc"]))
        what = e["msg"].replace("Value error, ", "")
        parts.append(f"{where}: {what}" if where else what)
    return "; ".join(parts)


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
    device: str = "cpu",
    recompute: bool = True,
) -> dict[str, Any]:
    from mmhe.evaluation.folds import run_folds

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
            "device": info.get("device", device),
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
            device=device,
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
    device: str = "auto",
    recompute: bool = True,
) -> pd.DataFrame:
    """Run every combination and seed of `config` on `store`; returns the results table.

    device : where torch models train: "auto" (CUDA when torch sees a GPU), "cpu",
        "cuda" or "cuda:N" (`mmhe.evaluation.device.resolve_device`); recorded per fold.
        Models registered with `mmhe.models.register` run like the baselines.

    max_folds : stop each combination after this many finished folds (a quick look; such
        combinations are marked incomplete and a later run finishes them).
    scheduler : "sync" trains in this process; "local" starts a local Dask cluster;
        None or "auto" chooses (`mmhe.parallel.choose_scheduler`: a local cluster from 2
        cores when there are at least two folds per worker, measured 1.8x faster than
        this process for the demo); an address uses an existing one. Folds are the
        parallel unit.
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
    from mmhe.evaluation.device import resolve_device

    device = str(resolve_device(device))  # a missing GPU fails before any work
    for spec in specs:
        _check_spec(spec)
    scheduler = choose_scheduler(scheduler, len(specs) * len(opened.participants()), n_workers)
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

        def run(spec: RunSpec) -> dict[str, Any]:
            data = tasks[(spec.task, spec.samples)]
            if spec.control == "shuffled":
                data = with_shuffled_labels(data, spec.seed)
            return _run_combination(
                spec, data, run_dir, client, config_hash, progress, max_folds, device, recompute
            )

        if client is None:
            outcomes = [run(spec) for spec in specs]
        else:  # the next combination's folds fill the workers the last folds leave idle
            pool = ThreadPoolExecutor(COMBINATIONS_IN_FLIGHT, thread_name_prefix="mmhe-run")
            try:
                outcomes = list(pool.map(run, specs))
            finally:  # on an error or Ctrl-C, do not wait for the other combination:
                # closing the client (below) ends its wait for its folds
                pool.shutdown(wait=False, cancel_futures=True)
    provenance = {
        "store": str(store_path),
        "store_version": store_path.name,
        "store_content_key": opened.manifest.get("content_key"),
        "features": {name: feature_dir(opened, name, config.features).name for name in needed},
    }
    return write_results(run_dir, config, provenance, outcomes, tasks, config_hash, device)


def inputs_for(specs: list[RunSpec], key: tuple[str, str]) -> list[str]:
    """Every input any run of one (task, samples) reads."""
    return sorted({n for s in specs if (s.task, s.samples) == key for n in s.inputs().values()})
