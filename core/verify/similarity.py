"""Cosine similarity and the cosine distance d = 1 - cos (Knoche et al., eq. 1)."""

from __future__ import annotations

import numpy as np
import torch


def cosine_similarity(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Row-wise cosine similarity of two batches (or two vectors), in [-1, 1]."""
    if isinstance(a, torch.Tensor):
        return torch.nn.functional.cosine_similarity(a, torch.as_tensor(b), dim=-1)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    return (a * b).sum(-1) / np.maximum(na * nb, 1e-12)


def cosine_distance(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """``1 - cosine_similarity``, in [0, 2]."""
    return 1.0 - cosine_similarity(a, b)
