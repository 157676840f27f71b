"""Fidelity to the papers and the authors' code, on tiny cases computed by hand (no
third-party code): the aggregation's start image, the X-Map blur at the border and its
patch geometry, the removal heatmap's mirrored edges and black-pixel centres, the cost of
single removal, and the relevance product from a start layer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.explainers import occlusion, perturb, removal
from core.explainers import vit_lrp as V
from core.explainers.occlusion import XMapParams
from core.explainers.removal import RemovalParams
from core.registry import forward_passes

from .conftest import toy_face
from .test_vit_lrp import MODELS


def test_the_aggregation_starts_from_the_authors_near_black_noise():
    """np.random.rand(h, w, 3) * 2 cast to uint8: each pixel and channel 0 or 1, even odds, seeded."""
    face = np.zeros((112, 112, 3), np.uint8)
    start = perturb.fill_image(face, RemovalParams().start_fill(), seed=3)
    assert set(np.unique(start)) == {0.0, 1.0} and abs(float(start.mean()) - 0.5) < 0.02
    np.testing.assert_array_equal(start, perturb.fill_image(face, "near_black_noise", seed=3))
    assert not np.array_equal(start, perturb.fill_image(face, "near_black_noise", seed=4))
    assert RemovalParams.from_knobs(agg_start="fill").start_fill() == "black"
    with pytest.raises(ValueError, match="agg_start"):
        RemovalParams.from_knobs(agg_start="grey")


def test_the_start_and_its_seed_are_in_the_result(toy, toy_pair):
    knobs = {"region_size": 64, "grid_step": 32, "steps": 2}
    noise = removal.RemovalExplainer("single_aggregation").explain(toy_pair, toy, **knobs, seed=5)
    assert noise.extras["start"] == {"image": "near_black_noise", "seed": 5} and noise.extras["params"]["seed"] == 5
    black = removal.RemovalExplainer("single_aggregation").explain(toy_pair, toy, **knobs, agg_start="fill")
    assert black.extras["start"]["image"] == "black"
    assert noise.scores["hidden_similarity_a"] != pytest.approx(black.scores["hidden_similarity_a"], abs=1e-9)
    assert "start" not in removal.RemovalExplainer("single_removal").explain(toy_pair, toy, **knobs).extras


def test_the_xmap_blur_reflects_without_repeating_the_edge():
    """OpenCV's default border (BORDER_REFLECT_101, the authors' cv2.GaussianBlur): with one
    value at the corner, the corner's blurred value is the kernel's centre weight squared
    (its mirror images are the zero neighbours); BORDER_REFLECT would add the edge again."""
    s_bar = np.zeros((20, 20))
    s_bar[0, 0] = 1.0
    stride = 5
    g = np.exp(-((np.arange(5) - 2) ** 2) / (2 * stride**2))
    g /= g.sum()
    blurred = occlusion.smooth_normalise(s_bar, stride)[1] * occlusion.smooth_normalise(s_bar, stride)[0]
    assert blurred[0, 0] == pytest.approx(g[2] ** 2, rel=1e-5)
    assert blurred[0, 1] == pytest.approx(g[2] * g[3], rel=1e-5) and blurred[1, 1] == pytest.approx(g[3] ** 2, rel=1e-5)


def test_the_xmap_patch_is_the_authors_filled_rectangle():
    """cv2.rectangle((x, y), (x + p, y + p), thickness=-1) fills both corners: (p + 1)^2 pixels."""
    p = XMapParams()
    assert [p.hidden_width(q, 112) for q in (7, 14, 28)] == [8, 15, 29]
    first = occlusion.occlusion_masks(112, p.hidden_width(7, 112), 5)[0]
    assert int(first.sum()) == 64 and bool(first[:8, :8].all())
    exact = XMapParams.from_knobs(patch_geometry="exact")
    assert exact.hidden_width(7, 112) == 7 and int(occlusion.occlusion_masks(112, 7, 5)[0].sum()) == 49
    with pytest.raises(ValueError, match="patch_geometry"):
        XMapParams.from_knobs(patch_geometry="round")


def _gauss(d: np.ndarray, sigma: float, radius: int) -> np.ndarray:
    return np.where(np.abs(d) <= radius, np.exp(-(d**2) / (2 * sigma**2)), 0.0)


def test_removal_credits_are_mirrored_at_the_edges():
    """The authors' heatmap is cv2.filter2D with the default border: a credit c at (2, 3)
    on a 16-pixel grid, with a 9-pixel kernel, also shows as its mirror images at row -2 and
    column -3 (reflection about the edge pixel), each with peak c."""
    size, sigma, ksize, c = 16, 2.0, 9, 0.7
    heat = removal.spread(torch.tensor([c]), np.array([[2, 3]]), size, sigma, ksize)
    y, x = np.mgrid[0:size, 0:size]
    r = ksize // 2
    gy = _gauss(y - 2, sigma, r) + _gauss(y + 2, sigma, r)
    gx = _gauss(x - 3, sigma, r) + _gauss(x + 3, sigma, r)
    np.testing.assert_allclose(heat, c * gy * gx, atol=1e-9)
    # more than c at the centre: the row's mirror image (4 px away) is within the kernel, the column's (6 px) is not
    assert heat[2, 3] == pytest.approx(c * (1 + math.exp(-16 / 8)))


def test_grid_centres_on_pure_black_pixels_are_no_regions():
    face = np.full((112, 112, 3), 128, np.uint8)
    face[7, 7] = 0  # the first centre of the 7-pixel grid
    face[14, 14] = (0, 0, 1)  # not pure black
    centres = removal.grid_centres(112, 7, face)
    assert len(centres) == 224 and [7, 7] not in centres.tolist() and [14, 14] in centres.tolist()


def test_single_removal_alone_costs_one_pass_per_region(toy, toy_pair):
    knobs = {"region_size": 64, "grid_step": 32, "steps": 20}  # 7 x 7 regions on the 32-pixel toy
    exp = removal.RemovalExplainer("single_removal").explain(toy_pair, toy, **knobs)
    assert exp.scores["forward_passes"] == 2 * 49 + 2 == forward_passes(["single_removal"], 32, **knobs)["total"]
    more = removal.RemovalExplainer("minplus_average").explain(toy_pair, toy, **knobs)
    assert more.scores["forward_passes"] <= forward_passes(["single_removal", "minplus_average"], 32, **knobs)["minplus_average"]
    np.testing.assert_array_equal(removal.RemovalExplainer("single_removal").explain(toy_pair, toy, **knobs).maps[0], exp.maps[0])


def test_black_crop_padding_takes_no_region(toy):
    face = toy_face()
    face.image[:5] = 0  # the padding an alignment leaves above a face near the photo's edge: the first row of centres (row 4)
    knobs = {"region_size": 64, "grid_step": 32, "steps": 2}
    exp = removal.RemovalExplainer("single_removal").explain(_pair(face), toy, **knobs)
    assert exp.extras["scaled"]["regions"] == [49 - 7, 49]


def _pair(face):
    from core.types import FacePair

    return FacePair(face, toy_face(value=250))


@pytest.mark.parametrize("family", MODELS)
@pytest.mark.parametrize("method", ["vit_lrp", "vit_lrp_nograd", "rollout"])
def test_the_product_runs_from_the_start_layer(family, method, monkeypatch):
    """Chefer's compute_rollout_attention(cams, start_layer): (I + C_B) ... (I + C_L); the
    blocks' matrices above the start are the same whatever the start."""
    model = MODELS[family](layers=3) if family == "open_clip" else MODELS[family](depth=3)
    x = torch.randn(2, 3, 32, 32)
    target = V.cosine_target(lambda out: out.flip(0))
    seen: list[list[torch.Tensor]] = []
    real = V.rollout
    monkeypatch.setattr(V, "rollout", lambda mats, normalise_rows: seen.append(list(mats)) or real(mats, normalise_rows))
    full = V.attention_maps(model, x, method, target)
    late = V.attention_maps(model, x, method, target, start_layer=1)
    assert len(seen[0]) == 3 and len(seen[1]) == 2
    for a, b in zip(seen[0][1:], seen[1], strict=True):
        torch.testing.assert_close(a, b)
    joint = None
    for m in seen[0][1:]:
        m = m + torch.eye(m.shape[-1])
        if method == "rollout":
            m = m / m.sum(-1, keepdim=True)
        joint = m if joint is None else m @ joint
    torch.testing.assert_close(late.maps, joint[:, 0, 1:].reshape(2, 4, 4), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(full.maps, late.maps)
    with pytest.raises(ValueError, match="start_layer"):
        V.attention_maps(model, x, method, target, start_layer=3)
