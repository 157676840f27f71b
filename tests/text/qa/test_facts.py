"""Facts and their ids (``core.text.qa.facts``, ``fact``, ``answers``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from core.chat import Answer, Chat, Fact, Facts, facts_from_cxr, facts_from_result, result_id
from core.cxr import CXRResult
from core.text.qa.answers import unknown_answer

from .results import BIDEN, OBAMA, geometry, pair_and_masks, result, signed


@pytest.fixture(scope="module")
def base():
    pair, masks = pair_and_masks()
    return pair, masks, result(pair, [signed(masks), geometry(pair, OBAMA, BIDEN)], same=False, sim=0.213)


def test_result_id_names_one_comparison(base):
    _, _, res = base
    facts = facts_from_result(res)
    assert isinstance(facts, Facts) and isinstance(facts, list) and facts.result_id == result_id(res)
    assert facts_from_result(res).result_id == facts.result_id  # the same comparison, the same id
    assert len(facts.result_id) == 12 and int(facts.result_id, 16) >= 0
    other = {
        "similarity": dataclasses.replace(res, similarity=0.214),
        "model": dataclasses.replace(res, model="arcface"),
        "threshold": dataclasses.replace(res, threshold=0.4),
        "crops": dataclasses.replace(res, pair=pair_and_masks(np.full((112, 112, 3), 7, np.uint8))[0]),
    }
    ids = {k: result_id(v) for k, v in other.items()}
    assert facts.result_id not in ids.values() and len(set(ids.values())) == len(ids)
    assert result_id(dataclasses.replace(res, explanations=[])) == facts.result_id  # more methods on it: still that comparison
    x1, x2 = CXRResult(0.73, True, "supervised"), CXRResult(0.74, True, "supervised")
    assert facts_from_cxr(x1).result_id == result_id(x1) != result_id(x2)


def test_answers_carry_the_result_id(base):
    _, _, res = base
    facts = facts_from_result(res)
    chat = Chat(qa=False)
    for q in ("How sure is it?", "What's the weather in Paris?", "Do the noses differ?"):
        assert chat.answer(q, facts).result_id == facts.result_id
    assert chat.answer("How sure is it?", list(facts)).result_id is None  # a plain list has no id
    assert unknown_answer(facts).result_id == facts.result_id


def test_geometry_facts_are_tagged_with_their_measure(base):
    _, _, res = base
    facts = facts_from_result(res)
    geo = [f for f in facts if f.topic == "geometry"]
    keys = [f.measure for f in geo]
    assert keys == ["eye_spacing", "eye_size", "nose_width", "mouth_width", "face_proportions", None]  # the caveat has none
    labels = {m["key"]: m["label"] for m in next(e for e in res.explanations if e.method == "geometry").extras["measures"][0]}
    for f in geo[:-1]:
        assert labels[f.measure] in f.sentence
    assert [f.parts for f in geo] == [("eyes",), ("eyes",), ("nose",), ("mouth",), ("face shape",), ()]


def test_answer_match_is_named_for_what_it_is():
    a = Answer("It is.", 0.44, "built-in")
    assert a.match == a.score == 0.44 and a.caption == "built-in answer, answer match 0.44"
    assert {f.name for f in dataclasses.fields(Answer)} >= {"text", "match", "source", "supporting", "known", "intent", "result_id"}
    assert Fact("similarity", "The similarity is 0.5.", 0.5).detail is False
