"""CAM, Grad-CAM and Grad-CAM++ on tiny random models of the real architectures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import MethodRequirementError
from core.explainers.cam import CamExplainer, capture_activations, contributions, feature_module, grad_cam, grad_cam_pp, gradients
from core.models.base import TorchEmbedder
from core.models.sface import SFaceNet
from core.types import FacePair

from .conftest import toy_face


def _randomise_bn(net: nn.Module, seed: int = 0) -> None:
    """Random BatchNorm statistics and variance-preserving weights, so a deep random net
    still tells images apart (torch's default init makes SFace's activations vanish)."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=g)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.05)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.05)


def tiny_sface(seed: int = 0, batch_size: int = 16) -> TorchEmbedder:
    torch.manual_seed(seed)
    net = SFaceNet(width=0.125, input_size=32, embedding_dim=16)
    _randomise_bn(net, seed)
    return TorchEmbedder("tiny_sface", net, 32, 16, device="cpu", feature_layer="features", head="head", batch_size=batch_size)


def random_pair(seed: int = 0, size: int = 32) -> FacePair:
    rng = np.random.default_rng(seed)
    a, b = toy_face(size), toy_face(size)
    a = type(a)(image=rng.integers(0, 256, (size, size, 3), dtype=np.uint8), landmarks=a.landmarks, box=a.box, transform=a.transform)
    b = type(b)(image=rng.integers(0, 256, (size, size, 3), dtype=np.uint8), landmarks=b.landmarks, box=b.box, transform=b.transform)
    return FacePair(a, b)


