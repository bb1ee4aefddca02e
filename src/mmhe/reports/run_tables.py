"""Tables of the run report computed from a run folder (`mmhe benchmark`'s output).

Everything here reads the files `mmhe.evaluation.run_folder.write_results` wrote and
returns tidy DataFrames: per-class scores, confusion matrices, the significance markers
of the main table, the leakage audit as a matrix, what was run, and the deviations of
the run from each model's published training settings.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from mmhe.evaluation.results import COMBINATION, TEST_GROUP, scored
from mmhe.models import CHANCE_BASELINES

ALPHA = 0.05
"""Significance level of the markers (Holm-adjusted p-values)."""
MARKS = {
    "best": "▲",
    "worse": "*",
    "chance": "†",
}
"""Markers of the main table (legend: `MARK_LEGEND`)."""
MARK_LEGEND = {
    "▲": "highest UF1 of its task and protocol (the chance rows excluded)",
    "*": f"UF1 differs from the ▲ model (paired permutation test over participants, "
    f"Holm-adjusted p < {ALPHA:g})",
    "†": f"UF1 not significantly above the majority-class baseline (Holm-adjusted p ≥ {ALPHA:g}"
    " or below it): no evidence it learned anything the class frequencies do not give",
}


def label(row: pd.Series | dict) -> str:
    """'model (modalities)', the name of a combination in pairwise.csv."""
    return f"{row['model']} ({row['modalities']})"


def class_names(config: dict[str, Any], task: str, k: int) -> list[str]:
    """Class names of `task` from the run's config.json (``class 0`` ... when missing)."""
    names = config.get("classes", {}).get(task)
    return list(names) if names else [f"class {i}" for i in range(k)]


def _combinations(predictions: pd.DataFrame) -> list[tuple[dict, pd.DataFrame]]:
    return [
        (dict(zip(COMBINATION, key, strict=True)), group)
        for key, group in predictions.groupby(COMBINATION, sort=False, dropna=False)
    ]


