"""RISE: Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
Models" (BMVC 2018), for verification.

    S(lambda) = 1 / (E[M] * N) * sum_i f(I . M_i) * M_i(lambda)                  (eq. 6)

Each mask M_i is a random binary ``cells x cells`` grid (a cell kept with probability ``p``),
upsampled bilinearly to ``(cells + 1) * C`` pixels (``C = ceil(S / cells)``) and cropped at a
random shift in ``[0, C)`` (section 3.2); E[M] = p. Here ``f(I . M_i)`` is the cosine similarity
of the face with the mask applied (hidden pixels set to ``fill``; black is the paper's
``I . M``) to the other, unhidden face; each face gets its own map. Deviation: the
paper's f is a class probability; a cosine can be negative, so the map is shown min-max
scaled to [0, 1] (the template's rule for unsigned maps) and eq. 6's own range is in the scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .base import explainer
from .knobs import PRESET_NAMES, fill_knob, knob
from .perturbation import PerturbationExplainer


@dataclass(frozen=True)
class RiseParams:
    """RISE's knobs (``core.explainers.knobs``); the paper uses N = 4000 to 8000, s = 7, p = 0.5."""

    masks: int = knob(2000, "random masks per face (the paper: 4000 to 8000)", low=1, high=100_000)
    cells: int = knob(7, "grid cells per side of each random mask (s)", low=2, high=64)
    keep: float = knob(0.5, "probability p that a grid cell is kept (shown)", low=0.01, high=1.0)
    fill: str | float | tuple = fill_knob()
    seed: int = knob(0, "seed of the random masks and the noise fill", low=0)
    preset: str = knob("full", "the starting value of masks", choices=PRESET_NAMES)


#: ``full``: 2000 masks (half the paper's smallest N, for a CPU); ``fast``: 500 masks, a
#: cheaper start whose map is noisier (its spread falls as 1 / sqrt(N), section 3.2).
PRESETS: dict[str, RiseParams] = {"full": RiseParams(), "fast": RiseParams(masks=500, preset="fast")}


def rise_masks(size: int, n: int, cells: int, keep: float, rng: np.random.Generator) -> torch.Tensor:
    """``(n, size, size)`` float32 masks in [0, 1] where 1 = kept (section 3.2)."""
    c = math.ceil(size / cells)
    grid = torch.from_numpy((rng.random((n, 1, cells, cells)) < keep).astype(np.float32))
    up = F.interpolate(grid, size=((cells + 1) * c, (cells + 1) * c), mode="bilinear", align_corners=False)[:, 0]
    dy, dx = rng.integers(0, c, n), rng.integers(0, c, n)
    out = torch.stack([up[i, y : y + size, x : x + size] for i, (y, x) in enumerate(zip(dy, dx, strict=True))])
    return out.clamp_(0.0, 1.0)  # bilinear weights may overshoot 1 by a rounding error


def _cost(input_size: int, **knobs: Any) -> int:
    return 2 * Rise.params_of(knobs).masks + 2


@explainer("rise", label="RISE (random masks, Petsiuk et al.)", family="perturbation", requires=("blackbox",), cost=_cost,
           knobs=RiseParams, scale="sequential", order=15,
           description="Petsiuk et al. RISE: the mean of random masks weighted by the similarity each masked face keeps to the other face.",
           colours="bright: where the face stays like the other face when it is shown (the mean similarity of the masks that show it)")  # fmt: skip
class Rise(PerturbationExplainer):
    params = RiseParams
    presets = PRESETS
    meaning = "each pixel: the similarity to the other face, averaged over the random masks that show it (eq. 6)"

    def masks(self, size: int, params: Any, rng: np.random.Generator) -> torch.Tensor:
        return 1.0 - rise_masks(size, params.masks, params.cells, params.keep, rng)  # the template's masks hide (1 = hidden)

    def saliency(self, masks: torch.Tensor, scores: torch.Tensor, params: Any) -> np.ndarray:
        shown = 1.0 - masks
        return (torch.einsum("n,nhw->hw", scores.double(), shown.double()) / (params.keep * len(scores))).numpy()
