"""Correia et al.'s verification heatmaps: Otsu masks, OIM/UM/N-IUM, SM+ / SM-, filtering,
and the explainers on tiny random CLIP towers."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from core.explainers import perturb
from core.explainers import vit_verification as W
from core.registry import explainer_spec
from core.types import FacePair

from .conftest import RegionEmbedder, toy_face


def tiny_clip_embedder(size: int = 32, patch: int = 8, seed: int = 0, batch_size: int | None = None):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    from core.models.clip import clip_embedder

    torch.manual_seed(seed)
    model = CLIP(embed_dim=24, vision_cfg=CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=patch, image_size=size),
                 text_cfg=CLIPTextCfg(context_length=8, vocab_size=100, width=32, heads=2, layers=1))  # fmt: skip
    emb = clip_embedder(model, "tiny_clip", "cpu")
    if batch_size:
        emb.batch_size = batch_size
    return emb


def random_faces(seed: int = 0, size: int = 32) -> FacePair:
    rng = np.random.default_rng(seed)
    faces = []
    for _ in range(2):
        f = toy_face(size)
        faces.append(type(f)(image=rng.integers(0, 256, (size, size, 3), dtype=np.uint8), landmarks=f.landmarks, box=f.box, transform=f.transform))
    return FacePair(*faces)


# -- pieces ------------------------------------------------------------------------------------
def test_otsu_splits_two_modes_like_opencv():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.2, 0.05, 3000), rng.normal(0.8, 0.05, 1000)]).clip(0, 1)
    t = W.otsu_threshold(values)
    assert 0.35 < t < 0.65
    img = np.rint(values * 255).astype(np.uint8).reshape(40, 100)
    cv_t, _ = cv2.threshold(img, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    assert abs(t * 255 - cv_t) <= 3  # same criterion (bins differ slightly)
    mask, thr = W.otsu_mask(values.reshape(40, 100))
    assert thr == t and mask.sum() == pytest.approx(1000, abs=30)
    assert W.otsu_mask(np.ones((4, 4)))[0].sum() == 0  # a flat map has no salient part


def test_candidate_masks_are_intersection_union_and_their_difference():
    rng = np.random.default_rng(1)
    a, b = rng.random((16, 16)) > 0.5, rng.random((16, 16)) > 0.6
    pos = W.candidate_masks(a, b, positive=True)
    assert set(pos) == {"oim", "um"}
    neg = W.candidate_masks(a, b, positive=False)
    assert set(neg) == {"oim", "um", "nium"}
    assert np.all(neg["oim"] <= neg["um"])  # OIM inside UM
    np.testing.assert_array_equal(neg["nium"], neg["um"] & ~neg["oim"])
    np.testing.assert_array_equal(neg["nium"] | neg["oim"], neg["um"])
    assert not np.any(neg["nium"] & neg["oim"])
    np.testing.assert_array_equal(neg["oim"], a & b)


def test_selection_metrics_on_hand_made_distances():
    # SM+ = ((0.8 - 0.5)/0.5)/(2*0.25) + ((0.7 - 0.5)/0.5)/(2*0.25) = 1.2 + 0.8
    assert W.sm_plus(0.5, 0.8, 0.7, 0.25) == pytest.approx(2.0)
    assert W.sm_plus(0.5, 0.8, 0.7, 0.5) == pytest.approx(1.0)  # twice the area, half the score
    # SM- = ((1.2 - 0.9)/1.2)/0.3
    assert W.sm_minus(1.2, 0.9, 0.3) == pytest.approx(0.25 / 0.3)
    assert W.sm_minus(1.2, 1.5, 0.3) < 0  # masking that pushes the faces apart scores negative
    assert math.isnan(W.sm_plus(0.5, 0.8, 0.7, 0.0)) and math.isnan(W.sm_minus(1.0, 0.5, 0.0))
    cands = [W.Candidate("oim", 0.0, math.nan), W.Candidate("um", 0.4, 1.5), W.Candidate("nium", 0.2, 2.5)]
    assert W.select(cands).mask == "nium"
    with pytest.raises(Exception, match="empty"):
        W.select([W.Candidate("oim", 0.0, math.nan)])


def test_squared_distance_of_normalised_embeddings():
    assert W.sq_distance([1.0, 0.0], [0.0, 2.0]) == pytest.approx(2.0)
    assert W.sq_distance([3.0, 0.0], [1.0, 0.0]) == pytest.approx(0.0)


def test_score_candidates_masks_the_right_faces():
    """RegionEmbedder's embedding is normalise([mean of a region, 0.1]); a mask covering the
    region turns a face into [0, 1]."""
    emb = RegionEmbedder(size=32, region=(8, 16, 8, 16))
    pa, pb = toy_face(32, 255).image, toy_face(32, 102).image
    e = emb.embed(emb.preprocess([pa, pb])).numpy()
    region = np.zeros((32, 32), bool)
    region[8:16, 8:16] = True
    elsewhere = np.zeros((32, 32), bool)
    elsewhere[20:, 20:] = True
    masked = np.array([0.0, 1.0])
    d = W.sq_distance(e[0], e[1])
    pos = W.score_candidates(emb, [pa, pb], e, {"oim": region, "um": elsewhere}, positive=True)
    assert pos[0].d_pg == pytest.approx(W.sq_distance(e[1], masked), abs=1e-6)  # gallery vs masked probe
    assert pos[0].d_pp == pytest.approx(W.sq_distance(e[0], masked), abs=1e-6)  # probe vs masked gallery
    assert pos[0].removed_area == pytest.approx(64 / 1024)
    assert pos[0].sm == pytest.approx(W.sm_plus(d, pos[0].d_pg, pos[0].d_pp, 64 / 1024))
    assert pos[1].d_pg == pytest.approx(d, abs=1e-6) and pos[1].sm == pytest.approx(0.0, abs=1e-4)  # hiding nothing the model sees
    neg = W.score_candidates(emb, [pa, pb], e, {"oim": region, "um": elsewhere}, positive=False)
    assert neg[0].d_npg == pytest.approx(0.0, abs=1e-6) and neg[0].sm == pytest.approx(1024 / 64, rel=1e-4)


def test_heatmap_values_inside_the_selected_mask():
    ma, mb = np.full((4, 4), 0.8, np.float32), np.full((4, 4), 0.4, np.float32)
    ta = np.zeros((4, 4), bool)
    tb = np.zeros((4, 4), bool)
    ta[:2] = True  # rows 0-1
    tb[1:3] = True  # rows 1-2
    um = ta | tb
    h = W.combine_maps(ma, mb, ta, tb, um)
    np.testing.assert_allclose(h[0], 0.8)  # only a's mask: a's value
    np.testing.assert_allclose(h[1], 0.6)  # both: the mean
    np.testing.assert_allclose(h[2], 0.4)  # only b's
    np.testing.assert_allclose(h[3], 0.0)  # outside
    np.testing.assert_allclose(W.combine_maps(ma, mb, ta, tb, ta & tb)[[0, 2]], 0.0)


def test_filter_sizes_scale_from_the_papers_112_pixel_crops():
    assert W.filter_sizes(112) == (8, 57, pytest.approx(math.sqrt(6.6)))
    assert W.filter_sizes(224) == (16, 113, pytest.approx(2 * math.sqrt(6.6)))
    h = np.zeros((112, 112), np.float32)
    h[50, 60] = 1.0
    s = W.smooth_heatmap(h)
    assert s.max() == pytest.approx(1.0) and s.min() >= 0
    ys, xs = np.nonzero(s > 0.99)  # the dilated 8 x 8 square stays at the top after blurring, its edges fall off
    assert 2 <= np.ptp(ys) + 1 <= 8 and 2 <= np.ptp(xs) + 1 <= 8
    assert s[50, 60] == pytest.approx(1.0, abs=0.05) and s[50, 80] < 0.01


# -- the explainers --------------------------------------------------------------------------
VIT = ["vit_lrp", "vit_lrp_nograd", "vit_rollout"]


@pytest.mark.parametrize("name", VIT)
def test_vit_explainer_contract(name):
    pair = random_faces(3)
    runs = []
    for bs in (1, 3):
        emb = tiny_clip_embedder(batch_size=bs)
        ex = explainer_spec(name).factory()
        try:
            exp = ex.explain(pair, emb, decision_threshold=-1.0, batch_size=bs)
        finally:
            ex.close()
        assert exp.ok and exp.method == name and exp.label and not exp.signed
        assert len(exp.maps) == 2
        for m in exp.maps:
            assert m.shape == (32, 32) and m.dtype == np.float32 and np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1
        assert all(not m._forward_hooks and not m._forward_pre_hooks and "forward" not in m.__dict__ for m in emb.module.modules())
        runs.append(exp)
    for x, y in zip(runs[0].maps, runs[1].maps, strict=True):  # batching is a cost knob only
        np.testing.assert_allclose(x, y, atol=1e-5)


@pytest.mark.parametrize("threshold,decision,masks", [(-1.0, "positive", {"oim", "um"}), (1.01, "negative", {"oim", "um", "nium"})])
def test_decisions_choose_their_candidates_and_report_every_score(threshold, decision, masks):
    emb = tiny_clip_embedder()
    exp = explainer_spec("vit_lrp").factory().explain(random_faces(5), emb, decision_threshold=threshold)
    x = exp.extras
    assert x["decision"] == decision and x["metric"] == ("SM+" if decision == "positive" else "SM-")
    assert {c["mask"] for c in x["candidates"]} == masks == set(x["masks"])
    best = max((c for c in x["candidates"] if not math.isnan(c["sm"])), key=lambda c: c["sm"])
    assert x["selected_mask"] == best["mask"] and exp.scores["selected_sm"] == best["sm"]
    assert all(f"sm_{m}" in exp.scores and f"removed_area_{m}" in exp.scores for m in masks)
    np.testing.assert_array_equal(exp.maps[0], exp.maps[1])  # one heatmap for the aligned pair
    # the heatmap lives on the selected mask, grown by the dilation and blur only
    sel = x["masks"][best["mask"]]
    if sel.any():
        assert exp.maps[0][sel].mean() > exp.maps[0][~sel].mean() if (~sel).any() else True
    assert decision.capitalize() in exp.text[0] and exp.extras["display"] == "lightness"
    # the selection's distances are those of the embeddings of the masked crops
    e = emb.embed_faces([f.image for f in random_faces(5)]).numpy()
    assert exp.scores["distance"] == pytest.approx(W.sq_distance(e[0], e[1]), abs=1e-5)


def test_forced_masking_and_raw_attention():
    emb = tiny_clip_embedder()
    pair = random_faces(5)
    ex = explainer_spec("vit_lrp_nograd").factory()
    forced = ex.explain(pair, emb, decision_threshold=-1.0, masking="um")
    assert forced.extras["selected_mask"] == "um" and "was asked for" in forced.text[0]
    with pytest.raises(ValueError, match="nium"):
        ex.explain(pair, emb, decision_threshold=-1.0, masking="nium")  # N-IUM is for negative decisions
    att = ex.explain(pair, emb, heatmap="attention")
    assert not np.array_equal(att.maps[0], att.maps[1])
    np.testing.assert_allclose(att.maps[0], forced.extras["attention_maps"][0])
    with pytest.raises(ValueError, match="decision_threshold"):
        ex.explain(pair, emb)


def test_a_cnn_model_is_refused_by_the_runner():
    from core.runner import Runner

    from .test_cam import random_pair, tiny_sface

    res = Runner(embedder=tiny_sface(0), device="cpu", threshold=0.5).explain(random_pair(3), methods=["vit_lrp", "vit_rollout"])
    for e in res.explanations:
        assert not e.ok and "vit" in e.error


def test_other_explainers_give_the_same_result_after_a_vit_map():
    from core.runner import Runner

    emb = tiny_clip_embedder()
    runner = Runner(embedder=emb, device="cpu", threshold=0.5)
    pair = random_faces(7)
    knobs = {"patch_sizes": (8,), "stride": 8}
    before = runner.explain(pair, methods=["xmap2", "vit_lrp_nograd"], **knobs).explanations
    runner.explain(pair, methods=["vit_lrp", "vit_rollout"])
    perturb.clear_cache()  # the occlusion map is computed again, not read from the cache
    after = runner.explain(pair, methods=["xmap2", "vit_lrp_nograd"], **knobs).explanations
    for b, a in zip(before, after, strict=True):
        assert b.ok and a.ok
        for x, y in zip(b.maps, a.maps, strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.needs_data
@pytest.mark.parametrize("threshold,curve", [(-1.0, "recall_auc"), (1.01, "tnr_auc")])
def test_recall_and_tnr_run_on_vit_maps(tmp_path, threshold, curve):
    """Correia et al.'s measures: recall over accepted genuine pairs as the probe is masked,
    TNR over rejected impostor pairs as both faces are masked (threshold forces the decision)."""
    from core.data import LabelledPair
    from core.evaluate.faithfulness import faithfulness
    from core.runner import Runner

    from ..conftest import MISC

    runner = Runner(embedder=tiny_clip_embedder(112, 16), device="cpu", threshold=threshold)
    same = threshold < 0
    pairs = [LabelledPair("obama.jpg", "obama2.jpg" if same else "biden.jpg", same)]
    rep = faithfulness(runner, pairs, MISC, tmp_path / "pairs.csv", ["vit_lrp", "vit_rollout"], progress=False, fractions=np.linspace(0, 1, 6))
    by = {r["method"]: r for r in rep.rows()}
    for m in ("vit_lrp", "vit_rollout", "random"):
        assert by[m]["n_pairs"] == 1 and by[m]["n_failed"] == 0
        assert 0.0 <= by[m][curve] <= 1.0
