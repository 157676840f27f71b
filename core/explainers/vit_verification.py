"""Face verification heatmaps from ViT attention maps, after Correia, Pereira and Correia,
"Face verification explainability heatmap generation using a vision transformer":
``SM+ = ((d_PG - d)/d) / 2RA + ((d_PP - d)/d) / 2RA`` (positive decisions) and
``SM- = ((d - d_NPG)/d) / RA`` (negative ones) select the mask that explains the decision.

Steps, for the probe P (face a) and the gallery face G (face b), on the aligned crops:

1. Attention maps of both faces (``core.explainers.vit_lrp``: ViT-LRP, No-Grad ViT-LRP or
   rollout), each targeting the similarity to the other face, upsampled to the crop and
   scaled to [0, 1]; Otsu's threshold turns each into a binary mask.
2. Candidate masks: OIM (intersection of the two masks) and UM (union) for a positive
   decision; OIM, UM and N-IUM (union minus intersection) for a negative one.
3. Each candidate hides its pixels (black by default) in both crops. ``d`` is the squared
   Euclidean distance of the two normalised embeddings; ``d_PG = |e_G - e_MP|²`` and
   ``d_PP = |e_P - e_MG|²`` (one face masked), ``d_NPG = |e_MG - e_MP|²`` (both masked); RA
   is the fraction of the crop the mask hides. The candidate with the largest SM wins; every
   candidate's scores are reported.
4. Heatmap: inside the selected mask, the mean of both attention maps where both masks are
   on and the single map's value where only one is; then a grey dilation with an 8 x 8
   square and a Gaussian filter of size 56 x 56 and variance 6.6. The paper states these for
   the 112 x 112 crops of the face transformer it explains; here they are scaled with the
   crop (a 224 crop gets 16 x 16, 113 x 113 (OpenCV needs odd sizes, so 2*round(28 s)+1)
   and standard deviation sqrt(6.6) * 2). The heatmap is shown over the face's lightness.

The paper gives one heatmap per pair (both faces are aligned to the same template, so the
mask and heatmap apply to both); it is returned as the map of each face. ``masking``
forces one candidate (the paper finds OIM best on every dataset and suggests skipping the
selection); ``heatmap="attention"`` returns the two attention maps themselves.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidParameterError, MethodRequirementError
from ..types import Explanation, FaceEmbedder, FacePair, torch_module
from .base import BaseExplainer, explainer, fixed_cost
from .knobs import fill_knob, knob, params_from
from .perturb import check_fill, crop_at_input_size, embed_faces, fill_image
from .vit_lrp import attention_maps, cosine_target, find_vit, to_image

log = logging.getLogger(__name__)

#: The paper's filter sizes, for its 112 x 112 crops
REFERENCE_SIZE = 112
DILATION = 8
GAUSSIAN_SIZE = 56
GAUSSIAN_VARIANCE = 6.6

POSITIVE_MASKS = ("oim", "um")
NEGATIVE_MASKS = ("oim", "um", "nium")
MASK_LABELS = {"oim": "OIM", "um": "UM", "nium": "N-IUM"}


@dataclass(frozen=True)
class ViTParams:
    """The knobs of Correia et al.'s heatmaps (``core.explainers.knobs``)."""

    heatmap: str = knob("verification", "Correia et al.'s verification heatmap, or the raw attention maps",
                        choices=("verification", "attention"))  # fmt: skip
    masking: str = knob("select", "pick the mask by SM+/SM- (select) or force one (nium: negative decisions only)",
                        choices=("select", *NEGATIVE_MASKS))  # fmt: skip
    fill: str | float | tuple = fill_knob()
    start_layer: int = knob(0, "multiply the blocks' maps from this block up (0: all, as the paper; Chefer et al.'s scripts use 1)", low=0)


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of real values: the cut between histogram bins (over the values'
    range) that maximises the between-class variance; values above it are foreground."""
    v = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return hi
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    p = hist / hist.sum()
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    mu = np.cumsum(p * centres)
    w1 = 1.0 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * w0 - mu) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1.0
    return float(edges[int(np.argmax(between)) + 1])


def otsu_mask(m: np.ndarray) -> tuple[np.ndarray, float]:
    """The binary mask of a map's salient part (values above Otsu's threshold), and the threshold."""
    t = otsu_threshold(m)
    return np.asarray(m) > t, t


def candidate_masks(mask_a: np.ndarray, mask_b: np.ndarray, positive: bool) -> dict[str, np.ndarray]:
    """OIM and UM (and N-IUM for a negative decision) from the two faces' binary masks."""
    oim, um = mask_a & mask_b, mask_a | mask_b
    out = {"oim": oim, "um": um}
    if not positive:
        out["nium"] = um & ~oim
    return out


