"""The ViT side of ViT-LRP and rollout (Chefer, Gur and Wolf, CVPR 2021,
``C = Ā(B) ⋯ Ā(1)``; see ``core.explainers.vit_lrp``): where a model's blocks, patch grid,
prefix tokens, pooling and projection are (``find_vit``, read from the instance), and the
recording of one forward pass (``instrument``) that the relevance rules of
``core.explainers.lrp_rules`` need.

Supported: open_clip ``VisionTransformer`` towers and timm ``VisionTransformer`` models.
``vit_module`` is the one test of "this model has a ViT" (the runner's ``vit`` capability
uses it too).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..cancel import check_cancelled
from ..errors import MethodRequirementError

if TYPE_CHECKING:
    from open_clip.transformer import VisionTransformer as OpenClipViT
    from timm.layers import Attention as TimmAttention
    from timm.models.vision_transformer import VisionTransformer as TimmViT


# -- architecture ----------------------------------------------------------------------------
@dataclass
class BlockParts:
    """The parts of one pre-norm transformer block the rules touch."""

    block: nn.Module
    norm2: nn.Module  # its input is the mid-block residual stream
    attn: nn.MultiheadAttention | TimmAttention
    fc1: nn.Linear
    fc2: nn.Linear
    kind: str  # "mha" (torch MultiheadAttention, open_clip) or "timm"

    @property
    def heads(self) -> int:
        return int(self.attn.num_heads)

    def qkv_weight(self) -> torch.Tensor:
        return self.attn.in_proj_weight if isinstance(self.attn, nn.MultiheadAttention) else self.attn.qkv.weight

    def qkv_bias(self) -> torch.Tensor | None:
        return self.attn.in_proj_bias if isinstance(self.attn, nn.MultiheadAttention) else self.attn.qkv.bias

    def proj(self) -> nn.Linear:
        return self.attn.out_proj if isinstance(self.attn, nn.MultiheadAttention) else self.attn.proj


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


def _open_clip_spec(vit: OpenClipViT) -> ViTSpec:
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


def _timm_spec(vit: TimmViT) -> ViTSpec:
    from timm.layers import Attention

    if getattr(vit, "attn_pool", None) is not None or vit.global_pool not in ("token", "avg"):
        raise MethodRequirementError(f"ViT-LRP needs [CLS] or average pooling, this model pools with {vit.global_pool!r}")
    blocks = []
    for blk in vit.blocks:
        attn, mlp = getattr(blk, "attn", None), getattr(blk, "mlp", None)
        fc1, fc2 = getattr(mlp, "fc1", None), getattr(mlp, "fc2", None)
        if type(attn) is not Attention or attn.gate is not None or not isinstance(fc1, nn.Linear) or not isinstance(fc2, nn.Linear):
            raise MethodRequirementError(f"ViT-LRP supports timm blocks with standard attention and MLP, not {type(blk).__name__}")
        blocks.append(BlockParts(blk, blk.get_submodule("norm2"), attn, fc1, fc2, "timm"))
    head = vit.head if isinstance(vit.head, nn.Linear) else None
    if head is None and not isinstance(vit.head, nn.Identity):
        raise MethodRequirementError(f"ViT-LRP supports a linear head or none, not {type(vit.head).__name__}")
    pe = vit.patch_embed
    return ViTSpec(vit, "timm", blocks, int(vit.num_prefix_tokens), vit.global_pool, vit.norm, head,
                   _pair(getattr(pe, "grid_size", None)), _pair(getattr(pe, "img_size", None)))  # fmt: skip


def _vit_classes() -> list[tuple[type[nn.Module], Callable[[Any], ViTSpec]]]:
    """The ViT classes of the libraries already imported: an instance of one means its module
    was loaded, so nothing is imported here (a CNN never pays for importing timm)."""
    classes: list[tuple[type[nn.Module], Callable[[Any], ViTSpec]]] = []
    for module, build in (("open_clip.transformer", _open_clip_spec), ("timm.models.vision_transformer", _timm_spec)):
        cls = getattr(sys.modules.get(module), "VisionTransformer", None)
        if isinstance(cls, type) and issubclass(cls, nn.Module):
            classes.append((cls, build))
    return classes


def vit_module(model: nn.Module) -> nn.Module | None:
    """The first open_clip or timm ``VisionTransformer`` in ``model`` (itself or a
    submodule), None when it has none."""
    classes = [cls for cls, _ in _vit_classes()]
    return next((m for m in model.modules() if isinstance(m, tuple(classes))), None) if classes else None


def find_vit(model: nn.Module) -> ViTSpec:
    """The ViT inside ``model`` (the model itself or a submodule): an open_clip
    ``VisionTransformer`` or a timm ``VisionTransformer``."""
    classes = _vit_classes()
    for m in model.modules():
        for cls, build in classes:
            if isinstance(m, cls):
                return build(m)
    raise MethodRequirementError(f"{type(model).__name__} has no open_clip or timm VisionTransformer; ViT-LRP and rollout need one")


# -- recording -------------------------------------------------------------------------------
@dataclass
class BlockTrace:
    """What one block saw in the forward pass (names as in ``core.explainers.vit_lrp``)."""

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

    def recorded(self, name: str) -> torch.Tensor:
        """The tensor recorded as ``name``; an error saying so when the block did not run."""
        value = getattr(self, name)
        if value is None:
            raise MethodRequirementError(f"the forward pass recorded no {name} for this block (did the ViT run inside instrument?)")
        return value


@dataclass
class Trace:
    blocks: list[BlockTrace]
    normed: torch.Tensor | None = None  # the final norm's output (what gets pooled)
    head_input: torch.Tensor | None = None  # timm: the linear head's input
    output: torch.Tensor | None = None  # the ViT's output
    extra: dict[str, Any] = field(default_factory=dict)


def _first(args: tuple, kwargs: dict, name: str) -> torch.Tensor:
    return args[0] if args else kwargs[name]


def _input(name: str) -> Callable[[tuple, dict, Any], torch.Tensor]:
    """What a pre-hook records: the module's first argument (or the keyword ``name``)."""
    return lambda a, k, o: _first(a, k, name)


