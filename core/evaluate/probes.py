"""The per-probe and per-pair parts of the faithfulness protocol (``core.evaluate.faithfulness``
has the protocol in full and the data-set report): the pixel order a map gives, the masks
of the deletion and insertion curves, the curves of one probe, one pair's figures and the
random baseline's maps."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
import torch

from ..explainers.perturb import Perturber, check_fill, embed_faces
from ..types import FaceEmbedder, FacePair
from .verification import roc_curve

log = logging.getLogger(__name__)

#: FAME's 11 steps: 0, 10, ..., 100 % of the pixels.
FAME_FRACTIONS = np.linspace(0.0, 1.0, 11)
#: The share hidden for the confidence drop and the prediction change (SDD: top 20 %).
TOP_SHARE = 0.2
#: The name of the random-map baseline in reports.
RANDOM = "random"

Fill = str | float | tuple[float, float, float]
Mode = Literal["deletion", "insertion"]

ROW_KEYS = ("method", "n_pairs", "deletion_auc", "insertion_auc", "confidence_drop_pct", "prediction_change_pct", "recall_auc",
            "tnr_auc", "fame_deletion_nauc", "fame_insertion_nauc", "eer_threshold", "n_failed")  # fmt: skip
CURVE_NAMES = ("deletion_similarity", "insertion_similarity", "recall", "tnr", "fame_deletion_accuracy", "fame_insertion_accuracy")


# -- building blocks -----------------------------------------------------------------------
def resolve_fractions(fractions: Sequence[float] | np.ndarray | None = None, top_share: float = TOP_SHARE) -> np.ndarray:
    """The sorted unique fractions (default ``FAME_FRACTIONS``) with ``top_share`` added."""
    if not 0.0 < float(top_share) <= 1.0:
        raise ValueError(f"top_share must be in (0, 1], got {top_share}")
    f = FAME_FRACTIONS if fractions is None else np.asarray(fractions, dtype=np.float64).ravel()
    if f.size and (not np.all(np.isfinite(f)) or f.min() < 0.0 or f.max() > 1.0):
        raise ValueError(f"fractions must lie in [0, 1], got {f.tolist()}")
    return np.unique(np.round(np.r_[f, float(top_share)], 12))


def pixel_order(relevance: np.ndarray, seed: int = 0) -> np.ndarray:
    """Flat pixel indices, most relevant first; ties in a random order fixed by ``seed``
    (NaNs count as least relevant)."""
    r = np.nan_to_num(np.asarray(relevance, dtype=np.float64).ravel(), nan=-np.inf)
    perm = np.random.default_rng(seed).permutation(r.size)
    return perm[np.argsort(-r[perm], kind="stable")]


def hidden_count(fraction: float, n: int) -> int:
    """How many of ``n`` pixels a fraction concerns: ``round(fraction * n)``."""
    return round(float(fraction) * n)


def curve_masks(order: np.ndarray, size: int, fractions: np.ndarray, mode: Mode) -> np.ndarray:
    """``(F, S, S)`` float32 masks (1 = hidden). Deletion: the first ``round(f * S * S)``
    pixels of ``order`` are hidden; insertion: all pixels but those are hidden."""
    n = size * size
    order = np.asarray(order).ravel()
    if order.size != n:
        raise ValueError(f"order has {order.size} pixels, a {size} x {size} mask has {n}")
    if mode not in ("deletion", "insertion"):
        raise ValueError(f"mode must be 'deletion' or 'insertion', got {mode!r}")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    ks = np.array([hidden_count(f, n) for f in np.asarray(fractions, dtype=np.float64).ravel()])
    first = rank[None, :] < ks[:, None]
    masks = first if mode == "deletion" else ~first
    return masks.reshape(-1, size, size).astype(np.float32)


def relevance_of(map_: np.ndarray, signed: bool, accept: bool) -> np.ndarray:
    """The relevance a probe's pixels are ranked by: the map when the decision is accept or
    the map is unsigned, the negated map when a signed map explains a reject."""
    m = np.asarray(map_, dtype=np.float32)
    return -m if (signed and not accept) else m


def map_at_size(map_: np.ndarray, size: int) -> np.ndarray:
    """A 2-D map as float32 ``(size, size)`` (bilinear resize when it differs)."""
    m: np.ndarray = np.asarray(map_, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"a map must be 2-D, got shape {m.shape}")
    if m.shape != (size, size):
        m = cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR)
    return m


def random_maps(size: int, seed: int = 0, pair_index: int = 0, grid: int | None = None) -> list[np.ndarray]:
    """The random baseline's two maps of one pair: uniform [0, 1) values on a ``grid x grid``
    lattice (default ``size // 16``, SFace's 7 x 7 feature map at 112 px), bilinearly
    upsampled, each from ``np.random.default_rng([seed, pair_index, face_index])``.

    A "random CAM" as in the SDD paper: random blobs the size of a class activation map's
    cells. Per-pixel noise would not do: hiding 20 % of the pixels as scattered dots wrecks
    a CNN's input far more than hiding any 20 % region, so every map would lose to it."""
    mask = (1 << 64) - 1  # SeedSequence wants non-negative entries
    g = max(2, int(grid or size // 16))
    out = []
    for i in (0, 1):
        cells = np.random.default_rng([seed & mask, pair_index & mask, i]).random((g, g), dtype=np.float32)
        out.append(cv2.resize(cells, (size, size), interpolation=cv2.INTER_LINEAR))
    return out


def eer_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The similarity threshold (accept when ``s >= thr``) where the false accept rate is
    closest to the false reject rate, among the ROC's thresholds; NaN without both labels."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    if s.size == 0 or y.all() or not y.any():
        return float("nan")
    far, tar, thr = roc_curve(s, y)
    i = int(np.argmin(np.abs(far - (1.0 - tar))))
    return float(thr[i])


def _index(fractions: np.ndarray, frac: float) -> int:
    hit = np.flatnonzero(np.isclose(fractions, float(frac), rtol=0.0, atol=1e-9))
    if hit.size == 0:
        raise ValueError(f"fraction {frac} was not evaluated; the fractions are {np.round(fractions, 4).tolist()}")
    return int(hit[0])


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.trapezoid(y, x)) if len(x) > 1 else float("nan")


def _mean(values: Sequence[float] | np.ndarray) -> float:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()) if a.size else float("nan")


# -- one probe -----------------------------------------------------------------------------
@dataclass
class ProbeCurves:
    """One probe's deletion and insertion similarities to the clean reference."""

    fractions: np.ndarray  # (F,)
    deletion: np.ndarray  # (F,) similarity with the probe deletion-masked at each fraction
    insertion: np.ndarray  # (F,) similarity with the probe insertion-masked
    s0: float  # clean similarity
    thr: float  # decision threshold
    accept: bool  # clean decision
    deletion_embeddings: np.ndarray = field(repr=False)  # (F, D) deletion-masked probe (for the TNR)

    @property
    def sign(self) -> float:
        return 1.0 if self.accept else -1.0

    @property
    def deletion_margin(self) -> np.ndarray:
        """``sign * (s_f - thr)`` on the deletion curve."""
        return self.sign * (self.deletion - self.thr)

    @property
    def insertion_margin(self) -> np.ndarray:
        return self.sign * (self.insertion - self.thr)

    @property
    def deletion_area(self) -> float:
        """Trapezoid area of the deletion margin curve (lower = more faithful)."""
        return _trapezoid(self.deletion_margin, self.fractions)

    @property
    def insertion_area(self) -> float:
        """Trapezoid area of the insertion margin curve (higher = more faithful)."""
        return _trapezoid(self.insertion_margin, self.fractions)

    def similarity_at(self, frac: float, mode: Mode = "deletion") -> float:
        """The similarity at an evaluated fraction of the deletion (or insertion) curve."""
        curve = self.deletion if mode == "deletion" else self.insertion
        return float(curve[_index(self.fractions, frac)])

    def decision_changed_at(self, frac: float) -> bool:
        """Whether the deletion-masked probe's decision at ``frac`` differs from the clean one."""
        return (self.similarity_at(frac) >= self.thr) != self.accept

    def confidence_drop_at(self, frac: float) -> float:
        """``max(0, s0 - s_f) / s0 * 100`` for an accepted probe with ``s0 > 0``, else NaN."""
        if not self.accept or self.s0 <= 0:
            return float("nan")
        return max(0.0, self.s0 - self.similarity_at(frac)) / self.s0 * 100.0


def _as_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float32)


