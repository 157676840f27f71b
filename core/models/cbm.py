"""A CLIP concept bottleneck as a face embedder, after Yalavarthi and Ratha, "Aligning
Characteristic Descriptors with Images for Human-Expert-like Explainability":
``I = alpha E_i(X) + (1 - alpha) F_i(E_i(X))``; concept scores ``S = cos(I, T)``;
``S_sm = GroupSoftMax(S)``; embedding ``X_emb = S_sm W``.

* ``E_i`` is the CLIP image tower, ``T`` the text encodings of the descriptors (computed
  once per model and descriptor set, cached on disk), ``F_i`` a residual adapter (CLIP-Adapter,
  Gao et al., which the paper follows: Linear(d, d/r) - ReLU - Linear(d/r, d) - ReLU, no
  biases, r = 4).
* The Group SoftMax runs over each group of mutually exclusive descriptors. The paper does
  not give its temperature; the cosine scores are multiplied by CLIP's own logit scale
  (``exp(logit_scale)``, 100 for the released models), as in CLIP's zero-shot
  classification, so a group's softmax is CLIP's zero-shot choice among its alternatives.
* ``W`` (N x m) aggregates the concepts into the verification embedding; the decision is
  the cosine similarity of two embeddings, so every concept's share of it can be read off
  (``core.explainers.concepts``).
* Zero-shot mode (what runs once CLIP weights are present): no adapter (alpha = 1) and
  ``W`` the identity. A trained head (adapter, ``W``, alpha, and the tower's last MLP when
  it was fine-tuned) is a ``.pt`` file saved by ``save_head`` and read by ``load_head``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError, MethodRequirementError
from ..text.descriptors import DescriptorSet, load_descriptors
from ..types import FaceEmbedder, torch_module
from .base import TorchEmbedder

if TYPE_CHECKING:
    from .clip import OpenClipModel

log = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def group_softmax(scores: torch.Tensor, group_ids: torch.Tensor, n_groups: int | None = None) -> torch.Tensor:
    """Softmax of ``scores`` (B, N) within each group: entries with the same ``group_ids``
    (N,) sum to one, per row."""
    g = group_ids.to(scores.device).long()
    n = int(n_groups if n_groups is not None else int(g.max()) + 1)
    idx = g.expand_as(scores)
    peak = torch.full((scores.shape[0], n), float("-inf"), dtype=scores.dtype, device=scores.device)
    peak = peak.scatter_reduce(1, idx, scores, reduce="amax", include_self=True)
    e = torch.exp(scores - peak.gather(1, idx))
    total = torch.zeros_like(peak).scatter_add(1, idx, e)
    return e / total.gather(1, idx)


class ResidualAdapter(nn.Module):
    """CLIP-Adapter's bottleneck ``F_i``: down to ``dim / reduction``, ReLU, back up, ReLU."""

    def __init__(self, dim: int, reduction: int = 4) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(dim, dim // reduction, bias=False), nn.ReLU(), nn.Linear(dim // reduction, dim, bias=False), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


@dataclass
class ConceptOutput:
    scores: torch.Tensor  # (B, N) cosine of the image encoding with each descriptor
    probs: torch.Tensor  # (B, N) Group SoftMax of the scaled scores
    embedding: torch.Tensor  # (B, m) S_sm W (not normalised)


class DescriptorScorer(nn.Module):
    """What both bottlenecks share: the image tower, an optional residual adapter
    (``I = alpha E_i(X) + (1 - alpha) F_i(E_i(X))``), the descriptors' cached text encodings,
    and the Group SoftMax of the scaled cosine scores."""

    text: torch.Tensor  # buffers: (N, d) normalised text encodings, (N,) group of each descriptor
    group_ids: torch.Tensor

    def __init__(
        self,
        visual: nn.Module,
        text_features: torch.Tensor,
        descriptors: DescriptorSet,
        logit_scale: float = 100.0,
        alpha: float = 1.0,
        adapter: ResidualAdapter | None = None,
    ) -> None:
        super().__init__()
        if text_features.shape[0] != len(descriptors):
            raise DataError(f"{text_features.shape[0]} text encodings for {len(descriptors)} descriptors")
        self.visual = visual
        self.descriptors = descriptors
        self.register_buffer("text", F.normalize(text_features.detach().float(), dim=1))
        self.register_buffer("group_ids", torch.tensor(descriptors.group_ids, dtype=torch.long))
        self.n_groups = len(descriptors.groups)
        self.logit_scale = float(logit_scale)
        self.alpha = float(alpha)
        self.adapter = adapter

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``I = alpha E_i(X) + (1 - alpha) F_i(E_i(X))``, normalised."""
        e = self.visual(x).float()
        if self.adapter is not None and self.alpha < 1:
            e = self.alpha * e + (1 - self.alpha) * self.adapter(e)
        return F.normalize(e, dim=1)

    def score(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosine scores of normalised image encodings with each descriptor, and their Group SoftMax."""
        scores = image @ self.text.t()
        return scores, group_softmax(self.logit_scale * scores, self.group_ids, self.n_groups)


class ConceptBottleneck(DescriptorScorer):
    """CLIP image tower -> (adapter) -> concept scores -> Group SoftMax -> W."""

    def __init__(
        self,
        visual: nn.Module,
        text_features: torch.Tensor,
        descriptors: DescriptorSet,
        logit_scale: float = 100.0,
        alpha: float = 1.0,
        adapter: ResidualAdapter | None = None,
        out_dim: int | None = None,
    ) -> None:
        super().__init__(visual, text_features, descriptors, logit_scale, alpha, adapter)
        n = len(descriptors)
        w = torch.eye(n) if out_dim is None else torch.empty(n, out_dim).normal_(0, n**-0.5)
        self.W = nn.Parameter(w)

    @property
    def zero_shot(self) -> bool:
        return self.adapter is None and self.W.shape[0] == self.W.shape[1] and bool(torch.equal(self.W.detach().cpu(), torch.eye(self.W.shape[0])))

    def concepts(self, x: torch.Tensor) -> ConceptOutput:
        scores, probs = self.score(self.encode(x))
        return ConceptOutput(scores, probs, probs @ self.W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.concepts(x).embedding


# -- text encodings ---------------------------------------------------------------------------
_TEXT_CACHE: dict[str, torch.Tensor] = {}


def _cache_dir() -> Path:
    return Path(os.environ.get("XFV_CACHE", Path.home() / ".cache" / "xfv")) / "text"


@torch.no_grad()
def text_features(
    model: OpenClipModel, tokenizer: Any, descriptors: DescriptorSet, cache_key: str | None = None, batch_size: int = 64
) -> torch.Tensor:
    """Normalised text encodings (N, d) of the descriptor prompts, computed once: kept in
    memory and, with a ``cache_key`` naming the weights, in ``~/.cache/xfv/text``."""
    if cache_key is None:
        return _encode_prompts(model, tokenizer, descriptors, batch_size)
    key = hashlib.sha256(f"{cache_key}|{descriptors.digest()}".encode()).hexdigest()[:32]
    if key in _TEXT_CACHE:
        return _TEXT_CACHE[key]
    path = _cache_dir() / f"{key}.pt"
    if path.is_file():
        try:
            feats = torch.load(path, map_location="cpu", weights_only=True)
            if feats.shape[0] == len(descriptors):
                _TEXT_CACHE[key] = feats
                return feats
        except Exception as e:  # a broken cache file is recomputed
            log.warning("ignoring the text-encoding cache %s: %s", path, e)
    feats = _encode_prompts(model, tokenizer, descriptors, batch_size)
    _TEXT_CACHE[key] = feats
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(feats, path)
    except OSError as e:
        log.warning("could not cache text encodings in %s: %s", path, e)
    return feats


def _encode_prompts(model: OpenClipModel, tokenizer: Any, descriptors: DescriptorSet, batch_size: int) -> torch.Tensor:
    device = next(model.parameters()).device
    prompts = descriptors.prompts
    out = []
    for i in range(0, len(prompts), batch_size):
        out.append(F.normalize(model.encode_text(tokenizer(prompts[i : i + batch_size]).to(device)).float(), dim=1).cpu())
    return torch.cat(out)


# -- heads ---------------------------------------------------------------------------------------
def save_head(cbm: ConceptBottleneck, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Save what training changes (adapter, W, alpha, and the image tower's last MLP) with
    the descriptor set's digest, so a head is only ever loaded onto the same concepts."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "descriptors": cbm.descriptors.digest(),
        "n_concepts": len(cbm.descriptors),
        "alpha": cbm.alpha,
        "W": cbm.W.detach().cpu(),
        "adapter": None if cbm.adapter is None else {k: v.cpu() for k, v in cbm.adapter.state_dict().items()},
        "last_mlp": {k: v.detach().cpu() for k, v in last_mlp(cbm.visual).state_dict().items()},
        "extra": extra or {},
    }
    torch.save(state, path)
    return path


def read_head(path: str | Path, descriptors: DescriptorSet, what: str) -> dict[str, Any]:
    """A saved head's state, checked to belong to ``descriptors`` (DataError otherwise)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("descriptors") != descriptors.digest():
        raise DataError(f"{path} was trained on another descriptor set ({state.get('n_concepts', '?')} concepts); use that set or retrain")
    return state


def load_head(cbm: ConceptBottleneck, path: str | Path) -> ConceptBottleneck:
    """Put a saved head onto ``cbm`` (same descriptor set and tower shape, else DataError)."""
    state = read_head(path, cbm.descriptors, "concept-bottleneck head")
    device = cbm.text.device
    w = state["W"]
    cbm.W = nn.Parameter(w.to(device))
    cbm.alpha = float(state["alpha"])
    if state["adapter"] is not None:
        dim = state["adapter"]["fc.0.weight"].shape[1]
        red = dim // state["adapter"]["fc.0.weight"].shape[0]
        cbm.adapter = ResidualAdapter(dim, red).to(device)
        cbm.adapter.load_state_dict(state["adapter"])
    else:
        cbm.adapter = None
    last_mlp(cbm.visual).load_state_dict(state["last_mlp"])
    return cbm


def last_mlp(visual: nn.Module) -> nn.Module:
    """The MLP of the image tower's last transformer block (what fine-tuning unfreezes)."""
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None) or getattr(visual, "blocks", None)
    if not blocks:
        raise DataError(f"{type(visual).__name__} has no transformer blocks")
    return blocks[-1].mlp


# -- embedders ---------------------------------------------------------------------------------
def cbm_embedder(
    model: OpenClipModel,
    tokenizer: Any,
    name: str,
    descriptors: DescriptorSet | None = None,
    device: str | torch.device | None = "auto",
    cache_key: str | None = None,
    head: str | Path | None = None,
) -> TorchEmbedder:
    """A ``TorchEmbedder`` over the concept bottleneck of an open_clip ``CLIP`` model
    (pretrained or random); zero-shot unless ``head`` names a trained head."""
    descriptors = descriptors or load_descriptors()
    feats = text_features(model, tokenizer, descriptors, cache_key)
    scale = float(model.logit_scale.detach().exp()) if hasattr(model, "logit_scale") else 100.0
    cbm = ConceptBottleneck(model.visual, feats, descriptors, logit_scale=scale)
    if head is not None:
        load_head(cbm, head)
    size = getattr(model.visual, "image_size", 224)
    size = int(size[0] if isinstance(size, (tuple, list)) else size)
    mean = getattr(model.visual, "image_mean", None) or CLIP_MEAN
    std = getattr(model.visual, "image_std", None) or CLIP_STD
    return TorchEmbedder(name, cbm, size, cbm.W.shape[1], mean=tuple(255.0 * m for m in mean), std=tuple(255.0 * s for s in std), device=device)


def load_cbm(
    arch: str = "ViT-L-14",
    pretrained: str = "laion2b_s32b_b82k",
    device: str | torch.device | None = "auto",
    name: str = "cbm_clip_vit_l14",
    descriptors: str | Path | None = None,
    head: str | Path | None = None,
) -> TorchEmbedder:
    """The zero-shot (or, with ``head``, trained) concept bottleneck over a pretrained
    open_clip model; ``ModelUnavailableError`` saying what to download when it is missing."""
    from .clip import load_open_clip

    model, path = load_open_clip(arch, pretrained, name)
    import open_clip

    tokenizer = open_clip.get_tokenizer(arch)
    st = Path(path).stat() if path else None
    key = f"{arch}|{pretrained}|{st.st_size}|{st.st_mtime_ns}" if st else None
    desc = load_descriptors(descriptors) if descriptors else load_descriptors()
    return cbm_embedder(model, tokenizer, name, desc, device, cache_key=key, head=head)


def concept_model(embedder: FaceEmbedder) -> ConceptBottleneck:
    """The ``ConceptBottleneck`` behind an embedder (MethodRequirementError for other models)."""
    module = torch_module(embedder)
    if not isinstance(module, ConceptBottleneck):
        raise MethodRequirementError(
            f"model '{embedder.name}' is not a concept bottleneck; use --model cbm_clip_vit_l14 "
            "(CLIP ViT-L-14 weights needed) for explanations in words"
        )
    return module
