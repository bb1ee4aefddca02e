"""Vocabularies: emotions, compound classes, the AU catalogue, the stimulus table."""

from __future__ import annotations

import pytest

from mmhe.errors import InputFileError
from mmhe.labels import (
    ACTION_UNITS,
    COMPOUND_CLASSES,
    EMOTIONS,
    compound_of,
    compound_shares,
    load_stimuli,
    normalize_emotion,
    stimulus_categories,
)

# Figure 2 of the dataset paper (data-format.md)
FIGURE2_ME = {
    "happiness": 262,
    "disgust": 367,
    "fear": 261,
    "anger": 142,
    "surprise": 221,
    "sadness": 145,
    "contempt": 138,
}
FIGURE2_MAE = {
    "happiness": 1072,
    "disgust": 1593,
    "fear": 1437,
    "anger": 918,
    "surprise": 1341,
    "sadness": 870,
    "contempt": 449,
}
TABLE1_AUS = {
    1: 223,
    2: 187,
    4: 411,
    5: 143,
    6: 188,
    7: 97,
    9: 193,
    10: 132,
    11: 73,
    12: 73,
    13: 175,
    14: 234,
    15: 146,
    16: 142,
    17: 78,
    18: 64,
    20: 121,
    25: 34,
    26: 65,
    41: 42,
    42: 182,
}


@pytest.mark.parametrize(
    ("word", "canonical"),
    [
        ("happy", "happiness"),
        ("Angry", "anger"),
        (" sad ", "sadness"),
        ("TENSE", "tension"),
        ("neutral", "calm"),
        ("Disgust", "disgust"),
        ("surprised", "surprise"),
        ("contempt", "contempt"),
        ("fe ar", "fear"),
        ("bored", None),
        ("", None),
        (None, None),
    ],
)
def test_emotion_synonyms(word, canonical):
    assert normalize_emotion(word) == canonical


def test_compound_mapping():
    assert COMPOUND_CLASSES == ("negative", "positive", "surprise")
    expected = {"happiness": "positive", "surprise": "surprise", "calm": None}
    for emotion in EMOTIONS:
        assert compound_of(emotion) == expected.get(emotion, "negative")


def test_compound_shares_reproduce_figure_2_exactly():
    me = {k: round(v, 2) for k, v in compound_shares(FIGURE2_ME).items()}
    mae = {k: round(v, 2) for k, v in compound_shares(FIGURE2_MAE).items()}
    assert me == {"negative": 68.55, "positive": 17.06, "surprise": 14.39}
    assert mae == {"negative": 68.58, "positive": 13.96, "surprise": 17.46}


def test_action_unit_catalogue_covers_table_1_and_more():
    for number in [*TABLE1_AUS, 23, 24, 27]:
        unit = ACTION_UNITS[number]
        assert unit.region in {"upper", "middle", "lower"} and unit.name
    assert ACTION_UNITS[4].name == "Brow Lowerer" and ACTION_UNITS[4].region == "upper"
    assert ACTION_UNITS[12].code == "AU12"
    assert ACTION_UNITS[26].region == "lower"


def test_stimulus_table_matches_data_format():
    categories = stimulus_categories()
    assert set(categories) == set(range(100, 149)) and categories[100] == "rest"
    expected = {
        "sadness": [101, 109, 118, 127, 136, 148],
        "disgust": [102, 110, 112, 119, 128, 137],
        "happiness": [103, 111, 120, 123, 129, 138],
        "fear": [104, 113, 121, 130, 134, 139],
        "tension": [105, 114, 122, 131, 140, 144],
        "calm": [106, 115, 124, 132, 141, 145],
        "anger": [107, 116, 125, 133, 142, 146],
        "surprise": [108, 117, 126, 135, 143, 147],
    }
    for category, markers in expected.items():
        assert sorted(m for m, c in categories.items() if c == category) == markers


def test_stimulus_table_override_and_errors(tmp_path):
    custom = tmp_path / "stimuli.csv"
    custom.write_text("marker,category\n201,Happy\n202,angry\n")
    assert stimulus_categories(custom) == {201: "happiness", 202: "anger"}
    with pytest.raises(InputFileError, match="not found"):
        load_stimuli(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("marker,category\nabc,happy\n")
    with pytest.raises(InputFileError, match="row 2"):
        load_stimuli(bad)
    twice = tmp_path / "twice.csv"
    twice.write_text("marker,category\n101,happy\n101,sad\n")
    with pytest.raises(InputFileError, match="twice"):
        load_stimuli(twice)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,label\n1,x\n")
    with pytest.raises(InputFileError, match="missing column"):
        load_stimuli(wrong)
