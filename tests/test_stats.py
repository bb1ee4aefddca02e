"""Dataset statistics: the paper's published percentages, and counts of a coding file."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from mmhe.annotations import CODING_COLUMNS, read_coding_file, write_coding_sheet
from mmhe.cli import app
from mmhe.reports.figures import write_stats
from mmhe.reports.stats import dataset_stats, published_counts, shares_from_counts


def test_figure2_published_counts_give_the_published_percentages():
    shares = shares_from_counts(published_counts()).round(2)
    assert shares["ME"].to_dict() == {"negative": 68.55, "positive": 17.06, "surprise": 14.39}
    assert shares["MaE"].to_dict() == {"negative": 68.58, "positive": 13.96, "surprise": 17.46}


def _rows():
    # subject, emotion word, marker, onset, apex, offset, AUs, kind
    spec = [
        ("zhaoliu", "happy", 103, 1.00, 1.10, 1.30, "AU6, AU12", "Micro"),
        ("zhaoliu", "happy", 103, 5.00, 5.50, 6.50, "AU12", "Macro"),
        ("zhaoliu", "disgust", 102, 2.00, 2.10, 2.40, "AU4, AU9", "Micro"),
        ("qianqi", "surprise", 108, 3.00, 3.05, 3.20, "AU1, AU2", "Micro"),
        ("qianqi", "angry", 107, 4.00, 4.60, 5.60, "AU4, AU7", "Macro"),
        ("qianqi", "sad", 101, 7.00, 7.10, 7.45, "AU4, AU15", "Micro"),
    ]
    rows = []
    for subject, word, marker, on, ap, off, aus, kind in spec:

        def frame(t):
            ms = round(t * 1000)
            return f"10-00-{ms // 1000:02d}-{ms % 1000:03d}"

        rows.append(
            (
                subject,
                f"{word}_1_{marker}_{subject}_20230801.avi",
                marker,
                on,
                ap,
                off,
                frame(on),
                frame(ap),
                frame(off),
                aus,
                word,
                kind,
                "2024年05月15日-19时54分",
                round((ap - on) * 150) + 1,
            )
        )
    return pd.DataFrame(rows, columns=CODING_COLUMNS)


def test_stats_of_a_coding_file_match_independent_counts(tmp_path):
    path = write_coding_sheet(_rows(), tmp_path / "coding.xlsx")
    stats = dataset_stats(path)
    counts = stats.emotion_counts.set_index("emotion")
    assert counts.loc["happiness"].tolist() == [1, 1]
    assert counts.loc["disgust"].tolist() == [1, 0]
    assert counts.loc["anger"].tolist() == [0, 1]
    assert counts.loc["contempt"].tolist() == [0, 0]
    assert counts["ME"].sum() == 4 and counts["MaE"].sum() == 2
    shares = stats.compound_shares.set_index("compound")
    assert shares.loc["negative", "ME"] == 50.0 and shares.loc["positive", "ME"] == 25.0
    assert shares.loc["positive", "MaE"] == 50.0
    au = stats.au_counts.set_index("au")
    assert au.loc["AU4"].tolist() == ["Brow Lowerer", "upper", 2, 1]
    assert au.loc["AU12", "ME"] == 1 and au.loc["AU12", "MaE"] == 1
    mine = stats.durations.set_index("corpus").loc["this data"]
    me_ms = pd.Series([300.0, 400.0, 200.0, 450.0])
    assert abs(mine["mean_ms"] - me_ms.mean()) < 0.05
    assert abs(mine["sd_ms"] - me_ms.std(ddof=1)) < 0.05
    assert stats.overview.iloc[0]["participants"] == 2
    table = read_coding_file(path).table
    assert dataset_stats(table).emotion_counts.equals(stats.emotion_counts)


def test_stats_command_writes_tables_and_figures(tmp_path):
    path = write_coding_sheet(_rows(), tmp_path / "coding.xlsx")
    out = tmp_path / "stats"
    result = CliRunner().invoke(app, ["stats", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "Table 1" in result.output and "AU4" in result.output
    for name in (
        "table1_au_counts.csv",
        "fig2a_emotions.csv",
        "fig2b_compound_shares.csv",
        "fig2c_overview.csv",
        "fig2d_me_durations.csv",
        "table1_au_counts.tex",
        "figure2.png",
        "figure2.svg",
        "figure2.pdf",
    ):
        assert (out / name).stat().st_size > 40
    written = write_stats(dataset_stats(path), tmp_path / "again")
    assert len(written) == 9


def test_stats_csv_content(tmp_path):
    path = write_coding_sheet(_rows(), tmp_path / "coding.xlsx")
    out = tmp_path / "stats"
    write_stats(dataset_stats(path), out)
    emotions = pd.read_csv(out / "fig2a_emotions.csv")
    assert emotions.set_index("emotion").loc["happiness"].tolist() == [1, 1]