def similarities(embeddings: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cosine similarities of L2-normalised rows to a reference, in float64, clipped to [-1, 1]."""
    e = np.atleast_2d(np.asarray(embeddings, dtype=np.float64))
    return np.clip(e @ np.asarray(reference, dtype=np.float64).ravel(), -1.0, 1.0)


def probe_curves(
    embedder: FaceEmbedder,
    probe_image: np.ndarray,
    reference_embedding: np.ndarray | torch.Tensor,
    relevance: np.ndarray,
    fractions: np.ndarray,
    *,
    thr: float,
    accept: bool,
    fill: Fill = "black",
    seed: int = 0,
    batch_size: int | None = None,
    probe_embedding: np.ndarray | torch.Tensor | None = None,
) -> ProbeCurves:
    """Deletion and insertion curves of one probe ranked by ``relevance`` (see the module
    docstring). ``probe_embedding``: the clean probe's embedding (computed when not given);
    it stands for every mask that hides nothing (deletion at 0, insertion at 1), so those
    points equal ``s0`` exactly and cost no forward pass. The other masks are embedded in
    one ``Perturber`` run."""
    size = int(embedder.input_size)
    fr = np.asarray(fractions, dtype=np.float64).ravel()
    ref = _as_numpy(reference_embedding).ravel()
    if probe_embedding is None:
        probe_embedding = embed_faces(embedder, [probe_image], batch_size)[0]
    clean = _as_numpy(probe_embedding).ravel()
    order = pixel_order(map_at_size(relevance, size), seed)
    masks = np.concatenate([curve_masks(order, size, fr, "deletion"), curve_masks(order, size, fr, "insertion")])
    emb = np.empty((len(masks), clean.size), dtype=np.float32)
    emb[:] = clean
    todo = np.flatnonzero(masks.reshape(len(masks), -1).any(1))
    if todo.size:
        got = Perturber(embedder, probe_image, fill=fill, seed=seed, batch_size=batch_size).embed(torch.from_numpy(masks[todo])).numpy()
        emb[todo] = got / np.maximum(np.linalg.norm(got, axis=1, keepdims=True), 1e-12)
    sims = similarities(emb, ref)
    n = len(fr)
    return ProbeCurves(fractions=fr, deletion=sims[:n], insertion=sims[n:], s0=float(similarities(clean, ref)[0]), thr=float(thr),
                       accept=bool(accept), deletion_embeddings=emb[:n])  # fmt: skip


# -- one pair ------------------------------------------------------------------------------
@dataclass
class PairFaithfulness:
    """One pair and one set of maps: the curves of probe ``a`` (against ``b``) and of
    probe ``b`` (against ``a``)."""

    method: str
    a: ProbeCurves
    b: ProbeCurves
    signed: bool
    top_share: float = TOP_SHARE

    @property
    def probes(self) -> tuple[ProbeCurves, ProbeCurves]:
        return self.a, self.b

    @property
    def fractions(self) -> np.ndarray:
        return self.a.fractions

    @property
    def similarity(self) -> float:
        return self.a.s0

    @property
    def threshold(self) -> float:
        return self.a.thr

    @property
    def accept(self) -> bool:
        return self.a.accept

    def both_masked_similarity(self) -> np.ndarray:
        """``(F,)`` similarity with both faces deletion-masked at each fraction (the TNR's)."""
        return np.sum(self.a.deletion_embeddings.astype(np.float64) * self.b.deletion_embeddings.astype(np.float64), axis=1)

    def scores(self) -> dict[str, float]:
        """``deletion_auc`` and ``insertion_auc`` (means of the two probes' margin areas),
        ``confidence_drop_pct`` (mean over the accepted probes, NaN when none) and
        ``prediction_change_pct`` (of the two probes), at ``top_share``."""
        drops = [d for p in self.probes if not np.isnan(d := p.confidence_drop_at(self.top_share))]
        return {
            "deletion_auc": _mean([p.deletion_area for p in self.probes]),
            "insertion_auc": _mean([p.insertion_area for p in self.probes]),
            "confidence_drop_pct": _mean(drops),
            "prediction_change_pct": 100.0 * _mean([p.decision_changed_at(self.top_share) for p in self.probes]),
        }


def pair_faithfulness(
    embedder: FaceEmbedder,
    pair: FacePair,
    maps: Sequence[np.ndarray],
    signed: bool,
    threshold: float,
    *,
    fractions: Sequence[float] | np.ndarray | None = None,
    top_share: float = TOP_SHARE,
    fill: Fill = "black",
    seed: int = 0,
    batch_size: int | None = None,
    embeddings: np.ndarray | torch.Tensor | None = None,
    method: str = "",
) -> PairFaithfulness:
    """Faithfulness of one method's two maps on one pair (``maps[0]`` explains ``pair.a``,
    ``maps[1]`` ``pair.b``). ``embeddings``: the clean ``(2, D)`` embeddings of ``a`` and
    ``b`` when already known (else computed with ``perturb.embed_faces``)."""
    if len(maps) != 2:
        raise ValueError(f"faithfulness needs one map per face, got {len(maps)}")
    check_fill(fill)
    fr = resolve_fractions(fractions, top_share)
    if embeddings is None:
        embeddings = embed_faces(embedder, [pair.a.image, pair.b.image], batch_size)
    e = _as_numpy(embeddings)
    if e.ndim != 2 or e.shape[0] != 2:
        raise ValueError(f"embeddings must be (2, D), got {e.shape}")
    s0 = float(similarities(e[0], e[1])[0])
    accept = s0 >= threshold
    curves = []
    for i, face in enumerate(pair):
        rel = relevance_of(maps[i], signed, accept)
        curves.append(probe_curves(embedder, face.image, e[1 - i], rel, fr, thr=threshold, accept=accept, fill=fill, seed=seed,
                                   batch_size=batch_size, probe_embedding=e[i]))  # fmt: skip
    return PairFaithfulness(method=method, a=curves[0], b=curves[1], signed=bool(signed), top_share=float(top_share))


def random_pair_faithfulness(
    embedder: FaceEmbedder,
    pair: FacePair,
    threshold: float,
    *,
    pair_index: int = 0,
    fractions: Sequence[float] | np.ndarray | None = None,
    top_share: float = TOP_SHARE,
    fill: Fill = "black",
    seed: int = 0,
    batch_size: int | None = None,
    embeddings: np.ndarray | torch.Tensor | None = None,
) -> PairFaithfulness:
    """The random baseline on one pair: ``pair_faithfulness`` of ``random_maps`` (unsigned)."""
    maps = random_maps(int(embedder.input_size), seed, pair_index)
    return pair_faithfulness(embedder, pair, maps, False, threshold, fractions=fractions, top_share=top_share, fill=fill,
                             seed=seed, batch_size=batch_size, embeddings=embeddings, method=RANDOM)  # fmt: skip


# -- a data set ----------------------------------------------------------------------------
