"""What MMHE participants wear on camera: an EEG cap with electrodes, headphones, glasses and
EOG electrodes on the face, drawn for the synthetic face (`mmhe.synth.face`).

Geometry is in face-normalised units (see `mmhe.synth.face`: eye centres at (0.28, 0.38)
and (0.72, 0.38), y down). Sizes follow the real kit on a face whose inter-ocular distance
(0.44 units) is ~6.3 cm, so 1 unit ~ 14 cm:

- a 64-channel cap (Neuroscan Quik-Cap): dark fabric over the head down to a rim ~3 cm
  above the eyes, curving down over the temples; electrode holders (grey rings, 1 cm, with
  a dark gel hole) on a regular grid;
- over-ear headphones: two dark ear cups beside the face and a band over the cap;
- optional glasses: two dark rims round the eyes, a bridge, the temple arms, lightly
  reflecting lenses;
- EOG electrodes stuck on the face (white foam disks, 1 cm, with a grey centre and a lead):
  horizontal EOG beside both outer eye corners, vertical EOG above and below the
  image-left eye.

The cap, the headphones and the glasses sit on the skull: they move with the head, not
with the skin (`overlay`), so an expression never moves them. Electrodes are glued to the
skin and move with it (`draw_skin_items`, painted before the AU deformation).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

ToPixels = Callable[[np.ndarray], np.ndarray]
"""Face-normalised (n, 2) points -> (n, 2) pixels of the canvas being drawn on."""

CAP_RIM_Y = 0.15
"""Face-normalised y of the cap's rim on the midline (~3.3 cm above the eye line)."""
CAP_RIM_CURVE = 0.9
"""The rim drops by this times (x - 0.5)^2 towards the temples (over the ears' tops)."""
_HEAD_CENTRE_X = 0.53  # the source head (hair included) is centred here, not at 0.5
_DOME = ((_HEAD_CENTRE_X, 0.12), (0.74, 0.58))  # centre, semi-axes of the cap's crown
_CAP_RGB = (38.0, 42.0, 58.0)
_HOLDER_RGB, _HOLE_RGB = (196.0, 198.0, 204.0), (58.0, 58.0, 62.0)
_HOLDER_R, _HOLE_R = 0.032, 0.013
_CUPS = ((_HEAD_CENTRE_X - 0.66, 0.56), (_HEAD_CENTRE_X + 0.66, 0.56))
_CUP_AXES = (0.12, 0.19)
_BAND = ((_HEAD_CENTRE_X, 0.25), (0.80, 0.74), 0.07)  # centre, semi-axes, thickness
_PHONES_RGB, _PHONES_RIM_RGB = (26.0, 26.0, 30.0), (85.0, 85.0, 92.0)
_GLASSES_RGB, _LENS_RGB, _LENS_ALPHA = (32.0, 26.0, 24.0), (215.0, 225.0, 235.0), 0.12
_EYE_CENTRES = ((0.28, 0.39), (0.72, 0.39))
_RIM_AXES, _RIM_WIDTH = (0.15, 0.105), 0.018
_ELECTRODES = (  # (centre, lead end): HEO left/right, VEO above/below the image-left eye
    ((0.13, 0.40), (-0.05, 0.42)),
    ((0.87, 0.40), (1.05, 0.42)),
    ((0.30, 0.235), (0.06, 0.14)),
    ((0.28, 0.535), (0.02, 0.70)),
)
_FOAM_RGB, _FOAM_CENTRE_RGB, _LEAD_RGB = (236.0, 236.0, 230.0), (150.0, 150.0, 152.0), (30, 30, 34)
_FOAM_R, _FOAM_CENTRE_R, _LEAD_WIDTH = 0.034, 0.013, 0.008
_SHIFT = 4  # fractional bits of cv2 drawing coordinates


def cap_rim(x: np.ndarray) -> np.ndarray:
    """Face-normalised y of the cap's rim at face-normalised x."""
    return CAP_RIM_Y + CAP_RIM_CURVE * (np.asarray(x) - 0.5) ** 2


def _fixed(points) -> tuple[int, ...]:
    return tuple(int(v) for v in np.round(np.asarray(points, float) * (1 << _SHIFT)))


