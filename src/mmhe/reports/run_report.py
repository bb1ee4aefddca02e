"""`render_report`: the HTML page (and Markdown) of a benchmark run, for a paper.

A run directory (written by `mmhe benchmark`, `mmhe.evaluation.run_folder`) holds
config.json, predictions.parquet, results.csv, seeds.csv, participants.csv,
pairwise.csv, pvalues_uf1.csv / pvalues_uar.csv, audit.json and environment.json. The
page shows the results table with significance markers, the scores against the chance
rows, paired permutation p-values (Holm), per-class precision / recall / F1, confusion
matrices (counts and row-normalised), per-participant scores, seeds, a data section built
from the store (`mmhe.reports.data_section`), the leakage audit, what was run and where
it departs from the published settings. The HTML embeds every image (it can be mailed);
each figure is also written beside it as SVG and PDF (``figures/``), and ``report.md``
repeats the tables and notes.
"""

from __future__ import annotations

import hashlib
import html as html_module
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from mmhe import __version__
from mmhe.errors import InputFileError
from mmhe.evaluation.results import TEST_GROUP, markdown_table
from mmhe.models import CHANCE_BASELINES
from mmhe.reports import run_figures as figures
from mmhe.reports import run_tables as tables
from mmhe.reports.html import (
    MISSING,
    FigureWriter,
    html_table,
    number,
    pvalue,
    render_page,
)

REPORT_FORMAT = 2
"""Bumped when the page changes for the same inputs (part of the report's cache key)."""
RUN_FILES = (
    "config.json",
    "predictions.parquet",
    "results.csv",
    "audit.json",
    "seeds.csv",
    "participants.csv",
    "pairwise.csv",
    "environment.json",
)


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """Read the files of a run directory (raises `InputFileError` naming a missing one).

    seeds.csv, participants.csv and pairwise.csv are recomputed from the predictions
    when an older run lacks them."""
    run_dir = Path(run_dir)
    for name in ("config.json", "predictions.parquet", "results.csv", "audit.json"):
        if not (run_dir / name).is_file():
            raise InputFileError(
                run_dir / name,
                "missing from the run directory",
                "run `mmhe benchmark` first (or let it finish)",
            )
    environment = run_dir / "environment.json"
    run = {
        "config": json.loads((run_dir / "config.json").read_text()),
        "predictions": pd.read_parquet(run_dir / "predictions.parquet"),
        "results": pd.read_csv(run_dir / "results.csv"),
        "audit": json.loads((run_dir / "audit.json").read_text()),
        "environment": json.loads(environment.read_text()) if environment.is_file() else {},
    }
    for name in ("seeds", "participants", "pairwise"):
        path = run_dir / f"{name}.csv"
        run[name] = pd.read_csv(path) if path.is_file() else None
    _fill_missing_tables(run)
    return run


def _fill_missing_tables(run: dict[str, Any]) -> None:
    from mmhe.evaluation.results import (
        paired_permutation_tests,
        participant_table,
        seed_table,
    )

    predictions, config = run["predictions"], run["config"]
    body = config.get("config", {})
    impute = bool(body.get("impute", False))
    if "seed" not in predictions:
        predictions["seed"] = 0
    for column, value in (("control", "none"), ("protocol", "loso"), ("samples", "ME")):
        if column not in predictions:
            predictions[column] = value
        if column not in run["results"]:
            run["results"][column] = value
    groups = list(predictions.groupby(["task", "samples"], sort=False))

    def k_of(task: str, group: pd.DataFrame) -> int:
        names = config.get("classes", {}).get(task)
        return len(names) if names else int(group[["y_true", "y_pred"]].max().max()) + 1

    if run["seeds"] is None:
        run["seeds"] = pd.concat(
            [seed_table(g, k_of(t, g), impute) for (t, _), g in groups], ignore_index=True
        )
    if run["participants"] is None:
        run["participants"] = pd.concat(
            [participant_table(g, k_of(t, g), impute) for (t, _), g in groups], ignore_index=True
        )
    if run["pairwise"] is None:
        classes = {(t, s): tables.class_names(config, t, k_of(t, g)) for (t, s), g in groups}
        run["pairwise"] = paired_permutation_tests(
            predictions, classes, impute=impute, n_perm=int(body.get("n_perm", 10000))
        )


# ------------------------------------------------------------------ cells


