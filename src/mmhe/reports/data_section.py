"""The data section of the run report: what the data look like, built from the store.

- dataset statistics: Figure 2 and Table 1 (`mmhe.reports.figures`);
- sample expressions per emotion as animated GIFs with their flow and strain
  (`mmhe.reports.data_faces`);
- EEG band-power maps per class and their difference to rest (`mmhe.reports.data_eeg`);
- heart rate, skin conductance and respiration locked to expression onset
  (`mmhe.reports.data_physio`);
- synchronisation: drift, offset and marker residuals per device (`mmhe.reports.data_sync`).

Each part's numbers are cached in ``cache_dir`` under a key of the store's participant
provenance keys, the part's parameters and `DATA_FORMAT`, so a second report of the same
store redraws the figures without recomputing faces, physiology or fits. A part that
cannot be made (no EEG features, no frames) says why in the page instead of failing the
report.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from mmhe.reports.html import FigureWriter, html_table, number, plus_minus

DATA_FORMAT = 1
"""Bumped when a part's cached numbers change for the same store and parameters."""
FACES_PER_CLASS = 2
TASK_COLUMN = {"compound": "compound", "emotion7": "emotion", "kind": "kind"}


def data_section_key(store_path: str | Path) -> str:
    """Key of everything the data section reads from a store (its participants'
    provenance keys, its version and the EEG feature folders present)."""
    from mmhe.features.batch import store_keys
    from mmhe.store import MMHEStore

    store = MMHEStore(store_path)
    features = (
        sorted(
            (
                p.name,
                (p / "complete.json").stat().st_mtime_ns if (p / "complete.json").is_file() else 0,
            )
            for p in (store.path / "features").glob("*")
        )
        if (store.path / "features").is_dir()
        else []
    )
    payload = {
        "format": DATA_FORMAT,
        "version": store.manifest.get("version"),
        "participants": store_keys(store),
        "features": features,
    }
    return hashlib.blake2b(json.dumps(payload, sort_keys=True).encode(), digest_size=12).hexdigest()


def _code_key() -> str:
    """Hash of the data modules' source: changed code never reuses cached numbers."""
    digest = hashlib.blake2b(digest_size=8)
    for name in ("data_faces", "data_eeg", "data_physio", "data_sync", "data_section"):
        digest.update((Path(__file__).parent / f"{name}.py").read_bytes())
    return digest.hexdigest()


def _cached(cache_dir: Path | None, name: str, key: dict[str, Any], compute: Callable[[], Any]):
    """`compute()` once per key: pickled in ``cache_dir/<name>-<hash>.pkl``."""
    if cache_dir is None:
        return compute()
    digest = hashlib.blake2b(json.dumps(key, sort_keys=True, default=str).encode(), digest_size=10)
    path = Path(cache_dir) / f"{name}-{digest.hexdigest()}.pkl"
    if path.is_file():
        with path.open("rb") as handle:
            return pickle.load(handle)
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as handle:
        pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    for old in Path(cache_dir).glob(f"{name}-*.pkl"):  # one entry per part
        if old != path:
            old.unlink(missing_ok=True)
    return value


def _run_choices(config: dict[str, Any] | None) -> tuple[str, str, Any]:
    """(class column, samples, FeatureConfig) of the run (compound / ME / defaults)."""
    from mmhe.features.batch import FeatureConfig

    body = (config or {}).get("config", {})
    defaults = body.get("defaults", {})
    runs = body.get("runs", [{}])
    task = (runs[0] if runs else {}).get("task") or defaults.get("task") or "compound"
    samples = (runs[0] if runs else {}).get("samples") or defaults.get("samples") or "ME"
    features = FeatureConfig(**body["features"]) if body.get("features") else FeatureConfig()
    return TASK_COLUMN.get(task, "compound"), samples, features


