"""Scaled Directed Divergence (SDD) class activation maps, after "Explainable Face
Recognition via Improved Localization" (Shadman et al., 2025):
``CAM_SDD = exp(alpha * (F * x_t - sum_k x_k))``, with ``x_t`` the target class's CAM and
``x_k`` the CAMs of the K most competing classes (K = 5 by default).

The CAMs are the exact decompositions of ``core.explainers.cam`` (each location's share of
the cosine similarity of the face to a class embedding, without the constant part, which is
the same at every location and cancels in the normalised map). How F and alpha are chosen
(the paper gives their ranges, not a formula; this is our rule, applied per face):

1. All CAMs are divided by ``max |x_t|`` (one common scale, so the target is in [-1, 1]).
2. ``F = clip(sum_k mean|x_k| / mean|x_t|, K, 50)``: the target is scaled to outweigh the
   competitors' summed magnitude, never by less than the number of competitors nor more
   than 50 (the paper's bounds ``[|S|, 50]``).
3. ``D = F x_t - sum_k x_k``; ``alpha = clip(ln(1000) / (max D - min D), 0.2, 0.4)``: the
   exponential spans three decades over the face when that is possible within the paper's
   range [0.2, 0.4], so the map is neither flat nor a single spike.
4. ``map = exp(alpha (D - max D))`` in (0, 1] (the same as ``exp(alpha D)`` divided by its
   maximum, without overflow), bilinearly upsampled to the crop.

Modes:
* ``identification``: a gallery gives class embeddings (the renormalised mean of each
  identity's photos); the face's predicted identity (the most similar class) is the target,
  the next K classes are the competitors. Each face of a pair is explained on its own.
* ``verification`` (the paper leaves it open): the other face of the pair is the target
  class, and the K gallery identities most similar to the face being explained are the
  competitors, leaving out identities the model would accept as the target's (class
  similarity to the target at or above the decision threshold). The faithfulness table
  (``python -m core faithfulness``) measures whether this helps against plain CAM.

Gallery photos that are the faces being explained (similarity >= 0.98) are left out.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import MethodRequirementError
from ..types import Explanation, FaceEmbedder, FacePair
from .base import BaseExplainer, explainer, fixed_cost
from .cam import Contributions, contributions, upsample
from .knobs import knob, params_from
from .perturb import crop_at_input_size

if TYPE_CHECKING:
    from ..gallery import Gallery

log = logging.getLogger(__name__)

F_MAX = 50.0
ALPHA_RANGE = (0.2, 0.4)
DYNAMIC_RANGE = 1000.0
DEFAULT_COMPETITORS = 5
MODES = ("verification", "identification")


@dataclass(frozen=True)
class SDDParams:
    """SDD's knobs (``core.explainers.knobs``)."""

    sdd_mode: str = knob("verification", "what the map explains: the pair's decision, or each face's gallery identity", choices=MODES)
    competitors: int = knob(DEFAULT_COMPETITORS, "how many gallery identities compete with the target", low=1)


