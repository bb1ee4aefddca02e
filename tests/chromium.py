"""Render mmhe's HTML pages in headless Chromium and measure what a reader would see.

`probe(page, widths)` opens a copy of the page with a small measuring script added (the
pages themselves carry no script) at each window width and returns, per width, what the
browser measured after load: images and how many failed to load, the document's scroll
width against the viewport width, the elements wider than the viewport, the length of
the visible text. `screenshot(page, width)` returns the rendered pixels (grey, 0..255).
Chromium runs are started together, so several widths cost little more than one.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

PROBE = """
<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); });
  var width = document.documentElement.clientWidth;
  var wide = Array.prototype.slice.call(document.querySelectorAll("body *"))
    .filter(function (e) {
      var box = e.getBoundingClientRect();
      return box.right > width + 0.5 && e.closest(".table-wrap, pre") === null;
    })
    .slice(0, 5)
    .map(function (e) { return e.tagName + "." + e.className; });
  var scrolling = Array.prototype.slice.call(document.querySelectorAll(".table-wrap"))
    .filter(function (w) { return w.scrollWidth > w.clientWidth + 1; })
    .map(function (w) {
      var t = w.querySelector("table"), s = w.closest("section");
      return (s ? s.id : "") + ":" + (t ? t.className : "");
    });
  var result = {
    images: images.length,
    broken: broken.map(function (i) { return i.alt; }),
    scroll_width: document.documentElement.scrollWidth,
    viewport: window.innerWidth,
    client_width: width,
    too_wide: wide,
    scrolling_tables: scrolling,
    text: document.body.innerText.length,
    height: document.documentElement.scrollHeight,
    gifs: images.filter(function (i) { return i.src.indexOf("data:image/gif") === 0; }).length
  };
  parent.postMessage(JSON.stringify(result), "*");
});
</script>
"""
FRAME = """<!doctype html><html><head><meta charset="utf-8"></head>
<body style="margin:0"><pre id="mmhe-probe"></pre>
<iframe src="{src}" style="border:0;display:block;width:{width}px;height:{height}px"></iframe>
<script>
window.addEventListener("message", function (event) {{
  document.getElementById("mmhe-probe").textContent = event.data;
}});
</script></body></html>
"""
MIN_WINDOW = 500
"""Headless Chromium lays a page out at least this wide whatever --window-size says, so
narrower viewports are measured inside an iframe of exactly that width."""


def chromium() -> str:
    """Debian's chromium (installed by the test set-up when missing)."""
    path = shutil.which("chromium")
    if path is None:
        subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
        done = subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium"],
            capture_output=True,
            text=True,
            check=False,
        )
        path = shutil.which("chromium")
        if path is None:
            pytest.fail(f"chromium is missing and could not be installed: {done.stderr[-500:]}")
    return path


def _arguments(profile: Path) -> list[str]:
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]


def probe(page: Path, widths: tuple[int, ...] = (1400, 400)) -> dict[int, dict]:
    """{width: measurements} of `page` rendered at each window width (height 1000 px)."""
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text, "mmhe pages carry no script"
    copy = page.with_name(f".probe-{page.name}")
    copy.write_text(text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    frames = {}
    for width in widths:
        frames[width] = page.with_name(f".frame-{width}-{page.name}")
        frames[width].write_text(FRAME.format(src=copy.name, width=width, height=1000))
    browser = chromium()
    runs = {
        width: subprocess.Popen(
            [
                browser,
                *_arguments(page.parent / f".chromium-{width}"),
                f"--window-size={max(width, MIN_WINDOW)},1100",
                "--virtual-time-budget=10000",
                "--dump-dom",
                frames[width].as_uri(),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for width in widths
    }
    out = {}
    for width, run in runs.items():
        dom, _ = run.communicate(timeout=180)
        found = re.search(r'<pre id="mmhe-probe">(.+?)</pre>', dom, re.S)
        assert found, f"the page did not finish loading at {width} px"
        out[width] = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
        frames[width].unlink()
    copy.unlink()
    return out


def screenshot(page: Path, width: int, height: int = 2400) -> np.ndarray:
    """The top `height` pixels of `page` at `width`, grey levels (height, width)."""
    from PIL import Image

    shot = page.parent / f".shot-{width}.png"
    frame = page.with_name(f".frame-shot-{width}-{page.name}")
    frame.write_text(FRAME.format(src=page.name, width=width, height=height))
    subprocess.run(
        [
            chromium(),
            *_arguments(page.parent / f".chromium-shot-{width}"),
            f"--window-size={max(width, MIN_WINDOW)},{height}",
            f"--screenshot={shot}",
            frame.as_uri(),
        ],
        capture_output=True,
        timeout=180,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)[:height, :width]
    shot.unlink()
    frame.unlink()
    return pixels


def assert_readable(measured: dict[int, dict], *, min_images: int = 0) -> None:
    """Every image loaded at every width; at the narrowest width nothing is wider than
    the viewport (the document does not scroll sideways); real text on the page."""
    for width, m in measured.items():
        assert m["images"] >= min_images, (width, m)
        assert not m["broken"], f"images not loaded at {width} px: {m['broken']}"
        assert m["text"] > 300, (width, m)
    narrow = measured[min(measured)]
    assert narrow["viewport"] == narrow["client_width"] == min(measured), narrow
    assert narrow["scroll_width"] == narrow["viewport"], (
        f"the page scrolls sideways at {min(measured)} px: {narrow}"
    )
    assert not narrow["too_wide"], narrow
