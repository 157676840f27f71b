"""Black-box removal and aggregation saliency ("MinPlus"): Mery and Morris, "On black-box
explanation for face verification" (WACV 2022) and Mery, "True black-box explanation in
facial analysis" (CVPR workshops 2022); the five maps used by "From Pixels to Words".

    H(x) = sum_k delta_k * g_k(x),   g_k = exp(-|x - c_k|^2 / (2 sigma^2)),  sigma = n_h / 8.5

The score of a probe image A against a gallery face B is s(A) = cos(N(A), N(B)). Regions are
soft Gaussian blobs g_k of width n_h centred on a grid with step d (centres d, 2d, ... < S).
A region is hidden by blending towards the hiding value h: A * (1 - g) + h * g.

- Single removal (S0-):    delta_k = s(A) - s(A with region k hidden).
- Greedy removal (S1-):    from A, hide at each step t the region whose removal gives the
  lowest score (among regions whose centre is still visible), keep it hidden, and credit it
  with delta = s_{t-1} - s_t; stop after ``steps`` steps or when the score falls below
  ``stop_score`` (0.01), as the authors' ``saliency_minus``.
- Single aggregation (S0+): start from the fully hidden image (every pixel h); delta_k =
  s(only region k shown) - s(fully hidden).
- Greedy aggregation (S1+): from the hidden image, show at each step the region that raises
  the score most, keep it shown, credit it with delta = s_t - s_{t-1}; stop after ``steps``
  steps or when s(A) - s_t <= ``stop_score``, as ``saliency_plus``.
- Average (MinPlus): (S0- + S1- + S0+ + S1+) / 4, as the authors average the raw maps.

Spreading the credits is the authors' ``heatmap`` step: each delta_k at its centre on a
sparse grid, ``cv2.filter2D`` with the region's Gaussian (an n_h x n_h kernel with peak 1)
and OpenCV's default border, ``BORDER_REFLECT_101``, so credits near an edge are mirrored
into it. As in their code, a grid centre on a pure-black pixel of the probe (the padding of
an aligned crop) is no region. Aggregation starts, as theirs, from near-black noise
(``np.random.rand(h, w, 3) * 2`` cast to uint8: every pixel and channel 0 or 1), seeded by
``seed`` (``agg_start="fill"`` starts from the hiding value instead). Maps are computed for
the probe against the gallery face and for the gallery against the probe. Each map computes
only what it needs (single removal: one forward pass per region and face), and the parts
are cached, so the other maps reuse them (and say so: ``extras["cached_from"]`` names the
method that computed a reused part and its cost).

The authors' defaults are for 256 x 256 images: n_h = 161, d = 16, 20 steps (their "fast
mode": n_h = 221, d = 48, 1 step). They are scaled here to the model's input size (n_h 71,
d 7 at 112). Deviations, all documented in the README:
- maps keep their sign and units (similarity change) instead of the authors' min-max
  stretch to [0, 1] for display. A negative value means hiding the region raised the
  similarity (evidence against the match), which the region table needs;
- a shown region is combined with those already shown as a union of soft masks,
  1 - (1 - m)(1 - g), then composited over the start image (the authors screen-blend pixel
  values, which is the same where blobs do not overlap);
- a greedy-removal candidate must still be visible at its centre (more than 5 % of it);
  the authors test for an exactly black pixel, which soft blends never quite reach;
- the noise is drawn by numpy's ``default_rng(seed)``, not the global ``np.random`` state;
- every candidate of a greedy step is embedded in one batch; a step's first candidates are
  the single-removal (single-aggregation) evaluations, which are reused.
"""

from __future__ import annotations

from typing import Any

from ..types import Explanation, FaceEmbedder, FacePair
from . import perturb
from .base import BaseExplainer, explainer

# the regions, part costs and searches live in .minplus; their names stay importable from here
from .minplus import AGG_STARTS as AGG_STARTS
from .minplus import ALIVE as ALIVE
from .minplus import METHODS as METHODS
from .minplus import NEEDS as NEEDS
from .minplus import PARTS as PARTS
from .minplus import PRESETS as PRESETS
from .minplus import REFERENCE_SIZE as REFERENCE_SIZE
from .minplus import SIGMA_DIVISOR as SIGMA_DIVISOR
from .minplus import MinPlusFace as MinPlusFace
from .minplus import RemovalParams as RemovalParams
from .minplus import blobs as blobs
from .minplus import forward_passes as forward_passes
from .minplus import grid_centres as grid_centres
from .minplus import minplus_face as minplus_face
from .minplus import minplus_pair as minplus_pair
from .minplus import spread as spread


