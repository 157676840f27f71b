"""Incremental inference for occlusion (models.incremental): the embeddings and the X-Maps
equal the full recomputation's, the engine really runs windowed, and it refuses networks it
cannot handle."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.explainers import occlusion, perturb
from core.models import incremental as inc
from core.models.base import TorchEmbedder
from core.models.sface import SFaceNet, fold_batch_norms
from tests.explainers.test_cam import _randomise_bn


def _net(seed: int = 0, fold: bool = False) -> SFaceNet:
    torch.manual_seed(seed)
    net = SFaceNet(width=0.125, input_size=112, embedding_dim=16)
    _randomise_bn(net, seed)
    net.eval()
    return fold_batch_norms(net) if fold else net


def _embedder(net: SFaceNet) -> TorchEmbedder:
    return TorchEmbedder("tiny_sface_112", net, 112, 16, device="cpu", feature_layer="features", head="head", batch_size=32, channels_last=True)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each windowed convolution did: 'window' or 'full' (the fallback)."""
    seen: list[str] = []
    real = inc.IncrementalOcclusion._conv

    def conv(self, i, layer, win):  # type: ignore[no-untyped-def]
        out = real(self, i, layer, win)
        seen.append("full" if isinstance(out, torch.Tensor) else "window")
        return out

    monkeypatch.setattr(inc.IncrementalOcclusion, "_conv", conv)
    return seen


@pytest.mark.parametrize("fold", [False, True])
def test_windows_anywhere_give_the_full_forward(fold: bool, spy: list[str]) -> None:
    net = _net(1, fold)
    g = torch.Generator().manual_seed(0)
    clean = torch.rand((1, 3, 112, 112), generator=g) * 255
    engine = inc.IncrementalOcclusion(net.incremental_plan(), clean)
    for h, w in ((1, 1), (8, 8), (15, 9), (29, 29)):
        y0 = torch.tensor([0, 112 - h, 50, 0, 112 - h, 37])
        x0 = torch.tensor([0, 112 - w, 61, 112 - w, 0, 3])
        win = torch.rand((6, 3, h, w), generator=g) * 255
        full = clean.repeat(6, 1, 1, 1)
        for b in range(6):
            full[b, :, y0[b] : y0[b] + h, x0[b] : x0[b] + w] = win[b]
        with torch.inference_mode():
            want = net(full)
        got = engine.embed(win, y0, x0)
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-5), (h, w, float((got - want).abs().max()))
    assert "window" in spy and "full" in spy  # both the windowed path and the fallback ran


@pytest.mark.parametrize("knobs", [{}, {"patch_shape": "round", "edge_blur": 2.0, "stride": 13},
                                   {"fill": "noise", "stride": 13}, {"patch_geometry": "exact", "stride": 13}])  # fmt: skip
def test_xmaps_equal_the_full_recomputation(knobs: dict, spy: list[str]) -> None:
    from tests.explainers.test_cam import random_pair

    emb = _embedder(_net(2, fold=True))
    pair = random_pair(3, size=112)
    params = occlusion.XMapParams.from_knobs(**knobs)
    perturb.clear_cache()
    full = occlusion.xmaps(pair, emb, occlusion.METHODS, params, incremental=False)
    assert not spy
    perturb.clear_cache()
    fast = occlusion.xmaps(pair, emb, occlusion.METHODS, params, incremental=True)
    assert spy.count("window") > 0
    for m in occlusion.METHODS:
        for face in (0, 1):
            np.testing.assert_allclose(fast[m]["raw"][face], full[m]["raw"][face], atol=1e-7, rtol=1e-4)
            np.testing.assert_allclose(fast[m]["maps"][face], full[m]["maps"][face], atol=1e-5)
    perturb.clear_cache()


