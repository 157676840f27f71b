from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from core.explainers import occlusion, perturb
from core.explainers.occlusion import XMapParams
from core.types import FacePair

from .conftest import toy_face


def test_positions_cover_the_whole_crop_and_stay_inside():
    for size, p, s in [(112, 7, 5), (112, 14, 5), (112, 28, 5), (224, 56, 10), (30, 30, 5)]:
        pos = occlusion.positions(size, p, s)
        assert pos[0] == 0 and pos[-1] == size - p
        assert all(b - a <= s for a, b in itertools.pairwise(pos))
        masks = occlusion.occlusion_masks(size, p, s)
        assert masks.shape == (len(pos) ** 2, size, size)
        assert bool((masks.sum(0) > 0).all()), "some pixels are never occluded"
        assert torch.all(masks.sum((1, 2)) == p * p)


def test_authors_positions_would_miss_the_edges():
    # the authors' range(0, size - p, s) leaves the last columns unoccluded: we do not
    size, p, s = 112, 7, 5
    theirs = list(range(0, size - p, s))
    assert theirs[-1] + p < size
    assert occlusion.positions(size, p, s)[-1] + p == size


def test_round_and_blurred_patches():
    rect = occlusion.patch_stamp(14, "rect")
    disc = occlusion.patch_stamp(14, "round")
    assert disc.sum() < rect.sum() and disc[0, 0] == 0 and disc[7, 7] == 1
    soft = occlusion.patch_stamp(14, "rect", edge_blur=2.0)
    assert soft.shape[0] == 14 + 2 * 6 and soft.min() + 1e-6 > 0 and soft.max() <= 1
    assert abs(soft.sum() - rect.sum()) < 0.5  # blur moves mass, does not add it
    m = occlusion.occlusion_masks(40, 14, 5, "rect", edge_blur=2.0)
    assert m.shape[1:] == (40, 40) and float(m.max()) <= 1.0


def test_method1_equals_the_explicit_distance_matrix():
    g = torch.Generator().manual_seed(0)
    f1 = torch.nn.functional.normalize(torch.randn(50, 16, generator=g), dim=1)
    f2 = torch.nn.functional.normalize(torch.randn(50, 16, generator=g), dim=1)
    e = torch.nn.functional.normalize(torch.randn(2, 16, generator=g), dim=1)
    d1, d2 = occlusion.select_distances(1, f1, f2, e[0], e[1])
    full = 1 - f1 @ f2.T  # the N x N cosine distances of eq. 6
    assert torch.allclose(d1, full.mean(1), atol=1e-6)
    assert torch.allclose(d2, full.mean(0), atol=1e-6)
    d1, d2 = occlusion.select_distances(2, f1, f2, e[0], e[1])
    assert torch.allclose(d1, 1 - f1 @ e[1]) and torch.allclose(d2, 1 - f2 @ e[0])
    d1, d2 = occlusion.select_distances(3, f1, f2, e[0], e[1])
    assert torch.equal(d1, d2) and torch.allclose(d1, 1 - torch.diagonal(f1 @ f2.T), atol=1e-6)


def test_similarity_map_is_equation_9():
    g = torch.Generator().manual_seed(1)
    masks = (torch.rand(6, 5, 5, generator=g) > 0.5).float()
    d = torch.rand(6, generator=g)
    expected = sum(float(d[i] - 0.3) * masks[i].numpy() for i in range(6)) / 6
    assert np.allclose(occlusion.similarity_map(d, 0.3, masks), expected)


def test_scales_are_weighted_by_inverse_patch_area_and_normalised():
    a, b = np.ones((4, 4)), 2 * np.ones((4, 4))
    assert np.allclose(occlusion.combine_scales([a, b], [7, 14]), (1 / 49 + 2 / 196) / 2)
    m = np.zeros((20, 20))
    m[5, 5], m[15, 15] = 3.0, -1.0
    out, scale = occlusion.smooth_normalise(m, 5)
    assert out.dtype == np.float32 and np.isclose(np.abs(out).max(), 1.0) and scale > 0
    assert out[5, 5] == 1.0 and out[15, 15] < 0  # sign and zero are kept
    assert out[0, 19] == pytest.approx(0, abs=1e-3)


