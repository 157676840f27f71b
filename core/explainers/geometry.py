"""Measured facial geometry of a pair in FISWG words (``core.faces.geometry``): landmark
ratios, e.g. ``eye spacing = inner eye corners / eye width``, placed within the quartiles of
a reference population. Needs no model weights, so some words can always be shown; it
describes the two photos and is not an explanation of the model's decision (the text says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..faces.geometry import Measure, describe, load_reference, ratios_5, ratios_68
from ..faces.regions import landmarks68
from ..types import AlignedFace, Explanation, FaceEmbedder, FacePair
from .base import BaseExplainer, explainer
from .knobs import knob, params_from

#: two values closer than this share of the reference's interquartile range are "about the same"
BORDER = 0.25


@dataclass(frozen=True)
class GeometryParams:
    """The words' knobs (``core.explainers.knobs``). ``landmarks`` also picks the points of
    the maps' region tables (``core.faces.regions``)."""

    landmarks: str = knob("auto", "the landmarks measured: auto (dlib's 68 points when installed, else the 5 of the alignment), 68 or 5",
                          choices=("auto", "68", "5"))  # fmt: skip
    geometry_reference: str = knob("", "a reference population JSON (python -m core geometry-reference); empty: the one shipped")


def face_ratios(face: AlignedFace, landmarks: str = "auto") -> tuple[dict[str, float], str]:
    """The ratios of one face and which landmarks they came from ("68" or "5")."""
    pts = landmarks68(face) if landmarks in ("auto", "68") else None
    if pts is not None:
        return ratios_68(pts), "68"
    return ratios_5(face.landmarks), "5"


def compare(ma: list[Measure], mb: list[Measure]) -> tuple[list[str], list[dict[str, Any]]]:
    """Sentences and table rows for the measures both faces have."""
    by_b = {m.key: m for m in mb}
    text, rows = [], []
    for a in ma:
        b = by_b[a.key]
        same = a.band == b.band
        ref = f"the reference's middle half {a.low:.2f}-{a.high:.2f}"
        rows.append({"measure": a.label, "a": a.value, "b": b.value, "p25": a.low, "p75": a.high, "word_a": a.word, "word_b": b.word, "same": same})
        wa, wb = (m.word or f"ordinary {m.label.split(' (')[0]}" for m in (a, b))
        close = abs(a.value - b.value) < BORDER * (a.high - a.low)
        if same:
            text.append(f"Both faces: {wa} ({a.label}: {a.value:.2f} and {b.value:.2f}; {ref}).")
        elif close:  # a quartile border between two nearly equal values is not a difference
            text.append(f"Both faces have about the same {a.label} ({a.value:.2f} and {b.value:.2f}), on the border between {wa} and {wb}; {ref}.")
        else:
            text.append(f"They differ in {a.label}: the first face {a.value:.2f} ({wa}), the second {b.value:.2f} ({wb}); {ref}.")
        rows[-1]["close"] = close
    return text, rows


@explainer(
    "geometry",
    label="Facial proportions (measured)",
    family="geometry",
    gives_maps=False,
    knobs=GeometryParams,
    order=70,
    description="Landmark ratios of both faces against proportion canons, in FISWG words (any model; no weights).",
)
class GeometryExplainer(BaseExplainer):
    """Landmark proportions of both faces, compared, in descriptor words."""

    def explain(self, pair: FacePair, embedder: FaceEmbedder | None, **knobs: Any) -> Explanation:
        p = params_from(GeometryParams, knobs)
        (ra, src_a), (rb, src_b) = (face_ratios(f, p.landmarks) for f in pair)
        if src_a != src_b:  # compare like with like
            ra, rb, src_a = ratios_5(pair.a.landmarks), ratios_5(pair.b.landmarks), "5"
        reference = load_reference(p.geometry_reference) if p.geometry_reference else load_reference()
        ma, mb = describe(ra, src_a, reference), describe(rb, src_a, reference)
        text, rows = compare(ma, mb)
        text.append(f"Measured from {src_a} landmarks on the aligned crops against {reference.get('source', 'a reference population')}; "
                    "a description of the two photos, not of how the model decided.")  # fmt: skip
        extras = {"table": rows, "landmarks": src_a, "measures": [[vars(m) for m in ma], [vars(m) for m in mb]]}
        scores = {f"{m.key}_a": m.value for m in ma} | {f"{m.key}_b": m.value for m in mb}
        return Explanation(method=self.name, label=self.label, scores=scores, text=text, extras=extras)
