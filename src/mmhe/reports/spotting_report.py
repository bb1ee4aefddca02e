"""The spotting section of a report: results, control, audit and per-trial score curves.

`render_spotting_report(run_dir)` reads what `mmhe spot` wrote (``summary.json``,
``results.csv``, ``control.csv``, ``intervals.csv``, ``truth.csv``, ``matches.csv``,
``folds.csv``, ``config.json``) and the cached frame scores named in ``summary.json``,
and writes one self-contained HTML file (images embedded as PNG, each also written as SVG
and PDF in ``figures/`` beside it) from the ``spotting.html.j2`` template, which extends
the one layout of every mmhe page (`mmhe.reports.html`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from mmhe.errors import InputFileError
from mmhe.reports.html import FigureWriter, html_table, render_page

MAX_CURVES = 24
"""Trials drawn at most (a real run has thousands)."""
_NEEDED = (
    "summary.json",
    "results.csv",
    "control.csv",
    "intervals.csv",
    "truth.csv",
    "matches.csv",
    "folds.csv",
    "config.json",
)


def load_spot_run(run_dir: str | Path) -> dict[str, Any]:
    """The files of a spotting run; `InputFileError` naming what is missing."""
    run_dir = Path(run_dir)
    missing = [name for name in _NEEDED if not (run_dir / name).is_file()]
    if missing:
        raise InputFileError(
            run_dir, f"not a spotting run: missing {missing}", "run `mmhe spot STORE --out DIR`"
        )
    read = lambda name: pd.read_csv(run_dir / name)  # noqa: E731
    return {
        "summary": json.loads((run_dir / "summary.json").read_text()),
        "config": json.loads((run_dir / "config.json").read_text()),
        "results": read("results.csv"),
        "control": read("control.csv"),
        "intervals": read("intervals.csv"),
        "truth": read("truth.csv"),
        "matches": read("matches.csv"),
        "folds": read("folds.csv"),
    }


def score_curve(
    scores, truth: pd.DataFrame, found: pd.DataFrame, hits: set[int], title: str
) -> plt.Figure:
    """One trial: face scores over time with the true and the found intervals."""
    detection = scores.detection()
    seconds = scores.frames / scores.fps
    fig, ax = plt.subplots(figsize=(10, 2.2))
    ax.plot(seconds, detection.micro, lw=0.8, color="#4C72B0", label="micro lag")
    ax.plot(seconds, detection.macro, lw=0.8, color="#DD8452", label="macro lag")
    top = max(float(detection.face.max()), 1.0) * 1.15
    for r in truth.itertuples(index=False):
        color = "#55A868" if r.kind == "ME" else "#FFB347"
        ax.axvspan(r.onset / scores.fps, r.offset / scores.fps, color=color, alpha=0.3, lw=0)
    for index, r in found.iterrows():
        ax.barh(
            top * 0.95,
            (r.offset - r.onset) / scores.fps,
            left=r.onset / scores.fps,
            height=top * 0.06,
            color="#333333" if index in hits else "none",
            edgecolor="#333333",
        )
    ax.set_ylim(0, top)
    ax.set_xlim(0, scores.n_frames / scores.fps)
    ax.set_xlabel("time in trial (s)")
    ax.set_ylabel("score")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    return fig


def render_spotting_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``spotting.html`` (or `out`) for the spotting run in `run_dir`."""
    from mmhe.evaluation.spot_run import load_frame_scores

    run_dir = Path(run_dir)
    run = load_spot_run(run_dir)
    summary = run["summary"]
    cache = Path(summary["frame_scores"]["cache"])
    truth, intervals, matches = run["truth"], run["intervals"], run["matches"]
    hits = set(
        pd.to_numeric(matches.loc[matches["outcome"] == "TP", "predicted_index"]).astype(int)
    )
    counts = truth.groupby("video").size().sort_values(ascending=False, kind="stable")
    chosen = list(counts.index[:MAX_CURVES])
    if len(chosen) < MAX_CURVES:
        others = [v for v in intervals["video"].unique() if v not in set(chosen)]
        chosen += others[: MAX_CURVES - len(chosen)]
    out = Path(out) if out is not None else run_dir / "spotting.html"
    writer = FigureWriter(out.parent / "figures", out.parent)
    curves = []
    if cache.is_dir():
        for video in chosen:
            sid, trial = video.rsplit("/", 1)
            scores = load_frame_scores(cache, sid, int(trial))
            found = intervals[intervals["video"] == video]
            n_true = int((truth["video"] == video).sum())
            caption = f"{sid}, trial {trial}: {n_true} true, {len(found)} found"
            figure = score_curve(scores, truth[truth["video"] == video], found, hits, caption)
            curves.append(writer.add(figure, f"spotting-{sid}-trial{trial}", caption))
    folds = run["folds"][["fold", "test_subject", "n_found", "train_f1", "params"]]
    return render_page(
        "spotting.html.j2",
        out,
        title="Expression spotting",
        kind="spotting report",
        source=str(run_dir),
        summary=summary,
        results_table=html_table(run["results"]),
        control_table=html_table(run["control"]),
        recognition=summary.get("recognition"),
        folds_table=html_table(folds, wrap=["params"]),
        curves=curves,
        config=json.dumps(run["config"], indent=2),
    )
