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

Spreading each delta_k over its blob g_k is the authors' ``heatmap`` step (filter2D of the
sparse grid with the same Gaussian, normalised to a peak of 1). Maps are computed for the
probe against the gallery face and for the gallery against the probe.

The authors' defaults are for 256 x 256 images: n_h = 161, d = 16, 20 steps (their "fast
mode": n_h = 221, d = 48, 1 step). They are scaled here to the model's input size (n_h 71,
d 7 at 112). Deviations, all documented in the README:
- maps keep their sign and units (similarity change) instead of the authors' min-max
  stretch to [0, 1] for display; a min-max of our map is theirs. A negative value means
  hiding the region raised the similarity (evidence against the match), which the region
  table needs;
- the hidden image is the hiding value everywhere (the authors start aggregation from
  near-black random noise in {0, 1}), and a shown region is combined with those already
  shown as a union of soft masks, 1 - (1 - m)(1 - g), then composited (the authors screen-
  blend pixel values, which is the same where blobs do not overlap);
- every candidate of a greedy step is embedded in one batch; a step's first candidates are
  the single-removal (single-aggregation) evaluations, which are reused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..types import Explanation, FaceEmbedder, FacePair
from . import perturb

log = logging.getLogger(__name__)

REFERENCE_SIZE = 256
SIGMA_DIVISOR = 8.5
# a greedy-removal candidate must still be visible at its centre (the authors skip centres
# whose pixel is already black)
ALIVE = 0.05
PRESETS: dict[str, dict[str, Any]] = {
    "full": {"region_size": 161, "grid_step": 16, "steps": 20},
    # coarser grid and 3 greedy steps: about 10x fewer forward passes
    "fast": {"region_size": 181, "grid_step": 36, "steps": 3},
}
METHODS = ("single_removal", "greedy_removal", "single_aggregation", "greedy_aggregation", "minplus_average")
LABELS = {
    "single_removal": "Single removal (Mery & Morris)",
    "greedy_removal": "Greedy removal (Mery & Morris)",
    "single_aggregation": "Single aggregation (Mery & Morris)",
    "greedy_aggregation": "Greedy aggregation (Mery & Morris)",
    "minplus_average": "Average of removal and aggregation (MinPlus)",
}


