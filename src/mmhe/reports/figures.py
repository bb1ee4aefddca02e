"""Figure 2 and Table 1 of the dataset paper, made from any store or coding file, at the
quality a paper needs (PNG, SVG and PDF; Table 1 also as LaTeX).

Figure 2: (a) expressions per emotion, ME beside MaE; (b) compound classes as two rings
(inner ME, outer MaE), one-decimal percentages inside their wedge; (c) the size of the
data: people (by sex) and samples on separate axes; (d) mean ± SD ME duration of this
data beside the literature (sources in ``fig2d_me_durations.csv``).
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from mmhe.reports.stats import DatasetStats

COLORS = {
    "ME": "#3B6EA8",
    "MaE": "#D9822B",
    "negative": "#B5473A",
    "positive": "#4E9A5B",
    "surprise": "#7B63A8",
    "male": "#4C7FB0",
    "female": "#C8679A",
    "unknown": "#AAAAAA",
}
MIN_LABELLED_SHARE = 3.0
"""Wedges below this percentage get no label inside the ring (they are in the legend)."""


def corpus_label(name: str) -> str:
    """'CAS(ME)^2' -> 'CAS(ME)²' (superscripts as a paper prints them)."""
    superscripts = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
    return re.sub(r"\^(\d+)", lambda m: m.group(1).translate(superscripts), str(name))


def _panel_a(ax, stats: DatasetStats) -> None:
    counts = stats.emotion_counts.set_index("emotion")
    x = np.arange(len(counts))
    top = float(counts[["ME", "MaE"]].to_numpy().max()) or 1.0
    for offset, kind in ((-0.2, "ME"), (0.2, "MaE")):
        bars = ax.bar(x + offset, counts[kind], 0.4, label=kind, color=COLORS[kind])
        for bar, value in zip(bars, counts[kind], strict=True):
            ax.text(
                bar.get_x() + bar.get_width() / 2,
                bar.get_height() + 0.01 * top,
                f"{int(value):,}",
                ha="center",
                va="bottom",
                fontsize=6.5,
                rotation=90,
            )
    ax.set_xticks(x, counts.index, rotation=30, ha="right")
    ax.set_ylim(0, top * 1.22)
    ax.set_ylabel("expressions")
    ax.set_title("(a) expressions per emotion", loc="left")
    ax.legend(frameon=False)


def _panel_b(ax, stats: DatasetStats) -> None:
    shares = stats.compound_shares.set_index("compound").fillna(0.0)
    colors = [COLORS.get(c, "#999") for c in shares.index]
    width = 0.36
    for outer, kind in ((1.0, "MaE"), (1.0 - width - 0.03, "ME")):
        values = shares[kind].to_numpy(dtype=float)
        if values.sum() <= 0:
            continue
        wedges, _ = ax.pie(
            values,
            radius=outer,
            colors=colors,
            startangle=90,
            counterclock=False,
            wedgeprops={"width": width, "edgecolor": "white", "linewidth": 1.2},
        )
        middle = outer - width / 2
        for wedge, value in zip(wedges, values, strict=True):
            if value < MIN_LABELLED_SHARE:
                continue
            angle = np.deg2rad((wedge.theta1 + wedge.theta2) / 2)
            ax.text(
                middle * np.cos(angle),
                middle * np.sin(angle),
                f"{value:.1f} %",
                ha="center",
                va="center",
                fontsize=7,
                color="white",
                fontweight="bold",
            )
    ax.set_aspect("equal")
    ax.set_title("(b) compound classes\n(inner ring ME, outer ring MaE)", loc="left")
    ax.legend(
        [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors],
        list(shares.index),
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=len(colors),
        frameon=False,
        fontsize=8,
        handlelength=1.0,
        columnspacing=1.0,
    )


def _panel_c(people, samples, stats: DatasetStats) -> None:
    overview = stats.overview.iloc[0].to_dict()
    total = int(overview.get("participants", 0))
    left = 0
    sexes = [(k, int(overview[k])) for k in ("male", "female") if k in overview]
    if sexes:
        unknown = total - sum(v for _, v in sexes)
        if unknown > 0:
            sexes.append(("unknown", unknown))
        for name, value in sexes:
            people.barh(0, value, left=left, color=COLORS[name], height=0.6)
            if value:
                people.text(
                    left + value / 2,
                    0,
                    f"{name} {value:,}",
                    ha="center",
                    va="center",
                    color="white",
                    fontsize=8,
                    fontweight="bold",
                )
            left += value
    else:
        people.barh(0, total, color=COLORS["unknown"], height=0.6)
    people.set_xlim(0, max(total, 1))
    people.set_yticks([])
    people.set_xlabel("participants")
    title = f"(c) size: {total:,} participants"
    if overview.get("modalities"):
        title += f"; {overview['modalities']}"
    people.set_title(title, loc="left")
    names = [k for k in ("ME", "MaE", "trials") if k in overview]
    values = [int(overview[k]) for k in names]
    colors = [COLORS.get(k, "#64B5CD") for k in names]
    bars = samples.barh(range(len(names)), values, color=colors, height=0.6)
    labels = {"ME": "MEs", "MaE": "MaEs", "trials": "trials"}
    samples.set_yticks(range(len(names)), [labels[n] for n in names])
    samples.invert_yaxis()
    top = max(values) if values else 1
    samples.set_xlim(0, top * 1.3)
    for bar, value in zip(bars, values, strict=True):
        samples.text(
            bar.get_width() + 0.01 * top,
            bar.get_y() + bar.get_height() / 2,
            f"{value:,}",
            va="center",
            fontsize=8,
        )
    samples.set_xlabel("samples")


def _panel_d(ax, stats: DatasetStats) -> None:
    durations = stats.durations.reset_index(drop=True)
    y = np.arange(len(durations))
    ours = ~durations["corpus"].isin(_literature_names())
    colors = np.where(ours, COLORS["MaE"], "#333333")
    for yi, (_, row), color in zip(y, durations.iterrows(), colors, strict=True):
        sd = row["sd_ms"] if np.isfinite(row["sd_ms"]) else 0.0
        ax.errorbar(row["mean_ms"], yi, xerr=sd, fmt="o", color=color, capsize=3, markersize=4)
        text = f"{row['mean_ms']:.1f}" + (f" ± {row['sd_ms']:.1f}" if sd else "")
        ax.text(row["mean_ms"] + sd + 12, yi, text, va="center", fontsize=7.5)
    ax.set_yticks(y, [corpus_label(c) for c in durations["corpus"]])
    ax.invert_yaxis()
    right = float((durations["mean_ms"] + durations["sd_ms"].fillna(0)).max())
    ax.set_xlim(0, right * 1.5)
    ax.set_xlabel("ME duration, ms (mean ± SD)")
    ax.set_title("(d) ME duration across corpora", loc="left")


def _literature_names() -> set[str]:
    from mmhe.reports.stats import literature_durations

    return set(literature_durations()["corpus"])


def figure2(stats: DatasetStats, *, narrow: bool = False) -> plt.Figure:
    """The four panels of Figure 2 (see the module docstring), 8.2 x 7.4 in (`narrow`:
    one column, 5 x 14 in, for a phone)."""
    if narrow:
        fig = plt.figure(figsize=(5.0, 14.0), layout="constrained")
        grid = fig.add_gridspec(5, 1, height_ratios=[1.1, 1.2, 0.35, 0.55, 1.0])
        _panel_a(fig.add_subplot(grid[0]), stats)
        _panel_b(fig.add_subplot(grid[1]), stats)
        _panel_c(fig.add_subplot(grid[2]), fig.add_subplot(grid[3]), stats)
        _panel_d(fig.add_subplot(grid[4]), stats)
        return fig
    fig = plt.figure(figsize=(8.2, 7.4), layout="constrained")
    grid = fig.add_gridspec(4, 2, width_ratios=[1.15, 1], height_ratios=[1, 1, 0.5, 0.8])
    _panel_a(fig.add_subplot(grid[0:2, 0]), stats)
    _panel_b(fig.add_subplot(grid[0:2, 1]), stats)
    _panel_c(fig.add_subplot(grid[2, 0]), fig.add_subplot(grid[3, 0]), stats)
    _panel_d(fig.add_subplot(grid[2:4, 1]), stats)
    return fig


def table1_latex(au_counts: pd.DataFrame) -> str:
    """Table 1 (action units of the expressions) as a booktabs LaTeX table."""
    total_me = max(int(au_counts["ME"].sum()), 1)
    lines = [
        r"\begin{tabular}{llllrr}",
        r"\toprule",
        r"AU & Action & Region & & ME & MaE \\",
        r"\midrule",
    ]
    for row in au_counts.itertuples(index=False):
        share = 100.0 * row.ME / total_me
        lines.append(
            f"{row.au} & {_tex(row.name)} & {_tex(row.region)} & ({share:.1f}\\,\\%) & "
            f"{int(row.ME):,} & {int(row.MaE):,} \\\\".replace(",", "{,}")
        )
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def _tex(text: object) -> str:
    return re.sub(r"([&%#_$])", r"\\\1", str(text))


def save_figure(fig: plt.Figure, stem: Path) -> list[Path]:
    """Save as ``stem.png`` (200 dpi), ``stem.svg`` and ``stem.pdf``; returns the paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg"), stem.with_suffix(".pdf")]
    fig.savefig(paths[0], dpi=200)
    fig.savefig(paths[1], metadata={"Date": None})
    fig.savefig(paths[2], metadata={"CreationDate": None})
    plt.close(fig)
    return paths