def _score_cell(row: pd.Series, metric: str, html: bool = False, mark: str = "") -> str:
    """'77.1 ± 1.2 [60.3, 90.0]' (%), the CI on a second line in HTML."""
    value = row.get(metric, np.nan)
    if pd.isna(value):
        return MISSING
    text = f"{100 * value:.1f}"
    if int(row.get("n_seeds", 1) or 1) > 1 and not pd.isna(row.get(f"{metric}_seed_sd")):
        text += f" ± {100 * row[f'{metric}_seed_sd']:.1f}"
    if mark:
        text += f'<sup class="mark">{mark}</sup>' if html else f" {mark}"
    low, high = row.get(f"{metric}_low"), row.get(f"{metric}_high")
    if low is not None and not pd.isna(low):
        interval = f"[{100 * low:.1f}, {100 * high:.1f}]"
        text += f'<br><span class="ci">{interval}</span>' if html else f" {interval}"
    return text.replace("-", "−")


def _pp_cell(row: pd.Series, metric: str) -> str:
    mean, sd = row.get(f"{metric}_pp_mean"), row.get(f"{metric}_pp_sd")
    if mean is None or pd.isna(mean):
        return MISSING
    return f"{100 * mean:.1f} ± {100 * sd:.1f}"


def main_table(results: pd.DataFrame, marks: dict[int, str], *, html: bool) -> pd.DataFrame:
    """The results table: one row per combination, scores in % as 'mean ± seed SD [95 %
    CI]', per-participant UF1 mean ± SD, the significance markers on UF1."""
    rows = []
    for i, (_, r) in enumerate(results.reset_index(drop=True).iterrows()):
        n = f"{int(r['n_samples']):,}"
        missing = int(r.get("n_missing", 0) or 0)
        if missing:
            n += f" (+{missing:,} {'imputed' if r.get('imputed', False) else 'without input'})"
        mark = marks.get(i, "")
        cells = {
            m: _score_cell(r, m, html, mark if m == "uf1" else "")
            for m in ("accuracy", "uf1", "uar")
        }
        control = r.get("control", "none")
        rows.append(
            {
                "model": r["model"] + (" (shuffled labels)" if control == "shuffled" else ""),
                "input": r["modalities"] if isinstance(r["modalities"], str) else "none",
                "n": n,
                "seeds": int(r.get("n_seeds", 1) or 1),
                "Accuracy %": cells["accuracy"],
                "UF1 %": cells["uf1"],
                "UAR %": cells["uar"],
                "UF1 % per participant": _pp_cell(r, "uf1"),
                "complete": "yes" if bool(r.get("complete", True)) else "NO",
                "audit": "passed" if bool(r.get("audit_passed", True)) else "FAILED",
            }
        )
    return pd.DataFrame(rows)


def _status_class(column: str, value: Any) -> str | None:
    if value in ("FAILED", "NO", False):
        return "bad"
    if value in ("passed", "yes", True) and column in ("audit", "complete", "passed"):
        return "ok"
    return None


def _p_class(column: str, value: Any) -> str | None:
    if column == "model" or value is None or (isinstance(value, float) and np.isnan(value)):
        return "diag" if column != "model" else None
    return "p-sig" if value < 0.05 else "p-weak" if value < 0.1 else "p-none"


# ------------------------------------------------------------------ render


