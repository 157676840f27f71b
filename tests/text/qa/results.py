"""Results for the question-answering tests, made as the runner makes them: region tables
of hand-painted maps over real region masks, a concept table, and measured proportions
from the geometry explainer (on 5 landmarks, or on 68 with the ratios measured by dlib on
Obama and Biden)."""

from __future__ import annotations

from unittest import mock

import numpy as np

from core.explainers import geometry as geometry_module
from core.explainers.geometry import GeometryExplainer
from core.faces.align import template_for_size
from core.faces.regions import RegionMasks, region_masks
from core.runner import _add_region_table
from core.text.regions import region_table
from core.types import AlignedFace, Explanation, FacePair, PairResult

SIZE = 112

#: Ratios dlib's 68 landmarks gave on obama.jpg and biden.jpg (SFace crops).
OBAMA = {"eye_spacing": 1.600, "eye_size": 0.169, "nose_width": 0.922, "mouth_width": 2.034, "face_proportions": 91.552}
BIDEN = {"eye_spacing": 1.587, "eye_size": 0.162, "nose_width": 0.798, "mouth_width": 1.883, "face_proportions": 84.022}

FAITH = {"xmap2": {"deletion_auc": -0.26, "insertion_auc": 0.14, "confidence_drop_pct": 59.5, "prediction_change_pct": 100.0},
         "grad_cam": {"deletion_auc": -0.18, "insertion_auc": -0.12, "confidence_drop_pct": 26.9, "prediction_change_pct": 0.0},
         "random": {"deletion_auc": -0.07, "insertion_auc": -0.07, "confidence_drop_pct": 15.3, "prediction_change_pct": 0.0}}  # fmt: skip

CONCEPTS = [
    {"component": "eyes", "group": "eye spacing", "concept_a": "wide-set eyes", "p_a": 0.7, "concept_b": "close-set eyes", "p_b": 0.6,
     "shared": False, "share": 0.01, "concept_share": 0.0, "difference": 0.55},
    {"component": "nose", "group": "nose width", "concept_a": "broad nose", "p_a": 0.8, "concept_b": "broad nose", "p_b": 0.75,
     "shared": True, "share": 0.05, "concept_share": 0.04, "difference": 0.05},
    {"component": "mouth", "group": "lip thickness", "concept_a": "thin lips", "p_a": 0.5, "concept_b": "full lips", "p_b": 0.9,
     "shared": False, "share": 0.0, "concept_share": 0.0, "difference": 0.31},
]  # fmt: skip


def pair_and_masks(image: np.ndarray | None = None) -> tuple[FacePair, RegionMasks]:
    img = np.zeros((SIZE, SIZE, 3), np.uint8) if image is None else image
    face = AlignedFace(img, template_for_size(SIZE).astype(np.float32), np.zeros(4), np.hstack([np.eye(2), np.zeros((2, 1))]))
    return FacePair(face, face), region_masks(face, landmarks="5")


def paint(masks: RegionMasks, values: dict[str, float]) -> np.ndarray:
    m = np.zeros(masks.labels.shape, np.float32)
    for region, v in values.items():
        m[masks.mask(region)] = v
    return m


def with_tables(e: Explanation, masks: RegionMasks) -> Explanation:
    _add_region_table(e, [masks, masks])
    return e


def signed(masks: RegionMasks) -> Explanation:
    """The nose brings the faces together most, the mouth pulls them apart (one shared map)."""
    m = paint(masks, {"nose": 1.0, "right_eye": 0.4, "mouth": -1.0, "chin": -0.2})
    return with_tables(Explanation("xmap2", "X-Map II", maps=[m, m], signed=True), masks)


def unsigned(masks: RegionMasks) -> Explanation:
    """The forehead first in both faces' maps, then a cheek in one and the chin in the other."""
    maps = [paint(masks, {"forehead": 1.0, "left_cheek": 0.3}), paint(masks, {"forehead": 0.8, "chin": 0.6})]
    return with_tables(Explanation("grad_cam", "Grad-CAM", maps=maps), masks)


def concepts() -> Explanation:
    return Explanation("concepts", "Concepts in words (CLIP bottleneck)", text=[
        "No match (similarity 0.180 vs threshold 0.363); the descriptor groups that differ most:",
        "Eyes, eye spacing: the first face shows wide-set eyes (70%), the second close-set eyes (60%); difference 0.55."],
        extras={"table": CONCEPTS, "ranked": ["eye spacing"], "decision": "non-match", "descriptor_set": "fiswg"})  # fmt: skip


def geometry(pair: FacePair, a: dict[str, float] | None = None, b: dict[str, float] | None = None) -> Explanation:
    """The geometry explainer's own output: on the 5 points, or on 68-point ratios ``a``, ``b``."""
    if a is None:
        return GeometryExplainer().explain(pair, None, landmarks="5")
    with mock.patch.object(geometry_module, "face_ratios", side_effect=[(a, "68"), (b, "68")]):
        return GeometryExplainer().explain(pair, None)


def result(pair: FacePair, explanations: list[Explanation], same: bool, sim: float, c: float | None = 0.873) -> PairResult:
    return PairResult(pair=pair, similarity=sim, threshold=0.363, same=same, c_score=c, model="sface", weights_hash="ab12" * 16,
                      explanations=explanations, params={"device": "cpu"})  # fmt: skip


def share(e: Explanation, face: int, region: str, key: str = "similar") -> float:
    """A region's share of one face's map, recomputed from the map."""
    masks = region_masks(AlignedFace(np.zeros((SIZE, SIZE, 3), np.uint8), template_for_size(SIZE).astype(np.float32), np.zeros(4),
                                     np.hstack([np.eye(2), np.zeros((2, 1))])), landmarks="5")  # fmt: skip
    row = next(r for r in region_table(e.maps[face], masks, signed=e.signed) if r.region == region)
    return getattr(row, key)
