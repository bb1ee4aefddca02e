"""Vocabularies of the MMHE dataset, kept as data files a user can replace.

- emotions (`data/emotions.csv`): the canonical names, their compound class and the
  spellings real coding files use (happy, angry, sad, tense, neutral, ...);
- FACS action units (`data/action_units.csv`): code, FACS name and facial region
  (upper / middle / lower face, as in the dataset paper's Table 1);
- the stimulus table (`data/stimuli.csv`): marker -> category for markers 100..148;
- AU prototypes per emotion (`data/au_emotion_prototypes.csv`), used only for the
  "implausible AU set" warning of the coding-file checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import pandas as pd

from mmhe.errors import InputFileError

EMOTIONS: tuple[str, ...] = (
    "happiness",
    "disgust",
    "fear",
    "anger",
    "surprise",
    "sadness",
    "contempt",
    "tension",
    "calm",
)
"""Canonical emotion names: the seven discrete emotions, plus tension and calm."""

SEVEN_EMOTIONS: tuple[str, ...] = EMOTIONS[:7]
COMPOUND_CLASSES: tuple[str, ...] = ("negative", "positive", "surprise")
"""The paper's three-class task (MEGC 2019 composite order: 0 negative, 1 positive, 2 surprise)."""

EXPRESSION_TASKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "compound": ("compound", COMPOUND_CLASSES),
    "emotion7": ("emotion", SEVEN_EMOTIONS),
    "kind": ("kind", ("ME", "MaE")),
}
"""Per-expression tasks (the names `mmhe benchmark --task` takes): the expressions-table
column that holds the label and the class names in class-index order."""

REST_MARKER = 100
STIMULUS_MARKERS = range(101, 149)
VALID_MARKERS = range(100, 149)
FACIAL_REGIONS: tuple[str, ...] = ("upper", "middle", "lower")


def _data_path(name: str) -> Path:
    return Path(str(resources.files("mmhe") / "data" / name))


def _read_csv(path: str | Path, required: set[str]) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found", "give the path of an existing CSV file")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"cannot be parsed as CSV: {exc}") from exc
    missing = required - set(table.columns)
    if missing:
        raise InputFileError(
            path, f"missing column(s) {sorted(missing)}", f"expected columns {sorted(required)}"
        )
    return table


def _squash(word: str) -> str:
    return re.sub(r"\s+", "", str(word)).casefold()


# ---------------------------------------------------------------- emotions


@dataclass(frozen=True)
class EmotionVocabulary:
    """Canonical emotions, their compound classes and accepted spellings."""

    compound: dict[str, str | None]
    synonyms: dict[str, str]

    def normalize(self, word: object) -> str | None:
        """Canonical name of an emotion word (case and whitespace ignored), or None."""
        if word is None or (isinstance(word, float) and word != word):
            return None
        return self.synonyms.get(_squash(str(word)))


@cache
def _default_emotions() -> EmotionVocabulary:
    return load_emotions(_data_path("emotions.csv"))


def load_emotions(path: str | Path | None = None) -> EmotionVocabulary:
    """Read an emotion vocabulary CSV (columns emotion, compound, synonyms as a|b|c)."""
    if path is None:
        return _default_emotions()
    table = _read_csv(path, {"emotion", "compound", "synonyms"})
    compound: dict[str, str | None] = {}
    synonyms: dict[str, str] = {}
    for row in table.itertuples(index=False):
        name = _squash(row.emotion)
        compound[name] = row.compound.strip() or None
        synonyms[name] = name
        for spelling in str(row.synonyms).split("|"):
            if spelling.strip():
                synonyms[_squash(spelling)] = name
    return EmotionVocabulary(compound=compound, synonyms=synonyms)


def normalize_emotion(word: object) -> str | None:
    """Canonical emotion name for a spelling from a real file, e.g. ' Angry ' -> 'anger'.

    Returns None when the word is not a known emotion.
    """
    return _default_emotions().normalize(word)


