"""Incremental inference for occlusion: Nakandala, Kumar, Papakonstantinou, "Incremental and
Approximate Inference for Faster Occlusion-based Deep CNN Explanations" (SIGMOD 2019).

An occluded image differs from the clean one only inside the patch. Through a convolution
with kernel ``k``, stride ``s`` and padding ``p`` the changed input rows ``[a, a + h)`` change
only the output rows

    o_min = ceil((a + p - k + 1) / s),   o_max = floor((a + h - 1 + p) / s)        (their eq. 3)

(the same for columns), and pointwise layers (batch norm in eval mode, PReLU, 1 x 1
convolutions) change exactly the rows they are given. So the clean activations of every layer
are computed once, and per occlusion only the changed window is carried from layer to layer:
each convolution reads its input window (the clean activation with the changed window pasted
in, zero padding outside the map) and computes only the output window. This is exact, not an
approximation: every output value is computed from the same inputs with the same weights as
a full forward pass (differences are float rounding, ~1e-7).

As in the paper, the windows of one batch have one size (the largest of the batch, moved
inside the map at the edges), so a batch is one dense convolution per layer, and the engine
falls back to the full computation from the layer where the window covers more than
``full_fraction`` of the map (their threshold on the "projective field"). Their approximate
variants (projective-field thresholding, adaptive drill-down) are not used: results must
equal the full recomputation.

Only plain feed-forward stacks qualify (``IncrementalPlan``: a pointwise input map, a list
of ``Conv2d`` / pointwise layers, a head run on the full last map); SFace is one
(``SFaceNet.incremental_plan``). Residual networks (dlib's ResNet) are not handled and use the
full forward pass.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .base import TorchEmbedder

log = logging.getLogger(__name__)

#: Pointwise layer types: output pixel (y, x) depends only on input pixel (y, x).
POINTWISE = (nn.Identity, nn.PReLU, nn.ReLU, nn.BatchNorm2d)
#: Above this share of a map, a layer (or the whole image, ``perturb.window_of``) runs on the
#: full map: gathering a tile that large costs about what it saves. Chosen, not tuned: the
#: per-patch-size ratios of ``benchmarks/bench_xmap.py`` are the figures to tune it by.
FULL_FRACTION = 0.5


@dataclass
class IncrementalPlan:
    """A network as ``head(layers(pre(x)))`` with every layer spatially local."""

    pre: Callable[[torch.Tensor], torch.Tensor]  # pointwise input map
    layers: list[nn.Module]
    head: Callable[[torch.Tensor], torch.Tensor]  # on the full last map

    def __post_init__(self) -> None:
        for layer in self.layers:
            if isinstance(layer, nn.Conv2d):
                if layer.dilation != (1, 1) or layer.padding_mode != "zeros" or isinstance(layer.padding, str):
                    raise ValueError(f"incremental inference needs plain zero-padded convolutions, got {layer}")
                if any(k < s for k, s in zip(layer.kernel_size, layer.stride, strict=True)):
                    raise ValueError(f"a convolution whose stride exceeds its kernel skips inputs: {layer}")
            elif not isinstance(layer, POINTWISE):
                raise ValueError(f"incremental inference handles Conv2d and pointwise layers, not {type(layer).__name__}")


def leaves(module: nn.Module) -> list[nn.Module]:
    """The leaf layers of nested ``nn.Sequential`` blocks, in order."""
    kids = list(module.children())
    if not kids:
        return [module]
    if not isinstance(module, nn.Sequential):
        raise ValueError(f"{type(module).__name__} is not a plain Sequential stack")
    return [leaf for k in kids for leaf in leaves(k)]


@dataclass
class _Window:
    """The changed part of one layer's activation for each image of a batch."""

    data: torch.Tensor  # (B, C, h, w)
    y0: torch.Tensor  # (B,) top row in the layer's map
    x0: torch.Tensor  # (B,) left column


def _out_range(a: torch.Tensor, h: int, k: int, s: int, p: int, n_out: int) -> tuple[torch.Tensor, int]:
    """Start (per image) and common size of the output rows that read input rows ``[a, a + h)``."""
    lo = torch.clamp(torch.div(a + p - k + 1 + s - 1, s, rounding_mode="floor"), min=0)
    hi = torch.clamp(torch.div(a + h - 1 + p, s, rounding_mode="floor"), max=n_out - 1)
    size = int((hi - lo).max()) + 1
    return torch.clamp(lo, max=n_out - size), size