def render_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    *,
    store: str | Path | None = None,
    data: bool = True,
    faces: int = 2,
    cache: bool = True,
) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained), ``report.md`` and ``figures/`` (every
    figure as PNG, SVG and PDF, the face samples as GIF) beside it; returns (html, md).

    store : the store of the run (default: the one named in the run's config), used for
        the data section (dataset statistics, faces, EEG maps, physiology, sync) when it
        can be opened.
    data : build the data section.
    faces : animated sample expressions per emotion in the data section.
    cache : skip the work when the page was made from the same run files, store, options
        and mmhe version (``report.json`` beside the page keeps that key).
    """
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "report.html"
    markdown_path = out.with_suffix(".md")
    run_config = (
        json.loads((run_dir / "config.json").read_text())
        if (run_dir / "config.json").is_file()
        else {}
    )
    store = store or run_config.get("store")
    store_path = Path(store) if store and Path(store).exists() else None
    key = _cache_key(run_dir, store_path, data, faces)
    stamp = out.with_name(out.stem + ".json")
    if (
        cache
        and out.is_file()
        and markdown_path.is_file()
        and stamp.is_file()
        and json.loads(stamp.read_text()).get("key") == key
    ):
        return out, markdown_path

    run = load_run(run_dir)
    config, results = run["config"], run["results"]
    results = results.reset_index(drop=True)
    writer = FigureWriter(out.parent / "figures", out.parent)
    tests = run["pairwise"]
    marks = tables.significance_marks(results, tests)
    levels = tables.chance_levels(results)

    groups = []
    participants = run["participants"]
    for key_, rows in results.groupby(TEST_GROUP, sort=False, dropna=False):
        slug = "-".join(str(v) for v in key_).replace("/", "_")
        title = figures.group_title(key_)
        chart = writer.add(
            figures.score_chart(rows, levels[key_]),
            f"scores-{slug}",
            f"Scores pooled over folds ({title}), with 95 % CIs; grey bars are the chance "
            "rows, lines their scores and 1/K. Percent.",
            narrow=figures.score_chart(rows, levels[key_], narrow=True),
        )
        mine = participants
        for column, value in zip(TEST_GROUP, key_, strict=True):
            mine = mine[mine[column].astype(str) == str(value)]
        strip = None
        if len(mine) and (~rows["model"].isin(CHANCE_BASELINES)).any():
            strip = writer.add(
                figures.participant_strip(mine, rows, levels[key_]),
                f"participants-{slug}",
                f"Accuracy of each held-out participant ({title}), mean over seeds; one strip "
                "per model, participants in the same order in every strip; dot area grows "
                "with the participant's scored samples.",
                narrow=figures.participant_strip(mine, rows, levels[key_], narrow=True),
            )
        groups.append({"title": title, "scores": chart, "participants": strip})

    main_rows = main_table(results, marks, html=True)
    pvalues = []
    for metric in ("uf1", "uar"):
        matrix = tables.pvalue_table(tests, metric) if len(tests) else pd.DataFrame()
        if not matrix.empty:
            shown = matrix.reset_index()
            pvalues.append(
                {
                    "metric": metric.upper(),
                    "table": html_table(
                        shown,
                        formats={c: pvalue for c in matrix.columns},
                        cell_class=_p_class,
                        css="matrix",
                    ),
                    "frame": shown,
                }
            )
    per_class = tables.per_class_scores(
        run["predictions"], config, impute=bool(config.get("config", {}).get("impute", False))
    )
    per_class_shown = per_class.assign(
        model=[
            f"{m} ({x})" + (", shuffled" if c == "shuffled" else "")
            for m, x, c in zip(
                per_class["model"], per_class["modalities"], per_class["control"], strict=True
            )
        ]
    )[["model", "class", "precision", "recall", "f1", "support", "predicted"]]
    per_class_shown = per_class_shown.rename(
        columns={
            "precision": "precision %",
            "recall": "recall %",
            "f1": "F1 %",
            "support": "true / seed",
            "predicted": "predicted / seed",
        }
    )
    pct = {
        c: (lambda v: number(100 * v, 1) if not pd.isna(v) else MISSING)
        for c in ("precision %", "recall %", "F1 %")
    }
    counts_fmt = {
        c: (lambda v: number(float(v), 1 if float(v) % 1 else 0))
        for c in ("true / seed", "predicted / seed")
    }

    confusion_figures = [
        writer.add(
            figures.confusion_figure(entry),
            "confusion-"
            + "-".join(
                str(entry["combination"][c])
                for c in ("model", "modalities", "task", "protocol", "control")
            ).replace("+", "_"),
            f"{entry['combination']['model']} ({entry['combination']['modalities']}): counts over "
            f"{entry['n_seeds']} seed{'s' if entry['n_seeds'] > 1 else ''} (each sample once per "
            "seed) and % of each true class.",
        )
        for entry in tables.confusions(run["predictions"], config)
    ]

    seeds = run["seeds"].copy()
    seeds_shown = pd.DataFrame(
        {
            "model": [
                f"{m} ({x})" for m, x in zip(seeds["model"], seeds["modalities"], strict=True)
            ],
            "task": seeds["task"],
            "seed": seeds["seed"],
            "n": seeds["n_samples"],
            "Accuracy %": 100 * seeds["accuracy"],
            "UF1 %": 100 * seeds["uf1"],
            "UAR %": 100 * seeds["uar"],
        }
    )

    dataset_checks, audit_matrix, audit_all = tables.audit_matrix(run["audit"])
    audit_ok = bool(run["audit"].get("passed", False))
    check_mark = lambda v: "✓ passed" if v is True else ("✗ FAILED" if v is False else MISSING)  # noqa: E731
    audit_formats = {c: check_mark for c in audit_matrix.columns if c != "combination"}

    deviations = tables.deviations(config)
    what_run = tables.what_was_run(config, results, run["environment"])
    versions = pd.DataFrame(
        sorted(run["environment"].get("packages", {}).items()), columns=["package", "version"]
    )
    incomplete = [
        f"{r.model} / {r.task} / {r.modalities}"
        for r in results.itertuples()
        if not bool(getattr(r, "complete", True))
    ]

    data_section = None
    if data and store_path is not None:
        from mmhe.reports.data_section import build_data_section

        data_section = build_data_section(
            store_path,
            writer,
            config=config,
            cache_dir=out.parent / ".report-cache",
            faces_per_class=faces,
        )

    summary = [
        (number(int(results["n_participants"].max())) if len(results) else MISSING, "participants"),
        (number(int(results["n_samples"].max())) if len(results) else MISSING, "samples per seed"),
        (number(int(results["n_classes"].max())) if "n_classes" in results else MISSING, "classes"),
        (number(int(results["n_seeds"].max())) if "n_seeds" in results else "1", "seeds per model"),
        (
            f"{int((~results['model'].isin(CHANCE_BASELINES)).sum())} + "
            f"{int(results['model'].isin(CHANCE_BASELINES).sum())}",
            "models + chance rows",
        ),
        ("passed" if audit_ok else "FAILED", "leakage audit"),
    ]
    toc = [
        ("results", "Results"),
        ("comparisons", "Paired comparisons"),
        ("per-class", "Per-class scores"),
        ("confusion", "Confusion matrices"),
        ("participants", "Per participant"),
        ("seeds", "Seeds"),
    ]
    if data_section is not None:
        toc.append(("data", "The data"))
    toc += [("audit", "Leakage audit"), ("run", "What was run")]
    best = [results.loc[i] for i, m in marks.items() if tables.MARKS["best"] in m]
    title = config.get("title", "mmhe benchmark report")
    render_page(
        "report.html.j2",
        out,
        title=title,
        kind="benchmark report",
        source=str(run_dir),
        toc=toc,
        summary=summary,
        interval=config.get("interval", "95 % CIs"),
        notes=[_code_spans(note) for note in config.get("notes", [])],
        incomplete=incomplete,
        main_table=html_table(
            main_rows,
            markup=["Accuracy %", "UF1 %", "UAR %"],
            cell_class=_status_class,
        ),
        legend=tables.MARK_LEGEND,
        best=best,
        groups=groups,
        pvalues=pvalues,
        n_perm=int(config.get("config", {}).get("n_perm", 10000)),
        per_class=html_table(per_class_shown, formats={**pct, **counts_fmt}),
        confusions=confusion_figures,
        seeds_table=html_table(seeds_shown, digits=1),
        data=data_section,
        audit_ok=audit_ok,
        audit_not_checked=run["audit"].get("not_checked", ""),
        dataset_checks=html_table(
            dataset_checks[["scope", "check", "passed", "detail"]],
            formats={"passed": check_mark},
            wrap=["detail", "check"],
            cell_class=lambda c, v: ("ok" if v else "bad") if c == "passed" else None,
        )
        if len(dataset_checks)
        else None,
        audit_matrix=html_table(
            audit_matrix,
            formats=audit_formats,
            cell_class=lambda c, v: None if c == "combination" else ("ok" if v else "bad"),
            css="matrix",
        )
        if len(audit_matrix)
        else None,
        audit_details=html_table(
            audit_all,
            formats={"passed": check_mark},
            wrap=["detail", "check"],
            cell_class=lambda c, v: ("ok" if v else "bad") if c == "passed" else None,
        ),
        what_run=html_table(what_run, wrap=["value"]),
        deviations=html_table(deviations, wrap=["used", "published", "source"])
        if len(deviations)
        else None,
        raw_config=json.dumps(config, indent=2, ensure_ascii=False),
        versions_table=html_table(versions),
    )
    markdown_path.write_text(
        _markdown(
            config,
            results,
            marks,
            pvalues,
            per_class_shown,
            deviations,
            what_run,
            audit_ok,
            incomplete,
            writer,
            out.parent,
            data_section,
        ),
        encoding="utf-8",
    )
    stamp.write_text(json.dumps({"key": key, "figures": len(writer.written)}, indent=2))
    return out, markdown_path


def _cache_key(run_dir: Path, store: Path | None, data: bool, faces: int) -> str:
    """Hash of the run's files, the store's participant keys, the options, the report
    code and the templates: an equal key gives an equal page."""
    digest = hashlib.blake2b(digest_size=12)
    digest.update(f"{__version__}|{REPORT_FORMAT}|{data}|{faces}".encode())
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_file():
            digest.update(name.encode())
            digest.update(hashlib.blake2b(path.read_bytes(), digest_size=16).digest())
    templates = Path(__file__).parent / "templates"
    for path in sorted(templates.iterdir()):
        digest.update(path.read_bytes())
    for module in ("run_report", "run_tables", "run_figures", "html", "figures", "stats"):
        source = Path(__file__).parent / f"{module}.py"
        digest.update(source.read_bytes())
    if store is not None and data:
        from mmhe.reports.data_section import data_section_key

        digest.update(data_section_key(store).encode())
    return digest.hexdigest()


def _markdown(
    config: dict[str, Any],
    results: pd.DataFrame,
    marks: dict[int, str],
    pvalues: list[dict[str, Any]],
    per_class: pd.DataFrame,
    deviations: pd.DataFrame,
    what_run: pd.DataFrame,
    audit_ok: bool,
    incomplete: list[str],
    writer: FigureWriter,
    folder: Path,
    data_section: dict[str, Any] | None,
) -> str:
    title = config.get("title", "mmhe benchmark report")
    lines = [f"# {title}", ""]
    lines.append(
        "Scores in % pooled over all folds (MEGC convention): mean ± SD over seeds "
        f"[{config.get('interval', '95 % CI')}]; per participant: mean ± SD over "
        "participants."
    )
    lines.append("")
    if incomplete:
        lines += [f"**Incomplete run** ({', '.join(incomplete)}): these rows are not results.", ""]
    if config.get("notes"):
        lines += ["Notes:", ""] + [f"- {note}" for note in config["notes"]] + [""]
    lines += [markdown_table(main_table(results, marks, html=False)), ""]
    lines += [f"- {mark} {text}" for mark, text in tables.MARK_LEGEND.items()] + [""]
    for entry in pvalues:
        frame = entry["frame"].copy()
        for column in frame.columns[1:]:
            frame[column] = [pvalue(v) if not pd.isna(v) else "" for v in frame[column]]
        lines += [
            f"Paired permutation tests over participants ({entry['metric']}, Holm-adjusted "
            "p-values):",
            "",
            markdown_table(frame),
            "",
        ]
    shown = per_class.copy()
    for column in ("precision %", "recall %", "F1 %"):
        shown[column] = [number(100 * v, 1) for v in shown[column]]
    for column in ("true / seed", "predicted / seed"):
        shown[column] = [number(float(v), 1 if float(v) % 1 else 0) for v in shown[column]]
    lines += ["## Per-class scores (pooled, mean over seeds)", "", markdown_table(shown), ""]
    lines += ["## Departures from the published settings", ""]
    if len(deviations):
        lines += [markdown_table(deviations), ""]
    else:
        lines += ["None: every model trained with its published settings.", ""]
    lines += [f"Leakage audit: {'passed' if audit_ok else 'FAILED'}.", ""]
    lines += ["## What was run", "", markdown_table(what_run.rename(columns={"": "item"})), ""]
    if data_section is not None and data_section.get("markdown"):
        lines += [data_section["markdown"], ""]
    lines += ["## Figures (SVG and PDF beside this file)", ""]
    for path in writer.written:
        if path.suffix in (".svg", ".gif"):
            relative = Path(os.path.relpath(path, folder)).as_posix()
            lines.append(f"- [{path.stem}]({relative})")
    return "\n".join(lines) + "\n"


def _code_spans(text: str) -> Markup:
    """A note as HTML: escaped, `backticks` as <code> (the notes are written in Markdown)."""
    import re

    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", html_module.escape(text)))


__all__ = ["load_run", "main_table", "render_report"]