def compound_of(emotion: str | None) -> str | None:
    """Compound class (negative / positive / surprise) of a canonical emotion; None for calm."""
    if emotion is None:
        return None
    return _default_emotions().compound.get(emotion)


def compound_shares(counts: dict[str, int]) -> dict[str, float]:
    """Percentage of each compound class given counts per emotion.

    >>> compound_shares({"happiness": 1, "anger": 3})
    {'negative': 75.0, 'positive': 25.0, 'surprise': 0.0}
    """
    totals = dict.fromkeys(COMPOUND_CLASSES, 0)
    for emotion, n in counts.items():
        cls = compound_of(normalize_emotion(emotion))
        if cls is not None:
            totals[cls] += int(n)
    grand = sum(totals.values())
    return {cls: (100.0 * n / grand if grand else 0.0) for cls, n in totals.items()}


# ---------------------------------------------------------------- action units


@dataclass(frozen=True)
class ActionUnit:
    """One FACS action unit: number, FACS name, facial region (upper / middle / lower)."""

    number: int
    name: str
    region: str
    name_zh: str = ""

    @property
    def code(self) -> str:
        return f"AU{self.number}"


def load_action_units(path: str | Path | None = None) -> dict[int, ActionUnit]:
    """Read the AU catalogue CSV (columns au, name, region[, name_zh]) into {number: ActionUnit}."""
    path = _data_path("action_units.csv") if path is None else Path(path)
    table = _read_csv(path, {"au", "name", "region"})
    catalogue: dict[int, ActionUnit] = {}
    for i, row in enumerate(table.to_dict("records"), start=2):
        if row["region"] not in FACIAL_REGIONS or not row["au"].isdigit():
            raise InputFileError(
                path,
                f"row {i}: AU {row['au']!r} region {row['region']!r} is not valid",
                f"regions are {FACIAL_REGIONS} and AUs are plain numbers",
            )
        catalogue[int(row["au"])] = ActionUnit(
            int(row["au"]), row["name"], row["region"], row.get("name_zh", "")
        )
    return catalogue


ACTION_UNITS: dict[int, ActionUnit] = load_action_units()
"""The FACS catalogue shipped with mmhe: every AU of the paper's Table 1 and more."""


@cache
def au_prototypes() -> dict[str, frozenset[int]]:
    """AUs typical of each emotion (for the implausible-AU-set warning only)."""
    table = _read_csv(_data_path("au_emotion_prototypes.csv"), {"emotion", "aus"})
    return {
        row.emotion: frozenset(int(a) for a in row.aus.split("|") if a.strip())
        for row in table.itertuples(index=False)
    }


# ---------------------------------------------------------------- stimuli


def load_stimuli(path: str | Path | None = None) -> pd.DataFrame:
    """The stimulus table: one row per marker, columns `marker` (int) and `category` (str).

    `path=None` loads the table shipped with mmhe (markers 100..148: 100 = rest, then
    8 categories x 6 clips); give a CSV with the same two columns to override it.
    Categories are normalised to canonical emotion names where they are emotions.
    """
    path = _data_path("stimuli.csv") if path is None else Path(path)
    table = _read_csv(path, {"marker", "category"})
    bad = table.index[~table["marker"].str.strip().str.isdigit()]
    if len(bad):
        raise InputFileError(
            path, f"row {int(bad[0]) + 2}: marker {table.loc[bad[0], 'marker']!r} is not a number"
        )
    out = pd.DataFrame(
        {
            "marker": table["marker"].str.strip().astype(int),
            "category": [normalize_emotion(c) or _squash(c) for c in table["category"]],
        }
    )
    duplicated = out["marker"][out["marker"].duplicated()]
    if len(duplicated):
        raise InputFileError(path, f"marker {int(duplicated.iloc[0])} is listed twice")
    return out.sort_values("marker").reset_index(drop=True)


def stimulus_categories(path: str | Path | None = None) -> dict[int, str]:
    """{marker: category} from `load_stimuli(path)`."""
    table = load_stimuli(path)
    return dict(zip(table["marker"].tolist(), table["category"].tolist(), strict=True))