def sq_distance(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Squared Euclidean distance of two normalised embeddings (the paper's ``|e_P - e_G|²_F``)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    return float(((a - b) ** 2).sum())


def sm_plus(d: float, d_pg: float, d_pp: float, removed: float) -> float:
    """Selection metric for a positive decision (eq. 1); NaN for an empty mask."""
    if removed <= 0:
        return math.nan
    d = max(d, 1e-12)
    return ((d_pg - d) / d) / (2 * removed) + ((d_pp - d) / d) / (2 * removed)


def sm_minus(d: float, d_npg: float, removed: float) -> float:
    """Selection metric for a negative decision (eq. 2); NaN for an empty mask."""
    if removed <= 0:
        return math.nan
    d = max(d, 1e-12)
    return ((d - d_npg) / d) / removed


def filter_sizes(size: int) -> tuple[int, int, float]:
    """Dilation square, Gaussian kernel size (odd) and standard deviation for a crop of
    ``size`` pixels, scaled from the paper's 112-pixel values."""
    s = size / REFERENCE_SIZE
    return max(1, round(DILATION * s)), 2 * max(1, round(GAUSSIAN_SIZE / 2 * s)) + 1, math.sqrt(GAUSSIAN_VARIANCE) * s


def combine_maps(map_a: np.ndarray, map_b: np.ndarray, mask_a: np.ndarray, mask_b: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """The attention values inside the selected mask: the mean of both maps where both masks
    are on, the one map's value where only its mask is, 0 elsewhere."""
    both = mask_a & mask_b
    values = np.where(both, (map_a + map_b) / 2, np.where(mask_a, map_a, np.where(mask_b, map_b, 0.0)))
    return np.where(selected, values, 0.0).astype(np.float32)


def smooth_heatmap(h: np.ndarray) -> np.ndarray:
    """Dilation and Gaussian filtering at the paper's sizes (scaled to the map), in [0, 1]."""
    dil, ksize, sigma = filter_sizes(h.shape[0])
    out = cv2.dilate(h.astype(np.float32), np.ones((dil, dil), np.uint8))
    out = cv2.GaussianBlur(out, (ksize, ksize), sigma, borderType=cv2.BORDER_CONSTANT)
    peak = float(out.max())
    return out / peak if peak > 0 else out


@dataclass
class Candidate:
    """One masking technique's scores on a pair."""

    mask: str
    removed_area: float
    sm: float
    d_pg: float | None = None  # positive: gallery vs masked probe
    d_pp: float | None = None  # positive: probe vs masked gallery
    d_npg: float | None = None  # negative: both masked


def hide(image: np.ndarray, mask: np.ndarray, fill: Any) -> np.ndarray:
    """The crop with the mask's pixels replaced by the fill."""
    filled = fill_image(image, fill)
    return np.where(mask[..., None], filled, image.astype(np.float32)).round().clip(0, 255).astype(np.uint8)


def score_candidates(
    embedder: FaceEmbedder,
    faces: list[np.ndarray],
    embeddings: np.ndarray,
    masks: dict[str, np.ndarray],
    positive: bool,
    fill: Any = "black",
    batch_size: int | None = None,
) -> list[Candidate]:
    """Embed the masked crops of every candidate (one batch) and score it with SM+ / SM-."""
    names = list(masks)
    crops = [hide(face, masks[n], fill) for n in names for face in faces]
    masked = embed_faces(embedder, crops, batch_size).numpy() if crops else np.zeros((0, embeddings.shape[1]))
    e_p, e_g = embeddings
    d = sq_distance(e_p, e_g)
    out = []
    for i, n in enumerate(names):
        e_mp, e_mg = masked[2 * i], masked[2 * i + 1]
        ra = float(masks[n].mean())
        if positive:
            d_pg, d_pp = sq_distance(e_g, e_mp), sq_distance(e_p, e_mg)
            out.append(Candidate(n, ra, sm_plus(d, d_pg, d_pp, ra), d_pg=d_pg, d_pp=d_pp))
        else:
            d_npg = sq_distance(e_mg, e_mp)
            out.append(Candidate(n, ra, sm_minus(d, d_npg, ra), d_npg=d_npg))
    return out


def select(candidates: list[Candidate]) -> Candidate:
    """The candidate with the largest SM (empty masks, with NaN scores, cannot win)."""
    scored = [c for c in candidates if not math.isnan(c.sm)]
    if not scored:
        raise MethodRequirementError("every candidate mask is empty: the attention maps have no salient region")
    return max(scored, key=lambda c: c.sm)


class ViTExplainer(BaseExplainer):
    """Correia et al.'s verification heatmap over ViT-LRP, No-Grad ViT-LRP or rollout maps."""

    #: method key -> the attention maps it starts from (``core.explainers.vit_lrp.attention_maps``)
    METHODS: ClassVar[dict[str, str]] = {"vit_lrp": "vit_lrp", "vit_lrp_nograd": "vit_lrp_nograd", "vit_rollout": "rollout"}

    def __init__(self, name: str | None = None) -> None:
        name = name if name is not None else getattr(self, "name", None)  # a registered variant: its key
        if name not in self.METHODS:
            raise ValueError(f"name must be one of {', '.join(self.METHODS)}, got {name!r}")
        self.name = name
        self.attention = self.METHODS[name]

    def explain(self, pair: FacePair, embedder: FaceEmbedder, **knobs: Any) -> Explanation:
        params = params_from(ViTParams, knobs)
        heatmap, masking, fill = params.heatmap, params.masking, check_fill(params.fill)
        module = torch_module(embedder)
        if module is None:
            raise MethodRequirementError(f"{self.label} needs a torch ViT; model '{embedder.name}' has none")
        size = int(embedder.input_size)
        faces = [crop_at_input_size(f.image, size) for f in pair]
        x = embedder.preprocess(faces)
        spec = find_vit(module)
        start_layer = int(params.start_layer)
        res = attention_maps(module, x, self.attention, cosine_target(lambda out: out.flip(0)), spec=spec, start_layer=start_layer)
        maps = to_image(res.maps, size).cpu().numpy()
        embeddings = F.normalize(res.outputs.float(), dim=1).cpu().numpy()
        similarity = float(embeddings[0] @ embeddings[1])
        extras: dict[str, Any] = {"attention": self.attention, "start_layer": start_layer, "grid": [g for g in res.maps.cpu().numpy()],
                                  "grid_size": list(res.maps.shape[1:]), "attention_maps": list(maps)}  # fmt: skip
        scores = {"similarity": similarity}
        if heatmap == "attention":
            extras["meaning"] = "the ViT's attention map of each face for its similarity to the other (1 = most relevant)"
            return Explanation(method=self.name, label=self.label, maps=list(maps), signed=False, scores=scores, extras=extras)

        thr = knobs.get("decision_threshold")
        if thr is None:
            raise ValueError(f"{self.label} needs decision_threshold (the Runner passes the model's threshold)")
        positive = similarity >= float(thr)
        (mask_a, t_a), (mask_b, t_b) = otsu_mask(maps[0]), otsu_mask(maps[1])
        masks = candidate_masks(mask_a, mask_b, positive)
        if masking != "select" and masking not in masks:
            kind = "positive" if positive else "negative"
            raise InvalidParameterError(f"masking must be 'select' or one of {', '.join(masks)} for a {kind} decision, got {masking!r}")
        candidates = score_candidates(embedder, faces, embeddings, masks, positive, fill, knobs.get("batch_size"))
        chosen = select(candidates) if masking == "select" else next(c for c in candidates if c.mask == masking)
        raw = combine_maps(maps[0], maps[1], mask_a, mask_b, masks[chosen.mask])
        heat = smooth_heatmap(raw)
        metric = "SM+" if positive else "SM-"
        others = ", ".join(f"{MASK_LABELS[c.mask]} {c.sm:.2f}" for c in candidates if c is not chosen)
        text = [f"{'Positive' if positive else 'Negative'} decision (similarity {similarity:.3f} vs threshold {float(thr):.3f}): "
                f"the {MASK_LABELS[chosen.mask]} mask hides {100 * chosen.removed_area:.0f}% of the face and "
                f"{'was selected' if masking == 'select' else 'was asked for'} ({metric} {chosen.sm:.2f}; {others})."]  # fmt: skip
        scores.update({"distance": sq_distance(embeddings[0], embeddings[1]), "selected_sm": chosen.sm,
                       **{f"sm_{c.mask}": c.sm for c in candidates}, **{f"removed_area_{c.mask}": c.removed_area for c in candidates}})  # fmt: skip
        extras.update({
            "decision": "positive" if positive else "negative", "selected_mask": chosen.mask, "metric": metric,
            "candidates": [asdict(c) for c in candidates], "otsu_thresholds": [t_a, t_b], "masks": {k: v for k, v in masks.items()},
            "display": "lightness",
            "meaning": (f"the attention inside the {MASK_LABELS[chosen.mask]} mask, the masking whose hiding "
                        + ("separates the faces" if positive else "brings the faces together") + " most per hidden area (1 = most important)"),
        })  # fmt: skip
        return Explanation(method=self.name, label=self.label, maps=[heat, heat.copy()], signed=False, scores=scores, text=text, extras=extras)


_VIT: dict[str, Any] = {"family": "vit", "cost": fixed_cost(8), "knobs": ViTParams, "scale": "sequential",
        "colours": "bright: the attention inside the mask that best explains the decision (one map for both faces)"}  # fmt: skip


def _about(what: str) -> str:
    return f"Correia et al.: the mask from both faces' {what} maps that best explains the decision (ViT models)."


@explainer("vit_lrp", label="ViT-LRP verification heatmap", requires=("vit", "gradients"), order=50, **_VIT,
           description=_about("Chefer's relevance propagation with attention gradients"))  # fmt: skip
class ViTLRP(ViTExplainer):
    """A registered variant (its key picks the attention maps)."""


@explainer("vit_lrp_nograd", label="No-Grad ViT-LRP verification heatmap", requires=("vit",), order=51, **_VIT,
           description=_about("Chefer's relevance propagation without gradients"))  # fmt: skip
class ViTLRPNoGrad(ViTExplainer):
    """A registered variant (its key picks the attention maps)."""


@explainer("vit_rollout", label="Rollout verification heatmap", requires=("vit",), order=52, **_VIT, description=_about("attention rollout"))
class ViTRollout(ViTExplainer):
    """A registered variant (its key picks the attention maps)."""
