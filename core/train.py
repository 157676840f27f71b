"""Fine-tuning the face concept bottleneck (``python -m core train-cbm``), after Yalavarthi
and Ratha: the residual adapter, the image encoder's last MLP and the concept aggregation
matrix W are trained with the AdaFace loss (Kim et al.: m = 0.5, h = 0.33, s = 64) on a folder
of identities, AdamW with lr 3e-4; everything else (the rest of the image tower, the text
encodings) stays frozen.

AdaFace, for an embedding ``f`` and class prototypes ``P`` (one per identity, trained with
the rest): ``cos θ_j = P̂_j · f̂``; the feature norm ``|f|`` against its running batch mean
and std gives ``ẑ = clip(h (|f| - μ) / σ, -1, 1)``; the target class's logit becomes
``s (cos(θ_y - m ẑ) - (m + m ẑ))`` (an angular margin that shrinks and an additive one that
grows with image quality), the others ``s cos θ_j``; then cross-entropy. The running
statistics start at μ = 20, σ = 100 and move with momentum 0.01, as in the authors' code.

Reported before and after: verification accuracy (best threshold over every pair of the
evaluation identities: the training folder unless ``eval_faces`` are given, in which case the
figure is on held-out people) and the alignment proxy (zero-shot accuracy of the concepts
on a folder of images labelled with descriptors: ``alignment/<descriptor>/*.jpg``; each image
counts as right when its descriptor wins its group's softmax).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import DataError
from .models.base import TorchEmbedder, chunks
from .models.cbm import ConceptBottleneck, ResidualAdapter, concept_model, last_mlp
from .verify.threshold import best_threshold

log = logging.getLogger(__name__)


class AdaFaceHead(nn.Module):
    """Class prototypes and the AdaFace margin (Kim et al., 2022)."""

    batch_mean: torch.Tensor  # buffers: running mean and std of the feature norms
    batch_std: torch.Tensor

    def __init__(self, dim: int, n_classes: int, m: float = 0.5, h: float = 0.33, s: float = 64.0, t_alpha: float = 0.01) -> None:
        super().__init__()
        self.prototypes = nn.Parameter(torch.empty(n_classes, dim).normal_(0, 0.01))
        self.m, self.h, self.s, self.t_alpha, self.eps = m, h, s, t_alpha, 1e-3
        self.register_buffer("batch_mean", torch.tensor(20.0))
        self.register_buffer("batch_std", torch.tensor(100.0))

    def logits(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        norms = embeddings.norm(dim=1, keepdim=True)
        cosine = (F.normalize(embeddings, dim=1) @ F.normalize(self.prototypes, dim=1).t()).clamp(-1 + self.eps, 1 - self.eps)
        safe = norms.clamp(0.001, 100).detach()
        if self.training:
            with torch.no_grad():
                std = safe.std() if safe.numel() > 1 else torch.zeros((), device=safe.device)
                self.batch_mean.mul_(1 - self.t_alpha).add_(self.t_alpha * safe.mean())
                self.batch_std.mul_(1 - self.t_alpha).add_(self.t_alpha * std)
        z = ((safe - self.batch_mean) / (self.batch_std + self.eps) * self.h).clamp(-1, 1)
        onehot = F.one_hot(labels, cosine.shape[1]).to(cosine.dtype)
        theta = cosine.acos()
        theta = (theta + onehot * (-self.m * z)).clamp(self.eps, math.pi - self.eps)
        return self.s * (theta.cos() - onehot * (self.m + self.m * z))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(embeddings, labels), labels)


def trainable_parameters(cbm: ConceptBottleneck) -> list[nn.Parameter]:
    """What fine-tuning changes: the adapter, the image tower's last MLP and W."""
    params = [cbm.W, *last_mlp(cbm.visual).parameters()]
    if cbm.adapter is not None:
        params += list(cbm.adapter.parameters())
    return params


