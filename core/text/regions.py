"""The explainability table of a saliency map over facial regions, and its words ("From
Pixels to Words": how much of a map's evidence lies in the eyes, the nose, the mouth ...).

For a signed map (positive = brings the two faces together, negative = pulls them apart)
a region's ``similar`` share is its sum of ``max(map, 0)`` over the crop's sum of
``max(map, 0)``, and its ``dissimilar`` share the same with ``max(-map, 0)``. An unsigned
relevance map counts all of its magnitude as relevance (reported in ``similar``).
Pixels in no facial region (hair, ears, face outline, background) form the ``other`` row,
"rest of the image", so the shares over all rows sum to 1.

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
        rows.append(
            RegionRow(
                region=name,
                label=words,
                area=float(count[lab] / total_px),
                similar=float(pos_sum[lab] / total_pos) if total_pos > 0 else 0.0,
                dissimilar=float(neg_sum[lab] / total_neg) if total_neg > 0 else 0.0,
                mean=float(val_sum[lab] / count[lab]) if count[lab] else 0.0,
            )
        )
    return rows


def _pct(share: float) -> int:
    return round(100.0 * share)


def _ranking(rows: list[RegionRow], attr: str, lead: Callable[[str, bool], str], what: str, top: int) -> str:
    """The ``top`` regions by ``attr``, e.g. "the nose brings the faces together most (31 % of
    the similar evidence), then the right eye (24 %)". ``lead(subject, plural)`` words the
    start; a leading left/right pair is named together ("the eyes ...: right eye 24 %, left
    eye 18 % of the ...")."""
    ranked = sorted((r for r in rows if _pct(getattr(r, attr)) > 0), key=lambda r: getattr(r, attr), reverse=True)[: max(1, top)]
    first = ranked[0]
    pair = frozenset({ranked[0].region, ranked[1].region}) if len(ranked) >= 2 else None
    if pair in _PAIRS:
        parts = ", ".join(f"{r.label} {_pct(getattr(r, attr))} %" for r in ranked[:2])
        s = f"{lead('the ' + _PAIRS[pair], True)}: {parts} of the {what}"
        rest = ranked[2:]
    else:
        # say so when the strongest evidence lies outside the face's regions
        where = f", outside the named facial regions: {_OTHER_WHAT}" if first.region == OTHER else ""
        s = f"{lead('the ' + first.label, False)} ({_pct(getattr(first, attr))} % of the {what}{where})"
        rest = ranked[1:]
    if rest:
        s += ", then " + _and([f"the {r.label} ({_pct(getattr(r, attr))} %)" for r in rest])
    return s


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _sentence(prefix: str | None, clause: str) -> str:
    text = f"{prefix}, {clause}" if prefix else clause
    return text[0].upper() + text[1:] + "."


def region_sentences(rows: list[RegionRow], method_label: str | None = None, signed: bool = True, top: int = 2) -> list[str]:
    """Plain sentences about where a map's evidence lies, from ``region_table`` rows.

    Names at most ``top`` regions per kind of evidence, never one with 0 %, with whole
    percentages; says plainly when the map has no positive or no negative evidence, and
    when the strongest "region" is the rest of the image. ``method_label`` (e.g.
    "Grad-CAM") starts the first sentence: "According to Grad-CAM, ...". Unsigned maps are
    read as relevance ("the model relied most on ...").
    """
    prefix = f"according to {method_label}" if method_label else None
    has_pos = any(_pct(r.similar) > 0 for r in rows)
    has_neg = signed and any(_pct(r.dissimilar) > 0 for r in rows)
    if not signed:
        if not has_pos:
            return [_sentence(prefix, "the map shows no relevance anywhere: there is no evidence to attribute to a facial region")]
        return [_sentence(prefix, _ranking(rows, "similar", lambda x, _: f"the model relied most on {x}", "relevance", top))]
    if not has_pos and not has_neg:
        return [_sentence(prefix, "the map shows no evidence either way: nothing in it brings the faces together or pulls them apart")]
    if has_pos:
        together = _ranking(rows, "similar", lambda x, pl: f"{x} {'bring' if pl else 'brings'} the faces together most", "similar evidence", top)
    else:
        together = "no region brings the faces together: the map has no positive (similar) evidence"
    if has_neg:
        apart = _ranking(rows, "dissimilar", lambda x, pl: f"{x} {'pull' if pl else 'pulls'} the faces apart most", "dissimilar evidence", top)
    else:
        apart = "no region pulls the faces apart: the map has no negative (dissimilar) evidence"
    return [_sentence(prefix, together), _sentence(None, apart)]


def table_markdown(rows: list[RegionRow], signed: bool = True) -> str:
    """A small Markdown table: region | similar % | dissimilar % | mean (for an unsigned
    map: region | relevance % | mean)."""
    if signed:
        lines = ["| region | similar % | dissimilar % | mean |", "|---|--:|--:|--:|"]
        lines += [f"| {r.label} | {100 * r.similar:.0f} | {100 * r.dissimilar:.0f} | {r.mean:+.3f} |" for r in rows]
    else:
        lines = ["| region | relevance % | mean |", "|---|--:|--:|"]
        lines += [f"| {r.label} | {100 * r.similar:.0f} | {r.mean:.3f} |" for r in rows]
    return "\n".join(lines)