def per_class_scores(
    predictions: pd.DataFrame, config: dict[str, Any], *, impute: bool = False
) -> pd.DataFrame:
    """Precision, recall and F1 of every class of every combination (pooled over folds).

    Each seed is scored on its pooled predictions (scikit-learn's
    `precision_recall_fscore_support`; a class never predicted has no precision, NaN),
    then the mean over seeds is taken. Columns: model, modalities, task, protocol,
    class, precision, recall, f1, support (true samples per seed), predicted (predicted
    samples per seed).
    """
    rows = []
    for combo, group in _combinations(scored(predictions, impute)):
        k = _n_classes(group, config, combo["task"])
        names = class_names(config, combo["task"], k)
        per_seed = []
        for _, seed_rows in group.groupby("seed", sort=True):
            precision, recall, f1, support = precision_recall_fscore_support(
                seed_rows["y_true"],
                seed_rows["y_pred"],
                labels=list(range(k)),
                zero_division=np.nan,
            )
            predicted = np.bincount(seed_rows["y_pred"].to_numpy(), minlength=k)[:k]
            per_seed.append(np.stack([precision, recall, f1, support, predicted]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a class never predicted
            mean = np.nanmean(np.stack(per_seed), axis=0)
        for c, name in enumerate(names):
            rows.append(
                {
                    "model": combo["model"],
                    "modalities": combo["modalities"],
                    "task": combo["task"],
                    "protocol": combo["protocol"],
                    "control": combo["control"],
                    "class": name,
                    "precision": mean[0, c],
                    "recall": mean[1, c],
                    "f1": mean[2, c],
                    "support": mean[3, c],
                    "predicted": mean[4, c],
                }
            )
    return pd.DataFrame(rows)


def _n_classes(group: pd.DataFrame, config: dict[str, Any], task: str) -> int:
    names = config.get("classes", {}).get(task)
    if names:
        return len(names)
    return int(max(group["y_true"].max(), group["y_pred"].max())) + 1


def confusions(
    predictions: pd.DataFrame, config: dict[str, Any], *, impute: bool = False
) -> list[dict[str, Any]]:
    """Confusion matrices of every combination: counts over all seeds (each sample counted
    once per seed) and the same matrix normalised by rows (share of each true class).

    Returns [{"combination": dict, "names": [...], "counts": (K, K) int, "rows": (K, K)
    float (NaN for a class without samples), "n_seeds": int}].
    """
    out = []
    for combo, group in _combinations(scored(predictions, impute)):
        k = _n_classes(group, config, combo["task"])
        counts = confusion_matrix(group["y_true"], group["y_pred"], labels=list(range(k)))
        totals = counts.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            rows = np.where(totals > 0, counts / np.maximum(totals, 1), np.nan)
        out.append(
            {
                "combination": combo,
                "names": class_names(config, combo["task"], k),
                "counts": counts,
                "rows": rows,
                "n_seeds": int(group["seed"].nunique()),
            }
        )
    return out


def significance_marks(
    results: pd.DataFrame, tests: pd.DataFrame, metric: str = "uf1"
) -> dict[int, str]:
    """Markers (`MARKS`) of each row of `results` (by position) from the paired tests.

    Per task / protocol / samples / control group: ▲ on the highest `metric` among the
    non-chance rows; * on rows whose difference to it has a Holm-adjusted p below
    `ALPHA`; † on non-chance rows not significantly above the majority-class baseline.
    """
    marks: dict[int, str] = {i: "" for i in range(len(results))}
    if results.empty:
        return marks
    mine = tests[tests["metric"] == metric] if len(tests) else tests

    def p_between(group_key: tuple, a: str, b: str) -> tuple[float, float] | None:
        if mine is None or mine.empty:
            return None
        rows = mine
        for column, value in zip(TEST_GROUP, group_key, strict=True):
            rows = rows[rows[column].astype(str) == str(value)]
        hit = rows[((rows["a"] == a) & (rows["b"] == b)) | ((rows["a"] == b) & (rows["b"] == a))]
        if hit.empty:
            return None
        r = hit.iloc[0]
        difference = r["difference"] if r["a"] == a else -r["difference"]
        return float(r["p_holm"]), float(difference)

    frame = results.reset_index(drop=True)
    for key, group in frame.groupby(TEST_GROUP, sort=False, dropna=False):
        models = group[~group["model"].isin(CHANCE_BASELINES)]
        if models.empty or models[metric].isna().all():
            continue
        best = models[metric].idxmax()
        marks[best] += MARKS["best"]
        best_label = label(frame.loc[best])
        majority = group[group["model"] == "majority"]
        for i, row in models.iterrows():
            if i != best:
                found = p_between(key, label(row), best_label)
                if found is not None and found[0] < ALPHA:
                    marks[i] += MARKS["worse"]
            if not majority.empty:
                found = p_between(key, label(row), label(majority.iloc[0]))
                if found is None or found[0] >= ALPHA or found[1] <= 0:
                    marks[i] += MARKS["chance"]
    return marks


def pvalue_table(tests: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The Holm-adjusted p-values of one metric as a square model x model table (one
    block per task / protocol / samples / control; diagonal NaN). Equal to
    ``pvalues_<metric>.csv``, recomputed from pairwise.csv."""
    mine = tests[tests["metric"] == metric]
    blocks = []
    for key, group in mine.groupby(TEST_GROUP, sort=False, dropna=False):
        names = list(dict.fromkeys([*group["a"], *group["b"]]))
        matrix = pd.DataFrame(np.nan, index=names, columns=names)
        for r in group.itertuples():
            matrix.loc[r.a, r.b] = matrix.loc[r.b, r.a] = r.p_holm
        matrix.index.name = "model"
        matrix.attrs["group"] = dict(zip(TEST_GROUP, key, strict=True))
        blocks.append(matrix)
    return pd.concat(blocks) if blocks else pd.DataFrame()


def audit_matrix(audit: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The audit as people read it: (dataset-level checks, combination x check matrix of
    passed flags, every check with its detail).

    A check named ``'model/task/modalities/protocol: what'`` belongs to that combination;
    one named ``'task/samples: what'`` to the data of a task.
    """
    rows = []
    for check in audit.get("checks", []):
        name = str(check.get("check", ""))
        scope, _, what = name.partition(": ")
        if not what:
            scope, what = "", name
        rows.append(
            {
                "scope": scope,
                "check": what,
                "passed": bool(check.get("passed", False)),
                "detail": str(check.get("detail", "") or ""),
            }
        )
    checks = pd.DataFrame(rows, columns=["scope", "check", "passed", "detail"])
    per_combination = checks[checks["scope"].str.count("/") >= 3]
    dataset = checks[checks["scope"].str.count("/") < 3]
    if per_combination.empty:
        matrix = pd.DataFrame()
    else:
        generic = per_combination.assign(
            check=per_combination["check"].str.replace(
                r"\ball \d+ folds\b", "all folds", regex=True
            )
        )
        matrix = generic.pivot_table(
            index="scope", columns="check", values="passed", aggfunc="all", sort=False
        )
        matrix = matrix.reindex(index=list(dict.fromkeys(generic["scope"])))
        matrix.index.name = "combination"
        matrix = matrix.reset_index()
    return dataset.reset_index(drop=True), matrix, checks


def _effective(run: dict[str, Any], defaults: dict[str, Any], key: str) -> Any:
    value = run.get(key)
    if value is None:
        value = defaults.get(key)
    return value


def run_specs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Each run of a benchmark config with the defaults filled in (model, modalities,
    task, samples, protocol, epochs, lr, batch_size, early_stopping)."""
    body = config.get("config", config)
    defaults = body.get("defaults", {})
    runs = []
    for run in body.get("runs", []):
        runs.append({key: _effective(run, defaults, key) for key in {*defaults, *run}})
    return runs


def deviations(config: dict[str, Any]) -> pd.DataFrame:
    """Where a run departs from each model's published training settings and from the
    published feature settings, computed from the run's config.json.

    A run setting left empty trains with the model's `TrainingDefaults` (the published
    values), so only settings given in the config can deviate. Features: the defaults of
    `FeatureConfig` are the published pipeline (TV-L1 flow, 28 x 28 STSTNet input, 1-s
    windows, five bands 1-47 Hz), so every changed value is listed.
    Columns: what, setting, used, published, source.
    """
    from mmhe.errors import ConfigError
    from mmhe.features.batch import FeatureConfig
    from mmhe.models import model_spec

    rows = []
    for run in run_specs(config):
        name = run.get("model")
        try:
            spec = model_spec(name)
        except ConfigError:
            continue
        if name in CHANCE_BASELINES:
            continue
        published = spec.defaults
        for setting, attribute in (
            ("epochs", "epochs"),
            ("lr", "lr"),
            ("batch_size", "batch_size"),
        ):
            used = run.get(setting)
            wanted = getattr(published, attribute)
            if used is not None and not np.isclose(float(used), float(wanted)):
                rows.append(
                    {
                        "what": name,
                        "setting": setting,
                        "used": _setting_text(used),
                        "published": _setting_text(wanted),
                        "source": spec.paper,
                    }
                )
        if run.get("early_stopping"):
            rows.append(
                {
                    "what": name,
                    "setting": "early_stopping",
                    "used": "on (validation participants from the training fold)",
                    "published": "off (fixed epochs)",
                    "source": spec.paper,
                }
            )
    body = config.get("config", config)
    features = body.get("features")
    if features:
        default = FeatureConfig().model_dump(mode="json")
        for modality, values in features.items():
            base = default.get(modality, {})
            for setting, used in values.items():
                if setting in base and _normal(used) != _normal(base[setting]):
                    rows.append(
                        {
                            "what": f"{modality} features",
                            "setting": setting,
                            "used": _setting_text(used),
                            "published": _setting_text(base[setting]),
                            "source": FEATURE_SOURCES.get(modality, "mmhe default"),
                        }
                    )
    return pd.DataFrame(rows, columns=["what", "setting", "used", "published", "source"])


FEATURE_SOURCES = {
    "face": "MMHE visual baseline: TV-L1 flow of the aligned face, onset to apex "
    "(STSTNet input, Liong et al., FG 2019)",
    "eeg": "MMHE EEG baseline: PSD per 1-s window, five bands 1-47 Hz",
    "physio": "mmhe default",
    "eeg_raw": "EEGNet input (Lawhern et al. 2018)",
}


def _normal(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value


def _setting_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return " to ".join(_setting_text(v) for v in value) if len(value) == 2 else str(value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_setting_text(v)}" for k, v in value.items())
    return str(value)


def what_was_run(
    config: dict[str, Any], results: pd.DataFrame, environment: dict[str, Any]
) -> pd.DataFrame:
    """A short table of what the run did (the full config is in config.json)."""
    body = config.get("config", config)
    runs = run_specs(config)
    rows: list[tuple[str, str]] = []
    tasks = sorted({str(r.get("task", "compound")) for r in runs}) or sorted(
        results["task"].unique()
    )
    for task in tasks:
        names = config.get("classes", {}).get(task)
        rows.append(
            (f"task {task}", f"{len(names)} classes: {', '.join(names)}" if names else task)
        )
    rows.append(("samples", ", ".join(sorted({str(r.get("samples", "ME")) for r in runs}))))
    rows.append(("protocol", ", ".join(sorted({str(r.get("protocol", "loso")) for r in runs}))))
    if len(results):
        rows.append(
            (
                "participants, samples",
                f"{int(results['n_participants'].max()):,} participants, "
                f"{int(results['n_samples'].max()):,} samples scored per seed",
            )
        )
    for run in runs:
        settings = [f"{', '.join(run.get('modalities') or []) or 'no input'}"]
        for key, text in (("epochs", "epochs"), ("lr", "lr"), ("batch_size", "batch")):
            if run.get(key) is not None:
                settings.append(f"{text} {_setting_text(run[key])}")
        rows.append((f"model {run['model']}", "; ".join(settings)))
    if body.get("baselines", True):
        rows.append(("chance rows", ", ".join(CHANCE_BASELINES)))
    rows.append(("seeds", str(body.get("seeds", 1))))
    features = body.get("features") or {}
    face = features.get("face")
    if face:
        rows.append(
            (
                "face features",
                f"{face.get('method', '').upper()} flow of the {face.get('align')}-aligned "
                f"face, {face.get('size')} x {face.get('size')} (strain, u, v)",
            )
        )
    eeg = features.get("eeg")
    if eeg:
        bands = ", ".join(f"{k} {v[0]:g}-{v[1]:g}" for k, v in eeg.get("bands", {}).items())
        rows.append(
            (
                "EEG features",
                f"log band power per {eeg.get('window_s', 1):g}-s window, {bands} Hz; "
                f"{eeg.get('l_freq'):g}-{eeg.get('h_freq'):g} Hz band-pass",
            )
        )
    rows.append(("paired tests", f"{int(body.get('n_perm', 10000)):,} permutations, Holm"))
    rows.append(("interval", str(config.get("interval", ""))))
    if config.get("store_version"):
        rows.append(("store version", str(config["store_version"])))
    rows.append(("config hash", str(config.get("config_hash", ""))))
    rows.append(("device", str(config.get("device", "cpu"))))
    if environment:
        packages = environment.get("packages", {})
        rows.append(
            (
                "software",
                f"mmhe {packages.get('mmhe', '?')}, torch {packages.get('torch', '?')}, "
                f"Python {environment.get('python', '?')}",
            )
        )
    return pd.DataFrame(rows, columns=["", "value"])


def chance_levels(results: pd.DataFrame) -> dict[tuple, dict[str, dict[str, float]]]:
    """Reference scores per task / protocol / samples / control group:
    {group: {"majority": {metric: score}, "stratified": {...}, "uniform": {...}}}.

    majority and stratified are the scores the run's chance rows reached; uniform is 1/K
    for accuracy and UAR (a uniform random guess)."""
    out: dict[tuple, dict[str, dict[str, float]]] = {}
    for key, group in results.groupby(TEST_GROUP, sort=False, dropna=False):
        levels: dict[str, dict[str, float]] = {}
        for name in CHANCE_BASELINES:
            rows = group[group["model"] == name]
            if len(rows):
                levels[name] = {m: float(rows.iloc[0][m]) for m in ("accuracy", "uf1", "uar")}
        k = float(group["n_classes"].iloc[0]) if "n_classes" in group else np.nan
        levels["uniform"] = {"accuracy": 1 / k, "uar": 1 / k}
        out[key] = levels
    return out


def ordered(values: Sequence[str]) -> list[str]:
    """Unique values in first-seen order."""
    return list(dict.fromkeys(values))
