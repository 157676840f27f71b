"""The explainability table of a saliency map over facial regions, and its words ("From
Pixels to Words": how much of a map's evidence lies in the eyes, the nose, the mouth ...).

For a signed map (positive = brings the two faces together, negative = pulls them apart)
a region's ``similar`` share is its sum of ``max(map, 0)`` over the crop's sum of
``max(map, 0)``, and its ``dissimilar`` share the same with ``max(-map, 0)``. An unsigned
relevance map counts all of its magnitude as relevance (reported in ``similar``).
Pixels in no facial region (hair, ears, face outline, background) form the ``other`` row,
"rest of the image", so the shares over all rows sum to 1.

A region's ``density`` is its share of the evidence over its share of the crop's area
(``similar / area``; ``dissimilar_density`` likewise): 1 where the region holds as much
evidence as its size, 3.4 where it holds 3.4 times as much. The sentences rank regions by
density, give shares and areas beside it, and never open with the ``other`` bucket (most
of the crop: a large share there says little), which comes last, as context.

Left and right are the SUBJECT's (forensic convention): the subject's right eye is the one
on the image's left. See ``core.faces.regions``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..faces.regions import REGION_LABELS, REGIONS, RegionMasks

log = logging.getLogger(__name__)

#: The key and words of the row for pixels in no facial region.
OTHER = "other"
OTHER_LABEL = "rest of the image"
_OTHER_WHAT = "hair, ears, the face outline or the background"

#: A region is ranked by density only when it holds at least this share of the evidence
#: (a sliver of evidence on a tiny region is no headline; an eye is 1-2 % of the crop).
LEAD_MIN_SHARE = 0.02

#: Left/right pairs named together when they lead a ranking, with their plural.
_PAIRS = {
    frozenset({"left_eye", "right_eye"}): "eyes",
    frozenset({"left_eyebrow", "right_eyebrow"}): "eyebrows",
    frozenset({"left_cheek", "right_cheek"}): "cheeks",
}


@dataclass(frozen=True)
class RegionRow:
    """One row of the explainability table."""

    region: str  # a key of REGIONS, or "other"
    label: str  # plain words, e.g. "left eye" (the subject's left)
    area: float  # share of the crop's pixels in the region
    similar: float  # share of the map's positive evidence (all relevance if unsigned), 0..1
    dissimilar: float  # share of the map's negative evidence, 0..1 (0 if unsigned)
    mean: float  # mean map value in the region (0 for an empty region)
    density: float = 0.0  # similar / area: evidence per unit area (1 = as much as its size; 0 if empty)
    dissimilar_density: float = 0.0  # dissimilar / area (0 if unsigned or empty)

    def to_dict(self) -> dict[str, Any]:
        return {k: (float(v) if isinstance(v, float | np.floating) else v) for k, v in asdict(self).items()}


def region_table(saliency: np.ndarray, masks: RegionMasks, signed: bool = True) -> list[RegionRow]:
    """Shares of a map's evidence per facial region: one row per region of ``REGIONS`` (in
    order, empty regions included) and a last ``other`` row for pixels in no region.

    ``saliency`` is an (S, S) map at the crop size of ``masks`` (resize it first, e.g. with
    ``cv2.resize``, if it is not). Non-finite values count as 0.
    """
    sal = np.asarray(saliency, dtype=np.float64)
    if sal.ndim == 3 and sal.shape[-1] == 1:
        sal = sal[..., 0]
    if sal.ndim != 2:
        raise ValueError(f"the saliency map must be 2-D (H, W), got shape {sal.shape}")
    if sal.shape != masks.labels.shape:
        raise ValueError(
            f"the saliency map is {sal.shape[0]}x{sal.shape[1]} but the region masks are {masks.labels.shape[0]}x{masks.labels.shape[1]}; "
            "resize the map to the crop size first (e.g. cv2.resize(map, (S, S)))"
        )
    if not np.all(np.isfinite(sal)):
        log.debug("saliency map has non-finite values; counting them as 0")
        sal = np.nan_to_num(sal, nan=0.0, posinf=0.0, neginf=0.0)
    if signed:
        pos, neg = np.maximum(sal, 0.0), np.maximum(-sal, 0.0)
    else:
        pos, neg = np.abs(sal), np.zeros_like(sal)
    labels = masks.labels.astype(np.int64).ravel()
    n = len(REGIONS) + 1
    count = np.bincount(labels, minlength=n)[:n]
    pos_sum = np.bincount(labels, weights=pos.ravel(), minlength=n)[:n]
    neg_sum = np.bincount(labels, weights=neg.ravel(), minlength=n)[:n]
    val_sum = np.bincount(labels, weights=sal.ravel(), minlength=n)[:n]
    total_pos, total_neg, total_px = float(pos_sum.sum()), float(neg_sum.sum()), float(labels.size)
    rows = []
    keys = [(i + 1, name, REGION_LABELS[name]) for i, name in enumerate(REGIONS)] + [(0, OTHER, OTHER_LABEL)]
    for lab, name, words in keys:
        area = float(count[lab] / total_px)
        similar = float(pos_sum[lab] / total_pos) if total_pos > 0 else 0.0
        dissimilar = float(neg_sum[lab] / total_neg) if total_neg > 0 else 0.0
        rows.append(
            RegionRow(
                region=name,
                label=words,
                area=area,
                similar=similar,
                dissimilar=dissimilar,
                mean=float(val_sum[lab] / count[lab]) if count[lab] else 0.0,
                density=density(similar, area),
                dissimilar_density=density(dissimilar, area),
            )
        )
    return rows


def _pct(share: float) -> int:
    return round(100.0 * share)


def _area_words(area: float) -> str:
    """An area share in words: whole percent, one decimal below 1 % (never "0 %")."""
    return f"{100 * area:.1f} %" if area < 0.0095 else f"{_pct(area)} %"


def _times(density: float) -> str:
    """A density as a multiple of the area: "3.4x", "12x"."""
    return f"{density:.1f}x" if density < 9.95 else f"{density:.0f}x"


def density(share: float, area: float) -> float:
    """Evidence per unit area: a share of the evidence over the share of the crop it lies on
    (1 = as much as its size; 0 for an empty region)."""
    return float(share / area) if area > 0 else 0.0


@dataclass(frozen=True)
class _Group:
    """One region, or a left/right pair named together ("the eyes")."""

    rows: tuple[RegionRow, ...]
    attr: str  # "similar" or "dissimilar"

    @property
    def plural(self) -> bool:
        return len(self.rows) > 1

    @property
    def words(self) -> str:
        return "the " + (_PAIRS[frozenset(r.region for r in self.rows)] if self.plural else self.rows[0].label)

    @property
    def share(self) -> float:
        return sum(getattr(r, self.attr) for r in self.rows)

    @property
    def area(self) -> float:
        return sum(r.area for r in self.rows)

    @property
    def density(self) -> float:
        return density(self.share, self.area)

    def full(self, what: str) -> str:
        """ "31 % of the similar evidence (right eye 17 %, left eye 14 %) on 9 % of the face
        crop (3.4x their area)"."""
        parts = f" ({', '.join(f'{r.label} {_pct(getattr(r, self.attr))} %' for r in self.rows)})" if self.plural else ""
        whose = "their" if self.plural else "its"
        return f"{_pct(self.share)} % of the {what}{parts} on {_area_words(self.area)} of the face crop ({_times(self.density)} {whose} area)"

    def short(self) -> str:
        """ "the nose (17 % on 4 %, 3.8x)"."""
        return f"{self.words} ({_pct(self.share)} % on {_area_words(self.area)}, {_times(self.density)})"


