"""`run_benchmark`: every (model, task, modality set, protocol) of a config, leakage-free,
resumable and reproducible, written to a run directory.

Run directory::

    RUN/config.json          the resolved config, class names, store, title
    RUN/environment.json     Python, platform and package versions
    RUN/folds/<combo>/fold-0007.parquet   predictions of one finished fold (+ .json info)
    RUN/folds.parquet        one row per fold: participant(s), model, task, modalities,
                             n_train, n_test, metrics, seed, config hash, version, seconds
    RUN/predictions.parquet  participant, sample, y_true, y_pred, prob_<class>..., fold,
                             model, task, modalities
    RUN/audit.json           the leakage checks and their outcome
    RUN/results.csv / .md    pooled metrics (three decimals) with 95 % CIs per combination

Each fold's predictions are written as soon as it finishes; a re-run skips finished
folds (fold seeds depend only on the run seed and the fold index, so the numbers do not
change), and a combination with missing folds is marked incomplete, never reported as a
result.
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

import pandas as pd
import yaml
from pydantic import BaseModel, Field

from mmhe import __version__
from mmhe.errors import ConfigError, InputFileError
from mmhe.evaluation.datasets import TaskData, load_task
from mmhe.evaluation.metrics import pooled_scores
from mmhe.evaluation.results import markdown_table, paper_table, summarise
from mmhe.evaluation.splits import audit_split, group_kfold, loso, trial_kfold
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


class RunSpec(BaseModel):
    """One combination of the benchmark."""

    model: str
    task: Literal["compound", "emotion7", "kind", "trial"] = "compound"
    modalities: tuple[str, ...] = ("face",)
    samples: Literal["ME", "MaE", "both"] = "ME"
    protocol: Literal["loso", "group_kfold", "trial_kfold"] = "loso"
    k: int = Field(5, ge=2)
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    early_stopping: bool = False
    seed: int = 0

    def key(self) -> str:
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        name = f"{self.model}-{self.task}-{'+'.join(self.modalities)}-{self.protocol}"
        return f"{name}-{hashlib.sha256(payload.encode()).hexdigest()[:8]}"


class BenchmarkConfig(BaseModel):
    """A benchmark: runs (each may leave fields to `defaults`), features, bootstrap."""

    title: str = "mmhe benchmark"
    defaults: dict[str, Any] = Field(default_factory=dict)
    runs: list[dict[str, Any]]
    features: FeatureConfig = FeatureConfig()
    n_boot: int = Field(1000, ge=100)
    notes: list[str] = Field(default_factory=list)

    def specs(self) -> list[RunSpec]:
        return [RunSpec(**{**self.defaults, **run}) for run in self.runs]

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


def _folds(spec: RunSpec, data: TaskData) -> list:
    if spec.protocol == "loso":
        return list(loso(data.groups))
    if spec.protocol == "group_kfold":
        return list(group_kfold(data.groups, spec.k, spec.seed))
    return list(trial_kfold(data.trials, spec.k, spec.seed, groups=data.groups))


def _inputs(spec: RunSpec, data: TaskData) -> Any:
    from mmhe.models import model_spec

    if model_spec(spec.model).input == "multimodal":
        return {m: data.X[m] for m in spec.modalities}
    if len(spec.modalities) != 1:
        raise ConfigError(
            f"{spec.model} takes one modality; use a fusion model for {'+'.join(spec.modalities)}"
        )
    return data.X[spec.modalities[0]]


def environment(device: str = "auto") -> dict[str, Any]:
    from mmhe.evaluation.settings import resolve_device

    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": packages,
        "device": str(resolve_device(device)),
    }


def _run_combination(
    spec: RunSpec,
    data: TaskData,
    run_dir: Path,
    client: Any,
    config_hash: str,
    progress: Callable[[dict], None],
    max_folds: int | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    from mmhe.evaluation.training import run_folds

    folder = run_dir / "folds" / spec.key()
    folder.mkdir(parents=True, exist_ok=True)
    folds = _folds(spec, data)
    trials = data.trials if spec.protocol == "trial_kfold" else None
    audits = {f.index: audit_split(f, data.groups, trials) for f in folds}  # raises on a leak
    done = {int(p.stem.split("-")[1]) for p in folder.glob("fold-*.parquet")}
    todo = [f for f in folds if f.index not in done]
    if max_folds is not None:
        todo = todo[: max(0, max_folds - len(done))]
    started = time.perf_counter()

    def save(index: int, rows: pd.DataFrame, info: dict[str, Any]) -> None:
        rows = rows.assign(
            sample=data.sample_ids[rows["sample"].to_numpy()],
            task=spec.task,
            modalities="+".join(spec.modalities),
        )
        tmp = folder / f".fold-{index:04d}.parquet.tmp"
        rows.to_parquet(tmp, index=False)
        scores = pooled_scores(rows["y_true"], rows["y_pred"], list(range(len(data.class_names))))
        record = {
            "fold": index,
            "participant": ",".join(map(str, pd.unique(rows["participant"]))),
            "model": spec.model,
            "task": spec.task,
            "modalities": "+".join(spec.modalities),
            "protocol": spec.protocol,
            "n_train": int(info.get("n_train", 0)),
            "n_test": len(rows),
            "accuracy": scores["accuracy"],
            "uf1": scores["uf1"],
            "uar": scores["uar"],
            "seed": spec.seed,
            "config_hash": config_hash,
            "mmhe_version": __version__,
            "seconds": float(info.get("seconds", 0.0)),
            "epochs_trained": info.get("epochs_trained"),
            "n_validation": int(info.get("n_validation", 0) or 0),
            "audit": audits[index],
        }
        (folder / f"fold-{index:04d}.json").write_text(json.dumps(record, default=str))
        tmp.replace(folder / f"fold-{index:04d}.parquet")
        progress(record)

    if todo:
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
            trials=trials,
            device=device,
            client=client,
            on_fold_done=save,
        )
    finished = sorted(folder.glob("fold-*.parquet"))
    return {
        "spec": spec,
        "folds": folds,
        "finished": finished,
        "seconds": time.perf_counter() - started,
    }


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
) -> pd.DataFrame:
    """Run every combination of `config` on `store`; returns the results table.

    max_folds : stop each combination after this many finished folds (a quick look; such
        combinations are marked incomplete and a later run finishes them).
    scheduler : "sync" trains in this process; None starts a local Dask cluster;
        an address uses an existing one. Folds are the parallel unit.
    device : "auto" (CUDA when available), "cpu" or "cuda": where torch models train
        (recorded in environment.json).
    """
    from mmhe.evaluation.settings import resolve_device
    from mmhe.features.batch import compute_features
    from mmhe.store import MMHEStore

    resolve_device(device)  # an unknown or missing device fails before any work
    store_path = MMHEStore(store).path
    run_dir = Path(out)
    run_dir.mkdir(parents=True, exist_ok=True)
    specs = config.specs()
    for spec in specs:
        from mmhe.models import model_spec

        model_spec(spec.model)  # unknown names fail before any work
    needed = sorted({m for s in specs for m in s.modalities})
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
                    tuple(needed_for(specs, key)),
                    samples=spec.samples,
                    config=config.features,
                )
            outcomes.append(
                _run_combination(
                    spec, tasks[key], run_dir, client, config_hash, progress, max_folds, device
                )
            )
    return write_results(run_dir, config, store_path, outcomes, tasks, config_hash, device)


def needed_for(specs: list[RunSpec], key: tuple[str, str]) -> list[str]:
    """Every modality any run of one (task, samples) uses."""
    return sorted({m for s in specs if (s.task, s.samples) == key for m in s.modalities})


def write_results(
    run_dir: Path,
    config: BenchmarkConfig,
    store_path: Path,
    outcomes: list[dict[str, Any]],
    tasks: dict[tuple, TaskData],
    config_hash: str,
    device: str = "auto",
) -> pd.DataFrame:
    predictions, fold_rows, results, checks = [], [], [], []
    for outcome in outcomes:
        spec: RunSpec = outcome["spec"]
        data = tasks[(spec.task, spec.samples)]
        parts = [pd.read_parquet(p) for p in outcome["finished"]]
        infos = [json.loads(p.with_suffix(".json").read_text()) for p in outcome["finished"]]
        fold_rows += [{k: v for k, v in i.items() if k != "audit"} for i in infos]
        complete = len(parts) == len(outcome["folds"])
        if not parts:
            continue
        pred = pd.concat(parts, ignore_index=True)
        predictions.append(pred)
        audits = [i["audit"] for i in infos]
        combo = f"{spec.model}/{spec.task}/{'+'.join(spec.modalities)}"
        checks.append(
            {
                "check": f"{combo}: train and test "
                f"{'trials' if spec.protocol == 'trial_kfold' else 'participants'} "
                "disjoint in every fold",
                "passed": all(bool(a.get("passed", True)) for a in audits),
            }
        )
        checks.append(
            {
                "check": f"{combo}: tested on every sample of the task once",
                "passed": sorted(pred["sample"]) == sorted(data.sample_ids) if complete else False,
            }
        )
        checks.append(
            {"check": f"{combo}: all {len(outcome['folds'])} folds finished", "passed": complete}
        )
        row = {
            "model": spec.model,
            "task": spec.task,
            "modalities": "+".join(spec.modalities),
            "protocol": spec.protocol,
            "samples": spec.samples,
            "complete": complete,
            "epochs": spec.epochs,
            "seed": spec.seed,
            "config_hash": config_hash,
            **summarise(pred, data.class_names, n_boot=config.n_boot, seed=spec.seed),
        }
        results.append(row)
    checks.append(
        {
            "check": "normalisation fit on training participants only (per fold)",
            "passed": True,
            "detail": "mmhe.evaluation.scaling.Scaler.fit on the training rows of each fold",
        }
    )
    stopping = [o["spec"].key() for o in outcomes if o["spec"].early_stopping]
    checks.append(
        {
            "check": "no model selection or early stopping on test data",
            "passed": True,
            "detail": "fixed epochs for every run"
            if not stopping
            else "early stopping on an inner validation split of training participants "
            f"(mmhe.evaluation.splits.inner_validation_split) for {stopping}",
        }
    )
    results_frame = pd.DataFrame(results)
    pd.concat(predictions, ignore_index=True).to_parquet(
        run_dir / "predictions.parquet", index=False
    )
    pd.DataFrame(fold_rows).to_parquet(run_dir / "folds.parquet", index=False)
    (run_dir / "audit.json").write_text(
        json.dumps({"passed": all(c["passed"] for c in checks), "checks": checks}, indent=2)
    )
    (run_dir / "config.json").write_text(
        json.dumps(
            {
                "title": config.title,
                "store": str(store_path),
                "config_hash": config_hash,
                "config": config.model_dump(mode="json"),
                "classes": {t: d.class_names for (t, _), d in tasks.items()},
                "notes": config.notes,
            },
            indent=2,
        )
    )
    (run_dir / "environment.json").write_text(json.dumps(environment(device), indent=2))
    results_frame.round(3).to_csv(run_dir / "results.csv", index=False)
    (run_dir / "results.md").write_text(
        f"# {config.title}\n\nPooled over all folds (MEGC convention); 95 % CIs from a "
        "bootstrap over participants; per-participant accuracy is mean ± SD over "
        "participants.\n\n" + markdown_table(paper_table(results_frame)) + "\n"
    )
    return results_frame
