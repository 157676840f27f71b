"""The download-only models run for real on real photos and X-rays (``make test-weights``).

Each test starts with ``need(model)``: without the files ``python -m core fetch-weights``
fetches it is skipped, naming the first missing one. With them it calls what the CLI and the
apps call (``Runner``, ``Runner.faithfulness``, ``apps.xray.diagnose_xray``, ``core.cxr``,
``ExtractiveQA`` and ``Chat``), never a stub.

No calibration ships for ``clip_vit_l14`` or ``cbm_clip_vit_l14`` (``verify`` without one
raises ``CalibrationError``), so the runners get a threshold, as ``--threshold`` gives one;
the similarities and the concept shares do not depend on it.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from ..conftest import CXR, MISC
from .conftest import need

pytestmark = [pytest.mark.weights, pytest.mark.needs_data]

OBAMA, OBAMA2, BIDEN = MISC / "obama.jpg", MISC / "obama2.jpg", MISC / "biden.jpg"
CLIP, CBM = "clip_vit_l14", "cbm_clip_vit_l14"
#: The threshold given where no calibration exists (see the module docstring).
GIVEN_THRESHOLD = 0.5
XRAYS = sorted(p for p in CXR.iterdir() if p.is_file()) if CXR.is_dir() else []


def runner_of(model: str, threshold: float = GIVEN_THRESHOLD):
    from core import Runner

    return Runner(model=model, device="auto", threshold=threshold)


# -- CLIP ViT-L-14 ---------------------------------------------------------------------------
def test_clip_finds_the_same_person_more_alike_than_another():
    need(CLIP)
    runner = runner_of(CLIP)
    same, other = runner.verify(OBAMA, OBAMA2), runner.verify(OBAMA, BIDEN)
    assert same.model == other.model == CLIP
    assert -1.0 <= other.similarity < same.similarity <= 1.0, f"obama/obama2 {same.similarity:.4f}, obama/biden {other.similarity:.4f}"


# -- the concept bottleneck --------------------------------------------------------------------
# the sentences of core.explainers.concepts: "Both faces show D (component, group: 81% and 77%); ..." (a match)
# and "Component, group: the first face shows A (81%), the second B (40%); ..." (a non-match)
_SHARED = re.compile(r"Both faces show (?P<d>.+?) \((?P<c>[^,()]+), (?P<g>[^:()]+): ")
_DIFFER = re.compile(r"^(?P<c>[^,]+), (?P<g>[^:]+): the first face shows (?P<a>.+?) \(\d+%\), the second (?P<b>.+?) \(\d+%\)")


def named_descriptors(text: list[str]) -> list[tuple[str, str, str]]:
    """(descriptor, component, group) of every descriptor the concept sentences name."""
    out = []
    for line in text:
        if m := _SHARED.match(line):
            out.append((m["d"], m["c"], m["g"]))
        elif m := _DIFFER.match(line):
            out += [(m["a"], m["c"].lower(), m["g"]), (m["b"], m["c"].lower(), m["g"])]
    return out


def test_the_concept_bottleneck_names_fiswg_descriptors_and_its_shares_sum_to_the_similarity():
    need(CBM)
    from core.text.descriptors import load_descriptors

    res = runner_of(CBM).explain(OBAMA, OBAMA2, methods=["concepts"])
    (exp,) = res.explanations
    assert exp.ok, exp.error
    fiswg = load_descriptors()
    where = {d: (g.component, g.name) for g in fiswg.groups for d in g.alternatives}
    named = named_descriptors(exp.text)
    for d, component, group in named:  # each named descriptor is in the FISWG group the words give it
        assert where.get(d) == (component, group), (d, component, group)
    groups = {(c, g) for _, c, g in named}
    assert len(groups) >= 3, exp.text
    table = exp.extras["table"]
    assert exp.extras["descriptor_set"] == fiswg.name and len(table) == len(fiswg.groups)
    # every concept's share of the similarity, summed per group in the table: together, the similarity
    assert sum(r["share"] for r in table) == pytest.approx(exp.scores["similarity"], abs=1e-6)
    assert exp.scores["similarity"] == pytest.approx(res.similarity, abs=1e-4)  # the similarity the decision was made on


# -- ViT-LRP on CLIP -----------------------------------------------------------------------------
def test_vit_lrp_maps_delete_the_decision_faster_than_random_maps():
    from core.evaluate.faithfulness import RANDOM

    need(CLIP)
    probe = runner_of(CLIP)
    s_same, s_other = probe.verify(OBAMA, OBAMA2).similarity, probe.verify(OBAMA, BIDEN).similarity
    assert s_other < s_same, f"obama/obama2 {s_same:.4f}, obama/biden {s_other:.4f}"
    runner = runner_of(CLIP, (s_same + s_other) / 2)  # between the two: the match accepted, the other pair rejected
    for other, same in ((OBAMA2, True), (BIDEN, False)):
        res = runner.explain(OBAMA, other, methods=["vit_lrp"])
        (exp,) = res.explanations
        assert exp.ok, exp.error
        assert res.same is same and exp.extras["decision"] == ("positive" if same else "negative")
        assert len(exp.maps) == 2 and all(m.ndim == 2 and np.isfinite(m).all() for m in exp.maps)
        scores = runner.faithfulness(res)
        assert set(scores) == {"vit_lrp", RANDOM}
        # the deletion area of the decision margin: lower is more faithful (core.evaluate.probes)
        assert scores["vit_lrp"]["deletion_auc"] < scores[RANDOM]["deletion_auc"], (other.name, scores)


# -- BiomedCLIP on chest X-rays ------------------------------------------------------------------
@pytest.fixture(scope="module")
def cxr_models():
    need("cxr")
    from apps.xray import CXRModels

    return CXRModels()  # what the X-ray tab builds: BiomedCLIP from the cache (XFV_CXR_CLIP / XFV_CXR_HEAD if set)


@pytest.mark.parametrize("path", XRAYS, ids=[p.name for p in XRAYS])
def test_biomedclip_diagnoses_each_xray_with_a_probability_and_a_saliency_map(cxr_models, path):
    from apps.xray import diagnose_xray
    from core.cxr import input_size, saliency
    from core.models.cxr import CLASSES

    out = diagnose_xray(cxr_models, path, "vit_lrp")  # the X-ray tab's handler
    assert out["ok"], out["message"]
    res = out["result"]
    assert 0.0 <= res.probability <= 1.0 and res.effusion == (res.probability >= 0.5)
    assert res.concepts and all(0.0 <= c["probability"] <= 1.0 for c in res.concepts)
    size = input_size(cxr_models.get())
    assert res.image.shape == (size, size, 3)  # the crop the model saw, which the tab shows
    assert out["saliency"] is not None, out["saliency_caption"]
    assert out["saliency"].shape[:2] == res.image.shape[:2]
    sal = saliency(cxr_models.get(), res.image, "vit_lrp", res.effusion)  # the map the tab renders
    assert sal.map.ndim == 2 and sal.map.shape == res.image.shape[:2] and np.isfinite(sal.map).all()
    assert sal.map.min() >= 0.0 and sal.map.max() <= 1.0 + 1e-6 and sal.explained == CLASSES[int(res.effusion)]


# -- the extractive QA model ---------------------------------------------------------------------
def test_the_qa_model_answers_from_the_facts_of_a_real_result_with_a_span_of_them(runner):
    need("bert_qa")
    from core.chat import Chat, ExtractiveQA, context, facts_from_result

    res = runner.explain(OBAMA, OBAMA2, methods=["cam"])  # SFace on the CPU, with its calibration
    facts = facts_from_result(res)
    ctx = context(facts)
    threshold = f"{res.threshold:.3f}"
    assert threshold in ctx  # "The decision threshold is 0.477: ..."
    qa = ExtractiveQA()
    assert qa.available()
    question = "What is the decision threshold?"
    a = qa.answer(question, facts)
    assert a.known and a.source == "extractive", a
    assert a.span and a.span in ctx and a.span in a.text and threshold in a.span, a.span
    assert a.supporting and all(s in [f.sentence for f in facts] for s in a.supporting)
    chat = Chat(qa=qa).answer(question, facts)  # the app's chat: the extractive answer passes its gate
    assert chat.source == "extractive" and chat.span in ctx and threshold in chat.span, chat
