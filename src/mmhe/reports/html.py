"""One way to make HTML: the Jinja2 environment, number formats, tables and figures.

Every HTML page of mmhe (the run report, `mmhe validate --html`, `mmhe annotations agree
--out`, the spotting report) extends ``templates/base.html.j2`` and inlines the one
stylesheet ``templates/style.css``, so pages stay self-contained (no script, no link, no
remote asset) and look alike. Numbers are formatted for people (`number`, `percent`,
`pvalue`): a fixed number of decimals, thousands separators, a real minus sign, "–" for
a missing value. Tables (`html_table`) scroll inside their own box on a narrow screen;
figures (`FigureWriter`) are embedded as PNG and written beside the page as SVG and PDF
(and GIF for animations) for papers.

>>> number(1234.5, 1), number(-0.25, 2), number(float("nan")), pvalue(0.0004)
('1,234.5', '−0.25', '–', '< 0.001')
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from mmhe import __version__

MISSING = "–"
"""Shown for a missing value (NaN, None)."""
MINUS = "−"
NARROW_PX = 700
"""Screens up to this width (CSS px) get a figure's narrow layout when it has one."""


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def number(value: Any, digits: int = 3) -> str:
    """A number for people: `digits` decimals, thousands separators, a real minus sign.

    Integers keep no decimals; booleans read "yes" / "no"; NaN / None read "–".
    """
    if _is_missing(value):
        return MISSING
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        text = f"{int(value):,}"
    elif isinstance(value, float | np.floating):
        text = f"{float(value):,.{digits}f}"
        if float(text.replace(",", "")) == 0:  # no "−0.0"
            text = text.lstrip("-")
    else:
        return str(value)
    return text.replace("-", MINUS)


def percent(value: Any, digits: int = 1, *, fraction: bool = True) -> str:
    """``0.726 -> '72.6 %'`` (with ``fraction=False``: ``72.6 -> '72.6 %'``)."""
    if _is_missing(value):
        return MISSING
    return f"{number(float(value) * (100 if fraction else 1), digits)} %"


def pvalue(value: Any) -> str:
    """A p-value as a paper prints it: three decimals, '< 0.001' below that."""
    if _is_missing(value):
        return MISSING
    value = float(value)
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def plus_minus(mean: Any, sd: Any, digits: int = 1) -> str:
    """``'381.7 ± 100.5'`` (the mean alone when the SD is missing)."""
    if _is_missing(sd):
        return number(mean, digits)
    return f"{number(mean, digits)} ± {number(sd, digits)}"


Formatter = Callable[[Any], str]


def html_table(
    frame: pd.DataFrame,
    *,
    formats: Mapping[str, Formatter | int] | None = None,
    digits: int = 3,
    index: bool = False,
    caption: str | None = None,
    wrap: Sequence[str] = (),
    cell_class: Callable[[str, Any], str | None] | None = None,
    markup: Sequence[str] = (),
    limit: int | None = None,
    css: str = "",
) -> Markup:
    """An HTML table in a box that scrolls sideways on a narrow screen.

    formats : per column a formatter (value -> text) or a number of decimals; other
        numeric columns get `digits` decimals (integers none), booleans "yes" / "no".
    wrap : columns whose text may wrap (long messages); all others stay on one line.
    cell_class : (column, value) -> extra CSS class of a cell (e.g. "bad" for a failure).
    markup : columns holding trusted HTML (not escaped).
    limit : show only the first `limit` rows and say how many were left out.
    """
    formats = dict(formats or {})
    shown = frame.reset_index() if index else frame
    left_out = 0
    if limit is not None and len(shown) > limit:
        left_out = len(shown) - limit
        shown = shown.head(limit)
    numeric = {
        c
        for c in shown.columns
        if pd.api.types.is_numeric_dtype(shown[c]) and not pd.api.types.is_bool_dtype(shown[c])
    }
    parts = [f'<div class="table-wrap"><table class="{escape(css)}">']
    if caption:
        parts.append(f"<caption>{escape(caption)}</caption>")
    parts.append("<thead><tr>")
    for column in shown.columns:
        klass = ' class="num"' if column in numeric else ""
        parts.append(f"<th{klass}>{escape(str(column))}</th>")
    parts.append("</tr></thead><tbody>")
    for row in shown.itertuples(index=False, name=None):
        parts.append("<tr>")
        for column, value in zip(shown.columns, row, strict=True):
            fmt = formats.get(column)
            if callable(fmt):
                text = fmt(value)
            elif isinstance(fmt, int):
                text = number(value, fmt)
            else:
                text = number(value, digits)
            classes = []
            if column in numeric:
                classes.append("num")
            if column in wrap:
                classes.append("wrap")
            if cell_class is not None and (extra := cell_class(column, value)):
                classes.append(extra)
            klass = f' class="{" ".join(classes)}"' if classes else ""
            body = text if column in markup else escape(text)
            parts.append(f"<td{klass}>{body}</td>")
        parts.append("</tr>")
    parts.append("</tbody></table></div>")
    if left_out:
        parts.append(
            f'<p class="note">First {len(shown):,} of {len(shown) + left_out:,} rows; '
            "every row is in the CSV beside this page.</p>"
        )
    return Markup("".join(parts))


