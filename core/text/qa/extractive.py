"""Extractive question answering over the facts, as in "From Pixels to Words" (arXiv
2409.16089): a SQuAD-fine-tuned BERT (default ``deepset/bert-base-cased-squad2``, or a local
folder) loaded ONLY from local files, once, lazily; missing weights raise
``ModelUnavailableError`` with the download command.

The answer is the span ``(i, j)`` maximising ``p_start(i) * p_end(j)`` (softmax over the
context tokens and [CLS], ``j - i`` below ``max_answer_tokens``) over stride windows of the
context, as the former transformers question-answering pipeline did (it is gone from
transformers 5, so the start/end logits are read directly). A SQuAD 2 model's "no answer"
([CLS]) beating the span means "no answer". Following the paper, the context is the
sub-context of the ``CONTEXT_FACTS`` facts most similar to the question, in their order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ...errors import ModelUnavailableError
from .answers import Answer, unknown_answer
from .fact import Fact, context_spans

log = logging.getLogger(__name__)

#: The default extractive model: BERT base (cased) fine-tuned on SQuAD 2.0.
DEFAULT_QA_MODEL = "deepset/bert-base-cased-squad2"

#: The extractive answer is used when its span probability ``p_start * p_end`` reaches this
#: (a conventional value: no QA weights were available offline to tune it).
QA_THRESHOLD = 0.25

#: How many facts (the most similar to the question) form the extractive model's sub-context.
CONTEXT_FACTS = 8

_QA_MODELS: dict[tuple[str, str], tuple[Any, Any]] = {}
_QA_LOCK = threading.Lock()


class ExtractiveQA:
    """A SQuAD question-answering model over the facts' context (the paper's BERT-QA).

    ``model``: a Hub id in the local Hugging Face cache or a local folder; nothing is ever
    downloaded. Loaded on first use and shared by every instance in the process.
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_QA_MODEL,
        device: str | torch.device | None = "auto",
        threshold: float = QA_THRESHOLD,
        max_length: int = 384,
        stride: int = 128,
        max_answer_tokens: int = 30,
        context_facts: int | None = CONTEXT_FACTS,
    ) -> None:
        self.model_name = str(model)
        self.device = device
        self.threshold = float(threshold)
        self.max_length = int(max_length)
        self.stride = int(stride)
        self.max_answer_tokens = int(max_answer_tokens)
        self.context_facts = context_facts
        self._loaded: tuple[Any, Any] | None = None
        self._error: ModelUnavailableError | None = None

    def _message(self) -> str:
        if Path(self.model_name).exists():
            return (f"the question-answering model folder {self.model_name} could not be read as a transformers model "
                    "(it needs config.json, the weights and a fast tokenizer)")  # fmt: skip
        return (f"the question-answering model '{self.model_name}' is not in the local Hugging Face cache and is never downloaded "
                f"at run time. On a machine with internet run `huggingface-cli download {self.model_name}` (it goes to "
                "~/.cache/huggingface/hub; copy that folder here or set HF_HOME), or pass a local folder; "
                "meanwhile the built-in answerer (templates and MiniLM retrieval) answers")  # fmt: skip

    def load(self) -> tuple[Any, Any]:
        """(tokenizer, model), loaded once; ``ModelUnavailableError`` when not here."""
        if self._loaded is not None:
            return self._loaded
        if self._error is not None:
            raise self._error
        from ...device import resolve_device

        dev = resolve_device(self.device)
        key = (self.model_name, str(dev))
        with _QA_LOCK:
            if key not in _QA_MODELS:
                try:
                    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

                    tok = AutoTokenizer.from_pretrained(self.model_name, local_files_only=True)
                    model = AutoModelForQuestionAnswering.from_pretrained(self.model_name, local_files_only=True).eval().to(dev)
                except ImportError as e:
                    self._error = ModelUnavailableError(f"the extractive answerer needs transformers: pip install transformers ({e})")
                    raise self._error from None
                except (OSError, ValueError) as e:
                    log.debug("question-answering model %s not loaded: %s", self.model_name, e)
                    self._error = ModelUnavailableError(self._message())
                    raise self._error from None
                if not getattr(tok, "is_fast", False):
                    self._error = ModelUnavailableError(f"{self.model_name}: the extractive answerer needs a fast tokenizer (tokenizer.json)")
                    raise self._error
                _QA_MODELS[key] = (tok, model)
            self._loaded = _QA_MODELS[key]
        return self._loaded

    def available(self) -> bool:
        """Whether the weights are here (loads them the first time)."""
        try:
            self.load()
        except ModelUnavailableError:
            return False
        return True

    @torch.no_grad()
    def answer(self, question: str, facts: Sequence[Fact], ranked: Sequence[Fact] | None = None) -> Answer:
        """The best span of the context for ``question``. ``ranked``: facts most similar to
        the question first; the top ``context_facts`` of them (in the facts' order) form the
        sub-context, as in the paper. Without it the whole context is read."""
        tok, model = self.load()
        facts = list(facts)
        if ranked is not None and self.context_facts:
            keep = {id(f) for f in list(ranked)[: self.context_facts]}
            facts = [f for f in facts if id(f) in keep] or facts
        if not facts or not question.strip():
            return unknown_answer(facts, "extractive")
        ctx, spans = context_spans(facts)
        q = " ".join(question.split()[:64])  # a question longer than that is cut
        # the window: at most what the model's position embeddings allow (read from the model)
        limit = min(
            self.max_length,
            int(getattr(getattr(model, "config", None), "max_position_embeddings", self.max_length)),
            int(getattr(tok, "model_max_length", 10**6)),
        )
        enc = tok(q, ctx, truncation="only_second", max_length=limit, stride=min(self.stride, limit // 2), return_overflowing_tokens=True,
                  return_offsets_mapping=True, padding=True, return_tensors="pt")  # fmt: skip
        names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc and k in tok.model_input_names]
        dev = next(model.parameters()).device
        out = model(**{k: enc[k].to(dev) for k in names})
        start_all, end_all = out.start_logits.float().cpu(), out.end_logits.float().cpu()
        offsets = enc["offset_mapping"]
        best: tuple[float, int, int] | None = None
        for w in range(start_all.shape[0]):
            seq = enc.sequence_ids(w)
            ctx_mask = torch.tensor([s == 1 for s in seq])
            allowed = ctx_mask.clone()
            cls = 0  # [CLS] leads every window (right padding): SQuAD 2's "no answer"
            allowed[cls] = True
            ps = torch.softmax(start_all[w].masked_fill(~allowed, -1e9), dim=0)
            pe = torch.softmax(end_all[w].masked_fill(~allowed, -1e9), dim=0)
            null = float(ps[cls] * pe[cls])
            cs, ce = ps * ctx_mask, pe * ctx_mask
            pair = torch.triu(torch.outer(cs, ce)) - torch.triu(torch.outer(cs, ce), diagonal=self.max_answer_tokens)
            flat = int(torch.argmax(pair))
            i, j = divmod(flat, pair.shape[1])
            score = float(pair[i, j])
            if score <= 0 or score < null:  # no span, or a SQuAD 2 model says "no answer" here
                continue
            if best is None or score > best[0]:
                best = (score, int(offsets[w][i][0]), int(offsets[w][j][1]))
        if best is None:
            return unknown_answer(facts, "extractive")
        score, a, b = best
        span = ctx[a:b].strip()
        support = [f.sentence for f, (s0, s1) in zip(facts, spans, strict=True) if s0 < b and a < s1]
        known = bool(span) and score >= self.threshold
        if not known:
            a_ = unknown_answer(facts, "extractive", score)
            a_.span = span
            return a_
        return Answer(" ".join(support), min(1.0, score), "extractive", support, True, span=span)
