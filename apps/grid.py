"""The comparison page's method grid, its viewer and its legend, as plain data.

The grid has one column per method with maps and one row per face (A, B): each cell is the
map blended with its face at ``CELL`` pixels, captioned with the method's label, its cost
(or the method whose cached result it reused) and a faithfulness badge (better or not
better than a random map on this pair). Clicking a cell opens the viewer: both faces at
``VIEW`` pixels side by side with an opacity between the photo and the map, the raw maps
with a colour bar in the map's units, and the method's sentences. The legend says what
each scale and each method's colours mean, from ``core.render.SCALES`` and the registry's
``colours`` (the explainers' own metadata), never written here.

No Gradio import: the page wires these, and tests call them directly.
"""

from __future__ import annotations

import html
from typing import Any

import cv2
import numpy as np

from core.registry import explainer_spec
from core.render import SCALES, colour_bar, render_map, scale_colours, scale_css, side_by_side, with_opacity
from core.report import cost_words

#: Pixels of a grid cell's side (the crop is upscaled smoothly to it).
CELL = 256
#: Pixels of each face in the viewer.
VIEW = 512


def _up(image: np.ndarray, size: int) -> np.ndarray:
    return image if image.shape[0] == size else cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)


def _spec(method: str) -> Any:
    try:
        return explainer_spec(method)
    except Exception:  # an explanation of a method no longer registered (an old saved batch)
        return None


def cost_caption(e: Any) -> str:
    """What a map cost (``core.report.cost_words``): its runtime and forward passes, or, when
    it came from the cache, the method that computed it and what that cost."""
    return cost_words(e)


def faithfulness_badge(scores: dict[str, float] | None, random: dict[str, float] | None) -> str:
    """ "better than random" when hiding the map's top pixels changes the decision faster
    than hiding a random map's (a lower deletion area on this pair), else "not better than
    random"; "" when not measured."""
    if not scores or not random:
        return ""
    return "better than random" if scores["deletion_auc"] < random["deletion_auc"] else "not better than random"


def _map_explanations(res: Any) -> list[Any]:
    return [e for e in res.explanations if e.ok and len(e.maps) == 2]


def grid_items(res: Any, faithfulness: dict[str, dict[str, float]] | None = None) -> list[tuple[np.ndarray, str]]:
    """The grid's cells, row by row: face A for every method with maps, then face B; each
    ``(image, caption)``, images ``CELL`` px square."""
    faithfulness = faithfulness or {}
    exps = _map_explanations(res)
    cells = []
    for i, face in enumerate(res.pair):
        photo = _up(face.image, CELL)
        for e in exps:
            pic = render_map(photo, _up_map(e.maps[i], CELL), e.signed, e.extras.get("display"))
            badge = faithfulness_badge(faithfulness.get(e.method), faithfulness.get("random"))
            caption = f"{e.label}, face {'AB'[i]}: {cost_caption(e)}" + (f"; {badge}" if badge else "")
            cells.append((pic, caption))
    return cells


def _up_map(m: np.ndarray, size: int) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    return m if m.shape[0] == size else cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR)


def grid_columns(res: Any) -> int:
    """Columns of the grid: one per method with maps (at least 1)."""
    return max(1, len(_map_explanations(res)))


def cell_method(res: Any, index: int | None) -> str | None:
    """The method of the grid cell at ``index`` (row-major, as ``grid_items``)."""
    exps = _map_explanations(res)
    if index is None or not exps or not 0 <= int(index) < 2 * len(exps):
        return None
    return exps[int(index) % len(exps)].method


#: Gradio's grid has at least this many columns: with fewer methods one column would span the
#: page and blow its maps up past their pixels, so the rows are padded with blank cells.
MIN_COLUMNS = 4


def gallery_columns(res: Any) -> int:
    """Columns of the Gradio grid: one per method with maps, at least ``MIN_COLUMNS``."""
    return max(MIN_COLUMNS, grid_columns(res))


def gallery_items(res: Any, faithfulness: dict[str, dict[str, float]] | None = None) -> list[tuple[np.ndarray, str]]:
    """``grid_items`` laid out for ``gallery_columns``: each face's row padded with blank cells."""
    cells, n, cols = grid_items(res, faithfulness), grid_columns(res), gallery_columns(res)
    if cols == n or not cells:
        return cells
    blank = (np.full((CELL, CELL, 3), 255, np.uint8), "")
    return [c for row in (cells[:n], cells[n:]) for c in [*row, *[blank] * (cols - n)]]


def gallery_method(res: Any, index: int | None) -> str | None:
    """The method of the Gradio grid's cell at ``index`` (``gallery_items``; None for a blank)."""
    if index is None:
        return None
    n, cols = grid_columns(res), gallery_columns(res)
    row, col = divmod(int(index), cols)
    return cell_method(res, row * n + col) if col < n and row < 2 else None


def viewer(res: Any, method: str | None, opacity: float = 0.7) -> dict[str, Any]:
    """The viewer of one method: ``image`` (both faces at ``VIEW`` px side by side, the map
    mixed over the photo at ``opacity``), ``raw`` (both raw maps, nearest-neighbour, same
    scale), ``bar`` (the colour bar in the map's units), ``title`` and ``words``."""
    exp = next((e for e in _map_explanations(res) if e.method == method), None)
    if exp is None:
        return {"ok": False, "message": "Click a map in the grid to see it large."}
    photos = [_up(f.image, VIEW) for f in res.pair]
    big = [with_opacity(p, render_map(p, _up_map(m, VIEW), exp.signed, exp.extras.get("display")), opacity)
           for p, m in zip(photos, exp.maps, strict=True)]  # fmt: skip
    both = np.stack([np.asarray(m, dtype=np.float32) for m in exp.maps])
    lo, hi = float(both.min()), float(both.max())
    if exp.signed:  # one symmetric scale for both faces: the pair's largest |value|
        lo, hi = -max(abs(lo), abs(hi)), max(abs(lo), abs(hi))
    raws = [cv2.resize(scale_colours(m, exp.signed, lo, hi), (VIEW // 2, VIEW // 2), interpolation=cv2.INTER_NEAREST) for m in both]
    units = exp.extras.get("units") or ("similarity change" if exp.signed else "relevance")
    words = "\n".join(f"- {t}" for t in exp.text) or "_No sentences for this map._"
    bar = colour_bar(lo, hi, exp.signed, str(units).split(",")[0], width=VIEW)
    return {"ok": True, "method": exp.method, "title": f"### {exp.label}: {cost_caption(exp)}", "image": side_by_side(big, gap=8),
            "raw": side_by_side(raws, gap=8), "bar": bar, "words": words}  # fmt: skip


def legend_html(methods: list[str]) -> str:
    """The legend of the methods shown: each scale used, with its gradient and words, and
    what each method's colours mean (the registry's ``colours``)."""
    specs = [s for m in methods if (s := _spec(m)) is not None and s.scale]
    if not specs:
        return ""
    parts = ['<div style="font-family:sans-serif;font-size:14px">']
    for scale in ("diverging", "sequential"):
        used = [s for s in specs if s.scale == scale]
        if not used:
            continue
        name, meaning = SCALES[scale]
        parts.append(f'<div style="margin:6px 0"><b>{html.escape(name)} scale</b>: {html.escape(meaning)}'
                     f'<div style="background:{scale_css(scale == "diverging")};height:12px;max-width:420px;border-radius:3px;margin:3px 0"></div>'
                     + "".join(f"<div><i>{html.escape(s.label)}</i>: {html.escape(s.colours)}</div>" for s in used) + "</div>")  # fmt: skip
    parts.append("</div>")
    return "".join(parts)
