"""A chest X-ray CLIP as a concept bottleneck for pleural effusion, after Yalavarthi and Ratha:
concept scores ``S = cos(E_i(X), T)`` over radiology descriptors, Group SoftMax, then either
a trained linear head ``logits = S_sm W + b`` (supervised mode) or, without one, CLIP's
zero-shot choice between "no pleural effusion" and "pleural effusion" (zero-shot mode).

The default CLIP is BiomedCLIP through open_clip
(``hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``); a local directory
holding ``open_clip_config.json`` and the weights also works. Without them,
``ModelUnavailableError`` says which files to fetch (the text tower's tokenizer,
``microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract``, is fetched by open_clip too).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError, ModelUnavailableError
from ..text.descriptors import ASSETS, DescriptorSet, load_descriptors
from .cbm import DescriptorScorer, ResidualAdapter, read_head, text_features
from .weights import hf_file

BIOMEDCLIP = "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
BIOMEDBERT = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"
RADIOLOGY = ASSETS / "radiology_cxr.json"
CLASSES = ("no pleural effusion", "pleural effusion")


def load_cxr_clip(source: str | Path | None = None, name: str = "biomedclip") -> tuple[nn.Module, Any, str]:
    """An open_clip CLIP for chest X-rays, its tokenizer and where it came from: ``source`` is
    a local directory, ``hf-hub:ORG/REPO`` (from the local Hugging Face cache) or None
    (BiomedCLIP)."""
    try:
        import open_clip
    except ImportError as e:  # pragma: no cover - a requirement
        raise ModelUnavailableError(f"{name} needs open_clip: pip install open-clip-torch") from e
    if source is not None and not str(source).startswith("hf-hub:"):
        folder = Path(source)
        if not (folder / "open_clip_config.json").is_file():
            raise ModelUnavailableError(f"{folder} is not an open_clip model folder (no open_clip_config.json); "
                                        f"download one, e.g. `huggingface-cli download {BIOMEDCLIP} --local-dir {folder}`")  # fmt: skip
        spec = f"local-dir:{folder}"
    else:
        repo = str(source or f"hf-hub:{BIOMEDCLIP}").removeprefix("hf-hub:")
        hf_file(repo, "open_clip_config.json", name)
        hf_file(repo, "open_clip_pytorch_model.bin", name)
        spec = f"hf-hub:{repo}"
    try:
        model, _ = open_clip.create_model_from_pretrained(spec)
        tokenizer = open_clip.get_tokenizer(spec)
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelUnavailableError(f"{name} ({spec}) could not be built offline: {e}. Its text tower also needs "
                                    f"`huggingface-cli download {BIOMEDBERT}` in the Hugging Face cache") from None  # fmt: skip
    return model.eval(), tokenizer, spec


@dataclass
class CXROutput:
    scores: torch.Tensor  # (B, N) cosine with each descriptor
    probs: torch.Tensor  # (B, N) Group SoftMax
    logits: torch.Tensor  # (B, 2): no effusion, effusion


class CXRBottleneck(DescriptorScorer):
    """Image tower -> descriptor scores -> Group SoftMax -> effusion logits."""

    def __init__(
        self, visual: nn.Module, text: torch.Tensor, descriptors: DescriptorSet, class_text: torch.Tensor, logit_scale: float = 100.0
    ) -> None:
        super().__init__(visual, text, descriptors, logit_scale)  # the adapter comes with a trained head
        self.register_buffer("class_text", F.normalize(class_text.detach().float(), dim=1))
        self.head: nn.Linear | None = None  # the supervised bottleneck's W, b

    @property
    def supervised(self) -> bool:
        return self.head is not None

    def add_head(self, alpha: float = 0.8) -> nn.Linear:
        """A fresh supervised head (W: concepts -> 2 classes) and residual adapter (mixing
        weight ``alpha``), replacing zero-shot mode."""
        self.head = nn.Linear(len(self.descriptors), len(CLASSES)).to(self.text.device)
        self.adapter = ResidualAdapter(self.text.shape[1]).to(self.text.device)
        self.alpha = float(alpha)
        return self.head

    def forward(self, x: torch.Tensor) -> CXROutput:
        image = self.encode(x)
        scores, probs = self.score(image)
        logits = self.head(probs) if self.head is not None else self.logit_scale * image @ self.class_text.t()
        return CXROutput(scores, probs, logits)


def cxr_bottleneck(model: nn.Module, tokenizer: Any, descriptors: DescriptorSet | None = None, cache_key: str | None = None) -> CXRBottleneck:
    """The bottleneck over an open_clip CLIP (pretrained, or a tiny random one in tests)."""
    descriptors = descriptors or load_descriptors(RADIOLOGY)
    text = text_features(model, tokenizer, descriptors, cache_key)
    group = {"group": "effusion", "alternatives": list(CLASSES)}
    classes = DescriptorSet.from_dict(
        {"name": "classes", "template": descriptors.template, "components": [{"component": "diagnosis", "groups": [group]}]}
    )
    class_text = text_features(model, tokenizer, classes, cache_key)
    scale = float(model.logit_scale.detach().exp()) if hasattr(model, "logit_scale") else 100.0
    out = CXRBottleneck(model.visual, text, descriptors, class_text, scale).eval()
    for p in out.parameters():  # frozen; train_cxr_head unfreezes what it trains
        p.requires_grad_(False)
    return out


def save_cxr_head(model: CXRBottleneck, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    if model.head is None:
        raise DataError("this bottleneck has no trained head (zero-shot mode)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"descriptors": model.descriptors.digest(), "n_concepts": len(model.descriptors),
             "state": {k: v.cpu() for k, v in model.head.state_dict().items()},
             "adapter": {k: v.cpu() for k, v in model.adapter.state_dict().items()}, "alpha": model.alpha, "extra": extra or {}}  # fmt: skip
    torch.save(state, path)
    return path


def load_cxr_head(model: CXRBottleneck, path: str | Path) -> CXRBottleneck:
    state = read_head(path, model.descriptors, "chest X-ray head")
    model.add_head(float(state["alpha"])).load_state_dict(state["state"])
    model.adapter.load_state_dict(state["adapter"])
    for p in model.parameters():
        p.requires_grad_(False)
    return model
