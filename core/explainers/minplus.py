"""The regions, part costs and searches of MinPlus (Mery and Morris, WACV 2022; Mery, CVPR
workshops 2022): ``H(x) = sum_k delta_k * g_k(x)``, ``g_k = exp(-|x - c_k|^2 / (2 sigma^2))``,
``sigma = n_h / 8.5``. The method, its four parts and the deviations from the authors' code
are described in ``core.explainers.removal``, whose ``RemovalExplainer`` shows them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import cv2
import numpy as np
import torch

from ..types import FaceEmbedder, FacePair
from . import perturb
from .knobs import PRESET_NAMES, check_knobs, fill_knob, from_preset, knob

log = logging.getLogger(__name__)

REFERENCE_SIZE = 256
SIGMA_DIVISOR = 8.5
# a greedy-removal candidate must still be visible at its centre (the authors skip centres
# whose pixel is already black)
ALIVE = 0.05
METHODS = ("single_removal", "greedy_removal", "single_aggregation", "greedy_aggregation", "minplus_average")
PARTS = METHODS[:4]
#: The parts each map needs (each part is computed once per face and cached).
NEEDS = {m: (m,) for m in PARTS} | {"minplus_average": PARTS}
AGG_STARTS = ("noise", "fill")


@dataclass(frozen=True)
class RemovalParams:
    """Knobs in pixels of a 256 x 256 image, as the authors give them (scaled to the model)."""

    region_size: int = knob(161, "width n_h of each Gaussian region at 256 px (sigma = n_h / 8.5)", low=2)
    grid_step: int = knob(16, "spacing d of the region centres at 256 px (below 256: at least one centre)", low=1, high=REFERENCE_SIZE - 1)
    steps: int = knob(20, "greedy removal/aggregation steps", low=1)
    fill: str | float | tuple = fill_knob()
    stop_score: float = knob(0.01, "greedy searches stop once the similarity falls below this", low=-1.0, high=1.0)
    seed: int = knob(0, "seed of the aggregation's start noise", low=0)
    agg_start: str = knob("noise", "what aggregation starts from: the authors' near-black noise, or the hiding value", choices=AGG_STARTS)
    preset: str = knob("full", "the starting values of region_size, grid_step and steps", choices=PRESET_NAMES)

    @classmethod
    def from_knobs(cls, **knobs: Any) -> RemovalParams:
        p = from_preset(PRESETS, knobs)
        p = replace(p, region_size=int(p.region_size), grid_step=int(p.grid_step), steps=int(p.steps), stop_score=float(p.stop_score),
                    seed=int(p.seed), fill=tuple(p.fill) if isinstance(p.fill, list) else p.fill)  # fmt: skip
        perturb.check_fill(p.fill)
        check_knobs(p)
        return p

    def scaled(self, size: int) -> tuple[float, int]:
        """(sigma, grid step) in pixels of a ``size`` crop."""
        f = size / REFERENCE_SIZE
        return self.region_size * f / SIGMA_DIVISOR, max(1, round(self.grid_step * f))

    def kernel_size(self, size: int) -> int:
        """The heatmap kernel's width in pixels of a ``size`` crop: n_h scaled, made odd."""
        k = max(1, round(self.region_size * size / REFERENCE_SIZE))
        return k if k % 2 == 1 else k + 1

    def start_fill(self) -> str | float | tuple:
        """What aggregation starts from (the fully hidden image)."""
        return "near_black_noise" if self.agg_start == "noise" else self.fill

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, RemovalParams] = {
    "full": RemovalParams(),
    # coarser grid and 3 greedy steps: about 10x fewer forward passes
    "fast": RemovalParams(region_size=181, grid_step=36, steps=3, preset="fast"),
}