def test_real_sface_full_preset_equals_full_recomputation(runner, obama_pair) -> None:
    emb = runner.embedder
    img = perturb.crop_at_input_size(obama_pair.a.image, 112)
    for w in (8, 15, 29):  # the full preset's three hidden widths
        masks = occlusion.occlusion_masks(112, w, 5)[::7]
        a = perturb.Perturber(emb, img, "black").embed(masks)
        b = perturb.Perturber(emb, img, "black", incremental=True).embed(masks)
        assert float((a - b).abs().max()) < 1e-5


def test_large_masks_use_the_full_forward() -> None:
    masks = torch.zeros((3, 112, 112))
    masks[0, :80, :80] = 1
    assert perturb.window_of(masks) is None
    masks[0] = 0
    masks[0, 10:20, 30:45] = 1
    masks[1, 100:112, 0:5] = 1  # an edge: the common 12 x 15 window moves inside the map
    (y0, h), (x0, w) = perturb.window_of(masks)
    assert (h, w) == (12, 15)
    assert y0.tolist() == [10, 100, 0] and x0.tolist() == [30, 0, 0]


def test_networks_it_cannot_handle_are_refused() -> None:
    with pytest.raises(ValueError, match="pointwise"):
        inc.IncrementalPlan(lambda x: x, [nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2)], lambda x: x)
    with pytest.raises(ValueError, match="stride"):
        inc.IncrementalPlan(lambda x: x, [nn.Conv2d(3, 4, 1, stride=2)], lambda x: x)
    with pytest.raises(ValueError, match="Sequential"):
        inc.leaves(nn.Sequential(nn.Sequential(nn.Conv2d(3, 3, 3)), _Residual()))
    assert inc.plan_of(object()) is None


class _FlipTTA(TorchEmbedder):
    """Embeds each face and its mirror image: the module's plan does not describe this."""

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        return super().embed(batch) + super().embed(batch.flip(3))


def test_an_embedder_with_its_own_embed_gets_no_plan() -> None:
    net = _net(2)
    assert inc.plan_of(_embedder(net)) is not None
    tta = _FlipTTA("tiny_tta", net, 112, 16, device="cpu", feature_layer="features", head="head", batch_size=32)
    assert inc.plan_of(tta) is None
    masks = torch.zeros((3, 112, 112))
    for i, (y, x) in enumerate(((0, 0), (40, 70), (90, 5))):
        masks[i, y : y + 15, x : x + 15] = 1
    face = (np.random.default_rng(0).random((112, 112, 3)) * 255).astype(np.uint8)
    got = perturb.Perturber(tta, face, incremental=True).embed(masks)
    want = perturb.Perturber(tta, face, incremental=False).embed(masks)
    assert torch.allclose(got, want, atol=1e-6)


class _Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


def test_half_precision_is_off_on_a_cpu_unless_forced_and_moves_the_maps_little(monkeypatch):
    """XFV_HALF=1 is float16 on a GPU only; XFV_HALF=cpu forces bfloat16 here: the maps stay
    correlated above 0.999 with float32's (measured on SFace: Pearson >= 0.9997)."""
    net = _net(4, fold=True)
    emb = _embedder(net)
    face = (np.random.default_rng(1).random((112, 112, 3)) * 255).astype(np.uint8)
    masks = occlusion.occlusion_masks(112, 21, 13, "rect")
    monkeypatch.setenv("XFV_HALF", "1")
    assert perturb.half_dtype("cpu") is None and perturb.half_dtype("cuda") == torch.float16
    exact = perturb.Perturber(emb, face).embed(masks)
    monkeypatch.setenv("XFV_HALF", "cpu")
    assert perturb.half_dtype("cpu") == torch.bfloat16 and perturb.model_key(emb).endswith(":torch.bfloat16")
    half = perturb.Perturber(emb, face).embed(masks)
    assert half.dtype == torch.float32 and not torch.equal(half, exact)  # it really ran in bfloat16
    ref = exact[0]
    a, b = (exact @ ref).numpy(), (half @ ref).numpy()
    assert np.corrcoef(a, b)[0, 1] > 0.99