def _ranking(rows: list[RegionRow], attr: str, lead: Callable[[str, bool], str], what: str, top: int) -> str:
    """Where the evidence of kind ``attr`` lies, by density first (evidence per unit area),
    with shares and areas: e.g. "the eyes bring the faces together most for their size: 31 %
    of the similar evidence (right eye 17 %, left eye 14 %) on 9 % of the face crop (3.4x
    their area), then the nose (20 % on 4 %, 4.5x); the largest share lies in the forehead
    (25 % on 10 %, 2.5x); the rest of the image (hair, ...) holds 12 % on 60 % of the crop (0.2x)".

    Only facial regions with at least ``LEAD_MIN_SHARE`` of the evidence are ranked, densest
    first; the largest share is named too when it is not among them; when no region has
    that much, the sentence says so and names the largest share. The ``other`` bucket is
    only ever context, last. ``lead(subject, plural)`` words the start."""
    named = [r for r in rows if r.region != OTHER and _pct(getattr(r, attr)) > 0]
    other = next((r for r in rows if r.region == OTHER), None)
    context = ""
    if other is not None and _pct(getattr(other, attr)) > 0:
        o = _Group((other,), attr)
        context = f"the rest of the image ({_OTHER_WHAT}) holds {_pct(o.share)} % on {_area_words(o.area)} of the crop ({_times(o.density)})"
    dens = "dissimilar_density" if attr == "dissimilar" else "density"
    # the regions with a real share, densest first
    ranked = sorted((r for r in named if getattr(r, attr) >= LEAD_MIN_SHARE), key=lambda r: (getattr(r, dens), getattr(r, attr)), reverse=True)
    if not ranked:  # the evidence is spread thin over the face, or lies outside it
        if not named:  # all of it outside the facial regions: said so, not as a threshold missed
            s = f"none of the {what} lies in a facial region"
            return f"{s}: {context}" if context else s
        s = f"no facial region holds {_pct(LEAD_MIN_SHARE)} % of the {what}"
        s += f": the most lies in {_Group((max(named, key=lambda r: getattr(r, attr)),), attr).short()}"
        return f"{s}; {context}" if context else s
    ranked = ranked[: max(1, top)]
    pair = frozenset({ranked[0].region, ranked[1].region}) if len(ranked) >= 2 else None
    first = _Group(tuple(ranked[:2]), attr) if pair in _PAIRS else _Group((ranked[0],), attr)
    rest = [_Group((r,), attr) for r in ranked[len(first.rows) :]]
    s = f"{lead(first.words, first.plural)}: {first.full(what)}"
    if rest:
        s += ", then " + _and([g.short() for g in rest])
    biggest = max(named, key=lambda r: getattr(r, attr))
    if biggest not in ranked:
        s += f"; the largest share lies in {_Group((biggest,), attr).short()}"
    if context:
        s += f"; {context}"
    return s


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _sentence(prefix: str | None, clause: str) -> str:
    text = f"{prefix}, {clause}" if prefix else clause
    return text[0].upper() + text[1:] + "."


