"""A tiny black-box embedder whose embedding depends only on one square of the image, so
the right explanation is known: hiding that square must matter, hiding anything else not."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.explainers import perturb
from core.faces.align import ARCFACE_TEMPLATE_112
from core.types import AlignedFace, FacePair


class RegionEmbedder:
    """Black-box (not a TorchEmbedder): embedding = normalise([mean of the region, 0.1])."""

    name = "toy_region"
    embedding_dim = 2
    differentiable = False
    device = torch.device("cpu")

    def __init__(self, size: int = 32, region: tuple[int, int, int, int] = (8, 16, 8, 16), batch_size: int = 4) -> None:
        self.input_size = size
        self.region = region
        self.batch_size = batch_size
        self.calls = 0

    def weights_hash(self) -> str:
        return f"toy-{self.region}"

    def preprocess(self, faces: Sequence[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(faces)).permute(0, 3, 1, 2).float() / 255

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        r0, r1, c0, c1 = self.region
        m = batch[:, :, r0:r1, c0:c1].mean((1, 2, 3))
        return F.normalize(torch.stack([m, torch.full_like(m, 0.1)], 1), dim=1)


def toy_face(size: int = 32, value: int = 255) -> AlignedFace:
    img = np.full((size, size, 3), value, np.uint8)
    lm = ARCFACE_TEMPLATE_112 * size / 112
    return AlignedFace(image=img, landmarks=lm.astype(np.float32), box=np.array([0, 0, size, size], np.float32),
                       transform=np.array([[1, 0, 0], [0, 1, 0]], np.float32))  # fmt: skip


@pytest.fixture
def toy():
    perturb.clear_cache()
    return RegionEmbedder()


@pytest.fixture
def toy_pair() -> FacePair:
    return FacePair(toy_face(), toy_face(value=250))  # nearly the same face, not the same bytes
