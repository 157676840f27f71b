"""The same pair explained on several face models side by side, as Knoche et al.'s platform
shows each pair for several models: does an explanation come from the face or from the model?

Each model aligns its own crops (its input size, its template) and runs the same methods.
For each method both models mapped, against the first model:

- **rank correlation** (Spearman's rho) of the two models' maps of each face, over the
  pixels both crops show: the second model's map is warped into the first one's crop
  through the source photo (``T_1 . T_2^-1`` of the two alignments) and pixels outside its
  crop are left out. +1: the same ranking of pixels; 0: unrelated.
- **the regions each model relies on**: those of the region table (``core.text.regions``)
  whose share of the map's supporting evidence is at least ``RELY`` times their share of
  the crop (density), on either face; a sentence says which both rely on and which only one.
- **faithfulness on its own model**: each map's deletion and insertion areas measured with
  the model that made it (``Runner.faithfulness``), with a random map's as the baseline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from .types import AlignedFace, Explanation, PairResult, jsonable

if TYPE_CHECKING:
    from .io import ImageInput
    from .runner import Runner

log = logging.getLogger(__name__)

#: A model relies on a region when it holds at least this many times its area's share of
#: the map's supporting evidence (all relevance for unsigned maps).
RELY = 1.5
#: At most this many regions are named per model.
MAX_REGIONS = 3


@dataclass
class MethodAgreement:
    """How two models' maps of one method compare on one pair."""

    method: str
    label: str
    models: tuple[str, str]
    rank_correlation: list[float | None]  # per face (a, b); None where a map is flat or missing
    regions: dict[str, list[str]]  # model -> the regions it relies on (labels), on either face
    sentence: str
    faithfulness: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> its map's scores on its own model

    def to_dict(self) -> dict[str, Any]:
        return jsonable({"method": self.method, "label": self.label, "models": list(self.models),
                         "rank_correlation": self.rank_correlation, "regions": self.regions, "sentence": self.sentence,
                         "faithfulness": self.faithfulness})  # fmt: skip


@dataclass
class ModelComparison:
    """Every model's result on the pair and, per method, how the maps agree."""

    results: dict[str, PairResult]
    methods: list[MethodAgreement]
    faithfulness: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # model -> Runner.faithfulness

    @property
    def models(self) -> list[str]:
        return list(self.results)

    def decisions(self) -> str:
        """One sentence on the models' decisions: whether they agree, with each similarity."""
        parts = [f"{m}: {'same person' if r.same else 'different people'} (similarity {r.similarity:.3f}, threshold {r.threshold:.3f}"
                 + (f", C-Score {r.c_score:.3f})" if r.c_score is not None and np.isfinite(r.c_score) else ")")
                 for m, r in self.results.items()]  # fmt: skip
        agree = len({r.same for r in self.results.values()}) == 1
        return ("The models agree. " if agree else "The models disagree. ") + "; ".join(parts) + "."

    def to_dict(self) -> dict[str, Any]:
        return {"models": {m: r.to_dict() for m, r in self.results.items()}, "decisions": self.decisions(),
                "comparison": [a.to_dict() for a in self.methods], "faithfulness": jsonable(self.faithfulness)}  # fmt: skip