def _its(plural: bool) -> str:
    return "their" if plural else "its"


def region_sentences(rows: list[RegionRow], method_label: str | None = None, signed: bool = True, top: int = 2) -> list[str]:
    """Plain sentences about where a map's evidence lies, from ``region_table`` rows.

    Regions are ranked by evidence per unit area (``density``: share of the evidence over
    share of the crop), and each is given with its share, its area and the ratio, so a
    small region that concentrates the evidence (the eyes) is not drowned by a large one
    (the forehead); the largest share is also named when it is not among them. Names at
    most ``top`` regions per kind of evidence, never one with 0 %, with whole percentages.
    A sentence never opens with the rest of the image (pixels in no facial region): it is
    mentioned last, as context. Says plainly when the map has no positive or no negative
    evidence. ``method_label`` (e.g. "Grad-CAM") starts the first sentence: "According to
    Grad-CAM, ...". Unsigned maps are read as relevance ("the model relied most on ...").
    """
    prefix = f"according to {method_label}" if method_label else None
    has_pos = any(_pct(r.similar) > 0 for r in rows)
    has_neg = signed and any(_pct(r.dissimilar) > 0 for r in rows)
    if not signed:
        if not has_pos:
            return [_sentence(prefix, "the map shows no relevance anywhere: there is no evidence to attribute to a facial region")]
        clause = _ranking(rows, "similar", lambda x, pl: f"the model relied most on {x} for {_its(pl)} size", "relevance", top)
        return [_sentence(prefix, clause)]
    if not has_pos and not has_neg:
        return [_sentence(prefix, "the map shows no evidence either way: nothing in it brings the faces together or pulls them apart")]
    if has_pos:
        together = _ranking(rows, "similar", lambda x, pl: f"{x} {'bring' if pl else 'brings'} the faces together most for {_its(pl)} size",
                            "similar evidence", top)  # fmt: skip
    else:
        together = "no region brings the faces together: the map has no positive (similar) evidence"
    if has_neg:
        apart = _ranking(rows, "dissimilar", lambda x, pl: f"{x} {'pull' if pl else 'pulls'} the faces apart most for {_its(pl)} size",
                         "dissimilar evidence", top)  # fmt: skip
    else:
        apart = "no region pulls the faces apart: the map has no negative (dissimilar) evidence"
    return [_sentence(prefix, together), _sentence(None, apart)]


def table_markdown(rows: list[RegionRow], signed: bool = True) -> str:
    """A small Markdown table: region | area % | similar % | x area | dissimilar % | x area |
    mean (for an unsigned map: region | area % | relevance % | x area | mean); "x area" is
    the density, the share of the evidence over the share of the area."""
    if signed:
        lines = ["| region | area % | similar % | x area | dissimilar % | x area | mean |", "|---|--:|--:|--:|--:|--:|--:|"]
        lines += [f"| {r.label} | {100 * r.area:.1f} | {100 * r.similar:.0f} | {r.density:.1f} | {100 * r.dissimilar:.0f} | "
                  f"{r.dissimilar_density:.1f} | {r.mean:+.3f} |" for r in rows]  # fmt: skip
    else:
        lines = ["| region | area % | relevance % | x area | mean |", "|---|--:|--:|--:|--:|"]
        lines += [f"| {r.label} | {100 * r.area:.1f} | {100 * r.similar:.0f} | {r.density:.1f} | {r.mean:.3f} |" for r in rows]
    return "\n".join(lines)
