"""Occlusion X-Maps: Knoche, Teepe, Hörmann, Rigoll, "Explainable Model-Agnostic Similarity
and Confidence in Face Verification" (WACV workshops 2023).

    S = sum_i (d_i - d_orig) * M_i / N,   S_bar = sum_k S_k / (p_k^2 * |p|)        (eq. 9, 10)

Algorithm 1 slides a patch of size p with stride s over the aligned crop, giving N occluded
images O_i and masks M_i (1 where hidden). Every occluded image of both faces is embedded
once; the three selections of cosine distances d_i then come from the same embeddings:

- method 1 (eq. 6): d_i = mean_j d(F1_i, F2_j), and symmetrically for face 2. For unit
  vectors mean_j (1 - F1_i . F2_j) = 1 - F1_i . mean_j F2_j, so the N x N distance matrix is
  never materialised (a test checks equality with the explicit matrix);
- method 2 (eq. 7): d_i = d(F1_i, N(I2)) and d(N(I1), F2_i);
- method 3 (eq. 8): d_i = d(F1_i, F2_i), co-located occlusions, one map shared by both faces.

S > 0 where hiding a region increases the distance, i.e. the region makes the faces similar
(green); S < 0 where hiding it makes them closer (dissimilar, red). Maps for p in {7, 14, 28}
and s = 5 on a 112 crop (scaled with the model's input size) are averaged with weights
1/p^2, blurred with an s x s Gaussian kernel and sigma = s, and normalised to [-1, 1].

As the authors' code: a patch of size p is their filled ``cv2.rectangle((x, y), (x + p,
y + p))``, which includes both corners, so it hides (p + 1) x (p + 1) pixels (8, 15 and 29
for the full preset; ``patch_geometry="exact"`` hides p x p, which alone moves the maps to
Pearson 0.995-0.999 against theirs); the blur uses OpenCV's default border
(``BORDER_REFLECT_101``, as their ``cv2.GaussianBlur``); "normalisation to [-1, 1]" is
division by the largest absolute value (their ``normalize()``; their [0, 1] shift only feeds
the colour map), ``extras['scale']`` keeps the factor, so ``map * scale`` is S_bar.

Where this differs from the paper and the authors' code (also in the README):
- patch positions cover the whole crop: ``range(0, S - w + 1, s)`` (w the hidden width)
  plus a last position flush with the right and bottom edges when the stride does not land
  there (the authors' code uses ``range(0, S - p, s)`` and never occludes the last pixels,
  which would leave those pixels without a value);
- the occluded embeddings are computed once per face and scale and shared by the three
  methods (the authors recompute them per method), and cached (see ``perturb.CACHE``): a
  method served them says which method computed them and at what cost
  (``extras["cached_from"]``), its ``forward_passes`` score counts only what it ran;
- when the scaled stride is even, the blur kernel is s + 1 (OpenCV needs odd kernels).

The sensitivity-study knobs: ``fill`` (black, grey, white, noise, mean or a value),
``patch_shape`` (``rect`` or ``round``) and ``edge_blur`` (Gaussian sigma of the patch edge
in pixels at 112, 0 = hard edge).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import cv2
import numpy as np
import torch

from ..models.incremental import enabled as inc_enabled
from ..types import Explanation, FaceEmbedder, FacePair
from . import perturb
from .base import BaseExplainer, explainer
from .knobs import PRESET_NAMES, check_knobs, fill_knob, from_preset, knob

log = logging.getLogger(__name__)

REFERENCE_SIZE = 112
PATCH_SIZES = (7, 14, 28)
STRIDE = 5
#: How a patch of size p is drawn: "authors" as the authors' filled cv2.rectangle from (x, y)
#: to (x + p, y + p), both corners included ((p + 1)^2 pixels); "exact" p x p pixels.
PATCH_GEOMETRIES = ("authors", "exact")
METHODS = (1, 2, 3)


@dataclass(frozen=True)
class XMapParams:
    """Knobs of the X-Map, in pixels of a 112 x 112 crop (scaled to the model's size)."""

    patch_sizes: tuple[int, ...] = knob(PATCH_SIZES, "patch sizes in pixels of a 112 px crop (one map per size, then combined)",
                                        low=1, high=REFERENCE_SIZE)  # fmt: skip
    stride: int = knob(STRIDE, "patch stride in pixels of a 112 px crop", low=1, high=REFERENCE_SIZE)
    fill: str | float | tuple = fill_knob()
    patch_shape: str = knob("rect", "the patch's shape", choices=("rect", "round"))
    edge_blur: float = knob(0.0, "Gaussian blur of the patch's edge (sigma in pixels at 112 px)", low=0.0, high=REFERENCE_SIZE)
    seed: int = knob(0, "seed of the noise fill", low=0)
    patch_geometry: str = knob("authors", "authors: (p + 1)^2 pixels, as their cv2.rectangle; exact: p x p", choices=PATCH_GEOMETRIES)
    preset: str = knob("full", "the starting values of patch_sizes and stride", choices=PRESET_NAMES)

    @classmethod
    def from_knobs(cls, **knobs: Any) -> XMapParams:
        p = from_preset(PRESETS, knobs)
        sizes = (p.patch_sizes,) if isinstance(p.patch_sizes, (int, float)) else p.patch_sizes
        p = replace(p, patch_sizes=tuple(int(x) for x in sizes), stride=int(p.stride), edge_blur=float(p.edge_blur), seed=int(p.seed))
        check_knobs(p)
        if isinstance(p.fill, list):
            object.__setattr__(p, "fill", tuple(p.fill))
        perturb.check_fill(p.fill)
        return p

    def scaled(self, size: int) -> tuple[list[int], int, float]:
        """Patch sizes, stride and edge blur in pixels of a ``size`` crop."""
        f = size / REFERENCE_SIZE
        return [max(1, round(q * f)) for q in self.patch_sizes], max(1, round(self.stride * f)), self.edge_blur * f

    def hidden_width(self, patch: int, size: int) -> int:
        """Pixels one patch of nominal size ``patch`` hides along each axis (at most the crop)."""
        return min(size, patch + 1) if self.patch_geometry == "authors" else patch

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["patch_sizes"] = list(self.patch_sizes)
        return d


PRESETS: dict[str, XMapParams] = {
    "full": XMapParams(),
    # one scale, larger stride: 64 occlusions per face instead of 1,249 (interactive use on a CPU)
    "fast": XMapParams(patch_sizes=(21,), stride=13, preset="fast"),
}


def positions(size: int, patch: int, stride: int) -> list[int]:
    """Top-left offsets along one axis: every ``stride`` pixels, plus one flush with the far
    edge so the whole crop is covered."""
    pos = list(range(0, size - patch + 1, stride))
    if pos[-1] != size - patch:
        pos.append(size - patch)
    return pos


def n_occlusions(size: int, patch: int, stride: int) -> int:
    return len(positions(size, patch, stride)) ** 2


def patch_stamp(patch: int, shape: str = "rect", edge_blur: float = 0.0) -> np.ndarray:
    """One patch as a float32 mask (1 = hidden): a square or a disc of diameter ``patch``;
    with ``edge_blur`` > 0 its edge is smoothed by a Gaussian of that sigma (the stamp grows
    by 3 sigma on each side)."""
    pad = math.ceil(3 * edge_blur) if edge_blur > 0 else 0
    n = patch + 2 * pad
    stamp: np.ndarray = np.zeros((n, n), np.float32)
    if shape == "rect":
        stamp[pad : pad + patch, pad : pad + patch] = 1
    else:
        yy, xx = np.mgrid[0:n, 0:n] + 0.5
        c = n / 2
        stamp[(yy - c) ** 2 + (xx - c) ** 2 <= (patch / 2) ** 2] = 1
    if pad:
        k = 2 * pad + 1
        stamp = cv2.GaussianBlur(stamp, (k, k), edge_blur, borderType=cv2.BORDER_CONSTANT)
    return stamp


def occlusion_masks(size: int, patch: int, stride: int, shape: str = "rect", edge_blur: float = 0.0) -> torch.Tensor:
    """Algorithm 1's masks: ``(N, size, size)`` float32, row-major over patch positions."""
    stamp = torch.from_numpy(patch_stamp(patch, shape, edge_blur))
    pad = (stamp.shape[0] - patch) // 2
    pos = torch.tensor(positions(size, patch, stride))
    big = size + 2 * pad
    ys, xs = torch.meshgrid(pos, pos, indexing="ij")  # row-major over positions
    n_masks, n = ys.numel(), stamp.shape[0]
    out = torch.zeros((n_masks, big, big), dtype=torch.float32)
    k = torch.arange(n)
    # every stamp placed at once by advanced indexing (no Python loop over patches)
    out[torch.arange(n_masks)[:, None, None], ys.reshape(-1, 1, 1) + k[None, :, None], xs.reshape(-1, 1, 1) + k[None, None, :]] = stamp
    return out[:, pad : pad + size, pad : pad + size].contiguous()


@dataclass
class OcclusionSet:
    """Everything the three methods need for one scale: masks and occluded embeddings."""

    patch: int
    masks: torch.Tensor  # (N, S, S)
    f1: torch.Tensor  # (N, D) occluded embeddings of face 1
    f2: torch.Tensor  # (N, D) of face 2


def _occluded_embeddings(embedder: FaceEmbedder, image: np.ndarray, masks: torch.Tensor, params: XMapParams, key: str,
                         batch_size: int | None, progress: Callable[[int, int], Any] | None, ledger: perturb.Ledger,
                         incremental: bool) -> torch.Tensor:  # fmt: skip
    def compute() -> torch.Tensor:
        return perturb.Perturber(embedder, image, params.fill, params.seed, batch_size, ledger, incremental).embed(masks, progress=progress)

    return perturb.remember(key, compute, ledger)


def occlusion_sets(pair: FacePair, embedder: FaceEmbedder, params: XMapParams, batch_size: int | None = None,
                   progress: Callable[[float, str], Any] | None = None, ledger: perturb.Ledger | None = None,
                   incremental: bool | None = None) -> list[OcclusionSet]:  # fmt: skip
    """Occluded embeddings of both faces at every scale (cached by model, image, knobs, with
    who computed them: see ``perturb.remember``; passes and cache hits go on ``ledger``).
    ``incremental`` (default: on unless ``XFV_INCREMENTAL=0``) recomputes only what each
    patch changes, layer by layer, where the model allows it (``models.incremental``; the
    same embeddings within float rounding, so the cache key does not include it)."""
    incremental = inc_enabled() if incremental is None else incremental
    ledger = ledger if ledger is not None else perturb.Ledger()
    size = int(embedder.input_size)
    patches, stride, blur = params.scaled(size)
    mk = perturb.model_key(embedder)
    imgs = [perturb.crop_at_input_size(f.image, size) for f in pair]
    img_keys = [perturb.digest(im) for im in imgs]
    total = sum(n_occlusions(size, params.hidden_width(q, size), stride) for q in patches) * 2
    done = 0
    out = []
    for q in patches:
        w = params.hidden_width(q, size)
        masks = occlusion_masks(size, w, stride, params.patch_shape, blur)
        embs = []
        for im, ik in zip(imgs, img_keys, strict=True):
            key = perturb.digest("xmap-occluded", mk, ik, w, stride, params.patch_shape, blur, params.fill, params.seed)

            def tick(i: int, n: int, base: int = done) -> None:
                if progress is not None:
                    progress((base + i) / total, f"occlusions {base + i}/{total}")

            embs.append(_occluded_embeddings(embedder, im, masks, params, key, batch_size, tick, ledger, incremental))
            done += masks.shape[0]
        out.append(OcclusionSet(q, masks, embs[0], embs[1]))
    return out


def select_distances(method: int, f1: torch.Tensor, f2: torch.Tensor, e1: torch.Tensor, e2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine distances (D1, D2) of eq. 6-8 for unit-norm embeddings."""
    if method == 1:
        return 1 - f1 @ f2.mean(0), 1 - f2 @ f1.mean(0)
    if method == 2:
        return 1 - f1 @ e2, 1 - f2 @ e1
    if method == 3:
        d = 1 - (f1 * f2).sum(1)
        return d, d
    raise ValueError(f"X-Map method must be 1, 2 or 3, got {method!r}")


def similarity_map(d: torch.Tensor, d_orig: float, masks: torch.Tensor) -> np.ndarray:
    """Eq. 9: S = sum_i (d_i - d_orig) M_i / N, as one matrix product."""
    n, s, _ = masks.shape
    w = (d.double() - d_orig) / n
    return (w @ masks.reshape(n, -1).double()).reshape(s, s).numpy()


def combine_scales(maps: Sequence[np.ndarray], patches: Sequence[int]) -> np.ndarray:
    """Eq. 10: weighted mean with weights 1 / p^2."""
    total = sum(m / (p * p * len(patches)) for m, p in zip(maps, patches, strict=True))
    if not isinstance(total, np.ndarray):  # sum() of nothing is 0
        raise ValueError("combine_scales needs at least one map")
    return total


def smooth_normalise(s_bar: np.ndarray, stride: int) -> tuple[np.ndarray, float]:
    """Gaussian blur with an s x s kernel (odd) and sigma = s, OpenCV's default border
    (``BORDER_REFLECT_101``, as the authors' ``cv2.GaussianBlur``), then division by max |.|."""
    k = stride if stride % 2 == 1 else stride + 1
    blurred = cv2.GaussianBlur(s_bar.astype(np.float64), (k, k), stride, borderType=cv2.BORDER_REFLECT_101)
    scale = float(np.abs(blurred).max())
    out = blurred / scale if scale > 0 else np.zeros_like(blurred)
    return out.astype(np.float32), scale


def xmaps(pair: FacePair, embedder: FaceEmbedder, methods: Sequence[int] = METHODS, params: XMapParams | None = None,
          batch_size: int | None = None, progress: Callable[[float, str], Any] | None = None,
          ledger: perturb.Ledger | None = None, incremental: bool | None = None) -> dict[int, dict[str, Any]]:  # fmt: skip
    """X-Maps of both faces for each requested method from one set of occluded embeddings:
    ``{method: {"maps": [map1, map2], "scales": [scale1, scale2], "raw": [...]}}``. The
    passes run and the cached embeddings served (with who computed them) go on ``ledger``."""
    params = params or XMapParams()
    ledger = ledger if ledger is not None else perturb.Ledger()
    size = int(embedder.input_size)
    patches, stride, _ = params.scaled(size)
    sets = occlusion_sets(pair, embedder, params, batch_size, progress, ledger, incremental)
    e1, e2 = _references(pair, embedder, batch_size, ledger)
    d_orig = float(1 - e1 @ e2)
    out: dict[int, dict[str, Any]] = {}
    for m in methods:
        per_face: list[list[np.ndarray]] = [[], []]
        for st in sets:
            d1, d2 = select_distances(m, st.f1, st.f2, e1, e2)
            per_face[0].append(similarity_map(d1, d_orig, st.masks))
            per_face[1].append(per_face[0][-1] if m == 3 else similarity_map(d2, d_orig, st.masks))
        maps, scales, raws = [], [], []
        for face_maps in per_face:
            raw = combine_scales(face_maps, patches)
            norm, scale = smooth_normalise(raw, stride)
            maps.append(norm)
            scales.append(scale)
            raws.append(raw)
        out[m] = {"maps": maps, "scales": scales, "raw": raws, "d_orig": d_orig}
    return out


def _references(pair: FacePair, embedder: FaceEmbedder, batch_size: int | None, ledger: perturb.Ledger) -> tuple[torch.Tensor, torch.Tensor]:
    key = perturb.digest("reference", perturb.model_key(embedder), pair.a.image, pair.b.image)
    ref = perturb.remember(key, lambda: perturb.embed_faces(embedder, [pair.a.image, pair.b.image], batch_size, ledger), ledger)
    return ref[0], ref[1]


def forward_passes(input_size: int, **knobs: Any) -> tuple[str, int]:
    """(share key, number of forward passes) of the X-Maps of one pair: all three methods
    share the same occlusions, so they cost the same key once."""
    p = XMapParams.from_knobs(**knobs)
    patches, stride, blur = p.scaled(input_size)
    widths = [p.hidden_width(q, input_size) for q in patches]
    n = 2 * sum(n_occlusions(input_size, w, stride) for w in widths) + 2
    return perturb.digest("xmap", widths, stride, p.patch_shape, blur, p.fill, p.seed), n


class XMapExplainer(BaseExplainer):
    """One of the three X-Map methods as an ``Explainer``."""

    def __init__(self, method: int) -> None:
        if method not in METHODS:
            raise ValueError(f"X-Map method must be 1, 2 or 3, got {method!r}")
        self.method = method
        self.name = f"xmap{method}"

    def explain(self, pair: FacePair, embedder: FaceEmbedder, **knobs: Any) -> Explanation:
        params = XMapParams.from_knobs(**knobs)
        ledger = perturb.Ledger(self.name, self.label)
        res = xmaps(pair, embedder, (self.method,), params, knobs.get("batch_size"), knobs.get("progress"), ledger)[self.method]
        patches, stride, blur = params.scaled(int(embedder.input_size))
        maps = res["maps"]
        scores = {
            "mean_map_a": float(maps[0].mean()),
            "mean_map_b": float(maps[1].mean()),
            "forward_passes": float(ledger.forward_passes),  # run by this call; see extras["cached_from"] for the rest
            "distance": res["d_orig"],
        }
        exp = Explanation(
            method=self.name, label=self.label, maps=maps, signed=True, scores=scores,
            extras={"params": params.to_dict(), "scaled": {"patch_sizes": patches, "stride": stride, "edge_blur": blur,
                                                           "hidden_widths": [params.hidden_width(q, int(embedder.input_size)) for q in patches]},
                    "scale": res["scales"], "preset": params.preset,
                    "meaning": "positive (green): hiding the region increases the distance, so it makes the faces similar; "
                               "negative (red): hiding it brings them closer, so it makes them look different"},
        )  # fmt: skip
        cached = ledger.cached_from()
        if cached is not None:  # embeddings computed by another call (e.g. X-Map I for X-Map II): whose, at what cost
            exp.extras["cached_from"] = cached
        return exp


_XMAP: dict[str, Any] = {"family": "occlusion", "requires": ("blackbox",), "cost": forward_passes, "knobs": XMapParams, "scale": "diverging",
         "colours": "green: hiding the region makes the faces less alike (it supports the match); "
                    "red: hiding it makes them more alike (it speaks against the match)"}  # fmt: skip


@explainer("xmap1", label="X-Map I (occlusion, Knoche et al.)", order=10, **_XMAP,
           description="Knoche et al. occlusion map, method 1: each occlusion of one face against "
                       "the mean of all occlusions of the other.")  # fmt: skip
class XMap1(XMapExplainer):
    def __init__(self) -> None:
        super().__init__(1)


@explainer("xmap2", label="X-Map II (occlusion, Knoche et al.)", order=11, **_XMAP,
           description="Knoche et al. occlusion map, method 2: each occlusion of one face against the other, unoccluded face.")  # fmt: skip
class XMap2(XMapExplainer):
    def __init__(self) -> None:
        super().__init__(2)


@explainer("xmap3", label="X-Map III (occlusion, Knoche et al.)", order=12, **_XMAP,
           description="Knoche et al. occlusion map, method 3: co-located occlusions of both faces; one map shared by both.")  # fmt: skip
class XMap3(XMapExplainer):
    def __init__(self) -> None:
        super().__init__(3)