def build_data_section(
    store_path: str | Path,
    writer: FigureWriter,
    *,
    config: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    faces_per_class: int = FACES_PER_CLASS,
) -> dict[str, Any]:
    """Figures, tables and notes of the data section (template ``data_section.html.j2``),
    plus its Markdown (``markdown``). faces_per_class : animated samples per emotion."""
    from mmhe.reports import data_eeg, data_faces, data_physio, data_sync
    from mmhe.reports.figures import figure2, table1_latex
    from mmhe.reports.stats import dataset_stats
    from mmhe.store import MMHEStore

    store = MMHEStore(store_path)
    cache_dir = Path(cache_dir) if cache_dir is not None else None
    base = {"store": data_section_key(store.path), "code": _code_key()}
    column, samples, features = _run_choices(config)
    section: dict[str, Any] = {"notes": [], "class_column": column, "samples": samples}
    markdown = ["## The data", ""]

    # --- dataset statistics (Figure 2, Table 1)
    stats = dataset_stats(store.path, dataset_name="this store")
    section["figure2"] = writer.add(
        figure2(stats),
        "figure2",
        "Figure 2 of the dataset paper, from this store: (a) expressions per emotion, (b) "
        "compound classes, (c) size, (d) ME duration beside the literature (values as printed "
        "in the MMHE paper, Fig. 2(d); every source in fig2d_me_durations.csv).",
        narrow=figure2(stats, narrow=True),
    )
    table1 = stats.au_counts.copy()
    total_me = max(int(table1["ME"].sum()), 1)
    table1.insert(4, "% of ME codes", 100 * table1["ME"] / total_me)
    section["table1"] = html_table(
        table1.rename(columns={"au": "AU", "name": "action", "region": "face region"}),
        formats={"% of ME codes": 1},
    )
    stats_dir = writer.folder
    stats_dir.mkdir(parents=True, exist_ok=True)
    for name, table in stats.tables().items():
        table.to_csv(stats_dir / f"{name}.csv", index=False)
    (stats_dir / "table1_au_counts.tex").write_text(table1_latex(stats.au_counts))
    durations = stats.durations
    section["durations"] = html_table(
        pd.DataFrame(
            {
                "corpus": durations["corpus"].str.replace("^2", "²").str.replace("^3", "³"),
                "ME duration, ms": [
                    plus_minus(m, s)
                    for m, s in zip(durations["mean_ms"], durations["sd_ms"], strict=True)
                ],
                "source": durations["source"],
                "corpus paper": durations["corpus_paper"],
            }
        ),
        wrap=["source", "corpus paper"],
    )
    section["notes"] += stats.notes
    markdown += [
        "Figure 2 and Table 1 from the store: `figures/figure2.svg`, `figures/figure2.pdf`, "
        "`figures/table1_au_counts.csv` / `.tex`.",
        "",
    ]

    # --- faces
    def faces() -> list[data_faces.FaceSample | str]:
        expressions = store.expressions(located=True)
        chosen = data_faces.choose_samples(expressions, faces_per_class, "emotion")
        out: list[Any] = []
        for row in chosen.itertuples(index=False):
            try:
                out.append(data_faces.expression_animation(store, row, method="tvl1"))
            except Exception as exc:  # one sample's failure is a note, never fatal
                out.append(f"{row.expression_id}: {type(exc).__name__}: {exc}")
        return out

    samples_made = (
        _cached(cache_dir, "faces", {**base, "n": faces_per_class}, faces)
        if faces_per_class
        else []
    )
    face_figures = []
    for item in samples_made:
        if isinstance(item, str):
            section["notes"].append(f"face sample skipped: {item}")
            continue
        aus = "+".join(str(a) for a in item.aus) or "none"
        face_figures.append(
            (
                item.emotion,
                writer.add_gif(
                    item.frames,
                    f"face-{item.emotion}-{item.expression_id}",
                    f"{item.emotion}, {item.kind}, {item.subject_id}, AU {aus}, "
                    f"{number(item.duration_ms, 0)} ms (shown slowed down).",
                    duration_ms=item.durations,
                    alt=f"{item.emotion} {item.kind} of {item.subject_id}",
                ),
            )
        )
    section["faces"] = face_figures
    markdown += [
        f"Sample expressions: {len(face_figures)} animated GIFs in `figures/face-*.gif`.",
        "",
    ]

    # --- EEG maps
    try:
        maps = _cached(
            cache_dir,
            "eeg",
            {**base, "column": column, "samples": samples, "features": features.eeg.model_dump()},
            lambda: data_eeg.class_maps(store, features, column, samples),
        )
    except Exception as exc:  # no EEG features for this run: say so
        section["eeg"] = None
        section["notes"].append(f"EEG maps not drawn: {exc}")
    else:
        section["eeg"] = {
            "maps": maps,
            "power": writer.add(
                data_eeg.topomap_figure(maps, "power"),
                "eeg-band-power",
                f"Band power per class ({samples}s, by {column}), dB re 1 µV²/Hz, mean over "
                "expressions; one colour scale per band.",
            ),
            "change": writer.add(
                data_eeg.topomap_figure(maps, "change"),
                "eeg-change-to-rest",
                f"Difference to each participant's {maps.baseline} block, dB (red: more power "
                "during the expression), mean over expressions; a symmetric colour scale per band.",
            )
            if maps.baseline
            else None,
        }
        if not maps.baseline:
            section["notes"].append("no rest or calm block in the store: no EEG change to rest")

    # --- physiology
    try:
        locked = _cached(
            cache_dir,
            "physio",
            {**base, "samples": samples},
            lambda: data_physio.event_locked(store, samples),
        )
    except Exception as exc:
        section["physio"] = None
        section["notes"].append(f"physiology around onset not drawn: {type(exc).__name__}: {exc}")
    else:
        order = data_eeg._class_order(list(locked.table[column].dropna().unique()), column)
        section["physio"] = (
            writer.add(
                data_physio.event_figure(locked, column, order),
                "physio-event-locked",
                f"Heart rate, skin conductance and respiration rate around the onset of "
                f"{len(locked.table):,} {samples}s by {column}: change from the second before "
                "onset, mean ± SE over expressions (n per class in the legend).",
                narrow=data_physio.event_figure(locked, column, order, narrow=True),
            )
            if len(locked.table)
            else None
        )

    # --- synchronisation
    summary = _cached(cache_dir, "sync", base, lambda: data_sync.sync_summary(store))
    section["sync_notes"] = summary.mismatches
    if len(summary.fits):
        fits = summary.fits.copy()
        fits.to_csv(stats_dir / "sync_fits.csv", index=False)
        summary.residuals.to_csv(stats_dir / "sync_residuals.csv", index=False)
        shown = pd.DataFrame(
            {
                "participant": fits["subject_id"],
                "device": fits["device"].map(data_sync.DEVICE_NAMES),
                "drift, ppm": fits["drift_ppm"],
                "offset, s": fits["offset_s"],
                "markers matched": fits["n_matched"],
                "not matched": fits["n_unmatched"],
                "median |residual|, ms": fits["residual_ms_median"],
                "max |residual|, ms": fits["residual_ms_max"],
                "tolerance, ms": fits["tolerance_ms"],
                "warnings": fits["warnings"].fillna(""),
            }
        )
        section["sync"] = {
            "table": html_table(
                shown,
                formats={
                    "drift, ppm": 1,
                    "offset, s": 3,
                    "median |residual|, ms": 2,
                    "max |residual|, ms": 2,
                    "tolerance, ms": 1,
                },
                wrap=["warnings"],
                limit=60,
                cell_class=lambda c, v: "bad" if c == "warnings" and v else None,
            ),
            "drift": writer.add(
                data_sync.drift_figure(summary),
                "sync-drift-offset",
                "Clock drift (ppm) and offset (s) of the BIOPAC and the camera against the EEG, "
                "one dot per participant.",
                narrow=data_sync.drift_figure(summary, narrow=True),
            ),
            "residuals": writer.add(
                data_sync.residual_figure(summary),
                "sync-residuals",
                "Residual of every matched marker after the fit of offset and drift, per "
                "device; dashed: the tolerance above which the ingest warns.",
            )
            if len(summary.residuals)
            else None,
            "n_over": int((summary.fits["residual_ms_max"] > summary.fits["tolerance_ms"]).sum()),
        }
    else:
        section["sync"] = None
    markdown += [
        "Synchronisation: `figures/sync_fits.csv` (drift, offset per participant and device), "
        "`figures/sync_residuals.csv` (every matched marker).",
        "",
    ]
    section["markdown"] = "\n".join(markdown)
    return section