@dataclass
class Figure:
    """One figure of a page: the embedded image and the files written beside the page.

    src : data URI of the PNG (or GIF) shown in the page.
    files : {"svg": relative path, "pdf": ..., "png": ..., "gif": ...} beside the page.
    width, height : pixel size of the embedded image.
    """

    name: str
    caption: str
    alt: str
    src: str
    files: dict[str, str] = field(default_factory=dict)
    width: int = 0
    height: int = 0
    animated: bool = False
    narrow_src: str = ""
    """Data URI of a layout for narrow screens (empty: the one image scales down)."""


class FigureWriter:
    """Saves figures beside a page (``folder``: PNG, SVG, PDF; GIF for animations) and
    returns them as `Figure` records for the templates (the PNG embedded as base64).

    folder : where the files go (created); paths in `Figure.files` are relative to
        ``relative_to`` (the page's folder).
    dpi : resolution of the PNG (the SVG and PDF are vector).
    """

    def __init__(self, folder: str | Path, relative_to: str | Path, dpi: int = 120) -> None:
        self.folder = Path(folder)
        self.relative_to = Path(relative_to)
        self.dpi = dpi
        self.written: list[Path] = []

    def _relative(self, path: Path) -> str:
        return Path(os.path.relpath(path, self.relative_to)).as_posix()

    def add(self, fig, name: str, caption: str, alt: str | None = None, *, narrow=None) -> Figure:
        """Write `fig` (matplotlib) as name.png/.svg/.pdf, close it, return its record.

        narrow : the same figure laid out for a phone (panels stacked); shown instead of
            `fig` below `NARROW_PX` of screen width (embedded PNG only).
        """
        import matplotlib.pyplot as plt

        narrow_src = ""
        if narrow is not None:
            buffer = io.BytesIO()
            narrow.savefig(buffer, format="png", dpi=self.dpi)
            plt.close(narrow)
            narrow_src = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

        self.folder.mkdir(parents=True, exist_ok=True)
        files = {}
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=self.dpi)
        for kind in ("svg", "pdf"):
            path = self.folder / f"{name}.{kind}"
            metadata = {"Date": None} if kind == "svg" else {"CreationDate": None}
            fig.savefig(path, format=kind, metadata=metadata)
            files[kind] = self._relative(path)
            self.written.append(path)
        path = self.folder / f"{name}.png"
        path.write_bytes(png.getvalue())
        files["png"] = self._relative(path)
        self.written.append(path)
        width, height = (round(v * self.dpi) for v in fig.get_size_inches())
        plt.close(fig)
        return Figure(
            name,
            caption,
            alt or caption,
            "data:image/png;base64," + base64.b64encode(png.getvalue()).decode(),
            files,
            width,
            height,
            narrow_src=narrow_src,
        )

    def add_gif(
        self,
        frames: Sequence[np.ndarray],
        name: str,
        caption: str,
        *,
        duration_ms: int | Sequence[int] = 120,
        alt: str | None = None,
    ) -> Figure:
        """Write an animated GIF (frames: (H, W, 3) uint8, looping) and return its record."""
        from PIL import Image

        self.folder.mkdir(parents=True, exist_ok=True)
        stack = np.asarray(frames, dtype=np.uint8)
        # one 256-colour palette for every frame (fast octree on all frames at once), then
        # each frame mapped to it: no per-frame palette search, no flicker between frames
        palette = Image.fromarray(stack.reshape(-1, *stack.shape[2:])).quantize(
            255, method=Image.Quantize.FASTOCTREE
        )
        images = [
            Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in stack
        ]
        buffer = io.BytesIO()
        durations = list(duration_ms) if not isinstance(duration_ms, int) else duration_ms
        images[0].save(
            buffer,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=durations,
            loop=0,
            optimize=False,
            disposal=1,
        )
        path = self.folder / f"{name}.gif"
        path.write_bytes(buffer.getvalue())
        self.written.append(path)
        height, width = np.asarray(frames[0]).shape[:2]
        return Figure(
            name,
            caption,
            alt or caption,
            "data:image/gif;base64," + base64.b64encode(buffer.getvalue()).decode(),
            {"gif": self._relative(path)},
            int(width),
            int(height),
            animated=len(images) > 1,
        )


def environment() -> Environment:
    """The Jinja2 environment of every mmhe page (templates in ``mmhe/reports/templates``)."""
    env = Environment(
        loader=PackageLoader("mmhe.reports", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(number=number, percent=percent, pvalue=pvalue, plus_minus=plus_minus)
    env.globals.update(mmhe_version=__version__, narrow_px=NARROW_PX)
    return env


def render_page(template: str, out: str | Path, **context: Any) -> Path:
    """Render `template` with `context` into `out` (written atomically); returns `out`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = environment().get_template(template).render(**context)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    return out
