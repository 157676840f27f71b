"""Maps to pictures: colour blending of signed maps (X-Map Algorithm 2) and heat overlays
of unsigned ones. numpy, OpenCV and PIL only; no UI imports.

Algorithm 2 of Knoche et al.: render the similarity map with a green (similar) to red
(dissimilar) colour map, then take the lightness from the face (HLS), the hue from the
rendered map (HLS) and the saturation from the rendered map (HSV), and convert back. The
face stays readable, and only its colour says what the model thought of each region.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

# ColorBrewer RdYlGn (11 classes), red for -1 through pale yellow at 0 to green for +1
_RDYLGN = np.array(
    [(165, 0, 38), (215, 48, 39), (244, 109, 67), (253, 174, 97), (254, 224, 139), (255, 255, 191),
     (217, 239, 139), (166, 217, 106), (102, 189, 99), (26, 152, 80), (0, 104, 55)], dtype=np.float32,
) / 255.0  # fmt: skip


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


def heat_overlay(image: np.ndarray, m: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """An unsigned map, min-max stretched, as a jet heat map laid over the face (the
    display of Mery and Morris)."""
    img = np.asarray(image, dtype=np.uint8)
    heat = np.rint(normalise_unsigned(_fit(np.asarray(m), img.shape[:2])) * 255).astype(np.uint8)
    jet = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(jet, alpha, img, 1 - alpha, 0)


def lightness_overlay(image: np.ndarray, m: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """An unsigned map as a jet heat map over the face's lightness (grey): the display of
    Correia et al.'s verification heatmaps, where warm colours mark the important regions."""
    img = np.asarray(image, dtype=np.uint8)
    grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return heat_overlay(grey, m, alpha)


def render_map(image: np.ndarray, m: np.ndarray, signed: bool, display: str | None = None) -> np.ndarray:
    """The picture of one explanation map on its face; ``display="lightness"`` (an
    explanation's ``extras["display"]``) lays an unsigned map over the face's lightness."""
    if signed:
        return blend_signed(image, m)
    return lightness_overlay(image, m) if display == "lightness" else heat_overlay(image, m)


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
