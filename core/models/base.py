"""A ``FaceEmbedder`` over any torch module, and the helpers every embedder shares."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..cancel import check_cancelled
from ..device import resolve_device

log = logging.getLogger(__name__)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_state_dict(module: nn.Module) -> str:
    """SHA-256 over a module's parameters and buffers, in name order."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


def chunks(n: int, size: int) -> Iterator[slice]:
    """Slices that cover ``range(n)`` in pieces of at most ``size``. Every batched loop goes
    through here, so each piece first checks that the work was not cancelled
    (``core.cancel``): a cancelled request stops within one batch."""
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {size}")
    for start in range(0, n, size):
        check_cancelled()
        yield slice(start, min(n, start + size))


class BatchedEmbedding:
    """``embed_faces`` for an embedder with ``preprocess``, ``embed`` and ``batch_size``: the
    no-gradient, batched embedding of whole lists of crops (``types.EmbedsFaces``)."""

    batch_size: int

    def preprocess(self, faces: Sequence[np.ndarray]) -> torch.Tensor:
        raise NotImplementedError

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def embed_faces(self, faces: Sequence[np.ndarray], batch_size: int | None = None) -> torch.Tensor:
        """Embeddings of RGB crops, ``batch_size`` at a time (a cost knob: same result)."""
        bs = batch_size or self.batch_size
        return torch.cat([self.embed(self.preprocess(faces[sl])) for sl in chunks(len(faces), bs)])


class TorchEmbedder(BatchedEmbedding):
    """Wraps an ``nn.Module`` that maps ``(B, 3, S, S)`` to ``(B, D)`` embeddings.

    ``preprocess`` turns RGB ``uint8`` crops into ``(x - mean) / std`` (per channel, in
    0-255 units), in the channel order the model was trained with, resizing crops that are
    not at ``input_size``. ``embed`` runs the module and L2-normalises the rows; it keeps
    the autograd graph, so gradient-based explainers can call it. ``embed_faces`` is the
    no-gradient, batched convenience for whole lists of faces.
    """

    differentiable = True

    def __init__(
        self,
        name: str,
        module: nn.Module,
        input_size: int,
        embedding_dim: int,
        *,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        channel_order: str = "RGB",
        device: str | torch.device | None = "auto",
        batch_size: int | None = None,
        weights_sha256: str | None = None,
        feature_layer: str | None = None,
        head: str | Callable[[torch.Tensor], torch.Tensor] | None = None,
        channels_last: bool = False,
        alignment: str = "arcface",
    ) -> None:
        if channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}")
        self.name = name
        self.alignment = alignment  # the 5-point template of its crops (core.faces.align.TEMPLATES)
        self.device = resolve_device(device)
        self.module = module.eval().to(self.device)
        self.channels_last = channels_last
        if channels_last:  # faster depthwise convolutions on the CPU; same results
            self.module = self.module.to(memory_format=torch.channels_last)
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.input_size = int(input_size)
        self.embedding_dim = int(embedding_dim)
        self.channel_order = channel_order
        # On a CPU, large batches thrash the caches (measured: benchmarks/bench_embed.py)
        self.batch_size = int(batch_size or (16 if self.device.type == "cpu" else 128))
        self.feature_layer = feature_layer
        self._head = head
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._weights_sha256 = weights_sha256

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, input_size={self.input_size}, dim={self.embedding_dim}, device={self.device})"

    def weights_hash(self) -> str:
        if self._weights_sha256 is None:
            self._weights_sha256 = sha256_state_dict(self.module)
        return self._weights_sha256

    def features_module(self) -> nn.Module | None:
        """The last convolutional block (or the layer named by ``feature_layer``) for hooks."""
        if self.feature_layer is None:
            return None
        return self.module.get_submodule(self.feature_layer)

    def head(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """What the model does after ``features_module`` (the unnormalised embedding of the
        last block's activations), when the model declares it: a submodule name or a callable.
        CAM needs it to be affine in eval mode (checked where it is used)."""
        if self._head is None or callable(self._head):
            return self._head
        return self.module.get_submodule(self._head)

    def preprocess(self, faces: Sequence[np.ndarray]) -> torch.Tensor:
        if len(faces) == 0:
            raise ValueError("preprocess needs at least one face")
        s = self.input_size
        arrs = []
        for f in faces:
            f = np.asarray(f)
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
                raise ValueError(f"faces must be HxWx3 uint8 RGB arrays, got {f.dtype} {f.shape}")
            if f.shape[:2] != (s, s):
                interp = cv2.INTER_AREA if f.shape[0] > s else cv2.INTER_LINEAR
                f = cv2.resize(f, (s, s), interpolation=interp)
            arrs.append(f)
        x = torch.from_numpy(np.stack(arrs)).to(self.device).permute(0, 3, 1, 2).float()
        if self.channel_order == "BGR":
            x = x.flip(1)
        x = (x - self._mean) / self._std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.module(batch), dim=1)
