"""The decision of a pair in one sentence."""

from __future__ import annotations

from ..types import PairResult


def confidence_words(c: float) -> str:
    """Plain words for a C-Score in [0.5, 1] (a probability that the decision is right)."""
    if c >= 0.95:
        return "very confident"
    if c >= 0.8:
        return "confident"
    if c >= 0.65:
        return "fairly unsure"
    return "unsure"


def verdict_sentence(res: PairResult) -> str:
    what = "the same person" if res.same else "different people"
    rel = ">=" if res.same else "<"
    s = f"{what.capitalize()}: similarity {res.similarity:.3f} {rel} threshold {res.threshold:.3f} ({res.model})"
    if res.c_score is not None:
        s += f"; C-Score {res.c_score:.3f}, the model is {confidence_words(res.c_score)}"
    return s + "."
