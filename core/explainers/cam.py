"""Class activation maps for face verification: CAM, Grad-CAM and Grad-CAM++.

The score explained for face ``a`` is its cosine similarity to a target embedding ``t``
(the other face's, or a class embedding for SDD): ``s = <e(a), t> / |e(a)|`` where ``e`` is
the unnormalised embedding and ``A`` (C x H x W) the last convolutional block.

* CAM (Zhou et al., 2016), exact for embedding models whose head ``e = h(A)`` is affine (in
  eval mode): ``e = sum_ij J_ij A_ij + c`` so ``s = sum_ij (<J_ij A_ij, t> + <c, t>/HW) / |e|``.
  For SFace (BN2d -> Flatten -> Linear -> BN1d on the 1024x7x7 block) ``J_ij A_ij`` is the
  product of location ij's features with the matching slice of the linear layer's weights,
  scaled by the BatchNorms; for global-average-pooling heads (FaceNet) it is the pooled
  form ``W A_ij / HW``. Both come out of the same computation: ``J_ij A_ij = h(A * 1_ij) - h(0)``,
  one batch of HW masked copies through the head. The constant ``<c, t>/|e|`` (biases and
  BatchNorm shifts, the same for every image) is spread evenly over the locations so the
  map sums to the similarity; its size is reported as ``scores["constant"]``.
* Grad-CAM (Selvaraju et al., 2017): ``ReLU(sum_k alpha_k A_k)``, ``alpha_k = mean_ij ds/dA_kij``.
* Grad-CAM++ (Chattopadhay et al., 2018): ``ReLU(sum_k w_k A_k)``,
  ``w_k = sum_ij a_kij ReLU(ds/dA_kij)``, ``a_kij = g^2 / (2 g^2 + sum_ab A_kab g^3)``
  (the closed form for an exponential score, as in the paper's implementation).

Activations are captured by a forward hook put on the model instance inside a context
manager and always removed, also after an exception.

``ClassActivationMap`` is the family's template (crops, gradient pass, upsampling, sign and
scale); each variant is a small subclass overriding one hook: ``Cam.grids`` (the exact
decomposition), ``GradCam.weights`` and ``GradCamPlusPlus.weights`` (channel weights).
``CamExplainer(kind)`` builds the variant by its method name.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MethodRequirementError
from ..models.base import chunks
from ..types import Explanation, FaceEmbedder, FacePair, TorchFaceEmbedder, batch_size_of
from .base import BaseExplainer, explainer, fixed_cost
from .perturb import crop_at_input_size, embed_faces

log = logging.getLogger(__name__)

AFFINE_RTOL = 1e-3  # |sum of contributions + constant - e| / |e| allowed before CAM refuses


@contextlib.contextmanager
def capture_activations(module: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Record ``module``'s outputs while the block runs; the hook is always removed."""
    store: list[torch.Tensor] = []

    def hook(_m: nn.Module, _inp: Any, out: Any) -> None:
        store.append(out)

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def feature_module(embedder: FaceEmbedder) -> nn.Module:
    """The last convolutional block of a differentiable torch embedder (the one the model
    declares as ``feature_layer``, else its last ``Conv2d``)."""
    torch_embedder = embedder if isinstance(embedder, TorchFaceEmbedder) else None
    module = torch_embedder.features_module() if torch_embedder is not None else None
    if module is None:
        root = torch_embedder.module if torch_embedder is not None else None
        convs = [m for m in root.modules() if isinstance(m, nn.Conv2d)] if isinstance(root, nn.Module) else []
        if not convs:
            raise MethodRequirementError(f"model '{embedder.name}' exposes no convolutional feature map for class activation maps")
        module = convs[-1]
        log.warning("model %s declares no feature layer; using its last Conv2d", embedder.name)
    return module


