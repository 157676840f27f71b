"""FaceNet (Schroff et al., 2015) as trained on VGGFace2: facenet-pytorch's
InceptionResnetV1, 512-d embeddings of 160x160 crops normalised as (x - 127.5) / 128.

Its weights are downloaded by facenet-pytorch from GitHub into torch's hub cache; here the
file is looked up first so that, offline, the user gets a clear error at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import ModelUnavailableError
from .base import TorchEmbedder, sha256_file
from .weights import require_file

if TYPE_CHECKING:
    from facenet_pytorch import InceptionResnetV1

WEIGHTS_FILE = "20180402-114759-vggface2.pt"
WEIGHTS_URL = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/" + WEIGHTS_FILE


def weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def facenet_embedder(module: InceptionResnetV1, device: str | torch.device | None = "auto", weights_sha256: str | None = None) -> TorchEmbedder:
    """Wrap an InceptionResnetV1 (pretrained or random) as a ``FaceEmbedder``."""
    return TorchEmbedder(
        "facenet_vggface2", module, 160, 512,
        mean=(127.5, 127.5, 127.5), std=(128.0, 128.0, 128.0),
        device=device, weights_sha256=weights_sha256, feature_layer="block8", head=_pooled_head(module),
    )  # fmt: skip


def _pooled_head(m: InceptionResnetV1) -> Callable[[torch.Tensor], torch.Tensor]:
    """InceptionResnetV1 after block8: global average pooling, (dropout: identity in eval),
    a bias-free linear layer and BatchNorm1d: affine, so CAM takes its pooled form."""

    def head(a: torch.Tensor) -> torch.Tensor:
        return m.last_bn(m.last_linear(m.avgpool_1a(a).flatten(1)))

    return head


def load_facenet(device: str | torch.device | None = "auto") -> TorchEmbedder:
    path = require_file(weights_path(), WEIGHTS_URL, "facenet_vggface2")
    try:
        from facenet_pytorch import InceptionResnetV1
    except ImportError as e:
        raise ModelUnavailableError("facenet_vggface2 needs facenet-pytorch: pip install facenet-pytorch==2.5.3") from e
    module = InceptionResnetV1(pretrained="vggface2", classify=False)
    return facenet_embedder(module, device, sha256_file(path))