def _paint(
    rgb: np.ndarray,
    alpha: np.ndarray,
    bounds: tuple[float, float, float, float],
    draw: Callable[[np.ndarray, np.ndarray], None],
    colour,
    weight: np.ndarray | float = 1.0,
) -> None:
    """Paint `colour` over the layer (rgb premultiplied, alpha), in place, where
    `draw(canvas, origin)` paints 255 (anti-aliased) on a uint8 canvas covering `bounds`
    (x0, y0, x1, y1 in layer pixels; `origin` is the canvas's top-left in layer pixels).
    `weight` (a number, or an array the layer's shape) scales the coverage."""
    height, width = alpha.shape
    x0, y0 = max(0, int(np.floor(bounds[0])) - 2), max(0, int(np.floor(bounds[1])) - 2)
    x1, y1 = min(width, int(np.ceil(bounds[2])) + 3), min(height, int(np.ceil(bounds[3])) + 3)
    if x1 <= x0 or y1 <= y0:
        return
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    draw(canvas, np.array([x0, y0], float))
    cover = canvas.astype(np.float32) / 255.0
    if isinstance(weight, np.ndarray):
        cover *= weight[y0:y1, x0:x1]
    else:
        cover *= weight
    window = (slice(y0, y1), slice(x0, x1))
    rgb[window] = rgb[window] * (1.0 - cover[..., None]) + cover[..., None] * np.asarray(
        colour, np.float32
    )
    alpha[window] = alpha[window] * (1.0 - cover) + cover


def _paint_ellipse(
    rgb, alpha, to_px: ToPixels, centre, axes, ppu: float, colour, *,
    thickness: float = -1.0, arc: tuple[int, int] = (0, 360), weight=1.0,
) -> None:  # fmt: skip
    """An ellipse (axis-aligned in the face's frame) filled, or its outline `thickness`
    face units wide; `arc` in degrees."""
    middle = to_px(np.array([centre], float))[0]
    half = np.array(axes, float) * ppu
    width = -1 if thickness < 0 else max(1, round(thickness * ppu))
    reach = half + max(width, 0)

    def draw(canvas: np.ndarray, origin: np.ndarray) -> None:
        cv2.ellipse(
            canvas, _fixed(middle - origin), _fixed(half), 0, arc[0], arc[1], 255, width,
            cv2.LINE_AA, _SHIFT,
        )  # fmt: skip

    bounds = (*(middle - reach), *(middle + reach))
    _paint(rgb, alpha, bounds, draw, colour, weight)


def _paint_line(rgb, alpha, to_px: ToPixels, start, end, width: float, ppu: float, colour):
    a, b = to_px(np.array([start, end], float))
    pixels = max(1, round(width * ppu))

    def draw(canvas: np.ndarray, origin: np.ndarray) -> None:
        cv2.line(canvas, _fixed(a - origin), _fixed(b - origin), 255, pixels, cv2.LINE_AA, _SHIFT)

    low, high = np.minimum(a, b) - pixels, np.maximum(a, b) + pixels
    _paint(rgb, alpha, (*low, *high), draw, colour)


def _cap_layer(
    shape, to_px: ToPixels, face_x: np.ndarray, face_y: np.ndarray, matte: np.ndarray, ppu: float
) -> tuple[np.ndarray, np.ndarray]:
    """(rgb, alpha) of the cap: the crown (hair matte or dome) above the rim, with holders."""
    (dx, dy), (ax, ay) = _DOME
    dome = ((face_x - dx) / ax) ** 2 + ((face_y - dy) / ay) ** 2 <= 1.0
    cap = ((matte > 0.5) | dome) & (face_y < cap_rim(face_x))
    cover = cv2.GaussianBlur(cap.astype(np.float32), (0, 0), max(0.6, 0.003 * ppu))
    texture = np.random.default_rng(0).normal(0.0, 4.0, shape).astype(np.float32)  # weave
    rgb = np.empty((*shape, 3), np.float32)
    rgb[...] = np.asarray(_CAP_RGB, np.float32)
    rgb += cv2.GaussianBlur(texture, (0, 0), max(0.5, 0.002 * ppu))[..., None]
    rgb *= cover[..., None]
    alpha = cover.copy()
    step = 0.13
    for row, y in enumerate(np.arange(CAP_RIM_Y - 0.05, -0.5, -step)):
        offset = 0.5 * step * (row % 2)
        for x in np.arange(_HEAD_CENTRE_X - 0.72 + offset, _HEAD_CENTRE_X + 0.73, step):
            inside = ((x - dx) / ax) ** 2 + ((y - dy) / ay) ** 2 <= 0.85
            if not inside or y > cap_rim(x) - _HOLDER_R - 0.02:
                continue
            for radius, colour in ((_HOLDER_R, _HOLDER_RGB), (_HOLE_R, _HOLE_RGB)):
                _paint_ellipse(
                    rgb, alpha, to_px, (x, y), (radius, radius), ppu, colour, weight=cover
                )
    return rgb, alpha


