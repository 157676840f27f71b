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

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..cancel import check_cancelled
from ..errors import InvalidParameterError, MethodRequirementError

# the model side and the rules live in their own modules; their names stay importable from here
from .lrp_rules import add_relprop as add_relprop
from .lrp_rules import block_relprop as block_relprop
from .lrp_rules import head_relprop as head_relprop
from .lrp_rules import linear_relprop as linear_relprop
from .lrp_rules import matmul_relprop as matmul_relprop
from .lrp_rules import safe_divide as safe_divide
from .vit_arch import BlockParts as BlockParts
from .vit_arch import BlockTrace as BlockTrace
from .vit_arch import Trace as Trace
from .vit_arch import ViTSpec as ViTSpec
from .vit_arch import find_vit as find_vit
from .vit_arch import instrument as instrument
from .vit_arch import vit_module as vit_module

log = logging.getLogger(__name__)

METHODS = ("vit_lrp", "vit_lrp_nograd", "rollout")


# -- maps ------------------------------------------------------------------------------------------
def rollout(matrices: list[torch.Tensor], normalise_rows: bool) -> torch.Tensor:
    """``(I + M_B) ⋯ (I + M_1)`` for per-block token matrices ``M_b`` (B, N, N), rows
    normalised to sum to 1 after adding the identity when asked (Abnar and Zuidema)."""
    eye = torch.eye(matrices[0].shape[-1], dtype=matrices[0].dtype, device=matrices[0].device)

    def step(m: torch.Tensor) -> torch.Tensor:
        m = m + eye
        return m / m.sum(-1, keepdim=True) if normalise_rows else m

    joint = step(matrices[0])
    for m in matrices[1:]:
        joint = step(m) @ joint
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
        raise InvalidParameterError(f"start_layer must be in 0..{len(spec.blocks) - 1} for this ViT of {len(spec.blocks)} blocks, got {start_layer}")
    start_layer = int(start_layer)
    grads = method == "vit_lrp"
    with instrument(spec) as trace, torch.enable_grad() if grads else torch.no_grad():
        inp = x.detach().requires_grad_(True) if grads else x
        out = model(inp)
        if not isinstance(trace.output, torch.Tensor) or trace.output.shape != out.shape or not torch.equal(trace.output, out):
            raise MethodRequirementError("the model's output is not its ViT's output; explain the ViT itself")
        start: torch.Tensor | None = None
        if target is None:
            scores = torch.zeros(out.shape[0], device=out.device)
        else:
            scores, start = target(out)
        attn_grads: list[torch.Tensor] = []
        if grads:  # only these gradients: nothing accumulates in the parameters' .grad
            found = torch.autograd.grad(scores.sum(), [bt.recorded("attn") for bt in trace.blocks], allow_unused=True)
            attn_grads = [g for g in found if g is not None]
            if len(attn_grads) < len(found):
                raise MethodRequirementError("no gradient reached the attention probabilities")
    with torch.no_grad():
        n_tokens = trace.blocks[0].recorded("attn").shape[-1]
        if method == "rollout":
            joint = rollout([bt.recorded("attn").detach().mean(1) for bt in trace.blocks[start_layer:]], normalise_rows=True)
        elif start is None:  # the LRP methods have a target (checked above)
            raise ValueError(f"{method} needs a target (cosine_target or class_target)")
        else:
            r = head_relprop(start.detach().to(out.dtype), spec, trace, n_tokens)
            cams: list[torch.Tensor] = []
            for i in range(len(spec.blocks) - 1, start_layer - 1, -1):
                check_cancelled()
                r_in, r_attn = block_relprop(r, spec.blocks[i], _detached(trace.blocks[i]), to_input=i > start_layer)
                cam = r_attn * attn_grads[i] if grads else r_attn
                cams.append(cam.clamp(min=0).mean(1))
                if r_in is not None:  # None at the start block, the last one
                    r = r_in
            joint = rollout(cams[::-1], normalise_rows=False)
        row = token_row(joint, spec)
        gh, gw = grid_shape(spec, row.shape[1], (int(x.shape[-2]), int(x.shape[-1])))
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
