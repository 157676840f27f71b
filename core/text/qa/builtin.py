"""The built-in answerer, offline: the intent templates, gated and backed by retrieval over
the facts (MiniLM, or word overlap without it)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .answers import MAX_SENTENCES, Answer, Routed, unknown_answer
from .fact import Fact
from .intents import route
from .retrieval import SentenceEmbedder, sentence_embedder, similarities

#: Below this cosine similarity (all-MiniLM-L6-v2) between the question and its best fact,
#: and with no template matching, the answer is "I don't know". Measured on real results
#: (SFace on Obama vs Obama with CAM, Grad-CAM, X-Map II, geometry and faithfulness: 40
#: facts; Obama vs Biden with CAM, Grad-CAM, geometry: 30 facts; and a chest X-ray's 7):
#: 13 on-topic questions that no template catches scored 0.44-0.73 ("How big is the
#: mouth?" 0.44, "Did the forehead contribute?" 0.49-0.55, "How wide is the nose?" 0.67,
#: "What does the CAM map say about the second face?" 0.73); 36 off-topic ones 0.02-0.17
#: ("What's the weather in Paris?" 0.11, "Who won the football world cup?" 0.12, "What is
#: the capital of France?" 0.15), except "What is the score of the game?" at 0.31-0.32
#: ("score" is near "C-Score"). 0.35 lies between 0.32 and 0.44. Measured again on the same
#: two face results after the region facts were made short (28 and 37 retrievable facts):
#: on-topic questions that no template catches 0.39-0.73 ("Is the calibration from
#: identities.csv?" 0.39), off-topic ones 0.08-0.16, "What is the score of the game?" 0.31-0.32.
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

#: The retrieved fact and those within this cosine of it (at most three) form a retrieval answer.
NEAR_BEST = 0.05


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
        return similarities(question, [f.sentence for f in facts], self.embedder)

    def rank(self, question: str, facts: Sequence[Fact]) -> list[tuple[Fact, float]]:
        """The facts (detail facts left out) with their similarity to the question, most similar first."""
        pool = [f for f in facts if not f.detail]
        s = self.scores(question, pool)
        order = np.argsort(-s, kind="stable")
        return [(pool[i], float(s[i])) for i in order]

    def route(self, question: str, facts: Sequence[Fact]) -> Routed | None:
        """The template that answers the question, if one does (no retrieval gate)."""
        return route(question, facts)

    def match(self, question: str, facts: Sequence[Fact]) -> tuple[str, list[Fact]] | None:
        """The template that matches and finds facts: (name, facts)."""
        hit = self.route(question, facts)
        return (hit.intent, hit.facts) if hit is not None and hit.facts else None

    def answer(self, question: str, facts: Sequence[Fact], threshold: float | None = None) -> Answer:
        """A template answer when one matches and the question is on topic; else the best
        facts by retrieval, or "I don't know" below the threshold."""
        rid = getattr(facts, "result_id", None)
        a = self._answer(question, facts, threshold)
        a.result_id = rid
        return a

    def _answer(self, question: str, facts: Sequence[Fact], threshold: float | None) -> Answer:
        if not facts or not question.strip():
            return unknown_answer(facts)
        minilm = self.embedder is not None
        thr = (UNKNOWN_THRESHOLD if minilm else OVERLAP_THRESHOLD) if threshold is None else float(threshold)
        floor = min(thr, TEMPLATE_FLOOR)
        ranked = self.rank(question, facts)
        best = ranked[0][1] if ranked else 0.0
        note = "" if minilm else " (found by word overlap: the MiniLM sentence-embedding package is not installed)"
        hit = self.route(question, facts)
        # a template question of a few words has nothing off-topic to measure ("Why?")
        if hit is not None and (best >= floor or not minilm or len(question.split()) <= SHORT_QUESTION):
            if not hit.known:  # a part of the face the result says nothing about: said plainly
                a = hit.answer()
                a.match = float(max(0.0, min(1.0, best)))
                return a
            if hit.text is None and hit.intent != "region_table":  # a full table is given whole, as asked
                hit.facts = hit.facts[: self.max_sentences]
            return hit.answer(note)
        if best < thr:
            a = unknown_answer(facts, match=best)
            a.text += note
            return a
        chosen = [f for f, s in ranked[:3] if s >= max(thr, best - NEAR_BEST)]
        return Answer(" ".join(f.sentence for f in chosen) + note, float(min(1.0, best)), "built-in", [f.sentence for f in chosen], True)