def test_toy_model_map_lights_up_its_region(toy, toy_pair):
    params = XMapParams.from_knobs(patch_sizes=(28,), stride=20)  # scaled to 32 px: patch 8, stride 6
    res = occlusion.xmaps(toy_pair, toy, params=params)
    r0, r1, c0, c1 = toy.region
    for m in (1, 2):  # (nearly) identical faces: hiding the region is what breaks their similarity
        for face_map in res[m]["maps"]:
            assert face_map.shape == (32, 32)
            inside = face_map[r0:r1, c0:c1].mean()
            outside = np.concatenate([face_map[:4].ravel(), face_map[-4:].ravel()]).mean()
            assert inside > 0.5 and inside > outside + 0.4, (m, inside, outside)
    # method 3: the faces differ only inside the region, so hiding it in both makes them
    # identical: the region is dissimilar evidence (red), the rest neutral
    b = toy_face()
    b.image[r0:r1, c0:c1] = 0
    res = occlusion.xmaps(FacePair(toy_pair.a, b), toy, (3,), params=params)
    m3 = res[3]["maps"]
    assert np.array_equal(m3[0], m3[1])
    assert m3[0][r0:r1, c0:c1].mean() < -0.5
    assert abs(m3[0][:3, :3].mean()) < 0.1


def test_batched_equals_unbatched_and_cache_reuses(toy, toy_pair):
    params = XMapParams.from_knobs(patch_sizes=(14, 28), stride=10)
    one = occlusion.xmaps(toy_pair, toy, params=params, batch_size=1)
    perturb.clear_cache()
    ledger = perturb.Ledger()
    many = occlusion.xmaps(toy_pair, toy, params=params, batch_size=64, ledger=ledger)
    n = ledger.forward_passes
    _key, expected = occlusion.forward_passes(32, patch_sizes=(14, 28), stride=10)
    assert n == expected
    for m in (1, 2, 3):
        for x, y in zip(one[m]["maps"], many[m]["maps"], strict=True):
            np.testing.assert_allclose(x, y, atol=1e-5)
    again = perturb.Ledger()
    occlusion.xmaps(toy_pair, toy, params=params, ledger=again)
    assert again.forward_passes == 0 and again.cache_hits >= 2 and again.cached_passes == expected


def test_explainer_contract(toy, toy_pair):
    exp = occlusion.XMapExplainer(2).explain(toy_pair, toy, preset="fast")
    assert exp.method == "xmap2" and exp.signed and len(exp.maps) == 2
    assert all(m.shape == (32, 32) and m.dtype == np.float32 for m in exp.maps)
    assert all(np.abs(m).max() <= 1.0 + 1e-6 for m in exp.maps)
    assert exp.extras["preset"] == "fast" and exp.scores["forward_passes"] > 0
    with pytest.raises(ValueError, match="preset"):
        XMapParams.from_knobs(preset="fastest")
    with pytest.raises(ValueError, match="patch_shape"):
        XMapParams.from_knobs(patch_shape="star")


def test_patch_colours_change_the_fill(toy):
    face = FacePair(toy_face(value=128), toy_face(value=128))
    maps = {}
    for fill in ("black", "white", "noise"):
        perturb.clear_cache()
        maps[fill] = occlusion.xmaps(face, toy, (2,), XMapParams.from_knobs(patch_sizes=(28,), stride=20, fill=fill))[2]["raw"][0]
    # hiding a grey region with black or white moves the toy embedding the same amount in
    # opposite directions of the region mean; the cosine is symmetric in it only to first
    # order, so the maps differ but keep their support
    assert not np.allclose(maps["black"], maps["white"])
    assert (np.abs(maps["noise"]) > 0).any()


