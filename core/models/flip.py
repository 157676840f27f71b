"""Test-time flip averaging for any ``FaceEmbedder``: the embedding of a crop is the mean of
the crop's and its mirror image's (each L2-normalised, then the mean normalised again), as
face recognition evaluations commonly do (e.g. the LFW protocols of ArcFace and SFace).

The mirror is taken after ``preprocess`` (a horizontal flip of the input tensor, the same as
preprocessing the mirrored crop for any per-pixel preprocessing), so masked inputs of the
black-box explainers are mirrored with their masks. The wrapper has no layers to hook, so it
is black-box (``differentiable = False``): the CAM family needs the plain model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..types import FaceEmbedder, alignment_of, batch_size_of
from .base import BatchedEmbedding


class FlipAveraged(BatchedEmbedding):
    """``inner`` with flip-averaged embeddings; named ``<inner>_flip`` (its own calibration)."""

    differentiable = False

    def __init__(self, inner: FaceEmbedder, name: str | None = None) -> None:
        from ..explainers.perturb import affine_preprocess

        self.inner = inner
        self.name = name or f"{inner.name}_flip"
        self.input_size = inner.input_size
        self.embedding_dim = inner.embedding_dim
        self.device = inner.device
        self.alignment = alignment_of(inner)
        self.batch_size = batch_size_of(inner)
        self.affine_preprocess = affine_preprocess(inner)

    def weights_hash(self) -> str:
        return self.inner.weights_hash()

    def preprocess(self, faces: Sequence[np.ndarray]) -> torch.Tensor:
        return self.inner.preprocess(faces)

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        both = self.inner.embed(torch.cat([batch, batch.flip(-1)]))
        n = len(batch)
        return F.normalize(both[:n] + both[n:], dim=1)
