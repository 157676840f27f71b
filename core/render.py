"""Maps to pictures: colour blending of signed maps (X-Map Algorithm 2) and heat overlays
of unsigned ones, in one colour language, with colour bars. numpy, OpenCV and PIL only; no
UI imports.

Two scales, and only two: every signed map (similar / dissimilar evidence: X-Maps,
removal/aggregation, CAM) is on one diverging scale, red (dissimilar) through a neutral
grey-white (no effect) to green (similar); every unsigned relevance map (Grad-CAM,
Grad-CAM++, SDD, the ViT maps) is on one sequential scale, dark (little) to bright (much),
``inferno``. ``SCALES`` names both for legends; ``colour_bar`` draws either with ticks in
the map's units.

Algorithm 2 of Knoche et al.: render the similarity map with the diverging colour map, then
take the lightness from the face (HLS), the hue from the rendered map (HLS) and the
saturation from the rendered map (HSV), and convert back. The face stays readable, and only
its colour says what the model thought of each region (the neutral middle leaves it grey).
Deviation: the paper's colour map is red-yellow-green; its yellow middle reads as evidence,
so 0 is neutral here.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# Red for -1 through a neutral light grey at 0 to green for +1 (ColorBrewer RdGy reds and
# PRGn greens around a neutral middle)
_RDYLGN = np.array(
    [(103, 0, 31), (178, 24, 43), (214, 96, 77), (244, 165, 130), (247, 247, 247),
     (166, 219, 160), (90, 174, 97), (27, 120, 55), (0, 68, 27)], dtype=np.float32,
) / 255.0  # fmt: skip
#: The unsigned relevance maps' sequential scale (OpenCV's inferno: dark to bright).
SEQUENTIAL = cv2.COLORMAP_INFERNO
#: The two scales in words, for legends: key -> (name, what its ends mean).
SCALES = {
    "diverging": ("green - grey - red", "green: evidence that the faces are the same person; red: evidence that they differ; "
                  "grey: no effect (signed maps, in units of similarity change)"),
    "sequential": ("dark - bright (inferno)", "bright: where the map puts the most relevance; dark: little (unsigned maps, "
                   "no direction: relevance is not evidence for or against)"),
}  # fmt: skip


def normalise_signed(m: np.ndarray) -> np.ndarray:
    """Divide by the largest absolute value: [-1, 1] with 0 kept at 0."""
    m = np.asarray(m, dtype=np.float32)
    scale = float(np.abs(m).max()) if m.size else 0.0
    return m / scale if scale > 0 else np.zeros_like(m)


def normalise_unsigned(m: np.ndarray) -> np.ndarray:
    """Min-max stretch to [0, 1] (a constant map becomes 0)."""
    m = np.asarray(m, dtype=np.float32)
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def diverging_colours(m: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` float32 RGB in [0, 1] for values in [-1, 1]: red, yellow, green."""
    x = (np.clip(np.asarray(m, dtype=np.float32), -1, 1) + 1) / 2 * (len(_RDYLGN) - 1)
    i = np.clip(np.floor(x).astype(int), 0, len(_RDYLGN) - 2)
    f = (x - i)[..., None]
    return (_RDYLGN[i] * (1 - f) + _RDYLGN[i + 1] * f).astype(np.float32)