def _as_map(a: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(a, torch.Tensor) or a.ndim != 4:
        shape = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
        raise MethodRequirementError(f"{name} needs a convolutional feature map (B, C, H, W); the feature layer gives {shape}")
    return a


def upsample(grid: np.ndarray | torch.Tensor, size: int, preserve_sum: bool = False) -> np.ndarray:
    """A (H, W) map bilinearly resized to (size, size); with ``preserve_sum`` divided by the
    pixels per location so that the map keeps (approximately) the grid's sum."""
    g = torch.as_tensor(np.asarray(grid, dtype=np.float32))[None, None]
    up = F.interpolate(g, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()
    if preserve_sum:
        up = up * (grid.shape[0] * grid.shape[1]) / float(size * size)
    return up.astype(np.float32)


@dataclass
class Contributions:
    """Per-location parts of the unnormalised embeddings of a batch of faces:
    ``e = loc.sum(1) + const`` exactly (up to float error)."""

    loc: torch.Tensor  # (B, H*W, D)
    const: torch.Tensor  # (D,)
    embedding: torch.Tensor  # (B, D) unnormalised
    grid: tuple[int, int]

    def cam(self, targets: torch.Tensor, spread_constant: bool = True) -> torch.Tensor:
        """``(B, H, W)`` CAMs of each face against its unit-norm target ``(B, D)`` (or one
        target ``(D,)`` for all) in similarity units: sums to the cosine similarity when the
        constant is spread."""
        t = F.normalize(targets.float(), dim=-1)
        if t.ndim == 1:
            t = t.expand(self.loc.shape[0], -1)
        norm = self.embedding.norm(dim=1, keepdim=True)  # (B, 1)
        cam = torch.einsum("bld,bd->bl", self.loc, t) / norm
        if spread_constant:
            cam = cam + ((t @ self.const) / norm[:, 0])[:, None] / cam.shape[1]
        return cam.view(-1, *self.grid)

    def constant(self, targets: torch.Tensor) -> torch.Tensor:
        """The constant part of the similarity, ``<c, t> / |e|`` per face."""
        t = F.normalize(targets.float(), dim=-1)
        if t.ndim == 1:
            t = t.expand(self.loc.shape[0], -1)
        return (t @ self.const) / self.embedding.norm(dim=1)


@torch.no_grad()
def contributions(embedder: FaceEmbedder, faces: list[np.ndarray], batch_size: int | None = None) -> Contributions:
    """The exact CAM decomposition of the embeddings of ``faces`` (RGB crops)."""
    head = embedder.head() if isinstance(embedder, TorchFaceEmbedder) else None
    if head is None:
        raise MethodRequirementError(
            f"CAM needs the model's head after its last convolutional block; model '{embedder.name}' does not declare one (use Grad-CAM)"
        )
    module = feature_module(embedder)
    bs = batch_size_of(embedder, batch_size)
    locs, embs = [], []
    const: torch.Tensor | None = None
    for sl in chunks(len(faces), bs):
        x = embedder.preprocess(faces[sl])
        with capture_activations(module) as store:
            embedder.embed(x)  # the hook keeps the last block's output
        a = _as_map(store[-1], "CAM").float().contiguous()
        b, c, h, w = a.shape
        if const is None:
            const = head(torch.zeros((1, c, h, w), device=a.device, dtype=a.dtype)).float()[0]
        eye = torch.eye(h * w, device=a.device, dtype=a.dtype).view(h * w, 1, h, w)
        for i in range(b):
            masked = a[i : i + 1] * eye  # (HW, C, H, W): location ij alone
            locs.append((head(masked).float() - const).cpu())
        rebuilt = torch.stack(locs[-b:]).sum(1) + const.cpu()
        raw = head(a).float().cpu()
        err = float(((rebuilt - raw).norm(dim=1) / raw.norm(dim=1).clamp_min(1e-12)).max())
        if err > AFFINE_RTOL:
            raise MethodRequirementError(
                f"CAM needs a head that is affine in its input; model '{embedder.name}' is not (relative error {err:.2g}); use Grad-CAM"
            )
        embs.append(raw)
    assert const is not None
    return Contributions(torch.stack(locs), const.cpu(), torch.cat(embs), (h, w))


def gradients(
    embedder: FaceEmbedder, faces: list[np.ndarray], targets: torch.Tensor, batch_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Activations ``A`` and gradients ``ds/dA`` of the last block, ``(B, C, H, W)`` each, and
    the scores ``s`` = cosine similarity of each face to its target row ``(B, D)``."""
    module = feature_module(embedder)
    bs = batch_size_of(embedder, batch_size)
    t = F.normalize(targets.float(), dim=-1).to(embedder.device)
    acts, grads, scores = [], [], []
    for sl in chunks(len(faces), bs):
        x = embedder.preprocess(faces[sl]).requires_grad_(True)
        with capture_activations(module) as store, torch.enable_grad():
            e = embedder.embed(x).float()
            a = _as_map(store[-1], "Grad-CAM")
            s = (e * t[sl]).sum(1)
            (g,) = torch.autograd.grad(s.sum(), a)
        acts.append(a.detach().float().cpu())
        grads.append(g.detach().float().cpu())
        scores.append(s.detach().cpu())
    return torch.cat(acts), torch.cat(grads), torch.cat(scores)


def combine(weights: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """``ReLU(sum_k w_k A_k)``: maps ``(B, H, W)`` from channel weights ``(B, C, 1, 1)``."""
    return F.relu((weights * acts).sum(1))


def grad_cam(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM maps ``(B, H, W)``."""
    return combine(GradCam.weights(acts, grads), acts)


def grad_cam_pp(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ maps ``(B, H, W)``."""
    return combine(GradCamPlusPlus.weights(acts, grads), acts)


class ClassActivationMap(BaseExplainer):
    """The CAM family's template: each face of a pair explained against the other face's
    embedding. ``explain`` crops the faces, asks ``grids`` for the ``(H, W)`` grids, upsamples
    them to the crop and scales them by ``signed``: signed shares of the similarity keep
    their sum; unsigned maps share one scale, 1 = the strongest location of either face.

    ``grids`` by default does the gradient pass (hook on the feature layer, target, backward
    pass; see ``gradients``) and combines the activations with the variant's channel
    ``weights(acts, grads)``, the hook that Grad-CAM and Grad-CAM++ override. CAM needs no
    gradients and overrides ``grids`` itself."""

    signed: ClassVar[bool] = False
    meaning: ClassVar[str] = "where a change of the features would raise the similarity most (unsigned, 1 = strongest)"

    def explain(self, pair: FacePair, embedder: FaceEmbedder, **knobs: Any) -> Explanation:
        size = int(embedder.input_size)
        faces = [crop_at_input_size(f.image, size) for f in pair]
        grids, scores = self.grids(embedder, faces, knobs.get("batch_size"))
        if self.signed:
            maps = [upsample(g.numpy(), size, preserve_sum=True) for g in grids]
        else:
            maps = [upsample(g.numpy(), size) for g in grids]
            peak = max(float(np.abs(m).max()) for m in maps)
            maps = [m / peak if peak > 0 else m for m in maps]  # one scale for both faces
            scores["peak"] = peak
        return Explanation(
            method=self.name, label=self.label, maps=maps, signed=self.signed, scores=scores,
            extras={"grid": [g.numpy() for g in grids], "grid_size": list(grids.shape[1:]),
                    "feature_layer": embedder.feature_layer if isinstance(embedder, TorchFaceEmbedder) else None, "meaning": self.meaning},
        )  # fmt: skip

    def grids(self, embedder: FaceEmbedder, faces: list[np.ndarray], batch_size: int | None) -> tuple[torch.Tensor, dict[str, float]]:
        """The grids ``(2, H, W)`` of face a against b and face b against a, and the scores."""
        targets = embed_faces(embedder, faces, batch_size).flip(0)  # face a against b, face b against a
        acts, grads, sims = gradients(embedder, faces, targets, batch_size)
        return combine(self.weights(acts, grads), acts), {"similarity": float(sims[0])}

    @staticmethod
    def weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """The variant's channel weights ``(B, C, 1, 1)`` from the activations and gradients
        ``(B, C, H, W)``."""
        raise NotImplementedError


@explainer("cam", label="CAM (exact decomposition)", family="cam", requires=("gradients",), cost=fixed_cost(2), scale="diverging", order=30,
           description="CAM (exact decomposition): each location's exact share of the cosine similarity, from the model's affine head.",
           colours="green: the location adds to the cosine similarity; red: it subtracts from it (exact shares)")  # fmt: skip
class Cam(ClassActivationMap):
    """CAM: the exact decomposition of the similarity through the model's affine head."""

    signed = True
    meaning = ("each location's share of the cosine similarity (the map sums to it): positive (green) "
               "makes the faces similar, negative (red) makes them differ")  # fmt: skip

    def grids(self, embedder: FaceEmbedder, faces: list[np.ndarray], batch_size: int | None) -> tuple[torch.Tensor, dict[str, float]]:
        con = contributions(embedder, faces, batch_size)
        targets = F.normalize(con.embedding, dim=1).flip(0)  # face a against b, face b against a
        grids = con.cam(targets)
        consts = con.constant(targets)
        sims = (F.normalize(con.embedding, dim=1) * F.normalize(targets, dim=1)).sum(1)
        return grids, {"similarity": float(sims[0]), "cam_sum_a": float(grids[0].sum()), "cam_sum_b": float(grids[1].sum()),
                       "constant": float(consts.mean())}  # fmt: skip


_GRAD_COLOURS = "bright: where the gradient-weighted activations of the similarity are strongest (positive part only; no direction)"


@explainer("grad_cam", label="Grad-CAM", family="cam", requires=("gradients",), cost=fixed_cost(4), scale="sequential", order=31,
           description="Grad-CAM: activations weighted by the mean gradient of the similarity to the other face.", colours=_GRAD_COLOURS)  # fmt: skip
class GradCam(ClassActivationMap):
    """Grad-CAM: ``alpha_k = mean_ij ds/dA_kij``."""

    @staticmethod
    def weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return grads.mean((2, 3), keepdim=True)


@explainer("grad_cam_pp", label="Grad-CAM++", family="cam", requires=("gradients",), cost=fixed_cost(4), scale="sequential", order=32,
           description="Grad-CAM++: activations weighted by positive gradients with Grad-CAM++ pixel weights.", colours=_GRAD_COLOURS)  # fmt: skip
class GradCamPlusPlus(ClassActivationMap):
    """Grad-CAM++: ``w_k = sum_ij a_kij ReLU(ds/dA_kij)`` with the closed-form ``a_kij``."""

    @staticmethod
    def weights(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        g2, g3 = grads.pow(2), grads.pow(3)
        denom = 2 * g2 + acts.sum((2, 3), keepdim=True) * g3
        a = torch.where(grads != 0, g2 / torch.where(denom != 0, denom, torch.ones_like(denom)), torch.zeros_like(grads))
        return (a * F.relu(grads)).sum((2, 3), keepdim=True)


VARIANTS: dict[str, type[ClassActivationMap]] = {v.name: v for v in (Cam, GradCam, GradCamPlusPlus)}


def CamExplainer(kind: str) -> ClassActivationMap:  # noqa: N802 (once a class; the registry and callers construct it by this name)
    """The CAM-family explainer of ``kind``: "cam", "grad_cam" or "grad_cam_pp"."""
    if kind not in VARIANTS:
        raise ValueError(f"kind must be one of {', '.join(VARIANTS)}, got {kind!r}")
    return VARIANTS[kind]()
