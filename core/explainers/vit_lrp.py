"""Attention maps of vision transformers, after Chefer, Gur and Wolf, "Transformer
Interpretability Beyond Attention Visualization" (CVPR 2021):
``C = Ā(B) ⋯ Ā(1)``, ``Ā(b) = I + E_h[(∇A(b) ⊙ R(b))⁺]``, the map is C's [CLS] row over
the patch tokens; ``R(b)`` is the LRP relevance of block b's attention probabilities and
``∇A(b)`` the gradient of the target with respect to them.

Three methods (``METHODS``), as in Chefer et al.'s code and Correia et al.'s comparison:

* ``vit_lrp``: the equation above (Chefer's "transformer attribution").
* ``vit_lrp_nograd``: ``Ā(b) = I + E_h[R(b)⁺]``, the relevance alone ("No-Grad ViT-LRP",
  Chefer's ``relprop(method="rollout")``).
* ``rollout``: Abnar and Zuidema's attention rollout, ``Ā(b) = rownorm(I + E_h[A(b)])``.

The LRP rules are Chefer's: LRP-αβ with α = 1, β = 0 for linear layers (``q, k, v`` and output
projections, both MLP layers, the output projection of the pooled token); the relevance-
conserving rule of his ``Add`` for the residual sums (shares by the two addends' z-rule sums);
the z-rule for the two attention products ``Q Kᵀ`` and ``A V`` with each operand's relevance
halved; layer norms, GELU, softmax, dropout and layer scale pass relevance through unchanged.
The relevance entering the network is, for a verification target (the other face's
embedding ``t``), each embedding dimension's share of the cosine similarity,
``e_i t_i / |e|``; for a classifier, Chefer's one-hot vector of the class.

How it runs: the model instance gets, for the duration of one call, an explicit attention
forward on each block's attention module (the fused kernels hide the probabilities) and
forward hooks that record the inputs of the layers the rules need; everything is removed on
leaving ``instrument``, also after an exception. Architecture facts (blocks, patch grid,
prefix tokens, pooling, projection) are read from the model: open_clip ``VisionTransformer``
towers and timm ``VisionTransformer`` models, batched, on any device. Deviation from the
reference code: it runs batches of one on CUDA and its own ViT class only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..cancel import check_cancelled
from ..errors import MethodRequirementError

log = logging.getLogger(__name__)

METHODS = ("vit_lrp", "vit_lrp_nograd", "rollout")


# -- architecture ----------------------------------------------------------------------------
@dataclass
class BlockParts:
    """The parts of one pre-norm transformer block the rules touch."""

    block: nn.Module
    norm2: nn.Module  # its input is the mid-block residual stream
    attn: nn.Module
    fc1: nn.Linear
    fc2: nn.Linear
    kind: str  # "mha" (torch MultiheadAttention, open_clip) or "timm"

    @property
    def heads(self) -> int:
        return int(self.attn.num_heads)

    def qkv_weight(self) -> torch.Tensor:
        return self.attn.in_proj_weight if self.kind == "mha" else self.attn.qkv.weight

    def qkv_bias(self) -> torch.Tensor | None:
        return self.attn.in_proj_bias if self.kind == "mha" else self.attn.qkv.bias

    def proj(self) -> nn.Linear:
        return self.attn.out_proj if self.kind == "mha" else self.attn.proj


@dataclass
class ViTSpec:
    """Where the pieces of a ViT are, read from the model instance."""

    vit: nn.Module
    family: str  # "open_clip" or "timm"
    blocks: list[BlockParts]
    prefix: int  # tokens before the patch tokens ([CLS], registers)
    pool: str  # "token" (the first token) or "avg" (mean of the patch tokens)
    final_norm: nn.Module | None  # its output is what gets pooled (None: tokens pooled as they are)
    head: nn.Linear | None  # timm: a linear classifier/projection after pooling
    grid: tuple[int, int] | None
    image_size: tuple[int, int] | None

    def projection(self) -> torch.Tensor | None:
        """The (out, in) weight that maps the pooled token to the output, if any."""
        if self.family == "open_clip":
            proj = getattr(self.vit, "proj", None)
            return None if proj is None else proj.t()
        return None if self.head is None else self.head.weight


def _pair(v: Any) -> tuple[int, int] | None:
    if v is None:
        return None
    if isinstance(v, (tuple, list)):
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _open_clip_spec(vit: nn.Module) -> ViTSpec:
    if getattr(vit, "attn_pool", None) is not None:
        raise MethodRequirementError("ViT-LRP does not support open_clip towers with attentional pooling (CoCa)")
    if vit.pool_type not in ("tok", "avg"):
        raise MethodRequirementError(f"ViT-LRP needs [CLS] or average pooling, this tower pools with {vit.pool_type!r}")
    blocks = []
    for blk in vit.transformer.resblocks:
        mha = getattr(blk, "attn", None)
        if not isinstance(mha, nn.MultiheadAttention) or not mha._qkv_same_embed_dim or mha.bias_k is not None or mha.add_zero_attn:
            raise MethodRequirementError(f"ViT-LRP supports open_clip blocks with standard self-attention, not {type(blk).__name__}")
        blocks.append(BlockParts(blk, blk.ln_2, mha, blk.mlp.c_fc, blk.mlp.c_proj, "mha"))
    return ViTSpec(vit, "open_clip", blocks, 1, "token" if vit.pool_type == "tok" else "avg", vit.ln_post, None,
                   _pair(getattr(vit, "grid_size", None)), _pair(getattr(vit, "image_size", None)))  # fmt: skip


def _timm_spec(vit: nn.Module) -> ViTSpec:
    from timm.layers import Attention

    if getattr(vit, "attn_pool", None) is not None or vit.global_pool not in ("token", "avg"):
        raise MethodRequirementError(f"ViT-LRP needs [CLS] or average pooling, this model pools with {vit.global_pool!r}")
    blocks = []
    for blk in vit.blocks:
        attn, mlp = getattr(blk, "attn", None), getattr(blk, "mlp", None)
        if type(attn) is not Attention or attn.gate is not None or not isinstance(getattr(mlp, "fc1", None), nn.Linear):
            raise MethodRequirementError(f"ViT-LRP supports timm blocks with standard attention and MLP, not {type(blk).__name__}")
        blocks.append(BlockParts(blk, blk.norm2, attn, mlp.fc1, mlp.fc2, "timm"))
    head = vit.head if isinstance(vit.head, nn.Linear) else None
    if head is None and not isinstance(vit.head, nn.Identity):
        raise MethodRequirementError(f"ViT-LRP supports a linear head or none, not {type(vit.head).__name__}")
    pe = vit.patch_embed
    return ViTSpec(vit, "timm", blocks, int(vit.num_prefix_tokens), vit.global_pool, vit.norm, head,
                   _pair(getattr(pe, "grid_size", None)), _pair(getattr(pe, "img_size", None)))  # fmt: skip


def find_vit(model: nn.Module) -> ViTSpec:
    """The ViT inside ``model`` (the model itself or a submodule): an open_clip
    ``VisionTransformer`` or a timm ``VisionTransformer``."""
    classes: list[tuple[type, Callable[[nn.Module], ViTSpec]]] = []
    with contextlib.suppress(ImportError):
        from open_clip.transformer import VisionTransformer as OpenClipViT

        classes.append((OpenClipViT, _open_clip_spec))
    with contextlib.suppress(ImportError):
        from timm.models.vision_transformer import VisionTransformer as TimmViT

        classes.append((TimmViT, _timm_spec))
    for m in model.modules():
        for cls, build in classes:
            if isinstance(m, cls):
                return build(m)
    raise MethodRequirementError(f"{type(model).__name__} has no open_clip or timm VisionTransformer; ViT-LRP and rollout need one")


# -- recording -------------------------------------------------------------------------------
@dataclass
class BlockTrace:
    """What one block saw in the forward pass (names as in the module docstring)."""

    x0: torch.Tensor | None = None  # block input
    x1: torch.Tensor | None = None  # after the attention residual
    x2: torch.Tensor | None = None  # block output
    u1: torch.Tensor | None = None  # input of the q, k, v projection (after norm 1)
    q: torch.Tensor | None = None  # (B, H, N, d)
    k: torch.Tensor | None = None
    v: torch.Tensor | None = None
    attn: torch.Tensor | None = None  # attention probabilities (B, H, N, N)
    ctx: torch.Tensor | None = None  # input of the output projection (B, N, C)
    u2: torch.Tensor | None = None  # input of the first MLP layer
    h: torch.Tensor | None = None  # input of the second MLP layer
    # outputs of the four linear layers (bias included), which save the rule a product each
    y_qkv: torch.Tensor | None = None
    y_proj: torch.Tensor | None = None
    y_fc1: torch.Tensor | None = None
    y_fc2: torch.Tensor | None = None


@dataclass
class Trace:
    blocks: list[BlockTrace]
    normed: torch.Tensor | None = None  # the final norm's output (what gets pooled)
    head_input: torch.Tensor | None = None  # timm: the linear head's input
    output: torch.Tensor | None = None  # the ViT's output
    extra: dict[str, Any] = field(default_factory=dict)


def _first(args: tuple, kwargs: dict, name: str) -> torch.Tensor:
    return args[0] if args else kwargs[name]


def _mha_forward(mha: nn.MultiheadAttention, rec: BlockTrace) -> Callable[..., tuple[torch.Tensor, None]]:
    """nn.MultiheadAttention's self-attention with the probabilities in the open."""

    def forward(query, key=None, value=None, key_padding_mask=None, need_weights=True, attn_mask=None, average_attn_weights=True, is_causal=False):
        if (key is not None and key is not query) or (value is not None and value is not query) or key_padding_mask is not None:
            raise MethodRequirementError("ViT-LRP explains self-attention only (no cross-attention or padding masks)")
        x = query if mha.batch_first else query.transpose(0, 1)
        b, n, c = x.shape
        h = mha.num_heads
        y_qkv = F.linear(x, mha.in_proj_weight, mha.in_proj_bias)
        q, k, v = y_qkv.reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4).unbind(0)
        logits = (q * (c // h) ** -0.5) @ k.transpose(-2, -1)
        if attn_mask is not None:
            logits = logits.masked_fill(attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else logits + attn_mask
        a = logits.softmax(-1)
        ctx = (a @ v).transpose(1, 2).reshape(b, n, c)
        out = mha.out_proj(ctx)
        rec.u1, rec.q, rec.k, rec.v, rec.attn, rec.ctx, rec.y_qkv, rec.y_proj = x, q, k, v, a, ctx, y_qkv, out
        return (out if mha.batch_first else out.transpose(0, 1)), None

    return forward


def _timm_forward(attn: nn.Module, rec: BlockTrace) -> Callable[..., torch.Tensor]:
    """timm's ``Attention.forward`` on its non-fused path, keeping the probabilities."""

    def forward(x, attn_mask=None, is_causal=False):
        if is_causal:
            raise MethodRequirementError("ViT-LRP explains bidirectional attention only")
        b, n, _ = x.shape
        y_qkv = attn.qkv(x)
        q, k, v = y_qkv.reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = attn.q_norm(q), attn.k_norm(k)
        logits = (q * attn.scale) @ k.transpose(-2, -1)
        if attn_mask is not None:
            logits = logits.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else logits + attn_mask
        a = attn.attn_drop(logits.softmax(-1))
        ctx = attn.norm((a @ v).transpose(1, 2).reshape(b, n, attn.attn_dim))
        out = attn.proj(ctx)
        rec.u1, rec.q, rec.k, rec.v, rec.attn, rec.ctx, rec.y_qkv, rec.y_proj = x, q, k, v, a, ctx, y_qkv, out
        return attn.proj_drop(out)

    return forward


@contextlib.contextmanager
def instrument(spec: ViTSpec) -> Iterator[Trace]:
    """Record what the rules need during the forward passes made inside the block.

    Each attention module gets an instance-level ``forward`` (explicit softmax attention,
    numerically the same function) and the blocks, MLP layers and norms get forward hooks;
    all of them are removed on exit, also after an exception, and a ``forward`` the instance
    had of its own is put back.
    """
    trace = Trace([BlockTrace() for _ in spec.blocks])
    handles: list[Any] = []
    patched: list[tuple[nn.Module, Any]] = []

    def save(rec: Any, attr: str, take: Callable[[tuple, dict, Any], torch.Tensor]) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any = None) -> None:
            setattr(rec, attr, take(args, kwargs, output))

        return hook

    try:
        for parts, rec in zip(spec.blocks, trace.blocks, strict=True):
            name = "q_x" if parts.kind == "mha" else "x"
            handles.append(parts.block.register_forward_pre_hook(lambda m, a: check_cancelled()))  # a cancel stops within a block
            handles.append(parts.block.register_forward_pre_hook(save(rec, "x0", lambda a, k, o, n=name: _first(a, k, n)), with_kwargs=True))
            handles.append(parts.block.register_forward_hook(save(rec, "x2", lambda a, k, o: o), with_kwargs=True))
            handles.append(parts.norm2.register_forward_pre_hook(save(rec, "x1", lambda a, k, o: _first(a, k, "input")), with_kwargs=True))
            handles.append(parts.fc1.register_forward_pre_hook(save(rec, "u2", lambda a, k, o: _first(a, k, "input")), with_kwargs=True))
            handles.append(parts.fc2.register_forward_pre_hook(save(rec, "h", lambda a, k, o: _first(a, k, "input")), with_kwargs=True))
            handles.append(parts.fc1.register_forward_hook(save(rec, "y_fc1", lambda a, k, o: o), with_kwargs=True))
            handles.append(parts.fc2.register_forward_hook(save(rec, "y_fc2", lambda a, k, o: o), with_kwargs=True))
            own = parts.attn.__dict__.get("forward")
            patched.append((parts.attn, own))
            make = _mha_forward if parts.kind == "mha" else _timm_forward
            parts.attn.forward = make(parts.attn, rec)
        if spec.final_norm is not None:
            handles.append(spec.final_norm.register_forward_hook(save(trace, "normed", lambda a, k, o: o), with_kwargs=True))
        if spec.head is not None:
            handles.append(spec.head.register_forward_pre_hook(save(trace, "head_input", lambda a, k, o: _first(a, k, "input")), with_kwargs=True))
        handles.append(spec.vit.register_forward_hook(save(trace, "output", lambda a, k, o: o), with_kwargs=True))
        yield trace
    finally:
        for h in handles:
            h.remove()
        for module, own in patched:
            if own is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = own


# -- relevance rules ---------------------------------------------------------------------------
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
    r_x1, r_mlp = add_relprop(r, t.x1, t.x2 - t.x1)
    r_h = linear_relprop(r_mlp, t.h, parts.fc2.weight, _no_bias(t.y_fc2, parts.fc2))
    r_x1 = r_x1 + linear_relprop(r_h, t.u2, parts.fc1.weight, _no_bias(t.y_fc1, parts.fc1))
    r_x0, r_att = add_relprop(r_x1, t.x0, t.x1 - t.x0)
    r_ctx = linear_relprop(r_att, t.ctx, parts.proj().weight, _no_bias(t.y_proj, parts.proj()))
    b, n, _ = r_ctx.shape
    hd = t.v.shape[-1]
    r_ctx = r_ctx.reshape(b, n, parts.heads, hd).transpose(1, 2)
    r_attn, r_v = matmul_relprop(r_ctx, t.attn, t.v)
    if not to_input:
        return None, r_attn
    r_q, r_kt = matmul_relprop(r_attn, t.q, t.k.transpose(-2, -1))
    r_qkv = torch.stack([r_q, r_kt.transpose(-2, -1), r_v]).permute(1, 3, 0, 2, 4).reshape(b, n, -1)
    return r_x0 + linear_relprop(r_qkv, t.u1, parts.qkv_weight(), _no_bias(t.y_qkv, bias=parts.qkv_bias())), r_attn


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
        tokens = trace.blocks[-1].x2[:, spec.prefix :] if normed.dim() == 2 else normed[:, spec.prefix :]
        out[:, spec.prefix :] = tokens * safe_divide(r_pooled, tokens.sum(1)).unsqueeze(1)
    return out


# -- maps ------------------------------------------------------------------------------------------
def rollout(matrices: list[torch.Tensor], normalise_rows: bool) -> torch.Tensor:
    """``(I + M_B) ⋯ (I + M_1)`` for per-block token matrices ``M_b`` (B, N, N), rows
    normalised to sum to 1 after adding the identity when asked (Abnar and Zuidema)."""
    eye = torch.eye(matrices[0].shape[-1], dtype=matrices[0].dtype, device=matrices[0].device)
    joint = None
    for m in matrices:
        m = m + eye
        if normalise_rows:
            m = m / m.sum(-1, keepdim=True)
        joint = m if joint is None else m @ joint
    return joint


def token_row(joint: torch.Tensor, spec: ViTSpec) -> torch.Tensor:
    """What the pooled output draws from each patch token: the [CLS] row, or the mean of the
    patch tokens' rows for average pooling (B, N_patches)."""
    if spec.pool == "token":
        return joint[:, 0, spec.prefix :]
    return joint[:, spec.prefix :, spec.prefix :].mean(1)


def grid_shape(spec: ViTSpec, n_patches: int, image_hw: tuple[int, int]) -> tuple[int, int]:
    """The patch grid: the model's own when it matches the token count, else the one the
    input's aspect ratio implies."""
    if spec.grid is not None and spec.grid[0] * spec.grid[1] == n_patches:
        return spec.grid
    h, w = image_hw
    gh = max(1, round((n_patches * h / w) ** 0.5))
    if n_patches % gh:
        raise MethodRequirementError(f"cannot lay {n_patches} patch tokens out on a grid")
    return gh, n_patches // gh


@dataclass
class AttentionResult:
    maps: torch.Tensor  # (B, gh, gw) non-negative, unnormalised
    outputs: torch.Tensor  # (B, D) the model's raw outputs (detached)
    scores: torch.Tensor  # (B,) the explained target (cosine similarity or logit)


TargetFn = Callable[[torch.Tensor], torch.Tensor]


def cosine_target(partners: torch.Tensor | Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The cosine similarity of each output to a target embedding, and each dimension's
    share of it (``e_i t_i / |e|``), which is the relevance LRP starts from. ``partners`` is
    a (B, D) tensor or a function of the detached outputs (e.g. the other face of a pair)."""

    def target(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = partners(out.detach()) if callable(partners) else partners
        share = F.normalize(out, dim=1) * F.normalize(t.to(out), dim=1)
        return share.sum(1), share.detach()

    return target


def class_target(index: torch.Tensor | int) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A classifier's logit of class ``index`` (per sample or one for all); LRP starts from
    the one-hot vector, as in Chefer et al."""

    def target(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(index, device=out.device).expand(out.shape[0])
        onehot = F.one_hot(idx, out.shape[1]).to(out.dtype)
        return (out * onehot).sum(1), onehot

    return target


def attention_maps(
    model: nn.Module,
    x: torch.Tensor,
    method: str,
    target: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    spec: ViTSpec | None = None,
    start_layer: int = 0,
) -> AttentionResult:
    """Patch-grid maps ``(B, gh, gw)`` of ``method`` (one of ``METHODS``) for the batch ``x``
    of preprocessed images; ``target`` (``cosine_target`` or ``class_target``) is needed by
    the two LRP methods. The model's output must be the ViT's output.

    ``start_layer``: the product runs over blocks ``start_layer`` to the last, as the
    ``start_layer`` of Chefer et al.'s ``generate_LRP`` / ``generate_rollout``. 0 (all
    blocks) is the paper's equation and their API's default; their benchmark scripts use 1.
    Relevance is not propagated below the start block (nothing there is used)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method != "rollout" and target is None:
        raise ValueError(f"{method} needs a target (cosine_target or class_target)")
    spec = spec or find_vit(model)
    if not 0 <= int(start_layer) < len(spec.blocks):
        raise ValueError(f"start_layer must be in 0..{len(spec.blocks) - 1} for this ViT of {len(spec.blocks)} blocks, got {start_layer}")
    start_layer = int(start_layer)
    grads = method == "vit_lrp"
    with instrument(spec) as trace, torch.enable_grad() if grads else torch.no_grad():
        inp = x.detach().requires_grad_(True) if grads else x
        out = model(inp)
        if not isinstance(trace.output, torch.Tensor) or trace.output.shape != out.shape or not torch.equal(trace.output, out):
            raise MethodRequirementError("the model's output is not its ViT's output; explain the ViT itself")
        if target is None:
            scores = torch.zeros(out.shape[0], device=out.device)
            start = None
        else:
            scores, start = target(out)
        if grads:  # only these gradients: nothing accumulates in the parameters' .grad
            attn_grads = torch.autograd.grad(scores.sum(), [bt.attn for bt in trace.blocks], allow_unused=True)
            if any(g is None for g in attn_grads):
                raise MethodRequirementError("no gradient reached the attention probabilities")
    with torch.no_grad():
        n_tokens = trace.blocks[0].attn.shape[-1]
        if method == "rollout":
            joint = rollout([bt.attn.detach().mean(1) for bt in trace.blocks[start_layer:]], normalise_rows=True)
        else:
            r = head_relprop(start.detach().to(out.dtype), spec, trace, n_tokens)
            cams: list[torch.Tensor] = []
            for i in range(len(spec.blocks) - 1, start_layer - 1, -1):
                check_cancelled()
                r, r_attn = block_relprop(r, spec.blocks[i], _detached(trace.blocks[i]), to_input=i > start_layer)
                cam = r_attn * attn_grads[i] if grads else r_attn
                cams.append(cam.clamp(min=0).mean(1))
            joint = rollout(cams[::-1], normalise_rows=False)
        row = token_row(joint, spec)
        gh, gw = grid_shape(spec, row.shape[1], tuple(x.shape[-2:]))
        return AttentionResult(row.reshape(-1, gh, gw).float(), out.detach(), scores.detach())


def _detached(t: BlockTrace) -> BlockTrace:
    return BlockTrace(**{k: (None if v is None else v.detach()) for k, v in vars(t).items()})


def to_image(maps: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Grid maps (B, gh, gw) bilinearly upsampled to the image and scaled to [0, 1] per map."""
    hw = (size, size) if isinstance(size, int) else size
    up = F.interpolate(maps[:, None].float(), size=hw, mode="bilinear", align_corners=False)[:, 0]
    lo = up.flatten(1).min(1).values.view(-1, 1, 1)
    hi = up.flatten(1).max(1).values.view(-1, 1, 1)
    return torch.where(hi > lo, (up - lo) / (hi - lo).clamp(min=1e-12), torch.zeros_like(up))
