"""AdaFace IR-101 (Kim et al., "AdaFace: Quality Adaptive Margin for Face Recognition",
2022) trained on WebFace12M, from the Hugging Face Hub (CVLFace release
``minchul/cvlface_adaface_ir101_webface12m``), loaded as its model card describes:
download the repository, then ``transformers.AutoModel.from_pretrained(path,
trust_remote_code=True)``; here only from a revision the operator reviewed and pinned, with
its code files' SHA-256 checked before they run (``core.models.pins``). 512-d embeddings of 112x112 aligned crops (the same 5-point
template), inputs normalised to [-1, 1].
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import ModelUnavailableError
from .base import TorchEmbedder
from .pins import pinned_snapshot

ADAFACE_REPO = "minchul/cvlface_adaface_ir101_webface12m"
#: Models that run their repository's code, and the repository: loaded only when pinned.
REMOTE_CODE = {"adaface_ir101": ADAFACE_REPO}


class EmbeddingOnly(nn.Module):
    """Keeps the first output of models that return (embedding, norm) tuples."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out


def adaface_embedder(module: nn.Module, device: str | torch.device | None = "auto", input_size: int = 112, embedding_dim: int = 512) -> TorchEmbedder:
    """Wrap an AdaFace-style network (112x112 RGB in [-1, 1]) as a ``FaceEmbedder``."""
    return TorchEmbedder(
        "adaface_ir101", EmbeddingOnly(module), input_size, embedding_dim,
        mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5), device=device,
    )  # fmt: skip


@contextmanager
def _in_dir(path: str) -> Iterator[None]:
    cwd = os.getcwd()
    os.chdir(path)
    sys.path.insert(0, path)
    try:
        yield
    finally:
        os.chdir(cwd)
        sys.path.remove(path)


def load_adaface(device: str | torch.device | None = "auto") -> TorchEmbedder:
    """The pinned, reviewed revision of the repository only (``core.models.pins``): its
    ``trust_remote_code`` runs the repository's own Python."""
    path = str(pinned_snapshot("adaface_ir101", ADAFACE_REPO))
    try:
        from transformers import AutoModel
    except ImportError as e:
        raise ModelUnavailableError("adaface_ir101 needs transformers: pip install transformers") from e
    with _in_dir(path):  # the repository's remote code reads its files relative to itself
        model = AutoModel.from_pretrained(path, trust_remote_code=True)
    return adaface_embedder(model, device)
