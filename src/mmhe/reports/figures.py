"""Figures of the dataset statistics (the paper's Figure 2), as PNG and SVG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mmhe.reports.stats import DatasetStats

COLORS = {
    "ME": "#4C72B0",
    "MaE": "#DD8452",
    "negative": "#C44E52",
    "positive": "#55A868",
    "surprise": "#8172B2",
}


def figure2(stats: DatasetStats) -> plt.Figure:
    """Four panels: (a) emotions ME vs MaE, (b) compound shares, (c) overview, (d) durations."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    counts = stats.emotion_counts.set_index("emotion")
    ax = axes[0, 0]
    x = range(len(counts))
    ax.bar([i - 0.2 for i in x], counts["ME"], 0.4, label="ME", color=COLORS["ME"])
    ax.bar([i + 0.2 for i in x], counts["MaE"], 0.4, label="MaE", color=COLORS["MaE"])
    ax.set_xticks(list(x), counts.index, rotation=30, ha="right")
    ax.set_ylabel("expressions")
    ax.set_title("(a) discrete emotions")
    ax.legend()

    shares = stats.compound_shares.set_index("compound")
    ax = axes[0, 1]
    colors = [COLORS[c] for c in shares.index]
    for radius, kind in ((1.0, "MaE"), (0.65, "ME")):
        values = shares[kind].fillna(0)
        if values.sum() > 0:
            ax.pie(
                values,
                radius=radius,
                colors=colors,
                startangle=90,
                counterclock=False,
                wedgeprops={"width": 0.33, "edgecolor": "white"},
                autopct=lambda p: f"{p:.2f}%" if p > 0 else "",
                pctdistance=0.82,
                textprops={"fontsize": 8},
            )
    ax.set_title("(b) compound classes (inner ME, outer MaE)")
    ax.legend(shares.index, loc="lower left", fontsize=8)

    ax = axes[1, 0]
    overview = stats.overview.iloc[0].to_dict()
    bars = {
        k: overview[k]
        for k in ("participants", "male", "female", "ME", "MaE", "trials")
        if k in overview
    }
    ax.barh(list(bars), list(bars.values()), color="#64B5CD")
    for i, v in enumerate(bars.values()):
        ax.text(v, i, f" {v}", va="center")
    ax.invert_yaxis()
    ax.set_title(f"(c) size; modalities: {overview.get('modalities', 'face')}")

    ax = axes[1, 1]
    durations = stats.durations
    ax.errorbar(
        durations["mean_ms"],
        range(len(durations)),
        xerr=durations["sd_ms"],
        fmt="o",
        color="#333",
        capsize=3,
    )
    ax.set_yticks(range(len(durations)), durations["corpus"])
    ax.invert_yaxis()
    ax.set_xlabel("ME duration, ms (mean +- SD)")
    ax.set_title("(d) ME duration across corpora")
    return fig


def save_figure(fig: plt.Figure, stem: Path) -> list[Path]:
    """Save as ``stem.png`` (150 dpi) and ``stem.svg``; returns the paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=150)
    fig.savefig(paths[1], metadata={"Date": None})
    plt.close(fig)
    return paths


def write_stats(stats: DatasetStats, out_dir: str | Path) -> list[Path]:
    """CSV tables and the Figure 2 panels (PNG + SVG) in `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in stats.tables().items():
        path = out_dir / f"{name}.csv"
        table.to_csv(path, index=False, float_format="%.2f")
        written.append(path)
    written += save_figure(figure2(stats), out_dir / "figure2")
    return written
