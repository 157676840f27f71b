"""Explanations in words from the concept bottleneck, and the measured geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.explainers.concepts import ConceptExplainer, concept_shares
from core.models.base import TorchEmbedder
from core.models.cbm import ConceptBottleneck
from core.registry import explainer_spec
from core.text.descriptors import DescriptorSet
from core.types import FacePair

from .conftest import toy_face

SET = DescriptorSet.from_dict({"name": "toy", "template": "a face with {}.", "components": [
    {"component": "eyes", "groups": [{"group": "eye shape", "alternatives": ["round eyes", "almond-shaped eyes"]}]},
    {"component": "mouth", "groups": [{"group": "lip thickness", "alternatives": ["full lips", "thin lips"]}]},
    {"component": "hair", "groups": [{"group": "hair colour", "alternatives": ["black hair", "blond hair", "red hair"]}]},
]})  # fmt: skip


class ColourTower(nn.Module):
    """An 'image tower' whose encoding is the image's mean red, green and blue."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


def colour_embedder() -> TorchEmbedder:
    # red -> round eyes, full lips, red hair; green -> almond eyes, thin lips, blond; blue -> black hair
    text = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 0, 0.2], [0, 1, 0.2], [0, 0, 1], [0, 1, 0], [1, 0, 0]])
    cbm = ConceptBottleneck(ColourTower(), text, SET, logit_scale=20.0)
    return TorchEmbedder("colour_cbm", cbm, 16, len(SET), device="cpu")


def face(rgb: tuple[int, int, int]):
    f = toy_face(16)
    img = np.zeros((16, 16, 3), np.uint8)
    img[:] = rgb
    return type(f)(image=img, landmarks=f.landmarks, box=f.box, transform=f.transform)


def test_concept_shares_sum_to_the_cosine_similarity():
    rng = np.random.default_rng(0)
    pa, pb, w = rng.random(7), rng.random(7), rng.normal(size=(7, 4))
    ea, eb = pa @ w, pb @ w
    cos = ea @ eb / (np.linalg.norm(ea) * np.linalg.norm(eb))
    assert concept_shares(pa, pb, w).sum() == pytest.approx(cos)
    assert concept_shares(pa, pb, np.eye(7)).sum() == pytest.approx(pa @ pb / (np.linalg.norm(pa) * np.linalg.norm(pb)))


def test_a_match_names_the_concepts_both_faces_share():
    emb = colour_embedder()
    exp = ConceptExplainer().explain(FacePair(face((220, 20, 10)), face((200, 30, 20))), emb, decision_threshold=0.5)
    assert exp.ok and not exp.maps and exp.extras["decision"] == "match"
    rows = {r["group"]: r for r in exp.extras["table"]}
    assert rows["eye shape"]["shared"] and rows["eye shape"]["concept_a"] == "round eyes"
    assert rows["hair colour"]["concept_a"] == rows["hair colour"]["concept_b"] == "red hair"
    assert "Both faces show round eyes" in " ".join(exp.text) and "full lips" in " ".join(exp.text)
    assert sum(r["share"] for r in exp.extras["table"]) == pytest.approx(exp.scores["similarity"], abs=1e-6)
    shared = [r for r in exp.extras["table"] if r["shared"]]
    assert exp.extras["ranked"] == [r["group"] for r in sorted(shared, key=lambda r: -r["concept_share"])]
    chart = exp.extras["chart"]
    assert chart["data"][0]["type"] == "bar" and len(chart["data"][0]["y"]) == len(exp.extras["ranked"])
    assert any("Zero-shot" in t for t in exp.text)


def test_a_non_match_names_the_groups_that_differ_most():
    emb = colour_embedder()
    exp = ConceptExplainer().explain(FacePair(face((230, 10, 10)), face((10, 10, 230))), emb, decision_threshold=0.99)
    assert exp.extras["decision"] == "non-match"
    rows = {r["group"]: r for r in exp.extras["table"]}
    # blue turns the hair black but leaves eyes and lips undecided: hair differs most
    assert exp.extras["ranked"][0] == "hair colour" and rows["hair colour"]["concept_b"] == "black hair"
    assert rows["hair colour"]["difference"] > rows["eye shape"]["difference"]
    assert "the second black hair" in exp.text[1]


def test_the_runner_offers_concepts_only_for_concept_models():
    from core.runner import Runner

    from .test_cam import random_pair, tiny_sface

    res = Runner(embedder=tiny_sface(0), device="cpu", threshold=0.5).explain(random_pair(3), methods=["concepts", "geometry"])
    concepts, geometry = res.explanations
    assert not concepts.ok and "clip_text" in concepts.error
    assert geometry.ok and geometry.text and not geometry.maps
    assert not explainer_spec("concepts").gives_maps and not explainer_spec("geometry").requires