def sdd_map(target: np.ndarray, competitors: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """The SDD map ``(H, W)`` in (0, 1] from the target CAM ``(H, W)`` and the competitors'
    CAMs ``(K, H, W)``, with the F and alpha used."""
    x_t = np.asarray(target, np.float64)
    x_k = np.asarray(competitors, np.float64)
    k = x_k.shape[0]
    if k < 1:
        raise ValueError("SDD needs at least one competing class")
    scale = float(np.abs(x_t).max())
    if scale == 0:
        return np.ones_like(x_t, np.float32), {"F": float("nan"), "alpha": float("nan"), "scale": 0.0}
    x_t, x_k = x_t / scale, x_k / scale
    f = float(np.clip(np.abs(x_k).mean((1, 2)).sum() / max(np.abs(x_t).mean(), 1e-12), k, F_MAX))
    d = f * x_t - x_k.sum(0)
    span = float(d.max() - d.min())
    alpha = float(np.clip(math.log(DYNAMIC_RANGE) / span, *ALPHA_RANGE)) if span > 0 else ALPHA_RANGE[1]
    out = np.exp(alpha * (d - d.max()))
    return out.astype(np.float32), {"F": f, "alpha": alpha, "scale": scale}


def _gallery(knobs: dict[str, Any]) -> Gallery:
    from ..gallery import Gallery

    g = knobs.get("gallery")
    if g is None:
        raise MethodRequirementError(
            "SDD needs a gallery of identities for its competing classes: pass gallery=PATH (a folder with one "
            "sub-folder of photos per identity, or an identities CSV file,identity), e.g. --gallery identities.csv"
        )
    if not isinstance(g, Gallery):
        raise MethodRequirementError("the gallery must be loaded first (Runner.explain does this for a path)")
    return g


class SDDExplainer(BaseExplainer):
    """SDD maps of both faces of a pair (verification or identification mode)."""

    def __init__(self, mode: str | None = None) -> None:
        if mode is not None and mode not in MODES:
            raise ValueError(f"SDD mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode = mode
        self.name = "sdd" if mode in (None, "verification") else "sdd_identification"

    def explain(self, pair: FacePair, embedder: FaceEmbedder, **knobs: Any) -> Explanation:
        params = params_from(SDDParams, knobs)
        mode = self.mode or params.sdd_mode
        k = int(params.competitors)
        gallery = _gallery(knobs)
        size = int(embedder.input_size)
        faces = [crop_at_input_size(f.image, size) for f in pair]
        con = contributions(embedder, faces, knobs.get("batch_size"))
        emb = F.normalize(con.embedding, dim=1).numpy()
        maps, grids, details = [], [], []
        # verification leaves out the photos of both faces, so both faces share one class set
        shared = gallery.classes(exclude=[emb[0], emb[1]]) if mode == "verification" else None
        for i in range(2):
            probe, other = emb[i], emb[1 - i]
            if mode == "identification":
                names, classes = gallery.classes(exclude=[probe])
                sims = classes @ probe
                order = np.argsort(-sims)
                if len(order) < 2:
                    raise MethodRequirementError(f"SDD identification needs at least 2 gallery identities, the gallery has {len(order)}")
                target_vec, target_name = classes[order[0]], names[order[0]]
                comp = order[1 : 1 + k]
            else:
                thr = knobs.get("decision_threshold")
                assert shared is not None  # verification mode
                names, classes = shared
                sims = classes @ probe
                allowed = np.ones(len(names), bool) if thr is None else classes @ other < float(thr)
                ranked = [j for j in np.argsort(-sims) if allowed[j]]
                if not ranked:
                    raise MethodRequirementError("SDD found no gallery identity other than the target's to compete with")
                target_vec, target_name = other, "the other face"
                comp = np.asarray(ranked[:k])
            targets = torch.from_numpy(np.vstack([target_vec[None], classes[comp]]))
            cams = _cams(con, i, targets)
            grid, used = sdd_map(cams[0], cams[1:])
            grids.append(grid)
            maps.append(upsample(grid, size))
            details.append({
                "target": target_name, "target_similarity": float(target_vec @ probe),
                "competitors": [names[j] for j in comp], "competitor_similarities": [float(sims[j]) for j in comp],
                **used,
            })  # fmt: skip
        scores = {"F_a": details[0]["F"], "F_b": details[1]["F"], "alpha_a": details[0]["alpha"], "alpha_b": details[1]["alpha"]}
        text = []
        for who, d in zip(("first", "second"), details, strict=True):
            text.append(f"SDD on the {who} face: target {d['target']} (similarity {d['target_similarity']:.3f}) against "
                        f"{', '.join(d['competitors'])}; F = {d['F']:.1f}, alpha = {d['alpha']:.2f}.")  # fmt: skip
        return Explanation(
            method=self.name, label=self.label, maps=maps, signed=False, scores=scores, text=text,
            extras={"mode": mode, "competitors": k, "gallery": gallery.source, "gallery_size": len(gallery), "faces": details,
                    "grid": grids, "meaning": "regions that support the target class more than the competing classes (1 = strongest)"},
        )  # fmt: skip


def _cams(con: Contributions, i: int, targets: torch.Tensor) -> np.ndarray:
    """CAMs ``(T, H, W)`` of face ``i`` against each target row, without the constant part."""
    n = targets.shape[0]
    rep = Contributions(con.loc[i : i + 1].expand(n, -1, -1), con.const, con.embedding[i : i + 1].expand(n, -1), con.grid)
    return rep.cam(targets, spread_constant=False).numpy()


_SDD: dict[str, Any] = {"family": "sdd", "requires": ("gradients",), "cost": fixed_cost(2), "knobs": SDDParams,
        "scale": "sequential", "needs_gallery": True,
        "colours": "bright: where the face is like its target and unlike the competing identities"}  # fmt: skip


@explainer("sdd", label="SDD CAM (verification)", order=40, **_SDD,
           description="SDD CAM (verification): the other face's CAM scaled against the CAMs of the most "
                       "similar gallery identities (needs a gallery).")  # fmt: skip
class SDDVerification(SDDExplainer):
    def __init__(self) -> None:
        super().__init__(None)


@explainer("sdd_identification", label="SDD CAM (identification)", order=41, **_SDD,
           description="SDD CAM (identification): each face's predicted gallery identity against the next ones (needs a gallery).")  # fmt: skip
class SDDIdentification(SDDExplainer):
    def __init__(self) -> None:
        super().__init__("identification")