def write_stats(stats: DatasetStats, out_dir: str | Path) -> list[Path]:
    """CSV tables, Table 1 as LaTeX and Figure 2 (PNG, SVG, PDF) in `out_dir`.

    Figure 2 is drawn again only when its tables or this module changed (the key of what
    it was drawn from is kept in ``.figure2.key``)."""
    import hashlib

    from mmhe import __version__

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    digest = hashlib.blake2b(__version__.encode(), digest_size=12)
    digest.update(Path(__file__).read_bytes())
    for name, table in stats.tables().items():
        path = out_dir / f"{name}.csv"
        text = table.to_csv(index=False, float_format="%.2f")
        path.write_text(text, encoding="utf-8")
        digest.update(text.encode())
        written.append(path)
    latex = out_dir / "table1_au_counts.tex"
    latex.write_text(table1_latex(stats.au_counts), encoding="utf-8")
    written.append(latex)
    stem, stamp = out_dir / "figure2", out_dir / ".figure2.key"
    figures = [stem.with_suffix(s) for s in (".png", ".svg", ".pdf")]
    key = digest.hexdigest()
    if stamp.is_file() and stamp.read_text() == key and all(p.is_file() for p in figures):
        return written + figures
    written += save_figure(figure2(stats), stem)
    stamp.write_text(key)
    return written
