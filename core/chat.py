"""Questions about one computed result, answered only from its facts: the public names of
``core.text.qa`` (where the code lives, one module per job), importable from here as before.

``facts = facts_from_result(result)``; ``Chat().answer("How sure is it?", facts)`` gives an
``Answer`` with ``text``, ``match`` (the answer match, not the model's confidence),
``source``, ``supporting``, ``known``, ``intent`` and ``result_id``; ``suggestions(facts)``
the questions these facts can answer.
"""

from .text.qa import (
    CONTEXT_FACTS,
    DEFAULT_QA_MODEL,
    INTENTS,
    MAX_SENTENCES,
    OVERLAP_THRESHOLD,
    QA_THRESHOLD,
    SHORT_QUESTION,
    TEMPLATE_FLOOR,
    TEMPLATE_MATCH,
    TEMPLATE_SCORE,
    TOPICS,
    UNKNOWN_THRESHOLD,
    Answer,
    BuiltinAnswerer,
    Chat,
    ExtractiveQA,
    Fact,
    Facts,
    SentenceEmbedder,
    answer,
    context,
    facts_from_cxr,
    facts_from_result,
    overlap_scores,
    result_id,
    sentence_embedder,
    suggestions,
    unknown_answer,
    unsupported_numbers,
)

__all__ = ["CONTEXT_FACTS", "DEFAULT_QA_MODEL", "INTENTS", "MAX_SENTENCES", "OVERLAP_THRESHOLD", "QA_THRESHOLD", "SHORT_QUESTION",
           "TEMPLATE_FLOOR", "TEMPLATE_MATCH", "TEMPLATE_SCORE", "TOPICS", "UNKNOWN_THRESHOLD", "Answer", "BuiltinAnswerer", "Chat",
           "ExtractiveQA", "Fact", "Facts", "SentenceEmbedder", "answer", "context", "facts_from_cxr", "facts_from_result",
           "overlap_scores", "result_id", "sentence_embedder", "suggestions", "unknown_answer", "unsupported_numbers"]  # fmt: skip