@dataclass
class IncrementalOcclusion:
    """The clean activations of one image under ``plan``, and the embeddings of copies that
    differ from it inside one window each (``embed``)."""

    plan: IncrementalPlan
    clean: torch.Tensor  # (1, C, S, S) model-ready input
    full_fraction: float = FULL_FRACTION
    acts: list[torch.Tensor] = field(init=False)  # input of each layer, then the last map

    def __post_init__(self) -> None:
        with torch.inference_mode():
            x = self.plan.pre(self.clean)
            self.acts = [x]
            for layer in self.plan.layers:
                x = layer(x)
                self.acts.append(x)

    @staticmethod
    def _paste(base: torch.Tensor, win: _Window, oy: torch.Tensor, ox: torch.Tensor) -> torch.Tensor:
        """``base`` (B, C, H, W) with each image's window written at (oy, ox)."""
        b, _, h, w = win.data.shape
        bi = torch.arange(b, device=base.device)[:, None, None]
        ys = (oy[:, None] + torch.arange(h, device=base.device))[:, :, None]
        xs = (ox[:, None] + torch.arange(w, device=base.device))[:, None, :]
        out = base.permute(0, 2, 3, 1)  # channels last: (B, H, W, C) indexing writes whole pixel vectors
        out[bi, ys, xs] = win.data.permute(0, 2, 3, 1)
        return out.permute(0, 3, 1, 2)

    def _full(self, i: int, win: _Window) -> torch.Tensor:
        b = win.data.shape[0]
        base = self.acts[i].expand(b, -1, -1, -1).contiguous(memory_format=torch.channels_last)
        return self._paste(base, win, win.y0, win.x0)

    def _conv(self, i: int, conv: nn.Conv2d, win: _Window) -> _Window | torch.Tensor:
        (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
        ph, pw = (int(v) for v in conv.padding)  # never "same"/"valid": IncrementalPlan refuses string padding
        n_h, n_w = self.acts[i + 1].shape[2:]
        h, w = win.data.shape[2:]
        oy, size_h = _out_range(win.y0, h, kh, sh, ph, n_h)
        ox, size_w = _out_range(win.x0, w, kw, sw, pw, n_w)
        if size_h * size_w > self.full_fraction * n_h * n_w:
            return conv(self._full(i, win))
        src = self.acts[i]
        padded = F.pad(src, (pw, pw, ph, ph)).permute(0, 2, 3, 1)[0]  # (H + 2p, W + 2p, C)
        th, tw = (size_h - 1) * sh + kh, (size_w - 1) * sw + kw
        ys = (oy * sh)[:, None] + torch.arange(th, device=src.device)  # padded rows of each tile
        xs = (ox * sw)[:, None] + torch.arange(tw, device=src.device)
        tile = padded[ys[:, :, None], xs[:, None, :]].permute(0, 3, 1, 2)  # (B, C, th, tw), channels last in memory
        tile = self._paste(tile, win, win.y0 + ph - oy * sh, win.x0 + pw - ox * sw)
        out = F.conv2d(tile, conv.weight, conv.bias, stride=conv.stride, padding=0, groups=conv.groups)
        return _Window(out, oy, ox)

    def embed(self, windows: torch.Tensor, y0: Sequence[int] | torch.Tensor, x0: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Raw embeddings of the clean input with ``windows`` (``(B, C, h, w)``, model-ready
        values) written at rows ``y0`` and columns ``x0``: equal to ``head(layers(pre(x)))``
        of the full images."""
        dev = self.clean.device
        y = torch.as_tensor(y0, device=dev, dtype=torch.long)
        x = torch.as_tensor(x0, device=dev, dtype=torch.long)
        with torch.inference_mode():
            state: _Window | torch.Tensor = _Window(self.plan.pre(windows), y, x)
            for i, layer in enumerate(self.plan.layers):
                if isinstance(state, torch.Tensor):
                    state = layer(state)
                elif isinstance(layer, nn.Conv2d) and (layer.kernel_size != (1, 1) or layer.stride != (1, 1) or layer.padding != (0, 0)):
                    state = self._conv(i, layer, state)
                else:
                    state = _Window(layer(state.data), state.y0, state.x0)
            if isinstance(state, _Window):
                state = self._full(len(self.plan.layers), state)
            return self.plan.head(state)


def enabled() -> bool:
    """Whether occlusion maps use incremental inference: on unless ``XFV_INCREMENTAL=0``."""
    return os.environ.get("XFV_INCREMENTAL", "1").strip().lower() not in ("0", "false", "no", "off")


def plan_of(embedder: object) -> IncrementalPlan | None:
    """The incremental plan of an embedder's torch module, when it has one and the embedder
    embeds with that module alone (``TorchEmbedder.embed``: the normalised module output).
    A subclass that overrides ``embed`` (test-time augmentation, a second model) gets None:
    the plan describes the module, not what such an ``embed`` does."""
    if not isinstance(embedder, TorchEmbedder) or type(embedder).embed is not TorchEmbedder.embed:
        return None
    module = getattr(embedder, "module", None)
    make = getattr(module, "incremental_plan", None)
    return make() if callable(make) else None