def run_steps(
    module: nn.Module,
    params: Sequence[nn.Parameter],
    opt: torch.optim.Optimizer,
    step_loss: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    batch_size: int,
    total: int,
    seed: int = 0,
    progress: Callable[[int, int, float], None] | None = None,
    train_mode: bool = False,
) -> list[float]:
    """``total`` optimiser steps over shuffled batches of ``range(n)`` (a new permutation per
    epoch, seeded), with only ``params`` of ``module`` trainable meanwhile (everything of
    ``module`` is frozen again afterwards, also after an exception). Returns the losses."""
    for p in module.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    if train_mode:
        module.train()
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    try:
        while len(losses) < total:
            for idx in torch.randperm(n, generator=gen).split(batch_size):
                if len(losses) >= total:
                    break
                loss = step_loss(idx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                if progress is not None:
                    progress(len(losses), total, losses[-1])
    finally:
        if train_mode:
            module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
    return losses


@torch.no_grad()
def verification_accuracy(embedder: TorchEmbedder, crops: Sequence[np.ndarray], labels: Sequence[int]) -> float:
    """Best-threshold accuracy over every pair of the faces (needs two faces of someone)."""
    e = embedder.embed_faces(list(crops)).cpu().numpy()
    y = np.asarray(labels)
    i, j = np.triu_indices(len(y), 1)
    same = y[i] == y[j]
    if same.all() or not same.any():
        raise DataError("verification accuracy needs genuine and impostor pairs: two or more people, one of them twice")
    _, acc = best_threshold(1.0 - (e[i] * e[j]).sum(1), same)
    return float(acc)


@torch.no_grad()
def alignment_accuracy(embedder: TorchEmbedder, crops: Sequence[np.ndarray], descriptors: Sequence[str]) -> float:
    """Zero-shot accuracy of the concepts: the labelled descriptor wins its group."""
    cbm = concept_model(embedder)
    names = cbm.descriptors.descriptors
    unknown = sorted({d for d in descriptors if d not in names})
    if unknown:
        raise DataError(f"alignment labels that are not descriptors of the set: {', '.join(unknown[:5])}")
    ids = cbm.group_ids.cpu().numpy()
    right = 0
    for sl in chunks(len(crops), embedder.batch_size):
        probs = cbm.concepts(embedder.preprocess(list(crops[sl]))).probs.cpu().numpy()
        for p, d in zip(probs, descriptors[sl], strict=True):
            k = names.index(d)
            group = np.flatnonzero(ids == ids[k])
            right += int(group[np.argmax(p[group])] == k)
    return right / len(crops)


@dataclass
class TrainReport:
    steps: int
    losses: list[float] = field(default_factory=list)
    accuracy_before: float | None = None
    accuracy_after: float | None = None
    alignment_before: float | None = None
    alignment_after: float | None = None
    evaluated_on: str = "the training identities"

    def lines(self) -> list[str]:
        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{100 * v:.1f} %"

        first, last = (self.losses[0], self.losses[-1]) if self.losses else (math.nan, math.nan)
        return [f"{self.steps} steps, AdaFace loss {first:.3f} -> {last:.3f}",
                f"verification accuracy ({self.evaluated_on}, best threshold): {pct(self.accuracy_before)} -> {pct(self.accuracy_after)}",
                f"alignment proxy (zero-shot concept accuracy): {pct(self.alignment_before)} -> {pct(self.alignment_after)}"]  # fmt: skip


def train_cbm(
    embedder: TorchEmbedder,
    crops: Sequence[np.ndarray],
    labels: Sequence[int],
    *,
    epochs: int = 5,
    batch_size: int = 32,
    lr: float = 3e-4,
    alpha: float = 0.8,
    max_steps: int | None = None,
    eval_faces: tuple[Sequence[np.ndarray], Sequence[int]] | None = None,
    alignment: tuple[Sequence[np.ndarray], Sequence[str]] | None = None,
    seed: int = 0,
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainReport:
    """Fine-tune ``embedder``'s concept bottleneck in place on aligned ``crops`` of the
    identities ``labels``; adds a residual adapter (mixing weight ``alpha``, CLIP-Adapter's
    0.8 by default) when there is none."""
    cbm = embedder.module
    if not isinstance(cbm, ConceptBottleneck):
        raise DataError(f"train-cbm needs a concept-bottleneck model, not {embedder.name}")
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if len(crops) != len(y) or len(crops) < 2:
        raise DataError(f"{len(crops)} faces and {len(y)} labels: need two or more labelled faces")
    ev_crops, ev_labels = eval_faces if eval_faces is not None else (crops, labels)
    report = TrainReport(0, evaluated_on="held-out identities" if eval_faces is not None else "the training identities")
    report.accuracy_before = verification_accuracy(embedder, ev_crops, ev_labels)
    if alignment is not None:
        report.alignment_before = alignment_accuracy(embedder, *alignment)
    device = embedder.device
    if cbm.adapter is None:
        cbm.adapter = ResidualAdapter(cbm.visual(embedder.preprocess([crops[0]])).shape[1]).to(device)
        cbm.alpha = float(alpha)
    head = AdaFaceHead(cbm.W.shape[1], int(y.max()) + 1).to(device)
    params = trainable_parameters(cbm)
    opt = torch.optim.AdamW([*params, *head.parameters()], lr=lr)

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        return head(cbm(embedder.preprocess([crops[i] for i in idx.tolist()])), y[idx].to(device))

    total = max_steps if max_steps is not None else epochs * math.ceil(len(y) / batch_size)
    report.losses = run_steps(cbm, params, opt, step_loss, len(y), batch_size, total, seed, progress, train_mode=True)
    report.steps = len(report.losses)
    report.accuracy_after = verification_accuracy(embedder, ev_crops, ev_labels)
    if alignment is not None:
        report.alignment_after = alignment_accuracy(embedder, *alignment)
    return report


def report_extra(report: TrainReport, **more: Any) -> dict[str, Any]:
    """What a saved head records about its training."""
    return {"steps": report.steps, "final_loss": report.losses[-1] if report.losses else None, "accuracy_before": report.accuracy_before,
            "accuracy_after": report.accuracy_after, "alignment_before": report.alignment_before, "alignment_after": report.alignment_after,
            "evaluated_on": report.evaluated_on, **more}  # fmt: skip


# -- chest X-rays --------------------------------------------------------------------------
def concept_targets(scores: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """The paper's concept-score labels: each image's own scores, with the concepts present in
    its report raised to that image's highest score."""
    top = scores.max(dim=1, keepdim=True).values
    return torch.where(present, top.expand_as(scores), scores).detach()


def train_cxr_head(
    model: Any,
    batch: Callable[[Sequence[int]], torch.Tensor],
    present: torch.Tensor,
    labels: Sequence[int],
    *,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 5e-3,
    concept_weight: float = 2.0,
    max_steps: int | None = None,
    seed: int = 0,
    progress: Callable[[int, int, float], None] | None = None,
) -> list[float]:
    """The supervised pleural-effusion bottleneck (Yalavarthi and Ratha): a residual adapter
    and the linear head W on the Group-SoftMax concepts are trained (the CLIP towers stay
    frozen) with ``concept_weight * L1(scores, concept labels) + cross-entropy`` (the
    paper's 2:1), Adam with lr 0.005. ``batch(indices)`` gives the preprocessed images,
    ``present`` (n_images, n_concepts) marks the descriptors of each report. Returns the
    losses."""
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if present.shape != (len(y), len(model.descriptors)):
        raise DataError(f"concept labels {tuple(present.shape)} do not match {len(y)} images x {len(model.descriptors)} descriptors")
    if model.head is None:
        model.add_head()
    params = [*model.head.parameters(), *model.adapter.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    device = model.text.device

    def step_loss(idx: torch.Tensor) -> torch.Tensor:
        out = model(batch(idx.tolist()))
        target = concept_targets(out.scores, present[idx].to(device))
        return concept_weight * F.l1_loss(out.scores, target) + F.cross_entropy(out.logits, y[idx].to(device))

    total = max_steps if max_steps is not None else epochs * math.ceil(len(y) / batch_size)
    return run_steps(model, params, opt, step_loss, len(y), batch_size, total, seed, progress)