@pytest.mark.needs_data
def test_real_face_batched_equals_unbatched(runner, obama_pair):
    emb = runner.embedder
    params = XMapParams.from_knobs(preset="fast")
    perturb.clear_cache()
    a = occlusion.xmaps(obama_pair, emb, params=params, batch_size=7)
    perturb.clear_cache()
    b = occlusion.xmaps(obama_pair, emb, params=params, batch_size=64)
    for m in (1, 2, 3):
        for x, y in zip(a[m]["maps"], b[m]["maps"], strict=True):
            assert x.shape == (emb.input_size, emb.input_size)
            np.testing.assert_allclose(x, y, atol=2e-4)


def test_masks_match_algorithm_1_loop():
    for shape, blur in (("rect", 0.0), ("round", 0.0), ("round", 1.5)):
        masks = occlusion.occlusion_masks(40, 14, 5, shape, blur)
        stamp = torch.from_numpy(occlusion.patch_stamp(14, shape, blur))
        pad = (stamp.shape[0] - 14) // 2
        pos = occlusion.positions(40, 14, 5)
        ref = torch.zeros((len(pos) ** 2, 40 + 2 * pad, 40 + 2 * pad))
        for i, (y, x) in enumerate((y, x) for y in pos for x in pos):  # Algorithm 1, one patch at a time
            ref[i, y : y + stamp.shape[0], x : x + stamp.shape[0]] = stamp
        assert torch.equal(masks, ref[:, pad : pad + 40, pad : pad + 40])


def test_cached_embeddings_name_the_method_that_computed_them_and_its_cost(toy, toy_pair):
    """X-Map III from X-Map I's occluded embeddings runs nothing and says so: the passes
    and time are X-Map I's; a partial reuse runs only the new scale."""
    import time

    from core.report import cost_words

    knobs = {"patch_sizes": (14, 28), "stride": 10}
    t0 = time.perf_counter()
    x1 = occlusion.XMapExplainer(1).explain(toy_pair, toy, **knobs)
    wall = time.perf_counter() - t0
    _key, expected = occlusion.forward_passes(32, **knobs)
    assert x1.scores["forward_passes"] == expected and "cached_from" not in x1.extras
    x3 = occlusion.XMapExplainer(3).explain(toy_pair, toy, **knobs)
    c = x3.extras["cached_from"]
    assert x3.scores["forward_passes"] == 0  # run by this call
    assert c["method"] == "xmap1" and c["label"] == x1.label and c["forward_passes"] == expected
    assert 0 < c["runtime_s"] <= wall and [s["method"] for s in c["sources"]] == ["xmap1"]
    assert cost_words(x3).startswith(f"from the cache of X-Map I ({expected} forward passes, ")

    # X-Map II shares the 14 px scale (and the reference embeddings) with X-Map I, runs the 21 px one
    p = XMapParams.from_knobs(patch_sizes=(14, 21), stride=10)
    (q14, q21), stride, _ = p.scaled(32)
    n = {q: 2 * occlusion.n_occlusions(32, p.hidden_width(q, 32), stride) for q in (q14, q21)}
    x2 = occlusion.XMapExplainer(2).explain(toy_pair, toy, patch_sizes=(14, 21), stride=10)
    assert x2.scores["forward_passes"] == n[q21] and x2.extras["cached_from"]["forward_passes"] == n[q14] + 2
    fresh = occlusion.forward_passes(32, patch_sizes=(14, 21), stride=10)[1]
    assert x2.scores["forward_passes"] + x2.extras["cached_from"]["forward_passes"] == fresh
    words = cost_words(x2)
    assert words.startswith(f"{n[q21]} forward passes, ") and f"plus from the cache of X-Map I ({n[q14] + 2} forward passes" in words
