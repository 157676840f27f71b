"""The CLIP concept bottleneck on tiny random open_clip models (no download)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.errors import DataError
from core.models import cbm as C
from core.text.descriptors import DescriptorSet, load_descriptors


def tiny_clip(seed: int = 0):
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    from open_clip.tokenizer import SimpleTokenizer

    torch.manual_seed(seed)
    model = CLIP(embed_dim=24, vision_cfg=CLIPVisionCfg(layers=2, width=32, head_width=16, patch_size=8, image_size=32),
                 text_cfg=CLIPTextCfg(context_length=16, vocab_size=49408, width=32, heads=2, layers=1)).eval()  # fmt: skip
    return model, SimpleTokenizer(context_length=16)


def tiny_cbm_embedder(seed: int = 0, descriptors: DescriptorSet | None = None, head=None):
    model, tok = tiny_clip(seed)
    return C.cbm_embedder(model, tok, "tiny_cbm", descriptors, "cpu", head=head)


def faces(n: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(n)]


def test_group_softmax_sums_to_one_in_each_group_and_is_the_groups_softmax():
    torch.manual_seed(0)
    groups = torch.tensor([0, 0, 1, 1, 1, 2, 0, 3, 3])
    s = torch.randn(4, 9) * 5
    p = C.group_softmax(s, groups)
    for g in range(4):
        idx = (groups == g).nonzero().flatten()
        torch.testing.assert_close(p[:, idx].sum(1), torch.ones(4))
        torch.testing.assert_close(p[:, idx], torch.softmax(s[:, idx], dim=1))
    big = C.group_softmax(torch.tensor([[1000.0, 0.0, -1000.0, 5.0]]), torch.tensor([0, 0, 1, 1]))
    assert torch.isfinite(big).all()


def test_zero_shot_bottleneck_scores_concepts_with_clip():
    emb = tiny_cbm_embedder()
    cbm = emb.module
    d = load_descriptors()
    assert cbm.zero_shot and emb.embedding_dim == len(d) and emb.input_size == 32
    x = emb.preprocess(faces())
    with torch.no_grad():
        out = cbm.concepts(x)
        image = F.normalize(cbm.visual(x), dim=1)
    torch.testing.assert_close(out.scores, image @ cbm.text.t())
    torch.testing.assert_close(out.embedding, out.probs)  # W = I
    ids = torch.tensor(d.group_ids)
    for g in range(len(d.groups)):
        torch.testing.assert_close(out.probs[:, ids == g].sum(1), torch.ones(3))
    # CLIP's logit scale is the softmax temperature: the argmax within a group is CLIP's zero-shot choice
    g0 = (ids == 0).nonzero().flatten()
    assert torch.equal(out.probs[:, g0].argmax(1), out.scores[:, g0].argmax(1))
    # batching is a cost knob
    torch.testing.assert_close(emb.embed_faces(faces(), batch_size=1), emb.embed_faces(faces(), batch_size=3), atol=1e-6, rtol=1e-5)


def test_text_features_are_cached_per_weights_and_descriptor_set(tmp_path, monkeypatch):
    monkeypatch.setenv("XFV_CACHE", str(tmp_path))
    monkeypatch.setattr(C, "_TEXT_CACHE", {})
    model, tok = tiny_clip()
    calls = []
    real = model.encode_text
    monkeypatch.setattr(model, "encode_text", lambda t: calls.append(len(t)) or real(t))
    d = load_descriptors()
    first = C.text_features(model, tok, d, cache_key="tiny|w1")
    n = len(calls)
    assert n > 0 and first.shape == (len(d), 24)
    torch.testing.assert_close(first.norm(dim=1), torch.ones(len(d)))
    C._TEXT_CACHE.clear()  # a new process: read from disk, no text encoding
    torch.testing.assert_close(C.text_features(model, tok, d, cache_key="tiny|w1"), first)
    assert len(calls) == n and len(list((tmp_path / "text").glob("*.pt"))) == 1
    other = DescriptorSet.from_dict(
        {
            "name": "x",
            "template": "a face with {}.",
            "components": [{"component": "eyes", "groups": [{"group": "g", "alternatives": ["round eyes", "small eyes"]}]}],
        }
    )
    assert C.text_features(model, tok, other, cache_key="tiny|w1").shape == (2, 24) and len(calls) > n


def test_adapter_mixes_as_the_paper_says():
    emb = tiny_cbm_embedder()
    cbm = emb.module
    cbm.adapter = C.ResidualAdapter(24)
    cbm.alpha = 0.3
    x = emb.preprocess(faces(2))
    with torch.no_grad():
        e = cbm.visual(x)
        expected = F.normalize(0.3 * e + 0.7 * cbm.adapter(e), dim=1)
        torch.testing.assert_close(cbm.encode(x), expected)
    assert not cbm.zero_shot
    assert cbm.adapter.fc[0].out_features == 6 and cbm.adapter.fc[2].out_features == 24


def test_a_saved_head_reloads_to_the_same_embeddings(tmp_path):
    emb = tiny_cbm_embedder()
    cbm = emb.module
    torch.manual_seed(5)
    cbm.adapter = C.ResidualAdapter(24)
    cbm.alpha = 0.6
    cbm.W = torch.nn.Parameter(torch.randn(len(cbm.descriptors), 16))
    with torch.no_grad():
        for p in C.last_mlp(cbm.visual).parameters():
            p.add_(torch.randn_like(p) * 0.1)
    want = emb.embed_faces(faces())
    path = C.save_head(cbm, tmp_path / "head.pt", extra={"epochs": 1})
    again = tiny_cbm_embedder(head=path)  # same seed: the same random tower before the head
    assert again.embedding_dim == 16 and not again.module.zero_shot
    torch.testing.assert_close(again.embed_faces(faces()), want)
    small = DescriptorSet.from_dict(
        {"name": "x", "template": "{}", "components": [{"component": "eyes", "groups": [{"group": "g", "alternatives": ["a", "b"]}]}]}
    )
    with pytest.raises(DataError, match="another descriptor set"):
        tiny_cbm_embedder(descriptors=small, head=path)
    with pytest.raises(DataError, match="not found"):
        C.load_head(cbm, tmp_path / "missing.pt")


def test_a_plain_clip_embedder_is_not_a_concept_model():
    from core.errors import MethodRequirementError
    from core.models.clip import clip_embedder

    model, _ = tiny_clip()
    with pytest.raises(MethodRequirementError, match="cbm_clip_vit_l14"):
        C.concept_model(clip_embedder(model, "tiny_clip", "cpu"))


def test_the_registered_bottleneck_matches_the_shipped_descriptor_set():
    from core.registry import model_spec

    spec = model_spec("cbm_clip_vit_l14")
    assert spec.embedding_dim == len(load_descriptors()) and not spec.offline
