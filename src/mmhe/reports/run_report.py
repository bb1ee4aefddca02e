"""`render_report`: a self-contained HTML (and Markdown) report of a benchmark run.

A run directory (written by `mmhe benchmark`) holds ``config.json``, ``folds.parquet``,
``predictions.parquet`` (participant, y_true, y_pred, prob_<class>..., fold, model, task,
modalities), ``audit.json``, ``results.csv`` and ``environment.json``. The report embeds
every image (base64 PNG), so the single HTML file can be mailed or archived.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from sklearn.metrics import confusion_matrix

from mmhe import __version__
from mmhe.errors import InputFileError
from mmhe.evaluation.results import markdown_table, paper_table


def _png(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _modality_chart(results: pd.DataFrame) -> str:
    labels = [
        f"{m}\n({mod})" for m, mod in zip(results["model"], results["modalities"], strict=True)
    ]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(results)), 3.6))
    x = np.arange(len(results))
    for k, (metric, color) in enumerate(
        (("accuracy", "#4C72B0"), ("uf1", "#DD8452"), ("uar", "#55A868"))
    ):
        values = results[metric].to_numpy(dtype=float)
        low = results.get(f"{metric}_low", results[metric]).to_numpy(dtype=float)
        high = results.get(f"{metric}_high", results[metric]).to_numpy(dtype=float)
        ax.bar(
            x + (k - 1) * 0.26,
            values,
            0.26,
            label=metric.upper(),
            color=color,
            yerr=[values - low, high - values],
            capsize=3,
        )
    if "n_classes" in results:
        chance = 1.0 / results["n_classes"].astype(float)
        ax.hlines(
            chance, x - 0.45, x + 0.45, colors="#999", linestyles="dashed", label="chance UAR (1/k)"
        )
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("pooled score (95 % CI)")
    ax.legend(fontsize=8, ncol=4, loc="upper left")
    return _png(fig)


def _confusion_images(predictions: pd.DataFrame, classes: dict[str, list[str]]) -> list:
    images = []
    for (model, task, modalities), group in predictions.groupby(
        ["model", "task", "modalities"], sort=False
    ):
        names = classes.get(task) or sorted(set(group["y_true"]) | set(group["y_pred"]))
        labels = list(range(len(names))) if group["y_true"].dtype.kind in "iu" else names
        matrix = confusion_matrix(group["y_true"], group["y_pred"], labels=labels)
        fig, ax = plt.subplots(figsize=(3.4, 3.0))
        ax.imshow(matrix, cmap="Blues")
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(
                j,
                i,
                str(value),
                ha="center",
                va="center",
                color="white" if value > matrix.max() / 2 else "black",
                fontsize=9,
            )
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        images.append((f"{model} · {task} · {modalities}", _png(fig)))
    return images


def _participant_chart(predictions: pd.DataFrame) -> str:
    accuracy = (
        predictions.assign(correct=predictions["y_true"] == predictions["y_pred"])
        .groupby(["participant", "model", "modalities"])["correct"]
        .mean()
        .unstack(["model", "modalities"])
    )
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(accuracy) * max(1, accuracy.shape[1])), 3.4))
    accuracy.plot.bar(ax=ax, width=0.8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_xlabel("participant (held out)")
    ax.legend(fontsize=7, ncol=2, title=None)
    return _png(fig)


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """Read the files of a run directory (raises `InputFileError` naming a missing one)."""
    run_dir = Path(run_dir)
    needed = ("config.json", "predictions.parquet", "results.csv", "audit.json")
    for name in needed:
        if not (run_dir / name).is_file():
            raise InputFileError(
                run_dir / name,
                "missing from the run directory",
                "run `mmhe benchmark` first (or let it finish)",
            )
    environment = run_dir / "environment.json"
    return {
        "config": json.loads((run_dir / "config.json").read_text()),
        "predictions": pd.read_parquet(run_dir / "predictions.parquet"),
        "results": pd.read_csv(run_dir / "results.csv"),
        "audit": json.loads((run_dir / "audit.json").read_text()),
        "environment": json.loads(environment.read_text()) if environment.is_file() else {},
    }


def _audit_frame(audit: dict[str, Any]) -> pd.DataFrame:
    checks = audit.get("checks", [])
    return pd.DataFrame(checks) if checks else pd.DataFrame(columns=["check", "passed"])


def render_report(
    run_dir: str | Path, out: str | Path | None = None, *, store: str | Path | None = None
) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md``; returns both paths.

    store : the store of the run (default: the one named in the run's config), used for the
        dataset-statistics section when it can be opened.
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    out = Path(out) if out is not None else run_dir / "report.html"
    results = run["results"]
    classes = run["config"].get("classes", {})
    display = paper_table(results)
    images: dict[str, Any] = {
        "modalities": _modality_chart(results),
        "confusions": _confusion_images(run["predictions"], classes),
        "participants": _participant_chart(run["predictions"]),
        "dataset": None,
    }
    dataset_table = ""
    store = store or run["config"].get("store")
    if store and Path(store).exists():
        from mmhe.reports.figures import figure2
        from mmhe.reports.stats import dataset_stats

        stats = dataset_stats(store, dataset_name="this store")
        images["dataset"] = _png(figure2(stats))
        dataset_table = stats.emotion_counts.to_html(index=False)
    incomplete = ", ".join(
        f"{r.model}/{r.task}/{r.modalities}"
        for r in results.itertuples()
        if not bool(getattr(r, "complete", True))
    )
    audit_ok = bool(run["audit"].get("passed", False))
    versions = pd.DataFrame(
        sorted(run["environment"].get("packages", {}).items()), columns=["package", "version"]
    )
    environment = Environment(
        loader=PackageLoader("mmhe.reports", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    html = environment.get_template("report.html.j2").render(
        title=run["config"].get("title", "mmhe benchmark report"),
        interval=run["config"].get("interval", "95 % CIs from a bootstrap over participants"),
        mmhe_version=__version__,
        run_dir=str(run_dir),
        incomplete=incomplete,
        notes=run["config"].get("notes", []),
        results_table=_markup(display.to_html(index=False, escape=True)),
        images=images,
        dataset_table=_markup(dataset_table),
        audit_ok=audit_ok,
        audit_table=_markup(_audit_frame(run["audit"]).to_html(index=False)),
        config=json.dumps(run["config"], indent=2),
        versions_table=_markup(versions.to_html(index=False)),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    markdown = out.with_suffix(".md")
    markdown.write_text(
        f"# {run['config'].get('title', 'mmhe benchmark report')}\n\n"
        "Pooled over all folds (MEGC convention); "
        + run["config"].get("interval", "95 % CIs by bootstrap over participants")
        + ".\n\n"
        + markdown_table(display)
        + f"\n\nLeakage audit: {'passed' if audit_ok else 'FAILED'}.\n",
        encoding="utf-8",
    )
    return out, markdown


def _markup(text: str):
    from markupsafe import Markup

    return Markup(text)