class RemovalExplainer(BaseExplainer):
    """One of the five removal/aggregation maps as an ``Explainer``."""

    def __init__(self, method: str | None = None) -> None:
        method = method if method is not None else getattr(self, "name", None)  # a registered variant: its key
        if method not in METHODS:
            raise ValueError(f"unknown removal method {method!r}; use one of {', '.join(METHODS)}")
        self.name = method

    def explain(self, pair: FacePair, embedder: FaceEmbedder, **knobs: Any) -> Explanation:
        params = RemovalParams.from_knobs(**knobs)
        ledger = perturb.Ledger(self.name, self.label)
        a, b = minplus_pair(pair, embedder, params, knobs.get("batch_size"), knobs.get("progress"), NEEDS[self.name], ledger)
        maps = [a.get(self.name), b.get(self.name)]
        sigma, step = params.scaled(int(embedder.input_size))
        scores = {
            "mean_map_a": float(maps[0].mean()),
            "mean_map_b": float(maps[1].mean()),
            "similarity": a.score,
            "forward_passes": float(ledger.forward_passes),  # run by this call; see extras["cached_from"] for the rest
        }
        uses_start = any(p.endswith("aggregation") for p in NEEDS[self.name])
        if uses_start and a.hidden_score is not None and b.hidden_score is not None:  # aggregation ran: both are known
            scores |= {"hidden_similarity_a": a.hidden_score, "hidden_similarity_b": b.hidden_score}
        extras: dict[str, Any] = {
            "params": params.to_dict(), "preset": params.preset,
            "scaled": {"sigma": sigma, "grid_step": step, "kernel": params.kernel_size(int(embedder.input_size)),
                       "regions": [a.regions, b.regions]},
            "units": "change of cosine similarity, spread over Gaussian regions (peak 1)",
            "meaning": "positive: the region supports the similarity of the pair; negative: it works against it",
        }  # fmt: skip
        if uses_start:  # what aggregation started from, and its seed (also in params), for the report
            extras["start"] = {"image": params.start_fill(), "seed": params.seed}
        if "greedy_removal" in NEEDS[self.name]:
            extras["removal_path"] = [a.removal_path, b.removal_path]
        if "greedy_aggregation" in NEEDS[self.name]:
            extras["aggregation_path"] = [a.aggregation_path, b.aggregation_path]
        if (cached := ledger.cached_from()) is not None:  # parts computed by another call: whose, at what cost
            extras["cached_from"] = cached
        return Explanation(method=self.name, label=self.label, maps=maps, signed=True, scores=scores, extras=extras)


_REMOVAL: dict[str, Any] = {"family": "removal", "requires": ("blackbox",), "knobs": RemovalParams, "scale": "diverging",
            "colours": "green: the region raises the similarity of the pair; red: it lowers it "
                       "(change of cosine similarity spread over the region)"}  # fmt: skip


def _removal(key: str, label: str, order: int, what: str) -> Any:
    """``@explainer`` for one of the five maps: its cost is ``forward_passes`` of ``key``."""

    def cost(input_size: int, **knobs: Any) -> dict[str, int]:
        return forward_passes(key, input_size, **knobs)

    return explainer(key, label=label, order=order, cost=cost, description=f"Mery & Morris black-box saliency: {what}.", **_REMOVAL)


@_removal("single_removal", "Single removal (Mery & Morris)", 20, "similarity drop when each region alone is hidden")
class SingleRemoval(RemovalExplainer):
    """Each region hidden alone."""


@_removal("greedy_removal", "Greedy removal (Mery & Morris)", 21, "regions hidden one at a time, each time the one that lowers the similarity most")
class GreedyRemoval(RemovalExplainer):
    """Regions hidden greedily."""


@_removal("single_aggregation", "Single aggregation (Mery & Morris)", 22, "similarity gain when each region alone is shown on a hidden face")
class SingleAggregation(RemovalExplainer):
    """Each region shown alone."""


@_removal(
    "greedy_aggregation", "Greedy aggregation (Mery & Morris)", 23, "regions shown one at a time, each time the one that raises the similarity most"
)
class GreedyAggregation(RemovalExplainer):
    """Regions shown greedily."""


@_removal("minplus_average", "Average of removal and aggregation (MinPlus)", 24, "the mean of the four removal and aggregation maps (MinPlus)")
class MinPlusAverage(RemovalExplainer):
    """The mean of the four maps."""
