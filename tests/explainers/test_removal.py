from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from core.explainers import perturb, removal
from core.explainers.removal import RemovalParams
from core.types import FacePair

from .conftest import RegionEmbedder, toy_face

# on the 32 px toy: sigma = 64 * 32/256 / 8.5 = 0.94 px, centres every 4 px
SMALL = {"region_size": 64, "grid_step": 32, "steps": 4}


def test_grid_and_blobs():
    c = removal.grid_centres(112, 7)
    assert len(c) == 15 * 15 and c.min() == 7 and c.max() == 105
    g = removal.blobs(112, c[:3], 8.0)
    assert g.shape == (3, 112, 112)
    for k in range(3):
        assert float(g[k, c[k, 0], c[k, 1]]) == pytest.approx(1.0)
        assert float(g[k].max()) == pytest.approx(1.0)
    sigma, step = RemovalParams().scaled(112)
    assert sigma == pytest.approx(161 * 112 / 256 / 8.5) and step == 7  # the authors' n_h = 161, d = 16 at 256 px


def test_toy_model_every_map_points_at_its_region(toy, toy_pair):
    a, b = removal.minplus_pair(toy_pair, toy, RemovalParams.from_knobs(**SMALL))
    r0, r1, c0, c1 = toy.region
    for face in (a, b):
        for m in removal.METHODS:
            h = face.get(m)
            assert h.shape == (32, 32)
            inside, outside = h[r0:r1, c0:c1].mean(), np.abs(np.concatenate([h[:4].ravel(), h[-4:].ravel()])).mean()
            assert inside > 0 and inside > 5 * outside, (m, inside, outside)
        # greedy removal hides region centres inside the toy's square first
        r, c, _ = face.removal_path[0]
        assert r0 <= r < r1 and c0 <= c < c1
        # each greedy removal step lowers the score, each aggregation step raises it
        scores = [face.score] + [s for *_, s in face.removal_path]
        assert all(x >= y - 1e-6 for x, y in itertools.pairwise(scores))
        scores = [face.hidden_score] + [s for *_, s in face.aggregation_path]
        assert all(x <= y + 1e-6 for x, y in itertools.pairwise(scores))
        np.testing.assert_allclose(face.average, (face.single_removal + face.greedy_removal + face.single_aggregation + face.greedy_aggregation) / 4)


def test_single_removal_is_the_similarity_drop_spread_over_the_blob(toy, toy_pair):
    params = RemovalParams.from_knobs(**SMALL)
    a, _ = removal.minplus_pair(toy_pair, toy, params)
    sigma, step = params.scaled(32)
    centres = removal.grid_centres(32, step)
    g = removal.blobs(32, centres, sigma)
    p = perturb.Perturber(toy, toy_pair.a.image, "black")
    target = perturb.embed_faces(toy, [toy_pair.b.image])[0]
    drops = [a.score - float(p.embed(g[k : k + 1])[0] @ target) for k in range(len(centres))]
    expected = sum(d * g[k].numpy() for k, d in enumerate(drops))
    np.testing.assert_allclose(a.single_removal, expected, atol=1e-5)


def test_greedy_stops_when_the_score_is_gone():
    toy_strict = RegionEmbedder()
    pair = FacePair(toy_face(), toy_face(value=250))
    a, _ = removal.minplus_pair(pair, toy_strict, RemovalParams.from_knobs(region_size=256, grid_step=32, steps=50, stop_score=0.5))
    assert 0 < len(a.removal_path) < 50
    assert a.removal_path[-1][2] <= 0.5 and all(s > 0.5 for *_, s in a.removal_path[:-1])


def test_batched_equals_unbatched_cache_and_cost(toy, toy_pair):
    params = RemovalParams.from_knobs(**SMALL)
    one = removal.minplus_pair(toy_pair, toy, params, batch_size=1)
    perturb.clear_cache()
    ledger = perturb.Ledger()
    many = removal.minplus_pair(toy_pair, toy, params, batch_size=64, ledger=ledger)
    used = ledger.forward_passes
    bound = sum(removal.forward_passes("minplus_average", 32, **SMALL).values())
    assert 0 < used <= bound
    for x, y in zip(one, many, strict=True):
        for m in removal.METHODS:
            np.testing.assert_allclose(x.get(m), y.get(m), atol=1e-5)
    again = perturb.Ledger()
    removal.minplus_pair(toy_pair, toy, params, ledger=again)
    assert again.forward_passes == 0 and again.cache_hits == 1 and again.cached_passes == used