@dataclass(frozen=True)
class RemovalParams:
    """Knobs in pixels of a 256 x 256 image, as the authors give them (scaled to the model)."""

    region_size: int = 161  # n_h, the width of the Gaussian blob; sigma = n_h / 8.5
    grid_step: int = 16  # d, one region centre every d pixels
    steps: int = 20  # greedy steps
    hide: str | float | tuple = "black"  # the hiding value
    stop_score: float = 0.01
    seed: int = 0
    preset: str = "full"

    @classmethod
    def from_knobs(cls, **knobs: Any) -> RemovalParams:
        preset, base = perturb.preset_knobs(PRESETS, ("region_size", "grid_step", "steps", "hide", "stop_score", "seed"), knobs)
        hide = base.get("hide", "black")
        p = cls(region_size=int(base["region_size"]), grid_step=int(base["grid_step"]), steps=int(base["steps"]),
                hide=tuple(hide) if isinstance(hide, list) else hide, stop_score=float(base.get("stop_score", 0.01)),
                seed=int(base.get("seed", 0)), preset=preset)  # fmt: skip
        perturb.check_fill(p.hide)
        if p.region_size < 2 or p.grid_step < 1 or p.steps < 1:
            raise ValueError(f"region_size >= 2, grid_step >= 1 and steps >= 1 needed, got {p.region_size}, {p.grid_step}, {p.steps}")
        return p

    def scaled(self, size: int) -> tuple[float, int]:
        """(sigma, grid step) in pixels of a ``size`` crop."""
        f = size / REFERENCE_SIZE
        return self.region_size * f / SIGMA_DIVISOR, max(1, round(self.grid_step * f))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def grid_centres(size: int, step: int) -> np.ndarray:
    """Region centres (row, col): every ``step`` pixels from ``step`` to below ``size``."""
    c = np.arange(step, size, step)
    if c.size == 0:
        c = np.array([size // 2])
    yy, xx = np.meshgrid(c, c, indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], 1)


def blobs(size: int, centres: np.ndarray, sigma: float) -> torch.Tensor:
    """``(K, S, S)`` Gaussian blobs with peak 1 at each centre."""
    ax = torch.arange(size, dtype=torch.float32)
    cy = torch.as_tensor(centres[:, 0], dtype=torch.float32)[:, None]
    cx = torch.as_tensor(centres[:, 1], dtype=torch.float32)[:, None]
    gy = torch.exp(-((ax[None] - cy) ** 2) / (2 * sigma**2))  # (K, S)
    gx = torch.exp(-((ax[None] - cx) ** 2) / (2 * sigma**2))
    return gy[:, :, None] * gx[:, None, :]


@dataclass
class MinPlusFace:
    """The four maps of one face (probe against gallery), in similarity units, plus what
    happened: the greedy order and the scores along it."""

    single_removal: np.ndarray
    greedy_removal: np.ndarray
    single_aggregation: np.ndarray
    greedy_aggregation: np.ndarray
    score: float  # s(A)
    hidden_score: float  # s(fully hidden A)
    removal_path: list[tuple[int, int, float]]  # (row, col, score after the step)
    aggregation_path: list[tuple[int, int, float]]
    forward_passes: int

    @property
    def average(self) -> np.ndarray:
        return (self.single_removal + self.greedy_removal + self.single_aggregation + self.greedy_aggregation) / 4

    def get(self, method: str) -> np.ndarray:
        return self.average if method == "minplus_average" else getattr(self, method)


def _scores(p: perturb.Perturber, masks: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return p.embed(masks) @ target


def minplus_face(embedder: FaceEmbedder, image: np.ndarray, target: torch.Tensor, params: RemovalParams,
                 batch_size: int | None = None, progress: Callable[[float, str], Any] | None = None) -> MinPlusFace:  # fmt: skip
    """The four MinPlus maps of ``image`` (the probe) against ``target`` (the gallery's
    unit embedding)."""
    size = int(embedder.input_size)
    sigma, step = params.scaled(size)
    centres = grid_centres(size, step)
    g = blobs(size, centres, sigma)  # (K, S, S)
    k = g.shape[0]
    flat = g.reshape(k, -1)
    p = perturb.Perturber(embedder, image, params.hide, params.seed, batch_size)
    before = perturb.STATS.forward_passes
    target = target.float().cpu()
    total_steps = 2 * (1 + params.steps)
    done = 0

    def tick(msg: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(min(1.0, done / total_steps), msg)

    # scores of the intact and the fully hidden image
    base = _scores(p, torch.stack([torch.zeros(size, size), torch.ones(size, size)]), target)
    s_full, s_hidden = float(base[0]), float(base[1])

    # -- removal: visible fraction v; hidden mask 1 - v ---------------------------------
    single_rm = _scores(p, g, target)  # region k hidden alone
    tick("single removal")
    d0 = s_full - single_rm
    h_single_rm = (d0.double() @ flat.double()).reshape(size, size)
    h_greedy_rm = torch.zeros(size * size, dtype=torch.float64)
    v = torch.ones(size, size)
    s_prev = s_full
    path_rm: list[tuple[int, int, float]] = []
    cand_scores = single_rm
    for t in range(params.steps):
        if s_prev <= params.stop_score:
            break
        alive = v[centres[:, 0], centres[:, 1]] > ALIVE
        if not bool(alive.any()):
            break
        if t > 0:
            idx = torch.nonzero(alive).squeeze(1)
            hidden = 1 - v[None] * (1 - g[idx])
            cand_scores = torch.full((k,), float("inf"))
            cand_scores[idx] = _scores(p, hidden, target)
        else:
            cand_scores = torch.where(alive, cand_scores, torch.tensor(float("inf")))
        j = int(torch.argmin(cand_scores))
        s_t = float(cand_scores[j])
        h_greedy_rm += (s_prev - s_t) * flat[j].double()
        v = v * (1 - g[j])
        path_rm.append((int(centres[j, 0]), int(centres[j, 1]), s_t))
        s_prev = s_t
        tick(f"greedy removal step {t + 1}")

    # -- aggregation: shown fraction u; hidden mask 1 - u --------------------------------
    single_ag = _scores(p, 1 - g, target)  # only region k shown
    tick("single aggregation")
    h_single_ag = ((single_ag - s_hidden).double() @ flat.double()).reshape(size, size)
    h_greedy_ag = torch.zeros(size * size, dtype=torch.float64)
    u = torch.zeros(size, size)
    s_prev = s_hidden
    path_ag: list[tuple[int, int, float]] = []
    cand_scores = single_ag
    for t in range(params.steps):
        if s_full - s_prev <= params.stop_score:
            break
        if t > 0:
            shown = 1 - (1 - u[None]) * (1 - g)
            cand_scores = _scores(p, 1 - shown, target)
        j = int(torch.argmax(cand_scores))
        s_t = float(cand_scores[j])
        h_greedy_ag += (s_t - s_prev) * flat[j].double()
        u = 1 - (1 - u) * (1 - g[j])
        path_ag.append((int(centres[j, 0]), int(centres[j, 1]), s_t))
        s_prev = s_t
        tick(f"greedy aggregation step {t + 1}")

    def as_map(h: torch.Tensor) -> np.ndarray:
        return h.reshape(size, size).numpy().astype(np.float32)

    return MinPlusFace(
        single_removal=as_map(h_single_rm), greedy_removal=as_map(h_greedy_rm),
        single_aggregation=as_map(h_single_ag), greedy_aggregation=as_map(h_greedy_ag),
        score=s_full, hidden_score=s_hidden, removal_path=path_rm, aggregation_path=path_ag,
        forward_passes=perturb.STATS.forward_passes - before,
    )  # fmt: skip


def minplus_pair(pair: FacePair, embedder: FaceEmbedder, params: RemovalParams | None = None, batch_size: int | None = None,
                 progress: Callable[[float, str], Any] | None = None) -> tuple[MinPlusFace, MinPlusFace]:  # fmt: skip
    """MinPlus maps of face a against b and of b against a (cached)."""
    params = params or RemovalParams()
    size = int(embedder.input_size)
    mk = perturb.model_key(embedder)
    imgs = [perturb.crop_at_input_size(f.image, size) for f in pair]
    key = perturb.digest("minplus", mk, imgs[0], imgs[1], params.to_dict())
    cached = perturb.CACHE.get(key)
    if cached is not None:
        perturb.STATS.cache_hits += 1
        return cached
    ref = perturb.embed_faces(embedder, imgs, batch_size)

    def sub(lo: float) -> Callable[[float, str], Any] | None:
        if progress is None:
            return None
        return lambda f, msg: progress(lo + f / 2, msg)

    a = minplus_face(embedder, imgs[0], ref[1], params, batch_size, sub(0.0))
    b = minplus_face(embedder, imgs[1], ref[0], params, batch_size, sub(0.5))
    perturb.CACHE.put(key, (a, b))
    return a, b


def forward_passes(input_size: int, **knobs: Any) -> tuple[str, int]:
    """(share key, upper bound of forward passes) for the five maps of one pair; greedy
    searches that stop early cost less."""
    p = RemovalParams.from_knobs(**knobs)
    sigma, step = p.scaled(input_size)
    k = len(grid_centres(input_size, step))
    per_face = 2 + k + max(0, p.steps - 1) * k + k + max(0, p.steps - 1) * k
    return perturb.digest("minplus", sigma, step, p.steps, p.hide, p.seed), 2 + 2 * per_face


class RemovalExplainer:
    """One of the five removal/aggregation maps as an ``Explainer``."""

    requires = frozenset({"blackbox"})

    def __init__(self, method: str) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown removal method {method!r}; use one of {', '.join(METHODS)}")
        self.name = method
        self.label = LABELS[method]

    def explain(self, pair: FacePair, embedder: FaceEmbedder, **knobs: Any) -> Explanation:
        params = RemovalParams.from_knobs(**knobs)
        before = perturb.STATS.forward_passes
        a, b = minplus_pair(pair, embedder, params, knobs.get("batch_size"), knobs.get("progress"))
        maps = [a.get(self.name), b.get(self.name)]
        sigma, step = params.scaled(int(embedder.input_size))
        scores = {
            "mean_map_a": float(maps[0].mean()),
            "mean_map_b": float(maps[1].mean()),
            "similarity": a.score,
            "hidden_similarity_a": a.hidden_score,
            "hidden_similarity_b": b.hidden_score,
            "forward_passes": float(perturb.STATS.forward_passes - before),
        }
        extras: dict[str, Any] = {
            "params": params.to_dict(), "preset": params.preset,
            "scaled": {"sigma": sigma, "grid_step": step, "regions": len(grid_centres(int(embedder.input_size), step))},
            "units": "change of cosine similarity, spread over Gaussian regions (peak 1)",
            "meaning": "positive: the region supports the similarity of the pair; negative: it works against it",
        }  # fmt: skip
        if self.name.startswith("greedy_removal") or self.name == "minplus_average":
            extras["removal_path"] = [a.removal_path, b.removal_path]
        if self.name.startswith("greedy_aggregation") or self.name == "minplus_average":
            extras["aggregation_path"] = [a.aggregation_path, b.aggregation_path]
        return Explanation(method=self.name, label=self.label, maps=maps, signed=True, scores=scores, extras=extras)

    def close(self) -> None:
        pass