def warp_between(face_to: AlignedFace, face_from: AlignedFace, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (on ``face_from``'s crop) on ``face_to``'s crop, through the source photo, and
    the mask of ``face_to``'s pixels that ``face_from``'s crop covers."""
    to3 = np.vstack([face_to.transform, [0.0, 0.0, 1.0]])
    from3 = np.vstack([face_from.transform, [0.0, 0.0, 1.0]])
    m = (to3 @ np.linalg.inv(from3))[:2]
    size = (face_to.size, face_to.size)
    warped = cv2.warpAffine(np.asarray(image, np.float32), m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    cover = cv2.warpAffine(np.ones(image.shape[:2], np.float32), m, size, flags=cv2.INTER_LINEAR, borderValue=0)
    return warped, cover > 0.999


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rho of two equal-length samples (scipy's, average ranks for ties); None when
    either is constant (where rho is undefined)."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, np.float64).ravel(), np.asarray(y, np.float64).ravel()
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return float(spearmanr(x, y).statistic)


def _at_crop_size(saliency: np.ndarray, face: AlignedFace) -> np.ndarray:
    """A map at its face's crop size (coarse maps are upsampled bilinearly)."""
    m = np.asarray(saliency, np.float32)
    return m if m.shape == (face.size, face.size) else np.asarray(cv2.resize(m, (face.size, face.size), interpolation=cv2.INTER_LINEAR), np.float32)


def map_correlation(first: PairResult, second: PairResult, e1: Explanation, e2: Explanation) -> list[float | None]:
    """Spearman's rho of the two models' maps of each face, on the first model's crop, over
    the pixels both crops show."""
    out: list[float | None] = []
    for i, (f1, f2) in enumerate(zip(first.pair, second.pair, strict=True)):
        m1 = _at_crop_size(e1.maps[i], f1)
        warped, cover = warp_between(f1, f2, _at_crop_size(e2.maps[i], f2))
        out.append(spearman(m1[cover], warped[cover]) if cover.sum() >= 3 else None)
    return out


def relied_regions(exp: Explanation) -> list[str]:
    """The regions ``exp``'s maps rely on (density >= ``RELY``) on either face, densest first."""
    best: dict[str, float] = {}
    for table in exp.extras.get("regions") or []:
        for row in table or []:
            if row["region"] != "other" and row["area"] > 0 and row["density"] >= RELY:
                best[row["label"]] = max(best.get(row["label"], 0.0), float(row["density"]))
    return sorted(best, key=lambda k: -best[k])[:MAX_REGIONS]


def _and(words: Sequence[str]) -> str:
    words = list(words)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def agreement_sentence(label: str, m1: str, m2: str, r1: list[str], r2: list[str], rho: list[float | None]) -> str:
    """Where the two models' maps of one method agree and where they differ, in words."""
    both = [r for r in r1 if r in r2]
    only1, only2 = [r for r in r1 if r not in r2], [r for r in r2 if r not in r1]
    parts = []
    if both:
        parts.append(f"both rely on the {_and(both)}")
    if only1:
        parts.append(f"only {m1} on the {_and(only1)}")
    if only2:
        parts.append(f"only {m2} on the {_and(only2)}")
    if not parts:
        parts.append(f"neither singles out a facial region (none holds {RELY:g} times its share)")
    shown = [f"{r:+.2f}" for r in rho if r is not None]
    corr = f"; rank correlation of the maps {' and '.join(shown)} (faces A and B)" if len(shown) == 2 else ""
    return f"{label}: {'; '.join(parts)}{corr}."


def compare_models(
    runners: Sequence[Runner],
    a: ImageInput | AlignedFace,
    b: ImageInput | AlignedFace,
    methods: Sequence[str] = (),
    progress: Callable[[float, str], Any] | None = None,
    faithfulness: bool = True,
    **knobs: Any,
) -> ModelComparison:
    """Run ``methods`` on the pair with each runner's model and compare every later model's
    maps with the first model's. ``faithfulness``: also measure each map on its own model."""
    if len(runners) < 2:
        raise ValueError("compare_models needs at least two models")
    names = [r.model_name for r in runners]
    if len(set(names)) != len(names):
        raise ValueError(f"each model once, got {', '.join(names)}")
    n = len(runners)
    results: dict[str, PairResult] = {}
    faith: dict[str, dict[str, dict[str, float]]] = {}
    for i, r in enumerate(runners):
        sub = None if progress is None else (lambda f, msg, i=i, m=r.model_name: progress((i + f) / n, f"{m}: {msg}"))
        res = r.explain(a, b, methods=methods, progress=sub, **knobs)
        results[r.model_name] = res
        if faithfulness and any(e.ok and len(e.maps) == 2 for e in res.explanations):
            faith[r.model_name] = r.faithfulness(res)
    first_name = names[0]
    first = results[first_name]
    agreements = []
    for other_name in names[1:]:
        other = results[other_name]
        by_method = {e.method: e for e in other.explanations}
        for e1 in first.explanations:
            e2 = by_method.get(e1.method)
            if e2 is None or not (e1.ok and e2.ok and len(e1.maps) == 2 and len(e2.maps) == 2):
                continue
            rho = map_correlation(first, other, e1, e2)
            r1, r2 = relied_regions(e1), relied_regions(e2)
            scores = {m: faith[m][e1.method] for m in (first_name, other_name) if e1.method in faith.get(m, {})}
            agreements.append(MethodAgreement(e1.method, e1.label, (first_name, other_name), rho, {first_name: r1, other_name: r2},
                                              agreement_sentence(e1.label, first_name, other_name, r1, r2, rho), scores))  # fmt: skip
    if progress is not None:
        progress(1.0, "done")
    return ModelComparison(results, agreements, faith)