def test_hiding_value_is_a_knob(toy):
    pair = FacePair(toy_face(value=200), toy_face(value=190))
    black = removal.minplus_pair(pair, toy, RemovalParams.from_knobs(**SMALL, fill="black", agg_start="fill"))[0]
    white = removal.minplus_pair(pair, toy, RemovalParams.from_knobs(**SMALL, fill="white", agg_start="fill"))[0]
    # hiding with black lowers the toy's region mean, hiding with white raises it: the
    # hidden-face scores differ and so do the maps
    assert black.hidden_score != pytest.approx(white.hidden_score)
    assert not np.allclose(black.single_removal, white.single_removal)
    # from the authors' noise (the default), aggregation does not depend on the hiding value
    noise_b = removal.minplus_pair(pair, toy, RemovalParams.from_knobs(**SMALL, fill="black"))[0]
    noise_w = removal.minplus_pair(pair, toy, RemovalParams.from_knobs(**SMALL, fill="white"))[0]
    assert noise_b.hidden_score == noise_w.hidden_score != black.hidden_score
    np.testing.assert_array_equal(noise_b.single_aggregation, noise_w.single_aggregation)
    with pytest.raises(ValueError, match="fill"):
        RemovalParams.from_knobs(fill="purple")


def test_explainer_contract(toy, toy_pair):
    for m in removal.METHODS:
        exp = removal.RemovalExplainer(m).explain(toy_pair, toy, **SMALL)
        assert exp.method == m and exp.signed and len(exp.maps) == 2 and exp.ok
        assert all(x.shape == (32, 32) and x.dtype == np.float32 for x in exp.maps)
    with pytest.raises(ValueError):
        removal.RemovalExplainer("triple_removal")


@pytest.mark.needs_data
def test_real_pair_removal_fast_preset(runner, obama_pair):
    perturb.clear_cache()
    a, b = removal.minplus_pair(obama_pair, runner.embedder, RemovalParams.from_knobs(preset="fast"), batch_size=32)
    for face in (a, b):
        assert face.score > 0.5  # a genuine pair
        assert len(face.removal_path) == 3 and len(face.aggregation_path) >= 1
        assert float(face.single_removal.mean()) > 0  # hiding parts of a genuine face lowers the similarity
        assert torch.isfinite(torch.from_numpy(face.average)).all()


def test_parts_from_the_cache_name_their_method_and_are_counted_once(toy, toy_pair):
    """The average after greedy removal reuses its parts (greedy removal starts from single
    removal's scores, so both come from that call) and counts them once: its own passes plus
    the cached ones are what the average costs from scratch."""
    total = removal.RemovalExplainer("minplus_average").explain(toy_pair, toy, **SMALL).scores["forward_passes"]
    perturb.clear_cache()
    greedy = removal.RemovalExplainer("greedy_removal").explain(toy_pair, toy, **SMALL)
    avg = removal.RemovalExplainer("minplus_average").explain(toy_pair, toy, **SMALL)
    c = avg.extras["cached_from"]
    assert c["method"] == "greedy_removal" and c["label"] == "Greedy removal (Mery & Morris)"
    assert c["forward_passes"] == greedy.scores["forward_passes"] > 0
    assert 0 < avg.scores["forward_passes"] < total and avg.scores["forward_passes"] + c["forward_passes"] == total
    # again: the whole result from the cache, nothing run, the same total from both sources
    again = removal.RemovalExplainer("minplus_average").explain(toy_pair, toy, **SMALL)
    c2 = again.extras["cached_from"]
    assert again.scores["forward_passes"] == 0 and c2["forward_passes"] == total
    assert {s["method"]: s["forward_passes"] for s in c2["sources"]} == {"greedy_removal": greedy.scores["forward_passes"],
                                                                       "minplus_average": avg.scores["forward_passes"]}  # fmt: skip
