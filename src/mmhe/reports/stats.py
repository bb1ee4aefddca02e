"""Dataset statistics of the MMHE paper: Table 1 (AU counts) and Figure 2 (a)-(d).

`dataset_stats(source)` takes a store, a coding file, or a coding table; every number is
computed from the expressions, so the same code reproduces the paper's figures from the
real data and describes any synthetic or new corpus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd

from mmhe.labels import ACTION_UNITS, COMPOUND_CLASSES, SEVEN_EMOTIONS, compound_shares


def literature_durations() -> pd.DataFrame:
    """Mean ± SD ME duration (ms) of the micro-expression corpora (paper's Fig. 2(d)):
    corpus, mean_ms, sd_ms, corpus_paper (the corpus's own paper), source (where the
    value was taken from: the MMHE paper's Fig. 2(d), as printed there)."""
    return pd.read_csv(Path(str(resources.files("mmhe") / "data" / "me_durations.csv")))


def published_counts() -> pd.DataFrame:
    """The paper's Figure 2(a) counts per emotion (index) for ME and MaE (columns); the
    source of each row is in ``figure2_counts.csv``."""
    table = pd.read_csv(
        Path(str(resources.files("mmhe") / "data" / "figure2_counts.csv")), index_col="emotion"
    )
    return table[["ME", "MaE"]]


@dataclass
class DatasetStats:
    """Tables behind Table 1 and Figure 2.

    au_counts : AU, name, region, ME, MaE (number of expressions coded with the AU).
    emotion_counts : emotion x (ME, MaE) counts (Fig. 2a).
    compound_shares : compound class x (ME, MaE), percentages (Fig. 2b).
    overview : one-row summary: participants by sex, expressions, modalities (Fig. 2c).
    durations : ME duration (ms) mean and SD of this data next to the literature (Fig. 2d),
        with the source of every value (``source``, ``corpus_paper``).
    """

    au_counts: pd.DataFrame
    emotion_counts: pd.DataFrame
    compound_shares: pd.DataFrame
    overview: pd.DataFrame
    durations: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "table1_au_counts": self.au_counts,
            "fig2a_emotions": self.emotion_counts,
            "fig2b_compound_shares": self.compound_shares,
            "fig2c_overview": self.overview,
            "fig2d_me_durations": self.durations,
        }


def shares_from_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """Compound percentages per column (ME, MaE) from counts per emotion (index)."""
    return pd.DataFrame(
        {column: compound_shares(counts[column].to_dict()) for column in counts.columns}
    ).reindex(list(COMPOUND_CLASSES))


def _expressions_from(source) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    from mmhe.annotations import read_coding_file

    if isinstance(source, pd.DataFrame):
        return source, None, "table"
    path = Path(source)
    if path.is_dir():
        from mmhe.store import MMHEStore

        store = MMHEStore(path)
        return store.expressions(), store.participants(), "MMHE store"
    return read_coding_file(path).table, None, path.name


def dataset_stats(source, *, dataset_name: str = "this data") -> DatasetStats:
    """Statistics of a store (folder), a coding file (path) or a coding table (DataFrame)."""
    table, participants, origin = _expressions_from(source)
    kinds = ["ME", "MaE"]
    emotions = [e for e in SEVEN_EMOTIONS] + sorted(
        set(table["emotion"].dropna()) - set(SEVEN_EMOTIONS)
    )
    emotion_counts = (
        table.groupby(["emotion", "kind"])
        .size()
        .unstack(fill_value=0)
        .reindex(index=emotions, columns=kinds, fill_value=0)
    )
    emotion_counts.index.name = "emotion"
    shares = shares_from_counts(emotion_counts)
    shares.index.name = "compound"

    exploded = table[["kind", "aus"]].explode("aus").dropna()
    au = (
        exploded.groupby(["aus", "kind"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=kinds, fill_value=0)
    )
    au_counts = (
        pd.DataFrame(
            {
                "au": [f"AU{int(a)}" for a in au.index],
                "name": [
                    ACTION_UNITS[int(a)].name if int(a) in ACTION_UNITS else "" for a in au.index
                ],
                "region": [
                    ACTION_UNITS[int(a)].region if int(a) in ACTION_UNITS else "" for a in au.index
                ],
                "ME": au["ME"].to_numpy(),
                "MaE": au["MaE"].to_numpy(),
            }
        )
        .sort_values(["ME", "MaE"], ascending=False)
        .reset_index(drop=True)
    )

    me = table[table["kind"] == "ME"]
    ms = (me["offset_s"] - me["onset_s"]) * 1000.0
    durations = pd.concat(
        [
            literature_durations(),
            pd.DataFrame(
                [
                    {
                        "corpus": dataset_name,
                        "mean_ms": round(float(ms.mean()), 1),
                        "sd_ms": round(float(ms.std(ddof=1)), 1) if len(ms) > 1 else float("nan"),
                        "corpus_paper": "",
                        "source": f"computed by mmhe from {origin} ({len(ms)} MEs, offset - onset)",
                    }
                ]
            ),
        ],
        ignore_index=True,
    )[["corpus", "mean_ms", "sd_ms", "source", "corpus_paper"]]

    subject_column = "subject_id" if "subject_id" in table else "subject"
    overview = {
        "source": origin,
        "participants": int(table[subject_column].nunique()),
        "ME": int((table["kind"] == "ME").sum()),
        "MaE": int((table["kind"] == "MaE").sum()),
    }
    if participants is not None:
        overview["participants"] = len(participants)
        sex = participants["sex"].fillna("unknown").astype(str).str.upper().str[0]
        overview["male"] = int((sex == "M").sum())
        overview["female"] = int((sex == "F").sum())
        overview["trials"] = int(participants["n_trials"].sum())
        modalities = sorted(
            {m for text in participants["modalities"].dropna() for m in str(text).split(",") if m}
        )
        overview["modalities"] = ", ".join(modalities)
    notes = []
    if "contempt" not in set(table["emotion"]) and "tension" in set(table["emotion"]):
        notes.append("this data codes tension where the full release codes contempt")
    return DatasetStats(
        au_counts,
        emotion_counts.reset_index(),
        shares.reset_index(),
        pd.DataFrame([overview]),
        durations,
        notes,
    )
