"""Predicted descriptors against a report's: ROUGE-L and METEOR, as in Yalavarthi and Ratha's
evaluation of the chest X-ray explanations (ROUGE-L 0.31, METEOR 0.27 on MIMIC-CXR).

Each side is a list of descriptors joined into one text ("; " between them), in the order
given (the paper notes METEOR's fragmentation penalty punishes a different order).
ROUGE-L is Google's ``rouge-score`` (F-measure, Porter stemming). METEOR is nltk's
implementation with its exact and stem matching stages only: its synonym stage needs
WordNet, which nltk would download and these machines cannot; the scores are therefore
at most what full METEOR gives (``METEOR_STAGES`` says so in every report).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

METEOR_STAGES = "exact + stem (no WordNet synonyms offline)"


class _NoSynonyms:
    """Stands in for nltk's WordNet reader: no synonym sets, so METEOR keeps its exact and
    stem stages."""

    def synsets(self, *args: object, **kwargs: object) -> list:
        return []


def _text(descriptors: Sequence[str]) -> str:
    return "; ".join(d.strip() for d in descriptors if d.strip())


def rouge_l(predicted: Sequence[str], reference: Sequence[str]) -> float:
    """ROUGE-L F-measure of the predicted descriptors against the reference ones."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return float(scorer.score(_text(reference), _text(predicted))["rougeL"].fmeasure)


def meteor(predicted: Sequence[str], reference: Sequence[str]) -> float:
    """METEOR (exact and stem stages) of the predicted descriptors against the reference ones."""
    from nltk.translate.meteor_score import meteor_score

    hyp = _text(predicted).replace(";", " ").split()
    ref = _text(reference).replace(";", " ").split()
    if not hyp or not ref:
        return 0.0
    return float(meteor_score([ref], hyp, wordnet=_NoSynonyms()))


@dataclass
class TextScores:
    rouge_l: float
    meteor: float
    n: int
    meteor_stages: str = METEOR_STAGES


def text_scores(pairs: Sequence[tuple[Sequence[str], Sequence[str]]]) -> TextScores:
    """Mean ROUGE-L and METEOR over (predicted, reference) descriptor lists."""
    if not pairs:
        raise ValueError("no (predicted, reference) pairs to score")
    return TextScores(float(np.mean([rouge_l(p, r) for p, r in pairs])), float(np.mean([meteor(p, r) for p, r in pairs])), len(pairs))
