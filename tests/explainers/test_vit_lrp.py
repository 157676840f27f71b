"""ViT-LRP, No-Grad ViT-LRP and rollout on tiny random open_clip and timm ViTs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.errors import MethodRequirementError
from core.explainers import vit_lrp as V


def tiny_open_clip(seed: int = 0, layers: int = 3, pool_type: str = "tok") -> torch.nn.Module:
    from open_clip.model import CLIPVisionCfg, _build_vision_tower

    torch.manual_seed(seed)
    cfg = CLIPVisionCfg(layers=layers, width=32, head_width=8, patch_size=8, image_size=32, pool_type=pool_type)
    return _build_vision_tower(24, cfg).eval()


def tiny_timm(seed: int = 0, depth: int = 2, **kw) -> torch.nn.Module:
    import timm

    torch.manual_seed(seed)
    kw = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": depth, "num_heads": 2, "num_classes": 0, **kw}
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **kw).eval()


MODELS = {"open_clip": tiny_open_clip, "timm": tiny_timm}


def _no_instrumentation_left(model: torch.nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and "forward" not in m.__dict__ for m in model.modules())


@pytest.mark.parametrize("family", MODELS)
def test_architecture_is_read_from_the_model(family):
    spec = V.find_vit(MODELS[family]())
    assert spec.family == family and spec.grid == (4, 4) and spec.image_size == (32, 32) and spec.prefix == 1
    assert spec.pool == "token" and len(spec.blocks) == (3 if family == "open_clip" else 2)
    reg = V.find_vit(tiny_timm(reg_tokens=2))
    assert reg.prefix == 3


def test_a_cnn_is_refused():
    with pytest.raises(MethodRequirementError, match="VisionTransformer"):
        V.find_vit(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)))


@pytest.mark.parametrize("family", MODELS)
def test_instrumented_forward_is_the_models_forward_and_leaves_nothing(family):
    model = MODELS[family]()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        with V.instrument(V.find_vit(model)) as trace:
            out = model(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert trace.blocks[0].attn.shape == (3, 2 if family == "timm" else 4, 17, 17)
    torch.testing.assert_close(trace.blocks[0].attn.sum(-1), torch.ones(3, trace.blocks[0].attn.shape[1], 17))
    assert _no_instrumentation_left(model)


def _direct_attention(model: torch.nn.Module, x: torch.Tensor, family: str) -> list[torch.Tensor]:
    """Each block's head-averaged attention, computed without the library's patches: torch's
    own MultiheadAttention weights (open_clip) or softmax(q kᵀ / sqrt(d)) from the qkv layer (timm)."""
    mats = []
    with torch.no_grad():
        if family == "open_clip":
            t = model._embeds(x)
            for blk in model.transformer.resblocks:
                y = blk.ln_1(t)
                mats.append(blk.attn(y, y, y, need_weights=True, average_attn_weights=True)[1])
                t = blk(t)
        else:
            t = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
            for blk in model.blocks:
                a = blk.attn
                b, n, c = t.shape
                qkv = a.qkv(blk.norm1(t)).reshape(b, n, 3, a.num_heads, c // a.num_heads).permute(2, 0, 3, 1, 4)
                mats.append(((qkv[0] @ qkv[1].transpose(-2, -1)) * a.scale).softmax(-1).mean(1))
                t = blk(t)
    return mats


@pytest.mark.parametrize("family", MODELS)
def test_rollout_equals_a_direct_matrix_product(family):
    model = MODELS[family]()
    x = torch.randn(2, 3, 32, 32)
    joint = None
    for a in _direct_attention(model, x, family):
        a = 0.5 * a + 0.5 * torch.eye(17)  # I + A with rows renormalised, as Abnar and Zuidema
        joint = a if joint is None else a @ joint
    expected = joint[:, 0, 1:].reshape(2, 4, 4)
    got = V.attention_maps(model, x, "rollout").maps
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_rollout_reads_the_mean_of_the_patch_rows_for_average_pooling():
    model = tiny_open_clip(pool_type="avg")
    x = torch.randn(1, 3, 32, 32)
    joint = None
    for a in _direct_attention(model, x, "open_clip"):
        a = 0.5 * a + 0.5 * torch.eye(17)
        joint = a if joint is None else a @ joint
    torch.testing.assert_close(V.attention_maps(model, x, "rollout").maps, joint[:, 1:, 1:].mean(1).reshape(1, 4, 4), atol=1e-5, rtol=1e-4)


def test_linear_and_add_rules_conserve_relevance():
    torch.manual_seed(1)
    x, w, r = torch.randn(2, 5, 7), torch.randn(3, 7), torch.randn(2, 5, 3)
    torch.testing.assert_close(V.linear_relprop(r, x, w).sum((1, 2)), r.sum((1, 2)), atol=1e-4, rtol=1e-4)
    # only positive contributions share: an input with w x <= 0 for every output gets nothing
    # the fast form equals Chefer's four-product form x⁺W⁺ + x⁻W⁻, with or without the known output
    px, nx, pw, nw = x.clamp(min=0), x.clamp(max=0), w.clamp(min=0), w.clamp(max=0)
    s = V.safe_divide(r, px @ pw.t() + nx @ nw.t())
    chefer = px * (s @ pw) + nx * (s @ nw)
    torch.testing.assert_close(V.linear_relprop(r, x, w), chefer, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(V.linear_relprop(r, x, w, x @ w.t()), chefer, atol=1e-4, rtol=1e-4)
    x1 = torch.tensor([[1.0, -1.0]])
    r1 = V.linear_relprop(torch.tensor([[2.0]]), x1, torch.tensor([[3.0, 1.0]]))
    torch.testing.assert_close(r1, torch.tensor([[2.0, 0.0]]))
    a, b = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    ra, rb = V.add_relprop(r := torch.randn(2, 4, 6), a, b)
    torch.testing.assert_close((ra + rb).sum((1, 2)), r.sum((1, 2)), atol=1e-4, rtol=1e-4)
    qa, qb = V.matmul_relprop(r2 := torch.randn(2, 4, 4), torch.rand(2, 4, 3), torch.rand(2, 3, 4))
    torch.testing.assert_close(qa.sum((1, 2)) + qb.sum((1, 2)), r2.sum((1, 2)), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", MODELS)
def test_relevance_is_conserved_across_each_block(family):
    model = MODELS[family]()
    x = torch.randn(2, 3, 32, 32)
    spec = V.find_vit(model)
    with torch.no_grad(), V.instrument(spec) as trace:
        out = model(x)
    _, start = V.cosine_target(torch.randn(2, out.shape[1]))(out)
    r = V.head_relprop(start, spec, trace, 17)
    torch.testing.assert_close(r.sum((1, 2)), start.sum(1), atol=1e-4, rtol=1e-3)  # the head conserves too
    for parts, bt in zip(reversed(spec.blocks), reversed(trace.blocks), strict=True):
        r_in, r_attn = V.block_relprop(r, parts, bt)
        torch.testing.assert_close(r_in.sum((1, 2)), r.sum((1, 2)), atol=1e-5, rtol=1e-4)
        assert r_attn.shape == bt.attn.shape
        r = r_in


def focused_vit(patches: list[int]) -> torch.nn.Module:
    """A timm ViT whose output depends only on the patch tokens in ``patches``: the
    positional embedding writes a large +A (in ``patches``) or -A (elsewhere, and on [CLS])
    into channel 0, and +A into channel 1 of every token; each head's queries read channel 1
    and keys channel 0, so every token attends only to those patches (logit gap ~100)."""
    model = tiny_timm(seed=3, depth=2)
    c, a = 32, 20.0
    with torch.no_grad():
        pos = torch.zeros_like(model.pos_embed)
        pos[0, :, 0] = -a
        pos[0, [1 + p for p in patches], 0] = a
        pos[0, :, 1] = a
        model.pos_embed.copy_(pos)
        model.cls_token.zero_()
        for blk in model.blocks:
            w = blk.attn.qkv.weight
            w[: 2 * c] = 0
            w[:c, 1] = 1.0
            w[c : 2 * c, 0] = 1.0
            if blk.attn.qkv.bias is not None:
                blk.attn.qkv.bias[: 2 * c] = 0
    return model


PATCHES = [5, 6, 10]


def _grid_mask(patches: list[int]) -> torch.Tensor:
    m = torch.zeros(16, dtype=torch.bool)
    m[patches] = True
    return m.reshape(4, 4)


def test_the_focused_vit_depends_only_on_its_patches():
    model = focused_vit(PATCHES)
    x = torch.randn(1, 3, 32, 32)
    inside = _grid_mask(PATCHES).repeat_interleave(8, 0).repeat_interleave(8, 1)
    noise = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        base = model(x)
        out_changed = model(x + noise * ~inside)
        in_changed = model(x + noise * inside)
    assert (out_changed - base).abs().max() < 1e-4 * (in_changed - base).abs().max()


@pytest.mark.parametrize("method", V.METHODS)
def test_the_map_puts_its_mass_on_the_patches_the_output_depends_on(method):
    model = focused_vit(PATCHES)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        t = model(torch.randn(2, 3, 32, 32))
    maps = V.attention_maps(model, x, method, V.cosine_target(t)).maps
    inside = _grid_mask(PATCHES)
    for m in maps:
        assert m.min() >= 0
        assert m[inside].sum() / m.sum() > 0.9, (method, m)
    # a random model of the same shape spreads its mass (the test can fail)
    rand = V.attention_maps(tiny_timm(seed=3), x, method, V.cosine_target(t)).maps
    assert all(m[inside].sum() / m.sum() < 0.6 for m in rand)


@pytest.mark.parametrize("family", MODELS)
@pytest.mark.parametrize("method", V.METHODS)
def test_batched_maps_equal_one_at_a_time_and_nothing_is_left(family, method):
    model = MODELS[family]()
    x = torch.randn(3, 3, 32, 32)
    t = torch.randn(3, 24 if family == "open_clip" else 32)
    together = V.attention_maps(model, x, method, V.cosine_target(t)).maps
    alone = torch.cat([V.attention_maps(model, x[i : i + 1], method, V.cosine_target(t[i : i + 1])).maps for i in range(3)])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
    assert _no_instrumentation_left(model)
    assert all(p.grad is None for p in model.parameters())


def test_lrp_differs_from_nograd_and_follows_the_target():
    model = tiny_open_clip()
    x = torch.randn(1, 3, 32, 32)
    t1, t2 = torch.randn(1, 24), torch.randn(1, 24)
    lrp = V.attention_maps(model, x, "vit_lrp", V.cosine_target(t1)).maps
    assert not torch.allclose(lrp, V.attention_maps(model, x, "vit_lrp_nograd", V.cosine_target(t1)).maps)
    assert not torch.allclose(lrp, V.attention_maps(model, x, "vit_lrp", V.cosine_target(t2)).maps)
    # rollout does not depend on the target
    r1 = V.attention_maps(model, x, "rollout", V.cosine_target(t1)).maps
    torch.testing.assert_close(r1, V.attention_maps(model, x, "rollout", V.cosine_target(t2)).maps)


def test_class_target_is_the_logit_and_starts_from_one_hot():
    model = tiny_timm(num_classes=5)
    x = torch.randn(2, 3, 32, 32)
    res = V.attention_maps(model, x, "vit_lrp", V.class_target(torch.tensor([1, 3])))
    with torch.no_grad():
        logits = model(x)
    torch.testing.assert_close(res.scores, logits[[0, 1], [1, 3]])
    assert res.maps.shape == (2, 4, 4)


def test_cosine_target_shares_sum_to_the_similarity():
    out, t = torch.randn(3, 8), torch.randn(3, 8)
    score, share = V.cosine_target(t)(out)
    torch.testing.assert_close(score, F.cosine_similarity(out, t))
    torch.testing.assert_close(share.sum(1), score)


def test_instrumentation_is_removed_after_an_exception_and_results_are_unchanged():
    model = tiny_open_clip()
    x = torch.randn(1, 3, 32, 32)
    t = torch.randn(1, 24)
    before = V.attention_maps(model, x, "vit_lrp", V.cosine_target(t)).maps

    def boom(out):
        raise RuntimeError("target failed")

    with pytest.raises(RuntimeError, match="target failed"):
        V.attention_maps(model, x, "vit_lrp", boom)
    assert _no_instrumentation_left(model)
    torch.testing.assert_close(V.attention_maps(model, x, "vit_lrp", V.cosine_target(t)).maps, before)
    with torch.no_grad():
        ref = model(x)
    with pytest.raises(KeyError), V.instrument(V.find_vit(model)):
        raise KeyError("inside")
    assert _no_instrumentation_left(model)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref)


def test_an_instance_forward_of_its_own_is_put_back():
    model = tiny_timm()
    attn = model.blocks[0].attn
    own = attn.forward  # a bound method stored on the instance, as another tool might
    attn.forward = own
    with V.instrument(V.find_vit(model)):
        assert attn.forward is not own
    assert attn.__dict__["forward"] is own


def test_to_image_scales_each_map_to_unit_range():
    maps = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[5.0, 5.0], [5.0, 5.0]]])
    img = V.to_image(maps, 8)
    assert img.shape == (2, 8, 8)
    assert float(img[0].min()) == 0.0 and float(img[0].max()) == 1.0
    assert float(img[1].abs().max()) == 0.0  # a flat map has nothing to show


def test_a_model_that_changes_the_vits_output_is_refused():
    class Scaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vit = tiny_open_clip()

        def forward(self, x):
            return 2 * self.vit(x)

    model = Scaled()
    with pytest.raises(MethodRequirementError, match="not its ViT's output"):
        V.attention_maps(model, torch.randn(1, 3, 32, 32), "rollout")
    assert _no_instrumentation_left(model)
