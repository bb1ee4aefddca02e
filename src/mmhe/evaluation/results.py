"""Result tables: pooled metrics with bootstrap CIs, per-participant means, Markdown."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmhe.evaluation.metrics import bootstrap_ci, per_subject_scores, pooled_scores

METRICS = ("accuracy", "uf1", "uar")


def summarise(
    predictions: pd.DataFrame, class_names: list[str], *, n_boot: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Pooled accuracy / UF1 / UAR with 95 % bootstrap CIs over participants, and the
    per-participant accuracy mean and SD (labelled as such: the two differ)."""
    labels = list(range(len(class_names)))
    y_true, y_pred = predictions["y_true"].to_numpy(), predictions["y_pred"].to_numpy()
    groups = predictions["participant"].to_numpy()
    row: dict[str, float] = {
        "n_samples": len(predictions),
        "n_participants": int(pd.unique(groups).size),
        "n_classes": len(class_names),
        **pooled_scores(y_true, y_pred, labels),
    }
    row.pop("n", None)
    for metric in METRICS:
        ci = bootstrap_ci(y_true, y_pred, groups, metric, n_boot=n_boot, seed=seed, labels=labels)
        row[f"{metric}_low"], row[f"{metric}_high"] = ci["low"], ci["high"]
    subjects = per_subject_scores(y_true, y_pred, groups, labels)
    row["per_subject_accuracy_mean"] = subjects.mean["accuracy"]
    row["per_subject_accuracy_sd"] = subjects.sd["accuracy"]
    return row


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of a DataFrame (no extra dependency)."""

    def cell(value: object) -> str:
        if isinstance(value, float | np.floating):
            return f"{value:.3f}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(c) for c in frame.columns) + " |",
        "|" + "|".join("---" for _ in frame.columns) + "|",
    ]
    lines += [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def paper_table(results: pd.DataFrame) -> pd.DataFrame:
    """Model x modality rows with 'value [low, high]' cells, three decimals."""
    rows = []
    for _, r in results.iterrows():
        rows.append(
            {
                "model": r["model"],
                "task": r["task"],
                "modalities": r["modalities"],
                "n": int(r["n_samples"]),
                **{
                    m.upper()
                    if m != "accuracy"
                    else "Accuracy": f"{r[m]:.3f} [{r[f'{m}_low']:.3f}, {r[f'{m}_high']:.3f}]"
                    for m in METRICS
                },
                "per-participant acc.": f"{r['per_subject_accuracy_mean']:.3f} ± "
                f"{r['per_subject_accuracy_sd']:.3f}",
                "complete": "yes" if r["complete"] else "NO",
            }
        )
    return pd.DataFrame(rows)
