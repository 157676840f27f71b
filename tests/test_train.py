"""Fine-tuning the concept bottleneck: the AdaFace loss and two real training steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core import train as T
from core.models import cbm as C

from .models.test_cbm import faces, tiny_cbm_embedder


def test_adaface_margins():
    head = T.AdaFaceHead(4, 3, m=0.5, h=0.33, s=10.0).eval()
    f = torch.tensor([[1.0, 0.2, 0.0, 0.0]])
    cos = torch.nn.functional.normalize(f, dim=1) @ torch.nn.functional.normalize(head.prototypes, dim=1).t()
    # a feature norm at the running mean: z = 0, no angular margin, additive margin m
    head.batch_mean.fill_(float(f.norm()))
    out = head.logits(f, torch.tensor([1]))
    torch.testing.assert_close(out[0, [0, 2]], 10.0 * cos[0, [0, 2]], atol=1e-4, rtol=1e-4)  # other classes untouched
    torch.testing.assert_close(out[0, 1], 10.0 * (cos[0, 1] - 0.5), atol=1e-4, rtol=1e-4)
    # a high-quality (large-norm) face: z = 1, angle pushed by -m, additive margin 2m
    head.batch_mean.fill_(0.0)
    head.batch_std.fill_(0.01)
    theta = cos[0, 1].acos()
    want = 10.0 * (torch.clamp(theta - 0.5, 1e-3, math.pi - 1e-3).cos() - 1.0)
    torch.testing.assert_close(head.logits(f, torch.tensor([1]))[0, 1], want, atol=1e-4, rtol=1e-4)


def test_two_training_steps_change_only_the_trainable_parts_and_the_head_reloads(tmp_path):
    emb = tiny_cbm_embedder()
    cbm = emb.module
    crops = faces(6, seed=1)
    labels = [0, 0, 1, 1, 2, 2]
    first_block = {k: v.clone() for k, v in cbm.visual.transformer.resblocks[0].state_dict().items()}
    text = cbm.text.clone()
    mlp_before = {k: v.clone() for k, v in C.last_mlp(cbm.visual).state_dict().items()}
    names = cbm.descriptors.descriptors
    align = ([crops[0], crops[1]], [names[0], names[5]])
    steps = []
    rep = T.train_cbm(emb, crops, labels, batch_size=4, max_steps=2, lr=1e-2, alignment=align, progress=lambda i, n, loss: steps.append((i, n)))
    assert rep.steps == 2 and steps == [(1, 2), (2, 2)] and all(np.isfinite(rep.losses))
    assert 0 <= rep.accuracy_before <= 1 and 0 <= rep.accuracy_after <= 1 and rep.alignment_after in (0.0, 0.5, 1.0)
    assert "2 steps" in rep.lines()[0] and "training identities" in rep.lines()[1]
    assert cbm.adapter is not None and cbm.alpha == 0.8 and not cbm.zero_shot
    assert not torch.equal(cbm.W.detach(), torch.eye(len(names)))
    assert any(not torch.equal(v, C.last_mlp(cbm.visual).state_dict()[k]) for k, v in mlp_before.items())
    for k, v in cbm.visual.transformer.resblocks[0].state_dict().items():
        assert torch.equal(v, first_block[k]), k  # frozen
    assert torch.equal(cbm.text, text) and not any(p.requires_grad for p in cbm.parameters())
    want = emb.embed_faces(crops)
    path = C.save_head(cbm, tmp_path / "head.pt", T.report_extra(rep))
    again = tiny_cbm_embedder(head=path)
    torch.testing.assert_close(again.embed_faces(crops), want)
    assert torch.load(path, weights_only=True)["extra"]["steps"] == 2


def test_training_needs_genuine_and_impostor_pairs():
    emb = tiny_cbm_embedder()
    with pytest.raises(Exception, match="genuine and impostor"):
        T.train_cbm(emb, faces(2), [0, 1], max_steps=1)
    with pytest.raises(Exception, match="not descriptors"):
        T.alignment_accuracy(emb, faces(1), ["a unicorn horn"])
