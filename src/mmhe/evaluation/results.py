"""Result tables of a benchmark run: tidy, one fact per row, and a paper table.

From the prediction rows of every (combination, seed) the run writes:

- ``seeds.csv``: one row per combination and seed: pooled accuracy / UF1 / UAR;
- ``participants.csv``: one row per combination, seed and participant: n, n_missing,
  accuracy, uf1, uar (scores within that participant);
- ``results.csv``: one row per combination: the mean over seeds of each pooled metric,
  its seed SD / min / max, the 95 % CI (`mmhe.evaluation.intervals.jackknife_interval`:
  participant jackknife t-interval plus the seed variance of the mean), per-participant
  mean and SD, sample counts (scored, missing input);
- ``pairwise.csv``: paired permutation tests between the combinations of one task and
  protocol (`paired_permutation_tests`), with Holm-adjusted p-values; and
  ``pvalues_uf1.csv`` / ``pvalues_uar.csv`` as model x model matrices.

Samples without input (``missing_input``) are counted apart and left out of every score
unless ``impute=True`` (then they count with the training class frequencies the engine
gave them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mmhe.evaluation.intervals import jackknife_interval
from mmhe.evaluation.metrics import (
    METRICS,
    _per_group_confusions,
    paired_permutation_test,
    per_subject_scores,
    pooled_scores,
)

COMBINATION = ["model", "task", "modalities", "protocol", "samples", "control"]
"""Columns naming one combination of a run (a row of ``results.csv``)."""
TEST_GROUP = ["task", "protocol", "samples", "control"]
"""Combinations compared by the paired tests share these."""
TESTED_METRICS = ("uf1", "uar")


def scored(predictions: pd.DataFrame, impute: bool = False) -> pd.DataFrame:
    """The rows that count in the scores: all with ``impute``, else those with input."""
    if impute or "missing_input" not in predictions:
        return predictions
    return predictions[~predictions["missing_input"].astype(bool)]


def _confusions(predictions: pd.DataFrame, n_classes: int, people: np.ndarray) -> np.ndarray:
    """(S, G, K, K) confusions per seed and participant (participants in ``people``)."""
    labels = np.arange(n_classes)
    out = np.zeros((predictions["seed"].nunique(), people.size, n_classes, n_classes))
    for s, (_, rows) in enumerate(predictions.groupby("seed", sort=True)):
        conf, found = _per_group_confusions(
            rows["y_true"].to_numpy(),
            rows["y_pred"].to_numpy(),
            rows["participant"].to_numpy(),
            labels,
        )
        out[s, np.searchsorted(people, found)] = conf
    return out


def participant_table(predictions: pd.DataFrame, n_classes: int, impute: bool) -> pd.DataFrame:
    """Per combination, seed and participant: n, n_missing, accuracy, uf1, uar."""
    rows = []
    keys = [*COMBINATION, "seed"]
    for key, group in predictions.groupby(keys, sort=False, dropna=False):
        missing = (
            group.groupby("participant")["missing_input"].sum()
            if "missing_input" in group
            else None
        )
        used = scored(group, impute)
        if len(used):
            subjects = per_subject_scores(
                used["y_true"], used["y_pred"], used["participant"], list(range(n_classes))
            ).table
        else:
            subjects = pd.DataFrame(columns=["n", *METRICS])
        for person in sorted(pd.unique(group["participant"])):
            record = dict(zip(keys, key, strict=True)) | {"participant": person}
            record["n"] = int(subjects["n"].get(person, 0)) if len(subjects) else 0
            record["n_missing"] = int(missing.get(person, 0)) if missing is not None else 0
            for m in METRICS:
                record[m] = float(subjects[m].get(person, np.nan)) if len(subjects) else np.nan
            rows.append(record)
    return pd.DataFrame(rows, columns=[*keys, "participant", "n", "n_missing", *METRICS])


def seed_table(predictions: pd.DataFrame, n_classes: int, impute: bool) -> pd.DataFrame:
    """Per combination and seed: pooled accuracy, UF1, UAR and the counts behind them."""
    rows = []
    keys = [*COMBINATION, "seed"]
    for key, group in predictions.groupby(keys, sort=False, dropna=False):
        used = scored(group, impute)
        record = dict(zip(keys, key, strict=True))
        record["n_samples"] = len(used)
        record["n_missing"] = int(group["missing_input"].sum()) if "missing_input" in group else 0
        scores = (
            pooled_scores(used["y_true"], used["y_pred"], list(range(n_classes)))
            if len(used)
            else {m: np.nan for m in METRICS}
        )
        rows.append(record | {m: scores[m] for m in METRICS})
    return pd.DataFrame(rows)


def summarise_combination(
    predictions: pd.DataFrame, class_names: Sequence[str], *, impute: bool = False
) -> dict[str, Any]:
    """One ``results.csv`` row from the predictions of one combination (all its seeds).

    Keys: n_seeds, seeds, n_participants, n_samples (scored, per seed), n_missing (per
    seed), n_classes; per metric m: m (mean over seeds of the pooled score), m_seed_sd,
    m_seed_min, m_seed_max, m_low, m_high (95 % CI), m_pp_mean, m_pp_sd (per participant,
    averaged over seeds first). ``per_subject_accuracy_mean`` / ``_sd`` repeat the
    per-participant accuracy under their older names.
    """
    k = len(class_names)
    used = scored(predictions, impute)
    seeds = sorted(pd.unique(predictions["seed"]))
    people = np.sort(pd.unique(used["participant"])) if len(used) else np.array([])
    row: dict[str, Any] = {
        "n_seeds": len(seeds),
        "seeds": " ".join(str(int(s)) for s in seeds),
        "n_participants": int(people.size),
        "n_samples": int(len(used) / max(len(seeds), 1)),
        "n_missing": int(
            predictions.get("missing_input", pd.Series(dtype=bool)).sum() / max(len(seeds), 1)
        ),
        "n_classes": k,
        "imputed": bool(impute),
    }
    if not len(used):
        return row | {f"{m}{s}": np.nan for m in METRICS for s in ("", "_low", "_high")}
    conf = _confusions(used, k, people)
    for m in METRICS:
        ci = jackknife_interval(conf, m)
        row[m] = ci["estimate"]
        row[f"{m}_seed_sd"] = ci["seed_sd"]
        row[f"{m}_seed_min"], row[f"{m}_seed_max"] = ci["seed_min"], ci["seed_max"]
        row[f"{m}_low"], row[f"{m}_high"] = ci["low"], ci["high"]
    per_seed = [
        per_subject_scores(
            rows["y_true"], rows["y_pred"], rows["participant"], list(range(k))
        ).table[list(METRICS)]
        for _, rows in used.groupby("seed", sort=True)
    ]
    averaged = pd.concat(per_seed).groupby(level=0).mean()  # over seeds, per participant
    for m in METRICS:
        row[f"{m}_pp_mean"] = float(averaged[m].mean())
        row[f"{m}_pp_sd"] = float(averaged[m].std(ddof=1)) if len(averaged) > 1 else 0.0
    row["per_subject_accuracy_mean"] = row["accuracy_pp_mean"]
    row["per_subject_accuracy_sd"] = row["accuracy_pp_sd"]
    return row


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (p.size - rank) * p[i])
        adjusted[i] = min(1.0, running)
    return adjusted


def _label(row: pd.Series | dict) -> str:
    return f"{row['model']} ({row['modalities']})"


def paired_permutation_tests(
    predictions: pd.DataFrame,
    class_names_of: dict[tuple[str, str], Sequence[str]],
    *,
    impute: bool = False,
    n_perm: int = 10000,
    seed: int = 0,
) -> pd.DataFrame:
    """Every pair of combinations of one task, protocol, samples and control, compared
    with `paired_permutation_test` (participants swap both models' predictions).

    Each sample counts once per seed (the seeds' predictions are stacked, and a swap
    moves all of a participant's rows); only samples scored for both models enter (see
    ``impute``), and both need the same seeds. Holm's correction runs over the pairs of
    one group and metric. ``class_names_of``: {(task, samples): class names}. Columns:
    task, protocol, samples, control, a, b, metric, score_a, score_b, difference,
    p_value, p_holm, n_participants, n_samples, n_perm.
    """
    rows = []
    for key, group in predictions.groupby(TEST_GROUP, sort=False, dropna=False):
        combos = group[COMBINATION].drop_duplicates().to_dict("records")
        labels = list(range(len(class_names_of[(key[0], key[2])])))
        found = []
        for i, a in enumerate(combos):
            for b in combos[i + 1 :]:
                pa = _rows_of(group, a)
                pb = _rows_of(group, b)
                if sorted(pd.unique(pa["seed"])) != sorted(pd.unique(pb["seed"])):
                    continue
                both = pa.merge(pb, on=["seed", "sample"], suffixes=("_a", "_b"))
                if not impute:
                    both = both[~both["missing_input_a"] & ~both["missing_input_b"]]
                if both["participant_a"].nunique() < 2:
                    continue
                for metric in TESTED_METRICS:
                    result = paired_permutation_test(
                        both["y_true_a"],
                        both["y_pred_a"],
                        both["y_pred_b"],
                        both["participant_a"],
                        metric=metric,
                        n_perm=n_perm,
                        seed=seed,
                        labels=labels,
                    )
                    found.append(
                        dict(zip(TEST_GROUP, key, strict=True))
                        | {
                            "a": _label(a),
                            "b": _label(b),
                            "metric": metric,
                            "score_a": result["score_a"],
                            "score_b": result["score_b"],
                            "difference": result["difference"],
                            "p_value": result["p_value"],
                            "n_participants": int(both["participant_a"].nunique()),
                            "n_samples": len(both),
                            "n_perm": n_perm,
                        }
                    )
        for metric in TESTED_METRICS:
            mine = [r for r in found if r["metric"] == metric]
            for r, p in zip(mine, holm([r["p_value"] for r in mine]), strict=True):
                r["p_holm"] = float(p)
        rows += found
    columns = [
        *TEST_GROUP,
        "a",
        "b",
        "metric",
        "score_a",
        "score_b",
        "difference",
        "p_value",
        "p_holm",
        "n_participants",
        "n_samples",
        "n_perm",
    ]
    return pd.DataFrame(rows, columns=columns)


def _rows_of(group: pd.DataFrame, combo: dict) -> pd.DataFrame:
    mask = np.ones(len(group), dtype=bool)
    for column, value in combo.items():
        mask &= (group[column] == value).to_numpy()
    rows = group[mask]
    if "missing_input" not in rows:
        rows = rows.assign(missing_input=False)
    return rows[["seed", "sample", "participant", "y_true", "y_pred", "missing_input"]]


def pvalue_matrix(tests: pd.DataFrame, metric: str = "uf1") -> pd.DataFrame:
    """Holm-adjusted p-values as a symmetric matrix (one block per task and protocol
    when a run has several; the index carries them)."""
    mine = tests[tests["metric"] == metric]
    if mine.empty:
        return pd.DataFrame()
    frames = []
    for key, group in mine.groupby(TEST_GROUP, sort=False, dropna=False):
        names = list(dict.fromkeys([*group["a"], *group["b"]]))
        matrix = pd.DataFrame(np.nan, index=names, columns=names)
        for r in group.itertuples():
            matrix.loc[r.a, r.b] = matrix.loc[r.b, r.a] = r.p_holm
        matrix.index = pd.MultiIndex.from_tuples(
            [(*key, n) for n in names], names=[*TEST_GROUP, "model"]
        )
        frames.append(matrix)
    return pd.concat(frames)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of a DataFrame (no extra dependency)."""

    def cell(value: object) -> str:
        if isinstance(value, float | np.floating):
            return "" if np.isnan(value) else f"{value:.3f}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(c) for c in frame.columns) + " |",
        "|" + "|".join("---" for _ in frame.columns) + "|",
    ]
    lines += [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def _cell(r: pd.Series, m: str) -> str:
    value = r.get(m, np.nan)
    if pd.isna(value):
        return "n/a"
    text = f"{value:.3f}"
    if int(r.get("n_seeds", 1) or 1) > 1:
        text += f" ±{r[f'{m}_seed_sd']:.3f}"
    return text + f" [{r[f'{m}_low']:.3f}, {r[f'{m}_high']:.3f}]"


def paper_table(results: pd.DataFrame) -> pd.DataFrame:
    """Rows per combination; cells 'mean ±seed SD [95 % CI]' (the ± only with >1 seed),
    per-participant 'mean ± SD', n scored (+ missing input left out), three decimals."""
    rows = []
    for _, r in results.iterrows():
        n = f"{int(r['n_samples'])}"
        missing = int(r.get("n_missing", 0) or 0)
        if missing:
            n += f" (+{missing} {'imputed' if r.get('imputed', False) else 'no input'})"
        control = r.get("control", "none")
        row = {
            "model": r["model"] + (" (shuffled labels)" if control == "shuffled" else ""),
            "task": r["task"],
            "protocol": r.get("protocol", ""),
            "modalities": r["modalities"] if isinstance(r["modalities"], str) else "none",
            "seeds": int(r.get("n_seeds", 1) or 1),
            "n": n,
        }
        for m in METRICS:
            row["Accuracy" if m == "accuracy" else m.upper()] = _cell(r, m)
        for m in ("uf1", "uar"):
            if f"{m}_pp_mean" in r and not pd.isna(r[f"{m}_pp_mean"]):
                row[f"per-participant {m.upper()}"] = (
                    f"{r[f'{m}_pp_mean']:.3f} ± {r[f'{m}_pp_sd']:.3f}"
                )
            else:
                row[f"per-participant {m.upper()}"] = "n/a"
        row["complete"] = "yes" if r["complete"] else "NO"
        if "audit_passed" in r:
            row["audit"] = "passed" if bool(r["audit_passed"]) else "FAILED"
        rows.append(row)
    return pd.DataFrame(rows)
