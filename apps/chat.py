"""The chat's handlers (both apps): answers from the facts of the last result, suggested
questions, and the id that scopes the history to one result."""

from __future__ import annotations

from typing import Any

_CHAT: dict[str, Any] = {}


def default_chat() -> Any:
    """The process's question answerer (``core.chat.Chat``), made once."""
    if "chat" not in _CHAT:
        from core.chat import Chat

        _CHAT["chat"] = Chat()
    return _CHAT["chat"]


def _facts(last: dict[str, Any]) -> Any:
    from core.chat import facts_from_cxr, facts_from_result

    if last.get("kind") == "cxr":
        return facts_from_cxr(last["result"])
    return facts_from_result(last["result"], last.get("faithfulness"))


def ask(chat: Any, last: dict[str, Any] | None, question: str | None) -> str:
    """An answer to ``question`` from the facts of the last result (``last["kind"]`` is
    "faces" or "cxr"), in markdown, saying where it came from and how well the question
    matched the facts (the answer's match, not the model's confidence)."""
    if not question or not question.strip():
        return "Ask a question about the result, e.g. _How sure is it?_"
    if not last:
        return "Compare two photos or diagnose an X-ray first: I answer only from a computed result."
    ans = (chat or default_chat()).answer(question, _facts(last))
    return f"{ans.text}\n\n_({ans.caption})_"


def chat_suggestions(last: dict[str, Any] | None, n: int = 4) -> list[str]:
    """Questions the last result's facts can answer (``core.chat.suggestions``); none before a result."""
    from core.chat import suggestions

    return suggestions(_facts(last), n) if last else []


def chat_scope(last: dict[str, Any] | None) -> tuple[str | None, str]:
    """The id of the result the chat answers about (``core.chat.result_id``) and the words
    that mark its start in the history."""
    from core.chat import result_id
    from core.text.verdict import verdict_sentence

    if not last:
        return None, ""
    res = last["result"]
    what = verdict_sentence(res) if last.get("kind") == "faces" else (res.text[0] if getattr(res, "text", None) else "chest X-ray")
    return result_id(res), f"About this result: {what}"
