"""The relevance rules of ViT-LRP, after Chefer, Gur and Wolf, "Transformer
Interpretability Beyond Attention Visualization" (CVPR 2021): ``R(b)``, the relevance of
block b's attention probabilities in ``Ā(b) = I + E_h[(∇A(b) ⊙ R(b))⁺]``
(``core.explainers.vit_lrp``), propagated back from the output with LRP-αβ (α = 1, β = 0)
through linear layers, the relevance-conserving ``Add`` for residual sums and the halved
z-rule for ``Q Kᵀ`` and ``A V``, on what ``core.explainers.vit_arch.instrument`` recorded.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import MethodRequirementError
from .vit_arch import BlockParts, BlockTrace, Trace, ViTSpec


def safe_divide(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """``a / b`` with 0 where ``b`` is 0 and ``|b|`` kept away from 0 (Chefer's ``safe_divide``)."""
    # Chefer's b.clamp(min=eps) + b.clamp(max=eps) is b + eps, in fewer passes over memory
    den = b + eps
    den = den.masked_fill(den == 0, eps)
    return (a / den).masked_fill_(b == 0, 0.0)


def linear_relprop(r: torch.Tensor, x: torch.Tensor, w: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """LRP-αβ with α = 1, β = 0 through ``y = x Wᵀ (+ b)``: only the positive contributions
    ``x⁺ W⁺`` and ``x⁻ W⁻`` share the relevance; the bias takes none. Conserves ``sum(r)``
    where the positive contributions are not all zero.

    Computed as ``Z = (x Wᵀ + |x| |W|ᵀ) / 2`` and ``R = (x ⊙ S W + |x| ⊙ S |W|) / 2`` with
    ``S = r / Z`` (the same numbers as Chefer's four products ``x⁺W⁺ + x⁻W⁻``, in three, or two
    when ``y = x Wᵀ`` is known from the forward pass)."""
    aw, ax = w.abs(), x.abs()
    half_s = safe_divide(r, ((x @ w.t()) if y is None else y) + ax @ aw.t())  # S / 2 = r / (2 Z)
    return (x * (half_s @ w)).addcmul_(ax, half_s @ aw)


def _no_bias(y: torch.Tensor | None, layer: nn.Module | None = None, bias: torch.Tensor | None = None) -> torch.Tensor | None:
    """A linear layer's recorded output without its bias (what ``linear_relprop`` needs)."""
    b = bias if layer is None else getattr(layer, "bias", None)
    return y if y is None or b is None else y - b


def _per_sample_sum(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).sum(1).view(-1, *([1] * (t.dim() - 1)))


def add_relprop(r: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Relevance of ``a`` and ``b`` in ``a + b`` (Chefer's ``Add``): the z-rule, then each part
    rescaled so the two totals are in proportion to their absolute z-rule totals and add up
    to ``sum(r)`` exactly (per sample)."""
    s = safe_divide(r, a + b)
    ra, rb = a * s, b * s
    sa, sb, total = _per_sample_sum(ra), _per_sample_sum(rb), _per_sample_sum(r)
    norm = sa.abs() + sb.abs()
    ra = ra * safe_divide(safe_divide(sa.abs(), norm) * total, sa)
    rb = rb * safe_divide(safe_divide(sb.abs(), norm) * total, sb)
    return ra, rb


def matmul_relprop(r: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The z-rule for both operands of ``a @ b``, each given half the relevance (Chefer
    halves the two shares so that the pair conserves ``sum(r)``)."""
    s = safe_divide(r, a @ b)
    return a * (s @ b.transpose(-2, -1)) / 2, b * (a.transpose(-2, -1) @ s) / 2


def block_relprop(r: torch.Tensor, parts: BlockParts, t: BlockTrace, to_input: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Relevance at a block's input from the relevance ``r`` at its output, and the
    relevance of its attention probabilities ``R(b)`` (B, H, N, N). With ``to_input=False``
    the q/k/v projection (only needed below this block) is skipped and None returned."""
    x0, x1, x2, u1, q, k, v, attn, ctx, u2, h = (t.recorded(n) for n in ("x0", "x1", "x2", "u1", "q", "k", "v", "attn", "ctx", "u2", "h"))
    r_x1, r_mlp = add_relprop(r, x1, x2 - x1)
    r_h = linear_relprop(r_mlp, h, parts.fc2.weight, _no_bias(t.y_fc2, parts.fc2))
    r_x1 = r_x1 + linear_relprop(r_h, u2, parts.fc1.weight, _no_bias(t.y_fc1, parts.fc1))
    r_x0, r_att = add_relprop(r_x1, x0, x1 - x0)
    r_ctx = linear_relprop(r_att, ctx, parts.proj().weight, _no_bias(t.y_proj, parts.proj()))
    b, n, _ = r_ctx.shape
    hd = v.shape[-1]
    r_ctx = r_ctx.reshape(b, n, parts.heads, hd).transpose(1, 2)
    r_attn, r_v = matmul_relprop(r_ctx, attn, v)
    if not to_input:
        return None, r_attn
    r_q, r_kt = matmul_relprop(r_attn, q, k.transpose(-2, -1))
    r_qkv = torch.stack([r_q, r_kt.transpose(-2, -1), r_v]).permute(1, 3, 0, 2, 4).reshape(b, n, -1)
    return r_x0 + linear_relprop(r_qkv, u1, parts.qkv_weight(), _no_bias(t.y_qkv, bias=parts.qkv_bias())), r_attn


def head_relprop(r: torch.Tensor, spec: ViTSpec, trace: Trace, n_tokens: int) -> torch.Tensor:
    """Relevance of the last block's output tokens (B, N, C) from the relevance of the output."""
    normed = trace.normed
    if normed is None:
        raise MethodRequirementError("the final norm of the ViT did not run")
    pooled_in = trace.head_input
    if pooled_in is None:  # open_clip: the projection is a matrix product, not a module
        pooled_in = normed if normed.dim() == 2 else (normed[:, 0] if spec.pool == "token" else normed[:, spec.prefix :].mean(1))
    w = spec.projection()
    r_pooled = r if w is None else linear_relprop(r, pooled_in, w)
    b = r.shape[0]
    out = torch.zeros(b, n_tokens, r_pooled.shape[-1], dtype=r_pooled.dtype, device=r_pooled.device)
    if spec.pool == "token":
        out[:, 0] = r_pooled
    else:  # z-rule through the mean of the patch tokens (norms pass relevance through)
        tokens = trace.blocks[-1].recorded("x2")[:, spec.prefix :] if normed.dim() == 2 else normed[:, spec.prefix :]
        out[:, spec.prefix :] = tokens * safe_divide(r_pooled, tokens.sum(1)).unsqueeze(1)
    return out
