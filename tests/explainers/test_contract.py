"""Contract tests over every registered explainer that a black-box model can run."""

from __future__ import annotations

import numpy as np
import pytest

from core.explainers import perturb
from core.registry import explainer_names, explainer_spec, forward_passes

KNOBS = {"patch_sizes": (28,), "stride": 20, "region_size": 128, "grid_step": 48, "steps": 2}
BLACKBOX = [n for n in explainer_names() if explainer_spec(n).requires <= {"blackbox"} and explainer_spec(n).gives_maps]


def test_the_families_are_registered():
    for name in ("xmap1", "xmap2", "xmap3", "single_removal", "greedy_removal", "single_aggregation", "greedy_aggregation", "minplus_average"):
        assert name in BLACKBOX


@pytest.mark.parametrize("name", BLACKBOX)
def test_explainer_contract(name, toy, toy_pair):
    spec = explainer_spec(name)
    runs = []
    for bs in (1, 64):
        perturb.clear_cache()
        ex = spec.factory()
        try:
            exp = ex.explain(toy_pair, toy, batch_size=bs, **KNOBS)
        finally:
            ex.close()
        assert exp.ok and exp.method == name and exp.label
        assert len(exp.maps) == 2
        for m in exp.maps:
            assert m.shape == (toy.input_size, toy.input_size) and m.dtype == np.float32 and np.isfinite(m).all()
        runs.append(exp)
    for x, y in zip(runs[0].maps, runs[1].maps, strict=True):  # batching is a cost knob only
        np.testing.assert_allclose(x, y, atol=1e-5)
    # deterministic: a third run from a cold cache gives the same maps
    perturb.clear_cache()
    again = spec.factory().explain(toy_pair, toy, **KNOBS)
    for x, y in zip(runs[1].maps, again.maps, strict=True):
        np.testing.assert_array_equal(x, y)


def test_cost_counts_shared_embeddings_once():
    cost = forward_passes(["xmap1", "xmap2", "xmap3", "single_removal", "minplus_average"], 112, preset="fast")
    assert cost["xmap1"] > 0 and cost["xmap2"] == 0 and cost["xmap3"] == 0
    # single removal needs one pass per region and face (6 x 6 regions at the fast preset) plus the two faces;
    # the average needs the rest of the family and does not pay for single removal again
    assert cost["single_removal"] == 2 * 36 + 2
    assert cost["single_removal"] + cost["minplus_average"] == forward_passes(["minplus_average"], 112, preset="fast")["total"]
    assert cost["total"] == cost["xmap1"] + cost["single_removal"] + cost["minplus_average"]
    full = forward_passes(["xmap3"], 112)
    assert full["xmap3"] == 2 * (22 * 22 + 21 * 21 + 18 * 18) + 2  # p = 7, 14, 28 (8, 15, 29 px hidden) with s = 5, edges included
    # at the full preset single removal costs a few hundred passes per face (15 x 15 regions), not the family's 18,006
    assert forward_passes(["single_removal"], 112, preset="full")["total"] == 2 * 225 + 2


GRADIENT = [n for n in explainer_names() if "gradients" in explainer_spec(n).requires and "vit" not in explainer_spec(n).requires]
VIT = [n for n in explainer_names() if "vit" in explainer_spec(n).requires]  # contract: tests/explainers/test_vit_verification.py


def test_the_gradient_families_are_registered():
    assert set(GRADIENT) >= {"cam", "grad_cam", "grad_cam_pp", "sdd", "sdd_identification"}
    assert set(VIT) == {"vit_lrp", "vit_lrp_nograd", "vit_rollout"}


@pytest.mark.parametrize("name", GRADIENT)
def test_gradient_explainer_contract(name):
    from .test_cam import random_pair, tiny_sface
    from .test_sdd import _gallery

    pair = random_pair(3)
    runs = []
    for bs in (1, 2):
        emb = tiny_sface(0, batch_size=bs)
        knobs = {"gallery": _gallery(emb), "decision_threshold": 0.99, "competitors": 2, "batch_size": bs}
        ex = explainer_spec(name).factory()
        try:
            exp = ex.explain(pair, emb, **knobs)
        finally:
            ex.close()
        assert exp.ok and exp.method == name and exp.label
        assert len(exp.maps) == 2
        for m in exp.maps:
            assert m.shape == (32, 32) and m.dtype == np.float32 and np.isfinite(m).all()
        assert all(not m._forward_hooks and not m._backward_hooks for m in emb.module.modules())
        runs.append(exp)
    for x, y in zip(runs[0].maps, runs[1].maps, strict=True):  # batching is a cost knob only
        np.testing.assert_allclose(x, y, atol=1e-5)
