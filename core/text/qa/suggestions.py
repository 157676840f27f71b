"""Questions a result can answer, built from its facts: each is offered only when the facts
hold its answer (region questions only with region tables, "Why not a match?" only for a
non-match, "How sure is it?" only with a C-Score ...), and each is checked against the
templates before it is offered."""

from __future__ import annotations

from collections.abc import Sequence

from .fact import Fact
from .intents import route
from .lookup import is_cxr, same, side_of, topic
from .vocabulary import part, part_of_region


def _part_question(facts: Sequence[Fact]) -> str | None:
    """About the part the facts say most of: a measure that differs, else the top region."""
    for f in facts:
        if f.topic == "geometry" and f.parts and f.sentence.startswith("They differ"):
            return f"Do the {part(f.parts[0]).noun} differ?"
    for f in facts:
        if f.topic == "concept" and f.parts and f.sentence.startswith("The faces differ"):
            return f"Do the {part(f.parts[0]).noun} differ?"
    verdict = same(facts)
    sides = ("similar", "relevance") if verdict else ("dissimilar",)
    for f in topic(facts, "region"):
        if side_of(f) in sides and f.value.get("region") not in (None, "other"):
            p = part_of_region(f.value["region"], f.value.get("label"))
            return f"What do the maps say about {p.words}?"
    for f in facts:
        if f.topic == "geometry" and f.parts:
            return f"What about {part(f.parts[0]).words}?"
    return None


def _candidates(facts: Sequence[Fact]) -> list[str]:
    verdict = same(facts)
    cxr = is_cxr(facts)
    out: list[str] = []
    if verdict is not None:
        if cxr:
            out.append("Why effusion?" if verdict else "Why no effusion?")
        else:
            out.append("Why is it a match?" if verdict else "Why not a match?")
    if any(f.topic == "confidence" and f.value is not None for f in facts):
        out.append("How sure is it?")
    regions = [side_of(f) for f in topic(facts, "region") if isinstance(f.value, dict) and f.value.get("summary")]
    if regions:
        if verdict is False and "dissimilar" in regions:
            out.append("Which regions made them look different?")
        out.append("Which regions made them look alike?")
    pq = _part_question(facts)
    if pq:
        out.append(pq)
    if topic(facts, "concept"):
        out.append("What does the X-ray show?" if cxr else "Which facial features do they share?")
    if any(f.topic == "faithfulness" and isinstance(f.value, dict) and "deletion_auc" in f.value for f in facts):
        out.append("Which map is the most faithful?")
    if any(f.topic == "geometry" and f.measure for f in facts):
        out.append("Which proportions differ?")
    if topic(facts, "similarity"):
        out.append("What is the similarity?")
    if topic(facts, "model"):
        out.append("Which model was used?")
    return out


def suggestions(facts: Sequence[Fact], n: int = 4) -> list[str]:
    """Up to ``n`` questions these facts answer, the most telling first (none without facts)."""
    out = []
    for q in _candidates(facts):
        hit = route(q, facts)
        if hit is not None and hit.known and hit.facts:
            out.append(q)
        if len(out) >= n:
            break
    return out