def _output(args: tuple, kwargs: dict, output: Any) -> Any:
    """What a forward hook records: the module's output."""
    return output


def _mha_forward(mha: nn.MultiheadAttention, rec: BlockTrace) -> Callable[..., tuple[torch.Tensor, None]]:
    """nn.MultiheadAttention's self-attention with the probabilities in the open."""

    def forward(
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, None]:
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


def _timm_forward(attn: TimmAttention, rec: BlockTrace) -> Callable[..., torch.Tensor]:
    """timm's ``Attention.forward`` on its non-fused path, keeping the probabilities."""

    def forward(x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
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
            handles.append(parts.block.register_forward_pre_hook(save(rec, "x0", _input(name)), with_kwargs=True))
            handles.append(parts.block.register_forward_hook(save(rec, "x2", _output), with_kwargs=True))
            handles.append(parts.norm2.register_forward_pre_hook(save(rec, "x1", _input("input")), with_kwargs=True))
            handles.append(parts.fc1.register_forward_pre_hook(save(rec, "u2", _input("input")), with_kwargs=True))
            handles.append(parts.fc2.register_forward_pre_hook(save(rec, "h", _input("input")), with_kwargs=True))
            handles.append(parts.fc1.register_forward_hook(save(rec, "y_fc1", _output), with_kwargs=True))
            handles.append(parts.fc2.register_forward_hook(save(rec, "y_fc2", _output), with_kwargs=True))
            module: nn.Module = parts.attn
            patched.append((module, module.__dict__.get("forward")))
            if isinstance(parts.attn, nn.MultiheadAttention):
                module.forward = _mha_forward(parts.attn, rec)
            else:
                module.forward = _timm_forward(parts.attn, rec)
        if spec.final_norm is not None:
            handles.append(spec.final_norm.register_forward_hook(save(trace, "normed", _output), with_kwargs=True))
        if spec.head is not None:
            handles.append(spec.head.register_forward_pre_hook(save(trace, "head_input", _input("input")), with_kwargs=True))
        handles.append(spec.vit.register_forward_hook(save(trace, "output", _output), with_kwargs=True))
        yield trace
    finally:
        for h in handles:
            h.remove()
        for module, own in patched:
            if own is None:
                module.__dict__.pop("forward", None)
            else:
                module.forward = own
