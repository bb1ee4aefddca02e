"""Writing a benchmark run folder: every table and the audit report.

`write_results` writes config.json, environment.json, folds.parquet,
predictions.parquet, results.csv / .md, seeds.csv, participants.csv, pairwise.csv,
pvalues_uf1.csv, pvalues_uar.csv and audit.json (their columns: `mmhe.evaluation.runner`
and `mmhe.evaluation.results`).
"""

from __future__ import annotations

import json
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mmhe.evaluation.audit import combination_checks, duplicate_checks
from mmhe.evaluation.intervals import METHOD as INTERVAL_METHOD
from mmhe.evaluation.results import (
    markdown_table,
    paired_permutation_tests,
    paper_table,
    participant_table,
    pvalue_matrix,
    seed_table,
    summarise_combination,
)

if TYPE_CHECKING:
    from mmhe.evaluation.datasets import TaskData
    from mmhe.evaluation.runner import BenchmarkConfig, RunSpec

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


def environment(device: str | None = None) -> dict[str, Any]:
    """Python, platform, the versions of the packages a result depends on and, when
    given, the device torch models trained on."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    found = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": packages,
    }
    return found if device is None else found | {"device": device}


def write_results(
    run_dir: Path,
    config: BenchmarkConfig,
    provenance: dict[str, Any],
    outcomes: list[dict[str, Any]],
    tasks: dict[tuple, TaskData],
    config_hash: str,
    device: str = "cpu",
) -> pd.DataFrame:
    """Write every table of the run folder (module docstring); returns ``results``.

    device : where torch models trained (recorded in config.json and environment.json)."""
    by_combo: dict[str, list[dict]] = {}
    for outcome in outcomes:
        spec: RunSpec = outcome["spec"]
        combo = json.dumps(spec.model_copy(update={"seed": 0}).model_dump(mode="json"))
        by_combo.setdefault(combo, []).append(outcome)
    predictions, fold_rows, results = [], [], []
    checks, duplicate_failed = duplicate_checks(tasks)
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
        combo_checks = combination_checks(label, group, infos, data, complete, tested_once)
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
                "device": device,
            },
            indent=2,
        )
    )
    (run_dir / "environment.json").write_text(json.dumps(environment(device), indent=2))
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