def grid_centres(size: int, step: int, image: np.ndarray | None = None) -> np.ndarray:
    """Region centres (row, col): every ``step`` pixels from ``step`` to below ``size``;
    with ``image``, without the centres on its pure-black pixels (as the authors' code)."""
    c = np.arange(step, size, step)
    if c.size == 0:
        c = np.array([size // 2])
    yy, xx = np.meshgrid(c, c, indexing="ij")
    centres = np.stack([yy.ravel(), xx.ravel()], 1)
    if image is not None:
        keep = np.asarray(image)[centres[:, 0], centres[:, 1]].reshape(len(centres), -1).any(1)
        if keep.any():
            centres = centres[keep]
    return centres


def spread(credits: torch.Tensor | np.ndarray, centres: np.ndarray, size: int, sigma: float, ksize: int) -> np.ndarray:
    """The authors' heatmap: each region's credit at its centre of a sparse ``size`` grid,
    correlated with a ``ksize`` Gaussian of peak 1 (``cv2.filter2D``, border
    ``BORDER_REFLECT_101``: a credit near an edge is mirrored into it). float64 ``(S, S)``."""
    sparse = np.zeros((size, size), np.float64)
    np.add.at(sparse, (centres[:, 0], centres[:, 1]), np.asarray(credits, np.float64))
    g = cv2.getGaussianKernel(ksize, sigma, cv2.CV_64F)
    kernel = g @ g.T
    return cv2.filter2D(sparse, cv2.CV_64F, kernel / kernel.max(), borderType=cv2.BORDER_REFLECT_101)


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
    """The maps of one face (probe against gallery) that were asked for, in similarity
    units (None for a part not computed), plus what happened: the greedy orders and the
    scores along them."""

    single_removal: np.ndarray | None
    greedy_removal: np.ndarray | None
    single_aggregation: np.ndarray | None
    greedy_aggregation: np.ndarray | None
    score: float  # s(A)
    hidden_score: float | None  # s(the start image), when aggregation ran
    removal_path: list[tuple[int, int, float]]  # (row, col, score after the step)
    aggregation_path: list[tuple[int, int, float]]
    forward_passes: int
    regions: int  # region centres used (the grid less centres on pure-black pixels)

    @property
    def average(self) -> np.ndarray:
        sr, gr, sa, ga = self.single_removal, self.greedy_removal, self.single_aggregation, self.greedy_aggregation
        if sr is None or gr is None or sa is None or ga is None:
            raise ValueError("the average needs all four maps; compute them with parts=PARTS")
        return (sr + gr + sa + ga) / 4

    def get(self, method: str) -> np.ndarray:
        out = self.average if method == "minplus_average" else getattr(self, method)
        if out is None:
            raise ValueError(f"{method} was not computed for this face")
        return out


def _scores(p: perturb.Perturber, masks: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return p.embed(masks) @ target


class _Probe:
    """One probe against one target: its regions, its two perturbers (hiding for removal,
    the start image for aggregation) and a cache of the parts computed, keyed by ``key``
    (passes and cached parts served go on ``ledger``)."""

    def __init__(self, embedder: FaceEmbedder, image: np.ndarray, target: torch.Tensor, score: float, params: RemovalParams,
                 batch_size: int | None, key: str, ledger: perturb.Ledger) -> None:  # fmt: skip
        self.size = size = int(embedder.input_size)
        self.sigma, step = params.scaled(size)
        self.ksize = params.kernel_size(size)
        self.centres = grid_centres(size, step, image)
        self.g = blobs(size, self.centres, self.sigma)
        self.params, self.target, self.score, self.key, self.ledger = params, target.float().cpu(), score, key, ledger
        self.remove = perturb.Perturber(embedder, image, params.fill, params.seed, batch_size, ledger)
        self.show = perturb.Perturber(embedder, image, params.start_fill(), params.seed, batch_size, ledger)

    def cached(self, part: str, compute: Callable[[], Any]) -> Any:
        p = self.params
        knobs: tuple[Any, ...] = (
            (p.region_size, p.grid_step, p.fill) if part.endswith("removal") else (p.region_size, p.grid_step, p.start_fill(), p.seed)
        )
        if part.startswith("greedy"):
            knobs += (p.steps, p.stop_score)
        return perturb.remember(perturb.digest("minplus-part", part, self.key, *knobs), compute, self.ledger)

    def heat(self, credits: torch.Tensor | np.ndarray) -> np.ndarray:
        return spread(credits, self.centres, self.size, self.sigma, self.ksize).astype(np.float32)

    # -- removal: visible fraction v; hidden mask 1 - v ---------------------------------
    def single_removal(self) -> torch.Tensor:
        """s(A with region k hidden) for every region k."""
        return self.cached("single_removal", lambda: _scores(self.remove, self.g, self.target))

    def greedy_removal(self) -> tuple[torch.Tensor, list[tuple[int, int, float]]]:
        def run() -> tuple[torch.Tensor, list[tuple[int, int, float]]]:
            g, centres, k = self.g, self.centres, len(self.centres)
            credits = torch.zeros(k, dtype=torch.float64)
            v = torch.ones(self.size, self.size)
            s_prev, path = self.score, []
            cand_scores = self.single_removal()
            for t in range(self.params.steps):
                if s_prev <= self.params.stop_score:
                    break
                alive = v[centres[:, 0], centres[:, 1]] > ALIVE
                if not bool(alive.any()):
                    break
                if t > 0:
                    idx = torch.nonzero(alive).squeeze(1)
                    cand_scores = torch.full((k,), float("inf"))
                    cand_scores[idx] = _scores(self.remove, 1 - v[None] * (1 - g[idx]), self.target)
                else:
                    cand_scores = torch.where(alive, cand_scores, torch.tensor(float("inf")))
                j = int(torch.argmin(cand_scores))
                s_t = float(cand_scores[j])
                credits[j] += s_prev - s_t
                v = v * (1 - g[j])
                path.append((int(centres[j, 0]), int(centres[j, 1]), s_t))
                s_prev = s_t
            return credits, path

        return self.cached("greedy_removal", run)

    # -- aggregation: shown fraction u; hidden mask 1 - u --------------------------------
    def single_aggregation(self) -> tuple[float, torch.Tensor]:
        """(s(start image), s(only region k shown) for every region k)."""

        def run() -> tuple[float, torch.Tensor]:
            s_hidden = float(_scores(self.show, torch.ones(1, self.size, self.size), self.target)[0])
            return s_hidden, _scores(self.show, 1 - self.g, self.target)

        return self.cached("single_aggregation", run)

    def greedy_aggregation(self) -> tuple[torch.Tensor, list[tuple[int, int, float]]]:
        def run() -> tuple[torch.Tensor, list[tuple[int, int, float]]]:
            g, centres = self.g, self.centres
            s_prev, cand_scores = self.single_aggregation()
            credits = torch.zeros(len(centres), dtype=torch.float64)
            u = torch.zeros(self.size, self.size)
            path = []
            for t in range(self.params.steps):
                if self.score - s_prev <= self.params.stop_score:
                    break
                if t > 0:
                    cand_scores = _scores(self.show, (1 - u[None]) * (1 - g), self.target)
                j = int(torch.argmax(cand_scores))
                s_t = float(cand_scores[j])
                credits[j] += s_t - s_prev
                u = 1 - (1 - u) * (1 - g[j])
                path.append((int(centres[j, 0]), int(centres[j, 1]), s_t))
                s_prev = s_t
            return credits, path

        return self.cached("greedy_aggregation", run)


def minplus_face(embedder: FaceEmbedder, image: np.ndarray, target: torch.Tensor, params: RemovalParams, batch_size: int | None = None,
                 progress: Callable[[float, str], Any] | None = None, parts: Sequence[str] = PARTS, score: float | None = None,
                 key: str | None = None, ledger: perturb.Ledger | None = None) -> MinPlusFace:  # fmt: skip
    """The MinPlus maps in ``parts`` of ``image`` (the probe) against ``target`` (the
    gallery's unit embedding). ``score`` is s(A) when known (else one forward pass);
    ``key`` names the probe and target for the cache of parts (else their digests)."""
    ledger = ledger if ledger is not None else perturb.Ledger()
    before = ledger.forward_passes
    if score is None:
        score = float(perturb.embed_faces(embedder, [image], batch_size, ledger)[0] @ target.float().cpu())
    key = key or perturb.digest(perturb.model_key(embedder), image, target)
    probe = _Probe(embedder, image, target, score, params, batch_size, key, ledger)
    maps: dict[str, np.ndarray | None] = dict.fromkeys(PARTS)
    paths: dict[str, list[tuple[int, int, float]]] = {"greedy_removal": [], "greedy_aggregation": []}
    greedy = {"greedy_removal": probe.greedy_removal, "greedy_aggregation": probe.greedy_aggregation}
    hidden: float | None = None
    for i, part in enumerate(p for p in PARTS if p in parts):
        if progress is not None:
            progress(i / len(parts), part.replace("_", " "))
        if part == "single_removal":
            maps[part] = probe.heat(score - probe.single_removal())
        elif part == "single_aggregation":
            hidden, shown = probe.single_aggregation()
            maps[part] = probe.heat(shown - hidden)
        else:
            credits, paths[part] = greedy[part]()
            maps[part] = probe.heat(credits)
    if progress is not None:
        progress(1.0, "done")
    if hidden is None and any(p.endswith("aggregation") for p in parts):
        hidden = probe.single_aggregation()[0]
    return MinPlusFace(maps["single_removal"], maps["greedy_removal"], maps["single_aggregation"], maps["greedy_aggregation"],
                       score=score, hidden_score=hidden, removal_path=paths["greedy_removal"], aggregation_path=paths["greedy_aggregation"],
                       forward_passes=ledger.forward_passes - before, regions=len(probe.centres))  # fmt: skip


def minplus_pair(pair: FacePair, embedder: FaceEmbedder, params: RemovalParams | None = None, batch_size: int | None = None,
                 progress: Callable[[float, str], Any] | None = None, parts: Sequence[str] = PARTS,
                 ledger: perturb.Ledger | None = None) -> tuple[MinPlusFace, MinPlusFace]:  # fmt: skip
    """The MinPlus maps in ``parts`` of face a against b and of b against a (cached, the
    pair and each part, with who computed them; passes and parts served go on ``ledger``)."""
    params = params or RemovalParams()
    ledger = ledger if ledger is not None else perturb.Ledger()
    parts = tuple(p for p in PARTS if p in parts)
    size = int(embedder.input_size)
    mk = perturb.model_key(embedder)
    imgs = [perturb.crop_at_input_size(f.image, size) for f in pair]
    key = perturb.digest("minplus", mk, imgs[0], imgs[1], params.to_dict(), parts)
    return perturb.remember(key, lambda: _minplus_pair(embedder, imgs, params, batch_size, progress, parts, ledger), ledger)


def _minplus_pair(embedder: FaceEmbedder, imgs: list[np.ndarray], params: RemovalParams, batch_size: int | None,
                  progress: Callable[[float, str], Any] | None, parts: tuple[str, ...],
                  ledger: perturb.Ledger) -> tuple[MinPlusFace, MinPlusFace]:  # fmt: skip
    ref_key = perturb.digest("minplus-ref", perturb.model_key(embedder), imgs[0], imgs[1])
    ref = perturb.remember(ref_key, lambda: perturb.embed_faces(embedder, imgs, batch_size, ledger), ledger)
    score = float(ref[0] @ ref[1])

    def sub(lo: float) -> Callable[[float, str], Any] | None:
        if progress is None:
            return None
        return lambda f, msg: progress(lo + f / 2, msg)

    a = minplus_face(embedder, imgs[0], ref[1], params, batch_size, sub(0.0), parts, score, perturb.digest(ref_key, "a"), ledger)
    b = minplus_face(embedder, imgs[1], ref[0], params, batch_size, sub(0.5), parts, score, perturb.digest(ref_key, "b"), ledger)
    return a, b


def forward_passes(method: str, input_size: int, **knobs: Any) -> dict[str, int]:
    """Forward passes of ``method`` on one pair, as ``{share key: n}`` of the parts it
    needs (the registry counts a part shared by several methods once); greedy searches
    that stop early cost less, and centres on black pixels are not counted off."""
    p = RemovalParams.from_knobs(**knobs)
    sigma, step = p.scaled(input_size)
    k = len(grid_centres(input_size, step))
    single = {"single_removal": k, "single_aggregation": k + 1}
    common = (sigma, step, p.fill)
    out = {perturb.digest("minplus-ref"): 2}
    for part in {q for m in NEEDS[method] for q in (m, m.replace("greedy", "single"))}:
        knobs_key = common + ((p.start_fill(), p.seed) if part.endswith("aggregation") else ())
        if part.startswith("greedy"):
            out[perturb.digest("minplus", part, *knobs_key, p.steps, p.stop_score)] = 2 * max(0, p.steps - 1) * k
        else:
            out[perturb.digest("minplus", part, *knobs_key)] = 2 * single[part]
    return out
