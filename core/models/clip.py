"""The image tower of an open_clip model as a face embedder: the aligned crop, resized to
the tower's input size and normalised with the model's mean and std, mapped to the CLIP
image embedding. Default: ViT-L-14 trained on LAION-2B (``laion2b_s32b_b82k``), the best
zero-shot face verifier in the ablation of Yalavarthi and Ratha.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import torch
from torch import nn

from ..errors import ModelUnavailableError
from .base import TorchEmbedder
from .weights import hf_file

if TYPE_CHECKING:
    from open_clip import CLIP, CustomTextCLIP

    #: An open_clip model; ``visual``, ``encode_text`` and ``logit_scale`` are what is used
    #: (open_clip ships no type information: the checker knows no more than the class).
    OpenClipModel: TypeAlias = CLIP | CustomTextCLIP


class ClipImageTower(nn.Module):
    """``encode_image`` of an open_clip model as a module (the text tower stays out)."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def _image_size(visual: nn.Module) -> int:
    size = getattr(visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def clip_embedder(model: OpenClipModel, name: str, device: str | torch.device | None = "auto") -> TorchEmbedder:
    """Wrap an open_clip ``CLIP`` model's image tower (pretrained or random)."""
    visual = model.visual
    mean = getattr(visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
    std = getattr(visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)
    dim = int(getattr(visual, "output_dim", 0) or model.text_projection.shape[1])
    return TorchEmbedder(
        name, ClipImageTower(visual), _image_size(visual), dim,
        mean=tuple(255.0 * m for m in mean), std=tuple(255.0 * s for s in std),
        device=device, feature_layer="visual.transformer",
    )  # fmt: skip


def load_open_clip(arch: str, pretrained: str, name: str) -> tuple[OpenClipModel, str | None]:
    """A pretrained open_clip ``CLIP`` model (eval mode) and the weights file it came from,
    from the local Hugging Face cache; ``ModelUnavailableError`` saying what to download."""
    try:
        import open_clip
    except ImportError as e:
        raise ModelUnavailableError(f"{name} needs open_clip: pip install open-clip-torch") from e
    cfg = open_clip.get_pretrained_cfg(arch, pretrained)
    if not cfg:
        raise ModelUnavailableError(f"open_clip has no pretrained weights '{pretrained}' for {arch}")
    hub = cfg.get("hf_hub", "").rstrip("/")
    if not hub:  # pragma: no cover - every default has a hub entry
        return open_clip.create_model(arch, pretrained=pretrained).eval(), None
    try:
        path = hf_file(hub, "open_clip_model.safetensors", name)
    except ModelUnavailableError as first:
        try:  # older repositories carry only the pickle
            path = hf_file(hub, "open_clip_pytorch_model.bin", name)
        except ModelUnavailableError:
            raise first from None
    return open_clip.create_model(arch, pretrained=path).eval(), path


def load_clip(
    arch: str = "ViT-L-14",
    pretrained: str = "laion2b_s32b_b82k",
    device: str | torch.device | None = "auto",
    name: str = "clip_vit_l14",
) -> TorchEmbedder:
    model, _ = load_open_clip(arch, pretrained, name)
    return clip_embedder(model, name, device)