def _fit(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if m.shape[:2] == shape:
        return m
    return cv2.resize(m.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def blend_signed(image: np.ndarray, smap: np.ndarray) -> np.ndarray:
    """Algorithm 2: the face's lightness with the hue and saturation of the rendered map.
    ``smap`` is normalised to [-1, 1] (division by max |.|) and resized to the image."""
    img = np.asarray(image, dtype=np.float32) / 255.0
    colours = diverging_colours(normalise_signed(_fit(np.asarray(smap), img.shape[:2])))
    light = cv2.cvtColor(img, cv2.COLOR_RGB2HLS)[..., 1]
    hue = cv2.cvtColor(colours, cv2.COLOR_RGB2HLS)[..., 0]
    sat = cv2.cvtColor(colours, cv2.COLOR_RGB2HSV)[..., 1]
    out = cv2.cvtColor(np.dstack([hue, light, sat]).astype(np.float32), cv2.COLOR_HLS2RGB)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)


def sequential_colours(m01: np.ndarray) -> np.ndarray:
    """``(..., 3)`` uint8 RGB of the sequential scale for values in [0, 1]."""
    heat = np.rint(np.clip(np.asarray(m01, dtype=np.float32), 0, 1) * 255).astype(np.uint8)
    flat = heat.reshape(-1, 1)
    return cv2.cvtColor(cv2.applyColorMap(flat, SEQUENTIAL), cv2.COLOR_BGR2RGB).reshape(*heat.shape, 3)


def heat_overlay(image: np.ndarray, m: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """An unsigned map, min-max stretched, on the sequential scale laid over the face (the
    display of Mery and Morris, who use jet: one scale for every unsigned map here)."""
    img = np.asarray(image, dtype=np.uint8)
    heat = sequential_colours(normalise_unsigned(_fit(np.asarray(m), img.shape[:2])))
    return cv2.addWeighted(heat, alpha, img, 1 - alpha, 0)


def lightness_overlay(image: np.ndarray, m: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """An unsigned map on the sequential scale over the face's lightness (grey): the display
    of Correia et al.'s verification heatmaps, where bright colours mark the important regions."""
    img = np.asarray(image, dtype=np.uint8)
    grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return heat_overlay(grey, m, alpha)


def render_map(image: np.ndarray, m: np.ndarray, signed: bool, display: str | None = None) -> np.ndarray:
    """The picture of one explanation map on its face; ``display="lightness"`` (an
    explanation's ``extras["display"]``) lays an unsigned map over the face's lightness."""
    if signed:
        return blend_signed(image, m)
    return lightness_overlay(image, m) if display == "lightness" else heat_overlay(image, m)


def with_opacity(image: np.ndarray, rendered: np.ndarray, opacity: float) -> np.ndarray:
    """The photo and its rendered map mixed: 0 is the photo alone, 1 the map picture alone."""
    o = float(np.clip(opacity, 0.0, 1.0))
    img = np.asarray(image, dtype=np.uint8)
    return cv2.addWeighted(np.asarray(rendered, dtype=np.uint8), o, img, 1 - o, 0)


def scale_colours(m: np.ndarray, signed: bool, lo: float, hi: float) -> np.ndarray:
    """``(..., 3)`` uint8 RGB of values on their scale: signed maps diverging over
    [-max(|lo|, |hi|), +max(|lo|, |hi|)] (0 stays neutral), unsigned ones sequential over
    [lo, hi]. Several maps given the same ``lo, hi`` share one scale."""
    m = np.asarray(m, dtype=np.float32)
    if signed:
        top = max(abs(lo), abs(hi)) or 1.0
        return np.clip(np.rint(diverging_colours(m / top) * 255), 0, 255).astype(np.uint8)
    span = hi - lo if hi > lo else 1.0
    return sequential_colours((m - lo) / span)


def colour_bar(lo: float, hi: float, signed: bool, units: str = "", width: int = 512, height: int = 18) -> np.ndarray:
    """A horizontal colour bar of the scale (diverging when ``signed``), ``width`` pixels
    wide, with the values at its ends (and 0 in the middle of a signed bar) written below in
    the map's ``units``."""
    from PIL import ImageDraw

    x = np.linspace(-1, 1, width) if signed else np.linspace(0, 1, width)
    bar = np.repeat(scale_colours(x, signed, -1.0 if signed else 0.0, 1.0)[None], height, axis=0)
    canvas = Image.new("RGB", (width, height + 18), (255, 255, 255))
    canvas.paste(Image.fromarray(bar), (0, 0))
    draw = ImageDraw.Draw(canvas)
    labels = [(0, f"{lo:+.3g}" if signed else f"{lo:.3g}"), (width, f"{hi:+.3g}" if signed else f"{hi:.3g}")]
    if signed:
        labels.insert(1, (width // 2, "0"))
    for pos, text in labels:
        w = draw.textlength(text)
        draw.text((min(max(0, pos - w / 2), width - w), height + 3), text, fill=(40, 40, 40))
    if units:
        w = draw.textlength(units)
        draw.text(((width - w) / 2 + (width / 4 if signed else 0), height + 3), units, fill=(90, 90, 90))
    return np.asarray(canvas)


def scale_css(signed: bool, stops: int = 9) -> str:
    """A CSS ``linear-gradient`` of the scale (for legends drawn by the page)."""
    x = np.linspace(-1, 1, stops) if signed else np.linspace(0, 1, stops)
    rgb = scale_colours(x, signed, -1.0 if signed else 0.0, 1.0).astype(int)
    return "linear-gradient(to right, " + ", ".join(f"rgb({r},{g},{b})" for r, g, b in rgb) + ")"


def side_by_side(images: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Images of the same height next to each other on a white background."""
    h = max(im.shape[0] for im in images)
    parts = []
    for i, im in enumerate(images):
        if im.shape[0] != h:
            im = cv2.resize(im, (round(im.shape[1] * h / im.shape[0]), h))
        parts.append(im)
        if i < len(images) - 1:
            parts.append(np.full((h, gap, 3), 255, np.uint8))
    return np.concatenate(parts, axis=1)


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB uint8 array as PNG; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)
    return path


def draw_faces(image: np.ndarray, boxes: list[np.ndarray], chosen: int = 0, max_side: int = 640) -> np.ndarray:
    """``image`` fitted into ``max_side`` px with each face's box drawn and numbered 1, 2, ...
    in the order given (the detector's: largest first); the ``chosen`` one (an index) in a
    thicker, brighter frame. For choosing a face when a photo holds several."""
    h, w = image.shape[:2]
    k = min(1.0, max_side / max(h, w))
    out = cv2.resize(image, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA) if k < 1 else image.copy()
    out = np.ascontiguousarray(out)
    for i, box in enumerate(boxes):
        x1, y1, x2, y2 = (round(float(v) * k) for v in box)
        colour, thick = ((255, 215, 0), 3) if i == chosen else ((80, 160, 255), 2)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        label = str(i + 1)
        scale = max(0.5, min(1.2, (x2 - x1) / 80))
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
        top = max(0, y1 - th - 6)
        cv2.rectangle(out, (x1, top), (x1 + tw + 6, top + th + 6), colour, -1)
        cv2.putText(out, label, (x1 + 3, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 2, cv2.LINE_AA)
    return out
