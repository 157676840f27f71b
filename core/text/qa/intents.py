"""Intent templates: regular expressions for the common questions, each answered with the
facts of its topic. They are tried in order; one that finds no facts passes to the next.
A question that names a part of the face ("Do the noses differ?") is answered about that
part before any other template reads it."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from .answers import MAX_SENTENCES, Routed, dedupe
from .fact import Fact
from .lookup import decision, same, topic
from .region_answers import FULL_TABLE, full_table, measure_reply, part_reply, regions_reply

#: A template: (question, facts) -> what it found, or ``None`` to pass to the next one.
Handler = Callable[[str, Sequence[Fact]], Routed | None]


def _facts(name: str, pick: Callable[[str, Sequence[Fact]], list[Fact]]) -> Handler:
    def handler(question: str, facts: Sequence[Fact]) -> Routed | None:
        chosen = dedupe(pick(question, facts))
        return Routed(name, chosen[:MAX_SENTENCES]) if chosen else None

    return handler


def _why(question: str, facts: Sequence[Fact]) -> list[Fact]:
    """The decision's "because", the top region of the side that decided it and two concepts."""
    verdict = same(facts)
    out = decision(facts)[:1]
    if verdict is None:
        return out
    side = regions_reply("similar" if verdict else "dissimilar")(question, facts)
    regions = [f for f in (side.facts if side else []) if f.value.get("region")][:2]
    concepts = topic(facts, "concept")[:2]
    return out + regions + concepts


def _with_decision(*topics: str) -> Callable[[str, Sequence[Fact]], list[Fact]]:
    return lambda q, facts: topic(facts, *topics) + decision(facts)[:1]


def _methods(question: str, facts: Sequence[Fact]) -> list[Fact]:
    run = topic(facts, "method")
    return [f for f in run if f.method is None] + [f for f in run if f.method is not None]


#: (name, pattern, handler), tried in order.
INTENTS: list[tuple[str, re.Pattern[str], Handler]] = [
    ("region_table", FULL_TABLE, full_table),
    ("part", re.compile(r"\w"), part_reply),  # any question: the handler looks for the names of parts of the face
    (
        "faithfulness",
        re.compile(
            r"faithful|\bdeletion\b|\binsertion\b|\b(best|most reliable|most trustworthy|most accurate) (map|method|explanation)"
            r"|\b(which|what) (map|method|explanation)s? (is|are|should|can|do) .*\b(trust|best|reliable|right)"
        ),
        _facts("faithfulness", lambda q, facts: topic(facts, "faithfulness")),
    ),
    (
        "region_different",
        re.compile(
            r"\b(region|part|area|feature|where)s?\b.*\b(differ|dissimilar|apart|unlike|not alike|less alike)"
            r"|\blooks? (different|unlike)|\bmost dissimilar|\bpull(s|ed)? .*apart"
        ),
        regions_reply("dissimilar"),
    ),
    (
        "region_alike",
        re.compile(
            r"\b(region|part|area|feature|where)s?\b.*\b(alike|similar\b|together|same\b|match(es)?\b|resembl|important|matter|relied|rely)"
            r"|\blook(ed|s)? (alike|similar)|\bbrings? .*together|\bmost similar (region|part|area)"
        ),
        regions_reply("similar"),
    ),
    ("why", re.compile(r"\bwhy\b|\breasons?\b|\bhow come\b|\bexplain (the |this )?(decision|result|verdict|diagnosis)"), _facts("why", _why)),
    (
        "confidence",
        re.compile(r"\bhow (sure|certain|confident)|confiden|\bc-?score|\bcertain(ty)?\b|\bsure\b|\breliab|\btrust|\bprobabilit|\bhow likely"),
        _facts("confidence", _with_decision("confidence")),
    ),
    ("threshold", re.compile(r"threshold|\bcut-?off\b|\bmargin\b"), _facts("threshold", _with_decision("threshold"))),
    (
        "similarity",
        re.compile(r"\bsimilarity|\bhow similar|\bcosine\b|\b(similarity|match|matching|verification) score"),
        _facts("similarity", _with_decision("similarity")),
    ),
    (
        "model",
        re.compile(
            r"\b(which|what) (face )?(recognition )?(model|network|backbone|embedder)\b|\bmodel (was |is )?used|\bweights\b|\bhash\b|\bsha-?256\b"
        ),
        _facts("model", lambda q, facts: topic(facts, "model")),
    ),
    (
        "method",
        re.compile(r"\b(which|what) (explanation |saliency |xai )?(methods|maps|explainers|explanations)\b|\bmethods? (were |was )?(run|used)"),
        _facts("method", _methods),
    ),
    (
        "concept",
        re.compile(
            r"\bconcepts?\b|\bdescriptors?\b|\bfacial (features?|traits?|attributes?)|\bfeatures? (do|did) they share"
            r"|\bwhat does the (x-?ray|image|scan|radiograph) show|\bfindings?\b|\bwhat (do|does) (you|it|the model) see"
        ),
        _facts("concept", lambda q, facts: topic(facts, "concept")),
    ),
    ("geometry", re.compile(r"\w"), measure_reply),  # the handler looks for measure words
    (
        "decision",
        re.compile(
            r"\bsame (person|man|woman|guy|face|individual|people)|\bmatch|\bdecision|\bverdict|\bdifferent (people|persons|person)"
            r"|\bidentical\b|\bis (it|this|that) (him|her|the same)|\bresult\b|\baccepted\b|\brejected\b|\beffusion\b|\bdiagnos"
            r"|\bwho is\b|\bare they\b"
        ),
        _facts("decision", lambda q, facts: decision(facts)),
    ),
]


def route(question: str, facts: Sequence[Fact]) -> Routed | None:
    """The first template whose pattern matches the question and that finds something."""
    q = question.lower()
    for _, pattern, handler in INTENTS:
        if pattern.search(q):
            hit = handler(question, facts)
            if hit is not None:
                return hit
    return None
