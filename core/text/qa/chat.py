"""The chat: the built-in answerer's off-topic gate first, then the extractive model when
its weights are here and its span probability reaches its threshold, else the built-in
answer. Every answer carries the id of the comparison its facts come from."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .answers import Answer
from .builtin import BuiltinAnswerer
from .extractive import ExtractiveQA
from .fact import Fact, result_id_of, unsupported_numbers

log = logging.getLogger(__name__)


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
        """The answer to ``question`` from ``facts`` (``facts_from_result``'s), with its
        ``match`` and the ``result_id`` of those facts."""
        out = self._answer(question, facts)
        out.result_id = result_id_of(facts)
        return out

    def _answer(self, question: str, facts: Sequence[Fact]) -> Answer:
        base = self.builtin.answer(question, facts, self.threshold)
        if not base.known:
            return base  # off-topic, or nothing to answer from
        qa = self.qa
        # a question about one part of the face, or a full table, is answered from exactly those facts
        if qa is not None and base.intent not in ("part", "region_table"):
            ranked = [f for f, _ in self.builtin.rank(question, facts)]
            try:
                ex = qa.answer(question, facts, ranked)
            except Exception as e:  # a broken model must not take the chat down
                log.warning("extractive answer failed (%s: %s); using the built-in answer", type(e).__name__, e)
            else:
                if ex.known and not unsupported_numbers(ex.text, facts):
                    return ex
        if unsupported_numbers(base.text, facts):  # cannot happen: answers are made of the facts' numbers
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
