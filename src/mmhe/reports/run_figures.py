"""Figures of the run report: scores with their reference levels, per-participant
scores that stay readable at 275 participants, and confusion matrices.

Every function returns a matplotlib figure; `mmhe.reports.html.FigureWriter` saves it
(PNG in the page, SVG and PDF beside it).
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from mmhe.evaluation.results import TEST_GROUP
from mmhe.models import CHANCE_BASELINES

METRIC_NAMES = {"accuracy": "Accuracy", "uf1": "UF1 (macro F1)", "uar": "UAR (mean recall)"}
MODEL_COLOR = "#3B6EA8"
CHANCE_COLOR = "#A0A0A0"
REFERENCE_STYLE = {
    "majority": {"color": "#C0392B", "linestyle": "--", "linewidth": 1.3},
    "stratified": {"color": "#7D3C98", "linestyle": ":", "linewidth": 1.5},
    "uniform": {"color": "#555555", "linestyle": "-.", "linewidth": 1.0},
}
REFERENCE_LABEL = {
    "majority": "majority-class baseline (always the training fold's most frequent class)",
    "stratified": "stratified random baseline (guesses with the training class frequencies)",
    "uniform": "uniform guess, 1/K (accuracy and UAR only)",
}

plt.rcParams.update(
    {
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "svg.fonttype": "none",  # text stays text in the SVG
        "pdf.fonttype": 42,
    }
)


def _name(row: pd.Series) -> str:
    text = f"{row['model']} ({row['modalities']})"
    if row.get("control", "none") == "shuffled":
        text += ", shuffled labels"
    return text


def score_chart(
    results: pd.DataFrame, levels: dict[str, dict[str, float]], *, narrow: bool = False
) -> plt.Figure:
    """Accuracy, UF1 and UAR of every row of one task / protocol (horizontal bars with the
    95 % CI), beside vertical lines at the chance rows' scores and at 1/K.

    results : rows of one `TEST_GROUP` (results.csv); levels : `chance_levels` of it.
    """
    rows = results.reset_index(drop=True)
    names = [_name(r) for _, r in rows.iterrows()]
    chance = rows["model"].isin(CHANCE_BASELINES).to_numpy()
    height = 1.3 + 0.3 * len(rows)
    if narrow:  # panels stacked for a phone
        fig, axes = plt.subplots(
            3,
            1,
            figsize=(5.0, 3 * (0.55 + 0.27 * len(rows)) + 1.4),
            sharey=True,
            layout="constrained",
        )
    else:
        fig, axes = plt.subplots(1, 3, figsize=(10.5, height), sharey=True, layout="constrained")
    y = np.arange(len(rows))
    for ax, metric in zip(axes, ("accuracy", "uf1", "uar"), strict=True):
        values = rows[metric].to_numpy(dtype=float)
        low = rows.get(f"{metric}_low", rows[metric]).to_numpy(dtype=float)
        high = rows.get(f"{metric}_high", rows[metric]).to_numpy(dtype=float)
        colors = np.where(chance, CHANCE_COLOR, MODEL_COLOR)
        ax.barh(y, values, height=0.62, color=colors, zorder=2)
        ax.errorbar(
            values,
            y,
            xerr=[np.clip(values - low, 0, None), np.clip(high - values, 0, None)],
            fmt="none",
            ecolor="#222",
            elinewidth=0.9,
            capsize=2.5,
            zorder=3,
        )
        for name, style in REFERENCE_STYLE.items():
            value = levels.get(name, {}).get(metric)
            if value is not None and np.isfinite(value):
                ax.axvline(value, zorder=4, **style)
        for yi, v in zip(y, values, strict=True):
            if np.isfinite(v):
                ax.text(
                    0.01,
                    yi,
                    f"{100 * v:.1f}",
                    va="center",
                    ha="left",
                    color="white",
                    fontsize=7.5,
                    zorder=5,
                    fontweight="bold",
                )
        ax.set_xlim(0, 1)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0", "25", "50", "75", "100 %"])
        ax.set_title(METRIC_NAMES[metric])
        ax.grid(axis="x", color="#e5e5e5", zorder=0)
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    handles = [
        Line2D([], [], **REFERENCE_STYLE[name], label=REFERENCE_LABEL[name])
        for name in REFERENCE_STYLE
        if name in levels
    ]
    handles.append(Line2D([], [], color="#222", marker="|", linestyle="-", label="95 % CI"))
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=1 if narrow else 2,
        fontsize=8,
        frameon=False,
    )
    return fig


def participant_strip(
    participants: pd.DataFrame,
    results: pd.DataFrame,
    levels: dict[str, dict[str, float]],
    metric: str = "accuracy",
    *,
    narrow: bool = False,
) -> plt.Figure:
    """Per-participant `metric` of every model of one task / protocol: one strip per
    model, participants on the x axis in one order for all strips (by their mean over
    the models), dot area proportional to the participant's scored samples.

    participants : participants.csv rows of the group (one per seed; averaged here).
    Lines: the model's pooled score (solid), the majority-class baseline and 1/K.
    Reads at any number of participants: 275 participants are 275 dots per strip.
    """
    used = participants[participants["n"] > 0]
    per_person = (
        used.groupby(["model", "modalities", "control", "participant"], sort=False)
        .agg(score=(metric, "mean"), n=("n", "mean"))
        .reset_index()
    )
    models = results[~results["model"].isin(CHANCE_BASELINES)].reset_index(drop=True)
    people_scores = per_person[~per_person["model"].isin(CHANCE_BASELINES)]
    order = people_scores.groupby("participant")["score"].mean().sort_values(kind="stable").index
    position = {p: i for i, p in enumerate(order)}
    n_people = len(order)
    fig, axes = plt.subplots(
        max(len(models), 1),
        1,
        figsize=(5.0 if narrow else 10.5, 1.3 + 1.25 * max(len(models), 1)),
        sharex=True,
        sharey=True,
        layout="constrained",
        squeeze=False,
    )
    axes = axes[:, 0]
    biggest = max(float(per_person["n"].max()), 1.0) if len(per_person) else 1.0
    scale = 60.0 if n_people <= 60 else 25.0
    for ax, (_, row) in zip(axes, models.iterrows(), strict=False):
        mine = per_person[
            (per_person["model"] == row["model"])
            & (per_person["modalities"] == row["modalities"])
            & (per_person["control"] == row.get("control", "none"))
        ]
        x = mine["participant"].map(position).to_numpy(dtype=float)
        ax.scatter(
            x,
            mine["score"],
            s=scale * mine["n"] / biggest + 4,
            color=MODEL_COLOR,
            alpha=0.75,
            linewidths=0,
            zorder=3,
        )
        pooled = float(row[metric])
        ax.axhline(pooled, color=MODEL_COLOR, linewidth=1.2, zorder=2)
        for name in ("majority", "uniform"):
            value = levels.get(name, {}).get(metric)
            if value is not None and np.isfinite(value):
                ax.axhline(value, zorder=2, **REFERENCE_STYLE[name])
        ax.set_ylim(-0.05, 1.05)
        ax.set_yticks([0, 0.5, 1], ["0", "50", "100 %"])
        ax.set_title(
            f"{_name(row)}: pooled {100 * pooled:.1f} %, per-participant mean "
            f"{100 * mine['score'].mean():.1f} %",
            loc="left",
            fontsize=9,
        )
        ax.grid(axis="y", color="#eeeeee", zorder=0)
    for ax in axes[len(models) :]:
        ax.set_visible(False)
    last = axes[min(len(models), len(axes)) - 1]
    if n_people <= (20 if narrow else 40):
        last.set_xticks(range(n_people), list(order), rotation=90, fontsize=7)
    else:
        ticks = np.unique(np.r_[np.arange(0, n_people, 25), n_people - 1])
        last.set_xticks(ticks, [str(t + 1) for t in ticks])
    last.set_xlim(-1, n_people)
    last.set_xlabel(
        f"{n_people} held-out participants, ordered by their mean {METRIC_NAMES[metric]} "
        "over the models"
    )
    handles = [
        Line2D([], [], color=MODEL_COLOR, marker="o", linestyle="", label="one participant"),
        Line2D([], [], color=MODEL_COLOR, linewidth=1.2, label="model, pooled over folds"),
        *[
            Line2D(
                [],
                [],
                **REFERENCE_STYLE[n],
                label=REFERENCE_LABEL[n].split(" (")[0] + " (pooled)"
                if n == "majority"
                else "uniform guess, 1/K",
            )
            for n in ("majority", "uniform")
            if metric in levels.get(n, {})
        ],
    ]
    fig.legend(
        handles=handles,
        loc="outside lower center",
        ncol=2 if narrow else 4,
        fontsize=8,
        frameon=False,
    )
    return fig


def confusion_figure(entry: dict[str, Any]) -> plt.Figure:
    """Counts (over all seeds) beside the row-normalised matrix (% of each true class)."""
    counts, rows, names = entry["counts"], entry["rows"], entry["names"]
    k = len(names)
    side = 1.0 + 0.55 * k
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1.2, side + 0.5), layout="constrained")
    panels = (
        (axes[0], counts, "counts", lambda v: f"{int(v):,}", counts.max() or 1),
        (axes[1], np.nan_to_num(rows) * 100, "% of the true class", lambda v: f"{v:.1f}", 100),
    )
    for ax, matrix, title, text, top in panels:
        ax.imshow(matrix, cmap="Blues", vmin=0, vmax=top)
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(
                j,
                i,
                text(value),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if value > 0.55 * top else "#111",
            )
        ax.set_xticks(range(k), names, rotation=35, ha="right")
        ax.set_yticks(range(k), names)
        ax.set_xlabel("predicted")
        ax.set_title(title, fontsize=9)
        ax.spines[:].set_visible(False)
    axes[0].set_ylabel("true")
    axes[1].set_yticklabels([])
    return fig


def group_title(key: tuple) -> str:
    """'compound, LOSO, ME' (+ ', shuffled labels') for a `TEST_GROUP` key."""
    values = dict(zip(TEST_GROUP, key, strict=True))
    text = f"{values['task']}, {str(values['protocol']).upper()}, {values['samples']}"
    if values.get("control") == "shuffled":
        text += ", shuffled labels"
    return text
