"""Scaled Directed Divergence: the map formula, the choice of F and alpha, and both modes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.errors import MethodRequirementError
from core.explainers.cam import contributions
from core.explainers.sdd import ALPHA_RANGE, F_MAX, SDDExplainer, sdd_map
from core.gallery import Gallery

from .test_cam import random_pair, tiny_sface


def test_sdd_keeps_what_only_the_target_has():
    """Target CAM with two peaks, the stronger one shared with every competitor: plain CAM
    points at the shared peak, SDD at the target's own."""
    x_t = np.zeros((5, 5))
    x_t[1, 1], x_t[3, 3] = 1.0, 0.8  # (1, 1) is shared, (3, 3) is the target's own
    comps = np.zeros((5, 5, 5))
    comps[:, 1, 1] = 0.9
    out, used = sdd_map(x_t, comps)
    assert np.unravel_index(np.argmax(x_t), x_t.shape) == (1, 1)
    assert np.unravel_index(np.argmax(out), out.shape) == (3, 3)
    assert out.max() == pytest.approx(1.0) and out.min() > 0
    assert 5 <= used["F"] <= F_MAX and ALPHA_RANGE[0] <= used["alpha"] <= ALPHA_RANGE[1]


def test_F_and_alpha_follow_the_documented_rule():
    rng = np.random.default_rng(0)
    x_t = rng.normal(size=(7, 7))
    comps = rng.normal(size=(3, 7, 7)) * 4
    out, used = sdd_map(x_t, comps)
    s = np.abs(x_t).max()
    f = np.clip(np.abs(comps / s).mean((1, 2)).sum() / np.abs(x_t / s).mean(), 3, 50)
    assert used["F"] == pytest.approx(f)
    d = f * x_t / s - (comps / s).sum(0)
    alpha = np.clip(math.log(1000) / (d.max() - d.min()), 0.2, 0.4)
    assert used["alpha"] == pytest.approx(alpha)
    np.testing.assert_allclose(out, np.exp(alpha * (d - d.max())), rtol=1e-5)
    # tiny competitors: F is held at its lower bound K; huge ones: at 50
    assert sdd_map(x_t, comps * 1e-6)[1]["F"] == pytest.approx(3)
    assert sdd_map(x_t, comps * 1e6)[1]["F"] == pytest.approx(50)


def test_sdd_needs_competitors():
    with pytest.raises(ValueError):
        sdd_map(np.ones((2, 2)), np.zeros((0, 2, 2)))


def _gallery(emb, n_ids: int = 4, per_id: int = 2, seed: int = 100) -> Gallery:
    faces, ids = [], []
    for i in range(n_ids):
        for j in range(per_id):
            faces.append(random_pair(seed + i * per_id + j).a.image)
            ids.append(f"id{i}")
    with torch.no_grad():
        e = emb.embed(emb.preprocess(faces)).numpy()
    return Gallery([f"f{k}.png" for k in range(len(faces))], ids, e.astype(np.float32), "toy", emb.name, [])


def test_verification_mode_targets_the_other_face_and_picks_the_closest_identities():
    emb, pair = tiny_sface(0), random_pair(1)
    gal = _gallery(emb)
    exp = SDDExplainer().explain(pair, emb, gallery=gal, competitors=2, decision_threshold=2.0)
    assert exp.ok and exp.method == "sdd" and not exp.signed
    with torch.no_grad():
        e = emb.embed(emb.preprocess([pair.a.image, pair.b.image])).numpy()
    names, classes = gal.classes()
    for i, face in enumerate(exp.extras["faces"]):
        assert face["target"] == "the other face"
        assert face["target_similarity"] == pytest.approx(float(e[0] @ e[1]), abs=1e-5)
        expected = [names[j] for j in np.argsort(-(classes @ e[i]))[:2]]
        assert face["competitors"] == expected
    for m in exp.maps:
        assert m.shape == (32, 32) and m.min() > 0 and m.max() <= 1.0 + 1e-6
    # the formula on the CAMs: recompute face a's grid from the decomposition
    con = contributions(emb, [pair.a.image])
    ids = exp.extras["faces"][0]["competitors"]
    targets = torch.from_numpy(np.vstack([e[1], classes[[names.index(n) for n in ids]]]))
    cams = torch.einsum("ld,td->tl", con.loc[0], torch.nn.functional.normalize(targets, dim=1)) / con.embedding[0].norm()
    expected_grid, _ = sdd_map(cams.view(-1, 2, 2)[0].numpy(), cams.view(-1, 2, 2)[1:].numpy())
    np.testing.assert_allclose(exp.extras["grid"][0], expected_grid, rtol=1e-4, atol=1e-6)


def test_verification_mode_leaves_out_the_targets_identity():
    emb, pair = tiny_sface(0), random_pair(1)
    with torch.no_grad():
        ea, eb = emb.embed(emb.preprocess([pair.a.image, pair.b.image])).numpy()
    rng = np.random.default_rng(0)
    others = rng.normal(size=(4, eb.size))
    others -= np.outer(others @ eb, eb)  # orthogonal to b: far from the target
    like_b = 0.9 * eb + np.sqrt(1 - 0.81) * others[0] / np.linalg.norm(others[0])  # similarity 0.9 to b
    embs = np.vstack([like_b, others / np.linalg.norm(others, axis=1, keepdims=True)]).astype(np.float32)
    gal = Gallery([f"f{i}" for i in range(5)], ["b_again", "o1", "o2", "o3", "o4"], embs, "toy", emb.name, [])
    assert float(like_b @ ea) < 0.8  # not the first face's identity
    exp = SDDExplainer().explain(pair, emb, gallery=gal, competitors=5, decision_threshold=0.8)
    comps = exp.extras["faces"][0]["competitors"]  # face a against target b
    assert "b_again" not in comps and sorted(comps) == ["o1", "o2", "o3", "o4"]
    assert "b_again" in exp.extras["faces"][1]["competitors"]  # face b against target a: a rival


def test_identification_mode_targets_the_predicted_identity():
    emb, pair = tiny_sface(0), random_pair(1)
    gal = _gallery(emb)
    exp = SDDExplainer("identification").explain(pair, emb, gallery=gal, competitors=2)
    assert exp.method == "sdd_identification"
    names, classes = gal.classes()
    with torch.no_grad():
        e = emb.embed(emb.preprocess([pair.a.image, pair.b.image])).numpy()
    for i, face in enumerate(exp.extras["faces"]):
        order = np.argsort(-(classes @ e[i]))
        assert face["target"] == names[order[0]]
        assert face["competitors"] == [names[j] for j in order[1:3]]


def test_a_probe_in_the_gallery_is_not_its_own_class():
    emb, pair = tiny_sface(0), random_pair(1)
    gal = _gallery(emb)
    with torch.no_grad():
        ea = emb.embed(emb.preprocess([pair.a.image])).numpy()
    gal = Gallery([*gal.files, "probe.png"], [*gal.identities, "probe_id"], np.vstack([gal.embeddings, ea]), "toy", emb.name, [])
    exp = SDDExplainer("identification").explain(pair, emb, gallery=gal, competitors=2)
    assert exp.extras["faces"][0]["target"] != "probe_id"


def test_sdd_without_a_gallery_says_what_to_do():
    with pytest.raises(MethodRequirementError, match="gallery"):
        SDDExplainer().explain(random_pair(), tiny_sface())
