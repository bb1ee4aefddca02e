"""The one way mmhe makes HTML: number formats, the health report page of `mmhe validate
--html` rendered in headless Chromium at 1400 and 400 px."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from mmhe.cli import app
from mmhe.reports.html import html_table, number, percent, plus_minus, pvalue


def test_numbers_for_people():
    assert number(1234567) == "1,234,567"
    assert number(1234.56789, 1) == "1,234.6"
    assert number(-0.25, 2) == "−0.25"  # a real minus sign
    assert number(-0.0001, 2) == "0.00"  # never "−0.00"
    assert number(float("nan")) == number(None) == number(pd.NA) == "–"
    assert number(np.bool_(True)) == "yes" and number(False) == "no"
    assert percent(0.726) == "72.6 %" and percent(72.6, fraction=False) == "72.6 %"
    assert pvalue(0.0004) == "< 0.001" and pvalue(0.8) == "0.800" and pvalue(1.0) == "1.000"
    assert plus_minus(381.7, 100.5) == "381.7 ± 100.5" and plus_minus(3.0, np.nan) == "3.0"


def test_tables_scroll_in_their_box_and_format_every_cell():
    frame = pd.DataFrame(
        {"name": ["a<b", "c"], "n": [1200, 3], "p": [0.12345, np.nan], "ok": [True, False]}
    )
    markup = str(html_table(frame, formats={"p": 2}, limit=1))
    assert markup.startswith('<div class="table-wrap">')
    assert "a&lt;b" in markup and "1,200" in markup and "0.12" in markup and ">yes<" in markup
    assert ">c<" not in markup and "First 1 of 2 rows" in markup
    assert 'class="num"' in markup  # numbers right-aligned


def test_validation_page_renders_in_headless_chromium(synth_tiny, tmp_path):
    from chromium import assert_readable, probe

    page, report = tmp_path / "health.html", tmp_path / "health.json"
    args = ["validate", str(synth_tiny), "--html", str(page), "--json", str(report)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 1), result.output
    assert_readable(probe(page))
    html = page.read_text()
    expected = json.loads(report.read_text())
    people = [p for p in expected["participants"] if p["subject_id"] not in ("TOTAL", "(store)")]
    for person in people:
        assert f"<td>{person['subject_id']}</td>" in html
        residual = person["physio_residual_ms"]
        assert f"{residual:.2f} / " in html  # residuals to 0.01 ms, not 6 decimals
    assert f"Problems ({len(expected['problems'])})" in html
    assert not re.search(r">\s*(nan|NaN|None|True|False)\s*<", html)
    assert 'name="viewport"' in html and "<script" not in html


def test_deviations_are_computed_from_the_config():
    """The shipped example keeps every published setting; the demo's departures are
    listed with the published value beside the one used."""
    from pathlib import Path

    from mmhe.demo import demo_config
    from mmhe.evaluation.runner import BenchmarkConfig
    from mmhe.models import model_spec
    from mmhe.reports.run_tables import deviations

    example = BenchmarkConfig.load(Path(__file__).parents[1] / "examples" / "bench.yaml")
    assert len(example.specs()) == (len(example.runs) + 2) * example.seeds
    assert deviations({"config": example.model_dump(mode="json")}).empty
    found = deviations({"config": demo_config().model_dump(mode="json")})
    ststnet = found[found["what"] == "ststnet"].set_index("setting")
    published = model_spec("ststnet").defaults
    assert ststnet.loc["epochs"].tolist()[1:3] == ["100", str(published.epochs)]
    assert ststnet.loc["lr"].tolist()[1:3] == ["0.001", f"{published.lr:g}"]
    assert ststnet.loc["batch_size"].tolist()[1:3] == ["32", str(published.batch_size)]
    face = found[found["what"] == "face features"].set_index("setting")
    assert face.loc["method"].tolist()[1:3] == ["dis", "tvl1"]


def test_every_docs_link_points_to_a_file():
    from pathlib import Path

    root = Path(__file__).parents[1]
    texts = [p.read_text(encoding="utf-8") for p in (root / "src").rglob("*.py")]
    texts.append((root / "README.md").read_text(encoding="utf-8"))
    links = {m.rstrip(".)") for t in texts for m in re.findall(r"docs/[\w./-]+", t)}
    assert links  # the docstrings do cite docs/
    assert not [link for link in links if not (root / link).exists()]
