"""Small queries over a list of facts, shared by the intents and the suggestions."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .fact import Fact


def topic(facts: Sequence[Fact], *topics: str) -> list[Fact]:
    """The facts of these topics (detail facts left out), topic by topic."""
    return [f for t in topics for f in facts if f.topic == t and not f.detail]


def decision(facts: Sequence[Fact]) -> list[Fact]:
    """The decision facts, the "because" sentence first."""
    d = topic(facts, "decision")
    return sorted(d, key=lambda f: 0 if "because" in f.sentence or "read as" in f.sentence else 1)


def same(facts: Sequence[Fact]) -> bool | None:
    """The decision: same person (faces) or effusion (X-ray); ``None`` without a decision."""
    for f in facts:
        if f.topic == "decision" and isinstance(f.value, dict):
            if "same" in f.value:
                return bool(f.value["same"])
            if "effusion" in f.value:
                return bool(f.value["effusion"])
    return None


def is_cxr(facts: Sequence[Fact]) -> bool:
    return any(f.topic == "decision" and isinstance(f.value, dict) and "effusion" in f.value for f in facts)


def side_of(f: Fact) -> str | None:
    """``"similar"``, ``"dissimilar"`` or ``"relevance"`` for a region fact with a side."""
    return f.value.get("side") if f.topic == "region" and isinstance(f.value, dict) else None


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9+]+", " ", text.lower()).split())


def method_names(facts: Sequence[Fact]) -> dict[str, str]:
    """{method: label} of the methods with region facts, in their order."""
    out: dict[str, str] = {}
    for f in facts:
        if f.method and f.topic == "region" and isinstance(f.value, dict) and f.value.get("method_label"):
            out.setdefault(f.method, str(f.value["method_label"]))
    return out


def short_label(label: str) -> str:
    """ "X-Map II (occlusion, Knoche et al.)" -> "X-Map II"."""
    return label.split(" (")[0].strip() or label


def mentioned_methods(question: str, facts: Sequence[Fact]) -> set[str]:
    """The methods of the region facts that the question names (by key or label, e.g.
    "grad_cam", "Grad-CAM", "X-Map II"); a name inside a longer one that also matches
    ("cam" in "grad cam") does not count."""
    q = _plain(question)
    hits: list[tuple[int, int, str]] = []
    for method, label in method_names(facts).items():
        for n in {_plain(method), _plain(label), _plain(short_label(label))} - {""}:
            hits += [(m.start(), m.end(), method) for m in re.finditer(rf"\b{re.escape(n)}\b", q)]
    return {m for a, b, m in hits if not any(a2 <= a and b <= b2 and (b2 - a2) > (b - a) and m2 != m for a2, b2, m2 in hits)}
