"""The ``Answer`` the chat gives, and its "I don't know"."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .fact import Fact, result_id_of
from .lookup import is_cxr

#: The answer match of a template answer: a recognised question answered with the facts of
#: its topic (a constant, not a probability).
TEMPLATE_MATCH = 0.9

#: At most this many fact sentences in a built-in answer.
MAX_SENTENCES = 5


@dataclass
class Answer:
    """An answer and where it came from.

    ``match`` is the ANSWER MATCH in [0, 1]: how well the answer fits the question, not how
    sure the face model is (that is the C-Score, a fact like any other). It is the span
    probability ``p_start * p_end`` (extractive), ``TEMPLATE_MATCH`` (a recognised
    question), or the MiniLM cosine of the question with its best fact (retrieval; below
    ``UNKNOWN_THRESHOLD`` the answer is "I don't know"). ``result_id``: the comparison the
    answer is about (``Facts.result_id``).
    """

    text: str
    match: float
    source: str  # "extractive" or "built-in"
    supporting: list[str] = field(default_factory=list)  # the fact sentences it rests on
    known: bool = True
    span: str | None = None  # the extracted span (extractive answers)
    intent: str | None = None  # the template that matched, if any
    result_id: str | None = None

    @property
    def score(self) -> float:
        """The former name of ``match`` (kept so old callers work)."""
        return self.match

    @property
    def caption(self) -> str:
        """Where the answer came from, e.g. "built-in answer, answer match 0.90"."""
        return f"{self.source} answer, answer match {self.match:.2f}"


@dataclass
class Routed:
    """What a template found: the facts it rests on and, when it words them itself, ``text``."""

    intent: str
    facts: list[Fact]
    text: str | None = None
    known: bool = True

    def answer(self, note: str = "") -> Answer:
        text = self.text if self.text is not None else " ".join(f.sentence for f in self.facts)
        return Answer(text + note, TEMPLATE_MATCH if self.known else 0.0, "built-in", [f.sentence for f in self.facts], self.known,
                      intent=self.intent)  # fmt: skip


_CXR_DECISION = "the diagnosis and why (\u201cWhy effusion?\u201d)"
_CAN_ANSWER = {
    "decision": "the decision and why (\u201cWhy not a match?\u201d)",
    "confidence": "how sure the model is (\u201cHow sure is it?\u201d)",
    "similarity": "the similarity and the threshold",
    "region": "which facial regions made the faces look alike or different (\u201cWhich region made them look alike?\u201d) "
    "and what the maps say of one (\u201cDo the noses differ?\u201d)",
    "concept": "the descriptors (concepts) the model found",
    "geometry": "the measured facial proportions",
    "faithfulness": "which explanation map is the most faithful",
    "method": "which explanation methods were run",
    "model": "which model was used",
}


def unknown_answer(facts: Sequence[Fact], source: str = "built-in", match: float = 0.0) -> Answer:
    """'I don't know', with what can be asked about these facts."""
    rid = result_id_of(facts)
    if not facts:
        return Answer("I don't know: there is no computed result to answer from yet.", 0.0, source, [], known=False, result_id=rid)
    topics = {f.topic for f in facts}
    can = [v for k, v in _CAN_ANSWER.items() if k in topics]
    if is_cxr(facts):
        can = [_CXR_DECISION if v == _CAN_ANSWER["decision"] else v for v in can]
    text = "I don't know that from these results. I can answer questions about " + "; ".join(can) + "."
    return Answer(text, float(max(0.0, min(1.0, match))), source, [], known=False, result_id=rid)


def dedupe(facts: Sequence[Fact]) -> list[Fact]:
    """The facts without repeated sentences, in order."""
    seen, out = set(), []
    for f in facts:
        if f.sentence not in seen:
            seen.add(f.sentence)
            out.append(f)
    return out