def _cos(emb: TorchEmbedder, pair: FacePair) -> float:
    with torch.no_grad():
        e = emb.embed(emb.preprocess([pair.a.image, pair.b.image]))
    return float(e[0] @ e[1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cam_sums_to_the_similarity(seed):
    emb, pair = tiny_sface(seed), random_pair(seed)
    exp = CamExplainer("cam").explain(pair, emb)
    sim = _cos(emb, pair)
    for g in exp.extras["grid"]:
        assert g.shape == (2, 2)  # 32 px / 16
        assert float(g.sum()) == pytest.approx(sim, abs=1e-5)
    for m in exp.maps:  # the upsampled map keeps the sum
        assert float(m.sum()) == pytest.approx(sim, abs=1e-4)
    assert exp.signed and exp.scores["similarity"] == pytest.approx(sim, abs=1e-6)


def test_sface_contribution_is_the_weight_slice_product():
    """Location ij's part of the embedding: its (BN2d-scaled) features times the matching
    columns of the linear layer, scaled by BN1d (the shifts go to the constant)."""
    emb, pair = tiny_sface(3), random_pair(3)
    con = contributions(emb, [pair.a.image])
    net = emb.module
    bn2, lin, bn1 = net.head[0], net.head[2], net.head[3]
    with torch.no_grad():
        a = net.features((emb.preprocess([pair.a.image]) - 127.5) * 0.0078125)[0].contiguous()
        c, h, w = a.shape
        g2 = bn2.weight / torch.sqrt(bn2.running_var + bn2.eps)
        g1 = bn1.weight / torch.sqrt(bn1.running_var + bn1.eps)
        wr = lin.weight.view(-1, c, h, w)
        for i in range(h):
            for j in range(w):
                expected = g1 * (wr[:, :, i, j] @ (g2 * a[:, i, j]))
                torch.testing.assert_close(con.loc[0, i * w + j], expected, atol=1e-5, rtol=1e-4)


class PooledNet(nn.Module):
    """conv -> global average pooling -> bias-free linear -> BatchNorm1d (FaceNet's head)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 6, bias=False)
        self.bn = nn.BatchNorm1d(6)

    def head(self, a: torch.Tensor) -> torch.Tensor:
        return self.bn(self.fc(self.pool(a).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x / 255))


def test_pooled_form_for_global_average_pooling_heads():
    torch.manual_seed(0)
    net = PooledNet()
    _randomise_bn(net)
    emb = TorchEmbedder("pooled", net, 32, 6, device="cpu", feature_layer="conv", head=net.head)
    pair = random_pair(5)
    con = contributions(emb, [pair.a.image])
    with torch.no_grad():
        a = net.conv(emb.preprocess([pair.a.image]) / 255)[0]
        g1 = net.bn.weight / torch.sqrt(net.bn.running_var + net.bn.eps)
        hw = a.shape[1] * a.shape[2]
        expected = (g1 * (a.flatten(1).T @ net.fc.weight.T)) / hw  # (HW, D): W A_ij / HW, BN-scaled
    torch.testing.assert_close(con.loc[0], expected, atol=1e-5, rtol=1e-4)
    exp = CamExplainer("cam").explain(pair, emb)
    assert float(exp.extras["grid"][0].sum()) == pytest.approx(_cos(emb, pair), abs=1e-5)


def test_cam_refuses_a_head_that_is_not_affine():
    torch.manual_seed(0)
    net = PooledNet()
    emb = TorchEmbedder("relu_head", net, 32, 6, device="cpu", feature_layer="conv", head=lambda a: F.relu(net.head(a)) + net.head(a) ** 2)
    with pytest.raises(MethodRequirementError, match="affine"):
        CamExplainer("cam").explain(random_pair(), emb)


def test_cam_needs_a_declared_head():
    torch.manual_seed(0)
    net = PooledNet()
    emb = TorchEmbedder("no_head", net, 32, 6, device="cpu", feature_layer="conv")
    with pytest.raises(MethodRequirementError, match="Grad-CAM"):
        CamExplainer("cam").explain(random_pair(), emb)
    assert CamExplainer("grad_cam").explain(random_pair(), emb).ok  # Grad-CAM only needs the feature map


class RegionNet(nn.Module):
    """Features are pixel values; the head only looks at the top-left quarter of the grid."""

    def __init__(self) -> None:
        super().__init__()
        self.feat = nn.Conv2d(3, 4, 4, stride=4)
        torch.manual_seed(1)
        mask = torch.zeros(1, 1, 8, 8)
        mask[..., :4, :4] = 1
        self.register_buffer("mask", mask)
        self.fc = nn.Linear(4 * 64, 5)

    def head(self, a: torch.Tensor) -> torch.Tensor:
        return self.fc((a * self.mask).flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feat(x / 255))


def test_cam_is_flat_where_the_model_does_not_look():
    """CAM is local: locations the head ignores get only the evenly spread constant (the
    linear layer's bias). (Grad-CAM is not local by design: its channel weights multiply
    the activations everywhere.)"""
    net = RegionNet()
    emb = TorchEmbedder("region", net, 32, 5, device="cpu", feature_layer="feat", head=net.head)
    exp = CamExplainer("cam").explain(random_pair(7), emb)
    for g in exp.extras["grid"]:
        outside = np.concatenate([g[4:, :].ravel(), g[:4, 4:].ravel()])
        assert np.ptp(outside) < 1e-7
        assert np.abs(g[:4, :4] - outside[0]).max() > 1e-4


@pytest.mark.parametrize("kind", ["cam", "grad_cam", "grad_cam_pp"])
def test_batched_equals_unbatched(kind):
    pair = random_pair(11)
    one = CamExplainer(kind).explain(pair, tiny_sface(0, batch_size=1), batch_size=1)
    two = CamExplainer(kind).explain(pair, tiny_sface(0), batch_size=2)
    for x, y in zip(one.maps, two.maps, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5)


def test_grad_cam_pp_reduces_to_grad_cam_weights_for_one_location():
    """With a single location, Grad-CAM++'s pixel weight a = 1/(2 + A g)... and Grad-CAM's
    mean gradient differ; check the closed form on a hand-made case instead."""
    acts = torch.tensor([[[[1.0, 2.0]], [[0.5, 0.0]]]])  # (1, 2, 1, 2)
    grads = torch.tensor([[[[0.5, -1.0]], [[2.0, 1.0]]]])
    pp = grad_cam_pp(acts, grads)
    # channel 0: sum A = 3; a = g^2/(2 g^2 + 3 g^3): at 0.5 -> 0.25/(0.5+0.375); at -1 -> 1/(2-3) (ReLU(g)=0 there)
    w0 = (0.25 / 0.875) * 0.5
    # channel 1: sum A = 0.5; at 2 -> 4/(8+4); at 1 -> 1/(2+0.5)
    w1 = (4 / 12) * 2 + (1 / 2.5) * 1
    expected = torch.relu(w0 * acts[0, 0] + w1 * acts[0, 1])
    torch.testing.assert_close(pp[0], expected)
    gc = grad_cam(acts, grads)
    torch.testing.assert_close(gc[0], torch.relu(-0.25 * acts[0, 0] + 1.5 * acts[0, 1]))


def test_gradients_score_is_the_cosine_similarity():
    emb, pair = tiny_sface(2), random_pair(2)
    with torch.no_grad():
        e = emb.embed(emb.preprocess([pair.a.image, pair.b.image]))
    _, _, s = gradients(emb, [pair.a.image, pair.b.image], e.flip(0))
    assert float(s[0]) == pytest.approx(float(e[0] @ e[1]), abs=1e-5)


def test_hooks_are_removed_even_after_an_exception():
    emb = tiny_sface()
    module = feature_module(emb)
    with pytest.raises(RuntimeError), capture_activations(module):
        assert len(module._forward_hooks) == 1
        raise RuntimeError("boom")
    assert len(module._forward_hooks) == 0

    def broken_head(a: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("head failed")

    emb._head = broken_head
    with pytest.raises(RuntimeError, match="head failed"):
        CamExplainer("cam").explain(random_pair(), emb)
    assert len(module._forward_hooks) == 0
    for kind in ("grad_cam", "grad_cam_pp"):
        CamExplainer(kind).explain(random_pair(), emb)
        assert len(module._forward_hooks) == 0
    assert all(not m._forward_hooks and not m._backward_hooks for m in emb.module.modules())


def test_transformer_features_are_refused_clearly():
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(3, 4)

        def forward(self, x):
            return self.proj(x.flatten(2).transpose(1, 2)).mean(1)

    emb = TorchEmbedder("tokens", Tokens(), 32, 4, device="cpu", feature_layer="proj")
    with pytest.raises(MethodRequirementError, match="convolutional feature map"):
        CamExplainer("grad_cam").explain(random_pair(), emb)


@pytest.mark.needs_data
def test_sface_cam_is_exact_on_real_faces(runner, obama_pair):
    res = runner.explain(obama_pair, methods=["cam"])
    exp = res.explanations[0]
    assert exp.ok, exp.error
    for g in exp.extras["grid"]:
        assert g.shape == (7, 7)
        assert float(g.sum()) == pytest.approx(res.similarity, abs=1e-4)