def _headphones_layer(shape, to_px: ToPixels, ppu: float) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.zeros((*shape, 3), np.float32)
    alpha = np.zeros(shape, np.float32)
    centre, axes, thickness = _BAND
    _paint_ellipse(
        rgb, alpha, to_px, centre, axes, ppu, _PHONES_RGB, thickness=thickness, arc=(180, 360)
    )
    inner = (_CUP_AXES[0] - 0.02, _CUP_AXES[1] - 0.02)
    for cup in _CUPS:
        _paint_ellipse(rgb, alpha, to_px, cup, _CUP_AXES, ppu, _PHONES_RIM_RGB)
        _paint_ellipse(rgb, alpha, to_px, cup, inner, ppu, _PHONES_RGB)
    return rgb, alpha


def _glasses_layer(shape, to_px: ToPixels, ppu: float) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.zeros((*shape, 3), np.float32)
    alpha = np.zeros(shape, np.float32)
    for centre in _EYE_CENTRES:
        _paint_ellipse(rgb, alpha, to_px, centre, _RIM_AXES, ppu, _LENS_RGB, weight=_LENS_ALPHA)
        _paint_ellipse(
            rgb, alpha, to_px, centre, _RIM_AXES, ppu, _GLASSES_RGB, thickness=_RIM_WIDTH
        )
    (lx, ly), (rx, ry) = _EYE_CENTRES
    bars = (
        ((lx + _RIM_AXES[0], ly - 0.02), (rx - _RIM_AXES[0], ry - 0.02)),  # bridge
        ((lx - _RIM_AXES[0], ly - 0.02), (-0.06, ly - 0.03)),  # temple arms
        ((rx + _RIM_AXES[0], ry - 0.02), (1.06, ry - 0.03)),
    )
    for start, end in bars:
        _paint_line(rgb, alpha, to_px, start, end, _RIM_WIDTH, ppu, _GLASSES_RGB)
    return rgb, alpha


def overlay(
    shape: tuple[int, int],
    to_px: ToPixels,
    face_x: np.ndarray,
    face_y: np.ndarray,
    matte: np.ndarray,
    ppu: float,
    *,
    eeg_cap: bool = True,
    headphones: bool = True,
    glasses: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The items that sit on the skull, as one layer over the rendered face.

    shape : (h, w) of the canvas. to_px : face units -> canvas pixels. face_x, face_y :
        (h, w) face-normalised coordinates of every canvas pixel. matte : (h, w) the head
        matte (hair included) in 0..1. ppu : canvas pixels per face unit.
    eeg_cap, headphones, glasses : which items to draw.
    Returns (rgb (h, w, 3) float32 premultiplied by alpha, alpha (h, w) float32 in 0..1,
    occluders (h, w) float32: coverage of the cap and headphones only -- what hides the
    face; glasses do not, the authors' masks fill them in).
    """
    rgb = np.zeros((*shape, 3), np.float32)
    alpha = np.zeros(shape, np.float32)
    layers = []
    if eeg_cap:
        layers.append(_cap_layer(shape, to_px, face_x, face_y, matte, ppu))
    if headphones:
        layers.append(_headphones_layer(shape, to_px, ppu))
    occluders = None
    if glasses:
        layers.append(_glasses_layer(shape, to_px, ppu))
    for index, (layer_rgb, layer_alpha) in enumerate(layers):  # premultiplied "over"
        if glasses and index == len(layers) - 1:
            occluders = alpha.copy()
        rgb = layer_rgb + rgb * (1.0 - layer_alpha[..., None])
        alpha = layer_alpha + alpha * (1.0 - layer_alpha)
    return rgb, alpha, alpha.copy() if occluders is None else occluders


def draw_skin_items(canvas: np.ndarray, to_px: ToPixels, ppu: float) -> None:
    """Paint the EOG electrodes and their leads onto `canvas` ((h, w, 3) float32), in place."""
    scratch = np.zeros(canvas.shape[:2], np.float32)
    for centre, lead_end in _ELECTRODES:
        _paint_line(canvas, scratch, to_px, centre, lead_end, _LEAD_WIDTH, ppu, _LEAD_RGB)
        for radius, colour in ((_FOAM_R, _FOAM_RGB), (_FOAM_CENTRE_R, _FOAM_CENTRE_RGB)):
            _paint_ellipse(canvas, scratch, to_px, centre, (radius, radius), ppu, colour)
