"""The ``Fact``: one sentence about a computed result, and the sets of them the chat reads."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ...types import Explanation

#: What a fact can be about.
TOPICS = ("decision", "similarity", "confidence", "threshold", "region", "concept", "method", "faithfulness", "model", "geometry", "detection")

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass(frozen=True)
class Fact:
    """One sentence about a result. ``topic`` is one of ``TOPICS``; ``value`` holds the
    numbers the sentence was made from; ``method`` the explainer it comes from, if any;
    ``parts`` the parts of the face it is about (``vocabulary.PARTS`` names) and ``measure``
    its measured proportion, if any. A ``detail`` fact (a full table, one region's share)
    answers only a question that asks for it: retrieval and the general answers skip it."""

    topic: str
    sentence: str
    value: Any = None
    method: str | None = None
    parts: tuple[str, ...] = ()
    measure: str | None = None
    detail: bool = False


class Facts(list[Fact]):
    """The facts of one result, in order, with ``result_id``: a short hash of the result
    (model, similarity, threshold and crops), the same for the same comparison, so that a
    UI can keep the questions about each comparison apart."""

    def __init__(self, facts: Iterable[Fact] = (), result_id: str | None = None) -> None:
        super().__init__(facts)
        self.result_id = result_id


def result_id_of(facts: Sequence[Fact]) -> str | None:
    """The ``result_id`` of a ``Facts`` (``None`` for a plain list)."""
    return getattr(facts, "result_id", None)


def pct(share: float) -> int:
    """A share in whole percent, as every sentence writes it."""
    return round(100.0 * float(share))


def f3(x: float) -> str:
    return f"{float(x):.3f}"


def label_of(e: Explanation) -> str:
    """The words for a method: its label, else its key."""
    return e.label if e.label and e.label != e.method else e.method


def context(facts: Sequence[Fact]) -> str:
    """The passage the extractive model reads: the fact sentences, in order, one space apart."""
    return context_spans(facts)[0]


def context_spans(facts: Sequence[Fact]) -> tuple[str, list[tuple[int, int]]]:
    """The context and each fact's (start, end) characters in it."""
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
